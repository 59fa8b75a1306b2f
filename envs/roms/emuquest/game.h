/* Shared state and functions of EmuQuest. The RAM block at 0xC000 is the game's public
 * interface (RAM.md, envs/games.py); other globals are linked from 0xC100 up. */
#ifndef GAME_H
#define GAME_H
#include <stdint.h>
#include "hardware.h"
#include "assets.h"

#define RAM8(address) (*(uint8_t *)(address))
#define RAM16(address) (*(uint16_t *)(address))

#define g_mode RAM8(0xC000)        /* MODE_* */
#define g_map RAM8(0xC001)
#define g_x RAM8(0xC002)           /* metatile column 0..9 */
#define g_y RAM8(0xC003)           /* metatile row 0..8 */
#define g_facing RAM8(0xC004)      /* FACE_* */
#define g_milestones RAM8(0xC005)  /* bit i = milestone i */
#define g_steps RAM16(0xC006)      /* completed overworld steps, u16 LE */
#define g_walk RAM8(0xC008)        /* frames left in the current step, 0 = standing */
#define g_text RAM8(0xC009)        /* TEXT_* */
#define g_talk RAM8(0xC00A)        /* TALK_* of the open dialogue, 0 = none */
#define g_battle RAM8(0xC00B)      /* BATTLE_* */
#define g_cursor RAM8(0xC00C)      /* menu cursor row, 0 or 1 */
#define g_enemy RAM8(0xC00D)       /* species 0..2 */
#define g_enemy_hp RAM8(0xC00E)
#define g_keys RAM8(0xC00F)        /* buttons held this frame, J_* bits */
#define g_grid ((uint8_t *)0xC010) /* 9x10 tile kinds, row-major */
#define g_rng RAM16(0xC06A)        /* LFSR, advanced once per frame */
#define g_frame RAM16(0xC06C)      /* frames since _main, u16 LE */
#define g_enemy_max_hp RAM8(0xC06E)
#define g_battles RAM8(0xC06F)     /* wild battles started */

#define MODE_TITLE 0
#define MODE_DIALOGUE 1
#define MODE_OVERWORLD 2
#define MODE_BATTLE 3
#define MODE_END 4

#define FACE_DOWN 0
#define FACE_UP 1
#define FACE_LEFT 2
#define FACE_RIGHT 3

#define KIND_FLOOR 0
#define KIND_WALL 1
#define KIND_GRASS 2
#define KIND_DOOR 3
#define KIND_EXIT 4
#define KIND_NPC 5
#define KIND_GATE 6
#define KIND_SIGN 7

#define TEXT_NONE 0
#define TEXT_PRINTING 1
#define TEXT_WAITING 2  /* page complete, A continues */

#define BATTLE_NONE 0
#define BATTLE_TEXT 1
#define BATTLE_MENU 2   /* FIGHT / RUN */
#define BATTLE_MOVES 3  /* TACKLE / EMBER */

#define MAP_W 10
#define MAP_H 9

/* What happens when the last page of a text is dismissed. */
#define ACT_OVERWORLD 0
#define ACT_INTRO_DONE 1
#define ACT_GUIDE 2
#define ACT_KEY 3
#define ACT_GATE 4
#define ACT_BATTLE_MENU 5
#define ACT_BATTLE_HIT 6
#define ACT_BATTLE_END 7

/* main.c */
extern uint8_t keys_new;       /* buttons pressed this frame (were up last frame) */
extern uint8_t lcdc_shadow;    /* copied to LCDC every v-blank */
extern uint8_t oam_shadow[16]; /* the player's 4 sprites, copied to OAM every v-blank */
extern uint8_t *mem_dst;
extern const uint8_t *mem_src;
extern uint16_t mem_len;
extern uint8_t mem_value;
void mem_copy(void);
void mem_fill(void);
void lcd_off(void);
void lcd_on(void);
void clear_bg(void);
uint8_t rng_next(void);
void set_milestone(uint8_t index);
void end_show(void);
void put_text(uint8_t *dst, const char *s);
char *append(char *dst, const char *src);
char *append_number(char *dst, uint16_t value, uint8_t digits);

/* text.c: the text box in the window layer and the queue of v-blank tile writes */
void queue_write(uint8_t *dst, const uint8_t *src, uint8_t len);
void queue_flush_one(void);
uint8_t queue_empty(void);
void text_init(void);
void text_open(const char *s, uint8_t action);
void text_close(void);
void text_set_line(uint8_t line, const char *s);
void text_put(uint8_t col, uint8_t line, uint8_t tile);
uint8_t text_update(void);  /* returns the action when the text was dismissed, else 0xFF */

/* maps.c */
void map_load(uint8_t map, uint8_t x, uint8_t y, uint8_t facing);
void map_redraw(void);
void overworld_update(void);
void player_sprite_update(void);
void run_action(uint8_t action);

/* battle.c */
void battle_start(void);
void battle_update(void);
void battle_action(uint8_t action);

#endif
