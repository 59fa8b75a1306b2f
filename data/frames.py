"""Frames dataset: the speedrun frames of Phases 1 and 2, held in memory as uint8.

Layout on disk: `<root>/<run>/<frame>.png|jpg`, frames sorted by file name inside each
run, runs sorted by directory name. A root holding images directly is read as one run.
Run boundaries matter: (t, t+1) pairs for the dynamics model and (earlier, later) pairs
for the progress reward never cross from one run into another.

A run's `metadata.json` (written by data/extract_frames.py) may give each frame a
`segment`: labeled spans of a video with gaps between them. (t, t+1) pairs stay inside
a segment; frame order across segments of a run is still time order.

Frames stay uint8 on the host; the training step converts them to float on the device. A
FramesDataset holds every frame in memory (the 5 EmuQuest speedruns: ~3.5K frames, 250 MB);
data/shards.py keeps a larger dataset in shards on disk or in a bucket and reads batch by batch.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from envs.actions import ACTION_NAMES

FRAME_HW = (144, 160)  # Game Boy screen, (height, width)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _image_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _segments(run_dir: Path) -> dict[str, int]:
    """File name -> labeled segment, from the run's metadata.json if it has them."""
    metadata = run_dir / "metadata.json"
    if not metadata.is_file():
        return {}
    frames = json.loads(metadata.read_text()).get("frames", [])
    return {record["file"]: record["segment"] for record in frames if "segment" in record}


def _read_rgb(path: Path, image_hw: tuple[int, int], resize: bool) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB; None if it cannot be decoded. A frame of another size is scaled with
    INTER_AREA when `resize`, else refused: a silently scaled frame is rarely what the user meant."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    if bgr.shape[:2] != image_hw:
        if not resize:
            raise ValueError(
                f"{path} is {bgr.shape[1]}x{bgr.shape[0]}, "
                f"not the Game Boy screen's {image_hw[1]}x{image_hw[0]}; "
                "pass --resize to scale frames to it, or extract them with data/extract_frames.py"
            )
        bgr = cv2.resize(bgr, (image_hw[1], image_hw[0]), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def list_runs(root: str | Path) -> dict[str, list[Path]]:
    """Run name -> its image files in frame order: `<root>/<run>/*.png|jpg`, or `root` itself as one run
    when it holds images directly. One-line FileNotFoundError when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"frames directory {root} does not exist; "
            "make it with `uv run python data/make_speedruns.py` "
            "or pass --data <dir with run_XX/*.png>"
        )
    runs = {
        d.name: _image_files(d) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
    }
    runs = {name: files for name, files in runs.items() if files}
    if not runs and _image_files(root):
        runs = {root.name: _image_files(root)}
    if not runs:
        raise FileNotFoundError(f"no .png/.jpg frames found in {root} or its run subdirectories")
    return runs


@dataclass
class FolderFrame:
    """One decoded frame of a frames folder and where it sits."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    run: int  # index into the runs of `list_runs`
    position: int  # the file's position in its run
    segment: int
    file_name: str


def read_folder(
    root: str | Path,
    runs: dict[str, list[Path]],
    image_hw: tuple[int, int] = FRAME_HW,
    show_progress: bool = True,
    resize: bool = False,
    skipped: list[Path] | None = None,
) -> Iterator[FolderFrame]:
    """The frames of `runs` (from `list_runs(root)`) one at a time, in run and frame order. Images that
    cannot be decoded are appended to `skipped` and left out."""
    total = sum(len(files) for files in runs.values())
    with tqdm(total=total, desc=f"reading {root}", unit="frame", disable=not show_progress) as bar:
        for run, files in enumerate(runs.values()):
            segment_of_file = _segments(files[0].parent)
            for position, path in enumerate(files):
                image = _read_rgb(path, image_hw, resize)
                bar.update()
                if image is None:
                    if skipped is not None:
                        skipped.append(path)
                    continue
                yield FolderFrame(image, run, position, segment_of_file.get(path.name, 0), path.name)


def warn_skipped(root: str | Path, skipped: list[Path]) -> None:
    if skipped:
        shown = ", ".join(str(path.relative_to(root)) for path in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) in {root}: {shown}{more}", stacklevel=3)


class FramesDataset:
    """All frames of all runs as one array, plus where each frame sits in its run.

    Attributes:
        frames: (N, H, W, 3) uint8 RGB.
        run_id: (N,) int32, index into `run_names`.
        frame_index: (N,) int32, position of the frame's file inside its run (0, 1, 2, ...); an
            unreadable file leaves a gap, so frames on either side of it are not neighbours.
        segment: (N,) int32, labeled span of the run the frame belongs to (0 without labels).
        file_names: (N,) the image file name of each frame inside its run directory.
        run_names: name of each run directory.
        skipped: paths of the images that could not be decoded and were left out.
    """

    def __init__(
        self,
        root: str | Path,
        image_hw: tuple[int, int] = FRAME_HW,
        show_progress: bool = True,
        resize: bool = False,
    ):
        runs = list_runs(root)
        skipped: list[Path] = []
        records = list(read_folder(root, runs, image_hw, show_progress, resize, skipped))
        if not records:
            total = sum(len(files) for files in runs.values())
            raise ValueError(f"none of the {total} images in {root} could be decoded")
        warn_skipped(root, skipped)
        self.frames = np.stack([r.image for r in records])
        self.run_id = np.asarray([r.run for r in records], np.int32)
        self.frame_index = np.asarray([r.position for r in records], np.int32)
        self.segment = np.asarray([r.segment for r in records], np.int32)
        self.file_names = [r.file_name for r in records]
        self.run_names = list(runs)
        self.run_dirs = [files[0].parent for files in runs.values()]
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.frames)

    def run_metadata(self, run: int) -> dict | None:
        """The run's metadata.json (data/make_speedruns.py, data/extract_frames.py), None without one."""
        path = self.run_dirs[run] / "metadata.json"
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def num_runs(self) -> int:
        return len(self.run_names)

    def run_indices(self, run: int) -> np.ndarray:
        """Dataset indices of one run's frames, in frame order."""
        return np.flatnonzero(self.run_id == run)

    def resolve_run(self, run: str | int) -> int:
        """Run number from a run name, a number, or -1 for the last run."""
        if isinstance(run, str) and run in self.run_names:
            return self.run_names.index(run)
        try:
            number = int(run)
        except ValueError:
            number = None
        if number is None or not -self.num_runs <= number < self.num_runs:
            raise ValueError(f"run {run!r} is not one of {self.run_names} (or an index into them)")
        return number % self.num_runs

    def split_indices(self, holdout_run: int) -> tuple[np.ndarray, np.ndarray]:
        """(train indices, held-out indices): every frame of `holdout_run` goes to held-out."""
        held_out = self.run_id == holdout_run
        return np.flatnonzero(~held_out), np.flatnonzero(held_out)

    def next_frame_pairs(self, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(t, t+1) dataset index pairs with both frames in `indices` and in the same run and segment."""
        indices = np.arange(len(self)) if indices is None else np.sort(indices)
        t, t1 = indices[:-1], indices[1:]
        same_run = (
            (self.run_id[t] == self.run_id[t1])
            & (self.segment[t] == self.segment[t1])
            & (self.frame_index[t1] == self.frame_index[t] + 1)
        )
        return t[same_run], t1[same_run]

    def batches(
        self,
        batch_size: int,
        rng: np.random.Generator,
        indices: np.ndarray | None = None,
        skip: int = 0,
        rows: slice = slice(None),
    ) -> Iterator[np.ndarray]:
        """One shuffled epoch of (batch_size, H, W, 3) uint8 frames; the last partial batch is dropped
        so every step has the same shape (one compile). `skip` leaves out the epoch's first batches
        (a run resumed mid-epoch), drawing the same order. `rows` reads only those rows of every batch
        (one process's share of it)."""
        indices = np.arange(len(self)) if indices is None else indices
        order = rng.permutation(indices)
        for start in range(skip * batch_size, len(order) - batch_size + 1, batch_size):
            yield self.frames[np.sort(order[start : start + batch_size])[rows]]

    def pairs(
        self, batch_size: int, rng: np.random.Generator, indices: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One shuffled epoch of consecutive-frame pairs (frames t, frames t+1), each (B, H, W, 3)."""
        t, t1 = self.next_frame_pairs(indices)
        order = rng.permutation(len(t))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            chosen = order[start : start + batch_size]
            yield self.frames[t[chosen]], self.frames[t1[chosen]]

    def order_pair_indices(
        self,
        count: int,
        rng: np.random.Generator,
        min_gap: int,
        indices: np.ndarray | None = None,
        gaps: str = "uniform",
    ) -> tuple[np.ndarray, np.ndarray]:
        """`count` random (earlier, later) dataset index pairs from the same run, at least
        `min_gap` frames apart (gaps counted in the frames of `indices`).

        gaps="uniform": one frame is drawn uniformly among frames that have a partner, the
        other uniformly among the frames of its run far enough away on either side, so most
        pairs are far apart. gaps="log": a run is drawn by its length, the gap log-uniformly
        in [min_gap, run length), then the earlier frame uniformly; pairs a few steps apart
        are then as common as pairs a whole map apart."""
        if gaps not in ("uniform", "log"):
            raise ValueError(f'gaps must be "uniform" or "log", got {gaps!r}')
        indices = np.arange(len(self)) if indices is None else indices
        # Sort by (run, frame): each run is then a contiguous block and `rank` counts within it.
        indices = indices[np.lexsort((self.frame_index[indices], self.run_id[indices]))]
        runs, run_start, run_length = np.unique(self.run_id[indices], return_index=True, return_counts=True)
        if not (
            run_length > min_gap
        ).any():  # a frame has a partner exactly when its run is longer than min_gap
            raise ValueError(f"no run has two frames at least min_gap={min_gap} apart; lower --min-gap")
        if gaps == "log":
            runs_with_pairs = np.flatnonzero(run_length > min_gap)
            weights = run_length[runs_with_pairs] / run_length[runs_with_pairs].sum()
            run = rng.choice(runs_with_pairs, size=count, p=weights)
            gap = np.exp(rng.uniform(np.log(min_gap), np.log(run_length[run]))).astype(np.int64)
            gap = np.clip(gap, min_gap, run_length[run] - 1)
            earlier = run_start[run] + rng.integers(0, run_length[run] - gap)
            return indices[earlier], indices[earlier + gap]
        block = np.searchsorted(runs, self.run_id[indices])
        rank = np.arange(len(indices)) - run_start[block]
        length = run_length[block]
        below = np.maximum(rank - min_gap + 1, 0)  # partners at ranks 0 .. rank - min_gap
        above = np.maximum(length - rank - min_gap, 0)  # partners at ranks rank + min_gap .. length - 1
        has_partner = np.flatnonzero(below + above > 0)
        first = rng.choice(has_partner, size=count)
        draw = rng.integers(below[first] + above[first])
        partner_rank = np.where(draw < below[first], draw, rank[first] + min_gap + draw - below[first])
        second = run_start[block[first]] + partner_rank
        earlier, later = np.minimum(first, second), np.maximum(first, second)
        return indices[earlier], indices[later]


def flat_indices(key, length: int) -> tuple[tuple[int, ...], np.ndarray]:
    """A numpy-style index into axis 0 of `length` frames (an int, a slice, or an int or bool array of
    any shape) as (the shape it gives the result's leading axes, its indices flattened into [0, length)).
    IndexError when it is out of range."""
    if isinstance(key, slice):
        indices = np.arange(length)[key]
    else:
        indices = np.asarray(key)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        if indices.dtype.kind not in "iu":
            raise IndexError(f"frames can be indexed by ints, slices or int arrays, not {indices.dtype}")
    if indices.size and not (-length <= indices.min() and indices.max() < length):
        raise IndexError(f"frame index out of range for {length} frames")
    return indices.shape, indices.reshape(-1) % max(length, 1)


class ConcatenatedFrames:
    """Frame arrays end to end along axis 0, read on demand: a sharded dataset's frames followed by its
    branches' stay out of memory until a batch asks for them. Indexes like a numpy array (an int, a slice
    or an integer array of any shape)."""

    def __init__(self, parts: list):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(part) for part in parts])
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        frames = np.concatenate([np.asarray(part) for part in self.parts])
        return frames if dtype is None else frames.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        shape, flat = flat_indices(key, len(self))
        out = np.empty((len(flat), *self.shape[1:]), self.dtype)
        part_of = np.searchsorted(self.starts, flat, side="right") - 1
        for part in np.unique(part_of):
            chosen = part_of == part
            out[chosen] = self.parts[part][flat[chosen] - self.starts[part]]
        return out.reshape(*shape, *self.shape[1:])


@dataclass
class Branches:
    """Random-play branches off the runs of a FramesDataset (data/make_speedruns.py --branch-every).

    Attributes:
        frames: (B, H, W, 3) uint8 RGB, one frame per branch step (after that step).
        run_id: (B,) int32, the run the branch left, as in the dataset.
        below: (B,) int64, dataset index of the run's frame from the moment of that frame:
            the frame it should score below.
        start: (B,) int64, dataset index of the run's last frame before the branch left it
            (-1 when metadata.json predates the field).
        step: (B,) int32, the frame's step inside its branch (1, 2, ...; 0 when metadata.json predates the
            field).
        action: (B,) int32, the env action of that step, an index into envs.actions.ACTION_NAMES (-1 when
            metadata.json predates the field).
    """

    frames: np.ndarray
    run_id: np.ndarray
    below: np.ndarray
    start: np.ndarray
    step: np.ndarray
    action: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def load_branches(root: str | Path, dataset: FramesDataset, image_hw: tuple[int, int] = FRAME_HW) -> Branches:
    """Reads `<root>/<run>/metadata.json` and its PNGs for every run of `dataset` that has branches."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"branches directory {root} does not exist; make it with "
            "`uv run python data/make_speedruns.py --branch-every 48 --branch-steps 24`"
        )
    index_of = {(run, name): i for i, (run, name) in enumerate(zip(dataset.run_id, dataset.file_names))}
    frames, run_id, below, start, step, action = [], [], [], [], [], []
    for run, name in enumerate(dataset.run_names):
        metadata = root / name / "metadata.json"
        if not metadata.is_file():
            continue
        for record in json.loads(metadata.read_text())["branches"]:
            if (run, record["below"]) not in index_of:
                raise ValueError(
                    f"{metadata}: branch {record['file']} ranks below {record['below']}, "
                    f"which is not a frame of run {name} in the frames directory"
                )
            image = _read_rgb(root / name / record["file"], image_hw, resize=False)
            if image is None:
                raise ValueError(f"{root / name / record['file']}: missing or unreadable branch frame")
            frames.append(image)
            run_id.append(run)
            below.append(index_of[(run, record["below"])])
            start.append(index_of.get((run, record.get("start")), -1))
            step.append(record.get("step", 0))  # 0: metadata.json predates the field
            action.append(ACTION_NAMES.index(record["action"]) if "action" in record else -1)
    if not frames:
        raise FileNotFoundError(f"no branches in {root} for the runs {dataset.run_names}")
    return Branches(
        np.stack(frames),
        np.asarray(run_id, np.int32),
        np.asarray(below, np.int64),
        np.asarray(start, np.int64),
        np.asarray(step, np.int32),
        np.asarray(action, np.int32),
    )
