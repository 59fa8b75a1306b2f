"""Offline: would a reward that remembers the episode see milestone 3 (the guide's talk)?

    uv run python pipeline.py        # once: the speedruns, their branches and the tokenizer
    uv run python bench/history_reward.py --speedruns runs/pipeline/speedruns \
        --encoder runs/pipeline/checkpoints/pretrained_encoder.pkl

The main job's reward scores one frame, and the town looks the same before the guide's talk
and after it, so the talk is worth nothing to PPO (BENCHMARKS.md). This bench trains the main
job's reward head (frozen VQ tokens -> MLP; Bradley-Terry on frame order with log-uniform gaps
of at least 10 frames; random-play branches in a quarter of each batch; 200 epochs of 768
pairs; the last run held out) three times per seed: as it is; with a second input, the bag of
seen tokens: a (vocab,) 0/1 vector of every codebook entry the run has shown up to this frame
(for a branch frame, the run's bag when the branch left plus the branch's own frames); and with
that bag read through --events learned event features (train_reward.py --events).

On the held-out run it reports the ranking and the town's scores before the talk (overworld,
milestone 2), during the guide's text and after the talk (milestone 3). PPO credits only gains
over the episode's best score, so the talk pays when its text scores above the town before it.

train_reward.py --seen-tokens trains this head, and PPO keeps each env's bag
(train_with_cnn_reward.py).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from flax import nnx
from tqdm import tqdm

from bench.tables import machine, publish
from data.frames import Branches, FramesDataset, load_branches
from models.build import build
from models.checkpoint import CheckpointError
from models.reward import VQRewardHead, bradley_terry_loss
from models.vqvae import load_encoder
from training.data import map_batches
from training.ranking import branch_pairs, mix_in_branches, ranking_metrics, seen_token_bags
from training.steps import make_optimizer

GUIDE_TALK, TOWN, OVERWORLD, TEXT = 3, 1, 2, 1  # RAM values in metadata.json: talk id, map id, mode


@dataclass
class Args:
    """A reward head with and without a bag of the episode's seen tokens, on the main job's speedruns."""

    speedruns: Path = Path("runs/pipeline/speedruns")
    """make_speedruns.py output: frames/<run>/ and branches/<run>/, each with metadata.json."""
    encoder: Path = Path("runs/pipeline/checkpoints/pretrained_encoder.pkl")
    """The frozen VQ encoder (tokenizer or encoder checkpoint)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Head init and pair sampling seeds."""
    epochs: int = 200
    """Training epochs of each head (the main job's)."""
    pairs_per_epoch: int = 768
    """Frame pairs per epoch (the main job's)."""
    batch_size: int = 32
    """Pairs per step, branch pairs included."""
    branch_pairs: int = 8
    """Branch pairs per batch (the main job: a quarter)."""
    min_gap: int = 10
    """Fewest frames between the two frames of an order pair (train_reward.py's default)."""
    lr: float = 1e-3
    """Peak learning rate (train_reward.py's default)."""
    events: int = 8
    """Event features of the third and fourth heads (train_reward.py --events)."""
    drift_fraction: float = 0.5
    """Drift pairs of the fourth head (train_reward.py --drift-fraction)."""
    output: Path = Path("bench/results/history_reward.md")
    """Where the markdown table goes."""


def run_records(data: FramesDataset, root: Path, run: int) -> tuple[np.ndarray, list[dict]]:
    """The run's dataset indices in frame order, and its frames' records from metadata.json."""
    indices = np.flatnonzero(data.run_id == run)
    records = json.loads((root / "frames" / data.run_names[run] / "metadata.json").read_text())["frames"]
    return indices[np.argsort(data.frame_index[indices])], records


def town_groups(
    data: FramesDataset, branch_run_id: np.ndarray, root: Path, run: int
) -> dict[str, np.ndarray]:
    """Indices (run frames, then branch frames after them) of the run's town frames: before the
    talk, the guide's text, after the talk, and random walking in town from branches that left
    before the talk, up to the first text box or menu (what PPO could do instead of talking)."""
    indices, frames = run_records(data, root, run)
    groups = {"before": [], "text": [], "after": [], "random before": []}
    talk_start = min(
        (r["frame"] for r in frames if r["mode"] == TEXT and r["talk"] == GUIDE_TALK), default=-1
    )
    for i, r in zip(indices, frames):
        if r["map"] != TOWN:
            continue
        if r["milestones"] == 2 and r["mode"] == OVERWORLD:
            groups["before"].append(i)
        elif r["mode"] == TEXT and r["talk"] == GUIDE_TALK:
            groups["text"].append(i)
        elif r["milestones"] == 3 and r["mode"] == OVERWORLD:
            groups["after"].append(i)
    branches = json.loads((root / "branches" / data.run_names[run] / "metadata.json").read_text())["branches"]
    for i, r in zip(len(data) + np.flatnonzero(branch_run_id == run), branches):
        if r["step"] == 1:
            walking = True  # until the branch opens a text box (it may be the guide's) or a menu
        walking = walking and r["mode"] == OVERWORLD
        if walking and r["map"] == TOWN and r["start_frame"] < talk_start:
            groups["random before"].append(i)
    return {k: np.asarray(v, int) for k, v in groups.items()}


def what_bags_record(
    tokens: np.ndarray, data: FramesDataset, groups: dict[str, np.ndarray], holdout: int, vocab_size: int
) -> tuple[int, int]:
    """(codes that every training run shows, codes the held-out guide's text shows that its run had not
    shown before the text): how much of a bag is common to every run, and how much marks the talk."""
    shown_by_all = np.ones(vocab_size, bool)
    for run in range(data.num_runs):
        if run != holdout:
            shown_by_all &= np.isin(np.arange(vocab_size), tokens[data.run_indices(run)])
    run_frames = data.run_indices(holdout)
    text_starts = data.frame_index[groups["text"]].min()
    before = tokens[run_frames[data.frame_index[run_frames] < text_starts]]
    return int(shown_by_all.sum()), len(np.setdiff1d(tokens[groups["text"]], before))


def train_head(
    args: Args,
    seed: int,
    embeddings,
    bags,
    events: int,
    drift_fraction: float,
    data: FramesDataset,
    branches: Branches,
    train_idx: np.ndarray,
    train_branches: np.ndarray,
) -> np.ndarray:
    """Bradley-Terry training as train_reward.py does it; returns every frame's score."""
    steps = args.pairs_per_epoch // args.batch_size
    model = build(
        lambda: VQRewardHead(
            embeddings.shape[-1], embeddings.shape[1:3], 16, 256, bags.shape[1], nnx.Rngs(seed), events
        )
    )
    optimizer = nnx.Optimizer(model, make_optimizer(args.lr, args.epochs * steps), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, earlier, later):
        def loss_of(model):
            return bradley_terry_loss(
                model(embeddings[earlier], bags[earlier]), model(embeddings[later], bags[later])
            )

        loss, grads = nnx.value_and_grad(loss_of)(model)
        optimizer.update(model, grads)
        return loss

    for epoch in range(args.epochs):
        rng = np.random.default_rng([seed, epoch])
        earlier, later = data.order_pair_indices(
            (args.batch_size - args.branch_pairs) * steps, rng, args.min_gap, train_idx, "log"
        )
        branch = rng.choice(train_branches, size=(steps, args.branch_pairs))
        low, high = branch_pairs(branch, branches, len(data), rng, drift_fraction)
        earlier, later = (pairs.reshape(steps, -1) for pairs in mix_in_branches(earlier, later, low, high))
        for step in range(steps):
            train_step(model, optimizer, jnp.asarray(earlier[step]), jnp.asarray(later[step]))
    score = nnx.jit(lambda model, e, b: model(e, b))
    return np.concatenate(
        [
            np.asarray(score(model, embeddings[i : i + 1024], bags[i : i + 1024]))
            for i in range(0, len(bags), 1024)
        ]
    )


def main(args: Args) -> str:
    try:
        data = FramesDataset(args.speedruns / "frames")
        branches = load_branches(args.speedruns / "branches", data)
        encoder = load_encoder(args.encoder)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit(
            f"history_reward.py: {err}\n"
            "(run `uv run python pipeline.py` first, or pass --speedruns and --encoder)"
        ) from None
    tokens = map_batches(
        jax.jit(lambda frames: encoder.encode(frames)[1]), np.concatenate([data.frames, branches.frames]), 64
    )
    embeddings = encoder.embed_indices(jnp.asarray(tokens))  # (N, 9, 10, D), as the reward head sees them
    bags = jnp.asarray(seen_token_bags(tokens, data, branches, encoder.cfg.vocab_size))
    no_bag = jnp.zeros((len(bags), 0), jnp.float32)

    holdout = data.num_runs - 1
    train_idx, eval_idx = np.flatnonzero(data.run_id != holdout), np.flatnonzero(data.run_id == holdout)
    train_branches, eval_branches = (
        np.flatnonzero(branches.run_id != holdout),
        np.flatnonzero(branches.run_id == holdout),
    )
    groups = town_groups(data, branches.run_id, args.speedruns, holdout)
    shown_by_all, new_at_text = what_bags_record(
        tokens[: len(data)], data, groups, holdout, encoder.cfg.vocab_size
    )
    rows = []
    for seed in tqdm(args.seeds, desc="seeds"):
        variants = (
            ("one frame", no_bag, 0, 0.0),
            ("frame + bag of seen tokens", bags, 0, 0.0),
            (f"frame + {args.events} event features of the bag", bags, args.events, 0.0),
            (f"the same, {args.drift_fraction:.0%} drift pairs", bags, args.events, args.drift_fraction),
        )
        for variant, memory, events, drift in variants:
            scores = train_head(
                args, seed, embeddings, memory, events, drift, data, branches, train_idx, train_branches
            )
            ranking = ranking_metrics(scores[eval_idx], data.frame_index[eval_idx], args.min_gap)
            branch_below = np.mean(scores[len(data) + eval_branches] < scores[branches.below[eval_branches]])
            before, text, after, wander = (
                scores[groups[k]] for k in ("before", "text", "after", "random before")
            )
            # scores have no unit: gaps are given as a share of the run's range
            spread = np.ptp(scores[eval_idx])
            rows.append(
                f"| {seed} | {variant} | {ranking['pairwise_accuracy']:.1%} | {ranking['spearman']:.3f} "
                f"| {branch_below:.1%} "
                f"| {(text.mean() - before.max()) / spread:+.3f} | {np.mean(text > before.max()):.0%} "
                f"| {(after.mean() - before.mean()) / spread:+.3f} | {np.mean(wander > text.mean()):.0%} |"
            )
    return publish(
        args.output,
        [
            f"# A reward head with a bag of seen tokens (`bench/history_reward.py`), {datetime.date.today()}",
            "",
            f"{machine()}. Speedruns `{args.speedruns}` ({data.num_runs} runs, "
            f"{len(data)} frames, {len(branches)} branch frames), encoder `{args.encoder}`; held-out run "
            f"{data.run_names[holdout]}: {len(groups['before'])} town frames before the talk, "
            f"{len(groups['text'])} of the guide's text, {len(groups['after'])} after it, "
            f"{len(groups['random before'])} of random play in town "
            f"branching off before the talk. Gaps are in units of the held-out run's score range. "
            f"{shown_by_all} of the {encoder.cfg.vocab_size} codes appear in every training run, and the "
            f"guide's text shows {new_at_text} that its run had not shown before it: a bag fills mostly with "
            f"codes that every run shows sooner or later, and a few mark the talk.",
            "",
            "| seed | reward input | held-out pairwise | Spearman | held-out branches below "
            "| guide's text mean − best town before | text frames above the best town before "
            "| town after − town before (means) "
            "| random play in town before the talk above the text's mean |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ],
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
