"""Turn EmuQuest's ASCII-art tiles, sprites, font and map layouts into C arrays.

Run `uv run python envs/roms/emuquest/make_assets.py` after editing the art; it rewrites
assets.c and assets.h next to this file (or in --out-dir). Both outputs are committed, so building the ROM needs only sdcc.

Pixels: '.' colour 0 (white), '-' 1 (light grey), 'o' 2 (dark grey), '#' 3 (black).
Sprites use '.' for transparent and 'w' for white (OBP0 maps colour 1 to white).
Tile numbers: 0 is blank and 0x20..0x5F hold the font at their ASCII codes so C
strings can be copied to the tile map as they are; everything else is packed into
the remaining slots, identical 8x8 tiles shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

HERE = Path(__file__).parent


@dataclass
class Args:
    out_dir: Path = HERE
    """Where to write assets.c and assets.h."""

# Tile kinds written to the RAM grid (documented in RAM.md).
FLOOR, WALL, GRASS, DOOR, EXIT, NPC, GATE, SIGN = range(8)

# 5x7 font, one glyph per character; drawn at columns 1..5, rows 0..6 of a tile.
FONT = {
    " ": ["     "] * 7,
    "!": ["  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "     ", "  #  "],
    "'": ["  #  ", "  #  ", " #   ", "     ", "     ", "     ", "     "],
    ",": ["     ", "     ", "     ", "     ", "  #  ", "  #  ", " #   "],
    "-": ["     ", "     ", "     ", "#####", "     ", "     ", "     "],
    ".": ["     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "],
    "/": ["    #", "    #", "   # ", "  #  ", " #   ", "#    ", "#    "],
    "0": [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "],
    "1": ["  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
    "2": [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"],
    "3": ["#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "],
    "4": ["   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "],
    "5": ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "],
    "6": ["  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "],
    "7": ["#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "],
    "8": [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "],
    "9": [" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "],
    ":": ["     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "],
    "?": [" ### ", "#   #", "    #", "   # ", "  #  ", "     ", "  #  "],
    "A": [" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
    "B": ["#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "],
    "C": [" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "],
    "D": ["#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "],
    "E": ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"],
    "F": ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "],
    "G": [" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"],
    "H": ["#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
    "I": [" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
    "J": ["  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "],
    "K": ["#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"],
    "L": ["#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"],
    "M": ["#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"],
    "N": ["#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"],
    "O": [" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
    "P": ["#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "],
    "Q": [" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"],
    "R": ["#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"],
    "S": [" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "],
    "T": ["#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "],
    "U": ["#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
    "V": ["#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "],
    "W": ["#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "],
    "X": ["#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"],
    "Y": ["#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "],
    "Z": ["#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"],
}

# Text-box frame and small UI glyphs, 8x8 each.
UI = {
    "BOX_TL": ["........", "........", "..######", "..#.....", "..#.####", "..#.#...", "..#.#...", "..#.#..."],
    "BOX_T": ["........", "........", "########", "........", "########", "........", "........", "........"],
    "BOX_TR": ["........", "........", "######..", ".....#..", "####.#..", "...#.#..", "...#.#..", "...#.#.."],
    "BOX_L": ["..#.#...", "..#.#...", "..#.#...", "..#.#...", "..#.#...", "..#.#...", "..#.#...", "..#.#..."],
    "BOX_R": ["...#.#..", "...#.#..", "...#.#..", "...#.#..", "...#.#..", "...#.#..", "...#.#..", "...#.#.."],
    "BOX_BL": ["..#.#...", "..#.#...", "..#.#...", "..#.####", "..#.....", "..######", "........", "........"],
    "BOX_B": ["........", "........", "........", "########", "........", "########", "........", "........"],
    "BOX_BR": ["...#.#..", "...#.#..", "...#.#..", "####.#..", ".....#..", "######..", "........", "........"],
    "CURSOR": ["........", ".#......", ".##.....", ".###....", ".####...", ".###....", ".##.....", ".#......"],
    "ARROW": ["........", "........", "#######.", ".#####..", "..###...", "...#....", "........", "........"],
    "HP_FULL": ["........", "########", "########", "########", "########", "########", "########", "........"],
    "HP_EMPTY": ["........", "########", "#......#", "#......#", "#......#", "#......#", "########", "........"],
    "BLACK": ["########"] * 8,
    "GROUND": ["........", "........", "........", "........", "........", "........", "--------", "oooooooo"],
}

# 16x16 background metatiles: name -> (kind, art).
METATILES = {
    "floor": (FLOOR, [
        "...............-", "...............-", "...............-", "----------------",
        ".......-........", ".......-........", ".......-........", "----------------",
        "...............-", "...............-", "...............-", "----------------",
        ".......-........", ".......-........", ".......-........", "----------------"]),
    "wall_in": (WALL, [
        "################", "#oooooooooooooo#", "#o------------o#", "#o------------o#",
        "#o------------o#", "#o------------o#", "#oooooooooooooo#", "################",
        "oooooooooooooooo", "o-------o-------", "o-------o-------", "oooooooooooooooo",
        "----o-------o---", "----o-------o---", "oooooooooooooooo", "################"]),
    "shelf": (WALL, [
        "################", "#..............#", "#o#-#oo#-#o#-#o#", "#o#-#oo#-#o#-#o#",
        "#o#-#oo#-#o#-#o#", "################", "#..............#", "#-#o#--#o#-#o#-#",
        "#-#o#--#o#-#o#-#", "#-#o#--#o#-#o#-#", "################", "#..............#",
        "#oo#-#o#oo#-#oo#", "#oo#-#o#oo#-#oo#", "################", "#oooooooooooooo#"]),
    "table": (WALL, [
        "................", "................", "################", "#..............#",
        "#.-..........-.#", "#..............#", "#..............#", "#..............#",
        "#.-..........-.#", "#..............#", "################", "#oooooooooooooo#",
        "..#o#......#o#..", "..#o#......#o#..", "..###......###..", "................"]),
    "machine": (WALL, [
        "################", "#oooooooooooooo#", "#o############o#", "#o#-..-......#o#",
        "#o#..-..-....#o#", "#o#.-...--...#o#", "#o############o#", "#oooooooooooooo#",
        "################", "#--------------#", "#-##-##-##-##--#", "#--------------#",
        "#-##-##-##-##--#", "#--------------#", "################", "oooooooooooooooo"]),
    "mat": (DOOR, [
        "................", ".##############.", ".#o-o-o-o-o-o-#.", ".#-o-o-o-o-o-o#.",
        ".#o-o-o-o-o-o-#.", ".#-o-o-o-o-o-o#.", ".#o-o-o-o-o-o-#.", ".#-o-o-o-o-o-o#.",
        ".#o-o-o-o-o-o-#.", ".#-o-o-o-o-o-o#.", ".#o-o-o-o-o-o-#.", ".#-o-o-o-o-o-o#.",
        ".#o-o-o-o-o-o-#.", ".#-o-o-o-o-o-o#.", ".##############.", "................"]),
    "ground": (FLOOR, [
        "................", "................", "..-.............", ".-.-............",
        "................", "................", "..........-.....", ".........-.-....",
        "................", "................", "................", "....-...........",
        "...-.-..........", "................", "................", "................"]),
    "path": (FLOOR, [
        "----------------", "----------------", "--o-------------", "----------------",
        "----------------", "-----------o----", "----------------", "----------------",
        "----------------", "----------------", "----o-----------", "----------------",
        "----------------", "------------o---", "----------------", "----------------"]),
    "exit": (EXIT, [
        "----------------", "--------------o-", "----------------", "---o------------",
        "----------------", "----------------", "----------------", "---------o------",
        "----------------", "----------------", "-o--------------", "----------------",
        "----------------", "---------o------", "----------------", "----------------"]),
    "flower": (FLOOR, [
        "................", "..o.............", ".o-o............", "..o.............",
        "..#.............", "........o.......", ".......o-o......", "........o.......",
        "........#.......", "...o............", "..o-o...........", "...o............",
        "...#.......o....", "..........o-o...", "...........o....", "...........#...."]),
    "tree": (WALL, [
        "......####......", "....##----##....", "...#-------o#...", "..#--o---o--o#..",
        "..#-------o--#..", ".#--o--o----o-#.", ".#-----o--o---#.", ".#o-o-----o-oo#.",
        "..#o-o-o-o-oo#..", "...##oooooo##...", ".....##oo##.....", "......#oo#......",
        "......#oo#......", ".....#oooo#.....", "......####......", "................"]),
    "tallgrass": (GRASS, [
        "................", ".#..#...#..#....", "#o##o#.#o##o#...", "o-o-o-##-o-o-#..",
        "-o-o-o--o-o-o-#.", "o-o-o-o-o-o-o-o.", "................", "........#..#...#",
        "...#..#o##o#.#o#", "..#o##-o-o-o##-o", ".#-o-o-o-o-o--o-", ".o-o-o-o-o-o-o-o",
        "................", ".#..#...#..#....", "#o##o#.#o##o#...", "o-o-o-o-o-o-o-o."]),
    "water": (WALL, [
        "----------------", "--..------------", "-.--.-------..--", "-----------.--.-",
        "----------------", "------..--------", "-----.--.-------", "----------------",
        "----------------", "-..-------------", ".--.------..----", "---------.--.---",
        "----------------", "-------..-------", "------.--.------", "----------------"]),
    "fence": (WALL, [
        "................", "................", ".##..........##.", "#oo#........#oo#",
        "#--###########-#", "#--o--------o--#", "#--###########-#", "#--#........#--#",
        "#--###########-#", "#--o--------o--#", "#--###########-#", "#--#........#--#",
        "#oo#........#oo#", ".##..........##.", "................", "................"]),
    "roof": (WALL, [
        "################", "oooooooooooooooo", "o-o-o-o-o-o-o-o-", "################",
        "oooooooooooooooo", "-o-o-o-o-o-o-o-o", "################", "oooooooooooooooo",
        "o-o-o-o-o-o-o-o-", "################", "oooooooooooooooo", "-o-o-o-o-o-o-o-o",
        "################", "oooooooooooooooo", "o-o-o-o-o-o-o-o-", "################"]),
    "housewall": (WALL, [
        "................", "#--------------#", "#--------------#", "#--########----#",
        "#--#..#...#----#", "#--#..#...#----#", "#--########----#", "#--#..#...#----#",
        "#--#..#...#----#", "#--########----#", "#--------------#", "#--------------#",
        "#oooooooooooooo#", "#oooooooooooooo#", "################", "................"]),
    "door": (DOOR, [
        "................", "#--------------#", "#---########---#", "#---#oooooo#---#",
        "#---#o----o#---#", "#---#o----o#---#", "#---#oooooo#---#", "#---#o----o#---#",
        "#---#o---#o#---#", "#---#o----o#---#", "#---#o----o#---#", "#---#oooooo#---#",
        "#ooo#o----o#ooo#", "#ooo#o----o#ooo#", "####--------####", "....--------...."]),
    "gate": (GATE, [
        "################", "#o#oo#oo#oo#oo##", "#o#oo#oo#oo#oo##", "################",
        "#o#..#..#..#..##", "#o#..#..#..#..##", "#o#..######..##.", "#o#..#oooo#..##.",
        "#o#..#o##o#..##.", "#o#..#o##o#..##.", "#o#..######..##.", "#o#..#..#..#..##",
        "################", "#o#oo#oo#oo#oo##", "#o#oo#oo#oo#oo##", "################"]),
    "sign": (SIGN, [
        "................", "................", ".##############.", "#--------------#",
        "#-####-###-##--#", "#--------------#", "#-###-####-###-#", "#--------------#",
        ".##############.", "......#oo#......", "......#oo#......", "......#oo#......",
        "......#oo#......", ".....######.....", "................", "................"]),
    "tower": (WALL, [
        "################", "#oo#oooooo#oooo#", "#oo#oooooo#oooo#", "################",
        "oooooo#oooooo#oo", "oooooo#oooooo#oo", "################", "#oo#oooooo#oooo#",
        "#oo#oooooo#oooo#", "################", "oooooo#oooooo#oo", "oooooo#oooooo#oo",
        "################", "#oo#oooooo#oooo#", "#oo#oooooo#oooo#", "################"]),
    "towerdoor": (DOOR, [
        "################", "#oo#oooooo#oooo#", "#oo####oo####oo#", "#####......#####",
        "ooo#........#ooo", "ooo#........#ooo", "###..........###", "#o#..........#o#",
        "#o#..........#o#", "###..........###", "oo#..........#oo", "oo#..........#oo",
        "###..........###", "#o#..........#o#", "#o#..........#o#", "###..........###"]),
    "mom": (NPC, [
        "--------o-------", "-----######-----", "----#oooooo#----", "---#oo....oo#---",
        "---#o.#..#.o#---", "----#......#----", "-----#.--.#-----", "----##o##o##----",
        "---#-o-oo-o-#---", "---#.#o--o#.#---", "----##o--o##----", "---#oooooooo#---",
        "---#oooooooo#---", "----##o##o##----", "-----#.#.#.#----", "oooo##o##o##oooo"]),
    "prof": (NPC, [
        "--------o-------", "-----#.#.#.-----", "----#.......#---", "---#.#....#..#--",
        "---#..#..#...#--", "----#.......#---", "-----#.--.#-----", "----#...#...#---",
        "---#....#....#--", "---#.#..#..#.#--", "---#.#..#..#.#--", "---#.#..#..#.#--",
        "----#.......#---", "----#...#...#---", "-----##o#o##----", "oooo#oo#oo#ooooo"]),
    "guide": (NPC, [
        "................", ".....######.....", "....#oooooo#....", "...##########...",
        "....#......#....", "....#.#..#.#....", ".....#.--.#.....", "....##o##o##....",
        "...#o-o##o-o#...", "...#.#o--o#.#...", "....##o--o##....", "....#oooooo#....",
        "....#ooo#ooo#...", ".....##..##.....", "....#oo#.#oo#...", "................"]),
    "altar": (WALL, [
        "................", "......####......", ".....#-..-#.....", "....#-.##.-#....",
        "....#-.##.-#....", ".....#-..-#.....", "......####......", "...##########...",
        "...#oooooooo#...", "...#o------o#...", "...#o------o#...", "...#oooooooo#...",
        "...##########...", "..#----------#..", "..############..", "................"]),
}

# Figures drawn over another metatile: figure -> (base metatile, characters of the
# figure's own background, which is replaced by the base wherever it touches the border).
ON_BASE = {"mom": ("floor", "-o"), "prof": ("floor", "-o"), "guide": ("ground", ".")}

# Player: 16x16 poses ('.' transparent, 'w' white, 'o' dark grey, '#' black).
# Facing right is facing left flipped by the sprite attribute.
PLAYER = {
    "down": [
        ".....######.....", "....#oooooo#....", "...#oooooooo#...", "...##########...",
        "...#wwwwwwww#...", "...#w#ww#ww#w#..", "....#wwwwwww#...", ".....##wwww#....",
        "....#oo####o#...", "...#woooooooow#.", "...#w#oooooo#w#.", "....##oooooo##..",
        "....#oooooooo#..", "....#ooo##ooo#..", ".....####.###...", "....#www#.#www#."],
    "down_walk": [
        ".....######.....", "....#oooooo#....", "...#oooooooo#...", "...##########...",
        "...#wwwwwwww#...", "...#w#ww#ww#w#..", "....#wwwwwww#...", ".....##wwww#....",
        "....#oo####o##..", "...#woooooooow#.", "...#w#oooooo##..", "....##oooooo#...",
        "....#oooooooo#..", "....#ooo##o###..", ".....####.#www#.", ".....#www#.###.."],
    "up": [
        ".....######.....", "....#oooooo#....", "...#oooooooo#...", "...#oooooooo#...",
        "...#oooooooo#...", "...#oooooooo#...", "....#oooooo#....", ".....######.....",
        "....#oooooooo#..", "...#woooooooow#.", "...#w#oooooo#w#.", "....##oooooo##..",
        "....#oooooooo#..", "....#ooo##ooo#..", ".....####.###...", "....#www#.#www#."],
    "up_walk": [
        ".....######.....", "....#oooooo#....", "...#oooooooo#...", "...#oooooooo#...",
        "...#oooooooo#...", "...#oooooooo#...", "....#oooooo#....", ".....######.....",
        "....#oooooooo##.", "...#woooooooow#.", "...#w#oooooo##..", "....##oooooo#...",
        "....#oooooooo#..", "....#ooo##o###..", ".....####.#www#.", ".....#www#.###.."],
    "left": [
        ".....######.....", "....#oooooo#....", "...#ooooooooo#..", "..###########...",
        "...#wwwoooooo#..", "...#w#wwooooo#..", "...#wwwwoooo#...", "....##wwww##....",
        ".....#oooo#.....", "....#oowwoo#....", "....#oowwoo#....", ".....#oooo#.....",
        ".....#oooo#.....", ".....#oo#o#.....", "......##.##.....", ".....#ww#ww#...."],
    "left_walk": [
        ".....######.....", "....#oooooo#....", "...#ooooooooo#..", "..###########...",
        "...#wwwoooooo#..", "...#w#wwooooo#..", "...#wwwwoooo#...", "....##wwww##....",
        ".....#oooo#.....", "....#ooowwo#....", "...#oooowwoo#...", "....#ooooooo#...",
        "....#oooo#oo#...", "...#ww##..#oo#..", "...#www#...##...", "....###........."],
}

# Wild monster picture, 32x32, shown on the battle screen.
MONSTER = [
    "................................", "................................",
    ".........##..........##.........", "........#oo#........#oo#........",
    "........#o-o#......#o-o#........", "........#o--o######o--o#........",
    ".........#o-oooooooo-o#.........", "........#oooooooooooooo#........",
    ".......#oooooooooooooooo#.......", "......#oo#..#oooo#..#ooo#.......",
    "......#oo#.##oooo#.##ooo#.......", "......#oo#.##oooo#.##ooo#.......",
    "......#ooo##oooooo##ooooo#......", "......#ooooooo##oooooooooo#.....",
    ".......#ooooo#..#oooooooo#......", "........#oooo#..#ooooooo#.......",
    "........#ooooo##ooooooo#........", ".......#-#ooooooooooooo#-#......",
    "......#---#ooooooooooo#---#.....", "......#----#########oo#----#....",
    ".......#---#--------#o#---#.....", "........####--------#o####......",
    "...........#--------#o#.........", "...........#--------#oo#........",
    "...........#--------#ooo#.......", "...........##------##oooo#......",
    "..........#oo######oo#ooo#......", "..........#ooo#..#ooo#.###......",
    "...........###....###...........", "................................",
    "................................", "................................",
]

# Maps: 9 rows x 10 columns of metatiles.
LEGEND = {
    ".": "floor", "W": "wall_in", "B": "shelf", "T": "table", "C": "machine", "M": "mat",
    "m": "mom", "P": "prof", ",": "ground", "=": "path", "E": "exit", "*": "flower",
    "Y": "tree", '"': "tallgrass", "~": "water", "F": "fence", "R": "roof", "H": "housewall",
    "D": "door", "G": "gate", "S": "sign", "g": "guide", "O": "tower", "d": "towerdoor",
    "A": "altar",
}

MAPS = {
    "HOUSE": [
        "WWWWWWWWWW",
        "WBB....CBW",
        "W........W",
        "W.TT..m..W",
        "W.TT.....W",
        "W....TTTTW",
        "WTTT.....W",
        "W........W",
        "WWWWMWWWWW",
    ],
    "TOWN": [
        "YYYYEYYYYY",
        "YFFFGFFFFY",
        "Y,S,=g,,,Y",
        "YRRR=,RRRY",
        "YHDH=,HDHY",
        "Y,=,=,,=,Y",
        "Y,=====,*Y",
        "Y*,,~~,,,Y",
        "YYYYYYYYYY",
    ],
    "LAB": [
        "WWWWWWWWWW",
        "WCCB..BCCW",
        "W...P....W",
        "W.TTTTT..W",
        "W........W",
        "WBB..BBB.W",
        "W........W",
        "W........W",
        "WWWWWMWWWW",
    ],
    "ROUTE": [
        "YYYYYEYYYY",
        "Y~~,,=,,~Y",
        "Y*,,,=,,*Y",
        'Y""""""""Y',
        'Y""YY"""~Y',
        'Y"""""YY"Y',
        'Y""""""""Y',
        "Y,,,,=,,,Y",
        "YYYYEYYYYY",
    ],
    "FOREST": [
        "YYOOOOOOYY",
        "YYOOOdOOYY",
        "Y,,,,=,,,Y",
        "YYYYYYYY,Y",
        "Y,,,,,,,,Y",
        "Y,YYYYYYYY",
        "Y,,,,=,*,Y",
        "YYYYY=YYYY",
        "YYYYYEYYYY",
    ],
    "FINAL": [
        "WWWWWWWWWW",
        "WB......BW",
        "W...A....W",
        "W........W",
        "W........W",
        "W........W",
        "W........W",
        "W........W",
        "WWWWWWWWWW",
    ],
}


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
