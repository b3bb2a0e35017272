//! Direct kernel boot: Ferrite loads the kernel itself and starts the processor in it, without
//! running any BIOS code first, as QEMU's `-kernel` and GRUB do. The machine is left as a PC
//! BIOS leaves it after POST ([`super::post`], with [`super::stub_rom`] mapped where the BIOS
//! would be) so kernels find what they expect of a PC. Two kinds of kernel:
//!
//! - Linux bzImages, through the x86 boot protocol (Linux `Documentation/arch/x86/boot.rst`):
//!   the 64-bit entry with identity-mapped page tables when the kernel has one, the 32-bit
//!   entry otherwise ([`linux`]);
//! - multiboot kernels, version 1 and 2, as ELF (32- or 64-bit) or with load addresses in the
//!   header ([`multiboot`], [`elf`]), with modules and the command line starting with the
//!   kernel's file name, as GRUB and QEMU pass it.
//!
//! [`DirectBoot::new`] checks everything and decides every address before the machine runs, so
//! a bad file is an error that names it; [`DirectBoot::load`] writes memory and returns the
//! processor state to start with ([`EntryState`]; `accel::boot` turns it into a CPU state).

pub mod elf;
pub mod linux;
pub mod multiboot;

use super::{post, stub_rom, Platform, E820_RAM};
use crate::board::Machine;

/// One file given for boot: its name as the user gave it (for messages and for the multiboot
/// command line) and its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFile {
    pub name: String,
    pub data: Vec<u8>,
}

/// A multiboot module, or a part of a Linux initrd: the file and the string a multiboot kernel
/// is given with it (the file name and whatever followed it, as GRUB passes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootModule {
    pub file: BootFile,
    pub string: String,
}

/// What the user asked to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFiles {
    pub kernel: BootFile,
    /// `--initrd`: the initial RAM disk of a Linux kernel (several are concatenated), or the
    /// modules of a multiboot kernel.
    pub modules: Vec<BootModule>,
    /// `--append`: the kernel command line.
    pub cmdline: String,
}

/// Why a kernel cannot be booted; names the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {problem}")]
pub struct BootError {
    pub file: String,
    pub problem: Problem,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Problem {
    #[error("not a kernel Ferrite can boot directly (neither a Linux bzImage nor a multiboot kernel){0}")]
    NotAKernel(String),
    #[error("the file is truncated: {0}")]
    Truncated(String),
    #[error("{0}")]
    BadHeader(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    DoesNotFit(String),
}

impl BootError {
    fn new(file: &str, problem: Problem) -> BootError {
        BootError { file: file.to_string(), problem }
    }
}

/// The processor mode a kernel is entered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryMode {
    /// 32-bit protected mode, flat 4 GiB segments, paging off.
    Protected32,
    /// 64-bit long mode with 4-level paging rooted at `cr3`.
    Long64 { cr3: u64 },
}

/// The processor state a directly booted kernel starts in: the mode, the GDT that holds its
/// flat code and data descriptors, the selectors loaded from it, and the registers that carry
/// the boot information. Interrupts are disabled; everything else is as after reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    pub mode: EntryMode,
    pub rip: u64,
    pub rax: u64,
    pub rbx: u64,
    pub rsi: u64,
    pub rsp: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    pub code_selector: u16,
    pub data_selector: u16,
}

/// Below this address live the interrupt vector table, the BIOS data area and the loader's
/// own structures (GDT, stack, Linux zero page and page tables); kernels may not load here.
pub const LOADER_AREA_END: u64 = 0x1_0000;
/// The GDT the kernel is entered with: null, null, code (0x10), data (0x18), as Linux's
/// boot protocol names them (__BOOT_CS, __BOOT_DS).
pub const GDT_ADDR: u64 = 0x1000;
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
/// The stack pointer a kernel starts with (usable memory below it down to the GDT page).
pub const BOOT_STACK_TOP: u64 = 0x7000;

/// The GDT for `mode`: 4 GiB flat code (64-bit in long mode) and data.
fn gdt(mode: EntryMode) -> [u8; 32] {
    let code: u64 = match mode {
        EntryMode::Protected32 => 0x00CF_9B00_0000_FFFF,
        EntryMode::Long64 { .. } => 0x00AF_9B00_0000_FFFF,
    };
    let data: u64 = 0x00CF_9300_0000_FFFF;
    let mut g = [0u8; 32];
    g[16..24].copy_from_slice(&code.to_le_bytes());
    g[24..32].copy_from_slice(&data.to_le_bytes());
    g
}

/// Writes the GDT and returns the entry state with its fields filled in.
fn enter(m: &mut Machine, mode: EntryMode, rip: u64) -> EntryState {
    m.memory_mut().write_ram(GDT_ADDR, &gdt(mode));
    EntryState {
        mode,
        rip,
        rax: 0,
        rbx: 0,
        rsi: 0,
        rsp: BOOT_STACK_TOP,
        gdt_base: GDT_ADDR,
        gdt_limit: 31,
        code_selector: BOOT_CS,
        data_selector: BOOT_DS,
    }
}

/// The RAM a loader may use, as free ranges [start, end) below `limit`, from the e820 map
/// minus the loader area; places and reserves pieces in it.
#[derive(Clone, Debug)]
struct RamMap {
    free: Vec<(u64, u64)>,
    /// Described areas for messages: (start, end, what).
    areas: Vec<(u64, u64, &'static str)>,
    ram_top: u64,
}

impl RamMap {
    fn new(p: &Platform, limit: u64) -> RamMap {
        let e820 = post::bios_e820(p, stub_rom::SIZE as u64);
        let free = e820
            .iter()
            .filter(|e| e.2 == E820_RAM)
            .map(|&(a, l, _)| (a.max(LOADER_AREA_END), (a + l).min(limit)))
            .filter(|(a, b)| a < b)
            .collect();
        let mut areas = vec![
            (0, LOADER_AREA_END, "the interrupt vectors, BIOS data area and boot loader structures (below 0x10000)"),
            (post::EBDA_START, 0xA_0000, "the extended BIOS data area"),
            (0xA_0000, 0x10_0000, "the VGA and BIOS area (0xA0000-0xFFFFF)"),
        ];
        if let Some(fw) = post::firmware_area(p) {
            areas.push((fw, fw + post::FIRMWARE_AREA_SIZE, "the ACPI and SMBIOS tables at the top of RAM"));
        }
        let ram_top = p.low_ram().min(limit);
        RamMap { free, areas, ram_top }
    }

    /// Why [start, end) is not free RAM.
    fn conflict(&self, start: u64, end: u64) -> String {
        let range = format!("{start:#x}-{:#x}", end.saturating_sub(1));
        if end > self.ram_top {
            return format!("{range} lies beyond RAM (usable RAM ends at {:#x}; give more with -m)", self.ram_top);
        }
        for &(a, b, what) in &self.areas {
            if start < b && a < end {
                return format!("{range} overlaps {what}");
            }
        }
        format!("{range} overlaps memory already used for the kernel or its modules")
    }

    /// Takes [start, end) out of the free ranges; it must lie within one.
    fn reserve(&mut self, start: u64, end: u64) -> Result<(), String> {
        if end <= start {
            return Ok(());
        }
        let i = self.free.iter().position(|&(a, b)| a <= start && end <= b).ok_or_else(|| self.conflict(start, end))?;
        let (a, b) = self.free.remove(i);
        if end < b {
            self.free.insert(i, (end, b));
        }
        if a < start {
            self.free.insert(i, (a, start));
        }
        Ok(())
    }

    /// The lowest `align`-aligned free place for `size` bytes at or above `min`; reserved.
    fn place_low(&mut self, size: u64, align: u64, min: u64) -> Option<u64> {
        let at = self.free.iter().find_map(|&(a, b)| {
            let at = a.max(min).next_multiple_of(align);
            (at.checked_add(size)? <= b).then_some(at)
        })?;
        self.reserve(at, at + size).ok()?;
        Some(at)
    }

    /// The highest `align`-aligned free place for `size` bytes ending at or below `max`, at or
    /// above `min`; reserved.
    fn place_high(&mut self, size: u64, align: u64, min: u64, max: u64) -> Option<u64> {
        let at = self.free.iter().rev().find_map(|&(a, b)| {
            let top = b.min(max).checked_sub(size)?;
            let at = top / align * align;
            (at >= a.max(min)).then_some(at)
        })?;
        self.reserve(at, at + size).ok()?;
        Some(at)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// A piece of memory to write at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Piece {
    at: u64,
    data: Vec<u8>,
    /// Zeroes after `data` (a kernel's bss).
    zeroes: u64,
}

/// Writes `data` at `at` and `zeroes` zero bytes after it, straight into RAM.
fn write_at(m: &mut Machine, at: u64, data: &[u8], zeroes: u64) {
    let mem = m.memory_mut();
    mem.write_ram(at, data);
    let zero = [0u8; 4096];
    let mut next = at + data.len() as u64;
    let mut left = zeroes;
    while left > 0 {
        let n = left.min(zero.len() as u64);
        mem.write_ram(next, &zero[..n as usize]);
        next += n;
        left -= n;
    }
}

impl Piece {
    fn write(&self, m: &mut Machine) {
        write_at(m, self.at, &self.data, self.zeroes);
    }
}

#[derive(Clone, Debug)]
enum Kernel {
    Linux(linux::LinuxBoot),
    Multiboot(multiboot::MultibootBoot),
}

/// A kernel checked and laid out for direct boot, ready to be loaded (again after every reset).
#[derive(Clone, Debug)]
pub struct DirectBoot {
    kernel: Kernel,
}

impl DirectBoot {
    /// Recognises the kernel, checks it and its modules against the machine's memory and
    /// decides where everything goes. Nothing is written yet.
    pub fn new(files: BootFiles, p: &Platform) -> Result<DirectBoot, BootError> {
        let name = files.kernel.name.clone();
        let kernel = if linux::is_linux(&files.kernel.data) {
            Kernel::Linux(linux::LinuxBoot::new(files, p)?)
        } else if let Some(header) = multiboot::find_header(&files.kernel.data).map_err(|p| BootError::new(&name, p))? {
            Kernel::Multiboot(multiboot::MultibootBoot::new(files, header, p)?)
        } else {
            let hint = if files.kernel.data.starts_with(b"\x7FELF") {
                ": an ELF file without a multiboot header"
            } else if files.kernel.data.len() >= 512 && files.kernel.data[510..512] == [0x55, 0xAA] {
                ": a boot sector without the Linux setup header"
            } else {
                ""
            };
            return Err(BootError::new(&name, Problem::NotAKernel(hint.into())));
        };
        Ok(DirectBoot { kernel })
    }

    /// What kind of kernel this is, for messages: "Linux (64-bit entry)", "multiboot".
    pub fn describe(&self) -> String {
        match &self.kernel {
            Kernel::Linux(l) => l.describe(),
            Kernel::Multiboot(m) => m.describe(),
        }
    }

    /// Leaves the machine as a BIOS leaves it after POST, loads the kernel and its modules,
    /// and returns the state to start the processor in.
    pub fn load(&self, m: &mut Machine) -> EntryState {
        let post = post::leave_post_state(m, &stub_rom::ENTRY_POINTS, stub_rom::TABLES_AREA);
        match &self.kernel {
            Kernel::Linux(l) => l.load(m, &post),
            Kernel::Multiboot(k) => k.load(m, &post),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(ram: u64) -> Platform {
        Platform { ram_size: ram, cpus: 1, ide: vec![], floppies: vec![], boot_order: "c".into(), fw_cfg_files: vec![] }
    }

    #[test]
    fn ram_map_places_and_explains() {
        let mut r = RamMap::new(&platform(64 << 20), 1 << 32);
        assert_eq!(r.free, vec![(0x1_0000, 0x9_FC00), (0x10_0000, (64 << 20) - post::FIRMWARE_AREA_SIZE)]);
        r.reserve(0x10_0000, 0x20_0000).unwrap();
        assert!(r.reserve(0x1F_0000, 0x30_0000).unwrap_err().contains("already used"));
        assert!(r.reserve(0x9_0000, 0xB_0000).unwrap_err().contains("extended BIOS data area"));
        assert!(r.reserve(0xC_0000, 0xD_0000).unwrap_err().contains("VGA and BIOS"));
        assert!(r.reserve(0x100, 0x200).unwrap_err().contains("below 0x10000"));
        assert!(r.reserve(0x300_0000, 0x500_0000).unwrap_err().contains("beyond RAM"));
        assert_eq!(r.place_low(0x100, 0x1000, 0x10_0000), Some(0x20_0000));
        assert_eq!(r.place_low(0x10, 8, 0), Some(0x1_0000));
        let top = (64 << 20) - post::FIRMWARE_AREA_SIZE;
        assert_eq!(r.place_high(0x1800, 0x1000, 0, u64::MAX), Some(top - 0x2000));
        assert_eq!(r.place_high(128 << 20, 0x1000, 0, u64::MAX), None);
    }

    #[test]
    fn gdt_descriptors() {
        let g = gdt(EntryMode::Long64 { cr3: 0 });
        assert_eq!(u64::from_le_bytes(g[16..24].try_into().unwrap()) >> 53 & 1, 1, "L bit");
        let g = gdt(EntryMode::Protected32);
        assert_eq!(u64::from_le_bytes(g[16..24].try_into().unwrap()) >> 54 & 1, 1, "D bit");
        assert_eq!(&g[..16], &[0; 16]);
    }

    #[test]
    fn unknown_files_are_named() {
        let files = |data: Vec<u8>| BootFiles {
            kernel: BootFile { name: "x.bin".into(), data },
            modules: vec![],
            cmdline: String::new(),
        };
        let e = DirectBoot::new(files(vec![0; 4096]), &platform(64 << 20)).unwrap_err();
        assert_eq!(e.file, "x.bin");
        assert!(matches!(e.problem, Problem::NotAKernel(_)));
        let mut elf = vec![0; 4096];
        elf[..4].copy_from_slice(b"\x7FELF");
        let e = DirectBoot::new(files(elf), &platform(64 << 20)).unwrap_err();
        assert!(e.to_string().contains("ELF file without a multiboot header"), "{e}");
    }
}
