"""Quantizers that turn continuous latents into discrete tokens.

Every quantizer is an `nnx.Module` with one calling convention, so the tokenizer,
the policy and the latent-action model can swap them with a config flag:

    z_q, indices, aux = quantizer(z, key)      # z (..., D) -> z_q (..., D), indices int32 (...)

`aux` holds scalars: `aux["loss"]` is the term to add to the training loss, the rest
are statistics for logging. `key` feeds the quantizers that sample noise (NSVQ); pass
None at evaluation time to get hard, deterministic codes.

Kinds:
- "vq":   nearest codebook entry, straight-through gradient, codebook loss plus
          `commitment` x commitment loss (van den Oord et al. 2017).
- "fsq":  finite scalar quantization (Mentzer et al. 2023): project to len(levels)
          channels, bound each, round. No codebook to learn, so no dead codes.
- "nsvq": noise substitution (Vali & Backstrom 2022): z + ||z - q|| v/||v|| with
          v ~ N(0, I), so the output sits exactly the quantization error away from z
          and gradients reach the codebook without a straight-through estimator.
- "none": identity, for ablations. Its indices are all zero.

Codes that no input picks ("dead codes") are what held the seed at 45% codebook use.
VQ and NSVQ can move them onto recent encoder outputs with `restart_dead_codes`, which
the training loop calls every so often with usage counts it accumulates from `indices`,
or, as the NSVQ paper does, copy used codes onto them with `replace_unused_codes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

KINDS = ("vq", "fsq", "nsvq", "none")


@dataclass(frozen=True)
class QuantizerConfig:
    kind: str = "vq"
    """Which quantizer: "vq", "fsq", "nsvq" or "none"."""
    codebook_size: int = 512
    """Number of codes for "vq" and "nsvq" (FSQ's count is prod(levels))."""
    dim: int | None = None
    """Latent width D. None lets the owner (e.g. the VQ-VAE) fill in its embed_dim."""
    levels: tuple[int, ...] = (8, 8, 6, 5)
    """FSQ levels per channel; the FSQ vocabulary is their product."""
    commitment: float = 0.25
    """Weight of the commitment loss ||z - sg(q)||^2 in VQ."""
    restart_threshold: float = 1.0
    """A code used fewer times than this since the last restart counts as dead."""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"quantizer kind {self.kind!r} is not one of {KINDS}")
        if self.kind == "fsq" and (not self.levels or min(self.levels) < 2):
            raise ValueError(f"FSQ levels {self.levels} must all be >= 2")

    @property
    def vocab_size(self) -> int:
        """How many distinct token ids the quantizer can emit."""
        if self.kind == "fsq":
            return math.prod(self.levels)
        if self.kind == "none":
            return 1
        return self.codebook_size


def code_statistics(indices: jax.Array, vocab_size: int) -> dict[str, jax.Array]:
    """Perplexity of the code histogram in this batch and the fraction of codes it uses."""
    counts = jnp.bincount(indices.ravel(), length=vocab_size)
    probs = counts / jnp.maximum(counts.sum(), 1)
    entropy = -jnp.sum(probs * jnp.log(jnp.maximum(probs, 1e-12)))  # unused codes add 0
    return {"perplexity": jnp.exp(entropy), "batch_code_use": jnp.mean(counts > 0)}


def nearest_codes(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """Index of the nearest codebook row (squared L2) for each row of z. z (N, D), codebook (K, D)."""
    distances = (
        jnp.sum(z**2, axis=-1, keepdims=True) - 2.0 * z @ codebook.T + jnp.sum(codebook**2, axis=-1)[None, :]
    )
    return jnp.argmin(distances, axis=-1).astype(jnp.int32)


def revive_codes(
    codebook: jax.Array, usage_counts: jax.Array, z_samples: jax.Array, key: jax.Array, threshold: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """Move every code used fewer than `threshold` times onto a randomly chosen encoder output.

    Pure, so it can be jitted. codebook (K, D), usage_counts (K,), z_samples (N, D).
    Returns (new codebook, number of codes moved).
    """
    num_codes, num_samples = codebook.shape[0], z_samples.shape[0]
    if num_samples >= num_codes:
        # Distinct samples, so two revived codes never land on the same point.
        picks = jax.random.permutation(key, num_samples)[:num_codes]
    else:
        picks = jax.random.randint(key, (num_codes,), 0, num_samples)
    dead = usage_counts < threshold
    new_codebook = jnp.where(dead[:, None], z_samples[picks].astype(codebook.dtype), codebook)
    return new_codebook, jnp.sum(dead)


def replace_unused_codes(
    codebook: jax.Array,
    usage_counts: jax.Array,
    key: jax.Array,
    min_fraction: float,
    noise_scale: float = 0.01,
) -> tuple[jax.Array, jax.Array]:
    """NSVQ-style replacement: every code picked by fewer than `min_fraction` of the inputs
    counted in `usage_counts` becomes a copy of a used code (drawn in proportion to its use)
    plus a little noise, so it splits that code's cluster instead of waiting where no input goes.

    Pure, so it can be jitted. codebook (K, D), usage_counts (K,) summed over a window of batches.
    Returns (new codebook, number of codes replaced).
    """
    total = jnp.maximum(usage_counts.sum(), 1)
    unused = usage_counts < min_fraction * total
    pick_key, noise_key = jax.random.split(key)
    weights = jnp.where(unused, 0.0, usage_counts.astype(jnp.float32))
    # If every code is "unused" (an empty window), there is nothing to copy: keep the codebook.
    any_used = weights.sum() > 0
    sources = jax.random.categorical(pick_key, jnp.log(jnp.where(any_used, weights, 1.0)), shape=unused.shape)
    scale = noise_scale * (jnp.std(codebook) + 1e-6)
    replacement = codebook[sources] + scale * jax.random.normal(noise_key, codebook.shape, codebook.dtype)
    replace = unused & any_used
    return jnp.where(replace[:, None], replacement, codebook), jnp.sum(replace)


class VectorQuantizer(nnx.Module):
    """VQ with a straight-through estimator, codebook + commitment losses and dead-code restarts."""

    def __init__(self, cfg: QuantizerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.codebook_size = cfg.codebook_size
        # Small uniform init as in the VQ-VAE paper; the first restart spreads codes over the data.
        init = nnx.initializers.uniform(scale=2.0 / cfg.codebook_size)
        self.codebook = nnx.Param(init(rngs.params(), (cfg.codebook_size, cfg.dim)) - 1.0 / cfg.codebook_size)

    def lookup(self, indices: jax.Array) -> jax.Array:
        return self.codebook[...][indices]

    def __call__(self, z: jax.Array, key: jax.Array | None = None):
        z = z.astype(jnp.float32)
        indices = nearest_codes(z.reshape(-1, z.shape[-1]), self.codebook[...]).reshape(z.shape[:-1])
        q = self.lookup(indices)
        codebook_loss = jnp.mean((jax.lax.stop_gradient(z) - q) ** 2)
        commitment_loss = jnp.mean((z - jax.lax.stop_gradient(q)) ** 2)
        # Forward value q, gradient w.r.t. z is the identity.
        z_q = z + jax.lax.stop_gradient(q - z)
        aux = {
            "loss": codebook_loss + self.cfg.commitment * commitment_loss,
            "codebook_loss": codebook_loss,
            "commitment_loss": commitment_loss,
            **code_statistics(indices, self.codebook_size),
        }
        return z_q, indices, aux

    def restart_dead_codes(self, usage_counts: jax.Array, z_samples: jax.Array, key: jax.Array) -> jax.Array:
        """Replace codes with usage below cfg.restart_threshold by rows of z_samples (N, D); returns how
        many."""
        new_codebook, num_dead = revive_codes(
            self.codebook[...],
            usage_counts,
            z_samples.reshape(-1, self.cfg.dim),
            key,
            self.cfg.restart_threshold,
        )
        self.codebook[...] = new_codebook
        return num_dead

    def replace_unused_codes(self, usage_counts: jax.Array, key: jax.Array, min_fraction: float) -> jax.Array:
        """Copy used codes (plus noise) onto codes picked by fewer than `min_fraction` of the
        inputs counted in usage_counts (K,); returns how many were replaced."""
        new_codebook, num_replaced = replace_unused_codes(self.codebook[...], usage_counts, key, min_fraction)
        self.codebook[...] = new_codebook
        return num_replaced


class NoiseSubstitutionVQ(VectorQuantizer):
    """NSVQ: replaces q by z + ||z - q|| v/||v|| in training, so the codebook learns through the norm."""

    def __call__(self, z: jax.Array, key: jax.Array | None = None):
        z = z.astype(jnp.float32)
        indices = nearest_codes(z.reshape(-1, z.shape[-1]), self.codebook[...]).reshape(z.shape[:-1])
        q = self.lookup(indices)
        error = jnp.linalg.norm(z - q, axis=-1, keepdims=True)
        if key is None:
            z_q = q  # evaluation: the hard code
        else:
            noise = jax.random.normal(key, z.shape, z.dtype)
            noise_norm = jnp.linalg.norm(noise, axis=-1, keepdims=True)
            z_q = z + error * noise / jnp.maximum(noise_norm, 1e-12)
        aux = {
            "loss": jnp.zeros((), jnp.float32),
            "quantization_error": jnp.mean(error),
            **code_statistics(indices, self.codebook_size),
        }
        return z_q, indices, aux


class FiniteScalarQuantizer(nnx.Module):
    """FSQ: each of len(levels) projected channels is bounded and rounded to one of its levels."""

    def __init__(self, cfg: QuantizerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.levels = tuple(cfg.levels)
        self.codebook_size = cfg.vocab_size
        self.project_in = nnx.Linear(cfg.dim, len(cfg.levels), rngs=rngs)
        self.project_out = nnx.Linear(len(cfg.levels), cfg.dim, rngs=rngs)

    def _level_constants(self):
        levels = jnp.asarray(self.levels, jnp.float32)
        half_width = jnp.floor(levels / 2)  # integer codes run over [-half_width, levels - 1 - half_width]
        # Mixed-radix place values: index = sum_i digit_i * prod(levels[:i]).
        radix = jnp.asarray([math.prod(self.levels[:i]) for i in range(len(self.levels))], jnp.int32)
        return levels, half_width, radix

    def quantize_codes(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        """h (..., len(levels)) -> (normalized codes in [-1, 1] with straight-through rounding, indices)."""
        levels, half_width, radix = self._level_constants()
        # Bound so that rounding yields exactly `levels` values; even levels need a half-step offset.
        # No input shift: h = 0 sits mid-range, so the level boundaries are symmetric around 0. (The
        # shift arctanh(offset / half_range) would put h = 0 on a code instead, but for 2 levels it is
        # 3.8: flipping a channel then needs h < -3.8, where tanh's gradient is ~1e-3, so it never flips.)
        eps = 1e-3
        half_range = (levels - 1) * (1 + eps) / 2
        offset = jnp.where(levels % 2 == 0, 0.5, 0.0)
        bounded = jnp.tanh(h) * half_range - offset
        rounded = bounded + jax.lax.stop_gradient(jnp.round(bounded) - bounded)
        codes = rounded / half_width
        return codes, self.codes_to_indices(jax.lax.stop_gradient(codes))

    def codes_to_indices(self, codes: jax.Array) -> jax.Array:
        """Normalized codes (..., len(levels)) -> indices (...) in [0, prod(levels))."""
        _, half_width, radix = self._level_constants()
        digits = jnp.round(codes * half_width + half_width).astype(jnp.int32)
        return jnp.sum(digits * radix, axis=-1).astype(jnp.int32)

    def indices_to_codes(self, indices: jax.Array) -> jax.Array:
        """indices (...) -> normalized codes (..., len(levels))."""
        levels, half_width, radix = self._level_constants()
        digits = (indices[..., None] // radix) % levels.astype(jnp.int32)
        return (digits - half_width) / half_width

    def lookup(self, indices: jax.Array) -> jax.Array:
        return self.project_out(self.indices_to_codes(indices))

    def __call__(self, z: jax.Array, key: jax.Array | None = None):
        codes, indices = self.quantize_codes(self.project_in(z.astype(jnp.float32)))
        aux = {"loss": jnp.zeros((), jnp.float32), **code_statistics(indices, self.codebook_size)}
        return self.project_out(codes), indices, aux

    def restart_dead_codes(self, usage_counts: jax.Array, z_samples: jax.Array, key: jax.Array) -> jax.Array:
        """FSQ has no learned codebook, so there is nothing to restart."""
        return jnp.zeros((), jnp.int32)

    def replace_unused_codes(self, usage_counts: jax.Array, key: jax.Array, min_fraction: float) -> jax.Array:
        return jnp.zeros((), jnp.int32)


class IdentityQuantizer(nnx.Module):
    """No quantization: z passes through, with zero loss and all-zero indices."""

    def __init__(self, cfg: QuantizerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.codebook_size = 1

    def lookup(self, indices: jax.Array) -> jax.Array:
        raise ValueError(
            "quantizer kind 'none' has no codebook to look tokens up in; use 'vq', 'fsq' or 'nsvq'"
        )

    def __call__(self, z: jax.Array, key: jax.Array | None = None):
        z = z.astype(jnp.float32)
        indices = jnp.zeros(z.shape[:-1], jnp.int32)
        aux = {"loss": jnp.zeros((), jnp.float32), "perplexity": jnp.ones(()), "batch_code_use": jnp.ones(())}
        return z, indices, aux

    def restart_dead_codes(self, usage_counts: jax.Array, z_samples: jax.Array, key: jax.Array) -> jax.Array:
        return jnp.zeros((), jnp.int32)

    def replace_unused_codes(self, usage_counts: jax.Array, key: jax.Array, min_fraction: float) -> jax.Array:
        return jnp.zeros((), jnp.int32)


def make_quantizer(cfg: QuantizerConfig, rngs: nnx.Rngs) -> nnx.Module:
    if cfg.dim is None:
        raise ValueError(
            "QuantizerConfig.dim is None: set it to the latent width before building the quantizer"
        )
    quantizer_class = {
        "vq": VectorQuantizer,
        "nsvq": NoiseSubstitutionVQ,
        "fsq": FiniteScalarQuantizer,
        "none": IdentityQuantizer,
    }[cfg.kind]
    return quantizer_class(cfg, rngs=rngs)
