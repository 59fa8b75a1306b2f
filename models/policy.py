"""Actor-critic policies for PPO: frames in, action logits and a value out.

VQPolicy (the default): frame -> VQ encoder -> 9x10 codebook tokens -> the dynamics model's
transformer (`TokenTransformer.features`, so it can start from pretrained_dynamics.pkl) ->
mean over the 90 cells -> action logits and value.

- Frozen encoder (default): the tokens are a fixed function of the frame, so the rollout
  computes them once (`observe`) and PPO's epochs train only the trunk and heads on the
  stored tokens (B, 9, 10) instead of re-encoding frames every minibatch. The trunk embeds
  them with its token table: with a frozen codebook that carries the same information as
  the codebook vectors, and it is the embedding the pretrained dynamics trunk was trained on.
- Fine-tuned encoder: the trunk reads the codebook embeddings z_q (B, 9, 10, D_vq) with the
  quantizer's gradient (straight-through for VQ), so PPO's gradient reaches the encoder.

ViTPolicy (legacy): 16x16 patches -> linear embedding -> the same transformer trunk.

Both split their work into `observe(frames)` (no trainable parameters on the path when the
encoder is frozen) and the rest; the trainer stores observations.

Memory (`memory` > 0): a GRU on the pooled trunk features, whose state (B, memory) the heads read,
as the Pokémon Red agents that finish the game use. `step(observation, memory, first)` advances one
env step (the state is zeroed where `first`: an episode's first frame); `unroll` runs the same over
(T, B) sequences for PPO's update, the trunk batched over every step and only the GRU scanned. A
memoryless policy takes the same calls with memory of width 0. `remember` gives the memory after such a
sequence: a burn-in that rebuilds an env's memory with the current weights.

Route progress (`progress_bins` > 0): how far along the speedruns the episode has got (the route's
furthest matched frame as a fraction of its run, training/route.py), a number in [0, 1] per env and
step. Its bin's embedding is added to the pooled features, so the policy can tell a room before an
event from the same room after it, as the Pokémon Red agents' event flags do, from pixels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from flax import nnx

from models.transformer import TokenTransformer, TransformerConfig
from models.vqvae import VQEncoder, VQVAEConfig, frames_to_float


@dataclass(frozen=True)
class PolicyConfig:
    kind: str = "vq"
    """"vq" (VQ encoder + token transformer) or "vit" (patch embedding + the same transformer)."""
    num_actions: int = 8
    """Size of the discrete action set."""
    encoder: VQVAEConfig = field(default_factory=VQVAEConfig)
    """The VQ encoder (kind "vq"); its grid must match the transformer's."""
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    """The trunk: same architecture as the dynamics model."""
    finetune_encoder: bool = False
    """Train the VQ encoder with PPO instead of keeping it frozen."""
    patch_size: int = 16
    """ViT patch side (kind "vit"); 144x160 frames give the 9x10 grid."""
    memory: int = 0
    """Width of the GRU state carried from step to step (0: no memory, the heads read one frame)."""
    progress_bins: int = 0
    """Bins of the route progress the policy reads beside each frame (0: none)."""

    def __post_init__(self):
        if self.progress_bins < 0:
            raise ValueError(f"progress_bins must be >= 0, got {self.progress_bins}")
        if self.kind not in ("vq", "vit"):
            raise ValueError(f'policy kind must be "vq" or "vit", got {self.kind!r}')
        if self.kind == "vq":
            if tuple(self.encoder.grid) != tuple(self.transformer.grid):
                raise ValueError(
                    f"encoder grid {self.encoder.grid} differs from transformer grid {self.transformer.grid}"
                )
            if self.encoder.vocab_size != self.transformer.vocab_size:
                raise ValueError(
                    f"the tokenizer has {self.encoder.vocab_size} codes but the transformer reads "
                    f"{self.transformer.vocab_size}: use a dynamics model trained on this tokenizer"
                )

    @property
    def stores_frames(self) -> bool:
        """Whether `observe` returns frames (B, 144, 160, 3) uint8 rather than tokens (B, 9, 10)."""
        return self.kind == "vit" or self.finetune_encoder


class ActorCriticHeads(nnx.Module):
    """Pooled features (B, D) -> (logits (B, A) float32, value (B,) float32)."""

    def __init__(self, width: int, num_actions: int, rngs: nnx.Rngs):
        # Small actor init so the first policy is near uniform (cleanrl uses std 0.01).
        self.actor = nnx.Linear(width, num_actions, kernel_init=nnx.initializers.orthogonal(0.01), rngs=rngs)
        self.critic = nnx.Linear(width, 1, kernel_init=nnx.initializers.orthogonal(1.0), rngs=rngs)

    def __call__(self, pooled):
        pooled = pooled.astype(jnp.float32)
        return self.actor(pooled), self.critic(pooled)[:, 0]


class ActorCritic(nnx.Module):
    """What both policies share: pooled features (B, D) of an observation -> optional GRU -> heads."""

    def _core_and_heads(self, cfg: PolicyConfig, rngs: nnx.Rngs):
        width = cfg.transformer.embed_dim
        self.progress_embed = nnx.Embed(cfg.progress_bins, width, rngs=rngs) if cfg.progress_bins else None
        self.core = nnx.GRUCell(width, cfg.memory, rngs=rngs) if cfg.memory else None
        self.heads = ActorCriticHeads(cfg.memory or width, cfg.num_actions, rngs)

    def __call__(self, observation, progress=None):
        """(logits (B, A), value (B,)) of an episode's first frame (an empty memory)."""
        batch = observation.shape[0]
        logits, value, _ = self.step(observation, self.initial_memory(batch), jnp.ones(batch, bool), progress)
        return logits, value

    def initial_memory(self, batch: int) -> jax.Array:
        return jnp.zeros((batch, self.cfg.memory), jnp.float32)

    def _remember(self, memory, features, first):
        memory = jnp.where(first[:, None], 0.0, memory)
        if self.core is None:
            return memory, features
        memory, _ = self.core(memory, features.astype(jnp.float32))
        return memory, memory

    def _with_progress(self, features, progress):
        """features (B, D) plus the embedding of route progress (B,) in [0, 1], when the policy reads it."""
        if self.progress_embed is None:
            return features
        if progress is None:
            raise ValueError("this policy reads route progress: pass progress (B,) in [0, 1]")
        bins = self.cfg.progress_bins
        index = jnp.clip(jnp.floor(progress * bins).astype(jnp.int32), 0, bins - 1)
        return features + self.progress_embed(index).astype(features.dtype)

    def step(self, observation, memory, first, progress=None):
        """One env step: observation (B, ...), memory (B, M), first (B,) bool, route progress (B,) or
        None -> (logits (B, A), value (B,), memory after this frame (B, M))."""
        features = self._with_progress(self.features(observation), progress)
        memory, features = self._remember(memory, features, first)
        return *self.heads(features), memory

    def unroll(self, observations, memory, firsts, progress=None):
        """observations (T, B, ...), memory (B, M) before the first step, firsts (T, B), route progress
        (T, B) or None -> (logits (T, B, A), values (T, B)), as `step` T times."""
        steps, batch = firsts.shape
        _, features = self._scan(observations, memory, firsts, progress)
        logits, values = self.heads(features.reshape(steps * batch, -1))
        return logits.reshape(steps, batch, -1), values.reshape(steps, batch)

    def remember(self, observations, memory, firsts, progress=None):
        """The memory (B, M) after the same T steps as `unroll`: a burn-in over frames already seen."""
        memory, _ = self._scan(observations, memory, firsts, progress)
        return memory

    def _scan(self, observations, memory, firsts, progress):
        """(memory after the last step (B, M), what the heads read at each step (T, B, D or M))."""
        steps, batch = firsts.shape
        features = self.features(observations.reshape(steps * batch, *observations.shape[2:]))
        if progress is not None:
            progress = progress.reshape(steps * batch)
        features = self._with_progress(features, progress).reshape(steps, batch, -1)

        def one(memory, inputs):
            return self._remember(memory, *inputs)

        return jax.lax.scan(one, memory, (features, firsts))


class VQPolicy(ActorCritic):
    def __init__(self, cfg: PolicyConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.vq = VQEncoder(cfg.encoder, rngs=rngs)
        # A fine-tuned encoder feeds codebook vectors; project them when widths differ.
        vq_dim, width = cfg.encoder.embed_dim, cfg.transformer.embed_dim
        input_dim = vq_dim if cfg.finetune_encoder and vq_dim != width else None
        self.trunk = TokenTransformer(dataclasses.replace(cfg.transformer, input_dim=input_dim), rngs=rngs)
        self._core_and_heads(cfg, rngs)

    def observe(self, frames: jax.Array) -> jax.Array:
        """uint8 frames (B, 144, 160, 3) -> what `__call__` reads: tokens (B, 9, 10) int32 when
        the encoder is frozen, else the frames themselves."""
        if self.cfg.finetune_encoder:
            return frames
        _, indices, _ = self.vq.encode(frames)
        return indices

    def features(self, observation: jax.Array) -> jax.Array:
        """(B, D): the trunk's features averaged over its tokens."""
        if self.cfg.finetune_encoder:
            trunk_input, _, _ = self.vq.encode(observation)  # z_q (B, 9, 10, D_vq), straight-through
        else:
            trunk_input = observation  # token ids (B, 9, 10)
        return self.trunk.features(trunk_input).mean(axis=1)


class ViTPolicy(ActorCritic):
    """The legacy policy: non-overlapping patches -> linear embedding -> transformer trunk."""

    def __init__(self, cfg: PolicyConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        width, p = cfg.transformer.embed_dim, cfg.patch_size
        # Patchify by reshape + matmul: on CPU its gradient is 2.5x faster than a stride-16 conv's.
        self.patch_embed = nnx.Linear(p * p * 3, width, rngs=rngs)
        self.trunk = TokenTransformer(dataclasses.replace(cfg.transformer, input_dim=None), rngs=rngs)
        self._core_and_heads(cfg, rngs)

    def observe(self, frames: jax.Array) -> jax.Array:
        return frames

    def features(self, frames: jax.Array) -> jax.Array:
        p = self.cfg.patch_size
        batch, height, width, _ = frames.shape
        x = frames_to_float(frames) * 2.0 - 1.0
        x = x.reshape(batch, height // p, p, width // p, p, 3).transpose(0, 1, 3, 2, 4, 5)
        patches = self.patch_embed(x.reshape(batch, height // p, width // p, p * p * 3))  # (B, 9, 10, D)
        return self.trunk.features(patches).mean(axis=1)


def make_policy(cfg: PolicyConfig, rngs: nnx.Rngs) -> VQPolicy | ViTPolicy:
    return VQPolicy(cfg, rngs=rngs) if cfg.kind == "vq" else ViTPolicy(cfg, rngs=rngs)


def trainable_filter(cfg: PolicyConfig):
    """nnx filter of the parameters PPO updates (a frozen VQ encoder is left out)."""
    if cfg.kind == "vq" and not cfg.finetune_encoder:
        return nnx.All(nnx.Param, nnx.Not(nnx.PathContains("vq")))
    return nnx.Param
