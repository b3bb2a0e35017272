; x87 system behaviour in 32-bit protected mode on a bare CPU: the FNSTENV/FNSAVE protected
; layouts and their pointers, an unmasked exception left pending (ES) and taken as #MF at the
; next waiting instruction once CR0.NE is set (ignored with NE clear, the PC's FERR# path),
; #NM for CR0.TS and CR0.EM, and WAIT's own TS-and-MP rule.
; Results at fixed addresses from 0x500 (see the test).
; Build: nasm -f bin -o x87_pm.bin x87_pm.asm
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
    fninit

    ; 0x500: FNSTENV (28 bytes) right after an FLD m32 with ZE unmasked; 0x520: FCW after the
    ; FNSTENV (all masked); 0x522: FCW after FLDENV (ZE unmasked again)
    fldcw [cw_zm]
fld_site:
    fld dword [val_f]
    fnstenv [0x500]
    fnstcw [0x520]
    fldenv [0x500]
    fnstcw [0x522]

    ; An unmasked zero divide: nothing stored, nothing popped, ES and B set. 0x524: FSW.
    fld1
    fldz
    fdivp st1, st0
    fnstsw [0x524]
    ; With CR0.NE clear a waiting instruction goes on (FERR# would raise IRQ 13 on a PC).
    fnop
    mov dword [0x528], 1
    ; With NE set it takes #MF; the handler clears the exception and the FNOP runs again.
    mov eax, cr0
    or eax, 0x20
    mov cr0, eax
    fnop
    mov dword [0x52C], 1

    ; WAIT with TS set but MP clear: no #NM. 0x544: reached.
    mov eax, cr0
    or eax, 8
    mov cr0, eax
    fwait
    mov dword [0x544], 1
    ; WAIT with TS and MP: #NM (the handler clears TS and EM).
    mov eax, cr0
    or eax, 0xA
    mov cr0, eax
    fwait
    ; An ESC instruction with TS: #NM; with EM: #NM.
    mov eax, cr0
    or eax, 8
    mov cr0, eax
    fld1
    mov eax, cr0
    or eax, 4
    mov cr0, eax
    fld1

    ; 0x600: FNSAVE (108 bytes) after FADD m64, the stack holding 1, 1, 0, 1, 2.5
fadd_site:
    fadd qword [val_d]
    fnsave [0x600]
    ; 0x680: FSW after FNSAVE's FNINIT
    fnstsw [0x680]
    hlt

nm_handler:
    inc dword [0x540]
    push eax
    mov eax, cr0
    and eax, ~0xC
    mov cr0, eax
    pop eax
    iret

mf_handler:
    inc dword [0x530]
    fnstsw [0x534]
    fnclex
    iret

align 4
cw_zm: dw 0x037B
val_f: dd 2.5
val_d: dq 0.25

align 8
gdt:
    dq 0
    dq 0x00CF9A000000FFFF       ; 0x08 ring-0 code, flat 4 GiB, 32-bit
    dq 0x00CF92000000FFFF       ; 0x10 ring-0 data
gdt_end:

gdtr:
    dw gdt_end - gdt - 1
    dd gdt

%macro gate 1
    dw %1, 0x08
    db 0, 0x8E
    dw 0
%endmacro

align 8
idt:
%assign v 0
%rep 0x20
  %if v == 7
    gate nm_handler
  %elif v == 16
    gate mf_handler
  %else
    dq 0
  %endif
  %assign v v+1
%endrep
idt_end:

idtr:
    dw idt_end - idt - 1
    dd idt
