"""The host side of PPO: env groups stepping VecGameBoy in threads while the policy runs, the
progress reward, curriculum candidates, each env's policy memory and episode statistics, all
resumable as plain data.

A curriculum state's payload is {"bag": the reward's bag of seen tokens or None, "route": the
reward's route positions or None, "memory": the policy's memory on reaching it or None}; an env
reset onto the state starts with all of them, so its episode goes on as if it had got there itself.
With a burn-in the payload also keeps the last observations before the state ("history", with their
route progress in "history_progress"), and a reset replays them through the current policy instead of
restoring the memory that older weights wrote (R2D2's burn-in)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from envs.archive import CellArchive, cell_keys
from envs.curriculum import BackwardChain, CurriculumPool, MasteryPool
from envs.rom import RomError
from envs.vec_gameboy import WORKER_TIMEOUT_S, VecGameBoy
from envs.world_model_env import WorldModelEnv
from models.checkpoint import CheckpointError
from training.progress import LearnedProgress, ProgressReward, ProgressSettings, ended_frames
from training.route import Route
from training.world_model import world_model_env

EPISODE_WINDOW = 100  # recent episodes averaged for the episode/* metrics
# A rollout's batch: each (T, N, ...), firsts, memory and route progress as the policy read them.
BATCH_COLUMNS = ("obs", "actions", "log_probs", "values", "rewards", "dones", "firsts", "memory", "progress")
NEW_CELLS_PER_ROLLOUT = 8  # a saved state costs ~20 ms; a cell not saved now is saved when next reached


class ImaginedEnvs(NamedTuple):
    """Envs that step in a world model's imagination (envs/world_model_env.py) beside the emulators."""

    world_model: str  # world_model.pkl
    num_envs: int
    sample_steps: int


class EpisodeHistory:
    """Each env's last `window` observations of its episode (and the route progress read beside them),
    in a ring: what a burn-in replays. An episode started on a curriculum state carries on the state's."""

    def __init__(self, num_envs: int, window: int):
        self.window = window
        self.observations = None  # (n, window, ...) in the policy's observation dtype, from the first append
        self.progress = np.zeros((num_envs, window), np.float32)
        self.count = np.zeros(num_envs, np.int64)  # observations since the episode began (ring position)

    def append(self, observations, progress):
        observations = np.asarray(observations)
        self._allocate(observations.shape[1:], observations.dtype)
        rows, slots = np.arange(len(self.count)), self.count % self.window
        self.observations[rows, slots] = observations
        self.progress[rows, slots] = progress
        self.count += 1

    def last(self, env: int) -> tuple[np.ndarray, np.ndarray] | None:
        """env's last min(count, window) observations (L, ...) and progress (L,), oldest first (copies)."""
        length = int(min(self.count[env], self.window))
        if length == 0:
            return None
        slots = (self.count[env] - length + np.arange(length)) % self.window
        return self.observations[env, slots], self.progress[env, slots]

    def start(self, env: int, history: tuple[np.ndarray, np.ndarray] | None = None):
        """env begins an episode: from power-on (None) or on a saved state, after its `history`."""
        self.count[env] = 0
        if history is None:
            return
        observations, progress = history
        self._allocate(observations.shape[1:], observations.dtype)
        self.observations[env, : len(observations)] = observations
        self.progress[env, : len(observations)] = progress
        self.count[env] = len(observations)

    def _allocate(self, shape, dtype):
        if self.observations is None:
            self.observations = np.zeros((len(self.count), self.window, *shape), dtype)


class EnvGroup:
    """One VecGameBoy (or WorldModelEnv) and what the rollout tracks for its envs. Several groups let
    one group's emulators step (in a thread, waiting on its worker processes) while the policy runs on
    another group's frames."""

    def __init__(self, env, first_env: int, progress: ProgressReward, memory_size: int = 0, burn_in: int = 0):
        self.env = env
        self.first_env = first_env  # global id of this group's env 0
        self.progress = progress
        self.obs = None  # (n, 144, 160, 3) uint8, our own copy of the latest frames
        self.memory = np.zeros((env.num_envs, memory_size), np.float32)  # the policy's, before obs
        self.first = np.ones(env.num_envs, bool)  # obs starts an episode: the policy's memory is zeroed
        self.route_progress = np.zeros(env.num_envs, np.float32)  # the reward's, through the frame before obs
        self.episode_return = np.zeros(env.num_envs, np.float32)
        self.start_score = np.full(env.num_envs, np.nan)  # the pool entry's score each episode began on
        self.imagined = isinstance(env, WorldModelEnv)  # no emulator states: never a curriculum source
        self.history = EpisodeHistory(env.num_envs, burn_in) if burn_in and not self.imagined else None
        self.burn_in_envs: set[int] = set()  # reset onto a state with a history, memory not yet rebuilt


class Runner:
    """The host side of training: the env groups, the reward, the curriculum and episode
    stats. Everything it carries across iterations is in `state_dict()`; resume points are
    episode boundaries (`restart`), so no emulator state has to be saved."""

    def __init__(self, groups: list[EnvGroup], pool, seed: int):
        self.groups = groups
        self.num_envs = sum(group.env.num_envs for group in groups)
        # Shared by every group: CurriculumPool (new highs), MasteryPool, BackwardChain, CellArchive (new
        # cells) or None.
        self.pool = pool
        self.cells = isinstance(pool, CellArchive)
        self.backward = isinstance(pool, BackwardChain)
        self.records_outcomes = isinstance(pool, (BackwardChain, MasteryPool))  # of episodes from its states
        self.seed = seed
        self.best_score = -np.inf  # highest learned score any env reached
        self.episodes: list[dict] = []  # the last EPISODE_WINDOW episodes' stats
        self.stepper = ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="env-group")

    @property
    def detected(self) -> dict:
        """The game profile and cartridge the envs detected (envs/games.py `detected`)."""
        return self.groups[0].env.detected

    @property
    def obs(self) -> np.ndarray:
        return np.concatenate([group.obs for group in self.groups])

    def restart(self, iteration: int):
        """Start every env on a fresh episode (power-on or a curriculum state): at the start of
        training, after each checkpoint and on --resume, so both runs continue identically."""
        for g, group in enumerate(self.groups):
            obs, info = group.env.reset(seed=(self.seed * 1_000_003 + iteration) * len(self.groups) + g)
            group.obs = obs.copy()  # the env overwrites its buffer in place on the next step
            group.progress.start(group.obs, self._start_states(info))
            group.episode_return[:] = 0
            group.memory[:] = 0
            self._start_memories(group, np.ones(group.env.num_envs, bool), info)
            if self.records_outcomes:
                self._note_starts(group, np.ones(group.env.num_envs, bool), info)

    def seed_pool(self, state: bytes):
        """Start the curriculum pool with the run's initial state (the frame env 0 shows after `restart`,
        with an empty pool), scored as the reward model scores it; later states must beat it."""
        group = self.groups[0]
        score = group.progress.score(group.obs)[0]
        key = cell_keys(group.obs[:1], [score], self.pool.band)[0] if self.cells else None
        payload = {**group.progress.episode_state(0), "memory": None}
        self.pool.add(state, float(score), payload=payload, key=key)
        self.best_score = max(self.best_score, float(score))

    def _start_states(self, info) -> dict[int, dict]:
        """{env: its curriculum state's payload} of the envs that just restarted on one."""
        return {env: self.pool.payloads[index] for env, index in info["pool_starts"].items()}

    def _start_memories(self, group: EnvGroup, done, info):
        """After a step, before its reward: the route progress through the frame before, and the envs
        that ended an episode start the next one with an empty memory and no route progress, or with
        the memory and route progress of their curriculum state."""
        group.first = done.copy()
        group.route_progress = group.progress.route_progress(new_episodes=done)
        if group.history is not None:
            for env in np.flatnonzero(done):
                group.history.start(int(env))
                group.burn_in_envs.discard(int(env))
        for env, index in info["pool_starts"].items():
            payload = self.pool.payloads[index]
            if payload["memory"] is not None:
                group.memory[env], group.first[env] = payload["memory"], False
            if group.history is not None and payload.get("history") is not None:
                group.history.start(env, (payload["history"], payload["history_progress"]))
                group.burn_in_envs.add(env)
            if payload.get("route") is not None:  # saved by this run's reward, so it has the route
                group.route_progress[env] = group.progress.route.fraction(payload["route"])[0]

    def _note_starts(self, group: EnvGroup, done, info):
        """BackwardChain, MasteryPool: remember which entry (by score) each new episode began on; NaN for
        power-on."""
        group.start_score[done] = np.nan
        for env, index in info["pool_starts"].items():
            group.start_score[env] = self.pool.scores[index]

    def rollout(self, policy_step, key, num_steps: int, share_tokens: bool = False, burn_in=None):
        """Step every env num_steps times. `policy_step(frames, first, memory, key, progress) ->
        (observation, action, log_prob, value, memory)` is the jitted policy (training/ppo.py), `progress`
        (N,) each env's route progress through the frame before. Returns (batch of (T, N, ...) arrays,
        with each step's `firsts`, `memory` before it and `progress`, the value (N,) of the frames after
        the last step, stats). With `share_tokens` the reward's bags of seen tokens take the policy's
        observations of each frame (its VQ tokens). With a burn-in window, `burn_in(observations (L, ...),
        progress (L,)) -> memory (M,)` rebuilds the memory of each env reset onto a saved state.

        Groups are pipelined: group g's env step is submitted to a thread, and the policy
        runs on group g+1 while it steps. Results are consumed in a fixed order, so the
        outcome does not depend on timing."""
        num_groups = len(self.groups)
        columns = [{name: [] for name in BATCH_COLUMNS} for _ in self.groups]
        milestones_max = np.zeros(self.num_envs, np.int32)
        new_states, ended, last_values = [], [], [None] * num_groups
        outcomes = []  # (start entry's score, best score reached) of each ended episode, for `pool.record`
        sightings = []  # cell keys of every scored frame, counted once the envs stop
        seconds = {"policy": 0.0, "env_wait": 0.0, "reward": 0.0, "burn_in": 0.0}  # where the time goes
        pending = [None] * num_groups  # each group's env step in flight

        def collect(g):
            """Group g's step result, once its emulators are done; its frames become group.obs."""
            clock = time.perf_counter()
            obs, _, terminated, truncated, info = pending[g].result()
            self.groups[g].obs = obs.copy()
            seconds["env_wait"] += time.perf_counter() - clock
            return terminated | truncated, info

        def finish_step(g, done, info, observation, memory):
            """Group g's step after the policy has seen its new frames (`observation`, with `memory`
            before them): rewards, episode stats, curriculum candidates."""
            group = self.groups[g]
            clock = time.perf_counter()
            reward, scores = group.progress(
                group.obs,
                done,
                observation if share_tokens else None,
                self._start_states(info),
                ended_frames(info),
            )
            seconds["reward"] += time.perf_counter() - clock
            columns[g]["rewards"].append(reward)
            columns[g]["dones"].append(done.astype(np.float32))
            span = slice(group.first_env, group.first_env + group.env.num_envs)
            milestones_max[span] = np.maximum(milestones_max[span], info["milestones"])
            group.episode_return += reward
            for episode in info["episodes"]:
                local, env_id = episode["env_id"], group.first_env + episode["env_id"]
                # An env that finished the game was reset in the same step: its RAM shows the next episode.
                milestones_max[env_id] = max(milestones_max[env_id], episode["milestones"])
                ended.append({**episode, "env_id": env_id, "return": float(group.episode_return[local])})
            group.episode_return[done] = 0
            if self.records_outcomes and not group.imagined:
                for env in np.flatnonzero(done):
                    reached = group.progress.ended_best.get(int(env), -np.inf)
                    outcomes.append((group.start_score[env], reached))
                self._note_starts(group, done, info)
            if scores is not None and self.pool is not None and not group.imagined:
                # A done env shows its next episode's first frame: a reset, not a state it reached.
                if self.cells:
                    keys = cell_keys(group.obs, scores, self.pool.band)
                    sightings.extend(key for key, reset in zip(keys, done) if not reset)
                    new_states.extend(self._new_cells(group, keys, scores, done, memory, new_states))
                else:
                    new_states.extend(self._new_high(group, np.where(done, -np.inf, scores), memory))

        for t in range(num_steps + 1):  # the last pass only reads the value after the last step
            for g, group in enumerate(self.groups):
                step = collect(g) if pending[g] is not None else None
                if step is not None:
                    self._start_memories(group, *step)
                if group.burn_in_envs:
                    clock = time.perf_counter()
                    self._burn_in(group, burn_in)
                    seconds["burn_in"] += time.perf_counter() - clock
                clock = time.perf_counter()
                first, memory, progress = group.first, group.memory, group.route_progress
                observation, action, log_prob, value, next_memory = policy_step(
                    group.obs, first, memory, jax.random.fold_in(key, t * num_groups + g), progress
                )
                action = np.asarray(action)  # waits for the policy
                seconds["policy"] += time.perf_counter() - clock
                if step is not None:
                    finish_step(g, *step, observation, memory)
                if t == num_steps:  # the next rollout starts on these frames, with this memory
                    last_values[g] = value
                    continue
                group.memory = np.array(next_memory)
                if group.history is not None:
                    group.history.append(observation, progress)
                for name, value_ in (
                    ("obs", observation),
                    ("actions", action),
                    ("log_probs", log_prob),
                    ("values", value),
                    ("firsts", first),
                    ("memory", memory),
                    ("progress", progress),
                ):
                    columns[g][name].append(value_)
                pending[g] = self.stepper.submit(group.env.step, action)
        # Pool changes wait until no group is stepping: resets read the pool.
        for state, score, payload, key in new_states:
            self.pool.add(state, score, payload=payload, key=key)
        if self.cells:
            self.pool.count(sightings)
        for start_score, reached in outcomes:
            self.pool.record(start_score, reached)
        self.episodes = (self.episodes + ended)[-EPISODE_WINDOW:]

        def stack(name):  # (T, N, ...) with the groups side by side along the env axis
            return jnp.concatenate(
                [jnp.stack([jnp.asarray(x) for x in column[name]]) for column in columns], axis=1
            )

        batch = {name: stack(name) for name in columns[0]}
        last_value = jnp.concatenate([jnp.asarray(value) for value in last_values])
        stats = {
            "rollout/reward_mean": float(batch["rewards"].mean()),
            "rollout/episodes_ended": len(ended),
            "rollout/milestones_max": int(milestones_max.max()),
            "rollout/milestones_mean": float(milestones_max.mean()),
            "curriculum/saved_states": len(new_states),
            **(self._backward_stats() if self.backward else {}),
            **(self._mastery_stats() if isinstance(self.pool, MasteryPool) else {}),
            **{f"charts/{name}_seconds": value for name, value in seconds.items()},
        }
        return batch, last_value, stats

    def _burn_in(self, group: EnvGroup, burn_in):
        """The memory of each env just reset onto a saved state, rebuilt from the state's history."""
        if burn_in is None:
            raise ValueError("this runner keeps histories for a burn-in: pass rollout(burn_in=...)")
        for env in sorted(group.burn_in_envs):
            group.memory[env] = np.asarray(burn_in(*group.history.last(env)))
            group.first[env] = False
        group.burn_in_envs.clear()

    def _mastery_stats(self) -> dict:
        """How many of the MasteryPool's states more episodes got past than not (an untried one: not)."""
        return {"curriculum/mastered_states": int((self.pool.success_rates() > 0.5).sum())}

    def _backward_stats(self) -> dict:
        """Where the BackwardChain's pointer is: its entry and that entry's score."""
        start = self.pool.start()
        return {
            "curriculum/backward_start": start,
            "curriculum/backward_score": self.pool.scores[start] if len(self.pool) else None,
        }

    def _payload(self, group: EnvGroup, env: int, memory) -> dict:
        """What a curriculum state of this env keeps besides the emulator's (see the module's doc)."""
        policy_memory = memory[env].copy() if memory.shape[1] else None
        payload = {**group.progress.episode_state(env), "memory": policy_memory}
        history = group.history.last(env) if group.history is not None else None  # the frames before it
        if history is not None:
            payload |= {"history": history[0], "history_progress": history[1]}
        return payload

    def _new_high(self, group: EnvGroup, scores, memory) -> list[tuple]:
        """The state of the group's best env when it beats every score seen so far (states
        cost 20 ms each, so only new highs are kept), as [(state, score, payload, None)] or []."""
        best_env = int(np.argmax(scores))
        if scores[best_env] <= self.best_score:
            return []
        self.best_score = float(scores[best_env])
        [state] = group.env.save_states([best_env])
        return [(state, self.best_score, self._payload(group, best_env, memory), None)]

    def _new_cells(self, group: EnvGroup, keys, scores, done, memory, pending) -> list[tuple]:
        """States of the group's envs in cells neither the archive nor this rollout has (the first env
        in each), at most NEW_CELLS_PER_ROLLOUT a rollout, as [(state, score, payload, key)]."""
        self.best_score = max(self.best_score, float(np.max(np.where(done, -np.inf, scores))))
        taken = {entry[3] for entry in pending}
        envs = []
        for env, key in enumerate(keys):
            if len(taken) >= NEW_CELLS_PER_ROLLOUT:
                break
            if not done[env] and key not in taken and key not in self.pool:
                taken.add(key)
                envs.append(env)
        states = group.env.save_states(envs) if envs else []
        return [
            (state, float(scores[e]), self._payload(group, e, memory), keys[e])
            for state, e in zip(states, envs)
        ]

    def episode_stats(self) -> dict:
        """Means over the recent-episode window (title escape rate, milestones, ...) of the emulators'
        episodes; imagined episodes, which have no RAM, only count and give their return."""
        imagined = [e["return"] for e in self.episodes if e.get("imagined")]
        stats = {"episode/imagined_return": float(np.mean(imagined))} if imagined else {}
        episodes = [e for e in self.episodes if not e.get("imagined")]
        if not episodes:
            return stats
        # .get: episodes restored from a checkpoint written before a statistic existed lack it
        mean = lambda name: float(np.mean([e.get(name, 0) for e in episodes]))  # noqa: E731
        return stats | {
            "episode/return": mean("return"),
            "episode/length": mean("length"),
            "episode/milestones": mean("milestones"),
            "episode/maps_visited": mean("maps_visited"),
            "episode/title_escape_rate": mean("left_title"),
            "episode/intro_done_rate": mean("intro_done"),
            "episode/count": len(episodes),
        }

    def state_dict(self) -> dict:
        return {
            "best_score": float(self.best_score),
            "episodes": [dict(e) for e in self.episodes],
            "progress": [group.progress.state_dict() for group in self.groups],
            "pool": None if self.pool is None else self._pool_as_arrays(),
        }

    def _pool_as_arrays(self) -> dict:
        """The pool as plain data a checkpoint accepts: each state's bytes as a uint8 array."""
        pool = self.pool.to_dict()
        for name in ("states", "keys"):
            if name in pool:
                pool[name] = [np.frombuffer(value, np.uint8) for value in pool[name]]
        return pool  # payloads: {"bag", "route", "screens", "memory", maybe "history"...}: arrays or None

    def load_state_dict(self, state: dict):
        self.best_score = float(state["best_score"])
        self.episodes = [dict(e) for e in state["episodes"]]
        if len(state["progress"]) != len(self.groups):
            raise SystemExit(
                f"--resume: the checkpoint has {len(state['progress'])} env groups, "
                f"--env-groups is {len(self.groups)}"
            )
        for group, progress in zip(self.groups, state["progress"]):
            group.progress.load_state_dict(progress)
        if self.pool is not None and state["pool"] is not None:
            pool = dict(state["pool"])
            for name in ("states", "keys"):
                if name in pool:
                    pool[name] = [np.asarray(value, np.uint8).tobytes() for value in pool[name]]
            # Checkpoints written before policies had memory keep the bag alone.
            pool["payloads"] = [
                p if isinstance(p, dict) else {"bag": p, "memory": None}
                for p in pool.get("payloads", [None] * len(pool["states"]))
            ]
            # VecGameBoy holds this object, so it is refilled in place. A new-highs pool is drawn at
            # this run's temperature, which --resume may change; an archive's is its fixed band.
            restored = type(self.pool).from_dict(pool)
            if not (self.cells or self.backward):
                restored.temperature = self.pool.temperature
            vars(self.pool).update(vars(restored))

    def close(self):
        self.stepper.shutdown(wait=True)
        for group in self.groups:
            group.env.close()


def make_runner(
    rom: str,
    progress: LearnedProgress,
    settings: ProgressSettings,
    *,
    initial_state: str | None = None,
    num_envs: int,
    num_workers: int | None,
    env_groups: int,
    frame_skip: int,
    press_frames: int,
    max_episode_steps: int,
    curriculum_prob: float,
    curriculum_capacity: int,
    seed: int,
    curriculum_temperature: float = 1.0,
    cell_band: float | None = None,
    backward_goal: float | None = None,
    mastery: bool = False,
    thin: bool = False,
    memory: int = 0,
    burn_in: int = 0,
    grayscale: bool = False,
    worker_timeout_s: float = WORKER_TIMEOUT_S,
    imagined: ImaginedEnvs | None = None,
    routes: list[Route] | None = None,
) -> Runner:
    """`env_groups` VecGameBoys splitting `num_envs` (and the worker processes) between them, each with
    its own ProgressReward. num_workers None: one per usable core; 0: the serial backend. With
    `cell_band` the curriculum is a CellArchive of that band, with `backward_goal` a BackwardChain reaching
    for that score, else a CurriculumPool of new highs drawn at `curriculum_temperature` (with `mastery` a
    MasteryPool, half its resets on the states episodes fail to get further from; with `thin` it drops
    the state closest to its neighbours when full, not the lowest). `memory` is the
    width of the policy's memory each env carries; with `burn_in` each env keeps that many of its last
    observations, saved with its curriculum states for `rollout`'s burn-in. With `imagined`, that many
    of the envs are a WorldModelEnv instead, one group after the emulators'. With `routes` the progress
    is along them (training/route.py). A bad ROM, world model or env setting exits with one line."""
    pool = None
    if curriculum_prob > 0:
        if cell_band is not None:
            pool = CellArchive(curriculum_capacity, cell_band)
        elif backward_goal is not None:
            pool = BackwardChain(curriculum_capacity, backward_goal)
        elif mastery:
            pool = MasteryPool(curriculum_capacity, curriculum_temperature, thin)
        else:
            pool = CurriculumPool(curriculum_capacity, curriculum_temperature, thin)
    serial = num_workers == 0
    num_workers = num_workers or len(os.sched_getaffinity(0))
    emulated = num_envs - (imagined.num_envs if imagined else 0)
    num_groups = min(env_groups, emulated)
    env_sizes, worker_counts = [], []
    if emulated:
        env_sizes = [len(part) for part in np.array_split(np.arange(emulated), num_groups)]
        worker_counts = [
            len(part) for part in np.array_split(np.arange(max(num_workers, num_groups)), num_groups)
        ]
    groups, first_env = [], 0
    try:
        for size, workers in zip(env_sizes, worker_counts):
            env = VecGameBoy(
                rom,
                num_envs=size,
                num_workers=workers,
                frame_skip=frame_skip,
                press_frames=press_frames,
                max_steps=max_episode_steps,
                backend="serial" if serial else "process",
                initial_state=initial_state,
                curriculum=pool,
                pool_prob=curriculum_prob,
                grayscale=grayscale,
                worker_timeout_s=worker_timeout_s,
            )
            reward = ProgressReward(progress, size, settings, routes)
            groups.append(EnvGroup(env, first_env, reward, memory, burn_in))
            first_env += size
    except (RomError, ValueError) as err:
        for group in groups:
            group.env.close()
        raise SystemExit(f"--rom / env settings: {err}") from None
    if imagined:
        try:
            env = world_model_env(
                imagined.world_model,
                imagined.num_envs,
                max_steps=max_episode_steps,
                sample_steps=imagined.sample_steps,
                grayscale=grayscale,
                seed=seed,
            )
        except (CheckpointError, FileNotFoundError, ValueError) as err:
            for group in groups:
                group.env.close()
            raise SystemExit(f"--world-model: {err}") from None
        if groups and env.num_actions != groups[0].env.num_actions:
            for group in groups:
                group.env.close()
            raise SystemExit(
                f"--world-model: it has {env.num_actions} actions, the emulator {groups[0].env.num_actions}"
            )
        progress_reward = ProgressReward(progress, imagined.num_envs, settings, routes)
        groups.append(EnvGroup(env, first_env, progress_reward, memory))
    return Runner(groups, pool, seed)


def env_only_sps(
    rom: str,
    *,
    num_envs: int,
    num_workers: int | None,
    frame_skip: int,
    press_frames: int,
    max_episode_steps: int,
    seconds: float,
    grayscale: bool = False,
    seed: int = 0,
    initial_state: str | None = None,
) -> float:
    """Env steps/s of VecGameBoy alone over about `seconds`, with uniformly random actions and PPO's
    env settings: the ceiling PPO's end-to-end steps/s is compared with."""
    rng = np.random.default_rng(seed)
    with VecGameBoy(
        rom,
        num_envs=num_envs,
        num_workers=num_workers or None,
        frame_skip=frame_skip,
        press_frames=press_frames,
        max_steps=max_episode_steps,
        backend="serial" if num_workers == 0 else "process",
        grayscale=grayscale,
        initial_state=initial_state,
    ) as env:
        env.reset(seed=seed)
        env.step(rng.integers(0, env.num_actions, env.num_envs))  # the workers' first step warms them
        steps, started = 0, time.perf_counter()
        while steps == 0 or time.perf_counter() - started < seconds:
            env.step(rng.integers(0, env.num_actions, env.num_envs))
            steps += 1
        return steps * env.num_envs / (time.perf_counter() - started)
