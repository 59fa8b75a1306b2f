; EmuQuest start-up: cartridge header, interrupt vectors, RAM clearing, then _main.
; Only the v-blank interrupt is used; its handler just returns, so `halt` in the main
; loop wakes once per frame at the start of v-blank.

        .module crt0
        .globl  _main
        .globl  s__INITIALIZER, l__INITIALIZER, s__INITIALIZED

        .area   _HEADER (ABS)

        .org    0x40            ; v-blank
        reti
        .org    0x48            ; LCD STAT
        reti
        .org    0x50            ; timer
        reti
        .org    0x58            ; serial
        reti
        .org    0x60            ; joypad
        reti

        .org    0x100           ; entry point
        nop
        jp      start

        .org    0x104           ; logo, title, checksums: filled in by makebin -Z
        .db 0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00
        .db 0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00
        .db 0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00
        .db 0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00
        .db 0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00

        .org    0x150
start:
        di
        ld      sp, #0xE000
        ; The LCD may only be switched off during v-blank (LY >= 144).
1$:     ldh     a, (0x44)
        cp      #144
        jr      c, 1$
        xor     a
        ldh     (0x40), a
        ldh     (0x0F), a       ; no pending interrupts
        ldh     (0xFF), a       ; none enabled yet
        ; Clear all of WRAM (C000-DFFF): hardware leaves it random.
        ld      hl, #0xC000
        ld      bc, #0x2000
2$:     xor     a
        ld      (hl+), a
        dec     bc
        ld      a, b
        or      c
        jr      nz, 2$
        ; Clear HRAM (FF80-FFFE).
        ld      hl, #0xFF80
        ld      c, #0x7F
        xor     a
3$:     ld      (hl+), a
        dec     c
        jr      nz, 3$
        ; Copy initialised globals from ROM to RAM.
        ld      de, #s__INITIALIZER
        ld      hl, #s__INITIALIZED
        ld      bc, #l__INITIALIZER
4$:     ld      a, b
        or      c
        jr      z, 5$
        ld      a, (de)
        inc     de
        ld      (hl+), a
        dec     bc
        jr      4$
5$:     call    gsinit
        call    _main
6$:     halt
        nop
        jr      6$

        ; Area order matters to the linker: code and ROM data first, then RAM.
        .area   _HOME
        .area   _CODE
        .area   _INITIALIZER
        .area   _GSINIT
gsinit::
        .area   _GSFINAL
        ret
        .area   _DATA
        .area   _INITIALIZED
        .area   _BSS
        .area   _HEAP
