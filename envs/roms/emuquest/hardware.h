/* Game Boy hardware registers and memory regions used by EmuQuest (see Pan Docs). */
#ifndef HARDWARE_H
#define HARDWARE_H
#include <stdint.h>

#define REG8(address) (*(volatile uint8_t *)(address))

#define rP1 REG8(0xFF00)   /* joypad: write 0x20 for the d-pad, 0x10 for buttons */
#define rIF REG8(0xFF0F)   /* pending interrupts */
#define rLCDC REG8(0xFF40)
#define rSCY REG8(0xFF42)
#define rSCX REG8(0xFF43)
#define rLY REG8(0xFF44)
#define rBGP REG8(0xFF47)
#define rOBP0 REG8(0xFF48)
#define rOBP1 REG8(0xFF49)
#define rWY REG8(0xFF4A)
#define rWX REG8(0xFF4B)
#define rIE REG8(0xFFFF)   /* enabled interrupts */

#define IE_VBLANK 0x01

/* LCDC bits. */
#define LCDC_ON 0x80
#define LCDC_WIN_MAP_9C00 0x40
#define LCDC_WIN_ON 0x20
#define LCDC_TILES_8000 0x10
#define LCDC_OBJ_ON 0x02
#define LCDC_BG_ON 0x01
/* LCD on, BG on, tiles at 0x8000 (unsigned numbers shared with sprites), window map 0x9C00. */
#define LCDC_BASE (LCDC_ON | LCDC_WIN_MAP_9C00 | LCDC_TILES_8000 | LCDC_BG_ON)

#define VRAM_TILES ((uint8_t *)0x8000)
#define BG_MAP ((uint8_t *)0x9800)  /* 32x32 tile numbers; the screen shows 20x18 */
#define WIN_MAP ((uint8_t *)0x9C00)
#define OAM ((uint8_t *)0xFE00)     /* 40 sprites x (y+16, x+8, tile, attributes) */

#define OAM_XFLIP 0x20

/* Joypad bits as the game keeps them (1 = held). */
#define J_RIGHT 0x01
#define J_LEFT 0x02
#define J_UP 0x04
#define J_DOWN 0x08
#define J_A 0x10
#define J_B 0x20
#define J_SELECT 0x40
#define J_START 0x80

#endif
