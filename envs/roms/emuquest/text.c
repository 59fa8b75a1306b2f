/* The text box (window layer, 6 tile rows at the bottom of the screen) and the queue of
 * small tile-map writes that are done one per v-blank while the LCD is on. */
#include "game.h"

#define QUEUE_SIZE 8
#define QUEUE_BYTES 18
#define LINE_CHARS 17            /* text columns 1..17; column 18 holds the arrow */
#define BOX_ROW(line) (2 + 2 * (line))

static uint8_t *queue_dst[QUEUE_SIZE];
static uint8_t queue_len[QUEUE_SIZE];
static uint8_t queue_buf[QUEUE_SIZE][QUEUE_BYTES];
static uint8_t queue_head, queue_count;

static const char *text_ptr;
static uint8_t text_line, text_col, text_action;
static uint8_t text_tick;  /* counts frames; a character is typed every other one */

/* Writes that do not fit are dropped; callers only queue a few at a time. */
void queue_write(uint8_t *dst, const uint8_t *src, uint8_t len) {
    uint8_t slot, i;
    if (queue_count == QUEUE_SIZE) return;
    slot = (queue_head + queue_count) & (QUEUE_SIZE - 1);
    queue_dst[slot] = dst;
    queue_len[slot] = len;
    for (i = 0; i < len; i++) queue_buf[slot][i] = src[i];
    queue_count++;
}

void queue_flush_one(void) {
    if (!queue_count) return;
    mem_dst = queue_dst[queue_head];
    mem_src = queue_buf[queue_head];
    mem_len = queue_len[queue_head];
    mem_copy();
    queue_head = (queue_head + 1) & (QUEUE_SIZE - 1);
    queue_count--;
}

uint8_t queue_empty(void) { return queue_count == 0; }

/* Draw the empty box into the window map (LCD off) and hide the window. */
void text_init(void) {
    uint8_t row;
    mem_dst = WIN_MAP;
    mem_value = ' ';
    mem_len = 32 * 6;
    mem_fill();
    for (row = 0; row < 6; row++) {
        uint8_t *line = WIN_MAP + row * 32;
        uint8_t col;
        uint8_t left = T_BOX_L, middle = ' ', right = T_BOX_R;
        if (row == 0) left = T_BOX_TL, middle = T_BOX_T, right = T_BOX_TR;
        if (row == 5) left = T_BOX_BL, middle = T_BOX_B, right = T_BOX_BR;
        line[0] = left;
        for (col = 1; col < 19; col++) line[col] = middle;
        line[19] = right;
    }
    queue_head = queue_count = 0;
    g_text = TEXT_NONE;
    lcdc_shadow &= (uint8_t)~LCDC_WIN_ON;
}

/* Replace one text line (0 or 1) with s, padded with spaces to the arrow column. */
void text_set_line(uint8_t line, const char *s) {
    uint8_t buf[QUEUE_BYTES];
    uint8_t i = 0;
    for (; i < QUEUE_BYTES && s[i]; i++) buf[i] = (uint8_t)s[i];
    for (; i < QUEUE_BYTES; i++) buf[i] = ' ';
    queue_write(WIN_MAP + BOX_ROW(line) * 32 + 1, buf, QUEUE_BYTES);
}

void text_put(uint8_t col, uint8_t line, uint8_t tile) {
    queue_write(WIN_MAP + BOX_ROW(line) * 32 + col, &tile, 1);
}

static void page_start(void) {
    text_set_line(0, "");
    text_set_line(1, "");
    text_line = text_col = 0;
    g_text = TEXT_PRINTING;
}

/* Show s page by page: '\n' starts the second line, '|' a new page. When the last page
 * is dismissed with A, text_update returns `action`. */
void text_open(const char *s, uint8_t action) {
    text_ptr = s;
    text_action = action;
    if (lcdc_shadow & LCDC_WIN_ON) {
        page_start();
    } else {
        /* A hidden box was left blank by text_close. */
        text_line = text_col = 0;
        g_text = TEXT_PRINTING;
        lcdc_shadow |= LCDC_WIN_ON;
    }
}

void text_close(void) {
    lcdc_shadow &= (uint8_t)~LCDC_WIN_ON;
    text_set_line(0, "");
    text_set_line(1, "");
    g_text = TEXT_NONE;
}

/* One character every other frame, like a typewriter. */
uint8_t text_update(void) {
    char c;
    if (g_text == TEXT_PRINTING) {
        if (queue_count || (++text_tick & 1)) return 0xFF;
        c = *text_ptr;
        if (c == '\n') {
            text_line = 1;
            text_col = 0;
            text_ptr++;
        } else if (c == '|' || c == 0) {
            text_put(18, 1, T_ARROW);
            g_text = TEXT_WAITING;
        } else {
            if (text_col < LINE_CHARS) text_put(1 + text_col, text_line, (uint8_t)c);
            text_col++;
            text_ptr++;
        }
    } else if (g_text == TEXT_WAITING && (keys_new & J_A)) {
        if (*text_ptr == '|') {
            text_ptr++;
            page_start();
        } else {
            g_text = TEXT_NONE;
            return text_action;
        }
    }
    return 0xFF;
}
