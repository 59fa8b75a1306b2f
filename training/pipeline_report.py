"""pipeline.py's report: report.json, the main job's figures for programs, and report.md, the same as a
table for people, with the paths of the GIF and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from envs.games import detected_line
from training.io import atomic_write
from training.metrics import METRICS_FILE
from training.ppo_config import Args as PPOArgs


def write_summary(out: Path, durations, history, evaluation, ppo, env_sps: float) -> dict:
    """report.json: the main job's figures for programs, all measured in this run."""
    rows = {row["agent"]: row for row in evaluation["rows"]}
    steady = history[1:] or history  # the first iteration includes compilation
    steps = len(steady) * ppo.num_envs * ppo.num_steps
    ppo_sps = steps / sum(ppo.num_envs * ppo.num_steps / r["charts/sps"] for r in steady)
    summary = {
        "game": evaluation["game"],
        "minutes_total": sum(durations.values()) / 60,
        "minutes": {name: seconds / 60 for name, seconds in durations.items()},
        "ppo_env_steps": history[-1]["env_steps"],  # with --ppo-resume, the earlier run's included
        "ppo_env_steps_run": len(history) * ppo.num_envs * ppo.num_steps,  # this run's alone
        "ppo_sps": ppo_sps,
        "env_only_sps": env_sps,
        "ppo_to_env_sps": ppo_sps / env_sps,
        "token_cache_hit_rate": float(np.mean([r.get("charts/token_cache_hit_rate", 0.0) for r in steady])),
        "entropy_fraction_final": history[-1]["policy/entropy_fraction"],
        "trained_milestones_mean": rows["trained"]["milestones_mean"],
        "random_milestones_mean": rows["random"]["milestones_mean"],
        "trained_finished_rate": rows["trained"]["finished_rate"],
        "random_finished_rate": rows["random"]["finished_rate"],
        "title_escape_rate": rows["trained"]["title_escape_rate"],
        "random_title_escape_rate": rows["random"]["title_escape_rate"],
        "trained_title_steps_median": rows["trained"]["title_steps_median"],
        "random_title_steps_median": rows["random"]["title_steps_median"],
        "intro_done_rate": rows["trained"]["intro_done_rate"],
        "random_intro_done_rate": rows["random"]["intro_done_rate"],
    }
    atomic_write(out / "report.json", json.dumps(summary, indent=1) + "\n")
    return summary


def write_report(
    out: Path,
    data: str,
    durations,
    tokenizer,
    dynamics,
    reward,
    summary: dict,
    evaluation,
    ppo: PPOArgs,
) -> str:
    """report.md in `out`; `data` says what Phases 1-2 trained on, and their rows say where reused
    checkpoints came from."""
    minutes = {name: f"{seconds / 60:.1f}" for name, seconds in durations.items()}
    reused = f"reused from {Path(ppo.reward_model).parent}"
    if tokenizer is None:
        phase12 = [f"| speedruns, tokenizer, dynamics, reward | {reused} | - |"]
    else:
        data_phase = "speedruns" if "speedruns" in minutes else "frames from videos"
        phase12 = [
            f"| {data_phase} | {data} | {minutes[data_phase]} |",
            f"| tokenizer | codebook use {tokenizer['code_use']:.0%}, "
            f"held-out recon MSE {tokenizer['eval_recon_mse']:.4f}"
            f" | {minutes['tokenizer (1a)']} |",
            f"| dynamics | next-token acc {dynamics['eval_accuracy']:.1%} vs copy baseline"
            f" {dynamics['eval_copy_accuracy']:.1%} | {minutes['dynamics (1b)']} |",
            f"| reward (frozen VQ + MLP) | held-out pairwise acc {reward['eval_pairwise_accuracy']:.1%},"
            f" Spearman {reward['eval_spearman']:.3f}, branches below the run"
            f" {reward.get('eval_branch_accuracy', float('nan')):.1%} | {minutes['reward']} |",
        ]
    lines = [
        "# EmuRL pipeline report",
        "",
        detected_line(evaluation["game"]),
        "",
        "| phase | result | minutes |",
        "|---|---|---|",
        *phase12,
        f"| PPO | {summary['ppo_env_steps']:,} env steps at {summary['ppo_sps']:.0f} SPS, "
        f"{summary['ppo_to_env_sps']:.2f} of the envs alone ({summary['env_only_sps']:.0f}); token cache "
        f"hit rate {summary['token_cache_hit_rate']:.0%}; entropy {summary['entropy_fraction_final']:.1%} "
        f"of max | {minutes['PPO']} |",
        f"| evaluation | see below | {minutes['evaluation']} |",
        "",
        f"Total: {sum(durations.values()) / 60:.1f} minutes.",
        "",
        "## Trained agent vs random",
        "",
        evaluation["table"],
        "",
        f"- GIF of the trained agent: `{evaluation['gif']}`",
        f"- Milestones over training: `{evaluation['plot']}`",
        f"- PPO metrics: `{Path(ppo.out_dir) / METRICS_FILE}`",
        f"- These figures for programs: `{out / 'report.json'}`",
        f"- Tokenizer reconstructions: `{Path(ppo.reward_model).parent / 'recon_grid.png'}`",
    ]
    report = "\n".join(lines) + "\n"
    atomic_write(out / "report.md", report)
    return report
