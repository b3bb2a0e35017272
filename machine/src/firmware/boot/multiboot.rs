//! Multiboot kernels, version 1 (Multiboot Specification 0.6.96) and version 2 (Multiboot2
//! Specification 2.0), as GRUB and QEMU load them: the kernel from its ELF program headers or
//! from the load addresses in its header, modules page aligned after it, and the boot
//! information (memory sizes, the e820 map, the command line starting with the kernel's file
//! name, the modules with their strings, the boot loader's name, the text console; for
//! version 2 also the ACPI RSDP) in low memory. The kernel starts in flat 32-bit protected
//! mode with EAX holding the boot loader magic and EBX the information's address.
//!
//! A file with both headers boots as version 1, as QEMU does.

use super::elf;
use super::post::{PostState, EBDA_START};
use super::{enter, mib, write_at, BootError, BootFiles, EntryMode, EntryState, Piece, Problem, RamMap, LOADER_AREA_END};
use crate::board::Machine;
use crate::firmware::{post, stub_rom, Platform, E820_RAM};
use crate::memory::FOUR_GIB;

pub const MB1_HEADER_MAGIC: u32 = 0x1BAD_B002;
pub const MB1_BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
pub const MB2_HEADER_MAGIC: u32 = 0xE852_50D6;
pub const MB2_BOOTLOADER_MAGIC: u32 = 0x36D7_6289;
/// How far into the file each version's header may start.
const MB1_SEARCH: usize = 8192;
const MB2_SEARCH: usize = 32768;
const LOADER_NAME: &str = "Ferrite";

/// Version 1 header flags Ferrite honours: page-aligned modules, memory information, video
/// information (the text console), and the load addresses in the header.
const MB1_PAGE_ALIGN: u32 = 1 << 0;
const MB1_MEMORY_INFO: u32 = 1 << 1;
const MB1_VIDEO: u32 = 1 << 2;
const MB1_ADDRESSES: u32 = 1 << 16;

/// Version 1 information flags.
const INFO_MEMORY: u32 = 1 << 0;
const INFO_CMDLINE: u32 = 1 << 2;
const INFO_MODS: u32 = 1 << 3;
const INFO_MMAP: u32 = 1 << 6;
const INFO_LOADER_NAME: u32 = 1 << 9;
const INFO_FRAMEBUFFER: u32 = 1 << 12;
const MB1_INFO_SIZE: usize = 116;

/// Version 2 information tag types Ferrite gives.
const TAG_END: u32 = 0;
const TAG_CMDLINE: u32 = 1;
const TAG_LOADER_NAME: u32 = 2;
const TAG_MODULE: u32 = 3;
const TAG_BASIC_MEMINFO: u32 = 4;
const TAG_MMAP: u32 = 6;
const TAG_FRAMEBUFFER: u32 = 8;
const TAG_ACPI_OLD: u32 = 14;
const TAG_ACPI_NEW: u32 = 15;
const TAG_LOAD_BASE: u32 = 21;
const MB2_GIVES: [u32; 9] =
    [TAG_CMDLINE, TAG_LOADER_NAME, TAG_MODULE, TAG_BASIC_MEMINFO, TAG_MMAP, TAG_FRAMEBUFFER, TAG_ACPI_OLD, TAG_ACPI_NEW, TAG_LOAD_BASE];

/// The EGA text console both versions describe when asked for video information.
const TEXT_BUFFER: u64 = 0xB_8000;

/// A multiboot header found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Header {
    V1 { offset: usize, flags: u32 },
    V2 { offset: usize, length: usize },
}

fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    d.get(o..o.checked_add(4)?).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// Finds a multiboot header (version 1 preferred); a magic number with a bad checksum and no
/// good header anywhere is an error rather than "not a kernel".
pub fn find_header(d: &[u8]) -> Result<Option<Header>, Problem> {
    let mut bad = None;
    for offset in (0..MB1_SEARCH.min(d.len().saturating_sub(11))).step_by(4) {
        if u32_at(d, offset) == Some(MB1_HEADER_MAGIC) {
            let flags = u32_at(d, offset + 4).expect("in range");
            let sum = MB1_HEADER_MAGIC.wrapping_add(flags).wrapping_add(u32_at(d, offset + 8).expect("in range"));
            if sum == 0 {
                return Ok(Some(Header::V1 { offset, flags }));
            }
            bad.get_or_insert(format!("multiboot header at offset {offset:#x}"));
        }
    }
    for offset in (0..MB2_SEARCH.min(d.len().saturating_sub(15))).step_by(8) {
        if u32_at(d, offset) == Some(MB2_HEADER_MAGIC) {
            let arch = u32_at(d, offset + 4).expect("in range");
            let length = u32_at(d, offset + 8).expect("in range");
            let sum = MB2_HEADER_MAGIC.wrapping_add(arch).wrapping_add(length).wrapping_add(u32_at(d, offset + 12).expect("in range"));
            if sum == 0 {
                return Ok(Some(Header::V2 { offset, length: length as usize }));
            }
            bad.get_or_insert(format!("multiboot2 header at offset {offset:#x}"));
        }
    }
    match bad {
        Some(what) => Err(Problem::BadHeader(format!("the {what} has a bad checksum"))),
        None => Ok(None),
    }
}

/// The load addresses a header gives instead of ELF program headers (version 1's "a.out
/// kludge", version 2's address tag).
struct Addresses {
    header_addr: u32,
    load_addr: u32,
    load_end_addr: u32,
    bss_end_addr: u32,
}

/// What a version 2 header asks for.
#[derive(Default)]
struct Mb2Tags {
    addresses: Option<Addresses>,
    entry: Option<u32>,
    framebuffer: bool,
    relocatable: bool,
}

fn parse_mb2_tags(d: &[u8], offset: usize, length: usize) -> Result<Mb2Tags, Problem> {
    let end = offset.checked_add(length).filter(|&e| e <= d.len() && length >= 16).ok_or_else(|| {
        Problem::Truncated(format!("the multiboot2 header at {offset:#x} says it is {length} bytes long"))
    })?;
    let arch = u32_at(d, offset + 4).expect("in range");
    if arch != 0 {
        return Err(Problem::Unsupported(format!("multiboot2 architecture {arch}; only 0 (i386) boots on a PC")));
    }
    let mut t = Mb2Tags::default();
    let mut at = offset + 16;
    loop {
        if at + 8 > end {
            return Err(Problem::BadHeader("the multiboot2 header has no end tag".into()));
        }
        let kind = u16::from_le_bytes([d[at], d[at + 1]]);
        let optional = d[at + 2] & 1 != 0;
        let size = u32_at(d, at + 4).expect("in range") as usize;
        if size < 8 || at + size > end {
            return Err(Problem::BadHeader(format!("multiboot2 header tag {kind} at {at:#x} has a bad size ({size})")));
        }
        let field = |i: usize| u32_at(d, at + 8 + 4 * i).filter(|_| 8 + 4 * (i + 1) <= size);
        let need = |i: usize| {
            field(i).ok_or_else(|| Problem::BadHeader(format!("multiboot2 header tag {kind} is too short ({size} bytes)")))
        };
        match kind {
            0 => break,
            1 => {
                let missing: Vec<String> = (0..(size - 8) / 4)
                    .filter_map(field)
                    .filter(|k| !MB2_GIVES.contains(k))
                    .map(|k| k.to_string())
                    .collect();
                if !optional && !missing.is_empty() {
                    return Err(Problem::Unsupported(format!(
                        "the multiboot2 header requires information Ferrite does not give (tag types {})",
                        missing.join(", ")
                    )));
                }
            }
            2 => {
                t.addresses =
                    Some(Addresses { header_addr: need(0)?, load_addr: need(1)?, load_end_addr: need(2)?, bss_end_addr: need(3)? })
            }
            3 => t.entry = Some(need(0)?),
            4 | 6 => {}
            5 => t.framebuffer = true,
            10 => t.relocatable = true,
            _ if optional => {}
            7..=9 => return Err(Problem::Unsupported(format!("the multiboot2 header requires EFI (tag {kind}); Ferrite boots as a BIOS PC"))),
            _ => return Err(Problem::Unsupported(format!("the multiboot2 header requires tag {kind}, which Ferrite does not know"))),
        }
        at += size.next_multiple_of(8);
    }
    Ok(t)
}

/// The kernel's pieces and entry point from header addresses.
fn load_by_addresses(d: &[u8], header_offset: usize, a: &Addresses) -> Result<(Vec<Piece>, u64), Problem> {
    let bad = |s: String| Problem::BadHeader(format!("multiboot header: {s}"));
    // Version 2's load_addr of -1: the file is loaded from its start.
    let load_addr = if a.load_addr == u32::MAX { a.header_addr.wrapping_sub(header_offset as u32) } else { a.load_addr };
    if a.header_addr < load_addr {
        return Err(bad(format!("header_addr {:#x} is below load_addr {load_addr:#x}", a.header_addr)));
    }
    let skip = u64::from(a.header_addr - load_addr);
    if skip > header_offset as u64 {
        return Err(bad(format!(
            "load_addr {load_addr:#x} would start {skip:#x} bytes before the header, which is only {header_offset:#x} bytes into the file"
        )));
    }
    let file_start = header_offset as u64 - skip;
    let load_len = match a.load_end_addr {
        0 => d.len() as u64 - file_start,
        end if end < load_addr => return Err(bad(format!("load_end_addr {end:#x} is below load_addr {load_addr:#x}"))),
        end => u64::from(end - load_addr),
    };
    if file_start + load_len > d.len() as u64 {
        return Err(Problem::Truncated(format!(
            "the header loads {load_len:#x} bytes from file offset {file_start:#x}, past the end of the file ({:#x} bytes)",
            d.len()
        )));
    }
    let load_end = u64::from(load_addr) + load_len;
    let bss = match a.bss_end_addr {
        0 => 0,
        end if u64::from(end) < load_end => {
            return Err(bad(format!("bss_end_addr {end:#x} is below the end of the loaded image ({load_end:#x})")))
        }
        end => u64::from(end) - load_end,
    };
    let data = d[file_start as usize..(file_start + load_len) as usize].to_vec();
    Ok((vec![Piece { at: u64::from(load_addr), data, zeroes: bss }], u64::from(load_addr)))
}

fn load_elf(d: &[u8]) -> Result<(Vec<Piece>, u64), Problem> {
    let e = elf::parse(d).map_err(|why| {
        if why.contains("past the end") {
            Problem::Truncated(why)
        } else {
            Problem::BadHeader(why)
        }
    })?;
    let pieces = e
        .segments
        .iter()
        .map(|s| Piece {
            at: s.paddr,
            data: d[s.offset as usize..(s.offset + s.filesz) as usize].to_vec(),
            zeroes: s.memsz - s.filesz,
        })
        .collect();
    Ok((pieces, e.physical_entry()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// A multiboot kernel laid out for loading.
#[derive(Clone, Debug)]
pub struct MultibootBoot {
    version: Version,
    elf: bool,
    kernel: Vec<Piece>,
    entry: u64,
    /// Modules: where each goes, its data and its string.
    modules: Vec<(u64, Vec<u8>, String)>,
    cmdline: String,
    framebuffer: bool,
    load_base: Option<u64>,
    /// Where the boot information goes.
    info_at: u64,
}

impl MultibootBoot {
    pub fn new(files: BootFiles, header: Header, p: &Platform) -> Result<MultibootBoot, BootError> {
        let BootFiles { kernel, modules, cmdline } = files;
        let name = kernel.name.as_str();
        let err = |problem| BootError::new(name, problem);
        let d = &kernel.data;
        let (version, pieces, entry, framebuffer, relocatable, elf) = match header {
            Header::V1 { offset, flags } => {
                let unknown = flags & 0xFFFF & !(MB1_PAGE_ALIGN | MB1_MEMORY_INFO | MB1_VIDEO);
                if unknown != 0 {
                    return Err(err(Problem::Unsupported(format!(
                        "the multiboot header requires features Ferrite does not provide (flags {unknown:#x})"
                    ))));
                }
                if flags & MB1_ADDRESSES != 0 {
                    let f = |i: usize| {
                        u32_at(d, offset + 12 + 4 * i)
                            .ok_or_else(|| err(Problem::Truncated("the file ends inside the multiboot header".into())))
                    };
                    let a = Addresses { header_addr: f(0)?, load_addr: f(1)?, load_end_addr: f(2)?, bss_end_addr: f(3)? };
                    let entry = f(4)?;
                    let (pieces, _) = load_by_addresses(d, offset, &a).map_err(err)?;
                    (Version::V1, pieces, u64::from(entry), flags & MB1_VIDEO != 0, false, false)
                } else {
                    let (pieces, entry) = load_elf(d).map_err(err)?;
                    (Version::V1, pieces, entry, flags & MB1_VIDEO != 0, false, true)
                }
            }
            Header::V2 { offset, length } => {
                let tags = parse_mb2_tags(d, offset, length).map_err(err)?;
                let (pieces, elf_entry, elf) = match &tags.addresses {
                    Some(a) => {
                        let (pieces, start) = load_by_addresses(d, offset, a).map_err(err)?;
                        (pieces, start, false)
                    }
                    None => {
                        let (pieces, entry) = load_elf(d).map_err(err)?;
                        (pieces, entry, true)
                    }
                };
                let entry = match (tags.entry, elf) {
                    (Some(e), _) => u64::from(e),
                    (None, true) => elf_entry,
                    (None, false) => {
                        return Err(err(Problem::BadHeader(
                            "the multiboot2 header has an address tag but no entry address tag".into(),
                        )))
                    }
                };
                (Version::V2, pieces, entry, tags.framebuffer, tags.relocatable, elf)
            }
        };

        let mut ram = RamMap::new(p, FOUR_GIB);
        for piece in &pieces {
            let end = piece.at.saturating_add(piece.data.len() as u64 + piece.zeroes);
            ram.reserve(piece.at, end).map_err(|why| err(Problem::BadHeader(format!("the kernel cannot be loaded: {why}"))))?;
        }
        let start = pieces.iter().map(|p| p.at).min().expect("at least one piece");
        let end = pieces.iter().map(|p| p.at + p.data.len() as u64 + p.zeroes).max().expect("at least one piece");
        if !pieces.iter().any(|p| (p.at..p.at + p.data.len() as u64 + p.zeroes).contains(&entry)) {
            return Err(err(Problem::BadHeader(format!(
                "the entry point {entry:#x} is outside the loaded kernel ({start:#x}-{:#x})",
                end - 1
            ))));
        }

        let mut placed = Vec::new();
        for m in modules {
            let size = m.file.data.len() as u64;
            let at = ram.place_low(size.max(1), 4096, end).ok_or_else(|| {
                BootError::new(
                    &m.file.name,
                    Problem::DoesNotFit(format!(
                        "the module is {}; it does not fit in the RAM left after the kernel and the modules before it",
                        mib(size)
                    )),
                )
            })?;
            placed.push((at, m.file.data, m.string));
        }
        // GRUB and QEMU pass the kernel's file name first.
        let cmdline = if cmdline.is_empty() { kernel.name.clone() } else { format!("{} {cmdline}", kernel.name) };
        let mut boot = MultibootBoot {
            version,
            elf,
            kernel: pieces,
            entry,
            modules: placed,
            cmdline,
            framebuffer,
            load_base: relocatable.then_some(start),
            info_at: 0,
        };
        let e820 = post::bios_e820(p, stub_rom::SIZE as u64);
        let size = boot.info(0, &e820, Some(&[0; 36])).len() as u64;
        boot.info_at = ram
            .place_low(size, 8, LOADER_AREA_END)
            .ok_or_else(|| err(Problem::DoesNotFit("no room left in RAM for the multiboot information".into())))?;
        Ok(boot)
    }

    pub fn describe(&self) -> String {
        let format = if self.elf { "ELF" } else { "load addresses from its header" };
        let v = match self.version {
            Version::V1 => "multiboot",
            Version::V2 => "multiboot2",
        };
        format!("{v} ({format}), entry {:#x}, {} module(s)", self.entry, self.modules.len())
    }

    /// Memory below 1 MiB and contiguous memory from 1 MiB, in KiB, as both versions give them.
    fn mem_sizes(e820: &[(u64, u64, u32)]) -> (u32, u32) {
        let upper = e820.iter().find(|e| e.0 == 0x10_0000 && e.2 == E820_RAM).map_or(0, |e| e.1 >> 10);
        ((EBDA_START >> 10) as u32, upper.min(u64::from(u32::MAX)) as u32)
    }

    /// The boot information, placed at `base`.
    fn info(&self, base: u64, e820: &[(u64, u64, u32)], rsdp: Option<&[u8]>) -> Vec<u8> {
        match self.version {
            Version::V1 => self.info_v1(base, e820),
            Version::V2 => self.info_v2(e820, rsdp),
        }
    }

    fn info_v1(&self, base: u64, e820: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut out = vec![0u8; MB1_INFO_SIZE];
        let put = |out: &mut Vec<u8>, at: usize, v: u32| out[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let addr = |out: &Vec<u8>| (base + out.len() as u64) as u32;
        let (lower, upper) = Self::mem_sizes(e820);
        let mut flags = INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME;
        put(&mut out, 4, lower);
        put(&mut out, 8, upper);
        let mmap_at = addr(&out);
        for &(a, l, kind) in e820 {
            out.extend_from_slice(&20u32.to_le_bytes());
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&l.to_le_bytes());
            out.extend_from_slice(&kind.to_le_bytes());
        }
        put(&mut out, 44, 24 * e820.len() as u32);
        put(&mut out, 48, mmap_at);
        let mods_at = addr(&out);
        out.resize(out.len() + 16 * self.modules.len(), 0);
        put(&mut out, 20, self.modules.len() as u32);
        put(&mut out, 24, mods_at);
        let string = |out: &mut Vec<u8>, s: &str| {
            let at = addr(out);
            out.extend_from_slice(s.as_bytes());
            out.push(0);
            at
        };
        let cmdline = string(&mut out, &self.cmdline);
        put(&mut out, 16, cmdline);
        let name = string(&mut out, LOADER_NAME);
        put(&mut out, 64, name);
        for (i, (at, data, s)) in self.modules.iter().enumerate() {
            let s_at = string(&mut out, s);
            let m = (mods_at as u64 - base) as usize + 16 * i;
            put(&mut out, m, *at as u32);
            put(&mut out, m + 4, (*at + data.len() as u64) as u32);
            put(&mut out, m + 8, s_at);
        }
        if self.framebuffer {
            flags |= INFO_FRAMEBUFFER;
            out[88..96].copy_from_slice(&TEXT_BUFFER.to_le_bytes());
            put(&mut out, 96, 160);
            put(&mut out, 100, 80);
            put(&mut out, 104, 25);
            out[108] = 16;
            out[109] = 2; // EGA text
        }
        put(&mut out, 0, flags);
        out
    }

    fn info_v2(&self, e820: &[(u64, u64, u32)], rsdp: Option<&[u8]>) -> Vec<u8> {
        let mut out = vec![0u8; 8];
        let tag = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
            out.extend_from_slice(body);
            out.resize(out.len().next_multiple_of(8), 0);
        };
        let cstr = |s: &str| {
            let mut v = s.as_bytes().to_vec();
            v.push(0);
            v
        };
        if let Some(base) = self.load_base {
            tag(&mut out, TAG_LOAD_BASE, &(base as u32).to_le_bytes());
        }
        tag(&mut out, TAG_CMDLINE, &cstr(&self.cmdline));
        tag(&mut out, TAG_LOADER_NAME, &cstr(LOADER_NAME));
        for (at, data, s) in &self.modules {
            let mut body = (*at as u32).to_le_bytes().to_vec();
            body.extend_from_slice(&((*at + data.len() as u64) as u32).to_le_bytes());
            body.extend(cstr(s));
            tag(&mut out, TAG_MODULE, &body);
        }
        let (lower, upper) = Self::mem_sizes(e820);
        let mut body = lower.to_le_bytes().to_vec();
        body.extend_from_slice(&upper.to_le_bytes());
        tag(&mut out, TAG_BASIC_MEMINFO, &body);
        let mut body = 24u32.to_le_bytes().to_vec();
        body.extend_from_slice(&0u32.to_le_bytes());
        for &(a, l, kind) in e820 {
            body.extend_from_slice(&a.to_le_bytes());
            body.extend_from_slice(&l.to_le_bytes());
            body.extend_from_slice(&kind.to_le_bytes());
            body.extend_from_slice(&0u32.to_le_bytes());
        }
        tag(&mut out, TAG_MMAP, &body);
        if self.framebuffer {
            let mut body = TEXT_BUFFER.to_le_bytes().to_vec();
            for v in [160u32, 80, 25] {
                body.extend_from_slice(&v.to_le_bytes());
            }
            body.extend_from_slice(&[16, 2, 0, 0]);
            tag(&mut out, TAG_FRAMEBUFFER, &body);
        }
        if let Some(rsdp) = rsdp {
            tag(&mut out, TAG_ACPI_OLD, &rsdp[..20]);
            tag(&mut out, TAG_ACPI_NEW, rsdp);
        }
        tag(&mut out, TAG_END, &[]);
        let total = out.len() as u32;
        out[0..4].copy_from_slice(&total.to_le_bytes());
        out
    }

    pub fn load(&self, m: &mut Machine, post: &PostState) -> EntryState {
        for piece in &self.kernel {
            piece.write(m);
        }
        for (at, data, _) in &self.modules {
            write_at(m, *at, data, 0);
        }
        let rsdp = post.rsdp.as_ref().map(|r| r.1.as_slice());
        write_at(m, self.info_at, &self.info(self.info_at, &post.e820, rsdp), 0);
        let magic = match self.version {
            Version::V1 => MB1_BOOTLOADER_MAGIC,
            Version::V2 => MB2_BOOTLOADER_MAGIC,
        };
        EntryState { rax: u64::from(magic), rbx: self.info_at, ..enter(m, EntryMode::Protected32, self.entry) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::elf::tests::elf32;
    use super::super::{BootFile, BootModule};
    use super::*;

    fn platform(ram: u64) -> Platform {
        Platform { ram_size: ram, cpus: 1, ide: vec![], floppies: vec![], boot_order: "c".into(), fw_cfg_files: vec![] }
    }

    /// A version 1 header with load addresses, then `code`: loaded at `load`.
    fn aout(load: u32, code_len: u32, load_end: u32, bss_end: u32, entry: u32) -> Vec<u8> {
        let flags = MB1_ADDRESSES | MB1_MEMORY_INFO;
        let mut d = Vec::new();
        for v in [MB1_HEADER_MAGIC, flags, 0u32.wrapping_sub(MB1_HEADER_MAGIC).wrapping_sub(flags), load, load, load_end, bss_end, entry] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.resize(code_len as usize, 0x90);
        d
    }

    fn files(kernel: Vec<u8>, modules: Vec<(&str, Vec<u8>)>, cmdline: &str) -> BootFiles {
        BootFiles {
            kernel: BootFile { name: "kernel.elf".into(), data: kernel },
            modules: modules
                .into_iter()
                .map(|(s, data)| BootModule {
                    file: BootFile { name: s.split(' ').next().unwrap().into(), data },
                    string: s.into(),
                })
                .collect(),
            cmdline: cmdline.into(),
        }
    }

    fn boot(f: BootFiles, ram: u64) -> Result<MultibootBoot, BootError> {
        let header = find_header(&f.kernel.data).unwrap().unwrap();
        MultibootBoot::new(f, header, &platform(ram))
    }

    #[test]
    fn elf_kernel_with_modules() {
        let mut k = elf32(&[0x90; 64], 0x10_0000, 0x10_0000, 0x2000, 0x10_0010);
        // The header goes into the segment's bytes (within the first 8 KiB of the file).
        let h = [MB1_HEADER_MAGIC, MB1_PAGE_ALIGN, 0u32.wrapping_sub(MB1_HEADER_MAGIC + MB1_PAGE_ALIGN)];
        for (i, v) in h.iter().enumerate() {
            k[0x60 + 4 * i..0x64 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let b = boot(files(k, vec![("mod1 a b", vec![1; 5000]), ("mod2", vec![2; 10])], "x=1"), 64 << 20).unwrap();
        assert_eq!(b.entry, 0x10_0010);
        assert_eq!(b.cmdline, "kernel.elf x=1");
        assert_eq!(b.modules[0].0, 0x10_3000, "page aligned after the bss");
        assert_eq!(b.modules[1].0, 0x10_5000);
        assert_eq!(b.info_at, LOADER_AREA_END);
        let e820 = post::bios_e820(&platform(64 << 20), 0x1_0000);
        let info = b.info(b.info_at, &e820, None);
        let r = |o: usize| u32_at(&info, o).unwrap();
        assert_eq!(r(0), INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME);
        assert_eq!((r(4), r(8)), (639, (64 << 10) - 1024 - 64));
        assert_eq!(r(20), 2);
        let str_at = |a: u32| {
            let o = (u64::from(a) - b.info_at) as usize;
            let end = info[o..].iter().position(|&c| c == 0).unwrap();
            String::from_utf8(info[o..o + end].to_vec()).unwrap()
        };
        assert_eq!(str_at(r(16)), "kernel.elf x=1");
        assert_eq!(str_at(r(64)), "Ferrite");
        let mods = (u64::from(r(24)) - b.info_at) as usize;
        assert_eq!((r(mods), r(mods + 4)), (0x10_3000, 0x10_3000 + 5000));
        assert_eq!(str_at(r(mods + 8)), "mod1 a b");
        assert_eq!(r(44), 24 * e820.len() as u32);
        let mmap = (u64::from(r(48)) - b.info_at) as usize;
        assert_eq!(r(mmap), 20);
        assert_eq!(u64::from_le_bytes(info[mmap + 12..mmap + 20].try_into().unwrap()), 0x9_FC00);
    }

    #[test]
    fn header_addresses_are_checked() {
        assert!(boot(files(aout(0x10_0000, 0x100, 0, 0x10_1000, 0x10_0020), vec![], ""), 64 << 20).is_ok());
        let e = boot(files(aout(0x10_0000, 0x100, 0x0F_0000, 0, 0x10_0020), vec![], ""), 64 << 20).unwrap_err();
        assert!(e.to_string().contains("load_end_addr 0xf0000 is below load_addr"), "{e}");
        let e = boot(files(aout(0xF_0000, 0x100, 0, 0, 0xF_0020), vec![], ""), 64 << 20).unwrap_err();
        assert!(e.to_string().contains("VGA and BIOS area"), "{e}");
        let e = boot(files(aout(0x10_0000, 0x100, 0, 0x800_0000, 0x10_0020), vec![], ""), 64 << 20).unwrap_err();
        assert!(e.to_string().contains("beyond RAM"), "{e}");
        let e = boot(files(aout(0x10_0000, 0x100, 0x10_1000, 0, 0x10_0020), vec![], ""), 64 << 20).unwrap_err();
        assert!(matches!(e.problem, Problem::Truncated(_)), "{e}");
        let e = boot(files(aout(0x10_0000, 0x100, 0, 0, 0x20_0000), vec![], ""), 64 << 20).unwrap_err();
        assert!(e.to_string().contains("entry point 0x200000 is outside"), "{e}");
        let e = boot(files(aout(0x10_0000, 0x100, 0, 0x10_0080, 0x10_0020), vec![], ""), 64 << 20).unwrap_err();
        assert!(e.to_string().contains("bss_end_addr"), "{e}");
        let e = boot(files(aout(0x10_0000, 0x100, 0, 0, 0x10_0020), vec![("big", vec![0; 70 << 20])], ""), 64 << 20)
            .unwrap_err();
        assert_eq!(e.file, "big");
        let mut bad = aout(0x10_0000, 0x100, 0, 0, 0x10_0020);
        bad[8] ^= 1;
        assert!(find_header(&bad).unwrap_err().to_string().contains("bad checksum"));
        let mut req = aout(0x10_0000, 0x100, 0, 0, 0x10_0020);
        let flags = MB1_ADDRESSES | (1 << 5);
        req[4..8].copy_from_slice(&flags.to_le_bytes());
        req[8..12].copy_from_slice(&0u32.wrapping_sub(MB1_HEADER_MAGIC).wrapping_sub(flags).to_le_bytes());
        assert!(boot(files(req, vec![], ""), 64 << 20).unwrap_err().to_string().contains("flags 0x20"));
    }

    /// A version 2 header with an address tag, an entry tag and an information request.
    fn mb2(request: &[u32], optional_request: bool) -> Vec<u8> {
        let mut tags: Vec<u8> = Vec::new();
        let mut tag = |kind: u16, flags: u16, body: &[u32]| {
            tags.extend_from_slice(&kind.to_le_bytes());
            tags.extend_from_slice(&flags.to_le_bytes());
            tags.extend_from_slice(&(8 + 4 * body.len() as u32).to_le_bytes());
            body.iter().for_each(|v| tags.extend_from_slice(&v.to_le_bytes()));
            tags.resize(tags.len().next_multiple_of(8), 0);
        };
        tag(1, optional_request as u16, request);
        tag(2, 0, &[0x10_0000, 0x10_0000, 0, 0x10_2000]);
        tag(3, 0, &[0x10_0040]);
        tag(0, 0, &[]);
        let len = 16 + tags.len() as u32;
        let mut d = Vec::new();
        for v in [MB2_HEADER_MAGIC, 0, len, 0u32.wrapping_sub(MB2_HEADER_MAGIC).wrapping_sub(len)] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend(tags);
        d.resize(0x200, 0x90);
        d
    }

    #[test]
    fn multiboot2_tags() {
        let b = boot(files(mb2(&[TAG_MMAP, TAG_ACPI_NEW], false), vec![("m", vec![7; 3])], ""), 64 << 20).unwrap();
        assert_eq!(b.version, Version::V2);
        assert_eq!(b.entry, 0x10_0040);
        let e820 = post::bios_e820(&platform(64 << 20), 0x1_0000);
        let info = b.info_v2(&e820, Some(&[0xAB; 36]));
        assert_eq!(u32_at(&info, 0).unwrap() as usize, info.len());
        let mut kinds = Vec::new();
        let mut at = 8;
        while at < info.len() {
            let (kind, size) = (u32_at(&info, at).unwrap(), u32_at(&info, at + 4).unwrap() as usize);
            kinds.push(kind);
            if kind == TAG_CMDLINE {
                assert_eq!(&info[at + 8..at + size], b"kernel.elf\0");
            }
            at += size.next_multiple_of(8);
        }
        assert_eq!(kinds, [TAG_CMDLINE, TAG_LOADER_NAME, TAG_MODULE, TAG_BASIC_MEMINFO, TAG_MMAP, TAG_ACPI_OLD, TAG_ACPI_NEW, TAG_END]);
        let e = boot(files(mb2(&[TAG_MMAP, 9], false), vec![], ""), 64 << 20).unwrap_err();
        assert!(e.to_string().contains("tag types 9"), "{e}");
        assert!(boot(files(mb2(&[TAG_MMAP, 9], true), vec![], ""), 64 << 20).is_ok());
    }
}
