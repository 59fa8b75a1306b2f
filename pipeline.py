"""The main job: every phase of EmuRL on the embedded game, in one command.

    uv run python pipeline.py            # ~20 minutes on 2 CPU cores (an AMD EPYC)
    uv run python pipeline.py --quick    # ~1 minute, a smoke test
    uv run python pipeline.py --rom red.gb --videos speedruns/ --initial-state red_intro.state

With --rom and --videos it runs on a user's game instead: frames extracted from the videos replace the
scripted speedruns, and PPO, the envs-alone timing and the evaluation run on that ROM (from
--initial-state, if given).

speedruns -> tokenizer (1a) -> dynamics (1b) -> reward -> PPO -> evaluation, each phase
calling the same `main(Args)` as its standalone script, with sizes chosen for a CPU
(training/main_job.py). PPO's reward is the Phase 2 reward's score of the furthest speedrun frame
each episode has matched in order (training/route.py; --no-route: the score of its own frames).
Everything goes under --out-dir: report.md holds the results table and the paths of the GIF and
plots, and report.json the same figures for programs (time, env steps, PPO and env-only steps/s,
trained and random milestones), all measured in the run (training/pipeline_report.py). Re-running
skips nothing: each phase starts fresh. With --checkpoints it reuses an earlier run's Phase 1-2
checkpoints (and the speedrun frames beside them) and runs only PPO and the evaluation, as
bench/agent.py does for each seed.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

import evaluate_policy
import pretrain_visual
import train_reward
import train_with_cnn_reward
from data import extract_frames, make_speedruns
from envs.games import EMUQUEST_ROM, detected, detected_line, profile_for_rom
from envs.rom import RomError, check_rom
from models.reward import reward_config
from training.main_job import (
    CELL_CAPACITY,
    ENV_ONLY_SECONDS,
    EVENT_REWARD_SCALE,
    FULL,
    PPO_OVERRIDES,
    QUICK,
    REWARD_BACKBONE,
    REWARD_DRIFT_FRACTION,
    REWARD_EVAL_EVERY,
    TOKENIZER_EVAL_EVERY,
    Budget,
)
from training.paths import DYNAMICS_FILE, ENCODER_FILE, POLICY_FINAL_FILE, TOKENIZER_FILE, reward_file
from training.pipeline_report import write_report, write_summary
from training.ppo_config import Args as PPOArgs
from training.ppo_config import with_settings
from training.resume import flag
from training.rollout import env_only_sps


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


def with_ppo_set(ppo: PPOArgs, settings: tuple[str, ...]) -> PPOArgs:
    return with_settings(ppo, settings, reserved=PIPELINE_PPO_SETTINGS, caller="pipeline.py")


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
    with_ppo_set(PPOArgs(), args.ppo_set)  # a bad --ppo-set fails before any phase
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


def ppo_args(budget: Budget, checkpoints: Path, out_dir: Path, args: Args) -> PPOArgs:
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
    ppo = PPOArgs(
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


if __name__ == "__main__":
    main(tyro.cli(Args))
