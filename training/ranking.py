"""Phase 2's ranking: held-out metrics of a progress score, the random-play branch pairs mixed into
training batches, and the bags of seen tokens a --seen-tokens head reads."""

from __future__ import annotations

import numpy as np

from data.frames import Branches, FramesDataset
from models.reward import mark_seen


def spearman(scores: np.ndarray, order: np.ndarray) -> float:
    """Spearman rank correlation: Pearson correlation of the ranks (ties get their mean rank)."""

    def ranks(x: np.ndarray) -> np.ndarray:
        sorter = np.argsort(x, kind="stable")
        ranked = np.empty(len(x))
        ranked[sorter] = np.arange(len(x))
        _, group, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(group, weights=ranked)
        return sums[group] / counts[group]

    a, b = ranks(np.asarray(scores, np.float64)), ranks(np.asarray(order, np.float64))
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def ranking_metrics(scores: np.ndarray, frame_index: np.ndarray, min_gap: int) -> dict:
    """Pairwise accuracy over every pair of one run at least min_gap apart, and Spearman vs frame index."""
    later = (
        frame_index[None, :] - frame_index[:, None] >= min_gap
    )  # [i, j]: frame j comes min_gap after frame i
    correct = scores[None, :] > scores[:, None]
    return {
        "pairwise_accuracy": float(correct[later].mean()),
        "spearman": spearman(scores, frame_index),
        "pairs": int(later.sum()),
    }


def branch_pairs(
    branch: np.ndarray, branches: Branches, offset: int, rng: np.random.Generator, drift_fraction: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) observation indices, shaped like `branch`, of pairs that rank branch frame b
    (observation offset + b) below a frame that should score higher: its run's frame from the same
    moment, or, for a `drift_fraction` of them, an earlier frame of its own trajectory (an earlier
    step of the branch, or the run frame it left from), as D-REX ranks noisier play lower. Random
    play then cannot raise the score as it goes, which a reward reading the episode's seen tokens
    would otherwise learn from every room the branches wander through."""
    low, high = offset + branch, branches.below[branch]
    if drift_fraction > 0:
        steps = branches.step[branch]
        back = rng.integers(1, steps + 1)  # steps back; back == step is the run frame it left from
        earlier = np.where(back < steps, offset + branch - back, branches.start[branch])
        high = np.where(rng.random(branch.shape) < drift_fraction, earlier, high)
    return low, high


def mix_in_branches(
    earlier: np.ndarray, later: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Appends (low, high) branch pairs to every batch of (earlier, later) order pairs.

    earlier, later: (steps * k,) observation indices of order pairs, batch after batch.
    low, high: (steps, m) observation indices of each batch's branch pairs (`branch_pairs`).
    Returns (steps * (k + m),) arrays: each batch is its k order pairs, then its m branch pairs."""
    steps = len(low)
    return (
        np.concatenate([earlier.reshape(steps, -1), low], axis=1).ravel(),
        np.concatenate([later.reshape(steps, -1), high], axis=1).ravel(),
    )


def seen_token_bags(
    tokens: np.ndarray, data: FramesDataset, branches: Branches | None, vocab_size: int
) -> np.ndarray:
    """(N, vocab) uint8 bags of seen tokens for `tokens` (N, 9, 10): the run frames, then the
    branch frames. A run frame's bag holds every token of its run up to and including it; a
    branch frame's, its run's bag when the branch left plus the branch's frames so far."""
    bags = np.zeros((len(tokens), vocab_size), np.uint8)
    mark_seen(bags, tokens)
    for run in range(data.num_runs):
        in_order = data.run_indices(run)
        bags[in_order] = np.maximum.accumulate(bags[in_order], axis=0)
    if branches is not None:
        for b in range(len(branches)):  # a branch's frames are consecutive, steps 1, 2, ...
            before = len(data) + b - 1 if branches.step[b] > 1 else branches.start[b]
            bags[len(data) + b] |= bags[before]
    return bags
