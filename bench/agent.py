"""Agent benchmark: PPO on the embedded game vs the random baseline, across seeds.

    uv run python pipeline.py                      # once: speedruns, tokenizer, dynamics, reward
    uv run python bench/agent.py --checkpoints runs/pipeline/checkpoints
    uv run python bench/agent.py --checkpoints runs/pipeline/checkpoints --memory 0 \
        --out-dir runs/bench_agent_no_memory --output bench/results/agent_no_memory.md   # an ablation
    uv run python bench/agent.py --checkpoints runs/pipeline/checkpoints --seeds 0 --ppo-set gamma=0.995 \
        --out-dir runs/bench_agent_gamma --output bench/results/agent_gamma_0.995.md   # any PPO setting
    uv run python pipeline.py --reward-events 0 --ppo-iterations 1 --out-dir runs/one_frame
    uv run python bench/agent.py --checkpoints runs/one_frame/checkpoints \
        --out-dir runs/bench_agent_one_frame --output bench/results/agent_one_frame_reward.md

For each seed it runs the main job's PPO and evaluation (`pipeline.py --checkpoints`: the same
sizes and settings) on the shared Phase 1-2 checkpoints; pipeline.py also times the envs alone
(random actions, PPO's own env settings and workers) in the same run, so PPO's end-to-end steps/s
can be compared with the envs'. A seed takes ~16 minutes on 2 cores; --reuse keeps finished ones.

Reported per seed and as a mean over seeds: title-screen escape rate (trained, random), milestones
per episode (trained, random, ratio), the rate of episodes reaching the final milestone, the final
entropy as a fraction of its maximum, and PPO SPS vs env-only SPS. Targets: escape >= 95%,
milestones >= 3x random, the final milestone in >= 50% of episodes, SPS ratio >= 0.5. Prints a
markdown table and writes it to --output (atomically)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

import pipeline
from bench.tables import machine
from envs.games import EMUQUEST_ROM
from models.checkpoint import load_checkpoint
from training.io import atomic_write
from training.paths import POLICY_FINAL_FILE, path_from_checkpoint
from training.ppo_config import PATH_SETTINGS
from training.ppo_config import Args as PPOArgs


@dataclass
class Args:
    """PPO vs random on EmuQuest, several seeds, with the main job's sizes."""

    checkpoints: Path = Path("runs/pipeline/checkpoints")
    """Phase 1-2 outputs of pipeline.py: pretrained_encoder.pkl, pretrained_dynamics.pkl,
    reward_<backbone>.pkl."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """PPO seeds (the Phase 1-2 checkpoints are shared)."""
    quick: bool = False
    """Use the main job's --quick sizes (a smoke test)."""
    ppo_iterations: int | None = None
    """PPO iterations per seed (None: the main job's). With --resume-from, the total to continue to."""
    resume_from: Path | None = None
    """An earlier --out-dir of this bench: each seed copies its seed_N/ppo run and continues it to
    --ppo-iterations, instead of training from scratch (to study a longer budget at half the cost)."""
    out_dir: Path = Path("runs/bench_agent")
    """Where each seed's PPO run and evaluation go."""
    num_workers: int | None = None
    """Emulator worker processes (None: one per CPU core)."""
    output: Path = Path("bench/results/agent.md")
    """Where the markdown table is written."""
    reward_scale: float | None = None
    """PPO's --reward-scale (None: the main job's for the checkpoints' reward: 1 for a one-frame
    head, training/main_job.py EVENT_REWARD_SCALE for one with event features)."""
    curriculum_cells: bool = False
    """PPO's curriculum is Go-Explore's cell archive instead of new progress highs."""
    curriculum_backward: bool = False
    """PPO's curriculum walks back along its chain of new highs once it reaches the runs' end
    (Go-Explore's robustify phase, --curriculum-backward)."""
    memory: int | None = None
    """PPO's --memory: the width of the policy's GRU memory (None: the main job's; 0: none)."""
    curriculum_temperature: float | None = None
    """PPO's --curriculum-temperature (None: the main job's)."""
    progress_baseline: Literal["last", "best"] | None = None
    """PPO's --progress-baseline (None: the main job's)."""
    route: bool = True
    """PPO's reward follows the speedruns in order (the main job's); --no-route: it scores the agent's
    own frames and their seen tokens."""
    route_frames: Path | None = None
    """The speedrun frames the route follows (None: the main job's, beside --checkpoints)."""
    route_scene_change: int = 0
    """PPO's --route-scene-change: scenes of the route matched whole, in any order (0: the main
    job's, the window alone)."""
    route_text_barrier: int = 0
    """PPO's --route-text-barrier: a text page of the runs at least this many frames long must be matched
    to get past it (0: none, the main job's)."""
    novelty_bonus: float | None = None
    """PPO's --novelty-bonus for each screen an episode shows first (None: the main job's)."""
    ppo_set: tuple[str, ...] = ()
    """pipeline.py's --ppo-set: more of PPO's settings, each NAME=VALUE with its flag name (e.g.
    ent-coef=0.01), over the main job's; the table's header names them."""
    reuse: bool = False
    """Read a seed's finished run in --out-dir (report.json and the final policy) instead of running it
    again, when its policy was trained with exactly the PPO settings this bench would use: an interrupted
    bench, or one with seeds added, continues where it stopped."""


# PPO settings that do not change what is trained: a reused run may differ in them.
RUNTIME_SETTINGS = frozenset({"num_workers", "out_dir", "log_every", "resume"})


def pipeline_args(args: Args, seed: int, resume: Path | None = None) -> pipeline.Args:
    return pipeline.Args(
        quick=args.quick,
        out_dir=args.out_dir / f"seed_{seed}",
        seed=seed,
        num_workers=args.num_workers,
        checkpoints=args.checkpoints,
        ppo_iterations=args.ppo_iterations,
        ppo_resume=resume,
        reward_scale=args.reward_scale,
        curriculum_cells=args.curriculum_cells,
        curriculum_backward=args.curriculum_backward,
        memory=args.memory,
        curriculum_temperature=args.curriculum_temperature,
        progress_baseline=args.progress_baseline,
        route=args.route,
        route_frames=args.route_frames,
        route_scene_change=args.route_scene_change,
        route_text_barrier=args.route_text_barrier,
        novelty_bonus=args.novelty_bonus,
        ppo_set=args.ppo_set,
    )


def finished_run(args: Args, seed: int) -> dict | None:
    """The seed's row from an earlier run in --out-dir, or None when there is none or its PPO settings
    differ from this bench's (paths compared as the files they name)."""
    run_dir = args.out_dir / f"seed_{seed}"
    report, policy = run_dir / "report.json", run_dir / "ppo" / POLICY_FINAL_FILE
    if not (report.is_file() and policy.is_file()):
        return None
    if report.stat().st_mtime < policy.stat().st_mtime:  # the policy's evaluation never finished
        print(f"seed {seed}: {report} is older than {policy}: training again")
        return None
    wanted_args = pipeline_args(args, seed)
    budget = pipeline.budget_for(wanted_args)
    wanted = dataclasses.asdict(pipeline.ppo_args(budget, args.checkpoints, run_dir / "ppo", wanted_args))
    trained = load_checkpoint(policy, "policy")["config"]["args"]
    defaults = dataclasses.asdict(PPOArgs())  # for settings added after a run
    for name, value in wanted.items():
        if name in RUNTIME_SETTINGS:
            continue
        theirs = trained.get(name, defaults[name])
        if name == "rom":  # None is the embedded ROM, which a resumed run records by its path
            value, theirs = value or str(EMUQUEST_ROM), theirs or str(EMUQUEST_ROM)
        if name in PATH_SETTINGS and value and theirs:
            value = Path(value).resolve()
            theirs = Path(path_from_checkpoint(theirs, policy.parent)).resolve()
        if value != theirs:
            print(f"seed {seed}: {run_dir} was trained with {name}={theirs!r}, not {value!r}: training again")
            return None
    summary = json.loads(report.read_text())
    print(f"seed {seed}: reusing {run_dir}")
    return row(seed, summary, run_dir / "eval" / "trained_agent.gif", wanted, dataclasses.asdict(budget))


def row(seed: int, report: dict, gif, ppo_args: dict, budget: dict) -> dict:
    steps_run = report.get("ppo_env_steps_run", report["ppo_env_steps"])  # older reports: the total only
    return {
        "seed": seed,
        **report,
        "ppo_sps_wall": steps_run / 60 / report["minutes"]["PPO"],
        "gif": gif,
        "ppo_args": ppo_args,
        "budget": budget,
    }


def run_seed(args: Args, seed: int) -> dict:
    """pipeline.py --checkpoints for one seed: its PPO run, evaluation and settings."""
    if args.reuse and (earlier := finished_run(args, seed)) is not None:
        return earlier
    run_dir = args.out_dir / f"seed_{seed}"
    resume = None
    if args.resume_from is not None:
        shutil.rmtree(run_dir / "ppo", ignore_errors=True)
        shutil.copytree(args.resume_from / f"seed_{seed}" / "ppo", run_dir / "ppo")
        resume = run_dir / "ppo" / POLICY_FINAL_FILE
    result = pipeline.main(pipeline_args(args, seed, resume))
    return row(seed, result["report"], result["evaluation"]["gif"], result["ppo_args"], result["budget"])


def markdown(rows: list[dict], args: Args) -> str:
    ppo, budget = rows[0]["ppo_args"], rows[0]["budget"]
    curriculum = f"new highs at temperature {ppo.get('curriculum_temperature', 1.0):g}"
    if ppo["curriculum_cells"]:
        curriculum = f"cell archive (band {ppo['cell_band']:g})"
    elif ppo.get("curriculum_backward"):
        curriculum = "new highs walked back from the runs' end"
    ppo_set = "".join(f", {setting}" for setting in args.ppo_set)  # --ppo-set, as given
    route = "no route"
    if ppo.get("route_frames"):
        scene_change = ppo.get("route_scene_change", 0)
        route = (
            f"route along {ppo['route_frames']} (window {ppo['route_window']}, "
            f"tolerance {ppo['route_tolerance']}, scene change {scene_change}, "
            f"text barrier {ppo.get('route_text_barrier', 0)})"
        )
    lines = [
        f"Agent benchmark, {datetime.date.today()}, {machine()}; PPO {ppo['iterations']} iterations x "
        f"{ppo['num_envs']} envs x {ppo['num_steps']} steps, reward scale {ppo['reward_scale']:g}, "
        f"curriculum {curriculum}, memory {ppo['memory'] or 'none'}, "
        f"progress baseline {ppo['progress_baseline']}, {route}, "
        f"novelty bonus {ppo.get('novelty_bonus', 0.0):g}{ppo_set}; "
        f"evaluation {budget['eval_episodes']} episodes x {budget['eval_steps']} steps; "
        f"checkpoints {args.checkpoints}"
        + (f"; continued from {args.resume_from}." if args.resume_from else "."),
        "",
        "| seed | left title (trained / random) | steps to leave it (trained / random) "
        "| milestones (trained / random) | ratio | finished (trained / random) | final entropy / max "
        "| PPO SPS (steady / wall) | env-only SPS | PPO / env |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        trained, random = r["trained_milestones_mean"], r["random_milestones_mean"]
        ratio = trained / random if random else float("inf")
        medians = (r["trained_title_steps_median"], r["random_title_steps_median"])
        steps = " / ".join("never" if v is None else f"{v:g}" for v in medians)
        lines.append(
            f"| {r['seed']} | {r['title_escape_rate']:.0%} / {r['random_title_escape_rate']:.0%} | {steps} | "
            f"{trained:.2f} / {random:.2f} | {ratio:.2f}x | "
            f"{r['trained_finished_rate']:.0%} / {r['random_finished_rate']:.0%} | "
            f"{r['entropy_fraction_final']:.1%} | {r['ppo_sps']:.0f} / {r['ppo_sps_wall']:.0f} | "
            f"{r['env_only_sps']:.0f} | {r['ppo_to_env_sps']:.2f} |"
        )
    if len(rows) > 1:
        mean = {key: float(np.mean([r[key] for r in rows])) for key in MEANS}
        lines.append(
            f"| **mean** | {mean['title_escape_rate']:.0%} / {mean['random_title_escape_rate']:.0%} | | "
            f"**{mean['trained_milestones_mean']:.2f} / {mean['random_milestones_mean']:.2f}** | "
            f"**{mean['trained_milestones_mean'] / mean['random_milestones_mean']:.2f}x** | "
            f"{mean['trained_finished_rate']:.0%} / {mean['random_finished_rate']:.0%} | "
            f"{mean['entropy_fraction_final']:.1%} | {mean['ppo_sps']:.0f} / {mean['ppo_sps_wall']:.0f} | "
            f"{mean['env_only_sps']:.0f} | {mean['ppo_to_env_sps']:.2f} |"
        )
    return "\n".join(lines) + "\n"


# Averaged over seeds for the table's last row (its ratio is of the means).
MEANS = (
    "title_escape_rate", "random_title_escape_rate", "trained_milestones_mean", "random_milestones_mean",
    "trained_finished_rate", "random_finished_rate", "entropy_fraction_final", "ppo_sps", "ppo_sps_wall",
    "env_only_sps", "ppo_to_env_sps",
)  # fmt: skip


def main(args: Args) -> str:
    if args.ppo_iterations is not None and args.ppo_iterations < 1:
        raise SystemExit("--ppo-iterations must be >= 1")
    # Checked before any seed trains, so a missing run does not surface an hour in (pipeline.py checks
    # --checkpoints before the first seed trains).
    if args.resume_from is not None:
        if args.resume_from.resolve() == args.out_dir.resolve():
            raise SystemExit(
                "--resume-from is --out-dir: each seed's run would be deleted before it is copied; "
                "give a new --out-dir"
            )
        for seed in args.seeds:
            earlier = args.resume_from / f"seed_{seed}" / "ppo" / POLICY_FINAL_FILE
            if not earlier.is_file():
                raise SystemExit(
                    f"--resume-from: {earlier} not found; run this bench with --out-dir "
                    f"{args.resume_from} first"
                )
    rows = [run_seed(args, seed) for seed in args.seeds]
    table = markdown(rows, args)
    print(table)
    atomic_write(args.output, table)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
