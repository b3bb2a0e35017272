; SSE floating point: packed single (ADDPS, MULPS, SQRTPS, DIVPS), scalar double (CVTSS2SD,
; MULSD, ADDSD), aligned and unaligned moves through memory, an SSE2 integer add, and a
; COMISS compare driving the loop, forever.
%include "pm_prologue.inc"
    mov eax, cr0
    and eax, ~(1 << 2)              ; EM off
    or eax, 1 << 1                  ; MP on
    mov cr0, eax
    mov eax, cr4
    or eax, (1 << 9) | (1 << 10)    ; OSFXSR, OSXMMEXCPT
    mov cr4, eax
    mov eax, 0x3F800000             ; 1.0f
    movd xmm7, eax
    shufps xmm7, xmm7, 0
.reset:
    movaps xmm0, xmm7
    movaps xmm1, xmm7
    xorpd xmm4, xmm4
.loop:
    addps xmm0, xmm7                ; x += 1
    movaps xmm2, xmm0
    mulps xmm2, xmm2                ; x * x
    sqrtps xmm2, xmm2               ; x
    divps xmm2, xmm0                ; 1
    addps xmm1, xmm2
    cvtss2sd xmm3, xmm1
    mulsd xmm3, xmm3
    addsd xmm4, xmm3
    movaps [0x20000], xmm1          ; data away from the code's page (a write there would
    movups xmm5, [0x20004]          ; drop the decoded code)
    paddd xmm6, xmm5
    comiss xmm0, [.limit]
    jb .loop
    jmp .reset
align 16
.limit:
    dd 10000.0
