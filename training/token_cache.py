"""The frozen encoder's tokens of frames it has seen before, without running it again.

A Game Boy screen often repeats exactly: a text box waiting for A, a player standing still, the title.
The cache keys each frame by a hash of its bytes, encodes only the frames it has not seen, and keeps
the most recently used `capacity` entries. Misses are encoded in batches padded to a power of two, so
the encoder compiles for a handful of batch sizes, not one per miss count.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import numpy as np


class TokenCache:
    """`tokens(frames) -> (N, rows, cols) int32`, the same as `encode(frames)` on every frame.

    encode: uint8 frames (B, H, W, C) -> token ids (B, rows, cols), e.g. a jitted encoder.
    """

    def __init__(self, encode: Callable[[np.ndarray], np.ndarray], capacity: int = 65_536):
        if capacity < 1:
            raise ValueError(f"TokenCache capacity must be >= 1, got {capacity}")
        self.encode = encode
        self.capacity = capacity
        self.entries: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(frame: np.ndarray) -> bytes:
        return hashlib.sha1(np.ascontiguousarray(frame).data).digest()  # the CPU's SHA instructions: ~12 us

    def tokens(self, frames: np.ndarray) -> np.ndarray:
        keys = [self.key(frame) for frame in frames]
        found = [self.entries.get(key) for key in keys]
        missing = [i for i, tokens in enumerate(found) if tokens is None]
        first_of = {}  # identical frames within one batch are encoded once
        for i in missing:
            first_of.setdefault(keys[i], i)
        unique = list(first_of.values())
        self.hits += len(frames) - len(unique)  # a miss is a frame the encoder runs on
        self.misses += len(unique)
        if missing:
            bucket = 1 << (len(unique) - 1).bit_length()
            batch = frames[unique + [unique[0]] * (bucket - len(unique))]
            encoded = np.asarray(self.encode(batch))[: len(unique)]
            for i, tokens in zip(unique, encoded):
                self.entries[keys[i]] = tokens
            for i in missing:
                found[i] = self.entries[keys[i]]
        for key in keys:
            self.entries.move_to_end(key)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
        return np.stack(found)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def take_counts(self) -> tuple[int, int]:
        """(hits, misses) since the last call, which resets them."""
        counts = (self.hits, self.misses)
        self.hits = self.misses = 0
        return counts
