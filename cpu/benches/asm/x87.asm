; x87 floating point: a running sum of products and square roots, forever.
%include "pm_prologue.inc"
    fninit
    fld1
    fld1
.loop:
    fadd st0, st1
    fld st0
    fmul st0, st0
    fsqrt
    fdiv st0, st2
    faddp st1, st0
    fld1
    fcomp st1
    fnstsw ax
    test ah, 1
    jz .loop
    fstp st0
    fld1
    jmp .loop
