"""VecGameBoy: many PyBoy emulators stepping in parallel behind one Gymnasium-style API.

    with VecGameBoy(EMUQUEST_ROM, num_envs=16) as env:
        obs, info = env.reset(seed=0)                   # obs: uint8 (16, 144, 160, 3)
        obs, reward, terminated, truncated, info = env.step(actions)   # actions: int (16,)

Layout (PufferLib style). Worker processes each own a contiguous block of envs and
write observations and per-env results in place into one shared-memory buffer; the
parent sends one small command per worker per step over a pipe. `backend="serial"`
runs the same `_EnvGroup` code in-process, for tests and debugging.

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

import ctypes
import io
import multiprocessing as mp
import os
import select
import signal
import time
import traceback
import warnings
import weakref
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from envs.curriculum import CurriculumPool
from envs.games import EMUQUEST_ROM, GameProfile, profile_for_rom
from envs.rom import check_rom

# pysdl2-dll announces itself on import in every worker; we never open a window.
warnings.filterwarnings("ignore", message="Using SDL2 binaries")
from pyboy import PyBoy  # noqa: E402

OBS_SHAPE = (144, 160, 3)
ACTION_NAMES = ("noop", "up", "down", "left", "right", "a", "b", "start", "select")
FRAME_SKIP, PRESS_FRAMES = 30, 8  # defaults of one env step: 0.5 s, a button held for the first 8 frames


@dataclass(frozen=True)
class EnvConfig:
    """What every emulator needs to know; sent once to each worker."""

    rom: str
    profile: GameProfile
    frame_skip: int
    press_frames: int
    max_steps: int
    start_state: bytes | None  # None: power-on


@dataclass
class _Buffers:
    """Per-env results, first axis = global env id. Shared memory in the process backend."""

    obs: np.ndarray  # uint8 (N, 144, 160, 3)
    actions: np.ndarray  # int64 (N,)
    reward: np.ndarray  # float32 (N,)
    terminated: np.ndarray  # bool (N,)
    truncated: np.ndarray  # bool (N,)
    milestones: np.ndarray  # int32 (N,), -1 where the profile cannot know
    map_id: np.ndarray  # int32 (N,)


_BUFFER_LAYOUT = {
    "obs": (np.uint8, OBS_SHAPE),
    "actions": (np.int64, ()),
    "reward": (np.float32, ()),
    "terminated": (np.bool_, ()),
    "truncated": (np.bool_, ()),
    "milestones": (np.int32, ()),
    "map_id": (np.int32, ()),
}


def _allocate_raw(num_envs: int, ctx=None) -> dict:
    """Raw byte storage per buffer: multiprocessing RawArrays (which spawned workers
    inherit without the shared_memory resource-tracker pitfalls) or plain bytearrays."""
    raw = {}
    for name, (dtype, shape) in _BUFFER_LAYOUT.items():
        nbytes = num_envs * int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        raw[name] = ctx.RawArray(ctypes.c_uint8, nbytes) if ctx is not None else bytearray(nbytes)
    return raw


def _buffers_from_raw(raw: dict, num_envs: int) -> _Buffers:
    views = {
        name: np.frombuffer(raw[name], dtype=dtype).reshape((num_envs, *shape))
        for name, (dtype, shape) in _BUFFER_LAYOUT.items()
    }
    return _Buffers(**views)


class _EnvGroup:
    """Emulators for envs [first, first + count); reads actions from and writes results
    into the global buffers. Runs inside a worker process, or in-process when serial."""

    def __init__(self, config: EnvConfig, first: int, count: int, buffers: _Buffers):
        self.config = config
        self.first = first
        local = slice(first, first + count)
        self.buf = _Buffers(**{f.name: getattr(buffers, f.name)[local] for f in fields(_Buffers)})
        self.pyboys = [PyBoy(config.rom, window="null", sound_emulated=False, log_level="ERROR") for _ in range(count)]
        if config.start_state is None:
            # Power-on: one rendered frame first, so a power-on reset shows the blank screen the
            # game shows (and its speedruns start with), not PyBoy's never-rendered all-zero
            # buffer, which a reward model has never seen and scores arbitrarily.
            self.pyboys[0].tick(1, True)
        self.start_state = config.start_state or self._save(self.pyboys[0])
        # One persistent RGBA (144, 160, 4) view per emulator, updated by each rendered tick.
        self.screens = [pyboy.screen.ndarray for pyboy in self.pyboys]
        self.episode_steps = np.zeros(count, np.int64)
        self.best_milestones = np.zeros(count, np.int64)
        self.left_title = np.zeros(count, bool)
        self.maps_visited: list[set[int]] = [set() for _ in range(count)]

    @staticmethod
    def _save(pyboy: PyBoy) -> bytes:
        with io.BytesIO() as f:
            pyboy.save_state(f)
            return f.getvalue()

    def _write_obs(self, i: int) -> None:
        # OpenCV drops alpha straight into the shared buffer in ~10 us; a numpy copy from
        # the strided RGB view takes ~200 us, 10% of a 30-frame step.
        cv2.cvtColor(self.screens[i], cv2.COLOR_RGBA2RGB, dst=self.buf.obs[i])

    def _begin_episode(self, i: int, state: bytes) -> None:
        """Load a state (power-on, initial or curriculum) and start a fresh episode in env i."""
        pyboy = self.pyboys[i]
        pyboy.load_state(io.BytesIO(state))
        self._write_obs(i)  # the state carries the last rendered frame
        status = self.config.profile.status(pyboy.memory)
        self.episode_steps[i] = 0
        self.best_milestones[i] = status.milestones
        self.left_title[i] = status.left_title
        self.maps_visited[i] = {status.map_id} if status.left_title and status.map_id >= 0 else set()
        self.buf.milestones[i] = status.milestones
        self.buf.map_id[i] = status.map_id

    def reset_all(self) -> None:
        for i in range(len(self.pyboys)):
            self._begin_episode(i, self.start_state)
        self.buf.reward[:] = 0
        self.buf.terminated[:] = False
        self.buf.truncated[:] = False

    def step(self) -> list[dict]:
        """One env step for every env here; returns stats of the episodes that ended."""
        cfg = self.config
        release_frames = cfg.frame_skip - cfg.press_frames
        ended = []
        for i, pyboy in enumerate(self.pyboys):
            action = int(self.buf.actions[i])
            if action == 0:
                pyboy.tick(cfg.frame_skip, True)
            else:
                button = ACTION_NAMES[action]
                pyboy.button_press(button)
                pyboy.tick(cfg.press_frames, False)
                pyboy.button_release(button)
                pyboy.tick(release_frames, True)
            self._write_obs(i)

            status = cfg.profile.status(pyboy.memory)
            self.episode_steps[i] += 1
            self.buf.reward[i] = max(0, status.milestones - self.best_milestones[i])
            self.best_milestones[i] = max(self.best_milestones[i], status.milestones)
            self.left_title[i] |= status.left_title
            if status.left_title and status.map_id >= 0:  # the map byte means nothing on the title
                self.maps_visited[i].add(status.map_id)
            self.buf.milestones[i] = status.milestones
            self.buf.map_id[i] = status.map_id

            terminated = cfg.profile.finished(pyboy.memory)
            truncated = not terminated and self.episode_steps[i] >= cfg.max_steps
            self.buf.terminated[i] = terminated
            self.buf.truncated[i] = truncated
            if terminated or truncated:
                ended.append(
                    {
                        "env_id": self.first + i,
                        "length": int(self.episode_steps[i]),
                        "milestones": int(self.best_milestones[i]),
                        "maps_visited": len(self.maps_visited[i]),
                        "left_title": bool(self.left_title[i]),
                        "finished": bool(terminated),
                    }
                )
                self._begin_episode(i, self.start_state)
        return ended

    def save(self, local_ids: list[int]) -> list[bytes]:
        return [self._save(self.pyboys[i]) for i in local_ids]

    def load(self, local_ids: list[int], states: list[bytes]) -> None:
        for i, state in zip(local_ids, states):
            self._begin_episode(i, state)

    def ram(self, addresses: list[int]) -> np.ndarray:
        """uint8 (count, len(addresses))."""
        return np.array([[pyboy.memory[a] for a in addresses] for pyboy in self.pyboys], np.uint8)

    def close(self) -> None:
        for pyboy in self.pyboys:
            pyboy.stop(save=False)  # never write .ram files next to the ROM


def _worker_main(conn, config: EnvConfig, first: int, count: int, raw: dict, num_envs: int, cpu: int | None) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)  # one worker per core already; no thread pool per worker
    # SCHED_BATCH: a worker woken by the parent's command does not preempt the parent, so
    # the parent finishes sending every worker its command first. Under the default policy
    # the first worker woken took the parent's core and delayed the rest by ~0.5 ms a step.
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    if cpu is not None:
        # A worker sleeps between steps and, unpinned, often wakes on the other core with
        # cold caches for its emulators: pinned, it spent ~7% less CPU per env step here.
        os.sched_setaffinity(0, {cpu})
    try:
        group = _EnvGroup(config, first, count, _buffers_from_raw(raw, num_envs))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", os.getpid()))
    while True:
        try:
            command, args = conn.recv()
        except EOFError:  # the parent is gone
            break
        if command == "close":
            break
        try:
            conn.send(("ok", getattr(group, command)(*args)))
        except Exception:
            conn.send(("error", traceback.format_exc()))
    group.close()


class _SerialBackend:
    """All envs in this process: same code path as a worker, no IPC."""

    def __init__(self, config: EnvConfig, num_envs: int):
        self.bounds = [(0, num_envs)]
        self.buffers = _buffers_from_raw(_allocate_raw(num_envs), num_envs)
        self.group = _EnvGroup(config, 0, num_envs, self.buffers)

    def call(self, command: str, args_by_worker: dict[int, tuple]) -> dict:
        return {w: getattr(self.group, command)(*args) for w, args in args_by_worker.items()}

    def close(self) -> None:
        self.group.close()


def _shutdown_workers(processes: list, conns: list) -> None:
    """Ask each worker to stop, then make sure: no process may outlive the env."""
    for conn in conns:
        try:
            conn.send(("close", ()))
        except OSError:
            pass  # already dead
    deadline = time.monotonic() + 5.0
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    for conn in conns:
        conn.close()


class _ProcessBackend:
    """Worker processes, each with a contiguous block of envs."""

    def __init__(self, config: EnvConfig, num_envs: int, num_workers: int, timeout_s: float, pin: bool):
        # Forkserver, not fork: forking a parent that runs JAX threads is unsafe. The server
        # imports the main script (under its __main__ guard) and this module once, so each
        # worker starts as a cheap fork of it instead of re-importing everything as spawn does.
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["__main__", __name__])
        self.timeout_s = timeout_s
        self.broken: str | None = None
        sizes = [len(block) for block in np.array_split(np.arange(num_envs), num_workers)]
        starts = np.cumsum([0, *sizes[:-1]])
        self.bounds = [(int(s), int(s) + n) for s, n in zip(starts, sizes)]
        raw = _allocate_raw(num_envs, ctx)
        self.buffers = _buffers_from_raw(raw, num_envs)
        cpus = sorted(os.sched_getaffinity(0))
        self.processes, self.conns = [], []
        for w, (start, stop) in enumerate(self.bounds):
            parent_conn, child_conn = ctx.Pipe()
            process = ctx.Process(
                target=_worker_main,
                args=(child_conn, config, start, stop - start, raw, num_envs, cpus[w % len(cpus)] if pin else None),
                name=f"VecGameBoy-worker-{w}",
                daemon=True,
            )
            process.start()
            child_conn.close()  # so a dead worker reads as EOF, not as a silent pipe
            self.processes.append(process)
            self.conns.append(parent_conn)
        self._finalizer = weakref.finalize(self, _shutdown_workers, self.processes, self.conns)
        # One poll object over every pipe and process sentinel, built once: per step it
        # costs a fraction of multiprocessing.connection.wait, which builds a selector per call.
        self._poller = select.poll()
        self._worker_of_pipe = {conn.fileno(): w for w, conn in enumerate(self.conns)}
        self._worker_of_sentinel = {process.sentinel: w for w, process in enumerate(self.processes)}
        for fd in (*self._worker_of_pipe, *self._worker_of_sentinel):
            self._poller.register(fd, select.POLLIN)
        try:
            pids = self._gather(range(num_workers))
        except BaseException:
            self.close()
            raise
        self.pids = [pids[w] for w in range(num_workers)]

    def _describe(self, w: int) -> str:
        start, stop = self.bounds[w]
        return f"VecGameBoy worker {w} (pid {self.processes[w].pid}, envs {start}..{stop - 1})"

    def _died(self, w: int) -> RuntimeError:
        process = self.processes[w]
        process.join(1.0)
        code = process.exitcode
        how = f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        self.broken = f"{self._describe(w)} died ({how}); close this VecGameBoy and make a new one"
        return RuntimeError(self.broken)

    def _gather(self, workers) -> dict:
        """The reply of each of these workers. Any worker's death raises at once; a worker's
        exception is raised after every reply is in, so the others stay in step."""
        results, first_error, pending = {}, None, set(workers)
        deadline = time.monotonic() + self.timeout_s
        while pending:
            events = self._poller.poll(max(0.0, deadline - time.monotonic()) * 1000)
            if not events:
                stuck = ", ".join(self._describe(w) for w in sorted(pending))
                self.broken = f"{stuck} did not answer within {self.timeout_s:.0f} s"
                raise RuntimeError(self.broken)
            for fd, _ in events:
                if fd in self._worker_of_sentinel:
                    raise self._died(self._worker_of_sentinel[fd])
            for fd, _ in events:
                w = self._worker_of_pipe[fd]
                if w not in pending:
                    continue
                try:
                    status, result = self.conns[w].recv()
                except (EOFError, OSError):
                    raise self._died(w) from None
                pending.discard(w)
                if status == "ok":
                    results[w] = result
                elif first_error is None:
                    first_line = result.strip().splitlines()[-1]
                    first_error = RuntimeError(f"{self._describe(w)} failed: {first_line}\n{result}")
        if first_error:
            raise first_error
        return results

    def call(self, command: str, args_by_worker: dict[int, tuple]) -> dict:
        if self.broken:
            raise RuntimeError(self.broken)
        try:
            for w, args in args_by_worker.items():
                try:
                    self.conns[w].send((command, args))
                except OSError:
                    raise self._died(w) from None
            return self._gather(args_by_worker)
        except KeyboardInterrupt:
            # Replies may still be in flight: a later call would read the wrong ones.
            self.broken = "VecGameBoy was interrupted during a call; close it and make a new one"
            raise

    def close(self) -> None:
        self._finalizer()


class VecGameBoy:
    """N Game Boy emulators behind reset/step. See the module docstring.

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
        curriculum: CurriculumPool | None = None,
        pool_prob: float = 0.0,
        use_select: bool = False,
        profile: GameProfile | None = None,
        worker_timeout_s: float = 300.0,
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
                raise FileNotFoundError(f"initial state {initial_state} not found: pass a file saved by save_states")
            initial_state = Path(initial_state).read_bytes()

        self.num_envs = num_envs
        self.action_names = ACTION_NAMES if use_select else ACTION_NAMES[:-1]
        self.num_actions = len(self.action_names)
        self.profile = profile if profile is not None else profile_for_rom(rom_bytes)
        self.curriculum = curriculum
        self.pool_prob = pool_prob
        self.config = EnvConfig(str(rom), self.profile, frame_skip, press_frames, max_steps, initial_state)
        self._rng = np.random.default_rng()
        self._needs_reset = True
        self._closed = False
        if backend == "serial":
            self._backend = _SerialBackend(self.config, num_envs)
        else:
            cores = len(os.sched_getaffinity(0))
            num_workers = min(num_workers if num_workers is not None else cores, num_envs)
            pin = pin_workers if pin_workers is not None else num_workers == cores
            self._backend = _ProcessBackend(self.config, num_envs, num_workers, worker_timeout_s, pin)
        self._buffers = self._backend.buffers
        self.num_workers = len(self._backend.bounds)

    # ---- Gymnasium-style API ----

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        """Start every env; the seed drives curriculum sampling (the emulator is deterministic).
        obs is the shared buffer itself: it is overwritten by the next step, copy to keep it."""
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
            {w: ([i for _, i in items], [bytes(states[p]) for p, _ in items]) for w, items in by_worker.items()},
        )

    def ram(self, addresses) -> np.ndarray:
        """uint8 (num_envs, len(addresses)): memory bytes for metrics and bookkeeping (never for the policy)."""
        self._check_open()
        addresses = [int(a) for a in addresses]
        if any(not 0 <= a <= 0xFFFF for a in addresses):
            raise ValueError("ram addresses must be in 0x0000..0xFFFF")
        results = self._backend.call("ram", {w: (addresses,) for w in range(self.num_workers)})
        return np.concatenate([results[w] for w in range(self.num_workers)])

    @property
    def worker_pids(self) -> list[int]:
        return list(getattr(self._backend, "pids", []))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
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
        return {"milestones": self._buffers.milestones.copy(), "map_id": self._buffers.map_id.copy(),
                "pool_starts": pool_starts}

    def _check_open(self) -> None:
        if self._closed:
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
