//! Linux bzImages through the x86 boot protocol (Linux `Documentation/arch/x86/boot.rst`):
//! the protected-mode kernel at 1 MiB, the zero page (`struct boot_params`) with the setup
//! header copied from the file, the e820 map, the VGA text console (`screen_info`), the ACPI
//! RSDP and the initrd placed as high as the kernel allows; the command line at 0x20000. The
//! kernel is entered at its 64-bit entry (load address + 0x200, long mode, identity-mapped
//! page tables for the low 4 GiB) when its `xloadflags` say it has one, else at its 32-bit
//! entry (flat protected mode, paging off). Either way RSI points at the zero page.

use super::post::PostState;
use super::{enter, mib, write_at, BootError, BootFiles, EntryMode, EntryState, Problem, RamMap};
use crate::board::Machine;
use crate::firmware::Platform;
use crate::memory::FOUR_GIB;

/// Where things go in low memory (all inside the loader area below 0x10000, but the command
/// line).
pub const ZERO_PAGE: u64 = 0x7000;
pub const PAGE_TABLES: u64 = 0x9000;
pub const CMDLINE: u64 = 0x2_0000;
/// The protected-mode kernel's load address (`code32_start`).
pub const KERNEL_LOAD: u64 = 0x10_0000;

/// Setup header offsets (in the file and in the zero page alike).
const SETUP_SECTS: usize = 0x1F1;
const SYSSIZE: usize = 0x1F4;
const VID_MODE: usize = 0x1FA;
const BOOT_FLAG: usize = 0x1FE;
const JUMP: usize = 0x200;
const HEADER: usize = 0x202;
const VERSION: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const CODE32_START: usize = 0x214;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21C;
const CMD_LINE_PTR: usize = 0x228;
const INITRD_ADDR_MAX: usize = 0x22C;
const RELOCATABLE_KERNEL: usize = 0x234;
const XLOADFLAGS: usize = 0x236;
const CMDLINE_SIZE: usize = 0x238;
const PREF_ADDRESS: usize = 0x258;
const INIT_SIZE: usize = 0x260;
/// Zero page fields outside the setup header.
const ACPI_RSDP_ADDR: usize = 0x070;
const EXT_RAMDISK_IMAGE: usize = 0x0C0;
const EXT_RAMDISK_SIZE: usize = 0x0C4;
const ALT_MEM_K: usize = 0x1E0;
const E820_ENTRIES: usize = 0x1E8;
const E820_TABLE: usize = 0x2D0;
const E820_MAX: usize = 128;

const LOADED_HIGH: u8 = 0x01;
const XLF_KERNEL_64: u16 = 0x01;
const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 0x02;

/// Does this look like a Linux kernel image (boot sector signature and "HdrS")?
pub fn is_linux(data: &[u8]) -> bool {
    data.len() >= HEADER + 4 && data[BOOT_FLAG..BOOT_FLAG + 2] == [0x55, 0xAA] && &data[HEADER..HEADER + 4] == b"HdrS"
}

/// A bzImage laid out for loading.
#[derive(Clone, Debug)]
pub struct LinuxBoot {
    version: u16,
    /// The setup header as it goes into the zero page: bytes 0x1F1 up to the end the jump at
    /// 0x200 implies.
    header: Vec<u8>,
    /// The file; the protected-mode kernel (loaded at [`KERNEL_LOAD`]) starts at `setup_len`.
    file: Vec<u8>,
    setup_len: usize,
    entry64: bool,
    /// The initrd (all `--initrd` files concatenated) and where it goes.
    initrd: Option<(u64, Vec<u8>)>,
    cmdline: Vec<u8>,
}

fn u16_at(d: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([d[o], d[o + 1]])
}

fn u32_at(d: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(d[o..o + 4].try_into().expect("4 bytes"))
}

impl LinuxBoot {
    pub fn new(files: BootFiles, p: &Platform) -> Result<LinuxBoot, BootError> {
        let BootFiles { kernel, modules, cmdline } = files;
        let name = kernel.name.as_str();
        let err = |problem| BootError::new(name, problem);
        let d = &kernel.data;
        let version = u16_at(d, VERSION);
        if version < 0x0202 {
            return Err(err(Problem::Unsupported(format!(
                "Linux boot protocol {}.{:02}: too old (2.02 or later is needed for the command line)",
                version >> 8,
                version & 0xFF
            ))));
        }
        if d[LOADFLAGS] & LOADED_HIGH == 0 {
            return Err(err(Problem::Unsupported("a zImage (loaded below 1 MiB); only bzImages can be booted".into())));
        }
        let setup_sects = match d[SETUP_SECTS] {
            0 => 4,
            n => usize::from(n),
        };
        let setup_len = (setup_sects + 1) * 512;
        let header_end = (HEADER + usize::from(d[JUMP + 1])).min(setup_len);
        if d.len() <= setup_len || d.len() < header_end {
            return Err(err(Problem::Truncated(format!(
                "{} bytes, but its setup code alone is {setup_len} bytes",
                d.len()
            ))));
        }
        let header = d[SETUP_SECTS..header_end].to_vec();
        let field = |o: usize, n: usize| if o + n <= header_end { Some(o) } else { None };
        // The protected-mode kernel's size in 16-byte paragraphs (protocol 2.04 and later).
        if version >= 0x0204 {
            let need = setup_len as u64 + u64::from(u32_at(d, SYSSIZE)) * 16;
            if (d.len() as u64) < need {
                return Err(err(Problem::Truncated(format!(
                    "{} bytes, but its header says the kernel takes {need}",
                    d.len()
                ))));
            }
        }
        let xloadflags = if version >= 0x020C { field(XLOADFLAGS, 2).map_or(0, |o| u16_at(d, o)) } else { 0 };
        let entry64 = xloadflags & XLF_KERNEL_64 != 0;

        // Memory: the kernel runs from where it decompresses (pref_address, or 1 MiB) for
        // init_size bytes; RAM must hold that.
        let load_len = (d.len() - setup_len) as u64;
        let mut ram = RamMap::new(p, FOUR_GIB);
        let (run_at, run_size) = if version >= 0x020A {
            let pref = field(PREF_ADDRESS, 8).map_or(KERNEL_LOAD, |o| u64::from_le_bytes(d[o..o + 8].try_into().expect("8")));
            let relocatable = field(RELOCATABLE_KERNEL, 1).is_some_and(|o| d[o] != 0);
            let init = field(INIT_SIZE, 4).map_or(0, |o| u64::from(u32_at(d, o)));
            (if relocatable { pref.max(KERNEL_LOAD) } else { pref }, init)
        } else {
            (KERNEL_LOAD, load_len)
        };
        let kernel_end = (KERNEL_LOAD + load_len).max(run_at + run_size);
        ram.reserve(KERNEL_LOAD, kernel_end).map_err(|why| {
            let need_mib = (kernel_end + crate::firmware::post::FIRMWARE_AREA_SIZE).div_ceil(1 << 20);
            err(Problem::DoesNotFit(format!(
                "the kernel is loaded at 1 MiB and decompresses up to {kernel_end:#x}, but {why}; it needs at least {need_mib} MiB of RAM (-m {need_mib}M)"
            )))
        })?;

        let cmdline_max = if version >= 0x0206 { field(CMDLINE_SIZE, 4).map_or(255, |o| u32_at(d, o)) } else { 255 };
        if cmdline.len() as u64 > u64::from(cmdline_max) {
            return Err(err(Problem::DoesNotFit(format!(
                "the command line is {} bytes; this kernel takes at most {cmdline_max}",
                cmdline.len()
            ))));
        }
        let mut cmdline = cmdline.into_bytes();
        cmdline.push(0);

        let initrd = if modules.is_empty() {
            None
        } else {
            let initrd_max = if version >= 0x0203 { u64::from(u32_at(d, INITRD_ADDR_MAX)) } else { 0x37FF_FFFF };
            let limit = if xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0 { FOUR_GIB } else { initrd_max + 1 };
            let names: Vec<&str> = modules.iter().map(|m| m.file.name.as_str()).collect();
            let first = names[0].to_string();
            // Several files make one initrd, each starting on a 4-byte boundary (cpio archives
            // may be concatenated so).
            let mut data = Vec::new();
            for m in &modules {
                data.resize(data.len().next_multiple_of(4), 0);
                data.extend_from_slice(&m.file.data);
            }
            let size = data.len() as u64;
            let at = ram.place_high(size, 4096, kernel_end, limit).ok_or_else(|| {
                let room = limit.min(ram.ram_top).saturating_sub(kernel_end);
                BootError::new(
                    &names.join(","),
                    Problem::DoesNotFit(format!(
                        "the initrd is {}, but only {} of RAM is free between the kernel (which ends at {kernel_end:#x}) and {:#x}; give more memory with -m",
                        mib(size),
                        mib(room),
                        limit.min(ram.ram_top)
                    )),
                )
            })?;
            tracing::debug!("initrd {first}: {size} bytes at {at:#x}");
            Some((at, data))
        };

        Ok(LinuxBoot { version, header, file: kernel.data, setup_len, entry64, initrd, cmdline })
    }

    pub fn describe(&self) -> String {
        format!(
            "Linux, boot protocol {}.{:02}, {}-bit entry",
            self.version >> 8,
            self.version & 0xFF,
            if self.entry64 { 64 } else { 32 }
        )
    }

    /// The zero page for this boot.
    fn zero_page(&self, post: &PostState) -> Vec<u8> {
        let mut z = vec![0u8; 4096];
        z[SETUP_SECTS..SETUP_SECTS + self.header.len()].copy_from_slice(&self.header);
        let w16 = |z: &mut [u8], o: usize, v: u16| z[o..o + 2].copy_from_slice(&v.to_le_bytes());
        // screen_info: VGA text mode 3, 80x25, 16-line characters, cursor at the top left.
        z[0x06] = 3;
        z[0x07] = 80;
        w16(&mut z, 0x0A, 0x0003); // orig_video_ega_bx: colour, 256 KiB
        z[0x0E] = 25;
        z[0x0F] = 1; // orig_video_isVGA
        w16(&mut z, 0x10, 16); // orig_video_points
        w16(&mut z, VID_MODE, 0xFFFF); // "normal": the mode the firmware left
        let w32 = |z: &mut [u8], o: usize, v: u32| z[o..o + 4].copy_from_slice(&v.to_le_bytes());
        z[TYPE_OF_LOADER] = 0xFF; // no registered loader ID
        w32(&mut z, CODE32_START, KERNEL_LOAD as u32);
        w32(&mut z, CMD_LINE_PTR, CMDLINE as u32);
        if let Some((at, data)) = &self.initrd {
            w32(&mut z, RAMDISK_IMAGE, *at as u32);
            w32(&mut z, RAMDISK_SIZE, data.len() as u32);
            w32(&mut z, EXT_RAMDISK_IMAGE, (*at >> 32) as u32);
            w32(&mut z, EXT_RAMDISK_SIZE, (data.len() as u64 >> 32) as u32);
        }
        if let Some((rsdp, _)) = &post.rsdp {
            z[ACPI_RSDP_ADDR..ACPI_RSDP_ADDR + 8].copy_from_slice(&rsdp.to_le_bytes());
        }
        // Extended memory (above 1 MiB, up to the first hole), in KiB.
        let ext = post.e820.iter().find(|e| e.0 == 0x10_0000).map_or(0, |e| e.1 >> 10);
        w32(&mut z, ALT_MEM_K, ext.min(u64::from(u32::MAX)) as u32);
        w16(&mut z, 0x02, ext.min(0xFFFF) as u16); // screen_info.ext_mem_k
        let n = post.e820.len().min(E820_MAX);
        z[E820_ENTRIES] = n as u8;
        for (i, &(addr, len, kind)) in post.e820.iter().take(n).enumerate() {
            let o = E820_TABLE + 20 * i;
            z[o..o + 8].copy_from_slice(&addr.to_le_bytes());
            z[o + 8..o + 16].copy_from_slice(&len.to_le_bytes());
            z[o + 16..o + 20].copy_from_slice(&kind.to_le_bytes());
        }
        z
    }

    pub fn load(&self, m: &mut Machine, post: &PostState) -> EntryState {
        write_at(m, ZERO_PAGE, &self.zero_page(post), 0);
        write_at(m, CMDLINE, &self.cmdline, 0);
        write_at(m, KERNEL_LOAD, &self.file[self.setup_len..], 0);
        if let Some((at, data)) = &self.initrd {
            write_at(m, *at, data, 0);
        }
        let mode = if self.entry64 {
            write_at(m, PAGE_TABLES, &identity_page_tables(PAGE_TABLES), 0);
            EntryMode::Long64 { cr3: PAGE_TABLES }
        } else {
            EntryMode::Protected32
        };
        let rip = if self.entry64 { KERNEL_LOAD + 0x200 } else { KERNEL_LOAD };
        EntryState { rsi: ZERO_PAGE, ..enter(m, mode, rip) }
    }
}

/// 4-level page tables at `at` identity-mapping the low 4 GiB with 2 MiB pages: PML4, one
/// PDPT, four page directories (six pages).
pub fn identity_page_tables(at: u64) -> Vec<u8> {
    let mut t = vec![0u8; 6 * 4096];
    let mut put = |index: usize, v: u64| t[8 * index..8 * index + 8].copy_from_slice(&v.to_le_bytes());
    const PRESENT_WRITABLE: u64 = 0x03;
    const LARGE: u64 = 0x80;
    put(0, (at + 0x1000) | PRESENT_WRITABLE);
    for i in 0..4u64 {
        put(512 + i as usize, (at + 0x2000 + i * 0x1000) | PRESENT_WRITABLE);
    }
    for i in 0..2048u64 {
        put(1024 + i as usize, (i << 21) | PRESENT_WRITABLE | LARGE);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::super::{BootFile, BootModule};
    use super::*;

    /// A made-up bzImage: protocol 2.15, 64-bit entry, `kernel_len` bytes of kernel that
    /// decompress into `init_size` bytes at 16 MiB.
    fn bzimage(kernel_len: usize, init_size: u32) -> Vec<u8> {
        let setup_sects = 4usize;
        let mut d = vec![0u8; (setup_sects + 1) * 512 + kernel_len];
        d[SETUP_SECTS] = setup_sects as u8;
        d[SYSSIZE..SYSSIZE + 4].copy_from_slice(&((kernel_len / 16) as u32).to_le_bytes());
        d[BOOT_FLAG..BOOT_FLAG + 2].copy_from_slice(&[0x55, 0xAA]);
        d[JUMP] = 0xEB;
        d[JUMP + 1] = 0x6A;
        d[HEADER..HEADER + 4].copy_from_slice(b"HdrS");
        d[VERSION..VERSION + 2].copy_from_slice(&0x020Fu16.to_le_bytes());
        d[LOADFLAGS] = LOADED_HIGH;
        d[INITRD_ADDR_MAX..INITRD_ADDR_MAX + 4].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        d[RELOCATABLE_KERNEL] = 1;
        d[XLOADFLAGS..XLOADFLAGS + 2].copy_from_slice(&0x7Fu16.to_le_bytes());
        d[CMDLINE_SIZE..CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        d[PREF_ADDRESS..PREF_ADDRESS + 8].copy_from_slice(&0x100_0000u64.to_le_bytes());
        d[INIT_SIZE..INIT_SIZE + 4].copy_from_slice(&init_size.to_le_bytes());
        d
    }

    fn files(kernel: Vec<u8>, initrds: Vec<Vec<u8>>) -> BootFiles {
        BootFiles {
            kernel: BootFile { name: "bzImage".into(), data: kernel },
            modules: initrds
                .into_iter()
                .enumerate()
                .map(|(i, data)| BootModule { file: BootFile { name: format!("initrd{i}"), data }, string: String::new() })
                .collect(),
            cmdline: "console=ttyS0".into(),
        }
    }

    fn platform(ram: u64) -> Platform {
        Platform { ram_size: ram, cpus: 1, ide: vec![], floppies: vec![], boot_order: "c".into(), fw_cfg_files: vec![] }
    }

    #[test]
    fn lays_out_kernel_and_initrd() {
        let b = LinuxBoot::new(files(bzimage(0x1000, 0x40_0000), vec![vec![1; 5], vec![2; 3]]), &platform(64 << 20)).unwrap();
        assert!(b.entry64);
        let (at, data) = b.initrd.as_ref().unwrap();
        assert_eq!(data, &[1, 1, 1, 1, 1, 0, 0, 0, 2, 2, 2], "concatenated on 4-byte boundaries");
        let top = (64 << 20) - crate::firmware::post::FIRMWARE_AREA_SIZE;
        assert_eq!(*at, top - 4096, "as high as it goes, page aligned");
        assert_eq!(b.cmdline, b"console=ttyS0\0");
        assert_eq!(b.describe(), "Linux, boot protocol 2.15, 64-bit entry");
    }

    #[test]
    fn zero_page_fields() {
        let b = LinuxBoot::new(files(bzimage(0x1000, 0x40_0000), vec![vec![1; 5]]), &platform(64 << 20)).unwrap();
        let p = platform(64 << 20);
        let post = PostState {
            e820: crate::firmware::post::bios_e820(&p, 0x1_0000),
            rsdp: Some((0xF_0000, vec![0; 36])),
            smbios_anchor: None,
        };
        let z = b.zero_page(&post);
        assert_eq!(&z[HEADER..HEADER + 4], b"HdrS");
        assert_eq!(z[TYPE_OF_LOADER], 0xFF);
        assert_eq!(u32_at(&z, CMD_LINE_PTR), CMDLINE as u32);
        assert_eq!(u32_at(&z, RAMDISK_SIZE), 5);
        assert_eq!(u64::from_le_bytes(z[ACPI_RSDP_ADDR..ACPI_RSDP_ADDR + 8].try_into().unwrap()), 0xF_0000);
        assert_eq!(usize::from(z[E820_ENTRIES]), post.e820.len());
        assert_eq!(u32_at(&z, E820_TABLE + 20 + 16), crate::firmware::E820_RESERVED);
        assert_eq!(z[0x1EF], 0, "sentinel clear: the loader filled the page");
        assert_eq!((z[0x06], z[0x07], z[0x0E], z[0x0F]), (3, 80, 25, 1));
    }

    #[test]
    fn errors_name_the_problem() {
        let p = platform(64 << 20);
        let full = bzimage(0x1000, 0x40_0000);
        let e = LinuxBoot::new(files(full[..full.len() - 16].to_vec(), vec![]), &p).unwrap_err();
        assert!(matches!(e.problem, Problem::Truncated(_)), "{e}");
        let e = LinuxBoot::new(files(full[..0x900].to_vec(), vec![]), &p).unwrap_err();
        assert!(matches!(e.problem, Problem::Truncated(_)), "{e}");
        let e = LinuxBoot::new(files(bzimage(0x1000, 0x800_0000), vec![]), &p).unwrap_err();
        assert!(e.to_string().contains("beyond RAM"), "{e}");
        let e = LinuxBoot::new(files(full.clone(), vec![vec![0; 80 << 20]]), &p).unwrap_err();
        assert_eq!(e.file, "initrd0");
        assert!(e.to_string().contains("the initrd is 80.0 MiB"), "{e}");
        let mut f = files(full.clone(), vec![]);
        f.cmdline = "x".repeat(3000);
        assert!(LinuxBoot::new(f, &p).unwrap_err().to_string().contains("at most 2047"));
        let mut old = full;
        old[LOADFLAGS] = 0;
        assert!(LinuxBoot::new(files(old, vec![]), &p).unwrap_err().to_string().contains("zImage"));
    }

    #[test]
    fn page_tables_map_4g() {
        let t = identity_page_tables(0x9000);
        let q = |i: usize| u64::from_le_bytes(t[8 * i..8 * i + 8].try_into().unwrap());
        assert_eq!(q(0), 0xA003);
        assert_eq!(q(512 + 3), 0xE003);
        assert_eq!(q(1024), 0x83);
        assert_eq!(q(1024 + 2047), (2047 << 21) | 0x83);
    }
}
