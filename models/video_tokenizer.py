"""Video tokenizer: a clip of T frames becomes T grids of 9x10 tokens, with a temporal axis.

The per-frame VQ-VAE of models/vqvae.py (same Encoder, quantizer and Decoder) plus causal
temporal mixing on each side of the quantizer: at every grid cell, residual 1-D convs over
time let token t see frames t-k+1..t, so a token can spend its code on what changed rather
than on what the previous frame already showed. Causal, as in Genie's ST-ViViT tokenizer,
so the tokens of a clip's prefix do not depend on frames that come later.

    z_q, tokens, aux = tokenizer.encode(clips, key)   # clips (B, T, 144, 160, 3) -> tokens (B, T, 9, 10)
    recon = tokenizer.decode(z_q)                      # (B, T, 144, 160, 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from flax import nnx

from models.build import abstract
from models.checkpoint import config_from_dict, load_checkpoint, restore_params
from models.quantizers import make_quantizer
from models.vqvae import Decoder, Encoder, VQVAEConfig, frames_to_float


@dataclass(frozen=True)
class VideoTokenizerConfig:
    frame: VQVAEConfig = field(default_factory=VQVAEConfig)
    """The per-frame tokenizer: encoder, quantizer, decoder and frame size."""
    num_frames: int = 4
    """Frames per clip (--num-images-in-video)."""
    temporal_kernel: int = 3
    """Frames each temporal conv looks back over (itself included)."""
    temporal_blocks: int = 1
    """Residual temporal blocks before and after the quantizer."""

    def __post_init__(self):
        if self.num_frames < 1 or self.temporal_kernel < 1:
            raise ValueError(
                f"num_frames {self.num_frames} and temporal_kernel {self.temporal_kernel} must be >= 1"
            )

    @property
    def vocab_size(self) -> int:
        return self.frame.vocab_size

    @property
    def token_shape(self) -> tuple[int, int, int]:
        """(T, rows, cols): (num_frames, 9, 10) for 144x160 frames."""
        return (self.num_frames, *self.frame.grid)


class CausalTemporalBlock(nnx.Module):
    """Residual causal convs over time at each grid cell: (B, T, h, w, D) -> same shape."""

    def __init__(self, dim: int, kernel: int, dtype, rngs: nnx.Rngs):
        # Left padding only: output t sees inputs t-kernel+1 .. t.
        padding = ((kernel - 1, 0),)
        self.conv1 = nnx.Conv(dim, dim, (kernel,), padding=padding, dtype=dtype, rngs=rngs)
        self.conv2 = nnx.Conv(dim, dim, (kernel,), padding=padding, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        b, t, h, w, d = x.shape
        cells = x.transpose(0, 2, 3, 1, 4).reshape(b * h * w, t, d)  # one sequence per grid cell
        mixed = self.conv2(nnx.silu(self.conv1(nnx.silu(cells)))).astype(x.dtype)
        return x + mixed.reshape(b, h, w, t, d).transpose(0, 3, 1, 2, 4)


class VideoTokenizer(nnx.Module):
    """Per-frame encoder -> temporal mixing -> quantizer -> temporal mixing -> per-frame decoder."""

    def __init__(self, cfg: VideoTokenizerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        frame_cfg = cfg.frame
        dtype = jnp.dtype(frame_cfg.dtype)
        self.encoder = Encoder(frame_cfg, rngs)
        self.temporal_in = nnx.List(
            [
                CausalTemporalBlock(frame_cfg.embed_dim, cfg.temporal_kernel, dtype, rngs)
                for _ in range(cfg.temporal_blocks)
            ]
        )
        self.quantizer = make_quantizer(frame_cfg.quantizer, rngs)
        self.temporal_out = nnx.List(
            [
                CausalTemporalBlock(frame_cfg.embed_dim, cfg.temporal_kernel, dtype, rngs)
                for _ in range(cfg.temporal_blocks)
            ]
        )
        self.decoder = Decoder(frame_cfg, rngs)

    def latents(self, clips: jax.Array) -> jax.Array:
        """clips (B, T, H, W, 3) uint8 or [0, 1] float -> continuous latents (B, T, 9, 10, D) float32."""
        expected = (self.cfg.num_frames, *self.cfg.frame.image_hw, 3)
        if clips.shape[1:] != expected:
            raise ValueError(
                f"clips of shape {clips.shape} do not match (B, num_frames, H, W, 3) = (B, *{expected})"
            )
        b, t = clips.shape[:2]
        z = self.encoder(frames_to_float(clips).reshape(b * t, *clips.shape[2:]))
        z = z.reshape(b, t, *z.shape[1:])
        for block in self.temporal_in:
            z = block(z)
        return z.astype(jnp.float32)

    def encode(self, clips: jax.Array, key: jax.Array | None = None):
        """-> (z_q (B, T, 9, 10, D), tokens (B, T, 9, 10) int32, quantizer aux)."""
        return self.quantizer(self.latents(clips), key)

    def decode(self, z_q: jax.Array) -> jax.Array:
        """(B, T, 9, 10, D) -> (B, T, H, W, 3) float32."""
        for block in self.temporal_out:
            z_q = block(z_q)
        b, t = z_q.shape[:2]
        frames = self.decoder(z_q.reshape(b * t, *z_q.shape[2:]))
        return frames.reshape(b, t, *frames.shape[1:])

    def embed_tokens(self, tokens: jax.Array) -> jax.Array:
        """Tokens (B, T, 9, 10) -> their codebook embeddings (B, T, 9, 10, D), ready for decode."""
        return self.quantizer.lookup(tokens)

    def restart_dead_codes(self, usage_counts: jax.Array, clips: jax.Array, key: jax.Array) -> jax.Array:
        """Move codes used fewer than restart_threshold times onto latents of `clips`; returns how many."""
        return self.quantizer.restart_dead_codes(usage_counts, self.latents(clips), key)

    def __call__(self, clips: jax.Array, key: jax.Array | None = None):
        """-> (reconstruction (B, T, H, W, 3), tokens (B, T, 9, 10), aux)."""
        z_q, tokens, aux = self.encode(clips, key)
        return self.decode(z_q), tokens, aux


def video_tokenizer_loss(model: VideoTokenizer, clips: jax.Array, key: jax.Array | None):
    """Reconstruction MSE over every frame of every clip plus the quantizer's loss.

    Returns (loss, metrics); metrics["code_counts"] (vocab,) is the batch's token histogram.
    """
    target = frames_to_float(clips)
    recon, tokens, aux = model(target, key)
    recon_mse = jnp.mean((recon - target) ** 2)
    loss = recon_mse + aux["loss"]
    return loss, {
        "loss": loss,
        "recon_mse": recon_mse,
        "perplexity": aux["perplexity"],
        "code_counts": jnp.bincount(tokens.ravel(), length=model.cfg.vocab_size),
    }


def load_video_tokenizer(path) -> VideoTokenizer:
    """A VideoTokenizer rebuilt from a 'video_tokenizer' checkpoint (its config and weights)."""
    ckpt = load_checkpoint(path, "video_tokenizer")
    cfg = config_from_dict(VideoTokenizerConfig, ckpt["config"])
    return restore_params(
        abstract(lambda: VideoTokenizer(cfg, rngs=nnx.Rngs(0))), ckpt["params"], source=str(path)
    )
