; serial_echo: UART receive. Reads one line from COM1 by polling LSR.DR (data ready), up to
; a carriage return or line feed, prints it back and exits 0. A line longer than LINE_MAX
; bytes exits 1. The tests feed the line through the serial backend's input; from a terminal,
; `ferrite --bios serial_echo.bin` takes it from standard input.
;
; Reference: National Semiconductor PC16550D datasheet (RBR, LSR bit 0).

%include "inc/ferrite.inc"

LINE_MAX equ 120

ROM_RAM line, LINE_MAX

entry:
    INIT
    PRINT `serial_echo: type a line and press Enter\r\n`
    xor bx, bx                      ; bytes stored
.next_byte:
    mov dx, COM1 + 5
.poll:
    in al, dx
    test al, 0x01                   ; LSR.DR
    jz .poll
    mov dx, COM1
    in al, dx                       ; RBR
    cmp al, 13
    je .end_of_line
    cmp al, 10
    je .end_of_line
    cmp bx, LINE_MAX
    jae .too_long
    mov [line + bx], al
    inc bx
    jmp .next_byte

.end_of_line:
    PRINT `serial_echo: read "`
    xor si, si
.echo:
    cmp si, bx
    jae .echoed
    mov al, [line + si]
    call putc
    inc si
    jmp .echo
.echoed:
    PRINT `" (`
    mov ax, bx
    call print_dec16
    PRINT ` bytes)\r\n`
    EXIT 0

.too_long:
    PRINT `FAIL: the line is longer than 120 bytes\r\n`
    EXIT 1

    ROM_END
