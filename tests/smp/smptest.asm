; A multiboot kernel that brings up every processor of the machine and makes them talk, for
; Ferrite's SMP (tests/tests/smp.rs). On COM1 (polling, under a lock) it prints:
;
;   smptest: N processor(s) in the MP table
;   cpu I: apic id A          one line per processor as it comes up (I = its index in the
;                             MP table, A = its local APIC ID, as CPUID leaf 1 also says)
;   PASS name / FAIL name     one line per check
;   smptest: done, F failure(s)
;
; and leaves through the exit device (port 0xF4) with status 0 when nothing failed.
;
; What it does, with nothing but the MP table (MultiProcessor Specification 1.4) to go by:
; - reads the processors, the ISA bus, the I/O APIC and the pin of ISA IRQ 0 from the table;
; - starts each application processor with INIT, INIT de-assert and STARTUP IPIs addressed to
;   its APIC ID (physical destination), the STARTUP vector pointing at a real-mode trampoline
;   copied to 0x8000 that enters protected mode; each checks its APIC ID against CPUID,
;   enables its local APIC and reports;
; - passes a fixed IPI around the ring of processors (each sends the next one on from its
;   interrupt handler) for three laps: every processor must see three;
; - sends a fixed IPI with the "all excluding self" shorthand, one in logical flat mode to
;   the first eight processors, and an NMI to each application processor;
; - rewrites code every processor has run (cross-modifying code): the others must run the new
;   code, and the bootstrap processor must run what an application processor wrote;
; - routes ISA IRQ 0 (the PIT in one-shot mode) through the I/O APIC to each processor in
;   turn: each must take it.
; Spin loops use PAUSE. Small on purpose: KVM without hardware virtualization runs 32-bit
; code slowly.

bits 32
org 0x100000

COM1        equ 0x3F8
EXIT_PORT   equ 0xF4
LAPIC       equ 0xFEE00000
MAXCPU      equ 64
TRAMPOLINE  equ 0x8000
STACK_SIZE  equ 1024
LAPS        equ 3

; local APIC registers
L_ID        equ LAPIC + 0x20
L_TPR       equ LAPIC + 0x80
L_EOI       equ LAPIC + 0xB0
L_LDR       equ LAPIC + 0xD0
L_DFR       equ LAPIC + 0xE0
L_SVR       equ LAPIC + 0xF0
L_ICR_LO    equ LAPIC + 0x300
L_ICR_HI    equ LAPIC + 0x310

V_RING      equ 0x40
V_BCAST     equ 0x41
V_LOGICAL   equ 0x42
V_SMC_RUN   equ 0x43
V_SMC_WRITE equ 0x44
V_IOAPIC    equ 0x50
V_SPURIOUS  equ 0xFF

file_start:
align 4, db 0
mb_header:
MB_FLAGS    equ (1 << 16)
    dd 0x1BADB002, MB_FLAGS, 0x100000000 - (0x1BADB002 + MB_FLAGS)
    dd mb_header, file_start, file_end, bss_end, start

%include "../multiboot/console.inc"

; PRINT from several processors: callers hold the print lock (`lock_print`).

start:
    cli
    cld
    mov esp, bsp_stack + STACK_SIZE
    lgdt [gdtr]
    jmp 0x08:.flat
.flat:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    call build_idt
    lidt [idtr]
    ; The 8259As stay masked: every interrupt here comes through the APICs.
    mov al, 0xFF
    out 0x21, al
    out 0xA1, al

    call read_mp_table
    PRINT "smptest: "
    mov eax, [ncpus]
    call putdec
    PRINT ` processor(s) in the MP table\n`
    cmp dword [ncpus], 0
    jne .have_cpus
    mov al, 2
    out EXIT_PORT, al
.have_cpus:
    call cpu_setup
    call start_aps
    sti
    call test_ring
    call test_broadcast
    call test_logical
    call test_nmi
    call test_smc
    call test_ioapic

    PRINT "smptest: done, "
    mov eax, [failures]
    call putdec
    PRINT ` failure(s)\n`
    mov al, 0
    cmp dword [failures], 0
    je .exit
    mov al, 1
.exit:
    out EXIT_PORT, al
    cli
    hlt

; ---- the MP table ------------------------------------------------------------------------

; Finds the floating pointer (EBDA's first KiB, then E0000-FFFFF), checks both checksums and
; takes the processors, the ISA bus, the I/O APIC and ISA IRQ 0's pin from the table.
read_mp_table:
    movzx esi, word [0x40E]
    shl esi, 4
    mov ecx, 1024 / 16
    call find_mp
    jz .found
    mov esi, 0xE0000
    mov ecx, 0x20000 / 16
    call find_mp
    jz .found
    mov eax, 1
    mov esi, .no_pointer
    jmp report
.no_pointer: db "mp-floating-pointer", 0
.found:
    mov ebx, [esi + 4]              ; the configuration table
    cmp dword [ebx], 'PCMP'
    VERDICT "mp-config-signature"
    movzx ecx, word [ebx + 4]       ; base table length
    mov esi, ebx
    xor eax, eax
.sum:
    add al, [esi]
    inc esi
    loop .sum
    test al, al
    VERDICT "mp-config-checksum"
    mov eax, [ebx + 0x24]
    cmp eax, LAPIC
    VERDICT "mp-local-apic-address"
    movzx ecx, word [ebx + 0x22]    ; entry count
    lea edi, [ebx + 0x2C]
.entry:
    test ecx, ecx
    jz .done
    dec ecx
    mov al, [edi]
    cmp al, 0
    je .processor
    cmp al, 1
    je .bus
    cmp al, 2
    je .ioapic
    cmp al, 3
    je .interrupt
    cmp al, 4
    je .next8
    mov eax, 1
    mov esi, .bad_entry
    jmp report
.bad_entry: db "mp-entry-types", 0
.processor:
    test byte [edi + 3], 1          ; enabled
    jz .next20
    mov edx, [ncpus]
    cmp edx, MAXCPU
    jae .next20
    mov al, [edi + 1]
    mov [apic_ids + edx], al
    inc dword [ncpus]
    test byte [edi + 3], 2          ; the bootstrap processor is listed first
    jz .next20
    test edx, edx
    VERDICT "mp-bsp-first"
.next20:
    add edi, 20
    jmp .entry
.bus:
    cmp dword [edi + 2], 'ISA '
    jne .next8
    movzx eax, byte [edi + 1]
    mov [isa_bus], eax
    jmp .next8
.ioapic:
    mov eax, [edi + 4]
    mov [ioapic], eax
    jmp .next8
.interrupt:
    movzx eax, byte [edi + 4]       ; source bus
    cmp eax, [isa_bus]
    jne .next8
    cmp byte [edi + 5], 0           ; source IRQ 0
    jne .next8
    cmp byte [edi + 1], 0           ; an INT (not ExtINT) entry
    jne .next8
    movzx eax, byte [edi + 7]
    mov [irq0_pin], eax
.next8:
    add edi, 8
    jmp .entry
.done:
    cmp dword [ioapic], 0
    setne al
    cmp dword [irq0_pin], -1
    setne ah
    and al, ah
    cmp al, 1
    VERDICT "mp-ioapic-and-irq0"
    ret

; find_mp: ESI start, ECX paragraphs. ZF set and ESI at the pointer when found.
find_mp:
    cmp dword [esi], '_MP_'
    jne .next
    push ecx
    push esi
    mov ecx, 16
    xor eax, eax
.sum:
    add al, [esi]
    inc esi
    loop .sum
    pop esi
    pop ecx
    test al, al
    jz .ret
.next:
    add esi, 16
    loop find_mp
    or esi, esi                     ; ZF clear (ESI is not 0 here)
.ret:
    ret

; ---- every processor ---------------------------------------------------------------------

; Enables this processor's local APIC (flat logical destination: the first eight get one bit
; each), checks its ID against CPUID and reports "cpu I: apic id A".
cpu_setup:
    call patchme                    ; every processor has this code decoded from now on
    call my_index
    mov ebx, esi
    mov dword [L_SVR], 0x100 | V_SPURIOUS
    mov dword [L_TPR], 0
    mov dword [L_DFR], 0xFFFFFFFF
    xor eax, eax
    cmp ebx, 8
    jae .ldr
    bts eax, ebx
    shl eax, 24
.ldr:
    mov [L_LDR], eax
    mov eax, 1
    cpuid
    shr ebx, 24
    mov eax, [L_ID]
    shr eax, 24
    call lock_print
    cmp eax, ebx
    je .same
    PRINT "FAIL cpuid-apic-id: cpuid says "
    mov eax, ebx
    call putdec
    PRINT `\n`
    lock inc dword [failures]
.same:
    call my_index
    push esi
    PRINT "cpu "
    pop eax
    call putdec
    PRINT ": apic id "
    mov eax, [L_ID]
    shr eax, 24
    call putdec
    PRINT `\n`
    call unlock_print
    ret

; my_index: ESI = this processor's index in the MP table (MAXCPU if it is not listed).
my_index:
    push eax
    mov eax, [L_ID]
    shr eax, 24
    xor esi, esi
.look:
    cmp esi, [ncpus]
    jae .none
    cmp al, [apic_ids + esi]
    je .ret
    inc esi
    jmp .look
.none:
    mov esi, MAXCPU
.ret:
    pop eax
    ret

; ---- starting the application processors ------------------------------------------------

start_aps:
    mov esi, trampoline
    mov edi, TRAMPOLINE
    mov ecx, trampoline_end - trampoline
    rep movsb
    mov ebx, 1
.next:
    cmp ebx, [ncpus]
    jae .done
    movzx edx, byte [apic_ids + ebx]
    shl edx, 24
    mov eax, [alive]
    mov [alive_before], eax
    mov eax, 0x0000C500             ; INIT, level triggered, assert
    call send_ipi
    mov eax, 0x00008500             ; INIT de-assert
    call send_ipi
    mov ecx, 200
    call delay_us
    mov eax, 0x00004600 | (TRAMPOLINE >> 12)  ; STARTUP
    call send_ipi
    mov ecx, 200
    call delay_us
    mov eax, [alive]
    cmp eax, [alive_before]
    jne .up
    mov eax, 0x00004600 | (TRAMPOLINE >> 12)  ; the second STARTUP the specification asks for
    call send_ipi
    ; Up to a second for it to report (Linux waits ten).
    mov edi, 1000
.wait:
    mov eax, [alive]
    cmp eax, [alive_before]
    jne .up
    mov ecx, 1000
    call delay_us
    dec edi
    jnz .wait
    call lock_print
    PRINT "FAIL start-processor "
    mov eax, ebx
    call putdec
    PRINT `\n`
    call unlock_print
    lock inc dword [failures]
.up:
    inc ebx
    jmp .next
.done:
    mov eax, [alive]
    inc eax
    cmp eax, [ncpus]
    VERDICT "all-processors-up"
    ret

; The application processors start here, in real mode at TRAMPOLINE (CS = TRAMPOLINE >> 4).
bits 16
trampoline:
    cli
    mov ax, cs
    mov ds, ax
    o32 lgdt [trampoline_gdtr - trampoline]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    jmp dword 0x08:ap_entry
trampoline_gdtr:
    dw gdt_end - gdt - 1
    dd gdt
trampoline_end:
bits 32

ap_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov eax, 1
    lock xadd [stacks_taken], eax
    inc eax
    shl eax, 10                     ; STACK_SIZE
    lea esp, [ap_stacks + eax]
    lidt [idtr]
    call cpu_setup
    lock inc dword [alive]
    sti
.idle:
    hlt
    jmp .idle

; ---- IPIs --------------------------------------------------------------------------------

; send_ipi: EDX the ICR high word (destination in bits 24-31), EAX the low word. Waits for
; the previous one to be delivered first.
send_ipi:
    push ecx
    mov ecx, 10000000
.idle:
    test dword [L_ICR_LO], 1 << 12
    jz .send
    pause
    loop .idle
.send:
    mov [L_ICR_HI], edx
    mov [L_ICR_LO], eax
    pop ecx
    ret

; A token goes round the processors LAPS times; the handler passes it on.
test_ring:
    mov dword [ring_hops], 0
    mov eax, LAPS
    imul eax, [ncpus]
    mov [ring_total], eax
    mov ebx, 1
    cmp ebx, [ncpus]
    jb .first
    xor ebx, ebx                    ; alone: the processor sends to itself
.first:
    movzx edx, byte [apic_ids + ebx]
    shl edx, 24
    mov eax, 0x4000 | V_RING
    call send_ipi
    mov ecx, 1000
.wait:
    mov eax, [ring_hops]
    cmp eax, [ring_total]
    je .check
    push ecx
    mov ecx, 100
    call delay_us
    pop ecx
    loop .wait
.check:
    mov eax, [ring_hops]
    cmp eax, [ring_total]
    VERDICT "ipi-ring-complete"
    mov ecx, [ncpus]
    mov esi, ring_seen
    mov eax, LAPS
    call all_equal
    VERDICT "ipi-ring-every-processor"
    ret

ring_isr:
    pushad
    call my_index
    lock inc dword [ring_seen + esi * 4]
    mov dword [L_EOI], 0
    mov eax, 1
    lock xadd [ring_hops], eax
    inc eax
    cmp eax, [ring_total]
    jae .done
    inc esi
    cmp esi, [ncpus]
    jb .send
    xor esi, esi
.send:
    movzx edx, byte [apic_ids + esi]
    shl edx, 24
    mov eax, 0x4000 | V_RING
    call send_ipi
.done:
    popad
    iret

; "All excluding self": every application processor once, the sender not at all.
test_broadcast:
    xor edx, edx
    mov eax, 0x000C4000 | V_BCAST
    call send_ipi
    mov eax, [ncpus]
    dec eax
    mov ebx, bcast_seen
    call wait_count
    mov ecx, [ncpus]
    dec ecx
    mov esi, bcast_seen + 4
    mov eax, 1
    call all_equal
    jne .fail
    cmp dword [bcast_seen], 0
.fail:
    VERDICT "ipi-all-excluding-self"
    ret

; Logical flat destination 0xFF: the processors with a logical ID bit (the first eight).
test_logical:
    mov edx, 0xFF000000
    mov eax, 0x4800 | V_LOGICAL
    call send_ipi
    mov eax, [ncpus]
    cmp eax, 8
    jbe .n
    mov eax, 8
.n:
    mov [logical_n], eax
    mov ebx, logical_seen
    call wait_count
    mov ecx, [logical_n]
    mov esi, logical_seen
    mov eax, 1
    call all_equal
    jne .fail
    ; and none beyond the eighth
    mov ecx, [ncpus]
    sub ecx, [logical_n]
    mov esi, [logical_n]
    lea esi, [logical_seen + esi * 4]
    xor eax, eax
    call all_equal
.fail:
    VERDICT "ipi-logical-flat"
    ret

; An NMI to each application processor by APIC ID.
test_nmi:
    mov ebx, 1
.next:
    cmp ebx, [ncpus]
    jae .wait
    movzx edx, byte [apic_ids + ebx]
    shl edx, 24
    mov eax, 0x4400                 ; NMI
    call send_ipi
    inc ebx
    jmp .next
.wait:
    mov eax, [ncpus]
    dec eax
    mov ebx, nmi_seen
    call wait_count
    mov ecx, [ncpus]
    dec ecx
    mov esi, nmi_seen + 4
    mov eax, 1
    call all_equal
    jne .fail
    cmp dword [nmi_seen], 0
.fail:
    VERDICT "ipi-nmi"
    ret

; Cross-modifying code. `patchme` returns the immediate of its MOV; every processor ran it
; at start-up. The bootstrap processor changes it to 2 and has the others run it; then the
; last processor changes it to 3 and the bootstrap processor runs it.
test_smc:
    mov dword [patchme + 1], 2
    xor edx, edx
    mov eax, 0x000C4000 | V_SMC_RUN ; all excluding self
    call send_ipi
    mov eax, [ncpus]
    dec eax
    mov ebx, smc_done
    call wait_count
    mov ecx, [ncpus]
    dec ecx
    mov esi, smc_seen + 4
    mov eax, 2
    call all_equal
    VERDICT "cross-modifying-code-seen-by-others"
    call patchme
    cmp eax, 2
    VERDICT "cross-modifying-code-own-write"
    mov ebx, [ncpus]
    dec ebx
    jz .alone
    movzx edx, byte [apic_ids + ebx]
    shl edx, 24
    mov eax, 0x4000 | V_SMC_WRITE
    call send_ipi
    mov eax, 1
    mov ebx, smc_written
    call wait_count
    call patchme
    cmp eax, 3
    VERDICT "cross-modifying-code-written-by-another"
.alone:
    ret

; Alone on its page, so that no write to data nearby drops the blocks decoded from it.
align 4096, db 0xCC
patchme:
    mov eax, strict dword 1
    ret
align 4096, db 0xCC

smc_run_isr:
    pushad
    call patchme
    call my_index
    mov [smc_seen + esi * 4], eax
    lock inc dword [smc_done + esi * 4]
    mov dword [L_EOI], 0
    popad
    iret

smc_write_isr:
    pushad
    mov dword [patchme + 1], 3
    call my_index
    lock inc dword [smc_written + esi * 4]
    mov dword [L_EOI], 0
    popad
    iret

; ISA IRQ 0 through the I/O APIC to each processor in turn: the PIT in mode 0 (one rising
; edge at the end of its count) fires once per processor.
test_ioapic:
    xor ebx, ebx
.next:
    cmp ebx, [ncpus]
    jae .check
    ; The PIT first: in mode 0 its output stays low until the count is written.
    mov al, 0x30                    ; channel 0, lobyte/hibyte, mode 0
    out 0x43, al
    ; redirection entry: edge, active high, physical, fixed, unmasked
    mov ecx, [irq0_pin]
    lea ecx, [0x10 + ecx * 2]
    movzx eax, byte [apic_ids + ebx]
    shl eax, 24
    inc ecx
    call ioapic_write               ; high word: destination
    dec ecx
    mov eax, V_IOAPIC
    call ioapic_write
    mov edi, [io_seen + ebx * 4]
    mov al, 0xA9                    ; 1193 ticks: 1 ms
    out 0x40, al
    mov al, 0x04
    out 0x40, al
    mov ecx, 100
.wait:
    cmp [io_seen + ebx * 4], edi
    jne .taken
    push ecx
    mov ecx, 100
    call delay_us
    pop ecx
    loop .wait
.taken:
    mov ecx, [irq0_pin]
    lea ecx, [0x10 + ecx * 2]
    mov eax, 0x10000 | V_IOAPIC     ; masked again
    call ioapic_write
    inc ebx
    jmp .next
.check:
    mov ecx, [ncpus]
    mov esi, io_seen
    mov eax, 1
    call all_equal
    VERDICT "ioapic-irq0-to-each-processor"
    ret

; ioapic_write: ECX the register, EAX the value.
ioapic_write:
    push edx
    mov edx, [ioapic]
    mov [edx], ecx
    mov [edx + 0x10], eax
    pop edx
    ret

bcast_isr:
    pushad
    call my_index
    lock inc dword [bcast_seen + esi * 4]
    mov dword [L_EOI], 0
    popad
    iret

logical_isr:
    pushad
    call my_index
    lock inc dword [logical_seen + esi * 4]
    mov dword [L_EOI], 0
    popad
    iret

io_isr:
    pushad
    call my_index
    lock inc dword [io_seen + esi * 4]
    mov dword [L_EOI], 0
    popad
    iret

nmi_isr:
    pushad
    call my_index
    lock inc dword [nmi_seen + esi * 4]
    popad
    iret

spurious_isr:
    iret

; Any other vector: an exception or a stray interrupt ends the test.
unexpected_isr:
    call lock_print
    PRINT "FAIL unexpected interrupt or exception on cpu "
    call my_index
    mov eax, esi
    call putdec
    PRINT `\n`
    mov al, 3
    out EXIT_PORT, al
    cli
    hlt

; ---- helpers -----------------------------------------------------------------------------

; wait_count: until the [ncpus] dwords at EBX sum to EAX (about 100 ms at most).
wait_count:
    pushad
    mov edi, 1000
.again:
    xor edx, edx
    xor esi, esi
.sum:
    cmp esi, [ncpus]
    jae .summed
    add edx, [ebx + esi * 4]
    inc esi
    jmp .sum
.summed:
    cmp edx, [esp + 28]             ; EAX as pushed
    je .done
    mov ecx, 100
    call delay_us
    dec edi
    jnz .again
.done:
    popad
    ret

; all_equal: ZF set when the ECX dwords at ESI all equal EAX (and when ECX is 0).
all_equal:
    push ecx
    push esi
.next:
    test ecx, ecx
    jz .yes
    cmp [esi], eax
    jne .no
    add esi, 4
    dec ecx
    jmp .next
.yes:
    cmp eax, eax
.no:
    pop esi
    pop ecx
    ret

; delay_us: ECX microseconds (at most 54 ms) by the PIT's channel 2 in mode 0, polled at port
; 0x61 bit 5 (OUT2).
delay_us:
    pushad
    mov eax, ecx
    mov ecx, 1193
    mul ecx
    mov ecx, 1000
    div ecx
    inc eax
    mov ebx, eax
    in al, 0x61
    and al, 0xFC                    ; gate low, speaker off
    out 0x61, al
    mov al, 0xB0                    ; channel 2, lobyte/hibyte, mode 0
    out 0x43, al
    mov al, bl
    out 0x42, al
    mov al, bh
    out 0x42, al
    in al, 0x61
    or al, 1                        ; gate high: counting starts
    out 0x61, al
.wait:
    pause
    in al, 0x61
    test al, 0x20
    jz .wait
    popad
    ret

lock_print:
    push eax
.spin:
    mov eax, 1
    xchg [print_lock], eax
    test eax, eax
    jz .got
    pause
    jmp .spin
.got:
    pop eax
    ret

unlock_print:
    mov dword [print_lock], 0
    ret

; report: EAX 0 for PASS, else FAIL; ESI the check's name.
report:
    call lock_print
    test eax, eax
    jnz .fail
    push esi
    PRINT "PASS "
    pop esi
    jmp .name
.fail:
    lock inc dword [failures]
    push esi
    PRINT "FAIL "
    pop esi
.name:
    call puts
    PRINT `\n`
    call unlock_print
    ret

; putdec: EAX in decimal.
putdec:
    pushad
    mov ebx, 10
    xor ecx, ecx
.digit:
    xor edx, edx
    div ebx
    push edx
    inc ecx
    test eax, eax
    jnz .digit
.out:
    pop eax
    add al, '0'
    call putc
    loop .out
    popad
    ret

; Interrupt gates for all 256 vectors: the unexpected handler but where the tests need one.
build_idt:
    mov edi, idt
    xor ecx, ecx
.gate:
    mov eax, unexpected_isr
    cmp ecx, 2
    jne .v1
    mov eax, nmi_isr
.v1:
    cmp ecx, V_RING
    jne .v2
    mov eax, ring_isr
.v2:
    cmp ecx, V_BCAST
    jne .v3
    mov eax, bcast_isr
.v3:
    cmp ecx, V_LOGICAL
    jne .v4
    mov eax, logical_isr
.v4:
    cmp ecx, V_SMC_RUN
    jne .v4a
    mov eax, smc_run_isr
.v4a:
    cmp ecx, V_SMC_WRITE
    jne .v4b
    mov eax, smc_write_isr
.v4b:
    cmp ecx, V_IOAPIC
    jne .v5
    mov eax, io_isr
.v5:
    cmp ecx, V_SPURIOUS
    jne .set
    mov eax, spurious_isr
.set:
    mov [edi], ax
    mov word [edi + 2], 0x08
    mov word [edi + 4], 0x8E00
    shr eax, 16
    mov [edi + 6], ax
    add edi, 8
    inc ecx
    cmp ecx, 256
    jb .gate
    ret

align 8, db 0
gdt:
    dq 0
    dq 0x00CF9A000000FFFF           ; 0x08: flat 32-bit code
    dq 0x00CF92000000FFFF           ; 0x10: flat data
gdt_end:
gdtr:
    dw gdt_end - gdt - 1
    dd gdt
idtr:
    dw 256 * 8 - 1
    dd idt

ioapic:     dd 0
isa_bus:    dd -1
irq0_pin:   dd -1

file_end:

absolute file_end
alignb 16
ncpus:          resd 1
failures:       resd 1
alive:          resd 1
alive_before:   resd 1
stacks_taken:   resd 1
print_lock:     resd 1
ring_hops:      resd 1
ring_total:     resd 1
logical_n:      resd 1
apic_ids:       resb MAXCPU
ring_seen:      resd MAXCPU
bcast_seen:     resd MAXCPU
logical_seen:   resd MAXCPU
nmi_seen:       resd MAXCPU
io_seen:        resd MAXCPU
smc_seen:       resd MAXCPU
smc_done:       resd MAXCPU
smc_written:    resd MAXCPU
alignb 8
idt:            resb 256 * 8
alignb 16
bsp_stack:      resb STACK_SIZE
ap_stacks:      resb STACK_SIZE * MAXCPU
bss_end:
