; sys_debug: the debug registers and single-stepping in 32-bit protected mode. DR6/DR7 fixed
; bits and DR4/DR5 with and without CR4.DE; instruction breakpoints (a fault before the
; instruction) and RF on return from the handler (no second #DB, then armed again); RF pushed
; by a later fault on the same instruction; data breakpoints for writes and for reads and
; writes, with their lengths; I/O breakpoints (CR4.DE); DR6 bits (B0-B3, BS sticky); TF
; single-step counting instructions, across a taken jump and the MOV SS shadow; INT1 (ICEBP)
; against INT 1; general detect.
;
; One hook (db_hook) sees every exception while the tests run: it logs vector, EIP, DR6,
; pushed EFLAGS and DR7, and returns with IRET (setting RF in the frame if asked, clearing TF
; at the end of a single-step run, repairing EAX after a #GP if asked); other vectors go on
; to the TRY point.
;
; Reference: Intel SDM vol. 3, chapter 17 (17.2 debug registers, 17.3 debug exceptions,
; 17.3.1.1 RF), 6.8.3 (MOV SS shadow); vol. 2, INT1 and INT n.

%define ROM_NAME "sys_debug"
%include "inc/ferrite.inc"
%include "inc/sys.inc"

DB_LOG          equ 0x20000         ; 16 entries of 5 dwords: vector, EIP, DR6, EFLAGS, DR7
SNIP1           equ 0x30000         ; code in RAM for instruction breakpoints
SNIP2           equ 0x30010
SNIP3           equ 0x30020
LOG_SIZE        equ 20
DATA_BP         equ 0x31000         ; data breakpoint target (4 bytes) and +6 (2 bytes), a page
                                    ; of its own (QEMU 7.2 misfires on other data in the page)
DR6_CLEAR       equ 0xFFFE0FF0      ; DR6 as read after writing 0, bit 16 left out: it reads
                                    ; as 1 only on processors without RTM
TF              equ 0x100
RF              equ 0x10000

ROM_RAM log_n, 4
ROM_RAM set_rf, 4                   ; the hook sets RF in a #DB frame
ROM_RAM ss_end, 4                   ; EIP at which the hook clears TF
ROM_RAM gp_fix, 4                   ; if set, a #GP gets EAX = this and returns
ROM_RAM saved_dr6, 4

; LOG k, field: the dword `field` (0 vector, 4 EIP, 8 DR6, 12 EFLAGS, 16 DR7) of entry k.
%define LOG(k, field) dword [DB_LOG + (k) * LOG_SIZE + (field)]
%define L_VEC 0
%define L_EIP 4
%define L_DR6 8
%define L_FLAGS 12
%define L_DR7 16

; START_LOG: empty the log, clear DR6 and the hook's options.
%macro START_LOG 0
    mov dword [log_n], 0
    mov dword [set_rf], 0
    mov dword [ss_end], 0
    mov dword [gp_fix], 0
    xor eax, eax
    mov dr6, eax
%endmacro

%macro DISARM 0
    xor eax, eax
    mov dr7, eax
%endmacro

entry:
    INIT
    call build_tables
    PRINT `sys_debug: debug registers, RF, single-step, INT1, general detect\r\n`
    call enter_pm32
bits 32
    mov dword [DATA_BP], 0
    mov dword [DATA_BP + 4], 0
    mov dword [DATA_BP + 8], 0
    mov ax, SEL_TSS
    ltr ax
    mov edi, DB_LOG
    xor eax, eax
    mov ecx, 16 * LOG_SIZE / 4
    rep stosd

    ; ---- fixed bits, DR4/DR5 ----------------------------------------------------------------
    xor eax, eax
    mov dr6, eax
    mov eax, dr6
    and eax, ~0x10000
    EQ eax, DR6_CLEAR, `DR6 reads its reserved bits as 1 (FFFx0FF0h after writing 0)`
    xor eax, eax
    mov dr7, eax
    mov eax, dr7
    EQ eax, 0x400, `DR7 reads bit 10 as 1`
    mov eax, 0x55
    mov dr7, eax
    mov eax, dr5
    EQ eax, 0x455, `CR4.DE clear: DR5 is DR7`
    DISARM
    mov eax, cr4
    or eax, 8                           ; DE
    mov cr4, eax
    TRY .dr4
    mov eax, dr4
.dr4:
    EXPECT_EXC `CR4.DE set: MOV from DR4 is #UD`, 6, NOERR

    mov dword [exc_hook], db_hook

    ; ---- instruction breakpoint and RF ---------------------------------------------------------
    ; The breakpoints are on code in RAM (snippets called through SEL_FLAT32); QEMU 7.2 crashes
    ; on an instruction breakpoint in ROM.
    mov dword [SNIP1], 0x0000CB41                   ; inc ecx; retf
    mov dword [SNIP2], 0xFC754A41                   ; inc ecx; dec edx; jnz SNIP2
    mov dword [SNIP2 + 4], 0x000000CB               ; retf
    mov dword [SNIP3], 0x00CBD88E                   ; mov ds, ax; retf
    START_LOG
    mov dword [set_rf], 1
    mov eax, SNIP1
    mov dr0, eax
    mov eax, 0x00000001                 ; L0, execute, 1 byte
    mov dr7, eax
    xor ecx, ecx
    call SEL_FLAT32:SNIP1
    DISARM
    EQ LOG(0, L_VEC), 1, `instruction breakpoint: vector 1`
    EQ LOG(0, L_EIP), SNIP1, `instruction breakpoint: a fault, EIP at the instruction`
    mov eax, LOG(0, L_DR6)
    and eax, 0xE00F
    EQ eax, 1, `instruction breakpoint: DR6.B0 only`
    mov eax, LOG(0, L_FLAGS)
    and eax, RF
    EQ eax, 0, `instruction breakpoint #DB: the pushed EFLAGS has RF clear`
    EQ ecx, 1, `instruction breakpoint: the instruction runs once after the handler`
    EQ dword [log_n], 1, `IRET with RF set in the frame: the instruction runs with no second #DB`

    START_LOG
    mov dword [set_rf], 1
    mov eax, SNIP2
    mov dr0, eax
    mov eax, 0x00000001
    mov dr7, eax
    mov edx, 2
    xor ecx, ecx
    call SEL_FLAT32:SNIP2
    DISARM
    EQ dword [log_n], 2, `RF clears after the instruction: the breakpoint fires on the next pass`
    EQ ecx, 2, `instruction breakpoint in a loop: each pass runs once`

    ; RF pushed by a later fault: #DB, then #GP on the same instruction, then no second #DB.
    START_LOG
    mov dword [set_rf], 1
    mov dword [gp_fix], SEL_DATA
    mov eax, SNIP3
    mov dr0, eax
    mov eax, 0x00000001
    mov dr7, eax
    mov ax, GDT_LIMIT + 1
    call SEL_FLAT32:SNIP3
    mov ax, SEL_DATA
    mov ds, ax
    DISARM
    EQ dword [log_n], 2, `#DB, then #GP on the same instruction, then nothing more`
    EQ LOG(1, L_VEC), 13, `the instruction faults with #GP after its #DB`
    START_LOG
    mov dword [gp_fix], SEL_DATA
    mov ax, GDT_LIMIT + 1
    mov ds, ax
    EQ dword [log_n], 1, `a #GP with no breakpoint around`
    mov eax, LOG(0, L_FLAGS)
    and eax, RF
    EQ eax, RF, `a fault (#GP) pushes EFLAGS with RF set`
    START_LOG
    int 0x40
    DISARM
    mov eax, LOG(0, L_FLAGS)
    and eax, RF
    EQ eax, 0, `INT n pushes EFLAGS with RF clear`

    ; ---- data breakpoints ------------------------------------------------------------------------
    START_LOG
    mov eax, DATA_BP
    mov dr1, eax
    mov eax, 0x00D00004                 ; L1, write, 4 bytes
    mov dr7, eax
    mov dword [DATA_BP], 5
.dw1:
    mov eax, [DATA_BP]
    mov byte [DATA_BP + 3], 1
.dw2:
    mov byte [DATA_BP + 4], 1
    DISARM
    EQ dword [log_n], 2, `write breakpoint: two #DB (a dword write, a byte write inside)`
    EQ LOG(0, L_EIP), .dw1, `write breakpoint: a trap, EIP after the write`
    EQ dword [DATA_BP], 0x01000005, `write breakpoint: the write happened`
    mov eax, LOG(0, L_DR6)
    and eax, 0xE00F
    EQ eax, 2, `write breakpoint: DR6.B1`
    EQ LOG(1, L_EIP), .dw2, `write breakpoint: a byte write to the last byte of the range`
    START_LOG
    mov eax, DATA_BP
    mov dr3, eax
    mov eax, 0xF0000040                 ; L3, read/write, 4 bytes
    mov dr7, eax
    mov eax, [DATA_BP + 2]
.drw1:
    mov eax, [DATA_BP + 4]
    DISARM
    EQ dword [log_n], 1, `read/write breakpoint: a read that overlaps it, and not one next to it`
    EQ LOG(0, L_EIP), .drw1, `read/write breakpoint: a trap after the read`
    mov eax, LOG(0, L_DR6)
    and eax, 0xE00F
    EQ eax, 8, `read/write breakpoint: DR6.B3`
    START_LOG
    mov eax, DATA_BP + 6
    mov dr1, eax
    mov eax, 0x00500004                 ; L1, write, 2 bytes
    mov dr7, eax
    mov byte [DATA_BP + 8], 1
    mov byte [DATA_BP + 7], 1
.dw3:
    DISARM
    EQ dword [log_n], 1, `2-byte write breakpoint: the byte after it does not hit, the second byte does`
    EQ LOG(0, L_EIP), .dw3, `2-byte write breakpoint: EIP after the hit`

    ; ---- I/O breakpoints ---------------------------------------------------------------------------
    START_LOG
    mov eax, 0x3FF
    mov dr2, eax
    mov eax, 0x02000010                 ; L2, I/O, 1 byte
    mov dr7, eax
    mov dx, 0x3FE
    in al, dx
    mov dx, 0x3FF
    in al, dx
.io1:
    out dx, al
.io2:
    DISARM
    EQ dword [log_n], 2, `I/O breakpoint (CR4.DE): IN and OUT on the port, not on the port below`
    EQ LOG(0, L_EIP), .io1, `I/O breakpoint: a trap, EIP after the IN`
    EQ LOG(1, L_EIP), .io2, `I/O breakpoint: a trap, EIP after the OUT`
    mov eax, LOG(0, L_DR6)
    and eax, 0xE00F
    EQ eax, 4, `I/O breakpoint: DR6.B2`

    ; ---- single-step --------------------------------------------------------------------------------
    START_LOG
    mov dword [ss_end], .s_end
    pushfd
    or dword [esp], TF
    popfd
    nop
.s2:
    nop
.s3:
    jmp .s4
    nop
    nop
.s4:
    mov ax, ss
.s5:
    mov ss, ax
    nop
.s_end:
    mov eax, dr6
    mov [saved_dr6], eax
    EQ dword [log_n], 5, `TF: one #DB per instruction, none after MOV SS`
    EQ LOG(0, L_EIP), .s2, `TF: the first trap comes after the instruction after POPF`
    EQ LOG(1, L_EIP), .s3, `TF: a trap after each instruction`
    EQ LOG(2, L_EIP), .s4, `TF: a trap after a taken JMP reports the target`
    EQ LOG(3, L_EIP), .s5, `TF: a trap before MOV SS`
    EQ LOG(4, L_EIP), .s_end, `TF: MOV SS holds the trap back until after the next instruction`
    mov eax, LOG(0, L_DR6)
    and eax, 0x4000
    EQ eax, 0x4000, `TF: DR6.BS`
    pushfd
    pop eax
    and eax, TF
    EQ eax, 0, `the handler cleared TF in the frame: stepping stopped`
    ; BS stays set: a data breakpoint now reports B1 with BS still there.
    mov dword [log_n], 0
    mov eax, DATA_BP
    mov dr1, eax
    mov eax, 0x00D00004
    mov dr7, eax
    mov dword [DATA_BP], 7
    DISARM
    mov eax, LOG(0, L_DR6)
    and eax, 0x400F
    EQ eax, 0x4002, `DR6.BS is sticky: still set at a later data breakpoint, with B1`

    ; ---- INT1 (ICEBP) against INT 1 and INT3 ----------------------------------------------------------
    START_LOG
    TRY .icebp
    db 0xF1                             ; INT1
.icebp:
    END_TRY
    EQ dword [log_n], 1, `INT1 (F1h) raises one exception`
    EQ LOG(0, L_VEC), 1, `INT1 (F1h) raises #DB`
    EQ LOG(0, L_EIP), .icebp, `INT1: a trap, EIP after it`
    mov eax, LOG(0, L_DR6)
    and eax, ~0x10000
    EQ eax, DR6_CLEAR, `INT1 leaves DR6 alone`
    START_LOG
    TRY .r3_icebp
    mov edx, SEL_CODE32_R3 | 3
    mov ebx, r3_icebp
    mov ecx, STACK3_TOP
    call enter_ring3
.r3_icebp:
    END_TRY
    EQ LOG(0, L_VEC), 1, `INT1 at ring 3 through a DPL 0 gate: #DB, no privilege check`
    EQ LOG(1, L_VEC), RING3_DONE, `INT1 at ring 3: returns to ring 3`
    START_LOG
    TRY .r3_int1
    mov edx, SEL_CODE32_R3 | 3
    mov ebx, r3_int_1
    mov ecx, STACK3_TOP
    call enter_ring3
.r3_int1:
    EXPECT_EXC `INT 1 (CDh 01h) at ring 3 through a DPL 0 gate is #GP(IDT entry)`, 13, 1 * 8 + 2
    START_LOG
    TRY .r3_int3
    mov edx, SEL_CODE32_R3 | 3
    mov ebx, r3_int3
    mov ecx, STACK3_TOP
    call enter_ring3
.r3_int3:
    EXPECT_EXC `INT3 at ring 3 through a DPL 0 gate is #GP(IDT entry)`, 13, 3 * 8 + 2

    ; ---- general detect ----------------------------------------------------------------------------------
    START_LOG
    mov eax, 0x1234
    mov dr0, eax
    mov eax, 0x00002000                 ; GD
    mov dr7, eax
    xor eax, eax
.gd:
    mov eax, dr0
    EQ dword [log_n], 1, `general detect: MOV from DR0 with DR7.GD is #DB`
    EQ LOG(0, L_EIP), .gd, `general detect: a fault, EIP at the MOV`
    mov eax, LOG(0, L_DR6)
    and eax, 0xE00F
    EQ eax, 0x2000, `general detect: DR6.BD`
    mov eax, LOG(0, L_DR7)
    and eax, 0x2000
    EQ eax, 0, `general detect: the processor clears DR7.GD for the handler`
    mov eax, dr0
    EQ eax, 0x1234, `general detect: the MOV runs after the handler returns`
    mov dword [exc_hook], 0
    call finish32

; db_hook: exc_hook for the tests above. Stack: vector, error, EIP, CS, EFLAGS.
db_hook:
    push eax
    push ebx
    push ds
    mov ax, SEL_DATA
    mov ds, ax
    mov ebx, [log_n]
    cmp ebx, 16
    jae .logged
    imul ebx, ebx, LOG_SIZE
    add ebx, DB_LOG
    movzx eax, byte [esp + 12]
    mov [ebx + L_VEC], eax
    mov eax, [esp + 20]
    mov [ebx + L_EIP], eax
    mov eax, dr6
    mov [ebx + L_DR6], eax
    mov eax, [esp + 28]
    mov [ebx + L_FLAGS], eax
    mov eax, dr7
    mov [ebx + L_DR7], eax
.logged:
    inc dword [log_n]
    movzx eax, byte [esp + 12]
    cmp al, 1
    je .db
    cmp al, 0x40
    je .return
    cmp al, 13
    jne .resume
    cmp dword [gp_fix], 0
    je .resume
    mov eax, [gp_fix]
    mov [esp + 8], eax                  ; the interrupted code's EAX
    jmp .return
.db:
    cmp dword [log_n], 8                ; a breakpoint that keeps firing: disarm it
    jb .armed
    xor eax, eax
    mov dr7, eax
.armed:
    cmp dword [set_rf], 0
    je .no_rf
    or dword [esp + 28], RF
.no_rf:
    mov eax, [esp + 20]
    cmp eax, [ss_end]
    jne .return
    and dword [esp + 28], ~TF
.return:
    pop ds
    pop ebx
    pop eax
    add esp, 8
    iretd
.resume:
    pop ds
    pop ebx
    pop eax
    jmp exc_resume32

r3_icebp:
    db 0xF1
    int RING3_DONE
r3_int_1:
    db 0xCD, 0x01
    int RING3_DONE
r3_int3:
    int3
    int RING3_DONE

    ROM_END
