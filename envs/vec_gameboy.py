"""VecGameBoy: many PyBoy emulators stepping in parallel, a Gymnasium vector env.

    from envs.games import EMUQUEST_ROM
    from envs.vec_gameboy import VecGameBoy

    if __name__ == "__main__":  # the workers start from a fresh process that imports this script
        with VecGameBoy(EMUQUEST_ROM, num_envs=16) as env:
            obs, info = env.reset(seed=0)                  # obs: uint8 (16, 144, 160, 3)
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

For one env behind gymnasium.Env (and gymnasium.make_vec), see envs/gym_env.py.

Layout (PufferLib style). Worker processes each own a contiguous block of envs and
write observations and per-env results in place into one shared-memory buffer; the
parent sends one small command per worker per step over a pipe. `backend="serial"`
runs the same emulator code in-process, for tests and debugging. The emulators, the
buffers and both backends live in envs/emulators.py; this module checks arguments,
splits calls between workers and applies the curriculum.

One env step = `frame_skip` emulator frames: a button is pressed for `press_frames`
frames, released, and the rest of the frames run; only the last frame is rendered.

Episodes end when the game profile says the game is finished (terminated) or after
`max_steps` steps (truncated). The env is then reset inside `step` and the returned
observation is the first of the new episode (same-step auto-reset). Per-episode
statistics are reported only for envs whose episode just ended.

The backend knows no game: it asks the profile (envs/games.py) for the progress
numbers. Reward is the number of new milestones reached this step (0 for
screen-only ROMs); training replaces it with a learned reward.
"""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium
import numpy as np

from envs.actions import ACTION_NAMES, ENV_ACTIONS, FRAME_SKIP, PRESS_FRAMES
from envs.curriculum import SavedStates
from envs.emulators import EnvConfig, ProcessBackend, SerialBackend, obs_shape
from envs.games import EMUQUEST_ROM, GameProfile, detected, profile_for_rom
from envs.rom import check_rom

# How long a step may wait on a worker that is alive but silent (a stopped or stuck process). A step
# takes milliseconds; starting the workers (which import the main script) can take seconds.
WORKER_TIMEOUT_S = 60.0


class VecGameBoy(gymnasium.vector.VectorEnv):
    """N Game Boy emulators behind reset/step, a Gymnasium vector env with same-step autoreset: an
    ended episode's last observation is info["final_obs"][i] (info["_final_obs"] marks which). See the
    module docstring.

    Args:
        rom: path of the .gb/.gbc file; checked before any worker starts.
        num_envs: number of emulators.
        num_workers: worker processes (default: one per CPU core, at most num_envs);
            envs are split as evenly as possible. Ignored by the serial backend.
        frame_skip: emulator frames per env step.
        press_frames: frames a button is held at the start of a step (< frame_skip).
        max_steps: episode length after which an episode is truncated.
        backend: "process" (shared memory + workers) or "serial" (in-process).
        initial_state: state file path or bytes to start episodes from instead of
            power-on (e.g. a Pokémon Red state after the intro).
        curriculum: pool of saved states; each reset loads one with probability pool_prob.
        pool_prob: probability that a reset starts from a curriculum pool state.
        use_select: add SELECT as a ninth action.
        grayscale: observations (N, 144, 160, 1) in gray instead of RGB: lossless for a game with a
            gray palette (EmuQuest, Pokémon Red), a third of the bytes and of the encoder's first conv.
        profile: game profile; default: detected from the cartridge title.
        worker_timeout_s: how long to wait for a worker that is alive but silent.
        pin_workers: pin worker w to the w-th usable CPU. Default: pin when there are exactly
            as many workers as usable CPUs (two VecGameBoys sharing the CPUs should not pin).
    """

    def __init__(
        self,
        rom: str | Path = EMUQUEST_ROM,
        num_envs: int = 8,
        num_workers: int | None = None,
        frame_skip: int = FRAME_SKIP,
        press_frames: int = PRESS_FRAMES,
        max_steps: int = 2048,
        backend: str = "process",
        initial_state: str | Path | bytes | None = None,
        curriculum: SavedStates | None = None,
        pool_prob: float = 0.0,
        use_select: bool = False,
        grayscale: bool = False,
        profile: GameProfile | None = None,
        worker_timeout_s: float = WORKER_TIMEOUT_S,
        pin_workers: bool | None = None,
    ):
        rom_bytes = check_rom(rom)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if frame_skip < 2 or not 1 <= press_frames < frame_skip:
            raise ValueError(
                f"need frame_skip >= 2 and 1 <= press_frames < frame_skip (the release must happen "
                f"inside the step), got frame_skip={frame_skip}, press_frames={press_frames}"
            )
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if backend not in ("process", "serial"):
            raise ValueError(f'backend must be "process" or "serial", got {backend!r}')
        if not 0.0 <= pool_prob <= 1.0:
            raise ValueError(f"pool_prob must be in [0, 1], got {pool_prob}")
        if isinstance(initial_state, (str, Path)):
            if not Path(initial_state).is_file():
                raise FileNotFoundError(
                    f"initial state {initial_state} not found: pass a file saved by save_states"
                )
            initial_state = Path(initial_state).read_bytes()

        self.num_envs = num_envs
        self.action_names = ACTION_NAMES if use_select else ENV_ACTIONS
        self.num_actions = len(self.action_names)
        self.metadata = {"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP}
        self.single_observation_space = gymnasium.spaces.Box(0, 255, obs_shape(grayscale), np.uint8)
        self.single_action_space = gymnasium.spaces.Discrete(self.num_actions)
        self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, num_envs)
        self.profile = profile if profile is not None else profile_for_rom(rom_bytes)
        self.detected = detected(self.profile, rom_bytes)  # the profile, title, sha1: what runs record
        self.curriculum = curriculum
        self.pool_prob = pool_prob
        self.config = EnvConfig(
            str(rom), self.profile, frame_skip, press_frames, max_steps, initial_state, grayscale
        )
        self._rng = np.random.default_rng()
        self._needs_reset = True
        if backend == "serial":
            self._backend = SerialBackend(self.config, num_envs)
        else:
            cores = len(os.sched_getaffinity(0))
            num_workers = min(num_workers if num_workers is not None else cores, num_envs)
            pin = pin_workers if pin_workers is not None else num_workers == cores
            self._backend = ProcessBackend(self.config, num_envs, num_workers, worker_timeout_s, pin)
        self._buffers = self._backend.buffers
        self.num_workers = len(self._backend.bounds)

    # ---- Gymnasium-style API ----

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start every env; the seed drives curriculum sampling (the emulator is deterministic, and
        there are no options). obs is the shared buffer itself: it is overwritten by the next step,
        copy to keep it."""
        self._check_open()
        self._rng = np.random.default_rng(seed)
        self._backend.call("reset_all", {w: () for w in range(self.num_workers)})
        self._needs_reset = False
        return self._buffers.obs, self._step_info(self._apply_curriculum(list(range(self.num_envs))))

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """actions: int (num_envs,) in [0, num_actions). info["episodes"] lists the stats of
        episodes that ended this step; info["milestones"] and info["map_id"] cover every env;
        info["pool_starts"] maps the envs that reset onto a curriculum state to its pool index."""
        self._check_open()
        if self._needs_reset:
            raise RuntimeError("VecGameBoy.step called before reset()")
        self._buffers.actions[:] = self._check_actions(actions)
        results = self._backend.call("step", {w: () for w in range(self.num_workers)})
        episodes = [episode for w in sorted(results) for episode in results[w]]
        buf = self._buffers
        info = self._step_info(self._apply_curriculum([episode["env_id"] for episode in episodes]))
        info["episodes"] = episodes
        if episodes:  # Gymnasium's same-step autoreset: each ended episode's last frame
            ended = np.zeros(self.num_envs, bool)
            ended[[episode["env_id"] for episode in episodes]] = True
            info["final_obs"] = np.full(self.num_envs, None, dtype=object)
            for env_id in np.flatnonzero(ended):
                info["final_obs"][env_id] = buf.final_obs[env_id].copy()
            info["_final_obs"] = ended
        return buf.obs, buf.reward.copy(), buf.terminated.copy(), buf.truncated.copy(), info

    # ---- states, curriculum, RAM ----

    def save_states(self, env_ids) -> list[bytes]:
        self._check_open()
        env_ids = self._check_env_ids(env_ids)
        by_worker = self._by_worker(env_ids)
        results = self._backend.call("save", {w: ([i for _, i in items],) for w, items in by_worker.items()})
        states: list[bytes] = [b""] * len(env_ids)
        for w, items in by_worker.items():
            for (position, _), state in zip(items, results[w]):
                states[position] = state
        return states

    def load_states(self, env_ids, states: list[bytes]) -> None:
        """Load states into envs; each starts a new episode there, and obs shows the state's frame."""
        self._check_open()
        env_ids = self._check_env_ids(env_ids)
        if len(states) != len(env_ids):
            raise ValueError(f"load_states got {len(env_ids)} env ids but {len(states)} states")
        by_worker = self._by_worker(env_ids)
        self._backend.call(
            "load",
            {
                w: ([i for _, i in items], [bytes(states[p]) for p, _ in items])
                for w, items in by_worker.items()
            },
        )

    def ram(self, addresses) -> np.ndarray:
        """uint8 (num_envs, len(addresses)): memory bytes for metrics and bookkeeping, never for
        the policy."""
        self._check_open()
        addresses = [int(a) for a in addresses]
        if any(not 0 <= a <= 0xFFFF for a in addresses):
            raise ValueError("ram addresses must be in 0x0000..0xFFFF")
        results = self._backend.call("ram", {w: (addresses,) for w in range(self.num_workers)})
        return np.concatenate([results[w] for w in range(self.num_workers)])

    @property
    def worker_pids(self) -> list[int]:
        return list(getattr(self._backend, "pids", []))

    def close_extras(self, **kwargs) -> None:
        self._backend.close()

    def __enter__(self) -> VecGameBoy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- helpers ----

    def _apply_curriculum(self, env_ids: list[int]) -> dict[int, int]:
        """Loads pool states into some of these freshly reset envs; returns {env id: pool index}."""
        if self.curriculum is None or not env_ids:
            return {}
        picks = self.curriculum.reset_picks(self._rng, len(env_ids), self.pool_prob)
        chosen = {env_id: pick for env_id, pick in zip(env_ids, picks) if pick is not None}
        if chosen:
            self.load_states(list(chosen), [self.curriculum.states[pick] for pick in chosen.values()])
        return chosen

    def _step_info(self, pool_starts: dict[int, int]) -> dict:
        return {
            "milestones": self._buffers.milestones.copy(),
            "map_id": self._buffers.map_id.copy(),
            "pool_starts": pool_starts,
        }

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("VecGameBoy is closed")

    def _check_actions(self, actions) -> np.ndarray:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {actions.shape}")
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be integers, got dtype {actions.dtype}")
        if actions.min() < 0 or actions.max() >= self.num_actions:
            raise ValueError(
                f"actions must be in [0, {self.num_actions}) ({', '.join(self.action_names)}), "
                f"got values from {actions.min()} to {actions.max()}"
            )
        return actions

    def _check_env_ids(self, env_ids) -> list[int]:
        env_ids = [int(i) for i in np.atleast_1d(np.asarray(env_ids))]
        if any(not 0 <= i < self.num_envs for i in env_ids):
            raise ValueError(f"env ids must be in [0, {self.num_envs}), got {env_ids}")
        return env_ids

    def _by_worker(self, env_ids: list[int]) -> dict[int, list[tuple[int, int]]]:
        """worker -> [(position in env_ids, env index local to that worker)]."""
        by_worker: dict[int, list[tuple[int, int]]] = {}
        for position, env_id in enumerate(env_ids):
            for w, (start, stop) in enumerate(self._backend.bounds):
                if start <= env_id < stop:
                    by_worker.setdefault(w, []).append((position, env_id - start))
        return by_worker
