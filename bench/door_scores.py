"""Does the reward pay at the doors of the agent's own route? Scores along a trained policy's episodes.

    uv run python pipeline.py        # once: a trained policy and its reward
    uv run python bench/door_scores.py --policy runs/pipeline/ppo/policy_final.pkl

PPO with `--progress-baseline best` (the main job's) is paid only when a score beats the episode's
best so far. A room the route must pass through pays nothing while its frames score below what the
agent has already shown, however much further along the route it is, and an agent that walks in
and finds nothing walks out again. The speedruns' order cannot show this: it is the agent's own
history (what it showed before the door, which a reward that reads the seen tokens also reads)
that sets the bar.

The policy plays as evaluate_policy.py plays it (sampled actions, its memory carried, episodes
from power-on, the env settings it trained with), and every step is scored by its reward the way
PPO scores it (each episode's bag of seen tokens from the reset on). The map and the milestones
come from RAM through the game profile; no model sees them. Per room entry (from, to, milestones at
the entry), over every entry of every episode:
- entry: the score of the first frame in the room minus the episode's best before it;
- visit: the best score while in the room minus that same best (> 0: the visit paid something);
- steps in the room, and how many visits reached a new milestone there.
"""

from __future__ import annotations

import datetime
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from tqdm import tqdm

from bench.tables import machine, publish
from envs.games import EMUQUEST_ROM, EmuQuest
from envs.vec_gameboy import VecGameBoy
from models.checkpoint import CheckpointError
from training.paths import path_from_checkpoint
from training.policy_io import load_policy, policy_chooser
from training.progress import ProgressReward, load_progress, settings_of_run
from training.route import load_routes

GAME = EmuQuest()


@dataclass
class Args:
    """Score a trained policy's own episodes with its reward: what each room entry pays."""

    policy: Path = Path("runs/pipeline/ppo/policy_final.pkl")
    """Policy checkpoint from train_with_cnn_reward.py (trained on EmuQuest)."""
    reward_model: Path | None = None
    """Reward checkpoint that scores the episodes. None: the one the policy trained with."""
    episodes: int = 8
    """Episodes, played in parallel, one per env (the main job's evaluation: 8)."""
    steps: int = 400
    """Env steps per episode (the main job's evaluation length)."""
    seed: int = 0
    """Seeds the policy's action sampling."""
    num_workers: int | None = None
    """Emulator worker processes (None: one per CPU core; 0: serial, in-process)."""
    output: Path = Path("bench/results/door_scores.md")
    """Where the markdown table is written."""


def play(args: Args, model, trained: dict, progress: ProgressReward):
    """The policy's episodes from power-on: scores, map ids and milestones, each (T, N), step t being
    what the env shows after its t-th action. An episode ends at --steps or on entering the final room
    (EmuQuest's end), after which its columns repeat its last step."""
    choose = policy_chooser(model, greedy=False, seed=args.seed)
    with VecGameBoy(
        EMUQUEST_ROM,
        num_envs=args.episodes,
        num_workers=args.num_workers or None,
        backend="serial" if args.num_workers == 0 else "process",
        max_steps=args.steps,
        frame_skip=trained["frame_skip"],
        press_frames=trained["press_frames"],
        grayscale=trained.get("observation") == "gray",
        profile=GAME,
    ) as env:
        obs, _ = env.reset(seed=args.seed)
        obs = obs.copy()  # the env overwrites its buffer on the next step
        progress.start(obs)
        first = np.ones(args.episodes, bool)
        route_progress = np.zeros(args.episodes, np.float32)  # through the frame before obs
        scores = np.empty((args.steps, args.episodes), np.float32)
        maps = np.empty((args.steps, args.episodes), np.int32)
        milestones = np.empty((args.steps, args.episodes), np.int32)
        ended = np.zeros(args.episodes, bool)
        for t in tqdm(range(args.steps), desc="policy play"):
            obs, _, terminated, truncated, info = env.step(np.asarray(choose(obs, t, first, route_progress)))
            obs = obs.copy()
            first = terminated | truncated
            # An ended episode is scored on its last frame, not its successor's first; its env plays
            # on, but from the next step its columns repeat this one.
            shown = obs.copy() if first.any() else obs
            for env_id in np.flatnonzero(first):
                shown[env_id] = info["final_obs"][env_id]
            route_progress = progress.route_progress(new_episodes=first)  # as PPO's rollout gives it
            scores[t] = progress(shown, np.zeros(args.episodes, bool))[1]
            maps[t], milestones[t] = info["map_id"], info["milestones"]  # an ended env's: its next episode's
            for episode in info["episodes"]:
                env_id = episode["env_id"]
                milestones[t, env_id] = episode["milestones"]
                maps[t, env_id] = GAME.FINAL if episode["finished"] else maps[t - 1, env_id]
            if t:
                for column in (scores, maps, milestones):
                    column[t, ended] = column[t - 1, ended]
            ended |= first
    return scores, maps, milestones


def room_entries(scores: np.ndarray, maps: np.ndarray, milestones: np.ndarray) -> dict[tuple, dict]:
    """(from map, to map, milestones at the entry) -> {"entries", "entry", "visit", "steps", "new
    milestone"}: over every step where an episode's map changes, the entry frame's score minus the
    episode's best before it, the visit's best minus that best (means), steps until the map changes
    again or the play ends (mean), and how many visits reached a milestone. Arrays are (T, N)."""
    found = defaultdict(lambda: {"entries": 0, "entry": [], "visit": [], "steps": [], "new milestone": 0})
    for score, where, reached in zip(scores.T, maps.T, milestones.T):
        changes = np.flatnonzero(where[1:] != where[:-1]) + 1
        ends = np.r_[changes[1:], len(where)]
        for start, end in zip(changes, ends):
            row = found[(int(where[start - 1]), int(where[start]), int(reached[start]))]
            best = score[:start].max()
            row["entries"] += 1
            row["entry"].append(score[start] - best)
            row["visit"].append(score[start:end].max() - best)
            row["steps"].append(end - start)
            row["new milestone"] += int(reached[end - 1] > reached[start])
    return {
        key: {**row, **{name: float(np.mean(row[name])) for name in ("entry", "visit", "steps")}}
        for key, row in found.items()
    }


def main(args: Args) -> str:
    if args.episodes < 1 or args.steps < 2:
        raise SystemExit("--episodes must be >= 1 and --steps >= 2")
    try:
        model, _, ckpt = load_policy(args.policy)
    except (CheckpointError, FileNotFoundError) as err:
        raise SystemExit(f"--policy: {err}") from None
    trained = ckpt["config"].get("args", {})
    reward_path = args.reward_model
    if reward_path is None:
        if not trained.get("reward_model"):
            raise SystemExit("--reward-model: the policy names no reward model; give one")
        reward_path = Path(
            os.path.normpath(path_from_checkpoint(trained["reward_model"], args.policy.parent))
        )
    try:
        reward = load_progress(str(reward_path))
    except (CheckpointError, FileNotFoundError) as err:
        raise SystemExit(f"--reward-model: {err}") from None
    routes, scored_by = None, f"reward `{reward_path}`"
    if trained.get("route_frames"):  # a policy trained along speedrun routes is scored along them, as PPO was
        route_frames = os.path.normpath(path_from_checkpoint(trained["route_frames"], args.policy.parent))
        routes = load_routes(route_frames, reward)
        scored_by += f" along the speedruns in `{route_frames}`"
    settings = settings_of_run(trained, interval=1, time_penalty=0.0)  # a score at every step
    progress = ProgressReward(reward, num_envs=args.episodes, settings=settings, routes=routes)
    entries = room_entries(*play(args, model, trained, progress))
    rows = [
        f"| {GAME.map_name(a)} → {GAME.map_name(b)} | {m} | {row['entries']} | {row['entry']:+.2f} "
        f"| {row['visit']:+.2f} | {row['steps']:.1f} | {row['new milestone']} |"
        for (a, b, m), row in sorted(entries.items(), key=lambda item: (item[0][2], -item[1]["entries"]))
    ]
    return publish(
        args.output,
        [
            f"# Does the reward pay at the doors? (`bench/door_scores.py`), {datetime.date.today()}, "
            f"{machine()}",
            "",
            f"Policy `{args.policy}`, {scored_by}; {args.episodes} episodes of {args.steps} steps "
            f"from power-on, sampled actions, seed {args.seed}. Entry: the first frame in the room minus the "
            "episode's best score before it; visit: the best score in the room minus that best (PPO's "
            "best baseline pays only what is above 0). Scores have the reward's own unit.",
            "",
            "| room entry | milestones at entry | entries | entry − best before | visit's best − best before "
            "| steps in the room (mean) | visits that reached a milestone |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ],
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
