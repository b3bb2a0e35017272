//! The ROM Ferrite maps when it boots a kernel directly and no BIOS runs: 64 KiB at 0xF0000
//! (and at the top of 4 GiB) holding what the interrupt vector table points at, at the
//! addresses the IBM PC/AT BIOS used (IBM PC/AT Technical Reference, BIOS listing): the timer
//! handler at F000:FEA5, the dummy IRET at F000:FF53, the reset vector at F000:FFF0, the
//! BIOS date and the model byte. The code is hand-assembled 16-bit real-mode code; each piece
//! is listed beside its bytes, and `tests/tests/direct_boot.rs` runs it.
//!
//! The rest of the image is zero. [`super::post`] copies the image to shadow RAM and writes the
//! ACPI RSDP and the SMBIOS entry point into the copy (at [`TABLES_AREA`]), as a BIOS does.

use super::post::{BiosEntryPoints, FarPtr};

/// Size of the image.
pub const SIZE: usize = 0x1_0000;
/// The segment the image answers in below 1 MiB.
pub const SEGMENT: u16 = 0xF000;

/// INT 08h (IRQ 0): counts BIOS ticks at 40:6C, wraps them at midnight (0x1800B0 ticks, and
/// sets the rollover flag at 40:70), calls INT 1Ch, ends the interrupt at the master 8259A.
pub const TIMER_HANDLER: u16 = 0xFEA5;
const TIMER_CODE: &[u8] = &[
    0x1E, //                  push ds
    0x50, //                  push ax
    0xB8, 0x40, 0x00, //      mov ax, 0x40
    0x8E, 0xD8, //            mov ds, ax
    0xFF, 0x06, 0x6C, 0x00, // inc word [0x6C]
    0x75, 0x04, //            jnz .carried
    0xFF, 0x06, 0x6E, 0x00, // inc word [0x6E]
    // .carried:
    0x83, 0x3E, 0x6E, 0x00, 0x18, //       cmp word [0x6E], 0x18
    0x72, 0x15, //                         jb .done
    0x81, 0x3E, 0x6C, 0x00, 0xB0, 0x00, // cmp word [0x6C], 0xB0
    0x72, 0x0D, //                         jb .done
    0x31, 0xC0, //                         xor ax, ax
    0xA3, 0x6C, 0x00, //                   mov [0x6C], ax
    0xA3, 0x6E, 0x00, //                   mov [0x6E], ax
    0xC6, 0x06, 0x70, 0x00, 0x01, //       mov byte [0x70], 1
    // .done:
    0xCD, 0x1C, //            int 0x1C
    0xB0, 0x20, //            mov al, 0x20
    0xE6, 0x20, //            out 0x20, al
    0x58, //                  pop ax
    0x1F, //                  pop ds
    0xCF, //                  iret
];

/// Where every vector without a handler points: a lone IRET.
pub const DUMMY_IRET: u16 = 0xFF53;

/// IRQs 1-7 with no handler: end the interrupt at the master 8259A.
pub const IRQ_MASTER_HANDLER: u16 = 0xE000;
const IRQ_MASTER_CODE: &[u8] = &[
    0x50, //       push ax
    0xB0, 0x20, // mov al, 0x20
    0xE6, 0x20, // out 0x20, al
    0x58, //       pop ax
    0xCF, //       iret
];

/// IRQs 8-15 with no handler: end the interrupt at the slave, then at the master.
pub const IRQ_SLAVE_HANDLER: u16 = 0xE010;
const IRQ_SLAVE_CODE: &[u8] = &[
    0x50, //       push ax
    0xB0, 0x20, // mov al, 0x20
    0xE6, 0xA0, // out 0xA0, al
    0xE6, 0x20, // out 0x20, al
    0x58, //       pop ax
    0xCF, //       iret
];

/// The PC/AT's POST entry, which the reset vector jumps to. This ROM has no POST: after a
/// reset the board loads the kernel again and the CPU starts there, so this runs only if the
/// ROM is used without direct boot. It says so on the debug console (port 0xE9) and halts.
const POST_ENTRY: u16 = 0xE05B;
const POST_CODE: &[u8] = &[
    0xFA, //             cli
    0xFC, //             cld
    0xBE, 0x80, 0xE0, // mov si, POST_MESSAGE
    0xBA, 0xE9, 0x00, // mov dx, 0xE9
    // .next:
    0x2E, 0xAC, //       cs lodsb
    0x84, 0xC0, //       test al, al
    0x74, 0x03, //       jz .halt
    0xEE, //             out dx, al
    0xEB, 0xF7, //       jmp .next
    // .halt:
    0xF4, //             hlt
    0xEB, 0xFD, //       jmp .halt
];
const POST_MESSAGE: u16 = 0xE080;
const POST_TEXT: &[u8] = b"Ferrite: this ROM has no POST; it only serves direct kernel boot\n\0";

/// F000:FFF0: `jmp far F000:E05B`.
const RESET_VECTOR: u16 = 0xFFF0;
/// F000:FFF5: the BIOS date, as IBM placed it.
const DATE: u16 = 0xFFF5;
/// F000:FFFE: the model byte: 0xFC, PC/AT.
const MODEL: u16 = 0xFFFE;

/// Start of the area [`super::post`] fills in the shadow copy (the RSDP, the SMBIOS entry
/// point): F000:0000 to F000:0FFF, zero in the image.
pub const TABLES_AREA: u64 = 0xF_0000;
pub const TABLES_AREA_SIZE: u64 = 0x1000;

/// What the interrupt vector table points at in this ROM.
pub const ENTRY_POINTS: BiosEntryPoints = BiosEntryPoints {
    iret: FarPtr { segment: SEGMENT, offset: DUMMY_IRET },
    timer: FarPtr { segment: SEGMENT, offset: TIMER_HANDLER },
    irq_master: FarPtr { segment: SEGMENT, offset: IRQ_MASTER_HANDLER },
    irq_slave: FarPtr { segment: SEGMENT, offset: IRQ_SLAVE_HANDLER },
};

/// The 64 KiB image.
pub fn image() -> Vec<u8> {
    let mut rom = vec![0u8; SIZE];
    let mut put = |at: u16, bytes: &[u8]| rom[usize::from(at)..usize::from(at) + bytes.len()].copy_from_slice(bytes);
    put(TIMER_HANDLER, TIMER_CODE);
    put(DUMMY_IRET, &[0xCF]);
    put(IRQ_MASTER_HANDLER, IRQ_MASTER_CODE);
    put(IRQ_SLAVE_HANDLER, IRQ_SLAVE_CODE);
    put(POST_ENTRY, POST_CODE);
    put(POST_MESSAGE, POST_TEXT);
    let [lo, hi] = POST_ENTRY.to_le_bytes();
    put(RESET_VECTOR, &[0xEA, lo, hi, 0x00, 0xF0]);
    put(DATE, b"01/01/26");
    put(MODEL, &[0xFC]);
    rom
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_do_not_overlap_and_fit() {
        let mut pieces = [
            (TIMER_HANDLER, TIMER_CODE.len()),
            (DUMMY_IRET, 1),
            (IRQ_MASTER_HANDLER, IRQ_MASTER_CODE.len()),
            (IRQ_SLAVE_HANDLER, IRQ_SLAVE_CODE.len()),
            (POST_ENTRY, POST_CODE.len()),
            (POST_MESSAGE, POST_TEXT.len()),
            (RESET_VECTOR, 5),
            (DATE, 8),
            (MODEL, 1),
        ];
        pieces.sort();
        for w in pieces.windows(2) {
            assert!(usize::from(w[0].0) + w[0].1 <= usize::from(w[1].0), "{:#x} runs into {:#x}", w[0].0, w[1].0);
        }
        assert!(u64::from(pieces[0].0) >= TABLES_AREA_SIZE, "the tables area stays free");
        let rom = image();
        assert_eq!(rom.len(), SIZE);
        assert_eq!(rom[usize::from(DUMMY_IRET)], 0xCF);
        assert_eq!(&rom[0xFFF0..0xFFF5], &[0xEA, 0x5B, 0xE0, 0x00, 0xF0]);
        assert_eq!(*TIMER_CODE.last().unwrap(), 0xCF);
    }
}
