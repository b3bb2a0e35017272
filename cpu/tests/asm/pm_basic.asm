; Protected mode basics on a bare CPU (no PC around it): enter protected mode, far jump to a
; 32-bit segment, INT through an interrupt gate at ring 0, IRET to ring 3, INT from ring 3
; through a DPL 3 gate (stack switch from the TSS), a DPL 0 gate from ring 3 (#GP with the
; IDT error code), then HLT in the #GP handler.
; Results at fixed addresses: 0x500 counter, 0x504 last CS seen by the handler,
; 0x508 #GP error code, 0x50C ESP seen by the ring-3 handler call, 0x510 ring-3 EAX.
; Build: nasm -f bin -o pm_basic.bin pm_basic.asm
bits 16
org 0x7c00
start:
    cli
    lgdt [gdtr]
    lidt [idtr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp 0x08:pm32

bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x90000
    mov ax, 0x28
    ltr ax
    int 0x30
    push dword 0x23
    push dword 0x80000
    push dword 0x002
    push dword 0x1B
    push dword ring3
    iret

ring3:
    ; The IRET to ring 3 nulled DS (its DPL 0 is below the new CPL).
    mov ax, 0x23
    mov ds, ax
    mov eax, 0x1234
    mov [0x510], eax
    int 0x30
    int 0x31
    jmp $

handler30:
    inc dword [0x500]
    mov ebx, [esp+4]
    mov [0x504], ebx
    mov [0x50C], esp
    iret

handler_gp:
    mov eax, [esp]
    mov [0x508], eax
    hlt

align 8
gdt:
    dq 0
    dq 0x00CF9A000000FFFF       ; 0x08 ring-0 code, flat 4 GiB, 32-bit
    dq 0x00CF92000000FFFF       ; 0x10 ring-0 data
    dq 0x00CFFA000000FFFF       ; 0x18 ring-3 code
    dq 0x00CFF2000000FFFF       ; 0x20 ring-3 data
    ; 0x28 32-bit TSS at `tss`, limit 0x67
    dw 0x67, tss, 0x8900, 0x0000
gdt_end:

gdtr:
    dw gdt_end - gdt - 1
    dd gdt

%macro gate 3 ; handler, selector, type/attr byte
    dw %1, %2
    db 0, %3
    dw 0
%endmacro

align 8
idt:
%assign v 0
%rep 0x32
  %if v == 13
    gate handler_gp, 0x08, 0x8E
  %elif v == 0x30
    gate handler30, 0x08, 0xEE   ; DPL 3 interrupt gate
  %elif v == 0x31
    gate handler30, 0x08, 0x8E   ; DPL 0: ring 3 may not use it
  %else
    dq 0
  %endif
  %assign v v+1
%endrep
idt_end:

idtr:
    dw idt_end - idt - 1
    dd idt

align 8
tss:
    dd 0                ; link
    dd 0x70000          ; esp0
    dd 0x10             ; ss0
    times 0x68 - ($ - tss) db 0
