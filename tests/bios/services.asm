; A boot floppy that checks Ferrite's BIOS services from the caller's side: INT 13h on the
; floppy and a hard disk (CHS and EDD reads, bad drives and sectors), INT 15h (E820, E801,
; 88h, C0h, A20, C2h with INT 74h), INT 10h (mode set, teletype, VBE 4F00h-4F03h), INT 16h,
; INT 1Ah, INT 11h/12h.
; One "PASS name" or "FAIL name" line per check on the debug console (port 0xE9), then the
; number of failures as the exit status (port 0xF4). The test (tests/tests/bios.rs) gives it
; a 1.44 MB floppy (this program, then sector 18 filled with 0xA5) and a hard disk whose
; sector 5 is filled with 0x5A.

    bits 16
    cpu 386
    org 0x7C00

start:
    jmp 0:.cs
.cs:
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    mov [boot_drive], dl
    ; The rest of this program: sectors 2-9 of track 0 to 0x7E00.
    mov ax, 0x0208
    mov bx, 0x7E00
    mov cx, 0x0002
    xor dh, dh
    int 0x13
    jc .load_failed
    jmp main
.load_failed:
    mov al, 'L'
    out 0xE9, al
    mov al, 99
    out 0xF4, al
    hlt

    times 510 - ($ - $$) db 0
    dw 0xAA55

failures: dw 0
boot_drive: db 0

; PASS/FAIL: ZF set = pass. SI = name.
report:
    pushf
    push ax
    mov ax, .pass
    jz .put
    inc word [failures]
    mov ax, .fail
.put:
    push si
    mov si, ax
    call print
    pop si
    call print
    mov al, 10
    out 0xE9, al
    pop ax
    popf
    ret
.pass: db "PASS ", 0
.fail: db "FAIL ", 0

print:
    push ax
.next:
    lodsb
    test al, al
    jz .done
    out 0xE9, al
    jmp .next
.done:
    pop ax
    ret

%macro CHECK 1
    [section .data]
%%name: db %1, 0
    __SECT__
    mov si, %%name
    call report
%endmacro

; Branch to a check's end with ZF clear (a failure) when the carry says the call failed (or,
; for JNC_FAIL, when a call that should fail did not).
%macro JC_FAIL 1
    jnc %%ok
    test sp, sp
    jmp %1
%%ok:
%endmacro
%macro JNC_FAIL 1
    jc %%ok
    test sp, sp
    jmp %1
%%ok:
%endmacro

main:
    ; --- INT 13h, floppy -------------------------------------------------------------
    cmp byte [boot_drive], 0
    CHECK "boot drive is 00h"

    ; Sector 18 of track 0 (LBA 17) holds 0xA5 bytes.
    mov ax, 0x0201
    mov bx, buffer
    mov cx, 0x0012
    xor dx, dx
    int 0x13
    setc al
    cmp byte [buffer + 511], 0xA5
    sete ah
    and al, 1
    cmp ax, 0x0100
    CHECK "int13 02h reads a floppy sector"

    ; AH=08h: 1.44 MB geometry (79 cylinders max, 18 sectors, 2 heads), type 4.
    mov ah, 0x08
    xor dl, dl
    int 0x13
    JC_FAIL .f08_bad
    cmp cx, 0x4F12
    jne .f08_bad
    cmp dh, 1
    jne .f08_bad
    cmp bl, 4
.f08_bad:
    push 0
    pop es
    CHECK "int13 08h floppy geometry"

    ; Sector 19 does not exist on a track of 18.
    mov ax, 0x0201
    mov bx, buffer
    mov cx, 0x0013
    xor dx, dx
    int 0x13
    JNC_FAIL .bad_sector
    cmp ah, 0x01
.bad_sector:
    CHECK "int13 02h sector beyond the track fails"

    ; Drive 01h does not exist.
    mov ax, 0x0201
    mov bx, buffer
    mov cx, 0x0001
    mov dx, 0x0001
    int 0x13
    JNC_FAIL .no_drive
    cmp ah, 0x01
.no_drive:
    CHECK "int13 on a missing drive fails with 01h"

    ; --- INT 13h, hard disk ------------------------------------------------------------
    mov ah, 0x41
    mov bx, 0x55AA
    mov dl, 0x80
    int 0x13
    JC_FAIL .ext_bad
    cmp bx, 0xAA55
    jne .ext_bad
    test cx, 1
    jz .ext_bad
    cmp ah, 0x30
.ext_bad:
    CHECK "int13 41h extensions present"

    ; EDD read of LBA 5 (0x5A bytes).
    mov dword [dap + 8], 5
    mov word [dap + 2], 1
    mov ah, 0x42
    mov dl, 0x80
    mov si, dap
    int 0x13
    setc al
    cmp byte [buffer + 100], 0x5A
    sete ah
    cmp ax, 0x0100
    CHECK "int13 42h reads LBA 5"

    ; Beyond the end: status 04h and no sectors done.
    mov dword [dap + 8], 0x7FFFFFF
    mov word [dap + 2], 1
    mov ah, 0x42
    mov dl, 0x80
    mov si, dap
    int 0x13
    JNC_FAIL .beyond
    cmp ah, 0x04
    jne .beyond
    cmp word [dap + 2], 0
.beyond:
    CHECK "int13 42h beyond the disk fails with 04h"

    ; AH=48h: 512-byte sectors, 8 MiB.
    mov word [params], 0x1E
    mov ah, 0x48
    mov dl, 0x80
    mov si, params
    int 0x13
    JC_FAIL .p48
    cmp word [params + 24], 512
    jne .p48
    cmp dword [params + 16], 16384
.p48:
    CHECK "int13 48h drive parameters"

    ; AH=08h on the disk: one hard disk.
    mov ah, 0x08
    mov dl, 0x80
    int 0x13
    JC_FAIL .hd08
    cmp dl, 1
.hd08:
    CHECK "int13 08h hard disk count"

    ; --- INT 15h ---------------------------------------------------------------------------
    ; E820: entries until EBX = 0; 'SMAP' back; the first is RAM at 0; RAM above 1 MiB.
    xor ebx, ebx
    xor bp, bp
    mov byte [e820_ram_high], 0
.e820:
    mov eax, 0xE820
    mov ecx, 20
    mov edx, 0x534D4150
    mov di, e820_entry
    int 0x15
    jc .e820_done
    cmp eax, 0x534D4150
    jne .e820_bad
    cmp dword [e820_entry], 0x100000
    jne .not_high
    cmp dword [e820_entry + 16], 1
    jne .not_high
    mov byte [e820_ram_high], 1
.not_high:
    inc bp
    test ebx, ebx
    jnz .e820
.e820_done:
    cmp bp, 4
    jb .e820_bad
    cmp byte [e820_ram_high], 1
.e820_bad:
    CHECK "int15 e820 map"

    ; E801: 15 MiB below 16 MiB (in KiB) for a 32 MiB machine, the rest in 64 KiB blocks.
    mov ax, 0xE801
    int 0x15
    JC_FAIL .e801
    cmp ax, 15360
    jne .e801
    cmp bx, 255
.e801:
    CHECK "int15 e801"

    mov ah, 0x88
    int 0x15
    JC_FAIL .i88
    cmp ax, 31 * 1024 - 64
.i88:
    CHECK "int15 88h extended memory"

    mov ah, 0xC0
    int 0x15
    JC_FAIL .c0
    cmp byte [es:bx + 2], 0xFC
.c0:
    push 0
    pop es
    CHECK "int15 c0h configuration table"

    mov ax, 0x2402
    int 0x15
    JC_FAIL .a20
    cmp al, 1
.a20:
    CHECK "int15 2402h A20 on"

    mov ah, 0x55
    int 0x15
    JNC_FAIL .unsupported
    cmp ah, 0x86
.unsupported:
    CHECK "int15 unknown function is 86h"

    ; --- INT 11h, 12h, 1Ah ------------------------------------------------------------------
    int 0x12
    cmp ax, 639
    CHECK "int12 639 KiB"

    int 0x11
    test al, 1
    setnz al
    cmp al, 1
    CHECK "int11 has a floppy"

    ; Ticks advance across a wait of 200 ms (INT 15h AH=86h).
    xor ah, ah
    int 0x1A
    mov [ticks], dx
    mov ah, 0x86
    mov cx, 0x0003
    mov dx, 0x0D40
    int 0x15
    xor ah, ah
    int 0x1A
    sub dx, [ticks]
    cmp dx, 2
    setae al
    cmp al, 1
    CHECK "int1a ticks advance over int15 86h"

    mov ax, 0xB101
    int 0x1A
    JC_FAIL .pci
    cmp edx, 0x20494350
.pci:
    CHECK "int1a b101h PCI BIOS"

    ; --- INT 16h -----------------------------------------------------------------------------
    mov ah, 0x05
    mov cx, 0x1E61
    int 0x16
    mov ah, 0x01
    int 0x16
    jnz .k_ready
    test sp, sp
    jmp .k
.k_ready:
    xor ah, ah
    int 0x16
    cmp ax, 0x1E61
.k:
    CHECK "int16 05h then 00h"

    ; --- INT 10h ---------------------------------------------------------------------------------
    mov ax, 0x0003
    int 0x10
    mov si, banner
.tty:
    lodsb
    test al, al
    jz .tty_done
    mov ah, 0x0E
    mov bx, 0x0007
    int 0x10
    jmp .tty
.tty_done:
    mov ah, 0x03
    xor bh, bh
    int 0x10
    cmp dx, 0x0100
    CHECK "int10 teletype moves the cursor"

    xor bh, bh
    xor dx, dx
    mov ah, 0x02
    int 0x10
    mov ah, 0x08
    int 0x10
    cmp ax, 0x0746
    CHECK "int10 08h reads the character back"

    mov ax, 0x1130
    mov bh, 0x06
    push es
    int 0x10
    mov ax, es
    pop es
    cmp ax, 0xF000
    jne .font
    cmp cx, 16
.font:
    CHECK "int10 1130h 8x16 font in the ROM"

    mov ax, 0x4F00
    mov dword [vbe_info], 'VBE2'
    mov di, vbe_info
    int 0x10
    cmp ax, 0x004F
    jne .vbe0
    cmp dword [vbe_info], 'VESA'
    jne .vbe0
    cmp word [vbe_info + 4], 0x0300
.vbe0:
    CHECK "vbe 4f00h"

    mov ax, 0x4F01
    mov cx, 0x0118
    mov di, mode_info
    int 0x10
    cmp ax, 0x004F
    jne .vbe1
    cmp byte [mode_info + 0x19], 24
    jne .vbe1
    cmp word [mode_info + 0x12], 1024
    jne .vbe1
    cmp dword [mode_info + 0x28], 0
    je .vbe1_bad
    cmp ax, ax
    jmp .vbe1
.vbe1_bad:
    cmp ax, 0
.vbe1:
    CHECK "vbe 4f01h mode 118h"

    mov ax, 0x4F02
    mov bx, 0x4112
    int 0x10
    cmp ax, 0x004F
    jne .vbe2
    mov ax, 0x4F03
    int 0x10
    cmp bx, 0x4112
.vbe2:
    CHECK "vbe 4f02h/4f03h linear 640x480x24"

    mov ax, 0x0003
    int 0x10
    mov ah, 0x0F
    int 0x10
    cmp ax, 0x5003
    CHECK "int10 back to mode 3"

    ; --- INT 15h AH=C2h, the PS/2 mouse, and INT 74h -----------------------------------
    mov ax, 0xC201
    int 0x15
    JC_FAIL .m_reset
    cmp bx, 0x00AA
.m_reset:
    CHECK "int15 c201h mouse reset: id 00h, self-test aah"

    mov ax, 0xC200
    mov bh, 1
    int 0x15
    JNC_FAIL .m_nohandler
    cmp ah, 5
.m_nohandler:
    CHECK "int15 c200h enable refused without a handler"

    mov ax, 0xC205
    mov bh, 3
    int 0x15
    JC_FAIL .m_init
    mov ax, 0xC207
    mov bx, mouse_handler
    int 0x15
    JC_FAIL .m_init
    mov ax, 0xC200
    mov bh, 1
    int 0x15
    JC_FAIL .m_init
    cmp ax, ax
.m_init:
    CHECK "int15 c205h/c207h/c200h initialise, install, enable"

    ; A packet from the "mouse" through the controller's loopback (command D3h): left
    ; button (with bit 3, always set), X = 5, Y = -3.
    sti
    mov si, mouse_packet
    mov cx, 3
.m_send:
    mov al, 0xD3
    out 0x64, al
    lodsb
    out 0x60, al
    loop .m_send
    mov cx, 0xFFFF
.m_wait:
    cmp byte [mouse_calls], 0
    jne .m_got
    loop .m_wait
.m_got:
    cli
    cmp byte [mouse_calls], 1
    jne .m_packet
    cmp word [mouse_words], 0
    jne .m_packet
    cmp word [mouse_words + 2], 0xFD
    jne .m_packet
    cmp word [mouse_words + 4], 5
    jne .m_packet
    cmp word [mouse_words + 6], 0x09
.m_packet:
    CHECK "int74h whole packet to the handler: status, x, y, z"

    mov ax, 0xC204
    int 0x15
    JC_FAIL .m_type
    cmp bh, 0
.m_type:
    CHECK "int15 c204h device type 00h"

    mov ax, 0xC206
    xor bh, bh
    int 0x15
    JC_FAIL .m_status
    and bl, 0x20
    cmp bl, 0x20
.m_status:
    CHECK "int15 c206h status: reporting on"

    mov ax, 0xC200
    xor bh, bh
    int 0x15
    JC_FAIL .m_off
    mov ax, 0xC207
    xor bx, bx
    mov es, bx
    int 0x15
    JC_FAIL .m_off
    cmp ax, ax
.m_off:
    CHECK "int15 c200h disable, c207h remove"

    mov al, [failures]
    out 0xF4, al
.halt:
    hlt
    jmp .halt

banner: db "Ferrite BIOS services test", 13, 10, 0
mouse_packet: db 0x09, 5, 0xFD

; The INT 15h AX=C207h handler: called far with the status, X, Y and Z words pushed in that
; order; keeps them (Z, Y, X, status) and counts the calls.
mouse_handler:
    push bp
    mov bp, sp
    push ax
    push si
    mov si, 6
.copy:
    mov ax, [bp + si]
    mov [mouse_words + si - 6], ax
    add si, 2
    cmp si, 14
    jb .copy
    inc byte [mouse_calls]
    pop si
    pop ax
    pop bp
    retf

    section .data follows=.text
dap:
    db 0x10, 0
    dw 1
    dw buffer, 0
    dq 0

    section .bss follows=.data nobits
    alignb 16
mouse_words: resw 4
mouse_calls: resb 1
buffer: resb 512
params: resb 0x1E
e820_entry: resb 24
e820_ram_high: resb 1
ticks: resw 1
vbe_info: resb 512
mode_info: resb 256
