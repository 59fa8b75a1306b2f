"""ROM checks that run before any emulator starts.

A bad ROM given to PyBoy either crashes deep inside the emulator or, worse, runs
garbage. We refuse it up front with one line that names the file and the problem.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

MIN_ROM_SIZE = 32 * 1024  # the smallest cartridge: 2 banks of 16 KiB, no MBC
HEADER_CHECKSUM_RANGE = range(0x134, 0x14D)  # title .. mask ROM version
HEADER_CHECKSUM_AT = 0x14D


class RomError(ValueError):
    """The ROM cannot be used. The message is one line meant for the user."""


def read_cart_title(rom: bytes) -> str:
    """Cartridge title from the header (0x134..0x143), NUL padding stripped."""
    return rom[0x134:0x144].split(b"\x00", 1)[0].decode("ascii", "replace").strip()


@dataclass(frozen=True)
class RomIdentity:
    """Which cartridge a run used: what checkpoints record instead of the ROM itself."""

    title: str
    sha1: str

    @classmethod
    def of(cls, rom: bytes) -> RomIdentity:
        return cls(read_cart_title(rom), hashlib.sha1(rom).hexdigest())

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.title or '(untitled)'} (sha1 {self.sha1[:10]})"


def header_checksum(rom: bytes) -> int:
    """The checksum the boot ROM verifies: x = x - byte - 1 over 0x134..0x14C."""
    x = 0
    for address in HEADER_CHECKSUM_RANGE:
        x = (x - rom[address] - 1) & 0xFF
    return x


def check_rom(path: str | Path) -> bytes:
    """Read and validate a Game Boy ROM; return its bytes or raise RomError."""
    path = Path(path)
    if not path.is_file():
        raise RomError(f"ROM {path} not found: pass --rom with the path of a .gb/.gbc file")
    rom = path.read_bytes()
    size = len(rom)
    if size < MIN_ROM_SIZE or size & (size - 1):
        raise RomError(
            f"ROM {path} is {size} bytes; a Game Boy ROM is a power of two of at least "
            f"{MIN_ROM_SIZE} bytes (truncated or not a ROM?)"
        )
    expected = header_checksum(rom)
    if rom[HEADER_CHECKSUM_AT] != expected:
        raise RomError(
            f"ROM {path} has a bad header checksum (0x{rom[HEADER_CHECKSUM_AT]:02X} stored, "
            f"0x{expected:02X} computed): the file is corrupt or not a Game Boy ROM"
        )
    return rom
