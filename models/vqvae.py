"""VQ-VAE tokenizer: a 144x160 frame becomes a 9x10 grid of tokens and back.

The encoder halves the resolution once per entry of `encoder_channels` (four stages: 16x),
the quantizer (models/quantizers.py) discretizes each of the 9x10 latents, and the decoder
doubles the resolution with sub-pixel convs: a conv at the low resolution emits 4x the
channels, which `depth_to_space` rearranges into 2x2 pixels. No conv runs at 144x160, so a
tokenizer step costs half what nearest-neighbour repeats + convs did on CPU (those spent most
of it on 8-channel full-resolution maps), and there are no checkerboard artifacts.

`VQEncoder` is the encoder plus quantizer alone (pretrained_encoder.pkl, the policy, the VQ
reward head). `VQVAE` adds the decoder. Both use the same parameter paths ("encoder",
"quantizer"), so a tokenizer's params restore into a VQEncoder by dropping "decoder".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from flax import nnx

from models.build import abstract
from models.checkpoint import CheckpointError, config_from_dict, load_checkpoint, restore_params
from models.quantizers import QuantizerConfig, make_quantizer


@dataclass(frozen=True)
class VQVAEConfig:
    embed_dim: int = 192
    """Width of each latent token (and of each codebook entry)."""
    encoder_channels: tuple[int, ...] = (32, 64, 128, 192)
    """Conv widths, one stride-2 stage each; the decoder mirrors them."""
    res_blocks: int = 1
    """Residual blocks after each encoder / decoder stage."""
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    """Which quantizer and its settings; its dim is set to embed_dim."""
    image_hw: tuple[int, int] = (144, 160)
    channels: int = 3
    """Frame channels: 3 (RGB) or 1 (gray, the screen of a Game Boy game with a gray palette)."""
    """Input frame height and width; each must be divisible by 2**len(encoder_channels)."""
    dtype: str = "float32"
    """Compute dtype of the convs ("float32" or "bfloat16"); weights and quantizer stay fp32."""

    def __post_init__(self):
        if self.quantizer.dim is None:
            object.__setattr__(self, "quantizer", dataclasses.replace(self.quantizer, dim=self.embed_dim))
        elif self.quantizer.dim != self.embed_dim:
            raise ValueError(f"quantizer dim {self.quantizer.dim} differs from embed_dim {self.embed_dim}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {self.channels}")
        factor = self.downsample
        if any(size % factor for size in self.image_hw):
            raise ValueError(
                f"image_hw {self.image_hw} is not divisible by the encoder's downsampling {factor}"
            )

    @property
    def downsample(self) -> int:
        return 2 ** len(self.encoder_channels)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows, cols): (9, 10) for 144x160 frames."""
        return (self.image_hw[0] // self.downsample, self.image_hw[1] // self.downsample)

    @property
    def vocab_size(self) -> int:
        return self.quantizer.vocab_size


def frames_to_float(frames: jax.Array) -> jax.Array:
    """uint8 frames in [0, 255] -> float32 in [0, 1]; float frames pass through as float32."""
    if jnp.issubdtype(frames.dtype, jnp.integer):
        return frames.astype(jnp.float32) / 255.0
    return frames.astype(jnp.float32)


class ResidualBlock(nnx.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))))), the last conv zero-initialised so that the block
    starts as the identity. Without the group norms the seed-size tokenizer's latents grew until its
    quantizer loss diverged within ~50 steps at lr 3e-4 (bench/tokenizer_stability.py)."""

    def __init__(self, channels: int, dtype, rngs: nnx.Rngs):
        groups = math.gcd(channels, 32)
        self.norm1 = nnx.GroupNorm(channels, num_groups=groups, dtype=dtype, rngs=rngs)
        self.conv1 = nnx.Conv(channels, channels, (3, 3), dtype=dtype, rngs=rngs)
        self.norm2 = nnx.GroupNorm(channels, num_groups=groups, dtype=dtype, rngs=rngs)
        self.conv2 = nnx.Conv(
            channels, channels, (3, 3), dtype=dtype, kernel_init=nnx.initializers.zeros, rngs=rngs
        )

    def __call__(self, x):
        return x + self.conv2(nnx.silu(self.norm2(self.conv1(nnx.silu(self.norm1(x))))))


class Encoder(nnx.Module):
    """(B, H, W, channels) in [0, 1] -> continuous latents (B, H/16, W/16, embed_dim)."""

    def __init__(self, cfg: VQVAEConfig, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg.dtype)
        widths = (cfg.channels, *cfg.encoder_channels)
        self.downs = nnx.List(
            [
                nnx.Conv(c_in, c_out, (4, 4), strides=2, padding=((1, 1), (1, 1)), dtype=dtype, rngs=rngs)
                for c_in, c_out in zip(widths[:-1], widths[1:])
            ]
        )
        self.blocks = nnx.List(
            [
                nnx.List([ResidualBlock(c, dtype, rngs) for _ in range(cfg.res_blocks)])
                for c in cfg.encoder_channels
            ]
        )
        self.to_latent = nnx.Conv(cfg.encoder_channels[-1], cfg.embed_dim, (1, 1), dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = x * 2.0 - 1.0
        for down, blocks in zip(self.downs, self.blocks):
            x = nnx.silu(down(x))
            for block in blocks:
                x = block(x)
        return self.to_latent(x).astype(jnp.float32)


def depth_to_space(x: jax.Array) -> jax.Array:
    """(B, h, w, 4C) -> (B, 2h, 2w, C): each position's channels become a 2x2 block of pixels."""
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height, width, 2, 2, channels // 4).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, 2 * height, 2 * width, channels // 4)


class Decoder(nnx.Module):
    """Latents (B, h, w, embed_dim) -> frames (B, 16h, 16w, channels), roughly in [0, 1]."""

    def __init__(self, cfg: VQVAEConfig, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg.dtype)
        widths = cfg.encoder_channels[::-1]  # e.g. (192, 128, 64, 32): one stage each
        self.from_latent = nnx.Conv(cfg.embed_dim, widths[0], (3, 3), dtype=dtype, rngs=rngs)
        self.blocks = nnx.List(
            [nnx.List([ResidualBlock(c, dtype, rngs) for _ in range(cfg.res_blocks)]) for c in widths]
        )
        # Each stage's conv emits 4x the next stage's width (the last emits 4 x RGB) at its own resolution.
        outs = (*widths[1:], cfg.channels)
        self.ups = nnx.List(
            [nnx.Conv(c_in, 4 * c_out, (3, 3), dtype=dtype, rngs=rngs) for c_in, c_out in zip(widths, outs)]
        )
        self.dtype = dtype

    def __call__(self, z):
        x = self.from_latent(z.astype(self.dtype))
        for stage, (blocks, up) in enumerate(zip(self.blocks, self.ups)):
            for block in blocks:
                x = block(x)
            x = depth_to_space(up(x))
            if stage < len(self.ups) - 1:
                x = nnx.silu(x)
        return x.astype(jnp.float32)


class VQEncoder(nnx.Module):
    """Encoder + quantizer: frames -> tokens and their embeddings. Used by RL and the VQ reward head."""

    def __init__(self, cfg: VQVAEConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.encoder = Encoder(cfg, rngs)
        self.quantizer = make_quantizer(cfg.quantizer, rngs)

    def latents(self, frames: jax.Array) -> jax.Array:
        """Continuous encoder output before quantization: (B, 9, 10, D) float32."""
        frames = frames_to_float(frames)
        if frames.shape[-3:] != (*self.cfg.image_hw, self.cfg.channels):
            raise ValueError(
                f"frames of shape {frames.shape} do not match image_hw {self.cfg.image_hw} "
                f"x {self.cfg.channels} channels"
            )
        return self.encoder(frames)

    def encode(self, frames: jax.Array, key: jax.Array | None = None):
        """frames (B, H, W, 3) uint8 or [0, 1] float -> (z_q (B, 9, 10, D), indices (B, 9, 10) int32, aux)."""
        return self.quantizer(self.latents(frames), key)

    def embed_indices(self, indices: jax.Array) -> jax.Array:
        """Token ids (B, 9, 10) -> their codebook embeddings (B, 9, 10, D)."""
        return self.quantizer.lookup(indices)

    def restart_dead_codes(self, usage_counts: jax.Array, frames: jax.Array, key: jax.Array) -> jax.Array:
        """Move codes used fewer than restart_threshold times onto latents of `frames`; returns how many
        moved.

        usage_counts (vocab,) is what the training loop accumulated since the last restart,
        e.g. the sum of jnp.bincount(indices.ravel(), length=vocab) over recent batches.
        """
        return self.quantizer.restart_dead_codes(usage_counts, self.latents(frames), key)


class VQVAE(VQEncoder):
    """The tokenizer: VQEncoder plus a decoder back to pixels."""

    def __init__(self, cfg: VQVAEConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        self.decoder = Decoder(cfg, rngs)

    def decode(self, z_q: jax.Array) -> jax.Array:
        """(B, 9, 10, D) -> (B, 144, 160, 3) float32."""
        return self.decoder(z_q)

    def __call__(self, frames: jax.Array, key: jax.Array | None = None):
        """-> (reconstruction (B, H, W, 3), indices (B, 9, 10), aux)."""
        z_q, indices, aux = self.encode(frames, key)
        return self.decode(z_q), indices, aux


def tokenizer_loss(model: VQVAE, frames: jax.Array, key: jax.Array | None):
    """Reconstruction MSE plus the quantizer's own loss. Returns (loss, metrics); metrics["code_counts"]
    (vocab,) is the batch's token histogram, for dead-code restarts and codebook use."""
    target = frames_to_float(frames)
    recon, indices, aux = model(target, key)
    recon_mse = jnp.mean((recon - target) ** 2)
    loss = recon_mse + aux["loss"]
    code_counts = jnp.bincount(indices.ravel(), length=model.cfg.vocab_size)
    return loss, {
        "loss": loss,
        "recon_mse": recon_mse,
        "perplexity": aux["perplexity"],
        "code_counts": code_counts,
    }


def load_tokenizer(path, dtype: str | None = None) -> VQVAE:
    """A VQVAE rebuilt from a 'tokenizer' checkpoint (its config and weights), computing in `dtype`
    (None: the checkpoint's)."""
    ckpt = load_checkpoint(path, "tokenizer")
    cfg = config_from_dict(VQVAEConfig, ckpt["config"])
    if dtype is not None:
        cfg = dataclasses.replace(cfg, dtype=dtype)
    return restore_params(abstract(lambda: VQVAE(cfg, rngs=nnx.Rngs(0))), ckpt["params"], source=str(path))


def load_encoder(path) -> VQEncoder:
    """A VQEncoder from an 'encoder' checkpoint, or from a 'tokenizer' one (its decoder is dropped)."""
    ckpt = load_checkpoint(path, ("encoder", "tokenizer"))
    cfg = config_from_dict(VQVAEConfig, ckpt["config"])
    params = {name: ckpt["params"][name] for name in ("encoder", "quantizer") if name in ckpt["params"]}
    return restore_params(abstract(lambda: VQEncoder(cfg, rngs=nnx.Rngs(0))), params, source=str(path))


def encoder_params(tokenizer_params: dict) -> dict:
    """The part of a tokenizer's params that a VQEncoder holds (for pretrained_encoder.pkl)."""
    if "encoder" not in tokenizer_params:
        raise CheckpointError("tokenizer params lack 'encoder'")
    # A quantizer without parameters ("none") has no entry.
    return {name: tokenizer_params[name] for name in ("encoder", "quantizer") if name in tokenizer_params}


def gray_encoder(cfg: VQVAEConfig, params: dict) -> tuple[VQVAEConfig, dict]:
    """The same encoder reading 1-channel gray frames: (config, encoder params). On a frame whose red,
    green and blue are equal (a Game Boy game's gray palette) it computes what the RGB encoder does,
    since its first conv's kernel is the RGB kernel summed over the colour channels."""
    if cfg.channels != 3:
        raise ValueError(f"gray_encoder takes an RGB encoder, got channels={cfg.channels}")
    params = jax.tree.map(lambda x: x, encoder_params(params))  # a copy: the caller's tree is untouched
    first = params["encoder"]["downs"][0]
    first["kernel"] = jnp.sum(jnp.asarray(first["kernel"]), axis=2, keepdims=True)
    return dataclasses.replace(cfg, channels=1), params
