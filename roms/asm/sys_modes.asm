; sys_modes: the processor's operating modes and the ways between them. Real mode, then
; 16-bit and 32-bit protected mode (segment bases, limits and types, selector faults), back
; to real mode keeping a 4 GiB limit (unreal mode), PAE with 4-level paging into long mode
; (64-bit code, a compatibility-mode code segment, the 64-bit IDT), back out of long mode to
; protected and real mode; virtual-8086 mode entered with IRET from ring 0: real-mode code in
; a V86 task, INT n and CLI trapping to the ring-0 monitor at IOPL 0, I/O through the TSS
; I/O permission bitmap, INT n through the IDT at IOPL 3.
;
; Reference: Intel SDM vol. 3, 9.8-9.9 (mode switching), 3.4-3.5 and 5.1-5.6 (segments),
; 20.1-20.3 (real-address mode, virtual-8086 mode), 2.2.1 and 9.8.5 (IA-32e mode).

%define ROM_NAME "sys_modes"
%include "inc/ferrite.inc"
%include "inc/sys.inc"

SEL_LOW16       equ SEL_FREE + 0x00 ; 16-bit data, base 0x20000, limit 0xFFF
SEL_RO          equ SEL_FREE + 0x08 ; read-only data, base 0, limit 0xFFFF
SEL_NP          equ SEL_FREE + 0x10 ; not-present data
SEL_XO          equ SEL_FREE + 0x18 ; execute-only code
SEL_LOW32       equ SEL_FREE + 0x20 ; 32-bit flat data with base 0x20000 (64-bit mode ignores it)

MARK16          equ 0x16161616
MARK32          equ 0xCAFEBABE
BIG_ADDR        equ 0x300000        ; 3 MiB: needs more than a 64 KiB segment
V86_DATA        equ 0x20000         ; V86 code runs with DS = 0x2000
V86_STACK       equ 0xB000          ; SS:SP = 0000:B000 in V86 mode
V86_LOG         equ 0x20100         ; monitor log: 8 events of 4 dwords

ROM_RAM v86_events, 4
ROM_RAM v86_ret_esp, 4
ROM_RAM v86_entry_ds, 4
ROM_RAM compat_push, 4
ROM_RAM compat_dec, 4
ROM_RAM compat_efer, 4

entry:
    INIT
    call build_tables
    PRINT `sys_modes: real, protected, long and virtual-8086 mode and the ways between them\r\n`

    DESC SEL_LOW16, 0x20000, 0xFFF, 0x93, 0x0
    DESC SEL_RO, 0, 0xFFFF, 0x91, 0x0
    DESC SEL_NP, 0, 0xFFFF, 0x13, 0x0
    DESC SEL_XO, 0xF0000, 0xFFFF, 0x99, 0x4
    DESC SEL_LOW32, 0x20000, 0xFFFFF, 0x93, 0xC

    ; ---- real mode ------------------------------------------------------------------------
    smsw ax
    movzx eax, ax
    and eax, 1
    EQ eax, 0, `real mode at reset: CR0.PE clear`
    mov ax, 0x2000
    mov es, ax
    mov dword [es:0], MARK16
    mov dword [es:0x900], 0x22222222
    xor ax, ax
    mov es, ax
    mov dword [0x900], 0x11111111

    ; ---- 16-bit protected mode --------------------------------------------------------------
    lgdt [cs:gdtr]
    lidt [cs:idtr32]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp SEL_CODE16:pm16
pm16:
    mov ax, SEL_DATA16
    mov ds, ax
    mov es, ax
    mov ss, ax
    smsw ax
    movzx eax, ax
    and eax, 1
    EQ eax, 1, `16-bit protected mode: CR0.PE set`
    mov ax, cs
    movzx eax, ax
    EQ eax, SEL_CODE16, `16-bit protected mode: CS holds the selector of the far jump`
    mov bx, sp
    push ax
    sub bx, sp
    pop ax
    movzx eax, bx
    EQ eax, 2, `16-bit code segment: PUSH r16 moves SP by 2`
    smsw ax
    and al, ~1
    lmsw ax
    smsw ax
    movzx eax, ax
    and eax, 1
    EQ eax, 1, `LMSW cannot clear CR0.PE`
    mov ax, SEL_LOW16
    mov fs, ax
    mov eax, [fs:0]
    EQ eax, MARK16, `16-bit protected mode: the segment base comes from the descriptor`
    TRY .past_limit
    mov al, [fs:0x1000]
.past_limit:
    EXPECT_EXC `16-bit protected mode: read past the segment limit is #GP(0)`, 13, 0
    TRY .ro_write
    mov ax, SEL_RO
    mov gs, ax
    mov byte [gs:0x904], 1
.ro_write:
    EXPECT_EXC `write through a read-only data segment is #GP(0)`, 13, 0
    jmp SEL_CODE32:pm32

    ; ---- 32-bit protected mode --------------------------------------------------------------
bits 32
pm32:
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    movzx esp, sp
    mov ebx, esp
    push eax
    sub ebx, esp
    pop eax
    EQ ebx, 4, `32-bit code segment: PUSH r32 moves ESP by 4`
    mov dword [BIG_ADDR], MARK32
    mov eax, [BIG_ADDR]
    EQ eax, MARK32, `32-bit protected mode: a flat 4 GiB segment reaches 3 MiB`
    TRY .past_gdt
    mov ax, GDT_LIMIT + 1
    mov ds, ax
.past_gdt:
    EXPECT_EXC `MOV DS with a selector past the GDT limit is #GP(selector)`, 13, GDT_LIMIT + 1
    TRY .code_ss
    mov ax, SEL_CODE32
    mov ss, ax
.code_ss:
    EXPECT_EXC `MOV SS with a code selector is #GP(selector)`, 13, SEL_CODE32
    TRY .xo_ds
    mov ax, SEL_XO
    mov ds, ax
.xo_ds:
    EXPECT_EXC `MOV DS with an execute-only code selector is #GP(selector)`, 13, SEL_XO
    TRY .np_es
    mov ax, SEL_NP
    mov es, ax
.np_es:
    EXPECT_EXC `MOV ES with a not-present segment is #NP(selector)`, 11, SEL_NP
    TRY .null_ds
    xor eax, eax
    mov ds, ax
    mov eax, [0x900]
.null_ds:
    EXPECT_EXC `a null DS loads, and using it is #GP(0)`, 13, 0
    TRY .rpl_dpl
    mov ax, SEL_DATA | 3
    mov ss, ax
.rpl_dpl:
    EXPECT_EXC `MOV SS with RPL != CPL is #GP(selector)`, 13, SEL_DATA

    ; ---- back to real mode, keeping a 4 GiB limit in FS ---------------------------------------
    mov ax, SEL_DATA
    mov fs, ax
    jmp SEL_CODE16:.to_real16
bits 16
.to_real16:
    mov ax, SEL_DATA16
    mov ds, ax
    mov es, ax
    mov gs, ax
    mov ss, ax
    mov eax, cr0
    and al, ~1
    mov cr0, eax
    jmp 0xF000:.real
.real:
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov gs, ax
    mov ss, ax
    lidt [cs:idtr_real]
    smsw ax
    movzx eax, ax
    and eax, 1
    EQ eax, 0, `back in real mode: CR0.PE clear`
    mov eax, [fs:dword BIG_ADDR]
    EQ eax, MARK32, `unreal mode: FS keeps its 4 GiB limit back in real mode`
    xor ax, ax
    mov fs, ax
    mov eax, [fs:dword BIG_ADDR]
    EQ eax, MARK32, `unreal mode: reloading FS in real mode changes its base, not its limit`
    TRY .ds_64k
    mov al, [dword 0x10000]
.ds_64k:
    EXPECT_EXC `real mode: an offset past a 64 KiB limit is #GP (vector 13)`, 13, NOERR
    TRY .int40
    int 0x40
.int40:
    EXPECT_EXC `real mode: INT 40h goes through the IVT`, 0x40, NOERR

    ; ---- PAE and 4-level paging into long mode ---------------------------------------------------
    call enter_pm32
bits 32
    ; PML4 0x10000 -> PDPT 0x11000 -> PD 0x12000: two 2 MiB pages map 0-4 MiB.
    mov edi, 0x10000
    xor eax, eax
    mov ecx, 3 * 1024
    rep stosd
    mov dword [0x10000], 0x11003
    mov dword [0x11000], 0x12003
    mov dword [0x12000], 0x000083
    mov dword [0x12008], 0x200083
    mov eax, cr4
    or eax, 0x20                        ; PAE
    mov cr4, eax
    mov eax, 0x10000
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100                       ; LME
    wrmsr
    rdmsr
    and eax, 0x500
    EQ eax, 0x100, `EFER.LME set, LMA still clear before paging`
    lidt [cs:idtr64]
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    ; Compatibility mode now: CS is still the 32-bit SEL_CODE32 (its base still applies).
    mov ecx, 0xC0000080
    rdmsr
    mov esi, eax
    mov eax, 5
    db 0x48                             ; DEC EAX here; a REX prefix only in 64-bit mode
    nop
    mov ebx, eax
    EQ ebx, 4, `compatibility mode: 48h is DEC EAX, not REX.W`
    and esi, 0x500
    EQ esi, 0x500, `CR0.PG with EFER.LME: long mode active (LMA) in compatibility mode`
    jmp SEL_CODE64:long64

section .text64
bits 64
long64:
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rax, 0x123456789ABCDEF0
    mov r15, rax
    ror r15, 32
    EQ r15, 0x9ABCDEF012345678, `64-bit mode: 64-bit registers and R8-R15`
    mov rbx, rsp
    push rax
    sub rbx, rsp
    pop rax
    EQ rbx, 8, `64-bit mode: PUSH moves RSP by 8`
    lea rax, [rel long64]
    EQ rax, long64, `64-bit mode: RIP-relative addressing`
    mov ax, cs
    movzx eax, ax
    EQ rax, SEL_CODE64, `64-bit mode: CS is the L=1 selector`
    mov ax, SEL_LOW32
    mov ds, ax
    mov eax, [0x900]
    mov bx, SEL_DATA
    mov ds, bx
    EQ rax, 0x11111111, `64-bit mode ignores the DS base`
    TRY .noncanon
    mov rax, 0x0000800000000000
    mov bl, [rax]
.noncanon:
    EXPECT_EXC `64-bit mode: a non-canonical address is #GP(0)`, 13, 0
    TRY .lme_off
    mov ecx, 0xC0000080
    rdmsr
    and eax, ~0x100
    wrmsr
.lme_off:
    EXPECT_EXC `paging on: WRMSR changing EFER.LME is #GP(0)`, 13, 0
    call far dword [rel compat_ptr]
    EQD dword [compat_push], 4, `far CALL to a compatibility-mode segment: PUSH moves ESP by 4`
    EQD dword [compat_dec], 4, `compatibility mode called from 64-bit code: 48h is DEC EAX`
    mov eax, [compat_efer]
    and eax, 0x400
    EQ rax, 0x400, `compatibility mode: EFER.LMA set`
    TRY .compat_ud
    call far dword [rel compat_ud_ptr]
.compat_ud:
    EXPECT_EXC `#GP in compatibility mode goes through the 64-bit IDT`, 13, GDT_LIMIT + 1
    mov eax, [exc_cs]
    EQ rax, SEL_CODE32, `#GP in compatibility mode: the 64-bit frame holds the 32-bit CS`
    ; Leave long mode: to compatibility mode, then paging off.
    jmp far dword [rel leave_ptr]

compat_ptr:     dd compat_fn
                dw SEL_CODE32
compat_ud_ptr:  dd compat_ud
                dw SEL_CODE32
leave_ptr:      dd leave_long
                dw SEL_CODE32

section .text
bits 32
compat_fn:
    mov ebx, esp
    push eax
    sub ebx, esp
    pop eax
    mov [compat_push], ebx
    mov eax, 5
    db 0x48                             ; DEC EAX in compatibility mode
    nop
    mov [compat_dec], eax
    mov ecx, 0xC0000080
    rdmsr
    mov [compat_efer], eax
    retf

compat_ud:
    mov ax, GDT_LIMIT + 1
    mov ds, ax

leave_long:
    mov eax, cr0
    and eax, 0x7FFFFFFF
    mov cr0, eax
    mov ecx, 0xC0000080
    rdmsr
    and eax, ~0x100
    wrmsr
    lidt [cs:idtr32]
    mov ax, SEL_DATA
    mov ss, ax
    rdmsr
    and eax, 0x500
    EQ eax, 0, `out of long mode: EFER.LME and LMA clear`
    mov eax, cr0
    and eax, 0x80000001
    EQ eax, 1, `out of long mode: protected mode without paging`
    TRY .gp32
    mov ax, GDT_LIMIT + 1
    mov ds, ax
.gp32:
    EXPECT_EXC `out of long mode: exceptions use the 32-bit IDT again`, 13, GDT_LIMIT + 1
    mov eax, cr4
    and eax, ~0x20
    mov cr4, eax
    call leave_pm32
bits 16
    smsw ax
    movzx eax, ax
    and eax, 1
    EQ eax, 0, `from long mode back to real mode: CR0.PE clear`
    TRY .int41
    int 0x41
.int41:
    EXPECT_EXC `from long mode back to real mode: INT 41h through the IVT`, 0x41, NOERR

    ; ---- virtual-8086 mode -----------------------------------------------------------------------
    ; The main TSS with an I/O bitmap for ports 0-3FFh (all denied but 3FFh) and its end byte.
    DESC SEL_TSS, TSS_BASE, 0x68 + 0x80, 0x89, 0x0
    mov word [TSS_BASE + 0x66], 0x68
    mov di, TSS_BASE + 0x68
    mov al, 0xFF
    mov cx, 0x81
    rep stosb
    and byte [TSS_BASE + 0x68 + 0x3FF / 8], 0x7F    ; allow 3FFh (UART scratch register)
    IDT_ATTR 0x32, 0xEE                             ; INT 32h allowed from ring 3 / V86
    IDT_ATTR 0x33, 0x6E                             ; INT 33h: DPL 3 but not present
    call enter_pm32
bits 32
    mov ax, SEL_TSS
    ltr ax
    mov edi, V86_DATA
    xor eax, eax
    mov ecx, 8
    rep stosd
    mov dword [v86_events], 0
    mov dword [exc_hook], v86_monitor
    mov eax, 0x00020002                 ; VM, IOPL 0
    mov ebx, v86_code
    call run_v86
    mov eax, 0x00023002                 ; VM, IOPL 3
    mov ebx, v86_code_iopl3
    call run_v86
    mov dword [exc_hook], 0

    EQ dword [v86_events], 7, `V86: the monitor saw 7 events`
    EQ dword [V86_DATA], 0xF000, `V86: IRET from ring 0 with VM set runs real-mode code at F000`
    EQ dword [V86_DATA + 4], 0x8686, `V86: DS base is the selector times 16`
    EQ dword [V86_DATA + 8], 0x5A, `V86: IN/OUT to a port the TSS bitmap allows`
    EQ dword [V86_DATA + 12], 1, `V86: the monitor resumed the task after each #GP`
    ; event 0: INT 30h at IOPL 0
    EQ dword [V86_LOG + 0], 13, `V86, IOPL 0: INT n is #GP`
    EQ dword [V86_LOG + 4], 0, `V86, IOPL 0: INT n #GP error code 0`
    EQ dword [V86_LOG + 8], 0x30CD, `V86, IOPL 0: #GP points at the INT 30h`
    mov eax, [V86_LOG + 12]
    and eax, 0x23000
    EQ eax, 0x20000, `V86: the frame's EFLAGS has VM set, IOPL 0`
    EQ dword [v86_entry_ds], 0, `V86: DS is null in the ring-0 handler`
    EQ dword [V86_LOG + 0x100], 0x2000, `V86: the frame holds the V86 DS`
    EQ dword [V86_LOG + 0x104], STACK0_TSS_TOP - 36, `V86: the handler runs on the TSS ring-0 stack below GS, FS, DS, ES, SS, ESP, EFLAGS, CS, EIP`
    EQ dword [V86_LOG + 0x108], V86_STACK, `V86: the frame holds the V86 SP`
    ; event 1: IN from a denied port
    EQ dword [V86_LOG + 16], 13, `V86: IN from a port the TSS bitmap denies is #GP`
    movzx eax, byte [V86_LOG + 24]
    EQ eax, 0xEC, `V86: the #GP points at the IN`
    ; event 2: CLI
    EQ dword [V86_LOG + 32], 13, `V86, IOPL 0: CLI is #GP`
    movzx eax, byte [V86_LOG + 40]
    EQ eax, 0xFA, `V86, IOPL 0: the #GP points at the CLI`
    ; event 3: the end marker of the first run (INT 31h, #GP at IOPL 0)
    EQ dword [V86_LOG + 48], 13, `V86, IOPL 0: INT 31h is #GP too`
    ; event 4: INT 32h at IOPL 3 through the IDT
    EQ dword [V86_LOG + 64], 0x32, `V86, IOPL 3: INT 32h goes through the IDT (DPL 3 gate)`
    mov eax, [V86_LOG + 76]
    and eax, 0x23000
    EQ eax, 0x23000, `V86, IOPL 3: the frame's EFLAGS has VM and IOPL 3`
    ; event 5: INT 34h at IOPL 3 through a DPL 0 gate
    EQ dword [V86_LOG + 80], 13, `V86, IOPL 3: INT 34h through a DPL 0 gate is #GP`
    EQ dword [V86_LOG + 84], 0x34 * 8 + 2, `V86, IOPL 3: #GP error code names the IDT entry`
    ; event 6: the end marker (INT 33h, not present: #NP)
    EQ dword [V86_LOG + 96], 11, `V86, IOPL 3: INT 33h through a not-present gate is #NP`
    EQ dword [V86_LOG + 100], 0x33 * 8 + 2, `V86, IOPL 3: #NP error code names the IDT entry`
    EQ dword [V86_DATA + 16], 0x3002, `V86, IOPL 3: CLI and PUSHF work, FLAGS show IOPL 3`
    call finish32

; run_v86: EAX = EFLAGS, EBX = IP in segment F000. Runs the V86 code until the monitor sees
; the end of the run (INT 31h at IOPL 0, INT 33h at IOPL 3) and comes back here.
run_v86:
    mov [v86_ret_esp], esp
    push dword 0                        ; GS
    push dword 0                        ; FS
    push dword V86_DATA >> 4            ; DS
    push dword 0                        ; ES
    push dword 0                        ; SS
    push dword V86_STACK                ; ESP
    push eax                            ; EFLAGS
    push dword 0xF000                   ; CS
    push ebx                            ; EIP
    iretd
v86_back:
    mov esp, [v86_ret_esp]
    ret

; v86_monitor: exc_hook while V86 code runs. Stack: vector, error, EIP, CS, EFLAGS, ESP, SS,
; ES, DS, FS, GS. Logs (vector, error, opcode bytes at CS:IP, EFLAGS), emulates nothing but
; steps over INT n (2 bytes), IN AL,DX and CLI (1 byte), and ends the run on INT 31h/33h.
v86_monitor:
    mov [ss:v86_entry_ds], ds
    push eax
    push ebx
    push ecx
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov ecx, [v86_events]
    shl ecx, 4
    add ecx, V86_LOG
    mov eax, [esp + 12]                 ; vector
    and eax, 0xFF
    mov [ecx], eax
    mov eax, [esp + 16]                 ; error code
    mov [ecx + 4], eax
    movzx ebx, word [esp + 24]          ; CS
    shl ebx, 4
    add ebx, [esp + 20]                 ; + EIP
    movzx eax, word [ebx]
    mov [ecx + 8], eax
    mov eax, [esp + 28]                 ; EFLAGS
    mov [ecx + 12], eax
    cmp dword [v86_events], 0
    jne .logged
    movzx eax, word [esp + 44]          ; DS of the first event
    mov [V86_LOG + 0x100], eax
    lea eax, [esp + 20]                 ; the EIP slot
    mov [V86_LOG + 0x104], eax
    mov eax, [esp + 32]                 ; ESP
    mov [V86_LOG + 0x108], eax
.logged:
    inc dword [v86_events]
    cmp dword [ecx], 13
    je .gp
    cmp dword [ecx], 11
    je v86_back                         ; INT 33h: the end of the IOPL-3 run
    jmp .iret                           ; an interrupt through a DPL 3 gate
.gp:
    mov eax, [ecx + 8]
    cmp ax, 0x31CD
    je v86_back
    cmp al, 0xCD
    je .step2
    cmp al, 0xEC
    je .step1
    cmp al, 0xFA
    je .step1
    jmp v86_back                        ; anything else: stop, the checks will tell
.step2:
    inc dword [esp + 20]
.step1:
    inc dword [esp + 20]
.iret:
    pop ecx
    pop ebx
    pop eax
    add esp, 8
    iretd

bits 16
v86_code:
    mov ax, cs
    mov [0], ax
    mov word [4], 0x8686
    mov dx, 0x3FF
    mov al, 0x5A
    out dx, al
    mov al, 0
    in al, dx
    mov [8], al
    int 0x30
    mov dx, 0x3FE
    in al, dx
    cli
    mov byte [12], 1
    int 0x31
    jmp $

v86_code_iopl3:
    int 0x32
    cli
    pushf
    pop ax
    and ax, 0x3202
    mov [16], ax
    int 0x34
    int 0x33
    jmp $

    ROM_END
