; sys_gates: privilege and gates in 32-bit protected mode. Call gates to the same and to inner
; privilege levels (stack switch from the TSS, parameters copied, 16- and 32-bit gates, ring 1
; and ring 0), interrupt against trap gates (IF), the privilege and type checks of far
; transfers and INT n with their #GP/#NP error codes (selector, IDT and EXT bits), conforming
; code, RETF and IRET to an outer level nulling the data segments that level may not use,
; and LAR, LSL, VERR, VERW, ARPL.
;
; Reference: Intel SDM vol. 3, 5.5-5.10 (privilege, call gates, conforming code), 6.12-6.13
; (interrupt and trap gates, error codes); vol. 2, CALL, RET, IRET, LAR, LSL, VERR, ARPL.

%define ROM_NAME "sys_gates"
%include "inc/ferrite.inc"
%include "inc/sys.inc"

SEL_CODE_R1     equ SEL_FREE + 0x00 ; ring-1 code, base F0000
SEL_DATA_R1     equ SEL_FREE + 0x08 ; ring-1 flat data
SEL_CONF0       equ SEL_FREE + 0x10 ; conforming readable code, DPL 0, base F0000
SEL_CONF3       equ SEL_FREE + 0x18 ; conforming code, DPL 3
SEL_XO          equ SEL_FREE + 0x20 ; execute-only code, DPL 0
SEL_RO          equ SEL_FREE + 0x28 ; read-only data, DPL 0
GATE_SAME       equ SEL_FREE + 0x30 ; 32-bit call gate, DPL 0, to ring 0, no parameters
GATE_R0         equ SEL_FREE + 0x38 ; 32-bit call gate, DPL 3, to ring 0, 2 parameters
GATE_DPL0       equ SEL_FREE + 0x40 ; 32-bit call gate, DPL 0 (ring 3 may not use it)
GATE_NP         equ SEL_FREE + 0x48 ; call gate, DPL 3, not present
GATE_DATA       equ SEL_FREE + 0x50 ; call gate, DPL 3, to a data segment
GATE16          equ SEL_FREE + 0x58 ; 16-bit call gate, DPL 3, to ring 0, 1 parameter
GATE_R1         equ SEL_FREE + 0x60 ; 32-bit call gate, DPL 3, to ring 1, 1 parameter
SEL_IGATE       equ SEL_FREE + 0x68 ; an interrupt gate in the GDT (LAR must refuse it)

R3_STACK        equ STACK3_TOP

ROM_RAM r3_esp_before, 4            ; ring-3 ESP before pushing the parameters
ROM_RAM r3_esp_after, 4             ; ... after the call returned
ROM_RAM r3_ds, 4
ROM_RAM r3_es, 4
ROM_RAM r3_fs, 4
ROM_RAM r3_gs, 4
ROM_RAM r3_cs, 4
ROM_RAM g_esp, 4                    ; what a gate's target saw
ROM_RAM g_cs, 4
ROM_RAM g_w0, 4
ROM_RAM g_w1, 4
ROM_RAM g_w2, 4
ROM_RAM g_w3, 4
ROM_RAM g_w4, 4
ROM_RAM g_w5, 4
ROM_RAM probe_flags, 4
ROM_RAM probe_pushed, 4
ROM_RAM bounds, 8

; CALL_RING3 label: run ring-3 code at `label` (SEL_CODE32_R3) and come back once it ends
; with INT RING3_DONE or faults; the exception is then in exc_*.
%macro CALL_RING3 1
    TRY %%back
    mov edx, SEL_CODE32_R3 | 3
    mov ebx, %1
    mov ecx, R3_STACK
    call enter_ring3
%%back:
    END_TRY
%endmacro

entry:
    INIT
    call build_tables
    PRINT `sys_gates: call gates, interrupt and trap gates, privilege checks, conforming code, LAR/LSL/VERR/VERW/ARPL\r\n`
    DESC SEL_CODE_R1, ROM_LINEAR, 0xFFFF, 0xBB, 0x4
    DESC SEL_DATA_R1, 0, 0xFFFFF, 0xB3, 0xC
    DESC SEL_CONF0, ROM_LINEAR, 0xFFFF, 0x9F, 0x4
    DESC SEL_CONF3, ROM_LINEAR, 0xFFFF, 0xFF, 0x4
    DESC SEL_XO, ROM_LINEAR, 0xFFFF, 0x99, 0x4
    DESC SEL_RO, 0, 0xFFFF, 0x91, 0x0
    GATE32 GDT_BASE + GATE_SAME, SEL_CODE32, gate_same_fn, 0x8C, 0
    GATE32 GDT_BASE + GATE_R0, SEL_CODE32, gate_r0_fn, 0xEC, 2
    GATE32 GDT_BASE + GATE_DPL0, SEL_CODE32, gate_same_fn, 0x8C, 0
    GATE32 GDT_BASE + GATE_NP, SEL_CODE32, gate_same_fn, 0x6C, 0
    GATE32 GDT_BASE + GATE_DATA, SEL_DATA, 0, 0xEC, 0
    GATE32 GDT_BASE + GATE16, SEL_CODE32, gate16_fn, 0xE4, 1
    GATE32 GDT_BASE + GATE_R1, SEL_CODE_R1, gate_r1_fn, 0xEC, 1
    GATE32 GDT_BASE + SEL_IGATE, SEL_CODE32, gate_same_fn, 0x8E, 0
    ; IDT: 50h interrupt gate, 51h trap gate (both DPL 3), 52h DPL 0, 53h not present,
    ; 54h a call gate (wrong type), 55h a null target, 56h a data segment target.
    GATE32 IDT32_BASE + 0x50 * 8, SEL_CODE32, if_probe, 0xEE, 0
    GATE32 IDT32_BASE + 0x51 * 8, SEL_CODE32, if_probe, 0xEF, 0
    GATE32 IDT32_BASE + 0x53 * 8, SEL_CODE32, if_probe, 0x6E, 0
    GATE32 IDT32_BASE + 0x54 * 8, SEL_CODE32, if_probe, 0xEC, 0
    GATE32 IDT32_BASE + 0x55 * 8, 0, if_probe, 0xEE, 0
    GATE32 IDT32_BASE + 0x56 * 8, SEL_DATA, if_probe, 0xEE, 0
    mov dword [TSS_BASE + 12], STACK1_TOP               ; ESP1
    mov dword [TSS_BASE + 16], SEL_DATA_R1 | 1          ; SS1
    call enter_pm32
bits 32
    mov ax, SEL_TSS
    ltr ax

    ; ---- call gates -------------------------------------------------------------------------
    mov ebx, esp
    call GATE_SAME:0
    EQ dword [g_cs], SEL_CODE32, `call gate to the same level: CS is the gate's target`
    sub ebx, 8
    EQ dword [g_esp], ebx, `call gate to the same level: no stack switch, CS:EIP pushed`
    EQ dword [g_w1], SEL_CODE32, `call gate to the same level: the caller's CS pushed`

    CALL_RING3 r3_call_gate_r0
    EQ dword [exc_vec], RING3_DONE, `ring 3 through a DPL 3 call gate to ring 0 and back`
    EQ dword [g_cs], SEL_CODE32, `call gate to ring 0: CPL 0 in the target`
    EQ dword [g_esp], STACK0_TSS_TOP - 24, `call gate to ring 0: the stack from TSS.ESP0 with SS, ESP, 2 parameters, CS, EIP`
    EQ dword [g_w1], SEL_CODE32_R3 | 3, `call gate to ring 0: the caller's CS pushed`
    EQ dword [g_w2], 0x22222222, `call gate to ring 0: the parameter pushed last copied on top`
    EQ dword [g_w3], 0x11111111, `call gate to ring 0: the parameter pushed first copied below it`
    mov eax, [r3_esp_before]
    sub eax, 8
    EQ dword [g_w4], eax, `call gate to ring 0: the caller's ESP (below its parameters) pushed`
    EQ dword [g_w5], SEL_DATA_R3 | 3, `call gate to ring 0: the caller's SS pushed`
    mov eax, [r3_esp_before]
    EQ dword [r3_esp_after], eax, `RETF 8 to ring 3 drops the parameters from the outer stack too`
    EQ dword [r3_ds], 0, `RETF to ring 3 nulls DS holding a DPL 0 data segment`
    EQ dword [r3_es], SEL_DATA_R3 | 3, `RETF to ring 3 keeps ES holding a DPL 3 data segment`
    EQ dword [r3_fs], SEL_CONF0, `RETF to ring 3 keeps FS holding a conforming code segment`
    EQ dword [r3_gs], 0, `RETF to ring 3 nulls GS holding a DPL 0 non-conforming code segment`

    CALL_RING3 r3_call_gate16
    EQ dword [exc_vec], RING3_DONE, `ring 3 through a 16-bit call gate and back`
    EQ dword [g_esp], STACK0_TSS_TOP - 10, `16-bit call gate: SS, SP, 1 parameter, CS, IP pushed as words`
    EQ dword [g_w1], SEL_CODE32_R3 | 3, `16-bit call gate: the caller's CS pushed`
    EQ dword [g_w2], 0x1616, `16-bit call gate: the word parameter copied`
    EQ dword [g_w5], SEL_DATA_R3 | 3, `16-bit call gate: the caller's SS pushed`

    CALL_RING3 r3_call_gate_r1
    EQ dword [exc_vec], RING3_DONE, `ring 3 through a call gate to ring 1 and back`
    EQ dword [g_cs], SEL_CODE_R1 | 1, `call gate to ring 1: CPL 1 in the target`
    EQ dword [g_esp], STACK1_TOP - 20, `call gate to ring 1: the stack from TSS.ESP1`
    EQ dword [g_w2], 0x31313131, `call gate to ring 1: the parameter copied`
    EQ dword [g_w3], STACK3_TOP - 4, `call gate to ring 1: the caller's ESP (below its parameter) pushed`
    EQ dword [g_w4], SEL_DATA_R3 | 3, `call gate to ring 1: the caller's SS pushed`

    mov dword [TSS_BASE + 16], SEL_DATA                 ; SS1 with DPL 0
    CALL_RING3 r3_call_gate_r1
    mov dword [TSS_BASE + 16], SEL_DATA_R1 | 1
    EXPECT_EXC `call gate to ring 1 with a DPL 0 SS1 in the TSS is #TS(SS1)`, 10, SEL_DATA
    CALL_RING3 r3_call_gate_dpl0
    EXPECT_EXC `ring 3 through a DPL 0 call gate is #GP(gate)`, 13, GATE_DPL0
    CALL_RING3 r3_call_gate_np
    EXPECT_EXC `a not-present call gate is #NP(gate)`, 11, GATE_NP
    CALL_RING3 r3_call_gate_data
    EXPECT_EXC `a call gate to a data segment is #GP(target)`, 13, SEL_DATA
    CALL_RING3 r3_call_code0
    EXPECT_EXC `ring 3 far CALL to a DPL 0 non-conforming segment is #GP(selector)`, 13, SEL_CODE32
    CALL_RING3 r3_jmp_gate_r0
    EXPECT_EXC `JMP through a call gate to an inner level is #GP(target)`, 13, SEL_CODE32

    ; ---- conforming code --------------------------------------------------------------------
    CALL_RING3 r3_call_conf0
    EQ dword [exc_vec], RING3_DONE, `ring 3 calls DPL 0 conforming code`
    EQ dword [g_cs], SEL_CONF0 | 3, `conforming code runs at the caller's CPL 3 (CS.RPL = 3)`
    EQ dword [g_esp], R3_STACK - 8, `conforming code: no stack switch`
    TRY .conf3
    call SEL_CONF3:conf_fn
.conf3:
    EXPECT_EXC `ring 0 far CALL to DPL 3 conforming code is #GP(selector)`, 13, SEL_CONF3
    call SEL_CONF0:conf_fn
    EQ dword [g_cs], SEL_CONF0, `ring 0 calls DPL 0 conforming code at CPL 0`

    ; ---- interrupt and trap gates -----------------------------------------------------------
    sti
    int 0x50
    pushfd
    pop ebx
    cli
    mov eax, [probe_flags]
    and eax, 0x200
    EQ eax, 0, `interrupt gate clears IF`
    mov eax, [probe_pushed]
    and eax, 0x200
    EQ eax, 0x200, `interrupt gate: the pushed EFLAGS has IF set`
    and ebx, 0x200
    EQ ebx, 0x200, `IRET from the interrupt gate sets IF again from the frame`
    sti
    int 0x51
    cli
    mov eax, [probe_flags]
    and eax, 0x200
    EQ eax, 0x200, `trap gate leaves IF set`
    CALL_RING3 r3_int50
    EQ dword [exc_vec], RING3_DONE, `ring 3 INT 50h through a DPL 3 interrupt gate`
    EQ dword [g_esp], STACK0_TSS_TOP - 20, `INT from ring 3: the handler runs on the TSS.ESP0 stack`
    EQ dword [g_w1], SEL_CODE32_R3 | 3, `INT from ring 3: the frame holds the ring-3 CS`

    ; ---- #GP and #NP error codes of INT n and exceptions ---------------------------------------
    CALL_RING3 r3_int52
    EXPECT_EXC `ring 3 INT 52h through a DPL 0 gate is #GP(IDT entry)`, 13, 0x52 * 8 + 2
    TRY .int53
    int 0x53
.int53:
    EXPECT_EXC `INT 53h through a not-present gate is #NP(IDT entry)`, 11, 0x53 * 8 + 2
    TRY .int54
    int 0x54
.int54:
    EXPECT_EXC `INT 54h to a call gate in the IDT is #GP(IDT entry)`, 13, 0x54 * 8 + 2
    TRY .int55
    int 0x55
.int55:
    EXPECT_EXC `INT 55h to a gate with a null selector is #GP(0)`, 13, 0
    TRY .int56
    int 0x56
.int56:
    EXPECT_EXC `INT 56h to a gate naming a data segment is #GP(selector)`, 13, SEL_DATA
    lidt [cs:idtr_short]
    TRY .int70
    int 0x70
.int70:
    lidt [cs:idtr32]
    EXPECT_EXC `INT 70h past the IDT limit is #GP(IDT entry)`, 13, 0x70 * 8 + 2
    mov dword [bounds], 0
    mov dword [bounds + 4], 5
    IDT_ATTR 5, 0x0E                    ; #BR's gate not present
    TRY .br
    mov eax, 10
    bound eax, [bounds]
.br:
    IDT_ATTR 5, 0x8E
    EXPECT_EXC `#BR through a not-present gate is #NP(IDT entry, EXT)`, 11, 5 * 8 + 3

    ; ---- IRET to ring 3 nulls the data segments ring 3 may not use ------------------------------
    mov ax, SEL_DATA
    mov ds, ax
    mov ax, SEL_DATA_R3 | 3
    mov es, ax
    mov ax, SEL_CONF0
    mov fs, ax
    mov ax, SEL_CODE32
    mov gs, ax
    TRY .iret_r3
    push dword SEL_DATA_R3 | 3
    push dword R3_STACK
    push dword 0x0002
    push dword SEL_CODE32_R3 | 3
    push dword r3_segments
    iretd
.iret_r3:
    END_TRY
    EQ dword [exc_vec], RING3_DONE, `IRET to ring 3`
    EQ dword [r3_ds], 0, `IRET to ring 3 nulls DS holding a DPL 0 data segment`
    EQ dword [r3_es], SEL_DATA_R3 | 3, `IRET to ring 3 keeps ES holding a DPL 3 data segment`
    EQ dword [r3_fs], SEL_CONF0, `IRET to ring 3 keeps FS holding a conforming code segment`
    EQ dword [r3_gs], 0, `IRET to ring 3 nulls GS holding a DPL 0 code segment`
    EQ dword [r3_cs], SEL_CODE32_R3 | 3, `IRET to ring 3: CS.RPL = 3`

    ; ---- LAR, LSL, VERR, VERW, ARPL --------------------------------------------------------------
    mov eax, 0x12345678
    lar eax, [cs:lar_sel_code]
    CHECK z, `LAR of a code segment sets ZF`
    EQ eax, 0x00409B00, `LAR of SEL_CODE32: the access rights (type 9Bh, D)`
    lsl eax, [cs:lar_sel_code]
    EQ eax, 0xFFFF, `LSL of a byte-granular segment: the limit`
    mov ax, SEL_DATA
    lsl eax, ax
    EQ eax, 0xFFFFFFFF, `LSL of a page-granular segment: the scaled limit`
    mov ax, SEL_TSS
    lar eax, ax
    CHECK z, `LAR of a busy TSS sets ZF`
    and eax, 0xFF00
    EQ eax, 0x8B00, `LAR of a busy TSS: type 0Bh`
    mov ax, GATE_R0
    lar eax, ax
    CHECK z, `LAR of a call gate sets ZF`
    mov ax, GATE_R0
    lsl eax, ax
    CHECK nz, `LSL of a call gate clears ZF`
    mov ax, SEL_IGATE
    lar eax, ax
    CHECK nz, `LAR of an interrupt gate in the GDT clears ZF`
    xor eax, eax
    lar eax, ax
    CHECK nz, `LAR of the null selector clears ZF`
    mov ax, GDT_LIMIT + 1
    lar eax, ax
    CHECK nz, `LAR past the GDT limit clears ZF`
    mov ax, SEL_DATA | 3
    lar eax, ax
    CHECK nz, `LAR at CPL 0 with RPL 3 of a DPL 0 segment clears ZF`
    mov ax, SEL_CODE32
    verr ax
    CHECK z, `VERR of readable code sets ZF`
    mov ax, SEL_XO
    verr ax
    CHECK nz, `VERR of execute-only code clears ZF`
    mov ax, SEL_DATA
    verw ax
    CHECK z, `VERW of writable data sets ZF`
    mov ax, SEL_RO
    verw ax
    CHECK nz, `VERW of read-only data clears ZF`
    mov ax, SEL_CODE32
    verw ax
    CHECK nz, `VERW of code clears ZF`
    xor eax, eax
    verr ax
    CHECK nz, `VERR of the null selector clears ZF`
    CALL_RING3 r3_verify
    EQ dword [g_w0], 0, `LAR at CPL 3 of a DPL 0 data segment clears ZF`
    EQ dword [g_w1], 1, `LAR at CPL 3 of DPL 0 conforming code sets ZF`
    EQ dword [g_w2], 0, `VERR at CPL 3 of a DPL 0 data segment clears ZF`
    EQ dword [g_w3], 1, `VERR at CPL 3 of readable conforming code sets ZF`
    EQ dword [g_w4], 1, `VERW at CPL 3 of its own data segment sets ZF`
    mov ax, SEL_DATA
    mov bx, SEL_DATA_R3 | 3
    arpl ax, bx
    CHECK z, `ARPL raising the RPL sets ZF`
    movzx eax, ax
    EQ eax, SEL_DATA | 3, `ARPL raises the destination RPL to the source's`
    mov ax, SEL_DATA | 2
    mov bx, SEL_DATA | 1
    arpl ax, bx
    CHECK nz, `ARPL with a higher destination RPL clears ZF`
    movzx eax, ax
    EQ eax, SEL_DATA | 2, `ARPL leaves a higher destination RPL alone`
    mov word [g_w0], SEL_DATA
    mov bx, 3
    arpl [g_w0], bx
    EQ dword [g_w0], SEL_DATA | 3, `ARPL with a memory destination`
    call finish32

; ---- gate targets (ring 0 and ring 1) -------------------------------------------------------------
; Each saves ESP and the words on its stack, and returns as its gate requires.
gate_same_fn:
    mov [ss:g_esp], esp
    mov eax, [esp + 4]
    mov [ss:g_w1], eax
    mov ax, cs
    movzx eax, ax
    mov [ss:g_cs], eax
    retf

gate_r0_fn:
    call save_frame
    mov ax, SEL_DATA                    ; DPL 0: RETF to ring 3 must null it
    mov ds, ax
    mov ax, SEL_DATA_R3 | 3
    mov es, ax
    mov ax, SEL_CONF0
    mov fs, ax
    mov ax, SEL_CODE32
    mov gs, ax
    retf 8

gate16_fn:
    mov [ss:g_esp], esp
    movzx eax, word [esp + 2]
    mov [ss:g_w1], eax
    movzx eax, word [esp + 4]
    mov [ss:g_w2], eax
    movzx eax, word [esp + 8]
    mov [ss:g_w5], eax
    o16 retf 2

; save_frame: records the caller's ESP (before this call) and six dwords above it.
save_frame:
    push eax
    lea eax, [esp + 8]
    mov [ss:g_esp], eax
    mov ax, cs
    movzx eax, ax
    mov [ss:g_cs], eax
    mov eax, [esp + 8]
    mov [ss:g_w0], eax
    mov eax, [esp + 12]
    mov [ss:g_w1], eax
    mov eax, [esp + 16]
    mov [ss:g_w2], eax
    mov eax, [esp + 20]
    mov [ss:g_w3], eax
    mov eax, [esp + 24]
    mov [ss:g_w4], eax
    mov eax, [esp + 28]
    mov [ss:g_w5], eax
    pop eax
    ret

gate_r1_fn:
    call save_frame
    retf 4

conf_fn:
    call save_frame
    retf

; if_probe: INT 50h/51h. Records EFLAGS inside the handler and as pushed, and the frame.
if_probe:
    call save_frame
    push eax
    pushfd
    pop eax
    mov [ss:probe_flags], eax
    mov eax, [esp + 12]
    mov [ss:probe_pushed], eax
    pop eax
    iretd

; ---- ring-3 code (SEL_CODE32_R3, SS flat DPL 3) ------------------------------------------------
r3_call_gate_r0:
    mov ax, SEL_DATA_R3 | 3
    mov es, ax
    mov [ss:r3_esp_before], esp
    push dword 0x11111111
    push dword 0x22222222
    call GATE_R0:0
    mov [ss:r3_esp_after], esp
    mov [ss:r3_ds], ds
    mov [ss:r3_es], es
    mov [ss:r3_fs], fs
    mov [ss:r3_gs], gs
    int RING3_DONE

r3_call_gate16:
    push word 0x1616
    call GATE16:0
    int RING3_DONE

r3_call_gate_r1:
    push dword 0x31313131
    call GATE_R1:0
    int RING3_DONE

r3_call_gate_dpl0:
    call GATE_DPL0:0
    int RING3_DONE
r3_call_gate_np:
    call GATE_NP:0
    int RING3_DONE
r3_call_gate_data:
    call GATE_DATA:0
    int RING3_DONE
r3_call_code0:
    call SEL_CODE32:gate_same_fn
    int RING3_DONE
r3_jmp_gate_r0:
    jmp GATE_R0:0
r3_call_conf0:
    call SEL_CONF0:conf_fn
    int RING3_DONE
r3_int50:
    int 0x50
    int RING3_DONE
r3_int52:
    int 0x52
    int RING3_DONE

r3_segments:
    mov [ss:r3_ds], ds
    mov [ss:r3_es], es
    mov [ss:r3_fs], fs
    mov [ss:r3_gs], gs
    mov [ss:r3_cs], cs
    int RING3_DONE

; r3_verify: g_w0..g_w4 = ZF of LAR/VERR/VERW at CPL 3.
%macro ZF_TO 1
    setz al
    movzx eax, al
    mov [ss:%1], eax
%endmacro
r3_verify:
    mov bx, SEL_DATA
    lar eax, bx
    ZF_TO g_w0
    mov bx, SEL_CONF0
    lar eax, bx
    ZF_TO g_w1
    mov bx, SEL_DATA
    verr bx
    ZF_TO g_w2
    mov bx, SEL_CONF0
    verr bx
    ZF_TO g_w3
    mov bx, SEL_DATA_R3 | 3
    verw bx
    ZF_TO g_w4
    int RING3_DONE

section .rodata
lar_sel_code:   dw SEL_CODE32
idtr_short:     dw 0x5F * 8 + 7
                dd IDT32_BASE
section .text

    ROM_END
