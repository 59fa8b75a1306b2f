/* Wild battles: a FIGHT / RUN menu, a move list, and text in the same box as dialogue. */
#include "game.h"

#define HP_BAR_TILES 6

static const char *const enemy_names[3] = {"RATTLE", "BUGSY", "SPROUT"};
static char message[40];
static uint8_t pending_damage;

/* Queue the HP bar (row 3) and "hp/max" (row 4) under the enemy's name. */
static void draw_hp(void) {
    uint8_t bar[HP_BAR_TILES];
    char numbers[6];
    uint8_t full = (uint8_t)((g_enemy_hp * HP_BAR_TILES + g_enemy_max_hp - 1) / g_enemy_max_hp);
    uint8_t i;
    for (i = 0; i < HP_BAR_TILES; i++) bar[i] = i < full ? T_HP_FULL : T_HP_EMPTY;
    queue_write(BG_MAP + 3 * 32 + 4, bar, HP_BAR_TILES);
    append_number(numbers, g_enemy_hp, 2);
    numbers[2] = '/';
    append_number(numbers + 3, g_enemy_max_hp, 2);
    queue_write(BG_MAP + 4 * 32 + 5, (const uint8_t *)numbers, 5);
}

/* Whole battle screen with the LCD off: enemy name and HP top left, its picture top
 * right, the hero's back bottom left; the text box (window) covers rows 12..17. */
static void draw_screen(void) {
    uint8_t *dst;
    uint8_t i;
    lcd_off();
    clear_bg();
    put_text(BG_MAP + 1 * 32 + 1, enemy_names[g_enemy]);
    put_text(BG_MAP + 3 * 32 + 1, "HP:");
    for (i = 0; i < 16; i++) BG_MAP[(1 + i / 4) * 32 + 13 + i % 4] = monster_tiles[i];
    for (i = 0; i < 6; i++) BG_MAP[5 * 32 + 12 + i] = T_GROUND;
    dst = BG_MAP + 8 * 32 + 3;
    dst[0] = SPR_UP;
    dst[1] = SPR_UP + 1;
    dst[32] = SPR_UP + 2;
    dst[33] = SPR_UP + 3;
    for (i = 0; i < 6; i++) BG_MAP[10 * 32 + 1 + i] = T_GROUND;
    put_text(BG_MAP + 9 * 32 + 11, "HERO");
    text_init();
    lcdc_shadow = LCDC_BASE;  /* no sprites in battle */
    lcd_on();
}

void battle_start(void) {
    g_enemy = rng_next() % 3;
    g_enemy_max_hp = 10 + (rng_next() & 7);
    g_enemy_hp = g_enemy_max_hp;
    g_battles++;
    g_mode = MODE_BATTLE;
    draw_screen();
    draw_hp();
    append(append(append(message, "A WILD "), enemy_names[g_enemy]), "\nAPPEARED!");
    g_battle = BATTLE_TEXT;
    text_open(message, ACT_BATTLE_MENU);
}

static void show_menu(uint8_t which) {
    g_battle = which;
    g_cursor = 0;
    text_set_line(0, which == BATTLE_MENU ? " FIGHT" : " TACKLE");
    text_set_line(1, which == BATTLE_MENU ? " RUN" : " EMBER");
    text_put(1, 0, T_CURSOR);
}

static void use_move(uint8_t move) {
    char *end = append(append(message, "HERO USED\n"), move ? "EMBER!" : "TACKLE!");
    uint8_t roll = rng_next();
    if (move == 0) pending_damage = 3 + (roll & 3);       /* TACKLE: 3..6, never misses */
    else if (roll < 64) {                                  /* EMBER: 6..9, misses 1 in 4 */
        pending_damage = 0;
        append(end, "|IT MISSED!");
    } else pending_damage = 6 + (roll & 3);
    g_battle = BATTLE_TEXT;
    text_open(message, ACT_BATTLE_HIT);
}

void battle_action(uint8_t action) {
    if (action == ACT_BATTLE_MENU) {
        show_menu(BATTLE_MENU);
    } else if (action == ACT_BATTLE_HIT) {
        g_enemy_hp = pending_damage >= g_enemy_hp ? 0 : g_enemy_hp - pending_damage;
        draw_hp();
        if (g_enemy_hp == 0) {
            append(append(append(message, "ENEMY "), enemy_names[g_enemy]), "\nFAINTED!");
            text_open(message, ACT_BATTLE_END);
        } else {
            append(append(append(message, "WILD "), enemy_names[g_enemy]), "\nGROWLED!");
            text_open(message, ACT_BATTLE_MENU);
        }
    } else {  /* ACT_BATTLE_END */
        g_battle = BATTLE_NONE;
        map_redraw();
    }
}

void battle_update(void) {
    if (g_battle == BATTLE_TEXT) {
        uint8_t action = text_update();
        if (action != 0xFF) battle_action(action);
        return;
    }
    if (!queue_empty()) return;  /* let the menu finish drawing */
    if ((keys_new & (J_UP | J_DOWN)) && ((keys_new & J_UP) ? g_cursor : !g_cursor)) {
        text_put(1, g_cursor, ' ');
        g_cursor ^= 1;
        text_put(1, g_cursor, T_CURSOR);
    } else if (keys_new & J_A) {
        if (g_battle == BATTLE_MENU) {
            if (g_cursor == 0) show_menu(BATTLE_MOVES);
            else {
                g_battle = BATTLE_TEXT;
                text_open("GOT AWAY SAFELY!", ACT_BATTLE_END);
            }
        } else use_move(g_cursor);
    } else if ((keys_new & J_B) && g_battle == BATTLE_MOVES) {
        show_menu(BATTLE_MENU);
    }
}
