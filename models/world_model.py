"""Flow-matching world model: the next frame's latent grid from the last k frames' latents and an action.

It works in the tokenizer's continuous latent space: the encoder's (9, 10, D) grid before quantization,
normalised per channel with the training set's mean and std (stored in the config), so that the noise a
sample starts from has the data's scale. Decoding a prediction means snapping it to the codebook and
running the tokenizer's decoder (training/world_model.py).

    end = model(context, action, x_t, t, level)  # context (B, K, 9, 10, D), x_t (B, 9, 10, D), t (B,)
    next_latents = sample(model, context, action, noise, steps=4)

Training is rectified flow: x_t = (1 - t) noise + t target, and Euler steps of the velocity from t = 0
to 1 carry noise to a next frame. The network predicts the path's end (x-prediction, as in Dreamer 4),
whose velocity is (prediction - x_t) / (1 - t): one step gives the conditional mean, more steps a sample.
The target is the change from the last context frame (scaled to unit std): most of a Game Boy screen
stays put between steps, so the model spends itself on what moves rather than on redrawing the
background. With `shortcut` the model also reads its step size (`level`) and learns, on a quarter of
each batch, that one step of size 2d lands where two steps of size d do (Frans et al. 2024, "One Step
Diffusion via Shortcut Models"), meant to let 1-4 steps sample as well as many.

The transformer reads one conditioning token (action + time + step size), the K context frames' tokens
and the noisy target's tokens (one per pooled window of latents), with bidirectional attention, and
predicts the target. Its blocks are models/transformer.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from models.build import abstract
from models.checkpoint import config_from_dict, load_checkpoint, restore_params
from models.transformer import Block, TransformerConfig


@dataclass(frozen=True)
class WorldModelConfig:
    latent_dim: int = 64
    """Width of the tokenizer's latents (its embed_dim)."""
    grid: tuple[int, int] = (9, 10)
    """Latent grid (rows, cols) of one frame."""
    pool: tuple[int, int] = (3, 2)
    """Each (rows, cols) window of the grid is one token: (3, 2) gives 15 tokens a frame instead of 90,
    ~6x less arithmetic, as in the policy's trunk."""
    context: int = 2
    """Past frames the model reads."""
    num_actions: int = 8
    """Actions it is conditioned on: the env's buttons, or the latent-action model's codes."""
    embed_dim: int = 128
    """Width of the residual stream."""
    num_layers: int = 3
    num_heads: int = 4
    mlp_ratio: int = 3
    shortcut: bool = False
    """Condition on the step size and train the shortcut self-consistency, meant for 1-4 step sampling."""
    max_steps: int = 16
    """Finest shortcut step is 1 / max_steps (a power of two); more sampling steps use the plain flow."""
    latent_mean: tuple[float, ...] = ()
    """Per-channel mean of the training latents (latent_dim values; empty: no normalisation)."""
    latent_std: tuple[float, ...] = ()
    """Per-channel std of the training latents."""
    change_std: float = 1.0
    """The flow generates the change from the last context frame (normalised latents), divided by this:
    the std of the training transitions' changes, so the change has unit scale like the noise."""
    dtype: str = "float32"
    """Compute dtype ("float32" or "bfloat16"); weights stay fp32."""

    def __post_init__(self):
        if self.max_steps < 1 or self.max_steps & (self.max_steps - 1):
            raise ValueError(f"max_steps must be a power of two, got {self.max_steps}")
        if len(self.latent_mean) != len(self.latent_std) or len(self.latent_mean) not in (0, self.latent_dim):
            raise ValueError(f"latent_mean and latent_std need {self.latent_dim} values each")
        if self.grid[0] % self.pool[0] or self.grid[1] % self.pool[1]:
            raise ValueError(f"pool {self.pool} does not divide the latent grid {self.grid}")

    @property
    def num_levels(self) -> int:
        """Step-size levels: 0 is the instantaneous flow, level 1 + j a step of 1 / 2**j."""
        return int(math.log2(self.max_steps)) + 2


def step_level(cfg: WorldModelConfig, steps: int) -> int:
    """The step-size level of sampling in `steps` equal Euler steps (0, the plain flow, without shortcut
    or past max_steps)."""
    if steps < 1:
        raise ValueError(f"sampling needs at least one step, got {steps}")
    if not cfg.shortcut or steps > cfg.max_steps or steps & (steps - 1):
        return 0
    return 1 + int(math.log2(steps))


def time_features(t: jax.Array, width: int) -> jax.Array:
    """(B,) times in [0, 1] -> (B, width) sinusoids over log-spaced frequencies from 1 to 1000."""
    freqs = jnp.exp(jnp.linspace(0.0, math.log(1000.0), width // 2))
    angles = t[:, None] * freqs[None] * 2 * math.pi
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def merge_windows(x: jax.Array, pool: tuple[int, int]) -> jax.Array:
    """(..., rows, cols, D) -> (..., rows/pr * cols/pc, pr*pc*D): each window's cells side by side."""
    *lead, rows, cols, width = x.shape
    (pr, pc), n = pool, len(lead)
    x = x.reshape(*lead, rows // pr, pr, cols // pc, pc, width)
    x = x.transpose(*range(n), n, n + 2, n + 1, n + 3, n + 4)
    return x.reshape(*lead, (rows // pr) * (cols // pc), pr * pc * width)


def split_windows(x: jax.Array, grid: tuple[int, int], pool: tuple[int, int]) -> jax.Array:
    """The inverse of merge_windows: (B, windows, pr*pc*D) -> (B, rows, cols, D)."""
    (rows, cols), (pr, pc) = grid, pool
    x = x.reshape(x.shape[0], rows // pr, cols // pc, pr, pc, -1).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(x.shape[0], rows, cols, -1)


class WorldModel(nnx.Module):
    def __init__(self, cfg: WorldModelConfig, *, rngs: nnx.Rngs):
        (pr, pc) = cfg.pool
        self.cfg = cfg
        dtype = jnp.dtype(cfg.dtype)
        width, window = cfg.embed_dim, pr * pc * cfg.latent_dim
        init = nnx.initializers.normal(0.02)
        self.context_in = nnx.Linear(window, width, dtype=dtype, rngs=rngs)
        self.noisy_in = nnx.Linear(window, width, dtype=dtype, rngs=rngs)
        self.position = nnx.Param(init(rngs.params(), (self.num_windows, width)))
        # Which frame a token belongs to: context frames oldest first, then the target.
        self.frame_embed = nnx.Param(init(rngs.params(), (cfg.context + 1, 1, width)))
        self.action_embed = nnx.Embed(cfg.num_actions, width, dtype=dtype, rngs=rngs)
        self.level_embed = nnx.Embed(cfg.num_levels, width, dtype=dtype, rngs=rngs)
        self.time_in = nnx.Linear(width, width, dtype=dtype, rngs=rngs)
        self.time_out = nnx.Linear(width, width, dtype=dtype, rngs=rngs)
        blocks = TransformerConfig(
            embed_dim=width, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, grid=cfg.grid, dtype=cfg.dtype
        )
        self.blocks = nnx.List([Block(blocks, rngs) for _ in range(cfg.num_layers)])
        self.norm = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
        # Zero-initialised: an untrained model predicts no change, so it starts as copying the last frame.
        self.head = nnx.Linear(width, window, kernel_init=nnx.initializers.zeros, dtype=dtype, rngs=rngs)

    @property
    def num_windows(self) -> int:
        """Tokens per frame: one per pooled window of the latent grid."""
        (rows, cols), (pr, pc) = self.cfg.grid, self.cfg.pool
        return rows // pr * (cols // pc)

    def __call__(self, context, action, x_t, t, level):
        """context (B, K, rows, cols, D), action (B,) int, x_t (B, rows, cols, D), t (B,) float, level
        (B,) int or a Python int -> the predicted end of the path (B, rows, cols, D) float32."""
        cfg = self.cfg
        batch = x_t.shape[0]
        if context.shape[1:] != (cfg.context, *cfg.grid, cfg.latent_dim):
            raise ValueError(f"context of shape {context.shape} is not (B, {cfg.context}, {cfg.grid}, D)")
        level = jnp.broadcast_to(jnp.asarray(level, jnp.int32), (batch,))
        time = self.time_out(nnx.silu(self.time_in(time_features(t.astype(jnp.float32), cfg.embed_dim))))
        condition = self.action_embed(action) + self.level_embed(level) + time  # (B, width)
        past = self.context_in(merge_windows(context, cfg.pool)) + self.position + self.frame_embed[:-1]
        # The target's tokens also read the last frame at their own place: the change is relative to it.
        noisy = self.noisy_in(merge_windows(x_t, cfg.pool)) + past[:, -1] + self.frame_embed[-1]
        x = jnp.concatenate(
            [
                condition[:, None],
                past.reshape(batch, cfg.context * self.num_windows, -1),
                noisy + condition[:, None],
            ],
            axis=1,
        )
        for block in self.blocks:
            x = block(x)
        end = self.head(self.norm(x[:, -self.num_windows :])).astype(jnp.float32)
        return split_windows(end, cfg.grid, cfg.pool)


def interpolate(noise: jax.Array, target: jax.Array, t: jax.Array) -> jax.Array:
    """The straight path from noise (t = 0) to target (t = 1); t (B,) broadcasts over the rest."""
    t = t.reshape(-1, *(1,) * (target.ndim - 1))
    return (1 - t) * noise + t * target


def velocity(predicted: jax.Array, x_t: jax.Array, t: jax.Array) -> jax.Array:
    """The velocity at x_t when the model predicts the path ends at `predicted`: (x_1 - x_t) / (1 - t)."""
    return (predicted - x_t) / (1 - t).reshape(-1, *(1,) * (x_t.ndim - 1))


def flow_matching_loss(predict, target: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """Mean squared error of `predict(x_t, t)`, the model's guess of the path's end, against the target."""
    return jnp.mean((predict(interpolate(noise, target, t), t) - target) ** 2)


def shortcut_loss(predict, target, noise, big_steps, position, max_level: int):
    """Self-consistency: one step of size 2d = 1 / big_steps from x_t should land where two steps of size
    d do. The two steps' mean velocity, without gradient, says where the path ends; the big step's
    prediction is trained towards it. big_steps (B,) powers of two up to max_steps; position (B,) which of
    the big steps t starts (t = position / big_steps). `predict(x, t, level)` guesses the path's end;
    small steps finer than max_level's use the plain flow (level 0)."""
    big_level = 1 + jnp.log2(big_steps).round().astype(jnp.int32)
    small_level = jnp.where(big_level + 1 <= max_level, big_level + 1, 0)
    d = 0.5 / big_steps
    t = position / big_steps
    x_t = interpolate(noise, target, t)
    first = velocity(predict(x_t, t, small_level), x_t, t)
    x_mid = x_t + d.reshape(-1, 1, 1, 1) * first
    second = velocity(predict(x_mid, t + d, small_level), x_mid, t + d)
    end = x_t + (1 - t).reshape(-1, 1, 1, 1) * (first + second) / 2
    return jnp.mean((predict(x_t, t, big_level) - jax.lax.stop_gradient(end)) ** 2)


def flow_times(key, size: int, at_zero: float = 0.25) -> jax.Array:
    """Times of the flow rows: uniform on [0, 1), except that a fraction `at_zero` are exactly 0, where the
    model sees only noise and must say from the context and the action alone what changes (a one-step
    sample is that guess). Uniform times alone leave that hardest case too rare to be learned."""
    uniform_key, zero_key = jax.random.split(key)
    return jnp.where(
        jax.random.uniform(zero_key, (size,)) < at_zero, 0.0, jax.random.uniform(uniform_key, (size,))
    )


def world_model_loss(model: WorldModel, batch, key):
    """batch: (context (B, K, rows, cols, D), action (B,), target (B, rows, cols, D)), normalised latents;
    the flow learns the scaled change target - context[:, -1]. Returns (loss, metrics). With shortcut the
    first quarter of the batch trains the step sizes."""
    context, action, target = batch
    cfg = model.cfg
    target = (target - context[:, -1]) / cfg.change_std
    size = target.shape[0]
    short = size // 4 if cfg.shortcut else 0
    noise_key, time_key, level_key, position_key = jax.random.split(key, 4)
    noise = jax.random.normal(noise_key, target.shape)
    flow = flow_matching_loss(
        lambda x, t: model(context[short:], action[short:], x, t, 0),
        target[short:],
        noise[short:],
        flow_times(time_key, size - short),
    )
    metrics = {"flow_loss": flow}
    loss = flow
    if short:

        def predict(x, t, level):
            return model(context[:short], action[:short], x, t, level)

        exponent = jax.random.randint(level_key, (short,), 0, cfg.num_levels - 1)  # 2d = 1, 1/2, ... 1/max
        big_steps = (2**exponent).astype(jnp.float32)
        position = jnp.floor(jax.random.uniform(position_key, (short,)) * big_steps)
        metrics["shortcut_loss"] = shortcut_loss(
            predict, target[:short], noise[:short], big_steps, position, cfg.num_levels - 1
        )
        loss = (flow * (size - short) + metrics["shortcut_loss"] * short) / size
    return loss, {"loss": loss, **metrics}


def sample(model: WorldModel, context, action, noise, steps: int) -> jax.Array:
    """`steps` Euler steps of the learned velocity from `noise` (t = 0) to the change at t = 1, added to
    the last context frame: the next (normalised) latent grid."""
    level = step_level(model.cfg, steps)
    x, d = noise, 1.0 / steps
    for i in range(steps):
        t = jnp.full((x.shape[0],), i * d)
        x = x + d * velocity(model(context, action, x, t, level), x, t)
    return context[:, -1] + model.cfg.change_std * x


def imagine(model: WorldModel, context, actions, key, steps: int) -> jax.Array:
    """Open loop: each sampled grid joins the context for the next. context (B, K, rows, cols, D),
    actions (B, H) -> latents (B, H, rows, cols, D)."""

    def one_step(context, inputs):
        action, step_key = inputs
        noise = jax.random.normal(step_key, context.shape[:1] + context.shape[2:])
        latents = sample(model, context, action, noise, steps)
        return jnp.concatenate([context[:, 1:], latents[:, None]], axis=1), latents

    keys = jax.random.split(key, actions.shape[1])
    _, latents = jax.lax.scan(one_step, context, (actions.T, keys))
    return latents.swapaxes(0, 1)


def normalize(cfg: WorldModelConfig, latents: jax.Array) -> jax.Array:
    if not cfg.latent_mean:
        return latents
    return (latents - jnp.asarray(cfg.latent_mean)) / jnp.asarray(cfg.latent_std)


def denormalize(cfg: WorldModelConfig, latents: jax.Array) -> jax.Array:
    if not cfg.latent_mean:
        return latents
    return latents * jnp.asarray(cfg.latent_std) + jnp.asarray(cfg.latent_mean)


def load_world_model(path) -> tuple[WorldModel, dict]:
    """A WorldModel from a 'world_model' checkpoint, and the checkpoint's config (its data, tokenizer and
    action source, see train_world_model.py)."""
    ckpt = load_checkpoint(path, "world_model")
    cfg = config_from_dict(WorldModelConfig, ckpt["config"]["model"])
    model = restore_params(
        abstract(lambda: WorldModel(cfg, rngs=nnx.Rngs(0))), ckpt["params"], source=str(path)
    )
    return model, ckpt["config"]
