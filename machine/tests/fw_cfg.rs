//! What SeaBIOS and Linux read from the board to learn about the machine, through the real
//! `Machine` ports: fw_cfg (traditional and DMA interfaces), the ACPI tables with their loader
//! script (placed, checksummed, and the DSDT disassembled by iasl when it is installed), the
//! PIIX4 power management function's PM timer and soft-off.

use machine::devices::fw_cfg::{
    DMA_ERROR, DMA_PORT, DMA_READ, DMA_SELECT, DMA_SIGNATURE, DMA_SKIP, DMA_WRITE, DATA_PORT, FILE_DIR, ID, NB_CPUS,
    RAM_SIZE, SELECTOR_PORT, SIGNATURE,
};
use machine::devices::piix4_pm::{PM1A_CNT, PM1A_EVT, PM_TIMER_HZ, PM_TMR};
use machine::firmware::loader::{Command, TableLoader, Zone};
use machine::firmware::{byte_sum, E820_RAM};
use machine::memory::{FOUR_GIB, LOW_RAM_LIMIT};
use machine::{ClockMode, Machine, MachineConfig, MachineEvent};
use std::collections::BTreeMap;

fn machine(ram_size: u64, cpus: u32) -> Machine {
    Machine::new(MachineConfig {
        ram_size,
        cpus,
        bios: vec![0xF4; 128 * 1024],
        clock: ClockMode::Deterministic,
        ..MachineConfig::default()
    })
    .unwrap()
}

fn select(m: &mut Machine, key: u16) {
    m.io_write(SELECTOR_PORT, 2, u32::from(key));
}

fn read_data(m: &mut Machine, n: usize) -> Vec<u8> {
    (0..n).map(|_| m.io_read(DATA_PORT, 1) as u8).collect()
}

fn item(m: &mut Machine, key: u16, n: usize) -> Vec<u8> {
    select(m, key);
    read_data(m, n)
}

/// The file directory: name -> (selector, size).
fn directory(m: &mut Machine) -> BTreeMap<String, (u16, usize)> {
    let count = u32::from_be_bytes(item(m, FILE_DIR, 4).try_into().unwrap()) as usize;
    let entries = read_data(m, 64 * count);
    entries
        .chunks(64)
        .map(|e| {
            let name = &e[8..];
            let end = name.iter().position(|&c| c == 0).unwrap();
            let size = u32::from_be_bytes(e[0..4].try_into().unwrap()) as usize;
            (String::from_utf8(name[..end].to_vec()).unwrap(), (u16::from_be_bytes([e[4], e[5]]), size))
        })
        .collect()
}

fn file_traditional(m: &mut Machine, name: &str) -> Vec<u8> {
    let (sel, size) = directory(m)[name];
    item(m, sel, size)
}

/// A DMA request as SeaBIOS makes it: descriptor in guest RAM at `desc`, its address written
/// big-endian in two halves. Returns the control word the device left.
fn dma(m: &mut Machine, desc: u64, control: u32, len: u32, to: u64) -> u32 {
    let mut d = control.to_be_bytes().to_vec();
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&to.to_be_bytes());
    m.memory_mut().write(desc, &d);
    m.io_write(DMA_PORT, 4, ((desc >> 32) as u32).swap_bytes());
    m.io_write(DMA_PORT + 4, 4, (desc as u32).swap_bytes());
    let mut c = [0u8; 4];
    m.memory().read(desc, &mut c);
    u32::from_be_bytes(c)
}

fn file_dma(m: &mut Machine, name: &str, to: u64) -> Vec<u8> {
    let (sel, size) = directory(m)[name];
    assert_eq!(dma(m, 0x7000, u32::from(sel) << 16 | DMA_SELECT | DMA_READ, size as u32, to), 0, "{name}");
    let mut out = vec![0; size];
    m.memory().read(to, &mut out);
    out
}

#[test]
fn signature_id_and_counts() {
    let mut m = machine(256 << 20, 2);
    assert_eq!(item(&mut m, SIGNATURE, 4), b"QEMU");
    assert_eq!(u32::from_le_bytes(item(&mut m, ID, 4).try_into().unwrap()), 3, "traditional and DMA");
    assert_eq!(item(&mut m, NB_CPUS, 2), [2, 0]);
    assert_eq!(u64::from_le_bytes(item(&mut m, RAM_SIZE, 8).try_into().unwrap()), 256 << 20);
    let sig: Vec<u8> = (0..8).map(|k| m.io_read(DMA_PORT + k, 1) as u8).collect();
    assert_eq!(sig, DMA_SIGNATURE);
    let dir = directory(&mut m);
    for name in ["etc/e820", "bootorder", "etc/boot-fail-wait", "etc/acpi/tables", "etc/acpi/rsdp", "etc/table-loader", "etc/smbios/smbios-tables", "etc/smbios/smbios-anchor"] {
        assert!(dir.contains_key(name), "{name} missing: {:?}", dir.keys());
    }
}

#[test]
fn e820_through_both_interfaces() {
    let mut m = machine(4 << 30, 1);
    let trad = file_traditional(&mut m, "etc/e820");
    let via_dma = file_dma(&mut m, "etc/e820", 0x8000);
    assert_eq!(trad, via_dma);
    let entries: Vec<(u64, u64, u32)> = trad
        .chunks(20)
        .map(|e| {
            let q = |o: usize| u64::from_le_bytes(e[o..o + 8].try_into().unwrap());
            (q(0), q(8), u32::from_le_bytes(e[16..20].try_into().unwrap()))
        })
        .collect();
    assert_eq!(entries, [(0, LOW_RAM_LIMIT, E820_RAM), (FOUR_GIB, (4 << 30) - LOW_RAM_LIMIT, E820_RAM)]);
}

/// Runs "etc/table-loader" as SeaBIOS would (files read through DMA, the RSDP in the F
/// segment, the tables high), writes the result into guest RAM and returns the placed files.
fn load_acpi(m: &mut Machine) -> BTreeMap<String, (u64, Vec<u8>)> {
    let script = TableLoader::parse(&file_traditional(m, "etc/table-loader")).expect("well-formed script");
    let mut files = BTreeMap::new();
    for c in &script.commands {
        match c {
            Command::Allocate { file, align, zone } => {
                assert!(align.is_power_of_two());
                assert!(*zone == Zone::FSeg || *zone == Zone::High);
                files.insert(file.clone(), file_dma(m, file, 0x10_0000));
            }
            Command::AddPointer { size, .. } => assert!(matches!(size, 4 | 8)),
            Command::AddChecksum { .. } => {}
        }
    }
    assert!(matches!(script.commands[0], Command::Allocate { .. }));
    let placed = script
        .run(&files, |_, _, align, zone| match zone {
            Zone::FSeg => 0xF_5A00,
            Zone::High => 0x0200_0000u64.next_multiple_of(u64::from(align.max(1))),
        })
        .unwrap();
    for (addr, data) in placed.values() {
        m.memory_mut().write_ram(*addr, data);
    }
    placed
}

fn table_at(m: &Machine, addr: u64) -> Vec<u8> {
    let mut h = [0u8; 8];
    m.memory().read(addr, &mut h);
    let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
    let mut t = vec![0; len];
    m.memory().read(addr, &mut t);
    t
}

#[test]
fn acpi_tables_link_up_with_right_checksums() {
    let mut m = machine(512 << 20, 4);
    let trad = file_traditional(&mut m, "etc/acpi/tables");
    assert_eq!(trad, file_dma(&mut m, "etc/acpi/tables", 0x40_0000), "both interfaces agree");
    let placed = load_acpi(&mut m);
    let rsdp = &placed["etc/acpi/rsdp"].1;
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!((byte_sum(&rsdp[..20]), byte_sum(rsdp), rsdp[15]), (0, 0, 2));
    let rsdt = table_at(&m, u64::from(u32::from_le_bytes(rsdp[16..20].try_into().unwrap())));
    let xsdt = table_at(&m, u64::from_le_bytes(rsdp[24..32].try_into().unwrap()));
    assert_eq!((&rsdt[..4], &xsdt[..4]), (&b"RSDT"[..], &b"XSDT"[..]));
    assert_eq!((byte_sum(&rsdt), byte_sum(&xsdt)), (0, 0));
    let mut sigs = Vec::new();
    for k in 0..(rsdt.len() - 36) / 4 {
        let a = u32::from_le_bytes(rsdt[36 + 4 * k..40 + 4 * k].try_into().unwrap());
        let x = u64::from_le_bytes(xsdt[36 + 8 * k..44 + 8 * k].try_into().unwrap());
        assert_eq!(u64::from(a), x, "RSDT and XSDT agree");
        let t = table_at(&m, x);
        assert_eq!(byte_sum(&t), 0, "{} checksum", String::from_utf8_lossy(&t[..4]));
        sigs.push(String::from_utf8_lossy(&t[..4]).into_owned());
        if &t[..4] == b"FACP" {
            let dsdt = u32::from_le_bytes(t[40..44].try_into().unwrap());
            assert_eq!(u64::from(dsdt), u64::from_le_bytes(t[140..148].try_into().unwrap()), "DSDT == X_DSDT");
            let d = table_at(&m, u64::from(dsdt));
            assert_eq!((&d[..4], byte_sum(&d)), (&b"DSDT"[..], 0));
            let facs = u32::from_le_bytes(t[36..40].try_into().unwrap());
            assert_eq!(facs % 64, 0, "FACS aligned");
            assert_eq!(table_at(&m, u64::from(facs))[..4], *b"FACS");
        }
    }
    assert_eq!(sigs, ["FACP", "APIC", "HPET"]);
}

#[test]
fn iasl_disassembles_the_dsdt_without_errors() {
    if std::process::Command::new("iasl").arg("-v").output().is_err() {
        eprintln!("SKIPPED: iasl is not installed (Debian package acpica-tools)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ferrite-acpi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut m = machine(1 << 30, 2);
    let placed = load_acpi(&mut m);
    let (base, blob) = &placed["etc/acpi/tables"];
    let tables = machine::firmware::acpi::AcpiTables::build(&machine::firmware::Platform {
        ram_size: 1 << 30,
        cpus: 2,
        ide: vec![],
        floppies: vec![],
        boot_order: "cda".into(),
        fw_cfg_files: vec![],
    });
    for (sig, at, len) in &tables.index {
        let name = String::from_utf8_lossy(sig).into_owned();
        let path = dir.join(format!("{name}.dat"));
        std::fs::write(&path, &blob[*at..at + len]).unwrap();
        let out = std::process::Command::new("iasl").arg("-d").arg(&path).current_dir(&dir).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "iasl -d {name} failed:\n{text}");
        assert!(!text.contains("Error") || text.contains(" 0 Errors"), "iasl -d {name}:\n{text}");
        let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl"))).unwrap();
        assert!(!dsl.contains("**** Unknown"), "{name}: iasl found unknown data:\n{dsl}");
        if name == "DSDT" {
            for needle in ["PNP0A03", "PNP0C0F", "PNP0303", "PNP0501", "ACPI0007", "_S5_", "_PRT", "LNKS"] {
                assert!(dsl.contains(needle), "{needle} not in the disassembled DSDT");
            }
            // Recompiling the disassembly must work too.
            let out = std::process::Command::new("iasl").arg("-p").arg(dir.join("re")).arg(dir.join("DSDT.dsl")).current_dir(&dir).output().unwrap();
            assert!(out.status.success(), "iasl could not recompile the DSDT:\n{}", String::from_utf8_lossy(&out.stdout));
        }
    }
    let _ = base;
    // FERRITE_KEEP_ACPI=1 keeps the tables and their disassembly for a look.
    if std::env::var_os("FERRITE_KEEP_ACPI").is_some() {
        eprintln!("ACPI tables and disassembly kept in {}", dir.display());
    } else {
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn smbios_anchor_matches_the_tables() {
    let mut m = machine(128 << 20, 2);
    let anchor = file_traditional(&mut m, "etc/smbios/smbios-anchor");
    let tables = file_dma(&mut m, "etc/smbios/smbios-tables", 0x9000);
    assert_eq!((&anchor[..4], anchor.len(), byte_sum(&anchor)), (&b"_SM_"[..], 31, 0));
    assert_eq!(u16::from_le_bytes([anchor[0x16], anchor[0x17]]) as usize, tables.len());
    assert_eq!(&tables[tables.len() - 6..], &[127, 4, 0, 0x7F, 0, 0]);
}

fn cfg_write(m: &mut Machine, dev: u8, func: u8, off: u8, size: u8, v: u32) {
    m.io_write(0xCF8, 4, 0x8000_0000 | u32::from(dev) << 11 | u32::from(func) << 8 | u32::from(off & 0xFC));
    m.io_write(0xCFC + u16::from(off & 3), size, v);
}

/// What SeaBIOS does with the PIIX4 PM function: PMBA = 0x600, PMREGMISC I/O enable.
fn enable_pm(m: &mut Machine) {
    cfg_write(m, 1, 3, 0x40, 4, 0x601);
    cfg_write(m, 1, 3, 0x80, 1, 1);
}

#[test]
fn pm_timer_follows_virtual_time() {
    let mut m = machine(64 << 20, 1);
    assert_eq!(m.io_read(PM_TMR, 4), 0xFFFF_FFFF, "no PM block before PMBA is programmed");
    enable_pm(&mut m);
    let t0 = m.io_read(PM_TMR, 4);
    m.clock_mut().advance(1_000_000_000);
    let t1 = m.io_read(PM_TMR, 4);
    assert_eq!(t1.wrapping_sub(t0) & 0xFF_FFFF, PM_TIMER_HZ as u32, "3.579545 MHz");
    assert_eq!(t1 >> 24, 0, "24 bits");
    m.clock_mut().advance(10_000_000);
    assert_eq!(m.io_read(PM_TMR, 4).wrapping_sub(t1) & 0xFF_FFFF, 35_795);
    // Moving PMBA moves the block.
    cfg_write(&mut m, 1, 3, 0x40, 4, 0xB001);
    assert_eq!(m.io_read(PM_TMR, 4), 0xFFFF_FFFF);
    assert_ne!(m.io_read(0xB008, 4), 0xFFFF_FFFF);
}

#[test]
fn soft_off_through_pm1a_control() {
    let mut m = machine(64 << 20, 1);
    enable_pm(&mut m);
    m.take_events();
    m.io_write(0xB2, 1, 0xF1); // ACPI enable through the APM port, as Linux does
    assert_eq!(m.io_read(PM1A_CNT, 2) & 1, 1, "SCI_EN");
    assert_eq!(m.io_read(PM1A_EVT, 2) & 0x100, 0);
    m.io_write(PM1A_CNT, 2, 1 << 13 | 1);
    assert!(m.take_events().contains(&MachineEvent::PowerOff));
}

#[test]
fn guest_nonsense_gets_what_qemu_gives() {
    let mut m = machine(64 << 20, 1);
    assert_eq!(item(&mut m, 0x3FFF, 4), [0; 4], "unknown selector reads zeros");
    m.io_write(DATA_PORT, 1, 0x55); // writes through the data port are ignored
    assert_eq!(item(&mut m, SIGNATURE, 4), b"QEMU");
    let before = item(&mut m, SIGNATURE, 4);
    // DMA into the PCI hole, above RAM, past 2^64: error bit, no panic.
    assert_eq!(dma(&mut m, 0x7000, u32::from(SIGNATURE) << 16 | DMA_SELECT | DMA_READ, 4, 0xE000_0000), DMA_ERROR);
    assert_eq!(dma(&mut m, 0x7000, DMA_READ, 0x1000, u64::MAX - 4), DMA_ERROR);
    assert_eq!(dma(&mut m, 0x7000, DMA_READ, u32::MAX, 64 << 20), DMA_ERROR);
    // Writing a read-only item, skipping past the end, an empty control word.
    assert_eq!(dma(&mut m, 0x7000, DMA_WRITE, 4, 0x8000), DMA_ERROR);
    assert_eq!(dma(&mut m, 0x7000, DMA_SKIP, 1 << 20, 0), 0);
    assert_eq!(dma(&mut m, 0x7000, 0, 4, 0x8000), 0);
    // A descriptor outside RAM is dropped.
    m.io_write(DMA_PORT, 4, 0);
    m.io_write(DMA_PORT + 4, 4, 0xFFFF_F000u32.swap_bytes());
    // Odd access sizes.
    m.io_write(SELECTOR_PORT, 1, 0);
    m.io_write(DMA_PORT + 2, 2, 0x1234);
    let _ = m.io_read(SELECTOR_PORT, 2);
    assert_eq!(before, b"QEMU");
    // Reserved PM registers and sleep types the board cannot do.
    enable_pm(&mut m);
    m.io_write(PM1A_EVT + 0x30, 4, 0xFFFF_FFFF);
    m.io_write(PM1A_CNT, 2, 1 << 13 | 1 << 10);
    assert!(!m.take_events().contains(&MachineEvent::PowerOff), "S1 is not soft off");
}
