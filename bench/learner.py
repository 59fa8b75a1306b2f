"""Does the learner keep up with the emulators? PPO's steps/s against the envs' alone, on one machine.

    uv run python pipeline.py                  # once: the Phase 1-2 checkpoints
    uv run python bench/learner.py --checkpoints runs/pipeline/checkpoints

For each learner it runs a few PPO iterations with the main job's env settings (a fresh policy of
the learner's size; the weights do not change the arithmetic) and then, in the same process, steps
the same envs with random actions for --env-seconds. It reports PPO's steady steps/s against the
envs', where each iteration's time goes (the policy's inference, waiting for the envs, the reward,
the update), the token cache's hit rate, and the arithmetic per env step that XLA counts in the
compiled functions. Learners:

- before: the main job's learner until this bench: RGB frames, every frame encoded, a trunk of 2
  blocks, 64 wide, on all 90 tokens, 2 update epochs, 16 envs x 128 steps.
- after: the main job's learner now (pipeline.py): gray frames, a token cache, a trunk of 1 block on
  15 pooled tokens, 1 update epoch overlapped with the next rollout, 64 envs x 32 steps.

In both the reward scores the policy's tokens (the same frozen encoder) instead of encoding the frames
again.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from flax import nnx

import train_with_cnn_reward
from bench.tables import machine
from envs.games import EMUQUEST_ROM
from models.build import build
from models.policy import make_policy, trainable_filter
from models.reward import load_reward
from training.io import atomic_write
from training.paths import ENCODER_FILE, reward_file
from training.policy_io import policy_config
from training.ppo import PPOState, make_observe_and_act, make_update
from training.rollout import env_only_sps


@dataclass(frozen=True)
class Learner:
    """What differs between the learners compared."""

    num_envs: int
    num_steps: int
    observation: str
    trunk_pool: tuple[int, int]
    num_layers: int
    token_cache: int
    update_epochs: int
    overlap_update: bool


LEARNERS = {
    "before": Learner(num_envs=16, num_steps=128, observation="rgb", trunk_pool=(1, 1), num_layers=2,
                      token_cache=0, update_epochs=2, overlap_update=False),
    "after": Learner(num_envs=64, num_steps=32, observation="gray", trunk_pool=(3, 2), num_layers=1,
                     token_cache=65_536, update_epochs=1, overlap_update=True),
}  # fmt: skip


@dataclass
class Args:
    checkpoints: Path = Path("runs/pipeline/checkpoints")
    """Phase 1-2 outputs of pipeline.py (pretrained_encoder.pkl, reward_vq.pkl)."""
    learners: tuple[str, ...] = ("before", "after")
    """Which learners to measure (see the module docstring)."""
    iterations: int = 6
    """PPO iterations per learner; the first (compilation) is left out of the means."""
    env_seconds: float = 15.0
    """How long the envs alone are timed, per learner."""
    num_workers: int | None = None
    """Emulator worker processes (None: one per CPU core)."""
    out_dir: Path = Path("runs/bench_learner")
    """Where the PPO runs go."""
    output: Path = Path("bench/results/learner.md")
    """Where the markdown table is written."""


def ppo_args(args: Args, name: str, learner: Learner) -> train_with_cnn_reward.Args:
    """The main job's PPO settings (reward every 8 steps, 256-step episodes, ...) with this learner."""
    return train_with_cnn_reward.Args(
        reward_model=str(args.checkpoints / reward_file("vq")),
        pretrained_tokenizer=str(args.checkpoints / ENCODER_FILE),
        iterations=args.iterations,
        num_envs=learner.num_envs,
        num_steps=learner.num_steps,
        num_workers=args.num_workers,
        observation=learner.observation,
        trunk_pool=learner.trunk_pool,
        token_cache=learner.token_cache,
        update_epochs=learner.update_epochs,
        overlap_update=learner.overlap_update,
        embed_dim=64,
        num_layers=learner.num_layers,
        num_heads=4,
        reward_interval=8,
        learning_rate=1e-3,
        max_episode_steps=256,
        save_every=10_000,
        log_every=10_000,
        out_dir=str(args.out_dir / name),
    )


def flops(fn, *example) -> float:
    """Floating-point operations XLA counts in one call of the jitted `fn` on `example`."""
    analysis = jax.jit(fn).lower(*example).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis.get("flops", 0.0))


def mflop_per_env_step(ppo: train_with_cnn_reward.Args, hit_rate: float) -> dict[str, float]:
    """MFLOP per env step of the policy's encoder (only on cache misses), its trunk and heads, the reward
    (every reward_interval steps; on the policy's tokens when it shares them) and the update."""
    cfg, encoder, _ = policy_config(
        "vq", 8, "float32", pretrained_tokenizer=ppo.pretrained_tokenizer, pretrained_dynamics=None,
        finetune_encoder=False, embed_dim=ppo.embed_dim, num_layers=ppo.num_layers, num_heads=ppo.num_heads,
        encoder_channels=ppo.encoder_channels, codebook_size=ppo.codebook_size,
        gray=ppo.observation == "gray", pool=ppo.trunk_pool,
    )  # fmt: skip
    model = build(lambda: make_policy(cfg, nnx.Rngs(0)))
    graphdef, params, frozen = nnx.split(model, trainable_filter(cfg), ...)
    observe, act = make_observe_and_act(graphdef)
    batch = 64
    frames = jnp.zeros((batch, 144, 160, cfg.encoder.channels), jnp.uint8)
    tokens = jnp.zeros((batch, *cfg.encoder.grid), jnp.int32)
    key = jax.random.key(0)
    reward = load_reward(ppo.reward_model)
    reward_graph, reward_state = nnx.split(reward)
    bags = jnp.zeros((batch, reward.cfg.bag_size), jnp.uint8) if reward.cfg.seen_tokens else None
    reward_on_tokens = lambda s, t: nnx.merge(reward_graph, s).score_observations(t, bags)  # noqa: E731
    tx = optax.chain(optax.clip_by_global_norm(ppo.max_grad_norm), optax.adam(ppo.learning_rate))
    update = make_update(graphdef, frozen, tx, num_minibatches=ppo.num_minibatches,
                         update_epochs=ppo.update_epochs, clip_coef=ppo.clip_coef, vf_coef=ppo.vf_coef,
                         ent_coef=ppo.ent_coef)  # fmt: skip
    samples = ppo.num_steps * ppo.num_envs
    train_batch = {
        "obs": jnp.zeros((samples, *cfg.encoder.grid), jnp.int32), "actions": jnp.zeros(samples, jnp.int32),
        "log_probs": jnp.zeros(samples), "advantages": jnp.zeros(samples), "returns": jnp.zeros(samples),
        "mask": jnp.ones(samples),
    }  # fmt: skip
    state = PPOState(params, tx.init(params))
    # XLA counts a scan's body once: the update scans minibatches within epochs.
    update_flops = flops(lambda s, b, k: update(s, b, k), state, train_batch, key) * (
        ppo.update_epochs * ppo.num_minibatches
    )
    return {
        "encoder": flops(observe, params, frozen, frames) / batch * (1 - hit_rate) / 1e6,
        "trunk and heads": flops(
            act, params, frozen, tokens, jnp.ones(batch, bool), model.initial_memory(batch), key, None
        )
        / batch
        / 1e6,
        "reward": flops(reward_on_tokens, reward_state, tokens) / batch / ppo.reward_interval / 1e6,
        "update": update_flops / samples / 1e6,
    }


def measure(args: Args, name: str) -> dict:
    learner = LEARNERS[name]
    ppo = ppo_args(args, name, learner)
    history = train_with_cnn_reward.main(ppo)[1:]
    mean = lambda key: float(np.mean([r[key] for r in history]))  # noqa: E731
    # Throughput over the steady iterations (with an overlapped update a record's interval can end early).
    ppo_sps = len(history) * ppo.num_envs * ppo.num_steps / sum(ppo.num_envs * ppo.num_steps / r["charts/sps"]
                                                                 for r in history)  # fmt: skip
    seconds = {
        part: mean(f"charts/{part}_seconds") for part in ("policy", "env_wait", "reward", "update_wait")
    }
    hit_rate = mean("charts/token_cache_hit_rate") if learner.token_cache else 0.0
    env_sps = env_only_sps(
        str(EMUQUEST_ROM), num_envs=ppo.num_envs, num_workers=ppo.num_workers, frame_skip=ppo.frame_skip,
        press_frames=ppo.press_frames, max_episode_steps=ppo.max_episode_steps, seconds=args.env_seconds,
        grayscale=ppo.observation == "gray",
    )  # fmt: skip
    return {"name": name, "learner": learner, "ppo_sps": ppo_sps, "env_sps": env_sps,
            "seconds": seconds, "hit_rate": hit_rate, "mflop": mflop_per_env_step(ppo, hit_rate)}  # fmt: skip


def markdown(rows: list[dict], args: Args) -> str:
    lines = [
        f"Learner benchmark, {datetime.date.today()}, {machine()}; "
        f"{args.iterations - 1} steady PPO iterations per learner, envs alone for {args.env_seconds:g} s; "
        f"checkpoints {args.checkpoints}.",
        "",
        "| learner | envs x steps | observation | trunk tokens | token cache hit rate | PPO SPS "
        "| env-only SPS | PPO / env | seconds per iteration: inference / env wait / reward / update "
        "| MFLOP per env step: encoder / trunk / reward / update = total |",
        "|---|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        learner, s, m = r["learner"], r["seconds"], r["mflop"]
        tokens = 90 // (learner.trunk_pool[0] * learner.trunk_pool[1])
        lines.append(
            f"| {r['name']} | {learner.num_envs} x {learner.num_steps} | {learner.observation} | {tokens} | "
            f"{r['hit_rate']:.0%} | {r['ppo_sps']:.0f} | {r['env_sps']:.0f} | "
            f"{r['ppo_sps'] / r['env_sps']:.2f} | "
            f"{s['policy']:.2f} / {s['env_wait']:.2f} / {s['reward']:.2f} / {s['update_wait']:.2f} | "
            f"{m['encoder']:.1f} / {m['trunk and heads']:.1f} / {m['reward']:.1f} / {m['update']:.1f} = "
            f"{sum(m.values()):.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(args: Args) -> str:
    unknown = set(args.learners) - set(LEARNERS)
    if unknown:
        raise SystemExit(f"--learners: {sorted(unknown)} are not among {sorted(LEARNERS)}")
    rows = [measure(args, name) for name in args.learners]
    table = markdown(rows, args)
    print(table)
    atomic_write(args.output, table)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
