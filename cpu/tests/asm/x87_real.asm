; x87 arithmetic on a bare CPU in real mode. Each check stores its result (and often the
; status word, then clears the exceptions) at a fixed address from 0x500; the test compares
; them bit for bit with IEEE/x87 values.
; Build: nasm -f bin -o x87_real.bin x87_real.asm
bits 16
org 0x7c00
start:
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7000
    fninit

    ; 0x500: 1/3 in extended precision (PC = 64 bits, nearest); 0x50A: FSW before the store
    ; (PE, C1 = rounded up, TOP 7)
    fld1
    fidiv word [three_i]
    fnstsw [0x50A]
    fstp tword [0x500]
    fnclex

    ; 0x510: 1/3 with PC = single; 0x520: PC = double; 0x530: nearest, rounding down
    fldcw [cw_single]
    fld1
    fdiv dword [three_f]
    fstp tword [0x510]
    fldcw [cw_double]
    fld1
    fdiv qword [three_d]
    fstp tword [0x520]
    fldcw [cw_down]
    fld1
    fidiv dword [three_i32]
    fstp tword [0x530]
    fldcw [cw_default]
    fnclex

    ; 0x540: the smallest normal / 2: an exact denormal (no flags); 0x54A: FSW
    fld tword [min_normal]
    fidiv word [two_i]
    fstp tword [0x540]
    fnstsw [0x54A]
    ; 0x550: (smallest normal + 1 ulp) × 3 / 8 (RN, ties to even): UE and PE
    fld tword [min_normal_plus]
    fimul word [three_i]
    fidiv word [eight_i]
    fstp tword [0x550]
    fnstsw [0x55A]
    fnclex

    ; 0x560: QNaN + SNaN: the QNaN, with IE; 0x56A: FSW
    fld tword [snan]
    fld tword [qnan]
    faddp st1, st0
    fstp tword [0x560]
    fnstsw [0x56A]
    fnclex
    ; 0x570: unnormal × 1: invalid operand, the indefinite
    fld tword [unnormal]
    fld1
    fmulp st1, st0
    fstp tword [0x570]
    fnstsw [0x57A]
    fnclex

    ; 0x580: 1.5 × 2^100 FPREM 7, partial remainders until C2 clears; 0x58A: iterations;
    ; 0x58C: FSW of the last step (C3 C1 C0 = quotient bits)
    fld dword [seven_f]
    fld tword [big]
    xor cx, cx
.prem:
    fprem
    inc cx
    fnstsw ax
    test ah, 4
    jnz .prem
    mov [0x58C], ax
    mov [0x58A], cx
    fstp tword [0x580]
    fstp st0
    ; 0x590: FPREM1 of 5 by 3 = -1; 0x59A: FSW
    fild word [three_i]
    fild word [five_i]
    fprem1
    fnstsw [0x59A]
    fstp tword [0x590]
    fstp st0

    ; 0x5A0..0x5A7: FXAM's C3 C2 C1 C0 (AH & 0x47) for: empty, +normal, -zero, denormal, +inf,
    ; QNaN, unnormal
    fxam
    fnstsw ax
    and ah, 0x47
    mov [0x5A0], ah
    mov si, fxam_values
    mov di, 0x5A1
    mov cx, 6
.xam:
    fld tword [si]
    fxam
    fnstsw ax
    and ah, 0x47
    mov [di], ah
    fstp st0
    add si, 10
    inc di
    loop .xam

    ; 0x5B0: FBSTP of 123456789012345678; 0x5C0: of -999999999999999999.4 (nearest)
    fild qword [bcd_src]
    fbstp tword [0x5B0]
    fld tword [almost_1e18]
    fbstp tword [0x5C0]
    ; 0x5D0: FBSTP of 1e18: invalid, BCD indefinite; 0x5DA: FSW
    fld tword [one_e18]
    fbstp tword [0x5D0]
    fnstsw [0x5DA]
    fnclex
    ; 0x5E0: FIST dword of 2^40: integer indefinite; 0x5E4: FSW; 0x5E6: FISTP word of -2.5
    ; rounding up (-2); 0x5E8: FISTTP word of -2.5 (-2); 0x5EA: FIST word of 2.5 nearest (2)
    fld tword [two_40]
    fist dword [0x5E0]
    fnstsw [0x5E4]
    fnclex
    fstp st0
    fldcw [cw_up]
    fld tword [m2_5]
    fistp word [0x5E6]
    fldcw [cw_default]
    fld tword [m2_5]
    fisttp word [0x5E8]
    fld tword [m2_5]
    fchs
    fistp word [0x5EA]
    fnclex

    ; 0x5F0: FLAGS after FCOMI 0 vs 1 (CF); 0x5F2: after FUCOMIP QNaN (ZF PF CF)
    fld1
    fldz
    fcomi st0, st1
    pushf
    pop word [0x5F0]
    fstp st0
    fld tword [qnan]
    fucomip st0, st1
    pushf
    pop word [0x5F2]
    fstp st0
    ; 0x5F4: FSTSW AX after FCOM of 2 with 1 (all clear), then of 1 with 2 (C0)
    fld1
    fild word [two_i]
    fcom st1
    fstsw ax
    mov [0x5F4], ax
    fxch
    fcom st1
    fstsw ax
    mov [0x5F6], ax
    fcompp
    ; 0x6C0: FCMOVB after STC: ST0 takes ST1
    fld1
    fldz
    stc
    fcmovb st0, st1
    fstp tword [0x6C0]
    fstp st0

    ; 0x600: nine pushes overflow the stack: FSW (IE, SF, C1) and ST0 the indefinite
    fninit
    mov cx, 9
.push:
    fld1
    loop .push
    fnstsw [0x600]
    fstp tword [0x602]
    fninit

    ; 0x610: FSIN of FLDPI's π (reduced with the 66-bit π, as hardware does); 0x620: FPTAN of
    ; 0.5 (C2 clear, ST0 = 1); 0x630: FSIN of 2^63 leaves it with C2 set
    fldpi
    fsin
    fstp tword [0x610]
    fld dword [half_f]
    fptan
    fstp st0
    fstp tword [0x620]
    fld tword [two_63]
    fsin
    fnstsw [0x63A]
    fstp tword [0x630]

    ; 0x640: FSAVE (16-bit real-mode layout, 94 bytes) with 1 on π on the stack, then FRSTOR
    ; and store both back: 0x6A0 = 1, 0x6AA = π; 0x6B4: FSW after FRSTOR
    fninit
    fldpi
    fld1
    fsave [0x640]
    fld tword [qnan]
    frstor [0x640]
    fnstsw [0x6B4]
    fstp tword [0x6A0]
    fstp tword [0x6AA]
    hlt

cw_default: dw 0x037F
cw_single:  dw 0x007F
cw_double:  dw 0x027F
cw_down:    dw 0x077F
cw_up:      dw 0x0B7F
two_i:      dw 2
three_i:    dw 3
five_i:     dw 5
eight_i:    dw 8
three_i32:  dd 3
three_f:    dd 3.0
seven_f:    dd 7.0
half_f:     dd 0.5
three_d:    dq 3.0
bcd_src:    dq 123456789012345678
min_normal:      dq 0x8000000000000000
                 dw 0x0001
min_normal_plus: dq 0x8000000000000001
                 dw 0x0001
snan:       dq 0x8000000000000001
            dw 0x7FFF
qnan:       dq 0xC000000000000005
            dw 0xFFFF
unnormal:   dq 0x4000000000000000
            dw 0x3FFF
big:        dq 0xC000000000000000
            dw 0x3FFF + 100
almost_1e18: dq 0xDE0B6B3A763FFFF3        ; -(1e18 - 0.8125)
            dw 0xC03A
one_e18:    dq 0xDE0B6B3A76400000
            dw 0x403A
two_40:     dq 0x8000000000000000
            dw 0x3FFF + 40
two_63:     dq 0x8000000000000000
            dw 0x3FFF + 63
m2_5:       dq 0xA000000000000000
            dw 0xC000
fxam_values:
            dq 0x8000000000000000
            dw 0x3FFF                     ; +1
            dq 0
            dw 0x8000                     ; -0
            dq 0x0000000000000001
            dw 0x0000                     ; denormal
            dq 0x8000000000000000
            dw 0x7FFF                     ; +inf
            dq 0xC000000000000000
            dw 0x7FFF                     ; QNaN
            dq 0x4000000000000000
            dw 0x3FFF                     ; unnormal
