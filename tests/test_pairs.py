"""Frame pairs and groups: run and segment boundaries, identical-group filtering, logged buttons."""

import json

import cv2
import numpy as np
import pytest

from data.frames import FramesDataset
from data.pairs import NO_BUTTON, FrameGroups, read_buttons, step_changes

BUTTONS = ["noop", "up", "down", "left", "right", "a", "b", "start"]


def write_run(run_dir, frames, records=None):
    run_dir.mkdir(parents=True)
    for t, frame in enumerate(frames):
        cv2.imwrite(str(run_dir / f"{t:06d}.png"), frame)
    if records is not None:
        (run_dir / "metadata.json").write_text(json.dumps({"frames": records}))


def frame_of(value, noise=0):
    """A flat grey frame; `noise` pixels brightened by one level give a tiny, non-zero change."""
    frame = np.full((144, 160, 3), value, np.uint8)
    frame.reshape(-1)[:noise] += 1
    return frame


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """run_00: 8 frames with steps: big, exact repeat, big, tiny (1 pixel), big, exact repeat, big.
    run_01: 5 frames that all change, with logged buttons, split into two labeled segments."""
    root = tmp_path_factory.mktemp("pairs")
    values = [0, 50, 50, 100, 100, 150, 150, 200]
    noise = [0, 0, 0, 0, 1, 0, 0, 0]
    write_run(root / "run_00", [frame_of(v, n) for v, n in zip(values, noise)])
    records = [{"file": f"{t:06d}.png", "button": BUTTONS[t + 1], "segment": int(t >= 3)} for t in range(5)]
    write_run(root / "run_01", [frame_of(20 + 40 * t) for t in range(5)], records)
    return root


@pytest.fixture(scope="module")
def dataset(root):
    return FramesDataset(root, show_progress=False)


def test_step_changes_match_numpy(dataset):
    frames = dataset.frames
    expected = [np.abs(frames[i + 1].astype(float) - frames[i]).mean() for i in range(len(frames) - 1)]
    np.testing.assert_allclose(step_changes(frames, chunk=3), expected, rtol=1e-6)


def test_pairs_stay_inside_runs_and_segments(dataset):
    groups = FrameGroups(dataset)
    # run_00: 7 pairs; run_01: segment 0 (frames 0-2) gives 2 pairs, segment 1 (3-4) gives 1.
    assert len(groups) == 7 + 2 + 1
    first, second = groups.indices[:, 0], groups.indices[:, 1]
    assert np.all(dataset.run_id[first] == dataset.run_id[second])
    assert np.all(dataset.segment[first] == dataset.segment[second])
    assert np.all(dataset.frame_index[second] == dataset.frame_index[first] + 1)
    # The pair from the last frame of run_00 to the first of run_01 and the one across segments are absent.
    assert not any((a, b) == (7, 8) or (a, b) == (10, 11) for a, b in groups.indices.tolist())
    x_t, x_t1 = groups.pairs(np.arange(len(groups)))
    np.testing.assert_array_equal(x_t, dataset.frames[first])
    np.testing.assert_array_equal(x_t1, dataset.frames[second])


def test_groups_of_three(dataset):
    groups = FrameGroups(dataset, group_size=3)
    assert len(groups) == 6 + 1 + 0  # run_00 has 6 triples; segments of 3 and 2 frames give 1 and 0
    np.testing.assert_array_equal(np.diff(groups.indices, axis=1), 1)
    assert np.all(dataset.segment[groups.indices] == dataset.segment[groups.indices[:, :1]])
    batch_groups, frames = next(groups.batches(4, np.random.default_rng(0)))
    assert frames.shape == (4, 3, 144, 160, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, dataset.frames[groups.indices[batch_groups]])
    with pytest.raises(ValueError, match="group_size"):
        FrameGroups(dataset, group_size=1)


def test_identical_pairs_dropped_exact_and_by_threshold(dataset):
    exact = FrameGroups(dataset, keep_identical_fraction=0.0)
    assert len(exact) == 10 - 2  # the two exact repeats of run_00 go; the 1-pixel change stays
    assert np.all(exact.changes > 0) and not exact.identical.any()

    tiny_change = 1 / (144 * 160 * 3)  # one pixel channel up by one level
    loose = FrameGroups(dataset, identical_threshold=2 * tiny_change, keep_identical_fraction=0.0)
    assert len(loose) == 10 - 3 and np.all(loose.changes > 2 * tiny_change)

    kept_all = FrameGroups(dataset, identical_threshold=2 * tiny_change)
    assert len(kept_all) == 10 and kept_all.identical.sum() == 3


def test_identical_fraction_kept(tmp_path):
    # One run of 41 frames: 40 steps, of which every second one repeats the frame.
    frames = [frame_of((t + 1) // 2 * 5) for t in range(41)]
    write_run(tmp_path / "run_00", frames)
    dataset = FramesDataset(tmp_path, show_progress=False)
    for fraction, expected_identical in [(0.0, 0), (0.25, 5), (0.5, 10), (1.0, 20)]:
        groups = FrameGroups(dataset, keep_identical_fraction=fraction, seed=1)
        assert groups.identical.sum() == expected_identical
        assert (~groups.identical).sum() == 20
    chosen = [set(FrameGroups(dataset, keep_identical_fraction=0.5, seed=s).indices[:, 0]) for s in (1, 2)]
    assert chosen[0] != chosen[1]  # the seed picks which identical pairs stay
    with pytest.raises(ValueError, match="keep_identical_fraction"):
        FrameGroups(dataset, keep_identical_fraction=1.5)


def test_logged_buttons_exposed_for_evaluation(root, dataset):
    buttons = read_buttons(root, dataset, BUTTONS)
    # run_00 logs nothing; run_01 frame t logged BUTTONS[t + 1].
    np.testing.assert_array_equal(buttons[:8], NO_BUTTON)
    np.testing.assert_array_equal(buttons[8:], np.arange(1, 6))
    groups = FrameGroups.from_root(root, button_names=BUTTONS, show_progress=False)
    from_run_01 = dataset.run_id[groups.indices[:, 0]] == 1
    np.testing.assert_array_equal(groups.buttons[from_run_01, 0], [1, 2, 4])
    assert FrameGroups.from_root(root, show_progress=False).buttons is None
