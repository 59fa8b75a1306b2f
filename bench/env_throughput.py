"""Env throughput: raw PyBoy ticking against VecGameBoy, in one run.

    uv run python bench/env_throughput.py
    uv run python bench/env_throughput.py --env-counts 16 --steps 300

Raw: one process per core, each ticking its share of the envs with the same frame
skip, button press/release and render-last-frame as the env, but no observation
copy, no RAM reads and no IPC. VecGameBoy: the same total env count with 1, 2, 4
and cores workers. Both replay the same seeded random actions from power-on, or from
--initial-state (e.g. Pokémon Red after its intro, where the overworld costs more to emulate).
The target is VecGameBoy at workers = cores >= 0.9 x raw.

Every env count is measured: 32 is the seed's VecGameBoy, 16 the pipeline's PPO. A
synchronous step pays a fixed cost per step (two process wake-ups, ~0.1 ms each on a
VM, plus the wait for the slowest worker), shared by a worker's envs, so the ratio
rises with envs per worker.

Two measures per configuration:
- env steps/s, wall clock: what training sees, but on a shared machine other load
  slows it down, which is why configurations run interleaved, --repeats times, and
  report their best run;
- CPU time per env step, summed over every process involved (the VecGameBoy parent
  included): the wrapper's own cost, which other load barely disturbs. raw / VecGameBoy
  CPU per step is the throughput ratio to expect at workers = cores on an idle machine.

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

from bench.tables import machine
from envs.actions import ACTION_NAMES
from envs.emulators import PyBoy  # PyBoy, with its SDL import notice muted
from envs.games import EMUQUEST_ROM, detected, detected_line, profile_for_rom
from envs.rom import RomError, check_rom
from envs.vec_gameboy import VecGameBoy
from training.io import atomic_write


@dataclass
class Args:
    rom: Path = EMUQUEST_ROM
    """Game Boy ROM to run (default: the embedded game)."""
    initial_state: Path | None = None
    """PyBoy state file every emulator starts from instead of power-on (data/make_start_state.py)."""
    env_counts: tuple[int, ...] = (32, 16)
    """Total emulators per configuration, each count measured separately (rounded up to a
    multiple of the core count): 32 as in the seed's VecGameBoy, 16 as in the pipeline's PPO."""
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


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def raw_process(args: Args, env_ids: list[int], start, results) -> None:
    """Tick this process's emulators like VecGameBoy does; report (wall s, CPU s) timed."""
    pyboys = [PyBoy(str(args.rom), window="null", sound_emulated=False, log_level="ERROR") for _ in env_ids]
    if args.initial_state:
        for pyboy in pyboys:
            with open(args.initial_state, "rb") as f:
                pyboy.load_state(f)
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
    t0, cpu0 = time.perf_counter(), time.process_time()
    run(actions[args.warmup_steps :])
    results.put((time.perf_counter() - t0, time.process_time() - cpu0))


def bench_raw(args: Args, num_envs: int, cores: int) -> tuple[float, float]:
    """(env steps/s over all processes = total steps / slowest process, CPU s per env step)."""
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(cores), ctx.Queue()
    blocks = np.array_split(np.arange(num_envs), cores)
    processes = [
        ctx.Process(target=raw_process, args=(args, block.tolist(), start, results)) for block in blocks
    ]
    for process in processes:
        process.start()
    wall, cpu = zip(*[results.get() for _ in processes])
    for process in processes:
        process.join()
    total_steps = num_envs * args.steps
    return total_steps / max(wall), sum(cpu) / total_steps


def bench_vec(args: Args, num_envs: int, num_workers: int) -> tuple[float, float]:
    """(env steps/s, CPU s per env step over the parent and all workers)."""
    actions = random_actions(args.seed, args.warmup_steps + args.steps, num_envs)
    with VecGameBoy(
        args.rom,
        num_envs=num_envs,
        num_workers=num_workers,
        frame_skip=args.frame_skip,
        press_frames=args.press_frames,
        max_steps=10**9,  # no resets inside the timed loop; raw has none either
        initial_state=args.initial_state,
    ) as env:
        env.reset(seed=args.seed)
        for row in actions[: args.warmup_steps]:
            env.step(row)
        cpu0 = time.process_time() + sum(map(process_cpu_seconds, env.worker_pids))
        t0 = time.perf_counter()
        for row in actions[args.warmup_steps :]:
            env.step(row)
        wall = time.perf_counter() - t0
        cpu = time.process_time() + sum(map(process_cpu_seconds, env.worker_pids)) - cpu0
    total_steps = num_envs * args.steps
    return total_steps / wall, cpu / total_steps


def measure(
    args: Args, num_envs: int, worker_counts: list[int], cores: int, bar: tqdm
) -> tuple[list[str], str]:
    """(table rows, summary line) for one env count: raw and every worker count, interleaved, best of
    repeats."""
    configurations = ["raw", *worker_counts]
    best_rate = dict.fromkeys(configurations, 0.0)
    best_cpu = dict.fromkeys(configurations, float("inf"))
    for _ in range(args.repeats):
        for config in configurations:
            if config == "raw":
                rate, cpu = bench_raw(args, num_envs, cores)
            else:
                rate, cpu = bench_vec(args, num_envs, config)
            best_rate[config] = max(best_rate[config], rate)
            best_cpu[config] = min(best_cpu[config], cpu)
            bar.update()
    rows = []
    for config in configurations:
        name, parallelism = (
            ("raw PyBoy", f"{cores} processes") if config == "raw" else ("VecGameBoy", f"{config} workers")
        )
        rate, cpu = best_rate[config], best_cpu[config]
        rows.append(
            f"| {num_envs} | {name} | {parallelism} | {rate:,.0f} | {rate * args.frame_skip:,.0f} "
            f"| {rate / best_rate['raw']:.2f} | {cpu * 1e6:,.0f} | {best_cpu['raw'] / cpu:.2f} |"
        )
    wall_ratio = best_rate[cores] / best_rate["raw"]
    cpu_ratio = best_cpu["raw"] / best_cpu[cores]
    verdict = (
        "met"
        if min(wall_ratio, cpu_ratio) >= 0.9
        else "met by CPU cost only"
        if cpu_ratio >= 0.9
        else "missed"
    )
    summary = (
        f"{num_envs} envs, VecGameBoy at workers = cores ({cores}): {wall_ratio:.2f} x raw env steps/s, "
        f"{cpu_ratio:.2f} x raw by CPU cost per step (target 0.9: {verdict})."
    )
    return rows, summary


def main(args: Args) -> str:
    try:
        rom = check_rom(args.rom)
    except RomError as error:
        raise SystemExit(str(error)) from None
    print(detected_line(detected(profile_for_rom(rom), rom)))
    if args.initial_state is not None and not args.initial_state.is_file():
        raise SystemExit(f"--initial-state {args.initial_state}: no such file")
    cores = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()[0]  # other work on the machine skews every number below
    env_counts = [-(-n // cores) * cores for n in args.env_counts]
    worker_counts = sorted({*args.worker_counts, cores})

    rows, summaries = [], []
    with tqdm(total=len(env_counts) * args.repeats * (1 + len(worker_counts)), desc="configurations") as bar:
        for num_envs in env_counts:
            count_rows, summary = measure(args, num_envs, worker_counts, cores, bar)
            rows += count_rows
            summaries.append(summary)

    lines = [
        f"Env throughput, {datetime.date.today().isoformat()}: {machine()}, "
        f"Python {platform.python_version()}, PyBoy {version('pyboy')}, "
        f"load average {load_before:.1f} at start.",
        f"ROM {args.rom.name} from {args.initial_state or 'power-on'}, "
        f"frame_skip {args.frame_skip}, press_frames {args.press_frames}, "
        f"render last frame only, {args.steps} timed steps per env after {args.warmup_steps} warm-up, "
        f"best of {args.repeats} interleaved runs.",
        "",
        "| envs | backend | parallelism | env steps/s | frames/s | vs raw | CPU us per env step "
        "| raw CPU / CPU |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        *summaries,
    ]
    table = "\n".join(lines) + "\n"

    print(table)
    atomic_write(args.output, table)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
