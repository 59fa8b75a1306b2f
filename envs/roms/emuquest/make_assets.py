"""Turn EmuQuest's ASCII-art tiles, sprites, font and map layouts (art.py) into C arrays.

Run `uv run python envs/roms/emuquest/make_assets.py` after editing art.py; it rewrites
assets.c and assets.h next to this file (or in --out-dir). Both outputs are committed,
so building the ROM needs only sdcc.

Pixel characters are mapped to colours 0..3 by BG_SHADES (background) and OBJ_SHADES
(sprites). Tile numbers: 0 is blank and 0x20..0x5F hold the font at their ASCII codes
so C strings can be copied to the tile map as they are; everything else is packed into
the remaining slots, identical 8x8 tiles shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

from envs.roms.emuquest.art import FONT, LEGEND, MAPS, METATILES, MONSTER, ON_BASE, PLAYER, UI

HERE = Path(__file__).parent


@dataclass
class Args:
    out_dir: Path = HERE
    """Where to write assets.c and assets.h."""


def shade_rows(art: list[str], mapping: dict[str, int]) -> list[list[int]]:
    return [[mapping[c] for c in row] for row in art]


def on_base(art: list[str], base: list[str], background: str) -> list[str]:
    """`art` with its outside (background characters connected to the border) taken from `base`."""
    size = len(art)
    outside = set()
    stack = [(r, c) for r in range(size) for c in range(size) if r in (0, size - 1) or c in (0, size - 1)]
    while stack:
        r, c = stack.pop()
        if (r, c) in outside or not (0 <= r < size and 0 <= c < size) or art[r][c] not in background:
            continue
        outside.add((r, c))
        stack += [(r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)]
    return ["".join(base[r][c] if (r, c) in outside else art[r][c] for c in range(size)) for r in range(size)]


BG_SHADES = {".": 0, "-": 1, "o": 2, "#": 3, " ": 0}
OBJ_SHADES = {".": 0, "w": 1, "o": 2, "#": 3}


def encode_tile(pixels: list[list[int]]) -> bytes:
    """8x8 pixels of colour 0..3 -> 16 bytes of Game Boy 2bpp (low plane, high plane per row)."""
    out = bytearray()
    for row in pixels:
        low = high = 0
        for col, colour in enumerate(row):
            low |= (colour & 1) << (7 - col)
            high |= (colour >> 1) << (7 - col)
        out += bytes((low, high))
    return bytes(out)


def split_tiles(pixels: list[list[int]]) -> list[list[list[int]]]:
    """A (8h, 8w) image -> its 8x8 tiles, row-major."""
    height, width = len(pixels), len(pixels[0])
    assert height % 8 == 0 and width % 8 == 0, (height, width)
    return [
        [row[tx * 8 : tx * 8 + 8] for row in pixels[ty * 8 : ty * 8 + 8]]
        for ty in range(height // 8)
        for tx in range(width // 8)
    ]


def glyph_pixels(char: str, scale: int) -> list[list[int]]:
    """The 5x7 glyph placed in an (8*scale)-pixel square, scaled up by `scale`."""
    size = 8 * scale
    pixels = [[0] * size for _ in range(size)]
    for r, row in enumerate(FONT[char]):
        for c, ch in enumerate(row):
            if ch == "#":
                for dy in range(scale):
                    for dx in range(scale):
                        pixels[r * scale + dy][(c + 1) * scale + dx] = 3
    return pixels


class TileSet:
    """Allocates tile numbers, sharing identical tiles. Font tiles sit at their ASCII codes."""

    def __init__(self) -> None:
        self.data: dict[int, bytes] = {0: bytes(16)}
        self.index: dict[bytes, int] = {bytes(16): 0}
        for code in range(0x20, 0x60):
            char = chr(code)
            tile = encode_tile(glyph_pixels(char, 1)) if char in FONT else bytes(16)
            self.data[code] = tile
            self.index.setdefault(tile, code)
        self.free = [n for n in range(1, 256) if n not in self.data]

    def add(self, pixels: list[list[int]], share: bool = True) -> int:
        tile = encode_tile(pixels)
        if share and tile in self.index:
            return self.index[tile]
        if not self.free:
            raise SystemExit("make_assets.py: more than 256 distinct tiles; simplify the art")
        number = self.free.pop(0)
        self.data[number] = tile
        self.index.setdefault(tile, number)
        return number


def c_array(name: str, values: list[int] | bytes, per_line: int = 16) -> str:
    lines = [
        "    " + ", ".join(f"0x{v:02X}" for v in values[i : i + per_line]) + ","
        for i in range(0, len(values), per_line)
    ]
    return f"const uint8_t {name}[{len(values)}] = {{\n" + "\n".join(lines) + "\n};\n"


def main(args: Args) -> None:
    tiles = TileSet()
    header: list[str] = []
    source: list[str] = []

    # Sprites first, unshared, so every pose has its own four tiles in a fixed order.
    for pose, art in PLAYER.items():
        assert len(art) == 16 and all(len(r) == 16 for r in art), pose
        numbers = [tiles.add(t, share=False) for t in split_tiles(shade_rows(art, OBJ_SHADES))]
        header.append(f"#define SPR_{pose.upper()} 0x{numbers[0]:02X}  /* 4 tiles: TL TR BL BR */")
        assert numbers == list(range(numbers[0], numbers[0] + 4)), pose

    for name, art in UI.items():
        header.append(f"#define T_{name} 0x{tiles.add(shade_rows(art, BG_SHADES)):02X}")

    names = list(METATILES)
    meta_tiles: list[int] = []
    meta_kinds: list[int] = []
    for name in names:
        kind, art = METATILES[name]
        assert len(art) == 16 and all(len(r) == 16 for r in art), name
        if name in ON_BASE:
            base, background = ON_BASE[name]
            art = on_base(art, METATILES[base][1], background)
        meta_tiles += [tiles.add(t) for t in split_tiles(shade_rows(art, BG_SHADES))]
        meta_kinds.append(kind)
        header.append(f"#define MT_{name.upper()} {names.index(name)}")

    big_letters = sorted(set("EMUQUESTHND"))
    big = []
    for char in big_letters:
        big += [tiles.add(t) for t in split_tiles(glyph_pixels(char, 2))]
    header.append(f'#define BIG_LETTERS "{"".join(big_letters)}"')

    monster = [tiles.add(t) for t in split_tiles(shade_rows(MONSTER, BG_SHADES))]

    map_bytes: list[int] = []
    for map_id, (name, rows) in enumerate(MAPS.items()):
        assert len(rows) == 9 and all(len(r) == 10 for r in rows), name
        map_bytes += [names.index(LEGEND[c]) for row in rows for c in row]
        header.append(f"#define MAP_{name} {map_id}")
    header.append(f"#define NUM_MAPS {len(MAPS)}")
    header.append(f"#define NUM_TILES {max(tiles.data) + 1}")

    tile_blob = b"".join(tiles.data.get(n, bytes(16)) for n in range(max(tiles.data) + 1))
    source.append(c_array("tile_data", tile_blob))
    source.append("/* Metatile n uses tiles [4n..4n+3] = TL, TR, BL, BR. */\n")
    source.append(c_array("metatile_tiles", meta_tiles))
    source.append(c_array("metatile_kind", meta_kinds))
    source.append("/* Big 16x16 letters: 4 tiles each (TL TR BL BR), in BIG_LETTERS order. */\n")
    source.append(c_array("big_letter_tiles", big))
    source.append("/* Monster picture, 4x4 tiles row-major. */\n")
    source.append(c_array("monster_tiles", monster))
    source.append("/* Map m, row r, column c at [m*90 + r*10 + c]: metatile numbers. */\n")
    source.append(c_array("map_metatiles", map_bytes, per_line=10))

    warning = "/* Generated by make_assets.py from its ASCII art; edit that, not this. */\n"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "assets.h").write_text(
        warning
        + "#ifndef ASSETS_H\n#define ASSETS_H\n#include <stdint.h>\n\n"
        + "\n".join(header)
        + "\n\nextern const uint8_t tile_data[NUM_TILES * 16];\n"
        + f"extern const uint8_t metatile_tiles[{len(meta_tiles)}];\n"
        + f"extern const uint8_t metatile_kind[{len(meta_kinds)}];\n"
        + f"extern const uint8_t big_letter_tiles[{len(big)}];\n"
        + "extern const uint8_t monster_tiles[16];\n"
        + f"extern const uint8_t map_metatiles[{len(map_bytes)}];\n\n#endif\n"
    )
    (args.out_dir / "assets.c").write_text(warning + '#include "assets.h"\n\n' + "\n".join(source))
    print(f"{max(tiles.data) + 1} tiles, {len(names)} metatiles, {len(MAPS)} maps")


if __name__ == "__main__":
    main(tyro.cli(Args))
