"""Latent action model (LAM): what did the player do between frames x_t and x_{t+1}?

An inverse dynamics model (IDM) looks at both frames and squeezes the change into one
discrete latent action from a small codebook (8 codes by default, as in Genie). A forward
model then has to predict x_{t+1} from x_t and that action alone. Trained together on
unlabeled video, the codes come to mean "the player moved left", "a text box advanced",
"nothing happened": the actions that Genie and LAPA recover from video without labels.

    action, code, aux = lam.encode_action(x_t, x_t1, key)    # (B, action_dim), (B,) int32
    prediction = lam.predict(x_t, action)                    # (B, h, w, 3) in [0, 1]

Shapes: frames (B, H, W, 3) uint8 or [0, 1] float. With `pool` > 1 both frames are
average-pooled first, and the model works and predicts at (H / pool, W / pool).

Design choices (the Pokemon IDM seed's lessons):
- The forward model is a small U-Net over x_t whose output is added to x_t and whose last
  conv starts at zero, so it starts as the copy-previous-frame baseline and learns changes.
- Copying x_t already gets most pixels right, so `change_weighted_loss` upweights the pixels
  that change between x_t and x_{t+1}.
- The action enters the forward model by FiLM (scale and shift) at every resolution.
- The quantizer is one of models/quantizers.py: NSVQ by default, FSQ or VQ by flag.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from flax import nnx

from models.build import abstract
from models.checkpoint import config_from_dict, load_checkpoint, restore_params
from models.quantizers import QuantizerConfig, make_quantizer
from models.vqvae import frames_to_float


def _default_quantizer() -> QuantizerConfig:
    return QuantizerConfig(kind="nsvq", codebook_size=8, levels=(2, 2, 2))


@dataclass(frozen=True)
class LAMConfig:
    channels: tuple[int, ...] = (32, 64, 128)
    """Conv widths, one stride-2 stage each, of the IDM and of the forward model's U-Net."""
    action_dim: int = 32
    """Width of the latent action (and of each codebook entry)."""
    quantizer: QuantizerConfig = field(default_factory=_default_quantizer)
    """Quantizer of the action: NSVQ with 8 codes by default; its dim is set to action_dim."""
    image_hw: tuple[int, int] = (144, 160)
    """Input frame height and width."""
    pool: int = 1
    """Average-pool input frames by this factor first (2 or 4 make CPU training affordable)."""
    dtype: str = "float32"
    """Compute dtype of the convs; weights and the quantizer stay float32."""

    def __post_init__(self):
        if self.quantizer.dim is None:
            object.__setattr__(self, "quantizer", dataclasses.replace(self.quantizer, dim=self.action_dim))
        elif self.quantizer.dim != self.action_dim:
            raise ValueError(f"quantizer dim {self.quantizer.dim} differs from action_dim {self.action_dim}")
        factor = self.pool * 2 ** len(self.channels)
        if any(size % factor for size in self.image_hw):
            raise ValueError(
                f"image_hw {self.image_hw} is not divisible by pool x 2^len(channels) = {factor}; "
                "change --pool or --channels"
            )

    @property
    def model_hw(self) -> tuple[int, int]:
        """Resolution the model sees and predicts: image_hw / pool."""
        return (self.image_hw[0] // self.pool, self.image_hw[1] // self.pool)

    @property
    def vocab_size(self) -> int:
        return self.quantizer.vocab_size


def pool_frames(frames: jax.Array, pool: int) -> jax.Array:
    """(B, H, W, 3) uint8 or float -> (B, H / pool, W / pool, 3) float32 in [0, 1], by block means."""
    frames = frames_to_float(frames)
    if pool == 1:
        return frames
    b, h, w, c = frames.shape
    return frames.reshape(b, h // pool, pool, w // pool, pool, c).mean(axis=(2, 4))


def change_weighted_loss(
    pred: jax.Array, target: jax.Array, prev: jax.Array, change_weight: float, threshold: float
):
    """Squared error weighted toward the pixels that change from `prev` to `target`.

    A pixel has changed when any channel of |target - prev| exceeds `threshold`. Its weight
    is 1 + change_weight, every other pixel's is 1, and the loss is the weighted mean:

        loss = sum_pixels,channels w * (pred - target)^2 / (C * sum_pixels w)

    so change_weight = 0 gives the plain MSE and the loss scale does not grow with it.
    All three arrays are (B, H, W, C) floats. Returns (loss, metrics) where the metrics split
    the plain MSE into changed and unchanged pixels and give the changed fraction.
    """
    squared_error = (pred - target) ** 2
    changed = (jnp.max(jnp.abs(target - prev), axis=-1, keepdims=True) > threshold).astype(jnp.float32)
    weight = 1.0 + change_weight * changed
    channels = pred.shape[-1]
    loss = jnp.sum(weight * squared_error) / (channels * jnp.sum(weight))
    num_changed = jnp.sum(changed)
    num_unchanged = changed.size - num_changed
    metrics = {
        "changed_mse": jnp.sum(changed * squared_error) / (channels * jnp.maximum(num_changed, 1.0)),
        "unchanged_mse": jnp.sum((1.0 - changed) * squared_error)
        / (channels * jnp.maximum(num_unchanged, 1.0)),
        "changed_fraction": num_changed / changed.size,
    }
    return loss, metrics


class InverseDynamics(nnx.Module):
    """(x_t, x_{t+1}) -> continuous action (B, action_dim), from both frames and their difference."""

    def __init__(self, cfg: LAMConfig, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg.dtype)
        widths = (9, *cfg.channels)  # x_t, x_{t+1}, x_{t+1} - x_t
        self.downs = nnx.List(
            [
                nnx.Conv(c_in, c_out, (4, 4), strides=2, padding=((1, 1), (1, 1)), dtype=dtype, rngs=rngs)
                for c_in, c_out in zip(widths[:-1], widths[1:])
            ]
        )
        self.mix = nnx.Conv(cfg.channels[-1], cfg.channels[-1], (3, 3), dtype=dtype, rngs=rngs)
        # Mean and max pooling: the mean sees global change, the max a small moving sprite.
        self.to_action = nnx.Linear(2 * cfg.channels[-1], cfg.action_dim, rngs=rngs)
        self.dtype = dtype

    def __call__(self, x_t, x_t1):
        x = jnp.concatenate([x_t * 2.0 - 1.0, x_t1 * 2.0 - 1.0, (x_t1 - x_t) * 4.0], axis=-1).astype(
            self.dtype
        )
        for down in self.downs:
            x = nnx.silu(down(x))
        x = nnx.silu(self.mix(x)).astype(jnp.float32)
        pooled = jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)
        return self.to_action(pooled)


class FiLM(nnx.Module):
    """Scale and shift feature maps (B, h, w, C) by the action (B, action_dim)."""

    def __init__(self, action_dim: int, channels: int, rngs: nnx.Rngs):
        self.linear = nnx.Linear(action_dim, 2 * channels, rngs=rngs)

    def __call__(self, x, action):
        scale, shift = jnp.split(self.linear(action)[:, None, None, :].astype(x.dtype), 2, axis=-1)
        return x * (1.0 + scale) + shift


class ForwardModel(nnx.Module):
    """U-Net: x_t (B, h, w, 3) and the action (B, action_dim) -> x_{t+1} (B, h, w, 3)."""

    def __init__(self, cfg: LAMConfig, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg.dtype)
        widths = cfg.channels
        self.stem = nnx.Conv(3, widths[0], (3, 3), dtype=dtype, rngs=rngs)
        ins = (widths[0], *widths[:-1])
        self.downs = nnx.List(
            [
                nnx.Conv(c_in, c_out, (4, 4), strides=2, padding=((1, 1), (1, 1)), dtype=dtype, rngs=rngs)
                for c_in, c_out in zip(ins, widths)
            ]
        )
        self.bottleneck_film = FiLM(cfg.action_dim, widths[-1], rngs)
        self.bottleneck = nnx.Conv(widths[-1], widths[-1], (3, 3), dtype=dtype, rngs=rngs)
        # Up stage i (deepest first) upsamples, concatenates the skip of the same resolution
        # (the input of down stage i), and convs down to that skip's width.
        self.ups = nnx.List(
            [
                nnx.Conv(c_out + c_in, c_in, (3, 3), dtype=dtype, rngs=rngs)
                for c_in, c_out in zip(ins[::-1], widths[::-1])
            ]
        )
        self.up_films = nnx.List([FiLM(cfg.action_dim, c_in, rngs) for c_in in ins[::-1]])
        # Starts at zero, so the untrained model predicts x_{t+1} = x_t (the copy baseline).
        self.to_rgb = nnx.Conv(
            widths[0], 3, (3, 3), kernel_init=nnx.initializers.zeros, dtype=dtype, rngs=rngs
        )
        self.dtype = dtype

    def __call__(self, x_t, action):
        x = nnx.silu(self.stem((x_t * 2.0 - 1.0).astype(self.dtype)))
        skips = []
        for down in self.downs:
            skips.append(x)
            x = nnx.silu(down(x))
        x = x + nnx.silu(self.bottleneck(self.bottleneck_film(x, action)))
        for up, film, skip in zip(self.ups, self.up_films, skips[::-1]):
            x = x.repeat(2, axis=1).repeat(2, axis=2)  # nearest-neighbour 2x
            x = nnx.silu(film(up(jnp.concatenate([x, skip], axis=-1)), action))
        return x_t + self.to_rgb(x).astype(jnp.float32)


class LatentActionModel(nnx.Module):
    """IDM + quantizer + forward model. Parameter paths: "idm", "quantizer", "forward_model"."""

    def __init__(self, cfg: LAMConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.idm = InverseDynamics(cfg, rngs)
        self.quantizer = make_quantizer(cfg.quantizer, rngs)
        self.forward_model = ForwardModel(cfg, rngs)

    def prepare(self, frames: jax.Array) -> jax.Array:
        """Frames (B, H, W, 3) -> the model's input (B, h, w, 3) float in [0, 1]."""
        if frames.shape[-3:] != (*self.cfg.image_hw, 3):
            raise ValueError(f"frames of shape {frames.shape} do not match image_hw {self.cfg.image_hw} x 3")
        return pool_frames(frames, self.cfg.pool)

    def encode_action(self, x_t: jax.Array, x_t1: jax.Array, key: jax.Array | None = None):
        """Raw frames -> (action (B, action_dim), code (B,) int32, quantizer aux). key None: hard codes."""
        return self.quantizer(self.idm(self.prepare(x_t), self.prepare(x_t1)), key)

    def predict(self, x_t: jax.Array, action: jax.Array) -> jax.Array:
        """Raw frame x_t and an action (B, action_dim) -> predicted x_{t+1} (B, h, w, 3)."""
        return self.forward_model(self.prepare(x_t), action)

    def embed_codes(self, codes: jax.Array) -> jax.Array:
        """Action codes (B,) -> their actions (B, action_dim), e.g. to ask "what if the player did c?"."""
        return self.quantizer.lookup(codes)

    def __call__(self, x_t: jax.Array, x_t1: jax.Array, key: jax.Array | None = None):
        """-> (prediction of x_{t+1} (B, h, w, 3), code (B,), quantizer aux)."""
        action, code, aux = self.encode_action(x_t, x_t1, key)
        return self.predict(x_t, action), code, aux


def lam_loss(
    model: LatentActionModel, batch, key: jax.Array | None, change_weight: float, change_threshold: float
):
    """Change-weighted reconstruction of x_{t+1} plus the quantizer's loss. batch = (x_t, x_t1) uint8.

    Returns (loss, metrics); metrics["code_counts"] (vocab,) is the batch's code histogram.
    """
    x_t, x_t1 = batch
    prediction, codes, aux = model(x_t, x_t1, key)
    prev, target = model.prepare(x_t), model.prepare(x_t1)
    recon, split = change_weighted_loss(prediction, target, prev, change_weight, change_threshold)
    _, copy_split = change_weighted_loss(prev, target, prev, change_weight, change_threshold)
    loss = recon + aux["loss"]
    metrics = {
        "loss": loss,
        "recon": recon,
        "mse": jnp.mean((prediction - target) ** 2),
        "copy_mse": jnp.mean((prev - target) ** 2),
        "copy_changed_mse": copy_split["changed_mse"],
        "perplexity": aux["perplexity"],
        "code_counts": jnp.bincount(codes, length=model.cfg.vocab_size),
        **split,
    }
    return loss, metrics


def load_lam(path) -> LatentActionModel:
    """A LatentActionModel rebuilt from a 'lam' checkpoint (its config and weights)."""
    ckpt = load_checkpoint(path, "lam")
    cfg = config_from_dict(LAMConfig, ckpt["config"])
    return restore_params(
        abstract(lambda: LatentActionModel(cfg, rngs=nnx.Rngs(0))), ckpt["params"], source=str(path)
    )
