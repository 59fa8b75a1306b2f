"""The seed-size tokenizer's first few hundred steps at pretrain_visual.py's defaults: does it train?

    uv run python data/make_speedruns.py        # once: data/speedruns/frames
    uv run python bench/tokenizer_stability.py --data data/speedruns/frames

Trains stage 1a's tokenizer at the --size preset (default "seed", ~7M parameters) with the
learning rate, batch size, dead-code restarts and warmup schedule of `pretrain_visual.py --data
... --epochs 100`, step by step with the same optimizer, loss and restarts, and every --every steps
records the mean loss, reconstruction MSE, quantizer loss and gradient norm over those steps, and
how many codes they used. Writes a markdown table to --output.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from flax import nnx
from tqdm import tqdm

import pretrain_visual
from bench.tables import machine
from models.build import build
from models.presets import PHASE1_LR, PHASE1_SIZES
from models.quantizers import QuantizerConfig
from models.sharding import shard_batch
from models.vqvae import VQVAE, VQVAEConfig, tokenizer_loss
from training.data import fit_batch_size, load_frames, split_runs
from training.io import atomic_write
from training.steps import make_optimizer, make_restart_step, make_train_step, new_train_state

DEFAULTS = pretrain_visual.Args()


@dataclass
class Args:
    data: Path = Path("data/speedruns/frames")
    """Speedrun frames (data/make_speedruns.py)."""
    size: Literal["tiny", "small", "seed"] = "seed"
    """Size preset of the tokenizer."""
    steps: int = 300
    """Training steps to record."""
    every: int = 25
    """Steps per table row."""
    output: Path = Path("bench/results/tokenizer_stability.md")
    """Where the markdown table is written."""


def main(args: Args) -> str:
    size = PHASE1_SIZES[args.size]
    cfg = VQVAEConfig(
        embed_dim=size["embed_dim"],
        encoder_channels=size["encoder_channels"],
        res_blocks=size["res_blocks"],
        quantizer=QuantizerConfig(kind=DEFAULTS.quantizer, codebook_size=size["vocab_size"]),
    )
    data = load_frames(args.data)
    train_idx, _, _ = split_runs(data, DEFAULTS.holdout_run)
    batch_size = fit_batch_size(DEFAULTS.batch_size, len(train_idx), "training frames")
    total_steps = DEFAULTS.epochs * (len(train_idx) // batch_size)  # the schedule of the default run
    lr = DEFAULTS.lr or PHASE1_LR[args.size]
    optimizer = make_optimizer(lr, total_steps)
    model = build(lambda: VQVAE(cfg, rngs=nnx.Rngs(DEFAULTS.seed)))
    graphdef, state = new_train_state(model, optimizer, usage=jnp.zeros(cfg.vocab_size, jnp.int32))

    train_step = make_train_step(graphdef, optimizer, tokenizer_loss)
    restart_step = make_restart_step(graphdef)
    rng = np.random.default_rng(DEFAULTS.seed)
    rows, window, restarted = [], [], 0
    for step in tqdm(range(args.steps), desc=f"{args.size} tokenizer"):
        frames = shard_batch(data.frames[np.sort(rng.choice(train_idx, batch_size, replace=False))])
        state, metrics = train_step(state, frames, jax.random.key(step))
        state["usage"] = state["usage"] + metrics["code_counts"]
        window.append(jax.device_get(metrics))
        if (step + 1) % DEFAULTS.restart_every == 0:
            state, num = restart_step(state, frames, jax.random.key(1_000_000 + step))
            restarted += int(num)
        if (step + 1) % args.every == 0:
            mean = {k: float(np.mean([m[k] for m in window])) for k in ("loss", "recon_mse", "grad_norm")}
            rows.append(
                f"| {step + 1} | {mean['loss']:.4g} | {mean['recon_mse']:.4g} | "
                f"{mean['loss'] - mean['recon_mse']:.3g} | {mean['grad_norm']:.3g} | "
                f"{int((sum(m['code_counts'] for m in window) > 0).sum())} | {restarted} |"
            )
            window = []
    params = sum(x.size for x in jax.tree.leaves(state["trainable"]))
    table = "\n".join(
        [
            f"Tokenizer stability, {datetime.date.today()}, {machine()}; "
            f"size {args.size} ({params:,} params), "
            f"lr {lr:g}, batch {batch_size}, restarts every {DEFAULTS.restart_every} steps, "
            f"{args.data} ({len(train_idx)} training frames).",
            "",
            f"| steps | loss | recon MSE | quantizer loss | gradient norm | codes used (of {cfg.vocab_size}) "
            "| codes restarted so far |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print(table)
    atomic_write(args.output, table + "\n")
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
