"""Phases 1 and 2 on the embedded game's five speedruns, at a size for a 2-core CPU (<= 20 min).

Runs the real scripts in order, chained through their .pkl files:
  1a  pretrain_visual.py --stage 1a   tokenizer: codebook use, held-out recon MSE, frames/s
  1b  pretrain_visual.py --stage 1b   dynamics: held-out next-token accuracy vs the copy baseline
  2   train_reward.py --backbone resnet34, then --backbone vq: held-out pairwise accuracy, Spearman

The last run (run_04) is held out of every stage and is what all the numbers are measured on.
Targets from the seed: codebook use >= 45% (goal 80%), next-token accuracy above copying the
current frame, pairwise accuracy >= 88.7%.

    uv run python bench/phase12.py                   # makes the speedruns first if they are missing
    # a quick look
    uv run python bench/phase12.py --tokenizer-epochs 1 --dynamics-epochs 1 --resnet-epochs 1 --vq-epochs 1

Writes bench/results/phase12.md (table, machine, date, settings) and its checkpoints to --out-dir.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

import pretrain_visual
import train_reward
from bench.tables import machine
from data.make_speedruns import Args as SpeedrunArgs
from data.make_speedruns import main as make_speedruns
from training.io import atomic_write
from training.paths import TOKENIZER_FILE


@dataclass
class Args:
    data: Path = Path("data/speedruns/frames")
    """Speedrun frames; if missing, 5 runs are recorded there with data/make_speedruns.py."""
    out_dir: Path = Path("checkpoints/bench_phase12")
    """Checkpoints and metrics of the benchmark run."""
    results: Path = Path("bench/results/phase12.md")
    """Markdown table of the results."""
    encoder_channels: tuple[int, ...] = (8, 16, 32, 64)
    """Tokenizer conv widths (the seed's are 32 64 128 192; full-resolution convs dominate CPU time)."""
    embed_dim: int = 64
    """Token width, also the dynamics transformer's width."""
    vocab_size: int = 512
    """Codebook size (the seed's)."""
    num_layers: int = 2
    """Dynamics transformer blocks."""
    tokenizer_epochs: int = 6
    """Stage 1a epochs."""
    tokenizer_lr: float = 2e-3
    """Stage 1a peak learning rate."""
    tokenizer_batch_size: int = 16
    """Stage 1a batch size: at a fixed CPU budget, twice the updates of 32 cut held-out MSE by ~30%."""
    dynamics_epochs: int = 10
    """Stage 1b epochs (cheap: it trains on token ids)."""
    dynamics_lr: float = 1e-3
    """Stage 1b peak learning rate."""
    resnet_epochs: int = 6
    """Epochs of the ResNet-34 reward (the slow one: it trains on pixels)."""
    vq_epochs: int = 200
    """Epochs of the VQ reward head, as in the main job (fast: it trains on token ids encoded once;
    25 underfit)."""
    reward_lr: float = 1e-3
    """Peak learning rate of both reward models."""
    reward_pairs_per_epoch: int = 768
    """Random (earlier, later) pairs per reward epoch."""
    reward_size: str = "small"
    """ResNet-34 size preset of train_reward.py (small = ResNet-34 depth at 1/4 width)."""
    min_gap: int = 10
    """Frame distance of reward pairs (training and evaluation)."""
    batch_size: int = 32
    """Batch size of stage 1b and the rewards."""
    seed: int = 0
    """Seed of every stage."""


def main(args: Args) -> None:
    if not args.data.is_dir():
        print(f"{args.data} is missing: recording 5 speedruns with data/make_speedruns.py")
        make_speedruns(SpeedrunArgs(out=args.data.parent))
    common = dict(
        data=args.data, out_dir=args.out_dir, seed=args.seed, batch_size=args.batch_size, holdout_run="-1"
    )
    timings, cpu_seconds, started = {}, {}, time.time()

    t, c = time.time(), time.process_time()
    tokenizer = pretrain_visual.main(
        pretrain_visual.Args(
            stage="1a",
            epochs=args.tokenizer_epochs,
            lr=args.tokenizer_lr,
            size="small",
            encoder_channels=args.encoder_channels,
            res_blocks=0,
            embed_dim=args.embed_dim,
            vocab_size=args.vocab_size,
            **{**common, "batch_size": args.tokenizer_batch_size},
        )
    )["1a"]
    timings["1a"], cpu_seconds["1a"] = time.time() - t, time.process_time() - c

    t, c = time.time(), time.process_time()
    dynamics = pretrain_visual.main(
        pretrain_visual.Args(
            stage="1b",
            epochs=args.dynamics_epochs,
            lr=args.dynamics_lr,
            size="small",
            embed_dim=args.embed_dim,
            num_layers=args.num_layers,
            tokenizer=args.out_dir / TOKENIZER_FILE,
            **common,
        )
    )["1b"]
    timings["1b"], cpu_seconds["1b"] = time.time() - t, time.process_time() - c

    rewards = {}
    for backbone in ("resnet34", "vq"):
        t, c = time.time(), time.process_time()
        rewards[backbone] = train_reward.main(
            train_reward.Args(
                backbone=backbone,
                epochs=args.resnet_epochs if backbone == "resnet34" else args.vq_epochs,
                lr=args.reward_lr,
                size=args.reward_size,
                min_gap=args.min_gap,
                pairs_per_epoch=args.reward_pairs_per_epoch,
                tokenizer=args.out_dir / TOKENIZER_FILE,
                **common,
            )
        )
        timings[backbone], cpu_seconds[backbone] = time.time() - t, time.process_time() - c
    total = time.time() - started

    def mark(ok: bool) -> str:
        return "yes" if ok else "**no**"

    lines = [
        "# Phases 1 and 2 on the embedded game (bench/phase12.py)",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {machine()}",
        f"- data: {args.data} "
        "(5 runs; the last one is held out of every stage and all numbers are measured on it)",
        f"- tokenizer: VQ, encoder {args.encoder_channels}, no res blocks, {args.embed_dim}-d tokens, "
        f"{args.vocab_size} codes, "
        f"{args.tokenizer_epochs} epochs at lr {args.tokenizer_lr:g}, batch {args.tokenizer_batch_size}; "
        f"dynamics: {args.num_layers} layers x {args.embed_dim}, "
        f"{args.dynamics_epochs} epochs at lr {args.dynamics_lr:g}; "
        f"rewards: epochs of {args.reward_pairs_per_epoch} pairs at lr "
        f"{args.reward_lr:g}, min gap {args.min_gap}, ResNet-34 size '{args.reward_size}' "
        f"for {args.resnet_epochs} epochs, "
        f"VQ head for {args.vq_epochs} epochs",
        f"- wall time: {total / 60:.1f} min in all; per stage (wall / CPU time of this process, in minutes): "
        + ", ".join(
            f"{stage} {timings[stage] / 60:.1f} / {cpu_seconds[stage] / 60:.1f}" for stage in timings
        ),
        f"- load average at the end (other jobs share the cores): {os.getloadavg()[0]:.1f}",
        "",
        "| metric | seed | this run | target met |",
        "|---|---|---|---|",
        f"| codebook use (last epoch) | 45% | {tokenizer['code_use']:.0%} "
        f"({tokenizer['codes_used']} of {args.vocab_size}) "
        f"| {mark(tokenizer['code_use'] >= 0.45)} (goal 80%: {mark(tokenizer['code_use'] >= 0.8)}) |",
        f"| codebook use on the held-out run, final weights | | {tokenizer['eval_code_use']:.0%} "
        f"(perplexity in training {tokenizer['perplexity']:.0f}) | |",
        f"| recon MSE, held-out run | 0.007 | {tokenizer['eval_recon_mse']:.4f} "
        f"| {mark(tokenizer['eval_recon_mse'] <= 0.007)} |",
        f"| next-token accuracy, held-out run | 72% | {dynamics['eval_accuracy']:.1%} "
        f"(copy baseline {dynamics['eval_copy_accuracy']:.1%}; "
        f"on changed tokens {dynamics['eval_changed_accuracy']:.1%}) "
        f"| {mark(dynamics['eval_accuracy'] > dynamics['eval_copy_accuracy'])} |",
    ]
    for backbone, summary in rewards.items():
        lines.append(
            f"| reward pairwise accuracy, {backbone}, held-out run | 88.7% | "
            f"{summary['eval_pairwise_accuracy']:.1%} "
            f"(Spearman {summary['eval_spearman']:.3f}, {summary['eval_pairs']} pairs) | "
            f"{mark(summary['eval_pairwise_accuracy'] >= 0.887)} |"
        )
    lines += [
        "",
        "| throughput (training, last epoch) | |",
        "|---|---|",
        f"| tokenizer | {tokenizer['frames_per_s']:.0f} frames/s |",
        f"| dynamics | {dynamics['pairs_per_s']:.0f} frame pairs/s |",
        f"| reward resnet34 | {rewards['resnet34']['frames_per_s']:.0f} frames/s |",
        f"| reward vq | {rewards['vq']['frames_per_s']:.0f} frames/s |",
        "",
    ]
    atomic_write(args.results, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main(tyro.cli(Args))
