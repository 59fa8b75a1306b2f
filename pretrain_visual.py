"""Phase 1: a visual vocabulary from unlabeled speedrun frames.

Stage 1a trains the VQ-VAE tokenizer (144x160 frame -> 9x10 tokens -> frame) and restarts
dead codes as it goes, reporting codebook use (codes picked at least once in the epoch /
vocabulary). Stage 1b freezes the tokenizer, encodes every frame once, and trains the token
transformer to predict frame t+1's tokens from frame t's, reporting accuracy beside the
copy-current-frame baseline (consecutive frames mostly match, so accuracy alone says little).

    uv run python pretrain_visual.py --data data/speedruns/frames --epochs 100
    uv run python pretrain_visual.py --stage 1b --tokenizer pretrained_tokenizer.pkl

Writes to --out-dir (checkpoints/pretrain): pretrained_tokenizer.pkl (encoder + codebook +
decoder), pretrained_encoder.pkl (encoder + codebook, for RL), pretrained_dynamics.pkl,
recon_grid.png (held-out originals over reconstructions), metrics.jsonl, training_curves.png.
Each checkpoint carries its train_state after every epoch and when Ctrl-C stops a run mid-epoch,
so --resume continues a stage exactly where it stopped. A NaN or infinite loss or gradient stops
the run before it overwrites the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from flax import nnx
from tqdm import tqdm

from data.frames import FramesDataset
from models.build import build
from models.checkpoint import (
    CheckpointError,
    config_from_dict,
    save_checkpoint,
)
from models.presets import PHASE1_LR, PHASE1_SIZES
from models.quantizers import QuantizerConfig
from models.sharding import process_rows, replicate, shard_batch, shard_local
from models.transformer import TokenTransformer, TransformerConfig, dynamics_loss
from models.vqvae import VQVAE, VQVAEConfig, encoder_params, frames_to_float, load_tokenizer, tokenizer_loss
from training.cli import dtype_flag, fail
from training.data import fit_batch_size, load_frames, map_batches, split_runs
from training.distributed import Distributed, initialize
from training.interrupt import StopRequest
from training.metrics import Curves, MetricsLog, Panel
from training.out_dir import OutDir
from training.paths import DYNAMICS_FILE, ENCODER_FILE, PRETRAIN_DIR, TOKENIZER_FILE, find_checkpoint
from training.pictures import save_recon_grid
from training.steps import (
    EpochSums,
    NonFiniteGuard,
    count_params,
    is_eval_epoch,
    make_optimizer,
    make_restart_step,
    make_train_step,
    new_train_state,
    resume_from,
    train_state_to_save,
)

CURVES = {
    "1a": Curves(
        "epoch",
        (
            Panel("recon MSE", ("train_recon_mse", "eval_recon_mse")),
            Panel("codebook use", ("code_use",)),
            Panel("perplexity", ("perplexity",)),
        ),
    ),
    "1b": Curves(
        "epoch",
        (
            Panel("loss", ("train_loss", "eval_loss")),
            Panel("next-token accuracy", ("eval_accuracy", "eval_copy_accuracy", "eval_changed_accuracy")),
        ),
    ),
}


@dataclass
class Args:
    stage: Literal["1a", "1b", "all"] = "all"
    """1a: tokenizer; 1b: dynamics on a frozen tokenizer; all: 1a then 1b."""
    data: str = "data/speedruns/frames"
    """Frames directory (<data>/<run>/*.png|jpg, from data/make_speedruns.py), or a sharded dataset
    (data/shards.py): a folder or a storage URL such as s3://bucket/speedruns."""
    epochs: int = 100
    """Training epochs of each stage."""
    batch_size: int = 32
    """Frames (1a) or frame pairs (1b) per step, split over all devices."""
    lr: float | None = None
    """Peak learning rate (linear warmup, then cosine decay to 10%). Default: the size preset's (1e-3 for
    small, 3e-4 for tiny and seed)."""
    tokenizer: str | None = None
    """Stage 1b: the tokenizer checkpoint to freeze, a path, a storage URL or a name found in --out-dir or
    checkpoints/ (default: pretrained_tokenizer.pkl)."""
    out_dir: str = str(PRETRAIN_DIR)
    """Where checkpoints, metrics.jsonl and the PNGs go: a folder or a storage URL (s3://bucket/run)."""
    resize: bool = False
    """Scale frames that are not 160x144 to it (without this flag they are refused)."""
    resume: bool = False
    """Continue each stage from the train_state in its checkpoint in --out-dir (if there is one), exactly
    where it stopped, mid-epoch after a Ctrl-C."""
    seed: int = 0
    """Seeds the init, the data order and the quantizer noise."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Compute dtype: auto is bfloat16 on GPU, float32 on CPU. Weights stay float32."""
    holdout_run: str = "-1"
    """Run kept out of training for evaluation (name or index; -1 = last). Empty: evaluate on training
    runs."""
    size: Literal["tiny", "small", "seed"] = "seed"
    """Size preset; the flags below override single sizes."""
    embed_dim: int | None = None
    """Token / codebook width, also the transformer width."""
    encoder_channels: tuple[int, ...] | None = None
    """Encoder conv widths, one stride-2 stage each (four stages: 144x160 -> 9x10)."""
    res_blocks: int | None = None
    """Residual blocks per encoder / decoder stage."""
    vocab_size: int | None = None
    """Codebook size for vq / nsvq (fsq's is the product of --fsq-levels)."""
    num_layers: int | None = None
    """Transformer blocks of the dynamics model."""
    num_heads: int | None = None
    """Attention heads of the dynamics model."""
    pool: tuple[int, int] = (1, 1)
    """Stage 1b: merge windows of this many token rows and columns into one transformer token ((3, 2):
    15 tokens instead of 90). A policy starting from this dynamics model runs its trunk at that size."""
    quantizer: Literal["vq", "fsq", "nsvq", "none"] = "vq"
    """Quantizer of the tokenizer ("none" has no tokens, so stage 1b refuses it)."""
    fsq_levels: tuple[int, ...] = (8, 8, 8)
    """FSQ levels per channel (vocabulary = their product)."""
    restart_every: int = 50
    """Stage 1a: restart codes unused in the last this-many steps onto encoder outputs (0: never)."""
    restart_until: float = 0.8
    """Stage 1a: stop restarting after this fraction of training, so the decoder settles on the final
    codes."""
    eval_every: int = 1
    """Evaluate on the held-out run every this many epochs, and after the last (a tokenizer
    evaluation costs ~15% of a small epoch on a CPU)."""
    distributed: tyro.conf.OmitArgPrefixes[Distributed] = field(default_factory=Distributed)
    """Several processes training as one (jax.distributed): see training/distributed.py."""


# ---------------------------------------------------------------- stage 1a: tokenizer


def model_sizes(args: Args) -> dict:
    """The --size preset with the single-size flags that were given laid over it."""
    overrides = {
        name: getattr(args, name) for name in PHASE1_SIZES["seed"] if getattr(args, name) is not None
    }
    return {**PHASE1_SIZES[args.size], **overrides}


def tokenizer_config(args: Args, dtype: jnp.dtype) -> VQVAEConfig:
    size = model_sizes(args)
    quantizer = QuantizerConfig(kind=args.quantizer, codebook_size=size["vocab_size"], levels=args.fsq_levels)
    return VQVAEConfig(
        embed_dim=size["embed_dim"],
        encoder_channels=tuple(size["encoder_channels"]),
        res_blocks=size["res_blocks"],
        quantizer=quantizer,
        dtype=dtype.name,
    )


def train_tokenizer(args: Args, data: FramesDataset, dtype: jnp.dtype, log: MetricsLog, out: OutDir) -> dict:
    """Stage 1a. Returns the last epoch's metrics."""
    path = out.local / TOKENIZER_FILE
    resumed = resume_from(path, "tokenizer", args.resume)
    cfg = tokenizer_config(args, dtype)
    if resumed:
        cfg = dataclasses.replace(config_from_dict(VQVAEConfig, resumed["config"]), dtype=dtype.name)
    model = build(lambda: VQVAE(cfg, rngs=nnx.Rngs(args.seed)))
    train_idx, eval_idx, eval_name = split_runs(data, args.holdout_run)
    batch_size = fit_batch_size(args.batch_size, len(train_idx), "training frames")
    steps_per_epoch = len(train_idx) // batch_size
    total_steps = args.epochs * steps_per_epoch
    optimizer = make_optimizer(args.lr or PHASE1_LR[args.size], total_steps)

    saved = resumed["train_state"] if resumed else None
    # The code-usage counter is part of the run: restarts read it, so a resumed run needs it back.
    usage = (
        jnp.asarray(saved["usage"], jnp.int32)
        if saved and "usage" in saved
        else jnp.zeros(cfg.vocab_size, jnp.int32)
    )
    graphdef, state = new_train_state(model, optimizer, saved, source=str(path), usage=usage)
    start_epoch, start_step = (saved["epoch"], saved.get("step", 0)) if saved else (0, 0)
    if saved:
        print(
            f"resuming stage 1a from {path} after epoch {start_epoch}"
            + (f", step {start_step}" if start_step else "")
        )
    log.start("1a", after=start_epoch if saved else None)
    print(
        f"stage 1a: tokenizer {cfg.embed_dim}-d x {cfg.vocab_size} codes ({cfg.quantizer.kind}), "
        f"{count_params(state):,} params, {len(train_idx)} training frames, "
        f"eval on {eval_name}, {jax.device_count()} device(s), {dtype.name}"
    )

    train_step = make_train_step(graphdef, optimizer, tokenizer_loss)
    restart_step = make_restart_step(graphdef)

    @jax.jit
    def reconstruct(state, frames):
        recon, indices, _ = nnx.merge(graphdef, state["trainable"], state["frozen"])(
            frames_to_float(frames), None
        )
        return recon, indices

    train_key, restart_key = jax.random.split(jax.random.key(args.seed))
    last_restart_step = int(args.restart_until * total_steps)
    guard = NonFiniteGuard()
    summary = {}
    with StopRequest() as stop:
        for epoch in range(start_epoch, args.epochs):
            skip = start_step if epoch == start_epoch else 0
            sums = (
                EpochSums.restore(saved["partial"])
                if skip
                else EpochSums.new(["loss", "recon_mse", "perplexity"])
            )
            epoch_counts = jnp.asarray(sums.extra.get("counts", np.zeros(cfg.vocab_size, np.int32)))
            started = time.perf_counter()
            rng = np.random.default_rng([args.seed, epoch])
            bar = tqdm(
                data.batches(batch_size, rng, train_idx, skip=skip, rows=process_rows(batch_size)),
                initial=skip,
                total=steps_per_epoch,
                desc=f"1a epoch {epoch + 1}/{args.epochs}",
                leave=False,
            )
            for i, frames in enumerate(bar, start=skip):
                step = epoch * steps_per_epoch + i
                frames = shard_local(frames)  # this process's rows of the global batch
                state, metrics = train_step(state, frames, jax.random.fold_in(train_key, step))
                guard.update(metrics["finite"], step)
                counts = metrics.pop("code_counts")
                state["usage"] = state["usage"] + counts
                epoch_counts = epoch_counts + counts
                sums.add(metrics)  # stays on device: no sync per step
                if args.restart_every and (step + 1) % args.restart_every == 0 and step < last_restart_step:
                    state, num = restart_step(state, frames, jax.random.fold_in(restart_key, step))
                    sums.restarted += int(num)
                if stop.requested:
                    guard.check("stage 1a", path)
                    sums.extra["counts"] = np.asarray(epoch_counts)
                    save_tokenizer(
                        out.local, cfg, state, epoch, steps_per_epoch, step=i + 1, partial=sums.to_save()
                    )
                    raise fail(
                        f"interrupted in epoch {epoch + 1} after step {i + 1}: saved {path}; "
                        "run again with --resume to continue exactly"
                    )
            guard.check("stage 1a", path)
            seconds = time.perf_counter() - started
            used = int(jnp.sum(epoch_counts > 0))
            means = sums.means(steps_per_epoch)
            summary = {
                "stage": "1a",
                "epoch": epoch + 1,
                "train_loss": means["loss"],
                "train_recon_mse": means["recon_mse"],
                "code_use": used / cfg.vocab_size,
                "codes_used": used,
                "perplexity": means["perplexity"],
                "codes_restarted": sums.restarted,
                "frames_per_s": (steps_per_epoch - skip) * batch_size / seconds,
            }
            held_out = ""
            if is_eval_epoch(epoch, args.eval_every, args.epochs):
                eval_mse, eval_used = evaluate_reconstruction(
                    reconstruct, state, data.frames[eval_idx], batch_size, cfg.vocab_size
                )
                summary.update(eval_recon_mse=eval_mse, eval_code_use=eval_used / cfg.vocab_size)
                held_out = f"  held-out recon mse {eval_mse:.4f}, codebook use {summary['eval_code_use']:.0%}"
            # Saved before it is logged: a record never outlives its checkpoint.
            save_tokenizer(out.local, cfg, state, epoch + 1, steps_per_epoch)
            log.write(summary)
            out.push()
            tqdm.write(
                f"1a epoch {epoch + 1}/{args.epochs}  loss {summary['train_loss']:.4f}  "
                f"recon mse {summary['train_recon_mse']:.4f}"
                f"  codebook use {used}/{cfg.vocab_size} = {summary['code_use']:.0%}"
                f"  perplexity {summary['perplexity']:.0f}  restarted {sums.restarted}  "
                f"{summary['frames_per_s']:.0f} frames/s{held_out}"
            )

    if not summary:
        print(f"stage 1a: {path} already has {start_epoch} epochs (--epochs {args.epochs}); nothing to train")
    shown = eval_idx[np.linspace(0, len(eval_idx) - 1, min(8, len(eval_idx))).astype(int)]
    recons = map_batches(lambda f: reconstruct(state, f)[0], data.frames[shown], batch_size)
    save_recon_grid(out.local / "recon_grid.png", data.frames[shown], recons)
    return summary


def evaluate_reconstruction(
    reconstruct, state, frames: np.ndarray, batch_size: int, vocab_size: int
) -> tuple[float, int]:
    """(mean squared error on [0, 1] pixels of the deterministic reconstruction of `frames`,
    how many distinct codes their tokens use)."""
    recons, tokens = map_batches(lambda f: reconstruct(state, f), frames, batch_size)
    return float(np.mean((recons - frames.astype(np.float32) / 255.0) ** 2)), len(np.unique(tokens))


def save_tokenizer(
    out_dir: Path, cfg: VQVAEConfig, state, epoch: int, steps_per_epoch: int, step: int = 0, partial=None
) -> None:
    """pretrained_tokenizer.pkl (with train_state) and pretrained_encoder.pkl (no decoder, for RL), after
    `epoch` whole epochs and `step` steps of the next one (a run stopped mid-epoch, with its `partial`
    epoch sums)."""
    params = nnx.to_pure_dict(state["trainable"])
    done = epoch * steps_per_epoch + step
    train_state = train_state_to_save(
        state, epoch, step=step, usage=np.asarray(state["usage"]), partial=partial
    )
    save_checkpoint(
        out_dir / TOKENIZER_FILE,
        kind="tokenizer",
        config=cfg,
        params=params,
        step=done,
        train_state=train_state,
    )
    save_checkpoint(
        out_dir / ENCODER_FILE, kind="encoder", config=cfg, params=encoder_params(params), step=done
    )


# ---------------------------------------------------------------- stage 1b: dynamics


def load_frozen_tokenizer(path: str | Path, out_dir: Path, dtype: jnp.dtype) -> VQVAE:
    """The tokenizer `path` names (a path, or a name found in out_dir or checkpoints/), in this run's
    compute dtype."""
    path = find_checkpoint(path, "--tokenizer", out_dir)
    try:
        model = load_tokenizer(path, dtype.name)
    except CheckpointError as err:
        raise fail(f"--tokenizer: {err}") from None
    if model.cfg.quantizer.kind == "none":
        raise fail(
            f"--tokenizer: {path} uses quantizer 'none', which has no tokens; "
            "train one with --quantizer vq|fsq|nsvq"
        )
    return model


def encode_all(tokenizer: VQVAE, frames: np.ndarray, batch_size: int) -> np.ndarray:
    """Token ids (N, 9, 10) int32 of every frame, with hard codes (no quantizer noise)."""
    graphdef, variables = nnx.split(tokenizer)
    variables = replicate(variables)

    @jax.jit
    def encode(frames):
        return nnx.merge(graphdef, variables).encode(frames, None)[1]

    return map_batches(encode, frames, batch_size)


def train_dynamics(args: Args, data: FramesDataset, dtype: jnp.dtype, log: MetricsLog, out: OutDir) -> dict:
    """Stage 1b. Returns the last epoch's metrics."""
    tokenizer = load_frozen_tokenizer(args.tokenizer or TOKENIZER_FILE, out.local, dtype)
    vq_cfg = tokenizer.cfg
    path = out.local / DYNAMICS_FILE
    resumed = resume_from(path, "dynamics", args.resume)
    size = model_sizes(args)
    cfg = TransformerConfig(
        vocab_size=vq_cfg.vocab_size,
        embed_dim=size["embed_dim"],
        num_layers=size["num_layers"],
        num_heads=size["num_heads"],
        grid=vq_cfg.grid,
        pool=tuple(args.pool),
        dtype=dtype.name,
    )
    if any(cells % window for cells, window in zip(vq_cfg.grid, args.pool)) or min(args.pool) < 1:
        raise fail(f"--pool {args.pool} does not divide the tokenizer's {vq_cfg.grid} token grid")
    if resumed:
        cfg = dataclasses.replace(config_from_dict(TransformerConfig, resumed["config"]), dtype=dtype.name)
    if cfg.vocab_size != vq_cfg.vocab_size:
        raise fail(
            f"--resume: {path} predicts {cfg.vocab_size} tokens but the tokenizer has {vq_cfg.vocab_size}"
        )

    train_idx, eval_idx, eval_name = split_runs(data, args.holdout_run)
    train_t, train_t1 = data.next_frame_pairs(train_idx)
    eval_t, eval_t1 = data.next_frame_pairs(eval_idx)
    if len(train_t) == 0 or len(eval_t) == 0:
        raise fail(
            f"--data: no consecutive frame pairs to train or evaluate the dynamics model on in {args.data}"
        )
    tokens = encode_all(tokenizer, data.frames, fit_batch_size(args.batch_size, len(data), "frames"))
    batch_size = fit_batch_size(args.batch_size, len(train_t), "training pairs")
    steps_per_epoch = len(train_t) // batch_size
    optimizer = make_optimizer(args.lr or PHASE1_LR[args.size], args.epochs * steps_per_epoch)

    model = build(lambda: TokenTransformer(cfg, rngs=nnx.Rngs(args.seed)))
    saved = resumed["train_state"] if resumed else None
    graphdef, state = new_train_state(model, optimizer, saved, source=str(path))
    start_epoch, start_step = (saved["epoch"], saved.get("step", 0)) if saved else (0, 0)
    if saved:
        print(
            f"resuming stage 1b from {path} after epoch {start_epoch}"
            + (f", step {start_step}" if start_step else "")
        )
    log.start("1b", after=start_epoch if saved else None)
    print(
        f"stage 1b: dynamics {cfg.num_layers} layers x {cfg.embed_dim}-d over {cfg.vocab_size} tokens, "
        f"{count_params(state):,} params, {len(train_t)} training pairs, "
        f"eval on {eval_name} ({len(eval_t)} pairs)"
    )

    def objective(model, batch, key):
        return dynamics_loss(model, *batch)

    train_step = make_train_step(graphdef, optimizer, objective)

    @jax.jit
    def eval_step(state, batch):
        tokens_t, tokens_t1, weight = batch  # weight (B,): 1 for real pairs, 0 for batch padding
        logits = nnx.merge(graphdef, state["trainable"], state["frozen"])(tokens_t)
        cell_weight = jnp.broadcast_to(weight[:, None, None], tokens_t.shape)
        correct = (jnp.argmax(logits, axis=-1) == tokens_t1) * cell_weight
        changed = (tokens_t != tokens_t1) * cell_weight
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, tokens_t1) * cell_weight
        return {
            "loss": loss.sum(),
            "correct": correct.sum(),
            "cells": cell_weight.sum(),
            "changed": changed.sum(),
            "changed_correct": (correct * changed).sum(),
        }

    def evaluate(state) -> dict:
        """Held-out metrics over every pair (the last batch is padded, with zero weight)."""
        totals = {}
        for start in range(0, len(eval_t), batch_size):
            t, t1 = eval_t[start : start + batch_size], eval_t1[start : start + batch_size]
            pad = batch_size - len(t)
            weight = np.concatenate([np.ones(len(t), np.float32), np.zeros(pad, np.float32)])
            t, t1 = np.concatenate([t, np.repeat(t[:1], pad)]), np.concatenate([t1, np.repeat(t1[:1], pad)])
            sums = eval_step(state, shard_batch((tokens[t], tokens[t1], weight)))
            totals = {k: totals.get(k, 0.0) + v for k, v in sums.items()}
        totals = {k: float(v) for k, v in totals.items()}
        cells = totals["cells"]
        return {
            "eval_loss": totals["loss"] / cells,
            "eval_accuracy": totals["correct"] / cells,
            "eval_copy_accuracy": 1.0 - totals["changed"] / cells,
            "eval_changed_accuracy": totals["changed_correct"] / max(totals["changed"], 1.0),
            "eval_changed_fraction": totals["changed"] / cells,
        }

    def save(epoch: int, step: int = 0, partial=None):
        save_checkpoint(
            path,
            kind="dynamics",
            config=cfg,
            params=nnx.to_pure_dict(state["trainable"]),
            step=epoch * steps_per_epoch + step,
            train_state=train_state_to_save(state, epoch, step=step, partial=partial),
        )

    base_key = jax.random.key(args.seed)
    guard = NonFiniteGuard()
    summary = {}
    with StopRequest() as stop:
        for epoch in range(start_epoch, args.epochs):
            skip = start_step if epoch == start_epoch else 0
            sums = EpochSums.restore(saved["partial"]) if skip else EpochSums.new(["loss", "accuracy"])
            rng = np.random.default_rng([args.seed, epoch])
            order = rng.permutation(len(train_t))
            started = time.perf_counter()
            bar = tqdm(
                range(skip, steps_per_epoch),
                initial=skip,
                total=steps_per_epoch,
                desc=f"1b epoch {epoch + 1}/{args.epochs}",
                leave=False,
            )
            for i in bar:
                chosen = order[i * batch_size : (i + 1) * batch_size]
                batch = shard_batch((tokens[train_t[chosen]], tokens[train_t1[chosen]]))
                step = epoch * steps_per_epoch + i
                state, metrics = train_step(state, batch, jax.random.fold_in(base_key, step))
                guard.update(metrics["finite"], step)
                sums.add(metrics)
                if stop.requested:
                    guard.check("stage 1b", path)
                    save(epoch, i + 1, sums.to_save())
                    raise fail(
                        f"interrupted in epoch {epoch + 1} after step {i + 1}: saved {path}; "
                        "run again with --resume to continue exactly"
                    )
            guard.check("stage 1b", path)
            seconds = time.perf_counter() - started
            means = sums.means(steps_per_epoch)
            summary = {
                "stage": "1b",
                "epoch": epoch + 1,
                "train_loss": means["loss"],
                "train_accuracy": means["accuracy"],
                "pairs_per_s": (steps_per_epoch - skip) * batch_size / seconds,
            }
            held_out = ""
            if is_eval_epoch(epoch, args.eval_every, args.epochs):
                summary.update(evaluate(state))
                held_out = (
                    f"  held-out loss {summary['eval_loss']:.4f}, "
                    f"next-token acc {summary['eval_accuracy']:.1%}"
                    f" vs copy {summary['eval_copy_accuracy']:.1%}, "
                    f"on changed tokens {summary['eval_changed_accuracy']:.1%}"
                )
            save(epoch + 1)  # before the record is logged: a record never outlives its checkpoint
            log.write(summary)
            out.push()
            tqdm.write(
                f"1b epoch {epoch + 1}/{args.epochs}  loss {summary['train_loss']:.4f}"
                f"  {summary['pairs_per_s']:.0f} pairs/s{held_out}"
            )
    if not summary:
        print(f"stage 1b: {path} already has {start_epoch} epochs (--epochs {args.epochs}); nothing to train")
    return summary


def main(args: Args) -> dict:
    """Runs the requested stage(s); returns {"1a": last metrics, "1b": last metrics} for the stages run."""
    if min(args.epochs, args.batch_size, args.eval_every) < 1:
        raise fail("--epochs, --batch-size and --eval-every must be at least 1")
    initialize(args.distributed)
    dtype = dtype_flag(args.dtype)
    data = load_frames(args.data, args.resize)
    results = {}
    # The log redraws its curves before the out-dir's last push.
    with OutDir(args.out_dir) as out, MetricsLog(out.local, CURVES) as log:
        if args.stage in ("1a", "all"):
            results["1a"] = train_tokenizer(args, data, dtype, log, out)
        if args.stage in ("1b", "all"):
            results["1b"] = train_dynamics(args, data, dtype, log, out)
    print(
        f"outputs in {args.out_dir}: {TOKENIZER_FILE}, {ENCODER_FILE}, {DYNAMICS_FILE}, recon_grid.png, "
        "metrics.jsonl, training_curves.png"
    )
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
