"""Frames dataset: run order and boundaries, resizing, corrupt images, empty dirs, pair sampling."""

import json

import cv2
import numpy as np
import pytest
from synthetic_frames import write_synthetic_runs

from data.frames import FRAME_HW, FramesDataset, load_branches
from data.pairs import FrameGroups


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return write_synthetic_runs(tmp_path_factory.mktemp("frames"), num_runs=3, frames_per_run=12)


def test_reads_runs_in_order_and_keeps_boundaries(runs_dir):
    data = FramesDataset(runs_dir, show_progress=False)
    assert data.frames.shape == (36, *FRAME_HW, 3) and data.frames.dtype == np.uint8
    assert data.run_names == ["run_00", "run_01", "run_02"]
    np.testing.assert_array_equal(data.run_id, np.repeat([0, 1, 2], 12))
    np.testing.assert_array_equal(data.frame_index, np.tile(np.arange(12), 3))
    # Frame 5 of run 1 is the file run_01/000005.png, in RGB.
    on_disk = cv2.cvtColor(cv2.imread(str(runs_dir / "run_01" / "000005.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(data.frames[12 + 5], on_disk)

    t, t1 = data.next_frame_pairs()
    assert len(t) == 3 * 11  # no pair crosses a run boundary
    assert np.all(data.run_id[t] == data.run_id[t1]) and np.all(
        data.frame_index[t1] == data.frame_index[t] + 1
    )


def test_wrong_sizes_are_refused_unless_resize_and_corrupt_files_are_named(tmp_path):
    cv2.imwrite(str(tmp_path / "000000.png"), np.zeros((288, 320, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "000001.jpg"), np.full((144, 160, 3), 255, np.uint8))
    (tmp_path / "000002.png").write_bytes(b"not a png")
    with pytest.raises(
        ValueError, match=r"000000.png is 320x288, not the Game Boy screen's 160x144; pass --resize"
    ):
        FramesDataset(tmp_path, show_progress=False)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\) in .*: 000002.png"):
        data = FramesDataset(tmp_path, show_progress=False, resize=True)
    assert data.frames.shape == (2, *FRAME_HW, 3) and data.skipped == [tmp_path / "000002.png"]
    assert data.run_names == [tmp_path.name]
    np.testing.assert_array_equal(data.frame_index, [0, 1])


def test_an_unreadable_frame_breaks_adjacency(tmp_path):
    """Frames on either side of a corrupt file are not a (t, t+1) pair: the gap stays a gap."""
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i:06d}.png"), np.full((144, 160, 3), 40 * i, np.uint8))
    (tmp_path / "000002.png").write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="000002.png"):
        data = FramesDataset(tmp_path, show_progress=False)
    np.testing.assert_array_equal(data.frame_index, [0, 1, 3, 4])
    t, t1 = data.next_frame_pairs()
    pairs = [(data.file_names[a], data.file_names[b]) for a, b in zip(t, t1)]
    assert pairs == [("000000.png", "000001.png"), ("000003.png", "000004.png")]
    assert [list(group) for group in FrameGroups(data).indices] == [[0, 1], [2, 3]]


def test_missing_or_empty_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FramesDataset(tmp_path / "nope")
    (tmp_path / "run_00").mkdir()
    (tmp_path / "run_00" / "notes.txt").write_text("no frames here")
    with pytest.raises(FileNotFoundError, match=f"no .png/.jpg frames found in {tmp_path}"):
        FramesDataset(tmp_path)


def test_batches_pairs_and_holdout(runs_dir):
    data = FramesDataset(runs_dir, show_progress=False)
    train, held_out = data.split_indices(data.resolve_run(-1))
    assert set(data.run_id[held_out]) == {2} and set(data.run_id[train]) == {0, 1}
    assert data.resolve_run("run_01") == 1
    with pytest.raises(ValueError, match="run_07"):
        data.resolve_run("run_07")

    batches = list(data.batches(5, np.random.default_rng(0), train))
    assert len(batches) == 24 // 5 and all(b.shape == (5, *FRAME_HW, 3) for b in batches)
    for frames_t, frames_t1 in data.pairs(4, np.random.default_rng(0), train):
        assert frames_t.shape == frames_t1.shape == (4, *FRAME_HW, 3)

    earlier, later = data.order_pair_indices(2000, np.random.default_rng(0), min_gap=4, indices=train)
    assert np.all(data.run_id[earlier] == data.run_id[later])
    assert np.all(data.frame_index[later] - data.frame_index[earlier] >= 4)
    assert not np.isin(np.concatenate([earlier, later]), held_out).any()
    # Every frame that has a partner gets drawn; the extremes of the gap are both reached.
    assert len(np.unique(np.concatenate([earlier, later]))) == 24
    gaps = data.frame_index[later] - data.frame_index[earlier]
    assert gaps.min() == 4 and gaps.max() == 11
    # Log-uniform gaps: same guarantees, but short gaps dominate (the uniform draw favours long ones).
    earlier, later = data.order_pair_indices(
        2000, np.random.default_rng(0), min_gap=4, indices=train, gaps="log"
    )
    log_gaps = data.frame_index[later] - data.frame_index[earlier]
    assert np.all(data.run_id[earlier] == data.run_id[later]) and not np.isin(later, held_out).any()
    assert log_gaps.min() == 4 and log_gaps.max() == 11
    expected = np.log(7 / 4) / np.log(12 / 4)  # P(gap <= 6) for a log-uniform gap in [4, 12)
    assert abs(np.mean(log_gaps <= 6) - expected) < 0.04 and abs(np.mean(gaps <= 6) - expected) > 0.06
    with pytest.raises(ValueError, match="gaps"):
        data.order_pair_indices(1, np.random.default_rng(0), min_gap=4, gaps="linear")
    with pytest.raises(ValueError, match="min_gap=12"):
        data.order_pair_indices(1, np.random.default_rng(0), min_gap=12)


def test_labeled_segments_break_next_frame_pairs(tmp_path):
    write_synthetic_runs(tmp_path, num_runs=1, frames_per_run=6)
    (tmp_path / ".run_01.partial").mkdir()  # an extractor's unfinished output is not a run
    records = [{"file": f"{t:06d}.png", "segment": int(t >= 3)} for t in range(6)]
    (tmp_path / "run_00" / "metadata.json").write_text(json.dumps({"frames": records}))
    data = FramesDataset(tmp_path, show_progress=False)
    assert data.run_names == ["run_00"]
    t, t1 = data.next_frame_pairs()
    np.testing.assert_array_equal(t, [0, 1, 3, 4])
    np.testing.assert_array_equal(t1, [1, 2, 4, 5])


def test_branches_map_to_the_run_frame_they_rank_below(runs_dir, tmp_path):
    data = FramesDataset(runs_dir, show_progress=False)
    root = tmp_path / "branches"
    for run, below in (("run_00", ["000003.png", "000011.png"]), ("run_02", ["000000.png"])):
        (root / run).mkdir(parents=True)
        records = []
        for number, name in enumerate(below):
            cv2.imwrite(str(root / run / f"{number:06d}.png"), np.full((*FRAME_HW, 3), 10 * number, np.uint8))
            records.append({"file": f"{number:06d}.png", "below": name})
        (root / run / "metadata.json").write_text(json.dumps({"run": run, "branches": records}))
    branches = load_branches(root, data)
    assert len(branches) == 3 and branches.frames.shape == (3, *FRAME_HW, 3)
    np.testing.assert_array_equal(branches.run_id, [0, 0, 2])
    np.testing.assert_array_equal(branches.below, [3, 11, 24])  # run_02 starts at dataset index 24
    assert data.file_names[branches.below[1]] == "000011.png"
    assert branches.frames[1].max() == 10

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_branches(tmp_path / "nope", data)
    (root / "run_02" / "metadata.json").write_text(
        json.dumps({"branches": [{"file": "000000.png", "below": "000099.png"}]})
    )
    with pytest.raises(ValueError, match="000099.png, which is not a frame of run run_02"):
        load_branches(root, data)
