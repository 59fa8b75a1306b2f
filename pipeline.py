"""The main job: every phase of EmuRL on the embedded game, in one command.

    uv run python pipeline.py            # ~20 minutes on 2 CPU cores (an AMD EPYC)
    uv run python pipeline.py --quick    # ~1 minute, a smoke test
    uv run python pipeline.py --rom red.gb --videos speedruns/ --initial-state red_intro.state

With --rom and --videos it runs on a user's game instead: frames extracted from the videos replace the
scripted speedruns, and PPO, the envs-alone timing and the evaluation run on that ROM (from
--initial-state, if given).

speedruns -> tokenizer (1a) -> dynamics (1b) -> reward -> PPO -> evaluation, each phase
calling the same `main(Args)` as its standalone script, with sizes chosen for a CPU. PPO's
reward is the Phase 2 reward's score of the furthest speedrun frame each episode has matched in
order (training/route.py; --no-route: the score of its own frames). Everything goes under
--out-dir: report.md holds the results table and the paths of the GIF and plots, and
report.json the same figures for programs (time, env steps, PPO and env-only steps/s, trained
and random milestones), all measured in the run. Re-running skips nothing: each phase starts
fresh. With --checkpoints it reuses an earlier run's Phase 1-2 checkpoints (and the speedrun
frames beside them) and runs only PPO and the evaluation, as bench/agent.py does for each seed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

import evaluate_policy
import pretrain_visual
import train_reward
import train_with_cnn_reward
from data import extract_frames, make_speedruns
from envs.games import EMUQUEST_ROM, detected, detected_line, profile_for_rom
from envs.rom import RomError, check_rom
from models.reward import reward_config
from training.io import atomic_write
from training.metrics import METRICS_FILE
from training.paths import DYNAMICS_FILE, ENCODER_FILE, POLICY_FINAL_FILE, TOKENIZER_FILE, reward_file
from training.resume import flag
from training.rollout import env_only_sps


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


@dataclass
class Args:
    """Run every phase on the embedded game EmuQuest, or on a user's ROM and speedrun videos."""

    quick: bool = False
    """Smoke-test sizes (~1 minute) instead of the full CPU run (~20 minutes on 2 cores)."""
    out_dir: Path = Path("runs/pipeline")
    """Where speedruns, checkpoints, plots, the GIF and report.md go."""
    seed: int = 0
    """Seeds every phase."""
    num_workers: int | None = None
    """Emulator worker processes for PPO and evaluation (None: one per CPU core)."""
    checkpoints: Path | None = None
    """Reuse the Phase 1-2 checkpoints of an earlier run in this folder (pretrained_encoder.pkl,
    pretrained_dynamics.pkl, reward_vq.pkl) and run only PPO and the evaluation."""
    ppo_iterations: int | None = None
    """PPO iterations (None: the preset's)."""
    ppo_resume: Path | None = None
    """Continue this PPO checkpoint to --ppo-iterations instead of training from scratch."""
    reward_scale: float | None = None
    """PPO's --reward-scale (None: 1, or EVENT_REWARD_SCALE for a reward that reads event features)."""
    curriculum_cells: bool = False
    """PPO's curriculum is Go-Explore's cell archive (--curriculum-cells, CELL_CAPACITY cells) instead
    of states saved at new progress highs."""
    curriculum_backward: bool = False
    """PPO's --curriculum-backward: Go-Explore's robustify phase, resets walking back along the pool's
    chain of new highs once the speedruns' end is reached (needs --route)."""
    memory: int | None = None
    """PPO's --memory: the width of the policy's GRU memory (None: the main job's 128; 0: none)."""
    curriculum_temperature: float | None = None
    """PPO's --curriculum-temperature, in the reward's score units (None: the main job's)."""
    progress_baseline: Literal["last", "best"] | None = None
    """PPO's --progress-baseline (None: the main job's, best)."""
    route: bool = True
    """PPO's reward follows the speedruns in order (train_with_cnn_reward.py --route-frames,
    training/route.py); --no-route scores the agent's own frames and the tokens they have shown."""
    route_frames: Path | None = None
    """The speedrun frames of --route (None: those the checkpoints were trained on, <out-dir>/speedruns
    or videos/frames, or with --checkpoints the same folders beside them)."""
    route_scene_change: int = 0
    """PPO's --route-scene-change: the route is also matched across the rest of each scene (a room, a
    text page), in any order (0: the window alone, the main job's)."""
    route_text_barrier: int = 0
    """PPO's --route-text-barrier: a text page of the runs at least this many frames long must be
    matched to get past it (0: none, the main job's)."""
    novelty_bonus: float | None = None
    """PPO's --novelty-bonus: reward for each coarse screen an episode shows for the first time (None:
    the main job's)."""
    reward_events: int | None = None
    """train_reward.py's --events: event features of the episode's seen tokens the reward reads
    (None: the preset's 8; 0: a reward that reads one frame). With --videos, which have no random-play
    branches to rank it against, the reward reads one frame; with --checkpoints, theirs is used."""
    rom: Path | None = None
    """A user's Game Boy ROM for PPO and the evaluation (needs --videos of that game). None: EmuQuest."""
    videos: Path | None = None
    """Speedrun videos of the game (a file or a folder; at least 2, one is held out): their frames
    replace EmuQuest's scripted speedruns in Phases 1-2."""
    video_fps: float = 15.0
    """Frames per second of video kept (15: every 4th frame at 60 fps, as the scripted speedruns)."""
    initial_state: Path | None = None
    """PyBoy state file PPO's and the evaluation's episodes start from (data/make_start_state.py)."""
    ppo_set: tuple[str, ...] = ()
    """More of PPO's settings, each NAME=VALUE with train_with_cnn_reward.py's flag name (e.g. --ppo-set
    ent-coef=0.01 gamma=0.995; a switch takes true or false), over the main job's and the flags above:
    an ablation of a setting that has no flag here. The files, seed, iterations and folders stay this
    script's (its own flags set them)."""


def check_user_game(args: Args):
    """A user's game needs its videos (the scripted speedruns are EmuQuest's); bad paths fail first."""
    if args.rom is not None:
        if args.videos is None and args.checkpoints is None:
            raise SystemExit(
                "--rom needs --videos (speedrun videos of that game) for Phases 1-2, or --checkpoints from "
                "an earlier run on it: the scripted speedruns are EmuQuest's"
            )
        try:
            check_rom(args.rom)
        except RomError as err:
            raise SystemExit(f"--rom: {err}") from None
    if args.videos is not None and args.checkpoints is not None:
        raise SystemExit("--videos and --checkpoints both give Phases 1-2 their input: pass one")
    if args.videos is not None and not args.videos.exists():
        raise SystemExit(f"--videos {args.videos}: no such file or folder")
    if args.initial_state is not None and not args.initial_state.is_file():
        raise SystemExit(f"--initial-state {args.initial_state}: no such file")
    if args.video_fps <= 0:
        raise SystemExit("--video-fps must be positive")
    for name in ("route_scene_change", "route_text_barrier"):
        if getattr(args, name) < 0:
            raise SystemExit(f"{flag(name)} must be >= 0")
    if args.novelty_bonus is not None and args.novelty_bonus < 0:
        raise SystemExit("--novelty-bonus must be >= 0")
    if args.curriculum_backward and (not args.route or args.curriculum_cells):
        raise SystemExit(
            "--curriculum-backward needs --route (its goal is the runs' end), not --curriculum-cells"
        )


# PPO settings pipeline.py derives from its own flags and layout, which --ppo-set may not change.
PIPELINE_PPO_SETTINGS = frozenset({
    "rom", "initial_state", "reward_model", "pretrained_tokenizer", "pretrained_dynamics", "iterations",
    "num_workers", "save_every", "log_every", "out_dir", "seed", "resume",
})  # fmt: skip


def with_ppo_set(ppo: train_with_cnn_reward.Args, settings: tuple[str, ...]) -> train_with_cnn_reward.Args:
    """`ppo` with --ppo-set's NAME=VALUE settings read as PPO's own flags would be (tyro reports an
    unknown name or a bad value, with PPO's help for it)."""
    switches = {f.name for f in dataclasses.fields(train_with_cnn_reward.Args) if f.type in (bool, "bool")}
    flags = []
    for setting in settings:
        name, equals, value = setting.partition("=")
        field_name = name.removeprefix("--").replace("-", "_")
        if not equals or not field_name:
            raise SystemExit(f"--ppo-set {setting!r}: write NAME=VALUE, e.g. ent-coef=0.01")
        if field_name in PIPELINE_PPO_SETTINGS:
            raise SystemExit(f"--ppo-set {setting!r}: pipeline.py sets {flag(field_name)} itself")
        if field_name in switches:
            if value.lower() not in ("true", "false"):
                raise SystemExit(f"--ppo-set {setting!r}: {flag(field_name)} is a switch, true or false")
            flags.append(flag(field_name) if value.lower() == "true" else f"--no-{flag(field_name)[2:]}")
        else:
            flags += [flag(field_name), value]
    return tyro.cli(train_with_cnn_reward.Args, args=flags, default=ppo) if flags else ppo


def timed(name: str, durations: dict, fn, *a, **kw):
    print(f"\n=== {name} ===", flush=True)
    started = time.perf_counter()
    result = fn(*a, **kw)
    durations[name] = time.perf_counter() - started
    return result


def main(args: Args) -> dict:
    """Returns {"durations", "budget", "ppo_args" (the PPO run's settings), "tokenizer", "dynamics",
    "reward" (each phase's last metrics; None when reused), "history" (PPO's per-iteration records),
    "evaluation"}."""
    budget = budget_for(args)
    check_user_game(args)
    with_ppo_set(train_with_cnn_reward.Args(), args.ppo_set)  # a bad --ppo-set fails before any phase
    out = args.out_dir
    ckpt, ppo_dir, eval_dir = args.checkpoints or out / "checkpoints", out / "ppo", out / "eval"
    rom = args.rom or EMUQUEST_ROM
    rom_bytes = rom.read_bytes()
    print(detected_line(detected(profile_for_rom(rom_bytes), rom_bytes)))
    durations: dict[str, float] = {}
    tokenizer = dynamics = reward = None
    if args.checkpoints is not None:
        for name in (ENCODER_FILE, DYNAMICS_FILE, reward_file(REWARD_BACKBONE)):
            if not (ckpt / name).is_file():
                raise SystemExit(
                    f"--checkpoints: {ckpt / name} not found; run pipeline.py without --checkpoints first"
                )
        if (frames := route_frames(args, ckpt)) is not None and not frames.is_dir():
            raise SystemExit(
                f"--checkpoints: no speedrun frames at {frames} for PPO's route; pass --route-frames "
                "(the frames the checkpoints were trained on) or --no-route"
            )
    elif args.videos is not None:
        frames, branches = out / "videos" / "frames", None
        timed(
            "frames from videos",
            durations,
            extract_frames.main,
            extract_frames.Args(video=args.videos, out=str(frames), fps=args.video_fps),
        )
        runs = sorted(path.name for path in frames.iterdir() if path.is_dir())
        if len(runs) < 2:
            raise SystemExit(
                f"--videos {args.videos}: gave {len(runs)} run(s) of frames; Phases 1-2 hold one run out, "
                "so give at least 2 videos"
            )
    else:
        frames, branches = out / "speedruns" / "frames", out / "speedruns" / "branches"
        timed(
            "speedruns",
            durations,
            make_speedruns.main,
            make_speedruns.Args(
                num_runs=budget.num_runs,
                seed=args.seed,
                frame_every=budget.frame_every,
                branch_every=budget.branch_every,
                branch_steps=budget.branch_steps,
                out=out / "speedruns",
            ),
        )
    if args.checkpoints is None:
        phase1 = dict(data=frames, out_dir=ckpt, seed=args.seed, size=budget.size)
        tokenizer = timed(
            "tokenizer (1a)",
            durations,
            pretrain_visual.main,
            pretrain_visual.Args(
                stage="1a",
                epochs=budget.tokenizer_epochs,
                lr=budget.tokenizer_lr,
                batch_size=budget.tokenizer_batch_size,
                eval_every=TOKENIZER_EVAL_EVERY,
                **phase1,
            ),
        )["1a"]
        dynamics = timed(
            "dynamics (1b)",
            durations,
            pretrain_visual.main,
            pretrain_visual.Args(
                stage="1b",
                epochs=budget.dynamics_epochs,
                lr=budget.dynamics_lr,
                num_layers=budget.dynamics_layers,
                pool=budget.dynamics_pool,
                **phase1,
            ),
        )["1b"]
        # Log-uniform pair gaps: PPO reads score deltas over a few steps, so local order matters most.
        reward = timed(
            "reward",
            durations,
            train_reward.main,
            train_reward.Args(
                backbone=REWARD_BACKBONE,
                epochs=budget.reward_epochs,
                pairs_per_epoch=budget.reward_pairs_per_epoch,
                pair_gaps="log",
                eval_every=REWARD_EVAL_EVERY,
                branches=branches,
                seen_tokens=budget.reward_events > 0,
                events=budget.reward_events,
                drift_fraction=REWARD_DRIFT_FRACTION if budget.reward_events else 0.0,
                tokenizer=ckpt / TOKENIZER_FILE,
                data=frames,
                out_dir=ckpt,
                seed=args.seed,
            ),
        )
    ppo = ppo_args(budget, ckpt, ppo_dir, args)
    history = timed("PPO", durations, train_with_cnn_reward.main, ppo)
    if not history:
        raise SystemExit(
            f"--ppo-resume: {args.ppo_resume} has already run {budget.ppo_iterations} iterations"
        )
    env_sps = timed(
        "envs alone",
        durations,
        env_only_sps,
        str(rom),
        initial_state=ppo.initial_state,
        num_envs=ppo.num_envs,
        num_workers=ppo.num_workers,
        frame_skip=ppo.frame_skip,
        press_frames=ppo.press_frames,
        max_episode_steps=ppo.max_episode_steps,
        seconds=ENV_ONLY_SECONDS if not args.quick else 2,
        grayscale=ppo.observation == "gray",
    )
    evaluation = timed(
        "evaluation",
        durations,
        evaluate_policy.main,
        evaluate_policy.Args(
            policy=str(ppo_dir / POLICY_FINAL_FILE),
            compare_random=True,
            episodes=budget.eval_episodes,
            steps=budget.eval_steps,
            gif=str(eval_dir / "trained_agent.gif"),
            out_dir=str(eval_dir),
            num_workers=args.num_workers,
            seed=args.seed,
        ),
    )

    summary = write_summary(out, durations, history, evaluation, ppo, env_sps)
    data = (
        f"{len(runs)} videos at {args.video_fps:g} fps" if args.videos is not None
        else f"{budget.num_runs} runs, every {budget.frame_every}th frame"
    )  # fmt: skip
    report = write_report(out, data, durations, tokenizer, dynamics, reward, summary, evaluation, ppo)
    print("\n" + report)
    return {
        "report": summary,
        "durations": durations,
        "budget": dataclasses.asdict(budget),
        "ppo_args": dataclasses.asdict(ppo),
        "tokenizer": tokenizer,
        "dynamics": dynamics,
        "reward": reward,
        "history": history,
        "evaluation": evaluation,
    }


def budget_for(args: Args) -> Budget:
    budget = QUICK if args.quick else FULL
    if args.ppo_iterations is not None:
        if args.ppo_iterations < 1:
            raise SystemExit("--ppo-iterations must be >= 1")
        budget = dataclasses.replace(budget, ppo_iterations=args.ppo_iterations)
    if args.reward_events is not None:
        if args.reward_events < 0:
            raise SystemExit("--reward-events must be >= 0")
        budget = dataclasses.replace(budget, reward_events=args.reward_events)
    if args.videos is not None:
        # Videos have no random-play branches, so no drift pairs, and a reward that reads the seen
        # tokens without them pays for wandering (bench/wander_reward.py): it reads one frame.
        budget = dataclasses.replace(budget, reward_events=0)
    return budget


def ppo_args(budget: Budget, checkpoints: Path, out_dir: Path, args: Args) -> train_with_cnn_reward.Args:
    """The main job's PPO run on the Phase 1-2 checkpoints in `checkpoints`."""
    overrides = dict(PPO_OVERRIDES)
    reward = checkpoints / reward_file(REWARD_BACKBONE)
    if args.reward_scale is not None:
        overrides["reward_scale"] = args.reward_scale
    elif reward.is_file() and reward_config(reward).events:
        overrides["reward_scale"] = EVENT_REWARD_SCALE
    if args.curriculum_cells:
        overrides |= dict(curriculum_cells=True, curriculum_capacity=CELL_CAPACITY)
    if args.curriculum_backward:
        overrides["curriculum_backward"] = True
    if args.memory is not None:
        overrides["memory"] = args.memory
    if args.curriculum_temperature is not None:
        overrides["curriculum_temperature"] = args.curriculum_temperature
    if args.progress_baseline is not None:
        overrides["progress_baseline"] = args.progress_baseline
    if args.novelty_bonus is not None:
        overrides["novelty_bonus"] = args.novelty_bonus
    if (frames := route_frames(args, checkpoints)) is not None:
        overrides |= dict(
            route_frames=str(frames),
            route_scene_change=args.route_scene_change,
            route_text_barrier=args.route_text_barrier,
        )
    ppo = train_with_cnn_reward.Args(
        rom=None if args.rom is None else str(args.rom),
        initial_state=None if args.initial_state is None else str(args.initial_state),
        reward_model=str(reward),
        pretrained_tokenizer=str(checkpoints / ENCODER_FILE),
        pretrained_dynamics=str(checkpoints / DYNAMICS_FILE),
        iterations=budget.ppo_iterations,
        num_envs=budget.ppo_envs,
        num_steps=budget.ppo_steps,
        num_workers=args.num_workers,
        save_every=max(1, budget.ppo_iterations // 2),
        log_every=max(1, budget.ppo_iterations // 10),
        out_dir=str(out_dir),
        seed=args.seed,
        resume=None if args.ppo_resume is None else str(args.ppo_resume),
        **overrides,
    )
    return with_ppo_set(ppo, args.ppo_set)


def route_frames(args: Args, checkpoints: Path) -> Path | None:
    """The speedrun frames PPO's reward follows: --route-frames, else the frames of the run that made
    the checkpoints (its videos' frames, or its scripted speedruns); None with --no-route."""
    if not args.route:
        return None
    if args.route_frames is not None:
        return args.route_frames
    videos = checkpoints.parent / "videos" / "frames"
    return videos if videos.is_dir() else checkpoints.parent / "speedruns" / "frames"


def write_summary(out: Path, durations, history, evaluation, ppo, env_sps: float) -> dict:
    """report.json: the main job's figures for programs, all measured in this run."""
    rows = {row["agent"]: row for row in evaluation["rows"]}
    steady = history[1:] or history  # the first iteration includes compilation
    steps = len(steady) * ppo.num_envs * ppo.num_steps
    ppo_sps = steps / sum(ppo.num_envs * ppo.num_steps / r["charts/sps"] for r in steady)
    summary = {
        "game": evaluation["game"],
        "minutes_total": sum(durations.values()) / 60,
        "minutes": {name: seconds / 60 for name, seconds in durations.items()},
        "ppo_env_steps": history[-1]["env_steps"],  # with --ppo-resume, the earlier run's included
        "ppo_env_steps_run": len(history) * ppo.num_envs * ppo.num_steps,  # this run's alone
        "ppo_sps": ppo_sps,
        "env_only_sps": env_sps,
        "ppo_to_env_sps": ppo_sps / env_sps,
        "token_cache_hit_rate": float(np.mean([r.get("charts/token_cache_hit_rate", 0.0) for r in steady])),
        "entropy_fraction_final": history[-1]["policy/entropy_fraction"],
        "trained_milestones_mean": rows["trained"]["milestones_mean"],
        "random_milestones_mean": rows["random"]["milestones_mean"],
        "trained_finished_rate": rows["trained"]["finished_rate"],
        "random_finished_rate": rows["random"]["finished_rate"],
        "title_escape_rate": rows["trained"]["title_escape_rate"],
        "random_title_escape_rate": rows["random"]["title_escape_rate"],
        "trained_title_steps_median": rows["trained"]["title_steps_median"],
        "random_title_steps_median": rows["random"]["title_steps_median"],
        "intro_done_rate": rows["trained"]["intro_done_rate"],
        "random_intro_done_rate": rows["random"]["intro_done_rate"],
    }
    atomic_write(out / "report.json", json.dumps(summary, indent=1) + "\n")
    return summary


def write_report(
    out: Path,
    data: str,
    durations,
    tokenizer,
    dynamics,
    reward,
    summary: dict,
    evaluation,
    ppo: train_with_cnn_reward.Args,
) -> str:
    """report.md in `out`; `data` says what Phases 1-2 trained on, and their rows say where reused
    checkpoints came from."""
    minutes = {name: f"{seconds / 60:.1f}" for name, seconds in durations.items()}
    reused = f"reused from {Path(ppo.reward_model).parent}"
    if tokenizer is None:
        phase12 = [f"| speedruns, tokenizer, dynamics, reward | {reused} | - |"]
    else:
        data_phase = "speedruns" if "speedruns" in minutes else "frames from videos"
        phase12 = [
            f"| {data_phase} | {data} | {minutes[data_phase]} |",
            f"| tokenizer | codebook use {tokenizer['code_use']:.0%}, "
            f"held-out recon MSE {tokenizer['eval_recon_mse']:.4f}"
            f" | {minutes['tokenizer (1a)']} |",
            f"| dynamics | next-token acc {dynamics['eval_accuracy']:.1%} vs copy baseline"
            f" {dynamics['eval_copy_accuracy']:.1%} | {minutes['dynamics (1b)']} |",
            f"| reward (frozen VQ + MLP) | held-out pairwise acc {reward['eval_pairwise_accuracy']:.1%},"
            f" Spearman {reward['eval_spearman']:.3f}, branches below the run"
            f" {reward.get('eval_branch_accuracy', float('nan')):.1%} | {minutes['reward']} |",
        ]
    lines = [
        "# EmuRL pipeline report",
        "",
        detected_line(evaluation["game"]),
        "",
        "| phase | result | minutes |",
        "|---|---|---|",
        *phase12,
        f"| PPO | {summary['ppo_env_steps']:,} env steps at {summary['ppo_sps']:.0f} SPS, "
        f"{summary['ppo_to_env_sps']:.2f} of the envs alone ({summary['env_only_sps']:.0f}); token cache "
        f"hit rate {summary['token_cache_hit_rate']:.0%}; entropy {summary['entropy_fraction_final']:.1%} "
        f"of max | {minutes['PPO']} |",
        f"| evaluation | see below | {minutes['evaluation']} |",
        "",
        f"Total: {sum(durations.values()) / 60:.1f} minutes.",
        "",
        "## Trained agent vs random",
        "",
        evaluation["table"],
        "",
        f"- GIF of the trained agent: `{evaluation['gif']}`",
        f"- Milestones over training: `{evaluation['plot']}`",
        f"- PPO metrics: `{Path(ppo.out_dir) / METRICS_FILE}`",
        f"- These figures for programs: `{out / 'report.json'}`",
        f"- Tokenizer reconstructions: `{Path(ppo.reward_model).parent / 'recon_grid.png'}`",
    ]
    report = "\n".join(lines) + "\n"
    atomic_write(out / "report.md", report)
    return report


if __name__ == "__main__":
    main(tyro.cli(Args))
