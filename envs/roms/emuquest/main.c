/* EmuQuest: start-up, the frame loop, title and end screens, shared helpers. */
#include "game.h"

uint8_t keys_new;
uint8_t lcdc_shadow;
uint8_t oam_shadow[16];
uint8_t *mem_dst;
const uint8_t *mem_src;
uint16_t mem_len;
uint8_t mem_value;

static const char intro_text[] =
    "WELCOME TO THE\nLAND OF EMUQUEST!|"
    "AN OLD TOWER LIES\nNORTH OF TOWN.|"
    "FIND THE GUIDE,\nTHEN THE PROF.|"
    "NOW GO, HERO!";

/* Sleep until the v-blank interrupt: the CPU idles, so emulators skip ahead fast. */
static void wait_vblank(void) {
    __asm
        halt
        nop
    __endasm;
}

/* The LCD may only be switched off in v-blank; while it is off VRAM is free to write. */
void lcd_off(void) {
    wait_vblank();
    rLCDC = 0;
}

void lcd_on(void) { rLCDC = lcdc_shadow; }

void clear_bg(void) {
    mem_dst = BG_MAP;
    mem_value = 0;
    mem_len = 32 * 18;
    mem_fill();
}

/* 16-bit Galois LFSR (taps 0xB400): period 65535, never reaches 0. */
uint8_t rng_next(void) {
    uint16_t r = g_rng;
    r = (r & 1) ? (r >> 1) ^ 0xB400 : r >> 1;
    g_rng = r;
    return (uint8_t)r;
}

/* Milestones form a chain: bit i is only set once bit i-1 is. */
void set_milestone(uint8_t index) {
    if (index == 0 || (g_milestones & (1 << (index - 1)))) g_milestones |= 1 << index;
}

/* Copy a C string to a tile map (LCD off): font tiles sit at their ASCII codes. */
void put_text(uint8_t *dst, const char *s) {
    while (*s) *dst++ = (uint8_t)*s++;
}

char *append(char *dst, const char *src) {
    while (*src) *dst++ = *src++;
    *dst = 0;
    return dst;
}

char *append_number(char *dst, uint16_t value, uint8_t digits) {
    uint8_t i = digits;
    while (i) {
        i--;
        dst[i] = '0' + (char)(value % 10);
        value /= 10;
    }
    dst[digits] = 0;
    return dst + digits;
}

static uint8_t read_keys(void) {
    uint8_t dpad, buttons;
    rP1 = 0x20;
    dpad = rP1;
    dpad = rP1;  /* the second read lets the lines settle */
    rP1 = 0x10;
    buttons = rP1;
    buttons = rP1;
    rP1 = 0x30;
    return (uint8_t)((~dpad & 0x0F) | ((~buttons & 0x0F) << 4));
}

/* A 16x16 letter from the big font at tile column col, row row (LCD off). */
static void put_big_letter(uint8_t col, uint8_t row, char c) {
    const char *letters = BIG_LETTERS;
    const uint8_t *t;
    uint8_t *dst = BG_MAP + row * 32 + col;
    uint8_t i = 0;
    while (letters[i] && letters[i] != c) i++;
    if (!letters[i]) return;  /* make_assets.py only draws the letters in BIG_LETTERS */
    t = &big_letter_tiles[i * 4];
    dst[0] = t[0];
    dst[1] = t[1];
    dst[32] = t[2];
    dst[33] = t[3];
}

static void put_big_text(uint8_t col, uint8_t row, const char *s) {
    for (; *s; s++, col += 2)
        if (*s != ' ') put_big_letter(col, row, *s);
}

/* A metatile drawn at tile column col, row row of the background (LCD off). */
static void put_metatile(uint8_t col, uint8_t row, uint8_t metatile) {
    const uint8_t *t = &metatile_tiles[metatile * 4];
    uint8_t *dst = BG_MAP + row * 32 + col;
    dst[0] = t[0];
    dst[1] = t[1];
    dst[32] = t[2];
    dst[33] = t[3];
}

static void title_show(void) {
    static const uint8_t strip[10] = {MT_TREE, MT_TALLGRASS, MT_TALLGRASS, MT_TREE, MT_FLOWER,
                                      MT_GROUND, MT_GUIDE, MT_TALLGRASS, MT_TREE, MT_TREE};
    uint8_t i;
    clear_bg();
    put_big_text(2, 3, "EMUQUEST");
    for (i = 0; i < 16; i++) BG_MAP[6 * 32 + 2 + i] = T_BOX_B;
    put_text(BG_MAP + 9 * 32 + 4, "A TINY QUEST");
    put_text(BG_MAP + 12 * 32 + 4, "PRESS START");
    for (i = 0; i < 10; i++) put_metatile(i * 2, 16, strip[i]);
    lcdc_shadow = LCDC_BASE;
    lcd_on();
}

static void intro_start(void) {
    lcd_off();
    clear_bg();
    put_metatile(9, 5, MT_PROF);
    lcdc_shadow = LCDC_BASE;
    lcd_on();
    g_mode = MODE_DIALOGUE;
    text_open(intro_text, ACT_INTRO_DONE);
}

void end_show(void) {
    char line[20];
    lcd_off();
    clear_bg();
    put_big_text(3, 4, "THE END");
    append_number(append(line, "STEPS "), g_steps, 5);
    put_text(BG_MAP + 9 * 32 + 4, line);
    put_text(BG_MAP + 12 * 32 + 1, "THANKS FOR PLAYING");
    text_init();
    lcdc_shadow = LCDC_BASE;
    lcd_on();
    g_mode = MODE_END;
}

/* Runs inside v-blank, so it must stay short: LCDC, 16 OAM bytes, one queued write. */
static void vblank_work(void) {
    rLCDC = lcdc_shadow;
    mem_dst = OAM;
    mem_src = oam_shadow;
    mem_len = sizeof(oam_shadow);
    mem_copy();
    queue_flush_one();
}

static void init_video(void) {
    /* crt0 left the LCD off. */
    mem_dst = VRAM_TILES;
    mem_src = tile_data;
    mem_len = sizeof(tile_data);
    mem_copy();
    mem_dst = OAM;
    mem_value = 0;
    mem_len = 160;
    mem_fill();
    rBGP = 0xE4;   /* colours 0..3 = white, light, dark, black */
    rOBP0 = 0xE0;  /* 0 transparent, 1 white, 2 dark, 3 black */
    rOBP1 = 0xE0;
    rSCX = 0;
    rSCY = 0;
    rWX = 7;
    rWY = 96;      /* the text box covers the bottom 6 tile rows */
    text_init();
}

void main(void) {
    uint8_t keys, keys_prev = 0;
    init_video();
    g_rng = 0xACE1;
    title_show();
    rIF = 0;
    rIE = IE_VBLANK;
    __asm
        ei
    __endasm;
    while (1) {
        wait_vblank();
        vblank_work();
        g_frame++;
        rng_next();
        keys = read_keys();
        keys_new = keys & (uint8_t)~keys_prev;
        keys_prev = keys;
        g_keys = keys;
        switch (g_mode) {
        case MODE_TITLE:
            if (keys_new & J_START) intro_start();
            break;
        case MODE_DIALOGUE: {
            uint8_t action = text_update();
            if (action != 0xFF) run_action(action);
            break;
        }
        case MODE_OVERWORLD:
            overworld_update();
            break;
        case MODE_BATTLE:
            battle_update();
            break;
        default:  /* MODE_END stays forever */
            break;
        }
    }
}
