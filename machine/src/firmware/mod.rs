//! What firmware and operating systems are told about the machine, generated once from its
//! configuration: the e820 map, the ACPI tables with the BIOS linker/loader script that places
//! them, the SMBIOS tables, the boot order. The fw_cfg device serves them to SeaBIOS the way
//! QEMU's "pc" machine does; the project's own firmware and direct kernel boot can use the same
//! builders.

pub mod acpi;
pub mod aml;
pub mod bios;
pub mod boot;
pub mod loader;
pub mod mptable;
pub mod post;
pub mod smbios;
pub mod stub_rom;

use crate::board::MachineConfig;
use crate::memory::{HIGH_RAM_START, LOW_RAM_LIMIT, PAGE_SIZE};

/// The OEM identification every generated table carries.
pub const OEM_ID: [u8; 6] = *b"FERRIT";
/// ACPI "creator" and SMBIOS vendor name.
pub const VENDOR: &str = "Ferrite";

/// One e820 entry type, as the BIOS INT 15h/E820h reports them.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// The ACPI and SMBIOS tables of a machine, built once from its [`Platform`]: fw_cfg serves
/// them to SeaBIOS, [`post`] places them itself for direct kernel boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirmwareTables {
    pub acpi: acpi::AcpiTables,
    pub smbios: smbios::Smbios,
}

impl FirmwareTables {
    pub fn build(p: &Platform) -> FirmwareTables {
        FirmwareTables { acpi: acpi::AcpiTables::build(p), smbios: smbios::Smbios::build(p) }
    }
}

/// The facts about the board that firmware tables describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// All guest RAM, in bytes (a whole number of pages).
    pub ram_size: u64,
    /// Number of processors (APIC IDs 0..cpus).
    pub cpus: u32,
    /// IDE drives present: (channel, unit, is a CD-ROM).
    pub ide: Vec<(u8, u8, bool)>,
    /// Floppy drives present (0 = A:, 1 = B:).
    pub floppies: Vec<u8>,
    /// The boot order letters as given (`a` floppy, `c` disk, `d` CD-ROM, `n` network).
    pub boot_order: String,
    /// Files for the fw_cfg directory beyond the firmware's own (`MachineConfig::fw_cfg_files`).
    pub fw_cfg_files: Vec<(String, Vec<u8>)>,
}

impl Platform {
    pub fn from_config(cfg: &MachineConfig) -> Platform {
        let ide = cfg
            .ide
            .iter()
            .enumerate()
            .filter_map(|(k, d)| d.as_ref().map(|d| ((k / 2) as u8, (k % 2) as u8, d.cdrom)))
            .collect();
        let floppies = (0..2u8).filter(|&k| cfg.floppy[k as usize].is_some()).collect();
        Platform {
            ram_size: cfg.ram_size.div_ceil(PAGE_SIZE) * PAGE_SIZE,
            cpus: cfg.cpus.max(1),
            ide,
            floppies,
            boot_order: cfg.boot_order.clone(),
            fw_cfg_files: cfg.fw_cfg_files.clone(),
        }
    }

    /// RAM below the PCI hole (as `memory.rs` lays it out).
    pub fn low_ram(&self) -> u64 {
        self.ram_size.min(LOW_RAM_LIMIT)
    }

    /// RAM above 4 GiB.
    pub fn high_ram(&self) -> u64 {
        self.ram_size - self.low_ram()
    }

    /// Where PCI memory may be placed below 4 GiB: from the end of low RAM up to the I/O APIC.
    pub fn pci_hole(&self) -> (u64, u64) {
        (self.low_ram(), acpi::IOAPIC_BASE - 1)
    }

    /// The e820 map as QEMU gives it in "etc/e820": RAM from 0 to the PCI hole and RAM above
    /// 4 GiB. The firmware carves out the legacy areas (EBDA, video, BIOS) itself.
    pub fn e820(&self) -> Vec<(u64, u64, u32)> {
        let mut map = vec![(0, self.low_ram(), E820_RAM)];
        if self.high_ram() > 0 {
            map.push((HIGH_RAM_START, self.high_ram(), E820_RAM));
        }
        map
    }

    /// "etc/e820": 20-byte little-endian records {address u64, length u64, type u32}.
    pub fn e820_file(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (addr, len, kind) in self.e820() {
            out.extend_from_slice(&addr.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&kind.to_le_bytes());
        }
        out
    }

    /// The "bootorder" file: one Open Firmware device path per line, in the order the boot
    /// order letters give, each letter standing for every attached drive of its kind. The paths
    /// are the ones SeaBIOS builds for the PIIX IDE function at 00:01.1 and the floppy
    /// controller behind the ISA bridge at 00:01.0.
    pub fn bootorder_file(&self) -> Vec<u8> {
        let mut lines: Vec<String> = Vec::new();
        for letter in self.boot_order.chars() {
            match letter.to_ascii_lowercase() {
                'a' => {
                    for &f in &self.floppies {
                        lines.push(format!("/pci@i0cf8/isa@1/fdc@03f0/floppy@{f}"));
                    }
                }
                c @ ('c' | 'd') => {
                    for &(channel, unit, cdrom) in &self.ide {
                        if cdrom == (c == 'd') {
                            lines.push(format!("/pci@i0cf8/ide@1,1/drive@{channel}/disk@{unit}"));
                        }
                    }
                }
                other => tracing::debug!("boot order letter {other:?}: no such device on this board"),
            }
        }
        let mut out = lines.join("\n").into_bytes();
        if !out.is_empty() {
            out.push(0);
        }
        out
    }

    /// QEMU's legacy FW_CFG_BOOT_DEVICE: the first boot order letter.
    pub fn boot_device(&self) -> u16 {
        self.boot_order.bytes().next().map_or(u16::from(b'c'), u16::from)
    }
}

/// Sum of bytes, for table checksums.
pub fn byte_sum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

/// Makes `data` sum to zero by setting the byte at `at`.
pub fn fix_checksum(data: &mut [u8], at: usize) {
    data[at] = 0;
    data[at] = byte_sum(data).wrapping_neg();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FOUR_GIB;

    fn platform(ram: u64) -> Platform {
        Platform { ram_size: ram, cpus: 2, ide: vec![(0, 0, false), (1, 0, true)], floppies: vec![0], boot_order: "dca".into(), fw_cfg_files: vec![] }
    }

    #[test]
    fn e820_splits_at_the_pci_hole() {
        assert_eq!(platform(128 << 20).e820(), vec![(0, 128 << 20, E820_RAM)]);
        let big = platform(4 << 30);
        assert_eq!(big.e820(), vec![(0, LOW_RAM_LIMIT, E820_RAM), (FOUR_GIB, (4 << 30) - LOW_RAM_LIMIT, E820_RAM)]);
        let f = big.e820_file();
        assert_eq!(f.len(), 40);
        assert_eq!(u64::from_le_bytes(f[20..28].try_into().unwrap()), FOUR_GIB);
        assert_eq!(u32::from_le_bytes(f[36..40].try_into().unwrap()), E820_RAM);
    }

    #[test]
    fn bootorder_follows_the_letters() {
        let text = String::from_utf8(platform(1 << 30).bootorder_file()).unwrap();
        assert_eq!(
            text,
            "/pci@i0cf8/ide@1,1/drive@1/disk@0\n/pci@i0cf8/ide@1,1/drive@0/disk@0\n/pci@i0cf8/isa@1/fdc@03f0/floppy@0\0"
        );
        let mut p = platform(1 << 30);
        p.boot_order = "n".into();
        assert!(p.bootorder_file().is_empty());
        assert_eq!(p.boot_device(), u16::from(b'n'));
    }

    #[test]
    fn from_config_rounds_and_defaults() {
        let cfg = MachineConfig { ram_size: (64 << 20) + 1, cpus: 0, ..MachineConfig::default() };
        let p = Platform::from_config(&cfg);
        assert_eq!((p.ram_size, p.cpus), ((64 << 20) + PAGE_SIZE, 1));
        assert!(p.ide.is_empty() && p.floppies.is_empty());
    }
}
