; Paging on a bare CPU: 32-bit paging with a 4 MiB identity page (PSE) for the code, a page
; table mapping 0x400000.. with a read-only page and a not-present page; #PF error codes and
; CR2 for each; accessed and dirty bits; then PAE and long mode: a 64-bit segment running
; 64-bit code through 4-level tables with a 2 MiB page, and a #PF there.
; Results (dwords): 0x500 #PF count, 0x504 last error code, 0x508 last CR2,
; 0x510 PTE of 0x401000 after a write (A and D set), 0x514 PTE of 0x402000 after a read (A only),
; 0x518 64-bit result low, 0x51C 64-bit result high, 0x520 #PF error in long mode,
; 0x524 CR2 in long mode, 0x530.. each 32-bit #PF error code in turn.
; Build: nasm -f bin -o paging.bin paging.asm
bits 16
org 0x7c00
    cli
    lgdt [gdtr]
    lidt [idtr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp 0x08:pm32

bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x90000
    ; page directory at 0x20000: entry 0 = 4 MiB identity page, entry 1 = table at 0x21000
    mov edi, 0x20000
    xor eax, eax
    mov ecx, 2048
    rep stosd
    mov dword [0x20000], 0x000000E3       ; P RW A D PS (4 MiB at 0)
    mov dword [0x20004], 0x00021003       ; P RW -> table
    mov dword [0x21000], 0x00400003       ; 0x400000 -> 0x400000 RW
    mov dword [0x21004], 0x00401003       ; 0x401000 RW
    mov dword [0x21008], 0x00402001       ; 0x402000 read-only
    ; 0x403000 not present (entry 3 = 0)
    mov eax, cr4
    or eax, 0x10                          ; PSE
    mov cr4, eax
    mov eax, 0x20000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000                    ; PG | WP
    mov cr0, eax
    mov dword [0x401000], 0x11223344      ; write: sets A and D
    mov eax, [0x402000]                   ; read: sets A
    mov eax, [0x21004]
    mov [0x510], eax
    mov eax, [0x21008]
    mov [0x514], eax
.f1:
    mov dword [0x402000], 1               ; write to read-only page: #PF 3, skipped by handler
.f2:
    mov eax, [0x403000]                   ; not present: #PF 0, skipped
    ; ---- long mode
    mov eax, cr0
    and eax, 0x7FFFFFFF
    mov cr0, eax
    ; PML4 at 0x30000 -> PDPT 0x31000 -> PD 0x32000: 2 MiB pages identity for 0..4 MiB;
    ; 0x400000.. (PD entry 2) left not present.
    mov edi, 0x30000
    xor eax, eax
    mov ecx, 3072
    rep stosd
    mov dword [0x30000], 0x31003
    mov dword [0x31000], 0x32003
    mov dword [0x32000], 0x000083
    mov dword [0x32008], 0x200083
    mov eax, cr4
    or eax, 0x20                          ; PAE
    mov cr4, eax
    mov eax, 0x30000
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100                         ; LME
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    lidt [idtr64]
    jmp 0x18:lm64

bits 64
lm64:
    mov rax, 0x1234567890ABCDEF
    mov rbx, rax
    shr rbx, 4
    add rax, rbx
    mov [0x518], rax
    mov rcx, [0x400000]                   ; not present: #PF, handler records and halts
    hlt

pf64:
    mov rax, [rsp]
    mov [0x520], eax
    mov rax, cr2
    mov [0x524], eax
    hlt

bits 32
pf32:
    inc dword [0x500]
    mov eax, [esp]
    mov [0x504], eax
    mov ecx, [0x500]
    mov [0x52C + ecx*4], eax              ; every error code: 0x530, 0x534
    mov eax, cr2
    mov [0x508], eax
    add esp, 4
    ; skip the faulting instruction: both are known lengths
    cmp dword [esp], skip1_at
    jne .second
    mov dword [esp], skip1_to
    iret
.second:
    mov dword [esp], skip2_to
    iret

skip1_at equ pm32.f1
skip1_to equ pm32.f1 + 10
skip2_to equ pm32.f2 + 5

align 8
gdt:
    dq 0
    dq 0x00CF9A000000FFFF       ; 0x08 code32
    dq 0x00CF92000000FFFF       ; 0x10 data
    dq 0x00AF9A000000FFFF       ; 0x18 code64 (L)
gdt_end:
gdtr:
    dw gdt_end - gdt - 1
    dd gdt

align 8
idt:
    times 14 dq 0
    dw pf32, 0x08
    db 0, 0x8E
    dw 0
idt_end:
idtr:
    dw idt_end - idt - 1
    dd idt

align 16
idt64:
    times 14 dq 0, 0
    dw pf64, 0x18
    db 0, 0x8E
    dw 0
    dd 0, 0
idt64_end:
idtr64:
    dw idt64_end - idt64 - 1
    dq idt64
