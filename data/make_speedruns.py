"""Scripted speedruns of EmuQuest, recorded from power-on to the end screen.

The closed-loop bot in data/speedrun_bot.py plays each run: it path-finds to the next
milestone, fights or flees wild battles, and seeded random detours, idle waits, extra grass
walks and talks with bystanders (mom, the town sign) make runs differ. Each run writes every
k-th frame as a PNG, metadata.json (emulator frame index, milestone count, mode, map, talk
id and buttons held for each saved frame, plus every press), and an mp4 of all frames at
60 fps.

With --branch-every, the bot also branches off its run every so often: it saves the
emulator state, plays --branch-steps random agent steps (VecGameBoy's action set and
timing), keeps the frame after each, and restores the state, so the run itself is unchanged.
Each branch frame is paired with a run frame that train_reward.py --branches ranks it above
(D-REX-style ranked noise), which tells the reward what random play looks like next to the
route. --branch-pairing picks that frame: the run's frame from the same moment, or, for
branches that start in the overworld, the run's frame one agent step after the branch starts
(random walking rarely gets further in a whole branch than the bot does in one step; in text
boxes, battles and the title it can, so those keep the same moment).

    uv run python data/make_speedruns.py --num-runs 5 --frame-every 4
    uv run python data/make_speedruns.py --branch-every 48 --branch-steps 24   # the main job's
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np
import tyro
from tqdm import tqdm

from data.speedrun_bot import Bot
from envs.actions import FRAME_SKIP
from envs.games import EMUQUEST_ROM, EmuQuest
from envs.rom import RomError, check_rom, read_cart_title

GAME = EmuQuest()
BranchPairing = Literal["same-moment", "first-step"]


@dataclass
class Args:
    num_runs: int = 5
    """Number of runs to record (run_00, run_01, ...)."""
    seed: int = 0
    """Seed of the first run; run i uses seed + i."""
    frame_every: int = 4
    """Save every k-th emulator frame as a PNG (the mp4 keeps every frame)."""
    detour_prob: float = 0.05
    """Chance, at each standing step, of a random walk of 1-4 steps off the route."""
    idle_prob: float = 0.03
    """Chance, at each decision, of waiting a while with no buttons."""
    max_idle_frames: int = 60
    """Longest idle wait, in frames."""
    extra_battles: int = 0
    """Before crossing the tall grass, pace in it until this many wild battles have happened."""
    chat_prob: float = 0.5
    """Chance, per run and bystander (mom in the house, the sign in town), of talking to it on
    the way. Without these talks every text box in the runs comes with progress, and a reward
    model learns to overrate any text box, which PPO can then hold open."""
    branch_every: int = 0
    """Branch off the run into random play every this many emulator frames, at the bot's
    next decision (0: no branches). Branch frames go to <out>/branches/run_XX/."""
    branch_steps: int = 8
    """Agent steps (of FRAME_SKIP frames) per branch; the frame after every step is kept."""
    branch_pairing: BranchPairing = "same-moment"
    """The run frame each branch frame ranks below: the one from the same moment, or (overworld
    branches only; the rest keep the same moment) the one a single agent step after the branch
    starts. PPO measured worse with first-step (docs/lab_notes.md), so the main job uses same-moment."""
    max_frames: int = 30_000
    """Give up on a run that has not reached the end screen after this many frames."""
    out: Path = Path("data/speedruns")
    """Output root: frames/run_XX/*.png + metadata.json, and videos/run_XX.mp4."""
    rom: Path = EMUQUEST_ROM
    """The EmuQuest ROM."""


@dataclass
class Speedrun:
    frames: np.ndarray  # (num_saved, 144, 160, 3) uint8, every frame_every-th frame
    metadata: dict = field(default_factory=dict)
    # Per branch frame: where its branch starts, where it ends, and the run frame it ranks below.
    branches: list[dict] = field(default_factory=list)
    branch_frames: np.ndarray | None = None  # (num_branch_frames, 144, 160, 3) uint8


def run_speedrun(
    seed: int,
    rom: Path = EMUQUEST_ROM,
    frame_every: int = 4,
    detour_prob: float = 0.05,
    idle_prob: float = 0.03,
    max_idle_frames: int = 60,
    extra_battles: int = 0,
    chat_prob: float = 0.5,
    max_frames: int = 30_000,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
    branch_every: int = 0,
    branch_steps: int = 8,
    branch_pairing: BranchPairing = "same-moment",
) -> Speedrun:
    """Play one run from power-on to the end screen.

    Returns the saved frames (every `frame_every`-th), their metadata, and the branch frames
    and their records if `branch_every` > 0 (`branch_pairing` as in Args); `on_frame`, if given,
    also sees every frame of the run (e.g. to write a video)."""
    if branch_pairing not in get_args(BranchPairing):
        raise ValueError(f"branch_pairing must be one of {get_args(BranchPairing)}, got {branch_pairing!r}")
    saved: list[np.ndarray] = []
    records: list[dict] = []
    bot: Bot

    def keep(frame: int, rgb: np.ndarray, buttons: tuple[str, ...]) -> None:
        if on_frame is not None:
            on_frame(frame, rgb)
        if frame % frame_every == 0:
            records.append(
                {
                    "file": f"{len(saved):06d}.png",
                    "frame": frame,
                    "milestones": bot.milestones(),
                    "mode": bot.memory[GAME.MODE],
                    "map": bot.memory[GAME.MAP_ID],
                    "talk": bot.memory[GAME.TALK_ID],
                    "buttons": list(buttons),
                }
            )
            saved.append(rgb.copy())

    bot = Bot(
        rom,
        seed,
        detour_prob,
        idle_prob,
        max_idle_frames,
        extra_battles,
        max_frames,
        keep,
        chat_prob,
        branch_every,
        branch_steps,
    )
    try:
        bot.play()
    finally:
        bot.close()
    metadata = {
        "seed": seed,
        "frame_every": frame_every,
        "num_frames": bot.frame,
        "milestones": bot.milestones(),
        "steps": bot.memory[GAME.STEPS_LO] | bot.memory[GAME.STEPS_HI] << 8,
        "battles": bot.memory[GAME.BATTLES],
        "milestone_frames": bot.milestone_frames,
        "frames": records,
        "presses": bot.presses,
        "num_branch_frames": len(bot.branches),
    }
    for number, record in enumerate(bot.branches):
        # The run's saved frame from the moment the branch frame was taken, or from one step
        # into the branch (the end screen if the run ends first).
        ahead = record["emulator_frames"]
        if branch_pairing == "first-step" and record["start_mode"] == GAME.MODE_OVERWORLD:
            ahead = FRAME_SKIP
        moment = -(-(record["start_frame"] + ahead) // frame_every)
        # start: the run's last saved frame before the branch left it (what it has seen so far).
        record.update(
            file=f"{number:06d}.png",
            below=records[min(moment, len(records) - 1)]["file"],
            start=records[min(record["start_frame"] // frame_every, len(records) - 1)]["file"],
        )
    branch_frames = np.stack(bot.branch_frames) if bot.branch_frames else None
    return Speedrun(np.stack(saved), metadata, bot.branches, branch_frames)


def write_run(args: Args, index: int, pool: ThreadPoolExecutor) -> dict:
    """Record run `index` into <out>/frames/run_XX and <out>/videos/run_XX.mp4 (and its branches
    into <out>/branches/run_XX), atomically."""
    name = f"run_{index:02d}"
    frames_dir, videos_dir, branches_dir = args.out / "frames", args.out / "videos", args.out / "branches"
    tmp_dir = frames_dir / f".{name}.tmp"
    tmp_video = videos_dir / f".{name}.tmp.mp4"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    videos_dir.mkdir(parents=True, exist_ok=True)
    video = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), 60, (160, 144))
    if not video.isOpened():
        raise SystemExit(f"make_speedruns.py: OpenCV cannot write {tmp_video}")
    pending = []
    png_count = 0

    def on_frame(frame: int, rgb: np.ndarray) -> None:
        nonlocal png_count
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        video.write(bgr)
        if frame % args.frame_every == 0:
            path = tmp_dir / f"{png_count:06d}.png"
            pending.append(pool.submit(cv2.imwrite, str(path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1]))
            png_count += 1

    try:
        run = run_speedrun(
            args.seed + index,
            args.rom,
            args.frame_every,
            args.detour_prob,
            args.idle_prob,
            args.max_idle_frames,
            args.extra_battles,
            args.chat_prob,
            args.max_frames,
            on_frame,
            args.branch_every,
            args.branch_steps,
            args.branch_pairing,
        )
    finally:
        video.release()
    (tmp_dir / "metadata.json").write_text(json.dumps(run.metadata, indent=1))
    tmp_branches = branches_dir / f".{name}.tmp"
    shutil.rmtree(tmp_branches, ignore_errors=True)
    if run.branches:
        tmp_branches.mkdir(parents=True)
        for record, rgb in zip(run.branches, run.branch_frames):
            path = tmp_branches / record["file"]
            pending.append(
                pool.submit(
                    cv2.imwrite,
                    str(path),
                    cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 1],
                )
            )
        branch_meta = {"run": name, "branches": run.branches}
        (tmp_branches / "metadata.json").write_text(json.dumps(branch_meta, indent=1))
    if not all(f.result() for f in pending):
        raise SystemExit(f"make_speedruns.py: could not write PNGs under {tmp_dir} or {tmp_branches}")
    for tmp, final in ((tmp_dir, frames_dir / name), (tmp_branches, branches_dir / name)):
        shutil.rmtree(final, ignore_errors=True)  # a stale branches dir would pair with the wrong run
        if tmp.is_dir():
            tmp.rename(final)
    tmp_video.replace(videos_dir / f"{name}.mp4")
    return run.metadata


def main(args: Args) -> None:
    if not args.rom.is_file():
        raise SystemExit(
            f"make_speedruns.py: --rom {args.rom} does not exist; build it with envs/roms/emuquest/build.sh"
        )
    try:  # size and header checksum, before PyBoy sees the file
        title = read_cart_title(check_rom(args.rom))
    except RomError as err:
        raise SystemExit(f"make_speedruns.py: --rom: {err}") from None
    if title != GAME.cart_title:
        raise SystemExit(
            f"make_speedruns.py: --rom {args.rom} is {title!r}, not {GAME.cart_title}; "
            "the bot only knows EmuQuest"
        )
    if args.num_runs < 1 or args.frame_every < 1 or args.max_idle_frames < 1:
        raise SystemExit("make_speedruns.py: --num-runs, --frame-every and --max-idle-frames must be >= 1")
    if args.branch_every < 0 or args.branch_steps < 1:
        raise SystemExit("make_speedruns.py: --branch-every must be >= 0 and --branch-steps >= 1")
    if not all(0 <= p <= 1 for p in (args.detour_prob, args.idle_prob, args.chat_prob)):
        raise SystemExit("make_speedruns.py: --detour-prob, --idle-prob and --chat-prob must lie in [0, 1]")
    with ThreadPoolExecutor(2) as pool:
        bar = tqdm(range(args.num_runs), desc="speedruns", unit="run")
        for index in bar:
            try:
                meta = write_run(args, index, pool)
            except RuntimeError as error:
                raise SystemExit(f"make_speedruns.py: {error}") from None
            except KeyboardInterrupt:
                raise SystemExit(
                    f"make_speedruns.py: interrupted during run_{index:02d}; "
                    f"the {index} run(s) before it are complete in {args.out}"
                ) from None
            bar.set_postfix(frames=meta["num_frames"], battles=meta["battles"])
            tqdm.write(
                f"run_{index:02d}: {meta['num_frames']} frames "
                f"({meta['num_frames'] / 60:.1f} s), {meta['steps']} steps, "
                f"{meta['battles']} battles, {meta['num_branch_frames']} branch frames, "
                f"milestones {meta['milestones']}/{GAME.num_milestones}"
            )


if __name__ == "__main__":
    main(tyro.cli(Args))
