"""Agent benchmark: PPO on the embedded game vs the random baseline, across seeds.

    uv run python pipeline.py                      # once: speedruns, tokenizer, dynamics, reward
    uv run python bench/agent.py --checkpoints runs/pipeline/checkpoints

For each seed it runs the main job's PPO and evaluation (`pipeline.py --checkpoints`: the same
sizes and settings) on the shared Phase 1-2 checkpoints, then times the envs alone (random actions,
PPO's own env settings and workers) in the same process, so PPO's end-to-end steps/s can be compared
with the env's.

Reported per seed: title-screen escape rate (trained, random), milestones per episode (trained,
random, ratio), the final entropy as a fraction of its maximum, and PPO SPS vs env-only SPS.
Targets: escape >= 95%, milestones >= 3x random, SPS ratio >= 0.5. Prints a markdown table and
writes it to --output (atomically).
"""

from __future__ import annotations

import datetime
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

import pipeline
from bench.tables import machine
from envs.games import EMUQUEST_ROM
from training.io import atomic_write
from training.paths import POLICY_FINAL_FILE
from training.rollout import env_only_sps


@dataclass
class Args:
    """PPO vs random on EmuQuest, several seeds, with the main job's sizes."""

    checkpoints: Path = Path("runs/pipeline/checkpoints")
    """Phase 1-2 outputs of pipeline.py: pretrained_encoder.pkl, pretrained_dynamics.pkl,
    reward_<backbone>.pkl."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """PPO seeds (the Phase 1-2 checkpoints are shared)."""
    quick: bool = False
    """Use the main job's --quick sizes (a smoke test)."""
    ppo_iterations: int | None = None
    """PPO iterations per seed (None: the main job's). With --resume-from, the total to continue to."""
    resume_from: Path | None = None
    """An earlier --out-dir of this bench: each seed copies its seed_N/ppo run and continues it to
    --ppo-iterations, instead of training from scratch (to study a longer budget at half the cost)."""
    out_dir: Path = Path("runs/bench_agent")
    """Where each seed's PPO run and evaluation go."""
    num_workers: int | None = None
    """Emulator worker processes (None: one per CPU core)."""
    env_only_steps: int = 200
    """Env steps (per env) for the env-only throughput measurement."""
    output: Path = Path("bench/results/agent.md")
    """Where the markdown table is written."""
    reward_scale: float | None = None
    """PPO's --reward-scale (None: the main job's). A seen-token head's scores span ~20x a one-frame
    head's."""


def run_seed(args: Args, seed: int) -> dict:
    """pipeline.py --checkpoints for one seed: its PPO run, evaluation and settings."""
    run_dir = args.out_dir / f"seed_{seed}"
    resume = None
    if args.resume_from is not None:
        shutil.rmtree(run_dir / "ppo", ignore_errors=True)
        shutil.copytree(args.resume_from / f"seed_{seed}" / "ppo", run_dir / "ppo")
        resume = run_dir / "ppo" / POLICY_FINAL_FILE
    result = pipeline.main(
        pipeline.Args(
            quick=args.quick,
            out_dir=run_dir,
            seed=seed,
            num_workers=args.num_workers,
            checkpoints=args.checkpoints,
            ppo_iterations=args.ppo_iterations,
            ppo_resume=resume,
            reward_scale=args.reward_scale,
        )
    )
    history, ppo = result["history"], result["ppo_args"]
    rows = result["evaluation"]["rows"]
    trained, random = (next(r for r in rows if r["agent"] == name) for name in ("trained", "random"))
    steady = history[1:] or history  # the first iteration includes compilation
    return {
        "seed": seed,
        "trained_escape": trained["title_escape_rate"],
        "random_escape": random["title_escape_rate"],
        "trained_milestones": trained["milestones_mean"],
        "random_milestones": random["milestones_mean"],
        "entropy_fraction": history[-1]["policy/entropy_fraction"],
        "ppo_sps": float(np.mean([r["charts/sps"] for r in steady])),
        "ppo_sps_wall": len(history) * ppo["num_envs"] * ppo["num_steps"] / result["durations"]["PPO"],
        "gif": result["evaluation"]["gif"],
        "ppo_args": ppo,
        "budget": result["budget"],
    }


def markdown(rows: list[dict], env_sps: float, args: Args) -> str:
    ppo, budget = rows[0]["ppo_args"], rows[0]["budget"]
    lines = [
        f"Agent benchmark, {datetime.date.today()}, {machine()}; PPO {ppo['iterations']} iterations x "
        f"{ppo['num_envs']} envs x {ppo['num_steps']} steps, reward scale {ppo['reward_scale']:g}; "
        f"evaluation {budget['eval_episodes']} episodes x {budget['eval_steps']} steps; "
        f"checkpoints {args.checkpoints}"
        + (f"; continued from {args.resume_from}." if args.resume_from else "."),
        "",
        "| seed | left title (trained / random) | milestones (trained / random) | ratio "
        "| final entropy / max "
        "| PPO SPS (steady / wall) | env-only SPS | PPO / env |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["trained_milestones"] / r["random_milestones"] if r["random_milestones"] else float("inf")
        lines.append(
            f"| {r['seed']} | {r['trained_escape']:.0%} / {r['random_escape']:.0%} | "
            f"{r['trained_milestones']:.2f} / {r['random_milestones']:.2f} | {ratio:.2f}x | "
            f"{r['entropy_fraction']:.1%} | "
            f"{r['ppo_sps']:.0f} / {r['ppo_sps_wall']:.0f} | {env_sps:.0f} | {r['ppo_sps'] / env_sps:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(args: Args) -> str:
    if args.ppo_iterations is not None and args.ppo_iterations < 1:
        raise SystemExit("--ppo-iterations must be >= 1")
    # Checked before any seed trains, so a missing run does not surface an hour in (pipeline.py checks
    # --checkpoints before the first seed trains).
    if args.resume_from is not None:
        if args.resume_from.resolve() == args.out_dir.resolve():
            raise SystemExit(
                "--resume-from is --out-dir: each seed's run would be deleted before it is copied; "
                "give a new --out-dir"
            )
        for seed in args.seeds:
            earlier = args.resume_from / f"seed_{seed}" / "ppo" / POLICY_FINAL_FILE
            if not earlier.is_file():
                raise SystemExit(
                    f"--resume-from: {earlier} not found; run this bench with --out-dir "
                    f"{args.resume_from} first"
                )
    rows = [run_seed(args, seed) for seed in args.seeds]
    ppo = rows[0]["ppo_args"]
    env_sps = env_only_sps(
        str(EMUQUEST_ROM),
        num_envs=ppo["num_envs"],
        num_workers=ppo["num_workers"],
        frame_skip=ppo["frame_skip"],
        press_frames=ppo["press_frames"],
        max_episode_steps=ppo["max_episode_steps"],
        steps=args.env_only_steps,
    )
    table = markdown(rows, env_sps, args)
    print(table)
    atomic_write(args.output, table)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
