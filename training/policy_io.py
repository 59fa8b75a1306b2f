"""Policies from and to checkpoints: a fresh policy with pretrained parts copied in, the resumable
policy checkpoint, and loading one back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.build import abstract, build
from models.checkpoint import (
    CheckpointError,
    config_from_dict,
    load_checkpoint,
    params_of,
    restore_params,
    save_checkpoint,
)
from models.policy import PolicyConfig, make_policy
from models.quantizers import QuantizerConfig
from models.transformer import TransformerConfig, load_dynamics
from models.vqvae import VQVAEConfig, gray_encoder, load_encoder
from training.cli import fail
from training.ppo import PPOState


def load_or_exit(loader, path: str, flag: str):
    """`loader(path)`, or exit with one line naming the flag."""
    try:
        return loader(path)
    except CheckpointError as err:
        raise SystemExit(f"{flag}: {err}") from None


def policy_config(
    kind: str,
    num_actions: int,
    dtype: str,
    *,
    pretrained_tokenizer: str | None,
    pretrained_dynamics: str | None,
    finetune_encoder: bool,
    embed_dim: int,
    num_layers: int,
    num_heads: int,
    encoder_channels: tuple[int, ...],
    codebook_size: int,
    gray: bool = False,
    pool: tuple[int, int] = (1, 1),
    memory: int = 0,
    progress_bins: int = 0,
):
    """PolicyConfig plus the pretrained parameters to copy in: (config, encoder params or None,
    dynamics transformer params or None). Pretrained checkpoints fix their parts' sizes; the size
    arguments fill in the rest. `gray`: the encoder reads 1-channel frames (its first conv summed over
    the colours of the pretrained RGB encoder)."""
    encoder_params = dynamics_params = None
    if pretrained_tokenizer and kind == "vit":
        print("note: --pretrained-tokenizer is not used by the ViT policy (it reads pixels)")
    if gray and kind != "vq":
        raise SystemExit("--observation gray needs the vq policy (the ViT policy reads RGB patches)")
    if pretrained_tokenizer and kind == "vq":
        encoder = load_or_exit(load_encoder, pretrained_tokenizer, "--pretrained-tokenizer")
        encoder_cfg, encoder_params = dataclasses.replace(encoder.cfg, dtype=dtype), params_of(encoder)
        if gray:
            encoder_cfg, encoder_params = gray_encoder(encoder_cfg, encoder_params)
    else:
        encoder_cfg = VQVAEConfig(
            embed_dim=embed_dim,
            encoder_channels=tuple(encoder_channels),
            quantizer=QuantizerConfig(codebook_size=codebook_size),
            channels=1 if gray else 3,
            dtype=dtype,
        )
    if pretrained_dynamics:
        dynamics = load_or_exit(load_dynamics, pretrained_dynamics, "--pretrained-dynamics")
        transformer_cfg, dynamics_params = dataclasses.replace(dynamics.cfg, dtype=dtype), params_of(dynamics)
        if kind == "vq" and transformer_cfg.vocab_size != encoder_cfg.vocab_size:
            raise SystemExit(
                f"--pretrained-dynamics: {pretrained_dynamics} reads {transformer_cfg.vocab_size} tokens "
                f"but the tokenizer has {encoder_cfg.vocab_size} codes: pass the dynamics model trained "
                f"on this tokenizer (pretrain_visual.py --stage 1b --tokenizer ...)"
            )
    else:
        transformer_cfg = TransformerConfig(
            vocab_size=encoder_cfg.vocab_size,
            embed_dim=embed_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            pool=tuple(pool),
            dtype=dtype,
        )
    cfg = PolicyConfig(
        kind=kind,
        num_actions=num_actions,
        encoder=encoder_cfg,
        transformer=transformer_cfg,
        finetune_encoder=finetune_encoder,
        memory=memory,
        progress_bins=progress_bins,
    )
    return cfg, encoder_params, dynamics_params


def new_policy(cfg: PolicyConfig, encoder_params: dict | None, dynamics_params: dict | None, key):
    """A freshly initialised policy with the pretrained encoder and dynamics parameters copied in."""
    model = build(lambda: make_policy(cfg, nnx.Rngs(key)))
    if encoder_params is not None:
        copy_params(model.vq, encoder_params, "--pretrained-tokenizer")
    if dynamics_params is not None:
        copy_params(model.trunk, dynamics_params, "--pretrained-dynamics")
    return model


def copy_params(target: nnx.Module, params: dict, source_name: str):
    """Copy every parameter in `params` (a nested dict) into the same path of `target` (which may hold
    more, e.g. an input projection the pretrained model lacks); shapes are checked."""
    state = nnx.state(target, nnx.Param)
    merged = nnx.to_pure_dict(state)

    def overlay(into: dict, values: dict, where: str):
        for name, value in values.items():
            if name not in into:
                raise SystemExit(f"{source_name}: parameter {where}/{name} does not exist in the policy")
            if isinstance(value, dict):
                overlay(into[name], value, f"{where}/{name}")
            elif into[name].shape != value.shape:
                raise SystemExit(
                    f"{source_name}: {where}/{name} has shape {value.shape}, policy has {into[name].shape}"
                )
            else:
                into[name] = value

    overlay(merged, params, "")
    nnx.replace_by_pure_dict(state, merged)
    nnx.update(target, state)


def save_policy(
    path: Path,
    *,
    model,
    policy_cfg: PolicyConfig,
    run_args: dict,
    state: PPOState,
    key,
    iteration: int,
    runner_state: dict,
    entropy_streak: int,
    rom: dict,
    game: dict,
):
    """Atomic policy checkpoint: bf16 params for evaluation, plus the fp32 train_state that
    --resume needs (all params, optimizer, RNG, counters, curriculum pool, episode window).
    `run_args` are the training script's settings, stored so evaluation and resume can read them; `rom`
    the cartridge it trained on (training/rom_binding.py) and `game` the profile detected for it."""
    train_state = {
        "params": params_of(model),
        "opt_state": jax.tree.leaves(state.opt_state),  # rebuilt with restore_tree
        "key": np.asarray(key),
        "iteration": iteration,
        "entropy_streak": entropy_streak,
        "runner": runner_state,
    }
    config = {"policy": dataclasses.asdict(policy_cfg), "args": run_args, "rom": rom, "game": game}
    save_checkpoint(
        path, kind="policy", config=config, params=params_of(model), step=iteration, train_state=train_state
    )


def policy_from_checkpoint(ckpt: dict, source: str) -> tuple[nnx.Module, PolicyConfig]:
    """(policy with its fp32 weights, its config) from a loaded 'policy' checkpoint."""
    cfg = config_from_dict(PolicyConfig, ckpt["config"]["policy"])
    model = abstract(lambda: make_policy(cfg, nnx.Rngs(0)))
    weights = ckpt["params"] if ckpt["train_state"] is None else ckpt["train_state"]["params"]
    return restore_params(model, weights, source=source), cfg


def load_resumable(path: Path) -> dict:
    """The policy checkpoint --resume names, with the train_state a resumed run needs."""
    try:
        ckpt = load_checkpoint(path, "policy")
    except CheckpointError as err:
        raise fail(f"--resume: {err}") from None
    if ckpt["train_state"] is None:
        raise fail(f"--resume: {path} holds no train_state to continue from")
    return ckpt


def load_policy(path) -> tuple[nnx.Module, PolicyConfig, dict]:
    """(policy with its fp32 weights, its config, the checkpoint) from a 'policy' checkpoint."""
    ckpt = load_checkpoint(path, "policy")
    model, cfg = policy_from_checkpoint(ckpt, str(path))
    return model, cfg, ckpt


def policy_actor(model, greedy: bool = False):
    """act(frames (N, ...), first (N,), memory (N, M), key, route_progress (N,) or None) -> (actions (N,),
    memory after the frames): one jitted env step of the policy, its actions sampled or, with `greedy`,
    its most likely; the memory is zeroed where `first`."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def act(state, frames, first, memory, key, route_progress):
        policy = nnx.merge(graphdef, state)
        logits, _, memory = policy.step(policy.observe(frames), memory, first, route_progress)
        return (jnp.argmax(logits, -1) if greedy else jax.random.categorical(key, logits)), memory

    def step(frames, first, memory, key, route_progress=None):
        return act(state, frames, first, memory, key, route_progress)

    return step


def policy_chooser(model, greedy: bool, seed: int):
    """choose_actions(obs, t, first, route_progress=None) -> actions (N,) for an evaluation loop: the
    policy's actions (sampled, or its most likely with `greedy`), its memory carried from step to step and
    reset where `first`; `route_progress` (N,) is read by a policy with progress bins."""
    act = policy_actor(model, greedy)
    key = jax.random.PRNGKey(seed)
    memory = None

    def choose(obs, t, first, route_progress=None):
        nonlocal memory
        if memory is None:
            memory = model.initial_memory(len(obs))
        actions, memory = act(obs, first, memory, jax.random.fold_in(key, t), route_progress)
        return actions

    return choose
