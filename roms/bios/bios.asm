; Ferrite's PC BIOS: a 64 KiB real-mode ROM at F000:0000 whose services are carried out by Rust
; code in the machine (machine/src/firmware/bios/) behind one I/O port, as DOSBox's callbacks
; are. An interrupt handler here pushes the caller's registers onto the caller's stack (a
; "frame"), writes the frame's linear address to the service port with a 32-bit OUT, and
; returns with the registers and flags the Rust side left in the frame. The same ROM runs under
; the interpreter and KVM: the OUT reaches the same machine either way.
;
; Frame, from its lowest address (SS:SP after the pushes):
;   +0 EDI, ESI, EBP, ESP, EBX, EDX, ECX, EAX (PUSHAD), +32 GS, FS, ES, DS,
;   +40 service number, +42 action (written by the Rust side), +44 IP, CS, FLAGS (the INT frame)
; Actions: 0 return to the caller; 1 wait for an interrupt (STI; HLT) and ask again; 2 ask
; again at once.
;
; The interrupt vector table points here; the fixed addresses of the IBM PC/AT BIOS entry
; points and tables (F000:E05B POST, F000:FFF0 reset, F000:FFFE model byte, ...) are kept,
; since old software calls or reads them directly.

%include "bios/services.inc"

    bits 16
    cpu 386
    org 0

; F000:0000-0FFF: left zero for the tables POST writes into the shadow copy of this segment
; (ACPI RSDP, SMBIOS and MP entry points).
    times 0x1000 db 0

; --- The service call --------------------------------------------------------------------

; Common part of every handler: entered with the INT frame and the service/action dword pushed.
service_entry:
    push ds
    push es
    push fs
    push gs
    pushad
.call:
    xor eax, eax
    mov ax, ss
    shl eax, 4
    xor edx, edx
    mov dx, sp
    add eax, edx
    mov dx, SERVICE_PORT
    out dx, eax
    mov bp, sp
    mov ax, [bp + 42]
    test ax, ax
    jnz .action
    popad
    pop gs
    pop fs
    pop es
    pop ds
    add sp, 4
    iret
.action:
    mov word [bp + 42], 0
    cmp ax, ACTION_WAIT
    jne .call
    sti
    hlt
    cli
    jmp .call

; An interrupt handler that is all Rust: push the service number, go to the common part.
%macro HANDLER 2
%1:
    push dword %2
    jmp service_entry
%endmacro

; A service call from code in this ROM: a fake INT frame, then the common part.
%macro CALL_SERVICE 1
    pushf
    push cs
    push word %%back
    push dword %1
    jmp service_entry
%%back:
%endmacro

    HANDLER int10, SVC_INT10
    HANDLER int11, SVC_INT11
    HANDLER int12, SVC_INT12
    HANDLER int13, SVC_INT13
    HANDLER int14, SVC_INT14
    HANDLER int15, SVC_INT15
    HANDLER int16, SVC_INT16
    HANDLER int17, SVC_INT17
    HANDLER int19, SVC_INT19
    HANDLER int1a, SVC_INT1A
    HANDLER int40, SVC_INT13

; --- Hardware interrupts -----------------------------------------------------------------

; INT 08h, IRQ 0: the tick count at 40:6C (wrapping at midnight, 0x1800B0 ticks, with the
; rollover flag at 40:70), then INT 1Ch, then end of interrupt.
int08:
    push ds
    push eax
    mov ax, 0x40
    mov ds, ax
    mov eax, [0x6C]
    inc eax
    cmp eax, 0x1800B0
    jb .store
    xor eax, eax
    mov byte [0x70], 1
.store:
    mov [0x6C], eax
    int 0x1C
    mov al, 0x20
    out 0x20, al
    pop eax
    pop ds
    iret

; INT 09h, IRQ 1: the scan code, offered to INT 15h AH=4Fh (which clears CF to swallow it),
; then translated and queued by the Rust side.
int09:
    push ax
    in al, 0x60
    mov ah, 0x4F
    stc
    int 0x15
    jnc .eoi
    CALL_SERVICE SVC_KEYSTROKE
.eoi:
    cli
    mov al, 0x20
    out 0x20, al
    pop ax
    iret

; INT 0Eh, IRQ 6: the floppy controller's interrupt flag at 40:3E bit 7.
int0e:
    push ds
    push ax
    mov ax, 0x40
    mov ds, ax
    or byte [0x3E], 0x80
    mov al, 0x20
    out 0x20, al
    pop ax
    pop ds
    iret

; INT 70h, IRQ 8: read RTC status C (which acknowledges the RTC), end of interrupt.
int70:
    push ax
    mov al, 0x0C
    out 0x70, al
    in al, 0x71
    mov al, 0x20
    out 0xA0, al
    out 0x20, al
    pop ax
    iret

; INT 74h, IRQ 12: a byte from the PS/2 mouse, for the packet the Rust side assembles; a whole
; packet goes to the handler installed with INT 15h AX=C207h (ES:DI on return), called far
; with the status, X, Y and Z words pushed in that order.
int74:
    pushad
    push es
    in al, 0x64
    and al, 0x21
    cmp al, 0x21
    jne .eoi
    in al, 0x60
    CALL_SERVICE SVC_MOUSE_BYTE
    jc .eoi
    push ax
    push bx
    push cx
    push dx
    push cs
    push word .back
    push es
    push di
    retf
.back:
    add sp, 8
.eoi:
    cli
    mov al, 0x20
    out 0xA0, al
    out 0x20, al
    pop es
    popad
    iret

; IRQs 2-7 without a handler of their own: end of interrupt at the master.
irq_master:
    push ax
    mov al, 0x20
    out 0x20, al
    pop ax
    iret

; IRQs 9-15 without a handler of their own: end of interrupt at both controllers.
irq_slave:
    push ax
    mov al, 0x20
    out 0xA0, al
    out 0x20, al
    pop ax
    iret

; INT 18h: no boot device could be started. The Rust side prints why; then stop for good.
int18:
    CALL_SERVICE SVC_INT18
.halt:
    cli
    hlt
    jmp .halt

; --- POST ----------------------------------------------------------------------------------

post:
    cli
    cld
    xor ax, ax
    mov ss, ax
    mov sp, 0x7000
    mov ds, ax
    mov es, ax
    ; Every vector at the lone IRET, then the handlers of this ROM.
    xor di, di
    mov cx, 256
.fill:
    mov word [di], dummy_iret
    mov word [di + 2], 0xF000
    add di, 4
    loop .fill
    mov si, vectors
.vector:
    mov bl, [cs:si]
    cmp bl, 0xFF
    je .vectors_done
    xor bh, bh
    shl bx, 2
    mov ax, [cs:si + 1]
    mov [bx], ax
    mov word [bx + 2], 0xF000
    add si, 3
    jmp .vector
.vectors_done:
    ; The machine: PCI, interrupt controllers, timer, BIOS data area, tables, video, disks.
    CALL_SERVICE SVC_POST
    ; Option ROMs (the VGA's, if it has one): the Rust side copies each into shadow RAM and
    ; says where its initialisation entry is (ES:DI, AX = the PCI function), or CF = 1.
.option_rom:
    CALL_SERVICE SVC_OPTION_ROM
    jc .boot
    push cs
    push word .option_rom
    push es
    push di
    xor bx, bx
    xor cx, cx
    xor dx, dx
    xor si, si
    xor di, di
    mov es, di
    retf
.boot:
    CALL_SERVICE SVC_POST_DONE
    xor ax, ax
    mov ss, ax
    mov sp, 0x7C00
    sti
    int 0x19
    int 0x18

; Vector number, handler offset; ends with 0xFF.
vectors:
    db 0x08
    dw int08_fixed
    db 0x09
    dw int09_fixed
    db 0x0A
    dw irq_master
    db 0x0B
    dw irq_master
    db 0x0C
    dw irq_master
    db 0x0D
    dw irq_master
    db 0x0E
    dw int0e_fixed
    db 0x0F
    dw irq_master
    db 0x10
    dw int10_fixed
    db 0x11
    dw int11_fixed
    db 0x12
    dw int12_fixed
    db 0x13
    dw int13_fixed
    db 0x14
    dw int14_fixed
    db 0x15
    dw int15_fixed
    db 0x16
    dw int16_fixed
    db 0x17
    dw int17_fixed
    db 0x18
    dw int18
    db 0x19
    dw int19_fixed
    db 0x1A
    dw int1a_fixed
    db 0x1E
    dw diskette_params
    db 0x1F
    dw font8x8_high
    db 0x40
    dw int40_fixed
    db 0x43
    dw font8x8_low
    db 0x70
    dw int70
    db 0x71
    dw irq_slave
    db 0x72
    dw irq_slave
    db 0x73
    dw irq_slave
    db 0x74
    dw int74
    db 0x75
    dw irq_slave
    db 0x76
    dw irq_slave
    db 0x77
    dw irq_slave
    db 0xFF

; --- Fonts (8 pixels wide; see fonts.md beside this file) -----------------------------------

font8x16:
    incbin "bios/font8x16.bin"
font8x14:
    incbin "bios/font8x14.bin"
font8x8_high:
    incbin "bios/font8x8.bin", 1024, 1024

; The Rust side finds the fonts (and says where they are through INT 10h AX=1130h) here.
    align 16
font_table:
    db "FONTS"
    db 0
    dw font8x16
    dw font8x14
    dw font8x8_low
    dw font8x8_high

; --- The fixed addresses of the PC/AT BIOS ---------------------------------------------------

%macro AT 1
%if ($ - $$) > %1
%error "code runs into the fixed entry point %1"
%endif
    times %1 - ($ - $$) db 0
%endmacro

    AT 0xE05B
post_fixed:
    jmp post
    AT 0xE2C3
nmi_fixed:
    iret
    AT 0xE3FE
int13_fixed:
    jmp int13
    AT 0xE6F2
int19_fixed:
    jmp int19
    AT 0xE6F5
; INT 15h AH=C0h: the system configuration table: 8 bytes follow; model FC (AT), submodel 0,
; revision 1; feature byte 1: EBDA allocated, INT 09h calls INT 15h AH=4Fh, RTC, second 8259;
; feature byte 2: INT 16h AH=09h supported.
config_table:
    dw 8
    db 0xFC, 0x00, 0x01, 0x74, 0x40, 0x00, 0x00, 0x00
    AT 0xE739
int14_fixed:
    jmp int14
    AT 0xE82E
int16_fixed:
    jmp int16
    AT 0xE987
int09_fixed:
    jmp int09
    AT 0xEC59
int40_fixed:
    jmp int40
    AT 0xEF57
int0e_fixed:
    jmp int0e
    AT 0xEFC7
; INT 1Eh: the diskette parameter table for 1.44 MB media (step rate/head unload, head load/DMA,
; motor-off ticks, 512-byte sectors, 18 sectors per track, gap, data length, format gap, fill
; byte, head settle ms, motor start 1/8 s).
diskette_params:
    db 0xAF, 0x02, 0x25, 0x02, 0x12, 0x1B, 0xFF, 0x6C, 0xF6, 0x0F, 0x08
    AT 0xEFD2
int17_fixed:
    jmp int17
    AT 0xF065
int10_fixed:
    jmp int10
    AT 0xF841
int12_fixed:
    jmp int12
    AT 0xF84D
int11_fixed:
    jmp int11
    AT 0xF859
int15_fixed:
    jmp int15
    AT 0xFA6E
; The first 128 characters of the 8x8 font, where the PC put them (the rest: INT 1Fh).
font8x8_low:
    incbin "bios/font8x8.bin", 0, 1024
    AT 0xFE6E
int1a_fixed:
    jmp int1a
    AT 0xFEA5
int08_fixed:
    jmp int08
    AT 0xFF00
; Tells the machine that this ROM wants the service port (machine/src/firmware/bios/mod.rs).
signature:
    db SIGNATURE
    AT 0xFF53
dummy_iret:
    iret
    AT 0xFFF0
reset:
    jmp 0xF000:post_fixed
    AT 0xFFF5
    db "01/01/26"
    AT 0xFFFE
    db 0xFC, 0x00
