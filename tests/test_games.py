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


def test_pokemon_red_profile_reads_map_position_events_badges_and_levels():
    red = PokemonRed()
    memory = FakeMemory({0xD35E: 0x26, 0xD361: 6, 0xD362: 3, 0xD356: 0b101, 0xD163: 2, 0xD18C: 7, 0xD1B8: 5})
    memory[0xD732] = 0b10  # other wd732 bits say nothing about the title
    assert red.status(memory) == (0, 0x26, 3, 6, False, False)
    memory[0xD732] = 0b11  # the play-time clock runs: the game has started
    memory[0xD747] = 0b11  # two event flags
    memory[0xD87D] = 0b1000  # the last byte of the range counts
    memory[0xD87E] = 0xFF  # past the range: ignored
    assert red.status(memory) == (3, 0x26, 3, 6, True, True)
    assert red.badges(memory) == 2 and red.party_levels(memory) == [7, 5]
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
    kinds = re.findall(r"^\| (\d) \| ([a-z]+) \|", text, re.MULTILINE)
    assert [getattr(game, kind.upper()) for _, kind in kinds] == [int(code) for code, _ in kinds]
    warps = re.findall(r"([A-Z]+) [a-z ]+\((\d),(\d)\) -> ([A-Z]+)", text)
    documented = {(getattr(game, src), getattr(game, dst)): (int(x), int(y)) for src, x, y, dst in warps}
    assert documented == {(src, dst): tile for src, out in game.WARPS.items() for dst, tile in out.items()}
