; Hardware task switching on a bare CPU: CALL to a TSS (the new task runs with NT set and a
; back link), IRET back to the caller, then a double fault (INT through a not-present gate
; raises #NP, whose own gate is not present either) delivered through a task gate to a
; handler task with a stack of its own.
; Results (dwords): 0x500 = 1 when task B ran, 0x504 = B's back link, 0x508 = EFLAGS in B,
; 0x50C = 1 after the IRET back, 0x510 = #DF error code seen by the #DF task,
; 0x514 = TR selector in the #DF task.
bits 16
org 0x7c00
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
    mov ax, 0x18            ; task A: the current one
    ltr ax
    call 0x20:0             ; task B
    mov dword [0x50C], 1
    ; #DF: raise #NP through a vector whose gate is not present (vector 0x40), with the
    ; #NP gate itself not present too: #NP while delivering #NP is a double fault, which
    ; goes through the task gate at vector 8.
    int 0x40
    jmp $

task_b:
    mov dword [0x500], 1
    mov eax, [tss_b]        ; back link
    mov [0x504], eax
    pushfd
    pop eax
    mov [0x508], eax
    iret                    ; NT set: back to task A

df_task:
    pop eax                 ; error code
    mov [0x510], eax
    str ax
    mov [0x514], eax
    hlt

align 8
gdt:
    dq 0
    dq 0x00CF9A000000FFFF       ; 0x08 code
    dq 0x00CF92000000FFFF       ; 0x10 data
    dw 0x67, tss_a, 0x8900, 0   ; 0x18 TSS A
    dw 0x67, tss_b, 0x8900, 0   ; 0x20 TSS B
    dw 0x67, tss_df, 0x8900, 0  ; 0x28 TSS for #DF
gdt_end:
gdtr:
    dw gdt_end - gdt - 1
    dd gdt

align 8
idt:
    times 8 dq 0
    dw 0, 0x28                  ; vector 8: task gate -> TSS 0x28
    db 0, 0x85
    dw 0
    times (0x40 - 9) dq 0       ; everything else not present, #NP (11) included
    dq 0                        ; 0x40 not present
idt_end:
idtr:
    dw idt_end - idt - 1
    dd idt

%macro tss32 3 ; eip, esp, eflags
    dd 0, 0, 0, 0, 0, 0, 0, 0   ; link, esp0..ss2, cr3
    dd %1, %3                   ; eip, eflags
    dd 0, 0, 0, 0, %2, 0, 0, 0  ; eax ecx edx ebx esp ebp esi edi
    dd 0x10, 0x08, 0x10, 0x10, 0x10, 0x10 ; es cs ss ds fs gs
    dd 0, 0                     ; ldt, iomap
%endmacro

align 16
tss_a:  tss32 0, 0, 2
align 16
tss_b:  tss32 task_b, 0x80000, 2
align 16
tss_df: tss32 df_task, 0x70000, 2
