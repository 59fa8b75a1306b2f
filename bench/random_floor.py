"""Random floor on EmuQuest: how far does a uniformly random button masher get?

Every `press_every` frames it picks one of no-op/up/down/left/right/A/B/START uniformly,
holds it for `hold` frames and releases it, for `frames` frames from power-on (36,000 =
10 minutes of game time). Prints milestones reached per seed, their mean and max, and
how many seeds left the title screen, against the scripted speedrun's 7. It also reports
the emulator's speed on this ROM without rendering.

    uv run python bench/random_floor.py --seeds 5
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from pyboy import PyBoy
from tqdm import tqdm

from envs.games import EMUQUEST_ROM, EmuQuest

GAME = EmuQuest()
ACTIONS = (None, "up", "down", "left", "right", "a", "b", "start")


@dataclass
class Args:
    seeds: int = 5
    """Number of random agents (seeds 0..seeds-1)."""
    frames: int = 36_000
    """Frames per agent from power-on (60 per second of game time)."""
    press_every: int = 30
    """Frames between decisions (the seed's frame_skip)."""
    hold: int = 8
    """Frames a chosen button is held before release."""
    rom: Path = EMUQUEST_ROM
    """The EmuQuest ROM."""


def random_agent(rom: Path, seed: int, frames: int, press_every: int, hold: int) -> dict:
    rng = np.random.default_rng(seed)
    pyboy = PyBoy(str(rom), window="null", sound_emulated=False)
    best_milestones, left_title, battles = 0, False, 0
    try:
        for _ in range(frames // press_every):
            button = ACTIONS[int(rng.integers(len(ACTIONS)))]
            if button is None:
                pyboy.tick(press_every, False)
            else:
                pyboy.button(button, hold)
                pyboy.tick(press_every, False)
            status = GAME.status(pyboy.memory)
            best_milestones = max(best_milestones, status.milestones)
            left_title |= status.left_title
        battles = pyboy.memory[GAME.BATTLES]
    finally:
        pyboy.stop(save=False)
    return {"milestones": best_milestones, "left_title": left_title, "battles": battles}


def main(args: Args) -> None:
    if not args.rom.is_file():
        raise SystemExit(f"random_floor.py: --rom {args.rom} does not exist")
    if min(args.seeds, args.frames, args.press_every, args.hold) < 1 or args.hold >= args.press_every:
        raise SystemExit("random_floor.py: need --seeds, --frames >= 1 and 1 <= --hold < --press-every")
    results = []
    start = time.perf_counter()
    for seed in tqdm(range(args.seeds), desc="random agents", unit="seed"):
        result = random_agent(args.rom, seed, args.frames, args.press_every, args.hold)
        results.append(result)
        tqdm.write(
            f"seed {seed}: milestones {result['milestones']}/{GAME.num_milestones}, "
            f"left title {result['left_title']}, battles {result['battles']}"
        )
    elapsed = time.perf_counter() - start
    milestones = np.array([r["milestones"] for r in results])
    print(
        f"random floor over {args.seeds} seeds x {args.frames} frames "
        f"({args.frames / 3600:.0f} min of game time each):"
    )
    print(
        f"  milestones mean {milestones.mean():.2f}, max {milestones.max()} "
        f"(scripted speedrun: {GAME.num_milestones})"
    )
    print(f"  left the title screen: {sum(r['left_title'] for r in results)}/{args.seeds}")
    print(f"  emulator speed: {args.seeds * args.frames / elapsed:,.0f} frames/s (no rendering, 1 process)")


if __name__ == "__main__":
    main(tyro.cli(Args))
