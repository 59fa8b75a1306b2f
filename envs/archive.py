"""Cell archive: Go-Explore's curriculum, a saved state for every coarse screen the agent has reached.

A cell is what a screen looks like at a glance plus how far along the reward model thinks it is: the
gray frame shrunk to `grid` (rows, cols) by area averaging and cut to `levels` intensities (Go-Explore's
downscaled cells), and the score's band, floor(score / band). The first env to reach a cell saves its
emulator state there. A reset draws a cell with weight

    exp((score - best score) / band) / sqrt(1 + seen)

so a cell one band further along is e (~2.7) times as likely and a cell seen 99 times a tenth as likely
as one not yet seen: resets go to the frontier of what is new and what the reward calls progress. `seen`
counts the scored frames that landed in the cell, by any env, including the one that found it and
those of envs started there.

When full, a new cell replaces the one with the lowest weight (the oldest among ties).

It is a CurriculumPool to VecGameBoy (states, payloads, reset_picks), so the env needs no change; its
counts change only through `add` and `count`, which the trainer calls after a rollout (adds, then the
rollout's sightings), so runs stay deterministic while env groups step in threads. Everything is plain
data for checkpoints.
"""

from __future__ import annotations

import cv2
import numpy as np

from envs.curriculum import CurriculumPool

CELL_GRID = (9, 10)  # one cell pixel per 16x16 block of the 144x160 screen
CELL_LEVELS = 8


def screen_keys(frames: np.ndarray, grid=CELL_GRID, levels=CELL_LEVELS) -> list[bytes]:
    """frames (N, 144, 160, C) uint8 (C = 1: gray, 3: RGB) -> what each frame looks like at a glance,
    grid[0] * grid[1] bytes per frame."""
    keys = []
    for frame in frames:
        gray = frame[..., 0] if frame.shape[-1] == 1 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        small = cv2.resize(gray, (grid[1], grid[0]), interpolation=cv2.INTER_AREA) // (256 // levels)
        keys.append(small.astype(np.uint8).tobytes())
    return keys


def cell_keys(frames: np.ndarray, scores, band: float, grid=CELL_GRID, levels=CELL_LEVELS) -> list[bytes]:
    """frames (N, 144, 160, C) uint8, scores (N,) -> one key per frame: its screen key and score band."""
    return [
        screen + np.int32(np.floor(score / band)).tobytes()
        for screen, score in zip(screen_keys(frames, grid, levels), scores)
    ]


class CellArchive(CurriculumPool):
    def __init__(self, capacity: int = 256, band: float = 1.0):
        if not band > 0:
            raise ValueError(f"CellArchive band must be > 0, got {band}")
        super().__init__(capacity, temperature=band)
        self.band = band
        self.keys: list[bytes] = []
        self.seen: list[int] = []
        self.position: dict[bytes, int] = {}  # key -> its index in the lists, kept with them

    def __contains__(self, key: bytes) -> bool:
        return key in self.position

    def weights(self) -> np.ndarray:
        weights = self._raw_weights(self.scores, self.seen)
        return weights / weights.sum()

    def _raw_weights(self, scores, seen) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        return np.exp((scores - scores.max()) / self.band) / np.sqrt(1.0 + np.asarray(seen))

    def count(self, keys: list[bytes]):
        """One more sighting of each of these cells (keys not in the archive are ignored)."""
        for key in keys:
            if key in self.position:
                self.seen[self.position[key]] += 1

    def add(self, state: bytes, score: float, payload=None, key: bytes | None = None) -> bool:
        """Store the state of a cell not yet in the archive; returns False for a known cell, or when
        the archive is full and the newcomer would weigh least."""
        if key is None:
            raise ValueError("CellArchive.add needs the cell's key")
        if key in self:
            return False
        if len(self.states) >= self.capacity:
            # The newcomer, as its finding sighting will leave it; it is dropped if it would weigh least.
            weights = self._raw_weights([*self.scores, score], [*self.seen, 1])
            worst = int(np.argmin(weights))  # the first, i.e. the oldest, among ties
            if worst == len(self.states):
                return False
            for column in (self.states, self.scores, self.payloads, self.keys, self.seen):
                del column[worst]
            self.position = {k: i for i, k in enumerate(self.keys)}
        self.states.append(bytes(state))
        self.scores.append(float(score))
        self.payloads.append(payload)
        self.position[bytes(key)] = len(self.keys)
        self.keys.append(bytes(key))
        self.seen.append(0)  # the sighting that found it is counted with the others
        return True

    def to_dict(self) -> dict:
        return {**super().to_dict(), "band": self.band, "keys": list(self.keys), "seen": list(self.seen)}

    @classmethod
    def from_dict(cls, data: dict) -> CellArchive:
        archive = cls(capacity=int(data["capacity"]), band=float(data["band"]))
        archive._load_states(data)
        if not len(data["keys"]) == len(data["seen"]) == len(archive.states):
            raise ValueError("CellArchive.from_dict: keys, seen counts and states disagree")
        archive.keys = [bytes(k) for k in data["keys"]]
        archive.seen = [int(s) for s in data["seen"]]
        archive.position = {k: i for i, k in enumerate(archive.keys)}
        return archive
