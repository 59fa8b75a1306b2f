"""Sharded frames: a frames dataset as fixed-size uint8 shards and a manifest, read in bounded memory.

A dataset is a folder or a storage URL (data/storage.py) holding:

    manifest.json        format, frame shape, frame count, each shard's file, frames and bytes, and each
                         run's name, frame count, source video and labels used
    index.npz            per frame: run_id, frame_index, segment (int32) and file_names, as FramesDataset
    shard_00000.npy ...  (shard_size, 144, 160, 3) uint8 in run and frame order; the last one shorter
    metadata_<run>.json  the run's metadata.json, where it has one (the buttons data/make_speedruns.py
                         logged, the frames' times in their video, ...)

The manifest is written last, so a dataset without one is unfinished. Opening a dataset checks every
shard's size against the manifest before any training starts. The trainers index frames as before
(`data.frames[indices]`); each read is a few `pread`s from the shard files, remote shards are downloaded
once into the local read cache, and no more than the frames asked for are held in memory.

    uv run python data/shards.py data/speedruns/frames data/speedruns/shards
    uv run python data/shards.py data/speedruns/frames s3://bucket/speedruns
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from data import storage
from data.frames import FRAME_HW, FramesDataset, flat_indices, list_runs, read_folder, warn_skipped
from training.cli import one_line_errors

FORMAT = "emurl-frame-shards/1"
MANIFEST = "manifest.json"
# What writing, reading and syncing a dataset raise with a message that says it all.
DATASET_ERRORS = (FileNotFoundError, FileExistsError, ValueError, PermissionError)
INDEX = "index.npz"


def shard_name(number: int) -> str:
    return f"shard_{number:05d}.npy"


def write_shards(
    frames_dir: str | Path,
    out: str,
    shard_size: int = 1024,
    resize: bool = False,
    show_progress: bool = True,
) -> dict:
    """Write the frames folder `frames_dir` (`<run>/*.png|jpg`) as a sharded dataset at `out` (a folder
    or URL), holding one shard in memory at a time. Returns the manifest."""
    if shard_size < 1:
        raise ValueError(f"shard size must be at least 1, got {shard_size}")
    if storage.exists(storage.join(out, MANIFEST)):
        raise FileExistsError(f"{out} already holds a sharded dataset ({MANIFEST}); write to a new place")
    runs = list_runs(frames_dir)
    try:
        storage.check_writable(out)
    except OSError as err:
        raise PermissionError(f"{out}: cannot write there ({err.strerror or err})") from None
    shards: list[dict] = []
    buffer = np.empty((shard_size, *FRAME_HW, 3), np.uint8)
    filled = 0
    run_id, frame_index, segment, file_names, skipped = [], [], [], [], []

    def flush():
        name = shard_name(len(shards))
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch, name)
            np.save(local, buffer[:filled])
            storage.upload(local, storage.join(out, name))
            shards.append({"file": name, "frames": filled, "bytes": local.stat().st_size})

    for frame in read_folder(frames_dir, runs, show_progress=show_progress, resize=resize, skipped=skipped):
        buffer[filled] = frame.image
        filled += 1
        run_id.append(frame.run)
        frame_index.append(frame.position)
        segment.append(frame.segment)
        file_names.append(frame.file_name)
        if filled == shard_size:
            flush()
            filled = 0
    if filled:
        flush()
    if not run_id:
        raise ValueError(f"none of the images in {frames_dir} could be decoded")
    warn_skipped(frames_dir, skipped)

    index = io.BytesIO()
    np.savez(
        index,
        run_id=np.asarray(run_id, np.int32),
        frame_index=np.asarray(frame_index, np.int32),
        segment=np.asarray(segment, np.int32),
        file_names=np.asarray(file_names),
    )
    storage.write_bytes(storage.join(out, INDEX), index.getvalue())
    counts = np.bincount(run_id, minlength=len(runs))
    run_records = []
    for (name, files), count in zip(runs.items(), counts):
        run_dir = files[0].parent
        metadata = run_dir / "metadata.json"  # data/extract_frames.py names the source video and labels
        written = json.loads(metadata.read_text()) if metadata.is_file() else {}
        record = {
            "name": name,
            "frames": int(count),
            "source": written.get("source_video", str(run_dir)),
            "labels": written.get("labels"),
            "metadata": None,
        }
        if metadata.is_file():
            record["metadata"] = {"file": f"metadata_{name}.json", "bytes": metadata.stat().st_size}
            storage.upload(metadata, storage.join(out, record["metadata"]["file"]))
        run_records.append(record)
    manifest = {
        "format": FORMAT,
        "frame_shape": [*FRAME_HW, 3],
        "dtype": "uint8",
        "num_frames": len(run_id),
        "shard_size": shard_size,
        "shards": shards,
        "runs": run_records,
        "index_bytes": len(index.getvalue()),
    }
    storage.write_bytes(storage.join(out, MANIFEST), json.dumps(manifest, indent=1).encode())
    return manifest


def dataset_files(manifest: dict) -> dict[str, int]:
    """Every file of the dataset but the manifest, with its size in bytes: what a copy must hold."""
    files = {
        INDEX: manifest["index_bytes"],
        **{shard["file"]: shard["bytes"] for shard in manifest["shards"]},
    }
    files.update(
        {run["metadata"]["file"]: run["metadata"]["bytes"] for run in manifest["runs"] if run["metadata"]}
    )
    return files


def is_sharded(root: str | os.PathLike) -> bool:
    return storage.exists(storage.join(root, MANIFEST))


def read_manifest(root: str | os.PathLike) -> dict:
    """The manifest at `root`, checked for its format and against the shard files' sizes. Raises
    ValueError or FileNotFoundError with a one-line message."""
    if not storage.exists(storage.join(root, MANIFEST)):
        raise FileNotFoundError(
            f"{root} holds no sharded dataset ({MANIFEST}); write one with data/shards.py"
        )
    try:
        manifest = json.loads(storage.read_bytes(storage.join(root, MANIFEST)))
    except json.JSONDecodeError as err:
        raise ValueError(f"{storage.join(root, MANIFEST)} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{storage.join(root, MANIFEST)} is not an {FORMAT} manifest")
    missing = {"frame_shape", "dtype", "num_frames", "shards", "runs", "index_bytes"} - manifest.keys()
    if missing:
        raise ValueError(f"{storage.join(root, MANIFEST)} lacks {', '.join(sorted(missing))}")
    fs, inner = storage.filesystem(root)
    found = {Path(entry["name"]).name: entry["size"] for entry in fs.ls(inner, detail=True)}
    for name, size in dataset_files(manifest).items():
        if name not in found:
            raise FileNotFoundError(f"{root}: {name} is in the manifest but missing; sync the dataset again")
        if found[name] != size:
            raise ValueError(
                f"{root}: {name} is {found[name]} bytes but the manifest says {size} "
                "(truncated, or from another dataset); write or sync the dataset again"
            )
    if sum(shard["frames"] for shard in manifest["shards"]) != manifest["num_frames"]:
        raise ValueError(f"{storage.join(root, MANIFEST)}: its shards do not add up to its num_frames")
    return manifest


class ShardedFrames:
    """(N, H, W, 3) uint8 frames read from shards on demand; indexes like a numpy array with an int, a
    slice or an integer array of any shape."""

    def __init__(self, root: str | os.PathLike, manifest: dict):
        self.root = root
        self.shape = (manifest["num_frames"], *manifest["frame_shape"])
        self.dtype = np.dtype(manifest["dtype"])
        self.ndim = len(self.shape)
        self._shards = manifest["shards"]
        self._starts = np.cumsum([0] + [shard["frames"] for shard in self._shards])
        self._frame_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self._opened: dict[int, tuple[Path, int]] = {}  # shard -> (local file, offset of its data)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        frames = self[:]
        return frames if dtype is None else frames.astype(dtype)

    def _open(self, shard: int) -> tuple[Path, int]:
        if shard not in self._opened:
            record = self._shards[shard]
            local = storage.local_copy(storage.join(self.root, record["file"]), record["bytes"])
            with open(local, "rb") as f:
                read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                    np.lib.format.read_magic(f), np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(f)
                offset = f.tell()
            if shape != (record["frames"], *self.shape[1:]) or dtype != self.dtype:
                raise ValueError(
                    f"{self.root}: {record['file']} holds {shape} {dtype}, but the manifest says "
                    f"{(record['frames'], *self.shape[1:])} {self.dtype}"
                )
            self._opened[shard] = (local, offset)
        return self._opened[shard]

    def __getitem__(self, key) -> np.ndarray:
        shape, flat = flat_indices(key, len(self))
        out = np.empty((len(flat), *self.shape[1:]), self.dtype)
        order = np.argsort(flat, kind="stable")
        wanted = flat[order]
        shard_of = np.searchsorted(self._starts, wanted, side="right") - 1
        for shard in np.unique(shard_of):
            chosen = np.flatnonzero(shard_of == shard)  # positions in `wanted`
            local, offset = self._open(int(shard))
            within = wanted[chosen] - self._starts[shard]
            # One read per stretch of consecutive frames.
            stretches = np.split(np.arange(len(chosen)), np.flatnonzero(np.diff(within) != 1) + 1)
            with open(local, "rb") as f:
                for stretch in stretches:
                    first, count = int(within[stretch[0]]), len(stretch)
                    data = os.pread(f.fileno(), count * self._frame_bytes, offset + first * self._frame_bytes)
                    if len(data) != count * self._frame_bytes:
                        raise ValueError(f"{local}: shard ends early; sync the dataset again")
                    out[order[chosen[stretch]]] = np.frombuffer(data, self.dtype).reshape(
                        count, *self.shape[1:]
                    )
        return out.reshape(*shape, *self.shape[1:])


class ShardedFramesDataset(FramesDataset):
    """A FramesDataset whose frames stay in their shards (local or remote) until a batch asks for them."""

    def __init__(self, root: str | os.PathLike):
        manifest = read_manifest(root)
        if tuple(manifest["frame_shape"]) != (*FRAME_HW, 3):
            raise ValueError(
                f"{root} holds {manifest['frame_shape']} frames, not the Game Boy's {[*FRAME_HW, 3]}"
            )
        index = np.load(storage.local_copy(storage.join(root, INDEX), manifest["index_bytes"]))
        self.frames = ShardedFrames(root, manifest)
        self.run_id = index["run_id"]
        self.frame_index = index["frame_index"]
        self.segment = index["segment"]
        self.file_names = list(index["file_names"])
        self.run_names = [run["name"] for run in manifest["runs"]]
        self.root = root
        self.skipped = []
        self.manifest = manifest
        if len(self.run_id) != len(self.frames):
            raise ValueError(
                f"{root}: {INDEX} describes {len(self.run_id)} frames, the manifest {len(self.frames)}"
            )

    def run_metadata(self, run: int) -> dict | None:
        record = self.manifest["runs"][run]["metadata"]
        return (
            None
            if record is None
            else json.loads(storage.read_bytes(storage.join(self.root, record["file"])))
        )


@dataclass
class Args:
    frames: tyro.conf.Positional[Path]
    """Frames folder to shard: <frames>/<run>/*.png|jpg (data/make_speedruns.py, data/extract_frames.py)."""
    out: tyro.conf.Positional[str]
    """Where the sharded dataset goes: a new folder, or a storage URL (s3://bucket/prefix, ...)."""
    shard_size: int = 1024
    """Frames per shard (1024 frames of 160x144 RGB are 68 MiB)."""
    resize: bool = False
    """Scale frames that are not 160x144 to it (without this flag they are refused)."""


def main(args: Args) -> dict:
    with one_line_errors(args.out, plain=DATASET_ERRORS):
        manifest = write_shards(args.frames, args.out, args.shard_size, args.resize)
    print(
        f"{args.out}: {manifest['num_frames']} frames of {len(manifest['runs'])} runs "
        f"in {len(manifest['shards'])} shards of up to {args.shard_size}"
    )
    return manifest


if __name__ == "__main__":
    main(tyro.cli(Args))
