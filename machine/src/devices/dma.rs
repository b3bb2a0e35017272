//! The PC/AT pair of Intel 8237A DMA controllers (8237A-5 datasheet; the AT wiring as the
//! PIIX3 datasheet describes it): controller 1 serves byte channels 0-3 at ports 0x00-0x0F,
//! controller 2 word channels 4-7 at 0xC0-0xDF (registers on even ports, A0 not decoded) and
//! cascades controller 1 through its channel 4; the page registers at 0x81-0x8F give address
//! bits 16-23 (17-23 for the word channels, whose address counter drives A1-A16).
//!
//! Devices never see this controller. They ask the board for transfers through
//! [`DeviceContext::dma_write`](crate::device::DeviceContext::dma_write) and `dma_read`; the
//! board hands them an [`IsaDmaBus`], which runs the channel's registers against guest memory.

use crate::device::{Device, DeviceContext, DeviceSnapshot, DmaTransfer, IsaDma, SnapshotError};
use crate::memory::Memory;
use serde::{Deserialize, Serialize};

const NAME: &str = "dma";
const VERSION: u32 = 1;

/// Mode register bits 3-2: the transfer type.
const XFER_VERIFY: u8 = 0;
const XFER_WRITE: u8 = 1;
const XFER_READ: u8 = 2;
const MODE_AUTOINIT: u8 = 0x10;
const MODE_DECREMENT: u8 = 0x20;
/// Mode register bits 7-6 (00 demand, 01 single, 10 block, 11 cascade; the first three
/// move the same bytes here).
const MODE_BLOCK: u8 = 2;
const MODE_CASCADE: u8 = 3;
/// Command register bit 2: controller disable.
const CMD_DISABLE: u8 = 0x04;

/// Which page register (port 0x80 + index) extends each channel's address (PC/AT wiring).
const PAGE_PORT: [usize; 8] = [0x7, 0x3, 0x1, 0x2, 0xF, 0xB, 0x9, 0xA];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Channel {
    base_addr: u16,
    base_count: u16,
    addr: u16,
    count: u16,
    mode: u8,
}

impl Channel {
    fn transfer_type(&self) -> u8 {
        (self.mode >> 2) & 3
    }
    fn mode_select(&self) -> u8 {
        self.mode >> 6
    }
}

/// One 8237A.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Controller {
    channels: [Channel; 4],
    command: u8,
    /// Mask bits 0-3: a set bit ignores the channel's DREQ.
    mask: u8,
    /// Software request bits 0-3.
    request: u8,
    /// Terminal count bits 0-3 of the status register, cleared when it is read.
    tc: u8,
    /// The byte pointer flip-flop: the next address/count access is the high byte.
    high_byte: bool,
    temp: u8,
}

impl Controller {
    /// The state after RESET or a master clear: everything cleared, all channels masked.
    fn new() -> Controller {
        Controller {
            channels: Default::default(),
            command: 0,
            mask: 0x0F,
            request: 0,
            tc: 0,
            high_byte: false,
            temp: 0,
        }
    }

    fn enabled(&self) -> bool {
        self.command & CMD_DISABLE == 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    ctl: [Controller; 2],
    /// Ports 0x80-0x8F: the page registers and the spare ones between them (plain storage).
    pages: [u8; 16],
}

impl State {
    fn new() -> State {
        let mut ctl = [Controller::new(), Controller::new()];
        // PIIX3: channel 4 comes out of reset in cascade mode (it carries controller 1).
        ctl[1].channels[0].mode = MODE_CASCADE << 6;
        State { ctl, pages: [0; 16] }
    }
}

/// Which way a device moves data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    ToMemory,
    FromMemory,
}

/// The two 8237As and the page registers.
pub struct Dma {
    s: State,
}

impl Default for Dma {
    fn default() -> Self {
        Dma::new()
    }
}

impl Dma {
    pub fn new() -> Dma {
        Dma { s: State::new() }
    }

    /// Whether controller 1's requests reach the bus: its HRQ is DREQ4 of controller 2, so
    /// channel 4 must be unmasked and in cascade mode, and controller 2 enabled.
    fn cascade_open(&self) -> bool {
        let c2 = &self.s.ctl[1];
        c2.enabled() && c2.mask & 1 == 0 && c2.channels[0].mode_select() == MODE_CASCADE
    }

    /// Why `channel` cannot serve a request now, if it cannot.
    fn blocked(&self, channel: usize, software: bool) -> Option<&'static str> {
        let (k, c) = (channel / 4, channel % 4);
        let ctl = &self.s.ctl[k];
        if !ctl.enabled() {
            return Some("controller disabled");
        }
        if !software && ctl.mask & (1 << c) != 0 {
            return Some("channel masked");
        }
        if ctl.channels[c].mode_select() == MODE_CASCADE {
            return Some("channel in cascade mode");
        }
        if k == 0 && !self.cascade_open() {
            return Some("channel 4 (the cascade) is masked or not in cascade mode");
        }
        None
    }

    /// Runs a transfer on `channel` between a device and memory, one byte (word) at a time
    /// as the 8237 does, until the device's data runs out or terminal count. `data` is the
    /// device's side: read for `ToMemory`, filled for `FromMemory`.
    fn run(&mut self, channel: u8, dir: Direction, memory: &mut Memory, data: &mut [u8]) -> DmaTransfer {
        let ch = channel as usize;
        if ch >= 8 {
            tracing::debug!(channel, "DMA request on a channel that does not exist");
            return DmaTransfer::default();
        }
        if let Some(why) = self.blocked(ch, false) {
            tracing::trace!(channel, why, "DMA request not served");
            return DmaTransfer::default();
        }
        let (k, c) = (ch / 4, ch % 4);
        let width = if k == 1 { 2 } else { 1 };
        let page = self.s.pages[PAGE_PORT[ch]];
        let units = data.len() / width;
        let ctl = &mut self.s.ctl[k];
        let chan = &mut ctl.channels[c];
        let kind = chan.transfer_type();
        let matches = match dir {
            Direction::ToMemory => kind == XFER_WRITE,
            Direction::FromMemory => kind == XFER_READ,
        };
        if !matches && kind != XFER_VERIFY {
            // The device and the channel disagree on the direction: both sides wait for the
            // other to drive the data bus, nothing reaches memory and the device reads ones.
            tracing::debug!(channel, mode = chan.mode, ?dir, "DMA channel programmed for the other direction");
        }
        let mut done = 0;
        let mut tc = false;
        while done < units {
            // A run of contiguous addresses: up to the device's end, terminal count or the
            // wrap of the 16-bit address counter (the page register does not carry).
            let left = units - done;
            let to_tc = chan.count as usize + 1;
            let run = if chan.mode & MODE_DECREMENT != 0 {
                1
            } else {
                left.min(to_tc).min(0x1_0000 - chan.addr as usize)
            };
            let paddr = if width == 2 {
                (u64::from(page & 0xFE) << 16) | (u64::from(chan.addr) << 1)
            } else {
                (u64::from(page) << 16) | u64::from(chan.addr)
            };
            let bytes = &mut data[done * width..(done + run) * width];
            match (dir, matches) {
                (Direction::ToMemory, true) => memory.write(paddr, bytes),
                (Direction::FromMemory, true) => memory.read(paddr, bytes),
                (Direction::FromMemory, false) => bytes.fill(0xFF),
                (Direction::ToMemory, false) => {}
            }
            done += run;
            chan.addr = if chan.mode & MODE_DECREMENT != 0 {
                chan.addr.wrapping_sub(run as u16)
            } else {
                chan.addr.wrapping_add(run as u16)
            };
            let (count, wrapped) = chan.count.overflowing_sub(run as u16);
            chan.count = count;
            if wrapped || run == to_tc {
                tc = true;
                ctl.tc |= 1 << c;
                ctl.request &= !(1 << c);
                if chan.mode & MODE_AUTOINIT != 0 {
                    chan.addr = chan.base_addr;
                    chan.count = chan.base_count;
                } else {
                    ctl.mask |= 1 << c;
                }
                break;
            }
        }
        DmaTransfer { bytes: done * width, terminal_count: tc }
    }

    /// A software request (request register): serviced in block mode only, and, with no
    /// device on the other end of the data bus, moves nothing; the channel counts to
    /// terminal count as it would for a verify transfer.
    fn software_request(&mut self, k: usize, c: usize) {
        let ch = k * 4 + c;
        if self.s.ctl[k].channels[c].mode_select() != MODE_BLOCK {
            tracing::debug!(channel = ch, "DMA software request outside block mode: ignored until block mode");
            return;
        }
        if let Some(why) = self.blocked(ch, true) {
            tracing::debug!(channel = ch, why, "DMA software request pending");
            return;
        }
        let ctl = &mut self.s.ctl[k];
        let chan = &mut ctl.channels[c];
        if chan.transfer_type() != XFER_VERIFY {
            tracing::debug!(channel = ch, "DMA software request with no device: memory left alone");
        }
        let n = chan.count as u32 + 1;
        if chan.mode & MODE_DECREMENT != 0 {
            chan.addr = chan.addr.wrapping_sub(n as u16);
        } else {
            chan.addr = chan.addr.wrapping_add(n as u16);
        }
        chan.count = 0xFFFF;
        ctl.tc |= 1 << c;
        ctl.request &= !(1 << c);
        if chan.mode & MODE_AUTOINIT != 0 {
            chan.addr = chan.base_addr;
            chan.count = chan.base_count;
        } else {
            ctl.mask |= 1 << c;
        }
    }

    fn read_reg(&mut self, k: usize, reg: u16) -> u8 {
        let ctl = &mut self.s.ctl[k];
        match reg {
            0..=7 => {
                let chan = &ctl.channels[(reg / 2) as usize];
                let v = if reg & 1 == 0 { chan.addr } else { chan.count };
                let b = if ctl.high_byte { (v >> 8) as u8 } else { v as u8 };
                ctl.high_byte = !ctl.high_byte;
                b
            }
            8 => {
                // Status: TC bits (cleared by the read) and the request bits.
                let v = ctl.tc | (ctl.request << 4);
                ctl.tc = 0;
                v
            }
            0xD => ctl.temp,
            _ => {
                tracing::debug!(controller = k + 1, reg, "read of a write-only DMA register");
                0xFF
            }
        }
    }

    fn write_reg(&mut self, k: usize, reg: u16, v: u8) {
        let ctl = &mut self.s.ctl[k];
        match reg {
            0..=7 => {
                let hi = ctl.high_byte;
                ctl.high_byte = !hi;
                let chan = &mut ctl.channels[(reg / 2) as usize];
                let set = |old: u16| if hi { (old & 0x00FF) | (u16::from(v) << 8) } else { (old & 0xFF00) | u16::from(v) };
                // Writes load the base and current registers together.
                if reg & 1 == 0 {
                    chan.base_addr = set(chan.base_addr);
                    chan.addr = chan.base_addr;
                } else {
                    chan.base_count = set(chan.base_count);
                    chan.count = chan.base_count;
                }
            }
            8 => {
                if v & 0x01 != 0 {
                    tracing::debug!(controller = k + 1, "DMA memory-to-memory mode is not wired on a PC");
                }
                ctl.command = v;
            }
            9 => {
                let c = (v & 3) as usize;
                if v & 4 != 0 {
                    ctl.request |= 1 << c;
                    self.software_request(k, c);
                } else {
                    ctl.request &= !(1 << c);
                }
            }
            0xA => {
                let bit = 1 << (v & 3);
                if v & 4 != 0 {
                    ctl.mask |= bit;
                } else {
                    ctl.mask &= !bit;
                }
            }
            0xB => {
                let c = (v & 3) as usize;
                if (v >> 2) & 3 == 3 && v >> 6 != MODE_CASCADE {
                    tracing::debug!(channel = k * 4 + c, mode = v, "DMA transfer type 11 is illegal");
                }
                ctl.channels[c].mode = v & 0xFC;
            }
            0xC => ctl.high_byte = false,
            0xD => *ctl = Controller::new(),
            0xE => ctl.mask = 0,
            0xF => ctl.mask = v & 0x0F,
            _ => {}
        }
    }

    fn read_byte(&mut self, port: u16) -> u8 {
        match port {
            0x00..=0x0F => self.read_reg(0, port),
            0xC0..=0xDF => self.read_reg(1, (port - 0xC0) >> 1),
            0x80..=0x8F => self.s.pages[(port - 0x80) as usize],
            _ => 0xFF,
        }
    }

    fn write_byte(&mut self, port: u16, v: u8) {
        match port {
            0x00..=0x0F => self.write_reg(0, port, v),
            0xC0..=0xDF => self.write_reg(1, (port - 0xC0) >> 1, v),
            0x80..=0x8F => self.s.pages[(port - 0x80) as usize] = v,
            _ => {}
        }
    }

    /// Whether `port` is one of ours (for accesses wider than a byte). Port 0x80 is left to
    /// the POST code port.
    fn owns(port: u16) -> bool {
        matches!(port, 0x00..=0x0F | 0xC0..=0xDF | 0x81..=0x8F)
    }
}

impl Device for Dma {
    fn name(&self) -> &'static str {
        NAME
    }

    fn io_read(&mut self, port: u16, size: u8, _cx: &mut DeviceContext) -> u32 {
        (0..size.min(4)).fold(0u32, |acc, i| {
            let p = port.wrapping_add(i as u16);
            let b = if Dma::owns(p) { self.read_byte(p) } else { 0xFF };
            acc | (b as u32) << (8 * i)
        })
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, _cx: &mut DeviceContext) {
        for i in 0..size.min(4) {
            let p = port.wrapping_add(i as u16);
            if Dma::owns(p) {
                self.write_byte(p, (value >> (8 * i)) as u8);
            }
        }
    }

    fn reset(&mut self) {
        self.s = State::new();
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        self.s = snapshot.decode(NAME, VERSION)?;
        Ok(())
    }

    fn as_isa_dma(&mut self) -> Option<&mut Dma> {
        Some(self)
    }
}

/// The DMA controller and guest memory together: what the board gives a device as its
/// [`IsaDma`] while it handles an access or a tick.
pub struct IsaDmaBus<'a> {
    pub dma: &'a mut Dma,
    pub memory: &'a mut Memory,
}

impl IsaDma for IsaDmaBus<'_> {
    fn write_memory(&mut self, channel: u8, data: &[u8]) -> DmaTransfer {
        let mut buf = data.to_vec();
        self.dma.run(channel, Direction::ToMemory, self.memory, &mut buf)
    }

    fn read_memory(&mut self, channel: u8, buf: &mut [u8]) -> DmaTransfer {
        self.dma.run(channel, Direction::FromMemory, self.memory, buf)
    }
}

/// Splits the board's device list into device `idx` and the DMA controller at `dma` (when
/// there is one and it is another device), so the device can run DMA while it is borrowed.
pub(crate) fn split_for_dma(
    devices: &mut [Box<dyn Device>],
    idx: usize,
    dma: Option<usize>,
) -> (&mut dyn Device, Option<&mut Dma>) {
    match dma {
        Some(d) if d != idx && d < devices.len() => {
            let (dev, ctl) = if idx < d {
                let (lo, hi) = devices.split_at_mut(d);
                (lo[idx].as_mut(), hi[0].as_mut())
            } else {
                let (lo, hi) = devices.split_at_mut(idx);
                (hi[0].as_mut(), lo[d].as_mut())
            };
            (dev, ctl.as_isa_dma())
        }
        _ => (devices[idx].as_mut(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MachineEvent;

    fn memory() -> Memory {
        Memory::new(4 << 20, &vec![0u8; 64 * 1024]).unwrap()
    }

    struct Bench {
        dma: Dma,
        mem: Memory,
    }

    impl Bench {
        fn new() -> Bench {
            let mut b = Bench { dma: Dma::new(), mem: memory() };
            // What a BIOS does: channel 4 cascades controller 1 and is unmasked.
            b.out(0xD6, 0xC0);
            b.out(0xD4, 0x00);
            b
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut Dma, &mut DeviceContext) -> R) -> R {
            let (mut irqs, mut events, mut dl) = (Vec::new(), Vec::<MachineEvent>::new(), None);
            let mut cx = DeviceContext::new(0, &mut irqs, &mut events, &mut dl);
            f(&mut self.dma, &mut cx)
        }

        fn out(&mut self, port: u16, v: u8) {
            self.with(|d, cx| d.io_write(port, 1, v as u32, cx));
        }

        fn inb(&mut self, port: u16) -> u8 {
            self.with(|d, cx| d.io_read(port, 1, cx)) as u8
        }

        /// Programs byte channel `c` as a BIOS does: mask, mode, address, page, count, unmask.
        fn program8(&mut self, c: u8, mode: u8, addr: u32, count: u16) {
            self.out(0x0A, 4 | c);
            self.out(0x0C, 0);
            self.out(0x0B, mode | c);
            self.out(c as u16 * 2, addr as u8);
            self.out(c as u16 * 2, (addr >> 8) as u8);
            self.out(0x80 + PAGE_PORT[c as usize] as u16, (addr >> 16) as u8);
            self.out(c as u16 * 2 + 1, count as u8);
            self.out(c as u16 * 2 + 1, (count >> 8) as u8);
            self.out(0x0A, c);
        }

        fn to_memory(&mut self, ch: u8, data: &[u8]) -> DmaTransfer {
            IsaDmaBus { dma: &mut self.dma, memory: &mut self.mem }.write_memory(ch, data)
        }

        fn from_memory(&mut self, ch: u8, buf: &mut [u8]) -> DmaTransfer {
            IsaDmaBus { dma: &mut self.dma, memory: &mut self.mem }.read_memory(ch, buf)
        }

        fn peek(&self, addr: u64, len: usize) -> Vec<u8> {
            let mut v = vec![0; len];
            self.mem.read(addr, &mut v);
            v
        }
    }

    #[test]
    fn single_mode_write_to_memory_until_terminal_count() {
        let mut b = Bench::new();
        b.program8(2, 0x44, 0x1_2340, 511); // single, write, increment
        let sector: Vec<u8> = (0..512).map(|i| i as u8).collect();
        let t = b.to_memory(2, &sector[..256]);
        assert_eq!(t, DmaTransfer { bytes: 256, terminal_count: false });
        let t = b.to_memory(2, &sector[256..]);
        assert_eq!(t, DmaTransfer { bytes: 256, terminal_count: true });
        assert_eq!(b.peek(0x1_2340, 512), sector);
        assert_eq!(b.inb(0x08) & 0x0F, 0x04, "TC bit of channel 2");
        assert_eq!(b.inb(0x08) & 0x0F, 0, "cleared by the read");
        assert_eq!(b.to_memory(2, &[1]).bytes, 0, "masked at terminal count");
        // Address and count read back through the flip-flop: count wrapped to 0xFFFF.
        b.out(0x0C, 0);
        assert_eq!((b.inb(0x04), b.inb(0x04)), (0x40, 0x25));
        assert_eq!((b.inb(0x05), b.inb(0x05)), (0xFF, 0xFF));
    }

    #[test]
    fn terminal_count_in_the_middle_of_a_device_block() {
        let mut b = Bench::new();
        b.program8(2, 0x46 & !0x02, 0x8000, 99); // 100 bytes
        let t = b.to_memory(2, &[0xAB; 512]);
        assert_eq!(t, DmaTransfer { bytes: 100, terminal_count: true });
        assert_eq!(b.peek(0x8000 + 99, 2), vec![0xAB, 0x00]);
    }

    #[test]
    fn address_wraps_inside_the_64k_page() {
        let mut b = Bench::new();
        b.program8(1, 0x44, 0x3_FFFE, 3);
        b.to_memory(1, &[1, 2, 3, 4]);
        assert_eq!(b.peek(0x3_FFFE, 2), vec![1, 2]);
        assert_eq!(b.peek(0x3_0000, 2), vec![3, 4], "the page register does not carry");
        assert_eq!(b.peek(0x4_0000, 2), vec![0, 0]);
    }

    #[test]
    fn decrement_and_autoinit() {
        let mut b = Bench::new();
        b.program8(3, 0x44 | MODE_DECREMENT | MODE_AUTOINIT, 0x5003, 3);
        let t = b.to_memory(3, &[1, 2, 3, 4]);
        assert!(t.terminal_count);
        assert_eq!(b.peek(0x5000, 4), vec![4, 3, 2, 1]);
        // Auto-init: reloaded, still unmasked.
        let t = b.to_memory(3, &[9]);
        assert_eq!(t.bytes, 1);
        assert_eq!(b.peek(0x5003, 1), vec![9]);
    }

    #[test]
    fn read_from_memory_and_verify() {
        let mut b = Bench::new();
        b.mem.write(0x7000, b"hello");
        b.program8(2, 0x48, 0x7000, 4); // single, read
        let mut buf = [0u8; 8];
        let t = b.from_memory(2, &mut buf);
        assert_eq!(t, DmaTransfer { bytes: 5, terminal_count: true });
        assert_eq!(&buf[..5], b"hello");
        b.program8(2, 0x40, 0x7000, 4); // verify: counts, touches nothing
        let t = b.to_memory(2, b"XXXXX");
        assert_eq!(t.bytes, 5);
        assert_eq!(b.peek(0x7000, 5), b"hello");
    }

    #[test]
    fn direction_mismatch_moves_nothing() {
        let mut b = Bench::new();
        b.program8(2, 0x48, 0x7000, 3); // read channel, device writes
        b.to_memory(2, &[1, 2, 3, 4]);
        assert_eq!(b.peek(0x7000, 4), vec![0; 4]);
    }

    #[test]
    fn word_channels_address_in_words_with_the_page_on_a1_a23() {
        let mut b = Bench::new();
        // Channel 5: mode, address in words, page at 0x8B, count in words.
        b.out(0xD4, 4 | 1);
        b.out(0xD8, 0);
        b.out(0xD6, 0x44 | 1);
        b.out(0xC4, 0x00);
        b.out(0xC4, 0x80); // word 0x8000 = byte 0x10000
        b.out(0x8B, 0x02); // 128 KiB page 1
        b.out(0xC6, 1);
        b.out(0xC6, 0);
        b.out(0xD4, 1);
        let t = b.to_memory(5, &[1, 2, 3, 4, 5]);
        assert_eq!(t, DmaTransfer { bytes: 4, terminal_count: true });
        assert_eq!(b.peek(0x3_0000, 4), vec![1, 2, 3, 4]);
        // Odd ports alias the even ones below them.
        b.out(0xD9, 0);
        assert_eq!(b.inb(0xC5), 0x02, "current address low byte (word 0x8002)");
    }

    #[test]
    fn cascade_masks_and_controller_disable_block_requests() {
        let mut b = Bench::new();
        b.program8(2, 0x44, 0x1000, 9);
        b.out(0xD4, 4); // mask channel 4: controller 1 loses the bus
        assert_eq!(b.to_memory(2, &[1]).bytes, 0);
        b.out(0xD4, 0);
        b.out(0x08, CMD_DISABLE);
        assert_eq!(b.to_memory(2, &[1]).bytes, 0);
        b.out(0x08, 0);
        b.out(0x0F, 0x04);
        assert_eq!(b.to_memory(2, &[1]).bytes, 0, "write all mask bits");
        b.out(0x0E, 0);
        assert_eq!(b.to_memory(2, &[1]).bytes, 1, "clear mask register");
        b.out(0x0D, 0); // master clear: everything masked again
        assert_eq!(b.to_memory(2, &[1]).bytes, 0);
        assert_eq!(b.to_memory(9, &[1]).bytes, 0);
        // Power-on: channels masked even with the cascade set up.
        let mut fresh = Bench { dma: Dma::new(), mem: memory() };
        assert_eq!(fresh.to_memory(2, &[1]).bytes, 0);
    }

    #[test]
    fn software_request_in_block_mode_runs_to_terminal_count() {
        let mut b = Bench::new();
        b.program8(1, 0x80, 0x2000, 15); // block, verify
        b.out(0x09, 0x04 | 1);
        assert_eq!(b.inb(0x08) & 0x0F, 0x02);
        b.out(0x0C, 0);
        assert_eq!(b.inb(0x02), 0x10, "address advanced by 16");
        b.program8(1, 0x40, 0x2000, 15); // single mode: request stays pending
        b.out(0x09, 0x04 | 1);
        assert_eq!(b.inb(0x08), 0x20, "request bit 1 shown, no TC");
        b.out(0x09, 1);
        assert_eq!(b.inb(0x08), 0);
    }

    #[test]
    fn transfers_outside_ram_are_dropped() {
        let mut b = Bench::new();
        b.program8(2, 0x44, 0xA_0000, 3); // the VGA window
        assert_eq!(b.to_memory(2, &[1, 2, 3, 4]).bytes, 4);
        assert_eq!(b.peek(0xA_0000, 4), vec![0xFF; 4]);
        b.program8(2, 0x48, 0xFF_FFFE, 3); // beyond 4 MiB of RAM, reads open bus
        let mut buf = [0u8; 4];
        b.from_memory(2, &mut buf);
        assert_eq!(buf, [0xFF; 4]);
        let mut pages = Vec::new();
        b.mem.take_written(&mut pages);
        assert!(pages.contains(&0xA_0000), "the CPU hears about DMA writes");
    }

    #[test]
    fn nonsense_is_harmless() {
        let mut b = Bench::new();
        for p in (0..=0x0Fu16).chain(0xC0..=0xDF).chain(0x81..=0x8F) {
            for v in [0u8, 0x55, 0xFF] {
                b.out(p, v);
                b.inb(p);
            }
        }
        b.with(|d, cx| d.io_write(0x00, 4, 0xFFFF_FFFF, cx));
        let wide = b.with(|d, cx| d.io_read(0x0F, 2, cx));
        assert_eq!(wide >> 8, 0xFF, "port 0x10 is not ours");
        for ch in 0..8 {
            b.to_memory(ch, &[0; 7]);
            let mut buf = [0; 7];
            b.from_memory(ch, &mut buf);
        }
    }

    #[test]
    fn save_restore_round_trip() {
        let mut a = Bench::new();
        a.program8(2, 0x54, 0x1_0000, 511);
        a.out(0x0C, 0);
        a.inb(0x04); // flip-flop left on the high byte
        a.to_memory(2, &[7; 100]);
        let snap = a.dma.save();
        let mut b = Bench { dma: Dma::new(), mem: memory() };
        b.dma.restore(&snap).unwrap();
        assert_eq!(b.dma.save(), snap);
        assert_eq!(a.inb(0x04), b.inb(0x04));
        assert_eq!(a.to_memory(2, &[1; 600]), b.to_memory(2, &[1; 600]));
        assert!(b.dma.restore(&DeviceSnapshot::new("pit", VERSION, &())).is_err());
    }
}
