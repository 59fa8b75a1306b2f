"""Phase 3: PPO on VecGameBoy, rewarded by a progress score learned from speedrun video.

    uv run python train_with_cnn_reward.py --reward-model reward_resnet34.pkl \
        --pretrained-tokenizer pretrained_tokenizer.pkl \
        --pretrained-dynamics pretrained_dynamics.pkl --return-filter 0.8 --iterations 12000

Reward. The env gives no reward. Every `reward_interval` env steps the reward model
scores every env's current frame and the env is credited with the progress it made
since the last scored frame, `R(frame_t) - R(frame_{t-interval})`; every step also costs
`time_penalty`. Steps between two scored frames get only the time penalty, and the whole
delta lands on the scored step (GAE carries it back to the actions that earned it). That
keeps the reward model off the hot path: one batched, jitted call per interval.
An episode that ends restarts its baseline at the first frame of the next episode, so a
reset (or a curriculum jump) is never credited as progress. RAM milestones are logged,
never rewarded.

PPO is cleanrl/purejaxrl shaped: the rollout runs on the emulator workers with a jitted
policy step, then GAE (a reverse `lax.scan`), the return filter, and all minibatch epochs
happen in one jitted, donated `update(state, batch, key)`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from flax import nnx
from tqdm import tqdm


@dataclass
class Args:
    """PPO with a learned progress reward on VecGameBoy."""

    reward_model: str = "reward_resnet34.pkl"
    """Progress reward checkpoint (kind 'reward') from train_reward.py."""
    pretrained_tokenizer: str | None = None
    """VQ tokenizer checkpoint (pretrained_tokenizer.pkl or pretrained_encoder.pkl) whose
    encoder and codebook the VQ policy sees frames through. None: a fresh encoder."""
    pretrained_dynamics: str | None = None
    """Dynamics checkpoint whose transformer initialises the VQ policy's trunk. None: fresh."""
    rom: str | None = None
    """Game Boy ROM. None: the embedded game EmuQuest."""
    policy: Literal["vq", "vit"] = "vq"
    """'vq': frames -> VQ tokens -> transformer; 'vit': the legacy patch ViT."""
    finetune_encoder: bool = False
    """Train the VQ encoder with the policy (default: frozen, gradients stopped)."""
    iterations: int = 12000
    """PPO iterations (each is one rollout of num_steps x num_envs env steps + one update)."""
    num_envs: int = 16
    """Emulators stepped in parallel."""
    num_workers: int | None = None
    """Emulator worker processes (None: one per CPU core; 0: the serial backend)."""
    frame_skip: int = 30
    """Game Boy frames per env step (a press is held for part of it)."""
    max_episode_steps: int = 2048
    """Env steps before an episode is truncated."""
    num_steps: int = 128
    """Env steps per env per rollout."""
    reward_interval: int = 64
    """Score frames with the reward model every this many env steps."""
    time_penalty: float = 0.001
    """Subtracted from the reward at every env step."""
    reward_scale: float = 1.0
    """Multiplies the progress delta (the reward model's scores have no fixed unit)."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    learning_rate: float = 2.5e-4
    """Adam learning rate."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    update_epochs: int = 4
    """Passes over each rollout."""
    clip_coef: float = 0.1
    """PPO ratio clip."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Global gradient norm clip."""
    return_filter: float = 1.0
    """Train only on the top fraction of episode segments by return (1.0: keep all)."""
    curriculum_prob: float = 0.0
    """Probability that a reset loads a saved progress state instead of power-on."""
    curriculum_capacity: int = 32
    """Saved progress states kept in the curriculum pool."""
    entropy_warn_iters: int = 50
    """Warn when entropy stays above 99% of its maximum for this many iterations."""
    save_every: int = 1000
    """Write checkpoints/policy_<iteration>.pkl every this many iterations."""
    resume: str | None = None
    """Policy checkpoint to continue from (restores params, optimizer, RNG, envs, pool)."""
    out_dir: str = "checkpoints"
    """Where checkpoints and metrics.jsonl go."""
    seed: int = 0
    """Seeds params, sampling and env resets."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Compute dtype (auto: bf16 on GPU, fp32 on CPU); master weights stay fp32."""
    embed_dim: int = 192
    """Policy width when no pretrained checkpoint fixes it (tiny runs: 32)."""
    num_layers: int = 4
    """Policy transformer layers when no dynamics checkpoint fixes it."""
    num_heads: int = 4
    """Policy attention heads when no dynamics checkpoint fixes it."""
    encoder_channels: tuple[int, ...] = (32, 64, 128, 192)
    """Fresh VQ encoder's channels when no tokenizer is given (tiny runs: 8 16 16 16)."""
    codebook_size: int = 512
    """Fresh VQ codebook size when no tokenizer is given."""


# ---------------------------------------------------------------------------
# PPO core: pure functions of arrays shaped (T, N) = (num_steps, num_envs).
# ---------------------------------------------------------------------------


def compute_gae(rewards, values, dones, last_value, gamma: float, gae_lambda: float):
    """Generalized advantage estimation, scanned backwards over time.

    rewards, values, dones: (T, N); dones[t] = 1 when the episode ended at step t (the
    observation after it belongs to a new episode, so nothing is bootstrapped through it).
    last_value: (N,) value of the observation after the last step. Returns (advantages,
    returns), both (T, N)."""

    def backward_step(carry, step):
        next_advantage, next_value = carry
        reward, value, done = step
        not_done = 1.0 - done
        delta = reward + gamma * next_value * not_done - value
        advantage = delta + gamma * gae_lambda * not_done * next_advantage
        return (advantage, value), advantage

    _, advantages = jax.lax.scan(
        backward_step,
        (jnp.zeros_like(last_value), last_value),
        (rewards, values, dones.astype(rewards.dtype)),
        reverse=True,
    )
    return advantages, advantages + values


def episode_segments(dones):
    """Segment id of every step, (T, N) int32: an env's rollout column is cut after each
    done, and segment ids are unique across envs (env n owns ids n*T .. n*T+T-1)."""
    num_steps, num_envs = dones.shape
    # Steps after the k-th done of a column are in that column's segment k.
    starts = jnp.cumsum(dones.astype(jnp.int32), axis=0) - dones.astype(jnp.int32)
    return starts + jnp.arange(num_envs, dtype=jnp.int32)[None, :] * num_steps


def return_filter_mask(rewards, dones, keep_fraction: float):
    """1.0 on the steps of the top `keep_fraction` episode segments by return, else 0.0.

    Segments are the pieces of each env's rollout between episode ends (see
    `episode_segments`); exactly round(keep_fraction * num_segments) of them are kept
    (at least one), ties going to the lower segment id. Returns (mask (T, N), kept
    segments, total segments)."""
    num_steps, num_envs = rewards.shape
    num_ids = num_steps * num_envs
    segment = episode_segments(dones).reshape(-1)
    segment_return = jax.ops.segment_sum(rewards.reshape(-1), segment, num_segments=num_ids)
    segment_len = jax.ops.segment_sum(jnp.ones_like(segment), segment, num_segments=num_ids)
    exists = segment_len > 0
    num_segments = exists.sum()
    num_keep = jnp.maximum(1, jnp.round(keep_fraction * num_segments).astype(jnp.int32))
    # Rank existing segments by return, best first; ids that hold no step rank last.
    order = jnp.argsort(jnp.where(exists, -segment_return, jnp.inf), stable=True)
    rank = jnp.empty_like(order).at[order].set(jnp.arange(num_ids, dtype=order.dtype))
    keep_segment = exists & (rank < num_keep)
    mask = keep_segment[segment].reshape(num_steps, num_envs).astype(jnp.float32)
    return mask, num_keep, num_segments


def categorical_entropy(logits):
    """Entropy in nats of softmax(logits) over the last axis."""
    log_probs = jax.nn.log_softmax(logits)
    return -(jnp.exp(log_probs) * log_probs).sum(-1)


def masked_mean(x, mask):
    return (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def ppo_loss(logits, values, batch, clip_coef: float, vf_coef: float, ent_coef: float):
    """Clipped PPO objective on one minibatch. logits (B, A), values (B,); batch holds
    actions, log_probs (behaviour), advantages, returns and the return-filter mask, all
    (B,). Returns (loss, metrics)."""
    mask = batch["mask"]
    log_probs_all = jax.nn.log_softmax(logits)
    log_probs = jnp.take_along_axis(log_probs_all, batch["actions"][:, None], axis=-1)[:, 0]
    log_ratio = log_probs - batch["log_probs"]
    ratio = jnp.exp(log_ratio)

    advantages = batch["advantages"]
    adv_mean = masked_mean(advantages, mask)
    adv_std = jnp.sqrt(masked_mean((advantages - adv_mean) ** 2, mask))
    advantages = (advantages - adv_mean) / (adv_std + 1e-8)

    policy_loss = masked_mean(
        jnp.maximum(-advantages * ratio, -advantages * jnp.clip(ratio, 1 - clip_coef, 1 + clip_coef)),
        mask,
    )
    value_loss = 0.5 * masked_mean((values - batch["returns"]) ** 2, mask)
    entropy = masked_mean(categorical_entropy(logits), mask)
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    metrics = {
        "losses/policy": policy_loss,
        "losses/value": value_loss,
        "losses/entropy": entropy,
        # (r - 1) - log r: the low-variance KL estimator cleanrl logs.
        "losses/approx_kl": masked_mean((ratio - 1) - log_ratio, mask),
        "losses/clip_frac": masked_mean((jnp.abs(ratio - 1) > clip_coef).astype(jnp.float32), mask),
    }
    return loss, metrics


class PPOState(NamedTuple):
    """What the update donates and returns: trainable params and the optimizer state."""

    params: Any
    opt_state: Any


def make_update(graphdef, frozen, tx, *, num_minibatches: int, update_epochs: int,
                clip_coef: float, vf_coef: float, ent_coef: float):
    """Build the jitted `update(state, batch, key) -> (state, metrics)`.

    graphdef/frozen: the policy as split by `split_policy` (frozen holds the encoder when
    it is not fine-tuned, and non-parameter variables); batch: flat arrays (B, ...) with
    obs uint8, actions, log_probs, advantages, returns, mask. All epochs and minibatches
    run inside one jit; the state's buffers are donated."""

    def minibatch_loss(params, minibatch):
        logits, values = nnx.merge(graphdef, params, frozen)(minibatch["obs"])
        return ppo_loss(logits, values, minibatch, clip_coef, vf_coef, ent_coef)

    grad_fn = jax.value_and_grad(minibatch_loss, has_aux=True)

    def train_minibatch(state: PPOState, minibatch):
        (_, metrics), grads = grad_fn(state.params, minibatch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics["losses/grad_norm"] = optax.global_norm(grads)
        return PPOState(params, opt_state), metrics

    @partial(jax.jit, donate_argnums=0)
    def update(state: PPOState, batch, key):
        batch_size = batch["actions"].shape[0]
        minibatch_size = batch_size // num_minibatches

        def train_epoch(state, epoch_key):
            order = jax.random.permutation(epoch_key, batch_size)[: num_minibatches * minibatch_size]
            minibatches = jax.tree.map(
                lambda x: x[order].reshape(num_minibatches, minibatch_size, *x.shape[1:]), batch
            )
            return jax.lax.scan(train_minibatch, state, minibatches)

        state, metrics = jax.lax.scan(train_epoch, state, jax.random.split(key, update_epochs))
        return state, jax.tree.map(jnp.mean, metrics)

    return update
