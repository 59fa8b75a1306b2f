"""Video tokenizer: tokens for clips of --num-images-in-video frames, with a temporal axis.

Trains models/video_tokenizer.py (the Phase 1 VQ-VAE per frame, plus causal temporal
mixing at each of the 9x10 grid cells) on clips of consecutive speedrun frames that never
cross a run boundary (data/pairs.py groups). Dead codes are restarted as in stage 1a.

    uv run python train_video_tokenizer.py --num-images-in-video 4 --epochs 20
    uv run python train_video_tokenizer.py --size tiny --epochs 1        # a quick check

Writes to --out-dir: video_tokenizer.pkl (kind "video_tokenizer", tokens (T, 9, 10) per
clip), metrics.jsonl, recon_grid.png (a held-out clip over its reconstruction).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from flax import nnx
from tqdm import tqdm

from data.pairs import FrameGroups
from models.build import build
from models.checkpoint import save_checkpoint
from models.presets import PHASE1_SIZES
from models.quantizers import QuantizerConfig
from models.sharding import shard_batch
from models.video_tokenizer import VideoTokenizer, VideoTokenizerConfig, video_tokenizer_loss
from models.vqvae import VQVAEConfig, frames_to_float
from training.cli import dtype_flag, fail
from training.data import fit_batch_size, load_frames, split_groups
from training.interrupt import StopRequest
from training.metrics import Curves, MetricsLog, Panel
from training.out_dir import OutDir
from training.paths import VIDEO_TOKENIZER_DIR, VIDEO_TOKENIZER_FILE
from training.pictures import save_recon_grid
from training.steps import (
    NonFiniteGuard,
    count_params,
    make_optimizer,
    make_restart_step,
    make_train_step,
    new_train_state,
)

CURVES = {
    "video_tokenizer": Curves(
        "epoch",
        (
            Panel("recon MSE", ("train_recon_mse", "eval_recon_mse")),
            Panel("codebook use", ("code_use",)),
            Panel("perplexity", ("train_perplexity",)),
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
    out_dir: str = str(VIDEO_TOKENIZER_DIR)
    """Where video_tokenizer.pkl, metrics.jsonl and recon_grid.png go: a folder or a storage URL."""
    num_images_in_video: int = 4
    """Frames per clip: the tokens of a clip are (num_images_in_video, 9, 10)."""
    clip_stride: int | None = None
    """Frames between the starts of consecutive training clips (default: num_images_in_video, no overlap)."""
    epochs: int = 20
    """Passes over the training clips."""
    batch_size: int = 8
    """Clips per step, split over all devices."""
    lr: float = 3e-4
    """Peak learning rate (linear warmup, then cosine decay to 10%)."""
    size: Literal["tiny", "small", "seed"] = "small"
    """Size preset of the per-frame VQ-VAE (as in pretrain_visual.py)."""
    quantizer: Literal["vq", "fsq", "nsvq"] = "vq"
    """Quantizer of the tokens."""
    vocab_size: int | None = None
    """Codebook size for vq / nsvq (default: the size preset's)."""
    fsq_levels: tuple[int, ...] = (8, 8, 8)
    """FSQ levels per channel (vocabulary = their product)."""
    temporal_kernel: int = 3
    """Frames each causal temporal conv looks back over."""
    restart_every: int = 50
    """Restart codes unused in the last this-many steps onto encoder outputs (0: never)."""
    restart_until: float = 0.8
    """Stop restarting after this fraction of training."""
    holdout_run: str = "-1"
    """Run kept out of training for evaluation (name or index; -1 = last; empty: evaluate on training
    runs)."""
    seed: int = 0
    """Seeds the init, the clip order and the quantizer noise."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Compute dtype: auto is bfloat16 on GPU, float32 on CPU. Weights stay float32."""


def tokenizer_config(args: Args, dtype: jnp.dtype) -> VideoTokenizerConfig:
    size = PHASE1_SIZES[args.size]
    quantizer = QuantizerConfig(
        kind=args.quantizer, codebook_size=args.vocab_size or size["vocab_size"], levels=args.fsq_levels
    )
    frame = VQVAEConfig(
        embed_dim=size["embed_dim"],
        encoder_channels=tuple(size["encoder_channels"]),
        res_blocks=size["res_blocks"],
        quantizer=quantizer,
        dtype=dtype.name,
    )
    return VideoTokenizerConfig(
        frame=frame, num_frames=args.num_images_in_video, temporal_kernel=args.temporal_kernel
    )


def main(args: Args) -> dict:
    """Trains the video tokenizer; returns the last epoch's metrics."""
    if args.num_images_in_video < 1 or args.epochs < 1 or args.batch_size < 1:
        raise fail("--num-images-in-video, --epochs and --batch-size must be at least 1")
    dtype = dtype_flag(args.dtype)
    try:
        cfg = tokenizer_config(args, dtype)
    except ValueError as err:
        raise fail(str(err)) from None
    with OutDir(args.out_dir) as out:
        return train(args, cfg, dtype, out)


def train(args: Args, cfg: VideoTokenizerConfig, dtype: jnp.dtype, out: OutDir) -> dict:
    stride = args.clip_stride or args.num_images_in_video
    data = load_frames(args.data, args.resize)
    # FrameGroups needs at least a pair; a 1-frame clip is the first frame of a pair.
    groups = FrameGroups(data, group_size=max(args.num_images_in_video, 2))
    train_ids, eval_ids, eval_name = split_groups(groups, args.holdout_run)
    starts = np.flatnonzero(data.frame_index[groups.indices[:, 0]] % stride == 0)
    train_clips, eval_clips = starts[np.isin(starts, train_ids)], starts[np.isin(starts, eval_ids)]
    if len(train_clips) == 0 or len(eval_clips) == 0:
        raise fail(
            f"--data: no clips of {args.num_images_in_video} consecutive frames to train and evaluate on "
            f"in {args.data}"
        )

    def clips_of(ids: np.ndarray) -> np.ndarray:
        return groups.frames(ids)[:, : args.num_images_in_video]

    batch_size = fit_batch_size(args.batch_size, len(train_clips), "training clips")
    eval_batch = fit_batch_size(args.batch_size, len(eval_clips), "held-out clips")
    steps_per_epoch = len(train_clips) // batch_size
    total_steps = args.epochs * steps_per_epoch
    optimizer = make_optimizer(args.lr, total_steps)
    model = build(lambda: VideoTokenizer(cfg, rngs=nnx.Rngs(args.seed)))
    graphdef, state = new_train_state(model, optimizer, usage=jnp.zeros(cfg.vocab_size, jnp.int32))
    print(
        f"video tokenizer: clips of {cfg.num_frames} frames -> tokens {cfg.token_shape}, "
        f"{cfg.vocab_size} codes "
        f"({cfg.frame.quantizer.kind}), {count_params(state):,} params, "
        f"{len(train_clips)} training clips, eval on {eval_name}"
    )

    train_step = make_train_step(graphdef, optimizer, video_tokenizer_loss)
    restart_step = make_restart_step(graphdef)

    @jax.jit
    def reconstruct(state, clips):
        recon, _, _ = nnx.merge(graphdef, state["trainable"], state["frozen"])(frames_to_float(clips), None)
        return recon

    def eval_mse() -> float:
        """Held-out MSE over every frame of the held-out clips (the last batch is dropped for one compile)."""
        errors = []
        for start in range(0, len(eval_clips) - eval_batch + 1, eval_batch):
            clips = clips_of(eval_clips[start : start + eval_batch])
            recon = np.asarray(reconstruct(state, shard_batch(clips)))
            errors.append(np.mean((recon - clips.astype(np.float32) / 255.0) ** 2))
        return float(np.mean(errors))

    train_key, restart_key = jax.random.split(jax.random.key(args.seed))
    last_restart_step = int(args.restart_until * total_steps)
    summary = {}
    path = out.local / VIDEO_TOKENIZER_FILE

    def save(steps_done: int):
        params = nnx.to_pure_dict(state["trainable"])
        save_checkpoint(path, kind="video_tokenizer", config=cfg, params=params, step=steps_done)

    guard = NonFiniteGuard()
    with MetricsLog(out.local, CURVES) as log, StopRequest() as stop:
        log.start("video_tokenizer")
        for epoch in range(args.epochs):
            rng = np.random.default_rng([args.seed, epoch])
            order = rng.permutation(train_clips)
            epoch_counts = jnp.zeros(cfg.vocab_size, jnp.int32)
            sums, restarted, started = (
                {"loss": 0.0, "recon_mse": 0.0, "perplexity": 0.0},
                0,
                time.perf_counter(),
            )
            for i in tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False):
                step = epoch * steps_per_epoch + i
                clips = shard_batch(clips_of(order[i * batch_size : (i + 1) * batch_size]))
                state, metrics = train_step(state, clips, jax.random.fold_in(train_key, step))
                guard.update(metrics["finite"], step)
                counts = metrics.pop("code_counts")
                state["usage"] = state["usage"] + counts
                epoch_counts = epoch_counts + counts
                sums = {k: sums[k] + metrics[k] for k in sums}
                if args.restart_every and (step + 1) % args.restart_every == 0 and step < last_restart_step:
                    state, num = restart_step(state, clips, jax.random.fold_in(restart_key, step))
                    restarted += int(num)
                if stop.requested:
                    guard.check("video tokenizer", path)
                    save(step + 1)
                    raise fail(f"interrupted in epoch {epoch + 1} after step {i + 1}: saved {path}")
            guard.check("video tokenizer", path)
            used = int(jnp.sum(epoch_counts > 0))
            summary = {
                "stage": "video_tokenizer",
                "epoch": epoch + 1,
                **{f"train_{k}": float(v) / steps_per_epoch for k, v in sums.items()},
                "eval_recon_mse": eval_mse(),
                "code_use": used / cfg.vocab_size,
                "codes_restarted": restarted,
                "clips_per_s": steps_per_epoch * batch_size / (time.perf_counter() - started),
            }
            save((epoch + 1) * steps_per_epoch)
            log.write(summary)
            out.push()
            tqdm.write(
                f"epoch {epoch + 1}/{args.epochs}  recon mse {summary['train_recon_mse']:.4f} "
                f"(eval {summary['eval_recon_mse']:.4f})"
                f"  codebook use {used}/{cfg.vocab_size}  restarted {restarted}  "
                f"{summary['clips_per_s']:.1f} clips/s"
            )

    shown = clips_of(eval_clips[:eval_batch])
    recon = np.asarray(reconstruct(state, shard_batch(shown)))[0]
    save_recon_grid(out.local / "recon_grid.png", shown[0], recon)
    print(
        f"outputs in {args.out_dir}: {VIDEO_TOKENIZER_FILE}, metrics.jsonl, training_curves.png, "
        "recon_grid.png"
    )
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
