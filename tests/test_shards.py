"""Sharded frames: written from a frames folder, they read back as the same dataset, and every way a
dataset can be broken is one line before training starts."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data import shards, storage
from data.frames import ConcatenatedFrames, FramesDataset
from data.pairs import FrameGroups
from data.shards import MANIFEST, ShardedFramesDataset, write_shards
from tests.synthetic_frames import write_synthetic_runs
from training.data import load_frames


@pytest.fixture(scope="module")
def frames_and_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    frames_dir = write_synthetic_runs(root / "frames", num_runs=3, frames_per_run=23)
    (frames_dir / "run_01" / "metadata.json").write_text(
        json.dumps({"source_video": "run_01.mp4", "fps": 60})
    )
    write_shards(frames_dir, str(root / "shards"), shard_size=10, show_progress=False)
    return frames_dir, root / "shards"


def test_shards_read_back_as_the_folder(frames_and_shards):
    frames_dir, shards_dir = frames_and_shards
    folder, sharded = FramesDataset(frames_dir, show_progress=False), load_frames(shards_dir)
    assert isinstance(sharded, ShardedFramesDataset)
    manifest = json.loads((shards_dir / MANIFEST).read_text())
    assert [s["frames"] for s in manifest["shards"]] == [10] * 6 + [9]
    assert [(r["name"], r["frames"]) for r in manifest["runs"]] == [(f"run_{i:02d}", 23) for i in range(3)]
    for name in ("run_id", "frame_index", "segment"):
        np.testing.assert_array_equal(getattr(sharded, name), getattr(folder, name))
    assert sharded.file_names == folder.file_names and sharded.run_names == folder.run_names
    assert [sharded.run_metadata(run) for run in range(3)] == [
        None,
        {"source_video": "run_01.mp4", "fps": 60},
        None,
    ]
    assert [run["source"] for run in manifest["runs"]][1] == "run_01.mp4"
    np.testing.assert_array_equal(np.asarray(sharded.frames), folder.frames)
    # Every kind of index the trainers use: int, negative int, slice, shuffled batch with repeats, 2-D.
    rng = np.random.default_rng(0)
    batch = rng.integers(0, len(folder), 17)
    batch[3] = batch[4]
    groups = rng.integers(0, len(folder), (4, 3))
    for key in (5, -1, slice(8, 31), slice(None, None, 7), batch, groups, np.array([], np.int64)):
        np.testing.assert_array_equal(sharded.frames[key], folder.frames[key])
    # Epoch batches and frame groups draw the same frames as the in-memory dataset.
    for ours, theirs in zip(
        sharded.batches(8, np.random.default_rng(1)), folder.batches(8, np.random.default_rng(1))
    ):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(
        FrameGroups(sharded, group_size=3).frames(np.arange(5)),
        FrameGroups(folder, group_size=3).frames(np.arange(5)),
    )
    with pytest.raises(IndexError):
        sharded.frames[len(folder)]
    # A sharded dataset followed by other frames (Phase 2's branches) indexes as their concatenation.
    both = ConcatenatedFrames([sharded.frames, folder.frames[:5]])
    expected = np.concatenate([folder.frames, folder.frames[:5]])
    for key in (3, -2, slice(60, 74), batch, np.array([72, 2, 70, 73]), groups):
        np.testing.assert_array_equal(both[key], expected[key])


def test_broken_datasets_are_one_line_errors(frames_and_shards, tmp_path):
    frames_dir, shards_dir = frames_and_shards
    broken = tmp_path / "broken"
    write_shards(frames_dir, str(broken), shard_size=32, show_progress=False)
    with pytest.raises(FileExistsError, match="already holds"):
        write_shards(frames_dir, str(broken), show_progress=False)

    shard = broken / "shard_00001.npy"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(
        SystemExit, match=r"^error: --data: .*shard_00001.npy is \d+ bytes but the manifest says"
    ):
        load_frames(broken)
    shard.unlink()
    with pytest.raises(SystemExit, match="shard_00001.npy is in the manifest but missing"):
        load_frames(broken)

    manifest = json.loads((shards_dir / MANIFEST).read_text())
    (broken / MANIFEST).write_text(json.dumps({**manifest, "format": "something-else"}))
    with pytest.raises(SystemExit, match="is not an emurl-frame-shards/1 manifest"):
        load_frames(broken)
    (broken / MANIFEST).write_text("{not json")
    with pytest.raises(SystemExit, match="is not valid JSON"):
        load_frames(broken)

    with pytest.raises(SystemExit, match="^error: frames directory .* does not exist"):
        shards.main(shards.Args(frames=tmp_path / "nope", out=str(tmp_path / "out")))
    with pytest.raises(SystemExit, match="holds no sharded dataset"):
        load_frames("memory://emurl-test/no-such-dataset")
    with pytest.raises(SystemExit, match="^error: /proc/nope/x: cannot write there"):
        shards.main(shards.Args(frames=frames_dir, out="/proc/nope/x"))


def test_the_data_scale_bench_measures_both_loaders(tmp_path):
    output = tmp_path / "data_scale.md"
    command = [sys.executable, "bench/data_scale.py", "--scales", "1", "--runs", "2", "--frame-every", "48"]
    command += ["--no-warm-up", "--batch-size", "8", "--output", str(output), "--scratch", str(tmp_path)]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = output.read_text()
    assert re.search(r"\| 1x \| [\d.]+ \| in memory \|", table) and re.search(
        r"\| 1x \| [\d.]+ \| sharded \|", table
    )
    assert "Sharded peak RSS 1x -> 1x: 1.00x" in table
    assert not list(tmp_path.glob("data_scale_*"))  # its scratch folder is gone


def test_the_read_cache_fetches_a_file_again_when_it_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("EMURL_CACHE", str(tmp_path))
    url = "memory://emurl-test/cache/policy.pkl"
    storage.write_bytes(url, b"first")
    assert storage.local_copy(url).read_bytes() == b"first"
    assert storage.local_copy(url) == storage.local_copy(url)  # downloaded once
    storage.write_bytes(url, b"again")  # same size, new contents: a checkpoint saved over
    assert storage.local_copy(url).read_bytes() == b"again"
