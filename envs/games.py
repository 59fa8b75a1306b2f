"""Game profiles: everything EmuRL knows about a particular cartridge.

The emulator backend (VecGameBoy) knows nothing about any game. It asks a profile
which RAM addresses to watch and how to turn their bytes into progress numbers
(milestones, map, position, whether the title screen was left). These numbers are
for metrics, curriculum bookkeeping and evaluation only: the policy sees pixels.

`memory` below is anything indexable by address that returns a byte, e.g.
`pyboy.memory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

EMUQUEST_ROM = Path(__file__).parent / "roms" / "emuquest" / "emuquest.gb"


class Memory(Protocol):
    def __getitem__(self, address: int) -> int: ...


class GameStatus(NamedTuple):
    """Progress facts read from RAM after a step. -1 where a profile cannot know."""

    milestones: int  # ordered milestones reached so far
    map_id: int
    x: int
    y: int
    left_title: bool  # False while the game still sits on its title screen


def read_cart_title(rom: bytes) -> str:
    """Cartridge title from the header (0x134..0x143), NUL padding stripped."""
    return rom[0x134:0x144].split(b"\x00", 1)[0].decode("ascii", "replace").strip()


@dataclass(frozen=True)
class EmuQuest:
    """The embedded game (envs/roms/emuquest). RAM map: envs/roms/emuquest/RAM.md."""

    name: str = "emuquest"
    cart_title: str = "EMUQUEST"

    # Fixed RAM block at 0xC000, written by the game every frame.
    MODE: int = 0xC000  # 0 title, 1 dialogue, 2 overworld, 3 battle, 4 end
    MAP_ID: int = 0xC001
    X: int = 0xC002  # metatile (16x16 px) column, 0..9
    Y: int = 0xC003  # metatile row, 0..8
    FACING: int = 0xC004  # 0 down, 1 up, 2 left, 3 right
    MILESTONES: int = 0xC005  # bit i set = milestone i reached; set only in order
    STEPS_LO: int = 0xC006  # overworld steps taken, little-endian u16
    STEPS_HI: int = 0xC007
    GRID: int = 0xC010  # current map, 9 rows x 10 cols of tile kinds, row-major

    MODE_TITLE: int = 0
    MODE_DIALOGUE: int = 1
    MODE_OVERWORLD: int = 2
    MODE_BATTLE: int = 3
    MODE_END: int = 4

    milestone_names: tuple[str, ...] = (
        "intro_done",
        "left_house",
        "talked_to_guide",
        "got_key",
        "opened_gate",
        "crossed_grass",
        "reached_final_room",
    )

    @property
    def num_milestones(self) -> int:
        return len(self.milestone_names)

    def status(self, memory: Memory) -> GameStatus:
        return GameStatus(
            milestones=bin(memory[self.MILESTONES]).count("1"),
            map_id=memory[self.MAP_ID],
            x=memory[self.X],
            y=memory[self.Y],
            left_title=memory[self.MODE] != self.MODE_TITLE,
        )

    def finished(self, memory: Memory) -> bool:
        return memory[self.MODE] == self.MODE_END
