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
from typing import ClassVar, NamedTuple, Protocol

from envs.rom import RomIdentity, read_cart_title

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
    intro_done: bool  # the opening (intro text, naming, ...) is over and the player can walk


@dataclass(frozen=True)
class EmuQuest:
    """The embedded game (envs/roms/emuquest). RAM map: envs/roms/emuquest/RAM.md."""

    name: str = "emuquest"
    cart_title: str = "EMUQUEST"

    # Fixed RAM block at 0xC000, written by the game whenever a value changes. The progress
    # addresses and mode values are dataclass fields; the rest of RAM.md (more addresses, tile
    # kinds, maps, warps, NPCs) follows as ClassVars: constants of the game, not per profile.
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

    # The rest of the block, read by the scripted bot (data/speedrun_bot.py), tests and benchmarks.
    WALK: ClassVar[int] = 0xC008  # frames left in the current step (16..1), 0 = standing
    TEXT: ClassVar[int] = 0xC009  # 0 no text, 1 printing, 2 page done and waiting for A
    TALK_ID: ClassVar[int] = 0xC00A  # who is talking: 0 none, 1 mom, 2 sign, 3 guide, 4 prof, 5 gate
    BATTLE_STATE: ClassVar[int] = 0xC00B  # 0 none, 1 battle text, 2 FIGHT/RUN menu, 3 move menu
    CURSOR: ClassVar[int] = 0xC00C  # menu cursor row, 0 = top item
    BATTLES: ClassVar[int] = 0xC06F  # wild battles started so far
    FACING_NAMES: ClassVar[tuple[str, ...]] = ("down", "up", "left", "right")  # by FACING value
    TEXT_WAITING: ClassVar[int] = 2  # TEXT: the page is complete
    BATTLE_MENU: ClassVar[int] = 2  # BATTLE_STATE values
    BATTLE_MOVES: ClassVar[int] = 3

    # Tile kinds in GRID ("Tile kinds" in RAM.md). Floor and grass are walkable, doors and
    # exits are walkable and warp, the rest block.
    FLOOR: ClassVar[int] = 0
    WALL: ClassVar[int] = 1  # also everything off the map
    GRASS: ClassVar[int] = 2  # each step onto it may start a wild battle
    DOOR: ClassVar[int] = 3
    EXIT: ClassVar[int] = 4  # a map edge
    NPC: ClassVar[int] = 5
    GATE: ClassVar[int] = 6  # becomes FLOOR when opened
    SIGN: ClassVar[int] = 7

    # Map ids (MAP_ID).
    HOUSE: ClassVar[int] = 0
    TOWN: ClassVar[int] = 1
    LAB: ClassVar[int] = 2
    ROUTE: ClassVar[int] = 3
    FOREST: ClassVar[int] = 4
    FINAL: ClassVar[int] = 5

    # Warp tiles ("Maps and warps" in RAM.md): map -> {neighbouring map: (x, y) of the door
    # or exit that leads there}. FINAL has none: entering it ends the game.
    WARPS: ClassVar[dict[int, dict[int, tuple[int, int]]]] = {
        HOUSE: {TOWN: (4, 8)},
        TOWN: {HOUSE: (2, 4), LAB: (7, 4), ROUTE: (4, 0)},
        LAB: {TOWN: (5, 8)},
        ROUTE: {TOWN: (4, 8), FOREST: (5, 0)},
        FOREST: {ROUTE: (5, 8), FINAL: (5, 1)},
    }
    # Tiles to face and press A at for milestones ("Milestones" in RAM.md): (map, x, y).
    GUIDE: ClassVar[tuple[int, int, int]] = (TOWN, 5, 2)
    PROF: ClassVar[tuple[int, int, int]] = (LAB, 4, 2)
    GATE_TILE: ClassVar[tuple[int, int, int]] = (TOWN, 4, 1)
    # Bystanders, who talk but give no milestone: map -> (tile kind to face, TALK_ID).
    BYSTANDERS: ClassVar[dict[int, tuple[int, int]]] = {HOUSE: (NPC, 1), TOWN: (SIGN, 2)}

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
            intro_done=bool(memory[self.MILESTONES] & 1),  # milestone 0 is "intro_done"
        )

    def finished(self, memory: Memory) -> bool:
        return memory[self.MODE] == self.MODE_END


@dataclass(frozen=True)
class PokemonRed:
    """Pokémon Red and Blue (international releases; both share one RAM layout).

    Addresses checked against the pret/pokered disassembly's wram.asm, whose
    address comments give: wPartyCount d163, wPartyMon1 d16b (party_struct is 0x2C
    bytes, level at offset 0x21, so wPartyMon1Level = d18c), wObtainedBadges d356,
    wCurMap d35e, wYCoord d361, wXCoord d362, wd732 d732 and wEventFlags d747
    (320 bytes). They agree with PokemonRedExperiments,
    which reads the event flags over 0xD747..0xD87E; we use that same range.

    There is no mode byte, so "left the title" is bit 0 of wd732 ("count play time"):
    Init clears WRAM and SetDefaultNamesBeforeTitlescreen zeroes wd732 (it also writes
    the default name NINTEN, so the player name is no sign of progress), and only
    SpecialEnterMap sets the bit, when the player first enters the overworld after
    NEW GAME + Oak's speech or CONTINUE. So it turns on later than the START press.

    Milestones are the number of set event flags. Every story step (following Oak,
    getting the starter, delivering the parcel, beating each gym leader...) sets one,
    so the count rises through the whole game, including the long stretch before
    the first badge where a badge count would sit at 0. Badges and party levels are
    available separately for evaluation.
    """

    name: str = "pokemon_red"
    cart_titles: ClassVar[tuple[str, ...]] = ("POKEMON RED", "POKEMON BLUE")

    PARTY_COUNT: int = 0xD163
    PARTY_LEVELS: tuple[int, ...] = (0xD18C, 0xD1B8, 0xD1E4, 0xD210, 0xD23C, 0xD268)
    BADGES: int = 0xD356  # bit i set = badge i
    MAP_ID: int = 0xD35E
    Y: int = 0xD361
    X: int = 0xD362
    STATUS_FLAGS: int = 0xD732  # wd732; bit 0: play time is being counted
    EVENT_FLAGS_START: int = 0xD747
    EVENT_FLAGS_END: int = 0xD87E  # exclusive

    def event_flag_count(self, memory: Memory) -> int:
        flags = bytes(memory[self.EVENT_FLAGS_START : self.EVENT_FLAGS_END])
        return int.from_bytes(flags, "little").bit_count()

    def badges(self, memory: Memory) -> int:
        return memory[self.BADGES].bit_count()

    def party_levels(self, memory: Memory) -> list[int]:
        return [memory[a] for a in self.PARTY_LEVELS[: min(memory[self.PARTY_COUNT], 6)]]

    def status(self, memory: Memory) -> GameStatus:
        return GameStatus(
            milestones=self.event_flag_count(memory),
            map_id=memory[self.MAP_ID],
            x=memory[self.X],
            y=memory[self.Y],
            left_title=bool(memory[self.STATUS_FLAGS] & 1),
            intro_done=bool(memory[self.STATUS_FLAGS] & 1),
        )

    def finished(self, memory: Memory) -> bool:
        return False  # the game has no end screen worth stopping at; episodes truncate


@dataclass(frozen=True)
class ScreenOnly:
    """An unknown ROM: the agent sees pixels and nothing else is known."""

    name: str = "screen_only"
    cart_title: str = ""

    def status(self, memory: Memory) -> GameStatus:
        return GameStatus(milestones=-1, map_id=-1, x=-1, y=-1, left_title=False, intro_done=False)

    def finished(self, memory: Memory) -> bool:
        return False


GameProfile = EmuQuest | PokemonRed | ScreenOnly


def profile_for_rom(rom: bytes) -> GameProfile:
    """Pick the profile whose cartridge title matches; ScreenOnly for anything else."""
    title = read_cart_title(rom)
    if title == EmuQuest.cart_title:
        return EmuQuest()
    if title in PokemonRed.cart_titles:
        return PokemonRed()
    return ScreenOnly(cart_title=title)


def detected(profile: GameProfile, rom: bytes) -> dict:
    """What a run says it detected (printed at start, recorded in metrics and reports): the profile,
    the cartridge's title and sha1, and whether RAM facts (milestones, maps) exist for it."""
    identity = RomIdentity.of(rom).to_dict()
    return {"game": profile.name, **identity, "screen_only": isinstance(profile, ScreenOnly)}


def detected_line(info: dict) -> str:
    knows = "screen only: no milestones from RAM" if info["screen_only"] else "milestones and maps from RAM"
    cartridge = f"{info['title'] or '(untitled)'} sha1 {info['sha1'][:10]}"
    return f"game: {info['game']}, cartridge {cartridge}, {knows}"
