"""Env throughput: raw PyBoy ticking against VecGameBoy, in one run.

    uv run python bench/env_throughput.py
    uv run python bench/env_throughput.py --num-envs 16 --steps 300

Raw: one process per core, each ticking its share of the envs with the same frame
skip, button press/release and render-last-frame as the env, but no observation
copy, no RAM reads and no IPC. VecGameBoy: the same total env count with 1, 2, 4
and cores workers. Both replay the same seeded random actions from power-on.
The target is VecGameBoy at workers = cores >= 0.9 x raw.

Configurations run interleaved, --repeats times, and each reports its best run:
on a shared machine, other load only ever slows a run down.

Prints a markdown table and writes it to --output (atomically).
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import platform
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import tyro
from tqdm import tqdm

from envs.games import EMUQUEST_ROM
from envs.rom import RomError, check_rom
from envs.vec_gameboy import ACTION_NAMES, VecGameBoy, PyBoy


@dataclass
class Args:
    rom: Path = EMUQUEST_ROM
    """Game Boy ROM to run (default: the embedded game)."""
    num_envs: int | None = None
    """Total emulators in every configuration (default: max(8, cores), rounded up to a multiple of cores)."""
    worker_counts: tuple[int, ...] = (1, 2, 4)
    """VecGameBoy worker counts to measure; the core count is always added."""
    steps: int = 150
    """Timed env steps per env in each configuration."""
    warmup_steps: int = 10
    """Untimed env steps first (leaves power-on, warms caches)."""
    frame_skip: int = 30
    """Emulator frames per env step, as in the env."""
    press_frames: int = 8
    """Frames a button is held within a step, as in the env."""
    repeats: int = 3
    """Runs of every configuration, interleaved; the best is reported."""
    seed: int = 0
    """Seed of the random actions."""
    output: Path = Path("bench/results/env_throughput.md")
    """Where the markdown table is written."""


def random_actions(seed: int, steps: int, num_envs: int) -> np.ndarray:
    """int (steps, num_envs) over the 8 standard actions."""
    return np.random.default_rng(seed).integers(0, 8, size=(steps, num_envs))


def raw_process(args: Args, env_ids: list[int], start, results) -> None:
    """Tick this process's emulators like VecGameBoy does; report the timed seconds."""
    pyboys = [PyBoy(str(args.rom), window="null", sound_emulated=False, log_level="ERROR") for _ in env_ids]
    actions = random_actions(args.seed, args.warmup_steps + args.steps, max(env_ids) + 1)[:, env_ids]

    def run(rows: np.ndarray) -> None:
        for row in rows:
            for pyboy, action in zip(pyboys, row):
                if action == 0:
                    pyboy.tick(args.frame_skip, True)
                else:
                    pyboy.button_press(ACTION_NAMES[action])
                    pyboy.tick(args.press_frames, False)
                    pyboy.button_release(ACTION_NAMES[action])
                    pyboy.tick(args.frame_skip - args.press_frames, True)

    run(actions[: args.warmup_steps])
    start.wait()
    t0 = time.perf_counter()
    run(actions[args.warmup_steps :])
    results.put(time.perf_counter() - t0)


def bench_raw(args: Args, num_envs: int, cores: int) -> float:
    """Env steps per second over all raw processes (total steps / slowest process)."""
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(cores), ctx.Queue()
    blocks = np.array_split(np.arange(num_envs), cores)
    processes = [ctx.Process(target=raw_process, args=(args, block.tolist(), start, results)) for block in blocks]
    for process in processes:
        process.start()
    seconds = [results.get() for _ in processes]
    for process in processes:
        process.join()
    return num_envs * args.steps / max(seconds)


def bench_vec(args: Args, num_envs: int, num_workers: int) -> float:
    actions = random_actions(args.seed, args.warmup_steps + args.steps, num_envs)
    with VecGameBoy(
        args.rom,
        num_envs=num_envs,
        num_workers=num_workers,
        frame_skip=args.frame_skip,
        press_frames=args.press_frames,
        max_steps=10**9,  # no resets inside the timed loop; raw has none either
    ) as env:
        env.reset(seed=args.seed)
        for row in actions[: args.warmup_steps]:
            env.step(row)
        t0 = time.perf_counter()
        for row in actions[args.warmup_steps :]:
            env.step(row)
        return num_envs * args.steps / (time.perf_counter() - t0)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main(args: Args) -> str:
    try:
        check_rom(args.rom)
    except RomError as error:
        raise SystemExit(str(error)) from None
    cores = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()[0]  # other work on the machine skews every number below
    num_envs = args.num_envs or -(-max(8, cores) // cores) * cores
    worker_counts = sorted({*args.worker_counts, cores})

    best = {"raw": 0.0, **{workers: 0.0 for workers in worker_counts}}
    with tqdm(total=args.repeats * len(best), desc="configurations") as bar:
        for _ in range(args.repeats):
            best["raw"] = max(best["raw"], bench_raw(args, num_envs, cores))
            bar.update()
            for workers in worker_counts:
                best[workers] = max(best[workers], bench_vec(args, num_envs, workers))
                bar.update()
    raw, at_cores = best["raw"], best[cores]
    rows = [("raw PyBoy", f"{cores} processes", raw)]
    rows += [("VecGameBoy", f"{workers} workers", best[workers]) for workers in worker_counts]

    lines = [
        f"Env throughput, {datetime.date.today().isoformat()}: {cpu_model()}, {cores} cores (nproc), "
        f"Python {platform.python_version()}, PyBoy {version('pyboy')}, load average {load_before:.1f} at start.",
        f"ROM {args.rom.name}, {num_envs} envs, frame_skip {args.frame_skip}, press_frames {args.press_frames}, "
        f"render last frame only, {args.steps} timed steps per env after {args.warmup_steps} warm-up, "
        f"best of {args.repeats} interleaved runs.",
        "",
        "| backend | parallelism | env steps/s | frames/s | vs raw |",
        "|---|---|---:|---:|---:|",
    ]
    for name, parallelism, steps_per_s in rows:
        lines.append(
            f"| {name} | {parallelism} | {steps_per_s:,.0f} | {steps_per_s * args.frame_skip:,.0f} "
            f"| {steps_per_s / raw:.2f} |"
        )
    verdict = "meets" if at_cores >= 0.9 * raw else "misses"
    lines += ["", f"VecGameBoy at workers = cores ({cores}): {at_cores / raw:.2f} x raw ({verdict} the 0.9 target)."]
    table = "\n".join(lines) + "\n"

    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(table)
    os.replace(tmp, args.output)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
