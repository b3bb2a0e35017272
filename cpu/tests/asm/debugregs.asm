; Debug registers in real mode on a bare CPU: an instruction breakpoint (a fault: the
; handler sees IP at the instruction), a data write breakpoint (a trap: IP after the
; write), an I/O breakpoint with CR4.DE, and the general-detect fault.
; Results (words): 0x500 IP seen by the instruction-breakpoint #DB, 0x502 DR6 low word then,
; 0x504 IP seen by the data-breakpoint #DB, 0x506 DR6 then, 0x508 IP at the I/O breakpoint,
; 0x50A DR6 then, 0x50C DR6 after general detect, 0x50E count of #DB.
bits 16
org 0x7c00
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7000
    mov word [4], db_handler
    mov word [6], 0
    ; instruction breakpoint on `target`
    mov eax, target
    mov dr0, eax
    mov eax, 0x00000001         ; L0, RW0=00 (execute), LEN0=00
    mov dr7, eax
    nop
target:
    inc cx
    ; data breakpoint: DR1 = 0x600, write, 2 bytes
    mov eax, 0x600
    mov dr1, eax
    mov eax, 0x00510004         ; L1, RW1=01 (write), LEN1=01 (2 bytes)
    mov dr7, eax
    mov word [0x600], 0x1234
after_write:
    ; I/O breakpoint: CR4.DE, DR2 = port 0x80, RW2=10
    mov eax, cr4
    or eax, 8
    mov cr4, eax
    mov eax, 0x80
    mov dr2, eax
    mov eax, 0x02000010         ; L2, RW2=10 (I/O), LEN2=00
    mov dr7, eax
    out 0x80, al
after_out:
    ; general detect: DR7.GD then a debug register access faults
    mov eax, 0x00002000
    mov dr7, eax
    mov eax, dr6                ; #DB (BD); the handler clears DR7 so this then runs
    hlt

db_handler:
    inc word [0x50E]
    mov bp, sp
    mov ax, [bp]                ; IP
    cmp word [0x50E], 1
    je .first
    cmp word [0x50E], 2
    je .second
    cmp word [0x50E], 3
    je .third
    ; fourth: general detect; DR7.GD was cleared by the processor
    mov eax, dr6
    mov [0x50C], ax
    xor eax, eax
    mov dr7, eax
    iret
.first:
    mov [0x500], ax
    mov eax, dr6
    mov [0x502], ax
    jmp .done
.second:
    mov [0x504], ax
    mov eax, dr6
    mov [0x506], ax
    jmp .done
.third:
    mov [0x508], ax
    mov eax, dr6
    mov [0x50A], ax
.done:
    xor eax, eax
    mov dr7, eax                ; real mode cannot return with RF: disarm instead
    mov dr6, eax
    iret
