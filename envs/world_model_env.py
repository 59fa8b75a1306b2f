"""WorldModelEnv: imagined rollouts of a world model (train_world_model.py) behind VecGameBoy's API.

    env = world_model_env("checkpoints/world_model/world_model.pkl", num_envs=16)  # training/world_model.py
    obs, info = env.reset(seed=0)                  # obs: uint8 (16, 144, 160, 3), real frames
    obs, reward, terminated, truncated, info = env.step(actions)

Each env holds the tokenizer latents of its last K frames. A reset picks K consecutive real frames (env
steps of the speedruns' random-play branches, from runs other than the world model's held-out one), a
step samples the next frame's latents from the action with `sample_steps` Euler steps and shifts it into
the context. Frames are decoded (latents snapped to the codebook, then the tokenizer's decoder) only for
observations, and not at all with `render=False`, where obs are the snapped token grids (N, rows, cols).

Reward: with a Phase 2 progress model, the change of its score since the previous frame (0 without one).
There is no RAM: episodes end only by truncation after `max_steps`, info["milestones"] is zeros, and
each ended episode is reported with "imagined": True. Same-step autoreset, as VecGameBoy.
"""

from __future__ import annotations

import cv2
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from envs.actions import ACTION_NAMES
from envs.emulators import obs_shape
from models.vqvae import VQVAE
from models.world_model import WorldModel, denormalize, normalize, sample


class WorldModelEnv(gymnasium.vector.VectorEnv):
    """Args:
    world_model: a trained WorldModel conditioned on the env's buttons.
    tokenizer: the VQVAE whose latents it models.
    start_frames: (S, K, H, W, 3) uint8, the real frame windows episodes start from.
    num_envs: imagined envs stepped together.
    max_steps: episode length (truncation).
    sample_steps: Euler steps per generated frame (1-4 with a shortcut model).
    grayscale: observations (N, H, W, 1), as VecGameBoy's.
    render: decode frames for observations; False returns token grids and skips the decoder.
    progress: a training.progress.LearnedProgress that rewards score deltas, or None (reward 0).
    """

    def __init__(
        self,
        world_model: WorldModel,
        tokenizer: VQVAE,
        start_frames: np.ndarray,
        num_envs: int,
        max_steps: int = 256,
        sample_steps: int = 4,
        grayscale: bool = False,
        render: bool = True,
        progress=None,
    ):
        cfg = world_model.cfg
        if num_envs < 1 or max_steps < 1 or sample_steps < 1:
            raise ValueError(
                "num_envs, max_steps and sample_steps must be >= 1, "
                f"got {num_envs}, {max_steps}, {sample_steps}"
            )
        if start_frames.ndim != 5 or start_frames.shape[1] != cfg.context or start_frames.dtype != np.uint8:
            raise ValueError(
                f"start_frames must be uint8 (S, {cfg.context}, H, W, 3), got {start_frames.dtype} "
                f"{start_frames.shape}"
            )
        if progress is not None and not render:
            raise ValueError("a progress reward scores frames: it needs render=True")
        self.num_envs, self.num_actions = num_envs, cfg.num_actions
        self.action_names = ACTION_NAMES[: self.num_actions]
        self.start_frames, self.max_steps, self.render = start_frames, max_steps, render
        self.grayscale, self.progress = grayscale, progress
        self.metadata = {"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP}
        shape = obs_shape(grayscale) if render else cfg.grid
        self.single_observation_space = (
            gymnasium.spaces.Box(0, 255, shape, np.uint8)
            if render
            else gymnasium.spaces.Box(0, tokenizer.cfg.vocab_size - 1, shape, np.int32)
        )
        self.single_action_space = gymnasium.spaces.Discrete(self.num_actions)
        self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, num_envs)
        self.detected = {"game": "world model (imagined)", "title": "", "sha1": "-", "screen_only": True}

        world_graphdef, self._world_state = nnx.split(world_model)
        tokenizer_graphdef, self._tokenizer_state = nnx.split(tokenizer)

        @jax.jit
        def encode(tokenizer_state, frames):
            """(B, H, W, 3) uint8 -> (raw latents (B, rows, cols, D), tokens (B, rows, cols))."""
            tok = nnx.merge(tokenizer_graphdef, tokenizer_state)
            latents = tok.latents(frames)
            return latents, tok.quantizer(latents, None)[1]

        @jax.jit
        def decode(tokenizer_state, latents):
            """Raw latents (B, rows, cols, D) -> (tokens, frames (B, H, W, 3) uint8)."""
            tok = nnx.merge(tokenizer_graphdef, tokenizer_state)
            z_q, tokens, _ = tok.quantizer(latents, None)
            return tokens, jnp.clip(jnp.round(tok.decode(z_q) * 255), 0, 255).astype(jnp.uint8)

        @jax.jit
        def imagine_step(world_state, tokenizer_state, context, actions, key):
            """context (N, K, rows, cols, D) raw latents -> (next context, tokens (N, rows, cols), frames
            (N, H, W, 3) uint8 or None)."""
            model = nnx.merge(world_graphdef, world_state)
            tok = nnx.merge(tokenizer_graphdef, tokenizer_state)
            noise = jax.random.normal(key, context.shape[:1] + context.shape[2:])
            latents = sample(model, normalize(model.cfg, context), actions, noise, sample_steps)
            latents = denormalize(model.cfg, latents)
            if render:
                tokens, frames = decode(tokenizer_state, latents)
            else:
                tokens, frames = tok.quantizer(latents, None)[1], None
            return jnp.concatenate([context[:, 1:], latents[:, None]], axis=1), tokens, frames

        self._encode, self._decode, self._imagine_step = encode, decode, imagine_step
        self._context = None  # (N, K, rows, cols, D) raw latents, on the device
        self._obs = None
        self._length = np.zeros(num_envs, np.int32)
        self._score = np.zeros(num_envs, np.float32)
        self._rng = np.random.default_rng()
        self._key = jax.random.key(0)
        self._steps_taken = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Every env starts on a random real window; the seed draws the windows and the sampling noise."""
        self._rng = np.random.default_rng(seed)
        self._key = jax.random.key(0 if seed is None else seed)
        self._context, self._obs = None, None
        self._restart(np.arange(self.num_envs))
        return self._obs, self._info()

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._context is None:
            raise RuntimeError("WorldModelEnv.step called before reset()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"actions must be integers of shape ({self.num_envs},), got {actions.dtype} {actions.shape}"
            )
        if actions.min() < 0 or actions.max() >= self.num_actions:
            raise ValueError(
                f"actions must be in [0, {self.num_actions}), got {actions.min()}..{actions.max()}"
            )
        key = jax.random.fold_in(self._key, self._steps_taken)
        self._steps_taken += 1
        self._context, tokens, frames = self._imagine_step(
            self._world_state, self._tokenizer_state, self._context, jnp.asarray(actions, jnp.int32), key
        )
        self._obs = self._observe(frames, tokens)
        reward = np.zeros(self.num_envs, np.float32)
        if self.progress is not None:
            score = self._score_frames(self._obs)
            reward, self._score = score - self._score, score
        self._length += 1
        truncated = self._length >= self.max_steps
        info = {"episodes": []}
        if truncated.any():
            ended = np.flatnonzero(truncated)
            info["episodes"] = [
                {"env_id": int(i), "length": int(self._length[i]), "milestones": 0, "imagined": True}
                for i in ended
            ]
            info["final_obs"] = np.full(self.num_envs, None, dtype=object)
            for i in ended:
                info["final_obs"][i] = self._obs[i].copy()
            info["_final_obs"] = truncated.copy()
            self._restart(ended)
        return self._obs, reward, np.zeros(self.num_envs, bool), truncated, {**self._info(), **info}

    def frames(self) -> np.ndarray:
        """The current frames, decoded (N, H, W, 3) uint8: for a render=False env, on request."""
        if self._context is None:
            raise RuntimeError("WorldModelEnv.frames called before reset()")
        return np.asarray(self._decode(self._tokenizer_state, self._context[:, -1])[1])

    def close_extras(self, **kwargs) -> None:
        self._context = None

    def __enter__(self) -> WorldModelEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals ----

    def _restart(self, env_ids: np.ndarray) -> None:
        """Start `env_ids` on random real windows: their context latents and their last real frame."""
        windows = self.start_frames[self._rng.integers(len(self.start_frames), size=len(env_ids))]
        latents, tokens = self._encode(self._tokenizer_state, windows.reshape(-1, *windows.shape[2:]))
        latents = latents.reshape(len(env_ids), windows.shape[1], *latents.shape[1:])
        if self.render:
            start_obs = self._gray(windows[:, -1]) if self.grayscale else windows[:, -1]
        else:
            start_obs = np.asarray(tokens).reshape(len(env_ids), windows.shape[1], *tokens.shape[1:])[:, -1]
        if self._context is None:
            self._context = latents
            self._obs = start_obs.copy()
        else:
            self._context = self._context.at[env_ids].set(latents)
            self._obs[env_ids] = start_obs
        self._length[env_ids] = 0
        if self.progress is not None:
            self._score[env_ids] = self._score_frames(self._obs[env_ids])

    def _observe(self, frames, tokens) -> np.ndarray:
        if not self.render:
            return np.array(tokens)  # a writable copy: resets write into it
        frames = np.array(frames)
        return self._gray(frames) if self.grayscale else frames

    @staticmethod
    def _gray(frames: np.ndarray) -> np.ndarray:
        return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames])[..., None]

    def _score_frames(self, frames: np.ndarray) -> np.ndarray:
        return np.asarray(self.progress.score(frames), np.float32)

    def _info(self) -> dict:
        return {"milestones": np.zeros(self.num_envs, np.int32), "pool_starts": {}}
