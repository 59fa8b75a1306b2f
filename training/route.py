"""Progress along the speedruns, matched in order: a reward whose memory is where the episode is on
the route, not what it has seen.

A screen alone cannot say whether the guide has talked yet (the town looks the same before and
after), and a bag of seen tokens takes a look into a later room for progress. Following Aytar et al.
2018 ("Playing hard exploration games by watching YouTube"), each env keeps, per speedrun, the
furthest frame of that run it has matched *in order*: a frame counts only if its token grid is within
`tolerance` tokens of one of the next `window` frames of the run after the last match. A look into
the lab before the talk matches lab frames that lie far beyond the window, so it moves nothing; the
talk's own text boxes must be matched to get past them. The env's score is the reward model's score
of its furthest matched frame, as the model scored it in its run (with the run's own history for a
head that reads seen tokens), taken over the runs; at power-on every run stands at its first frame.

The tolerance is small because a step of the player changes only two of the 90 tokens, and one text
box differs from another in a few: at 2 or more, a player anywhere in town matches the run's frame
beside the guide, and the gate's text matches the guide's (bench/agent.py measured both). The window
of 30 saved frames is 4 agent steps of a scripted run, shorter than any talk's text.

The route is the speedruns' frames under the reward's encoder: `load_routes` encodes and scores them
once, at startup.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from data.frames import list_runs, read_folder, warn_skipped
from models.reward import mark_seen
from training.data import map_batches

ENCODE_BATCH = 64  # frames per encoder call; map_batches pads the last, so one compile


class Route(NamedTuple):
    """One speedrun as the tracker sees it."""

    tokens: np.ndarray  # (T, rows * cols) int32, the run's frames in order
    scores: np.ndarray  # (T,) float32, the reward model's score of each frame in its run


def load_routes(root: str | Path, progress) -> list[Route]:
    """The runs of a frames folder (`<root>/<run>/*.png`) as Routes, encoded and scored by
    `progress` (a LearnedProgress with a VQ backbone; with a bag the frames are scored with their
    run's seen tokens up to them). Raises ValueError for a reward without tokens."""
    if not progress.reads_tokens:
        raise ValueError("a route needs a reward model with the VQ backbone (its tokens are what is matched)")
    runs, skipped = list_runs(root), []
    frames_by_run: list[list[np.ndarray]] = [[] for _ in runs]
    for frame in read_folder(root, runs, skipped=skipped):
        frames_by_run[frame.run].append(frame.image)
    warn_skipped(root, skipped)
    routes = []
    for frames in frames_by_run:
        tokens = map_batches(progress.tokens, np.stack(frames), ENCODE_BATCH)
        if progress.bag_size:  # each frame's bag: every token its run has shown up to it
            seen = np.zeros((len(tokens), progress.bag_size), np.uint8)
            mark_seen(seen, tokens)
            bags = np.maximum.accumulate(seen, axis=0)
            scores = map_batches(lambda batch: progress.score_tokens(*batch), (tokens, bags), ENCODE_BATCH)
        else:
            scores = map_batches(progress.score_tokens, tokens, ENCODE_BATCH)
        routes.append(Route(tokens.reshape(len(tokens), -1).astype(np.int32), scores.astype(np.float32)))
    return routes


class RouteTracker:
    """Each env's position on every route: `positions` (num_envs, num_routes) int32, the index of the
    furthest frame of each route matched in order (0 at power-on). Plain data for checkpoints."""

    def __init__(self, routes: list[Route], num_envs: int, window: int, tolerance: int):
        if not routes:
            raise ValueError("a route tracker needs at least one run")
        if window < 1 or tolerance < 0:
            raise ValueError(f"route window must be >= 1 and tolerance >= 0, got {window} and {tolerance}")
        self.routes = routes
        self.window = window
        self.tolerance = tolerance
        self.positions = np.zeros((num_envs, len(routes)), np.int32)

    def restart(self, envs: np.ndarray, start_positions: dict[int, np.ndarray]):
        """Envs (bool mask) start new episodes at each route's first frame, or at `start_positions`
        {env: positions} (curriculum states)."""
        self.positions[envs] = 0
        for env, positions in start_positions.items():
            self.positions[env] = positions

    def advance(self, tokens: np.ndarray):
        """Moves every env (tokens (N, rows, cols), its current frames) to the furthest frame of each
        route within the window after its position that the frame matches."""
        grids = tokens.reshape(len(tokens), 1, -1)
        offsets = np.arange(1, self.window + 1)
        for r, route in enumerate(self.routes):
            ahead = self.positions[:, r : r + 1] + offsets  # (N, window)
            inside = ahead < len(route.tokens)
            distance = (route.tokens[np.minimum(ahead, len(route.tokens) - 1)] != grids).sum(-1)
            matched = inside & (distance <= self.tolerance)
            furthest = np.where(matched, ahead, -1).max(axis=1)
            self.positions[:, r] = np.maximum(self.positions[:, r], furthest)

    def scores(self) -> np.ndarray:
        """(N,) each env's best score over the routes' matched frames."""
        matched = [route.scores[self.positions[:, r]] for r, route in enumerate(self.routes)]
        return np.max(np.stack(matched, axis=1), axis=1)
