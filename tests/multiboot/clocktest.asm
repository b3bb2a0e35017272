; A multiboot kernel that reads KVM's paravirtual clock (kvmclock) for as long as it takes
; its harness to move it between backends (tests/tests/kvmclock.rs). It registers the clock
; (when the hypervisor leaves offer it), enables the HPET, and then loops: the clock must
; never go back; every TICK_NS of clock time it prints "tick N K H" (N the tick, K the clock
; in ns, H the HPET's main counter, both in hex) for the harness to compare the two rates;
; after TICKS ticks "clocktest: done" and exit status 0. "FAIL ..." and status 1 when the
; clock goes back; status 2 when kvmclock is not offered.
;
; nasm -f bin; multiboot 1 with the load addresses in the header (no ELF needed).

bits 32
org 0x100000

COM1        equ 0x3F8
EXIT_PORT   equ 0xF4
HPET        equ 0xFED00000
TICK_NS     equ 50000000            ; 50 ms
TICKS       equ 40

file_start:
align 8, db 0
mb_header:
MB_FLAGS    equ (1 << 0) | (1 << 1) | (1 << 16)
    dd 0x1BADB002, MB_FLAGS, 0x100000000 - (0x1BADB002 + MB_FLAGS)
    dd mb_header, file_start, file_end, bss_end, start

%include "console.inc"

start:
    mov esp, stack_top
    PRINT `clocktest: started\n`
    call kvmclock_offered
    jz .offered
    PRINT `clocktest: kvmclock not offered\n`
    mov al, 2
    out EXIT_PORT, al
    jmp halt
.offered:
    mov ecx, KVM_SYSTEM_TIME_NEW
    mov eax, pvclock + 1
    xor edx, edx
    wrmsr
    or dword [HPET + 0x10], 1           ; ENABLE_CNF: the main counter runs
    call kvmclock_now
    mov [prev], eax
    mov [prev + 4], edx
    mov [last_tick], eax
    mov [last_tick + 4], edx
    xor ebp, ebp                        ; ticks printed
.loop:
    call kvmclock_now
    mov ebx, eax
    mov edi, edx
    sub eax, [prev]
    sbb edx, [prev + 4]
    jb .back
    mov [prev], ebx
    mov [prev + 4], edi
    mov eax, ebx
    mov edx, edi
    sub eax, [last_tick]
    sbb edx, [last_tick + 4]
    jnz .tick                           ; over 4.29 s since the last tick
    cmp eax, TICK_NS
    jb .loop
.tick:
    mov eax, [HPET + 0xF0]              ; the HPET right after the clock, printed below
    mov [hpet], eax
    mov eax, [HPET + 0xF4]
    mov [hpet + 4], eax
    mov [last_tick], ebx
    mov [last_tick + 4], edi
    inc ebp
    PRINT "tick "
    mov eax, ebp
    call puthex
    PRINT " "
    mov eax, edi
    call puthex
    mov eax, ebx
    call puthex
    PRINT " "
    mov eax, [hpet + 4]
    call puthex
    mov eax, [hpet]
    call puthex_nl
    cmp ebp, TICKS
    jb .loop
    PRINT `clocktest: done\n`
    mov al, 0
    out EXIT_PORT, al
    jmp halt
.back:
    PRINT "FAIL kvmclock went back from "
    mov eax, [prev + 4]
    call puthex
    mov eax, [prev]
    call puthex
    PRINT " to "
    mov eax, edi
    call puthex
    mov eax, ebx
    call puthex_nl
    mov al, 1
    out EXIT_PORT, al
halt:
    cli
    hlt
    jmp halt

%include "kvmclock.inc"

align 4, db 0
file_end:

absolute file_end
prev:           resd 2
last_tick:      resd 2
hpet:           resd 2
alignb 32
pvclock:        resb 32
                resb 1024
stack_top:
bss_end:
