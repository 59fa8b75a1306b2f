"""Frame pairs and groups: run and segment boundaries, identical-group filtering, logged buttons."""

import json

import cv2
import numpy as np
import pytest

from data import make_speedruns
from data.frames import FramesDataset
from data.pairs import NO_BUTTON, FrameGroups, buttons_between_saved_frames, read_buttons, step_changes
from envs.actions import ACTION_NAMES


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
    run_01: 5 frames that all change, split into two labeled segments (as extract_frames writes)."""
    root = tmp_path_factory.mktemp("pairs")
    values = [0, 50, 50, 100, 100, 150, 150, 200]
    noise = [0, 0, 0, 0, 1, 0, 0, 0]
    write_run(root / "run_00", [frame_of(v, n) for v, n in zip(values, noise)])
    records = [{"file": f"{t:06d}.png", "source_frame": t, "segment": int(t >= 3)} for t in range(5)]
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


def test_buttons_between_saved_frames_include_taps_between_them(tmp_path):
    # Saved every 4th emulator frame; a tap of A (frames 5-6) and of START (9-10) falls
    # between saved frames, UP and LEFT are held while frames 4 and 16 are drawn.
    held = [[], ["up"], [], [], ["left"]]
    records = [{"file": f"{t:06d}.png", "frame": 4 * t, "buttons": held[t]} for t in range(5)]
    presses = [
        {"frame": 5, "button": "a", "frames_held": 2},
        {"frame": 9, "button": "start", "frames_held": 2},
    ]
    metadata = {"frame_every": 4, "frames": records, "presses": presses}
    assert buttons_between_saved_frames(metadata) == {
        "000000.png": "up",
        "000001.png": "a",
        "000002.png": "start",
        "000003.png": "left",
    }
    write_run(tmp_path / "run_00", [frame_of(40 * t) for t in range(5)], None)
    (tmp_path / "run_00" / "metadata.json").write_text(json.dumps(metadata))
    write_run(
        tmp_path / "run_01", [frame_of(40 * t) for t in range(3)], [{"file": "000000.png", "source_frame": 0}]
    )
    dataset = FramesDataset(tmp_path, show_progress=False)
    buttons = read_buttons(dataset)
    names = [ACTION_NAMES[b] if b != NO_BUTTON else None for b in buttons]
    assert names == ["up", "a", "start", "left", None, None, None, None]  # run_01 logs no buttons


def test_real_speedrun_pairs_with_logged_buttons(root, tmp_path):
    make_speedruns.main(make_speedruns.Args(num_runs=1, out=tmp_path))
    groups = FrameGroups.from_root(tmp_path / "frames", show_progress=False, keep_identical_fraction=0.0)
    metadata = json.loads((tmp_path / "frames" / "run_00" / "metadata.json").read_text())
    num_saved = len(metadata["frames"])
    assert groups.dataset.frames.shape == (num_saved, 144, 160, 3)
    assert 0 < len(groups) < num_saved - 1 and np.all(groups.changes > 0)  # the still pairs are gone
    # Every pair has a known button; walking shows as directions, dialogues as A.
    assert groups.buttons.shape == (len(groups), 1) and np.all(groups.buttons != NO_BUTTON)
    pressed = {ACTION_NAMES[b] for b in groups.buttons[:, 0]}
    assert {"up", "down", "left", "right", "a"} <= pressed
    # Where one button alone was held between the two frames, the pair carries it; where none, "noop".
    single, idle = 0, 0
    for (t, _), (button,) in zip(groups.indices, groups.buttons):
        start, stop = metadata["frames"][t]["frame"], metadata["frames"][t + 1]["frame"]
        held = {
            p["button"]
            for p in metadata["presses"]
            if p["frame"] <= stop and p["frame"] + p["frames_held"] - 1 > start
        }
        held |= set(metadata["frames"][t + 1]["buttons"])
        if len(held) == 1:
            assert ACTION_NAMES[button] == held.pop()
            single += 1
        elif not held:
            assert ACTION_NAMES[button] == "noop"
            idle += 1
    assert single > 50 and idle > 10
    assert FrameGroups.from_root(root, show_progress=False).buttons is None  # no bot log there
