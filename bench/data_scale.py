"""Phase 1 on datasets 1x, 4x and 16x the speedruns' size: frames/s and peak memory of the sharded loader
(data/shards.py) against the in-memory frames folder, in one run.

    uv run python bench/data_scale.py
    uv run python bench/data_scale.py --scales 1 2 --runs 2   # a quick look

The base dataset is --runs EmuQuest speedruns (data/make_speedruns.py). Scale k holds k copies of each
run under new names (folders of links to the same PNGs, and shards written from them), so the held-out
run, and so the evaluation's cost, is the same at every scale. Each case is one
`pretrain_visual.py --stage 1a --epochs 1 --size tiny` command in its own process, as a user runs it;
peak RSS is that process's (os.wait4) and frames/s is the epoch's own, after a warm-up run has filled the
JAX compile cache so no case pays for compiling. Targets: sharded peak RSS flat (within 20%) from 1x to
16x, and sharded frames/s within 10% of in-memory.

The shards are read back from the OS page cache (they were just written); a dataset larger than the
machine's memory reads at its disk's speed instead.

Prints a markdown table and writes it to --output (atomically).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from bench.tables import machine, publish
from data import make_speedruns
from data.shards import write_shards

PRETRAIN = Path(__file__).resolve().parents[1] / "pretrain_visual.py"


@dataclass
class Args:
    scales: tuple[int, ...] = (1, 4, 16)
    """Dataset sizes, as multiples of the base speedruns."""
    runs: int = 5
    """EmuQuest speedruns in the base dataset (data/make_speedruns.py's default is 5)."""
    frame_every: int = 4
    """Keep every this-many emulator frames of a speedrun (data/make_speedruns.py's default is 4)."""
    batch_size: int = 32
    warm_up: bool = True
    """Run Phase 1 once first, untimed, so no case pays for compiling (off: a quick look)."""
    scratch: Path | None = None
    """Folder the datasets are written under, in a temporary folder deleted at the end (16x of 5 runs
    is ~4 GB of shards). Default: the system's temporary folder."""
    output: Path = Path("bench/results/data_scale.md")


def scaled_copy(base: Path, scale: int, out: Path) -> Path:
    """A frames folder of `scale` copies of every run of `base`: run folders linking to the base's."""
    out.mkdir(parents=True)
    for copy in range(scale):
        for run in sorted(p for p in base.iterdir() if p.is_dir()):
            (out / f"copy{copy:02d}_{run.name}").symlink_to(run.resolve(), target_is_directory=True)
    return out


def phase1(data: Path, out_dir: Path, batch_size: int, env: dict) -> dict:
    """One Phase 1 stage-1a epoch in its own process: its metrics, wall time and peak RSS."""
    command = [sys.executable, str(PRETRAIN), "--stage", "1a", "--epochs", "1", "--size", "tiny"]
    command += ["--batch-size", str(batch_size), "--data", str(data), "--out-dir", str(out_dir)]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: {' '.join(command)} failed: {stderr.strip().splitlines()[-1]}")
    record = json.loads((out_dir / "metrics.jsonl").read_text().splitlines()[-1])
    return {
        "frames_per_s": record["frames_per_s"],
        "seconds": seconds,
        "peak_rss_gb": usage.ru_maxrss / 2**20,
    }


def main(args: Args) -> str:
    if not args.scales or min(args.scales) < 1 or args.runs < 2 or min(args.batch_size, args.frame_every) < 1:
        raise SystemExit(
            "error: --scales must be positive, --runs at least 2, --batch-size and --frame-every at least 1"
        )
    if args.scratch is not None and not args.scratch.is_dir():
        raise SystemExit(f"error: --scratch {args.scratch}: not a folder")
    rows = []
    with tempfile.TemporaryDirectory(prefix="data_scale_", dir=args.scratch) as scratch:
        scratch = Path(scratch)
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(scratch / "jax_cache")}
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        print(f"making {args.runs} EmuQuest speedruns")
        make_speedruns.main(
            make_speedruns.Args(num_runs=args.runs, frame_every=args.frame_every, out=scratch / "speedruns")
        )
        base = scratch / "speedruns" / "frames"
        if args.warm_up:
            phase1(base, scratch / "warmup", args.batch_size, env)  # fills the compile cache
        for scale in args.scales:
            frames = scaled_copy(base, scale, scratch / f"frames_{scale}x")
            shards = scratch / f"shards_{scale}x"
            write_shards(frames, str(shards), show_progress=False)
            size_gb = sum(p.stat().st_size for p in shards.glob("shard_*.npy")) / 2**30
            for loader, data in (("in memory", frames), ("sharded", shards)):
                result = phase1(data, scratch / f"out_{scale}x_{loader[:2]}", args.batch_size, env)
                print(f"{scale}x {loader}: {result}")
                rows.append({"scale": scale, "loader": loader, "dataset_gb": size_gb, **result})

    def find(scale, loader):
        return next(r for r in rows if r["scale"] == scale and r["loader"] == loader)

    first, last = min(args.scales), max(args.scales)
    lines = []
    for row in rows:
        in_memory = find(row["scale"], "in memory")
        lines.append(
            f"| {row['scale']}x | {row['dataset_gb']:.2f} | {row['loader']} | {row['frames_per_s']:.0f} | "
            f"{row['frames_per_s'] / in_memory['frames_per_s']:.2f} | {row['peak_rss_gb']:.2f} | "
            f"{row['peak_rss_gb'] / find(first, row['loader'])['peak_rss_gb']:.2f} | {row['seconds']:.0f} |"
        )
    rss_growth = find(last, "sharded")["peak_rss_gb"] / find(first, "sharded")["peak_rss_gb"]
    speeds = [find(s, "sharded")["frames_per_s"] / find(s, "in memory")["frames_per_s"] for s in args.scales]
    return publish(
        args.output,
        [
            f"# Phase 1 data at scale ({datetime.date.today()})",
            "",
            f"Machine: {machine()}. Base: {args.runs} EmuQuest speedruns (every {args.frame_every} frames); "
            "stage 1a, --size tiny, "
            f"--batch-size {args.batch_size}, one epoch per case, compile cache "
            f"{'warm' if args.warm_up else 'cold'}. "
            "Targets: sharded peak RSS within 20% from the smallest to the largest scale; sharded frames/s "
            "within 10% of in memory.",
            "",
            "| scale | dataset GB | loader | frames/s | vs in memory | peak RSS GB | RSS vs smallest "
            "| wall s |",
            "|---|---|---|---|---|---|---|---|",
            *lines,
            "",
            f"Sharded peak RSS {first}x -> {last}x: {rss_growth:.2f}x. Sharded frames/s vs in memory: "
            + ", ".join(f"{s}x {v:.2f}" for s, v in zip(args.scales, speeds))
            + ".",
            "",
        ],
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
