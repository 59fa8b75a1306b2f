"""Evaluate a trained policy against the random baseline on VecGameBoy.

    uv run python evaluate_policy.py --policy checkpoints/policy_final.pkl --steps 2000 \
        --compare-random --gif eval/agent.gif

Each of `--episodes` envs plays one episode of at most `--steps` env steps (the game's end
screen ends it sooner). The table reports, per agent, how many episodes left the title
screen, milestones reached (from RAM), maps visited and the learned-progress return (the
training reward, when the reward model is available). It also writes a GIF of the first
episode with the action and score drawn on each frame, and a PNG of milestones over
training read from the run's metrics.jsonl (next to the policy by default).

With --world-model the episodes are played in a world model's imagination (train_world_model.py)
instead: they start from real frames, the table reports the learned-progress return and episode
length (there is no RAM, so no milestones), and the GIF shows imagined frames.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from PIL import Image, ImageDraw
from tqdm import tqdm

from data import storage
from envs.actions import FRAME_SKIP, PRESS_FRAMES
from envs.emulators import WorkerError
from envs.games import EMUQUEST_ROM, detected_line
from envs.rom import RomError
from envs.vec_gameboy import WORKER_TIMEOUT_S, VecGameBoy
from envs.world_model_env import WorldModelEnv
from models.checkpoint import CheckpointError
from training.cli import check_file, fail, writable_dir
from training.io import atomic_path, atomic_write
from training.metrics import METRICS_FILE, plot_curves, read_records
from training.out_dir import OutDir
from training.paths import (
    EVAL_DIR,
    POLICY_FINAL_FILE,
    PPO_DIR,
    REWARD_DIR,
    WORLD_MODEL_DIR,
    checkpoint_folder,
    find_checkpoint,
    local_checkpoint,
    locate_checkpoint,
    path_from_checkpoint,
)
from training.policy_io import load_policy, policy_chooser
from training.ppo import CURVES
from training.progress import ProgressReward, ended_frames, load_progress, settings_of_run
from training.rom_binding import bound_rom
from training.route import load_routes
from training.world_model import world_model_env


@dataclass
class Args:
    """Trained policy vs random: title escape, milestones, maps, return; GIF and training plot."""

    policy: str | None = POLICY_FINAL_FILE
    """Policy checkpoint from train_with_cnn_reward.py: a path, a storage URL, or a name found in
    checkpoints/ (ignored with --random)."""
    steps: int = 2000
    """Env steps per episode (at most; finishing the game ends it sooner)."""
    episodes: int = 8
    """Episodes per agent, played in parallel, one per env."""
    rom: str | None = None
    """Game Boy ROM. None: the ROM the policy was trained on (its checkpoint records the title and
    sha1; another cartridge is refused), or EmuQuest with --random."""
    allow_other_rom: bool = False
    """Run the policy on a --rom whose sha1 differs from the one it was trained on."""
    initial_state: str | None = None
    """PyBoy state file episodes start from. None: the policy's training start (its --initial-state,
    or power-on); 'power-on' starts there whatever the policy trained from."""
    random: bool = False
    """Evaluate only the uniform-random baseline (no policy needed)."""
    compare_random: bool = False
    """Evaluate the policy and the random baseline and print both."""
    gif: str | None = None
    """Write a GIF of the first episode (the policy's, or random's with --random): a path or a storage
    URL."""
    gif_frames: int = 400
    """Most env steps drawn into the GIF."""
    reward_model: str | None = None
    """Reward checkpoint for the return column and the drawn score. None: the one the policy
    was trained with, if that file exists."""
    metrics: str | None = None
    """metrics.jsonl of the training run for the milestones plot. None: next to --policy."""
    out_dir: str = str(EVAL_DIR)
    """Where eval_table.md, eval.json and training_milestones.png go: a folder or a storage URL."""
    frame_skip: int | None = None
    """Frames per env step. None: the policy's training value (else 30)."""
    num_workers: int | None = None
    """Emulator processes (None: one per core; 0: serial, in-process)."""
    greedy: bool = False
    """Take the most likely action instead of sampling from the policy."""
    seed: int = 0
    """Seeds action sampling."""
    worker_timeout: float = WORKER_TIMEOUT_S
    """Seconds to wait for an emulator worker that is alive but silent before stopping with an error."""
    world_model: str | None = None
    """Play in this world model's imagination (its world_model.pkl) instead of the emulator."""
    imagined_sample_steps: int = 4
    """--world-model: Euler steps per imagined frame."""


@dataclass
class EpisodeLog:
    """What one agent's evaluation produced."""

    episodes: list[dict]  # VecGameBoy's per-episode stats plus "return"
    gif_frames: list[Image.Image]


def summarize(name: str, log: EpisodeLog) -> dict:
    episodes = log.episodes
    mean = lambda key: float(np.mean([e[key] for e in episodes]))  # noqa: E731
    return {
        "agent": name,
        "episodes": len(episodes),
        "title_escape_rate": mean("left_title"),
        # The median step the title was left at, over the episodes that left it (None: none did).
        "title_steps_median": float(np.median(left))
        if (left := [e["title_steps"] for e in episodes if e["left_title"]])
        else None,
        "intro_done_rate": mean("intro_done"),
        "intro_steps_median": float(np.median(done))
        if (done := [e["intro_steps"] for e in episodes if e["intro_done"]])
        else None,
        "milestones_mean": mean("milestones"),
        "milestones_max": int(max(e["milestones"] for e in episodes)),
        "maps_visited_mean": mean("maps_visited"),
        "finished_rate": mean("finished"),
        "return_mean": mean("return") if episodes[0]["return"] is not None else None,
        # The profile's facts at each episode's end (EmuQuest: battles; Pokémon Red: badges, levels).
        "facts_mean": {
            name: float(np.mean([e["facts"][name] for e in episodes])) for name in episodes[0]["facts"]
        },
    }


def summarize_imagined(name: str, log: EpisodeLog) -> dict:
    """An agent's episodes in a world model: no RAM, so only their length and learned return."""
    episodes = log.episodes
    return {
        "agent": name,
        "episodes": len(episodes),
        "imagined": True,
        "length_mean": float(np.mean([e["length"] for e in episodes])),
        "return_mean": float(np.mean([e["return"] for e in episodes]))
        if episodes[0]["return"] is not None
        else None,
    }


def markdown_table(rows: list[dict]) -> str:
    if rows[0].get("imagined"):
        lines = ["| agent | imagined episodes | length (mean) | return |", "|---|---|---|---|"]
        for r in rows:
            ret = "n/a" if r["return_mean"] is None else f"{r['return_mean']:+.3f}"
            lines.append(f"| {r['agent']} | {r['episodes']} | {r['length_mean']:.1f} | {ret} |")
        return "\n".join(lines)
    lines = [
        "| agent | episodes | left title (median step) | intro done (median step) | milestones (mean / max) "
        "| maps visited | finished | return | game facts (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    median = lambda steps: "never" if steps is None else f"{steps:g}"  # noqa: E731
    for r in rows:
        ret = "n/a" if r["return_mean"] is None else f"{r['return_mean']:+.3f}"
        facts = ", ".join(f"{name.replace('_', ' ')} {value:.2f}" for name, value in r["facts_mean"].items())
        lines.append(
            f"| {r['agent']} | {r['episodes']} "
            f"| {r['title_escape_rate']:.0%} ({median(r['title_steps_median'])}) "
            f"| {r['intro_done_rate']:.0%} ({median(r['intro_steps_median'])}) | "
            f"{r['milestones_mean']:.2f} / {r['milestones_max']} | {r['maps_visited_mean']:.2f} | "
            f"{r['finished_rate']:.0%} | {ret} | {facts or '-'} |"
        )
    return "\n".join(lines)


def annotate(frame: np.ndarray, text: str) -> Image.Image:
    """A 2x upscaled frame (RGB, or 1-channel gray) with a caption bar under it."""
    image = (
        Image.fromarray(frame if frame.shape[-1] == 3 else frame[..., 0])
        .convert("RGB")
        .resize((frame.shape[1] * 2, frame.shape[0] * 2), Image.NEAREST)
    )
    canvas = Image.new("RGB", (image.width, image.height + 16), (0, 0, 0))
    canvas.paste(image, (0, 0))
    ImageDraw.Draw(canvas).text((4, image.height + 2), text, fill=(255, 255, 255))
    return canvas


def play(
    env: VecGameBoy | WorldModelEnv,
    choose_actions,
    steps: int,
    progress: ProgressReward | None,
    gif_frames: int,
    desc: str,
):
    """Run every env until its first episode ends (at most `steps` steps). choose_actions(obs, t,
    first, route_progress) -> int actions (N,), `first` (N,) marking the frames that start an episode,
    `route_progress` (N,) each episode's route progress through the frame before, as PPO's rollout
    gives it (zeros without a route). Returns an EpisodeLog with env 0 drawn into the GIF frames."""
    obs, _ = env.reset(seed=0)
    obs = obs.copy()
    if progress is not None:
        progress.start(obs)
    returns = np.zeros(env.num_envs, np.float64)
    first_episode: dict[int, dict] = {}
    frames = []
    score = None
    milestones = 0  # env 0's milestones in the frame being drawn
    first = np.ones(env.num_envs, bool)
    route_progress = np.zeros(env.num_envs, np.float32)
    for t in tqdm(range(steps), desc=desc, leave=False):
        actions = np.asarray(choose_actions(obs, t, first, route_progress))
        previous = obs
        obs, _, terminated, truncated, info = env.step(actions)
        obs = obs.copy()
        done = terminated | truncated
        first = done
        if progress is not None:
            route_progress = progress.route_progress(new_episodes=done)
            rewards, scores = progress(obs, done, last_frames=ended_frames(info))
            returns += np.where([i in first_episode for i in range(env.num_envs)], 0.0, rewards)
            if scores is not None:
                score = float(scores[0])
        if 0 not in first_episode and len(frames) < gif_frames:
            caption = f"t {t:4d}  {env.action_names[actions[0]]:6s}  milestones {milestones}"
            if score is not None:
                caption += f"  score {score:+.2f}"
            frames.append(annotate(previous[0], caption))
        milestones = int(info["milestones"][0])
        for episode in info["episodes"]:
            if episode["env_id"] not in first_episode:
                episode["return"] = float(returns[episode["env_id"]]) if progress is not None else None
                first_episode[episode["env_id"]] = episode
        if len(first_episode) == env.num_envs:
            break
    return EpisodeLog([first_episode[i] for i in sorted(first_episode)], frames)


def write_gif(path: Path, frames: list[Image.Image]):
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)


def plot_training(metrics_path: Path, out_path: Path) -> Path | None:
    """Milestones, title escape, entropy and return over training, from the run's metrics.jsonl."""
    records = read_records(metrics_path)
    if not any(r.get("stage") == "ppo" for r in records):
        return None
    return plot_curves(out_path, records, CURVES, title=f"Training: {metrics_path}")


def main(args: Args) -> dict:
    """Evaluate; returns {"rows": [...], "table": markdown, "gif": path|None, "plot": path|None}."""
    if args.steps < 1 or args.episodes < 1:
        raise fail("--steps and --episodes must be >= 1")
    # Every output place is checked before the episodes are played.
    with OutDir(args.out_dir) as out:
        return evaluate(args, out)


def evaluate(args: Args, out: OutDir) -> dict:
    out_dir = out.local
    if args.gif and not storage.is_url(args.gif):
        writable_dir(Path(args.gif).parent, "--gif")
    if args.metrics and storage.is_url(args.metrics):
        local_checkpoint(args.metrics, "--metrics")
    else:
        check_file(args.metrics, "--metrics")
    use_policy = not args.random
    model = None
    trained_args: dict = {}  # the policy's training Args, as saved in its checkpoint
    if use_policy:
        if not args.policy:
            raise fail("--policy: give a policy checkpoint, or --random for the baseline")
        policy_location = locate_checkpoint(args.policy, "--policy", PPO_DIR)
        policy_path = local_checkpoint(policy_location, "--policy")
        try:
            model, policy_cfg, ckpt = load_policy(policy_path)
        except CheckpointError as err:
            raise fail(f"--policy: {err}") from None
        trained_args = ckpt["config"].get("args", {})
        rom = bound_rom(args.rom, ckpt["config"].get("rom"), policy_path, args.allow_other_rom)
    else:
        rom = Path(args.rom) if args.rom else EMUQUEST_ROM

    def trained_path(name: str) -> Path | None:  # a file the policy's run named, found from here
        if not trained_args.get(name):
            return None
        where = path_from_checkpoint(trained_args[name], checkpoint_folder(policy_location))
        return local_checkpoint(where, f"the policy's {name}") if storage.is_url(where) else Path(where)

    initial_state = args.initial_state
    if initial_state == "power-on":
        initial_state = None
    elif initial_state is None and (trained_start := trained_path("initial_state")):
        if not trained_start.is_file():
            raise fail(
                f"the policy trained from the start state {trained_start}, which is not there: pass "
                "--initial-state FILE, or --initial-state power-on"
            )
        initial_state = trained_start
    check_file(initial_state, "--initial-state")
    learned_progress = None
    if args.reward_model:
        learned_progress = load_progress(find_checkpoint(args.reward_model, "--reward-model", REWARD_DIR))
    elif trained_reward := trained_path("reward_model"):
        if trained_reward.is_file():
            learned_progress = load_progress(trained_reward)
        else:
            print(
                f"note: the policy's reward model {trained_reward} is not there, so there is "
                "no return column; give --reward-model"
            )
    routes = None
    if learned_progress is not None and (route_frames := trained_path("route_frames")):
        if route_frames.is_dir():
            routes = load_routes(route_frames, learned_progress)
        else:
            print(
                f"note: the policy's route frames {route_frames} are not there, so the return column "
                "scores the agent's own frames, not its progress along the speedruns"
            )
    if use_policy and policy_cfg.progress_bins and routes is None:
        raise fail(
            "the policy reads its route progress, so it needs its run's reward model and route frames: "
            "give --reward-model, and keep the run's route frames where its checkpoint names them"
        )
    defaults = {
        "frame_skip": FRAME_SKIP,
        "press_frames": PRESS_FRAMES,
    }

    def trained(name: str):  # the policy's training setting, else the training script's default
        return trained_args.get(name, defaults[name])

    frame_skip = args.frame_skip or trained("frame_skip")
    press_frames = min(trained("press_frames"), frame_skip - 1)

    try:
        if args.world_model:
            world_model = find_checkpoint(args.world_model, "--world-model", WORLD_MODEL_DIR)
            env = world_model_env(
                world_model,
                args.episodes,
                max_steps=args.steps,
                sample_steps=args.imagined_sample_steps,
                grayscale=trained_args.get("observation") == "gray",
                seed=args.seed,
            )
        else:
            env = VecGameBoy(
                rom,
                initial_state=initial_state,
                num_envs=args.episodes,
                num_workers=args.num_workers or None,
                backend="serial" if args.num_workers == 0 else "process",
                frame_skip=frame_skip,
                press_frames=press_frames,
                max_steps=args.steps,
                grayscale=trained_args.get("observation") == "gray",
                worker_timeout_s=args.worker_timeout,
            )
    except (RomError, ValueError) as err:
        raise fail(f"--rom / env settings: {err}") from None
    except CheckpointError as err:
        raise fail(f"--world-model: {err}") from None
    if use_policy and policy_cfg.num_actions != env.num_actions:
        raise fail(f"the policy has {policy_cfg.num_actions} actions, the env {env.num_actions}")

    print(detected_line(env.detected))
    if initial_state:
        print(f"episodes start from {initial_state}")
    rng = np.random.default_rng(args.seed)
    random_actions = lambda obs, t, first, route_progress: rng.integers(  # noqa: E731
        0, env.num_actions, env.num_envs
    )

    def make_progress():  # the training reward, as the trained run computed it
        if learned_progress is None:
            return None
        return ProgressReward(learned_progress, env.num_envs, settings_of_run(trained_args), routes)

    logs = {}
    try:
        with env:
            if use_policy:
                chooser = policy_chooser(model, args.greedy, args.seed)
                logs["trained"] = play(env, chooser, args.steps, make_progress(), args.gif_frames, "policy")
            if args.random or args.compare_random:
                logs["random"] = play(
                    env, random_actions, args.steps, make_progress(), args.gif_frames, "random"
                )
    except WorkerError as err:
        raise fail(str(err)) from None
    except KeyboardInterrupt:
        raise fail("interrupted: nothing written") from None

    rows = [(summarize_imagined if args.world_model else summarize)(name, log) for name, log in logs.items()]
    table = markdown_table(rows)
    print(table)
    atomic_write(out_dir / "eval_table.md", table + "\n")
    atomic_write(out_dir / "eval.json", json.dumps({"game": env.detected, "rows": rows}, indent=2) + "\n")

    gif = None
    if args.gif:
        gif = args.gif
        if storage.is_url(gif):
            with tempfile.TemporaryDirectory() as scratch:
                write_gif(Path(scratch, "episode.gif"), next(iter(logs.values())).gif_frames)
                storage.upload(Path(scratch, "episode.gif"), gif)
        else:
            write_gif(Path(gif), next(iter(logs.values())).gif_frames)
        print(f"GIF: {gif}")
    metrics = storage.local_copy(args.metrics) if args.metrics else None
    if use_policy and metrics is None:
        beside = storage.join(checkpoint_folder(policy_location), METRICS_FILE)
        metrics = storage.local_copy(beside) if not storage.is_url(beside) or storage.exists(beside) else None
    plot = None
    if metrics is not None and metrics.is_file():
        plot = plot_training(metrics, out_dir / "training_milestones.png")
        print(f"training plot: {out.location(plot)}")
    return {
        "game": env.detected,
        "rows": rows,
        "table": table,
        "gif": str(gif) if gif else None,
        "plot": out.location(plot) if plot else None,
    }


if __name__ == "__main__":
    main(tyro.cli(Args))
