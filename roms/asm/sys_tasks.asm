; sys_tasks: hardware task switching in 32-bit protected mode. CALL to a TSS (nested: back
; link, NT, busy bits) and IRET back; JMP to a TSS and back (not nested: the old task's busy
; bit cleared, no back link); a task resuming where it left off; the busy-bit checks (#GP for
; CALL or JMP to a busy task, #TS for IRET to an available one); task gates in the GDT and in
; the IDT; the LDT of the new task; a 16-bit TSS; CR0.TS; and a double fault (#NP while
; delivering #NP) through a task gate to a task with a stack of its own. A triple fault is
; not tested here: it ends the machine (sys_triple does that).
;
; Reference: Intel SDM vol. 3, chapter 7 (task management), 6.15 (#DF).

%define ROM_NAME "sys_tasks"
%include "inc/ferrite.inc"
%include "inc/sys.inc"

SEL_TSS_B       equ SEL_FREE + 0x00
SEL_TSS_C       equ SEL_FREE + 0x08
SEL_TSS_D       equ SEL_FREE + 0x10 ; the #DF task
SEL_TSS_E       equ SEL_FREE + 0x18 ; reached through task gates, has an LDT
SEL_TSS_F       equ SEL_FREE + 0x20 ; 16-bit TSS
SEL_LDT         equ SEL_FREE + 0x28
GATE_TASK_E     equ SEL_FREE + 0x30 ; task gate in the GDT
SEL_TSS_SMALL   equ SEL_FREE + 0x38 ; a TSS descriptor whose limit is below 67h
SEL_TSS_NP      equ SEL_FREE + 0x40 ; a TSS descriptor that is not present
GATE_TASK_R3    equ SEL_FREE + 0x48 ; task gate, DPL 3, to task E

TSS_B           equ TSS_AREA + 0x000
TSS_C           equ TSS_AREA + 0x100
TSS_D           equ TSS_AREA + 0x200
TSS_E           equ TSS_AREA + 0x300
TSS_F           equ TSS_AREA + 0x400
LDT_BASE        equ 0xA000
LDT_DATA        equ 0x0004          ; LDT entry 0, TI = 1, RPL 0
STACK_B         equ 0x9400
STACK_C         equ 0x9800
STACK_D         equ 0x9C00
STACK_E         equ 0x9FF0
STACK_F         equ 0x9300
LDT_MARK        equ 0x1D71D71D      ; at 0x20000, the LDT segment's base

T_LINK          equ 0x00
T_EIP           equ 0x20
T_EFLAGS        equ 0x24
T_EBX           equ 0x34
T_DS            equ 0x54

ROM_RAM b_runs, 4
ROM_RAM b_eax, 4
ROM_RAM b_tr, 4
ROM_RAM b_flags, 4
ROM_RAM b_link, 4
ROM_RAM b_type_self, 4
ROM_RAM b_type_a, 4
ROM_RAM b_cr0, 4
ROM_RAM b_esp, 4
ROM_RAM b_a_ebx, 4
ROM_RAM b_a_eip, 4
ROM_RAM c_tr, 4
ROM_RAM c_flags, 4
ROM_RAM c_link, 4
ROM_RAM c_type_a, 4
ROM_RAM c_type_self, 4
ROM_RAM e_runs, 4
ROM_RAM e_tr, 4
ROM_RAM e_ldtr, 4
ROM_RAM e_link, 4
ROM_RAM e_flags, 4
ROM_RAM e_ldt_val, 4
ROM_RAM d_runs, 4
ROM_RAM d_esp, 4
ROM_RAM d_err, 4
ROM_RAM d_tr, 4
ROM_RAM d_link, 4
ROM_RAM f_ax, 4
ROM_RAM f_tr, 4
ROM_RAM f_link, 4
ROM_RAM f_flags, 4
ROM_RAM f_cs, 4

; TYPE_OF selector: EAX = the type nibble of a GDT descriptor (9 available, 0Bh busy).
%macro TYPE_OF 1
    movzx eax, byte [GDT_BASE + (%1) + 5]
    and eax, 0x0F
%endmacro

entry:
    INIT
    call build_tables
    PRINT `sys_tasks: task switches by CALL, JMP, IRET, task gates and a double fault\r\n`
    DESC SEL_TSS_B, TSS_B, 0x67, 0x89, 0x0
    DESC SEL_TSS_C, TSS_C, 0x67, 0x89, 0x0
    DESC SEL_TSS_D, TSS_D, 0x67, 0x89, 0x0
    DESC SEL_TSS_E, TSS_E, 0x67, 0x89, 0x0
    DESC SEL_TSS_F, TSS_F, 0x2B, 0x81, 0x0
    DESC SEL_LDT, LDT_BASE, 7, 0x82, 0x0
    DESC SEL_TSS_SMALL, TSS_C, 0x50, 0x89, 0x0
    DESC SEL_TSS_NP, TSS_C, 0x67, 0x09, 0x0
    GATE32 GDT_BASE + GATE_TASK_R3, SEL_TSS_E, 0, 0xE5, 0
    mov dword [LDT_BASE], 0x0000FFFF                ; LDT entry 0: data, base 0x20000
    mov dword [LDT_BASE + 4], 0x00009302
    GATE32 GDT_BASE + GATE_TASK_E, SEL_TSS_E, 0, 0x85, 0
    GATE32 IDT32_BASE + 0x60 * 8, SEL_TSS_E, 0, 0x85, 0
    GATE32 IDT32_BASE + 8 * 8, SEL_TSS_D, 0, 0x85, 0
    mov di, TSS_B
    mov eax, task_b
    mov ebx, STACK_B
    mov ecx, 0xB0B0B0B0
    xor dx, dx
    call make_tss32
    mov di, TSS_C
    mov eax, task_c
    mov ebx, STACK_C
    call make_tss32
    mov dword [TSS_C + T_LINK], 0x1234              ; a JMP must leave it alone
    mov di, TSS_D
    mov eax, task_d
    mov ebx, STACK_D
    call make_tss32
    mov di, TSS_E
    mov eax, task_e
    mov ebx, STACK_E
    mov dx, SEL_LDT
    call make_tss32
    ; the 16-bit TSS of task F
    mov di, TSS_F
    mov cx, 0x2C / 2
    xor ax, ax
    rep stosw
    mov word [TSS_F + 0x0E], task_f                 ; IP
    mov word [TSS_F + 0x10], 0x0002                 ; FLAGS
    mov word [TSS_F + 0x12], 0xF16F                 ; AX
    mov word [TSS_F + 0x1A], STACK_F                ; SP
    mov word [TSS_F + 0x22], SEL_DATA16             ; ES
    mov word [TSS_F + 0x24], SEL_CODE16             ; CS
    mov word [TSS_F + 0x26], SEL_DATA16             ; SS
    mov word [TSS_F + 0x28], SEL_DATA16             ; DS
    mov ax, 0x2000
    mov es, ax
    mov dword [es:0], LDT_MARK
    xor ax, ax
    mov es, ax
    call enter_pm32
bits 32
    mov ax, SEL_TSS
    ltr ax
    TYPE_OF SEL_TSS
    EQ eax, 0xB, `LTR marks the TSS descriptor busy`

    ; ---- CALL to a TSS and IRET back --------------------------------------------------------
    clts
    mov ebx, 0xA5A5A5A5
    call SEL_TSS_B:0
.after_b:
    EQ ebx, 0xA5A5A5A5, `CALL to a TSS and IRET back: the caller's registers come back`
    EQ dword [b_runs], 1, `CALL to a TSS runs the task`
    EQ dword [b_eax], 0xB0B0B0B0, `the new task starts with the registers of its TSS`
    EQ dword [b_esp], STACK_B, `the new task starts with the stack of its TSS`
    EQ dword [b_tr], SEL_TSS_B, `the new task's TR is its TSS`
    mov eax, [b_flags]
    and eax, 0x4000
    EQ eax, 0x4000, `CALL to a TSS sets NT in the new task`
    EQ dword [b_link], SEL_TSS, `CALL to a TSS writes the back link`
    EQ dword [b_type_self], 0xB, `CALL to a TSS marks the new task busy`
    EQ dword [b_type_a], 0xB, `CALL to a TSS leaves the calling task busy`
    mov eax, [b_cr0]
    and eax, 8
    EQ eax, 8, `a task switch sets CR0.TS`
    EQ dword [b_a_ebx], 0xA5A5A5A5, `the outgoing task's EBX saved in its TSS`
    EQ dword [b_a_eip], .after_b, `the outgoing task's EIP saved in its TSS (after the CALL)`
    EQ dword [TSS_BASE + T_DS], SEL_DATA, `the outgoing task's DS saved in its TSS`
    TYPE_OF SEL_TSS_B
    EQ eax, 9, `IRET from a nested task clears its busy bit`
    TYPE_OF SEL_TSS
    EQ eax, 0xB, `IRET back leaves the returning-to task busy`
    pushfd
    pop eax
    and eax, 0x4000
    EQ eax, 0, `back in the caller: NT as it was (clear)`
    mov eax, [TSS_B + T_EFLAGS]
    and eax, 0x4000
    EQ eax, 0, `IRET saves the nested task's EFLAGS with NT clear`
    call SEL_TSS_B:0
    EQ dword [b_runs], 2, `a task called again resumes after its IRET`

    ; ---- JMP to a TSS and back ----------------------------------------------------------------
    jmp SEL_TSS_C:0
.after_c:
    EQ dword [c_tr], SEL_TSS_C, `JMP to a TSS runs the task`
    mov eax, [c_flags]
    and eax, 0x4000
    EQ eax, 0, `JMP to a TSS leaves NT clear`
    EQ dword [c_link], 0x1234, `JMP to a TSS writes no back link`
    EQ dword [c_type_a], 9, `JMP to a TSS clears the old task's busy bit`
    EQ dword [c_type_self], 0xB, `JMP to a TSS marks the new task busy`
    TYPE_OF SEL_TSS_C
    EQ eax, 9, `JMP back: the task left is available again`
    TYPE_OF SEL_TSS
    EQ eax, 0xB, `JMP back: the task jumped to is busy again`
    str ax
    movzx eax, ax
    EQ eax, SEL_TSS, `JMP back: TR names the first task again`

    ; ---- busy checks ----------------------------------------------------------------------------
    TRY .call_busy
    call SEL_TSS:0
.call_busy:
    EXPECT_EXC `CALL to a busy TSS is #GP(selector)`, 13, SEL_TSS
    TRY .jmp_busy
    jmp SEL_TSS:0
.jmp_busy:
    EXPECT_EXC `JMP to a busy TSS is #GP(selector)`, 13, SEL_TSS
    mov dword [TSS_BASE + T_LINK], SEL_TSS_C
    TRY .iret_avail
    pushfd
    or dword [esp], 0x4000
    popfd
    iretd
.iret_avail:
    mov dword [TSS_BASE + T_LINK], 0
    EXPECT_EXC `IRET with NT to an available (not busy) TSS is #TS(selector)`, 10, SEL_TSS_C
    TRY .small
    call SEL_TSS_SMALL:0
.small:
    EXPECT_EXC `CALL to a TSS with a limit below 67h is #TS(selector)`, 10, SEL_TSS_SMALL
    TRY .np
    call SEL_TSS_NP:0
.np:
    EXPECT_EXC `CALL to a not-present TSS is #NP(selector)`, 11, SEL_TSS_NP
    TRY .r3_tss
    mov edx, SEL_CODE32_R3 | 3
    mov ebx, r3_call_tss
    mov ecx, STACK3_TOP
    call enter_ring3
.r3_tss:
    EXPECT_EXC `ring 3 CALL to a DPL 0 TSS is #GP(selector)`, 13, SEL_TSS_B
    TRY .r3_gate
    mov edx, SEL_CODE32_R3 | 3
    mov ebx, r3_call_task_gate0
    mov ecx, STACK3_TOP
    call enter_ring3
.r3_gate:
    EXPECT_EXC `ring 3 CALL through a DPL 0 task gate is #GP(gate)`, 13, GATE_TASK_E

    ; ---- task gates, and an LDT --------------------------------------------------------------------
    call GATE_TASK_E:0
    EQ dword [e_runs], 1, `CALL through a task gate in the GDT runs the task`
    EQ dword [e_tr], SEL_TSS_E, `task gate: TR names the gate's TSS`
    EQ dword [e_link], SEL_TSS, `task gate: the back link names the caller`
    EQ dword [e_ldtr], SEL_LDT, `the new task's LDT is loaded from its TSS`
    EQ dword [e_ldt_val], LDT_MARK, `a segment from the new task's LDT loads`
    sldt ax
    movzx eax, ax
    EQ eax, 0, `back in the caller: its own (null) LDT again`
    int 0x60
    EQ dword [e_runs], 2, `INT 60h through a task gate in the IDT runs the task`
    EQ dword [e_link], SEL_TSS, `INT through a task gate: the back link names the interrupted task`
    mov eax, [e_flags]
    and eax, 0x4000
    EQ eax, 0x4000, `INT through a task gate: NT set in the handler task`

    ; ---- a 16-bit TSS ---------------------------------------------------------------------------------
    call SEL_TSS_F:0
    EQ dword [f_ax], 0xF16F, `CALL to a 16-bit TSS: registers from the 16-bit TSS`
    EQ dword [f_tr], SEL_TSS_F, `CALL to a 16-bit TSS: TR names it`
    EQ dword [f_cs], SEL_CODE16, `CALL to a 16-bit TSS: CS from it (16-bit code)`
    EQ dword [f_link], SEL_TSS, `CALL to a 16-bit TSS: the back link`
    mov eax, [f_flags]
    and eax, 0x4000
    EQ eax, 0x4000, `CALL to a 16-bit TSS: NT set`
    TYPE_OF SEL_TSS_F
    EQ eax, 1, `16-bit IRET back: the 16-bit TSS is available again`

    ; ---- #DF through a task gate ------------------------------------------------------------------------
    IDT_ATTR 11, 0x0E                   ; #NP not present
    IDT_ATTR 0x61, 0x0E                 ; INT 61h not present
    mov ebx, 0xDFDFDFDF
    int 0x61                            ; #NP, whose delivery raises #NP: #DF
.df_back:
    IDT_ATTR 11, 0x8E
    IDT_ATTR 0x61, 0x8E
    EQ dword [d_runs], 1, `#NP while delivering #NP: #DF through the task gate at vector 8`
    EQ dword [d_err], 0, `#DF pushes error code 0 on the #DF task's stack`
    EQ dword [d_esp], STACK_D - 4, `#DF task: its own stack from its TSS, the error code on it`
    EQ dword [d_tr], SEL_TSS_D, `#DF task: TR names it`
    EQ dword [d_link], SEL_TSS, `#DF task: the back link names the faulting task`
    EQ ebx, 0xDFDFDFDF, `IRET from the #DF task resumes the faulting task's registers`
    call finish32

; ---- the tasks --------------------------------------------------------------------------------------
task_b:
    mov [b_eax], eax
    mov [b_esp], esp
    inc dword [b_runs]
    str ax
    movzx eax, ax
    mov [b_tr], eax
    pushfd
    pop eax
    mov [b_flags], eax
    movzx eax, word [TSS_B + T_LINK]
    mov [b_link], eax
    TYPE_OF SEL_TSS_B
    mov [b_type_self], eax
    TYPE_OF SEL_TSS
    mov [b_type_a], eax
    mov eax, cr0
    mov [b_cr0], eax
    mov eax, [TSS_BASE + T_EBX]
    mov [b_a_ebx], eax
    mov eax, [TSS_BASE + T_EIP]
    mov [b_a_eip], eax
    iretd
    inc dword [b_runs]
    iretd
    jmp $

task_c:
    str ax
    movzx eax, ax
    mov [c_tr], eax
    pushfd
    pop eax
    mov [c_flags], eax
    movzx eax, word [TSS_C + T_LINK]
    mov [c_link], eax
    TYPE_OF SEL_TSS
    mov [c_type_a], eax
    TYPE_OF SEL_TSS_C
    mov [c_type_self], eax
    jmp SEL_TSS:0
    jmp $

task_e:
    inc dword [e_runs]
    str ax
    movzx eax, ax
    mov [e_tr], eax
    sldt ax
    movzx eax, ax
    mov [e_ldtr], eax
    movzx eax, word [TSS_E + T_LINK]
    mov [e_link], eax
    pushfd
    pop eax
    mov [e_flags], eax
    mov ax, LDT_DATA
    mov fs, ax
    mov eax, [fs:0]
    mov [e_ldt_val], eax
    iretd
    jmp task_e

task_d:
    mov [d_esp], esp
    pop eax
    mov [d_err], eax
    inc dword [d_runs]
    str ax
    movzx eax, ax
    mov [d_tr], eax
    movzx eax, word [TSS_D + T_LINK]
    mov [d_link], eax
    mov dword [TSS_BASE + T_EIP], entry.df_back ; the faulting task continues there
    iretd
    jmp $

r3_call_tss:
    call SEL_TSS_B:0
    int RING3_DONE
r3_call_task_gate0:
    call GATE_TASK_E:0
    int RING3_DONE

bits 16
task_f:
    mov [f_ax], ax
    str ax
    mov [f_tr], ax
    mov ax, cs
    mov [f_cs], ax
    mov ax, [TSS_F + T_LINK]
    mov [f_link], ax
    pushf
    pop ax
    mov [f_flags], ax
    iret
    jmp $

; make_tss32 (real mode): a 32-bit TSS at DI with EIP = EAX, ESP = EBX, EAX = ECX, LDT = DX,
; EFLAGS 2, CS = SEL_CODE32, other segments SEL_DATA, SS0:ESP0 = SEL_DATA:STACK0_TSS_TOP.
make_tss32:
    push eax
    push di
    push cx
    xor ax, ax
    mov cx, 0x68 / 2
    rep stosw
    pop cx
    pop di
    pop eax
    mov [di + T_EIP], eax
    mov dword [di + T_EFLAGS], 2
    mov [di + 0x28], ecx
    mov [di + 0x38], ebx
    mov word [di + 0x48], SEL_DATA                  ; ES
    mov word [di + 0x4C], SEL_CODE32                ; CS
    mov word [di + 0x50], SEL_DATA                  ; SS
    mov word [di + 0x54], SEL_DATA                  ; DS
    mov word [di + 0x58], SEL_DATA                  ; FS
    mov word [di + 0x5C], SEL_DATA                  ; GS
    mov [di + 0x60], dx                             ; LDT
    mov dword [di + 4], STACK0_TSS_TOP
    mov dword [di + 8], SEL_DATA
    mov word [di + 0x66], 0x68
    ret

    ROM_END
