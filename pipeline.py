"""The main job: every phase of EmuRL on the embedded game, in one command.

    uv run python pipeline.py            # 9-19 minutes on 2 CPU cores (9 on an Intel Xeon, 17-19 on an AMD EPYC)
    uv run python pipeline.py --quick    # 1-3 minutes, a smoke test

speedruns -> tokenizer (1a) -> dynamics (1b) -> reward -> PPO -> evaluation, each phase
calling the same `main(Args)` as its standalone script, with sizes chosen for a CPU.
Everything goes under --out-dir; report.md there holds the results table and the paths
of the GIF and plots. Re-running skips nothing: each phase starts fresh.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

import evaluate_policy
import pretrain_visual
import train_reward
import train_with_cnn_reward
from data import make_speedruns


@dataclass(frozen=True)
class Budget:
    """Sizes of every phase; the two presets below are what the README promises."""

    num_runs: int
    frame_every: int
    branch_every: int  # random-play branches off the speedruns, ranked below them by the reward
    branch_steps: int
    size: str  # model size preset of pretrain_visual.py (train_reward.py's ResNet is not used here)
    tokenizer_epochs: int
    tokenizer_lr: float
    tokenizer_batch_size: int
    dynamics_epochs: int
    dynamics_lr: float
    reward_epochs: int  # of the frozen-VQ reward head on cached tokens: ~0.5 s per epoch, a ResNet-34's ~40 s
    reward_pairs_per_epoch: int
    ppo_iterations: int
    ppo_envs: int
    ppo_steps: int
    eval_episodes: int
    eval_steps: int


# Learning rates, epochs and the tokenizer's batch of 16 (twice the updates for the same CPU) as tuned by
# bench/phase12.py (BENCHMARKS.md). The tokenizer gets 8 epochs (held-out MSE 0.012): with the old
# nearest-neighbour decoder it needed 12 (MSE 0.020) to draw sprites at all, and at 3 its
# reconstructions had no sprites, so the reward and the policy could not see the player (BENCHMARKS.md).
# The reward head trains 200 epochs: at 25 it was underfit (held-out 88.8%) and its score had no
# direction inside a room; at 200 (91.2%) the house rises from the start tile to the door (BENCHMARKS.md).
# Random-play branches (24 steps every 48 frames, ~6K frames, +0.5 min of speedruns and +0.7 of reward)
# are ranked below the route, so screens off it no longer score whatever the head extrapolates: with
# them, the seed that never left the house does (BENCHMARKS.md).
FULL = Budget(num_runs=5, frame_every=4, branch_every=48, branch_steps=24, size="small",
              tokenizer_epochs=8, tokenizer_lr=2e-3, tokenizer_batch_size=16, dynamics_epochs=10, dynamics_lr=1e-3,
              reward_epochs=200, reward_pairs_per_epoch=768,
              ppo_iterations=40, ppo_envs=16, ppo_steps=128, eval_episodes=8, eval_steps=400)
QUICK = Budget(num_runs=3, frame_every=12, branch_every=400, branch_steps=4, size="tiny",
               tokenizer_epochs=2, tokenizer_lr=2e-3, tokenizer_batch_size=16, dynamics_epochs=2, dynamics_lr=1e-3,
               reward_epochs=2, reward_pairs_per_epoch=256,
               ppo_iterations=4, ppo_envs=8, ppo_steps=32, eval_episodes=4, eval_steps=100)
# PPO settings for a CPU-sized run (train_with_cnn_reward.py's defaults are the seed's, for 12,000 GPU
# iterations): a higher learning rate and lower entropy bonus move entropy off its maximum; 256-step
# episodes restart each env about 10 times per run, where 2,048-step ones gave it two tries at the
# intro; two epochs per rollout halve the update, which costs ~3x the rollout on a CPU. Progress is
# counted from each episode's best score, so leaving a state the reward overrates costs nothing: with
# plain deltas PPO learned to hold mom's text box open (BENCHMARKS.md).
PPO_OVERRIDES = dict(reward_interval=8, learning_rate=1e-3, ent_coef=0.003, curriculum_prob=0.25, return_filter=0.8,
                     max_episode_steps=256, update_epochs=2, progress_baseline="best")


# Held-out evaluations draw the curves and change no weights. The tokenizer's costs ~15% of its
# epoch and the reward head's a third of its, so the main job runs a few of each (always one
# after the last epoch, which the report reads); the dynamics model's is cheap and runs every epoch.
TOKENIZER_EVAL_EVERY, REWARD_EVAL_EVERY = 4, 20

REWARD_FILE = "reward_vq.pkl"  # the frozen-VQ reward head: a ResNet-34 costs ~40x more per epoch here


@dataclass
class Args:
    """Run every phase on the embedded game EmuQuest."""

    quick: bool = False
    """Smoke-test sizes (1-3 minutes) instead of the full CPU run (9-19 minutes on 2 cores)."""
    out_dir: Path = Path("runs/pipeline")
    """Where speedruns, checkpoints, plots, the GIF and report.md go."""
    seed: int = 0
    """Seeds every phase."""
    num_workers: int | None = None
    """Emulator worker processes for PPO and evaluation (None: one per CPU core)."""


def timed(name: str, durations: dict, fn, *a, **kw):
    print(f"\n=== {name} ===", flush=True)
    started = time.perf_counter()
    result = fn(*a, **kw)
    durations[name] = time.perf_counter() - started
    return result


def main(args: Args) -> dict:
    budget = QUICK if args.quick else FULL
    out = args.out_dir
    frames, ckpt, ppo_dir, eval_dir = out / "speedruns" / "frames", out / "checkpoints", out / "ppo", out / "eval"
    durations: dict[str, float] = {}

    timed("speedruns", durations, make_speedruns.main, make_speedruns.Args(
        num_runs=budget.num_runs, seed=args.seed, frame_every=budget.frame_every, branch_every=budget.branch_every,
        branch_steps=budget.branch_steps, out=out / "speedruns"))
    phase1 = dict(data=frames, out_dir=ckpt, seed=args.seed, size=budget.size)
    tokenizer = timed("tokenizer (1a)", durations, pretrain_visual.main, pretrain_visual.Args(
        stage="1a", epochs=budget.tokenizer_epochs, lr=budget.tokenizer_lr, batch_size=budget.tokenizer_batch_size,
        eval_every=TOKENIZER_EVAL_EVERY, **phase1))["1a"]
    dynamics = timed("dynamics (1b)", durations, pretrain_visual.main, pretrain_visual.Args(
        stage="1b", epochs=budget.dynamics_epochs, lr=budget.dynamics_lr, **phase1))["1b"]
    # Log-uniform pair gaps: PPO reads score deltas over a few steps, so local order matters most.
    reward = timed("reward", durations, train_reward.main, train_reward.Args(
        backbone="vq", epochs=budget.reward_epochs, pairs_per_epoch=budget.reward_pairs_per_epoch, pair_gaps="log",
        eval_every=REWARD_EVAL_EVERY,
        branches=out / "speedruns" / "branches", tokenizer=ckpt / pretrain_visual.TOKENIZER_FILE, data=frames,
        out_dir=ckpt, seed=args.seed))
    history = timed("PPO", durations, train_with_cnn_reward.main, ppo_args(budget, ckpt, ppo_dir, args.seed, args.num_workers))
    evaluation = timed("evaluation", durations, evaluate_policy.main,
                       evaluation_args(budget, ppo_dir / "policy_final.pkl", eval_dir, args.seed, args.num_workers))

    report = write_report(out, budget, durations, tokenizer, dynamics, reward, history, evaluation)
    print("\n" + report)
    return {"durations": durations, "tokenizer": tokenizer, "dynamics": dynamics, "reward": reward,
            "ppo": history[-1] if history else {}, "evaluation": evaluation}


def ppo_args(budget: Budget, checkpoints: Path, out_dir: Path, seed: int, num_workers: int | None):
    """The main job's PPO run on the Phase 1-2 checkpoints in `checkpoints` (bench/agent.py runs the same)."""
    return train_with_cnn_reward.Args(
        reward_model=str(checkpoints / REWARD_FILE),
        pretrained_tokenizer=str(checkpoints / pretrain_visual.ENCODER_FILE),
        pretrained_dynamics=str(checkpoints / pretrain_visual.DYNAMICS_FILE),
        iterations=budget.ppo_iterations,
        num_envs=budget.ppo_envs,
        num_steps=budget.ppo_steps,
        num_workers=num_workers,
        save_every=max(1, budget.ppo_iterations // 2),
        log_every=max(1, budget.ppo_iterations // 10),
        out_dir=str(out_dir),
        seed=seed,
        **PPO_OVERRIDES,
    )


def evaluation_args(budget: Budget, policy: Path, out_dir: Path, seed: int, num_workers: int | None):
    """The main job's evaluation of `policy` against the random baseline."""
    return evaluate_policy.Args(
        policy=str(policy), compare_random=True, episodes=budget.eval_episodes, steps=budget.eval_steps,
        gif=str(out_dir / "trained_agent.gif"), out_dir=str(out_dir), num_workers=num_workers, seed=seed)


def write_report(out: Path, budget: Budget, durations, tokenizer, dynamics, reward, history, evaluation) -> str:
    last = history[-1] if history else {}
    lines = [
        "# EmuRL pipeline report (embedded game EmuQuest)",
        "",
        "| phase | result | minutes |",
        "|---|---|---|",
        f"| speedruns | {budget.num_runs} runs, every {budget.frame_every}th frame | {durations['speedruns'] / 60:.1f} |",
        f"| tokenizer | codebook use {tokenizer['code_use']:.0%}, held-out recon MSE {tokenizer['eval_recon_mse']:.4f}"
        f" | {durations['tokenizer (1a)'] / 60:.1f} |",
        f"| dynamics | next-token acc {dynamics['eval_accuracy']:.1%} vs copy baseline {dynamics['eval_copy_accuracy']:.1%}"
        f" | {durations['dynamics (1b)'] / 60:.1f} |",
        f"| reward (frozen VQ + MLP) | held-out pairwise acc {reward['eval_pairwise_accuracy']:.1%},"
        f" Spearman {reward['eval_spearman']:.3f}, branches below the run {reward.get('eval_branch_accuracy', float('nan')):.1%}"
        f" | {durations['reward'] / 60:.1f} |",
        f"| PPO | {budget.ppo_iterations} iterations, {last.get('charts/sps', 0):.0f} SPS,"
        f" entropy {last.get('policy/entropy_fraction', float('nan')):.1%} of max | {durations['PPO'] / 60:.1f} |",
        f"| evaluation | see below | {durations['evaluation'] / 60:.1f} |",
        "",
        f"Total: {sum(durations.values()) / 60:.1f} minutes.",
        "",
        "## Trained agent vs random",
        "",
        evaluation["table"],
        "",
        f"- GIF of the trained agent: `{evaluation['gif']}`",
        f"- Milestones over training: `{evaluation['plot']}`",
        f"- PPO metrics: `{out / 'ppo' / 'metrics.jsonl'}`",
        f"- Tokenizer reconstructions: `{out / 'checkpoints' / 'recon_grid.png'}`",
    ]
    report = "\n".join(lines) + "\n"
    (out / "report.md").write_text(report)
    (out / "durations.json").write_text(json.dumps(durations, indent=1))
    return report


if __name__ == "__main__":
    main(tyro.cli(Args))
