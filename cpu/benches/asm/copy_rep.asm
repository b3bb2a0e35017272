; Memory copies with REP MOVSD: 64 KiB blocks back and forth, forever.
%include "pm_prologue.inc"
.loop:
    mov esi, 0x100000
    mov edi, 0x200000
    mov ecx, 16384
    rep movsd
    mov esi, 0x200000
    mov edi, 0x100000
    mov ecx, 16384
    rep movsd
    jmp .loop
