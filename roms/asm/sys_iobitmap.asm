; sys_iobitmap: I/O permissions and the IF rules outside ring 0. Port I/O at CPL > IOPL
; through the TSS I/O permission bitmap: allowed and denied ports, word and dword accesses
; that need every bit clear, accesses whose bits span two bitmap bytes, the all-ones byte that
; must follow the bitmap inside the TSS limit, ports past the limit, string I/O; CPL <= IOPL
; needing no bitmap (ring 0, ring 1 at IOPL 1, ring 3 at IOPL 3); CLI/STI faulting at CPL >
; IOPL, and POPF and IRET leaving IF (and IOPL) alone there instead of faulting.
;
; Port 3FFh (the UART's scratch register) is the byte port the bitmap allows; it reads back
; what was written. Word and dword accesses go to 315h-318h, where nothing sits (QEMU's UART
; model aborts on them). The other ports are only tried, never relied on for a value.
;
; Reference: Intel SDM vol. 1, 18.5 (protected-mode I/O, the I/O permission bitmap); vol. 3,
; 2.3 (IOPL); vol. 2, CLI, STI, POPF, IRET, IN, OUT, INS, OUTS.

%define ROM_NAME "sys_iobitmap"
%include "inc/ferrite.inc"
%include "inc/sys.inc"

SEL_CODE_R1     equ SEL_FREE + 0x00
SEL_DATA_R1     equ SEL_FREE + 0x08
IOMAP           equ TSS_BASE + 0x68 ; the bitmap, right after the TSS
FULL_LIMIT      equ 0x68 + 0x2000   ; every port mapped, the all-ones byte inside the limit
SHORT_LIMIT     equ 0x68 + 0x80     ; ports 0-3FFh mapped, the all-ones byte (at 0x80) inside
CUT_LIMIT       equ 0x68 + 0x7F     ; ports 0-3FFh mapped, the all-ones byte outside the limit
R_BUF           equ 0xB800          ; ring-3 buffer for string I/O (on the ring-3 stack page)
IF              equ 0x200
IOPL3           equ 0x3000
IOPL1           equ 0x1000

ROM_RAM r_val, 4
ROM_RAM r_flags0, 4
ROM_RAM r_flags1, 4

; PORT_ALLOW port / PORT_DENY port: clear / set the port's bit in the bitmap.
%macro PORT_ALLOW 1
    and byte [IOMAP + (%1) / 8], ~(1 << ((%1) % 8))
%endmacro
%macro PORT_DENY 1
    or byte [IOMAP + (%1) / 8], 1 << ((%1) % 8)
%endmacro

; RUN code, level (1 or 3), EFLAGS: IRET to `code` at that level, with its stack and data
; segments, until it ends with INT RING3_DONE or faults (the exception is then in exc_*).
%macro RUN 3
    TRY %%back
    mov ebx, %1
%if %2 == 3
    mov edx, SEL_CODE32_R3 | 3
    mov esi, SEL_DATA_R3 | 3
    mov ecx, STACK3_TOP
%else
    mov edx, SEL_CODE_R1 | 1
    mov esi, SEL_DATA_R1 | 1
    mov ecx, STACK1_TOP
%endif
    mov eax, %3
    jmp to_ring
%%back:
    END_TRY
%endmacro

; RUNS name, code, level, EFLAGS: RUN and check it ended with INT RING3_DONE, no fault.
%macro RUNS 4
    RUN %2, %3, %4
    EQD dword [exc_vec], RING3_DONE, %1
%endmacro
; FAULTS name, code, level, EFLAGS: RUN and check it faulted with #GP(0).
%macro FAULTS 4
    RUN %2, %3, %4
    EQD dword [exc_vec], 13, %1, `: #GP`
    EQD dword [exc_err], 0, %1, `: error code 0`
%endmacro

entry:
    INIT
    call build_tables
    PRINT `sys_iobitmap: the TSS I/O permission bitmap, IOPL, CLI/STI/POPF/IRET at CPL > IOPL\r\n`
    DESC SEL_CODE_R1, ROM_LINEAR, 0xFFFF, 0xBB, 0x4
    DESC SEL_DATA_R1, 0, 0xFFFFF, 0xB3, 0xC
    call enter_pm32
bits 32
    ; The bitmap: every port denied, then 3FFh allowed.
    mov edi, IOMAP
    mov al, 0xFF
    mov ecx, 0x2001
    rep stosb
    mov word [TSS_BASE + 0x66], 0x68
    PORT_ALLOW 0x3FF
    mov eax, FULL_LIMIT
    call load_tss

    ; ---- the bitmap at CPL 3, IOPL 0 -----------------------------------------------------------
    mov dword [r_val], 0
    RUNS `ring 3, IOPL 0: OUT and IN on a port the bitmap allows`, r3_io_3ff, 3, 0x0002
    EQ dword [r_val], 0xA5, `ring 3, IOPL 0: IN reads back what OUT wrote (port 3FFh)`
    FAULTS `ring 3, IOPL 0: IN from a port the bitmap denies`, r3_in_3fe, 3, 0x0002
    FAULTS `ring 3, IOPL 0: OUT to a port the bitmap denies`, r3_out_3fe, 3, 0x0002
    ; Word and dword accesses on ports 315h-318h (nothing there; 317h and 318h have their
    ; bits in two different bitmap bytes).
    PORT_ALLOW 0x317
    FAULTS `ring 3: a word IN at 316h with 316h denied, 317h allowed`, r3_inw_316, 3, 0x0002
    FAULTS `ring 3: a word IN at 317h with 318h denied (bits in two bitmap bytes)`, r3_inw_317, 3, 0x0002
    PORT_ALLOW 0x318
    RUNS `ring 3: a word IN at 317h with 317h and 318h allowed (two bitmap bytes)`, r3_inw_317, 3, 0x0002
    PORT_ALLOW 0x315
    PORT_ALLOW 0x316
    RUNS `ring 3: a dword IN at 315h with 315h-318h allowed`, r3_ind_315, 3, 0x0002
    PORT_DENY 0x316
    FAULTS `ring 3: a dword IN at 315h with 316h denied`, r3_ind_315, 3, 0x0002
    mov dword [r_val], 0
    RUNS `ring 3: REP INSB from an allowed port`, r3_insb, 3, 0x0002
    EQ dword [r_val], 0xA5A5, `ring 3: REP INSB stored what the port gave`
    FAULTS `ring 3: OUTSB to a denied port`, r3_outsb_3fe, 3, 0x0002
    TRY .ring0_in
    mov dx, 0x3FE
    in al, dx
.ring0_in:
    EXPECT_NONE `ring 0, IOPL 0: IN from a denied port needs no bitmap (CPL <= IOPL)`

    ; ---- the limit and the all-ones byte ----------------------------------------------------------
    mov eax, SHORT_LIMIT
    call load_tss
    RUNS `TSS limit at the all-ones byte after ports 0-3FFh: 3FFh still allowed`, r3_io_3ff, 3, 0x0002
    FAULTS `TSS limit at the all-ones byte: 400h (in the all-ones byte) denied`, r3_in_400, 3, 0x0002
    FAULTS `TSS limit at the all-ones byte: 500h (past the limit) denied`, r3_in_500, 3, 0x0002
    mov eax, CUT_LIMIT
    call load_tss
    FAULTS `all-ones byte outside the TSS limit: 3FFh (last bitmap byte) denied`, r3_io_3ff, 3, 0x0002
    mov eax, FULL_LIMIT
    call load_tss
    mov word [TSS_BASE + 0x66], FULL_LIMIT + 1
    call reload_tss
    FAULTS `I/O map base past the TSS limit: no bitmap, every port denied`, r3_io_3ff, 3, 0x0002
    mov word [TSS_BASE + 0x66], 0x68
    call reload_tss

    ; ---- IOPL ---------------------------------------------------------------------------------------
    RUNS `ring 3, IOPL 3: IN from a port the bitmap denies`, r3_in_3fe, 3, IOPL3 | 0x0002
    RUNS `ring 1, IOPL 1: IN from a port the bitmap denies`, r3_in_3fe, 1, IOPL1 | 0x0002
    FAULTS `ring 1, IOPL 0: IN from a port the bitmap denies`, r3_in_3fe, 1, 0x0002
    RUNS `ring 1, IOPL 0: IN from a port the bitmap allows`, r3_io_3ff, 1, 0x0002

    ; ---- CLI, STI, POPF, IRET at CPL > IOPL ---------------------------------------------------------
    FAULTS `ring 3, IOPL 0: CLI`, r3_cli, 3, IF | 0x0002
    FAULTS `ring 3, IOPL 0: STI`, r3_sti, 3, 0x0002
    FAULTS `ring 1, IOPL 0: CLI`, r3_cli, 1, IF | 0x0002
    RUNS `ring 1, IOPL 1: CLI`, r3_cli, 1, IOPL1 | IF | 0x0002
    mov eax, [r_flags1]
    and eax, IF
    EQ eax, 0, `ring 1, IOPL 1: CLI clears IF`
    RUNS `ring 3, IOPL 3: CLI`, r3_cli, 3, IOPL3 | IF | 0x0002
    mov eax, [r_flags1]
    and eax, IF
    EQ eax, 0, `ring 3, IOPL 3: CLI clears IF`
    RUNS `ring 3, IOPL 0: POPF clearing IF and setting IOPL does not fault`, r3_popf, 3, IF | 0x0002
    mov eax, [r_flags1]
    and eax, IF | IOPL3
    EQ eax, IF, `ring 3, IOPL 0: POPF leaves IF and IOPL as they were`
    mov eax, [r_flags1]
    and eax, 1
    EQ eax, 1, `ring 3, IOPL 0: POPF still loads the other flags (CF)`
    RUNS `ring 3, IOPL 3: POPF clearing IF and IOPL`, r3_popf_iopl3, 3, IOPL3 | IF | 0x0002
    mov eax, [r_flags1]
    and eax, IF | IOPL3
    EQ eax, IOPL3, `ring 3, IOPL 3: POPF clears IF but cannot change IOPL`
    RUNS `ring 3, IOPL 0: IRET within ring 3 clearing IF does not fault`, r3_iret_if, 3, IF | 0x0002
    mov eax, [r_flags1]
    and eax, IF
    EQ eax, IF, `ring 3, IOPL 0: IRET leaves IF as it was`
    RUNS `ring 3: PUSHF shows IOPL`, r3_pushf, 3, IOPL3 | 0x0002
    mov eax, [r_flags0]
    and eax, IOPL3
    EQ eax, IOPL3, `ring 3: PUSHF shows IOPL 3`
    call finish32

; load_tss: EAX = new TSS limit. Rewrites the descriptor and reloads TR.
load_tss:
    mov [GDT_BASE + SEL_TSS], ax
    shr eax, 16
    and byte [GDT_BASE + SEL_TSS + 6], 0xF0
    or [GDT_BASE + SEL_TSS + 6], al
reload_tss:
    and byte [GDT_BASE + SEL_TSS + 5], ~2           ; not busy, so LTR takes it
    mov ax, SEL_TSS
    ltr ax
    ret

; to_ring: IRET from ring 0 to EDX:EBX with EFLAGS = EAX, SS:ESP = ESI:ECX, DS = ES = ESI.
to_ring:
    push eax
    mov eax, esi
    mov ds, ax
    mov es, ax
    pop eax
    push esi
    push ecx
    push eax
    push edx
    push ebx
    iretd

; ---- the code run at ring 3 (or 1): results go through SS, which is flat --------------------------
r3_io_3ff:
    mov dx, 0x3FF
    mov al, 0xA5
    out dx, al
    mov al, 0
    in al, dx
    mov [ss:r_val], al
    int RING3_DONE
r3_in_3fe:
    mov dx, 0x3FE
    in al, dx
    int RING3_DONE
r3_out_3fe:
    mov dx, 0x3FE
    out dx, al
    int RING3_DONE
r3_inw_316:
    mov dx, 0x316
    in ax, dx
    int RING3_DONE
r3_inw_317:
    mov dx, 0x317
    in ax, dx
    int RING3_DONE
r3_ind_315:
    mov dx, 0x315
    in eax, dx
    int RING3_DONE
r3_in_400:
    mov dx, 0x400
    in al, dx
    int RING3_DONE
r3_in_500:
    mov dx, 0x500
    in al, dx
    int RING3_DONE
r3_insb:
    mov dx, 0x3FF
    mov al, 0xA5
    out dx, al
    mov edi, r_val
    mov ecx, 2
    cld
    rep insb
    int RING3_DONE
r3_outsb_3fe:
    mov dx, 0x3FE
    mov esi, R_BUF
    outsb
    int RING3_DONE
r3_cli:
    cli
    pushfd
    pop dword [ss:r_flags1]
    int RING3_DONE
r3_sti:
    sti
    int RING3_DONE
r3_popf:
    pushfd
    pop eax
    and eax, ~IF
    or eax, IOPL3 | 1                   ; and CF
    push eax
    popfd
    pushfd
    pop dword [ss:r_flags1]
    int RING3_DONE
r3_popf_iopl3:
    pushfd
    pop eax
    and eax, ~(IF | IOPL3)
    push eax
    popfd
    pushfd
    pop dword [ss:r_flags1]
    int RING3_DONE
r3_iret_if:
    pushfd
    pop eax
    and eax, ~IF
    push eax
    push cs
    push dword .next
    iretd
.next:
    pushfd
    pop dword [ss:r_flags1]
    int RING3_DONE
r3_pushf:
    pushfd
    pop dword [ss:r_flags0]
    int RING3_DONE

    ROM_END
