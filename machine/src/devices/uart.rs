//! A 16550A UART (8 ports; COM1 is 0x3F8, IRQ 4): 16-byte FIFOs, character timeout, loopback,
//! and the PC's OUT2 gate on the interrupt line. Follows the NS PC16550D datasheet; output goes
//! to the host at once, input is polled from the host on deadlines.

use crate::device::{Device, DeviceContext, DeviceSnapshot, SnapshotError};
use crate::host::CharBackend;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

const NAME: &str = "uart";
const VERSION: u32 = 1;

const FIFO_LEN: usize = 16;
/// The 1.8432 MHz crystal divided by 16: the bit rate at divisor 1.
const BAUD_BASE: u64 = 115_200;
/// The host is polled at least this often (virtual nanoseconds) while the receiver has room.
const MAX_POLL_NS: u64 = 1_000_000;

const IER_RDI: u8 = 0x01;
const IER_THRI: u8 = 0x02;
const IER_RLSI: u8 = 0x04;
const IER_MSI: u8 = 0x08;

const IIR_NONE: u8 = 0x01;
const IIR_MSI: u8 = 0x00;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_RLSI: u8 = 0x06;
const IIR_CTI: u8 = 0x0C;
const IIR_FIFO: u8 = 0xC0;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
/// The bits of FCR that stick: enable, DMA mode, trigger level.
const FCR_KEPT: u8 = 0xC9;

const LCR_STOP2: u8 = 0x04;
const LCR_PARITY: u8 = 0x08;
const LCR_DLAB: u8 = 0x80;

const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
/// Overrun, parity, framing, break: the bits that raise the line status interrupt.
const LSR_ERRORS: u8 = 0x1E;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

const MSR_DELTAS: u8 = 0x0F;
const MSR_TERI: u8 = 0x04;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;
/// What the modem inputs show outside loopback: a connected peer (CTS, DSR, DCD), no ring.
const MSR_HOST_INPUTS: u8 = MSR_CTS | MSR_DSR | MSR_DCD;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// Receive FIFO (one entry deep when FIFOs are off: the RBR).
    rx: VecDeque<u8>,
    /// The last character read, which an empty receiver keeps returning.
    rbr: u8,
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    /// LSR error bits (OE, PE, FE, BI) until the LSR is read; the rest is computed.
    lsr_errors: u8,
    msr: u8,
    scr: u8,
    divisor: u16,
    /// The THRE interrupt is waiting (set when THR empties, cleared by IIR read or THR write).
    thr_pending: bool,
    timeout_pending: bool,
    /// Virtual time of the last character into or out of the receive FIFO.
    rx_activity: u64,
    /// Virtual time of the next look at the host's input.
    next_poll: u64,
    /// Level last driven on the interrupt line.
    irq_level: bool,
}

impl State {
    /// The datasheet's master reset values; the divisor (undefined there) starts at 9600 baud.
    fn new() -> State {
        State {
            rx: VecDeque::with_capacity(FIFO_LEN),
            rbr: 0,
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            msr: MSR_HOST_INPUTS,
            scr: 0,
            divisor: 12,
            thr_pending: false,
            timeout_pending: false,
            rx_activity: 0,
            next_poll: 0,
            irq_level: false,
        }
    }

    fn fifo(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo() {
            FIFO_LEN
        } else {
            1
        }
    }

    fn trigger_level(&self) -> usize {
        [1, 4, 8, 14][(self.fcr >> 6) as usize]
    }

    fn word_mask(&self) -> u8 {
        (0xFFu16 >> (3 - (self.lcr & 3))) as u8
    }

    /// One character on the line: start, data, parity and stop bits at the programmed rate.
    fn char_time_ns(&self) -> u64 {
        let data = 5 + (self.lcr & 3) as u64;
        let parity = (self.lcr & LCR_PARITY != 0) as u64;
        let stop_halves = match (self.lcr & LCR_STOP2 != 0, data) {
            (false, _) => 2,
            (true, 5) => 3,
            (true, _) => 4,
        };
        let half_bits = 2 * (1 + data + parity) + stop_halves;
        // Divisor 0 is undefined; treat it as the largest divisor rather than divide by zero.
        let divisor = if self.divisor == 0 { 0x1_0000 } else { self.divisor as u64 };
        half_bits * divisor * 1_000_000_000 / (2 * BAUD_BASE)
    }

    fn lsr(&self) -> u8 {
        // Output leaves for the host as it is written, so the transmitter is always empty.
        let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
        dr | self.lsr_errors | LSR_THRE | LSR_TEMT
    }

    /// The highest-priority interrupt waiting, as its IIR identification.
    fn interrupt(&self) -> Option<u8> {
        if self.ier & IER_RLSI != 0 && self.lsr_errors & LSR_ERRORS != 0 {
            Some(IIR_RLSI)
        } else if self.ier & IER_RDI != 0 && self.timeout_pending {
            Some(IIR_CTI)
        } else if self.ier & IER_RDI != 0
            && !self.rx.is_empty()
            && (!self.fifo() || self.rx.len() >= self.trigger_level())
        {
            Some(IIR_RDI)
        } else if self.ier & IER_THRI != 0 && self.thr_pending {
            Some(IIR_THRI)
        } else if self.ier & IER_MSI != 0 && self.msr & MSR_DELTAS != 0 {
            Some(IIR_MSI)
        } else {
            None
        }
    }

    fn iir(&self) -> u8 {
        let fifo = if self.fifo() { IIR_FIFO } else { 0 };
        self.interrupt().unwrap_or(IIR_NONE) | fifo
    }

    /// The INTR pin reaches the ISA line only through the PC's OUT2-controlled buffer, and
    /// loopback forces the OUT2 pin inactive.
    fn irq_out(&self) -> bool {
        self.interrupt().is_some() && self.mcr & MCR_OUT2 != 0 && !self.loopback()
    }

    /// A character arrives in the receive shift register.
    fn receive(&mut self, byte: u8, now: u64) {
        if self.rx.len() >= self.rx_capacity() {
            self.lsr_errors |= LSR_OE;
            if !self.fifo() {
                // Without FIFOs the new character overwrites the unread one.
                self.rx[0] = byte;
            }
            tracing::debug!(byte, "UART receiver overrun");
        } else {
            self.rx.push_back(byte);
        }
        self.rx_activity = now;
    }

    /// The FIFO timeout: characters waiting and none in or out for four character times.
    fn update_timeout(&mut self, now: u64) {
        if self.fifo()
            && !self.rx.is_empty()
            && !self.timeout_pending
            && now >= self.rx_activity.saturating_add(4 * self.char_time_ns())
        {
            self.timeout_pending = true;
        }
    }

    /// The modem status inputs: the MCR's outputs in loopback, a connected peer otherwise.
    /// Changes set the delta bits (TERI only on the trailing edge of RI).
    fn update_msr(&mut self) {
        let inputs = if self.loopback() {
            // RTS -> CTS, DTR -> DSR, OUT1 -> RI, OUT2 -> DCD.
            let wired = [(MCR_RTS, MSR_CTS), (MCR_DTR, MSR_DSR), (MCR_OUT1, MSR_RI), (MCR_OUT2, MSR_DCD)];
            wired.iter().filter(|&&(out, _)| self.mcr & out != 0).fold(0, |acc, &(_, input)| acc | input)
        } else {
            MSR_HOST_INPUTS
        };
        let old = self.msr & 0xF0;
        let changed = (old ^ inputs) >> 4;
        let mut deltas = changed & !MSR_TERI;
        if old & MSR_RI != 0 && inputs & MSR_RI == 0 {
            deltas |= MSR_TERI;
        }
        self.msr = inputs | (self.msr & MSR_DELTAS) | deltas;
    }
}

/// A 16550A serial port whose line is a host character backend.
pub struct Uart {
    irq: u8,
    backend: Box<dyn CharBackend>,
    s: State,
}

impl Uart {
    pub fn new(irq: u8, backend: Box<dyn CharBackend>) -> Uart {
        Uart { irq, backend, s: State::new() }
    }

    fn read_reg(&mut self, reg: u16, now: u64) -> u8 {
        let s = &mut self.s;
        let dlab = s.lcr & LCR_DLAB != 0;
        match reg {
            0 if dlab => s.divisor as u8,
            0 => {
                if let Some(b) = s.rx.pop_front() {
                    s.rbr = b;
                    s.rx_activity = now;
                }
                s.timeout_pending = false;
                s.rbr
            }
            1 if dlab => (s.divisor >> 8) as u8,
            1 => s.ier,
            2 => {
                let iir = s.iir();
                if iir & 0x0F == IIR_THRI {
                    s.thr_pending = false;
                }
                iir
            }
            3 => s.lcr,
            4 => s.mcr,
            5 => {
                let lsr = s.lsr();
                s.lsr_errors = 0;
                lsr
            }
            6 => {
                let msr = s.msr;
                s.msr &= !MSR_DELTAS;
                msr
            }
            _ => s.scr,
        }
    }

    fn write_reg(&mut self, reg: u16, value: u8, cx: &mut DeviceContext) {
        let dlab = self.s.lcr & LCR_DLAB != 0;
        match reg {
            0 if dlab => self.s.divisor = self.s.divisor & 0xFF00 | value as u16,
            0 => self.transmit(value, cx),
            1 if dlab => self.s.divisor = self.s.divisor & 0x00FF | (value as u16) << 8,
            1 => {
                let s = &mut self.s;
                if value & 0xF0 != 0 {
                    tracing::debug!(value, "UART IER: bits 4-7 do not exist on a 16550A");
                }
                let old = s.ier;
                s.ier = value & 0x0F;
                // Enabling the THRE interrupt while THR is empty raises it at once (the
                // "kick" interrupt-driven drivers rely on); disabling it drops it.
                if old & IER_THRI == 0 && s.ier & IER_THRI != 0 {
                    s.thr_pending = true;
                } else if s.ier & IER_THRI == 0 {
                    s.thr_pending = false;
                }
            }
            2 => {
                let s = &mut self.s;
                if (value ^ s.fcr) & FCR_ENABLE != 0 {
                    // Turning the FIFOs on or off empties them.
                    s.rx.clear();
                    s.timeout_pending = false;
                }
                if value & FCR_ENABLE != 0 {
                    if value & FCR_CLEAR_RX != 0 {
                        s.rx.clear();
                        s.timeout_pending = false;
                    }
                    // FCR bit 2 clears the transmit FIFO, which never holds anything here.
                    s.fcr = value & FCR_KEPT;
                } else {
                    if value & !FCR_ENABLE != 0 {
                        tracing::debug!(value, "UART FCR: bits written with FIFO enable clear are ignored");
                    }
                    s.fcr = 0;
                }
            }
            3 => self.s.lcr = value,
            4 => {
                if value & 0xE0 != 0 {
                    tracing::debug!(value, "UART MCR: bits 5-7 do not exist on a 16550A");
                }
                self.s.mcr = value & 0x1F;
                self.s.update_msr();
            }
            5 | 6 => tracing::debug!(reg, value, "UART: write to a read-only status register ignored"),
            _ => self.s.scr = value,
        }
    }

    /// THR write: the character goes out (to the host, or round to the receiver in loopback)
    /// at once, and THR is empty again: the THRE interrupt drops and rises, giving an
    /// edge-triggered PIC a fresh edge.
    fn transmit(&mut self, value: u8, cx: &mut DeviceContext) {
        self.s.thr_pending = false;
        self.drive_irq(cx);
        if self.s.loopback() {
            // The internal wire carries only the programmed word length.
            self.s.receive(value & self.s.word_mask(), cx.now);
        } else {
            // The host end is a terminal or a file, not a wire: it gets whole bytes whatever
            // the word length, as QEMU and Bochs give them, so a guest that writes THR without
            // programming LCR (hobby kernels do) still prints readable text.
            self.backend.write(&[value]);
        }
        self.s.thr_pending = true;
    }

    fn drive_irq(&mut self, cx: &mut DeviceContext) {
        let level = self.s.irq_out();
        if level != self.s.irq_level {
            self.s.irq_level = level;
            cx.set_irq(self.irq, level);
        }
    }

    /// The next deadline: a look at the host's input while the receiver has room (the host is
    /// disconnected in loopback), and the FIFO timeout when it could raise an interrupt.
    fn schedule(&mut self, cx: &mut DeviceContext) {
        let s = &self.s;
        let mut deadline = None;
        if !s.loopback() && s.rx.len() < s.rx_capacity() {
            deadline = Some(s.next_poll.max(cx.now));
        }
        if s.fifo() && s.ier & IER_RDI != 0 && !s.rx.is_empty() && !s.timeout_pending {
            let t = s.rx_activity.saturating_add(4 * s.char_time_ns()).max(cx.now);
            deadline = Some(deadline.map_or(t, |d: u64| d.min(t)));
        }
        cx.set_deadline(deadline);
    }

    /// Around every access and tick: timeout first, then the work, then the line and deadline.
    fn access<R>(&mut self, cx: &mut DeviceContext, f: impl FnOnce(&mut Self, &mut DeviceContext) -> R) -> R {
        self.s.update_timeout(cx.now);
        let r = f(self, cx);
        self.s.update_timeout(cx.now);
        self.drive_irq(cx);
        self.schedule(cx);
        r
    }
}

impl Device for Uart {
    fn name(&self) -> &'static str {
        NAME
    }

    fn io_read(&mut self, port: u16, size: u8, cx: &mut DeviceContext) -> u32 {
        self.access(cx, |u, cx| {
            // A wide access is a run of byte accesses; bytes past the eighth port are not ours.
            (0..size.min(4) as u16).fold(0u32, |acc, i| {
                let reg = (port & 7) + i;
                let b = if reg < 8 { u.read_reg(reg, cx.now) } else { 0xFF };
                acc | (b as u32) << (8 * i)
            })
        })
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, cx: &mut DeviceContext) {
        self.access(cx, |u, cx| {
            for i in 0..size.min(4) as u16 {
                let reg = (port & 7) + i;
                if reg < 8 {
                    u.write_reg(reg, (value >> (8 * i)) as u8, cx);
                }
            }
        })
    }

    /// A look at the host's input: one character per character time while input flows, at
    /// least once a millisecond otherwise, and only while the receiver has room for it.
    fn tick(&mut self, cx: &mut DeviceContext) {
        self.access(cx, |u, cx| {
            let s = &u.s;
            if s.loopback() || s.rx.len() >= s.rx_capacity() || cx.now < s.next_poll {
                return;
            }
            match u.backend.read() {
                Some(b) => {
                    u.s.receive(b, cx.now);
                    u.s.next_poll = cx.now + u.s.char_time_ns().min(MAX_POLL_NS);
                }
                None => u.s.next_poll = cx.now + MAX_POLL_NS,
            }
        })
    }

    fn power_on(&mut self, cx: &mut DeviceContext) {
        self.s.next_poll = cx.now;
        self.s.rx_activity = cx.now;
        self.s.irq_level = false;
        cx.set_irq(self.irq, false);
        self.schedule(cx);
    }

    fn reset(&mut self) {
        self.s = State::new();
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        let s: State = snapshot.decode(NAME, VERSION)?;
        if s.rx.len() > FIFO_LEN {
            return Err(SnapshotError::Malformed {
                device: NAME.into(),
                source: <serde_json::Error as serde::de::Error>::custom(format!(
                    "receive FIFO holds {} bytes",
                    s.rx.len()
                )),
            });
        }
        self.s = s;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MachineEvent;
    use crate::host::CaptureChar;

    const BASE: u16 = 0x3F8;
    const THR: u16 = BASE;
    const RBR: u16 = BASE;
    const IER: u16 = BASE + 1;
    const IIR: u16 = BASE + 2;
    const FCR: u16 = BASE + 2;
    const LCR: u16 = BASE + 3;
    const MCR: u16 = BASE + 4;
    const LSR: u16 = BASE + 5;
    const MSR: u16 = BASE + 6;
    const SCR: u16 = BASE + 7;

    /// A UART on a fake clock with a capture backend; deadlines fire as the board fires them.
    struct Bench {
        uart: Uart,
        cap: CaptureChar,
        now: u64,
        deadline: Option<u64>,
        /// (time, level) of every change driven on IRQ 4.
        irq: Vec<(u64, bool)>,
    }

    impl Bench {
        fn new() -> Bench {
            let cap = CaptureChar::new();
            let mut b = Bench { uart: Uart::new(4, Box::new(cap.clone())), cap, now: 0, deadline: None, irq: vec![] };
            b.with(|u, cx| u.power_on(cx));
            b.irq.clear();
            b
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut Uart, &mut DeviceContext) -> R) -> R {
            let (mut irqs, mut events) = (Vec::new(), Vec::<MachineEvent>::new());
            let mut dl = self.deadline;
            let mut cx = DeviceContext::new(self.now, &mut irqs, &mut events, &mut dl);
            let r = f(&mut self.uart, &mut cx);
            self.deadline = dl;
            for (line, level) in irqs {
                assert_eq!(line, 4);
                self.irq.push((self.now, level));
            }
            r
        }

        fn out(&mut self, port: u16, value: u8) {
            self.with(|u, cx| u.io_write(port, 1, value as u32, cx));
        }

        fn inb(&mut self, port: u16) -> u8 {
            self.with(|u, cx| u.io_read(port, 1, cx)) as u8
        }

        fn run_to(&mut self, t: u64) {
            while let Some(d) = self.deadline.filter(|&d| d <= t) {
                self.now = self.now.max(d);
                self.deadline = None;
                self.with(|u, cx| u.tick(cx));
            }
            self.now = t;
        }

        fn run_for(&mut self, ns: u64) {
            self.run_to(self.now + ns);
        }

        fn line(&self) -> bool {
            self.irq.last().is_some_and(|e| e.1)
        }

        /// 115200 8N1, FIFOs as given, interrupts as given, OUT2 on.
        fn setup(&mut self, fcr: u8, ier: u8) {
            self.out(LCR, 0x80);
            self.out(THR, 1);
            self.out(IER, 0);
            self.out(LCR, 0x03);
            self.out(FCR, fcr);
            self.out(MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
            self.out(IER, ier);
        }
    }

    #[test]
    fn polled_transmit_reaches_the_host() {
        let mut b = Bench::new();
        assert_eq!(b.inb(LSR), 0x60, "THRE and TEMT after reset");
        assert_eq!(b.inb(IIR), 0x01);
        // LCR resets to five data bits, but the host end gets whole bytes.
        b.out(THR, b'h');
        assert_eq!(b.cap.output.lock().unwrap().as_slice(), b"h");
        b.cap.output.lock().unwrap().clear();
        b.out(LCR, 0x03);
        for &c in b"hello\n" {
            while b.inb(LSR) & LSR_THRE == 0 {}
            b.out(THR, c);
        }
        assert_eq!(b.cap.text(), "hello\n");
        assert!(b.irq.is_empty());
    }

    #[test]
    fn divisor_latch_shadows_rbr_and_ier() {
        let mut b = Bench::new();
        b.out(IER, 0x05);
        b.out(LCR, 0x83);
        b.out(BASE, 0x01);
        b.out(BASE + 1, 0x02);
        assert_eq!(b.inb(BASE), 0x01);
        assert_eq!(b.inb(BASE + 1), 0x02);
        assert!(b.cap.text().is_empty(), "DLL write is not a transmit");
        b.out(LCR, 0x03);
        assert_eq!(b.inb(IER), 0x05, "IER untouched by DLM");
        assert_eq!(b.uart.s.divisor, 0x0201);
        assert_eq!(b.uart.s.char_time_ns(), 10 * 0x201 * 1_000_000_000 / 115_200);
        b.out(LCR, 0x1F); // 8 data, 2 stop, even parity
        assert_eq!(b.uart.s.char_time_ns(), 12 * 0x201 * 1_000_000_000 / 115_200);
        b.out(LCR, 0x04); // 5 data, 1.5 stop
        assert_eq!(b.uart.s.char_time_ns(), 15 * 0x201 * 1_000_000_000 / 2 / 115_200);
    }

    #[test]
    fn receive_from_the_host() {
        let mut b = Bench::new();
        b.setup(0x00, 0);
        b.cap.push_input(b"ping");
        b.run_for(10_000_000);
        let mut got = Vec::new();
        while b.inb(LSR) & LSR_DR != 0 {
            got.push(b.inb(RBR));
            b.run_for(200_000);
        }
        assert_eq!(got, b"ping");
        assert_eq!(b.inb(RBR), b'g', "an empty RBR repeats the last character");
    }

    #[test]
    fn input_is_never_lost_when_the_guest_is_slow() {
        let mut b = Bench::new();
        b.setup(0xC1, 0);
        let text: Vec<u8> = (0..40).map(|i| b'a' + i % 26).collect();
        b.cap.push_input(&text);
        b.run_for(50_000_000);
        assert_eq!(b.uart.s.rx.len(), 16);
        assert_eq!(b.inb(LSR) & LSR_OE, 0);
        assert_eq!(b.deadline, None, "no polling while the FIFO is full");
        let mut got = Vec::new();
        while got.len() < 40 {
            if b.inb(LSR) & LSR_DR != 0 {
                got.push(b.inb(RBR));
            }
            b.run_for(50_000);
        }
        assert_eq!(got, text);
        assert_eq!(b.inb(LSR) & LSR_OE, 0);
    }

    #[test]
    fn rx_interrupt_raised_and_cleared_with_out2_gate() {
        let mut b = Bench::new();
        b.setup(0x00, IER_RDI);
        b.out(MCR, MCR_DTR | MCR_RTS); // OUT2 off
        b.cap.push_input(b"x");
        b.run_for(2_000_000);
        assert_eq!(b.inb(IIR), 0x04, "pending in the IIR");
        assert!(b.irq.is_empty(), "but OUT2 keeps it off the ISA line");
        b.out(MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
        assert!(b.line());
        assert_eq!(b.inb(RBR), b'x');
        assert!(!b.line());
        assert_eq!(b.inb(IIR), 0x01);
    }

    #[test]
    fn fifo_trigger_levels() {
        for (fcr, level) in [(0x01, 1), (0x41, 4), (0x81, 8), (0xC1, 14)] {
            let mut b = Bench::new();
            b.setup(fcr, IER_RDI);
            assert_eq!(b.inb(IIR), 0xC1, "FIFOs enabled show in IIR bits 7-6");
            // Input flows at line rate: byte k arrives k character times after the first.
            let ct = b.uart.s.char_time_ns();
            b.cap.push_input(&vec![b'.'; level]);
            if level > 1 {
                b.run_to((level as u64 - 1) * ct - 1);
                assert_eq!(b.uart.s.rx.len(), level - 1);
                assert!(!b.line(), "trigger {level}: no interrupt one byte short, and no timeout yet");
            }
            b.run_to((level as u64 - 1) * ct);
            assert!(b.line(), "trigger {level}: interrupt at {level} bytes");
            assert_eq!(b.inb(IIR), 0xC4);
            b.inb(RBR);
            if level > 1 {
                assert!(!b.line(), "below the trigger again");
            }
        }
    }

    #[test]
    fn character_timeout_indication() {
        let mut b = Bench::new();
        b.setup(0xC1, IER_RDI); // trigger 14
        b.cap.push_input(b"abc");
        b.run_for(400_000); // three characters in at 87 µs each
        assert_eq!(b.uart.s.rx.len(), 3);
        assert!(!b.line());
        let ct = b.uart.s.char_time_ns();
        b.run_for(4 * ct);
        assert!(b.line(), "timeout after four idle character times");
        assert_eq!(b.inb(IIR), 0xCC);
        assert_eq!(b.inb(RBR), b'a');
        assert!(!b.line(), "reading a character clears the timeout");
        assert_eq!(b.inb(IIR), 0xC1);
        b.run_for(4 * ct + 1);
        assert_eq!(b.inb(IIR), 0xCC, "and restarts the timer");
        b.inb(RBR);
        b.inb(RBR);
        b.run_for(10 * ct);
        assert_eq!(b.inb(IIR), 0xC1, "no timeout with an empty FIFO");
    }

    #[test]
    fn thre_interrupt_on_enable_iir_read_and_write() {
        let mut b = Bench::new();
        b.setup(0x01, 0);
        b.out(IER, IER_THRI);
        assert!(b.line(), "enabling ETBEI with THR empty interrupts at once");
        assert_eq!(b.inb(IIR), 0xC2);
        assert!(!b.line(), "reading IIR with THRE as the source clears it");
        assert_eq!(b.inb(IIR), 0xC1);
        b.irq.clear();
        b.out(THR, b'!');
        // Written and sent at once: the line gives a fresh rising edge.
        assert_eq!(b.irq, vec![(b.now, true)]);
        b.out(IER, IER_THRI);
        assert!(b.line(), "rewriting IER with ETBEI still set leaves it pending");
        b.out(THR, b'?');
        assert_eq!(b.irq.iter().map(|e| e.1).collect::<Vec<_>>(), vec![true, false, true]);
        b.out(IER, 0);
        assert!(!b.line());
        assert_eq!(b.cap.text(), "!?");
    }

    #[test]
    fn interrupt_priorities() {
        let mut b = Bench::new();
        b.setup(0x00, IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
        b.out(MCR, MCR_LOOP | MCR_OUT2);
        assert!(!b.line(), "loopback keeps the interrupt off the bus");
        b.irq.clear();
        b.out(THR, 1);
        b.out(THR, 2); // overrun: no FIFO
        assert_eq!(b.inb(IIR), IIR_RLSI);
        assert_eq!(b.inb(LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(b.inb(IIR), IIR_RDI);
        assert_eq!(b.inb(RBR), 2, "the new character overwrote the old");
        assert_eq!(b.inb(IIR), IIR_THRI);
        assert_eq!(b.inb(IIR), IIR_MSI, "loopback dropped CTS and DSR: modem status last");
        b.inb(MSR);
        assert_eq!(b.inb(IIR), IIR_NONE);
        assert!(b.irq.is_empty(), "never on the bus in loopback");
    }

    #[test]
    fn loopback_returns_data_and_modem_lines() {
        let mut b = Bench::new();
        b.setup(0x07, 0);
        b.inb(MSR);
        b.out(MCR, MCR_LOOP);
        assert_eq!(b.inb(MSR), 0x0B, "CTS, DSR, DCD fell: their deltas");
        for &c in b"loop" {
            b.out(THR, c);
        }
        assert!(b.cap.text().is_empty(), "nothing reaches the host in loopback");
        b.cap.push_input(b"host");
        b.run_for(20_000_000);
        let got: Vec<u8> = (0..4).map(|_| b.inb(RBR)).collect();
        assert_eq!(got, b"loop");
        assert_eq!(b.inb(LSR) & LSR_DR, 0, "host input stays out while looping back");
        b.out(MCR, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT1 | MCR_OUT2);
        assert_eq!(b.inb(MSR), 0xFB);
        b.out(MCR, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT2);
        assert_eq!(b.inb(MSR), 0xB4, "RI trailing edge sets TERI");
        b.out(LCR, 0x02); // 7 data bits
        b.out(THR, 0xFF);
        assert_eq!(b.inb(RBR), 0x7F);
        b.out(MCR, 0);
        b.run_for(5_000_000);
        assert_eq!(b.inb(RBR), b'h', "host input flows again after loopback");
    }

    #[test]
    fn fifo_overrun_keeps_the_fifo() {
        let mut b = Bench::new();
        b.setup(0x01, 0);
        b.out(MCR, MCR_LOOP);
        for i in 0..17 {
            b.out(THR, i);
        }
        assert_eq!(b.inb(LSR) & LSR_OE, LSR_OE);
        assert_eq!(b.inb(LSR) & LSR_OE, 0, "reading LSR clears OE");
        let got: Vec<u8> = (0..16).map(|_| b.inb(RBR)).collect();
        assert_eq!(got, (0..16).collect::<Vec<u8>>());
        b.out(THR, 0x55);
        b.out(FCR, 0x03);
        assert_eq!(b.inb(LSR) & LSR_DR, 0, "FCR bit 1 clears the receive FIFO");
        b.out(THR, 0x55);
        b.out(FCR, 0x00);
        assert_eq!(b.inb(LSR) & LSR_DR, 0, "disabling FIFOs clears them");
        assert_eq!(b.inb(IIR) & 0xC0, 0);
    }

    #[test]
    fn scratch_and_nonsense() {
        let mut b = Bench::new();
        b.out(SCR, 0x5A);
        assert_eq!(b.inb(SCR), 0x5A);
        b.out(LSR, 0x00);
        b.out(MSR, 0xFF);
        assert_eq!(b.inb(LSR), 0x60);
        b.out(FCR, 0xC6); // enable bit clear: nothing programmed
        assert_eq!(b.inb(IIR), 0x01);
        b.out(IER, 0xFF);
        assert_eq!(b.inb(IER), 0x0F);
        b.out(MCR, 0xFF);
        assert_eq!(b.inb(MCR), 0x1F);
        b.out(LCR, 0x80);
        b.out(BASE, 0);
        b.out(BASE + 1, 0);
        b.out(LCR, 0x03);
        b.run_for(10_000_000);
        let wide = b.with(|u, cx| u.io_read(SCR, 4, cx));
        assert_eq!(wide >> 8, 0xFF_FFFF);
        b.with(|u, cx| u.io_write(BASE + 6, 2, 0x1234, cx));
        assert_eq!(b.inb(SCR), 0x12);
        for v in 0..=255u8 {
            b.out(BASE + (v as u16 % 8), v);
            b.inb(BASE + (v as u16 / 3 % 8));
            b.run_for(v as u64 * 1000);
        }
        // A seeded random walk with host input arriving: never a panic, never a deadline in
        // the past, and a tick always moves the deadline past now (no spinning run loop).
        let mut seed = 0xD1CE_BA5E_1234_5678u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let r = next();
            let reg = BASE + (r % 8) as u16;
            match (r >> 8) % 4 {
                0 | 1 => b.out(reg, (r >> 16) as u8),
                2 => {
                    b.inb(reg);
                }
                _ => b.cap.push_input(&[(r >> 24) as u8]),
            }
            assert!(!matches!(b.deadline, Some(d) if d < b.now));
            b.run_for((r >> 40) % 300_000);
            if b.deadline == Some(b.now) {
                b.deadline = None;
                b.with(|u, cx| u.tick(cx));
                assert!(!matches!(b.deadline, Some(d) if d <= b.now));
            }
        }
    }

    #[test]
    fn save_restore_continues_identically() {
        let mut a = Bench::new();
        a.setup(0x81, IER_RDI | IER_THRI);
        a.inb(IIR);
        a.cap.push_input(b"0123456789");
        a.run_for(400_000);
        let snap = a.uart.save();
        let pending_host_input: Vec<u8> = a.cap.input.lock().unwrap().iter().copied().collect();

        let mut b = Bench::new();
        b.uart.restore(&snap).unwrap();
        b.cap.push_input(&pending_host_input);
        b.now = a.now;
        b.deadline = a.deadline;
        a.irq.clear();
        for bench in [&mut a, &mut b] {
            bench.run_for(3_000_000);
            let mut got = Vec::new();
            while bench.inb(LSR) & LSR_DR != 0 {
                got.push(bench.inb(RBR));
            }
            assert_eq!(got, b"0123456789");
            bench.out(THR, b'k');
        }
        assert_eq!(a.irq, b.irq);
        assert_eq!(a.uart.save(), b.uart.save());
        assert_eq!(b.cap.text(), "k");
        assert!(b.uart.restore(&DeviceSnapshot::new("pit", VERSION, &())).is_err());
    }
}
