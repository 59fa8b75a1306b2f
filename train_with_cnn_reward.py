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
`--progress-baseline best` credits only gains over the episode's best score so far: leaving a
state the reward model overrates then costs nothing, where the plain delta charges the drop
and so makes that state a trap.
An episode's first scored frame is its baseline and earns nothing, so a reset (or a
curriculum jump) is never credited as progress, and neither is the power-on frame: a blank
screen that no speedrun dwells on and the reward model scores arbitrarily. RAM milestones are
logged, never rewarded.
A reward model trained with --seen-tokens also reads each episode's bag of seen tokens. Each env's
bag is updated every env step (a text box may be up for fewer steps than --reward-interval), from
the policy's own tokens when the policy sees frames through the reward's encoder, and is stored
with the env's curriculum states, so an episode started from one keeps what led up to it.

PPO is cleanrl/purejaxrl shaped: the rollout runs on the emulator workers with a jitted
policy step, then GAE (a reverse `lax.scan`), the return filter, and all minibatch epochs
happen in one jitted, donated `update(state, batch, key)`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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

from envs.curriculum import CurriculumPool
from envs.games import EMUQUEST_ROM
from envs.rom import RomError
from envs.vec_gameboy import VecGameBoy
from models.build import abstract, build
from models.checkpoint import (
    CheckpointError,
    config_from_dict,
    load_checkpoint,
    params_of,
    restore_params,
    restore_tree,
    save_checkpoint,
)
from models.policy import PolicyConfig, make_policy, trainable_filter
from models.quantizers import QuantizerConfig
from models.reward import RewardModel, load_reward, mark_seen
from models.sharding import compute_dtype
from models.transformer import TransformerConfig, load_dynamics
from models.vqvae import VQVAEConfig, load_encoder


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
    env_groups: int = 2
    """Split the envs into this many groups that step in turn, so one group's emulators run
    while the policy computes the next group's actions (at most --num-envs; 1: no overlap)."""
    frame_skip: int = 30
    """Game Boy frames per env step (a press is held for part of it)."""
    press_frames: int = 8
    """Frames a button is held at the start of a step (< frame_skip)."""
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
    progress_baseline: Literal["last", "best"] = "last"
    """What progress is measured from. last: the last scored frame, R(now) - R(then) (the seed's
    delta). best: the episode's best score so far, credited only when beaten, so a detour through
    lower-scored states costs nothing. With last, leaving a state the reward model overrates (an
    open dialogue box, say) is a negative reward, which can hold the agent there."""
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
    log_every: int = 10
    """Print one summary line every this many iterations (metrics.jsonl gets every one)."""
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
    """Build `update(state, batch, key) -> (state, metrics)`: one jitted call that runs all
    epochs and minibatches, with the state's buffers donated.

    graphdef/frozen: the policy as split by `nnx.split(model, trainable_filter(cfg), ...)`
    (frozen holds the encoder when it is not fine-tuned); it is passed to the jitted
    function as an argument, not baked in as a constant. batch: flat arrays (B, ...) with
    obs (policy observations), actions, log_probs, advantages, returns, mask."""

    def minibatch_loss(params, frozen, minibatch):
        logits, values = nnx.merge(graphdef, params, frozen)(minibatch["obs"])
        return ppo_loss(logits, values, minibatch, clip_coef, vf_coef, ent_coef)

    grad_fn = jax.value_and_grad(minibatch_loss, has_aux=True)

    @partial(jax.jit, donate_argnums=0)
    def update_with(state: PPOState, frozen, batch, key):
        batch_size = batch["actions"].shape[0]
        minibatch_size = batch_size // num_minibatches

        def train_minibatch(state: PPOState, minibatch):
            (_, metrics), grads = grad_fn(state.params, frozen, minibatch)
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            metrics["losses/grad_norm"] = optax.tree.norm(grads)
            return PPOState(params, opt_state), metrics

        def train_epoch(state, epoch_key):
            order = jax.random.permutation(epoch_key, batch_size)[: num_minibatches * minibatch_size]
            minibatches = jax.tree.map(
                lambda x: x[order].reshape(num_minibatches, minibatch_size, *x.shape[1:]), batch
            )
            return jax.lax.scan(train_minibatch, state, minibatches)

        state, metrics = jax.lax.scan(train_epoch, state, jax.random.split(key, update_epochs))
        return state, jax.tree.map(jnp.mean, metrics)

    return lambda state, batch, key: update_with(state, frozen, batch, key)


# ---------------------------------------------------------------------------
# Reward: progress deltas of the learned score, scored every `interval` steps.
# ---------------------------------------------------------------------------


class LearnedProgress:
    """A 'reward' checkpoint as jitted host functions on numpy arrays (frames uint8 (N, 144, 160, 3)):
    `score(frames) -> (N,)` for a one-frame model; for a model that reads seen-token bags
    (`bag_size` > 0), `tokens(frames) -> (N, 9, 10)` and `score_tokens(tokens, bags) -> (N,)`."""

    def __init__(self, model: RewardModel):
        self.cfg = model.cfg
        self.bag_size = model.cfg.bag_size
        self._encoder_params = params_of(model.encoder) if model.cfg.backbone == "vq" else None
        graphdef, self._state = nnx.split(model)
        self._score = jax.jit(lambda state, frames: nnx.merge(graphdef, state).score(frames))
        self._tokens = jax.jit(lambda state, frames: nnx.merge(graphdef, state).observe(frames))
        self._score_tokens = jax.jit(lambda state, tokens, bags: nnx.merge(graphdef, state).score_observations(tokens, bags))

    def score(self, frames) -> np.ndarray:
        return np.asarray(self._score(self._state, frames), np.float32)

    def tokens(self, frames) -> np.ndarray:
        return np.asarray(self._tokens(self._state, frames))

    def score_tokens(self, tokens, bags) -> np.ndarray:
        return np.asarray(self._score_tokens(self._state, tokens, bags), np.float32)

    def reads_tokens_of(self, policy: nnx.Module) -> bool:
        """Whether the policy's observations are this model's tokens (a frozen VQ policy with the
        same encoder and config), so the bags can take them instead of encoding frames twice."""
        cfg = policy.cfg
        if self._encoder_params is None or cfg.kind != "vq" or cfg.stores_frames or cfg.encoder != self.cfg.tokenizer:
            return False
        mine, theirs = self._encoder_params, params_of(policy.vq)
        return (jax.tree.structure(mine) == jax.tree.structure(theirs)
                and all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs))))


class ProgressReward:
    """Per-step rewards from frames: `scale * (R(now) - baseline) - time_penalty` on every
    `interval`-th env step, `-time_penalty` on the steps between. The baseline is R of the last
    scored frame ("last"), or the episode's best R so far with gains clipped at 0 ("best").

    `model` is a LearnedProgress (or anything with its `bag_size` and `score`, and for bags
    `tokens` and `score_tokens`). With bags, each env's bag of seen tokens takes every frame.
    Each episode's first scored frame sets its env's baseline and earns nothing: not the reset
    frame itself, which after power-on is a blank screen the reward model has barely seen (it
    once scored it above the title, the intro and the whole house, so the "best" baseline
    paid nothing until the town). Its state is plain data for checkpoints."""

    def __init__(self, model, num_envs: int, interval: int, time_penalty: float, scale: float = 1.0,
                 baseline: str = "last"):
        if baseline not in ("last", "best"):
            raise ValueError(f'progress baseline must be "last" or "best", got {baseline!r}')
        self.model = model
        self.from_best = baseline == "best"
        self.interval = interval
        self.time_penalty = time_penalty
        self.scale = scale
        self.baseline = np.full(num_envs, np.nan, np.float32)  # per env: last scored R, or episode best; NaN: none yet
        self.steps = 0  # env steps taken since training started
        self.bags = np.zeros((num_envs, model.bag_size), np.uint8)  # per env: tokens seen this episode

    def start(self, obs, start_bags: dict[int, np.ndarray] | None = None):
        """New episodes in every env (after `env.reset`), showing `obs`: forget every baseline (the
        next scored frame sets it) and bag; `start_bags` {env: bag} for envs on curriculum states."""
        self.baseline = np.full_like(self.baseline, np.nan)
        self.bags[:] = 0
        self._see(obs, None, np.ones(len(self.bags), bool), start_bags or {})

    def _see(self, obs, tokens, restarted, start_bags):
        """Adds the frames' tokens to the bags (restarted envs start from empty or `start_bags`)."""
        if not self.model.bag_size:
            return None
        self.bags[restarted] = 0
        for env, bag in start_bags.items():
            if bag is not None:
                self.bags[env] = bag
        tokens = self.model.tokens(obs) if tokens is None else np.asarray(tokens)
        mark_seen(self.bags, tokens)
        return tokens

    def bag(self, env: int) -> np.ndarray | None:
        """A copy of env's bag of seen tokens (None when the model reads one frame)."""
        return self.bags[env].copy() if self.model.bag_size else None

    def __call__(self, obs, dones, tokens=None, start_bags: dict[int, np.ndarray] | None = None):
        """Reward for the step that produced `obs` (with `dones` true where an episode
        ended and `obs` is already the next episode's first frame). `tokens`: the frames' tokens
        if the caller has them (bags only); `start_bags` {env: bag} for done envs that restarted
        on a curriculum state. Returns (rewards (N,), scores (N,) on scored steps else None)."""
        self.steps += 1
        tokens = self._see(obs, tokens, dones, start_bags or {})
        rewards = np.full(dones.shape, -self.time_penalty, np.float32)
        if self.steps % self.interval:
            self.baseline[dones] = np.nan
            return rewards, None
        scores = self.model.score_tokens(tokens, self.bags) if self.model.bag_size else self.model.score(obs)
        known = ~np.isnan(self.baseline) & ~dones
        gain = np.where(known, scores - self.baseline, 0.0)
        if self.from_best:
            gain = np.maximum(gain, 0.0)
        kept = np.fmax(self.baseline, scores) if self.from_best else scores  # fmax: a NaN baseline yields the score
        self.baseline = np.where(dones, np.nan, kept).astype(np.float32)
        rewards += self.scale * gain
        return rewards, scores

    def state_dict(self) -> dict:
        return {"baseline": self.baseline.copy(), "steps": self.steps, "bags": self.bags.copy()}

    def load_state_dict(self, state: dict):
        self.baseline = np.asarray(state["baseline"], np.float32).copy()
        self.steps = int(state["steps"])
        if state.get("bags") is not None:
            self.bags = np.asarray(state["bags"], np.uint8).copy()


class EntropyWatch:
    """Entropy as a fraction of its maximum log(num_actions); warns once per streak when
    it stays above `threshold` for `patience` iterations (the seed sat at 99.9%)."""

    def __init__(self, num_actions: int, patience: int, threshold: float = 0.99):
        self.max_entropy = math.log(num_actions)
        self.patience = patience
        self.threshold = threshold
        self.streak = 0  # consecutive iterations above threshold

    def __call__(self, entropy: float) -> tuple[float, str | None]:
        fraction = entropy / self.max_entropy
        self.streak = self.streak + 1 if fraction > self.threshold else 0
        warning = None
        if self.streak == self.patience:
            warning = (
                f"warning: policy entropy has stayed above {self.threshold:.0%} of its maximum for "
                f"{self.patience} iterations (the policy is still uniform): check the reward "
                f"scale (--reward-scale) or lower --ent-coef"
            )
        return fraction, warning


# ---------------------------------------------------------------------------
# Rollouts on VecGameBoy.
# ---------------------------------------------------------------------------

EPISODE_WINDOW = 100  # recent episodes averaged for the episode/* metrics


class EnvGroup:
    """One VecGameBoy and what the rollout tracks for its envs. Several groups let one
    group's emulators step (in a thread, waiting on its worker processes) while the policy
    runs on another group's frames."""

    def __init__(self, env, first_env: int, progress: ProgressReward):
        self.env = env
        self.first_env = first_env  # global id of this group's env 0
        self.progress = progress
        self.obs = None  # (n, 144, 160, 3) uint8, our own copy of the latest frames
        self.episode_return = np.zeros(env.num_envs, np.float32)


class Runner:
    """The host side of training: the env groups, the reward, the curriculum and episode
    stats. Everything it carries across iterations is in `state_dict()`; resume points are
    episode boundaries (`restart`), so no emulator state has to be saved."""

    def __init__(self, groups: list[EnvGroup], pool, seed: int):
        self.groups = groups
        self.num_envs = sum(group.env.num_envs for group in groups)
        self.pool = pool  # CurriculumPool shared by every group, or None
        self.seed = seed
        self.best_score = -np.inf  # highest learned score any env reached
        self.episodes: list[dict] = []  # the last EPISODE_WINDOW episodes' stats
        self.stepper = ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="env-group")

    @property
    def obs(self) -> np.ndarray:
        return np.concatenate([group.obs for group in self.groups])

    def restart(self, iteration: int):
        """Start every env on a fresh episode (power-on or a curriculum state): at the start of
        training, after each checkpoint and on --resume, so both runs continue identically."""
        for g, group in enumerate(self.groups):
            obs, info = group.env.reset(seed=(self.seed * 1_000_003 + iteration) * len(self.groups) + g)
            group.obs = obs.copy()  # the env overwrites its buffer in place on the next step
            group.progress.start(group.obs, self._start_bags(info))
            group.episode_return[:] = 0

    def _start_bags(self, info) -> dict[int, np.ndarray]:
        """{env: bag of seen tokens} of the envs that just restarted on a curriculum state."""
        return {env: self.pool.payloads[index] for env, index in info["pool_starts"].items()}

    def rollout(self, policy_step, key, num_steps: int, share_tokens: bool = False):
        """Step every env num_steps times. `policy_step(frames, key) -> (observation, action,
        log_prob, value)` is the jitted policy. Returns (batch of (T, N, ...) arrays, the value
        (N,) of the frames after the last step, stats). With `share_tokens` the reward's bags of
        seen tokens take the policy's observations of each frame (its VQ tokens).

        Groups are pipelined: group g's env step is submitted to a thread, and the policy
        runs on group g+1 while it steps. Results are consumed in a fixed order, so the
        outcome does not depend on timing."""
        num_groups = len(self.groups)
        columns = [{name: [] for name in ("obs", "actions", "log_probs", "values", "rewards", "dones")}
                   for _ in self.groups]
        milestones_max = np.zeros(self.num_envs, np.int32)
        new_states, ended, last_values = [], [], [None] * num_groups
        seconds = {"policy": 0.0, "env_wait": 0.0, "reward": 0.0}  # where the rollout's time goes
        pending = [None] * num_groups  # each group's env step in flight

        def collect(g):
            """Group g's step result, once its emulators are done; its frames become group.obs."""
            clock = time.perf_counter()
            obs, _, terminated, truncated, info = pending[g].result()
            self.groups[g].obs = obs.copy()
            seconds["env_wait"] += time.perf_counter() - clock
            return terminated | truncated, info

        def finish_step(g, done, info, observation):
            """Group g's step after the policy has seen its new frames (`observation`): rewards,
            episode stats, curriculum candidates."""
            group = self.groups[g]
            clock = time.perf_counter()
            reward, scores = group.progress(group.obs, done, observation if share_tokens else None, self._start_bags(info))
            seconds["reward"] += time.perf_counter() - clock
            columns[g]["rewards"].append(reward)
            columns[g]["dones"].append(done.astype(np.float32))
            span = slice(group.first_env, group.first_env + group.env.num_envs)
            milestones_max[span] = np.maximum(milestones_max[span], info["milestones"])
            group.episode_return += reward
            for episode in info["episodes"]:
                local = episode["env_id"]
                ended.append({**episode, "env_id": group.first_env + local,
                              "return": float(group.episode_return[local])})
            group.episode_return[done] = 0
            if scores is not None and self.pool is not None:
                # A done env shows its next episode's first frame: a reset, not a state it reached.
                new_states.extend(self._new_high(group, np.where(done, -np.inf, scores)))

        for t in range(num_steps + 1):  # the last pass only reads the value after the last step
            for g, group in enumerate(self.groups):
                step = collect(g) if pending[g] is not None else None
                clock = time.perf_counter()
                observation, action, log_prob, value = policy_step(
                    group.obs, jax.random.fold_in(key, t * num_groups + g)
                )
                action = np.asarray(action)  # waits for the policy
                seconds["policy"] += time.perf_counter() - clock
                if step is not None:
                    finish_step(g, *step, observation)
                if t == num_steps:
                    last_values[g] = value
                    continue
                for name, value_ in (("obs", observation), ("actions", action), ("log_probs", log_prob), ("values", value)):
                    columns[g][name].append(value_)
                pending[g] = self.stepper.submit(group.env.step, action)
        # Pool additions wait until no group is stepping: resets read the pool.
        for state, score, bag in new_states:
            self.pool.add(state, score, payload=bag)
        self.episodes = (self.episodes + ended)[-EPISODE_WINDOW:]

        def stack(name):  # (T, N, ...) with the groups side by side along the env axis
            return jnp.concatenate([jnp.stack([jnp.asarray(x) for x in column[name]]) for column in columns], axis=1)

        batch = {name: stack(name) for name in columns[0]}
        last_value = jnp.concatenate([jnp.asarray(value) for value in last_values])
        stats = {
            "rollout/reward_mean": float(batch["rewards"].mean()),
            "rollout/episodes_ended": len(ended),
            "rollout/milestones_max": int(milestones_max.max()),
            "rollout/milestones_mean": float(milestones_max.mean()),
            "curriculum/saved_states": len(new_states),
            **{f"charts/{name}_seconds": value for name, value in seconds.items()},
        }
        return batch, last_value, stats

    def _new_high(self, group: EnvGroup, scores) -> list[tuple[bytes, float, np.ndarray | None]]:
        """The state of the group's best env when it beats every score seen so far (states
        cost 20 ms each, so only new highs are kept), as [(state, score, its bag of seen
        tokens or None)] or []."""
        best_env = int(np.argmax(scores))
        if scores[best_env] <= self.best_score:
            return []
        self.best_score = float(scores[best_env])
        [state] = group.env.save_states([best_env])
        return [(state, self.best_score, group.progress.bag(best_env))]

    def episode_stats(self) -> dict:
        """Means over the recent-episode window (title escape rate, milestones, ...)."""
        if not self.episodes:
            return {}
        mean = lambda name: float(np.mean([e[name] for e in self.episodes]))  # noqa: E731
        return {
            "episode/return": mean("return"),
            "episode/length": mean("length"),
            "episode/milestones": mean("milestones"),
            "episode/maps_visited": mean("maps_visited"),
            "episode/title_escape_rate": mean("left_title"),
            "episode/count": len(self.episodes),
        }

    def state_dict(self) -> dict:
        return {
            "best_score": float(self.best_score),
            "episodes": [dict(e) for e in self.episodes],
            "progress": [group.progress.state_dict() for group in self.groups],
            "pool": None if self.pool is None else self._pool_as_arrays(),
        }

    def _pool_as_arrays(self) -> dict:
        """The pool as plain data a checkpoint accepts: each state's bytes as a uint8 array."""
        pool = self.pool.to_dict()
        pool["states"] = [np.frombuffer(state, np.uint8) for state in pool["states"]]
        return pool  # payloads: bags (uint8 arrays) or None

    def load_state_dict(self, state: dict):
        self.best_score = float(state["best_score"])
        self.episodes = [dict(e) for e in state["episodes"]]
        if len(state["progress"]) != len(self.groups):
            raise SystemExit(f"--resume: the checkpoint has {len(state['progress'])} env groups, --env-groups is {len(self.groups)}")
        for group, progress in zip(self.groups, state["progress"]):
            group.progress.load_state_dict(progress)
        if self.pool is not None and state["pool"] is not None:
            pool = {**state["pool"], "states": [np.asarray(s, np.uint8).tobytes() for s in state["pool"]["states"]]}
            restored = CurriculumPool.from_dict(pool)
            self.pool.states, self.pool.scores, self.pool.payloads = restored.states, restored.scores, restored.payloads

    def close(self):
        self.stepper.shutdown(wait=True)
        for group in self.groups:
            group.env.close()


# ---------------------------------------------------------------------------
# Models from checkpoints.
# ---------------------------------------------------------------------------


def load_progress(path: str) -> LearnedProgress:
    """The reward model of a 'reward' checkpoint; a file of another kind exits with one line."""
    try:
        return LearnedProgress(load_reward(path))
    except CheckpointError as err:
        raise SystemExit(f"--reward-model: {err} (train one with train_reward.py)") from None


def load_or_exit(loader, path: str, flag: str):
    try:
        return loader(path)
    except CheckpointError as err:
        raise SystemExit(f"{flag}: {err}") from None


def policy_config_from_args(args: Args, num_actions: int):
    """PolicyConfig plus the pretrained modules to copy in: (config, encoder or None,
    dynamics transformer or None). Pretrained checkpoints fix their parts' sizes."""
    dtype = str(compute_dtype(args.dtype))
    encoder = dynamics = None
    if args.pretrained_tokenizer and args.policy == "vit":
        print("note: --pretrained-tokenizer is not used by the ViT policy (it reads pixels)")
    if args.pretrained_tokenizer and args.policy == "vq":
        encoder = load_or_exit(load_encoder, args.pretrained_tokenizer, "--pretrained-tokenizer")
        encoder_cfg = dataclasses.replace(encoder.cfg, dtype=dtype)
    else:
        encoder_cfg = VQVAEConfig(
            embed_dim=args.embed_dim,
            encoder_channels=tuple(args.encoder_channels),
            quantizer=QuantizerConfig(codebook_size=args.codebook_size),
            dtype=dtype,
        )
    if args.pretrained_dynamics:
        dynamics = load_or_exit(load_dynamics, args.pretrained_dynamics, "--pretrained-dynamics")
        transformer_cfg = dataclasses.replace(dynamics.cfg, dtype=dtype)
        if args.policy == "vq" and transformer_cfg.vocab_size != encoder_cfg.vocab_size:
            raise SystemExit(
                f"--pretrained-dynamics: {args.pretrained_dynamics} reads {transformer_cfg.vocab_size} tokens "
                f"but the tokenizer has {encoder_cfg.vocab_size} codes: pass the dynamics model trained "
                f"on this tokenizer (pretrain_visual.py --stage 1b --tokenizer ...)"
            )
    else:
        transformer_cfg = TransformerConfig(
            vocab_size=encoder_cfg.vocab_size,
            embed_dim=args.embed_dim,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            dtype=dtype,
        )
    cfg = PolicyConfig(
        kind=args.policy,
        num_actions=num_actions,
        encoder=encoder_cfg,
        transformer=transformer_cfg,
        finetune_encoder=args.finetune_encoder,
    )
    return cfg, encoder, dynamics


def copy_params(target: nnx.Module, source: nnx.Module, source_name: str):
    """Copy every parameter of `source` into the same path of `target` (which may hold more,
    e.g. an input projection the pretrained model lacks); shapes are checked."""
    state = nnx.state(target, nnx.Param)
    merged = nnx.to_pure_dict(state)

    def overlay(into: dict, values: dict, where: str):
        for name, value in values.items():
            if name not in into:
                raise SystemExit(f"{source_name}: parameter {where}/{name} does not exist in the policy")
            if isinstance(value, dict):
                overlay(into[name], value, f"{where}/{name}")
            elif into[name].shape != value.shape:
                raise SystemExit(f"{source_name}: {where}/{name} has shape {value.shape}, policy has {into[name].shape}")
            else:
                into[name] = value

    overlay(merged, params_of(source), "")
    nnx.replace_by_pure_dict(state, merged)
    nnx.update(target, state)


# ---------------------------------------------------------------------------
# Training.
# ---------------------------------------------------------------------------


def check_args(args: Args):
    problems = []
    if args.num_envs < 1 or args.env_groups < 1:
        problems.append("--num-envs and --env-groups must be >= 1")
    if not 0.0 < args.return_filter <= 1.0:
        problems.append("--return-filter is the kept fraction, in (0, 1]")
    if not 0.0 <= args.curriculum_prob <= 1.0:
        problems.append("--curriculum-prob must be in [0, 1]")
    if args.reward_interval < 1 or args.save_every < 1 or args.iterations < 0:
        problems.append("--reward-interval and --save-every must be >= 1, --iterations >= 0")
    if (args.num_steps * args.num_envs) % args.num_minibatches:
        problems.append(
            f"--num-minibatches {args.num_minibatches} must divide num_steps x num_envs = "
            f"{args.num_steps * args.num_envs}"
        )
    if args.rom is not None and not Path(args.rom).is_file():
        problems.append(f"--rom {args.rom} not found")
    if problems:
        raise SystemExit("; ".join(problems))


def save_policy(path: Path, *, model, policy_cfg, args, state: PPOState, key, iteration, runner, watch):
    """Atomic policy checkpoint: bf16 params for evaluation, plus the fp32 train_state that
    --resume needs (all params, optimizer, RNG, counters, curriculum pool, episode window)."""
    train_state = {
        "params": params_of(model),
        "opt_state": jax.tree.leaves(state.opt_state),  # rebuilt with restore_tree
        "key": np.asarray(key),
        "iteration": iteration,
        "entropy_streak": watch.streak,
        "runner": runner.state_dict(),
    }
    config = {"policy": dataclasses.asdict(policy_cfg), "args": dataclasses.asdict(args)}
    save_checkpoint(path, kind="policy", config=config, params=params_of(model), step=iteration, train_state=train_state)


def load_policy(path) -> tuple[nnx.Module, PolicyConfig, dict]:
    """(policy with its fp32 weights, its config, the checkpoint) from a 'policy' checkpoint."""
    ckpt = load_checkpoint(path, "policy")
    cfg = config_from_dict(PolicyConfig, ckpt["config"]["policy"])
    model = abstract(lambda: make_policy(cfg, nnx.Rngs(0)))
    weights = ckpt["params"] if ckpt["train_state"] is None else ckpt["train_state"]["params"]
    return restore_params(model, weights, source=str(path)), cfg, ckpt


def keep_metrics_up_to(path: Path, iteration: int):
    """On resume, drop metrics logged after the checkpoint (they will be logged again)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["iteration"] <= iteration]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(path)


def main(args: Args) -> list[dict]:
    """Train; returns the per-iteration metrics of this invocation (also in metrics.jsonl)."""
    check_args(args)
    out_dir = Path(args.out_dir)
    rom = args.rom or str(EMUQUEST_ROM)
    progress = load_progress(args.reward_model)
    key = jax.random.PRNGKey(args.seed)
    runner = make_runner(args, rom, progress)
    num_actions = runner.groups[0].env.num_actions
    try:
        return train(args, runner, num_actions, key, out_dir)
    finally:
        runner.close()


def make_runner(args: Args, rom: str, progress: LearnedProgress) -> Runner:
    """--env-groups VecGameBoys splitting --num-envs (and the worker processes) between them."""
    pool = CurriculumPool(args.curriculum_capacity) if args.curriculum_prob > 0 else None
    serial = args.num_workers == 0
    num_workers = args.num_workers or len(os.sched_getaffinity(0))
    num_groups = min(args.env_groups, args.num_envs)
    env_sizes = [len(part) for part in np.array_split(np.arange(args.num_envs), num_groups)]
    worker_counts = [len(part) for part in np.array_split(np.arange(max(num_workers, num_groups)), num_groups)]
    groups, first_env = [], 0
    try:
        for size, workers in zip(env_sizes, worker_counts):
            env = VecGameBoy(
                rom,
                num_envs=size,
                num_workers=workers,
                frame_skip=args.frame_skip,
                press_frames=args.press_frames,
                max_steps=args.max_episode_steps,
                backend="serial" if serial else "process",
                curriculum=pool,
                pool_prob=args.curriculum_prob,
            )
            groups.append(EnvGroup(env, first_env, ProgressReward(progress, size, args.reward_interval, args.time_penalty,
                                                                  args.reward_scale, args.progress_baseline)))
            first_env += size
    except (RomError, ValueError) as err:
        for group in groups:
            group.env.close()
        raise SystemExit(f"--rom / env settings: {err}") from None
    return Runner(groups, pool, args.seed)


def train(args: Args, runner: Runner, num_actions: int, key, out_dir: Path):
    """The PPO loop. Returns this invocation's per-iteration records (also in metrics.jsonl)."""
    if args.resume:
        try:
            model, policy_cfg, ckpt = load_policy(args.resume)
        except CheckpointError as err:
            raise SystemExit(f"--resume: {err}") from None
        if ckpt["train_state"] is None:
            raise SystemExit(f"--resume: {args.resume} holds no train_state to continue from")
        if policy_cfg.num_actions != num_actions:
            raise SystemExit(f"--resume: {args.resume} has {policy_cfg.num_actions} actions, the env {num_actions}")
    else:
        policy_cfg, encoder, dynamics = policy_config_from_args(args, num_actions)
        key, init_key = jax.random.split(key)
        model = build(lambda: make_policy(policy_cfg, nnx.Rngs(init_key)))
        if encoder is not None:
            copy_params(model.vq, encoder, "--pretrained-tokenizer")
        if dynamics is not None:
            copy_params(model.trunk, dynamics, "--pretrained-dynamics")

    graphdef, params, frozen = nnx.split(model, trainable_filter(policy_cfg), ...)
    tx = optax.chain(optax.clip_by_global_norm(args.max_grad_norm), optax.adam(args.learning_rate, eps=1e-5))
    state = PPOState(params, tx.init(params))
    watch = EntropyWatch(num_actions, args.entropy_warn_iters)
    start_iteration = 0
    if args.resume:
        ts = ckpt["train_state"]
        state = PPOState(params, restore_tree(state.opt_state, ts["opt_state"], source=f"{args.resume} optimizer"))
        key = jnp.asarray(ts["key"], jnp.uint32)
        start_iteration = int(ts["iteration"])
        watch.streak = int(ts["entropy_streak"])
        runner.load_state_dict(ts["runner"])
    runner.restart(start_iteration)
    progress = runner.groups[0].progress.model
    share_tokens = progress.bag_size > 0 and progress.reads_tokens_of(model)
    if progress.bag_size:
        print("reward: bags of seen tokens from " + ("the policy's tokens (same encoder)" if share_tokens else
                                                     "the reward's own encoder, once per env step"))

    @jax.jit
    def policy_step(params, frozen, frames, key):
        policy = nnx.merge(graphdef, params, frozen)
        observation = policy.observe(frames)
        logits, value = policy(observation)
        action = jax.random.categorical(key, logits)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=-1)[:, 0]
        return observation, action, log_prob, value

    @partial(jax.jit, static_argnames="episode_boundary")
    def prepare_batch(batch, last_value, episode_boundary: bool):
        """GAE and the return filter on (T, N) arrays, then flatten to (T*N, ...)."""
        dones = batch["dones"].at[-1].set(1.0) if episode_boundary else batch["dones"]
        advantages, returns = compute_gae(batch["rewards"], batch["values"], dones, last_value, args.gamma, args.gae_lambda)
        mask, kept, total = return_filter_mask(batch["rewards"], dones, args.return_filter)
        flat = {
            "obs": batch["obs"],
            "actions": batch["actions"],
            "log_probs": batch["log_probs"],
            "advantages": advantages,
            "returns": returns,
            "mask": mask,
        }
        flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), flat)
        return flat, {"filter/kept_segments": kept, "filter/segments": total}

    update = make_update(
        graphdef, frozen, tx,
        num_minibatches=args.num_minibatches, update_epochs=args.update_epochs,
        clip_coef=args.clip_coef, vf_coef=args.vf_coef, ent_coef=args.ent_coef,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.jsonl"
    if args.resume:
        keep_metrics_up_to(metrics_path, start_iteration)
    elif metrics_path.exists():
        metrics_path.unlink()
    history = []
    bar = tqdm(range(start_iteration, args.iterations), initial=start_iteration, total=args.iterations, desc="PPO")
    try:
        with open(metrics_path, "a") as metrics_file:
            for index in bar:
                iteration = index + 1
                started = time.perf_counter()
                key, rollout_key, update_key = jax.random.split(key, 3)
                # A checkpoint is a resume point, so its rollout ends every episode.
                checkpoint_now = iteration % args.save_every == 0
                batch, last_value, rollout_stats = runner.rollout(
                    lambda frames, k: policy_step(state.params, frozen, frames, k), rollout_key, args.num_steps,
                    share_tokens)
                rollout_seconds = time.perf_counter() - started
                flat, filter_stats = prepare_batch(batch, last_value, checkpoint_now)
                state, losses = update(state, flat, update_key)
                losses = jax.device_get(losses)
                seconds = time.perf_counter() - started
                rollout_stats["charts/update_seconds"] = seconds - rollout_seconds

                entropy_fraction, warning = watch(float(losses["losses/entropy"]))
                if warning:
                    tqdm.write(warning)
                record = {
                    "iteration": iteration,
                    "env_steps": iteration * args.num_steps * args.num_envs,
                    "charts/sps": args.num_steps * args.num_envs / seconds,
                    "charts/rollout_sps": args.num_steps * args.num_envs / rollout_seconds,
                    "policy/entropy_fraction": entropy_fraction,
                    **{k: float(v) for k, v in losses.items()},
                    **{k: int(v) for k, v in jax.device_get(filter_stats).items()},
                    **rollout_stats,
                    **runner.episode_stats(),
                    "curriculum/pool_size": len(runner.pool) if runner.pool is not None else 0,
                    "curriculum/best_score": runner.best_score if np.isfinite(runner.best_score) else None,
                }
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                history.append(record)
                bar.set_postfix(sps=f"{record['charts/sps']:.0f}", ent=f"{entropy_fraction:.3f}")
                if iteration % args.log_every == 0 or iteration == args.iterations:
                    tqdm.write(format_line(record))
                if checkpoint_now:
                    nnx.update(model, state.params)
                    save_policy(out_dir / f"policy_{iteration}.pkl", model=model, policy_cfg=policy_cfg, args=args,
                                state=state, key=key, iteration=iteration, runner=runner, watch=watch)
                    runner.restart(iteration)
    except KeyboardInterrupt:
        raise SystemExit(f"interrupted; metrics are in {metrics_path}, the last checkpoint in {out_dir}") from None
    nnx.update(model, state.params)
    save_policy(out_dir / "policy_final.pkl", model=model, policy_cfg=policy_cfg, args=args, state=state,
                key=key, iteration=max(start_iteration, args.iterations), runner=runner, watch=watch)
    return history


def format_line(record: dict) -> str:
    """The one printed line per logging interval."""
    parts = [
        f"it {record['iteration']}",
        f"sps {record['charts/sps']:.0f}",
        f"reward/step {record['rollout/reward_mean']:+.4f}",
        f"entropy {record['policy/entropy_fraction']:.1%} of max",
        f"milestones max {record['rollout/milestones_max']}",
    ]
    if "episode/return" in record:
        parts += [
            f"ep return {record['episode/return']:+.3f}",
            f"title escape {record['episode/title_escape_rate']:.0%}",
            f"ep milestones {record['episode/milestones']:.2f}",
        ]
    return " | ".join(parts)


if __name__ == "__main__":
    main(tyro.cli(Args))
