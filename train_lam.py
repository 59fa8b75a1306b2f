"""Latent action model: learn, without labels, what the player did between two frames.

Trains models/lam.py on (x_t, x_{t+1}) pairs of the speedrun frames (data/pairs.py): an
inverse dynamics model picks one of a few latent action codes (NSVQ, 8 codes by default),
and a forward model must predict x_{t+1} from x_t and that code. The reconstruction loss
weighs changed pixels 1 + --change-weight times more, so copying x_t is not enough.

    uv run python train_lam.py --data data/speedruns/frames --steps 3000
    uv run python train_lam.py --quantizer fsq --fsq-levels 2 2 2
    uv run python train_lam.py --eval-only --checkpoint checkpoints/lam/lam.pkl

Logged every --log-every steps: per-code use, perplexity, the loss split into changed and
unchanged pixels beside the copy-previous-frame baseline, and codes replaced (NSVQ / VQ
codes picked by fewer than --replace-min-fraction of the window's pairs are replaced by
copies of used codes, until --replace-until of training).

At the end (or with --eval-only), on the held-out run, the codes are compared with the
buttons the speedrun bot logged (labels are read for this report only, never for
training): purity and mutual information against chance (the same codes shuffled over the
pairs), and whether one "no-action" code takes the identical pairs.

Writes to --out-dir: lam.pkl, metrics.jsonl, training_curves.png, lam_report.json, lam_report.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from flax import nnx
from tqdm import tqdm

from data.pairs import NO_BUTTON, FrameGroups, read_buttons
from envs.actions import ACTION_NAMES
from models.build import abstract, build
from models.checkpoint import (
    CheckpointError,
    config_from_dict,
    load_checkpoint,
    restore_params,
    save_checkpoint,
)
from models.lam import LAMConfig, LatentActionModel, lam_loss
from models.quantizers import QuantizerConfig
from models.sharding import replicate, shard_batch
from training.cli import dtype_flag, fail
from training.data import fit_batch_size, load_frames, split_groups
from training.interrupt import StopRequest
from training.io import atomic_write
from training.lam_report import buttons_in_effect, code_button_report, no_action_report, report_markdown
from training.metrics import Curves, MetricsLog, Panel
from training.out_dir import OutDir
from training.paths import LAM_DIR, LAM_FILE, find_checkpoint
from training.steps import NonFiniteGuard, count_params, make_optimizer, make_train_step, new_train_state

CURVES = {
    "lam": Curves(
        "step",
        (
            Panel("loss", ("changed_mse", "unchanged_mse", "copy_changed_mse"), log_scale=True),
            Panel("codes", ("interval_perplexity", "codes_used")),
        ),
    )
}


@dataclass
class Args:
    data: str = "data/speedruns/frames"
    """Frames directory (<data>/<run>/*.png, from data/make_speedruns.py), or a sharded dataset
    (data/shards.py): a folder or a storage URL such as s3://bucket/speedruns."""
    resize: bool = False
    """Scale frames that are not 160x144 to it (without this flag they are refused)."""
    out_dir: str = str(LAM_DIR)
    """Where lam.pkl, metrics.jsonl, training_curves.png and the report go: a folder or a storage URL."""
    steps: int = 3000
    """Training steps."""
    batch_size: int = 32
    """Frame pairs per step, split over all devices."""
    lr: float = 3e-4
    """Peak learning rate (linear warmup, then cosine decay to 10%)."""
    quantizer: Literal["nsvq", "fsq", "vq"] = "nsvq"
    """Quantizer of the latent action."""
    codebook_size: int = 8
    """Number of latent actions for nsvq / vq (fsq's is the product of --fsq-levels)."""
    fsq_levels: tuple[int, ...] = (2, 2, 2)
    """FSQ levels per channel (2 2 2 = 8 actions)."""
    action_dim: int = 32
    """Width of the latent action vector."""
    channels: tuple[int, ...] = (32, 64, 128)
    """Conv widths of the IDM and the forward U-Net, one stride-2 stage each."""
    pool: int = 2
    """Average-pool frames by this factor before the model (1: full 144x160; 2 keeps CPU training
    affordable)."""
    change_weight: float = 10.0
    """lambda in the loss weight 1 + lambda * [pixel changed]; 0 is plain MSE."""
    change_threshold: float = 0.01
    """A pixel has changed when some channel moves by more than this (on [0, 1] pixels)."""
    identical_threshold: float = 0.0
    """A pair is identical when its mean absolute change (0-255) is at most this (0: exactly equal)."""
    keep_identical_fraction: float = 0.2
    """Fraction of identical training pairs kept (evaluation keeps them all)."""
    replace_every: int = 100
    """Window, in steps, over which code use is counted for dead-code replacement (0: never replace)."""
    replace_min_fraction: float = 0.02
    """tau: a code picked by fewer than this fraction of the window's pairs is replaced by a used one."""
    replace_until: float = 0.6
    """Stop replacing codes after this fraction of training, so the forward model settles on the final
    codes."""
    holdout_run: str = "-1"
    """Run kept out of training for the report (name or index; -1 = last)."""
    effect_window: int = 4
    """Report: a press stays "in effect" for this many saved frames (4 x 4 emulator frames = one walking
    step)."""
    log_every: int = 250
    """Steps between log lines, metrics.jsonl records and checkpoint saves."""
    eval_only: bool = False
    """Skip training: load --checkpoint and write the report."""
    checkpoint: Path | None = None
    """--eval-only: the lam.pkl to evaluate (default: <out-dir>/lam.pkl)."""
    seed: int = 0
    """Seeds the init, the pair sampling and the quantizer noise."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Compute dtype: auto is bfloat16 on GPU, float32 on CPU. Weights stay float32."""


# ---------------------------------------------------------------- training


def lam_config(args: Args, dtype: jnp.dtype) -> LAMConfig:
    quantizer = QuantizerConfig(kind=args.quantizer, codebook_size=args.codebook_size, levels=args.fsq_levels)
    try:
        return LAMConfig(
            channels=args.channels,
            action_dim=args.action_dim,
            quantizer=quantizer,
            pool=args.pool,
            dtype=dtype.name,
        )
    except ValueError as err:
        raise fail(f"--pool / --channels / --fsq-levels: {err}") from None


def evaluate(
    model: LatentActionModel, groups: FrameGroups, eval_ids: np.ndarray, batch_size: int, args: Args
) -> dict:
    """Hard codes of every held-out pair, and the held-out prediction error with its own action,
    with actions shuffled across the batch (does the action matter?), and of copying x_t."""
    graphdef, variables = nnx.split(model)
    variables = replicate(variables)

    @jax.jit
    def eval_step(x_t, x_t1, weight, key):
        """weight (B,) is 1 for real pairs, 0 for the padding of the last batch."""
        model = nnx.merge(graphdef, variables)
        action, codes, _ = model.encode_action(x_t, x_t1, None)
        # The action as training sees it: for NSVQ the noisy substitute, which keeps part of the
        # continuous IDM output; for FSQ / VQ the code itself.
        training_action, _, _ = model.encode_action(x_t, x_t1, key)
        prev, target = model.prepare(x_t), model.prepare(x_t1)
        changed = (jnp.max(jnp.abs(target - prev), axis=-1) > args.change_threshold).astype(
            jnp.float32
        )  # (B, h, w)
        pixel_weight = weight[:, None, None] * changed
        predictions = {
            "": model.predict(x_t, action),
            "training_action_": model.predict(x_t, training_action),
            # Each pair decoded with its neighbour's action: how much the action matters.
            "shuffled_action_": model.predict(x_t, jnp.roll(action, 1, axis=0)),
            "copy_": prev,
        }
        sums = {"changed_pixels": jnp.sum(pixel_weight)}
        for name, prediction in predictions.items():
            squared_error = jnp.mean((prediction - target) ** 2, axis=-1)  # (B, h, w)
            sums[f"{name}mse"] = jnp.sum(weight * squared_error.mean(axis=(1, 2)))
            sums[f"{name}changed_se"] = jnp.sum(pixel_weight * squared_error)
        return codes, sums

    codes, totals = [], {}
    for start in range(0, len(eval_ids), batch_size):
        chosen = eval_ids[start : start + batch_size]
        pad = batch_size - len(chosen)
        padded = np.concatenate([chosen, np.repeat(chosen[:1], pad)])
        x_t, x_t1 = groups.pairs(padded)
        weight = np.concatenate([np.ones(len(chosen), np.float32), np.zeros(pad, np.float32)])
        batch_codes, sums = eval_step(
            *shard_batch((x_t, x_t1, weight)), jax.random.fold_in(jax.random.key(args.seed), start)
        )
        codes.append(np.asarray(batch_codes)[: len(chosen)])
        totals = {k: totals.get(k, 0.0) + float(v) for k, v in sums.items()}
    pixels = max(totals["changed_pixels"], 1.0)
    metrics = {"eval_pairs": len(eval_ids)}
    for name in ("", "training_action_", "shuffled_action_", "copy_"):
        metrics[f"eval_{name}mse"] = totals[f"{name}mse"] / len(eval_ids)
        metrics[f"eval_{name}changed_mse"] = totals[f"{name}changed_se"] / pixels
    return {"codes": np.concatenate(codes), **metrics}


def train(
    args: Args, train_groups: FrameGroups, train_ids: np.ndarray, cfg: LAMConfig, batch_size: int, out: OutDir
) -> LatentActionModel:
    model = build(lambda: LatentActionModel(cfg, rngs=nnx.Rngs(args.seed)))
    optimizer = make_optimizer(args.lr, args.steps)
    graphdef, state = new_train_state(model, optimizer)
    print(
        f"LAM: {cfg.quantizer.kind} with {cfg.vocab_size} actions, {count_params(state):,} params, "
        f"{len(train_ids)} training pairs at {cfg.model_hw[0]}x{cfg.model_hw[1]}, "
        f"{jax.device_count()} device(s), {cfg.dtype}"
    )

    objective = partial(lam_loss, change_weight=args.change_weight, change_threshold=args.change_threshold)
    train_step = make_train_step(graphdef, optimizer, objective)

    @partial(jax.jit, donate_argnums=0)
    def replace_step(state, usage, key):
        """Copy used codes onto codes picked by fewer than tau of the window's pairs."""
        model = nnx.merge(graphdef, state["trainable"], state["frozen"])
        num_replaced = model.quantizer.replace_unused_codes(usage, key, args.replace_min_fraction)
        return {**state, "trainable": nnx.state(model, nnx.Param)}, num_replaced

    train_key, replace_key = jax.random.split(jax.random.key(args.seed))
    rng = np.random.default_rng(args.seed)
    last_replace_step = int(args.replace_until * args.steps)
    window_usage = jnp.zeros(cfg.vocab_size, jnp.int32)
    interval_usage = jnp.zeros(cfg.vocab_size, jnp.int32)
    sums, replaced, started = {}, 0, time.perf_counter()
    path = out.local / LAM_FILE

    def save(steps_done: int):
        params = nnx.to_pure_dict(state["trainable"])
        save_checkpoint(path, kind="lam", config=cfg, params=params, step=steps_done)

    guard = NonFiniteGuard()
    with MetricsLog(out.local, CURVES) as log, StopRequest() as stop:
        log.start("lam")
        for step in tqdm(range(args.steps), desc="LAM", leave=False):
            x_t, x_t1 = train_groups.pairs(rng.choice(train_ids, size=batch_size, replace=False))
            state, metrics = train_step(state, shard_batch((x_t, x_t1)), jax.random.fold_in(train_key, step))
            guard.update(metrics.pop("finite"), step)
            counts = metrics.pop("code_counts")
            window_usage, interval_usage = window_usage + counts, interval_usage + counts
            sums = {k: sums.get(k, 0.0) + v for k, v in metrics.items()}  # stays on device: no sync per step
            if args.replace_every and (step + 1) % args.replace_every == 0:
                if step < last_replace_step:
                    state, num = replace_step(state, window_usage, jax.random.fold_in(replace_key, step))
                    replaced += int(num)
                window_usage = jnp.zeros_like(window_usage)
            if stop.requested:
                guard.check("LAM", path)
                save(step + 1)
                raise fail(f"interrupted after step {step + 1}: saved {path}")
            if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
                guard.check("LAM", path)
                steps_done = (step % args.log_every) + 1
                usage = np.asarray(interval_usage)
                code_share = usage / max(usage.sum(), 1)
                record = {
                    "stage": "lam",
                    "step": step + 1,
                    **{k: float(v) / steps_done for k, v in sums.items()},
                    "code_share": code_share.round(4).tolist(),
                    "codes_used": int(np.sum(usage > 0)),
                    "interval_perplexity": float(
                        np.exp(-np.sum(code_share[code_share > 0] * np.log(code_share[code_share > 0])))
                    ),
                    "codes_replaced": replaced,
                    "pairs_per_s": steps_done * batch_size / (time.perf_counter() - started),
                }
                save(step + 1)
                log.write(record)
                out.push()
                tqdm.write(
                    f"step {step + 1}/{args.steps}  loss {record['loss']:.5f}  "
                    f"changed-pixel mse {record['changed_mse']:.5f}"
                    f" (copy {record['copy_changed_mse']:.5f})  unchanged {record['unchanged_mse']:.6f}"
                    f"  perplexity {record['interval_perplexity']:.2f}  "
                    f"code use {' '.join(f'{s:.0%}' for s in code_share)}"
                    f"  replaced {replaced}  {record['pairs_per_s']:.0f} pairs/s"
                )
                sums, replaced, started = {}, 0, time.perf_counter()
                interval_usage = jnp.zeros_like(interval_usage)
    return nnx.merge(graphdef, state["trainable"], state["frozen"])


def load_for_eval(path: Path, dtype: jnp.dtype) -> LatentActionModel:
    try:
        ckpt = load_checkpoint(path, "lam")
        cfg = config_from_dict(LAMConfig, {**ckpt["config"], "dtype": dtype.name})
        return restore_params(
            abstract(lambda: LatentActionModel(cfg, rngs=nnx.Rngs(0))), ckpt["params"], source=str(path)
        )
    except CheckpointError as err:
        raise fail(f"--checkpoint: {err}") from None


def main(args: Args) -> dict:
    """Trains (unless --eval-only) and writes the held-out report; returns the report dict."""
    if args.steps < 1 or args.batch_size < 1 or args.log_every < 1:
        raise fail("--steps, --batch-size and --log-every must be at least 1")
    if not 0.0 <= args.keep_identical_fraction <= 1.0:
        raise fail(f"--keep-identical-fraction must be in [0, 1], got {args.keep_identical_fraction}")
    dtype = dtype_flag(args.dtype)
    with OutDir(args.out_dir) as out:
        return train_and_report(args, dtype, out)


def train_and_report(args: Args, dtype: jnp.dtype, out: OutDir) -> dict:
    cfg = lam_config(args, dtype)
    data = load_frames(args.data, args.resize)
    buttons = read_buttons(data)
    every_pair = FrameGroups(data, identical_threshold=args.identical_threshold, buttons=buttons)
    _, eval_ids, eval_name = split_groups(every_pair, args.holdout_run)
    if args.eval_only:
        model = load_for_eval(find_checkpoint(args.checkpoint or LAM_FILE, "--checkpoint", out.local), dtype)
        cfg = model.cfg
    else:
        train_groups = FrameGroups(
            data,
            identical_threshold=args.identical_threshold,
            keep_identical_fraction=args.keep_identical_fraction,
            seed=args.seed,
        )
        train_ids, _, _ = split_groups(train_groups, args.holdout_run)
        if len(train_ids) == 0:
            raise fail(f"--data: no frame pairs to train on in {args.data}")
        batch_size = fit_batch_size(args.batch_size, len(train_ids), "training pairs")
        model = train(args, train_groups, train_ids, cfg, batch_size, out)
    if len(eval_ids) == 0:
        raise fail(f"--holdout-run: {eval_name} has no frame pairs to evaluate on")

    evaluation = evaluate(
        model, every_pair, eval_ids, fit_batch_size(args.batch_size, len(eval_ids), "held-out pairs"), args
    )
    codes = evaluation.pop("codes")
    if every_pair.buttons is None:
        print(
            f"note: no run in {args.data} logs its buttons (metadata.json 'presses'); "
            "purity is not measurable"
        )
        pair_buttons = np.full(len(every_pair), NO_BUTTON)
    else:
        pair_buttons = every_pair.buttons[:, 0]
    in_effect = buttons_in_effect(pair_buttons, every_pair, args.effect_window)
    report = {
        "eval_on": eval_name,
        "quantizer": cfg.quantizer.kind,
        "vocab_size": cfg.vocab_size,
        "pairs": len(eval_ids),
        "code_counts": np.bincount(codes, minlength=cfg.vocab_size).tolist(),
        "codes_used": int(np.sum(np.bincount(codes, minlength=cfg.vocab_size) > 0)),
        **evaluation,
        **no_action_report(codes, every_pair.identical[eval_ids], cfg.vocab_size),
        "effect_window": args.effect_window,
        "logged_button": code_button_report(
            codes, pair_buttons[eval_ids], cfg.vocab_size, ACTION_NAMES, args.seed
        ),
        "button_in_effect": code_button_report(
            codes, in_effect[eval_ids], cfg.vocab_size, ACTION_NAMES, args.seed
        ),
    }
    title = f"Latent actions ({cfg.quantizer.kind}, {cfg.vocab_size} codes) versus buttons on the {eval_name}"
    atomic_write(out.local / "lam_report.json", json.dumps(report, indent=1))
    atomic_write(out.local / "lam_report.md", report_markdown(report, title))
    print(
        f"{eval_name}: changed-pixel mse {report['eval_changed_mse']:.5f} (another pair's action "
        f"{report['eval_shuffled_action_changed_mse']:.5f}, copy {report['eval_copy_changed_mse']:.5f})"
    )
    for key in ("logged_button", "button_in_effect"):
        part = report[key]
        print(
            f"codes vs {key.replace('_', ' ')}: purity {part['purity']:.3f} "
            f"(chance {part['purity_chance']:.3f}), "
            f"MI {part['mutual_information_bits']:.3f} bits "
            f"(chance {part['mutual_information_chance_bits']:.3f})"
        )
    if "no_action_code" in report:
        print(
            f"no-action code {report['no_action_code']}: "
            f"{report['identical_to_no_action']:.0%} of identical pairs, "
            f"{report['changing_to_no_action']:.0%} of changing pairs"
        )
    print(
        f"outputs in {args.out_dir}: {LAM_FILE}, metrics.jsonl, training_curves.png, lam_report.json, "
        "lam_report.md"
    )
    return report


if __name__ == "__main__":
    main(tyro.cli(Args))
