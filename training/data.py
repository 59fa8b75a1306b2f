"""Frames for the trainers: loading with one-line errors, held-out run splits, batch sizes that
fit the devices, and batched inference over a whole array."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from data import storage
from data.frames import FramesDataset
from data.pairs import FrameGroups
from data.shards import MANIFEST, ShardedFramesDataset, is_sharded
from models.sharding import process_rows, shard_local, to_host
from training.cli import fail


def load_frames(path: str | Path, resize: bool = False) -> FramesDataset:
    """The frames at `path`, or a one-line error: a frames folder (one folder per run; frames that are not
    160x144 are refused unless `resize`, --resize), read into memory, or a sharded dataset (data/shards.py,
    a folder or a storage URL), read batch by batch."""
    try:
        if is_sharded(path):
            return ShardedFramesDataset(path)
        if storage.is_url(path):
            raise FileNotFoundError(
                f"{path} holds no sharded dataset ({MANIFEST}); upload one with data/sync.py"
            )
        return FramesDataset(path, resize=resize)
    except (FileNotFoundError, ValueError, PermissionError) as err:
        raise fail(f"--data: {err}") from None
    except Exception as err:  # storage errors (credentials, network) come in many types
        raise fail(f"--data {path}: {type(err).__name__}: {err}") from None


def split_runs(data: FramesDataset, holdout_run: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(train indices, eval indices, description of the eval split). An empty `holdout_run`, or a
    dataset of one run, evaluates on the training runs."""
    if holdout_run == "" or data.num_runs == 1:
        everything = np.arange(len(data))
        return everything, everything, "training runs (no held-out run)"
    try:
        run = data.resolve_run(holdout_run)
    except ValueError as err:
        raise fail(f"--holdout-run: {err}") from None
    train, held_out = data.split_indices(run)
    return train, held_out, f"held-out run {data.run_names[run]}"


def fit_batch_size(batch_size: int, available: int, what: str) -> int:
    """The largest usable batch: at most `available`, and a multiple of the device count."""
    devices = jax.device_count()
    fitted = min(batch_size, available) // devices * devices
    if fitted == 0:
        raise fail(f"{what}: only {available} examples, fewer than the {devices} devices")
    if fitted != batch_size:
        print(f"batch size {batch_size} -> {fitted} ({available} {what}, {devices} device(s))")
    return fitted


def map_batches(fn, arrays, batch_size: int, local: bool = False):
    """Apply a jitted per-batch `fn` over `arrays` (an array, or a tuple of arrays sharing axis 0) in
    fixed-size (padded, sharded) batches; one compile. `fn` may return an array or a tuple of them; the
    results come back as numpy arrays on every process. With several processes, each reads only its own
    rows of every batch; with `local`, each maps arrays of its own (its envs' frames) unsharded."""
    total = len(jax.tree.leaves(arrays)[0])
    rows = range(batch_size) if local else process_rows(batch_size)
    outputs = []
    for start in range(0, total, batch_size):
        first, last = min(start + rows.start, total), min(start + rows.stop, total)

        def local_rows(a, first=first, last=last):
            part = np.asarray(a[first:last])
            padding = np.zeros((rows.stop - rows.start - len(part), *part.shape[1:]), part.dtype)
            return np.concatenate([part, padding])

        batch = jax.tree.map(local_rows, arrays)
        result = jax.tree.map(np.asarray, fn(batch)) if local else to_host(fn(shard_local(batch)))
        size = min(batch_size, total - start)
        outputs.append(jax.tree.map(lambda r, size=size: r[:size], result))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


def split_groups(groups: FrameGroups, holdout_run: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(training group ids, held-out group ids, description): `split_runs`, by the run of each group's
    first frame."""
    train_frames, eval_frames, description = split_runs(groups.dataset, holdout_run)
    first = groups.indices[:, 0]
    return (
        np.flatnonzero(np.isin(first, train_frames)),
        np.flatnonzero(np.isin(first, eval_frames)),
        description,
    )
