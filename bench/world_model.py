"""World model benchmark: open-loop error against horizon beside its baselines, true buttons against
latent actions, sampling steps against quality, imagined env steps/s, and PPO partly in imagination
against PPO in the emulator at equal wall-clock time.

    uv run python pipeline.py                              # once: speedruns, branches, tokenizer, reward
    uv run python bench/world_model.py --run runs/pipeline # ~35 minutes on 2 CPU cores

On the held-out run's random-play branches (env steps, true buttons), from each window's first 2 real
frames and the actions that followed, with frames decoded through the tokenizer:
- the world model conditioned on buttons (train_world_model.py), at each --sample-steps;
- the same model conditioned on the latent-action model's codes (train_lam.py at bench/lam_purity.py's
  size, which learns from the speedruns' saved-frame pairs and is applied here to env-step pairs);
- copying the last real frame; the tokenizer's own reconstruction of the real frame (the floor any
  decoded prediction sits on); and the dynamics model's argmax tokens, decoded: Stage 1B's architecture
  and loss trained here on the same branch transitions (the main job's dynamics model learns 4-frame
  steps, not env steps). It reads no action.

Then the imagined env's steps/s against VecGameBoy's, and PPO with the main job's settings for
--ppo-minutes of wall-clock time at each --imagined-fraction of its envs, each evaluated in the emulator
against random. Writes --table, --gif (real beside imagined) and --plot (error against horizon).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import tyro
from flax import nnx
from PIL import Image, ImageDraw
from tqdm import tqdm

import evaluate_policy
import pipeline
import train_lam
import train_with_cnn_reward
import train_world_model
from bench.tables import machine, publish
from data.frames import FramesDataset, load_branches
from envs.actions import ENV_ACTIONS, FRAME_SKIP, PRESS_FRAMES
from envs.games import EMUQUEST_ROM
from models.build import build
from models.transformer import TokenTransformer, TransformerConfig, dynamics_loss
from models.vqvae import load_tokenizer
from models.world_model import load_world_model
from training import main_job
from training.paths import POLICY_FINAL_FILE, TOKENIZER_FILE, WORLD_MODEL_FILE
from training.rollout import env_only_sps
from training.steps import make_optimizer, make_train_step, new_train_state
from training.world_model import (
    branch_sequences,
    encode_latents,
    frame_mse,
    lam_codes,
    open_loop_errors,
    psnr,
    world_model_env,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HORIZONS = (1, 4, 16)


@dataclass
class Args:
    run: Path = Path("runs/pipeline")
    """A pipeline.py run: its speedruns/ (frames and branches) and checkpoints/ (tokenizer, reward)."""
    out_dir: Path = Path("runs/bench_world_model")
    """Where the world models, the LAM, the PPO runs and their evaluations go."""
    steps: int = 2000
    """Training steps of each world model."""
    reuse: bool = False
    """Measure the world models and LAM already in --out-dir (from an earlier run of this bench with the
    same settings) instead of training them again."""
    lam_steps: int = 800
    """Training steps of the latent-action model."""
    dynamics_steps: int = 1500
    """Training steps of the dynamics-model baseline."""
    sample_steps: tuple[int, ...] = (1, 2, 4, 8, 16)
    """Euler steps per frame to compare (the reports' other columns use 4)."""
    horizon: int = 16
    """Open-loop frames predicted from each held-out window."""
    windows: int = 256
    """Held-out windows averaged over."""
    throughput_envs: int = 32
    """Envs of the imagined-vs-emulator steps/s comparison."""
    throughput_seconds: float = 20.0
    """Seconds each env is timed for."""
    ppo_minutes: float = 4.0
    """Wall-clock minutes of each PPO run."""
    imagined_fractions: tuple[float, ...] = (0.0, 0.5)
    """Fractions of PPO's envs that step in the world model."""
    eval_episodes: int = 8
    eval_steps: int = 400
    seed: int = 0
    table: Path = Path("bench/results/world_model.md")
    gif: Path = Path("docs/world_model.gif")
    plot: Path = Path("docs/world_model_error.png")


def train_world_models(args: Args) -> dict[str, Path]:
    """The world models conditioned on buttons (plain flow, and with the shortcut) and on latent actions
    (and the LAM): {name: world_model.pkl}."""
    models = {name: args.out_dir / name / WORLD_MODEL_FILE for name in ("button", "shortcut", "latent")}
    if args.reuse:
        missing = [
            path for path in [*models.values(), args.out_dir / "lam" / "lam.pkl"] if not path.is_file()
        ]
        if missing:
            raise SystemExit(f"--reuse: {', '.join(map(str, missing))} not found; run without --reuse first")
        return models
    speedruns, checkpoints = args.run / "speedruns", args.run / "checkpoints"
    common = dict(
        data=speedruns / "frames",
        branches=speedruns / "branches",
        tokenizer=str(checkpoints / TOKENIZER_FILE),
        steps=args.steps,
        horizon=args.horizon,
        seed=args.seed,
    )
    train_world_model.main(train_world_model.Args(out_dir=str(args.out_dir / "button"), **common))
    train_world_model.main(
        train_world_model.Args(out_dir=str(args.out_dir / "shortcut"), shortcut=True, **common)
    )
    train_lam.main(
        train_lam.Args(
            data=str(speedruns / "frames"),
            out_dir=str(args.out_dir / "lam"),
            steps=args.lam_steps,
            batch_size=16,
            pool=4,
            channels=(32, 64),
            seed=args.seed,
        )
    )
    train_world_model.main(
        train_world_model.Args(
            out_dir=str(args.out_dir / "latent"),
            actions="latent",
            lam=str(args.out_dir / "lam" / "lam.pkl"),
            **common,
        )
    )
    return models


def dynamics_baseline(args, tokenizer, sequences, latents, train_windows, eval_windows) -> np.ndarray:
    """Stage 1B's model (the main job's size: one block on 15 pooled tokens) trained on the branches'
    token transitions, rolled out open loop on its argmax tokens and decoded: per-horizon MSE."""
    _, tokens, _ = jax.jit(lambda z: tokenizer.quantizer(z, None))(jnp.asarray(latents))
    tokens = np.asarray(tokens)
    cfg = TransformerConfig(
        vocab_size=tokenizer.cfg.vocab_size, embed_dim=64, num_layers=1, num_heads=4, pool=(3, 2)
    )
    model = build(lambda: TokenTransformer(cfg, rngs=nnx.Rngs(args.seed)))
    optimizer = make_optimizer(1e-3, args.dynamics_steps)
    graphdef, state = new_train_state(model, optimizer)
    step = make_train_step(graphdef, optimizer, lambda model, batch, key: dynamics_loss(model, *batch))
    rng = np.random.default_rng(args.seed)
    last = train_windows + 1  # the last context frame of a 2-frame window, and the frame after it
    for i in tqdm(range(args.dynamics_steps), desc="dynamics baseline"):
        chosen = rng.choice(last, size=32)
        state, _ = step(state, (tokens[chosen], tokens[chosen + 1]), jax.random.key(i))
    model = nnx.merge(graphdef, state["trainable"], state["frozen"])

    @jax.jit
    def rollout(start):
        def one(current, _):
            following = jnp.argmax(model(current), axis=-1)
            frames = tokenizer.decode(tokenizer.embed_indices(following))
            return following, jnp.clip(jnp.round(frames * 255), 0, 255).astype(jnp.uint8)

        return jax.lax.scan(one, start, None, length=args.horizon)[1].swapaxes(0, 1)

    sums = np.zeros(args.horizon)
    for first in range(0, len(eval_windows), 32):
        chosen = eval_windows[first : first + 32]
        frames = np.asarray(rollout(tokens[chosen + 1]))
        real = sequences.frames[chosen[:, None] + 2 + np.arange(args.horizon)]
        sums += frame_mse(frames, real).sum(axis=0)
    return sums / len(eval_windows)


def tokenizer_floor(tokenizer, sequences, eval_windows, horizon) -> np.ndarray:
    """Per-horizon MSE of the tokenizer's reconstruction of the real frames themselves."""
    recon = jax.jit(lambda frames: tokenizer(frames)[0])
    sums = np.zeros(horizon)
    for first in range(0, len(eval_windows), 32):
        chosen = eval_windows[first : first + 32]
        real = sequences.frames[chosen[:, None] + 2 + np.arange(horizon)]
        frames = np.asarray(recon(real.reshape(-1, *real.shape[2:])))
        frames = np.clip(np.round(frames * 255), 0, 255).astype(np.uint8).reshape(real.shape)
        sums += frame_mse(frames, real).sum(axis=0)
    return sums / len(eval_windows)


def side_by_side(real: np.ndarray, imagined: np.ndarray, actions: list[str], path: Path):
    """A GIF of real frames (left) beside imagined ones (right), 2x, captioned with step and action."""
    frames = []
    for t, (left, right) in enumerate(zip(real, imagined)):
        pair = np.concatenate([left, np.full((144, 4, 3), 255, np.uint8), right], axis=1)
        image = Image.fromarray(pair).resize((pair.shape[1] * 2, 288), Image.NEAREST)
        canvas = Image.new("RGB", (image.width, 304))
        canvas.paste(image)
        caption = f"step {t + 1:2d}  {actions[t]:6s}   real | imagined"
        ImageDraw.Draw(canvas).text((4, 290), caption, fill=(255, 255, 255))
        frames.append(canvas)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=400, loop=0)


def error_plot(curves: dict[str, np.ndarray], path: Path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, mse in curves.items():
        ax.plot(np.arange(1, len(mse) + 1), mse, marker=".", label=name)
    ax.set_xlabel("steps ahead (open loop)")
    ax.set_ylabel("per-frame MSE, held-out run")
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def imagined_sps(path: Path, num_envs: int, sample_steps: int, seconds: float) -> float:
    with world_model_env(path, num_envs, grayscale=True, sample_steps=sample_steps) as env:
        rng = np.random.default_rng(0)
        env.reset(seed=0)
        env.step(rng.integers(0, env.num_actions, num_envs))  # compiles
        steps, started = 0, time.perf_counter()
        while steps == 0 or time.perf_counter() - started < seconds:
            env.step(rng.integers(0, env.num_actions, num_envs))
            steps += 1
        return steps * num_envs / (time.perf_counter() - started)


def ppo_at_equal_time(args: Args, world_model: Path) -> list[dict]:
    """PPO for --ppo-minutes at each imagined fraction, each evaluated in the emulator against random."""
    rows = []
    for fraction in args.imagined_fractions:
        out = args.out_dir / f"ppo_imagined_{fraction:g}"
        # The memoryless policy, as BENCHMARKS.md's figures were measured.
        settings = pipeline.Args(seed=args.seed, memory=0)
        ppo = pipeline.ppo_args(main_job.FULL, args.run / "checkpoints", out, settings)
        imagined = int(round(fraction * ppo.num_envs))
        ppo = dataclasses.replace(
            ppo,
            iterations=1_000_000,
            save_every=1_000_000,
            log_every=50,
            minutes=args.ppo_minutes,
            world_model=str(world_model) if imagined else None,
            imagined_envs=imagined,
            imagined_sample_steps=1,
        )
        history = train_with_cnn_reward.main(ppo)
        evaluation = evaluate_policy.main(
            evaluate_policy.Args(
                policy=str(out / POLICY_FINAL_FILE),
                compare_random=True,
                episodes=args.eval_episodes,
                steps=args.eval_steps,
                out_dir=str(out / "eval"),
                seed=args.seed,
            )
        )
        trained, random = evaluation["rows"]
        iterations = history[-1]["iteration"]
        rows.append(
            {
                "fraction": fraction,
                "iterations": iterations,
                "emulator_steps": iterations * ppo.num_steps * (ppo.num_envs - imagined),
                "imagined_steps": iterations * ppo.num_steps * imagined,
                "trained": trained["milestones_mean"],
                "random": random["milestones_mean"],
                "escape": trained["title_escape_rate"],
            }
        )
    return rows


def main(args: Args) -> str:
    started = time.perf_counter()
    models = train_world_models(args)
    tokenizer = load_tokenizer(args.run / "checkpoints" / TOKENIZER_FILE)
    button, config = load_world_model(models["button"])
    latent_model, _ = load_world_model(models["latent"])
    data = FramesDataset(args.run / "speedruns" / "frames")
    sequences = branch_sequences(data, load_branches(args.run / "speedruns" / "branches", data))
    latents = encode_latents(tokenizer, sequences.frames)
    held_out = data.run_names.index(config["holdout_run"])
    train_windows = sequences.windows(3, runs=np.setdiff1d(sequences.run_id, [held_out]))
    eval_windows = sequences.windows(2 + args.horizon, runs=[held_out])
    eval_windows = eval_windows[
        np.linspace(0, len(eval_windows) - 1, min(args.windows, len(eval_windows))).astype(int)
    ]
    key = jax.random.key(args.seed)
    errors = partial(
        open_loop_errors,
        tokenizer=tokenizer,
        sequences=sequences,
        latents=latents,
        windows=eval_windows,
        horizon=args.horizon,
        key=key,
    )

    by_steps = {steps: errors(button, actions=sequences.actions, steps=steps) for steps in args.sample_steps}
    shortcut_model, _ = load_world_model(models["shortcut"])
    shortcut = {
        steps: errors(shortcut_model, actions=sequences.actions, steps=steps) for steps in args.sample_steps
    }
    main_steps = 4 if 4 in by_steps else args.sample_steps[0]
    lam = train_lam.load_for_eval(args.out_dir / "lam" / "lam.pkl", jnp.dtype("float32"))
    codes = np.full(len(sequences.frames), -1, np.int32)
    after = np.flatnonzero(sequences.actions >= 0)
    codes[after] = lam_codes(lam, sequences.frames[after - 1], sequences.frames[after])
    latent = errors(latent_model, actions=codes, steps=main_steps)
    reference = by_steps[main_steps]
    dynamics = dynamics_baseline(args, tokenizer, sequences, latents, train_windows, eval_windows)
    floor = tokenizer_floor(tokenizer, sequences, eval_windows, args.horizon)

    window = eval_windows[0]
    names = [ENV_ACTIONS[a] for a in sequences.actions[window + 2 : window + 2 + args.horizon]]
    side_by_side(
        sequences.frames[window + 2 : window + 2 + args.horizon], reference["frames"], names, args.gif
    )
    error_plot(
        {
            f"world model, buttons, {main_steps} steps": reference["mse"],
            "world model, buttons, 1 step": by_steps[1]["mse"] if 1 in by_steps else reference["mse"],
            f"world model, latent actions, {main_steps} steps": latent["mse"],
            "copy the last frame": reference["copy_mse"],
            "dynamics model, argmax tokens": dynamics,
            "tokenizer reconstruction (floor)": floor,
        },
        args.plot,
    )

    env_sps = env_only_sps(
        str(EMUQUEST_ROM),
        num_envs=args.throughput_envs,
        num_workers=None,
        frame_skip=FRAME_SKIP,
        press_frames=PRESS_FRAMES,
        max_episode_steps=256,
        seconds=args.throughput_seconds,
        grayscale=True,
    )
    imagined = {
        s: imagined_sps(models["button"], args.throughput_envs, s, args.throughput_seconds) for s in (1, 4)
    }
    ppo_rows = ppo_at_equal_time(args, models["button"]) if args.imagined_fractions else []

    h = lambda values, n: f"{values[n - 1]:.4f}"  # noqa: E731
    lines = [
        "# World model (`bench/world_model.py`)",
        "",
        f"{machine()}, {datetime.date.today()}, {(time.perf_counter() - started) / 60:.0f} min. Held-out run "
        f"{config['holdout_run']}: {len(eval_windows)} windows of its random-play branches (env steps); each "
        f"prediction starts from 2 real frames and follows the logged actions open loop. MSE per frame on "
        f"[0, 1] pixels, decoded through the tokenizer. World models: {args.steps} steps each.",
        "",
        "## Error against horizon",
        "",
        "| prediction | 1 step | 4 steps | 16 steps | PSNR at 1 (dB) |",
        "|---|---|---|---|---|",
    ]
    rows = [
        (f"world model, true buttons, {main_steps} sampling steps", reference["mse"]),
        (f"world model, latent actions (LAM codes), {main_steps} sampling steps", latent["mse"]),
        ("copy the last real frame", reference["copy_mse"]),
        ("dynamics model's argmax tokens, decoded (no action)", dynamics),
        ("tokenizer's reconstruction of the real frame (the floor)", floor),
    ]
    for name, mse in rows:
        lines.append(
            f"| {name} | {h(mse, 1)} | {h(mse, 4)} | {h(mse, min(16, args.horizon))} | {psnr(mse[0]):.1f} |"
        )
    lines += [
        "",
        "In latent space (the model's own error before the decoder's), true buttons: "
        + ", ".join(
            f"{n} ahead {reference['latent_mse'][n - 1]:.3f} "
            f"vs copy {reference['copy_latent_mse'][n - 1]:.3f}"
            for n in HORIZONS
            if n <= args.horizon
        )
        + f"; latent actions: {latent['latent_mse'][0]:.3f} at 1 ahead.",
        "",
        "## Sampling steps against quality (true buttons)",
        "",
        "| model | Euler steps | MSE 1 ahead | MSE 4 ahead | MSE 16 ahead | latent MSE 1 ahead "
        f"| sharpness 1 ahead (real frames: {reference['real_sharpness'][0]:.0f}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, results in (("plain flow", by_steps), ("shortcut", shortcut)):
        for steps, result in results.items():
            lines.append(
                f"| {name} | {steps} | {h(result['mse'], 1)} | {h(result['mse'], 4)} | "
                f"{h(result['mse'], min(16, args.horizon))} | {result['latent_mse'][0]:.4f} "
                f"| {result['sharpness'][0]:.0f} |"
            )
    lines += [
        "",
        "## Imagined env against the emulator",
        "",
        f"{args.throughput_envs} envs, gray frames, random actions: VecGameBoy {env_sps:,.0f} steps/s; "
        + ", ".join(
            f"WorldModelEnv with {s} sampling step(s) {sps:,.0f} steps/s ({sps / env_sps:.2f}x)"
            for s, sps in imagined.items()
        )
        + ".",
    ]
    if ppo_rows:
        lines += [
            "",
            f"## PPO at equal wall-clock time ({args.ppo_minutes:g} min each, the main job's settings)",
            "",
            "| imagined envs | iterations | emulator steps | imagined steps "
            "| milestones, trained / random (emulator) | left title |",
            "|---|---|---|---|---|---|",
        ]
        for row in ppo_rows:
            lines.append(
                f"| {row['fraction']:.0%} | {row['iterations']} | {row['emulator_steps']:,} "
                f"| {row['imagined_steps']:,} | {row['trained']:.2f} / {row['random']:.2f} "
                f"| {row['escape']:.0%} |"
            )
    return publish(args.table, lines)


if __name__ == "__main__":
    main(tyro.cli(Args))
