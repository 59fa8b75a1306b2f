"""World model: a flow-matching transformer that generates the next frame's latents from the last k
frames' latents and an action (models/world_model.py).

It trains on env-step sequences: the speedruns' random-play branches (data/make_speedruns.py
--branch-every), each the run frame it left from and the frame after each of its random env steps
(training/world_model.py says why). Frames become the tokenizer's continuous latents once, up front (the
tokenizer is frozen). The action is the true button the branch logged (--actions button), or the
latent-action model's code for the frame pair (--actions latent --lam lam.pkl), the route for
unlabeled video.

    uv run python train_world_model.py --tokenizer pretrained_tokenizer.pkl --steps 3000
    uv run python train_world_model.py --actions latent --lam lam.pkl --out-dir checkpoints/world_model_lam
    uv run python train_world_model.py --resume

At the end, on the held-out run's branches: per-frame MSE and PSNR of 1-, 4- and 16-step open-loop
predictions decoded through the tokenizer, against copying the last real frame, and the sharpness
(variance of the Laplacian) of the predictions against the real frames'. Writes to --out-dir:
world_model.pkl (kind "world_model"; its config names the tokenizer, data and action source, so
envs/world_model_env.py can rebuild everything from it), metrics.jsonl, training_curves.png and
world_model_report.{json,md}.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jax
import numpy as np
import tyro
from flax import nnx
from tqdm import tqdm

from data.frames import load_branches
from envs.actions import ENV_ACTIONS
from models.build import build
from models.checkpoint import CheckpointError, save_checkpoint
from models.lam import load_lam
from models.sharding import shard_batch
from models.vqvae import load_tokenizer
from models.world_model import WorldModel, WorldModelConfig, normalize, world_model_loss
from training.cli import dtype_flag, fail
from training.data import fit_batch_size, load_frames
from training.interrupt import StopRequest
from training.io import atomic_write
from training.metrics import Curves, MetricsLog, Panel
from training.out_dir import OutDir
from training.paths import (
    LAM_DIR,
    PRETRAIN_DIR,
    TOKENIZER_FILE,
    WORLD_MODEL_DIR,
    WORLD_MODEL_FILE,
    find_checkpoint,
    path_for_checkpoint,
)
from training.steps import (
    NonFiniteGuard,
    count_params,
    make_optimizer,
    make_train_step,
    new_train_state,
    resume_from,
    train_state_to_save,
)
from training.world_model import branch_sequences, encode_latents, lam_codes, open_loop_errors, psnr

CURVES = {"world_model": Curves("step", (Panel("loss", ("flow_loss", "shortcut_loss"), log_scale=True),))}
REPORT_HORIZONS = (1, 4, 16)


@dataclass
class Args:
    data: Path = Path("data/speedruns/frames")
    """Frames folder of the speedruns (<data>/<run>/*.png): the frame each branch left from."""
    branches: Path = Path("data/speedruns/branches")
    """Random-play branches of those runs (data/make_speedruns.py --branch-every 48 --branch-steps 24)."""
    tokenizer: str = TOKENIZER_FILE
    """Phase 1a tokenizer (a path, or a name in checkpoints/pretrain/): its encoder gives the latents and
    its decoder turns predictions back into frames."""
    actions: Literal["button", "latent"] = "button"
    """What the model is conditioned on: the button each branch step pressed, or the latent-action
    model's code of the frame pair (needs --lam)."""
    lam: str | None = None
    """--actions latent: the latent-action model (train_lam.py's lam.pkl)."""
    out_dir: str = str(WORLD_MODEL_DIR)
    """Where world_model.pkl, metrics.jsonl, training_curves.png and the report go."""
    steps: int = 3000
    """Training steps."""
    batch_size: int = 32
    """Transitions per step."""
    lr: float = 1e-3
    """Peak learning rate (linear warmup, then cosine decay to 10%)."""
    context: int = 2
    """Past frames the model reads."""
    embed_dim: int = 128
    num_layers: int = 3
    num_heads: int = 4
    pool: tuple[int, int] = (3, 2)
    """Latent windows merged into one token (must divide the 9x10 grid)."""
    shortcut: bool = False
    """Also train the shortcut self-consistency (step-size conditioning), meant for 1-4 step sampling;
    bench/world_model.py measures whether it helps."""
    max_steps: int = 16
    """Finest shortcut step, 1 / max-steps (a power of two)."""
    sample_steps: int = 4
    """Euler steps per generated frame in the report."""
    horizon: int = 16
    """Open-loop frames predicted from each held-out window in the report."""
    eval_windows: int = 256
    """Held-out windows the report averages over (evenly spaced among all of them)."""
    holdout_run: str = "-1"
    """Run whose branches are kept out of training for the report (name or index; -1 = last)."""
    log_every: int = 250
    """Steps between log lines, metrics.jsonl records and checkpoint saves."""
    resume: bool = False
    """Continue from <out-dir>/world_model.pkl (exactly: same batches and noise)."""
    seed: int = 0
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Compute dtype: auto is bfloat16 on GPU, float32 on CPU. Weights stay float32."""


def check_args(args: Args):
    if min(args.steps, args.batch_size, args.log_every, args.context, args.horizon, args.sample_steps) < 1:
        raise fail(
            "--steps, --batch-size, --log-every, --context, --horizon and --sample-steps must be at least 1"
        )
    if args.actions == "latent" and args.lam is None:
        raise fail("--actions latent needs --lam, a latent-action model from train_lam.py")
    if args.actions == "button" and args.lam is not None:
        raise fail("--lam is only read with --actions latent")


def load_inputs(args: Args):
    """(sequences, their raw latents (F, rows, cols, D), each frame's action (F,), number of actions,
    tokenizer, held-out run number and name)."""
    data = load_frames(args.data)
    try:
        sequences = branch_sequences(data, load_branches(args.branches, data))
    except (FileNotFoundError, ValueError) as err:
        raise fail(f"--branches: {err}") from None
    try:
        holdout = data.resolve_run(args.holdout_run)
        tokenizer = load_tokenizer(find_checkpoint(args.tokenizer, "--tokenizer", PRETRAIN_DIR))
    except (ValueError, CheckpointError) as err:
        raise fail(str(err)) from None
    print(f"{len(sequences.first)} branch sequences, {len(sequences.frames)} frames: encoding them")
    latents = encode_latents(tokenizer, sequences.frames)
    if args.actions == "button":
        actions, num_actions = sequences.actions, max(len(ENV_ACTIONS), int(sequences.actions.max()) + 1)
    else:
        try:
            lam = load_lam(find_checkpoint(args.lam, "--lam", LAM_DIR))
        except CheckpointError as err:
            raise fail(f"--lam: {err}") from None
        after = np.flatnonzero(sequences.actions >= 0)  # every frame but a sequence's first
        actions = np.full(len(sequences.frames), -1, np.int32)
        actions[after] = lam_codes(lam, sequences.frames[after - 1], sequences.frames[after])
        num_actions = lam.cfg.vocab_size
    return sequences, latents, actions, num_actions, tokenizer, holdout, data.run_names[holdout]


def model_config(
    args: Args, latents: np.ndarray, windows: np.ndarray, num_actions: int, dtype
) -> WorldModelConfig:
    """The model's config, normalising with the statistics of the training transitions (`windows`)."""
    frames = np.unique(windows[:, None] + np.arange(args.context + 1))
    mean, std = latents[frames].mean(axis=(0, 1, 2)), latents[frames].std(axis=(0, 1, 2)) + 1e-6
    change = (latents[windows + args.context] - latents[windows + args.context - 1]) / std
    try:
        return WorldModelConfig(
            latent_dim=latents.shape[-1],
            grid=latents.shape[1:3],
            context=args.context,
            num_actions=num_actions,
            embed_dim=args.embed_dim,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            pool=args.pool,
            shortcut=args.shortcut,
            max_steps=args.max_steps,
            latent_mean=tuple(float(x) for x in mean),
            latent_std=tuple(float(x) for x in std),
            change_std=float(change.std()) + 1e-6,
            dtype=dtype.name,
        )
    except ValueError as err:
        raise fail(str(err)) from None


def train(args: Args, cfg: WorldModelConfig, latents, actions, windows, out: OutDir, saved_config: dict):
    """The training loop over transitions (the K frames from each window start, the next frame and the
    action that led to it). Returns the trained model."""
    path = out.local / WORLD_MODEL_FILE
    ckpt = resume_from(path, "world_model", args.resume)
    model = build(lambda: WorldModel(cfg, rngs=nnx.Rngs(args.seed)))
    optimizer = make_optimizer(args.lr, args.steps)
    graphdef, state = new_train_state(
        model, optimizer, resumed=ckpt and ckpt["train_state"], source=str(path)
    )
    start = ckpt["train_state"]["epoch"] if ckpt else 0  # steps done; the field is named for the epoch loops
    batch_size = fit_batch_size(args.batch_size, len(windows), "training transitions")
    print(
        f"world model: {count_params(state):,} params, {len(windows)} training transitions, "
        f"{cfg.num_actions} actions ({args.actions}), context {cfg.context}, "
        f"{'shortcut' if cfg.shortcut else 'plain flow'}, {cfg.dtype}"
        + (f"; resuming at step {start}" if start else "")
    )
    train_step = make_train_step(graphdef, optimizer, world_model_loss)
    key = jax.random.key(args.seed)
    normalised = np.asarray(normalize(cfg, latents))

    def save(steps_done: int):
        params = nnx.to_pure_dict(state["trainable"])
        save_checkpoint(
            path,
            kind="world_model",
            config=saved_config,
            params=params,
            step=steps_done,
            train_state=train_state_to_save(state, steps_done),
        )

    guard, sums, clock = NonFiniteGuard(), {}, time.perf_counter()
    with MetricsLog(out.local, CURVES) as log, StopRequest() as stop:
        log.start("world_model", after=start if ckpt else None)
        for step in tqdm(range(start, args.steps), initial=start, total=args.steps, desc="world model"):
            rng = np.random.default_rng([args.seed, step])  # per step: a resumed run draws the same batches
            chosen = rng.choice(windows, size=batch_size, replace=False)
            batch = (
                normalised[chosen[:, None] + np.arange(cfg.context)],
                actions[chosen + cfg.context],
                normalised[chosen + cfg.context],
            )
            state, metrics = train_step(state, shard_batch(batch), jax.random.fold_in(key, step))
            guard.update(metrics.pop("finite"), step)
            sums = {name: sums.get(name, 0.0) + value for name, value in metrics.items()}
            if stop.requested:
                guard.check("world model", path)
                save(step + 1)
                out.push()
                raise fail(f"interrupted after step {step + 1}: saved {path}; --resume continues")
            if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
                guard.check("world model", path)
                done = (step - start) % args.log_every + 1 if step + 1 == args.steps else args.log_every
                record = {
                    "stage": "world_model",
                    "step": step + 1,
                    **{name: float(value) / done for name, value in sums.items()},
                    "transitions_per_s": done * batch_size / (time.perf_counter() - clock),
                }
                save(step + 1)
                log.write(record)
                out.push()
                tqdm.write(
                    f"step {step + 1}/{args.steps}  loss {record['loss']:.4f}  flow {record['flow_loss']:.4f}"
                    + (f"  shortcut {record['shortcut_loss']:.4f}" if "shortcut_loss" in record else "")
                    + f"  {record['transitions_per_s']:.0f} transitions/s"
                )
                sums, clock = {}, time.perf_counter()
    return nnx.merge(graphdef, state["trainable"], state["frozen"])


def report_markdown(report: dict) -> str:
    rows = [
        f"# World model on the {report['eval_on']}",
        "",
        f"{report['windows']} windows, {report['sample_steps']} sampling steps per frame, actions: "
        f"{report['actions']}. MSE on [0, 1] pixels; sharpness is the variance of the Laplacian "
        f"(real frames: {report['real_sharpness']:.0f}).",
        "",
        "| horizon | world model MSE | PSNR (dB) | copy last frame MSE | PSNR (dB) | sharpness "
        "| latent MSE: world model / copy |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in report["horizons"]:
        row = report["by_horizon"][str(h)]
        rows.append(
            f"| {h} | {row['mse']:.5f} | {row['psnr']:.1f} | {row['copy_mse']:.5f} | "
            f"{row['copy_psnr']:.1f} | {row['sharpness']:.0f} | {row['latent_mse']:.3f} / "
            f"{row['copy_latent_mse']:.3f} |"
        )
    return "\n".join(rows) + "\n"


def held_out_report(args, model, tokenizer, sequences, latents, actions, windows, eval_on) -> dict:
    picked = windows[np.linspace(0, len(windows) - 1, min(args.eval_windows, len(windows))).astype(int)]
    errors = open_loop_errors(
        model,
        tokenizer,
        sequences,
        latents,
        actions,
        picked,
        args.horizon,
        args.sample_steps,
        jax.random.key(args.seed + 1),
    )
    horizons = [h for h in REPORT_HORIZONS if h <= args.horizon] or [args.horizon]
    return {
        "eval_on": eval_on,
        "actions": args.actions,
        "windows": len(picked),
        "sample_steps": args.sample_steps,
        "horizons": horizons,
        "real_sharpness": float(errors["real_sharpness"].mean()),
        "by_horizon": {
            str(h): {
                "mse": float(errors["mse"][h - 1]),
                "psnr": float(psnr(errors["mse"][h - 1])),
                "copy_mse": float(errors["copy_mse"][h - 1]),
                "copy_psnr": float(psnr(errors["copy_mse"][h - 1])),
                "sharpness": float(errors["sharpness"][h - 1]),
                "latent_mse": float(errors["latent_mse"][h - 1]),
                "copy_latent_mse": float(errors["copy_latent_mse"][h - 1]),
            }
            for h in horizons
        },
    }


def main(args: Args) -> dict:
    """Trains and writes the held-out report; returns the report."""
    check_args(args)
    dtype = dtype_flag(args.dtype)
    with OutDir(args.out_dir) as out:
        sequences, latents, actions, num_actions, tokenizer, holdout, holdout_name = load_inputs(args)
        size = args.context + 1
        train_windows = sequences.windows(size, runs=np.setdiff1d(np.unique(sequences.run_id), [holdout]))
        eval_windows = sequences.windows(args.context + args.horizon, runs=[holdout])
        if len(train_windows) == 0 or len(eval_windows) == 0:
            raise fail(
                f"--branches: need branches of more than {args.context + args.horizon} frames in the "
                f"held-out run ({holdout_name}) and of more than {args.context} in the others"
            )
        cfg = model_config(args, latents, train_windows, num_actions, dtype)
        saved_config = {
            "model": dataclasses.asdict(cfg),
            "tokenizer": path_for_checkpoint(
                find_checkpoint(args.tokenizer, "--tokenizer", PRETRAIN_DIR), out.target
            ),
            "data": path_for_checkpoint(args.data, out.target),
            "branches": path_for_checkpoint(args.branches, out.target),
            "actions": args.actions,
            "lam": args.lam and path_for_checkpoint(find_checkpoint(args.lam, "--lam", LAM_DIR), out.target),
            "holdout_run": holdout_name,
        }
        model = train(args, cfg, latents, actions, train_windows, out, saved_config)
        report = held_out_report(
            args, model, tokenizer, sequences, latents, actions, eval_windows, f"held-out run {holdout_name}"
        )
        atomic_write(out.local / "world_model_report.json", json.dumps(report, indent=1))
        atomic_write(out.local / "world_model_report.md", report_markdown(report))
        for h in report["horizons"]:
            row = report["by_horizon"][str(h)]
            print(
                f"{h:2d} steps ahead: mse {row['mse']:.5f} (copy last frame {row['copy_mse']:.5f}), "
                f"sharpness {row['sharpness']:.0f} (real {report['real_sharpness']:.0f})"
            )
        print(
            f"outputs in {args.out_dir}: {WORLD_MODEL_FILE}, metrics.jsonl, training_curves.png, "
            "world_model_report.md"
        )
        return report


if __name__ == "__main__":
    main(tyro.cli(Args))
