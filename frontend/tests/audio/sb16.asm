; sb16: a Sound Blaster 16 and its OPL3 as a DOS program finds and plays them, at the BLASTER
; settings A220 I5 D1 H5. Resets the DSP (0xAA), checks version 4.05 and the IRQ/DMA settings
; in mixer registers 0x80/0x81, then plays, with 100 ms of silence between:
;   1. 440 Hz, 8-bit unsigned mono at 22050 Hz, single-cycle DMA on channel 1: 500 ms
;      (11025 bytes), ending with IRQ 5;
;   2. 660 Hz, 16-bit signed mono at 44100 Hz, auto-init DMA on channel 5 over a 100 ms
;      buffer in 50 ms blocks, an IRQ per block, 0xD9 after the seventh: 400 ms;
;   3. after the AdLib detection (timer 1 at 0x388), an OPL note: a sine on channel 0, F-number
;      690 in block 4 (690 * 49716 / 2^16 = 523.4 Hz) keyed on for 500 ms.
; Exit 0 if every check holds. frontend/tests/audio.rs records it with --audio-out.
;
; References: Creative "Sound Blaster Series Hardware Programming Guide" (DSP commands,
; mixer), Intel 8237A datasheet, the AdLib programming guide (detection, registers).

%include "inc/ferrite.inc"
%include "timer.inc"

SB          equ 0x220
RATE8       equ 22050
LEN8        equ 11025                       ; 500 ms
STEP8       equ 1308                        ; 440 Hz: 440 * 65536 / 22050
RATE16      equ 44100
BUF16       equ 4410                        ; 100 ms of samples
BLOCK16     equ 2205                        ; 50 ms
STEP16      equ 981                         ; 660 Hz: 660 * 65536 / 44100
OPL_FNUM    equ 690

ROM_RAM irq8s, 2
ROM_RAM irq16s, 2

entry:
    INIT
    call timer_init
    mov word [0x0D * 4], sb_irq             ; IRQ 5
    mov [0x0D * 4 + 2], cs
    mov al, 0xDE                            ; IRQ 0 and 5 unmasked
    out 0x21, al
    mov al, 0xC0                            ; DMA channel 4 cascades controller 1, as a
    out 0xD6, al                            ; BIOS leaves it
    xor al, al
    out 0xD4, al

    ; --- DSP reset: 1 then 0 to 0x226, 0xAA within 100 µs.
    mov dx, SB + 6
    mov al, 1
    out dx, al
    mov cx, 100
.hold:
    in al, dx
    loop .hold
    xor al, al
    out dx, al
    mov cx, 0xFFFF
    mov dx, SB + 0xE
.poll:
    in al, dx
    test al, 0x80
    jnz .ready
    loop .poll
    PRINT `FAIL: no DSP at 0x220\r\n`
    EXIT 1
.ready:
    mov dx, SB + 0xA
    in al, dx
    cmp al, 0xAA
    je .reset_ok
    PRINT `FAIL: DSP reset did not answer 0xAA\r\n`
    EXIT 1
.reset_ok:
    mov al, 0xE1
    call dsp_write
    call dsp_read
    mov ah, al
    call dsp_read
    cmp ax, 0x0405
    je .version_ok
    PRINT `FAIL: DSP version is not 4.05\r\n`
    EXIT 1
.version_ok:
    mov al, 0x80
    call mixer_read
    cmp al, 0x02
    jne .bad_mixer
    mov al, 0x81
    call mixer_read
    cmp al, 0x22
    je .mixer_ok
.bad_mixer:
    PRINT `FAIL: mixer does not report IRQ 5, DMA 1, HDMA 5\r\n`
    EXIT 1
.mixer_ok:
    PRINT `sb16: DSP 4.05 at 0x220, IRQ 5, DMA 1, HDMA 5\r\n`
    mov ax, 0x30F8                          ; master and voice volumes to 0 dB
.volume:
    call mixer_write
    inc ah
    cmp ah, 0x34
    jb .volume

    ; --- 1. 8-bit single-cycle: the buffer at 2000:0000, then DMA channel 1, then the DSP.
    push es
    mov ax, 0x2000
    mov es, ax
    xor di, di
    xor bx, bx
    mov cx, LEN8
.fill8:
    mov al, 0x40
    test bh, 0x80
    jz .low8
    mov al, 0xC0
.low8:
    stosb
    add bx, STEP8
    loop .fill8
    pop es
    mov al, 0x05                            ; mask channel 1
    out 0x0A, al
    out 0x0C, al                            ; clear the byte flip-flop
    mov al, 0x49                            ; single, read (memory to device), channel 1
    out 0x0B, al
    xor al, al
    out 0x02, al                            ; address 0x0000
    out 0x02, al
    mov al, 0x02
    out 0x83, al                            ; page 2: 0x20000
    mov ax, LEN8 - 1
    out 0x03, al
    mov al, ah
    out 0x03, al
    mov al, 0x01                            ; unmask channel 1
    out 0x0A, al
    mov al, 0x41                            ; output rate
    call dsp_write
    mov al, RATE8 >> 8
    call dsp_write
    mov al, RATE8 & 0xFF
    call dsp_write
    mov al, 0xC0                            ; 8-bit output, single-cycle
    call dsp_write
    mov al, 0x00                            ; mono, unsigned
    call dsp_write
    mov al, (LEN8 - 1) & 0xFF
    call dsp_write
    mov al, (LEN8 - 1) >> 8
    call dsp_write
    mov si, irq8s
    mov cx, 1
    call wait_count
    PRINT `sb16: 8-bit DMA block done\r\n`
    mov cx, 100
    call wait_ms

    ; --- 2. 16-bit auto-init: the buffer at 3000:0000, DMA channel 5, the DSP.
    push es
    mov ax, 0x3000
    mov es, ax
    xor di, di
    xor bx, bx
    mov cx, BUF16
.fill16:
    mov ax, -8192
    test bh, 0x80
    jz .low16
    mov ax, 8192
.low16:
    stosw
    add bx, STEP16
    loop .fill16
    pop es
    mov al, 0x05                            ; mask channel 5
    out 0xD4, al
    out 0xD8, al                            ; clear the flip-flop
    mov al, 0x59                            ; single, auto-init, read, channel 5
    out 0xD6, al
    xor al, al                              ; word address 0x8000 (0x30000 >> 1, low 16 bits)
    out 0xC4, al
    mov al, 0x80
    out 0xC4, al
    mov al, 0x02                            ; page: A17-A23
    out 0x8B, al
    mov ax, BUF16 - 1
    out 0xC6, al
    mov al, ah
    out 0xC6, al
    mov al, 0x01                            ; unmask channel 5
    out 0xD4, al
    mov al, 0x41
    call dsp_write
    mov al, RATE16 >> 8
    call dsp_write
    mov al, RATE16 & 0xFF
    call dsp_write
    mov al, 0xB6                            ; 16-bit output, auto-init, FIFO
    call dsp_write
    mov al, 0x10                            ; mono, signed
    call dsp_write
    mov al, (BLOCK16 - 1) & 0xFF
    call dsp_write
    mov al, (BLOCK16 - 1) >> 8
    call dsp_write
    mov si, irq16s
    mov cx, 7
    call wait_count
    mov al, 0xD9                            ; exit auto-init after this block
    call dsp_write
    mov cx, 8
    call wait_count
    PRINT `sb16: 16-bit auto-init done after 8 blocks\r\n`
    mov cx, 100
    call wait_ms

    ; --- 3. AdLib detection, then a note.
    mov ax, 0x0460                          ; mask both timers
    call opl_write
    mov ax, 0x0480                          ; reset the flags
    call opl_write
    mov dx, 0x388
    in al, dx
    mov bl, al
    mov ax, 0x02FF                          ; timer 1: one count
    call opl_write
    mov ax, 0x0421                          ; start timer 1
    call opl_write
    mov cx, 1                               ; at least 80 µs
    call wait_ms
    mov dx, 0x388
    in al, dx
    mov bh, al
    mov ax, 0x0460
    call opl_write
    mov ax, 0x0480
    call opl_write
    and bx, 0xE0E0
    cmp bx, 0xC000
    je .adlib_ok
    PRINT `FAIL: no AdLib at 0x388\r\n`
    EXIT 1
.adlib_ok:
    PRINT `sb16: AdLib (OPL) found at 0x388\r\n`
    mov si, opl_note
.note:
    cs lodsw                                ; the table is in the ROM (DS is 0)
    test ax, ax
    jz .keyed
    call opl_write
    jmp .note
.keyed:
    mov cx, 500
    call wait_ms
    mov ax, 0xB000 | (4 << 2) | (OPL_FNUM >> 8)   ; key off
    call opl_write
    mov cx, 200
    call wait_ms
    PRINT `sb16: done\r\n`
    EXIT 0

; (register << 8 | value) pairs for a sustained sine on channel 0, ending with key-on; 0 ends.
opl_note:
    dw 0x2021, 0x2321, 0x403F, 0x4300, 0x60F0, 0x63F0, 0x800F, 0x830F, 0xC001
    dw 0xA000 | (OPL_FNUM & 0xFF)
    dw 0xB000 | 0x20 | (4 << 2) | (OPL_FNUM >> 8)
    dw 0

; wait_count: sleeps until the word at [SI] reaches CX.
wait_count:
    sti
    hlt
    cli
    cmp [si], cx
    jb wait_count
    ret

; dsp_write: AL to the DSP once its write buffer is free.
dsp_write:
    push dx
    push ax
    mov dx, SB + 0xC
.busy:
    in al, dx
    test al, 0x80
    jnz .busy
    pop ax
    out dx, al
    pop dx
    ret

; dsp_read: AL from the DSP once data is there.
dsp_read:
    push dx
    mov dx, SB + 0xE
.empty:
    in al, dx
    test al, 0x80
    jz .empty
    mov dx, SB + 0xA
    in al, dx
    pop dx
    ret

; mixer_read: AL = mixer register AL.
mixer_read:
    push dx
    mov dx, SB + 4
    out dx, al
    inc dx
    in al, dx
    pop dx
    ret

; mixer_write: mixer register AH = AL.
mixer_write:
    push dx
    push ax
    mov dx, SB + 4
    xchg al, ah
    out dx, al
    xchg al, ah
    inc dx
    out dx, al
    pop ax
    pop dx
    ret

; opl_write: OPL register AH = AL at 0x388, with the waits the AdLib guide asks for (6 status
; reads after the address, 35 after the data).
opl_write:
    push cx
    push dx
    push ax
    mov dx, 0x388
    mov al, ah
    out dx, al
    mov cx, 6
.addr_wait:
    in al, dx
    loop .addr_wait
    pop ax
    push ax
    inc dx
    out dx, al
    dec dx
    mov cx, 35
.data_wait:
    in al, dx
    loop .data_wait
    pop ax
    pop dx
    pop cx
    ret

; IRQ 5: which interrupt (mixer register 0x82), acknowledged at 0x22E or 0x22F; EOI.
sb_irq:
    push ax
    push dx
    push ds
    xor ax, ax
    mov ds, ax
    mov al, 0x82
    call mixer_read
    test al, 0x01
    jz .not8
    push ax
    mov dx, SB + 0xE
    in al, dx
    pop ax
    inc word [irq8s]
.not8:
    test al, 0x02
    jz .not16
    mov dx, SB + 0xF
    in al, dx
    inc word [irq16s]
.not16:
    mov al, 0x20
    out 0x20, al
    pop ds
    pop dx
    pop ax
    iret

    ROM_END
