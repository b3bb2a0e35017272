; Memory copies with an explicit load/store loop: 64 KiB blocks, forever.
%include "pm_prologue.inc"
.outer:
    mov esi, 0x100000
    mov edi, 0x200000
    mov ecx, 16384
.loop:
    mov eax, [esi]
    mov [edi], eax
    add esi, 4
    add edi, 4
    dec ecx
    jnz .loop
    jmp .outer
