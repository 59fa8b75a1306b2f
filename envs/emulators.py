"""The emulator side of VecGameBoy (envs/vec_gameboy.py): what runs the PyBoys.

`EmulatorGroup` owns the emulators of a contiguous block of envs. It reads each env's
action from, and writes its observation and step results into, buffers whose first axis
is the global env id (`_buffer_layout`). Two backends drive groups for VecGameBoy:

- `ProcessBackend`: one group per worker process (`_worker_main`), the buffers in shared
  memory; the parent sends one small command per worker per step over a pipe, waits for
  every reply, and reports a dead or silent worker. Workers stop with the backend
  (`_shutdown_workers`), also when it is garbage-collected.
- `SerialBackend`: a single group in this process, for tests and debugging.

One env step = `frame_skip` emulator frames: a button is pressed for `press_frames`
frames, released, and the rest of the frames run; only the last frame is rendered.
An episode that ends (the profile says the game is finished, or `max_steps`) is reset
inside the step, and its statistics are returned.
"""

from __future__ import annotations

import contextlib
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

import cv2
import numpy as np

from envs.actions import ACTION_NAMES
from envs.games import GameProfile

# pysdl2-dll announces itself on import in every worker; we never open a window.
warnings.filterwarnings("ignore", message="Using SDL2 binaries")
from pyboy import PyBoy  # noqa: E402

SCREEN_HW = (144, 160)


def obs_shape(grayscale: bool) -> tuple[int, int, int]:
    """One observation: the screen in RGB, or in gray (1 channel), which a gray-palette game such as
    EmuQuest or Pokémon Red shows without loss at a third of the bytes."""
    return (*SCREEN_HW, 1 if grayscale else 3)


class WorkerError(RuntimeError):
    """A worker process died, stalled past the timeout, or raised: the message says which worker and
    how (a worker's own traceback follows the first line). The VecGameBoy cannot be used after it."""


@dataclass(frozen=True)
class EnvConfig:
    """What every emulator needs to know; sent once to each worker."""

    rom: str
    profile: GameProfile
    frame_skip: int
    press_frames: int
    max_steps: int
    start_state: bytes | None  # None: power-on
    grayscale: bool = False  # observations (H, W, 1) instead of (H, W, 3)


@dataclass
class _Buffers:
    """Per-env results, first axis = global env id. Shared memory in the process backend."""

    obs: np.ndarray  # uint8 (N, 144, 160, C)
    final_obs: np.ndarray  # uint8 (N, 144, 160, C): an ended episode's last frame, before the auto-reset
    actions: np.ndarray  # int64 (N,)
    reward: np.ndarray  # float32 (N,)
    terminated: np.ndarray  # bool (N,)
    truncated: np.ndarray  # bool (N,)
    milestones: np.ndarray  # int32 (N,), -1 where the profile cannot know
    map_id: np.ndarray  # int32 (N,)


def _buffer_layout(grayscale: bool) -> dict:
    """name -> (dtype, shape per env) of each shared buffer."""
    return {
        "obs": (np.uint8, obs_shape(grayscale)),
        "final_obs": (np.uint8, obs_shape(grayscale)),
        "actions": (np.int64, ()),
        "reward": (np.float32, ()),
        "terminated": (np.bool_, ()),
        "truncated": (np.bool_, ()),
        "milestones": (np.int32, ()),
        "map_id": (np.int32, ()),
    }


def _allocate_raw(num_envs: int, grayscale: bool, ctx=None) -> dict:
    """Raw byte storage per buffer: multiprocessing RawArrays (which spawned workers
    inherit without the shared_memory resource-tracker pitfalls) or plain bytearrays."""
    raw = {}
    for name, (dtype, shape) in _buffer_layout(grayscale).items():
        nbytes = num_envs * int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        raw[name] = ctx.RawArray(ctypes.c_uint8, nbytes) if ctx is not None else bytearray(nbytes)
    return raw


def _buffers_from_raw(raw: dict, num_envs: int, grayscale: bool) -> _Buffers:
    views = {
        name: np.frombuffer(raw[name], dtype=dtype).reshape((num_envs, *shape))
        for name, (dtype, shape) in _buffer_layout(grayscale).items()
    }
    return _Buffers(**views)


class EmulatorGroup:
    """Emulators for envs [first, first + count); reads actions from and writes results
    into the global buffers. Runs inside a worker process, or in-process when serial."""

    def __init__(self, config: EnvConfig, first: int, count: int, buffers: _Buffers):
        self.config = config
        self.first = first
        local = slice(first, first + count)
        self.buf = _Buffers(**{f.name: getattr(buffers, f.name)[local] for f in fields(_Buffers)})
        self.pyboys = [
            PyBoy(config.rom, window="null", sound_emulated=False, log_level="ERROR") for _ in range(count)
        ]
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
        self.title_steps = np.full(count, -1, np.int64)  # the episode step the title was left at; -1: not yet
        self.intro_done = np.zeros(count, bool)
        self.intro_steps = np.full(count, -1, np.int64)  # the episode step the intro ended at; -1: not yet
        self.maps_visited: list[set[int]] = [set() for _ in range(count)]

    @staticmethod
    def _save(pyboy: PyBoy) -> bytes:
        with io.BytesIO() as f:
            pyboy.save_state(f)
            return f.getvalue()

    def _write_obs(self, i: int) -> None:
        # OpenCV converts straight into the shared buffer in ~10 us; a numpy copy from the strided
        # RGB view takes ~200 us, 10% of a 30-frame step. Gray is exact for a gray palette: OpenCV's
        # fixed-point luma of (v, v, v) is v.
        if self.config.grayscale:
            cv2.cvtColor(self.screens[i], cv2.COLOR_RGBA2GRAY, dst=self.buf.obs[i].reshape(SCREEN_HW))
        else:
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
        self.title_steps[i] = 0 if status.left_title else -1
        self.intro_done[i] = status.intro_done
        self.intro_steps[i] = 0 if status.intro_done else -1
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
            if status.left_title and not self.left_title[i]:
                self.title_steps[i] = self.episode_steps[i]
            self.left_title[i] |= status.left_title
            if status.intro_done and not self.intro_done[i]:
                self.intro_steps[i] = self.episode_steps[i]
            self.intro_done[i] |= status.intro_done
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
                        "title_steps": int(self.title_steps[i]) if self.left_title[i] else None,
                        "intro_done": bool(self.intro_done[i]),
                        "intro_steps": int(self.intro_steps[i]) if self.intro_done[i] else None,
                        "finished": bool(terminated),
                        "facts": cfg.profile.episode_facts(pyboy.memory),
                    }
                )
                self.buf.final_obs[i] = self.buf.obs[i]
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


def _worker_main(
    conn, config: EnvConfig, first: int, count: int, raw: dict, num_envs: int, cpu: int | None
) -> None:
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
        group = EmulatorGroup(config, first, count, _buffers_from_raw(raw, num_envs, config.grayscale))
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


class SerialBackend:
    """All envs in this process: same code path as a worker, no IPC."""

    def __init__(self, config: EnvConfig, num_envs: int):
        self.bounds = [(0, num_envs)]
        self.buffers = _buffers_from_raw(
            _allocate_raw(num_envs, config.grayscale), num_envs, config.grayscale
        )
        self.group = EmulatorGroup(config, 0, num_envs, self.buffers)

    def call(self, command: str, args_by_worker: dict[int, tuple]) -> dict:
        return {w: getattr(self.group, command)(*args) for w, args in args_by_worker.items()}

    def close(self) -> None:
        self.group.close()


def _shutdown_workers(processes: list, conns: list) -> None:
    """Ask each worker to stop, then make sure: no process may outlive the env."""
    for conn in conns:
        with contextlib.suppress(OSError):  # a worker that is already dead cannot be asked
            conn.send(("close", ()))
    deadline = time.monotonic() + 5.0
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    for conn in conns:
        conn.close()


class ProcessBackend:
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
        raw = _allocate_raw(num_envs, config.grayscale, ctx)
        self.buffers = _buffers_from_raw(raw, num_envs, config.grayscale)
        cpus = sorted(os.sched_getaffinity(0))
        self.processes, self.conns = [], []
        for w, (start, stop) in enumerate(self.bounds):
            parent_conn, child_conn = ctx.Pipe()
            cpu = cpus[w % len(cpus)] if pin else None
            process = ctx.Process(
                target=_worker_main,
                args=(child_conn, config, start, stop - start, raw, num_envs, cpu),
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

    def _died(self, w: int) -> WorkerError:
        process = self.processes[w]
        process.join(1.0)
        code = process.exitcode
        if code is not None and code < 0:
            how = f"killed by signal {signal.Signals(-code).name}"
        else:
            how = f"exit code {code}"
        self.broken = f"{self._describe(w)} died ({how}); close this VecGameBoy and make a new one"
        return WorkerError(self.broken)

    def _gather(self, workers) -> dict:
        """The reply of each of these workers. Any worker's death raises at once; a worker's
        exception is raised after every reply is in, so the others stay in step."""
        results, first_error, pending = {}, None, set(workers)
        deadline = time.monotonic() + self.timeout_s
        while pending:
            events = self._poller.poll(max(0.0, deadline - time.monotonic()) * 1000)
            if not events:
                stuck = ", ".join(self._describe(w) for w in sorted(pending))
                self.broken = (
                    f"{stuck} did not answer within {self.timeout_s:g} s (stopped or stuck; "
                    "the worker timeout sets how long to wait)"
                )
                raise WorkerError(self.broken)
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
                    first_error = WorkerError(f"{self._describe(w)} failed: {first_line}\n{result}")
        if first_error:
            raise first_error
        return results

    def call(self, command: str, args_by_worker: dict[int, tuple]) -> dict:
        if self.broken:
            raise WorkerError(self.broken)
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
