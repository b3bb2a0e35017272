; A paging-heavy workload: 32-bit paging with 4 KiB pages over 64 MiB, touching one dword per
; page in a stride that defeats a small TLB, and reloading CR3 every pass.
%include "pm_prologue.inc"
    ; page directory at 0x400000, 16 page tables at 0x401000.., identity map of 64 MiB
    mov edi, 0x400000
    mov eax, 0x401003
    mov ecx, 16
.pde:
    mov [edi], eax
    add eax, 0x1000
    add edi, 4
    loop .pde
    mov edi, 0x401000
    mov eax, 0x3
    mov ecx, 16 * 1024
.pte:
    mov [edi], eax
    add eax, 0x1000
    add edi, 4
    loop .pte
    mov eax, 0x400000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
.pass:
    mov esi, 0x1000000
    mov ecx, 8192
.touch:
    add dword [esi], 1
    add esi, 0x1000 * 3
    cmp esi, 0x4000000
    jb .ok
    sub esi, 0x3000000
.ok:
    dec ecx
    jnz .touch
    mov eax, cr3
    mov cr3, eax
    jmp .pass
