; Integer arithmetic and branches in 32-bit protected mode (flat): a hash over a counter,
; with compares and conditional jumps, forever.
%include "pm_prologue.inc"
    xor eax, eax
    mov ebx, 0x12345678
    xor ecx, ecx
.loop:
    add eax, ecx
    xor ebx, eax
    rol ebx, 5
    lea edx, [eax + ebx*4 + 7]
    sub edx, ecx
    test edx, 1
    jz .even
    imul edx, edx, 3
    inc edx
    jmp .next
.even:
    shr edx, 1
.next:
    cmp edx, ebx
    jb .below
    add eax, edx
.below:
    inc ecx
    and ecx, 0xFFFFF
    jmp .loop
