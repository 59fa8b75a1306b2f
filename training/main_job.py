"""The main job's sizes and settings (pipeline.py): two presets of every phase's size, tuned for a 2-core
CPU with bench/phase12.py and bench/agent.py (BENCHMARKS.md), and the PPO settings it runs with."""

from __future__ import annotations

from dataclasses import dataclass


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
    dynamics_layers: int  # the dynamics model's blocks, which the policy's trunk starts from
    dynamics_pool: tuple[int, int]  # token windows merged into one trunk token
    reward_epochs: int  # of the frozen-VQ reward head on cached tokens: ~0.5 s per epoch, a ResNet-34's ~40 s
    reward_pairs_per_epoch: int
    reward_events: int  # event features of the seen-token bag the reward reads (0: one frame)
    ppo_iterations: int
    ppo_envs: int
    ppo_steps: int
    eval_episodes: int
    eval_steps: int


# Sizes for a 2-core CPU, tuned with bench/phase12.py and bench/agent.py (BENCHMARKS.md): the tokenizer
# trains 8 epochs at batch 16 (enough to draw sprites, which the reward and the policy must see), the
# reward head 200 epochs on cached tokens (fewer leave its score without direction inside a room), and
# random-play branches (24 steps every 48 frames) are ranked below the route so that screens off it do
# not score whatever the head extrapolates.
FULL = Budget(
    num_runs=5,
    frame_every=4,
    branch_every=48,
    branch_steps=24,
    size="small",
    tokenizer_epochs=8,
    tokenizer_lr=2e-3,
    tokenizer_batch_size=16,
    dynamics_epochs=10,
    dynamics_lr=1e-3,
    dynamics_layers=1,
    dynamics_pool=(3, 2),
    reward_epochs=200,
    reward_pairs_per_epoch=768,
    reward_events=8,
    ppo_iterations=500,
    ppo_envs=64,
    ppo_steps=32,
    eval_episodes=8,
    eval_steps=400,
)
QUICK = Budget(
    num_runs=3,
    frame_every=12,
    branch_every=400,
    branch_steps=4,
    size="tiny",
    tokenizer_epochs=2,
    tokenizer_lr=2e-3,
    tokenizer_batch_size=16,
    dynamics_epochs=2,
    dynamics_lr=1e-3,
    dynamics_layers=1,
    dynamics_pool=(3, 2),
    reward_epochs=2,
    reward_pairs_per_epoch=256,
    reward_events=8,
    ppo_iterations=4,
    ppo_envs=8,
    ppo_steps=32,
    eval_episodes=4,
    eval_steps=100,
)
# PPO for a CPU-sized run (train_with_cnn_reward.py's defaults are the seed's, for 12,000 GPU iterations):
# a higher learning rate and a lower entropy bonus move entropy off its maximum; 256-step episodes restart
# each env often; progress counted from each episode's best score makes leaving an overrated state free.
# The learner is sized to keep up with the emulators (bench/learner.py): gray frames, a token cache, a
# trunk of one block on 15 pooled tokens (the dynamics model's size), one epoch per rollout, and each
# update overlapped with the next rollout. A GRU memory of 128 lets the policy know what it has done
# (bench/agent.py: 2.67 milestones against 2.29 without, 3 seeds) at no measurable cost in steps/s.
PPO_OVERRIDES = dict(
    reward_interval=8,
    learning_rate=1e-3,
    ent_coef=0.003,
    curriculum_prob=0.25,
    return_filter=0.8,
    max_episode_steps=256,
    update_epochs=1,
    progress_baseline="best",
    observation="gray",
    overlap_update=True,
    memory=128,
)
CELL_CAPACITY = 256  # cells kept with --curriculum-cells (EmuQuest's speedruns show ~250 of them)
ENV_ONLY_SECONDS = 15  # the envs alone, with PPO's settings, timed in the same run for report.json


# Held-out evaluation changes no weights but costs ~15% of a tokenizer epoch and a third of a reward-head
# epoch, so the main job runs a few (always one after the last epoch, which the report reads).
TOKENIZER_EVAL_EVERY, REWARD_EVAL_EVERY = 4, 20

REWARD_BACKBONE = "vq"  # the frozen-VQ reward head: a ResNet-34 costs ~40x more per epoch on a CPU
# A reward with event features ranks half its branch pairs below their own trajectory's past, so that
# random play cannot raise it (bench/wander_reward.py), and its scores span ~3x a one-frame head's on the
# held-out run (99.5 against 34.4), so PPO scales them down to the one-frame head's unit.
REWARD_DRIFT_FRACTION, EVENT_REWARD_SCALE = 0.5, 0.35
