/* The overworld: map loading, walking, warps, talking, milestones, encounters. */
#include "game.h"

#define WALK_FRAMES 16          /* one 16-pixel step, 1 pixel per frame as in Pokemon */
#define ENCOUNTER_THRESHOLD 56  /* a grass step starts a battle when the rng byte < this */

/* Metatiles of the current map (a changed gate included), row-major. */
static uint8_t map_cells[MAP_W * MAP_H];
static int8_t step_dx, step_dy;

typedef struct {
    uint8_t map, x, y;                  /* stepping onto this door/exit tile ... */
    uint8_t to_map, to_x, to_y, to_facing;  /* ... puts the player here */
} Warp;

static const Warp warps[] = {
    {MAP_HOUSE, 4, 8, MAP_TOWN, 2, 5, FACE_DOWN},
    {MAP_TOWN, 2, 4, MAP_HOUSE, 4, 7, FACE_UP},
    {MAP_TOWN, 7, 4, MAP_LAB, 5, 7, FACE_UP},
    {MAP_LAB, 5, 8, MAP_TOWN, 7, 5, FACE_DOWN},
    {MAP_TOWN, 4, 0, MAP_ROUTE, 4, 7, FACE_UP},
    {MAP_ROUTE, 4, 8, MAP_TOWN, 4, 1, FACE_DOWN},
    {MAP_ROUTE, 5, 0, MAP_FOREST, 5, 7, FACE_UP},
    {MAP_FOREST, 5, 8, MAP_ROUTE, 5, 1, FACE_DOWN},
    {MAP_FOREST, 5, 1, MAP_FINAL, 4, 7, FACE_UP},
};

/* Things to talk to: the tile the player faces when pressing A. */
#define TALK_MOM 1
#define TALK_SIGN 2
#define TALK_GUIDE 3
#define TALK_PROF 4
#define TALK_GATE 5

typedef struct {
    uint8_t map, x, y, talk;
} Talker;

static const Talker talkers[] = {
    {MAP_HOUSE, 6, 3, TALK_MOM},
    {MAP_TOWN, 2, 2, TALK_SIGN},
    {MAP_TOWN, 5, 2, TALK_GUIDE},
    {MAP_TOWN, 4, 1, TALK_GATE},
    {MAP_LAB, 4, 2, TALK_PROF},
};

#define GATE_X 4
#define GATE_Y 1
#define HAS(milestone) (g_milestones & (1 << (milestone)))
#define M_TALKED_TO_GUIDE 2
#define M_GOT_KEY 3
#define M_OPENED_GATE 4

/* Redraw the current map with the LCD off (also used after a battle). */
void map_redraw(void) {
    uint8_t *dst = BG_MAP;
    const uint8_t *cell = map_cells;
    uint8_t row, col;
    lcd_off();
    for (row = 0; row < MAP_H; row++) {
        for (col = 0; col < MAP_W; col++) {
            const uint8_t *t = &metatile_tiles[(uint16_t)(*cell++) << 2];
            dst[0] = t[0];
            dst[1] = t[1];
            dst[32] = t[2];
            dst[33] = t[3];
            dst += 2;
        }
        dst += 64 - 2 * MAP_W;  /* skip the hidden 12 columns and the metatile's second row */
    }
    text_init();
    lcdc_shadow = LCDC_BASE | LCDC_OBJ_ON;
    player_sprite_update();
    lcd_on();
    g_mode = MODE_OVERWORLD;
}

void map_load(uint8_t map, uint8_t x, uint8_t y, uint8_t facing) {
    uint8_t i;
    mem_dst = map_cells;
    mem_src = &map_metatiles[map * (MAP_W * MAP_H)];
    mem_len = MAP_W * MAP_H;
    mem_copy();
    if (map == MAP_TOWN && HAS(M_OPENED_GATE)) map_cells[GATE_Y * MAP_W + GATE_X] = MT_PATH;
    for (i = 0; i < MAP_W * MAP_H; i++) g_grid[i] = metatile_kind[map_cells[i]];
    g_map = map;
    g_x = x;
    g_y = y;
    g_facing = facing;
    map_redraw();
}

/* The player's four 8x8 sprites: pose by facing, walk frame in the first half of a step
 * (mirrored on odd steps when walking up or down), right = left mirrored. */
void player_sprite_update(void) {
    uint8_t base, flip = 0, px, py, offset;
    uint8_t walking = g_walk > WALK_FRAMES / 2;
    if (g_facing == FACE_DOWN) base = walking ? SPR_DOWN_WALK : SPR_DOWN;
    else if (g_facing == FACE_UP) base = walking ? SPR_UP_WALK : SPR_UP;
    else base = walking ? SPR_LEFT_WALK : SPR_LEFT;
    if (g_facing == FACE_RIGHT) flip = OAM_XFLIP;
    if (walking && g_facing <= FACE_UP && (g_steps & 1)) flip = OAM_XFLIP;
    offset = g_walk ? WALK_FRAMES - g_walk : 0;
    px = g_x * 16 + 8 + step_dx * offset;
    py = g_y * 16 + 16 + step_dy * offset;
    oam_shadow[0] = py;
    oam_shadow[1] = px;
    oam_shadow[4] = py;
    oam_shadow[5] = px + 8;
    oam_shadow[8] = py + 8;
    oam_shadow[9] = px;
    oam_shadow[12] = py + 8;
    oam_shadow[13] = px + 8;
    /* Mirroring swaps the left and right columns of tiles. */
    oam_shadow[2] = flip ? base + 1 : base;
    oam_shadow[6] = flip ? base : base + 1;
    oam_shadow[10] = flip ? base + 3 : base + 2;
    oam_shadow[14] = flip ? base + 2 : base + 3;
    oam_shadow[3] = oam_shadow[7] = oam_shadow[11] = oam_shadow[15] = flip;
}

static uint8_t kind_at(int8_t x, int8_t y) {
    if (x < 0 || y < 0 || x >= MAP_W || y >= MAP_H) return KIND_WALL;
    return g_grid[y * MAP_W + x];
}

static void talk(uint8_t who) {
    const char *s = 0;
    uint8_t action = ACT_OVERWORLD;
    switch (who) {
    case TALK_MOM:
        s = "MOM: THE GUIDE IS\nWAITING IN TOWN!";
        break;
    case TALK_SIGN:
        s = "NORTH: OLD TOWER.\nTHE GATE IS SHUT.";
        break;
    case TALK_GUIDE:
        s = "GUIDE: HELLO!\nTHE GATE IS SHUT.|"
            "THE PROF IN THE\nLAB HAS THE KEY.";
        action = ACT_GUIDE;
        break;
    case TALK_PROF:
        if (HAS(M_GOT_KEY)) s = "PROF: OPEN THE\nGATE UP NORTH!";
        else if (HAS(M_TALKED_TO_GUIDE)) {
            s = "PROF: THE GUIDE\nSENT YOU? GOOD.|HERO GOT THE KEY!";
            action = ACT_KEY;
        } else s = "PROF: I AM BUSY.\nSEE THE GUIDE.";
        break;
    case TALK_GATE:
        if (HAS(M_GOT_KEY)) {
            s = "THE KEY FITS!\nTHE GATE OPENED!";
            action = ACT_GATE;
        } else s = "THE GATE IS\nLOCKED.";
        break;
    }
    if (!s) return;
    g_talk = who;
    g_mode = MODE_DIALOGUE;
    /* Sprites would draw over the box when the player stands behind it. */
    if (g_y >= 6) lcdc_shadow &= (uint8_t)~LCDC_OBJ_ON;
    text_open(s, action);
}

static void open_gate(void) {
    uint8_t index = GATE_Y * MAP_W + GATE_X;
    const uint8_t *t = &metatile_tiles[MT_PATH * 4];
    map_cells[index] = MT_PATH;
    g_grid[index] = KIND_FLOOR;
    queue_write(BG_MAP + GATE_Y * 64 + GATE_X * 2, t, 2);
    queue_write(BG_MAP + GATE_Y * 64 + 32 + GATE_X * 2, t + 2, 2);
}

/* Called when the last page of a text is dismissed. */
void run_action(uint8_t action) {
    if (action >= ACT_BATTLE_MENU) {
        battle_action(action);
        return;
    }
    if (action == ACT_INTRO_DONE) {
        set_milestone(0);
        text_close();
        map_load(MAP_HOUSE, 7, 2, FACE_DOWN);
        return;
    }
    if (action == ACT_GUIDE) set_milestone(2);
    if (action == ACT_KEY) set_milestone(3);
    if (action == ACT_GATE) {
        set_milestone(4);
        open_gate();
    }
    text_close();
    g_talk = 0;
    lcdc_shadow |= LCDC_OBJ_ON;
    g_mode = MODE_OVERWORLD;
}

/* A step onto (x, y) ends: warp, or move there and maybe meet a wild monster. A warp
 * writes the new map and position together, never the door's position first. */
static void arrive(uint8_t x, uint8_t y) {
    uint8_t kind = g_grid[y * MAP_W + x];
    uint8_t i, from = g_map;
    if (kind == KIND_DOOR || kind == KIND_EXIT) {
        for (i = 0; i < sizeof(warps) / sizeof(warps[0]); i++) {
            const Warp *w = &warps[i];
            if (w->map == from && w->x == x && w->y == y) {
                map_load(w->to_map, w->to_x, w->to_y, w->to_facing);
                if (from == MAP_HOUSE && w->to_map == MAP_TOWN) set_milestone(1);
                if (w->to_map == MAP_FINAL) {
                    set_milestone(6);
                    end_show();
                }
                return;
            }
        }
    }
    g_x = x;
    g_y = y;
    player_sprite_update();
    if (from == MAP_ROUTE && y <= 2) set_milestone(5);
    if (kind == KIND_GRASS && (uint8_t)g_rng < ENCOUNTER_THRESHOLD) battle_start();
}

void overworld_update(void) {
    uint8_t keys = g_keys;
    uint8_t i;
    if (g_walk > 1) {
        g_walk--;
        player_sprite_update();
        return;
    }
    if (g_walk) {
        /* The step ends. `walk` drops to 0 only after a warp or battle has fully set up,
         * so whoever reads RAM between frames never sees a half-finished arrival. */
        uint8_t x = g_x + step_dx, y = g_y + step_dy;
        step_dx = step_dy = 0;
        g_steps++;
        arrive(x, y);
        g_walk = 0;
        return;
    }
    if (keys_new & J_A) {
        int8_t tx = g_x, ty = g_y;
        uint8_t kind;
        if (g_facing == FACE_DOWN) ty++;
        else if (g_facing == FACE_UP) ty--;
        else if (g_facing == FACE_LEFT) tx--;
        else tx++;
        kind = kind_at(tx, ty);
        if (kind == KIND_NPC || kind == KIND_SIGN || kind == KIND_GATE) {
            for (i = 0; i < sizeof(talkers) / sizeof(talkers[0]); i++) {
                const Talker *t = &talkers[i];
                if (t->map == g_map && t->x == (uint8_t)tx && t->y == (uint8_t)ty) {
                    talk(t->talk);
                    return;
                }
            }
        }
    }
    step_dx = step_dy = 0;
    if (keys & J_UP) g_facing = FACE_UP, step_dy = -1;
    else if (keys & J_DOWN) g_facing = FACE_DOWN, step_dy = 1;
    else if (keys & J_LEFT) g_facing = FACE_LEFT, step_dx = -1;
    else if (keys & J_RIGHT) g_facing = FACE_RIGHT, step_dx = 1;
    else return;
    {
        uint8_t kind = kind_at(g_x + step_dx, g_y + step_dy);
        if (kind == KIND_FLOOR || kind == KIND_GRASS || kind == KIND_DOOR || kind == KIND_EXIT)
            g_walk = WALK_FRAMES;
        else
            step_dx = step_dy = 0;  /* bumping only turns */
    }
    player_sprite_update();
}
