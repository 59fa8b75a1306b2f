"""Does a reward model pay for wandering? The same screen, scored again later in an episode.

    uv run python pipeline.py        # once: the main job's checkpoints
    uv run python train_reward.py --backbone vq --seen-tokens \
        --tokenizer runs/pipeline/checkpoints/pretrained_tokenizer.pkl \
        --data runs/pipeline/speedruns/frames --branches runs/pipeline/speedruns/branches --epochs 200 \
        --pairs-per-epoch 768 --pair-gaps log --out-dir runs/seen_tokens
    uv run python bench/wander_reward.py \
        --rewards runs/pipeline/checkpoints/reward_vq.pkl runs/seen_tokens/reward_vq.pkl

PPO with `--progress-baseline best` (the main job's) is paid each episode's rise over its best
score so far. A one-frame reward gives a screen the same score whenever it shows, so walking in
circles earns nothing once the best tile is reached. A reward that reads the episode's bag of seen
tokens can score the same screen higher later, after more of the room has been shown: then
wandering pays as it goes, whether or not it leads anywhere. PPO with such a head never left the
house (BENCHMARKS.md).

Random play (uniform over the env's actions, PPO's env settings) from power-on, every env step
scored by PPO's own ProgressReward (a bag reward keeps each episode's bag, from the reset frame on,
as PPO does). In the house after the intro, standing on the same tile facing the same way in the
overworld shows the same screen (the game profile's RAM map says where; the reward models never
see it), so per reward model this reports:
- revisits: the score of each such screen at its last showing minus its first, averaged, with how
  many steps apart those showings are;
- the house's rise: its best score after the intro minus its first, per episode;
- leaving: the first score in town minus the house's best, per episode that left.
With --route-frames each model is also scored as PPO scores it along the speedruns in order
(training/route.py), one more row per model.
"""

from __future__ import annotations

import datetime
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from tqdm import tqdm

from bench.tables import machine, publish
from envs.games import EMUQUEST_ROM, EmuQuest
from envs.vec_gameboy import VecGameBoy
from models.checkpoint import CheckpointError
from models.reward import load_reward
from training.progress import LearnedProgress, ProgressReward, ProgressSettings
from training.route import Route, load_routes

INTRO_DONE, LEFT_HOUSE = 1, 2  # EmuQuest's ordered milestone counts: in the house, then in town
GAME = EmuQuest()
RAM = (GAME.MODE, GAME.X, GAME.Y, GAME.FACING)


@dataclass
class Args:
    """Score random play from power-on with reward checkpoints: revisited screens, the house, leaving it."""

    rewards: tuple[Path, ...] = (Path("runs/pipeline/checkpoints/reward_vq.pkl"),)
    """Reward checkpoints (kind 'reward'), one-frame or seen-token, compared on the same play."""
    episodes: int = 16
    """Random episodes, played side by side (one env each)."""
    steps: int = 400
    """Env steps per episode (the main job's evaluation length)."""
    seed: int = 0
    """Seeds the random actions."""
    num_workers: int | None = None
    """Emulator worker processes (None: one per CPU core)."""
    route_frames: Path | None = None
    """Speedrun frames (<dir>/<run>/*.png): also score each model along them in order, as PPO with
    --route-frames does (the main job's; needs VQ reward models)."""
    output: Path = Path("bench/results/wander_reward.md")
    """Where the markdown table is written."""


def play(args: Args) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random play from power-on: the reset frames (N, 144, 160, 3) uint8, then per step frames
    (T, N, 144, 160, 3), milestones (T, N) and the house screen each step shows, (T, N) int:
    y*40 + x*4 + facing while standing in the house's overworld after the intro, else -1. Step t
    is what the env shows after its t-th action."""
    rng = np.random.default_rng(args.seed)
    with VecGameBoy(
        EMUQUEST_ROM,
        num_envs=args.episodes,
        num_workers=args.num_workers,
        max_steps=args.steps + 1,
        profile=GAME,
    ) as env:
        reset_frames = env.reset(seed=args.seed)[0].copy()  # the env overwrites its buffer on the next step
        frames = np.empty((args.steps, args.episodes, 144, 160, 3), np.uint8)
        milestones = np.empty((args.steps, args.episodes), np.int32)
        screens = np.empty((args.steps, args.episodes), np.int64)
        for t in tqdm(range(args.steps), desc="random play"):
            obs, _, _, _, info = env.step(rng.integers(0, env.num_actions, args.episodes))
            frames[t], milestones[t] = obs, info["milestones"]
            mode, x, y, facing = env.ram(RAM).astype(np.int64).T
            in_house = (milestones[t] == INTRO_DONE) & (mode == GAME.MODE_OVERWORLD)
            screens[t] = np.where(in_house, y * 40 + x * 4 + facing, -1)
    return reset_frames, frames, milestones, screens


def scores_along(
    model: LearnedProgress, reset_frames: np.ndarray, frames: np.ndarray, routes: list[Route] | None = None
) -> np.ndarray:
    """(T, N) scores of every step, taken from PPO's own ProgressReward scoring every step: a
    seen-token model reads each episode's bag, which holds every frame shown since the reset, the
    reset frame and the current one included; with `routes`, the score is the route's. No episode
    ends during the play."""
    settings = ProgressSettings(interval=1, time_penalty=0.0)
    progress = ProgressReward(model, num_envs=frames.shape[1], settings=settings, routes=routes)
    progress.start(reset_frames)
    never_done = np.zeros(frames.shape[1], bool)
    return np.stack([progress(step_frames, never_done)[1] for step_frames in frames])


def revisits(scores: np.ndarray, screens: np.ndarray) -> dict:
    """Over every (episode, screen >= 0) shown at two steps or more: the mean of its last score minus
    its first, the mean steps between them, and how many such screens there are."""
    drifts, gaps = [], []
    for column, shown in zip(scores.T, screens.T):
        for screen in np.unique(shown[shown >= 0]):
            steps = np.flatnonzero(shown == screen)
            if len(steps) > 1:
                drifts.append(column[steps[-1]] - column[steps[0]])
                gaps.append(steps[-1] - steps[0])
    if not drifts:
        return {"screens": 0, "drift": float("nan"), "steps_apart": float("nan")}
    return {"screens": len(drifts), "drift": float(np.mean(drifts)), "steps_apart": float(np.mean(gaps))}


def house_and_leaving(scores: np.ndarray, milestones: np.ndarray) -> dict:
    """Per episode (column): the house's rise (best score while milestones == INTRO_DONE minus the
    first such score) and what leaving adds (the first score at LEFT_HOUSE minus the house's best),
    averaged over the episodes that finished the intro, resp. left."""
    rises, leaving = [], []
    for column, reached in zip(scores.T, milestones.T):
        in_house = np.flatnonzero(reached == INTRO_DONE)
        if not len(in_house):
            continue
        house_best = column[in_house].max()
        rises.append(house_best - column[in_house[0]])
        left = np.flatnonzero(reached >= LEFT_HOUSE)
        if len(left):
            leaving.append(column[left[0]] - house_best)
    return {
        "in_house": len(rises),
        "left": len(leaving),
        "rise": float(np.mean(rises)) if rises else float("nan"),
        "leaving": float(np.mean(leaving)) if leaving else float("nan"),
    }


def main(args: Args) -> str:
    if args.episodes < 1 or args.steps < 1:
        raise SystemExit("--episodes and --steps must be >= 1")
    try:  # every checkpoint is loaded before any play
        models = {path: LearnedProgress(load_reward(path)) for path in args.rewards}
    except CheckpointError as err:
        raise SystemExit(f"--rewards: {err} (train one with train_reward.py)") from None
    try:
        routes = {
            path: args.route_frames and load_routes(args.route_frames, model)
            for path, model in models.items()
        }
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"--route-frames: {err}") from None
    reset_frames, frames, milestones, screens = play(args)
    rows = []
    for (path, model), route in itertools.product(models.items(), (False, True)):
        if route and not routes[path]:
            continue
        scores = scores_along(model, reset_frames, frames, routes[path] if route else None)
        again, house = revisits(scores, screens), house_and_leaving(scores, milestones)
        kind = "one frame"
        if model.bag_size:
            kind = "frame + bag of seen tokens"
            if model.cfg.events:
                kind += f" as {model.cfg.events} event features"
        if route:
            kind = f"along the speedruns in order, scored by its {kind} head"
        rows.append(
            f"| `{path}` | {kind} | {again['screens']} | {again['steps_apart']:.0f} | {again['drift']:+.2f} "
            f"| {house['in_house']} / {house['left']} | {house['rise']:+.2f} | {house['leaving']:+.2f} "
            f"| {again['drift'] / house['leaving']:+.2f} |"
        )
    return publish(
        args.output,
        [
            f"# Does the reward pay for wandering? (`bench/wander_reward.py`), {datetime.date.today()}, "
            f"{machine()}",
            "",
            f"{args.episodes} episodes of random play from power-on, {args.steps} steps each, "
            f"seed {args.seed}; the same play for every reward model. "
            "A revisited screen: the house after the intro, standing on one tile facing one way, "
            "shown at two steps or more of an episode. Scores have no unit, so compare within a row.",
            "",
            "| reward model | input | revisited screens | steps apart (mean) "
            "| last − first score of a revisited screen "
            "| episodes in the house / that left | house's rise (best − first) "
            "| leaving (first town − house's best) "
            "| revisit gain / leaving |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ],
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
