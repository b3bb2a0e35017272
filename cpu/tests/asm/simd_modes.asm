; SSE from a program's point of view, in real mode on a bare CPU: CPUID's feature bits,
; #UD until CR4.OSFXSR is set, arithmetic once it is, #GP for a misaligned MOVAPS, #XM for an
; unmasked exception (#UD without CR4.OSXMMEXCPT), #NM with CR0.TS, MMX's effect on the x87
; tags seen through FXSAVE, XGETBV/XSETBV/XSAVE/XRSTOR, and RDRAND.
; Every exception handler logs its vector and resumes after the faulting instruction, whose
; length the code stores in `skip` first.
; Results: 0x500 vector log (bytes), 0x510 number of exceptions, 0x520 ADDPS result (16
; bytes), 0x530 PCMPISTRI's ECX, 0x534 CVTTSD2SI result, 0x538 MXCSR after the #XM, 0x540
; FXSAVE abridged tags after PADDB, 0x541 after EMMS, 0x542 FSW after PADDB, 0x548 XCR0 before
; XSETBV, 0x54C after, 0x550 XMM0 low dword after XRSTOR, 0x554 FLAGS after RDRAND, 0x558
; CPUID.1 ECX before CR4.OSXSAVE, 0x55C after, 0x560 CPUID.1 EDX, 0x570 PSHUFB result.
; Build: nasm -f bin -o simd_modes.bin simd_modes.asm
bits 16
org 0x7c00
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7000
    ; IVT entries 0-31 -> stubs
    xor bx, bx
    mov cx, 32
    mov ax, stubs
.ivt:
    mov [bx], ax
    mov word [bx+2], 0
    add ax, stub_size
    add bx, 4
    loop .ivt
    mov word [log_ptr], 0x500

    ; CPUID leaf 1 before CR4.OSXSAVE
    mov eax, 1
    cpuid
    mov [0x558], ecx
    mov [0x560], edx

    ; SSE before CR4.OSFXSR: #UD
    mov byte [skip], 3
    addps xmm0, xmm1                    ; 3 bytes

    ; enable SSE: CR0.EM clear, CR0.MP set; CR4.OSFXSR and OSXMMEXCPT
    mov eax, cr0
    and eax, ~4
    or eax, 2
    mov cr0, eax
    mov eax, cr4
    or eax, 0x600
    mov cr4, eax

    movups xmm0, [va]
    addps xmm0, [vb]
    movups [0x520], xmm0
    movdqu xmm1, [bytes]
    pshufb xmm1, [reverse]
    movdqu [0x570], xmm1
    ; strlen of "hello, world" with PCMPISTRI (equal each against zeros: first NUL)
    pxor xmm2, xmm2
    movdqu xmm3, [text]
    pcmpistri xmm2, xmm3, 0x08
    mov [0x530], ecx
    ; trunc(sqrt(2) * 1e6)
    mov eax, 2000000
    cvtsi2sd xmm4, eax
    mov eax, 1000000
    cvtsi2sd xmm5, eax
    mulsd xmm4, xmm5
    sqrtsd xmm4, xmm4
    cvttsd2si eax, xmm4
    mov [0x534], eax

    ; misaligned MOVAPS: #GP
    mov byte [skip], 5
    movaps xmm0, [va + 1]               ; 5 bytes

    ; unmasked divide by zero: #XM, then #UD without OSXMMEXCPT
    mov dword [scratch], 0x1F80 & ~0x200
    ldmxcsr [scratch]
    xorps xmm6, xmm6
    movups xmm7, [va]
    mov byte [skip], 3
    divps xmm7, xmm6                    ; 3 bytes
    stmxcsr [0x538]
    mov eax, cr4
    and eax, ~0x400
    mov cr4, eax
    divps xmm7, xmm6                    ; 3 bytes: #UD
    or eax, 0x400
    mov cr4, eax
    mov dword [scratch], 0x1F80
    ldmxcsr [scratch]

    ; CR0.TS: #NM
    mov eax, cr0
    or eax, 8
    mov cr0, eax
    addps xmm0, xmm1                    ; 3 bytes
    clts

    ; MMX and the x87 tags
    fninit
    paddb mm0, mm1
    fxsave [0x1000]
    mov al, [0x1004]
    mov [0x540], al
    mov ax, [0x1002]
    mov [0x542], ax
    emms
    fxsave [0x1000]
    mov al, [0x1004]
    mov [0x541], al

    ; XSAVE
    mov eax, cr4
    or eax, 0x40000
    mov cr4, eax
    mov eax, 1
    cpuid
    mov [0x55C], ecx
    xor ecx, ecx
    xgetbv
    mov [0x548], eax
    mov eax, 3
    xor edx, edx
    xsetbv
    xgetbv
    mov [0x54C], eax
    mov dword [0x1600], 0              ; XSAVE header: XSTATE_BV and XCOMP_BV zero
    mov dword [0x1604], 0
    mov dword [0x1608], 0
    mov dword [0x160C], 0
    movups xmm0, [va]
    mov eax, 3
    xor edx, edx
    xsave [0x1400]
    xorps xmm0, xmm0
    xrstor [0x1400]
    movd [0x550], xmm0

    rdrand ax
    pushf
    pop word [0x554]

    hlt

; exception stubs: push the vector, join the common path
stubs:
%assign v 0
%rep 32
    push word v
    jmp near on_fault
%assign v v+1
%endrep
stub_size equ (($ - stubs) / 32)

on_fault:
    push bp
    mov bp, sp
    push ax
    push bx
    mov ax, [bp+2]                      ; vector
    mov bx, [log_ptr]
    mov [bx], al
    inc word [log_ptr]
    inc word [0x510]
    xor ax, ax
    mov al, [skip]
    add [bp+4], ax                      ; return IP past the faulting instruction
    pop bx
    pop ax
    pop bp
    add sp, 2
    iret

align 16
va: dd 1.0, 2.0, 3.0, 4.0
vb: dd 0.5, 0.25, -3.0, 1.0e10
bytes: db 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
reverse: db 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0x80
text: db "hello, world", 0, "xyz"
scratch: dd 0
skip: db 0
log_ptr: dw 0
