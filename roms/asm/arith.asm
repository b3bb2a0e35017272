; arith: a deterministic workout of the real-mode integer instruction set as a 386 runs it:
; ALU operations in every addressing mode, 32-bit registers and the operand- and address-size
; prefixes, MUL/IMUL/DIV/IDIV, shifts and rotates, BCD adjustment, string instructions with
; REP/REPE/REPNE and segment overrides, PUSHA/POPA, ENTER/LEAVE, XLAT, LOOP, far CALL/RET,
; flags. Every result, and every flag the SDM defines for it, is folded into a checksum; flags
; the SDM leaves undefined (and results it leaves undefined) are never folded, so any correct
; x86 gives the same output. It prints the checksum after each section, so a difference
; between two CPUs points at a section, and exits 0. Its use: the same output and the same
; final CPU state under the interpreter and under KVM.
;
; Segments while it runs: SS = 0 (stack below 7000h, variables at 500h), DS = ES = 2000h
; (a 64 KiB buffer of pseudo-random bytes), FS = 3000h and GS = 4000h (16 KiB each).
;
; Reference: Intel SDM vol. 2 (instruction definitions and their flags).

%include "inc/ferrite.inc"

DATA_SEG    equ 0x2000
FS_SEG      equ 0x3000
GS_SEG      equ 0x4000

; Flag masks: which flags an instruction defines.
F_ALL       equ 0x08D5                  ; OF SF ZF AF PF CF
F_LOGIC     equ 0x08C5                  ; AND/OR/XOR/TEST: AF undefined
F_NOOF      equ 0x00D5                  ; all but OF
F_NOAF      equ 0x08C5
F_MUL       equ 0x0801                  ; MUL/IMUL: CF OF
F_SZP       equ 0x00C4
F_SZPC      equ 0x00C5
F_CF        equ 0x0001
F_ZF        equ 0x0040
F_AFCF      equ 0x0011
F_NONE      equ 0x0000

ROM_RAM csum, 4
ROM_RAM nfold, 4
ROM_RAM fmask, 2
ROM_RAM body, 2
ROM_RAM idx_i, 2
ROM_RAM idx_j, 2
ROM_RAM ccbuf, 16
ROM_RAM fptr, 4
ROM_RAM fptr2, 4
ROM_RAM nptr, 2
ROM_RAM scratch, 16

; CHK mask: fold EAX, then the flags selected by `mask`. Preserves registers and flags.
%macro CHK 1
    mov word [ss:fmask], %1
    call fold_ef
%endmacro

; FOLDV src: fold a 32-bit value. Preserves registers (except when src is EAX-relative) and
; flags.
%macro FOLDV 1
    push eax
    mov eax, %1
    call fold_e
    pop eax
%endmacro

; FOLDZ src: fold an 8- or 16-bit value, zero-extended.
%macro FOLDZ 1
    push eax
    movzx eax, %1
    call fold_e
    pop eax
%endmacro

; SECTION_END `name`: print the running checksum under this name.
%macro SECTION_END 1
    PRINT `arith: `
    PRINT %1
    PRINT ` `
    push eax
    mov eax, [ss:csum]
    call print_hex32
    pop eax
    PRINT `\r\n`
%endmacro

entry:
    INIT
    mov esp, STACK_TOP              ; ESP's upper half is used by 32-bit addressing below
    PRINT `arith: integer instruction workout\r\n`
    mov dword [ss:csum], 0x811C9DC5
    call fill_memory
    mov ax, DATA_SEG
    mov ds, ax
    mov es, ax
    mov ax, FS_SEG
    mov fs, ax
    mov ax, GS_SEG
    mov gs, ax

    mov word [ss:body], alu_pair
    call each_pair
    SECTION_END `alu      `
    mov word [ss:body], unary_value
    call each_value
    SECTION_END `unary    `
    call addressing
    SECTION_END `address  `
    mov word [ss:body], muldiv_pair
    call each_pair
    SECTION_END `muldiv   `
    mov word [ss:body], shift_pair
    call each_pair
    SECTION_END `shift    `
    call bcd
    SECTION_END `bcd      `
    call strings
    SECTION_END `string   `
    call stack_frames
    SECTION_END `stack    `
    call control
    SECTION_END `control  `
    call segments
    SECTION_END `segment  `
    call flag_ops
    SECTION_END `flags    `

    PRINT `arith: checksum `
    mov eax, [ss:csum]
    call print_hex32
    PRINT ` after `
    mov eax, [ss:nfold]
    call print_dec32
    PRINT ` folds\r\n`
    push word 0x0002                ; leave defined flags behind for the final-state compare
    popf
    mov ax, 0
    mov ds, ax
    mov es, ax
    EXIT 0

; ---------------------------------------------------------------------------------------------
; The checksum.

; fold_eax: csum = (rol(csum, 5) ^ EAX) * 01000193h (FNV's prime). Clobbers EAX and flags.
fold_eax:
    rol dword [ss:csum], 5
    xor eax, [ss:csum]
    imul eax, eax, 0x01000193
    mov [ss:csum], eax
    inc dword [ss:nfold]
    ret

; fold_e: fold EAX. Preserves registers and flags.
fold_e:
    pushf
    push eax
    call fold_eax
    pop eax
    popf
    ret

; fold_ef: fold EAX, then FLAGS AND [fmask]. Preserves registers and flags.
fold_ef:
    pushf
    push eax
    call fold_eax
    push bp
    mov bp, sp
    mov ax, [bp + 6]                ; the flags as they were on entry
    and ax, [ss:fmask]
    movzx eax, ax
    call fold_eax
    pop bp
    pop eax
    popf
    ret

; fold_region: fold CX bytes at ES:DI (CX > 0) as one hash. Preserves registers and flags.
fold_region:
    pushf
    push eax
    push edx
    push cx
    push di
    xor edx, edx
.byte:
    rol edx, 3
    xor dl, [es:di]
    inc di
    loop .byte
    mov eax, edx
    call fold_eax
    pop di
    pop cx
    pop edx
    pop eax
    popf
    ret

; fill_memory: pseudo-random bytes (a 32-bit LCG) in the DS, FS and GS buffers.
fill_memory:
    mov eax, 0x2545F491
    mov bx, DATA_SEG
    mov cx, 0x4000                  ; dwords: all 64 KiB
    call fill_segment
    mov bx, FS_SEG
    mov cx, 0x1000
    call fill_segment
    mov bx, GS_SEG
    mov cx, 0x1000
    call fill_segment
    ret

fill_segment:                       ; BX = segment, CX = dwords, EAX = LCG state
    mov es, bx
    xor di, di
.next:
    stosd
    imul eax, eax, 1103515245
    add eax, 12345
    loop .next
    ret

; The operand values: each_pair runs [body] with ESI and EDI set to every pair of them,
; each_value with ESI set to each. The body may clobber EAX, EBX, ECX, EDX, EBP.
NVALUES equ 16
section .rodata
values:
    dd 0x00000000, 0x00000001, 0x00000002, 0x0000007F
    dd 0x00000080, 0x000000FF, 0x00007FFF, 0x00008000
    dd 0x0000FFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF
    dd 0x12345678, 0x9ABCDEF0, 0x0F0F0F0F, 0xFFFF8001
section .text

each_pair:
    mov word [ss:idx_i], 0
.outer:
    mov bx, [ss:idx_i]
    shl bx, 2
    mov esi, [cs:values + bx]
    mov word [ss:idx_j], 0
.inner:
    mov bx, [ss:idx_j]
    shl bx, 2
    mov edi, [cs:values + bx]
    call word [ss:body]
    inc word [ss:idx_j]
    cmp word [ss:idx_j], NVALUES
    jb .inner
    inc word [ss:idx_i]
    cmp word [ss:idx_i], NVALUES
    jb .outer
    ret

each_value:
    xor bx, bx
.next:
    mov esi, [cs:values + bx]
    push bx
    call word [ss:body]
    pop bx
    add bx, 4
    cmp bx, NVALUES * 4
    jb .next
    ret

; ---------------------------------------------------------------------------------------------
; ALU operations on register pairs, condition codes.

; ALU3 op, mask, setup: `op` on the 8-, 16- and 32-bit parts of ESI and EDI, `setup` (CLC,
; STC or NOP) just before each.
%macro ALU3 3
    mov eax, esi
    mov ebx, edi
    %3
    %1 al, bl
    CHK %2
    mov eax, esi
    %3
    %1 ax, bx
    CHK %2
    mov eax, esi
    %3
    %1 eax, ebx
    CHK %2
%endmacro

; ALU_IMM op, mask: the immediate forms (accumulator, r/m with imm8, sign-extended imm8, full).
%macro ALU_IMM 2
    mov eax, esi
    %1 al, 0x5A
    CHK %2
    mov eax, esi
    mov ebx, esi
    %1 bl, 0xA5
    mov eax, ebx
    CHK %2
    mov eax, esi
    %1 ax, 0x1234
    CHK %2
    mov ebx, esi
    %1 bx, strict byte -3
    mov eax, ebx
    CHK %2
    mov eax, esi
    %1 eax, 0x80000001
    CHK %2
    mov ebx, esi
    %1 ebx, strict byte 0x7F
    mov eax, ebx
    CHK %2
%endmacro

; SETCC_ALL / JCC_ALL: record all 16 conditions of the current flags in ccbuf.
%macro SETCC_ALL 0
%assign k 0
%rep 16
    %if k == 0
    seto byte [ss:ccbuf + k]
    %elif k == 1
    setno byte [ss:ccbuf + k]
    %elif k == 2
    setb byte [ss:ccbuf + k]
    %elif k == 3
    setae byte [ss:ccbuf + k]
    %elif k == 4
    sete byte [ss:ccbuf + k]
    %elif k == 5
    setne byte [ss:ccbuf + k]
    %elif k == 6
    setbe byte [ss:ccbuf + k]
    %elif k == 7
    seta byte [ss:ccbuf + k]
    %elif k == 8
    sets byte [ss:ccbuf + k]
    %elif k == 9
    setns byte [ss:ccbuf + k]
    %elif k == 10
    setp byte [ss:ccbuf + k]
    %elif k == 11
    setnp byte [ss:ccbuf + k]
    %elif k == 12
    setl byte [ss:ccbuf + k]
    %elif k == 13
    setge byte [ss:ccbuf + k]
    %elif k == 14
    setle byte [ss:ccbuf + k]
    %else
    setg byte [ss:ccbuf + k]
    %endif
%assign k k + 1
%endrep
    call fold_ccbuf
%endmacro

%macro JCC_ONE 3                    ; cc, index, short|near
    mov byte [ss:ccbuf + %2], 0
    j%1 %3 %%taken
    jmp %%done
%%taken:
    mov byte [ss:ccbuf + %2], 1
%%done:
%endmacro

%macro JCC_ALL 1                    ; short|near
    JCC_ONE o, 0, %1
    JCC_ONE no, 1, %1
    JCC_ONE b, 2, %1
    JCC_ONE ae, 3, %1
    JCC_ONE e, 4, %1
    JCC_ONE ne, 5, %1
    JCC_ONE be, 6, %1
    JCC_ONE a, 7, %1
    JCC_ONE s, 8, %1
    JCC_ONE ns, 9, %1
    JCC_ONE p, 10, %1
    JCC_ONE np, 11, %1
    JCC_ONE l, 12, %1
    JCC_ONE ge, 13, %1
    JCC_ONE le, 14, %1
    JCC_ONE g, 15, %1
    call fold_ccbuf
%endmacro

fold_ccbuf:                         ; preserves registers and flags
    FOLDV [ss:ccbuf]
    FOLDV [ss:ccbuf + 4]
    FOLDV [ss:ccbuf + 8]
    FOLDV [ss:ccbuf + 12]
    ret

alu_pair:
    ALU3 add, F_ALL, nop
    ALU3 adc, F_ALL, clc
    ALU3 adc, F_ALL, stc
    ALU3 sub, F_ALL, nop
    ALU3 sbb, F_ALL, clc
    ALU3 sbb, F_ALL, stc
    ALU3 and, F_LOGIC, nop
    ALU3 or, F_LOGIC, nop
    ALU3 xor, F_LOGIC, nop
    ALU3 cmp, F_ALL, nop
    ALU3 test, F_LOGIC, nop
    ; high-byte registers
    mov eax, esi
    mov ebx, edi
    add ah, bl
    CHK F_ALL
    sub bh, al
    mov eax, ebx
    CHK F_ALL
    stc
    adc ah, bh
    CHK F_ALL
    xchg ah, bl
    FOLDV eax
    FOLDV ebx
    ; the r, r/m direction with a memory operand, and r/m, r with memory destination
    mov [scratch], edi
    mov eax, esi
    add eax, [scratch]
    CHK F_ALL
    sub ax, [scratch + 1]
    CHK F_ALL
    or al, [scratch + 3]
    CHK F_LOGIC
    mov eax, esi
    xor [scratch], eax
    FOLDV [scratch]
    stc
    sbb [scratch + 1], ax
    mov eax, [scratch]
    CHK F_ALL
    cmp [scratch + 2], al
    CHK F_ALL
    test [scratch], esi
    CHK F_LOGIC
    ; conditions after 32-, 16- and 8-bit compares
    cmp esi, edi
    SETCC_ALL
    cmp si, di
    JCC_ALL short
    mov eax, esi
    mov ebx, edi
    cmp al, bl
    JCC_ALL near
    ret

; ---------------------------------------------------------------------------------------------
; One-operand operations, sign and zero extension, bit scans and bit tests.

%macro UN3 2                        ; op, mask; CF is set first so INC/DEC show they keep it
    mov eax, esi
    stc
    %1 al
    CHK %2
    mov eax, esi
    stc
    %1 ax
    CHK %2
    mov eax, esi
    clc
    %1 eax
    CHK %2
%endmacro

unary_value:
    ALU_IMM add, F_ALL
    ALU_IMM adc, F_ALL
    ALU_IMM sub, F_ALL
    ALU_IMM sbb, F_ALL
    ALU_IMM and, F_LOGIC
    ALU_IMM or, F_LOGIC
    ALU_IMM xor, F_LOGIC
    ALU_IMM cmp, F_ALL
    mov eax, esi
    test al, 0x81
    CHK F_LOGIC
    test ax, 0x8001
    CHK F_LOGIC
    test eax, 0x80000001
    CHK F_LOGIC
    UN3 inc, F_ALL
    UN3 dec, F_ALL
    UN3 neg, F_ALL
    UN3 not, F_ALL
    ; sign and zero extension
    mov eax, esi
    cbw
    FOLDV eax
    mov eax, esi
    cwde
    FOLDV eax
    mov eax, esi
    mov edx, 0x55555555
    cwd
    FOLDV eax
    FOLDV edx
    mov eax, esi
    cdq
    FOLDV edx
    movsx eax, si
    FOLDV eax
    mov ebx, esi
    movsx eax, bl
    FOLDV eax
    movsx ax, bh
    FOLDV eax
    movzx eax, bl
    FOLDV eax
    movzx eax, si
    FOLDV eax
    movzx ax, bh
    FOLDV eax
    ; bit scans: the destination is undefined for a zero source, so skip those
    test esi, esi
    jz .no_scan32
    mov eax, 0xCCCCCCCC
    bsf eax, esi
    CHK F_ZF
    bsr eax, esi
    CHK F_ZF
.no_scan32:
    test si, si
    jz .no_scan16
    mov eax, 0xCCCCCCCC
    bsf ax, si
    CHK F_ZF
    bsr ax, si
    CHK F_ZF
.no_scan16:
    ; bit tests on registers: only CF is defined
    mov eax, esi
    bt eax, 0
    CHK F_CF
    bts eax, 7
    CHK F_CF
    btr eax, 31
    CHK F_CF
    btc ax, 15
    CHK F_CF
    mov ecx, esi
    bt eax, ecx                     ; a register offset is taken modulo 32
    CHK F_CF
    btc eax, ecx
    CHK F_CF
    bts ax, cx                      ; ... or 16
    CHK F_CF
    ; bit tests on memory with a register offset reach other bytes, below as well as above
    mov [scratch + 4], esi
    mov [scratch + 8], esi
    mov ax, 45
    bts [scratch + 4], ax
    CHK F_CF
    mov ax, -3
    btr word [scratch + 8], ax
    CHK F_CF
    mov eax, 70
    btc dword [scratch + 4], eax
    CHK F_CF
    bt dword [scratch], eax
    CHK F_CF
    FOLDV [scratch + 4]
    FOLDV [scratch + 8]
    ; XCHG
    mov eax, esi
    mov ebx, 0x13579BDF
    xchg eax, ebx
    xchg bx, ax
    xchg al, ah
    xchg [scratch + 4], ebx
    FOLDV eax
    FOLDV ebx
    FOLDV [scratch + 4]
    ret

; ---------------------------------------------------------------------------------------------
; Addressing modes. BX, SI, DI, BP hold fixed offsets; AM exercises one memory operand.

%macro AM 1
    lea eax, %1
    FOLDV eax
    add %1, ecx
    CHK F_ALL
    mov eax, %1
    FOLDV eax
    sub word %1, 0x1234
    CHK F_ALL
    xor %1, cl
    CHK F_LOGIC
    stc
    adc dx, %1
    mov eax, edx
    CHK F_ALL
    neg byte %1
    CHK F_ALL
    mov eax, %1
    FOLDV eax
%endmacro

; AM_RO: read-only use of a memory operand (ROM through CS, the live stack through ESP).
%macro AM_RO 1
    lea eax, %1
    FOLDV eax
    mov eax, %1
    FOLDV eax
    stc
    adc dx, %1
    mov eax, edx
    CHK F_ALL
    cmp %1, cl
    CHK F_ALL
%endmacro

addressing:
    push bp
    push si
    push di
    mov ecx, 0x9E3779B9
    mov edx, 0x7F4A7C15
    mov bx, 0x1230
    mov si, 0x0456
    mov di, 0x0789
    mov bp, 0x3000                  ; SS-relative: 0000:3000 and up, clear of stack and variables
    ; the eight 16-bit forms, without, with an 8-bit and with a 16-bit displacement
    AM [bx + si]
    AM [bx + di]
    AM [bp + si]
    AM [bp + di]
    AM [si]
    AM [di]
    AM [0x2345]
    AM [bx]
    AM [bx + si + 0x12]
    AM [bx + di - 0x34]
    AM [bp + si + 0x56]
    AM [bp + di - 0x78]
    AM [si + 0x7F]
    AM [di - 0x80]
    AM [bp + 0x10]
    AM [bp]
    AM [bx + 0x01]
    AM [bx + si + 0x1234]
    AM [bx + di + 0x2345]
    AM [bp + si + 0x0ABC]
    AM [bp + di + 0x0DEF]
    AM [si + 0x4321]
    AM [di + 0x3210]
    AM [bp + 0x1111]
    AM [bx + 0x4000]
    ; segment overrides, including DS on a BP form
    AM [es:bx + si + 0x100]
    AM [ss:bx + 0x3000]
    AM [fs:si + 0x200]
    AM [gs:di + 0x300]
    AM [ds:bp + si]
    AM [fs:bp + di + 0x40]
    AM_RO [cs:values + 4]
    AM_RO [cs:bx + si - 0x1000]
    ; 16-bit effective addresses wrap at 64 KiB
    mov bx, 0xF000
    mov si, 0x2000
    AM [bx + si]
    AM [bx + si + 0xFF00]
    AM [si + 0xF000]
    ; 32-bit addressing (address-size prefix): base, index, scale, 8- and 32-bit displacement
    mov ebx, 0x1230
    mov esi, 0x0456
    mov edi, 0x0789
    mov ebp, 0x3000
    AM [ebx]
    AM [esi]
    AM [edi]
    AM [ebx + 0x10]
    AM [esi - 0x20]
    AM [edi + 0x1000]
    AM [ebx + esi]
    AM [ebx + esi * 2]
    AM [ebx + edi * 4 + 0x33]
    AM [esi + ebx * 8 - 0x44]
    AM [edi * 2 + 0x1000]
    AM [esi * 4]
    AM [dword 0x2468]
    AM [ebp + 0x20]
    AM [ebp + esi * 2 + 0x100]
    AM [es:ebx + edi]
    AM [fs:esi + 0x1F0]
    AM [ds:ebp + edi]
    AM_RO [esp]
    AM_RO [esp + 2]
    AM_RO [esp + ebx - 0x1230]
    AM_RO [cs:ebx * 2 + values - 0x2460]
    ; LEA computes without accessing memory: any registers, any wrap
    mov eax, 0x87654321
    mov ebx, 0xFFFFFFF0
    mov ecx, 0x00012345
    mov edx, 0x7FFFFFFF
    lea esi, [eax + ecx * 8 + 0x12345678]
    FOLDV esi
    lea esi, [ebx + 0x20]
    FOLDV esi
    lea si, [edx * 2 + ecx]
    FOLDV esi
    lea edi, [ecx + edx]
    FOLDV edi
    lea edi, [eax * 4 - 8]
    FOLDV edi
    lea di, [bx + 0x7FFF]
    FOLDV edi
    lea edi, [esp + ecx]
    FOLDV edi
    pop di
    pop si
    pop bp
    ret

; ---------------------------------------------------------------------------------------------
; Multiplication and division.

muldiv_pair:
    ; unsigned and signed one-operand multiplies: only CF and OF are defined
    mov eax, esi
    mov ebx, edi
    mul bl
    CHK F_MUL
    mov eax, esi
    imul bl
    CHK F_MUL
    mov eax, esi
    xor edx, edx
    mul bx
    CHK F_MUL
    FOLDV edx
    mov eax, esi
    imul bx
    CHK F_MUL
    FOLDV edx
    mov eax, esi
    mul ebx
    CHK F_MUL
    FOLDV edx
    mov eax, esi
    imul ebx
    CHK F_MUL
    FOLDV edx
    ; two- and three-operand IMUL
    mov eax, esi
    imul ax, bx
    CHK F_MUL
    mov eax, esi
    imul eax, ebx
    CHK F_MUL
    imul ax, bx, strict byte -7
    CHK F_MUL
    imul ax, si, 0x1234
    CHK F_MUL
    imul eax, ebx, 0x00012345
    CHK F_MUL
    imul eax, esi, strict byte 100
    CHK F_MUL
    mov [scratch], edi
    mov eax, esi
    imul eax, [scratch]
    CHK F_MUL
    mul word [scratch + 1]
    CHK F_MUL
    FOLDV edx
    ; division: flags are undefined, and the dividend is chosen so the quotient fits
    test bl, bl
    jz .no_div8
    mov eax, esi
    xor ah, ah
    div bl
    FOLDV eax
    mov eax, esi
    mov ah, bl
    dec ah                          ; AH < divisor: the quotient fits in AL
    div bl
    FOLDV eax
    mov eax, esi
    cmp al, 0x80
    jne .idiv8
    cmp bl, 0xFF
    je .no_div8
.idiv8:
    cbw
    idiv bl
    FOLDV eax
.no_div8:
    test bx, bx
    jz .no_div16
    mov eax, esi
    xor dx, dx
    div bx
    FOLDV eax
    FOLDV edx
    mov eax, esi
    mov dx, bx
    dec dx
    div bx
    FOLDV eax
    FOLDV edx
    mov eax, esi
    cmp ax, 0x8000
    jne .idiv16
    cmp bx, 0xFFFF
    je .no_div16
.idiv16:
    cwd
    idiv bx
    FOLDV eax
    FOLDV edx
    mov [scratch], bx
    mov eax, esi
    xor dx, dx
    div word [scratch]
    FOLDV eax
    FOLDV edx
.no_div16:
    test ebx, ebx
    jz .no_div32
    mov eax, esi
    xor edx, edx
    div ebx
    FOLDV eax
    FOLDV edx
    mov eax, esi
    mov edx, ebx
    dec edx
    div ebx
    FOLDV eax
    FOLDV edx
    mov eax, esi
    cmp eax, 0x80000000
    jne .idiv32
    cmp ebx, 0xFFFFFFFF
    je .no_div32
.idiv32:
    cdq
    idiv ebx
    FOLDV eax
    FOLDV edx
.no_div32:
    ret

; ---------------------------------------------------------------------------------------------
; Shifts and rotates of ESI, with EDI as the second source of SHLD/SHRD. Which flags are
; folded follows the SDM: a count of 0 changes nothing; OF only for a count of 1; AF never
; for shifts; CF of SHL/SHR/SAR only while the count is below the operand size.

%macro SHIFT_MASK 3                 ; kind (0 shift, 1 rotate, 2 double), size, count
%assign cnt (%3) & 31
%if cnt == 0
%assign smask F_ALL
%elif %1 == 1
%if cnt == 1
%assign smask F_ALL
%else
%assign smask F_NOOF
%endif
%elif cnt == 1
%assign smask F_NOAF
%elif cnt < %2
%assign smask F_SZPC
%else
%assign smask F_SZP
%endif
%endmacro

; SH1 op, kind, size, reg, count, imm(0/1), flags: one shift or rotate of the low part of
; EAX, with FLAGS loaded from `flags` first: flags an operation leaves alone must hold known
; values, not what an earlier operation left undefined.
%macro SH1 7
    SHIFT_MASK %2, %3, %5
    mov eax, esi
    %if %6 == 0
    mov cl, %5
    %endif
    push word %7
    popf
    %if %6
    %1 %4, %5
    %else
    %1 %4, cl
    %endif
    CHK smask
%endmacro

; SH_ALL op, kind, flags: every count by CL, some as immediates, at all three sizes.
%macro SH_ALL 3
%assign sz 8
%rep 3
    %if sz == 8
    %define r al
    %elif sz == 16
    %define r ax
    %else
    %define r eax
    %endif
    SH1 %1, %2, sz, r, 0, 0, %3
    SH1 %1, %2, sz, r, 1, 0, %3
    SH1 %1, %2, sz, r, 2, 0, %3
    SH1 %1, %2, sz, r, 4, 0, %3
    SH1 %1, %2, sz, r, 7, 0, %3
    SH1 %1, %2, sz, r, 8, 0, %3
    SH1 %1, %2, sz, r, 9, 0, %3
    SH1 %1, %2, sz, r, 15, 0, %3
    SH1 %1, %2, sz, r, 16, 0, %3
    SH1 %1, %2, sz, r, 17, 0, %3
    SH1 %1, %2, sz, r, 31, 0, %3
    SH1 %1, %2, sz, r, 1, 1, %3
    SH1 %1, %2, sz, r, 4, 1, %3
    SH1 %1, %2, sz, r, 9, 1, %3
    SH1 %1, %2, sz, r, 31, 1, %3
    %undef r
%assign sz sz * 2
%endrep
%endmacro

; DSH op, size, count, imm: SHLD/SHRD; counts above the operand size are undefined, skipped.
%macro DSH 4
    SHIFT_MASK 2, %2, %3
    mov eax, esi
    mov ebx, edi
    push word 0x0046                ; ZF PF set, the rest clear: known flags for count 0
    popf
    %if %2 == 16
    %if %4
    %1 ax, bx, %3
    %else
    mov cl, %3
    %1 ax, bx, cl
    %endif
    %else
    %if %4
    %1 eax, ebx, %3
    %else
    mov cl, %3
    %1 eax, ebx, cl
    %endif
    %endif
    CHK smask
%endmacro

shift_pair:
    ; the single-operand shifts depend on ESI only: run them for the first EDI
    cmp word [ss:idx_j], 0
    jne .double
    SH_ALL shl, 0, 0x0002
    SH_ALL shr, 0, 0x0002
    SH_ALL sar, 0, 0x08D7
    SH_ALL rol, 1, 0x00C6
    SH_ALL ror, 1, 0x0802
    SH_ALL rcl, 1, 0x0002
    SH_ALL rcl, 1, 0x08D7
    SH_ALL rcr, 1, 0x0002
    SH_ALL rcr, 1, 0x08D7
    ; a memory operand
    mov [scratch], esi
    shl dword [scratch], 3
    CHK F_SZPC
    rcr word [scratch + 1], 1       ; AF stays as SHL left it: undefined
    CHK F_NOAF
    sar byte [scratch + 3], cl
    FOLDV [scratch]
.double:
    DSH shld, 16, 0, 0
    DSH shld, 16, 1, 0
    DSH shld, 16, 5, 0
    DSH shld, 16, 15, 1
    DSH shrd, 16, 1, 1
    DSH shrd, 16, 9, 0
    DSH shrd, 16, 15, 0
    DSH shld, 32, 1, 1
    DSH shld, 32, 8, 0
    DSH shld, 32, 31, 0
    DSH shrd, 32, 0, 0
    DSH shrd, 32, 1, 0
    DSH shrd, 32, 13, 1
    DSH shrd, 32, 31, 0
    ret

; ---------------------------------------------------------------------------------------------
; BCD adjustment: every AL with every AF/CF input.

bcd:
    xor cx, cx                      ; CL = AL input, CH bit 0 = CF in, bit 1 = AF in
.daa_das:
    mov bl, ch
    and bx, 1
    mov dl, ch
    and dx, 2
    shl dx, 3                       ; AF is bit 4
    or bx, dx
    or bx, 0x0002
    mov al, cl
    mov ah, 0x5A
    push bx
    popf
    daa
    CHK F_NOOF                      ; OF is undefined after DAA
    mov al, cl
    push bx
    popf
    das
    CHK F_NOOF
    mov al, cl
    mov ah, 0x39
    push bx
    popf
    aaa                             ; only AF and CF are defined
    CHK F_AFCF
    mov al, cl
    mov ah, 0x39
    push bx
    popf
    aas
    CHK F_AFCF
    inc cx
    cmp cx, 0x400
    jb .daa_das

    xor cx, cx
.aam_aad:
    mov al, cl
    mov ah, 0xEE
    aam                             ; base 10: SF, ZF, PF defined
    CHK F_SZP
    mov al, cl
    aam 16
    CHK F_SZP
    mov al, cl
    aam 7
    CHK F_SZP
    mov al, cl
    mov ah, cl
    not ah
    aad
    CHK F_SZP
    mov al, cl
    mov ah, 3
    aad 16
    CHK F_SZP
    mov al, cl
    mov ah, cl
    aad 7
    CHK F_SZP
    inc cx
    cmp cx, 0x100
    jb .aam_aad
    ret

; ---------------------------------------------------------------------------------------------
; String instructions. DS:SI and ES:DI are both in the data segment unless overridden.

%macro FOLD_SIDICX 0
    FOLDV esi
    FOLDV edi
    FOLDV ecx
%endmacro

strings:
    push si
    push di
    xor esi, esi
    xor edi, edi
    xor ecx, ecx
    ; REP MOVSB forward, REP MOVSW backward
    cld
    mov si, 0x0100
    mov di, 0x8000
    mov cx, 37
    rep movsb
    FOLD_SIDICX
    mov di, 0x8000
    mov cx, 40
    call fold_region
    std
    mov si, 0x0300
    mov di, 0x8100
    mov cx, 13
    rep movsw
    FOLD_SIDICX
    mov di, 0x80E0
    mov cx, 0x24
    call fold_region
    cld
    ; 32-bit addressing with an FS source: uses ESI, EDI, ECX
    mov esi, 0x200
    mov edi, 0x8200
    mov ecx, 9
    a32 fs rep movsd
    FOLD_SIDICX
    mov di, 0x8200
    mov cx, 40
    call fold_region
    ; CX = 0 moves nothing and leaves the flags
    mov si, 0x400
    mov di, 0x8300
    xor cx, cx
    push word 0x08D7                ; all six status flags set
    popf
    rep movsb
    CHK F_ALL
    FOLD_SIDICX
    ; 16-bit SI wraps at 64 KiB in the middle of a REP
    mov si, 0xFFF0
    mov di, 0x8400
    mov cx, 0x20
    rep movsb
    FOLD_SIDICX
    mov di, 0x8400
    mov cx, 0x20
    call fold_region
    ; overlapping forward copy smears the first byte
    mov si, 0x8500
    mov di, 0x8501
    mov cx, 31
    rep movsb
    mov di, 0x8500
    mov cx, 32
    call fold_region
    ; STOS at all widths, both directions
    mov eax, 0xA5C3E187
    mov di, 0x8600
    mov cx, 5
    rep stosb
    mov cx, 7
    rep stosw
    mov cx, 3
    rep stosd
    std
    mov cx, 4
    rep stosw
    cld
    FOLD_SIDICX
    mov di, 0x85F0
    mov cx, 0x40
    call fold_region
    ; LODS with GS and ES sources
    mov si, 0x123
    gs lodsb
    FOLDV eax
    gs lodsw
    FOLDV eax
    es lodsd
    FOLDV eax
    FOLDV esi
    mov cx, 3
    rep lodsw
    FOLD_SIDICX
    FOLDV eax
    ; REPE CMPS over a copy that differs at byte 20
    mov si, 0x1000
    mov di, 0x9000
    mov cx, 40
    rep movsb
    xor byte [0x9000 + 20], 0x40
    mov si, 0x1000
    mov di, 0x9000
    mov cx, 40
    repe cmpsb
    CHK F_ALL
    FOLD_SIDICX
    mov si, 0x1000
    mov di, 0x9000
    mov cx, 20
    repne cmpsw                     ; stops at the first equal word
    CHK F_ALL
    FOLD_SIDICX
    mov si, 0x1000
    mov di, 0x9000
    mov cx, 5
    repe cmpsd
    CHK F_ALL
    FOLD_SIDICX
    ; CMPS with FS source, 32-bit addressing
    mov esi, 0x10
    mov edi, 0x10
    mov ecx, 8
    a32 fs repne cmpsb
    CHK F_ALL
    FOLD_SIDICX
    ; SCAS: find a byte, skip equal words
    mov di, 0x1000
    mov al, [0x1000 + 77]
    mov cx, 200
    repne scasb
    CHK F_ALL
    FOLD_SIDICX
    mov di, 0x8600 + 5
    mov ax, 0xE187
    mov cx, 20
    repe scasw
    CHK F_ALL
    FOLD_SIDICX
    mov di, 0x2000
    mov eax, [0x2000 + 16]
    mov cx, 50
    repne scasd
    CHK F_ALL
    FOLD_SIDICX
    pop di
    pop si
    ret

; ---------------------------------------------------------------------------------------------
; PUSHA/POPA, ENTER/LEAVE, PUSH/POP forms.

stack_frames:
    push bp
    push si
    push di
    ; PUSHA stores the SP from before it; POPA skips it
    mov eax, 0x11111111
    mov ecx, 0x22222222
    mov edx, 0x33333333
    mov ebx, 0x44444444
    mov ebp, 0x55555555
    mov esi, 0x66666666
    mov edi, 0x77777777
    pusha
    mov bp, sp
    FOLDZ word [bp + 0]
    FOLDZ word [bp + 2]
    FOLDZ word [bp + 4]
    FOLDZ word [bp + 6]
    FOLDZ word [bp + 8]
    FOLDZ word [bp + 10]
    FOLDZ word [bp + 12]
    FOLDZ word [bp + 14]
    mov word [bp + 6], 0x1234       ; the saved SP: POPA must ignore it
    mov word [bp + 0], 0xABCD       ; DI
    popa
    FOLDV eax
    FOLDV ecx
    FOLDV edx
    FOLDV ebx
    FOLDV ebp
    FOLDV esi
    FOLDV edi
    FOLDZ sp
    pushad
    mov bp, sp
    FOLDV [bp + 0]
    FOLDV [bp + 12]
    FOLDV [bp + 28]
    mov dword [bp + 4], 0x0BADF00D  ; ESI
    popad
    FOLDV esi
    FOLDV esp
    ; ENTER with nesting levels 0, 1 and 3 from a frame at 0000:5000
    mov bp, 0x5000
    mov word [ss:0x5000 - 2], 0x1111
    mov word [ss:0x5000 - 4], 0x2222
    mov word [ss:0x5000 - 6], 0x3333
    enter 8, 0
    FOLDZ sp
    FOLDZ bp
    FOLDZ word [ss:bp]
    leave
    FOLDZ sp
    FOLDZ bp
    enter 6, 1
    FOLDZ sp
    FOLDZ bp
    FOLDZ word [ss:bp - 2]
    leave
    enter 4, 3
    FOLDZ sp
    FOLDZ bp
    FOLDZ word [ss:bp - 2]
    FOLDZ word [ss:bp - 4]
    FOLDZ word [ss:bp - 6]
    leave
    FOLDZ sp
    FOLDZ bp
    ; PUSH forms: immediates, memory, segment registers
    push strict word 0x1234
    push strict byte -2
    push dword 0x89ABCDEF
    push word [cs:values + 12]
    push dword [cs:values + 48]
    push fs
    pop ax
    FOLDZ ax
    pop eax
    FOLDV eax
    pop ax
    FOLDZ ax
    pop eax
    FOLDV eax
    pop ax
    FOLDZ ax
    pop ax
    FOLDZ ax
    push dword 0x76543210
    pop dword [scratch]
    FOLDV [scratch]
    FOLDZ sp
    pop di
    pop si
    pop bp
    ret

; ---------------------------------------------------------------------------------------------
; Control transfers: LOOP family, JCXZ, XLAT, near and far CALL/RET/JMP.

control:
    push si
    push di
    ; LOOP counts CX (16-bit address size) and keeps ECX's upper half
    mov ecx, 0x12340025
    xor edx, edx
.loop16:
    add edx, ecx
    loop .loop16
    FOLDV edx
    FOLDV ecx
    ; LOOP with the address-size prefix counts all of ECX
    mov ecx, 0x00010003
    xor edx, edx
.loop32:
    inc edx
    a32 loop .loop32
    FOLDV edx
    FOLDV ecx
    ; LOOPE / LOOPNE stop on ZF
    mov cx, 50
    mov bx, 0x2000
.loope:
    inc bx
    test byte [bx], 0x80
    loope .loope
    FOLDV ecx
    FOLDV ebx
    mov cx, 300
    mov bx, 0x2000
.loopne:
    inc bx
    test byte [bx], 0x07
    loopne .loopne
    CHK F_ZF
    FOLDV ecx
    FOLDV ebx
    ; JCXZ tests CX only, JECXZ all of ECX
    mov ecx, 0x00010000
    mov ax, 0
    jcxz .cx_zero
    or ax, 1
.cx_zero:
    jecxz .ecx_zero
    or ax, 2
.ecx_zero:
    FOLDZ ax
    ; XLAT: DS:BX table in RAM, and a CS override to a table in ROM
    mov bx, 0x3000
    xor cx, cx
    xor edx, edx
.xlat:
    mov al, cl
    xlatb
    rol edx, 1
    xor dl, al
    mov al, cl
    and al, 0x3F
    cs xlatb
    add edx, eax
    inc cx
    cmp cx, 256
    jb .xlat
    FOLDV edx
    ; near calls: direct, through a register, through memory, RET imm16
    xor edx, edx
    call near_target
    mov ax, near_target
    call ax
    mov word [ss:nptr], near_target
    call word [ss:nptr]
    push word 0x1111
    push word 0x2222
    call near_ret4
    FOLDV edx
    FOLDZ sp
    ; far calls: direct, indirect through memory, RETF imm16, 32-bit operand size
    call 0xF000:far_target
    mov word [ss:fptr], far_target
    mov word [ss:fptr + 2], 0xF000
    call far [ss:fptr]
    push word 0x3333
    call 0xF000:far_ret2
    call dword 0xF000:far_target32
    FOLDV edx
    FOLDZ sp
    ; far and near jumps through memory and registers
    mov word [ss:fptr2], .far_landed
    mov word [ss:fptr2 + 2], 0xF000
    jmp far [ss:fptr2]
    hlt
.far_landed:
    jmp 0xF000:.far_direct
    hlt
.far_direct:
    mov ax, .near_landed
    jmp ax
    hlt
.near_landed:
    mov word [ss:nptr], .mem_landed
    jmp word [ss:nptr]
    hlt
.mem_landed:
    FOLDV edx
    pop di
    pop si
    ret

near_target:                        ; folds its return address
    push bp
    mov bp, sp
    FOLDZ word [bp + 2]
    add edx, 0x100
    pop bp
    ret

near_ret4:
    push bp
    mov bp, sp
    FOLDZ word [bp + 2]
    FOLDZ word [bp + 4]
    FOLDZ word [bp + 6]
    pop bp
    ret 4

far_target:                         ; folds its far return address
    push bp
    mov bp, sp
    FOLDZ word [bp + 2]
    FOLDZ word [bp + 4]
    add edx, 0x10000
    pop bp
    retf

far_ret2:
    push bp
    mov bp, sp
    FOLDZ word [bp + 2]
    FOLDZ word [bp + 4]
    FOLDZ word [bp + 6]
    pop bp
    retf 2

far_target32:                       ; 32-bit far call: EIP and CS pushed as dwords
    push bp
    mov bp, sp
    FOLDV [bp + 2]                  ; EIP; the upper half of the CS slot is not architectural
    FOLDZ word [bp + 6]
    add edx, 0x1000000
    pop bp
    o32 retf

; ---------------------------------------------------------------------------------------------
; Segment registers: moves, pushes, far-pointer loads.

segments:
    push si
    push di
    mov word [ss:fptr], 0x0456
    mov word [ss:fptr + 2], DATA_SEG
    lds si, [ss:fptr]
    FOLDV esi
    les di, [ss:fptr]
    FOLDV edi
    mov word [ss:fptr + 2], FS_SEG
    lfs bx, [ss:fptr]
    mov ax, fs
    FOLDZ ax
    FOLDZ bx
    mov word [ss:fptr + 2], GS_SEG
    lgs cx, [ss:fptr]
    mov ax, gs
    FOLDZ ax
    mov [ss:fptr], sp
    mov [ss:fptr + 2], ss
    lss sp, [ss:fptr]
    FOLDZ sp
    ; 32-bit offset with LFS: a 6-byte pointer
    mov dword [ss:scratch], 0x00012345
    mov word [ss:scratch + 4], FS_SEG
    lfs ebx, [ss:scratch]
    FOLDV ebx
    ; the data at the same linear address through two different segments
    mov ax, 0x2100
    mov es, ax
    mov eax, [es:0x0010]
    FOLDV eax
    mov ax, DATA_SEG
    mov es, ax
    mov ebx, [es:0x1010]
    cmp eax, ebx
    CHK F_ALL
    ; PUSH/POP segment registers, MOV between them
    push ds
    pop es
    mov ax, es
    FOLDZ ax
    push cs
    pop ax
    FOLDZ ax
    mov ax, ss
    mov dx, ax
    FOLDZ dx
    mov bx, ds
    mov fs, bx
    mov ax, fs
    FOLDZ ax
    mov ax, FS_SEG
    mov fs, ax
    mov [scratch], gs
    FOLDZ word [scratch]
    pop di
    pop si
    ret

; ---------------------------------------------------------------------------------------------
; Flag instructions.

flag_ops:
    ; SAHF/LAHF with every AH: LAHF gives SF ZF 0 AF 0 PF 1 CF
    xor cx, cx
    xor edx, edx
.sahf:
    mov ah, cl
    sahf
    mov ah, 0
    lahf
    rol edx, 3
    xor dl, ah
    inc cx
    cmp cx, 256
    jb .sahf
    FOLDV edx
    ; POPF/PUSHF keep the six status flags and DF; bit 1 always reads as 1
    mov bx, 0x0CD5
    push bx
    popf
    pushf
    pop ax
    and ax, 0x0FD7
    FOLDZ ax
    xor bx, bx
    push bx
    popf
    pushf
    pop ax
    and ax, 0x0FD7
    FOLDZ ax
    cld
    ; CLC, STC, CMC
    clc
    cmc
    CHK F_CF
    cmc
    CHK F_CF
    stc
    CHK F_CF
    ; SETcc and Jcc after INC (CF kept) and after SAHF-loaded flags
    mov bx, 0x00FF
    stc
    inc bl
    SETCC_ALL
    mov ah, 0xD5
    sahf
    JCC_ALL short
    mov ah, 0x00
    sahf
    SETCC_ALL
    ret

    ROM_END
