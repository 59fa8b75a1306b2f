"""Phase 2: a progress reward learned from frame order alone (Bradley-Terry).

Pairs (a, b) come from the same run, b at least --min-gap frames after a, and the model is
trained so that P(b is further along than a) = sigmoid(s_b - s_a). No labels: a speedrun's
frame order is the supervision. Two backbones:
- resnet34: a ResNet-34 on pixels, trained end to end;
- vq: the frozen Phase 1 VQ encoder (--tokenizer) with an MLP head; only the head trains.

    uv run python train_reward.py --backbone resnet34 --data data/speedruns/frames
    uv run python train_reward.py --tokenizer pretrained_tokenizer.pkl      # the vq head

Frame order says nothing about screens the runs never show, such as the tiles of a room off
the route, and there the score is whatever the model extrapolates. --branches adds ranked
noise (as in D-REX): frames of random play branched off the runs (data/make_speedruns.py
--branch-every), each ranked below the run's own frame from the same moment, as
--branch-fraction of every batch.

A frame alone cannot tell a room before an event from the same room after it. With
--seen-tokens (vq only) the head also reads the episode's bag of seen tokens: every codebook
entry shown so far in the run (for a branch frame: the run's bag when the branch left, plus the
branch's frames), as PPO keeps it per env. --events k reads that bag through k learned,
bounded event features, so that showing more of a room cannot keep raising the score.

On the held-out run (--holdout-run, default the last) it reports pairwise accuracy over every
pair at least --min-gap apart, the Spearman rank correlation of score vs frame index, and
with --branches the share of its branches scored below their run frame, and
writes reward_resnet34.pkl or reward_vq.pkl (kind "reward"; the vq one holds the encoder too,
so it runs standalone) to --out-dir (checkpoints/reward) after every epoch and on Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jax
import numpy as np
import tyro
from flax import nnx
from tqdm import tqdm

from data import storage
from data.frames import ConcatenatedFrames, load_branches
from models.build import build
from models.checkpoint import CheckpointError, params_of, restore_params, save_checkpoint
from models.presets import RESNET_SIZES
from models.reward import RewardConfig, RewardModel, reward_loss
from models.sharding import process_rows, shard_local
from models.vqvae import load_encoder
from training.cli import dtype_flag, fail
from training.data import fit_batch_size, load_frames, map_batches
from training.distributed import Distributed, initialize
from training.interrupt import StopRequest
from training.metrics import Curves, MetricsLog, Panel
from training.out_dir import OutDir
from training.paths import REWARD_DIR, TOKENIZER_FILE, find_checkpoint, reward_file
from training.ranking import branch_pairs, mix_in_branches, ranking_metrics, seen_token_bags
from training.steps import (
    NonFiniteGuard,
    count_params,
    is_eval_epoch,
    make_optimizer,
    make_train_step,
    new_train_state,
)

CURVES = {
    "reward": Curves(
        "epoch",
        (
            Panel("loss", ("train_loss",)),
            Panel("held-out ranking", ("eval_pairwise_accuracy", "eval_spearman")),
        ),
    )
}


@dataclass
class Args:
    backbone: Literal["resnet34", "vq"] | None = None
    """resnet34: pixels, trained end to end. vq: frozen Phase 1 encoder + MLP head. Default: vq when
    --tokenizer is given, else resnet34."""
    data: str = "data/speedruns/frames"
    """Frames directory (<data>/<run>/*.png|jpg, one directory per run), or a sharded dataset
    (data/shards.py): a folder or a storage URL such as s3://bucket/speedruns."""
    tokenizer: str | None = None
    """The tokenizer or encoder checkpoint whose frozen encoder the vq head reads: a path, a storage URL,
    or a name found in --out-dir or checkpoints/ (giving it selects the vq backbone; default
    pretrained_tokenizer.pkl)."""
    epochs: int = 20
    """Training epochs; each sees --pairs-per-epoch random pairs."""
    pairs_per_epoch: int | None = None
    """Random (earlier, later) pairs per epoch (default: as many as training frames)."""
    batch_size: int = 32
    """Pairs per step, split over all devices."""
    lr: float = 1e-3
    """Peak learning rate (warmup, then cosine decay to 10%)."""
    min_gap: int = 10
    """Smallest frame distance between the two frames of a pair (training and evaluation)."""
    pair_gaps: Literal["uniform", "log"] = "uniform"
    """How far apart training pairs are. uniform: uniform pairs, mostly far apart (global order).
    log: log-uniform gaps, so pairs a few steps apart, whose order is what PPO's reward deltas
    read, are as common as far ones."""
    branches: Path | None = None
    """Random-play branches off the runs (<branches>/<run>/metadata.json + PNGs, written by
    data/make_speedruns.py --branch-every): each branch frame is ranked below its run's frame
    from the same moment. Default: none, frame order only."""
    branch_fraction: float = 0.25
    """With --branches: the share of every batch that is (branch, run frame) pairs."""
    drift_fraction: float = 0.0
    """With --branches: the share of branch pairs that rank a branch frame below an earlier frame
    of its own trajectory instead of the run's frame (D-REX: the more random play, the lower), so
    that wandering cannot raise a score that reads the episode's seen tokens."""
    holdout_run: str = "-1"
    """Run used only for evaluation (name or index; -1 = last)."""
    out_dir: str = str(REWARD_DIR)
    """Where reward_<backbone>.pkl and metrics.jsonl go: a folder or a storage URL."""
    resize: bool = False
    """Scale frames that are not 160x144 to it (without this flag they are refused)."""
    seed: int = 0
    """Seeds the init and the pair sampling."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Compute dtype: auto is bfloat16 on GPU, float32 on CPU. Weights stay float32."""
    size: Literal["tiny", "small", "seed"] = "seed"
    """ResNet size preset (seed = ResNet-34 at full width)."""
    head_hidden: int = 256
    """vq backbone: hidden width of the MLP head."""
    seen_tokens: bool = False
    """vq backbone: the head also reads the bag of tokens the episode has shown so far (one 0/1
    input per codebook entry), so it can tell a room after an event from the room before it."""
    events: int = 0
    """With --seen-tokens: the head reads the bag through this many learned event features, each
    a noisy OR over the seen tokens, bounded so that wandering cannot keep adding to the score
    (0: the bag itself, one input per codebook entry)."""
    eval_every: int = 1
    """Rank the held-out run (and its branches) every this many epochs, and after the last (with
    the vq head that costs about a third as much as its epoch)."""
    distributed: tyro.conf.OmitArgPrefixes[Distributed] = field(default_factory=Distributed)
    """Several processes training as one (jax.distributed): see training/distributed.py."""


def build_model(args: Args, backbone: str, dtype, out_dir: Path) -> RewardModel:
    if backbone == "resnet34":
        cfg = RewardConfig(
            backbone="resnet34", resnet=dataclasses.replace(RESNET_SIZES[args.size], dtype=dtype.name)
        )
        return build(lambda: RewardModel(cfg, rngs=nnx.Rngs(args.seed)))
    path = find_checkpoint(args.tokenizer or TOKENIZER_FILE, "--tokenizer", out_dir)
    try:
        encoder = load_encoder(path)
    except CheckpointError as err:
        raise fail(f"--tokenizer: {err}") from None
    if encoder.cfg.quantizer.kind == "none":
        raise fail(f"--tokenizer: {path} uses quantizer 'none'; the vq reward needs a quantized tokenizer")
    cfg = RewardConfig(
        backbone="vq",
        tokenizer=dataclasses.replace(encoder.cfg, dtype=dtype.name),
        head_hidden=args.head_hidden,
        seen_tokens=args.seen_tokens,
        events=args.events,
    )
    model = build(lambda: RewardModel(cfg, rngs=nnx.Rngs(args.seed)))
    restore_params(model.encoder, params_of(encoder), source=str(path))
    print(f"vq backbone: frozen encoder from {path}")
    return model


def main(args: Args) -> dict:
    """Trains the reward model; returns the last epoch's metrics (held-out ranking included)."""
    if min(args.epochs, args.batch_size, args.min_gap, args.eval_every) < 1:
        raise fail("--epochs, --batch-size, --min-gap and --eval-every must be at least 1")
    initialize(args.distributed)
    backbone = args.backbone or ("vq" if args.tokenizer is not None else "resnet34")
    if args.seen_tokens and backbone != "vq":
        raise fail("--seen-tokens needs --backbone vq: the bag is made of the tokenizer's tokens")
    if args.events < 0 or (args.events and not args.seen_tokens):
        raise fail(f"--events {args.events}: needs --seen-tokens and must be >= 0 (the bag's event features)")
    if args.tokenizer is not None and backbone != "vq":
        print("note: --tokenizer is read by the vq backbone only; the resnet34 backbone reads pixels")
    if not 0 < args.branch_fraction < 1:
        raise fail(f"--branch-fraction must lie in (0, 1), got {args.branch_fraction}")
    if not 0 <= args.drift_fraction <= 1:
        raise fail(f"--drift-fraction must lie in [0, 1], got {args.drift_fraction}")
    dtype = dtype_flag(args.dtype)
    data = load_frames(args.data, args.resize)
    if data.num_runs < 2:
        raise fail(
            f"--data: {args.data} holds one run; the reward needs a second run to hold out for evaluation"
        )
    try:
        holdout = data.resolve_run(args.holdout_run)
    except ValueError as err:
        raise fail(f"--holdout-run: {err}") from None
    train_idx, eval_idx = data.split_indices(holdout)
    eval_idx = eval_idx[np.argsort(data.frame_index[eval_idx])]
    if len(eval_idx) <= args.min_gap:
        raise fail(
            f"--min-gap {args.min_gap}: held-out run {data.run_names[holdout]} "
            f"has only {len(eval_idx)} frames"
        )
    branches = None
    if args.branches is not None:
        try:
            branches = load_branches(args.branches, data)
        except (OSError, ValueError) as err:
            raise fail(f"--branches: {err}") from None
        train_branches = np.flatnonzero(branches.run_id != holdout)
        eval_branches = np.flatnonzero(branches.run_id == holdout)
        eval_position = np.full(len(data), -1)  # dataset index -> position in eval_idx
        eval_position[eval_idx] = np.arange(len(eval_idx))
        if not len(train_branches):
            raise fail(
                f"--branches: {args.branches} has branches only for the held-out run "
                f"{data.run_names[holdout]}"
            )
        if (args.seen_tokens or args.drift_fraction) and ((branches.start < 0) | (branches.step < 1)).any():
            raise fail(
                f"--branches: {args.branches} does not say where its branches left the runs "
                "(no 'start' or 'step' in metadata.json), which --seen-tokens and --drift-fraction need: "
                "re-make them with data/make_speedruns.py"
            )
    out = OutDir(args.out_dir)

    model = build_model(args, backbone, dtype, out.local)
    pairs_per_epoch = args.pairs_per_epoch or len(train_idx)
    batch_size = fit_batch_size(args.batch_size, pairs_per_epoch, "pairs per epoch")
    steps_per_epoch = pairs_per_epoch // batch_size
    branch_pairs_per_batch = 0 if branches is None else round(args.branch_fraction * batch_size)
    if branches is not None and not 0 < branch_pairs_per_batch < batch_size:
        raise fail(
            f"--branch-fraction {args.branch_fraction} of a batch of {batch_size} pairs leaves "
            f"{branch_pairs_per_batch} branch pairs; it needs at least one of each kind"
        )
    optimizer = make_optimizer(args.lr, args.epochs * steps_per_epoch)
    graphdef, state = new_train_state(model, optimizer, trainable=model.trainable_filter())
    train_step = make_train_step(graphdef, optimizer, lambda model, batch, key: reward_loss(model, *batch))

    @jax.jit
    def observe(state, frames):
        return nnx.merge(graphdef, state["trainable"], state["frozen"]).observe(frames)

    @jax.jit
    def score(state, observations):
        model = nnx.merge(graphdef, state["trainable"], state["frozen"])
        return (
            model.score_observations(*observations)
            if args.seen_tokens
            else model.score_observations(observations)
        )

    # The frozen VQ encoder sees every frame once: its token ids are what the head trains on
    # (with --seen-tokens, with their bags: observations are (tokens, bags) tuples).
    # Branch frames follow the run frames, so branch b is observation len(data) + b.
    frames = data.frames if branches is None else ConcatenatedFrames([data.frames, branches.frames])
    observations = (
        frames
        if backbone == "resnet34"
        else map_batches(lambda frames: observe(state, frames), frames, batch_size)
    )
    if args.seen_tokens:
        observations = (observations, seen_token_bags(observations, data, branches, model.cfg.bag_size))
    take = lambda indices: jax.tree.map(lambda x: x[indices], observations)  # noqa: E731

    out_path = out.local / reward_file(backbone)
    print(
        f"reward ({backbone}): {count_params(state):,} trainable params, "
        f"{len(train_idx)} training frames, held-out run {data.run_names[holdout]} ({len(eval_idx)} frames), "
        f"min gap {args.min_gap}, {jax.device_count()} device(s), {dtype.name}"
    )
    if branches is not None:
        print(
            f"branches: {len(train_branches)} for training, {len(eval_branches)} held out, "
            f"{branch_pairs_per_batch} of every {batch_size} pairs"
        )

    def save(steps_done: int):
        params = params_of(nnx.merge(graphdef, state["trainable"], state["frozen"]))
        save_checkpoint(out_path, kind="reward", config=model.cfg, params=params, step=steps_done)

    base_key = jax.random.key(args.seed)
    guard = NonFiniteGuard()
    summary = {}
    # The log redraws training_curves.png on the way out, interrupted or not.
    with out, MetricsLog(out.local, CURVES) as log, StopRequest() as stop:
        log.start("reward")
        for epoch in range(args.epochs):
            rng = np.random.default_rng([args.seed, epoch])
            earlier, later = data.order_pair_indices(
                (batch_size - branch_pairs_per_batch) * steps_per_epoch,
                rng,
                args.min_gap,
                train_idx,
                args.pair_gaps,
            )
            if branches is not None:
                branch = rng.choice(train_branches, size=(steps_per_epoch, branch_pairs_per_batch))
                low, high = branch_pairs(branch, branches, len(data), rng, args.drift_fraction)
                earlier, later = mix_in_branches(earlier, later, low, high)
            sums, started = {"loss": 0.0, "pairwise_accuracy": 0.0}, time.perf_counter()
            for i in tqdm(
                range(steps_per_epoch), desc=f"reward epoch {epoch + 1}/{args.epochs}", leave=False
            ):
                batch = slice(i * batch_size, (i + 1) * batch_size)
                rows = process_rows(batch_size)  # this process's share of the pairs
                pair = (take(earlier[batch][rows]), take(later[batch][rows]))
                step = epoch * steps_per_epoch + i
                state, metrics = train_step(state, shard_local(pair), jax.random.fold_in(base_key, step))
                guard.update(metrics["finite"], step)
                sums = {k: sums[k] + metrics[k] for k in sums}
                if stop.requested:
                    guard.check("reward", out_path)
                    save(step + 1)
                    raise fail(f"interrupted in epoch {epoch + 1} after step {i + 1}: saved {out_path}")
            guard.check("reward", out_path)
            seconds = time.perf_counter() - started
            summary = {
                "stage": "reward",
                "backbone": backbone,
                "epoch": epoch + 1,
                "train_loss": float(sums["loss"]) / steps_per_epoch,
                "train_pairwise_accuracy": float(sums["pairwise_accuracy"]) / steps_per_epoch,
                "frames_per_s": 2 * steps_per_epoch * batch_size / seconds,
            }
            held_out = ""
            if is_eval_epoch(epoch, args.eval_every, args.epochs):
                scores = map_batches(
                    lambda batch, state=state: score(state, batch), take(eval_idx), batch_size
                )
                ranking = ranking_metrics(scores, data.frame_index[eval_idx], args.min_gap)
                summary.update(
                    eval_pairwise_accuracy=ranking["pairwise_accuracy"],
                    eval_spearman=ranking["spearman"],
                    eval_pairs=ranking["pairs"],
                )
                held_out = (
                    f"  held-out pair acc {ranking['pairwise_accuracy']:.1%}  "
                    f"spearman {ranking['spearman']:.3f}"
                )
                if branches is not None and len(eval_branches):
                    # Held-out branches rank below held-out run frames, which `scores` already holds.
                    branch_scores = map_batches(
                        lambda batch, state=state: score(state, batch),
                        take(len(data) + eval_branches),
                        batch_size,
                    )
                    run_scores = scores[eval_position[branches.below[eval_branches]]]
                    summary["eval_branch_accuracy"] = float((branch_scores < run_scores).mean())
                    held_out += f"  held-out branches below {summary['eval_branch_accuracy']:.1%}"
            save((epoch + 1) * steps_per_epoch)  # before the record is logged
            log.write(summary)
            out.push()
            tqdm.write(
                f"reward epoch {epoch + 1}/{args.epochs}  loss {summary['train_loss']:.4f}"
                f"  train pair acc {summary['train_pairwise_accuracy']:.1%}{held_out}  "
                f"{summary['frames_per_s']:.0f} frames/s"
            )
    print(f"wrote {storage.join(args.out_dir, out_path.name)}")
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
