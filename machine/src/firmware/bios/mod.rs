//! Ferrite's PC BIOS, the Rust half: the ROM (`roms/bios/bios.asm`) has an interrupt handler
//! per BIOS service that pushes the caller's registers onto the caller's stack and writes the
//! address of that register frame to [`SERVICE_PORT`]; the board calls [`service`], which
//! carries the service out against the machine (guest memory, the device models through their
//! ports, the drives' block backends) and leaves the results in the frame for the ROM to load.
//! The same thing happens under the interpreter and KVM (both send port writes to the board),
//! as DOSBox's callbacks do.
//!
//! The BIOS keeps no state of its own on the host side: what a BIOS remembers lives where a PC
//! BIOS keeps it (the BIOS data area at 0x400, the EBDA), so snapshots need nothing extra.
//! References: IBM PC/AT Technical Reference (BIOS listing); Ralf Brown's Interrupt List;
//! Phoenix "BIOS Enhanced Disk Drive Specification" 3.0; "El Torito" Bootable CD-ROM Format
//! Specification 1.0; VESA BIOS Extension 3.0.

mod disk;
mod keyboard;
mod mouse;
mod post;
mod system;
mod vbe;
mod video;

use crate::board::Machine;

/// The port the ROM's handlers write a register frame's linear address to (a 32-bit OUT).
pub const SERVICE_PORT: u16 = 0x0B20;
/// What a ROM must carry at F000:FF00 for the board to attach [`SERVICE_PORT`].
pub const SIGNATURE: &[u8] = b"FERRITE-BIOS-SERVICES-1\0";
const SIGNATURE_OFFSET: usize = 0xFF00;

/// Service numbers (`roms/bios/services.inc`): an interrupt number, or one of these.
const SVC_POST: u16 = 0x100;
const SVC_OPTION_ROM: u16 = 0x101;
const SVC_POST_DONE: u16 = 0x102;
const SVC_KEYSTROKE: u16 = 0x109;
const SVC_MOUSE_BYTE: u16 = 0x10A;

/// What the ROM does after the service: return, or wait for an interrupt and ask again, or
/// ask again at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Return = 0,
    Wait = 1,
    Again = 2,
}

/// Whether a BIOS image is Ferrite's own (and wants the service port).
pub fn is_ferrite_bios(image: &[u8]) -> bool {
    let low = image.len().saturating_sub(0x1_0000);
    image.get(low + SIGNATURE_OFFSET..low + SIGNATURE_OFFSET + SIGNATURE.len()) == Some(SIGNATURE)
}

pub(crate) const FRAME_SIZE: usize = 50;

/// The caller's registers as the ROM pushed them (see the layout in `bios.asm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Regs {
    pub edi: u32,
    pub esi: u32,
    pub ebp: u32,
    pub ebx: u32,
    pub edx: u32,
    pub ecx: u32,
    pub eax: u32,
    pub gs: u16,
    pub fs: u16,
    pub es: u16,
    pub ds: u16,
    pub service: u16,
    pub action: u16,
    pub ip: u16,
    pub cs: u16,
    pub flags: u16,
    esp: u32,
}

pub(crate) const CF: u16 = 1 << 0;
pub(crate) const ZF: u16 = 1 << 6;
pub(crate) const IF: u16 = 1 << 9;

macro_rules! reg16 {
    ($get:ident, $set:ident, $hi:ident, $set_hi:ident, $lo:ident, $set_lo:ident, $r:ident) => {
        pub fn $get(&self) -> u16 {
            self.$r as u16
        }
        pub fn $set(&mut self, v: u16) {
            self.$r = (self.$r & 0xFFFF_0000) | u32::from(v);
        }
        pub fn $hi(&self) -> u8 {
            (self.$r >> 8) as u8
        }
        pub fn $set_hi(&mut self, v: u8) {
            self.$r = (self.$r & 0xFFFF_00FF) | u32::from(v) << 8;
        }
        pub fn $lo(&self) -> u8 {
            self.$r as u8
        }
        pub fn $set_lo(&mut self, v: u8) {
            self.$r = (self.$r & 0xFFFF_FF00) | u32::from(v);
        }
    };
}

#[allow(dead_code)]
impl Regs {
    fn from_bytes(b: &[u8; FRAME_SIZE]) -> Regs {
        let d = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let w = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        Regs {
            edi: d(0),
            esi: d(4),
            ebp: d(8),
            esp: d(12),
            ebx: d(16),
            edx: d(20),
            ecx: d(24),
            eax: d(28),
            gs: w(32),
            fs: w(34),
            es: w(36),
            ds: w(38),
            service: w(40),
            action: w(42),
            ip: w(44),
            cs: w(46),
            flags: w(48),
        }
    }

    fn to_bytes(self) -> [u8; FRAME_SIZE] {
        let mut b = [0u8; FRAME_SIZE];
        for (at, v) in [(0, self.edi), (4, self.esi), (8, self.ebp), (12, self.esp), (16, self.ebx), (20, self.edx), (24, self.ecx), (28, self.eax)] {
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        for (at, v) in [
            (32, self.gs),
            (34, self.fs),
            (36, self.es),
            (38, self.ds),
            (40, self.service),
            (42, self.action),
            (44, self.ip),
            (46, self.cs),
            (48, self.flags),
        ] {
            b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    reg16!(ax, set_ax, ah, set_ah, al, set_al, eax);
    reg16!(bx, set_bx, bh, set_bh, bl, set_bl, ebx);
    reg16!(cx, set_cx, ch, set_ch, cl, set_cl, ecx);
    reg16!(dx, set_dx, dh, set_dh, dl, set_dl, edx);

    pub fn si(&self) -> u16 {
        self.esi as u16
    }
    pub fn di(&self) -> u16 {
        self.edi as u16
    }
    pub fn set_di(&mut self, v: u16) {
        self.edi = (self.edi & 0xFFFF_0000) | u32::from(v);
    }
    pub fn set_si(&mut self, v: u16) {
        self.esi = (self.esi & 0xFFFF_0000) | u32::from(v);
    }
    pub fn bp(&self) -> u16 {
        self.ebp as u16
    }

    pub fn set_cf(&mut self, on: bool) {
        self.set_flag(CF, on);
    }
    pub fn cf(&self) -> bool {
        self.flags & CF != 0
    }
    pub fn set_zf(&mut self, on: bool) {
        self.set_flag(ZF, on);
    }
    fn set_flag(&mut self, f: u16, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }

    /// Success: CF clear, AH = 0.
    pub fn ok(&mut self) {
        self.set_ah(0);
        self.set_cf(false);
    }

    /// Failure with status `code` in AH and CF set.
    pub fn fail(&mut self, code: u8) {
        self.set_ah(code);
        self.set_cf(true);
    }

    /// "Function not supported": AH = 86h, CF set (the INT 15h convention).
    pub fn unsupported(&mut self) {
        self.fail(0x86);
    }

    /// The linear address of `seg:off`.
    pub fn lin(seg: u16, off: u16) -> u64 {
        (u64::from(seg) << 4) + u64::from(off)
    }
}

/// The BIOS at work on one service call: the machine and helpers for guest memory as the
/// BIOS sees it (physical addresses below 4 GiB, through the A20 gate).
pub(crate) struct Bios<'a> {
    pub m: &'a mut Machine,
}

/// BIOS data area fields (offsets from 0x400).
pub(crate) mod bda {
    pub const BASE: u64 = 0x400;
    pub const COM1: u64 = 0x00;
    pub const EBDA_SEGMENT: u64 = 0x0E;
    pub const EQUIPMENT: u64 = 0x10;
    pub const MEMORY_KIB: u64 = 0x13;
    pub const KBD_FLAGS0: u64 = 0x17;
    pub const KBD_FLAGS1: u64 = 0x18;
    pub const KBD_HEAD: u64 = 0x1A;
    pub const KBD_TAIL: u64 = 0x1C;
    pub const FLOPPY_STATUS: u64 = 0x41;
    pub const VIDEO_MODE: u64 = 0x49;
    pub const VIDEO_COLUMNS: u64 = 0x4A;
    pub const VIDEO_PAGE_SIZE: u64 = 0x4C;
    pub const VIDEO_PAGE_START: u64 = 0x4E;
    pub const CURSOR_POS: u64 = 0x50;
    pub const CURSOR_SHAPE: u64 = 0x60;
    pub const VIDEO_PAGE: u64 = 0x62;
    pub const CRTC_BASE: u64 = 0x63;
    pub const VIDEO_MODE_CTL: u64 = 0x65;
    pub const VIDEO_PALETTE: u64 = 0x66;
    pub const TICKS: u64 = 0x6C;
    pub const MIDNIGHT: u64 = 0x70;
    pub const WARM_BOOT: u64 = 0x72;
    pub const DISK_STATUS: u64 = 0x74;
    pub const HARD_DISKS: u64 = 0x75;
    pub const COM_TIMEOUT: u64 = 0x7C;
    pub const KBD_START: u64 = 0x80;
    pub const KBD_END: u64 = 0x82;
    pub const VIDEO_ROWS: u64 = 0x84;
    pub const CHAR_HEIGHT: u64 = 0x85;
    pub const VIDEO_CTL: u64 = 0x87;
    pub const VIDEO_SWITCHES: u64 = 0x88;
    pub const VIDEO_MODESET_CTL: u64 = 0x89;
    pub const VIDEO_DCC: u64 = 0x8A;
    pub const KBD_FLAGS3: u64 = 0x96;
    pub const WAIT_COUNT: u64 = 0x9C;
    pub const WAIT_ACTIVE: u64 = 0xA0;
}

/// Where the extended BIOS data area is and what the BIOS keeps in it (offsets from its start).
pub(crate) mod ebda {
    /// 1 KiB below 640 KiB.
    pub const START: u64 = 0x9_FC00;
    pub const SIZE_KIB: u16 = 1;
    /// Base memory left for the operating system, in KiB.
    pub const BASE_MEMORY_KIB: u16 = 639;
    /// El Torito emulation state (`disk::CdEmu`).
    pub const CD_EMU: u64 = 0x100;
    /// INT 41h/46h fixed disk parameter tables, 16 bytes each.
    pub const FDPT: u64 = 0x140;
    /// The pointing-device state of INT 15h AH=C2h (`mouse.rs`), 14 bytes.
    pub const MOUSE: u64 = 0x160;
}

#[allow(dead_code)]
impl Bios<'_> {
    pub fn read(&self, addr: u64, buf: &mut [u8]) {
        self.m.memory().read(addr, buf);
    }
    pub fn write(&mut self, addr: u64, data: &[u8]) {
        self.m.memory_mut().write(addr, data);
    }
    pub fn r8(&self, addr: u64) -> u8 {
        let mut b = [0];
        self.read(addr, &mut b);
        b[0]
    }
    pub fn r16(&self, addr: u64) -> u16 {
        let mut b = [0; 2];
        self.read(addr, &mut b);
        u16::from_le_bytes(b)
    }
    pub fn r32(&self, addr: u64) -> u32 {
        let mut b = [0; 4];
        self.read(addr, &mut b);
        u32::from_le_bytes(b)
    }
    pub fn w8(&mut self, addr: u64, v: u8) {
        self.write(addr, &[v]);
    }
    pub fn w16(&mut self, addr: u64, v: u16) {
        self.write(addr, &v.to_le_bytes());
    }
    pub fn w32(&mut self, addr: u64, v: u32) {
        self.write(addr, &v.to_le_bytes());
    }
    pub fn bda8(&self, off: u64) -> u8 {
        self.r8(bda::BASE + off)
    }
    pub fn bda16(&self, off: u64) -> u16 {
        self.r16(bda::BASE + off)
    }
    pub fn bda32(&self, off: u64) -> u32 {
        self.r32(bda::BASE + off)
    }
    pub fn set_bda8(&mut self, off: u64, v: u8) {
        self.w8(bda::BASE + off, v)
    }
    pub fn set_bda16(&mut self, off: u64, v: u16) {
        self.w16(bda::BASE + off, v)
    }
    pub fn set_bda32(&mut self, off: u64, v: u32) {
        self.w32(bda::BASE + off, v)
    }
    pub fn outb(&mut self, port: u16, v: u8) {
        self.m.io_write(port, 1, u32::from(v));
    }
    pub fn inb(&mut self, port: u16) -> u8 {
        self.m.io_read(port, 1) as u8
    }
    pub fn cmos(&mut self, index: u8) -> u8 {
        self.outb(0x70, index);
        self.inb(0x71)
    }
    pub fn set_cmos(&mut self, index: u8, v: u8) {
        self.outb(0x70, index);
        self.outb(0x71, v);
    }
    /// A PCI configuration read through mechanism #1.
    pub fn pci_read(&mut self, devfn: u8, offset: u16, size: u8) -> u32 {
        self.m.io_write(0xCF8, 4, 0x8000_0000 | u32::from(devfn) << 8 | u32::from(offset & 0xFC));
        let v = self.m.io_read(0xCFC + (offset & 3), size);
        match size {
            1 => v & 0xFF,
            2 => v & 0xFFFF,
            _ => v,
        }
    }
    pub fn pci_write(&mut self, devfn: u8, offset: u16, size: u8, v: u32) {
        self.m.io_write(0xCF8, 4, 0x8000_0000 | u32::from(devfn) << 8 | u32::from(offset & 0xFC));
        self.m.io_write(0xCFC + (offset & 3), size, v);
    }

    /// A message for the user: on the screen (teletype) and the debug console.
    pub fn print(&mut self, text: &str) {
        for b in text.bytes() {
            self.m.io_write(crate::board::DEBUGCON_PORT, 1, u32::from(b));
            video::teletype(self, b, None);
        }
    }
}

/// Carries out the service whose register frame the ROM wrote the address of. A frame that
/// is not in conventional memory, or an unknown service number, is logged and left alone.
pub fn service(m: &mut Machine, frame: u32) {
    let addr = u64::from(frame);
    if addr + FRAME_SIZE as u64 > 0x11_0000 {
        tracing::warn!(addr = format_args!("{addr:#x}"), "BIOS service: register frame outside the first MiB");
        return;
    }
    let mut bytes = [0u8; FRAME_SIZE];
    m.memory().read(addr, &mut bytes);
    let mut r = Regs::from_bytes(&bytes);
    let before = r;
    let mut b = Bios { m };
    let action = match r.service {
        0x10 => video::int10(&mut b, &mut r),
        0x11 => system::int11(&mut b, &mut r),
        0x12 => system::int12(&mut b, &mut r),
        0x13 => disk::int13(&mut b, &mut r),
        0x14 => system::int14(&mut b, &mut r),
        0x15 => system::int15(&mut b, &mut r),
        0x16 => keyboard::int16(&mut b, &mut r),
        0x17 => system::int17(&mut b, &mut r),
        0x18 => disk::int18(&mut b, &mut r),
        0x19 => disk::int19(&mut b, &mut r),
        0x1A => system::int1a(&mut b, &mut r),
        SVC_KEYSTROKE => keyboard::keystroke(&mut b, &mut r),
        SVC_MOUSE_BYTE => mouse::irq12_byte(&mut b, &mut r),
        SVC_POST => post::post(&mut b, &mut r),
        SVC_OPTION_ROM => post::next_option_rom(&mut b, &mut r),
        SVC_POST_DONE => post::post_done(&mut b, &mut r),
        other => {
            tracing::warn!(service = other, "BIOS service: unknown service number");
            return;
        }
    };
    r.action = action as u16;
    if r != before {
        m.memory_mut().write(addr, &r.to_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_registers_split() {
        let mut bytes = [0u8; FRAME_SIZE];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut r = Regs::from_bytes(&bytes);
        assert_eq!(r.to_bytes(), bytes);
        assert_eq!(r.eax, 0x1F1E_1D1C);
        assert_eq!((r.ah(), r.al()), (0x1D, 0x1C));
        assert_eq!((r.service, r.ip, r.flags), (0x2928, 0x2D2C, 0x3130));
        r.set_ah(0x86);
        r.set_cf(true);
        assert_eq!(r.eax, 0x1F1E_861C);
        assert!(r.cf());
        r.ok();
        assert_eq!((r.ah(), r.cf()), (0, false));
    }

    #[test]
    fn the_rom_carries_the_signature() {
        let mut rom = vec![0u8; 0x1_0000];
        assert!(!is_ferrite_bios(&rom));
        rom[SIGNATURE_OFFSET..SIGNATURE_OFFSET + SIGNATURE.len()].copy_from_slice(SIGNATURE);
        assert!(is_ferrite_bios(&rom));
    }
}
