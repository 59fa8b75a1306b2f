"""Self-imitation learning (Oh et al., 2018) on the best episodes played from power-on.

PPO uses each rollout once; an episode from power-on that got further than usual along the route is
rare and is then forgotten. `SelfImitation` keeps the `capacity` power-on episodes with the highest
return (the learned reward's progress over the episode), and `make_self_imitation_update` takes one
gradient step per PPO iteration on a few of them, replayed whole from an empty memory as the
evaluation plays: the policy is pushed toward an episode's actions, and the value up toward its
discounted return, only where that return is above the value (max(G - V, 0)), so a kept episode
stops teaching once the policy does as well.

An episode is from power-on when its first step zeroed the memory (`firsts`); episodes reset onto a
curriculum state start with the state's stored memory and are not kept. Episodes are recorded from
the rollouts' (T, N) arrays, so they span rollouts; a checkpoint's rollout ends every episode, so a
checkpoint holds no half-recorded one.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from training.ppo import PPOState, masked_mean

VALUE_COEF = 0.01  # the paper's weight of the value term, whose errors are squared returns


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = sum_k gamma^k r_{t+k} to the episode's end, for rewards (L,); no bootstrap."""
    returns = np.zeros(len(rewards), np.float32)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


class SelfImitation:
    """The `capacity` best episodes from power-on by return, recorded from PPO's rollouts."""

    FIELDS = ("obs", "actions", "progress")  # what an episode keeps per step, beside its returns

    def __init__(self, capacity: int, num_envs: int, max_steps: int, gamma: float):
        self.capacity, self.max_steps, self.gamma = capacity, max_steps, gamma
        self.open: list[list[dict] | None] = [None] * num_envs  # each env's episode so far, None: not kept
        self.starting = np.ones(num_envs, bool)  # the env's next step starts an episode
        self.episodes: list[dict] = []  # obs, actions, progress, returns (L, ...) and the total return

    def __len__(self) -> int:
        return len(self.episodes)

    def add(self, batch: dict, episode_boundary: bool = False):
        """Record a rollout: batch holds (T, N) obs, actions, progress, rewards, dones and firsts. With
        `episode_boundary` (a checkpoint's rollout) its last step ends every episode."""
        steps = {name: np.asarray(batch[name]) for name in (*self.FIELDS, "rewards", "dones", "firsts")}
        dones = steps["dones"] > 0
        if episode_boundary:
            dones[-1] = True
        for env in range(dones.shape[1]):
            ends = np.flatnonzero(dones[:, env]) + 1
            for begin, end in zip(np.r_[0, ends], np.r_[ends, len(dones)]):
                if begin == end:
                    continue
                if self.starting[env]:
                    self.open[env] = [] if steps["firsts"][begin, env] else None
                if self.open[env] is not None:
                    self.open[env].append({name: steps[name][begin:end, env] for name in steps})
                self.starting[env] = dones[end - 1, env]
                if self.starting[env] and self.open[env] is not None:
                    self._keep(self.open[env])
                    self.open[env] = None

    def _keep(self, pieces: list[dict]):
        episode = {name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]}
        if len(episode["actions"]) > self.max_steps:
            raise ValueError(f"an episode of {len(episode['actions'])} steps: more than {self.max_steps}")
        total = float(episode["rewards"].sum())
        kept = {name: episode[name] for name in self.FIELDS}
        kept |= {"returns": discounted_returns(episode["rewards"], self.gamma), "total": total}
        if len(self.episodes) < self.capacity:
            self.episodes.append(kept)
            return
        worst = min(range(len(self.episodes)), key=lambda i: self.episodes[i]["total"])
        if total > self.episodes[worst]["total"]:
            self.episodes[worst] = kept

    def sample(self, key, batch_size: int) -> dict:
        """`batch_size` kept episodes drawn uniformly, as (max_steps, B, ...) arrays padded after each
        episode's end, with firsts (the memory starts empty) and `valid` (1.0 on the episode's steps)."""
        chosen = np.asarray(jax.random.randint(key, (batch_size,), 0, len(self.episodes)))
        batch = {}
        for name in (*self.FIELDS, "returns"):
            example = self.episodes[0][name]
            batch[name] = np.zeros((self.max_steps, batch_size, *example.shape[1:]), example.dtype)
        batch["valid"] = np.zeros((self.max_steps, batch_size), np.float32)
        for column, index in enumerate(chosen):
            episode = self.episodes[index]
            length = len(episode["actions"])
            for name in (*self.FIELDS, "returns"):
                batch[name][:length, column] = episode[name]
            batch["valid"][:length, column] = 1.0
        batch["firsts"] = np.zeros((self.max_steps, batch_size), bool)
        batch["firsts"][0] = True
        return batch

    def stats(self) -> dict:
        totals = [episode["total"] for episode in self.episodes]
        return {
            "self_imitation/episodes": len(totals),
            "self_imitation/best_return": max(totals) if totals else None,
            "self_imitation/worst_return": min(totals) if totals else None,
        }

    def state_dict(self) -> dict:
        """The kept episodes. An episode still being recorded is left out: a resumed run, like the run after
        a checkpoint, starts every env on a new episode."""
        return {"episodes": self.episodes}

    def load_state_dict(self, state: dict):
        self.episodes = list(state["episodes"])
        self.open = [None] * len(self.open)
        self.starting[:] = True


def self_imitation_loss(logits, values, batch, value_coef: float = VALUE_COEF):
    """SIL's loss on (L, B) steps: -log pi(a) (G - V)+ for the policy, (G - V)+^2 / 2 for the value,
    averaged over the valid steps. logits (L, B, A), values (L, B). Returns (loss, metrics)."""
    mask = batch["valid"]
    log_probs = jnp.take_along_axis(jax.nn.log_softmax(logits), batch["actions"][..., None], axis=-1)[..., 0]
    advantage = jnp.maximum(batch["returns"] - values, 0.0)
    policy_loss = masked_mean(-log_probs * jax.lax.stop_gradient(advantage), mask)
    value_loss = 0.5 * masked_mean(advantage**2, mask)
    metrics = {
        "self_imitation/policy_loss": policy_loss,
        "self_imitation/value_loss": value_loss,
        "self_imitation/above_value": masked_mean((advantage > 0).astype(jnp.float32), mask),
    }
    return policy_loss + value_coef * value_loss, metrics


def make_self_imitation_update(graphdef, frozen, tx, coef: float):
    """Jitted `update(state, batch) -> (state, metrics)`: one donated gradient step on `coef` times the
    SIL loss of `SelfImitation.sample`'s batch, the policy unrolled over it from an empty memory."""

    def loss_of(params, frozen, batch):
        policy = nnx.merge(graphdef, params, frozen)
        batch_size = batch["actions"].shape[1]
        logits, values = policy.unroll(
            batch["obs"], policy.initial_memory(batch_size), batch["firsts"], batch["progress"]
        )
        loss, metrics = self_imitation_loss(logits, values, batch)
        return coef * loss, metrics

    grad_fn = jax.value_and_grad(loss_of, has_aux=True)

    @partial(jax.jit, donate_argnums=0)
    def update_with(state: PPOState, frozen, batch):
        (_, metrics), grads = grad_fn(state.params, frozen, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        metrics["self_imitation/grad_norm"] = optax.tree.norm(grads)
        return PPOState(optax.apply_updates(state.params, updates), opt_state), metrics

    return lambda state, batch: update_with(state, frozen, batch)
