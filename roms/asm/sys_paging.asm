; sys_paging: the three paging modes and what they check. 32-bit paging with 4 KiB and 4 MiB
; pages, PAE paging with 2 MiB pages, 4-level paging with 1 GiB pages; #PF error codes (P,
; W/R, U/S, RSVD, I/D) with CR2 for each case; accessed and dirty bits; CR0.WP; global pages
; surviving a CR3 load with CR4.PGE and INVLPG dropping them; NX; SMEP and SMAP where CPUID
; advertises them.
;
; Ring-3 code runs through an alias of the low 4 MiB with U/S set (linear 0x800000 up), so
; that the ring-0 code itself stays on supervisor pages (SMEP) and never touches user pages
; (SMAP).
;
; Reference: Intel SDM vol. 3, chapter 4 (4.3 32-bit paging, 4.4 PAE, 4.5 4-level, 4.6
; access rights, 4.7 page-fault exceptions, 4.8 accessed and dirty flags, 4.10 TLBs).

%define ROM_NAME "sys_paging"
%include "inc/ferrite.inc"
%include "inc/sys.inc"

SEL_CODE32_R3U  equ SEL_FREE + 0x00 ; ring-3 code, base 0x8F0000 (the user alias of the ROM)
SEL_FLAT32_R3   equ SEL_FREE + 0x08 ; ring-3 code, base 0, 4 GiB

PD32            equ 0x20000         ; 32-bit paging: page directory
PT32            equ 0x21000         ;   page table for 0x400000-0x7FFFFF (and 0x1000000 up)
PDPT_PAE        equ 0x22000         ; PAE: the four PDPTEs
PDPT_PAE_BAD    equ 0x22020         ;   another four, one with a reserved bit set
PD_PAE          equ 0x23000
PT_PAE          equ 0x24000         ;   page table for 0x400000-0x5FFFFF
PML4            equ 0x25000         ; 4-level paging
PDPT4           equ 0x26000
PD4             equ 0x27000
EMPTY4          equ 0x28000         ;   a page table with nothing present
USER_ALIAS      equ 0x800000        ; the low 4 MiB again, user-accessible
R3_STACK        equ USER_ALIAS + STACK3_TOP
USER_OUT        equ 0x400100        ; where ring-3 code leaves results (a user RW page)

; Physical frames behind the 4 KiB pages, each with a marker at offset 0x10.
FRAME0          equ 0x100000
FRAME6          equ 0x106000
FRAME7          equ 0x107000
MARK0           equ 0xA0A0A0A0
MARK6           equ 0x06060606
MARK7           equ 0x07070707
MARK900         equ 0x09000900      ; at physical 0x900
MARK_HI         equ 0x40400900      ; at physical 0x400900

PTE_P           equ 1
PTE_RW          equ 2
PTE_US          equ 4
PTE_PS          equ 0x80
PTE_G           equ 0x100

ROM_RAM cpuid7_ebx, 4
ROM_RAM ext_edx, 4

entry:
    INIT
    call build_tables
    PRINT `sys_paging: 32-bit, PAE and 4-level paging, #PF error codes, A/D, WP, global pages, NX, SMEP/SMAP\r\n`
    DESC SEL_CODE32_R3U, USER_ALIAS + ROM_LINEAR, 0xFFFF, 0xFB, 0x4
    DESC SEL_FLAT32_R3, 0, 0xFFFFF, 0xFB, 0xC
    mov dword [0x900], MARK900
    call enter_pm32
bits 32
    mov ax, SEL_TSS
    ltr ax
    mov eax, 7
    xor ecx, ecx
    cpuid
    mov [cpuid7_ebx], ebx
    mov eax, 0x80000001
    cpuid
    mov [ext_edx], edx

    ; ---- tables and frames ----------------------------------------------------------------------
    mov edi, PD32
    xor eax, eax
    mov ecx, 9 * 1024
    rep stosd
    mov dword [PD32 + 0 * 4], 0 | PTE_PS | PTE_RW | PTE_P
    mov dword [PD32 + 1 * 4], PT32 | PTE_US | PTE_RW | PTE_P
    mov dword [PD32 + 2 * 4], 0 | PTE_PS | PTE_US | PTE_RW | PTE_P
    mov dword [PD32 + 3 * 4], (1 << 21) | PTE_PS | PTE_RW | PTE_P     ; bit 21 reserved
    mov dword [PD32 + 4 * 4], PT32 | PTE_US | PTE_P                   ; read-only directory entry
    mov dword [PT32 + 0 * 4], FRAME0 | PTE_US | PTE_RW | PTE_P        ; 0x400000 user RW
    mov dword [PT32 + 1 * 4], 0x101000 | PTE_P                        ; 0x401000 supervisor RO
    ; 0x402000 not present
    mov dword [PT32 + 3 * 4], 0x103000 | PTE_RW | PTE_P               ; 0x403000 supervisor RW
    mov dword [PT32 + 4 * 4], 0x104000 | PTE_US | PTE_P               ; 0x404000 user RO
    mov dword [PT32 + 5 * 4], FRAME0 | PTE_RW | PTE_P                 ; 0x405000 alias of 0x400000
    mov dword [PT32 + 0xC0 * 4], FRAME6 | PTE_G | PTE_RW | PTE_P      ; 0x4C0000 global
    mov dword [PT32 + 0xC1 * 4], FRAME6 | PTE_RW | PTE_P              ; 0x4C1000 not global
    mov edi, FRAME0
    mov ecx, 8 * 1024
    xor eax, eax
    rep stosd
    mov dword [FRAME0 + 0x10], MARK0
    mov dword [FRAME6 + 0x10], MARK6
    mov dword [FRAME7 + 0x10], MARK7
    mov byte [FRAME0 + 0x200], 0xCB                                   ; RETF, for fetches
    mov dword [0x400900], MARK_HI

    ; ---- 4-level paging, first (a paravirtual KVM may run long mode but not 32-bit paging) --------
    mov eax, [ext_edx]
    and eax, 1 << 26
    EQ eax, 1 << 26, `CPUID.80000001h.EDX[26] advertises 1 GiB pages`
    mov dword [PML4 + 0 * 8], PDPT4 | PTE_RW | PTE_P
    mov dword [PML4 + 1 * 8], PDPT4 | PTE_PS | PTE_RW | PTE_P        ; PS is reserved here
    mov dword [PML4 + 2 * 8], EMPTY4 | PTE_PS | PTE_RW | PTE_P       ; ... over an empty table
    mov dword [PDPT4 + 0 * 8], PD4 | PTE_RW | PTE_P
    mov dword [PDPT4 + 1 * 8], 0x00000000 | PTE_PS | PTE_RW | PTE_P  ; 1 GiB at 40000000h
    mov dword [PDPT4 + 2 * 8], (1 << 13) | PTE_PS | PTE_RW | PTE_P   ; reserved bit 13
    mov dword [PD4 + 0 * 8], 0x000000 | PTE_PS | PTE_RW | PTE_P      ; 2 MiB, identity
    mov dword [PD4 + 1 * 8], 0x200000 | PTE_PS | PTE_P               ; 2 MiB, read-only
    mov dword [PD4 + 2 * 8], 0x400000 | PTE_PS | PTE_RW | PTE_P      ; 2 MiB, no-execute
    mov dword [PD4 + 2 * 8 + 4], 0x80000000
    mov dword [PD4 + 3 * 8], 0x600000 | (1 << 13) | PTE_PS | PTE_RW | PTE_P ; reserved bit 13
    mov eax, cr4
    or eax, 0x20                        ; PAE
    mov cr4, eax
    mov eax, PML4
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x900                       ; LME, NXE
    wrmsr
    lidt [cs:idtr64]
    mov eax, cr0
    or eax, 0x80010000                  ; PG, WP
    mov cr0, eax
    jmp SEL_CODE64:long64

section .text64
bits 64
long64:
    ; 2 MiB pages and the upper levels first, 1 GiB pages last (CPUID may not have them).
    TRY .ro2m
    mov dword [0x200010], 1
.ro2m:
    EXPECT_EXC `#PF: 4-level, write to a read-only 2 MiB page`, 14, 3
    TRY .nx2m
    mov eax, 0x400000
    call rax
.nx2m:
    EXPECT_EXC `#PF: 4-level, fetch from a no-execute 2 MiB page (P, I/D)`, 14, 0x11
    EQ qword [exc_eip], 0x400000, `#PF: 4-level fetch: the frame's RIP`
    TRY .rsvd2m
    mov eax, [0x600010]
.rsvd2m:
    EXPECT_EXC `#PF: 4-level 2 MiB PDE with reserved bit 13 set (RSVD)`, 14, 9
    TRY .pml4ps
    mov rax, 0x8000000010
    mov eax, [rax]
.pml4ps:
    EXPECT_EXC `#PF: PS set in a PML4 entry (RSVD)`, 14, 9
    EQ qword [exc_cr2], 0x8000000010, `#PF: CR2 holds the whole 64-bit address`
    TRY .rsvd_first
    mov rax, 0x10000000010
    mov eax, [rax]
.rsvd_first:
    EXPECT_EXC `#PF: a reserved bit in the PML4 entry counts, not the empty table under it (RSVD)`, 14, 9
    TRY .np64
    mov rax, 0x700000000123
    mov eax, [rax]
.np64:
    EXPECT_EXC `#PF: 4-level, not-present PML4 entry`, 14, 0
    EQ qword [exc_cr2], 0x700000000123, `#PF: 4-level, not-present PML4 entry: CR2`
    mov eax, [PML4]
    and eax, 0x60
    EQ rax, 0x20, `4-level: the PML4 entry gets accessed, never dirty`
    EQD dword [0x40000900], MARK900, `4-level, 1 GiB page: linear 40000900h is physical 900h`
    mov eax, [PDPT4 + 1 * 8]
    and eax, 0x60
    EQ rax, 0x20, `4-level, 1 GiB page: a read sets accessed only`
    mov dword [0x40000904], 1
    mov eax, [PDPT4 + 1 * 8]
    and eax, 0x60
    EQ rax, 0x60, `4-level, 1 GiB page: a write sets dirty`
    TRY .rsvd1g
    mov eax, 0x80000010
    mov eax, [rax]
.rsvd1g:
    EXPECT_EXC `#PF: 1 GiB PDPTE with reserved bit 13 set (RSVD)`, 14, 9
    jmp far dword [rel leave_ptr]

leave_ptr:  dd leave_long
            dw SEL_CODE32

section .text
bits 32
; Out of long mode (from compatibility mode): paging off, LME, NXE and PAE off, the 32-bit IDT.
leave_long:
    mov eax, cr0
    and eax, 0x7FFFFFFF
    mov cr0, eax
    mov ecx, 0xC0000080
    rdmsr
    and eax, ~0x900
    wrmsr
    mov eax, cr4
    and eax, ~0x20
    mov cr4, eax
    lidt [cs:idtr32]

    ; ---- 32-bit paging --------------------------------------------------------------------------
    mov eax, cr4
    or eax, 0x10                        ; PSE
    mov cr4, eax
    mov eax, PD32
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000                  ; PG, WP
    mov cr0, eax

    EQ dword [0x400010], MARK0, `32-bit paging, 4 KiB page: linear 400010h is physical 100010h`
    mov dword [0x400020], 0x12345678
    EQ dword [0x405020], 0x12345678, `32-bit paging: a write through one page shows through its alias`
    EQ dword [USER_ALIAS + 0x900], MARK900, `32-bit paging, 4 MiB page (PSE): linear 800900h is physical 900h`

    mov eax, [0x403000]
    mov eax, [PT32 + 3 * 4]
    and eax, 0x60
    EQ eax, 0x20, `32-bit paging: a read sets the PTE's accessed bit, not dirty`
    mov dword [0x403004], 1
    mov eax, [PT32 + 3 * 4]
    and eax, 0x60
    EQ eax, 0x60, `32-bit paging: a write sets the PTE's dirty bit`
    mov eax, [PD32 + 1 * 4]
    and eax, 0x60
    EQ eax, 0x20, `32-bit paging: the PDE above a page table gets accessed, never dirty`
    mov eax, [PD32 + 2 * 4]
    and eax, 0x60
    EQ eax, 0x20, `32-bit paging, 4 MiB page: a read sets accessed only`
    mov dword [USER_ALIAS + 0x904], 1
    mov eax, [PD32 + 2 * 4]
    and eax, 0x60
    EQ eax, 0x60, `32-bit paging, 4 MiB page: a write sets dirty`

    TRY .np_read
    mov eax, [0x402ABC]
.np_read:
    EXPECT_EXC `#PF: ring-0 read of a not-present page`, 14, 0
    EQ dword [exc_cr2], 0x402ABC, `#PF: ring-0 read of a not-present page: CR2`
    TRY .np_write
    mov dword [0x402AB0], 1
.np_write:
    EXPECT_EXC `#PF: ring-0 write to a not-present page`, 14, 2
    EQ dword [exc_cr2], 0x402AB0, `#PF: ring-0 write to a not-present page: CR2`
    TRY .wp_write
    mov dword [0x401010], 1
.wp_write:
    EXPECT_EXC `#PF: CR0.WP set, ring-0 write to a read-only page`, 14, 3
    EQ dword [exc_cr2], 0x401010, `#PF: CR0.WP set, ring-0 write to a read-only page: CR2`
    mov eax, cr0
    and eax, ~0x10000
    mov cr0, eax
    TRY .nowp_write
    mov dword [0x401010], 0x5A5A
.nowp_write:
    EXPECT_NONE `CR0.WP clear: ring 0 writes to a read-only page`
    EQ dword [0x401010], 0x5A5A, `CR0.WP clear: the write to the read-only page happened`
    mov eax, cr0
    or eax, 0x10000
    mov cr0, eax
    TRY .pde_ro
    mov dword [0x1000010], 1
.pde_ro:
    EXPECT_EXC `#PF: R/W clear in the PDE makes the page read-only`, 14, 3
    TRY .rsvd32
    mov eax, [0xC00010]
.rsvd32:
    EXPECT_EXC `#PF: 4 MiB PDE with reserved bit 21 set (RSVD)`, 14, 9
    EQ dword [exc_cr2], 0xC00010, `#PF: RSVD: CR2`
    TRY .np_fetch
    call SEL_FLAT32:0x402000
.np_fetch:
    EXPECT_EXC `#PF: ring-0 fetch from a not-present page (no I/D bit without NX or SMEP)`, 14, 0
    EQ dword [exc_cr2], 0x402000, `#PF: fetch: CR2`
    EQ dword [exc_eip], 0x402000, `#PF: fetch: the frame's EIP is the page address`
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x800                       ; NXE, meaningless without PAE
    wrmsr
    TRY .np_fetch_nxe
    call SEL_FLAT32:0x402000
.np_fetch_nxe:
    EXPECT_EXC `#PF: 32-bit paging with EFER.NXE: a fetch still reports no I/D bit`, 14, 0
    mov ecx, 0xC0000080
    rdmsr
    and eax, ~0x800
    wrmsr

    ; ring 3
    mov dword [USER_OUT], 0
    TRY .r3_read
    mov edx, SEL_CODE32_R3U | 3
    mov ebx, r3_read_user
    mov ecx, R3_STACK
    call enter_ring3
.r3_read:
    EXPECT_EXC `ring 3 reads and writes a user page`, RING3_DONE, NOERR
    EQ dword [USER_OUT], MARK0, `ring 3 reads and writes a user page: the value`
    TRY .r3_sup
    mov edx, SEL_CODE32_R3U | 3
    mov ebx, r3_read_sup
    mov ecx, R3_STACK
    call enter_ring3
.r3_sup:
    EXPECT_EXC `#PF: ring-3 read of a supervisor page`, 14, 5
    EQ dword [exc_cr2], 0x403000, `#PF: ring-3 read of a supervisor page: CR2`
    TRY .r3_ro
    mov edx, SEL_CODE32_R3U | 3
    mov ebx, r3_write_ro
    mov ecx, R3_STACK
    call enter_ring3
.r3_ro:
    EXPECT_EXC `#PF: ring-3 write to a user read-only page`, 14, 7
    TRY .r3_np
    mov edx, SEL_CODE32_R3U | 3
    mov ebx, r3_read_np
    mov ecx, R3_STACK
    call enter_ring3
.r3_np:
    EXPECT_EXC `#PF: ring-3 read of a not-present page`, 14, 4
    TRY .r3_suprow
    mov edx, SEL_CODE32_R3U | 3
    mov ebx, r3_write_sup_ro
    mov ecx, R3_STACK
    call enter_ring3
.r3_suprow:
    EXPECT_EXC `#PF: ring-3 write to a supervisor read-only page`, 14, 7
    mov eax, cr0
    and eax, ~0x10000
    mov cr0, eax
    TRY .r3_ro_nowp
    mov edx, SEL_CODE32_R3U | 3
    mov ebx, r3_write_ro
    mov ecx, R3_STACK
    call enter_ring3
.r3_ro_nowp:
    EXPECT_EXC `#PF: CR0.WP clear does not let ring 3 write a read-only page`, 14, 7
    mov eax, cr0
    or eax, 0x10000
    mov cr0, eax
    TRY .r3_fetch
    mov edx, SEL_CODE32_R3U | 3
    mov ebx, r3_fetch_sup
    mov ecx, R3_STACK
    call enter_ring3
.r3_fetch:
    EXPECT_EXC `#PF: ring-3 fetch from a supervisor page`, 14, 5
    EQ dword [exc_cr2], 0x403000, `#PF: ring-3 fetch from a supervisor page: CR2`
    EQ dword [exc_eip], 0x403000, `#PF: ring-3 fetch from a supervisor page: the frame's EIP`
    EQ dword [exc_cs], SEL_FLAT32_R3 | 3, `#PF from ring 3: the frame's CS is the ring-3 selector`
    EQ dword [exc_frame], STACK0_TSS_TOP - 20, `#PF from ring 3: the handler's stack comes from TSS.ESP0`

    ; global pages
    mov eax, cr4
    or eax, 0x80                        ; PGE
    mov cr4, eax
    mov eax, [0x4C0010]
    mov eax, [0x4C1010]
    mov dword [PT32 + 0xC0 * 4], FRAME7 | PTE_G | PTE_RW | PTE_P
    mov dword [PT32 + 0xC1 * 4], FRAME7 | PTE_RW | PTE_P
    mov eax, cr3
    mov cr3, eax
    EQ dword [0x4C1010], MARK7, `CR3 load: a non-global translation is dropped`
    EQ dword [0x4C0010], MARK6, `CR3 load with CR4.PGE: a global translation survives`
    invlpg [0x4C0010]
    EQ dword [0x4C0010], MARK7, `INVLPG drops a global translation`
    mov dword [PT32 + 0xC0 * 4], FRAME6 | PTE_G | PTE_RW | PTE_P
    mov eax, cr4
    and eax, ~0x80
    mov cr4, eax
    or eax, 0x80
    mov cr4, eax
    EQ dword [0x4C0010], MARK6, `toggling CR4.PGE drops global translations`
    mov eax, cr4
    and eax, ~0x80
    mov cr4, eax

    ; INVLPG of any address in a large page drops all of it
    mov dword [PD32 + 5 * 4], 0 | PTE_PS | PTE_RW | PTE_P             ; 1400000h: 4 MiB at 0
    EQ dword [0x1400900], MARK900, `a 4 MiB page at 1400000h maps physical 0`
    mov dword [PD32 + 5 * 4], 0x400000 | PTE_PS | PTE_RW | PTE_P      ; now at 400000h
    invlpg [0x17FF000]
    EQ dword [0x1400900], MARK_HI, `INVLPG of another address in a 4 MiB page drops all of it`
    mov dword [PD32 + 5 * 4], 0
    invlpg [0x1400000]

    ; code through a page that INVLPG remaps runs from the new frame
    mov dword [FRAME6 + 0x400], 0x000006B8                            ; mov eax, 6
    mov word [FRAME6 + 0x404], 0xCB00                                 ; retf
    mov dword [FRAME7 + 0x400], 0x000007B8                            ; mov eax, 7
    mov word [FRAME7 + 0x404], 0xCB00                                 ; retf
    mov dword [PT32 + 0xC2 * 4], FRAME6 | PTE_RW | PTE_P              ; 4C2000h
    call SEL_FLAT32:0x4C2400
    EQ eax, 6, `code runs through a 4 KiB page`
    mov dword [PT32 + 0xC2 * 4], FRAME7 | PTE_RW | PTE_P
    invlpg [0x4C2000]
    call SEL_FLAT32:0x4C2400
    EQ eax, 7, `after INVLPG, code at the same address runs from the page's new frame`

    ; SMEP and SMAP (32-bit paging)
    test dword [cpuid7_ebx], 1 << 7
    jnz .smep
    SKIP `SMEP`, `CPUID.7.EBX[7] clear`
    jmp .smap_q
.smep:
    TRY .nosmep
    call SEL_FLAT32:0x400200
.nosmep:
    EXPECT_NONE `without SMEP ring 0 may execute a user page`
    mov eax, cr4
    or eax, 1 << 20
    mov cr4, eax
    TRY .smep_fault
    call SEL_FLAT32:0x400200
.smep_fault:
    EXPECT_EXC `SMEP: ring-0 fetch from a user page is #PF (P, I/D)`, 14, 0x11
    EQ dword [exc_cr2], 0x400200, `SMEP: CR2`
    mov eax, cr4
    and eax, ~(1 << 20)
    mov cr4, eax
.smap_q:
    test dword [cpuid7_ebx], 1 << 20
    jnz .smap
    SKIP `SMAP`, `CPUID.7.EBX[20] clear`
    jmp .smap_done
.smap:
    mov eax, cr4
    or eax, 1 << 21
    mov cr4, eax
    TRY .smap_read
    mov eax, [0x400010]
.smap_read:
    EXPECT_EXC `SMAP: ring-0 read of a user page is #PF`, 14, 1
    TRY .smap_write
    mov dword [0x400014], 1
.smap_write:
    EXPECT_EXC `SMAP: ring-0 write to a user page is #PF`, 14, 3
    TRY .smap_ac
    pushfd
    or dword [esp], 1 << 18             ; AC
    popfd
    mov ebx, [0x400010]
    pushfd
    and dword [esp], ~(1 << 18)
    popfd
.smap_ac:
    EXPECT_NONE `SMAP: EFLAGS.AC set lets ring 0 read a user page`
    EQ ebx, MARK0, `SMAP: EFLAGS.AC set: the value read`
    TRY .stac
    xor eax, eax
    xor ebx, ebx
    stac
    pushfd
    pop eax
    clac
    pushfd
    pop ebx
.stac:
    EXPECT_NONE `STAC and CLAC execute where CPUID advertises SMAP`
    and eax, 1 << 18
    EQ eax, 1 << 18, `STAC sets EFLAGS.AC`
    and ebx, 1 << 18
    EQ ebx, 0, `CLAC clears EFLAGS.AC`
    mov eax, cr4
    and eax, ~(1 << 21)
    mov cr4, eax
.smap_done:

    ; ---- PAE paging -------------------------------------------------------------------------------
    mov eax, cr0
    and eax, 0x7FFFFFFF
    mov cr0, eax
    mov dword [PDPT_PAE + 0], PD_PAE | PTE_P
    mov dword [PDPT_PAE_BAD + 0], PD_PAE | PTE_P
    mov dword [PDPT_PAE_BAD + 8], PD_PAE | PTE_P | PTE_RW      ; bit 1: reserved in a PDPTE
    mov dword [PD_PAE + 0 * 8], 0x000000 | PTE_PS | PTE_RW | PTE_P
    mov dword [PD_PAE + 1 * 8], 0x400000 | PTE_PS | PTE_RW | PTE_P
    mov dword [PD_PAE + 2 * 8], PT_PAE | PTE_US | PTE_RW | PTE_P
    mov dword [PD_PAE + 3 * 8], 0x600000 | PTE_PS | PTE_RW | PTE_P
    mov dword [PD_PAE + 3 * 8 + 4], 1 << (45 - 32)                   ; above MAXPHYADDR 40
    mov dword [PD_PAE + 4 * 8], 0x800000 | (1 << 13) | PTE_PS | PTE_RW | PTE_P
    mov dword [PD_PAE + 5 * 8], 0xA00000 | PTE_PS | PTE_RW | PTE_P
    mov dword [PD_PAE + 5 * 8 + 4], 0x80000000                       ; NX
    mov dword [PT_PAE + 0 * 8], FRAME0 | PTE_US | PTE_RW | PTE_P
    mov eax, cr4
    or eax, 0x20                        ; PAE
    mov cr4, eax
    mov eax, PDPT_PAE
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    EQ dword [0x200900], MARK_HI, `PAE, 2 MiB page: linear 200900h is physical 400900h`
    mov eax, [PD_PAE + 1 * 8]
    and eax, 0x60
    EQ eax, 0x20, `PAE, 2 MiB page: a read sets accessed only`
    mov dword [0x200904], 1
    mov eax, [PD_PAE + 1 * 8]
    and eax, 0x60
    EQ eax, 0x60, `PAE, 2 MiB page: a write sets dirty`
    EQ dword [0x400010], MARK0, `PAE, 4 KiB page: linear 400010h is physical 100010h`
    TRY .pae_rsvd_hi
    mov eax, [0x600000]
.pae_rsvd_hi:
    EXPECT_EXC `#PF: PAE PDE with an address bit above MAXPHYADDR (RSVD)`, 14, 9
    TRY .pae_rsvd13
    mov eax, [0x800000]
.pae_rsvd13:
    EXPECT_EXC `#PF: PAE 2 MiB PDE with reserved bit 13 set (RSVD)`, 14, 9
    TRY .pae_nx_off
    mov eax, [0xA00000]
.pae_nx_off:
    EXPECT_EXC `#PF: PAE, the NX bit with EFER.NXE clear is reserved (RSVD)`, 14, 9
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x800                       ; NXE
    wrmsr
    TRY .pae_nx_read
    mov eax, [0xA00000]
.pae_nx_read:
    EXPECT_NONE `PAE with EFER.NXE: a no-execute page can be read`
    TRY .pae_nx_fetch
    call SEL_FLAT32:0xA00000
.pae_nx_fetch:
    EXPECT_EXC `#PF: PAE, fetch from a no-execute page (P, I/D)`, 14, 0x11
    EQ dword [exc_cr2], 0xA00000, `#PF: PAE, fetch from a no-execute page: CR2`
    TRY .pae_x
    call SEL_FLAT32:0x400200
.pae_x:
    EXPECT_NONE `PAE with EFER.NXE: a page without NX executes`
    TRY .pae_np_fetch
    call SEL_FLAT32:0x401000
.pae_np_fetch:
    EXPECT_EXC `#PF: PAE with EFER.NXE, fetch from a not-present page (I/D)`, 14, 0x10
    TRY .pdpte_rsvd
    mov eax, PDPT_PAE_BAD
    mov cr3, eax
.pdpte_rsvd:
    mov eax, PDPT_PAE
    mov cr3, eax
    EXPECT_EXC `PAE: MOV CR3 with a reserved bit in a present PDPTE is #GP(0)`, 13, 0
    call finish32

; ---- ring-3 snippets (through SEL_CODE32_R3U, DS flat) ---------------------------------------------
section .text
bits 32
r3_read_user:
    mov eax, [0x400010]
    mov [USER_OUT], eax
    int RING3_DONE
r3_read_sup:
    mov eax, [0x403000]
    int RING3_DONE
r3_write_ro:
    mov dword [0x404000], 1
    int RING3_DONE
r3_read_np:
    mov eax, [0x402000]
    int RING3_DONE
r3_write_sup_ro:
    mov dword [0x401000], 1
    int RING3_DONE
r3_fetch_sup:
    jmp (SEL_FLAT32_R3 | 3):0x403000

    ROM_END
