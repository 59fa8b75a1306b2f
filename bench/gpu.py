"""Everything a GPU machine should measure, in one short run at the seed's sizes, into one results file.

    uv run python bench/gpu.py                  # on the GPU machine: the seed's sizes
    uv run python bench/gpu.py --size tiny      # anywhere, in a minute (the test runs this)

It measures, on whatever JAX's default backend is (the file names it):
- the tokenizer's training frames/s: the seed's VQ-VAE (--size seed, ~3.9M parameters), batch 32;
- the dynamics model's training tokens/s: the seed's transformer (~1.6M), batch 32 of 9x10 tokens;
- PPO iterations per hour at the seed's config (train_with_cnn_reward.py's defaults: 16 envs x 128 steps,
  4 update epochs, the seed-size policy, a ResNet-34 reward; the seed reported ~600/hour on a 32 GB GPU),
  from the median iteration after the first (which compiles);
- VecGameBoy with 32 envs (--envs) on all the machine's cores against raw PyBoy (bench/env_throughput.py).

The model steps run on random frames and tokens: the weights and data do not change the arithmetic.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jax
import numpy as np
import tyro
from flax import nnx

from bench.tables import machine, publish
from models.build import build
from models.checkpoint import params_of, save_checkpoint
from models.presets import PHASE1_SIZES, RESNET_SIZES
from models.quantizers import QuantizerConfig
from models.reward import RewardConfig, RewardModel
from models.sharding import compute_dtype, shard_batch
from models.transformer import TokenTransformer, TransformerConfig, dynamics_loss
from models.vqvae import VQVAE, VQVAEConfig, tokenizer_loss
from training.steps import count_params, make_optimizer, make_train_step, new_train_state

REPO = Path(__file__).resolve().parents[1]
BATCH = 32


@dataclass
class Args:
    size: Literal["seed", "tiny"] = "seed"
    """seed: the seed's models and PPO config; tiny: a quick check that everything runs."""
    steps: int = 20
    """Timed training steps of each Phase 1 model (after two that compile)."""
    ppo_iterations: int = 4
    """PPO iterations (the first compiles and is not counted)."""
    env_steps: int = 100
    """Timed env steps per env of the VecGameBoy comparison."""
    envs: int = 32
    """Envs of the VecGameBoy comparison."""
    scratch: Path | None = None
    """Folder for the reward checkpoint and PPO's outputs, in a temporary folder deleted at the end."""
    output: Path = Path("bench/results/gpu.md")


def timed_steps(train_step, state, batch, steps: int) -> tuple[float, int]:
    """Seconds per step over `steps` steps (after two untimed ones), and the state's parameter count."""
    key = jax.random.key(0)
    params = count_params(state)
    for _ in range(2):
        state, metrics = train_step(state, batch, key)
    jax.block_until_ready(metrics)
    started = time.perf_counter()
    for _ in range(steps):
        state, metrics = train_step(state, batch, key)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - started) / steps, params


def tokenizer_rate(size: str, dtype, steps: int) -> tuple[float, int]:
    """(frames/s, parameters) of the tokenizer's train step."""
    sizes = PHASE1_SIZES[size]
    cfg = VQVAEConfig(
        embed_dim=sizes["embed_dim"],
        encoder_channels=tuple(sizes["encoder_channels"]),
        res_blocks=sizes["res_blocks"],
        quantizer=QuantizerConfig(kind="vq", codebook_size=sizes["vocab_size"]),
        dtype=dtype.name,
    )
    graphdef, state = new_train_state(build(lambda: VQVAE(cfg, rngs=nnx.Rngs(0))), make_optimizer(3e-4, 1000))
    frames = np.random.default_rng(0).integers(0, 256, (BATCH, 144, 160, 3), np.uint8)
    seconds, params = timed_steps(
        make_train_step(graphdef, make_optimizer(3e-4, 1000), tokenizer_loss),
        state,
        shard_batch(frames),
        steps,
    )
    return BATCH / seconds, params


def dynamics_rate(size: str, dtype, steps: int) -> tuple[float, int]:
    """(tokens/s, parameters) of the dynamics model's train step."""
    sizes = PHASE1_SIZES[size]
    cfg = TransformerConfig(
        vocab_size=sizes["vocab_size"],
        embed_dim=sizes["embed_dim"],
        num_layers=sizes["num_layers"],
        num_heads=sizes["num_heads"],
        dtype=dtype.name,
    )
    optimizer = make_optimizer(3e-4, 1000)
    graphdef, state = new_train_state(build(lambda: TokenTransformer(cfg, rngs=nnx.Rngs(0))), optimizer)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, BATCH, *cfg.grid), np.int32)
    step = make_train_step(graphdef, optimizer, lambda model, batch, key: dynamics_loss(model, *batch))
    seconds, params = timed_steps(step, state, shard_batch((tokens[0], tokens[1])), steps)
    return BATCH * int(np.prod(cfg.grid)) / seconds, params


def ppo_rate(args: Args, scratch: Path) -> tuple[float, float]:
    """(iterations per hour, env steps/s) of train_with_cnn_reward.py at the seed's config."""
    reward_cfg = RewardConfig(backbone="resnet34", resnet=RESNET_SIZES[args.size])
    reward = scratch / "reward.pkl"
    model = RewardModel(reward_cfg, rngs=nnx.Rngs(0))
    save_checkpoint(reward, kind="reward", config=reward_cfg, params=params_of(model), step=0)
    flags = ["--reward-model", str(reward), "--out-dir", str(scratch / "ppo")]
    flags += ["--iterations", str(args.ppo_iterations), "--save-every", str(args.ppo_iterations)]
    if args.size == "tiny":
        flags += ["--num-envs", "4", "--num-steps", "16", "--embed-dim", "16", "--num-layers", "1"]
        flags += ["--num-heads", "2", "--encoder-channels", "8", "8", "8", "8", "--codebook-size", "16"]
    result = subprocess.run(
        [sys.executable, str(REPO / "train_with_cnn_reward.py"), *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"error: PPO failed: {result.stderr[-2000:]}")
    records = [json.loads(line) for line in (scratch / "ppo" / "metrics.jsonl").read_text().splitlines()]
    sps = float(np.median([r["charts/sps"] for r in records[1:]]))
    steps_per_iteration = records[0]["env_steps"]
    return 3600 * sps / steps_per_iteration, sps


def env_table(args: Args, scratch: Path) -> str:
    """bench/env_throughput.py's table for `args.envs` envs at 1 worker and all cores."""
    output = scratch / "env_throughput.md"
    command = [sys.executable, str(REPO / "bench" / "env_throughput.py"), "--env-counts", str(args.envs)]
    command += [
        "--worker-counts",
        "1",
        "--steps",
        str(args.env_steps),
        "--repeats",
        "1",
        "--output",
        str(output),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: bench/env_throughput.py failed: {result.stderr[-2000:]}")
    return output.read_text().split("\n", 1)[1].strip()  # without its title


def main(args: Args) -> str:
    if min(args.steps, args.env_steps, args.envs) < 1 or args.ppo_iterations < 2:
        raise SystemExit("error: --steps, --env-steps and --envs must be >= 1, --ppo-iterations >= 2")
    dtype = compute_dtype("auto")
    frames_per_s, tokenizer_params = tokenizer_rate(args.size, dtype, args.steps)
    print(f"tokenizer: {frames_per_s:,.0f} frames/s ({tokenizer_params:,} params)")
    tokens_per_s, dynamics_params = dynamics_rate(args.size, dtype, args.steps)
    print(f"dynamics: {tokens_per_s:,.0f} tokens/s ({dynamics_params:,} params)")
    with tempfile.TemporaryDirectory(prefix="gpu_bench_", dir=args.scratch) as scratch:
        iterations_per_hour, sps = ppo_rate(args, Path(scratch))
        print(f"PPO: {iterations_per_hour:,.0f} iterations/hour ({sps:,.0f} env steps/s)")
        envs = env_table(args, Path(scratch))
    return publish(
        args.output,
        [
            f"# One run on this machine's accelerator ({datetime.date.today()})",
            "",
            f"Machine: {machine()}; devices: {', '.join(sorted({d.device_kind for d in jax.devices()}))}. "
            f"--size {args.size}, compute dtype {dtype.name}, batch {BATCH}.",
            "",
            "| what | measured | the seed |",
            "|---|---|---|",
            f"| tokenizer training ({tokenizer_params / 1e6:.2f}M params), frames/s "
            f"| {frames_per_s:,.0f} | – |",
            f"| dynamics training ({dynamics_params / 1e6:.2f}M params), tokens/s "
            f"| {tokens_per_s:,.0f} | – |",
            f"| PPO iterations per hour (env steps/s) | {iterations_per_hour:,.0f} ({sps:,.0f}) "
            "| ~600 on a GPU |",
            "",
            f"VecGameBoy, {args.envs} envs, against raw PyBoy (bench/env_throughput.py):",
            "",
            envs,
            "",
        ],
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
