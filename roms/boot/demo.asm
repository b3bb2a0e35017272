; demo: Ferrite's default guest, a boot program that `ferrite` boots from a built-in floppy
; when it is given nothing to boot (no drive, --boot or --bios). A tour of the machine through the BIOS and the
; hardware: colour text (INT 10h), the timer tick and the real-time clock (IRQ 0, INT 1Ah),
; mode 13h graphics with its own palette (the DAC at 3C8h/3C9h), a tune on the PC speaker
; (PIT channel 2, port 61h), then keyboard echo (INT 16h) until Esc. Everything shown on
; screen is also written to COM1, so a headless run prints the tour.
;
; Headless or not comes from the fw_cfg file "opt/ferrite/headless" ("1": no display), which
; the front end adds. Headless there is no keyboard to type on, so the tour ends after the
; tune (the picture still on screen) with exit status 0 through the exit device (port F4h).
; Without that file (another machine) the demo is interactive.
;
; Waits halt until the next timer tick (18.2 Hz), so under Ferrite's deterministic clock the
; tour takes no wall time beyond its work; in a window it takes about six seconds.
;
; Layout: the BIOS loads the boot sector at 0000:7C00; it reads the rest of the program (the
; sectors after it on track 0) to 0000:7E00. build.sh pads the image to whole sectors and
; checks it fits the first track of a 1.44 MB floppy.

    bits 16
    cpu 386
    org 0x7C00

COM1        equ 0x3F8
FWCFG_SEL   equ 0x510
FWCFG_DATA  equ 0x511
EXIT_PORT   equ 0xF4
SPEAKER     equ 0x61
PIT_CH2     equ 0x42
PIT_MODE    equ 0x43
BDA_TICKS   equ 0x46C
SECTORS     equ (program_end - main + 511) / 512

start:
    jmp 0:.cs                       ; CS:IP = 0000:7Cxx whatever the BIOS jumped with
.cs:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    sti
    cld
    mov [boot_drive], dl
    mov bp, 3                       ; tries, with a drive reset between them
.load:
    mov ax, 0x0200 | SECTORS
    mov bx, 0x7E00
    mov cx, 0x0002                  ; cylinder 0, sector 2
    xor dh, dh                      ; head 0
    mov dl, [boot_drive]
    int 0x13
    jnc main
    xor ah, ah
    int 0x13
    dec bp
    jnz .load
    mov si, msg_load_failed
    call serial_puts
    mov al, 1
    jmp exit

; AL to COM1, waiting for the transmitter holding register (LSR bit 5). Preserves registers.
serial_putc:
    push dx
    push ax
    mov dx, COM1 + 5
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    pop ax
    mov dx, COM1
    out dx, al
    pop dx
    ret

; The NUL-terminated string at DS:SI to COM1. Preserves registers.
serial_puts:
    push ax
    push si
.next:
    lodsb
    test al, al
    jz .done
    call serial_putc
    jmp .next
.done:
    pop si
    pop ax
    ret

; Leaves with status AL: speaker off, then the exit device. On a machine without one, halts.
exit:
    push ax
    in al, SPEAKER
    and al, 0xFC
    out SPEAKER, al
    pop ax
    out EXIT_PORT, al
.halt:
    cli
    hlt
    jmp .halt

msg_load_failed: db `demo: cannot read the rest of the program from the boot drive\r\n`, 0
boot_drive: db 0

    times 510 - ($ - $$) db 0
    dw 0xAA55

; ---------------------------------------------------------------------------------------------

main:
    call serial_init
    call detect_headless
    mov si, msg_hello
    call serial_puts

    call stage_text
    mov cx, 9                       ; half a second to read it
    call wait_ticks
    call stage_timer
    call stage_graphics             ; and the tune over the picture
    cmp byte [headless], 0
    je stage_keyboard
    mov si, msg_headless_end
    call serial_puts
    mov al, 0
    jmp exit

; COM1 at 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on, no interrupts.
serial_init:
    mov dx, COM1 + 3
    mov al, 0x80                    ; DLAB
    out dx, al
    mov dx, COM1
    mov al, 1                       ; divisor 1: 115200 baud
    out dx, al
    inc dx
    xor al, al
    out dx, al
    mov dx, COM1 + 3
    mov al, 0x03
    out dx, al
    mov dx, COM1 + 2
    mov al, 0x07                    ; FIFOs on and cleared
    out dx, al
    mov dx, COM1 + 4
    mov al, 0x03                    ; DTR, RTS
    out dx, al
    ret

; headless = 1 when fw_cfg has "opt/ferrite/headless" and its first byte is '1'.
detect_headless:
    mov byte [headless], 0
    mov si, fwcfg_headless
    call fwcfg_find
    jc .done
    mov dx, FWCFG_SEL
    out dx, ax
    inc dx
    in al, dx
    cmp al, '1'
    jne .done
    mov byte [headless], 1
.done:
    ret

; Finds the fw_cfg file named by the NUL-terminated string at SI (QEMU docs/specs/fw_cfg.rst:
; signature "QEMU" at item 0, the directory at item 19h: a big-endian count, then 64-byte
; entries {size, select, reserved, name[56]}, big-endian). Returns CF=0 and AX = its
; selector, or CF=1 when there is no fw_cfg or no such file.
fwcfg_find:
    mov dx, FWCFG_SEL
    xor ax, ax
    out dx, ax
    inc dx
    mov di, fwcfg_entry
    mov cx, 4
    rep insb
    cmp dword [fwcfg_entry], 'QEMU'
    jne .absent
    dec dx
    mov ax, 0x19
    out dx, ax
    inc dx
    mov di, fwcfg_entry
    mov cx, 4
    rep insb
    mov bx, [fwcfg_entry + 2]       ; the count's low half, big-endian
    xchg bl, bh
.entry:
    test bx, bx
    jz .absent
    dec bx
    mov di, fwcfg_entry
    mov cx, 64
    rep insb
    push si
    mov di, fwcfg_entry + 8
.cmp:
    lodsb
    cmp al, [di]
    jne .differs
    inc di
    test al, al
    jnz .cmp
    pop si
    mov ax, [fwcfg_entry + 4]
    xchg al, ah
    clc
    ret
.differs:
    pop si
    jmp .entry
.absent:
    stc
    ret

; Waits CX timer ticks (55 ms each), halting between them.
wait_ticks:
    push ax
    push bx
    mov bx, [BDA_TICKS]
.wait:
    sti
    hlt
    mov ax, [BDA_TICKS]
    sub ax, bx
    cmp ax, cx
    jb .wait
    pop bx
    pop ax
    ret

; Waits for the next timer tick.
next_tick:
    push cx
    mov cx, 1
    call wait_ticks
    pop cx
    ret

; ---------------------------------------------------------------------------------------------
; Text mode.

; The NUL-terminated string at SI at row DH, column DL in colour BL (INT 10h AH=13h, the
; cursor stays). Preserves registers.
text_at:
    pusha
    push es
    mov di, si
    xor cx, cx
.len:
    cmp byte [di], 0
    je .write
    inc di
    inc cx
    jmp .len
.write:
    jcxz .out
    push ds
    pop es
    mov bp, si
    mov ax, 0x1300
    xor bh, bh
    int 0x10
.out:
    pop es
    popa
    ret

; Fills rows CH to DH, columns CL to DL with blanks in attribute BH (INT 10h AH=06h, AL=0).
fill:
    pusha
    mov ax, 0x0600
    int 0x10
    popa
    ret

; Text mode 03h with bright backgrounds instead of blinking, the cursor hidden, the title bar,
; the checklist of stages and the footer.
text_screen:
    mov ax, 0x0003
    int 0x10
    mov ax, 0x1003                  ; attribute bit 7: bright background, not blink
    xor bl, bl
    int 0x10
    mov ah, 0x01
    mov cx, 0x2000                  ; cursor off
    int 0x10
    mov bh, 0x1F
    mov cx, 0x0000
    mov dx, 0x024F
    call fill
    mov si, title_name
    mov dx, 0x0102
    mov bl, 0x1E
    call text_at
    mov si, title_rest
    mov dx, 0x010B
    mov bl, 0x1F
    call text_at
    mov si, intro1
    mov dx, 0x0402
    mov bl, 0x07
    call text_at
    mov si, intro2
    mov dx, 0x0502
    call text_at
    mov si, checklist
    mov dh, 7
.item:
    mov dl, 4
    mov bl, 0x08
    call text_at
.skip:
    lodsb
    test al, al
    jnz .skip
    inc dh
    cmp byte [si], 0
    jne .item
    mov bh, 0x70
    mov cx, 0x1800
    mov dx, 0x184F
    call fill
    mov si, footer
    mov dx, 0x1802
    mov bl, 0x70
    call text_at
    ret

; Ticks stage AL (0-4) off the checklist: its line in bright white, a green mark before it.
check_stage:
    pusha
    movzx cx, al
    mov si, checklist
    jcxz .found
.skip:
    lodsb
    test al, al
    jnz .skip
    loop .skip
.found:
    mov bp, sp
    mov dh, 7
    add dh, [bp + 14]               ; the caller's AL (PUSHA put AX highest)
    mov dl, 4
    mov bl, 0x0F
    call text_at
    mov si, mark
    mov dl, 0
    mov bl, 0x2F
    call text_at
    popa
    ret

; Stage 1: colour text.
stage_text:
    call text_screen
    mov si, msg_text
    call serial_puts
    ; The sixteen background colours, each labelled with its number.
    mov si, colours_label
    mov dx, 0x0D02
    mov bl, 0x07
    call text_at
    xor cx, cx
.swatch:
    mov bl, cl
    shl bl, 4                       ; background colour CL
    mov al, 0x0F                    ; white digits on the dark ones
    cmp cl, 7
    je .dark
    cmp cl, 9
    jb .chosen
.dark:
    xor al, al                      ; black digits on the light ones
.chosen:
    or bl, al
    mov al, '0'
    add al, cl
    cmp al, '9'
    jbe .digit
    add al, 'A' - '9' - 1
.digit:
    mov [swatch + 1], al
    mov si, swatch
    mov dh, 13
    mov dl, cl
    shl dl, 2
    add dl, 14
    call text_at
    inc cx
    cmp cx, 16
    jb .swatch
    ; A line whose letters take the bright foreground colours in turn.
    mov si, rainbow
    mov dx, 0x0F02
    mov bl, 0x09
.letter:
    mov al, [si]
    test al, al
    jz .lettered
    mov [one_char], al
    push si
    mov si, one_char
    call text_at
    pop si
    inc si
    inc dl
    inc bl
    cmp bl, 0x10
    jb .letter
    mov bl, 0x09
    jmp .letter
.lettered:
    mov al, 0
    call check_stage
    ret

; Stage 2: a second of timer ticks, counted on screen and on COM1, and the real-time clock.
stage_timer:
    mov si, msg_timer
    call serial_puts
    mov si, ticks_label
    mov dx, 0x1102
    mov bl, 0x07
    call text_at
    call next_tick                  ; start on a tick's edge
    xor ah, ah
    int 0x1A                        ; CX:DX = ticks since midnight
    mov [tick0], dx
    xor bp, bp                      ; ticks counted
.tick:
    call next_tick
    xor ah, ah
    int 0x1A
    sub dx, [tick0]
    mov bp, dx
    mov ax, dx
    call decimal
    mov al, ' '
    call serial_putc
    call serial_puts
    mov dx, 0x1132
    mov bl, 0x0E
    call text_at
    mov ah, 0x02                    ; the bar: two blocks a tick, from column 2
    xor bh, bh
    mov dx, 0x1202
    int 0x10
    mov ax, 0x09DB
    mov bl, 0x0A
    mov cx, bp
    cmp cx, 36
    jbe .bar
    mov cx, 36
.bar:
    shl cx, 1
    int 0x10
    cmp bp, 18
    jb .tick
    mov si, crlf
    call serial_puts
    call rtc_string
    mov si, rtc_label
    call serial_puts
    mov si, rtc_screen_label
    mov dx, 0x1302
    mov bl, 0x07
    call text_at
    mov si, rtc_text
    call serial_puts
    mov dx, 0x1332
    mov bl, 0x0B
    call text_at
    mov si, crlf
    call serial_puts
    mov al, 1
    call check_stage
    mov cx, 9
    call wait_ticks
    ret

; rtc_text = "YYYY-MM-DD hh:mm:ss" from INT 1Ah AH=04h and AH=02h (BCD).
rtc_string:
    mov di, rtc_text
    mov ah, 0x04
    int 0x1A                        ; CH century, CL year, DH month, DL day
    mov al, ch
    call bcd2
    mov al, cl
    call bcd2
    mov al, '-'
    stosb
    mov al, dh
    call bcd2
    mov al, '-'
    stosb
    mov al, dl
    call bcd2
    mov al, ' '
    stosb
    mov ah, 0x02
    int 0x1A                        ; CH hours, CL minutes, DH seconds
    mov al, ch
    call bcd2
    mov al, ':'
    stosb
    mov al, cl
    call bcd2
    mov al, ':'
    stosb
    mov al, dh
    call bcd2
    mov byte [di], 0
    ret

; AL (two BCD digits) as two characters at DI.
bcd2:
    push ax
    shr al, 4
    add al, '0'
    stosb
    pop ax
    and al, 0x0F
    add al, '0'
    stosb
    ret

; AX in decimal, NUL-terminated, at SI (in number_text).
decimal:
    push ax
    push bx
    push dx
    mov si, number_text + 5
    mov byte [si], 0
    mov bx, 10
.digit:
    xor dx, dx
    div bx
    add dl, '0'
    dec si
    mov [si], dl
    test ax, ax
    jnz .digit
    pop dx
    pop bx
    pop ax
    ret

; AL in hexadecimal, two characters at DI.
hex2:
    push ax
    shr al, 4
    call .nibble
    pop ax
    and al, 0x0F
.nibble:
    and al, 0x0F
    add al, '0'
    cmp al, '9'
    jbe .store
    add al, 'A' - '9' - 1
.store:
    stosb
    ret

; ---------------------------------------------------------------------------------------------
; Stages 3 and 4: graphics, and the tune over it.

stage_graphics:
    mov si, msg_graphics
    call serial_puts
    mov ax, 0x0013
    int 0x10
    ; The palette: 0 black, 1-254 a colour wheel, 255 white, straight to the DAC.
    mov dx, 0x3C8
    xor al, al
    out dx, al
    inc dx
    mov si, palette
    mov cx, 256 * 3
    rep outsb
    call draw_picture
    mov si, gfx_title
    mov dx, 0x0001
    mov bl, 255
    call text_at
    mov si, tune_label
    mov dx, 0x1802
    mov bl, 255
    call text_at
    mov si, msg_picture
    call serial_puts

    mov si, msg_sound
    call serial_puts
    call next_tick                  ; start on a tick's edge
    mov si, tune
    mov dx, 0x1808                  ; where the first note's name goes
.note:
    lodsw                           ; AX = PIT divisor, 0 at the end
    test ax, ax
    jz .played
    mov bx, ax
    lodsb                           ; its length in ticks (the last one silent)
    mov cl, al
    lodsb                           ; its name
    mov [one_char], al
    push si
    mov si, one_char
    push bx
    mov bl, 255
    call text_at
    pop bx
    mov al, ' '
    call serial_putc
    mov al, [one_char]
    call serial_putc
    mov al, PIT_MODE_SQUARE
    out PIT_MODE, al                ; channel 2, low then high byte, mode 3, binary
    mov al, bl
    out PIT_CH2, al
    mov al, bh
    out PIT_CH2, al
    in al, SPEAKER
    or al, 0x03                     ; gate channel 2 and connect it to the speaker
    out SPEAKER, al
.sounding:
    dec cl
    jz .gap
    call next_tick
    call rotate_palette
    jmp .sounding
.gap:
    in al, SPEAKER
    and al, 0xFC
    out SPEAKER, al
    call next_tick
    call rotate_palette
    pop si
    add dl, 2
    jmp .note
.played:
    mov si, crlf
    call serial_puts
    ret

PIT_MODE_SQUARE equ 0xB6

; Concentric rings of the colour wheel, shifted half a turn on alternate squares of a 32-pixel
; checkerboard, between black bands for the labels (rows 12 to 187).
draw_picture:
    push es
    mov ax, 0xA000
    mov es, ax
    mov di, 12 * 320
    mov bx, 12                      ; y
.row:
    xor cx, cx                      ; x
.pixel:
    mov ax, cx
    sub ax, 160
    imul ax
    mov si, ax                      ; (x - 160)^2
    mov ax, bx
    sub ax, 100
    imul ax
    add ax, si                      ; the squared distance from the centre, below 35,600
    shr ax, 6
    mov dx, cx
    xor dx, bx
    test dl, 32
    jz .same
    add ax, 127
.same:
    xor dx, dx
    mov si, 254
    div si
    mov al, dl
    inc al                          ; 1 to 254: the wheel
    stosb
    inc cx
    cmp cx, 320
    jb .pixel
    inc bx
    cmp bx, 188
    jb .row
    pop es
    ret

; Turns the colour wheel by three steps: DAC entries 1-254 from the wheel, starting at phase.
rotate_palette:
    pusha
    mov ax, [phase]
    add ax, 3
    cmp ax, 254
    jb .keep
    sub ax, 254
.keep:
    mov [phase], ax
    mov dx, 0x3C8
    mov al, 1
    out dx, al
    inc dx
    mov ax, [phase]
    mov si, ax
    imul si, si, 3
    add si, wheel
    mov cx, 254
    sub cx, ax
    imul cx, cx, 3
    rep outsb
    mov si, wheel
    imul cx, ax, 3
    rep outsb
    popa
    ret

; ---------------------------------------------------------------------------------------------
; Stage 5: keyboard echo, until Esc.

ECHO_TOP    equ 17
ECHO_BOTTOM equ 21

stage_keyboard:
    call text_screen
    mov al, 0
.done:
    call check_stage
    inc al
    cmp al, 4
    jb .done
    mov si, kb_help
    mov dx, 0x0F02
    mov bl, 0x0E
    call text_at
    mov bh, 0x1F                    ; the echo area
    mov cx, ECHO_TOP << 8 | 2
    mov dx, ECHO_BOTTOM << 8 | 77
    call fill
    mov ah, 0x01
    mov cx, 0x0607                  ; an underline cursor where the next key goes
    int 0x10
    mov word [echo_pos], ECHO_TOP << 8 | 3
    call place_cursor
    mov si, msg_keyboard
    call serial_puts
.wait:
    mov ah, 0x01
    int 0x16                        ; ZF=1: no key
    jnz .key
    mov dx, COM1 + 5
    in al, dx
    test al, 0x01                   ; a byte from COM1 echoes too
    jnz .serial
    sti
    hlt
    jmp .wait
.serial:
    mov dx, COM1
    in al, dx
    xor ah, ah                      ; no scan code
    jmp .have
.key:
    xor ah, ah
    int 0x16                        ; AH scan code, AL character
.have:
    cmp al, 0x1B
    je .esc
    call show_key
    call echo
    jmp .wait
.esc:
    mov al, 4
    call check_stage
    mov si, msg_bye
    call serial_puts
    mov cx, 4
    call wait_ticks
    mov al, 0
    jmp exit

; "key: 'c'  scan code 1Eh  character 61h" below the echo area for the key in AX.
show_key:
    pusha
    mov di, key_text + 6
    mov byte [di], ' '
    cmp al, 0x20
    jb .unprintable
    cmp al, 0x7E
    ja .unprintable
    mov [di], al
.unprintable:
    mov di, key_text + 20
    push ax
    mov al, ah
    call hex2
    pop ax
    mov di, key_text + 35
    call hex2
    mov si, key_text
    mov dx, (ECHO_BOTTOM + 2) << 8 | 2
    mov bl, 0x07
    call text_at
    popa
    ret

; The character in AL into the echo area (and to COM1): printable characters, Enter a new
; line, Backspace erases; the area scrolls at its bottom.
echo:
    pusha
    mov dx, [echo_pos]
    cmp al, 0x0D
    je .newline
    cmp al, 0x0A
    je .newline
    cmp al, 0x08
    je .backspace
    cmp al, 0x20
    jb .out
    cmp al, 0x7E
    ja .out
    call serial_putc
    mov [one_char], al
    mov si, one_char
    mov bl, 0x1F
    call text_at
    inc dl
    cmp dl, 77
    jb .moved
.newline:
    mov al, 0x0D
    call serial_putc
    mov al, 0x0A
    call serial_putc
    mov dl, 3
    inc dh
    cmp dh, ECHO_BOTTOM
    jbe .moved
    mov dh, ECHO_BOTTOM
    mov ax, 0x0601                  ; scroll the area up a line
    mov bh, 0x1F
    mov cx, ECHO_TOP << 8 | 2
    push dx
    mov dx, ECHO_BOTTOM << 8 | 77
    int 0x10
    pop dx
    jmp .moved
.backspace:
    cmp dl, 3
    jbe .out
    dec dl
    mov si, one_blank
    mov bl, 0x1F
    call text_at
    mov al, 0x08
    call serial_putc
    mov al, ' '
    call serial_putc
    mov al, 0x08
    call serial_putc
.moved:
    mov [echo_pos], dx
    call place_cursor
.out:
    popa
    ret

place_cursor:
    pusha
    mov dx, [echo_pos]
    mov ah, 0x02
    xor bh, bh
    int 0x10
    popa
    ret

; ---------------------------------------------------------------------------------------------
; Data.

msg_hello:
    db `\r\nFerrite demo: a boot program on Ferrite's built-in floppy, started by Ferrite's own BIOS\r\n`, 0
msg_text:
    db `[1/5] text: 80x25 colour text mode, 16 foreground and background colours (INT 10h)\r\n`, 0
msg_timer:
    db `[2/5] timer: IRQ 0 ticks at 18.2 Hz, counted through INT 1Ah:`, 0
msg_graphics:
    db `[3/5] graphics: mode 13h, 320x200 pixels in 256 colours; a colour wheel in the DAC (ports 3C8h/3C9h)\r\n`, 0
msg_picture:
    db `      picture: rings and squares, the palette turning with the music\r\n`, 0
msg_sound:
    db `[4/5] sound: Ode to Joy on the PC speaker (PIT channel 2 in mode 3, gated through port 61h):`, 0
msg_headless_end:
    db `[5/5] keyboard: in a window (ferrite --display window) keys echo on screen and here (INT 16h) until Esc;`, `\r\n`
    db `      headless there is nothing to type on, so the tour ends here.\r\n`
    db `Ferrite demo: tour complete; exit status 0 through the exit device (port F4h)\r\n`, 0
msg_keyboard:
    db `[5/5] keyboard: type in the window; keys echo on screen and here (INT 16h); Esc ends the demo\r\n`, 0
msg_bye:
    db `\r\nFerrite demo: Esc pressed; exit status 0 through the exit device (port F4h)\r\n`, 0
crlf: db `\r\n`, 0

title_name: db "FERRITE", 0
title_rest: db "a full-system x86 PC emulator, written in Rust", 0
intro1: db "This is Ferrite's built-in demo: a 16-bit program on a built-in floppy,", 0
intro2: db "booted by Ferrite's own BIOS. It shows what the emulated PC does:", 0
checklist:
    db "Colour text mode (INT 10h)", 0
    db "Timer ticks (IRQ 0, INT 1Ah) and the real-time clock", 0
    db "Graphics: mode 13h, 320x200 in 256 colours", 0
    db "A tune on the PC speaker (PIT channel 2)", 0
    db "Keyboard echo (INT 16h)", 0
    db 0
mark: db " ", 0xFB, " ", 0          ; a check mark in code page 437
footer: db "Ferrite runs this when it is given nothing to boot   |   ferrite --help", 0
colours_label: db "16 colours:", 0
swatch: db " 0  ", 0
rainbow: db "Every character cell has its own colours: 16 foregrounds, 16 backgrounds.", 0
ticks_label: db "Timer ticks (IRQ 0, 18.2 a second, INT 1Ah):", 0
rtc_label: db "      real-time clock (INT 1Ah AH=02h/04h): ", 0
rtc_screen_label: db "Real-time clock (INT 1Ah):", 0
gfx_title: db "Mode 13h: 320x200, 256 colours", 0
tune_label: db "Tune:", 0
kb_help: db "Keyboard: type here; every key echoes (INT 16h). Esc ends the demo.", 0
key_text: db "key: ' '  scan code 00h  character 00h", 0
one_blank: db " ", 0
fwcfg_headless: db "opt/ferrite/headless", 0

; Ode to Joy (Beethoven, 1824): PIT divisors (1,193,182 Hz / the note's frequency), lengths in
; ticks (the last tick of each note silent), names.
%define C5 2280
%define D5 2032
%define E5 1810
%define F5 1708
%define G5 1522
tune:
    dw E5
    db 4, 'E'
    dw E5
    db 4, 'E'
    dw F5
    db 4, 'F'
    dw G5
    db 4, 'G'
    dw G5
    db 4, 'G'
    dw F5
    db 4, 'F'
    dw E5
    db 4, 'E'
    dw D5
    db 4, 'D'
    dw C5
    db 4, 'C'
    dw C5
    db 4, 'C'
    dw D5
    db 4, 'D'
    dw E5
    db 4, 'E'
    dw E5
    db 6, 'E'
    dw D5
    db 2, 'D'
    dw D5
    db 8, 'D'
    dw 0

; The palette: black, a wheel of 254 fully saturated hues (6-bit DAC values), white.
palette:
    db 0, 0, 0
wheel:
%assign i 0
%rep 254
    %assign h (i * 384) / 254
    %assign f h % 64
    %if h < 64
        db 63, f, 0
    %elif h < 128
        db 63 - f, 63, 0
    %elif h < 192
        db 0, 63, f
    %elif h < 256
        db 0, 63 - f, 63
    %elif h < 320
        db f, 0, 63
    %else
        db 63, 0, 63 - f
    %endif
    %assign i i + 1
%endrep
    db 63, 63, 63

headless: db 0
phase: dw 0
tick0: dw 0
echo_pos: dw 0
one_char: db 0, 0
number_text: times 6 db 0
rtc_text: times 20 db 0
fwcfg_entry: times 64 db 0

program_end:
    times (512 - ($ - $$) % 512) % 512 db 0
