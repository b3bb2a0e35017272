; sys_fastcall: fast system calls and the MSRs around them. SYSEXIT to ring 3 and SYSENTER
; back (32-bit protected mode: the selectors, stack and entry point from the SYSENTER MSRs,
; IF cleared, the #GP cases); then in long mode SYSRET to 64-bit and to compatibility-mode
; ring 3 and SYSCALL back (STAR, LSTAR, FMASK, RCX and R11), SWAPGS with
; IA32_KERNEL_GS_BASE as a kernel entry uses it, the FS and GS base MSRs, RDTSCP with
; IA32_TSC_AUX. What Intel and AMD processors do differently (SYSCALL in compatibility mode,
; SYSENTER in long mode, SYSRET to a non-canonical RIP) is left out.
;
; Reference: Intel SDM vol. 2, SYSENTER, SYSEXIT, SYSCALL, SYSRET, SWAPGS, RDTSCP, RDMSR;
; vol. 3, 5.8.7-5.8.8 (fast system calls), 3.4.4.1 (FS and GS in 64-bit mode).

%define ROM_NAME "sys_fastcall"
%include "inc/ferrite.inc"
%include "inc/sys.inc"

; SYSENTER_CS = SE_BASE: kernel code and data, then user code and data (SYSEXIT: +16, +24).
SE_BASE         equ SEL_FREE + 0x00
; STAR[47:32] = SC_KERNEL: kernel 64-bit code, data. STAR[63:48] = SC_USER: user 32-bit code,
; data, 64-bit code (SYSRET: +0 or +16 for CS, +8 for SS).
SC_KERNEL       equ SEL_FREE + 0x20
SC_USER         equ SEL_FREE + 0x30
SEL_LOW         equ SEL_FREE + 0x48 ; data, base 0x30000

MSR_SYSENTER_CS equ 0x174
MSR_SYSENTER_ESP equ 0x175
MSR_SYSENTER_EIP equ 0x176
MSR_EFER        equ 0xC0000080
MSR_STAR        equ 0xC0000081
MSR_LSTAR       equ 0xC0000082
MSR_FMASK       equ 0xC0000084
MSR_FS_BASE     equ 0xC0000100
MSR_GS_BASE     equ 0xC0000101
MSR_KGS_BASE    equ 0xC0000102
MSR_TSC_AUX     equ 0xC0000103

SE_STACK        equ 0xE800          ; SYSENTER's ESP
PERCPU          equ 0x21000         ; IA32_KERNEL_GS_BASE: [0] kernel RSP, [8] user RSP
USER_GS         equ 0x22000         ; IA32_GS_BASE in user mode: [0] a marker
GS_MARK         equ 0x65656565
FS_MARK         equ 0x0F0F0F0F      ; at 0x20010
LOW_MARK        equ 0x30303030      ; at 0x30010
USER_RFLAGS     equ 0x2C3           ; what SYSRET gets in R11: IF, SF, ZF, CF, bit 1
FMASK           equ 0x700           ; SYSCALL clears TF, IF, DF

ROM_RAM k_esp_save, 8
ROM_RAM u_cs, 4
ROM_RAM u_ss, 4
ROM_RAM u_esp, 4
ROM_RAM u_flags, 8
ROM_RAM u_gsval, 4
ROM_RAM u_aux, 4
ROM_RAM k_cs, 4
ROM_RAM k_ss, 4
ROM_RAM k_esp, 8
ROM_RAM k_flags, 8
ROM_RAM k_eax, 8
ROM_RAM k_rcx, 8
ROM_RAM k_r11, 8
ROM_RAM k_gsbase, 8
ROM_RAM k_kgsbase, 8
ROM_RAM ext_edx, 4

; WRMSR32 msr, value (32-bit code): EDX:EAX = value (below 4 GiB).
%macro WRMSR32 2
    mov ecx, %1
    mov eax, %2
    xor edx, edx
    wrmsr
%endmacro

entry:
    INIT
    call build_tables
    PRINT `sys_fastcall: SYSENTER/SYSEXIT, SYSCALL/SYSRET, SWAPGS, FS/GS base MSRs, RDTSCP\r\n`
    DESC SE_BASE + 0x00, 0, 0xFFFFF, 0x9B, 0xC      ; kernel code 32
    DESC SE_BASE + 0x08, 0, 0xFFFFF, 0x93, 0xC      ; kernel data
    DESC SE_BASE + 0x10, 0, 0xFFFFF, 0xFB, 0xC      ; user code 32
    DESC SE_BASE + 0x18, 0, 0xFFFFF, 0xF3, 0xC      ; user data
    DESC SC_KERNEL + 0x00, 0, 0xFFFFF, 0x9B, 0xA    ; kernel code 64
    DESC SC_KERNEL + 0x08, 0, 0xFFFFF, 0x93, 0xC    ; kernel data
    DESC SC_USER + 0x00, 0, 0xFFFFF, 0xFB, 0xC      ; user code 32
    DESC SC_USER + 0x08, 0, 0xFFFFF, 0xF3, 0xC      ; user data
    DESC SC_USER + 0x10, 0, 0xFFFFF, 0xFB, 0xA      ; user code 64
    DESC SEL_LOW, 0x30000, 0xFFFF, 0x93, 0x0
    DESC SEL_TSS64, TSS_BASE, 0x67, 0x89, 0x0
    call enter_pm32
bits 32
    mov ax, SEL_TSS
    ltr ax
    mov dword [0x20010], FS_MARK
    mov dword [0x30010], LOW_MARK
    mov dword [USER_GS], GS_MARK

    ; ---- SYSEXIT and SYSENTER -------------------------------------------------------------------
    WRMSR32 MSR_SYSENTER_CS, SE_BASE
    WRMSR32 MSR_SYSENTER_ESP, SE_STACK
    WRMSR32 MSR_SYSENTER_EIP, ROM_LINEAR + sysenter_entry
    mov ecx, MSR_SYSENTER_EIP
    rdmsr
    EQ eax, ROM_LINEAR + sysenter_entry, `IA32_SYSENTER_EIP reads back`
    mov [k_esp_save], esp
    mov ecx, STACK3_TOP - 0x10
    mov edx, ROM_LINEAR + user_sysexit
    sti
    sysexit
sysenter_back:
    EQ dword [u_cs], SE_BASE + 0x10 + 3, `SYSEXIT: CS = SYSENTER_CS + 16, RPL 3`
    EQ dword [u_ss], SE_BASE + 0x18 + 3, `SYSEXIT: SS = SYSENTER_CS + 24, RPL 3`
    EQ dword [u_esp], STACK3_TOP - 0x10, `SYSEXIT: ESP = ECX`
    EQ dword [k_cs], SE_BASE, `SYSENTER: CS = IA32_SYSENTER_CS`
    EQ dword [k_ss], SE_BASE + 8, `SYSENTER: SS = IA32_SYSENTER_CS + 8`
    EQ dword [k_esp], SE_STACK, `SYSENTER: ESP = IA32_SYSENTER_ESP`
    EQ dword [k_eax], 0x5E5E5E5E, `SYSENTER: the general registers pass through`
    mov eax, [u_flags]
    and eax, 0x200
    EQ eax, 0x200, `SYSEXIT leaves EFLAGS alone (IF still set in ring 3)`
    mov eax, [k_flags]
    and eax, 0x200
    EQ eax, 0, `SYSENTER clears IF`
    TRY .sysexit3
    mov edx, SEL_CODE32_R3 | 3
    mov ebx, r3_sysexit
    mov ecx, STACK3_TOP
    call enter_ring3
.sysexit3:
    EXPECT_EXC `SYSEXIT at ring 3 is #GP(0)`, 13, 0
    WRMSR32 MSR_SYSENTER_CS, 0
    TRY .cs0
    sysenter
.cs0:
    EXPECT_EXC `SYSENTER with IA32_SYSENTER_CS = 0 is #GP(0)`, 13, 0

    ; ---- long mode -----------------------------------------------------------------------------------
    mov eax, 0x80000001
    cpuid
    mov [ext_edx], edx
    mov edi, 0x10000
    xor eax, eax
    mov ecx, 3 * 1024
    rep stosd
    mov dword [0x10000], 0x11007        ; user-accessible all the way down
    mov dword [0x11000], 0x12007
    mov dword [0x12000], 0x000087
    mov dword [0x12008], 0x200087
    mov dword [TSS_BASE + 4], STACK0_TSS_TOP        ; RSP0
    mov dword [TSS_BASE + 8], 0
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, 0x10000
    mov cr3, eax
    mov ecx, MSR_EFER
    rdmsr
    or eax, 0x100                       ; LME (SCE later)
    wrmsr
    lidt [cs:idtr64]
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    jmp SEL_CODE64:long64

section .text64
bits 64
long64:
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov ax, SEL_TSS64
    ltr ax
    TRY .no_sce
    syscall
.no_sce:
    EXPECT_EXC `SYSCALL with EFER.SCE clear is #UD`, 6, NOERR
    mov ecx, MSR_EFER
    rdmsr
    or eax, 1                           ; SCE
    wrmsr
    mov ecx, MSR_STAR
    xor eax, eax
    mov edx, (SC_USER << 16) | SC_KERNEL
    wrmsr
    mov ecx, MSR_LSTAR
    mov eax, syscall_entry
    xor edx, edx
    wrmsr
    mov ecx, MSR_FMASK
    mov eax, FMASK
    wrmsr
    mov ecx, MSR_KGS_BASE
    mov eax, PERCPU
    wrmsr
    mov ecx, MSR_GS_BASE
    mov eax, USER_GS
    wrmsr

    ; SYSRET to 64-bit ring 3, which does SYSCALL (handled, SYSRET back) then INT RING3_DONE.
    mov [PERCPU], rsp
    TRY .user64_done
    mov rcx, user64
    mov r11, USER_RFLAGS
    mov rsp, STACK3_TOP
    o64 sysret
.user64_done:
    END_TRY
    EQD dword [exc_vec], RING3_DONE, `SYSRET to 64-bit ring 3, SYSCALL and SYSRET again, back through INT`
    EQD dword [u_cs], SC_USER + 0x10 + 3, `SYSRET (64-bit): CS = STAR[63:48] + 16, RPL 3`
    EQD dword [u_ss], SC_USER + 0x08 + 3, `SYSRET: SS = STAR[63:48] + 8, RPL 3`
    mov rax, [u_flags]
    and rax, 0x3C7FD7
    EQ rax, USER_RFLAGS, `SYSRET: RFLAGS from R11`
    EQD dword [u_gsval], GS_MARK, `ring 3 reads GS:0 through IA32_GS_BASE`
    EQD dword [k_cs], SC_KERNEL, `SYSCALL: CS = STAR[47:32]`
    EQD dword [k_ss], SC_KERNEL + 8, `SYSCALL: SS = STAR[47:32] + 8`
    EQ qword [k_rcx], user64.after_syscall, `SYSCALL: RCX = RIP of the next instruction`
    EQ qword [k_r11], USER_RFLAGS | 0x400, `SYSCALL: R11 = RFLAGS (DF set by ring 3)`
    EQ qword [k_flags], (USER_RFLAGS | 0x400) & ~FMASK, `SYSCALL: RFLAGS AND NOT IA32_FMASK`
    EQ qword [k_eax], 0x5C5C5C5C, `SYSCALL: the general registers pass through`
    EQ qword [k_gsbase], PERCPU, `SWAPGS at kernel entry: GS.base = IA32_KERNEL_GS_BASE`
    EQ qword [k_kgsbase], USER_GS, `SWAPGS at kernel entry: IA32_KERNEL_GS_BASE = the user GS.base`
    mov ecx, MSR_GS_BASE
    rdmsr
    EQ rax, USER_GS, `SWAPGS before SYSRET: the user GS.base is back`

    ; SYSRET to compatibility mode.
    TRY .user32_done
    mov ecx, ROM_LINEAR + user_compat
    mov r11, 0x002
    mov rsp, STACK3_TOP
    sysret
.user32_done:
    END_TRY
    EQD dword [exc_vec], RING3_DONE, `SYSRET (32-bit) to compatibility-mode ring 3, back through INT`
    EQD dword [u_cs], SC_USER + 3, `SYSRET (32-bit): CS = STAR[63:48], RPL 3`
    TRY .sysret3
    mov rcx, r3_sysret
    mov r11, 0x002
    mov rsp, STACK3_TOP
    o64 sysret
.sysret3:
    EXPECT_EXC `SYSRET at ring 3 is #GP(0)`, 13, 0
    TRY .swapgs3
    mov rcx, r3_swapgs
    mov r11, 0x002
    mov rsp, STACK3_TOP
    o64 sysret
.swapgs3:
    EXPECT_EXC `SWAPGS at ring 3 is #GP(0)`, 13, 0

    ; ---- FS and GS bases --------------------------------------------------------------------------
    mov ecx, MSR_FS_BASE
    mov eax, 0x20000
    xor edx, edx
    wrmsr
    mov eax, [fs:0x10]
    EQ rax, FS_MARK, `FS:0x10 through IA32_FS_BASE = 0x20000`
    mov ecx, MSR_FS_BASE
    mov eax, 0xFFFE0000
    mov edx, 0xFFFFFFFF
    wrmsr
    mov eax, [fs:0x20010]
    mov ebx, [0x10]
    EQ rax, rbx, `a 64-bit FS base: the address wraps modulo 2^64`
    mov ax, SEL_LOW
    mov fs, ax
    mov ecx, MSR_FS_BASE
    rdmsr
    shl rdx, 32
    or rax, rdx
    EQ rax, 0x30000, `MOV FS loads the base from the descriptor; IA32_FS_BASE reads it`
    mov eax, [fs:0x10]
    EQ rax, LOW_MARK, `FS:0x10 through the descriptor's base`
    TRY .noncanon
    mov ecx, MSR_GS_BASE
    xor eax, eax
    mov edx, 0x00008000
    wrmsr
.noncanon:
    EXPECT_EXC `WRMSR of a non-canonical IA32_GS_BASE is #GP(0)`, 13, 0

    ; ---- RDTSCP ------------------------------------------------------------------------------------
    test dword [ext_edx], 1 << 27
    jnz .rdtscp
    SKIP `RDTSCP`, `CPUID.80000001h.EDX[27] clear`
    jmp .done
.rdtscp:
    mov ecx, MSR_TSC_AUX
    mov eax, 0xFEEDC0DE
    xor edx, edx
    wrmsr
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r8, rax
    mov rcx, -1
    rdtscp
    shl rdx, 32
    or rax, rdx
    EQ rcx, 0xFEEDC0DE, `RDTSCP: RCX = IA32_TSC_AUX, zero-extended`
    cmp rax, r8
    CHECK ae, `RDTSCP: the TSC is not below an earlier RDTSC`
    TRY .r3_rdtscp
    mov rcx, r3_rdtscp
    mov r11, 0x002
    mov rsp, STACK3_TOP
    o64 sysret
.r3_rdtscp:
    END_TRY
    EQD dword [u_aux], 0xFEEDC0DE, `RDTSCP at ring 3`
.done:
    jmp far dword [rel finish_ptr]

finish_ptr: dd finish32
            dw SEL_CODE32

; syscall_entry: the kernel side of SYSCALL, as a kernel does it: SWAPGS, the kernel stack
; from the per-CPU block, then SYSRET back.
syscall_entry:
    swapgs
    mov [gs:8], rsp
    mov rsp, [gs:0]
    mov [k_rcx], rcx
    mov [k_r11], r11
    mov [k_eax], rax
    pushfq
    pop qword [k_flags]
    mov [k_cs], cs
    mov [k_ss], ss
    push rcx
    push rdx
    mov ecx, MSR_GS_BASE
    rdmsr
    mov [k_gsbase], eax
    mov [k_gsbase + 4], edx
    mov ecx, MSR_KGS_BASE
    rdmsr
    mov [k_kgsbase], eax
    mov [k_kgsbase + 4], edx
    pop rdx
    pop rcx
    mov rsp, [gs:8]
    swapgs
    o64 sysret

; ---- ring 3, 64-bit ---------------------------------------------------------------------------
user64:
    pushfq
    pop qword [u_flags]
    mov [u_cs], cs
    mov [u_ss], ss
    mov eax, [gs:0]
    mov [u_gsval], eax
    std
    mov rax, 0x5C5C5C5C
    syscall
.after_syscall:
    cld
    int RING3_DONE
r3_sysret:
    o64 sysret
    int RING3_DONE
r3_swapgs:
    swapgs
    int RING3_DONE
r3_rdtscp:
    rdtscp
    mov [u_aux], ecx
    int RING3_DONE

; ---- 32-bit code run with flat CS (SYSEXIT, SYSENTER, SYSRET to compatibility mode) -----------
section .text
bits 32
user_sysexit:
    mov [u_cs], cs
    mov [u_ss], ss
    mov [u_esp], esp
    pushfd
    pop dword [u_flags]
    mov eax, 0x5E5E5E5E
    sysenter
sysenter_entry:
    mov [k_eax], eax
    mov [k_cs], cs
    mov [k_ss], ss
    mov [k_esp], esp
    pushfd
    pop dword [k_flags]
    mov esp, [k_esp_save]
    jmp SEL_CODE32:sysenter_back
user_compat:
    mov [u_cs], cs
    int RING3_DONE
r3_sysexit:
    sysexit

    ROM_END
