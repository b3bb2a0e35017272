//! QEMU's firmware configuration device (QEMU `docs/specs/fw_cfg.rst`, `hw/nvram/fw_cfg.c`), as
//! on the x86 "pc" board: a 16-bit selector at port 0x510, a byte-wide data port at 0x511, and
//! the DMA interface at 0x514 (the big-endian address of a `FWCfgDmaAccess` written as two
//! 32-bit halves, high at 0x514, low at 0x518; the low write starts the transfer; reading the
//! ports gives the signature "QEMU CFG"). Items are numbered; named files are listed in the
//! directory item 0x19 (big-endian count, then 64-byte entries {size BE32, select BE16,
//! reserved, name[56]}). [`FwCfg::for_platform`] fills in what SeaBIOS reads from a QEMU PC.
//!
//! DMA reaches guest memory only through the board's `Device::run_memory_transfer` call: the
//! device never holds the memory.

use crate::device::{open_bus, Device, DeviceContext, DeviceSnapshot, SnapshotError};
use crate::firmware::acpi;
use crate::firmware::smbios;
use crate::firmware::{FirmwareTables, Platform};
use crate::memory::{Memory, PAGE_SIZE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SELECTOR_PORT: u16 = 0x510;
pub const DATA_PORT: u16 = 0x511;
/// The DMA address register: high half at 0x514, low half at 0x518.
pub const DMA_PORT: u16 = 0x514;
/// The ports the board gives this device.
pub const PORTS: [(u16, u16); 2] = [(SELECTOR_PORT, 2), (DMA_PORT, 8)];

/// Item numbers (QEMU `include/standard-headers/linux/qemu_fw_cfg.h`).
pub const SIGNATURE: u16 = 0x00;
pub const ID: u16 = 0x01;
pub const UUID: u16 = 0x02;
pub const RAM_SIZE: u16 = 0x03;
pub const NOGRAPHIC: u16 = 0x04;
pub const NB_CPUS: u16 = 0x05;
pub const BOOT_DEVICE: u16 = 0x0C;
pub const NUMA: u16 = 0x0D;
pub const BOOT_MENU: u16 = 0x0E;
pub const MAX_CPUS: u16 = 0x0F;
pub const FILE_DIR: u16 = 0x19;
pub const FILE_FIRST: u16 = 0x20;
/// x86-specific items.
pub const ACPI_TABLES: u16 = 0x8000;
pub const IRQ0_OVERRIDE: u16 = 0x8002;
pub const E820_TABLE: u16 = 0x8003;
/// Selector bit that asked for writing through the data port in old QEMUs; ignored.
const WRITE_CHANNEL: u16 = 0x4000;

/// FW_CFG_ID feature bits.
pub const FEATURE_TRADITIONAL: u32 = 1;
pub const FEATURE_DMA: u32 = 2;

/// `FWCfgDmaAccess.control` bits.
pub const DMA_ERROR: u32 = 0x01;
pub const DMA_READ: u32 = 0x02;
pub const DMA_SKIP: u32 = 0x04;
pub const DMA_SELECT: u32 = 0x08;
pub const DMA_WRITE: u32 = 0x10;

/// What reading the DMA ports gives, byte by byte.
pub const DMA_SIGNATURE: [u8; 8] = *b"QEMU CFG";
/// Length of a file name in the directory.
pub const FILE_NAME_LEN: usize = 56;

const NAME: &str = "fw_cfg";
const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// The selected item (with the arch bit), or `None` after an unknown selector.
    selected: Option<u16>,
    /// Read position within the selected item.
    offset: u32,
    /// The DMA address being assembled from its two halves.
    dma_addr: u64,
    /// A DMA transfer the guest started and the board has not run yet.
    dma_pending: Option<u64>,
}

impl Default for State {
    fn default() -> Self {
        State { selected: Some(SIGNATURE), offset: 0, dma_addr: 0, dma_pending: None }
    }
}

/// The device with its (read-only) items.
pub struct FwCfg {
    items: BTreeMap<u16, Vec<u8>>,
    /// Named files in directory order: (name, selector).
    files: Vec<(String, u16)>,
    s: State,
}

/// Collects items and files, then numbers the files and writes the directory.
#[derive(Default)]
pub struct FwCfgBuilder {
    items: BTreeMap<u16, Vec<u8>>,
    files: BTreeMap<String, Vec<u8>>,
}

impl FwCfgBuilder {
    /// An empty device that already answers the signature and ID items.
    pub fn new() -> FwCfgBuilder {
        let mut b = FwCfgBuilder::default();
        b.item(SIGNATURE, b"QEMU".to_vec());
        b.item(ID, (FEATURE_TRADITIONAL | FEATURE_DMA).to_le_bytes().to_vec());
        b
    }

    pub fn item(&mut self, selector: u16, data: Vec<u8>) -> &mut Self {
        self.items.insert(selector & !WRITE_CHANNEL, data);
        self
    }

    pub fn file(&mut self, name: &str, data: Vec<u8>) -> &mut Self {
        assert!(name.len() < FILE_NAME_LEN, "fw_cfg file name {name:?} too long");
        self.files.insert(name.to_string(), data);
        self
    }

    /// Files get selectors from 0x20 in name order (QEMU sorts its directory by name too).
    pub fn build(mut self) -> FwCfg {
        let mut dir = (self.files.len() as u32).to_be_bytes().to_vec();
        let mut files = Vec::new();
        for (k, (name, data)) in std::mem::take(&mut self.files).into_iter().enumerate() {
            let selector = FILE_FIRST + k as u16;
            dir.extend_from_slice(&(data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&selector.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut field = [0u8; FILE_NAME_LEN];
            field[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&field);
            self.items.insert(selector, data);
            files.push((name, selector));
        }
        self.items.insert(FILE_DIR, dir);
        FwCfg { items: self.items, files, s: State::default() }
    }
}

impl FwCfg {
    /// What QEMU's "pc" machine offers SeaBIOS: identification, RAM size and CPU counts, the
    /// e820 map, boot order and boot menu settings, the ACPI tables with their loader script,
    /// and the SMBIOS tables.
    pub fn for_platform(p: &Platform, tables: &FirmwareTables) -> FwCfg {
        let mut b = FwCfgBuilder::new();
        let cpus = p.cpus as u16;
        b.item(UUID, vec![0; 16])
            .item(RAM_SIZE, p.ram_size.to_le_bytes().to_vec())
            .item(NOGRAPHIC, 0u16.to_le_bytes().to_vec())
            .item(NB_CPUS, cpus.to_le_bytes().to_vec())
            .item(MAX_CPUS, cpus.to_le_bytes().to_vec())
            .item(BOOT_DEVICE, p.boot_device().to_le_bytes().to_vec())
            // No boot menu (SeaBIOS reads this as "etc/show-boot-menu"): no prompt, no wait.
            .item(BOOT_MENU, 0u16.to_le_bytes().to_vec())
            // NUMA: no nodes (count, then a node per CPU).
            .item(NUMA, vec![0; 8 * (1 + p.cpus as usize)])
            .item(ACPI_TABLES, 0u16.to_le_bytes().to_vec())
            .item(IRQ0_OVERRIDE, 1u32.to_le_bytes().to_vec())
            .item(E820_TABLE, 0u32.to_le_bytes().to_vec());
        let (acpi, smbios) = (&tables.acpi, &tables.smbios);
        b.file("etc/e820", p.e820_file())
            .file("bootorder", p.bootorder_file())
            // Never reboot after a failed boot ("No bootable device." and wait), as QEMU's default.
            .file("etc/boot-fail-wait", (-1i32).to_le_bytes().to_vec())
            .file(acpi::TABLES_FILE, acpi.tables.clone())
            .file(acpi::RSDP_FILE, acpi.rsdp.clone())
            .file(acpi::LOADER_FILE, acpi.loader.to_bytes())
            .file(smbios::TABLES_FILE, smbios.tables.clone())
            .file(smbios::ANCHOR_FILE, smbios.anchor.clone());
        for (name, data) in &p.fw_cfg_files {
            b.file(name, data.clone());
        }
        b.build()
    }

    /// An item's contents, by selector.
    pub fn item(&self, selector: u16) -> Option<&[u8]> {
        self.items.get(&selector).map(Vec::as_slice)
    }

    /// A file's contents, by name.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        let &(_, sel) = self.files.iter().find(|(n, _)| n == name)?;
        self.item(sel)
    }

    fn select(&mut self, key: u16) {
        let key = key & !WRITE_CHANNEL;
        self.s.offset = 0;
        self.s.selected = if self.items.contains_key(&key) {
            Some(key)
        } else {
            tracing::debug!(selector = format_args!("{key:#06x}"), "fw_cfg: unknown item selected; reads give 0");
            None
        };
    }

    fn current(&self) -> Option<&[u8]> {
        self.s.selected.and_then(|k| self.items.get(&k)).map(Vec::as_slice)
    }

    /// One byte through the data port: the next byte of the item, 0 past its end.
    fn read_data(&mut self) -> u8 {
        let off = self.s.offset as usize;
        match self.current().and_then(|d| d.get(off)).copied() {
            Some(b) => {
                self.s.offset += 1;
                b
            }
            None => 0,
        }
    }

    /// Runs the DMA request whose descriptor is at `desc_at`.
    fn dma(&mut self, desc_at: u64, memory: &mut Memory) {
        let mut desc = [0u8; 16];
        if !mapped(memory, desc_at, 16) {
            tracing::debug!(addr = format_args!("{desc_at:#x}"), "fw_cfg: DMA descriptor outside memory; dropped");
            return;
        }
        memory.read(desc_at, &mut desc);
        let control = u32::from_be_bytes(desc[0..4].try_into().expect("4 bytes"));
        let mut length = u32::from_be_bytes(desc[4..8].try_into().expect("4 bytes"));
        let mut address = u64::from_be_bytes(desc[8..16].try_into().expect("8 bytes"));
        if control & DMA_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let (read, write) = if control & DMA_READ != 0 {
            (true, false)
        } else if control & DMA_WRITE != 0 {
            (false, true)
        } else if control & DMA_SKIP != 0 {
            (false, false)
        } else {
            length = 0;
            (false, false)
        };
        let mut status = 0;
        while length > 0 && status & DMA_ERROR == 0 {
            let off = self.s.offset as usize;
            let avail = self.current().map_or(0, |d| d.len().saturating_sub(off));
            let len = if avail == 0 { length } else { length.min(avail as u32) };
            if write {
                // Every item here is read-only, as QEMU's are unless made writable.
                tracing::debug!(selector = ?self.s.selected, "fw_cfg: DMA write to a read-only item");
                status |= DMA_ERROR;
            } else if read {
                let ok = if avail == 0 {
                    zero_fill(memory, address, u64::from(len))
                } else {
                    let data = &self.items[&self.s.selected.expect("avail > 0")][off..off + len as usize];
                    mapped(memory, address, u64::from(len)) && {
                        memory.write(address, data);
                        true
                    }
                };
                if !ok {
                    tracing::debug!(addr = format_args!("{address:#x}"), len, "fw_cfg: DMA outside memory");
                    status |= DMA_ERROR;
                }
            }
            if avail > 0 {
                self.s.offset += len;
            }
            address = address.wrapping_add(u64::from(len));
            length -= len;
        }
        memory.write(desc_at, &status.to_be_bytes());
    }
}

/// Whether every page of `[addr, addr + len)` is memory (RAM or ROM), not a hole.
fn mapped(memory: &Memory, addr: u64, len: u64) -> bool {
    let Some(last) = addr.checked_add(len.max(1) - 1) else { return false };
    let mut page = addr & !(PAGE_SIZE - 1);
    loop {
        if memory.page(page).is_none() {
            return false;
        }
        match page.checked_add(PAGE_SIZE) {
            Some(next) if next <= last => page = next,
            _ => return true,
        }
    }
}

fn zero_fill(memory: &mut Memory, addr: u64, len: u64) -> bool {
    if !mapped(memory, addr, len) {
        return false;
    }
    let zeros = [0u8; 4096];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64);
        memory.write(addr + done, &zeros[..n as usize]);
        done += n;
    }
    true
}

impl Device for FwCfg {
    fn name(&self) -> &'static str {
        NAME
    }

    fn io_read(&mut self, port: u16, size: u8, _cx: &mut DeviceContext) -> u32 {
        match port {
            SELECTOR_PORT | DATA_PORT if size == 1 => u32::from(self.read_data()),
            p if (DMA_PORT..DMA_PORT + 8).contains(&p) => (0..u16::from(size)).fold(0, |v, k| {
                let b = DMA_SIGNATURE.get(usize::from(p - DMA_PORT + k)).copied().unwrap_or(0xFF);
                v | u32::from(b) << (8 * k)
            }),
            _ => {
                tracing::debug!(port = format_args!("{port:#x}"), size, "fw_cfg: unsupported read");
                open_bus(size) as u32
            }
        }
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, _cx: &mut DeviceContext) {
        match (port, size) {
            (SELECTOR_PORT, 2) => self.select(value as u16),
            // The address halves arrive big-endian.
            (DMA_PORT, 4) => self.s.dma_addr = u64::from(value.swap_bytes()) << 32,
            (p, 4) if p == DMA_PORT + 4 => {
                let addr = self.s.dma_addr | u64::from(value.swap_bytes());
                self.s.dma_addr = 0;
                self.s.dma_pending = Some(addr);
            }
            _ => tracing::debug!(port = format_args!("{port:#x}"), size, value, "fw_cfg: write ignored"),
        }
    }

    fn memory_transfer_pending(&self) -> bool {
        self.s.dma_pending.is_some()
    }

    fn run_memory_transfer(&mut self, memory: &mut Memory, _cx: &mut DeviceContext) {
        if let Some(addr) = self.s.dma_pending.take() {
            self.dma(addr, memory);
        }
    }

    fn reset(&mut self) {
        self.s = State::default();
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        self.s = snapshot.decode(NAME, VERSION)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MachineEvent;

    fn platform() -> Platform {
        Platform { ram_size: 64 << 20, cpus: 2, ide: vec![(0, 0, false)], floppies: vec![], boot_order: "c".into(), fw_cfg_files: vec![] }
    }

    struct Bench {
        dev: FwCfg,
        mem: Memory,
        irqs: Vec<(u8, bool)>,
        events: Vec<MachineEvent>,
        deadline: Option<u64>,
    }

    impl Bench {
        fn new() -> Bench {
            let mem = Memory::new(64 << 20, &vec![0xFF; 64 * 1024]).unwrap();
            Bench { dev: FwCfg::for_platform(&platform(), &FirmwareTables::build(&platform())), mem, irqs: vec![], events: vec![], deadline: None }
        }
        fn out(&mut self, port: u16, size: u8, v: u32) {
            let mut cx = DeviceContext::new(0, &mut self.irqs, &mut self.events, &mut self.deadline);
            self.dev.io_write(port, size, v, &mut cx);
            if self.dev.memory_transfer_pending() {
                self.dev.run_memory_transfer(&mut self.mem, &mut cx);
            }
        }
        fn inb(&mut self, port: u16) -> u8 {
            let mut cx = DeviceContext::new(0, &mut self.irqs, &mut self.events, &mut self.deadline);
            self.dev.io_read(port, 1, &mut cx) as u8
        }
        fn read_item(&mut self, sel: u16, n: usize) -> Vec<u8> {
            self.out(SELECTOR_PORT, 2, u32::from(sel));
            (0..n).map(|_| self.inb(DATA_PORT)).collect()
        }
        /// A DMA request at `desc` for `len` bytes to `to`; returns the control word after.
        fn dma(&mut self, desc: u64, control: u32, len: u32, to: u64) -> u32 {
            let mut d = control.to_be_bytes().to_vec();
            d.extend_from_slice(&len.to_be_bytes());
            d.extend_from_slice(&to.to_be_bytes());
            self.mem.write(desc, &d);
            self.out(DMA_PORT, 4, ((desc >> 32) as u32).swap_bytes());
            self.out(DMA_PORT + 4, 4, (desc as u32).swap_bytes());
            let mut c = [0u8; 4];
            self.mem.read(desc, &mut c);
            u32::from_be_bytes(c)
        }
    }

    #[test]
    fn signature_id_and_past_the_end() {
        let mut b = Bench::new();
        assert_eq!(b.read_item(SIGNATURE, 6), b"QEMU\0\0");
        assert_eq!(b.read_item(ID, 4), [3, 0, 0, 0]);
        assert_eq!(b.read_item(0x1234, 2), [0, 0], "unknown items read as zero");
        let sig: Vec<u8> = (0..8).map(|k| b.inb(DMA_PORT + k)).collect();
        assert_eq!(sig, DMA_SIGNATURE);
    }

    #[test]
    fn directory_lists_every_file() {
        let mut b = Bench::new();
        let count = u32::from_be_bytes(b.read_item(FILE_DIR, 4).try_into().unwrap());
        let dir = b.read_item(FILE_DIR, 4 + 64 * count as usize);
        let names: Vec<String> = (0..count as usize)
            .map(|k| {
                let e = &dir[4 + 64 * k..4 + 64 * (k + 1)];
                let name = &e[8..];
                let end = name.iter().position(|&c| c == 0).unwrap();
                let size = u32::from_be_bytes(e[0..4].try_into().unwrap()) as usize;
                let sel = u16::from_be_bytes([e[4], e[5]]);
                let n = String::from_utf8(name[..end].to_vec()).unwrap();
                assert_eq!(b.dev.item(sel).unwrap().len(), size, "{n}");
                n
            })
            .collect();
        for want in ["etc/e820", "bootorder", "etc/boot-fail-wait", "etc/acpi/tables", "etc/acpi/rsdp", "etc/table-loader", "etc/smbios/smbios-tables", "etc/smbios/smbios-anchor"] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
    }

    #[test]
    fn user_files_join_the_directory() {
        let p = Platform { fw_cfg_files: vec![("opt/ferrite/headless".into(), b"1".to_vec())], ..platform() };
        let dev = FwCfg::for_platform(&p, &FirmwareTables::build(&p));
        assert_eq!(dev.file("opt/ferrite/headless"), Some(&b"1"[..]));
        assert!(dev.file("etc/e820").is_some(), "the platform's own files stay");
        assert!(FwCfg::for_platform(&platform(), &FirmwareTables::build(&platform())).file("opt/ferrite/headless").is_none());
    }

    #[test]
    fn dma_reads_selects_skips_and_reports_errors() {
        let mut b = Bench::new();
        let e820 = b.dev.file("etc/e820").unwrap().to_vec();
        let sel = b.dev.files.iter().find(|f| f.0 == "etc/e820").unwrap().1;
        let c = b.dma(0x1000, u32::from(sel) << 16 | DMA_SELECT | DMA_SKIP, 4, 0);
        assert_eq!(c, 0);
        let c = b.dma(0x1000, DMA_READ, 40, 0x2000);
        assert_eq!(c, 0);
        let mut got = vec![0u8; 40];
        b.mem.read(0x2000, &mut got);
        assert_eq!(&got[..16], &e820[4..20], "skipped 4 bytes, then read");
        assert_eq!(&got[16..], &[0; 24], "past the end reads zeros");
        // Into the PCI hole: error, nothing else happens.
        assert_eq!(b.dma(0x1000, DMA_READ | DMA_SELECT | u32::from(SIGNATURE) << 16, 4, 0xE000_0000), DMA_ERROR);
        // Writes to read-only items fail.
        assert_eq!(b.dma(0x1000, DMA_WRITE, 4, 0x2000), DMA_ERROR);
        // A descriptor outside memory is dropped (there is nowhere to report to).
        b.out(DMA_PORT + 4, 4, 0xF000_0000u32.swap_bytes());
        assert!(!b.dev.memory_transfer_pending());
        // No operation: nothing moves, status clear.
        assert_eq!(b.dma(0x1000, 0, 4, 0x2000), 0);
    }

    #[test]
    fn snapshot_keeps_the_read_position() {
        let mut b = Bench::new();
        b.read_item(SIGNATURE, 2);
        let snap = b.dev.save();
        let mut other = FwCfg::for_platform(&platform(), &FirmwareTables::build(&platform()));
        other.restore(&snap).unwrap();
        let mut cx = DeviceContext::new(0, &mut b.irqs, &mut b.events, &mut b.deadline);
        assert_eq!(other.io_read(DATA_PORT, 1, &mut cx), u32::from(b'M'));
    }
}
