; pcspk: a PC-speaker tone. PIT counter 2 in mode 3 with divisor 1193 (1193182 / 1193 =
; 1000.15 Hz) gated to the speaker through port 0x61 for 500 ms of virtual time, then 100 ms
; of silence; exit 0. frontend/tests/audio.rs records it with --audio-out and measures it.

%include "inc/ferrite.inc"
%include "timer.inc"

TONE_DIVISOR equ 1193

entry:
    INIT
    call timer_init
    PRINT `pcspk: 1000 Hz for 500 ms\r\n`
    mov al, 0xB6                    ; counter 2, lo/hi, mode 3, binary
    out 0x43, al
    mov ax, TONE_DIVISOR
    out 0x42, al
    mov al, ah
    out 0x42, al
    in al, 0x61
    or al, 0x03                     ; gate counter 2, speaker data on
    out 0x61, al
    mov cx, 500
    call wait_ms
    in al, 0x61
    and al, 0xFC
    out 0x61, al
    mov cx, 100
    call wait_ms
    PRINT `pcspk: done\r\n`
    EXIT 0

    ROM_END
