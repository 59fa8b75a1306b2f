"""Which of its curriculum states has a trained policy mastered? Episodes from every saved state.

    uv run python pipeline.py        # once: a trained policy with its curriculum pool
    uv run python bench/saved_states.py --policy runs/pipeline/ppo/policy_final.pkl

PPO starts a quarter of its episodes on states its own rollouts saved (the curriculum pool, kept in
every checkpoint), each with the policy's memory as it was when the state was saved: older weights
wrote that memory. Evaluation starts from power-on. This bench plays the checkpoint's policy from each
saved state (sampled actions, as evaluation plays) and counts the episodes that reach a milestone
beyond the state's within --steps, and those that leave the state's room, with three memories before
the state's frame:
- stored: the memory saved with the state, what PPO's reset gives (zeros for a state saved without one);
- empty: zeros, as an episode's first frame has;
- power-on: the memory this policy itself carries when its power-on episodes first show as many
  milestones as the state (one per episode that got there, taken in turn), what it has when an
  evaluation episode reaches that stretch. "–" where no power-on episode got that far;
- burn-in, for a pool saved with --memory-burn-in: the memory this policy rebuilds from the
  observations saved with the state, what PPO's reset gives with a burn-in.
If stored beats power-on, stale memories are what training has and evaluation lacks; if all three
fail, the policy has not learned to leave that state. Milestones, rooms and positions come from RAM
through the game profile; the policy sees only frames.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import tyro
from flax import nnx
from tqdm import tqdm

from bench.tables import machine, publish
from envs.games import EMUQUEST_ROM, EmuQuest
from envs.vec_gameboy import VecGameBoy
from models.checkpoint import CheckpointError
from models.policy import trainable_filter
from training.policy_io import load_policy, policy_actor
from training.ppo import make_burn_in

GAME = EmuQuest()
STATUS_ADDRESSES = (GAME.MODE, GAME.MAP_ID, GAME.X, GAME.Y, GAME.MILESTONES)
MEMORIES = ("stored", "empty", "power-on")


@dataclass
class Args:
    """Play a trained policy from each state of its curriculum pool, with three memories."""

    policy: Path = Path("runs/pipeline/ppo/policy_final.pkl")
    """PPO checkpoint with its training state (policy_final.pkl or policy_<iteration>.pkl), on EmuQuest."""
    episodes: int = 8
    """Episodes per saved state and memory, played in parallel."""
    steps: int = 150
    """Env steps per episode from a saved state."""
    power_on_steps: int = 400
    """Env steps of the power-on episodes whose memories the "power-on" column uses (evaluation's 400)."""
    states_per_batch: int = 8
    """Saved states played at once: the env count is this times --episodes."""
    seed: int = 0
    """Seeds the policy's action sampling."""
    num_workers: int | None = None
    """Emulator worker processes (None: one per CPU core; 0: serial, in-process)."""
    output: Path = Path("bench/results/saved_states.md")
    """Where the markdown table is written."""


def status_of(env: VecGameBoy) -> list:
    """Each env's GameStatus, read from RAM now."""
    return [GAME.status(dict(zip(STATUS_ADDRESSES, row.tolist()))) for row in env.ram(STATUS_ADDRESSES)]


def play(env: VecGameBoy, act, memory: np.ndarray, steps: int, key, starts: list[bytes] | None = None):
    """Every env for `steps` steps from power-on (`starts` None: an empty memory on the first frame)
    or from `starts` (one state per env, `memory` (N, M) before its frame, as PPO's reset gives it).
    Returns (milestones at the start (N,), best milestones (N,), whether each env left its start's room
    (N,), {milestones: [the memory before the first frame of an env that showed that many, one per env
    that did]})."""
    obs, _ = env.reset(seed=0)  # the env's buffer: load_states draws the states' frames into it
    if starts is not None:
        env.load_states(range(env.num_envs), starts)
    first = np.full(env.num_envs, starts is None)
    where = status_of(env)
    start = np.array([status.milestones for status in where])
    room = np.array([status.map_id for status in where])
    left_room = np.zeros(env.num_envs, bool)
    best, memory = start.copy(), np.asarray(memory, np.float32)
    first_memories: dict[int, list[np.ndarray]] = {}
    ended = np.zeros(env.num_envs, bool)  # finished the game: its env restarted on the next episode
    for t in range(steps):
        actions, memory = act(obs, first, memory, jax.random.fold_in(key, t))
        memory = np.asarray(memory)
        obs, _, _, _, info = env.step(np.asarray(actions))
        first[:] = False
        shown = info["milestones"].copy()
        for episode in info["episodes"]:  # max_steps is longer than the play, so only a finish ends one
            shown[episode["env_id"]] = episode["milestones"]
        for env_id in np.flatnonzero((shown > best) & ~ended):
            first_memories.setdefault(int(shown[env_id]), []).append(memory[env_id])
        best = np.where(ended, best, np.maximum(best, shown))
        left_room |= (info["map_id"] != room) & ~ended
        ended |= np.isin(np.arange(env.num_envs), [e["env_id"] for e in info["episodes"]])
    return start, best, left_room | ended, first_memories


def memory_kinds(pool: dict) -> tuple[str, ...]:
    """The memories the bench tries: a pool saved with histories (--memory-burn-in) adds the burn-in's."""
    histories = any(payload and payload.get("history") is not None for payload in pool["payloads"])
    return MEMORIES + ("burn-in",) if histories else MEMORIES


def burned_in(model, payloads: list, window: int) -> np.ndarray:
    """(states, M) each state's memory rebuilt by the policy from the observations saved before it;
    zeros for a state saved without them, which PPO's reset starts with an empty memory."""
    graphdef, params, frozen = nnx.split(model, trainable_filter(model.cfg), ...)
    replay = make_burn_in(graphdef, window)
    rebuilt = np.zeros((len(payloads), model.cfg.memory), np.float32)
    for i, payload in enumerate(payloads):
        if payload and payload.get("history") is not None:
            rebuilt[i] = replay(params, frozen, payload["history"], payload["history_progress"])
    return rebuilt


def state_table(pool: dict, model, args: Args, trained: dict) -> list[dict]:
    """One row per saved state: its score, room, position and milestones, and per memory kind the
    shares of episodes that reached a further milestone and that left the state's room."""
    act, width, kinds = policy_actor(model), model.cfg.memory, memory_kinds(pool)
    key = jax.random.PRNGKey(args.seed)
    states, payloads = pool["states"], pool["payloads"]
    if "burn-in" in kinds:
        rebuilt = burned_in(model, payloads, trained["memory_burn_in"])
    batch = min(args.states_per_batch, len(states))
    with VecGameBoy(
        EMUQUEST_ROM,
        num_envs=batch * args.episodes,
        num_workers=args.num_workers or None,
        backend="serial" if args.num_workers == 0 else "process",
        max_steps=max(args.steps, args.power_on_steps) + 1,
        frame_skip=trained["frame_skip"],
        press_frames=trained["press_frames"],
        grayscale=trained.get("observation") == "gray",
        profile=GAME,
    ) as env:
        zeros = np.zeros((env.num_envs, width), np.float32)
        _, power_on_best, _, power_on = play(env, act, zeros, args.power_on_steps, jax.random.fold_in(key, 0))
        rows = []
        for batch_start in tqdm(range(0, len(states), batch), desc="saved states"):
            chosen = list(range(batch_start, min(batch_start + batch, len(states))))
            owner = np.repeat(chosen, args.episodes)
            owner = np.resize(owner, env.num_envs)  # a short last batch fills its envs with its states again
            starts = [states[i] for i in owner]
            env.reset(seed=0)
            env.load_states(range(env.num_envs), starts)
            where = status_of(env)
            start_milestones = np.array([s.milestones for s in where])
            memories = {
                "stored": np.stack([_stored(payloads[i], width) for i in owner]),
                "empty": zeros,
                "power-on": np.stack(
                    [_taken_in_turn(power_on.get(int(m)), n, width) for n, m in enumerate(start_milestones)]
                ),
            }
            if "burn-in" in kinds:
                memories["burn-in"] = rebuilt[owner]
            best, left = {}, {}
            for k, kind in enumerate(kinds):
                _, best[kind], left[kind], _ = play(
                    env,
                    act,
                    memories[kind],
                    args.steps,
                    jax.random.fold_in(key, 1 + len(kinds) * batch_start + k),
                    starts,
                )
            for i in chosen:
                mine = np.flatnonzero(owner == i)[: args.episodes]
                status, reached = where[mine[0]], int(start_milestones[mine[0]])
                room = GAME.map_name(status.map_id) if status.left_title else "title"
                row = {
                    "index": i,
                    "score": float(pool["scores"][i]),
                    "room": room,
                    "xy": (status.x, status.y),
                    "milestones": reached,
                    "power_on_episodes": int((power_on_best >= reached).sum()),
                }
                for kind in kinds:
                    got = best[kind][mine]
                    missing = kind == "power-on" and reached > 0 and reached not in power_on
                    row[kind] = (
                        None if missing else (float((got > reached).mean()), float(left[kind][mine].mean()))
                    )
                rows.append(row)
    return rows


def _stored(payload: dict | None, width: int) -> np.ndarray:
    memory = None if payload is None else payload.get("memory")
    return np.zeros(width, np.float32) if memory is None else np.asarray(memory, np.float32)


def _taken_in_turn(memories: list[np.ndarray] | None, n: int, width: int) -> np.ndarray:
    """The n-th env's power-on memory: the list's entries in turn (zeros where no episode got there,
    whose column the table leaves out)."""
    return np.zeros(width, np.float32) if not memories else memories[n % len(memories)]


def main(args: Args) -> str:
    if args.episodes < 1 or args.steps < 1 or args.power_on_steps < 1 or args.states_per_batch < 1:
        raise SystemExit("--episodes, --steps, --power-on-steps and --states-per-batch must be >= 1")
    try:
        model, cfg, ckpt = load_policy(args.policy)
    except (CheckpointError, FileNotFoundError) as err:
        raise SystemExit(f"--policy: {err}") from None
    pool = ((ckpt.get("train_state") or {}).get("runner") or {}).get("pool")
    if not pool or not pool.get("states"):
        raise SystemExit(
            f"--policy: {args.policy} holds no curriculum pool: give a checkpoint train_with_cnn_reward.py "
            "wrote with its training state and --curriculum-prob > 0"
        )
    if cfg.progress_bins:
        raise SystemExit(
            "--policy: this policy reads route progress (--progress-bins); the bench plays frames alone"
        )
    trained = ckpt["config"].get("args", {})
    rows = state_table(pool, model, args, trained)
    kinds = memory_kinds(pool)

    def cell(value, form):
        return "–" if value is None else form(value)

    lines = [
        f"| {r['index']} | {r['score']:.1f} | {r['room']} {r['xy']} | {r['milestones']} | "
        + " / ".join(cell(r[kind], lambda v: f"{v[0]:.0%}") for kind in kinds)
        + " | "
        + " / ".join(cell(r[kind], lambda v: f"{v[1]:.0%}") for kind in kinds)
        + f" | {r['power_on_episodes']} |"
        for r in rows
    ]
    return publish(
        args.output,
        [
            f"# Which saved states has the policy mastered? (`bench/saved_states.py`), "
            f"{datetime.date.today()}, {machine()}",
            "",
            f"Policy `{args.policy}` (iteration {ckpt['train_state'].get('iteration', '?')}), its curriculum "
            f"pool of {len(pool['states'])} states; {args.episodes} episodes of {args.steps} steps from each "
            f"state with each memory, sampled actions, seed {args.seed}. Power-on memories from "
            f"{args.episodes * min(args.states_per_batch, len(pool['states']))} episodes of "
            f"{args.power_on_steps} steps. Memory before the state's frame: stored (saved with the state), "
            "empty (zeros), power-on (this policy's on first showing that many milestones from power-on)"
            + (
                ", burn-in (this policy's over the observations saved with the state)."
                if len(kinds) > 3
                else "."
            ),
            "",
            f"| saved state | score | room (x, y) | milestones | episodes reaching a further milestone: "
            f"{' / '.join(kinds)} | episodes leaving its room: {' / '.join(kinds)} "
            "| power-on episodes that got this far |",
            "|---|---|---|---|---|---|---|",
            *lines,
            "",
        ],
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
