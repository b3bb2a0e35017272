//! The pointing-device BIOS interface of the PS/2 (INT 15h AH=C2h, IBM PS/2 BIOS Technical
//! Reference; Ralf Brown's list) and INT 74h, IRQ 12. The mouse is reached through the 8042
//! as a driver would (command D4h, the answers at port 60h); while a command is exchanged the
//! controller's auxiliary interrupt is off, so no IRQ 12 fires for the answers. Bytes the
//! mouse sends afterwards come in through INT 74h one at a time; a whole packet goes to the
//! far handler installed with AX=C207h, called with the status, X, Y and Z words pushed in
//! that order (the ROM makes the call). The state lives in the EBDA.

use super::{ebda, Action, Bios, Regs};

/// EBDA offsets.
const COUNT: u64 = ebda::MOUSE; // bytes of the packet received so far
const FLAGS: u64 = ebda::MOUSE + 1; // bit 7: a handler is installed; bits 0-2: packet size - 1
const DATA: u64 = ebda::MOUSE + 2; // up to 8 packet bytes
const HANDLER: u64 = ebda::MOUSE + 10; // offset, segment

const HANDLER_INSTALLED: u8 = 0x80;

/// INT 15h status codes.
const INVALID_FUNCTION: u8 = 0x01;
const INVALID_INPUT: u8 = 0x02;
const INTERFACE_ERROR: u8 = 0x03;
const RESEND: u8 = 0x04;
const NO_HANDLER: u8 = 0x05;

/// The 8042's command byte bits.
const CB_AUX_INT: u8 = 0x02;
const CB_AUX_DISABLE: u8 = 0x20;

/// Sample rates of AX=C202h, by BH.
const RATES: [u8; 7] = [10, 20, 40, 60, 80, 100, 200];

fn ebda8(b: &Bios, at: u64) -> u8 {
    b.r8(ebda::START + at)
}

fn set_ebda8(b: &mut Bios, at: u64, v: u8) {
    b.w8(ebda::START + at, v);
}

fn command_byte(b: &mut Bios) -> u8 {
    b.outb(0x64, 0x20);
    b.inb(0x60)
}

fn set_command_byte(b: &mut Bios, v: u8) {
    b.outb(0x64, 0x60);
    b.outb(0x60, v);
}

/// The next byte from the mouse, if it has one waiting.
fn receive(b: &mut Bios) -> Option<u8> {
    for _ in 0..16 {
        let status = b.inb(0x64);
        if status & 1 == 0 {
            return None;
        }
        let v = b.inb(0x60);
        if status & 0x20 != 0 {
            return Some(v);
        }
        // A keyboard byte in the way: a driver talking to the mouse drops it too.
    }
    None
}

/// Sends one byte to the mouse and takes its acknowledgement.
fn send(b: &mut Bios, v: u8) -> Result<(), u8> {
    b.outb(0x64, 0xD4);
    b.outb(0x60, v);
    loop {
        match receive(b) {
            Some(0xFA) => return Ok(()),
            Some(0xFE) => return Err(RESEND),
            Some(other) => tracing::debug!(byte = other, "INT 15h C2h: mouse data dropped while waiting for an acknowledgement"),
            None => return Err(INTERFACE_ERROR),
        }
    }
}

/// Runs `f` with the controller's auxiliary interrupt off and its interface on; the
/// command byte is put back afterwards, with `aux_int` deciding the interrupt bit.
fn exchange<R>(b: &mut Bios, aux_int: Option<bool>, f: impl FnOnce(&mut Bios) -> R) -> R {
    // Whatever waits in the output buffer belongs to no one now.
    while b.inb(0x64) & 1 != 0 {
        b.inb(0x60);
    }
    let cb = command_byte(b);
    set_command_byte(b, cb & !(CB_AUX_INT | CB_AUX_DISABLE));
    let r = f(b);
    let int = aux_int.unwrap_or(cb & CB_AUX_INT != 0);
    set_command_byte(b, (cb & !(CB_AUX_INT | CB_AUX_DISABLE)) | if int { CB_AUX_INT } else { 0 });
    r
}

fn reset(b: &mut Bios) -> Result<(u8, u8), u8> {
    send(b, 0xFF)?;
    let test = receive(b).ok_or(INTERFACE_ERROR)?;
    let id = receive(b).ok_or(INTERFACE_ERROR)?;
    set_ebda8(b, COUNT, 0);
    Ok((test, id))
}

/// INT 15h AH=C2h.
pub(super) fn int15_c2(b: &mut Bios, r: &mut Regs) -> Action {
    let result: Result<(), u8> = match r.al() {
        // Enable (BH=1) or disable (BH=0) the mouse's data reporting.
        0x00 => match r.bh() {
            0 => exchange(b, Some(false), |b| send(b, 0xF5)),
            1 if ebda8(b, FLAGS) & HANDLER_INSTALLED == 0 => Err(NO_HANDLER),
            1 => {
                set_ebda8(b, COUNT, 0);
                let done = exchange(b, Some(true), |b| send(b, 0xF4));
                if done.is_ok() {
                    // IRQ 12 at the slave controller, and the cascade at the master.
                    let slave = b.inb(0xA1);
                    b.outb(0xA1, slave & !0x10);
                    let master = b.inb(0x21);
                    b.outb(0x21, master & !0x04);
                }
                done
            }
            _ => Err(INVALID_INPUT),
        },
        // Reset: BH = the device ID, BL = the self-test result.
        0x01 => exchange(b, Some(false), reset).map(|(test, id)| {
            r.set_bl(test);
            r.set_bh(id);
        }),
        // Sample rate.
        0x02 => match RATES.get(usize::from(r.bh())) {
            Some(&rate) => exchange(b, None, |b| send(b, 0xF3).and_then(|()| send(b, rate))),
            None => Err(INVALID_INPUT),
        },
        // Resolution: 1, 2, 4 or 8 counts per millimetre.
        0x03 if r.bh() <= 3 => {
            let v = r.bh();
            exchange(b, None, |b| send(b, 0xE8).and_then(|()| send(b, v)))
        }
        0x03 => Err(INVALID_INPUT),
        // Device type.
        0x04 => exchange(b, None, |b| send(b, 0xF2).and_then(|()| receive(b).ok_or(INTERFACE_ERROR))).map(|id| r.set_bh(id)),
        // Initialise for packets of BH bytes (1-8), then reset.
        0x05 => match r.bh() {
            n @ 1..=8 => {
                let flags = ebda8(b, FLAGS) & HANDLER_INSTALLED;
                set_ebda8(b, FLAGS, flags | (n - 1));
                exchange(b, Some(false), reset).map(|_| ())
            }
            _ => Err(INVALID_INPUT),
        },
        // Extended: BH=0 status (BL, CL, DL), 1 scaling 1:1, 2 scaling 2:1.
        0x06 => match r.bh() {
            0 => exchange(b, None, |b| {
                send(b, 0xE9)?;
                let mut s = [0u8; 3];
                for v in &mut s {
                    *v = receive(b).ok_or(INTERFACE_ERROR)?;
                }
                Ok(s)
            })
            .map(|[s0, s1, s2]| {
                r.set_bl(s0);
                r.set_cl(s1);
                r.set_dl(s2);
            }),
            1 => exchange(b, None, |b| send(b, 0xE6)),
            2 => exchange(b, None, |b| send(b, 0xE7)),
            _ => Err(INVALID_INPUT),
        },
        // The far handler ES:BX (0:0 removes it).
        0x07 => {
            let (seg, off) = (r.es, r.bx());
            b.w16(ebda::START + HANDLER, off);
            b.w16(ebda::START + HANDLER + 2, seg);
            let flags = ebda8(b, FLAGS) & !HANDLER_INSTALLED;
            let installed = if seg == 0 && off == 0 { 0 } else { HANDLER_INSTALLED };
            set_ebda8(b, FLAGS, flags | installed);
            set_ebda8(b, COUNT, 0);
            Ok(())
        }
        _ => Err(INVALID_FUNCTION),
    };
    match result {
        Ok(()) => r.ok(),
        Err(code) => r.fail(code),
    }
    Action::Return
}

/// INT 74h gave a byte from the mouse (AL). When it completes a packet and a handler is
/// installed: CF clear, AX = status, BX = X, CX = Y, DX = Z, ES:DI = the handler, for the ROM
/// to call. Otherwise CF set.
pub(super) fn irq12_byte(b: &mut Bios, r: &mut Regs) -> Action {
    let v = r.al();
    let flags = ebda8(b, FLAGS);
    let size = (flags & 7) + 1;
    let n = ebda8(b, COUNT);
    r.set_cf(true);
    if flags & HANDLER_INSTALLED == 0 {
        set_ebda8(b, COUNT, 0);
        return Action::Return;
    }
    if n == 0 && size >= 3 && v & 0x08 == 0 {
        // The first byte of a standard packet always has bit 3 set: out of step, so wait
        // for one that can start a packet.
        tracing::debug!(byte = v, "INT 74h: mouse byte out of step dropped");
        return Action::Return;
    }
    set_ebda8(b, DATA + u64::from(n), v);
    if n + 1 < size {
        set_ebda8(b, COUNT, n + 1);
        return Action::Return;
    }
    set_ebda8(b, COUNT, 0);
    let byte = |k: u8| if k < size { u16::from(ebda8(b, DATA + u64::from(k))) } else { 0 };
    r.set_ax(byte(0));
    r.set_bx(byte(1));
    r.set_cx(byte(2));
    r.set_dx(byte(3));
    r.set_di(b.r16(ebda::START + HANDLER));
    r.es = b.r16(ebda::START + HANDLER + 2);
    r.set_cf(false);
    Action::Return
}
