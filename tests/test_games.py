"""Game profiles: detection by cartridge title, RAM reading on fake memory, and EmuQuest's
profile against its documented RAM map."""

import re

from envs.games import EMUQUEST_ROM, EmuQuest, PokemonRed, ScreenOnly, profile_for_rom
from envs.rom import header_checksum, read_cart_title


class FakeMemory(dict):
    """Address -> byte, 0 where unset; slices give lists like pyboy.memory."""

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [self.get(a, 0) for a in range(key.start, key.stop)]
        return self.get(key, 0)


def with_title(rom: bytes, title: bytes) -> bytes:
    patched = bytearray(rom)
    patched[0x134:0x144] = title.ljust(16, b"\x00")
    patched[0x14D] = header_checksum(patched)
    return bytes(patched)


def test_profile_is_detected_by_cartridge_title():
    rom = EMUQUEST_ROM.read_bytes()
    assert read_cart_title(rom) == "EMUQUEST" and isinstance(profile_for_rom(rom), EmuQuest)
    assert isinstance(profile_for_rom(with_title(rom, b"POKEMON RED")), PokemonRed)
    assert isinstance(profile_for_rom(with_title(rom, b"POKEMON BLUE")), PokemonRed)
    unknown = profile_for_rom(with_title(rom, b"TETRIS"))
    assert isinstance(unknown, ScreenOnly) and unknown.cart_title == "TETRIS"


# pret/pokered's symbols and constants, written out here from the disassembly to check the profile against.
WRAM = {"wSaveFileStatus": 0xD088, "wPartyCount": 0xD163, "wPartyMon1Level": 0xD18C,
        "wObtainedBadges": 0xD356, "wCurMap": 0xD35E, "wYCoord": 0xD361, "wXCoord": 0xD362,
        "wTownVisitedFlag": 0xD70B, "wd732": 0xD732, "wEventFlags": 0xD747}  # fmt: skip
EVENTS = {"EVENT_GOT_STARTER": 0x22, "EVENT_BATTLED_RIVAL_IN_OAKS_LAB": 0x23, "EVENT_GOT_POKEDEX": 0x25,
          "EVENT_OAK_APPEARED_IN_PALLET": 0x27, "EVENT_GOT_OAKS_PARCEL": 0x39}  # fmt: skip
MAPS = {"PALLET_TOWN": 0, "VIRIDIAN_CITY": 1, "PEWTER_CITY": 2, "REDS_HOUSE_1F": 0x25, "REDS_HOUSE_2F": 0x26,
        "VIRIDIAN_FOREST": 0x33}  # fmt: skip


def set_event(memory, name):
    flag = EVENTS[name]
    memory[WRAM["wEventFlags"] + flag // 8] = memory[WRAM["wEventFlags"] + flag // 8] | 1 << flag % 8


def test_pokemon_red_title_intro_and_route_milestones_on_synthetic_memory():
    red, memory = PokemonRed(), FakeMemory()
    assert red.status(memory) == (0, 0, 0, 0, False, False)  # power-on: WRAM cleared, on the title
    memory[WRAM["wSaveFileStatus"]] = 1  # START on the title opened the main menu (no save file)
    assert red.status(memory) == (0, 0, 0, 0, True, False)  # the map byte (0, Pallet) means nothing yet
    memory.update({WRAM["wd732"]: 0b11, WRAM["wCurMap"]: MAPS["REDS_HOUSE_2F"], WRAM["wYCoord"]: 6,
                   WRAM["wXCoord"]: 3})  # fmt: skip
    assert red.status(memory) == (0, MAPS["REDS_HOUSE_2F"], 3, 6, True, True)  # the intro is done
    route = [
        lambda: memory.update({WRAM["wCurMap"]: MAPS["REDS_HOUSE_1F"]}),
        lambda: memory.update({WRAM["wCurMap"]: MAPS["PALLET_TOWN"]}),
        lambda: set_event(memory, "EVENT_OAK_APPEARED_IN_PALLET"),
        lambda: set_event(memory, "EVENT_GOT_STARTER"),
        lambda: set_event(memory, "EVENT_BATTLED_RIVAL_IN_OAKS_LAB"),
        lambda: memory.update({WRAM["wTownVisitedFlag"]: 0b11}),  # Pallet and Viridian visited
        lambda: set_event(memory, "EVENT_GOT_OAKS_PARCEL"),
        lambda: set_event(memory, "EVENT_GOT_POKEDEX"),
        lambda: memory.update({WRAM["wCurMap"]: MAPS["VIRIDIAN_FOREST"]}),
        lambda: memory.update({WRAM["wTownVisitedFlag"]: 0b111, WRAM["wCurMap"]: MAPS["PEWTER_CITY"]}),
        *(lambda n=n: memory.update({WRAM["wObtainedBadges"]: (1 << n) - 1}) for n in range(1, 9)),
    ]  # fmt: skip
    for milestones, step in enumerate(route, 1):
        step()
        assert red.milestones(memory) == milestones, red.milestone_names[milestones - 1]
    assert red.num_milestones == 18 and red.milestone_names[-1] == "earth_badge"
    # Back home after the Boulder Badge: the flags still count, the momentary map does not matter.
    memory.update({WRAM["wObtainedBadges"]: 1, WRAM["wCurMap"]: MAPS["REDS_HOUSE_2F"]})
    assert red.milestones(memory) == 11
    # A later flag implies the ones before it, whatever order RAM is read in.
    jumped = FakeMemory({WRAM["wd732"]: 1, WRAM["wCurMap"]: MAPS["REDS_HOUSE_2F"]})
    set_event(jumped, "EVENT_GOT_POKEDEX")
    assert red.milestones(jumped) == 8


def test_pokemon_red_facts_read_badges_levels_and_all_320_event_bytes():
    red = PokemonRed()
    memory = FakeMemory({WRAM["wObtainedBadges"]: 0b101, WRAM["wPartyCount"]: 2, WRAM["wPartyMon1Level"]: 7,
                         WRAM["wPartyMon1Level"] + 0x2C: 5})  # fmt: skip
    memory[WRAM["wEventFlags"]] = 0b11  # two event flags
    memory[WRAM["wEventFlags"] + 319] = 0b1000  # the last of the 320 bytes (0xD886) counts
    memory[WRAM["wEventFlags"] + 320] = 0xFF  # past the range: ignored
    assert red.badges(memory) == 2 and red.party_levels(memory) == [7, 5]
    assert red.episode_facts(memory) == {"badges": 2, "party_size": 2, "top_level": 7, "event_flags": 3}
    assert not red.finished(memory)


def test_screen_only_profile_knows_nothing():
    assert ScreenOnly().status(FakeMemory({0xC000: 4})) == (-1, -1, -1, -1, False, False)


def test_emuquest_profile_matches_its_ram_map():
    """Addresses, map ids, tile kinds and warps in the profile agree with RAM.md."""
    game, text = EmuQuest(), (EMUQUEST_ROM.parent / "RAM.md").read_text()
    rows = re.findall(r"^\| (0xC0[0-9A-F]{2}) \| \d+ \| ([a-z ]+) \|", text, re.MULTILINE)
    addresses = {name.upper().replace(" ", "_"): int(address, 16) for address, name in rows}
    addresses["STEPS_LO"] = addresses.pop("STEPS")
    named = (
        "MODE",
        "MAP_ID",
        "X",
        "Y",
        "FACING",
        "MILESTONES",
        "STEPS_LO",
        "WALK",
        "TEXT",
        "TALK_ID",
        "BATTLE_STATE",
        "CURSOR",
        "GRID",
        "BATTLES",
    )
    assert {name: getattr(game, name) for name in named} == {name: addresses[name] for name in named}
    maps = dict(re.findall(r"(\d) ([A-Z]+)", re.search(r"\| map id \|.*", text).group()))
    assert {int(i): getattr(game, name) for i, name in maps.items()} == {i: i for i in range(6)}
    assert [game.map_name(int(i)) for i in maps] == [
        name.lower().replace("final", "final room") for name in maps.values()
    ]
    assert (game.map_name(len(maps)), game.map_name(-1)) == (str(len(maps)), "-1")  # outside the game's maps
    kinds = re.findall(r"^\| (\d) \| ([a-z]+) \|", text, re.MULTILINE)
    assert [getattr(game, kind.upper()) for _, kind in kinds] == [int(code) for code, _ in kinds]
    warps = re.findall(r"([A-Z]+) [a-z ]+\((\d),(\d)\) -> ([A-Z]+)", text)
    documented = {(getattr(game, src), getattr(game, dst)): (int(x), int(y)) for src, x, y, dst in warps}
    assert documented == {(src, dst): tile for src, out in game.WARPS.items() for dst, tile in out.items()}
