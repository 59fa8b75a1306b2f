"""Agent benchmark: PPO on the embedded game vs the random baseline, across seeds.

    uv run python pipeline.py                      # once: speedruns, tokenizer, dynamics, reward
    uv run python bench/agent.py --checkpoints runs/pipeline/checkpoints

For each seed it trains PPO exactly as the main job does (pipeline.ppo_args: pipeline.FULL
sizes and PPO_OVERRIDES) from the Phase 1-2 checkpoints, then evaluates the trained policy
and the random baseline on the same episodes. It also times the envs alone (random actions,
PPO's own env settings and workers) in the same process, so PPO's end-to-end steps/s can be
compared with the env's.

Reported per seed: title-screen escape rate (trained, random), milestones per episode
(trained, random, ratio), the final entropy as a fraction of its maximum, and PPO SPS vs
env-only SPS. Targets (issue 5): escape >= 95%, milestones >= 3x random, SPS ratio >= 0.5.
Prints a markdown table and writes it to --output (atomically).
"""

from __future__ import annotations

import datetime
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tyro

import evaluate_policy
import pipeline
import pretrain_visual
import train_with_cnn_reward
from bench.tables import machine, write_table
from envs.games import EMUQUEST_ROM
from envs.vec_gameboy import VecGameBoy


@dataclass
class Args:
    """PPO vs random on EmuQuest, several seeds, with the main job's sizes."""

    checkpoints: Path = Path("runs/pipeline/checkpoints")
    """Phase 1-2 outputs of pipeline.py: pretrained_encoder.pkl, pretrained_dynamics.pkl, reward_<backbone>.pkl."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """PPO seeds (the Phase 1-2 checkpoints are shared)."""
    quick: bool = False
    """Use pipeline.QUICK sizes (a smoke test) instead of pipeline.FULL."""
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
    """PPO's --reward-scale (None: the main job's). A seen-token head's scores span ~20x a one-frame head's."""


def env_only_sps(ppo: train_with_cnn_reward.Args, steps: int) -> float:
    """Env steps/s of VecGameBoy alone, random actions, with the env settings of the PPO run `ppo`."""
    rng = np.random.default_rng(0)
    with VecGameBoy(EMUQUEST_ROM, num_envs=ppo.num_envs, num_workers=ppo.num_workers, frame_skip=ppo.frame_skip,
                    press_frames=ppo.press_frames, max_steps=ppo.max_episode_steps) as env:
        env.reset(seed=0)
        actions = rng.integers(0, env.num_actions, (steps, env.num_envs))
        started = time.perf_counter()
        for step_actions in actions:
            env.step(step_actions)
        return steps * env.num_envs / (time.perf_counter() - started)


def ppo_args(args: Args, budget: pipeline.Budget, out_dir: Path, seed: int) -> train_with_cnn_reward.Args:
    """The main job's PPO run, with --reward-scale if given."""
    ppo = pipeline.ppo_args(budget, args.checkpoints, out_dir, seed, args.num_workers)
    return ppo if args.reward_scale is None else replace(ppo, reward_scale=args.reward_scale)


def run_seed(args: Args, budget: pipeline.Budget, seed: int) -> dict:
    run_dir = args.out_dir / f"seed_{seed}"
    ppo = ppo_args(args, budget, run_dir / "ppo", seed)
    if args.resume_from is not None:
        shutil.rmtree(run_dir / "ppo", ignore_errors=True)
        shutil.copytree(args.resume_from / f"seed_{seed}" / "ppo", run_dir / "ppo")
        ppo = replace(ppo, resume=str(run_dir / "ppo" / "policy_final.pkl"))
    started = time.perf_counter()
    history = train_with_cnn_reward.main(ppo)
    if not history:
        raise SystemExit(f"--ppo-iterations {budget.ppo_iterations}: seed {seed}'s run in --resume-from is already there")
    ppo_seconds = time.perf_counter() - started
    evaluation = evaluate_policy.main(
        pipeline.evaluation_args(budget, run_dir / "ppo" / "policy_final.pkl", run_dir / "eval", seed, args.num_workers))
    trained, random = (next(r for r in evaluation["rows"] if r["agent"] == name) for name in ("trained", "random"))
    steady = history[1:] or history  # the first iteration includes compilation
    return {
        "seed": seed,
        "trained_escape": trained["title_escape_rate"],
        "random_escape": random["title_escape_rate"],
        "trained_milestones": trained["milestones_mean"],
        "random_milestones": random["milestones_mean"],
        "entropy_fraction": history[-1]["policy/entropy_fraction"],
        "ppo_sps": float(np.mean([r["charts/sps"] for r in steady])),
        "ppo_sps_wall": len(history) * budget.ppo_envs * budget.ppo_steps / ppo_seconds,
        "gif": evaluation["gif"],
    }


def markdown(rows: list[dict], env_sps: float, budget: pipeline.Budget, args: Args) -> str:
    reward_scale = ppo_args(args, budget, args.out_dir, 0).reward_scale
    lines = [
        f"Agent benchmark, {datetime.date.today()}, {machine()}; PPO {budget.ppo_iterations} iterations x "
        f"{budget.ppo_envs} envs x {budget.ppo_steps} steps, reward scale {reward_scale:g}; evaluation "
        f"{budget.eval_episodes} episodes x {budget.eval_steps} steps; checkpoints {args.checkpoints}"
        + (f"; continued from {args.resume_from}." if args.resume_from else "."),
        "",
        "| seed | left title (trained / random) | milestones (trained / random) | ratio | final entropy / max "
        "| PPO SPS (steady / wall) | env-only SPS | PPO / env |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["trained_milestones"] / r["random_milestones"] if r["random_milestones"] else float("inf")
        lines.append(
            f"| {r['seed']} | {r['trained_escape']:.0%} / {r['random_escape']:.0%} | "
            f"{r['trained_milestones']:.2f} / {r['random_milestones']:.2f} | {ratio:.2f}x | {r['entropy_fraction']:.1%} | "
            f"{r['ppo_sps']:.0f} / {r['ppo_sps_wall']:.0f} | {env_sps:.0f} | {r['ppo_sps'] / env_sps:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(args: Args) -> str:
    budget = pipeline.QUICK if args.quick else pipeline.FULL
    if args.ppo_iterations is not None:
        if args.ppo_iterations < 1:
            raise SystemExit("--ppo-iterations must be >= 1")
        budget = replace(budget, ppo_iterations=args.ppo_iterations)
    for name in (pretrain_visual.ENCODER_FILE, pretrain_visual.DYNAMICS_FILE, pipeline.REWARD_FILE):
        if not (args.checkpoints / name).is_file():
            raise SystemExit(f"--checkpoints: {args.checkpoints / name} not found; run pipeline.py first")
    # Checked before any seed trains, so a missing run does not surface an hour in.
    if args.resume_from is not None:
        if args.resume_from.resolve() == args.out_dir.resolve():
            raise SystemExit("--resume-from is --out-dir: each seed's run would be deleted before it is copied; "
                             "give a new --out-dir")
        for seed in args.seeds:
            earlier = args.resume_from / f"seed_{seed}" / "ppo" / "policy_final.pkl"
            if not earlier.is_file():
                raise SystemExit(f"--resume-from: {earlier} not found; run this bench with --out-dir "
                                 f"{args.resume_from} first")
    env_sps = env_only_sps(ppo_args(args, budget, args.out_dir, args.seeds[0]), args.env_only_steps)
    rows = [run_seed(args, budget, seed) for seed in args.seeds]
    table = markdown(rows, env_sps, budget, args)
    print(table)
    write_table(args.output, table)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
