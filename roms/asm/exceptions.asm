; exceptions: real-mode exceptions and software interrupts, with 286+ semantics: a fault
; (#DE, #UD, #BR) pushes the address of the faulting instruction, its first prefix included,
; and leaves the registers as they were; a trap or software interrupt (INT n, INT3, INTO)
; pushes the address of the next instruction. Every vector goes to one handler (trap_hook)
; that records the vector and the pushed CS:IP and FLAGS, then resumes at the address the
; test set. Prints PASS or FAIL per check and exits 0 only if all pass.
;
; Reference: Intel SDM vol. 3, 6.15 (exception classes), 20.1.4 (real-mode interrupts).

%include "inc/ferrite.inc"

NONE equ 0xFFFF                     ; "no interrupt expected"

ROM_RAM exp_vec, 2
ROM_RAM exp_ip, 2
ROM_RAM resume, 2
ROM_RAM hits, 2
ROM_RAM got_vec, 2
ROM_RAM got_ip, 2
ROM_RAM got_cs, 2
ROM_RAM got_flags, 2
ROM_RAM passes, 2
ROM_RAM failures, 2
ROM_RAM bounds16, 4
ROM_RAM bounds32, 8

; EXPECT vector, ip, resume: the next event must be `vector` with `ip` pushed; the handler
; then returns to `resume`. EXPECT NONE, 0, resume: no event may happen.
%macro EXPECT 3
    mov word [exp_vec], %1
    mov word [exp_ip], %2
    mov word [resume], %3
    mov word [hits], 0
%endmacro

; CHECK `name`: compare what happened with the last EXPECT.
%macro CHECK 1
section .rodata
%%name: db %1, 0
section .text
    mov si, %%name
    call check_event
%endmacro

; ASSERT cc, `name`: pass if condition cc holds (flags from the instruction before).
%macro ASSERT 2
section .rodata
%%name: db %2, 0
section .text
    mov si, %%name
    j%-1 %%fail
    call report_pass
    jmp %%done
%%fail:
    call report_fail
%%done:
%endmacro

entry:
    INIT
    mov word [trap_hook], record_event
    PRINT `exceptions: faults push the faulting IP, traps the next one\r\n`

t_div8:
    EXPECT 0, .insn, .resume
    mov ax, 1234
    mov cl, 0
.insn:
    div cl
.resume:
    cmp ax, 1234
    ASSERT e, `DIV r/m8 by zero leaves AX alone`
    CHECK `DIV r/m8 by zero: #DE at the DIV`

t_div16:
    EXPECT 0, .insn, .resume
    mov dx, 1
    mov ax, 0
    mov cx, 1
.insn:
    div cx
.resume:
    cmp dx, 1
    ASSERT e, `DIV r/m16 overflow leaves DX alone`
    CHECK `DIV r/m16 quotient overflow: #DE at the DIV`

t_idiv16:
    EXPECT 0, .insn, .resume
    mov ax, 0x8000
    cwd
    mov bx, -1
.insn:
    idiv bx
.resume:
    cmp ax, 0x8000
    ASSERT e, `IDIV overflow leaves AX alone`
    CHECK `IDIV r/m16 -32768 / -1: #DE at the IDIV`

t_div32:
    EXPECT 0, .insn, .resume
    mov eax, 0x12345678
    xor edx, edx
    xor ecx, ecx
.insn:
    div ecx
.resume:
    cmp eax, 0x12345678
    ASSERT e, `DIV r/m32 by zero leaves EAX alone`
    CHECK `DIV r/m32 by zero (operand-size prefix): #DE at the prefix`

t_div_prefixed:
    mov byte [0x700], 0
    mov bx, 0x700
    EXPECT 0, .insn, .resume
.insn:
    div byte [es:bx]                ; 26 F6 37: the fault points at the ES prefix
.resume:
    CHECK `DIV m8 by zero with ES override: #DE at the prefix`

t_aam0:
    EXPECT 0, .insn, .resume
    mov ax, 0x0123
.insn:
    db 0xD4, 0x00                   ; AAM 0
.resume:
    CHECK `AAM 0: #DE at the AAM`

t_ud2:
    EXPECT 6, .insn, .resume
.insn:
    ud2
.resume:
    CHECK `UD2: #UD at the UD2`

t_grp4:
    EXPECT 6, .insn, .resume
.insn:
    db 0xFE, 0xF8                   ; FE /7: no such instruction
.resume:
    CHECK `invalid opcode FE /7: #UD at the opcode`

t_lock:
    EXPECT 6, .insn, .resume
.insn:
    db 0xF0, 0x01, 0xC0             ; LOCK ADD AX, AX: LOCK needs a memory destination
.resume:
    CHECK `LOCK with a register destination: #UD at the prefix`

t_int40:
    EXPECT 0x40, .next, .resume
    stc
.insn:
    int 0x40
.next:
    hlt                             ; never reached: the handler resumes at .resume
.resume:
    ASSERT c, `INT 40h: IRET restores the flags (CF)`
    CHECK `INT 40h: vector 40h, IP of the next instruction`
    test word [got_flags], 0x0001
    ASSERT nz, `INT 40h: FLAGS pushed with CF set`
    test word [got_flags], 0x0002
    ASSERT nz, `INT 40h: FLAGS pushed with bit 1 set`

t_int3:
    EXPECT 3, .next, .resume
.insn:
    int3                            ; CC
.next:
    hlt
.resume:
    CHECK `INT3 (CC): vector 3, IP after the one-byte opcode`

t_int_3:
    EXPECT 3, .next, .resume
.insn:
    db 0xCD, 0x03                   ; INT 3, two-byte form
.next:
    hlt
.resume:
    CHECK `INT 3 (CD 03): vector 3, IP after both bytes`

t_into_of:
    EXPECT 4, .next, .resume
    mov al, 0x7F
    add al, 1                       ; OF=1
.insn:
    into
.next:
    hlt
.resume:
    CHECK `INTO with OF set: vector 4, IP after the INTO`

t_into_no:
    EXPECT NONE, 0, 0
    mov al, 1
    add al, 1                       ; OF=0
    into
    CHECK `INTO with OF clear: no interrupt`

t_bound_above:
    mov word [bounds16], -10
    mov word [bounds16 + 2], 10
    EXPECT 5, .insn, .resume
    mov ax, 11
.insn:
    bound ax, [bounds16]
.resume:
    CHECK `BOUND r16 above the upper bound: #BR at the BOUND`

t_bound_below:
    EXPECT 5, .insn, .resume
    mov ax, -11                     ; signed comparison: -11 < -10
.insn:
    bound ax, [bounds16]
.resume:
    CHECK `BOUND r16 below the lower bound (signed): #BR`

t_bound_in:
    EXPECT NONE, 0, 0
    mov ax, -10
    bound ax, [bounds16]
    mov ax, 10
    bound ax, [bounds16]
    CHECK `BOUND r16 on both bounds: no interrupt`

t_bound32:
    mov dword [bounds32], 0x10000
    mov dword [bounds32 + 4], 0x20000
    EXPECT 5, .insn, .resume
    mov eax, 0x20001
.insn:
    bound eax, [bounds32]
.resume:
    CHECK `BOUND r32 (operand-size prefix) out of range: #BR at the prefix`

done:
    PRINT `exceptions: `
    mov ax, [passes]
    call print_dec16
    PRINT ` checks passed, `
    mov ax, [failures]
    call print_dec16
    PRINT ` checks failed\r\n`
    cmp word [failures], 0
    jne .failed
    PRINT `exceptions: PASS\r\n`
    EXIT 0
.failed:
    PRINT `exceptions: FAIL\r\n`
    EXIT 1

; The hook behind every vector: stack = vector, IP, CS, FLAGS.
record_event:
    push bp
    mov bp, sp
    push ax
    push ds
    xor ax, ax
    mov ds, ax
    mov ax, [bp + 2]
    mov [got_vec], ax
    mov ax, [bp + 4]
    mov [got_ip], ax
    mov ax, [bp + 6]
    mov [got_cs], ax
    mov ax, [bp + 8]
    mov [got_flags], ax
    inc word [hits]
    mov ax, [resume]
    mov [bp + 4], ax
    pop ds
    pop ax
    pop bp
    add sp, 2                       ; drop the vector number
    iret

; check_event: SI = name. Compares the recorded event with the expectation.
check_event:
    cmp word [exp_vec], NONE
    je .expect_none
    cmp word [hits], 1
    jne report_event_fail
    mov ax, [got_vec]
    cmp ax, [exp_vec]
    jne report_event_fail
    mov ax, [got_ip]
    cmp ax, [exp_ip]
    jne report_event_fail
    mov ax, cs
    cmp [got_cs], ax
    jne report_event_fail
    jmp report_pass
.expect_none:
    cmp word [hits], 0
    jne report_event_fail
    jmp report_pass

report_pass:
    inc word [passes]
    PRINT `PASS  `
    call puts
    PRINT `\r\n`
    ret

report_fail:
    inc word [failures]
    PRINT `FAIL  `
    call puts
    PRINT `\r\n`
    ret

report_event_fail:
    inc word [failures]
    PRINT `FAIL  `
    call puts
    PRINT `: `
    mov ax, [hits]
    call print_dec16
    PRINT ` event(s), last vector `
    mov ax, [got_vec]
    call print_hex8
    PRINT ` at `
    mov ax, [got_cs]
    call print_hex16
    PRINT `:`
    mov ax, [got_ip]
    call print_hex16
    PRINT `; expected `
    cmp word [exp_vec], NONE
    je .none
    PRINT `vector `
    mov ax, [exp_vec]
    call print_hex8
    PRINT ` at IP `
    mov ax, [exp_ip]
    call print_hex16
    PRINT `\r\n`
    ret
.none:
    PRINT `none\r\n`
    ret

    ROM_END
