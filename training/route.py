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
beside the guide, and the gate's text matches the guide's (bench/agent.py measured both).

The window alone (`scene_change` 0) has two faults. A text shorter than it can be skipped, because the
room looks the same before the text and after it: the professor's 25 frames fit in a window of 30, so
an agent beside him was credited with the key it never took. And an agent that steps off the run's
tiles falls behind the run for good. With `scene_change`, the run is cut into scenes where
consecutive frames differ by more than that many tokens: a text box opening (40 of the 90 tokens on
EmuQuest), a page turning (23) or a new room (90), against at most 6 for a step (8 in tall grass). An
env may match anything in the rest of its scene and the `window` frames after it: inside a room it is
credited on any tile the run walked on, in any order and at any pace. But a frame that still matches a
frame of its own scene stays in that scene, so standing where the run stood before a text does not
count as after it. PPO on EmuQuest got further in training with scenes but no further from power-on
(BENCHMARKS.md), so they are off unless asked for.

Scenes still let a text be skipped where the player's frame beside the speaker (facing away, say)
matches only the run's frames after the text. `text_barrier` closes that: a page (a scene that a change
of TEXT_CHANGE tokens opens: a text box opening, 40 on EmuQuest, a page turning, 23, or a box closing
on the room, 40-49) at least `text_barrier` frames long ends every env's reach before it, so each page
must be matched in turn. Shorter ones are left out: the frame a closing box shows for a moment is a
page of its own, and an agent stepping every 7.5 saved frames steps over it.

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
# Tokens changed where a text page begins: more than a step (<= 8), less than a new room (90).
TEXT_CHANGE = (21, 60)


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


def route_goal(routes: list[Route]) -> float:
    """The score of the game's end as the speedruns show it: the lowest of their last frames' scores,
    so that an env at any run's end has reached it. The reward scores the runs' ends unequally, so the
    higher-scored runs pass it a few steps early (on EmuQuest, 18-30 saved frames, 2-4 agent steps,
    before their final room)."""
    return float(min(route.scores[-1] for route in routes))


class RouteTracker:
    """Each env's position on every route: `positions` (num_envs, num_routes) int32, the index of the
    furthest frame of each route matched in order (0 at power-on). Plain data for checkpoints."""

    def __init__(
        self,
        routes: list[Route],
        num_envs: int,
        window: int,
        tolerance: int,
        scene_change: int = 0,
        text_barrier: int = 0,
    ):
        if not routes:
            raise ValueError("a route tracker needs at least one run")
        if window < 1 or tolerance < 0 or scene_change < 0 or text_barrier < 0:
            raise ValueError(
                f"route window must be >= 1, tolerance, scene change and text barrier >= 0, got {window}, "
                f"{tolerance}, {scene_change} and {text_barrier}"
            )
        self.routes = routes
        self.tolerance = tolerance
        self.scene_change = scene_change
        # scenes[r]: (first, last), each frame's scene's first and last frame in route r.
        self.scenes = [scene_bounds(route.tokens, scene_change) for route in routes]
        # reach[r][t]: the last frame of route r an env standing at frame t may match next.
        self.reach = [
            np.minimum(last + window, len(route.tokens) - 1) for route, (_, last) in zip(routes, self.scenes)
        ]
        if text_barrier:
            self.reach = [
                np.minimum(reach, barrier_limits(route.tokens, text_barrier))
                for route, reach in zip(routes, self.reach)
            ]
        self.positions = np.zeros((num_envs, len(routes)), np.int32)
        self.last_frames = np.array([max(len(route.tokens) - 1, 1) for route in routes], np.float32)

    def restart(self, envs: np.ndarray, start_positions: dict[int, np.ndarray]):
        """Envs (bool mask) start new episodes at each route's first frame, or at `start_positions`
        {env: positions} (curriculum states)."""
        self.positions[envs] = 0
        for env, positions in start_positions.items():
            self.positions[env] = positions

    def advance(self, tokens: np.ndarray, envs: np.ndarray | None = None):
        """Moves every env (tokens (N, rows, cols), its current frames), or the envs of the index array
        `envs` (tokens (len(envs), rows, cols)), to the furthest frame of each route within its reach
        that the frame matches; with scenes, to the furthest in its own scene when the frame matches
        any frame of that scene."""
        moved = slice(None) if envs is None else np.asarray(envs)
        grids = tokens.reshape(len(tokens), -1)
        for r, route in enumerate(self.routes):
            position, (first, last) = self.positions[moved, r], self.scenes[r]
            start = first[position] if self.scene_change else position + 1  # the scene, to tell a stay
            counts = np.maximum(self.reach[r][position] + 1 - start, 0)  # (N,) frames looked at
            env = np.repeat(np.arange(len(grids)), counts)
            frame = np.arange(counts.sum()) + np.repeat(start - np.cumsum(counts) + counts, counts)
            matched = (route.tokens[frame] != grids[env]).sum(-1) <= self.tolerance
            stays = matched & (frame <= last[position][env])  # never without scenes: frames start after
            in_scene = np.zeros(len(grids), bool)
            in_scene[env[stays]] = True
            kept = stays | (matched & ~in_scene[env])
            furthest = position.copy()
            np.maximum.at(furthest, env[kept], frame[kept].astype(np.int32))
            self.positions[moved, r] = furthest

    def fraction(self, positions: np.ndarray | None = None) -> np.ndarray:
        """(N,) float32 in [0, 1]: how far along the speedruns each env is, its furthest matched frame as a
        fraction of that frame's run, over the routes; of `positions` (N, num_routes) if given."""
        if positions is None:
            positions = self.positions
        positions = np.asarray(positions).reshape(-1, len(self.routes))
        return (positions / self.last_frames).max(axis=1).astype(np.float32)

    def scores(self) -> np.ndarray:
        """(N,) each env's best score over the routes' matched frames."""
        matched = [route.scores[self.positions[:, r]] for r, route in enumerate(self.routes)]
        return np.max(np.stack(matched, axis=1), axis=1)


def scene_bounds(tokens: np.ndarray, scene_change: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, last): (T,) each frame's scene's first and last frame, a scene ending where the next frame
    differs by more than `scene_change` tokens (0: every frame is its own scene)."""
    frames = np.arange(len(tokens))
    if not scene_change:
        return frames, frames
    cuts = np.flatnonzero((tokens[1:] != tokens[:-1]).sum(-1) > scene_change)
    last_frames = np.append(cuts, len(tokens) - 1)  # each scene's last frame, increasing
    scene = np.searchsorted(last_frames, frames)
    return np.append(0, cuts + 1)[scene], last_frames[scene]


def barrier_limits(tokens: np.ndarray, min_frames: int) -> np.ndarray:
    """(T,) for each frame of a run (tokens (T, cells)), the last frame of the first text page after it
    that is at least `min_frames` long (the run's last frame where none follows)."""
    low, high = TEXT_CHANGE
    changed = (tokens[1:] != tokens[:-1]).sum(-1)
    _, last = scene_bounds(tokens, low - 1)
    starts = np.flatnonzero((changed >= low) & (changed <= high)) + 1
    starts = starts[last[starts] + 1 - starts >= min_frames]
    following = np.searchsorted(starts, np.arange(len(tokens)), side="right")  # index of the next page
    page_ends = np.append(last[starts], len(tokens) - 1)
    return page_ends[following]
