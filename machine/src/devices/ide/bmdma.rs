//! Bus-master IDE of the PIIX3 (82371SB datasheet section 2.7; SFF-8038i): per channel a
//! command register (start/stop, direction), a status register (active, error, interrupt,
//! drive DMA-capable bits) and the address of a table of physical region descriptors in guest
//! memory, each an address, a byte count and an end-of-table bit. When the engine runs and the
//! selected drive has a DMA command waiting, the data moves between the drive and the regions
//! the table lists, and the drive's completion interrupt sets the interrupt bit.

use super::ata::Drive;
use crate::memory::Memory;
use serde::{Deserialize, Serialize};

/// Command register bits.
pub const START: u8 = 0x01;
/// Set: the bus master writes memory (a device-to-memory transfer).
pub const WRITE_TO_MEMORY: u8 = 0x08;
/// Status register bits.
pub const ACTIVE: u8 = 0x01;
pub const ERROR: u8 = 0x02;
pub const INTERRUPT: u8 = 0x04;
/// Drive 0 and 1 DMA capable: plain storage for the firmware.
pub const DMA_CAPABLE: u8 = 0x60;

/// A descriptor table lies within one 64 KiB region: at most this many entries.
const MAX_ENTRIES: u32 = 8192;
/// Data moves through a bounce buffer of this size.
const CHUNK: usize = 64 * 1024;

/// One channel's bus-master registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusMaster {
    pub command: u8,
    pub status: u8,
    /// Descriptor table address (dword aligned).
    pub prdt: u32,
}

impl BusMaster {
    /// A read of register byte `reg` (0-7).
    pub fn read(&self, reg: u8) -> u8 {
        match reg {
            0 => self.command,
            2 => self.status,
            4..=7 => (self.prdt >> (8 * (reg - 4))) as u8,
            _ => 0,
        }
    }

    /// A write of register byte `reg`. Setting START makes the engine active (it runs as soon
    /// as the drive asks); clearing it stops the engine, abandoning what it had not moved.
    pub fn write(&mut self, reg: u8, v: u8) {
        match reg {
            0 => {
                let was = self.command & START != 0;
                self.command = v & (START | WRITE_TO_MEMORY);
                match (was, v & START != 0) {
                    (false, true) => self.status |= ACTIVE,
                    (true, false) => self.status &= !ACTIVE,
                    _ => {}
                }
            }
            2 => {
                self.status = (self.status & !DMA_CAPABLE) | (v & DMA_CAPABLE);
                self.status &= !(v & (ERROR | INTERRUPT));
            }
            4..=7 => {
                let shift = 8 * (reg - 4);
                self.prdt = (self.prdt & !(0xFF << shift)) | (u32::from(v) << shift);
                self.prdt &= !3;
            }
            _ => {}
        }
    }

    /// Started and not yet finished.
    pub fn running(&self) -> bool {
        self.command & START != 0 && self.status & ACTIVE != 0
    }
}

/// The regions the descriptor table lists, up to `want` bytes: (address, length) pairs, and
/// whether the table describes exactly `want` bytes (else it describes more, or less when the
/// total falls short of `want`).
fn regions(bm: &BusMaster, memory: &Memory, want: u64) -> (Vec<(u64, usize)>, u64, bool) {
    let mut out = Vec::new();
    let mut total = 0u64;
    for i in 0..MAX_ENTRIES {
        let mut e = [0u8; 8];
        // The table wraps within its 64 KiB region, as the PIIX's address counter does.
        let at = (bm.prdt & !0xFFFF) | (bm.prdt.wrapping_add(8 * i) & 0xFFFF);
        memory.read(u64::from(at), &mut e);
        let addr = u64::from(u32::from_le_bytes([e[0], e[1], e[2], e[3]]) & !1);
        let count = match u32::from(u16::from_le_bytes([e[4], e[5]])) & !1 {
            0 => 0x1_0000,
            n => n,
        };
        let last = e[7] & 0x80 != 0;
        let take = u64::from(count).min(want - total);
        if take > 0 {
            out.push((addr, take as usize));
        }
        total += take;
        if total == want {
            return (out, total, last && take == u64::from(count));
        }
        if last {
            break;
        }
    }
    (out, total, false)
}

/// Runs the DMA command `drive` has waiting: moves its data between it and the regions of the
/// descriptor table, then completes the command (the drive raises its interrupt) and updates
/// the engine's status. Without bus mastering allowed (PCI command register), the command
/// fails with the engine's error bit set.
pub fn transfer(bm: &mut BusMaster, drive: &mut Drive, memory: &mut Memory, bus_master_enabled: bool) {
    let Some((to_memory, len)) = drive.dma_request() else { return };
    if !bus_master_enabled {
        tracing::debug!("IDE: bus-master transfer with bus mastering disabled in the PCI command register");
        bm.status = (bm.status & !ACTIVE) | ERROR;
        drive.dma_abort();
        return;
    }
    if to_memory != (bm.command & WRITE_TO_MEMORY != 0) {
        tracing::debug!("IDE: bus-master direction bit disagrees with the drive's command; the command wins");
    }
    let (list, described, exact) = regions(bm, memory, len);
    if described < len {
        tracing::debug!("IDE: descriptor table describes {described} bytes, the command moves {len}");
        bm.status &= !ACTIVE;
        drive.dma_short();
        return;
    }
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    let mut pieces = list.iter().copied();
    let mut piece: Option<(u64, usize)> = None;
    let mut left = len as usize;
    while left > 0 {
        let n = left.min(CHUNK);
        let chunk = &mut buf[..n];
        if to_memory && !drive.dma_in(chunk) {
            bm.status &= !ACTIVE;
            return;
        }
        // Scatter into (or gather from) the regions, continuing where the last chunk stopped.
        let mut done = 0;
        while done < n {
            let (addr, plen) = match piece.take() {
                Some(p) => p,
                None => pieces.next().expect("the regions cover the transfer"),
            };
            let k = plen.min(n - done);
            if to_memory {
                memory.write(addr, &chunk[done..done + k]);
            } else {
                memory.read(addr, &mut chunk[done..done + k]);
            }
            if k < plen {
                piece = Some((addr + k as u64, plen - k));
            }
            done += k;
        }
        if !to_memory && !drive.dma_out(chunk) {
            bm.status &= !ACTIVE;
            return;
        }
        left -= n;
    }
    drive.dma_complete();
    // A table that describes more than the command moved leaves the engine active (the host
    // sees "interrupt, still active" and stops it), as on the PIIX.
    if exact {
        bm.status &= !ACTIVE;
    }
}

#[cfg(test)]
mod tests {
    use super::super::ata::{cmd, Kind, DRDY, DSC, ERR};
    use super::super::tests::MemDisk;
    use super::*;
    use crate::block::BlockDevice;

    fn memory() -> Memory {
        Memory::new(4 << 20, &vec![0u8; 64 * 1024]).unwrap()
    }

    fn put_table(m: &mut Memory, at: u64, entries: &[(u32, u32, bool)]) {
        for (i, &(addr, count, last)) in entries.iter().enumerate() {
            let mut e = [0u8; 8];
            e[..4].copy_from_slice(&addr.to_le_bytes());
            e[4..6].copy_from_slice(&(count as u16).to_le_bytes());
            e[7] = if last { 0x80 } else { 0 };
            m.write(at + 8 * i as u64, &e);
        }
    }

    /// A disk whose sector N is filled with N, and a READ DMA or WRITE DMA of `count` sectors
    /// from `lba` issued to it.
    fn disk_with_command(c: u8, lba: u8, count: u8) -> Drive {
        let mut m = MemDisk::new(256 * 512);
        for s in 0..256u64 {
            m.write_at(s * 512, &[s as u8; 512]).unwrap();
        }
        let mut d = Drive::new(Kind::Disk, Some(Box::new(m)), 0);
        d.write_reg(2, count);
        d.write_reg(3, lba);
        d.write_reg(4, 0);
        d.write_reg(5, 0);
        d.write_reg(6, 0x40);
        d.command(c);
        d
    }

    fn started(prdt: u32, to_memory: bool) -> BusMaster {
        let mut bm = BusMaster::default();
        for (k, b) in prdt.to_le_bytes().iter().enumerate() {
            bm.write(4 + k as u8, *b);
        }
        bm.write(0, START | if to_memory { WRITE_TO_MEMORY } else { 0 });
        assert!(bm.running());
        bm
    }

    #[test]
    fn read_scatters_over_the_table() {
        let mut m = memory();
        // 3 sectors into 1000 bytes at 0x10000, 24 bytes at 0x20001 (bit 0 of an address
        // is ignored) and the last 512 at 0x30000.
        put_table(&mut m, 0x8000, &[(0x1_0000, 1000, false), (0x2_0001, 24, false), (0x3_0000, 512, true)]);
        let mut d = disk_with_command(cmd::READ_DMA, 7, 3);
        let mut bm = started(0x8000, true);
        transfer(&mut bm, &mut d, &mut m, true);
        let mut a = vec![0u8; 1000];
        m.read(0x1_0000, &mut a);
        assert!(a[..512].iter().all(|&b| b == 7) && a[512..].iter().all(|&b| b == 8));
        let mut b = vec![0u8; 25];
        m.read(0x2_0000, &mut b);
        assert!(b[..24].iter().all(|&x| x == 8) && b[24] == 0);
        let mut c = [0u8; 512];
        m.read(0x3_0000, &mut c);
        assert!(c.iter().all(|&x| x == 9));
        assert_eq!(bm.status & ACTIVE, 0, "the table matched the transfer exactly");
        assert_eq!(d.s.status, DRDY | DSC);
        assert!(d.s.irq);
    }

    #[test]
    fn write_gathers_and_a_larger_table_stays_active() {
        let mut m = memory();
        m.write(0x4_0000, &[0xAB; 512]);
        m.write(0x5_0000, &[0xCD; 512]);
        put_table(&mut m, 0x9000, &[(0x4_0000, 512, false), (0x5_0000, 4096, true)]);
        let mut d = disk_with_command(cmd::WRITE_DMA, 20, 2);
        let mut bm = started(0x9000, false);
        transfer(&mut bm, &mut d, &mut m, true);
        let mut back = [0u8; 1024];
        d.media.as_mut().unwrap().read_at(20 * 512, &mut back).unwrap();
        assert!(back[..512].iter().all(|&b| b == 0xAB) && back[512..].iter().all(|&b| b == 0xCD));
        assert_eq!(bm.status & ACTIVE, ACTIVE);
        assert!(d.s.irq);
    }

    #[test]
    fn a_short_table_stops_without_an_interrupt() {
        let mut m = memory();
        put_table(&mut m, 0x8000, &[(0x1_0000, 512, true)]);
        let mut d = disk_with_command(cmd::READ_DMA, 0, 2);
        let mut bm = started(0x8000, true);
        transfer(&mut bm, &mut d, &mut m, true);
        assert_eq!(bm.status & ACTIVE, 0);
        assert!(!d.s.irq);
        assert!(d.dma_request().is_none());
    }

    #[test]
    fn a_zero_count_is_64_kib_and_bus_mastering_must_be_on() {
        let mut m = memory();
        put_table(&mut m, 0x8000, &[(0x10_0000, 0, true)]);
        let mut d = disk_with_command(cmd::READ_DMA, 0, 128);
        let mut bm = started(0x8000, true);
        transfer(&mut bm, &mut d, &mut m, false);
        assert_eq!(bm.status & (ERROR | ACTIVE), ERROR);
        assert_eq!(d.s.status & ERR, ERR);
        let mut d = disk_with_command(cmd::READ_DMA, 0, 128);
        let mut bm = started(0x8000, true);
        transfer(&mut bm, &mut d, &mut m, true);
        let mut last = [0u8; 1];
        m.read(0x10_0000 + 0xFFFF, &mut last);
        assert_eq!(last[0], 127);
        assert_eq!(bm.status & ACTIVE, 0);
    }

    #[test]
    fn registers() {
        let mut bm = BusMaster::default();
        bm.write(4, 0x07);
        bm.write(5, 0x12);
        assert_eq!(bm.prdt, 0x1204, "the table address is dword aligned");
        bm.write(2, 0x60);
        bm.status |= ERROR | INTERRUPT;
        bm.write(2, INTERRUPT | 0x60);
        assert_eq!(bm.read(2), 0x60 | ERROR, "interrupt cleared by writing 1");
        bm.write(0, START);
        assert_eq!(bm.read(2) & ACTIVE, ACTIVE);
        bm.write(0, 0);
        assert_eq!(bm.read(2) & ACTIVE, 0);
    }
}
