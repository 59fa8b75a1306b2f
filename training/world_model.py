"""What the world model's trainer, its env and its bench share: env-step sequences from the speedruns'
random-play branches, latents in and frames out through the tokenizer, and open-loop error on held-out
sequences.

Why the branches: a world model that drives an env must step as the env does, one action per
FRAME_SKIP emulator frames. The speedruns' saved frames are 4 emulator frames apart and their presses
are the bot's, but each random-play branch (data/make_speedruns.py --branch-every) is a run of env steps
with uniformly random actions, logged with the frame after each step: the data a Dreamer-style world
model wants. A branch's sequence is the run frame it left from followed by its step frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from data.frames import Branches, FramesDataset, load_branches
from envs.world_model_env import WorldModelEnv
from models.lam import LatentActionModel
from models.vqvae import VQVAE, load_tokenizer
from models.world_model import WorldModel, denormalize, imagine, load_world_model, normalize
from training.data import load_frames, map_batches
from training.paths import checkpoint_folder, path_from_checkpoint


@dataclass
class Sequences:
    """Env-step sequences back to back.

    Attributes:
        frames: (F, H, W, 3) uint8.
        actions: (F,) int32, the env action taken between frame f - 1 and frame f (-1 at a sequence's
            first frame).
        first: (S,) index of each sequence's first frame; length: (S,) its frames.
        run_id: (S,) the dataset run each sequence branched off.
    """

    frames: np.ndarray
    actions: np.ndarray
    first: np.ndarray
    length: np.ndarray
    run_id: np.ndarray

    def windows(self, size: int, runs=None) -> np.ndarray:
        """First frame index of every `size` consecutive frames inside one sequence (of `runs` only, if
        given), in order."""
        keep = np.ones(len(self.first), bool) if runs is None else np.isin(self.run_id, runs)
        starts = [
            first + np.arange(length - size + 1)
            for first, length, kept in zip(self.first, self.length, keep)
            if kept and length >= size
        ]
        return np.concatenate(starts) if starts else np.zeros(0, np.int64)


def branch_sequences(dataset: FramesDataset, branches: Branches) -> Sequences:
    """One sequence per branch: the run frame it left from, then its step frames in order. Branches
    whose metadata predates the `start`, `step` or `action` fields are refused."""
    if (branches.start < 0).any() or (branches.step < 1).any() or (branches.action < 0).any():
        raise ValueError(
            "the branches' metadata.json lacks start/step/action (written by an older make_speedruns.py); "
            "make them again with `uv run python data/make_speedruns.py --branch-every 48 --branch-steps 24`"
        )
    frames, actions, first, length, run_id = [], [], [], [], []
    order = np.lexsort((branches.step, branches.start, branches.run_id))
    # A new branch begins wherever the step count does not go up by one.
    breaks = np.flatnonzero(np.diff(branches.step[order]) != 1) + 1
    count = 0
    for members in np.split(order, breaks):
        if branches.step[members[0]] != 1:
            raise ValueError(f"a branch off run {branches.run_id[members[0]]} does not start at step 1")
        frames += [dataset.frames[branches.start[members[0]]], *branches.frames[members]]
        actions += [-1, *branches.action[members]]
        first.append(count)
        length.append(len(members) + 1)
        run_id.append(branches.run_id[members[0]])
        count += len(members) + 1
    return Sequences(
        np.stack(frames),
        np.asarray(actions, np.int32),
        np.asarray(first, np.int64),
        np.asarray(length, np.int64),
        np.asarray(run_id, np.int32),
    )


def encode_latents(tokenizer: VQVAE, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, H, W, 3) uint8 -> the encoder's continuous latents (N, rows, cols, D) float32."""
    graphdef, state = nnx.split(tokenizer)
    encode = jax.jit(lambda frames: nnx.merge(graphdef, state).latents(frames))
    return map_batches(encode, frames, batch_size)


def lam_codes(
    lam: LatentActionModel, before: np.ndarray, after: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """The latent action (a code) of each (before, after) frame pair: (N,) int32."""
    graphdef, state = nnx.split(lam)
    encode = jax.jit(lambda pair: nnx.merge(graphdef, state).encode_action(*pair, None)[1])
    return map_batches(encode, (before, after), batch_size).astype(np.int32)


def to_uint8(frames: jax.Array) -> jax.Array:
    """Decoder output in about [0, 1] -> uint8 frames."""
    return jnp.clip(jnp.round(frames * 255.0), 0, 255).astype(jnp.uint8)


def decode_latents(tokenizer: VQVAE, latents: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Latents (B, rows, cols, D), as the encoder gives them, -> (tokens (B, rows, cols), frames
    (B, H, W, 3) uint8): each latent snapped to its nearest code, as the decoder was trained."""
    z_q, tokens, _ = tokenizer.quantizer(latents, None)
    return tokens, to_uint8(tokenizer.decode(z_q))


def make_open_loop(world_graphdef, tokenizer_graphdef, horizon: int, steps: int):
    """A jitted (world_state, tokenizer_state, context (B, K, rows, cols, D) raw latents,
    actions (B, horizon), key) -> (imagined raw latents (B, horizon, rows, cols, D), their frames
    (B, horizon, H, W, 3) uint8)."""

    @jax.jit
    def open_loop(world_state, tokenizer_state, context, actions, key):
        model, tokenizer = (
            nnx.merge(world_graphdef, world_state),
            nnx.merge(tokenizer_graphdef, tokenizer_state),
        )
        latents = denormalize(model.cfg, imagine(model, normalize(model.cfg, context), actions, key, steps))
        batch = latents.shape[0]
        _, frames = decode_latents(tokenizer, latents.reshape(batch * horizon, *latents.shape[2:]))
        return latents, frames.reshape(batch, horizon, *frames.shape[1:])

    return open_loop


def sharpness(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N,) variance of the Laplacian of each gray frame: low for a blur."""
    gray = frames.mean(axis=-1).astype(np.float32)
    return np.asarray([cv2.Laplacian(frame, cv2.CV_32F).var() for frame in gray])


def frame_mse(predicted: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per-frame mean squared error on [0, 1] pixels: (..., H, W, C) uint8 -> (...)."""
    diff = predicted.astype(np.float32) / 255.0 - real.astype(np.float32) / 255.0
    return np.mean(diff**2, axis=(-3, -2, -1))


def psnr(mse: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))


def open_loop_errors(
    model: WorldModel,
    tokenizer: VQVAE,
    sequences: Sequences,
    latents: np.ndarray,
    actions: np.ndarray,
    windows: np.ndarray,
    horizon: int,
    steps: int,
    key: jax.Array,
    batch_size: int = 32,
) -> dict:
    """Open-loop prediction of `horizon` frames from each window's first K real frames and the actions
    that followed, against the real frames, on [0, 1] pixels. Returns per-horizon (horizon,) arrays:
    "mse" of the world model decoded, "copy_mse" of repeating the last context frame, "sharpness" of
    the predictions beside "real_sharpness", and in latent space (the model's own error, before the
    tokenizer's) "latent_mse" beside "copy_latent_mse"; also "frames", the imagined frames of the first
    window (horizon, H, W, 3) uint8. `latents` (F, rows, cols, D) are the frames' raw latents and
    `actions` (F,) each frame's action (buttons or latent codes)."""
    context = model.cfg.context
    world_graphdef, world_state = nnx.split(model)
    tokenizer_graphdef, tokenizer_state = nnx.split(tokenizer)
    open_loop = make_open_loop(world_graphdef, tokenizer_graphdef, horizon, steps)
    names = ("mse", "copy_mse", "sharpness", "real_sharpness", "latent_mse", "copy_latent_mse")
    sums = {name: np.zeros(horizon) for name in names}
    first_frames = None
    for start in range(0, len(windows), batch_size):
        chosen = windows[start : start + batch_size]
        padded = np.concatenate([chosen, np.repeat(chosen[:1], batch_size - len(chosen))])
        past = padded[:, None] + np.arange(context)
        future = padded[:, None] + context + np.arange(horizon)
        predicted, frames = open_loop(
            world_state, tokenizer_state, latents[past], actions[future], jax.random.fold_in(key, start)
        )
        predicted, frames = np.asarray(predicted)[: len(chosen)], np.asarray(frames)[: len(chosen)]
        real_latents = latents[future[: len(chosen)]]
        sums["latent_mse"] += np.mean((predicted - real_latents) ** 2, axis=(2, 3, 4)).sum(axis=0)
        copied = latents[past[: len(chosen), -1]][:, None]
        sums["copy_latent_mse"] += np.mean((copied - real_latents) ** 2, axis=(2, 3, 4)).sum(axis=0)
        real = sequences.frames[future[: len(chosen)]]
        last = sequences.frames[past[: len(chosen), -1]]
        sums["mse"] += frame_mse(frames, real).sum(axis=0)
        sums["copy_mse"] += frame_mse(last[:, None], real).sum(axis=0)
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
        sums["sharpness"] += sharpness(flat(frames)).reshape(len(chosen), horizon).sum(axis=0)
        sums["real_sharpness"] += sharpness(flat(real)).reshape(len(chosen), horizon).sum(axis=0)
        if first_frames is None:
            first_frames = frames[0]
    return {**{name: value / len(windows) for name, value in sums.items()}, "frames": first_frames}


def world_model_env(
    path,
    num_envs: int,
    *,
    max_steps: int = 256,
    sample_steps: int = 4,
    grayscale: bool = False,
    render: bool = True,
    progress=None,
    max_starts: int = 1024,
    seed: int = 0,
) -> WorldModelEnv:
    """A WorldModelEnv from a world_model.pkl: its tokenizer, and start windows drawn (at most `max_starts`)
    from the branches of every run but its held-out one, all found through the paths it recorded."""
    model, config = load_world_model(path)
    if config["actions"] != "button":
        raise ValueError(
            f"{path} is conditioned on latent actions; an env needs a world model of the env's buttons "
            "(train_world_model.py --actions button)"
        )
    folder = checkpoint_folder(path)
    tokenizer = load_tokenizer(path_from_checkpoint(config["tokenizer"], folder))
    data = load_frames(path_from_checkpoint(config["data"], folder))
    sequences = branch_sequences(data, load_branches(path_from_checkpoint(config["branches"], folder), data))
    held_out = data.run_names.index(config["holdout_run"]) if config["holdout_run"] in data.run_names else -1
    starts = sequences.windows(model.cfg.context, runs=np.setdiff1d(sequences.run_id, [held_out]))
    starts = np.random.default_rng(seed).permutation(starts)[:max_starts]
    windows = sequences.frames[starts[:, None] + np.arange(model.cfg.context)]
    return WorldModelEnv(
        model, tokenizer, windows, num_envs, max_steps, sample_steps, grayscale, render, progress
    )
