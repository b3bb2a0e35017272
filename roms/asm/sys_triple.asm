; sys_triple: a deliberate triple fault. In 32-bit protected mode with an IDT limit of 0, a
; #GP (MOV DS with a selector past the GDT limit) cannot be delivered: the #GP it raises while
; reading the IDT makes a double fault, which cannot be delivered either, and the processor
; shuts down. Nothing after the faulting instruction may run: the ROM prints FAIL and exits 1
; if it does. Under --no-reboot Ferrite ends with its triple-fault status (122); the test in
; tests/tests/roms.rs expects accel's RunOutcome::TripleFault.
;
; Reference: Intel SDM vol. 3, 6.15 (interrupt 8, double fault: "if another exception occurs
; while attempting to call the double-fault handler, the processor enters shutdown mode").

%define ROM_NAME "sys_triple"
%include "inc/ferrite.inc"
%include "inc/sys.inc"

entry:
    INIT
    call build_tables
    PRINT `sys_triple: a #GP with the IDT limit at 0 in protected mode must shut the processor down\r\n`
    call enter_pm32
bits 32
    PRINT32 `sys_triple: IDT limit 0, now MOV DS with a selector past the GDT limit\r\n`
    lidt [cs:idtr_empty]
    mov ax, GDT_LIMIT + 1
    mov ds, ax
    ; Not reached on a processor that shuts down.
    lidt [cs:idtr32]
    mov ax, SEL_DATA
    mov ds, ax
    PRINT32 `FAIL  the #GP with an empty IDT did not shut the processor down\r\n`
    mov al, 1
    out EXIT_PORT, al
    cli
    hlt

section .rodata
idtr_empty: dw 0
            dd IDT32_BASE
section .text

    ROM_END
