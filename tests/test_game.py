"""EmuQuest, the embedded game: the ROM file, booting, the title screen, the milestone
order (the gate and the prof) and a byte-identical rebuild."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from pyboy import PyBoy

from data.speedrun_bot import Bot
from envs.games import EMUQUEST_ROM, EmuQuest
from envs.rom import read_cart_title

GAME = EmuQuest()
BUILD_SCRIPT = EMUQUEST_ROM.parent / "build.sh"
BOOT_FRAMES = 90  # PyBoy's boot sequence runs ~65 frames before the game starts


def test_rom_header():
    rom = EMUQUEST_ROM.read_bytes()
    assert len(rom) == 32 * 1024
    assert read_cart_title(rom) == "EMUQUEST"
    assert rom[0x147] == 0 and rom[0x148] == 0 and rom[0x149] == 0  # no MBC, 32 KiB, no RAM
    header = 0
    for byte in rom[0x134:0x14D]:
        header = (header - byte - 1) & 0xFF
    assert rom[0x14D] == header
    total = (sum(rom) - rom[0x14E] - rom[0x14F]) & 0xFFFF
    assert rom[0x14E] << 8 | rom[0x14F] == total


@pytest.fixture
def pyboy():
    emulator = PyBoy(str(EMUQUEST_ROM), window="null", sound_emulated=False)
    yield emulator
    emulator.stop(save=False)


def test_boots_to_title(pyboy):
    pyboy.tick(BOOT_FRAMES, True)
    assert pyboy.memory[GAME.MODE] == GAME.MODE_TITLE
    assert not GAME.status(pyboy.memory).left_title
    screen = pyboy.screen.ndarray[:, :, :3]
    assert len(np.unique(screen.reshape(-1, 3), axis=0)) >= 3  # title text and art, not blank


def test_only_start_leaves_title(pyboy):
    pyboy.tick(BOOT_FRAMES, False)
    for button in ("a", "b", "select", "up", "down", "left", "right"):
        pyboy.button(button, 2)  # a short press
        pyboy.tick(10, False)
        pyboy.button_press(button)  # and a long hold
        pyboy.tick(60, False)
        pyboy.button_release(button)
        pyboy.tick(5, False)
        assert pyboy.memory[GAME.MODE] == GAME.MODE_TITLE, button
    pyboy.button("start", 2)
    pyboy.tick(10, False)
    assert pyboy.memory[GAME.MODE] == GAME.MODE_DIALOGUE
    assert GAME.status(pyboy.memory).left_title


def run_until(bot: Bot, done, goal=None, max_frames: int = 4000) -> None:
    while not done():
        assert bot.frame < max_frames, "the bot did not get there"
        bot.advance(goal)


def test_gate_and_prof_respect_the_milestone_order():
    """The gate stays shut without the key, and the prof gives no key before the guide."""
    bot = Bot(
        EMUQUEST_ROM,
        seed=0,
        detour_prob=0.0,
        idle_prob=0.0,
        max_idle_frames=1,
        extra_battles=0,
        max_frames=6000,
        on_frame=lambda i, rgb, b: None,
    )
    memory = bot.memory
    try:
        bot.boot()
        run_until(bot, lambda: memory[GAME.MAP_ID] == GAME.TOWN and memory[GAME.WALK] == 0)
        assert memory[GAME.MILESTONES] == 0b11
        # Talk to the locked gate: a text opens, no milestone, the gate stays a gate.
        run_until(bot, lambda: memory[GAME.MODE] == GAME.MODE_DIALOGUE, goal=("talk", GAME.GATE_TILE))
        gate_x, gate_y = GAME.GATE_TILE[1:]
        assert memory[GAME.GRID + gate_y * 10 + gate_x] == GAME.GATE
        run_until(bot, lambda: memory[GAME.MODE] == GAME.MODE_OVERWORLD)
        position = memory[GAME.X], memory[GAME.Y]
        assert position == (gate_x, gate_y + 1)
        for _ in range(40):  # walking into it only turns the player
            bot.step(("up",))
        bot.step()
        assert (memory[GAME.X], memory[GAME.Y]) == position and memory[GAME.MAP_ID] == GAME.TOWN
        # The prof before the guide: a text, but no key.
        run_until(
            bot,
            lambda: memory[GAME.MODE] == GAME.MODE_DIALOGUE and memory[GAME.TALK_ID] == 4,
            goal=("talk", GAME.PROF),
        )
        run_until(bot, lambda: memory[GAME.MODE] == GAME.MODE_OVERWORLD)
        assert memory[GAME.MILESTONES] == 0b11
    finally:
        bot.close()


def test_battle_menu_cursor_back_out_and_run():
    bot = Bot(
        EMUQUEST_ROM,
        seed=0,
        detour_prob=0.0,
        idle_prob=0.0,
        max_idle_frames=1,
        extra_battles=3,
        max_frames=8000,
        on_frame=lambda i, rgb, b: None,
    )
    memory = bot.memory
    try:
        bot.boot()
        run_until(
            bot,
            lambda: memory[GAME.MODE] == GAME.MODE_BATTLE and memory[GAME.BATTLE_STATE] == GAME.BATTLE_MENU,
            max_frames=8000,
        )
        where = memory[GAME.MAP_ID], memory[GAME.X], memory[GAME.Y]
        assert where[0] == GAME.ROUTE

        def press(button: str) -> tuple[int, int]:
            bot.press(button)
            for _ in range(12):  # the menu redraws one tile row per frame
                bot.step()
            return memory[GAME.BATTLE_STATE], memory[GAME.CURSOR]

        assert press("up") == (GAME.BATTLE_MENU, 0)  # already at the top
        assert press("a") == (GAME.BATTLE_MOVES, 0)  # FIGHT opens the moves
        assert press("down") == (GAME.BATTLE_MOVES, 1)
        assert press("b") == (GAME.BATTLE_MENU, 0)  # B backs out to FIGHT / RUN
        assert press("down") == (GAME.BATTLE_MENU, 1)
        press("a")  # RUN
        run_until(bot, lambda: memory[GAME.MODE] == GAME.MODE_OVERWORLD, max_frames=8000)
        assert (memory[GAME.MAP_ID], memory[GAME.X], memory[GAME.Y]) == where
    finally:
        bot.close()


def test_assets_match_their_generator(tmp_path):
    subprocess.run(
        [sys.executable, str(EMUQUEST_ROM.parent / "make_assets.py"), "--out-dir", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("assets.c", "assets.h"):
        generated = (tmp_path / name).read_text()
        expected = (EMUQUEST_ROM.parent / name).read_text()
        assert generated == expected, f"rerun make_assets.py and commit {name}"


@pytest.mark.skipif(shutil.which("sdcc") is None, reason="sdcc not installed (apt-get install -y sdcc)")
def test_rebuild_is_byte_identical(tmp_path):
    out = tmp_path / "emuquest.gb"
    subprocess.run(
        ["bash", str(BUILD_SCRIPT), str(out), str(tmp_path / "build")], check=True, capture_output=True
    )
    assert out.read_bytes() == EMUQUEST_ROM.read_bytes(), "commit the rebuilt ROM (build.sh)"
