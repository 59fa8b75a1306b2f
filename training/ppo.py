"""PPO's arithmetic, cleanrl/purejaxrl shaped: pure functions of (T, N) = (num_steps, num_envs)
arrays. GAE is a reverse `lax.scan`; the return filter keeps the best episode segments; one jitted,
donated `update(state, batch, key)` runs every epoch and minibatch. A policy with memory trains on
whole env columns (sequences of T steps, its memory replayed from the rollout's first step), a
memoryless one on shuffled single steps."""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from training.metrics import Curves, Panel


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


def make_update(
    graphdef,
    frozen,
    tx,
    *,
    num_minibatches: int,
    update_epochs: int,
    clip_coef: float,
    vf_coef: float,
    ent_coef: float,
    sequences: bool = False,
):
    """Build `update(state, batch, key) -> (state, metrics)`: one jitted call that runs all
    epochs and minibatches, with the state's buffers donated.

    graphdef/frozen: the policy as split by `nnx.split(model, trainable_filter(cfg), ...)`
    (frozen holds the encoder when it is not fine-tuned); it is passed to the jitted
    function as an argument, not baked in as a constant. batch: `prepare_batch`'s, with obs (policy
    observations), actions, log_probs, advantages, returns, mask and optionally route progress; flat
    (B, ...) arrays, or with `sequences` (T, N, ...) arrays plus firsts and memory (the rollout's
    (T, N, M) or its first step's (1, N, M)), split into minibatches of whole env columns."""

    def minibatch_loss(params, frozen, minibatch):
        policy = nnx.merge(graphdef, params, frozen)
        progress = minibatch.get("progress")
        if sequences:
            logits, values = policy.unroll(
                minibatch["obs"], minibatch["memory"][0], minibatch["firsts"], progress
            )
            minibatch = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), minibatch)
            logits, values = logits.reshape(-1, logits.shape[-1]), values.reshape(-1)
        else:
            logits, values = policy(minibatch["obs"], progress)
        return ppo_loss(logits, values, minibatch, clip_coef, vf_coef, ent_coef)

    grad_fn = jax.value_and_grad(minibatch_loss, has_aux=True)

    @partial(jax.jit, donate_argnums=0)
    def update_with(state: PPOState, frozen, batch, key):
        axis = 1 if sequences else 0  # what is shuffled: env columns, or single steps
        batch_size = batch["actions"].shape[axis]
        minibatch_size = batch_size // num_minibatches

        def train_minibatch(state: PPOState, minibatch):
            (_, metrics), grads = grad_fn(state.params, frozen, minibatch)
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            metrics["losses/grad_norm"] = optax.tree.norm(grads)
            return PPOState(params, opt_state), metrics

        def split(x, order):
            """x's shuffled rows (or columns) as (num_minibatches, ...) of minibatches."""
            x = jnp.moveaxis(jnp.take(x, order, axis=axis), axis, 0)
            x = x.reshape(num_minibatches, minibatch_size, *x.shape[1:])
            return jnp.moveaxis(x, 1, axis + 1)

        def train_epoch(state, epoch_key):
            order = jax.random.permutation(epoch_key, batch_size)[: num_minibatches * minibatch_size]
            return jax.lax.scan(train_minibatch, state, jax.tree.map(lambda x: split(x, order), batch))

        state, metrics = jax.lax.scan(train_epoch, state, jax.random.split(key, update_epochs))
        return state, jax.tree.map(jnp.mean, metrics)

    return lambda state, batch, key: update_with(state, frozen, batch, key)


def make_policy_step(graphdef):
    """Jitted `policy_step(params, frozen, frames, first, memory, key, progress) -> (observation, action,
    log_prob, value, memory)`: the policy's observation of uint8 frames (B, 144, 160, C) (its tokens when
    the encoder is frozen), a sampled action (B,), its log-probability (B,), the value (B,) and the memory
    (B, M) after this frame, from the memory before it (zeroed where `first` (B,) marks a new episode);
    `progress` (B,) is the route progress a policy with progress bins reads."""

    @jax.jit
    def policy_step(params, frozen, frames, first, memory, key, progress):
        policy = nnx.merge(graphdef, params, frozen)
        observation = policy.observe(frames)
        return (observation, *act(policy, observation, first, memory, key, progress))

    return policy_step


def make_observe_and_act(graphdef):
    """The policy step in two jitted halves, so the frozen encoder's half can be skipped for frames
    whose tokens are known (training/token_cache.py): `observe(params, frozen, frames) -> observation`
    and `act(params, frozen, observation, first, memory, key, progress) -> (action, log_prob, value,
    memory)`."""

    @jax.jit
    def observe(params, frozen, frames):
        return nnx.merge(graphdef, params, frozen).observe(frames)

    @jax.jit
    def act_on(params, frozen, observation, first, memory, key, progress):
        return act(nnx.merge(graphdef, params, frozen), observation, first, memory, key, progress)

    return observe, act_on


def make_burn_in(graphdef, window: int):
    """`burn_in(params, frozen, observations (L, ...), progress (L,)) -> memory (M,)`: the memory the
    policy has after the L <= `window` observations of an episode's frames (and their route progress),
    from an empty one. Shorter sequences are padded in front to `window`, so it compiles once."""

    @jax.jit
    def remember(params, frozen, observations, firsts, progress):
        policy = nnx.merge(graphdef, params, frozen)
        return policy.remember(observations, policy.initial_memory(1), firsts, progress)[0]

    def burn_in(params, frozen, observations, progress):
        length = len(observations)
        if not 0 < length <= window:
            raise ValueError(f"a burn-in replays 1 to {window} observations, got {length}")
        padded = np.zeros((window, 1, *observations.shape[1:]), observations.dtype)
        padded[window - length :, 0] = observations
        firsts = np.zeros((window, 1), bool)
        firsts[window - length] = True  # the memory is zeroed there, so the padding before is ignored
        padded_progress = np.zeros((window, 1), np.float32)
        padded_progress[window - length :, 0] = progress
        return remember(params, frozen, padded, firsts, padded_progress)

    return burn_in


def act(policy, observation, first, memory, key, progress=None):
    """(action (B,) sampled from the policy, its log-probability (B,), the value (B,), memory (B, M))."""
    logits, value, memory = policy.step(observation, memory, first, progress)
    action = jax.random.categorical(key, logits)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=-1)[:, 0]
    return action, log_prob, value, memory


def make_prepare_batch(gamma: float, gae_lambda: float, return_filter: float, sequences: bool = False):
    """Jitted `prepare_batch(batch, last_value, episode_boundary) -> (batch for update, filter stats)`:
    GAE and the return filter on a rollout's (T, N) arrays, flattened to (T*N, ...) for `update`, or
    kept as (T, N) sequences with each step's firsts and the memory before the first step. With
    `episode_boundary` the rollout's last step ends every episode (a checkpoint's rollout)."""

    @partial(jax.jit, static_argnames="episode_boundary")
    def prepare_batch(batch, last_value, episode_boundary: bool):
        dones = batch["dones"].at[-1].set(1.0) if episode_boundary else batch["dones"]
        advantages, returns = compute_gae(
            batch["rewards"], batch["values"], dones, last_value, gamma, gae_lambda
        )
        mask, kept, total = return_filter_mask(batch["rewards"], dones, return_filter)
        prepared = {
            "obs": batch["obs"],
            "actions": batch["actions"],
            "log_probs": batch["log_probs"],
            "advantages": advantages,
            "returns": returns,
            "mask": mask,
            "progress": batch["progress"],
        }
        if sequences:
            # The update replays memory from each column's first step; (1, N, M) keeps the env axis at 1.
            prepared |= {"firsts": batch["firsts"], "memory": batch["memory"][:1]}
        else:
            prepared = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), prepared)
        return prepared, {"filter/kept_segments": kept, "filter/segments": total}

    return prepare_batch


# What metrics.jsonl's PPO records are drawn as (training_curves.png, and evaluate_policy.py's plot).
CURVES = {
    "ppo": Curves(
        "env_steps",
        (
            Panel("milestones", ("rollout/milestones_max", "episode/milestones")),
            Panel(
                "title, intro and entropy",
                ("episode/title_escape_rate", "episode/intro_done_rate", "policy/entropy_fraction"),
            ),
            Panel("learned return", ("episode/return",)),
        ),
    )
}
