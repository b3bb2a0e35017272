; The stack-address size when an instruction loads SS (found by test386.asm's POST 09 and 1A):
; POP SS moves SP by the size of the stack it popped from, also when it loads a stack segment
; of the other size, LSS from a 16-bit stack loads all of ESP, and a 32-bit ENTER on a 16-bit
; stack takes its frame pointer from ESP.
; Results at fixed addresses: 0x500 ESP and 0x504 SS after a 32-bit POP SS on a 16-bit stack
; (SP wraps, ESP's upper half stays); 0x508 ESP and 0x50C SS after LSS on a 16-bit stack;
; 0x510 EBP, 0x514 ESP and 0x518 the pushed frame pointer after a 32-bit ENTER 8,1 on a
; 16-bit stack (FrameTemp is ESP: its upper half stays);
; 0x520 the #PF error code, 0x524 CR2, 0x528 EBP and 0x52C ESP when a ring-0 ENTER 0x108,0 faults
; on a read-only final stack page under CR0.WP (the push itself went to a writable page);
; 0x5F0 the vector of any exception taken (0xFF if none).
; Build: nasm -f bin -o stack_size.bin stack_size.asm
bits 16
org 0x7c00
start:
    cli
    mov dword [0x5F0], 0xFF
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
    ; POP SS: 32-bit operand, 16-bit stack, loads a 32-bit stack segment.
    mov ax, 0x18
    mov ss, ax
    mov esp, 0x0002FFFC
    mov dword [0xFFFC], 0x20
    o32 pop ss
    mov [0x500], esp
    mov [0x504], ss
    ; LSS on a 16-bit stack whose ESP has upper bits set.
    mov ax, 0x18
    mov ss, ax
    mov esp, 0x0001FFE4
    lss esp, [farptr]
    mov [0x508], esp
    mov [0x50C], ss
    ; 32-bit ENTER on a 16-bit stack: FrameTemp is ESP, not SP.
    mov ax, 0x18
    mov ss, ax
    mov esp, 0x00010000
    mov ebp, 0x0001FFEC
    o32 enter 8, 1
    mov [0x510], ebp
    mov [0x514], esp
    mov eax, [0xFFF8]
    mov [0x518], eax
    ; ENTER page-faults when a write at its final stack pointer would: paging with CR0.WP,
    ; page 0x30000 read-only, the frame's push lands in page 0x31000 and the final ESP in
    ; 0x30000.
    mov ax, 0x20
    mov ss, ax
    mov esp, 0x31100
    mov edi, 0x11000            ; page table: identity, writable, except page 0x30
    mov eax, 0x003
    mov ecx, 1024
.pt:
    mov [edi], eax
    add eax, 0x1000
    add edi, 4
    loop .pt
    and dword [0x11000 + 0x30 * 4], ~2
    mov dword [0x10000], 0x11003
    mov eax, 0x10000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000          ; PG, WP
    mov cr0, eax
    mov ebp, 0x12345678
    enter 0x108, 0
    mov dword [0x5F0], 0xEE     ; no #PF
    hlt

pf_handler:
    mov eax, [esp]
    mov [0x520], eax
    mov eax, cr2
    mov [0x524], eax
    mov [0x528], ebp
    lea eax, [esp + 12]         ; ESP before the fault: error code, EIP, CS, EFLAGS pushed
    add eax, 4
    mov [0x52C], eax
    hlt

fault:
    mov dword [0x5F0], eax
    hlt

%assign v 0
%rep 32
stub %+ v:
    mov eax, v
    jmp fault
%assign v v+1
%endrep

farptr:
    dd 0x0000FFFF
    dw 0x20

align 8
gdt:
    dq 0
    dq 0x00CF9A000000FFFF       ; 0x08 ring-0 code, flat 4 GiB, 32-bit
    dq 0x00CF92000000FFFF       ; 0x10 ring-0 data, flat
    dq 0x000F92000000FFFF       ; 0x18 16-bit stack (B=0), base 0, limit 1 MiB
    dq 0x00CF92000000FFFF       ; 0x20 32-bit stack (B=1), flat
gdt_end:

gdtr:
    dw gdt_end - gdt - 1
    dd gdt

align 8
idt:
%assign v 0
%rep 32
%if v == 14
    dw pf_handler, 0x08
%else
    dw stub %+ v, 0x08
%endif
    db 0, 0x8E
    dw 0
%assign v v+1
%endrep
idt_end:

idtr:
    dw idt_end - idt - 1
    dd idt
