"""Take docs/emuquest.png: EmuQuest's title, overworld and battle screens side by side,
captured from the emulator while the scripted speedrun bot plays.

    uv run python data/screenshots.py
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from PIL import Image

from data.speedrun_bot import Bot
from envs.games import EMUQUEST_ROM, EmuQuest

GAME = EmuQuest()


@dataclass
class Args:
    out: Path = Path("docs/emuquest.png")
    """Where to write the picture."""
    seed: int = 3
    """Speedrun seed whose frames are shown."""
    scale: int = 2
    """Integer upscaling (nearest neighbour) of the 160x144 screens."""
    rom: Path = EMUQUEST_ROM
    """The EmuQuest ROM."""


def capture(rom: Path, seed: int) -> list[np.ndarray]:
    """Title, town overworld (after talking to the guide) and the battle menu, in that order.

    The bot plays; when a wanted screen comes up it waits a few idle frames (so queued
    tile writes finish) and grabs the screen."""
    bot = Bot(
        rom,
        seed,
        detour_prob=0.0,
        idle_prob=0.0,
        max_idle_frames=60,
        extra_battles=1,
        max_frames=20_000,
        on_frame=lambda frame, rgb, buttons: None,
    )
    m = bot.memory
    shots: dict[str, np.ndarray] = {}

    def grab(name: str) -> None:
        for _ in range(10):
            bot.step()
        shots[name] = bot.pyboy.screen.ndarray[:, :, :3].copy()

    try:
        bot.boot()
        grab("title")
        while len(shots) < 3 and m[GAME.MODE] != GAME.MODE_END:
            if (
                "overworld" not in shots
                and m[GAME.MODE] == GAME.MODE_OVERWORLD
                and m[GAME.MAP_ID] == GAME.TOWN
                and m[GAME.MILESTONES] & 0b100
                and m[GAME.WALK] == 0
            ):
                grab("overworld")
            if (
                "battle" not in shots
                and m[GAME.MODE] == GAME.MODE_BATTLE
                and m[GAME.BATTLE_STATE] == GAME.BATTLE_MENU
            ):
                grab("battle")
            bot.advance()
    finally:
        bot.close()
    if len(shots) < 3:
        missing = {"title", "overworld", "battle"} - set(shots)
        raise SystemExit(f"screenshots.py: seed {seed} never showed {missing}; try another --seed")
    return [shots["title"], shots["overworld"], shots["battle"]]


def main(args: Args) -> None:
    if not args.rom.is_file():
        raise SystemExit(f"screenshots.py: --rom {args.rom} does not exist")
    screens = capture(args.rom, args.seed)
    gap = np.full((144, 8, 3), 255, np.uint8)
    row = np.concatenate([screens[0], gap, screens[1], gap, screens[2]], axis=1)
    image = Image.fromarray(row).resize((row.shape[1] * args.scale, row.shape[0] * args.scale), Image.NEAREST)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.png")
    image.save(tmp)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({image.width}x{image.height})")


if __name__ == "__main__":
    main(tyro.cli(Args))
