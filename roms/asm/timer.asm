; timer: the PC's timer interrupt end to end. Programs the 8259A pair as a PC BIOS does
; (vectors 08h-0Fh and 70h-77h, slave on IR2), PIT channel 0 at 100 Hz (mode 2), counts IRQ0s
; in a handler that sends EOI, and sleeps with STI; HLT until ten ticks have come.
; Checks on the way: the IMR reads back what was written, IRQ0 is in service (ISR bit 0)
; inside the handler and no longer after EOI, the PIT's latched count is within its reload
; value once it runs. Exit 0 if all hold, 1 otherwise; a timer that never fires is caught by
; --timeout.
;
; References: Intel 8259A datasheet (ICW1-4, OCW2 EOI, OCW3 ISR read), Intel 8254 datasheet
; (control word, mode 2, counter latch).

%include "inc/ferrite.inc"

PIC1_CMD    equ 0x20
PIC1_DATA   equ 0x21
PIC2_CMD    equ 0xA0
PIC2_DATA   equ 0xA1
PIT_CH0     equ 0x40
PIT_CTRL    equ 0x43
PIT_HZ      equ 1193182
TICK_HZ     equ 100
PIT_RELOAD  equ (PIT_HZ + TICK_HZ / 2) / TICK_HZ    ; 11932
TICKS       equ 10

ROM_RAM ticks, 2
ROM_RAM failures, 2
ROM_RAM wakeups, 2

entry:
    INIT
    PRINT `timer: programming the PIC and PIT for 100 Hz\r\n`

    ; 8259A pair: ICW1 edge-triggered, cascade, ICW4 needed.
    mov al, 0x11
    out PIC1_CMD, al
    out PIC2_CMD, al
    mov al, 0x08                    ; ICW2: master vectors 08h-0Fh
    out PIC1_DATA, al
    mov al, 0x70                    ; ICW2: slave vectors 70h-77h
    out PIC2_DATA, al
    mov al, 0x04                    ; ICW3: slave on IR2
    out PIC1_DATA, al
    mov al, 0x02                    ; ICW3: slave identity 2
    out PIC2_DATA, al
    mov al, 0x01                    ; ICW4: 8086 mode, normal EOI
    out PIC1_DATA, al
    out PIC2_DATA, al
    mov al, 0xFF                    ; OCW1: slave all masked
    out PIC2_DATA, al
    mov al, 0xFE                    ; OCW1: master, only IRQ0 unmasked
    out PIC1_DATA, al

    in al, PIC1_DATA
    cmp al, 0xFE
    je .imr_ok
    PRINT `FAIL: master IMR reads back 0x`
    call print_hex8
    PRINT `, expected 0xFE\r\n`
    inc word [failures]
.imr_ok:
    in al, PIC2_DATA
    cmp al, 0xFF
    je .imr2_ok
    PRINT `FAIL: slave IMR reads back 0x`
    call print_hex8
    PRINT `, expected 0xFF\r\n`
    inc word [failures]
.imr2_ok:

    ; IRQ0 handler, then PIT channel 0: mode 2 (rate generator), low then high byte, binary.
    mov word [0x08 * 4], irq0_handler
    mov [0x08 * 4 + 2], cs
    mov al, 0x34
    out PIT_CTRL, al
    mov ax, PIT_RELOAD
    out PIT_CH0, al
    mov al, ah
    out PIT_CH0, al

.sleep:
    sti                             ; STI holds interrupts off until after HLT: no lost wakeup
    hlt
    cli
    inc word [wakeups]
    cmp word [ticks], TICKS
    jb .sleep

    ; Latch channel 0 and read the count: it must lie within the reload value. (Not before the
    ; first tick: an 8254 loads a new count only on the CLK pulse after it is written.)
    mov al, 0x00
    out PIT_CTRL, al
    in al, PIT_CH0
    mov ah, al
    in al, PIT_CH0
    xchg al, ah
    cmp ax, PIT_RELOAD
    jbe .count_ok
    PRINT `FAIL: PIT channel 0 count 0x`
    call print_hex16
    PRINT ` is above its reload value\r\n`
    inc word [failures]
.count_ok:

    PRINT `timer: counted `
    mov ax, [ticks]
    call print_dec16
    PRINT ` ticks in `
    mov ax, [wakeups]
    call print_dec16
    PRINT ` wakeups\r\n`
    mov ax, [ticks]
    cmp ax, [wakeups]
    je .wakeups_ok
    PRINT `FAIL: a wakeup from HLT without a tick\r\n`
    inc word [failures]
.wakeups_ok:
    cmp word [failures], 0
    jne .failed
    PRINT `timer: PASS\r\n`
    EXIT 0
.failed:
    PRINT `timer: FAIL\r\n`
    EXIT 1

; IRQ0: count, check that IR0 is in service, send a non-specific EOI, check that it left.
irq0_handler:
    push ax
    push ds
    xor ax, ax
    mov ds, ax
    inc word [ticks]
    mov al, 0x0B                    ; OCW3: the next read of port 20h gives the ISR
    out PIC1_CMD, al
    in al, PIC1_CMD
    test al, 0x01
    jnz .in_service
    inc word [failures]
.in_service:
    mov al, 0x20                    ; OCW2: non-specific EOI
    out PIC1_CMD, al
    in al, PIC1_CMD
    test al, 0x01
    jz .eoi_done
    inc word [failures]
.eoi_done:
    mov al, 0x0A                    ; OCW3: back to reading the IRR
    out PIC1_CMD, al
    pop ds
    pop ax
    iret

    ROM_END
