"""Frame pairs (x_t, x_{t+1}) and groups of k consecutive frames, for the latent action
model and the dynamics model.

Built on `data.frames.FramesDataset` (all frames as one uint8 array, runs and labeled
segments kept apart), so a group never crosses a run or a segment boundary.

Consecutive speedrun frames are often identical (the player waits, a text box sits
still). Such groups teach an action model nothing, so they can be dropped or kept as a
controlled fraction: a group counts as identical when every step inside it changes the
mean absolute pixel value by at most `identical_threshold` (0 = exactly equal frames).

When a run's metadata.json logs the buttons the speedrun bot pressed
(data/make_speedruns.py), `buttons[g]` holds the button pressed between each frame of
group g and the next, as an index into the env's actions (envs.actions.ACTION_NAMES).
It is ground truth for evaluating latent actions, never an input to training.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data.frames import FramesDataset
from envs.actions import ACTION_NAMES

NO_BUTTON = -1  # no log for this step (or no metadata)


def step_changes(frames: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(N-1,) mean absolute difference (0-255) between frames[i] and frames[i+1], over (N, H, W, C) uint8."""
    changes = np.empty(max(len(frames) - 1, 0), np.float32)
    for start in range(0, len(changes), chunk):
        stop = min(start + chunk, len(changes))
        current = frames[start:stop].astype(np.int16)
        following = frames[start + 1 : stop + 1].astype(np.int16)
        changes[start:stop] = np.abs(following - current).mean(axis=(1, 2, 3))
    return changes


def buttons_between_saved_frames(metadata: dict) -> dict[str, str]:
    """File name of saved frame t -> the button pressed between it and saved frame t+1, from
    a data/make_speedruns.py metadata.json ("noop" when nothing was held).

    That file gives each saved frame's emulator `frame` and the `buttons` held while it was
    drawn, and every press in `presses` ({frame, button, frames_held}), since a tap can start
    and end between two saved frames. Between emulator frames f_t and f_t+1 the button is
    the earliest of the presses held at some frame of (f_t, f_t+1] and the buttons held at f_t+1.
    """
    records = metadata.get("frames", [])
    # (first frame held, last frame held, button); a press never released lasts to the end.
    presses = [
        (
            p["frame"],
            p["frame"] + p["frames_held"] - 1 if p["frames_held"] is not None else float("inf"),
            p["button"],
        )
        for p in metadata.get("presses", [])
    ]
    between = {}
    for record, following in zip(records, records[1:]):
        start, stop = record["frame"], following["frame"]
        candidates = [
            (max(first, start + 1), button)
            for first, last, button in presses
            if first <= stop and last > start
        ]
        candidates += [(stop, button) for button in following["buttons"]]
        between[record["file"]] = min(candidates)[1] if candidates else "noop"
    return between


def read_buttons(dataset: FramesDataset, button_names: tuple[str, ...] = ACTION_NAMES) -> np.ndarray | None:
    """(N,) button pressed between each dataset frame and the next saved frame of its run, as
    an index into button_names (NO_BUTTON where unknown), from runs whose metadata.json was
    written by data/make_speedruns.py. None if no run logs buttons."""
    buttons = np.full(len(dataset), NO_BUTTON, np.int32)
    found = False
    for run in range(dataset.num_runs):
        metadata = dataset.run_metadata(run)
        if metadata is None or "presses" not in metadata:
            continue  # not a speedrun bot's log (e.g. frames extracted from a video)
        button_of_file = buttons_between_saved_frames(metadata)
        found = True
        for index in dataset.run_indices(run):
            button = button_of_file.get(dataset.file_names[index])
            if button in button_names:
                buttons[index] = button_names.index(button)
    return buttons if found else None


class FrameGroups:
    """Every group of `group_size` consecutive frames inside one run and segment, after the
    identical-group filter.

    Attributes:
        indices: (G, group_size) dataset indices of each group's frames, in time order.
        changes: (G, group_size - 1) mean absolute change (0-255) of each step in the group.
        identical: (G,) bool, every step of the group changes at most identical_threshold.
        buttons: (G, group_size - 1) int32 button between consecutive frames (NO_BUTTON if
            unknown), or None without logged buttons. Evaluation only.
    """

    def __init__(
        self,
        dataset: FramesDataset,
        group_size: int = 2,
        identical_threshold: float = 0.0,
        keep_identical_fraction: float = 1.0,
        seed: int = 0,
        buttons: np.ndarray | None = None,
    ):
        if group_size < 2:
            raise ValueError(f"group_size must be at least 2 (a pair), got {group_size}")
        if not 0.0 <= keep_identical_fraction <= 1.0:
            raise ValueError(f"keep_identical_fraction must be in [0, 1], got {keep_identical_fraction}")
        self.dataset = dataset
        self.group_size = group_size

        # Dataset order is run by run, frame by frame, so a group is k neighbouring indices
        # whose every step stays in its run and segment and moves one frame forward.
        steps_ok = (
            (dataset.run_id[1:] == dataset.run_id[:-1])
            & (dataset.segment[1:] == dataset.segment[:-1])
            & (dataset.frame_index[1:] == dataset.frame_index[:-1] + 1)
        )
        num_starts = len(dataset) - group_size + 1
        offsets = np.arange(group_size - 1)
        if num_starts > 0:
            step_windows = steps_ok[np.arange(num_starts)[:, None] + offsets]
            starts = np.flatnonzero(step_windows.all(axis=1))
        else:
            starts = np.zeros(0, np.int64)
        all_changes = step_changes(dataset.frames)
        changes = all_changes[starts[:, None] + offsets]
        identical = (changes <= identical_threshold).all(axis=1)

        # Keep exactly round(fraction * count) identical groups, chosen at random.
        identical_ids = np.flatnonzero(identical)
        num_kept = round(keep_identical_fraction * len(identical_ids))
        kept_identical = np.random.default_rng(seed).choice(identical_ids, size=num_kept, replace=False)
        keep = ~identical
        keep[kept_identical] = True

        starts = starts[keep]
        self.indices = starts[:, None] + np.arange(group_size)
        self.changes = changes[keep]
        self.identical = identical[keep]
        self.buttons = None if buttons is None else buttons[starts[:, None] + offsets]

    @classmethod
    def from_root(
        cls,
        root: str | Path,
        button_names: tuple[str, ...] = ACTION_NAMES,
        show_progress: bool = True,
        **options,
    ) -> FrameGroups:
        """Read `<root>/<run>/*.png` and build the groups, with the logged buttons (as indices
        into button_names, the env's action order by default) where the runs have them."""
        dataset = FramesDataset(root, show_progress=show_progress)
        return cls(dataset, buttons=read_buttons(dataset, button_names), **options)

    def __len__(self) -> int:
        return len(self.indices)

    def frames(self, groups: np.ndarray) -> np.ndarray:
        """(B, group_size, H, W, 3) uint8 frames of the given group numbers."""
        return self.dataset.frames[self.indices[groups]]

    def pairs(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x_t, x_{t+1}), each (B, H, W, 3) uint8: the first two frames of the given groups."""
        frames = self.frames(groups)
        return frames[:, 0], frames[:, 1]

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One shuffled epoch of (group numbers (B,), frames (B, group_size, H, W, 3)); the last
        partial batch is dropped so every training step has the same shape."""
        order = rng.permutation(len(self))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            groups = order[start : start + batch_size]
            yield groups, self.frames(groups)
