"""ResNet-34 that maps a frame to one scalar progress score.

Standard layout (7x7 stem, max-pool, basic blocks in stages of 3, 4, 6, 3) with GroupNorm
instead of BatchNorm: the model is then a pure function of its parameters (a checkpoint's
params define it fully) and a data-parallel step gives the same result on 1 or N devices,
since nothing depends on per-device batch statistics. Widths and stage sizes come from the
config, so tests build a tiny one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from models.vqvae import frames_to_float


@dataclass(frozen=True)
class ResNetConfig:
    stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
    """Basic blocks per stage; (3, 4, 6, 3) is ResNet-34."""
    widths: tuple[int, ...] = (64, 128, 256, 512)
    """Channels per stage; each stage after the first halves the resolution."""
    stem_width: int = 64
    """Channels of the 7x7 stride-2 stem conv."""
    norm_groups: int = 32
    """GroupNorm groups (reduced to a divisor of the width where needed)."""
    dtype: str = "float32"
    """Compute dtype ("float32" or "bfloat16"); weights stay fp32."""


def group_norm(channels: int, cfg: ResNetConfig, rngs: nnx.Rngs, zero_init: bool = False) -> nnx.GroupNorm:
    return nnx.GroupNorm(
        channels,
        num_groups=math.gcd(cfg.norm_groups, channels),
        dtype=jnp.dtype(cfg.dtype),
        # Zero scale on a block's last norm makes each block start as the identity (Goyal et al. 2017).
        scale_init=nnx.initializers.zeros if zero_init else nnx.initializers.ones,
        rngs=rngs,
    )


class BasicBlock(nnx.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, cfg: ResNetConfig, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg.dtype)
        self.conv1 = nnx.Conv(c_in, c_out, (3, 3), strides=stride, use_bias=False, dtype=dtype, rngs=rngs)
        self.norm1 = group_norm(c_out, cfg, rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), use_bias=False, dtype=dtype, rngs=rngs)
        self.norm2 = group_norm(c_out, cfg, rngs, zero_init=True)
        if stride != 1 or c_in != c_out:
            self.shortcut_conv = nnx.Conv(
                c_in, c_out, (1, 1), strides=stride, use_bias=False, dtype=dtype, rngs=rngs
            )
            self.shortcut_norm = group_norm(c_out, cfg, rngs)
        else:
            self.shortcut_conv = self.shortcut_norm = None

    def __call__(self, x):
        y = self.norm2(self.conv2(nnx.relu(self.norm1(self.conv1(x)))))
        shortcut = x if self.shortcut_conv is None else self.shortcut_norm(self.shortcut_conv(x))
        return nnx.relu(y + shortcut)


class ResNet34(nnx.Module):
    """Frames (B, H, W, 3), uint8 or [0, 1] float -> scores (B,) float32."""

    def __init__(self, cfg: ResNetConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dtype = jnp.dtype(cfg.dtype)
        self.stem = nnx.Conv(3, cfg.stem_width, (7, 7), strides=2, use_bias=False, dtype=dtype, rngs=rngs)
        self.stem_norm = group_norm(cfg.stem_width, cfg, rngs)
        blocks, c_in = [], cfg.stem_width
        for stage, (size, width) in enumerate(zip(cfg.stage_sizes, cfg.widths)):
            for i in range(size):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c_in, width, stride, cfg, rngs))
                c_in = width
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(c_in, 1, rngs=rngs)

    def __call__(self, frames: jax.Array) -> jax.Array:
        x = frames_to_float(frames).astype(jnp.dtype(self.cfg.dtype)) * 2.0 - 1.0
        x = nnx.relu(self.stem_norm(self.stem(x)))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for block in self.blocks:
            x = block(x)
        pooled = x.astype(jnp.float32).mean(axis=(1, 2))  # global average pool: (B, C)
        return self.head(pooled)[:, 0]
