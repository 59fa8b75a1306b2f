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
    MAP_NAMES: ClassVar[tuple[str, ...]] = ("house", "town", "lab", "route", "forest", "final room")  # by id

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

    def map_name(self, map_id: int) -> str:
        """The map's name for tables ("lab"), or its id as text for a value outside the game's maps."""
        return self.MAP_NAMES[map_id] if 0 <= map_id < len(self.MAP_NAMES) else str(map_id)

    def episode_facts(self, memory: Memory) -> dict[str, int]:
        """Game facts reported at the end of an episode, beside the milestones."""
        return {"battles": memory[self.BATTLES]}


@dataclass(frozen=True)
class PokemonRed:
    """Pokémon Red and Blue (international releases; both share one RAM layout).

    Every address is a symbol of the pret/pokered disassembly (ram/wram.asm; the addresses as its
    symbol file gives them): wPartyCount d163, wPartyMon1Level d18c (party_struct is 0x2C bytes),
    wObtainedBadges d356, wCurMap d35e, wYCoord d361, wXCoord d362, wTownVisitedFlag d70b (bit = town
    map id, set on arrival, never cleared), wd732 d732, wEventFlags d747 (320 bytes, to d886) and
    wSaveFileStatus d088. Event flag numbers and map ids are constants/event_constants.asm's and
    constants/map_constants.asm's.

    Title screen left: wSaveFileStatus turns 1 (no save) or 2 (a save) when MainMenu starts, i.e. at the
    START press on the title; Init clears WRAM, so it is 0 through the intro movie and the title.
    Intro done: bit 0 of wd732 ("count play time"), which only SpecialEnterMap sets, when the player
    first stands in the overworld after Oak's speech and the naming (or after CONTINUE).

    Milestones: the ordered route below, read from RAM, counted as 1 + the index of the furthest one
    reached (a later one implies those before it, e.g. the Pokédex implies the starter). Map milestones
    hold while the player is there; the episode keeps its best count. Badges and party levels are
    reported separately (episode_facts), with the number of event flags set.
    """

    name: str = "pokemon_red"
    cart_titles: ClassVar[tuple[str, ...]] = ("POKEMON RED", "POKEMON BLUE")

    PARTY_COUNT: ClassVar[int] = 0xD163
    PARTY_LEVELS: ClassVar[tuple[int, ...]] = (0xD18C, 0xD1B8, 0xD1E4, 0xD210, 0xD23C, 0xD268)
    BADGES: ClassVar[int] = 0xD356  # bit i set = badge i
    MAP_ID: ClassVar[int] = 0xD35E
    Y: ClassVar[int] = 0xD361
    X: ClassVar[int] = 0xD362
    TOWNS_VISITED: ClassVar[int] = 0xD70B  # 2 bytes, little-endian bit field by town map id
    STATUS_FLAGS: ClassVar[int] = 0xD732  # wd732; bit 0: play time is being counted
    EVENT_FLAGS_START: ClassVar[int] = 0xD747
    EVENT_FLAGS_END: ClassVar[int] = 0xD887  # exclusive: 320 bytes
    SAVE_FILE_STATUS: ClassVar[int] = 0xD088  # 0 until the main menu opens

    # Map ids
    PALLET_TOWN: ClassVar[int] = 0x00
    VIRIDIAN_CITY: ClassVar[int] = 0x01
    PEWTER_CITY: ClassVar[int] = 0x02
    REDS_HOUSE_1F: ClassVar[int] = 0x25
    VIRIDIAN_FOREST: ClassVar[int] = 0x33
    # Event flags (bit i of wEventFlags is byte i // 8, bit i % 8)
    EVENT_GOT_STARTER: ClassVar[int] = 0x022
    EVENT_BATTLED_RIVAL_IN_OAKS_LAB: ClassVar[int] = 0x023  # set whether the battle is won or lost
    EVENT_GOT_POKEDEX: ClassVar[int] = 0x025
    EVENT_OAK_APPEARED_IN_PALLET: ClassVar[int] = 0x027
    EVENT_GOT_OAKS_PARCEL: ClassVar[int] = 0x039
    BADGE_NAMES: ClassVar[tuple[str, ...]] = (
        "boulder", "cascade", "thunder", "rainbow", "soul", "marsh", "volcano", "earth"
    )  # fmt: skip

    # The route: (name, what to read, which). "map": standing on that map; "town": wTownVisitedFlag
    # bit; "event": wEventFlags bit; "badge": wObtainedBadges bit.
    ROUTE: ClassVar[tuple[tuple[str, str, int], ...]] = (
        ("downstairs", "map", REDS_HOUSE_1F),
        ("out_of_the_house", "map", PALLET_TOWN),
        ("oak_stops_you", "event", EVENT_OAK_APPEARED_IN_PALLET),
        ("got_a_starter", "event", EVENT_GOT_STARTER),
        ("fought_the_rival", "event", EVENT_BATTLED_RIVAL_IN_OAKS_LAB),
        ("reached_viridian", "town", VIRIDIAN_CITY),
        ("got_the_parcel", "event", EVENT_GOT_OAKS_PARCEL),
        ("got_the_pokedex", "event", EVENT_GOT_POKEDEX),
        ("viridian_forest", "map", VIRIDIAN_FOREST),
        ("reached_pewter", "town", PEWTER_CITY),
        *((f"{badge}_badge", "badge", i) for i, badge in enumerate(BADGE_NAMES)),
    )

    @property
    def milestone_names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.ROUTE)

    @property
    def num_milestones(self) -> int:
        return len(self.ROUTE)

    def event(self, memory: Memory, flag: int) -> bool:
        return bool(memory[self.EVENT_FLAGS_START + flag // 8] >> (flag % 8) & 1)

    def reached(self, memory: Memory, kind: str, which: int) -> bool:
        if kind == "map":
            return memory[self.MAP_ID] == which
        if kind == "town":
            return bool((memory[self.TOWNS_VISITED] | memory[self.TOWNS_VISITED + 1] << 8) >> which & 1)
        if kind == "event":
            return self.event(memory, which)
        return bool(memory[self.BADGES] >> which & 1)  # "badge"

    def milestones(self, memory: Memory) -> int:
        """1 + the index of the furthest route milestone reached; 0 before the intro is done (the map
        byte reads 0, Pallet Town, on the title)."""
        if not memory[self.STATUS_FLAGS] & 1:
            return 0
        reached = [
            i + 1 for i, (_, kind, which) in enumerate(self.ROUTE) if self.reached(memory, kind, which)
        ]
        return max(reached, default=0)

    def event_flag_count(self, memory: Memory) -> int:
        flags = bytes(memory[self.EVENT_FLAGS_START : self.EVENT_FLAGS_END])
        return int.from_bytes(flags, "little").bit_count()

    def badges(self, memory: Memory) -> int:
        return memory[self.BADGES].bit_count()

    def party_levels(self, memory: Memory) -> list[int]:
        return [memory[a] for a in self.PARTY_LEVELS[: min(memory[self.PARTY_COUNT], 6)]]

    def status(self, memory: Memory) -> GameStatus:
        return GameStatus(
            milestones=self.milestones(memory),
            map_id=memory[self.MAP_ID],
            x=memory[self.X],
            y=memory[self.Y],
            left_title=memory[self.SAVE_FILE_STATUS] != 0,
            intro_done=bool(memory[self.STATUS_FLAGS] & 1),
        )

    def finished(self, memory: Memory) -> bool:
        return False  # the game has no end screen worth stopping at; episodes truncate

    def episode_facts(self, memory: Memory) -> dict[str, int]:
        levels = self.party_levels(memory)
        return {
            "badges": self.badges(memory),
            "party_size": len(levels),
            "top_level": max(levels, default=0),
            "event_flags": self.event_flag_count(memory),
        }


@dataclass(frozen=True)
class ScreenOnly:
    """An unknown ROM: the agent sees pixels and nothing else is known."""

    name: str = "screen_only"
    cart_title: str = ""

    def status(self, memory: Memory) -> GameStatus:
        return GameStatus(milestones=-1, map_id=-1, x=-1, y=-1, left_title=False, intro_done=False)

    def finished(self, memory: Memory) -> bool:
        return False

    def episode_facts(self, memory: Memory) -> dict[str, int]:
        return {}


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
