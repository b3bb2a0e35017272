; A boot sector for the window tests (frontend/tests/window.rs), booted by SeaBIOS from a
; disk, with SeaBIOS's VGA BIOS. Each variant draws a screen or reads the keyboard, says
; "READY" on the debug console (port 0xE9) and then waits with interrupts on:
;   -DTEXT    80x25 text in several colours, cursor hidden
;   -DMODE13  mode 13h, every pixel (x + 2y) mod 256
;   -DVBE     the VBE mode 1920x1080 at 32 bpp found in the mode list (or -DWIDTH=
;             -DHEIGHT=), a gradient drawn through the linear framebuffer (in big real
;             mode); with -DBENCH it then changes a pixel for ever, so every look at the
;             screen finds a new picture (the frame cost benchmark); with -DBENCH -DWHOLE
;             it pans the display down a line and back for ever instead (DISPI Y_OFFSET 1
;             and 0), so every picture differs from the last in every row
;   -DMOUSE   turns the PS/2 mouse into an IntelliMouse (sample rates 200, 100, 80), says
;             "ID" and the ID it then reports, enables streaming and prints every byte from
;             the mouse as -DKEYS does (the keyboard's are dropped)
;   -DKEYS    polls the 8042 with interrupts off and prints every byte from port 0x60 as
;             two hex digits and a space (the keyboard's typematic delay set to 1 s first)
bits 16
org 0x7C00
%ifdef KEYS
%define BYTES
%endif
%ifdef MOUSE
%define BYTES
%endif
%ifndef WIDTH
%define WIDTH 1920
%endif
%ifndef HEIGHT
%define HEIGHT 1080
%endif

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7000
    sti
%ifdef TEXT
    mov ax, 0x0003
    int 0x10
    mov ah, 0x01                ; cursor off
    mov cx, 0x2000
    int 0x10
    push word 0xB800
    pop es
    xor di, di
    mov si, text
    mov ah, 0x1F                ; white on blue
.line:
    lodsb
    test al, al
    jz .text_done
    stosw
    jmp .line
.text_done:
    mov di, 160 * 2             ; row 2: every attribute without blink, a block each
    xor bx, bx
.attrs:
    mov al, 0xDB
    mov ah, bl
    stosw
    mov al, 'F'
    stosw
    inc bl
    cmp bl, 0x80
    jb .attrs
    xor ax, ax
    mov es, ax
%elifdef MODE13
    mov ax, 0x0013
    int 0x10
    push word 0xA000
    pop es
    xor di, di
    xor dx, dx                  ; y
.row:
    xor cx, cx                  ; x
.px:
    mov ax, dx
    add ax, ax
    add ax, cx
    stosb
    inc cx
    cmp cx, 320
    jb .px
    inc dx
    cmp dx, 200
    jb .row
    xor ax, ax
    mov es, ax
%elifdef VBE
    mov ax, 0x4F00
    mov di, 0x8000
    mov dword [di], 'VBE2'
    int 0x10
    cmp ax, 0x004F
    jne fail
    lfs si, [0x8000 + 14]       ; the mode list
.next_mode:
    mov cx, [fs:si]
    add si, 2
    cmp cx, 0xFFFF
    je fail
    mov ax, 0x4F01
    mov di, 0x8200
    int 0x10
    cmp ax, 0x004F
    jne .next_mode
    cmp word [0x8200 + 0x12], WIDTH
    jne .next_mode
    cmp word [0x8200 + 0x14], HEIGHT
    jne .next_mode
    cmp byte [0x8200 + 0x19], 32
    jne .next_mode
    mov bx, cx
    or bx, 0x4000               ; linear framebuffer
    mov ax, 0x4F02
    int 0x10
    cmp ax, 0x004F
    jne fail
    cli                         ; big real mode: FS with a 4 GiB limit
    lgdt [gdt_desc]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    mov bx, 8
    mov fs, bx
    and al, 0xFE
    mov cr0, eax
    xor ax, ax
    mov fs, ax
    sti
    xor ebx, ebx                ; y
.vrow:
    movzx edi, word [0x8200 + 0x10]
    imul edi, ebx
    add edi, [0x8200 + 0x28]
    xor ecx, ecx                ; x
.vpx:
    mov eax, ecx                ; blue: x, green: y, red: (x + y) / 8
    add eax, ebx
    shr eax, 3
    shl eax, 16
    mov ah, bl
    mov al, cl
    mov [fs:edi], eax
    add edi, 4
    inc ecx
    cmp ecx, WIDTH
    jb .vpx
    inc ebx
    cmp ebx, HEIGHT
    jb .vrow
%elifdef KEYS
    cli
    mov al, 0xF3                ; typematic: 1 s delay, slowest rate
    call kbd_send
    mov al, 0x7F
    call kbd_send
%elifdef MOUSE
    cli
    call ibf_wait
    mov al, 0xA8                ; enable the auxiliary interface
    out 0x64, al
    mov si, intellimouse
.knock:
    lodsb
    test al, al
    jz .knocked
    call aux_send
    jmp .knock
.knocked:
    mov al, 0xF2                ; get ID: ACK, then the ID
    call aux_send
    call obf_wait
    in al, 0x60
    push ax
    mov si, id
    call print
    pop ax
    call hex
    mov al, 10
    out 0xE9, al
    mov al, 0xF4                ; enable streaming
    call aux_send
%endif
    mov si, ready
    call print
%ifdef BENCH
%ifdef WHOLE
    mov dx, 0x1CE
    mov ax, 9                   ; DISPI Y_OFFSET
    out dx, ax
    inc dx
    xor ax, ax
.pan:
    xor al, 1
    out dx, ax
    jmp .pan
%else
    mov edi, [0x8200 + 0x28]
.change:
    inc dword [fs:edi]
    jmp .change
%endif
%endif
%ifdef BYTES
.poll:
    in al, 0x64
    test al, 1
    jz .poll
%ifdef MOUSE
    test al, 0x20               ; the mouse's bytes only
    jnz .aux
    in al, 0x60
    jmp .poll
.aux:
%endif
    in al, 0x60
    call hex
    mov al, ' '
    out 0xE9, al
    jmp .poll
%endif
idle:
    sti
    hlt
    jmp idle

fail:
    mov si, failed
    call print
    jmp idle

print:
    lodsb
    test al, al
    jz .done
    out 0xE9, al
    jmp print
.done:
    ret

%ifdef BYTES
%ifdef MOUSE
; Sends AL to the mouse and waits for its answer (ACK).
aux_send:
    mov ah, al
    call ibf_wait
    mov al, 0xD4
    out 0x64, al
    call ibf_wait
    mov al, ah
    out 0x60, al
    call obf_wait
    in al, 0x60
    ret

ibf_wait:
    in al, 0x64
    test al, 2
    jnz ibf_wait
    ret

obf_wait:
    in al, 0x64
    test al, 1
    jz obf_wait
    ret

intellimouse: db 0xF3, 200, 0xF3, 100, 0xF3, 80, 0
id: db "ID ", 0
%endif

; Sends AL to the keyboard and waits for its answer (ACK).
kbd_send:
    mov ah, al
.wait:
    in al, 0x64
    test al, 2
    jnz .wait
    mov al, ah
    out 0x60, al
.answer:
    in al, 0x64
    test al, 1
    jz .answer
    in al, 0x60
    ret

hex:
    push ax
    shr al, 4
    call digit
    pop ax
    and al, 0x0F
digit:
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'A' - '9' - 1
.out:
    out 0xE9, al
    ret
%endif

%ifdef VBE
align 8
gdt:
    dq 0
    dq 0x00CF92000000FFFF
gdt_desc:
    dw 15
    dd gdt
%endif

%ifdef TEXT
text: db "Ferrite in a window: text mode 80x25 through SeaBIOS and its VGA BIOS", 0
%endif
ready: db "READY", 10, 0
failed: db "FAILED", 10, 0

times 510 - ($ - $$) db 0
dw 0xAA55
