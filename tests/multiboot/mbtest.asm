; A multiboot kernel that checks what its boot loader gave it and what the PC looks like, for
; Ferrite's direct kernel boot (tests/tests/direct_boot.rs). It prints on COM1 (polling) what
; it was given: the boot information (memory sizes, memory map, command line, modules with
; their strings and first bytes) and one "PASS name" or "FAIL name" line per check of the
; machine state a PC BIOS leaves (interrupt vectors, BIOS data area, ACPI RSDP in the BIOS
; area, 8259A masks, PIT mode, A20); then "mbtest: done, N failure(s)" and leaves through the
; exit device (port 0xF4) with status 0 when nothing failed, 1 otherwise.
;
; One source, three kernels, chosen with -D (nasm -f bin):
;   FORMAT_ELF   multiboot 1, an ELF32 executable (the loader reads the program header)
;   FORMAT_AOUT  multiboot 1 with the load addresses in the header
;   FORMAT_MB2   multiboot 2 with address and entry tags and a required information request
; All load at 1 MiB. Small on purpose: KVM without hardware virtualization runs 32-bit code
; slowly.

bits 32
org 0x100000

COM1        equ 0x3F8
EXIT_PORT   equ 0xF4

file_start:
%ifdef FORMAT_ELF
; ELF header and one PT_LOAD program header covering the whole file (and the bss).
    db 0x7F, "ELF", 1, 1, 1, 0
    times 8 db 0
    dw 2                        ; ET_EXEC
    dw 3                        ; EM_386
    dd 1                        ; EV_CURRENT
    dd start                    ; e_entry
    dd phdr - file_start        ; e_phoff
    dd 0                        ; e_shoff
    dd 0                        ; e_flags
    dw 52                       ; e_ehsize
    dw 32                       ; e_phentsize
    dw 1                        ; e_phnum
    dw 0, 0, 0                  ; no section headers
phdr:
    dd 1                        ; PT_LOAD
    dd 0                        ; p_offset
    dd file_start               ; p_vaddr
    dd file_start               ; p_paddr
    dd file_end - file_start    ; p_filesz
    dd bss_end - file_start     ; p_memsz
    dd 7                        ; RWX
    dd 0x1000                   ; p_align
%endif

align 8, db 0
mb_header:
%ifdef FORMAT_MB2
    dd 0xE85250D6, 0, mb_header_end - mb_header
    dd 0x100000000 - (0xE85250D6 + (mb_header_end - mb_header))
    ; Information request (required): memory map, new ACPI RSDP, basic memory information.
    dw 1, 0
    dd 8 + 3 * 4
    dd 6, 15, 4
    align 8, db 0
    dw 2, 0                     ; address tag
    dd 24
    dd mb_header, file_start, file_end, bss_end
    dw 3, 0                     ; entry address tag
    dd 12
    dd start
    align 8, db 0
    dw 0, 0                     ; end tag
    dd 8
mb_header_end:
%else
%ifdef FORMAT_AOUT
MB_FLAGS    equ (1 << 0) | (1 << 1) | (1 << 16)
%else
MB_FLAGS    equ (1 << 0) | (1 << 1)
%endif
    dd 0x1BADB002, MB_FLAGS, 0x100000000 - (0x1BADB002 + MB_FLAGS)
%ifdef FORMAT_AOUT
    dd mb_header, file_start, file_end, bss_end, start
%endif
%endif

%include "console.inc"

start:
    mov esp, stack_top
    mov [magic], eax
    mov [info], ebx
    pushfd
    pop dword [eflags]
    mov eax, cr0
    mov [saved_cr0], eax

    PRINT `mbtest: started\n`
    mov eax, [magic]
%ifdef FORMAT_MB2
    cmp eax, 0x36D76289
%else
    cmp eax, 0x2BADB002
%endif
    VERDICT "magic"
    mov eax, [saved_cr0]
    and eax, 0x80000001
    cmp eax, 1
    VERDICT "protected-mode-no-paging"
    test dword [eflags], 0x200
    VERDICT "interrupts-off"

%ifdef FORMAT_MB2
    call show_mb2_info
%else
    call show_mb1_info
%endif
    call check_pc_state
    call check_kvmclock

    PRINT "mbtest: done, "
    mov eax, [failures]
    call puthex
    PRINT ` failure(s)\n`
    mov al, 0
    cmp dword [failures], 0
    je .exit
    mov al, 1
.exit:
    out EXIT_PORT, al
    cli
.halt:
    hlt
    jmp .halt

%ifndef FORMAT_MB2
; Multiboot 1 information (Multiboot Specification 0.6.96, section 3.3).
show_mb1_info:
    mov ebx, [info]
    PRINT "flags "
    mov eax, [ebx]
    call puthex_nl
    mov eax, [ebx]
    and eax, 0x4D               ; memory, command line, modules, memory map
    cmp eax, 0x4D
    VERDICT "info-flags"
    PRINT "mem_lower "
    mov eax, [ebx + 4]
    call puthex_nl
    PRINT "mem_upper "
    mov eax, [ebx + 8]
    call puthex_nl
    mov eax, [ebx + 4]
    mov [mem_lower], eax
    mov eax, [ebx + 8]
    mov [mem_upper], eax
    PRINT "cmdline: "
    mov esi, [ebx + 16]
    call puts
    call newline
    PRINT "loader: "
    mov esi, [ebx + 64]
    call puts
    call newline
    ; Memory map: entries of size (not counting itself), base, length, type.
    mov esi, [ebx + 48]
    mov edi, esi
    add edi, [ebx + 44]
.mmap:
    cmp esi, edi
    jae .mmap_done
    push esi
    mov eax, [esi + 4]
    mov edx, [esi + 8]
    mov ecx, [esi + 12]
    mov ebp, [esi + 16]
    push dword [esi + 20]
    call show_mmap_entry
    pop esi
    add esi, [esi]
    add esi, 4
    jmp .mmap
.mmap_done:
    call check_mem_sizes
    ; Modules: start, end, string, reserved.
    PRINT "mods_count "
    mov eax, [ebx + 20]
    call puthex_nl
    mov ecx, [ebx + 20]
    mov esi, [ebx + 24]
.mods:
    test ecx, ecx
    jz .mods_done
    push ecx
    push esi
    mov eax, [esi]
    mov edx, [esi + 4]
    mov esi, [esi + 8]
    call show_module
    pop esi
    pop ecx
    add esi, 16
    dec ecx
    jmp .mods
.mods_done:
    ret
%endif

%ifdef FORMAT_MB2
; Multiboot 2 information (Multiboot2 Specification, section 3.6): tags after an 8-byte head.
show_mb2_info:
    mov ebx, [info]
    PRINT "total_size "
    mov eax, [ebx]
    call puthex_nl
    lea esi, [ebx + 8]
.tag:
    mov eax, [esi]
    test eax, eax
    jz .tags_done
    push esi
    cmp eax, 1
    je .cmdline
    cmp eax, 2
    je .loader
    cmp eax, 3
    je .module
    cmp eax, 4
    je .meminfo
    cmp eax, 6
    je .mmap
    cmp eax, 15
    je .acpi
    PRINT "tag "
    mov esi, [esp]
    mov eax, [esi]
    call puthex_nl
    jmp .next
.cmdline:
    PRINT "cmdline: "
    mov esi, [esp]
    add esi, 8
    call puts
    call newline
    jmp .next
.loader:
    PRINT "loader: "
    mov esi, [esp]
    add esi, 8
    call puts
    call newline
    jmp .next
.module:
    mov eax, [esi + 8]
    mov edx, [esi + 12]
    add esi, 16
    call show_module
    jmp .next
.meminfo:
    PRINT "mem_lower "
    mov esi, [esp]
    mov eax, [esi + 8]
    mov [mem_lower], eax
    call puthex_nl
    PRINT "mem_upper "
    mov esi, [esp]
    mov eax, [esi + 12]
    mov [mem_upper], eax
    call puthex_nl
    jmp .next
.mmap:
    mov edi, esi
    add edi, [esi + 4]          ; end of the tag
    mov ebx, [esi + 8]          ; entry size
    add esi, 16
.entry:
    cmp esi, edi
    jae .next
    push esi
    mov eax, [esi]
    mov edx, [esi + 4]
    mov ecx, [esi + 8]
    mov ebp, [esi + 12]
    push dword [esi + 16]
    call show_mmap_entry
    pop esi
    add esi, ebx
    jmp .entry
.acpi:
    lea eax, [esi + 8]
    mov [acpi_tag_rsdp], eax
.next:
    pop esi
    mov eax, [esi + 4]
    add eax, 7
    and eax, ~7
    add esi, eax
    jmp .tag
.tags_done:
    mov ebx, [info]
    call check_mem_sizes
    cmp dword [acpi_tag_rsdp], 0
    setne al
    cmp al, 1
    VERDICT "acpi-tag"
    ret
%endif

; show_mmap_entry: EDX:EAX base, EBP:ECX length, the type on the stack (popped).
show_mmap_entry:
    push eax
    PRINT "mmap "
    mov eax, edx
    call puthex
    pop eax
    call puthex
    mov al, ' '
    call putc
    mov eax, ebp
    call puthex
    mov eax, ecx
    call puthex
    mov al, ' '
    call putc
    mov eax, [esp + 4]
    call puthex_nl
    ret 4

; check_mem_sizes: mem_lower must be 639 KiB (the EBDA is at 0x9FC00) and mem_upper nonzero.
check_mem_sizes:
    cmp dword [mem_lower], 639
    VERDICT "mem_lower"
    cmp dword [mem_upper], 0
    setne al
    cmp al, 1
    VERDICT "mem_upper"
    ret

; show_module: EAX start, EDX end, ESI string. Prints them and the module's first bytes up
; to a newline (at most 40), and checks the start is page aligned.
show_module:
    push eax
    push edx
    push esi
    PRINT "module "
    mov eax, [esp + 8]
    call puthex
    mov al, ' '
    call putc
    mov eax, [esp + 4]
    call puthex
    mov al, ' '
    call putc
    mov esi, [esp]
    call puts
    call newline
    PRINT "module-data: "
    mov esi, [esp + 8]
    mov ecx, [esp + 4]
    sub ecx, esi
    cmp ecx, 40
    jbe .n
    mov ecx, 40
.n:
    jecxz .printed
    lodsb
    cmp al, 10
    je .printed
    call putc
    dec ecx
    jmp .n
.printed:
    call newline
    test dword [esp + 8], 0xFFF
    VERDICT "module-aligned"
    add esp, 12
    ret

; The machine state a PC BIOS leaves (IBM PC/AT Technical Reference; ACPI 6.5 5.2.5.1).
check_pc_state:
    cmp dword [8 * 4], 0xF000FEA5
    VERDICT "ivt-timer-handler"
    movzx eax, word [0x10 * 4 + 2]
    shl eax, 4
    movzx edx, word [0x10 * 4]
    add eax, edx
    cmp byte [eax], 0xCF
    VERDICT "ivt-iret-stub"
    cmp word [0x400], COM1
    VERDICT "bda-com1"
    cmp word [0x40E], 0x9FC0
    VERDICT "bda-ebda-segment"
    cmp word [0x413], 639
    VERDICT "bda-base-memory"
    ; The equipment word counts the serial ports the BDA lists.
    xor ecx, ecx
    mov esi, 0x400
.com:
    cmp word [esi], 0
    je .counted
    inc ecx
    add esi, 2
    cmp esi, 0x408
    jb .com
.counted:
    movzx eax, word [0x410]
    shr eax, 9
    and eax, 7
    cmp eax, ecx
    VERDICT "bda-equipment-serial"
    ; The RSDP: "RSD PTR " on a 16-byte boundary in 0xE0000-0xFFFFF, first 20 bytes sum to 0.
    mov esi, 0xE0000
.scan:
    cmp dword [esi], 'RSD '
    jne .next16
    cmp dword [esi + 4], 'PTR '
    jne .next16
    xor eax, eax
    xor ecx, ecx
.sum:
    add al, [esi + ecx]
    inc ecx
    cmp ecx, 20
    jb .sum
    test al, al
    jz .found
.next16:
    add esi, 16
    cmp esi, 0x100000
    jb .scan
    xor esi, esi
.found:
    mov [rsdp], esi
    PRINT "rsdp "
    mov eax, [rsdp]
    call puthex_nl
    cmp dword [rsdp], 0
    setne al
    cmp al, 1
    VERDICT "rsdp-in-bios-area"
%ifdef FORMAT_MB2
    ; The tag's copy is the RSDP found by scanning.
    mov esi, [acpi_tag_rsdp]
    mov edi, [rsdp]
    test esi, esi
    jz .mismatch
    test edi, edi
    jz .mismatch
    mov ecx, 36
    repe cmpsb
    jmp .compared
.mismatch:
    or al, 1                    ; ZF clear: FAIL
.compared:
    VERDICT "acpi-tag-matches-rsdp"
%endif
    in al, 0x21
    cmp al, 0xF8
    VERDICT "pic-master-mask"
    in al, 0xA1
    cmp al, 0xFF
    VERDICT "pic-slave-mask"
    ; 8254 read-back: status of channel 0 (access lo/hi, mode 3, binary).
    mov al, 0xE2
    out 0x43, al
    in al, 0x40
    and al, 0x3F
    cmp al, 0x36
    VERDICT "pit-channel0-mode3"
    ; A20: bit 20 of the address is not masked.
    mov dword [0x80500], 0x11111111
    mov dword [0x180500], 0x22222222
    cmp dword [0x80500], 0x11111111
    VERDICT "a20-enabled"
    ret

; report: EAX 0 = pass; ESI the check's name.
report:
    push esi
    test eax, eax
    jnz .fail
    mov esi, s_pass
    jmp .print
.fail:
    inc dword [failures]
    mov esi, s_fail
.print:
    call puts
    pop esi
    call puts
    jmp newline

; kvmclock, KVM's paravirtual clock: offered only under KVM (the interpreter has no
; hypervisor leaves). Registers a structure with MSR_KVM_SYSTEM_TIME_NEW, which must come back
; filled (version even and non-zero, a multiplier) with a time that moves on, then turns it
; off again.
check_kvmclock:
    call kvmclock_offered
    jnz .absent
    PRINT `kvmclock: offered\n`
    mov ecx, KVM_SYSTEM_TIME_NEW
    mov eax, pvclock + 1
    xor edx, edx
    wrmsr
    call kvmclock_now
    mov [kvm_t0], eax
    mov [kvm_t0 + 4], edx
    mov eax, [pvclock]
    test eax, 1
    VERDICT "kvmclock-version-even"
    mov eax, [pvclock]
    test eax, eax
    setz al
    test al, al
    VERDICT "kvmclock-filled"
    mov eax, [pvclock + 24]
    test eax, eax
    setz al
    test al, al
    VERDICT "kvmclock-multiplier"
    ; Some TSC ticks later the clock has moved on, by less than 4.29 seconds.
    mov ecx, 200000
.spin:
    pause
    dec ecx
    jnz .spin
    call kvmclock_now
    sub eax, [kvm_t0]
    sbb edx, [kvm_t0 + 4]
    mov ebx, 1                          ; failed, unless:
    jb .judged                          ; it went back,
    test edx, edx
    jnz .judged                         ; or on by 4.29 s or more,
    test eax, eax
    jz .judged                          ; or not at all
    xor ebx, ebx
.judged:
    test ebx, ebx
    VERDICT "kvmclock-moves-on"
    mov ecx, KVM_SYSTEM_TIME_NEW
    xor eax, eax
    xor edx, edx
    wrmsr
    ret
.absent:
    PRINT `kvmclock: not offered\n`
    ret

%include "kvmclock.inc"

s_pass: db "PASS ", 0
s_fail: db "FAIL ", 0

align 4, db 0
file_end:

; The bss: the loader clears it.
absolute file_end
magic:          resd 1
info:           resd 1
eflags:         resd 1
saved_cr0:      resd 1
failures:       resd 1
mem_lower:      resd 1
mem_upper:      resd 1
rsdp:           resd 1
acpi_tag_rsdp:  resd 1
kvm_t0:         resd 2
alignb 32
pvclock:        resb 32                 ; pvclock_vcpu_time_info
                resb 1024
stack_top:
bss_end:
