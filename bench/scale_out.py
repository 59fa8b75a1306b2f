"""One process against two processes with one core each (jax.distributed over gloo), on one machine, in
one run: Phase 1's frames/s and PPO's env steps/s.

    uv run python bench/scale_out.py

Each case is the phase's command as a user runs it, in its own processes: Phase 1 stage 1a (--size
tiny, --epochs 2, the second epoch's frames/s) on --runs EmuQuest speedruns, and PPO (a tiny ResNet
reward and a small policy, --num-workers 0 so every process steps its envs itself, the median env
steps/s after the first two iterations) with --num-envs in all, split between the processes. Two
processes are pinned one core each (taskset); one process gets every core.

Prints a markdown table and writes it to --output (atomically).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from flax import nnx

from bench.tables import machine, publish
from data import make_speedruns
from models.checkpoint import params_of, save_checkpoint
from models.resnet import ResNetConfig
from models.reward import RewardConfig, RewardModel

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    runs: int = 2
    """EmuQuest speedruns Phase 1 trains on."""
    frame_every: int = 8
    """Keep every this-many emulator frames of a speedrun."""
    ppo_iterations: int = 8
    """PPO iterations of each case; the first two compile and are not counted."""
    num_envs: int = 16
    """PPO envs in all (each of two processes steps half)."""
    scratch: Path | None = None
    """Folder for the data and outputs, in a temporary folder deleted at the end."""
    output: Path = Path("bench/results/scale_out.md")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(script: str, flags: list[str], processes: int) -> None:
    """The script on `processes` processes (pinned one core each when more than one); waits for all."""
    port, cores = free_port(), sorted(os.sched_getaffinity(0))
    if processes > len(cores):
        raise SystemExit(
            f"error: {processes} processes need {processes} cores, this machine has {len(cores)}"
        )
    launched = []
    for pid in range(processes):
        together = ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", str(processes)]
        command = [sys.executable, str(REPO / script), *flags]
        if processes > 1:  # one core each (taskset: util-linux)
            command = ["taskset", "-c", str(cores[pid]), *command, *together, "--process-id", str(pid)]
        launched.append(
            subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        )
    for process in launched:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"error: {script} on {processes} process(es) failed: {stderr.decode()[-2000:]}")


def records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def main(args: Args) -> str:
    if min(args.runs - 1, args.frame_every, args.ppo_iterations - 2, args.num_envs) < 1 or args.num_envs % 2:
        raise SystemExit("error: --runs >= 2, --ppo-iterations >= 3 and an even --num-envs are needed")
    results = {}
    with tempfile.TemporaryDirectory(prefix="scale_out_", dir=args.scratch) as scratch:
        scratch = Path(scratch)
        speedruns = scratch / "speedruns"
        make_speedruns.main(
            make_speedruns.Args(num_runs=args.runs, frame_every=args.frame_every, out=speedruns)
        )
        reward = scratch / "reward.pkl"
        tiny = RewardConfig(
            backbone="resnet34",
            resnet=ResNetConfig(stage_sizes=(1, 1), widths=(8, 16), stem_width=8, norm_groups=4),
        )
        model = RewardModel(tiny, rngs=nnx.Rngs(0))  # its weights do not change the arithmetic
        save_checkpoint(reward, kind="reward", config=tiny, params=params_of(model), step=0)
        for processes in (1, 2):
            out = scratch / f"phase1_{processes}"
            run(
                "pretrain_visual.py",
                ["--stage", "1a", "--size", "tiny", "--epochs", "2", "--batch-size", "32"]
                + ["--data", str(speedruns / "frames"), "--out-dir", str(out)],
                processes,
            )
            results[("Phase 1 stage 1a, frames/s", processes)] = records(out)[-1]["frames_per_s"]
            out = scratch / f"ppo_{processes}"
            run(
                "train_with_cnn_reward.py",
                ["--reward-model", str(reward), "--out-dir", str(out), "--num-workers", "0"]
                + [
                    "--num-envs",
                    str(args.num_envs // processes),
                    "--num-steps",
                    "32",
                    "--num-minibatches",
                    "2",
                ]
                + ["--iterations", str(args.ppo_iterations), "--save-every", str(args.ppo_iterations)]
                + [
                    "--embed-dim",
                    "32",
                    "--num-layers",
                    "1",
                    "--num-heads",
                    "2",
                    "--encoder-channels",
                    "8",
                    "16",
                ]
                + ["16", "16", "--codebook-size", "64", "--observation", "gray", "--log-every", "100"],
                processes,
            )
            sps = [record["charts/sps"] for record in records(out)[2:]]
            results[("PPO, env steps/s", processes)] = float(np.median(sps))
    lines = []
    for what in dict.fromkeys(name for name, _ in results):
        one, two = results[(what, 1)], results[(what, 2)]
        lines.append(f"| {what} | {one:,.0f} | {two:,.0f} | {two / one:.2f} |")
    return publish(
        args.output,
        [
            f"# One process against two on one machine ({datetime.date.today()})",
            "",
            f"Machine: {machine()}. One process uses every core; two processes (jax.distributed, gloo "
            f"collectives) are pinned one core each. Phase 1: {args.runs} speedruns, --size tiny, batch 32. "
            f"PPO: {args.num_envs} envs in all, 32 steps, a small policy, --num-workers 0.",
            "",
            "| what | 1 process | 2 processes | 2 / 1 |",
            "|---|---|---|---|",
            *lines,
            "",
            "Two processes on one machine share its cores, memory and caches, and every step adds an "
            "all-reduce through gloo over localhost, so here they can only lose. On a cluster each "
            "process brings its own cores (or GPU) and envs, so throughput grows with the processes, "
            "less the all-reduce of the gradients over the network at every step, which this machine "
            "cannot measure.",
            "",
        ],
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
