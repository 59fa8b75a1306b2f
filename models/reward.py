"""Progress reward models trained from frame order alone (Bradley-Terry).

For two frames of one run, a later and an earlier, the model should score the later one
higher: P(later beats earlier) = sigmoid(s_later - s_earlier). Two backbones:
- "resnet34": a ResNet-34 trained end to end on pixels;
- "vq": the frozen VQ encoder from Phase 1 and a small MLP head on its 9x10 token
  embeddings. Only the head trains (`trainable_filter`), so the visual vocabulary stays the
  one the policy sees.

Like the policies, the model splits its work into `observe(frames)`, the part that never
trains, and `score_observations`. For "vq" an observation is the frame's token ids, so
training encodes every frame once and its epochs run only the head.

With `seen_tokens` the "vq" head also reads the episode's bag of seen tokens: a (vocab,) 0/1
vector of every codebook entry shown since the episode began. One frame cannot tell the town
before a talk from the town after it; the bag can, because the talk's text box showed tokens
the town never does (bench/history_reward.py). Whoever calls the model keeps the bags.

A head that reads the bag through a linear layer pays for wandering: each new token adds its
weight, and every room has tokens the runs show late (bench/wander_reward.py). With `events` k > 0
the head reads k event features of the bag instead, each a noisy OR over the seen tokens,
1 - exp(-sum_{v in bag} softplus(l_v)): bounded in [0, 1], so a bag can switch on at most k things,
however much of a room the episode has shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.build import abstract
from models.checkpoint import config_from_dict, load_checkpoint, restore_params
from models.resnet import ResNet34, ResNetConfig
from models.vqvae import VQEncoder, VQVAEConfig

BACKBONES = ("resnet34", "vq")


@dataclass(frozen=True)
class RewardConfig:
    backbone: str = "resnet34"
    """"resnet34" (pixels, trained end to end) or "vq" (frozen VQ encoder + MLP head)."""
    resnet: ResNetConfig = field(default_factory=ResNetConfig)
    """ResNet sizes, used when backbone is "resnet34"."""
    tokenizer: VQVAEConfig = field(default_factory=VQVAEConfig)
    """The VQ encoder's config, used when backbone is "vq" (taken from the tokenizer checkpoint)."""
    head_reduce_dim: int = 16
    """VQ head: each token embedding is first projected to this width."""
    head_hidden: int = 256
    """VQ head: hidden width of the MLP over the flattened grid."""
    seen_tokens: bool = False
    """VQ head: also read the bag of tokens seen so far in the episode (vocab_size 0/1 inputs)."""
    events: int = 0
    """With seen_tokens: read the bag through this many learned event features (0: the bag itself)."""

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"reward backbone {self.backbone!r} is not one of {BACKBONES}")
        if self.seen_tokens and self.backbone != "vq":
            raise ValueError("seen_tokens needs the vq backbone: a bag of seen tokens needs a tokenizer")
        if self.events < 0 or (self.events and not self.seen_tokens):
            raise ValueError(f"events ({self.events}) must be >= 0, and > 0 only with seen_tokens")

    @property
    def bag_size(self) -> int:
        """Width of the seen-token bag the model reads (0: it reads one frame)."""
        return self.tokenizer.vocab_size if self.seen_tokens else 0


def bradley_terry_loss(s_earlier: jax.Array, s_later: jax.Array) -> jax.Array:
    """Mean of -log sigmoid(s_later - s_earlier) = softplus(s_earlier - s_later)."""
    return jnp.mean(jax.nn.softplus(s_earlier - s_later))


def pairwise_accuracy(s_earlier: jax.Array, s_later: jax.Array) -> jax.Array:
    """Fraction of pairs whose later frame scores strictly higher."""
    return jnp.mean(s_later > s_earlier)


class VQRewardHead(nnx.Module):
    """Token embeddings (B, rows, cols, D) and a bag (B, bag_size) -> score (B,). Flattening keeps
    where things are on screen; the bag (bag_size 0: none), or its `events` event features, joins
    the flattened grid."""

    def __init__(
        self,
        feature_dim: int,
        grid: tuple[int, int],
        reduce_dim: int,
        hidden: int,
        bag_size: int,
        rngs: nnx.Rngs,
        events: int = 0,
    ):
        self.reduce = nnx.Linear(feature_dim, reduce_dim, rngs=rngs)
        if events:
            # (bag_size, events) logits. Starting near softplus(-6) ~ 0.0025 per token, a bag of a
            # hundred tokens leaves each feature near 0.2, off but with a gradient to every token.
            self.event_logits = nnx.Param(jax.random.normal(rngs.params(), (bag_size, events)) - 6.0)
        self.events = events
        self.hidden = nnx.Linear(grid[0] * grid[1] * reduce_dim + (events or bag_size), hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def event_features(self, bags: jax.Array) -> jax.Array:
        """(B, bag_size) 0/1 -> (B, events) in [0, 1]: per event, a noisy OR over the seen tokens."""
        return 1.0 - jnp.exp(-bags.astype(jnp.float32) @ jax.nn.softplus(self.event_logits[...]))

    def __call__(self, features: jax.Array, bags: jax.Array) -> jax.Array:
        x = nnx.gelu(self.reduce(features.astype(jnp.float32)))
        memory = self.event_features(bags) if self.events else bags.astype(jnp.float32)
        x = jnp.concatenate([x.reshape(x.shape[0], -1), memory], axis=1)
        return self.out(nnx.gelu(self.hidden(x)))[:, 0]


class RewardModel(nnx.Module):
    """frames (B, 144, 160, 3) uint8 -> progress scores (B,) float32, with either backbone."""

    def __init__(self, cfg: RewardConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        if cfg.backbone == "resnet34":
            self.resnet = ResNet34(cfg.resnet, rngs=rngs)
        else:
            tok = cfg.tokenizer
            self.encoder = VQEncoder(tok, rngs=rngs)
            self.head = VQRewardHead(
                tok.embed_dim, tok.grid, cfg.head_reduce_dim, cfg.head_hidden, cfg.bag_size, rngs, cfg.events
            )

    def trainable_filter(self):
        """Which params the optimizer updates: all for ResNet, only the head for "vq"."""
        if self.cfg.backbone == "resnet34":
            return nnx.Param
        return nnx.All(nnx.Param, nnx.PathContains("head"))

    def observe(self, frames: jax.Array) -> jax.Array:
        """uint8 frames (B, 144, 160, 3) -> what `score_observations` reads: the frames for
        "resnet34", the frozen encoder's token ids (B, 9, 10) int32 for "vq"."""
        if self.cfg.backbone == "resnet34":
            return frames
        _, indices, _ = self.encoder.encode(frames, None)
        return indices

    def score_observations(self, observations: jax.Array, bags: jax.Array | None = None) -> jax.Array:
        """Scores (B,) of `observe`'s output; `bags` (B, bag_size) 0/1 when cfg.seen_tokens, else None."""
        if (bags is not None) != self.cfg.seen_tokens:
            raise ValueError(
                "this reward model reads a bag of seen tokens"
                if self.cfg.seen_tokens
                else "this reward model reads one frame: it takes no bag of seen tokens"
            )
        if self.cfg.backbone == "resnet34":
            return self.resnet(observations).astype(jnp.float32)
        if bags is None:
            bags = jnp.zeros((observations.shape[0], 0), jnp.float32)
        return self.head(jax.lax.stop_gradient(self.encoder.embed_indices(observations)), bags)

    def __call__(self, frames: jax.Array, bags: jax.Array | None = None) -> jax.Array:
        return self.score_observations(self.observe(frames), bags)

    def score(self, frames: jax.Array, bags: jax.Array | None = None) -> jax.Array:
        """Progress score per frame; higher means further into the game. With cfg.seen_tokens,
        `bags` (B, vocab) must already include the frames' own tokens."""
        return self(frames, bags)


def mark_seen(bags: np.ndarray, tokens: np.ndarray) -> None:
    """Adds each row's token ids to its bag, in place: bags (B, vocab) uint8, tokens (B, 9, 10)."""
    bags[np.arange(len(bags))[:, None], tokens.reshape(len(bags), -1)] = 1


def reward_loss(model: RewardModel, earlier, later):
    """Bradley-Terry loss on a batch of (earlier, later) pairs of observations: `model.observe` of
    the frames, or (observations, bags) tuples when the model reads seen-token bags. Returns
    (loss, metrics)."""
    score = (
        (lambda pair: model.score_observations(*pair)) if model.cfg.seen_tokens else model.score_observations
    )
    s_earlier, s_later = score(earlier), score(later)
    loss = bradley_terry_loss(s_earlier, s_later)
    return loss, {"loss": loss, "pairwise_accuracy": pairwise_accuracy(s_earlier, s_later)}


def reward_config(path) -> RewardConfig:
    """The RewardConfig of a 'reward' checkpoint, without building its model."""
    return config_from_dict(RewardConfig, load_checkpoint(path, "reward")["config"])


def load_reward(path) -> RewardModel:
    """A RewardModel rebuilt from a 'reward' checkpoint (either backbone)."""
    ckpt = load_checkpoint(path, "reward")
    cfg = config_from_dict(RewardConfig, ckpt["config"])
    return restore_params(
        abstract(lambda: RewardModel(cfg, rngs=nnx.Rngs(0))), ckpt["params"], source=str(path)
    )
