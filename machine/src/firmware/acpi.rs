//! The ACPI tables of the board, shaped as QEMU's "pc" machine (i440FX + PIIX3/PIIX4) gives
//! them (ACPI 6.5 chapter 5; QEMU `hw/i386/acpi-build.c`): RSDP (revision 2, with both RSDT
//! and XSDT), FADT revision 3 describing the PIIX4 power management block, FACS, MADT, HPET
//! and a DSDT in AML. They are built once from the configuration into the three fw_cfg files
//! SeaBIOS expects: "etc/acpi/tables" (every table but the RSDP, FACS first for its 64-byte
//! alignment), "etc/acpi/rsdp" and the linker/loader script "etc/table-loader" that places
//! them and patches the pointers between them.

use super::aml::{encode, IrqNoFlags, IsaDma, LOr, PciInterrupts, Raw};
use super::loader::{TableLoader, Zone};
use super::{fix_checksum, Platform, OEM_ID};
use crate::devices::piix4_pm::{
    ACPI_DISABLE, ACPI_ENABLE, APM_CNT_PORT, GPE0_BASE, GPE0_LEN, PM1A_CNT, PM1A_EVT, PM_TMR, SCI_IRQ,
    SLP_TYP_S5,
};
use crate::pci::{pirq_of, DevFn};
use acpi_tables::aml::{
    self, AddressSpace, AddressSpaceCacheable, CreateDWordField, Device, EISAName, Equal, FieldAccessType,
    FieldEntry, FieldLockRule, FieldUpdateRule, GreaterThan, If, LessThan, Local, Memory32Fixed, Method, Name,
    OpRegion, OpRegionSpace, Or, Package, Path, ResourceTemplate, Return, Scope, ShiftRight, Store, IO,
};
use acpi_tables::Aml;

pub const TABLES_FILE: &str = "etc/acpi/tables";
pub const RSDP_FILE: &str = "etc/acpi/rsdp";
pub const LOADER_FILE: &str = "etc/table-loader";

pub const LAPIC_BASE: u64 = 0xFEE0_0000;
pub const IOAPIC_BASE: u64 = 0xFEC0_0000;
pub const HPET_BASE: u64 = crate::devices::hpet::BASE;
/// The PIIX reset control register and the value that hard-resets through it.
pub const RESET_PORT: u16 = 0xCF9;
pub const RESET_VALUE: u8 = 0x06;
/// CMOS index of the century byte.
pub const RTC_CENTURY: u8 = 0x32;
/// ISA IRQs routed level-triggered, active high, as PCI interrupts and the SCI use them.
pub(crate) const PCI_ISA_IRQS: [u8; 4] = [5, 9, 10, 11];
/// What the PIRQ links may be routed to (QEMU's choice; SeaBIOS programs 10 and 11).
const LINK_IRQS: [u32; 3] = [5, 10, 11];

/// Built tables, ready for fw_cfg or for firmware that places them itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    /// "etc/acpi/tables": every table but the RSDP, pointers as offsets into this blob.
    pub tables: Vec<u8>,
    /// "etc/acpi/rsdp": pointers as offsets into `tables`.
    pub rsdp: Vec<u8>,
    pub loader: TableLoader,
    /// Where each table lies in `tables`: signature, offset, length.
    pub index: Vec<([u8; 4], usize, usize)>,
}

/// The standard 36-byte header; length and checksum are filled in by `finish`.
fn header(signature: &[u8; 4], revision: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(256);
    t.extend_from_slice(signature);
    t.extend_from_slice(&[0; 4]);
    t.push(revision);
    t.push(0);
    t.extend_from_slice(&OEM_ID);
    let mut table_id = *b"FRTE    ";
    table_id[4..].copy_from_slice(signature);
    t.extend_from_slice(&table_id);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"FRTE");
    t.extend_from_slice(&1u32.to_le_bytes());
    t
}

fn finish(mut t: Vec<u8>) -> Vec<u8> {
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(&mut t, 9);
    t
}

/// A Generic Address Structure: address space 0 memory, 1 I/O.
fn gas(t: &mut Vec<u8>, space: u8, bits: u8, access: u8, address: u64) {
    t.extend_from_slice(&[space, bits, 0, access]);
    t.extend_from_slice(&address.to_le_bytes());
}

fn facs() -> Vec<u8> {
    let mut t = vec![0u8; 64];
    t[0..4].copy_from_slice(b"FACS");
    t[4..8].copy_from_slice(&64u32.to_le_bytes());
    // Version 2 (ACPI 4.0+ layout with the 64-bit waking vector).
    t[32] = 2;
    t
}

/// Offsets inside the FADT of the fields the loader patches.
const FADT_FIRMWARE_CTRL: usize = 36;
const FADT_DSDT: usize = 40;
const FADT_X_DSDT: usize = 140;

/// FADT revision 3 (ACPI 2.0 layout, 244 bytes): the PIIX4 PM block at `PM_BASE`, SCI on IRQ 9,
/// APM command port for ACPI enable/disable, 24-bit PM timer, reset through 0xCF9.
fn fadt() -> Vec<u8> {
    let mut t = header(b"FACP", 3);
    t.extend_from_slice(&0u32.to_le_bytes()); // FIRMWARE_CTRL (patched)
    t.extend_from_slice(&0u32.to_le_bytes()); // DSDT (patched)
    t.push(1); // reserved (INT_MODEL in ACPI 1.0)
    t.push(0); // preferred PM profile: unspecified
    t.extend_from_slice(&u16::from(SCI_IRQ).to_le_bytes());
    t.extend_from_slice(&u32::from(APM_CNT_PORT).to_le_bytes());
    t.extend_from_slice(&[ACPI_ENABLE, ACPI_DISABLE, 0, 0]);
    for blk in [PM1A_EVT, 0, PM1A_CNT, 0, 0, PM_TMR, GPE0_BASE, 0] {
        t.extend_from_slice(&u32::from(blk).to_le_bytes());
    }
    // Block lengths: PM1 event 4, PM1 control 2, PM2 0, timer 4, GPE0, GPE1 0, GPE1 base, CST.
    t.extend_from_slice(&[4, 2, 0, 4, GPE0_LEN as u8, 0, 0, 0]);
    t.extend_from_slice(&0x0FFFu16.to_le_bytes()); // C2 latency: C2 not supported
    t.extend_from_slice(&0x0FFFu16.to_le_bytes()); // C3 latency: C3 not supported
    t.extend_from_slice(&[0; 4]); // flush size, stride
    t.extend_from_slice(&[0, 0, 0, 0, RTC_CENTURY]); // duty offset/width, alarms, century
    // IA-PC boot architecture: legacy devices, 8042.
    t.extend_from_slice(&0x0003u16.to_le_bytes());
    t.push(0);
    // WBINVD, C1 on all CPUs, sleep button as a control method, RTC wake from S4, reset
    // register, platform clock; the PM timer is 24 bits (TMR_VAL_EXT clear).
    let flags: u32 = 1 | 1 << 2 | 1 << 5 | 1 << 7 | 1 << 10 | 1 << 15;
    t.extend_from_slice(&flags.to_le_bytes());
    gas(&mut t, 1, 8, 1, u64::from(RESET_PORT));
    t.push(RESET_VALUE);
    t.extend_from_slice(&[0; 3]);
    t.extend_from_slice(&0u64.to_le_bytes()); // X_FIRMWARE_CTRL: FIRMWARE_CTRL is used
    t.extend_from_slice(&0u64.to_le_bytes()); // X_DSDT (patched)
    gas(&mut t, 1, 32, 0, u64::from(PM1A_EVT));
    gas(&mut t, 0, 0, 0, 0);
    gas(&mut t, 1, 16, 0, u64::from(PM1A_CNT));
    gas(&mut t, 0, 0, 0, 0);
    gas(&mut t, 0, 0, 0, 0);
    gas(&mut t, 1, 32, 0, u64::from(PM_TMR));
    gas(&mut t, 1, (GPE0_LEN * 8) as u8, 0, u64::from(GPE0_BASE));
    gas(&mut t, 0, 0, 0, 0);
    debug_assert_eq!(t.len(), 244);
    finish(t)
}

/// MADT: one local APIC per CPU, the I/O APIC with GSI base 0, QEMU's interrupt source
/// overrides (IRQ 0 to GSI 2; the PCI-capable IRQs level, active high) and LINT1 as NMI.
fn madt(cpus: u32) -> Vec<u8> {
    let mut t = header(b"APIC", 3);
    t.extend_from_slice(&(LAPIC_BASE as u32).to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT: there are 8259As too
    for i in 0..cpus.min(255) as u8 {
        t.extend_from_slice(&[0, 8, i, i]);
        t.extend_from_slice(&1u32.to_le_bytes());
    }
    t.extend_from_slice(&[1, 12, 0, 0]);
    t.extend_from_slice(&(IOAPIC_BASE as u32).to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    let iso = |t: &mut Vec<u8>, irq: u8, gsi: u32, flags: u16| {
        t.extend_from_slice(&[2, 10, 0, irq]);
        t.extend_from_slice(&gsi.to_le_bytes());
        t.extend_from_slice(&flags.to_le_bytes());
    };
    iso(&mut t, 0, 2, 0);
    for irq in PCI_ISA_IRQS {
        iso(&mut t, irq, u32::from(irq), 0x000D);
    }
    t.extend_from_slice(&[4, 6, 0xFF, 0, 0, 1]);
    finish(t)
}

fn hpet() -> Vec<u8> {
    let mut t = header(b"HPET", 1);
    // Event timer block ID: the low half of the device's capabilities register (Intel, 3
    // comparators, 64-bit counter, legacy replacement capable, revision 1).
    t.extend_from_slice(&crate::devices::hpet::EVENT_TIMER_BLOCK_ID.to_le_bytes());
    gas(&mut t, 0, 0, 0, HPET_BASE);
    t.push(0); // HPET number
    t.extend_from_slice(&0u16.to_le_bytes()); // minimum clock tick in periodic mode
    t.push(0); // page protection
    finish(t)
}

/// The link device names, PIRQA-D, and the SCI link.
const LINKS: [&str; 4] = ["LNKA", "LNKB", "LNKC", "LNKD"];

/// `_PRT` as a static package: every slot's INTA-D to the link of the PIRQ line the board
/// wires it to (`pci::pirq_of`); slot 1 INTA (the PIIX4 power management function) to LNKS,
/// the SCI, as on QEMU.
fn prt() -> Vec<u8> {
    let mut entries = Vec::new();
    for slot in 0u32..32 {
        for pin in 0u8..4 {
            let link = if slot == 1 && pin == 0 { "LNKS" } else { LINKS[pirq_of((slot as DevFn) << 3, pin + 1)] };
            let addr = slot << 16 | 0xFFFF;
            entries.push(encode(&Package::new(vec![&addr, &pin, &Path::new(link), &0u8])));
        }
    }
    let raws: Vec<Raw> = entries.into_iter().map(Raw).collect();
    let refs: Vec<&dyn Aml> = raws.iter().map(|r| r as &dyn Aml).collect();
    encode(&Name::new(Path::new("_PRT"), &Package::new(refs)))
}

/// A PCI interrupt link (PNP0C0F) over PIRQ route register `k` (QEMU's LNKA-LNKD): bit 7
/// disables the routing, the low bits are the ISA IRQ.
fn link(k: usize) -> Vec<u8> {
    let reg = format!("PRQ{k}");
    let reg = Path::new(&reg);
    let prs = PciInterrupts(LINK_IRQS.to_vec());
    let uid = k as u8;
    encode(&Device::new(
        Path::new(LINKS[k]),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0C0F")),
            &Name::new("_UID".into(), &uid),
            &Name::new("_PRS".into(), &ResourceTemplate::new(vec![&prs])),
            &Method::new("_STA".into(), 0, false, vec![&Return::new(&aml::MethodCall::new("IQST".into(), vec![&reg]))]),
            &Method::new("_DIS".into(), 0, false, vec![&Or::new(&reg, &reg, &0x80u8)]),
            &Method::new("_CRS".into(), 0, false, vec![&Return::new(&aml::MethodCall::new("IQCR".into(), vec![&reg]))]),
            &Method::new(
                "_SRS".into(),
                1,
                false,
                vec![&CreateDWordField::new(&Path::new("PRRI"), &aml::Arg(0), &5u8), &Store::new(&reg, &Path::new("PRRI"))],
            ),
        ],
    ))
}

/// The PIRQ route registers as fields, the helper methods and the five link devices.
fn pci_links() -> Vec<u8> {
    let mut out = encode(&aml::Field::new(
        Path::new("PCI0.ISA_.P40C"),
        FieldAccessType::Byte,
        FieldLockRule::NoLock,
        FieldUpdateRule::Preserve,
        (0..4).map(|k| FieldEntry::Named(*format!("PRQ{k}").as_bytes().first_chunk().expect("4 bytes"), 8)).collect(),
    ));
    // IQST: 0x09 (present, disabled) when routing is off, else 0x0B (present, enabled).
    out.extend(encode(&Method::new(
        "IQST".into(),
        1,
        false,
        vec![
            &If::new(&aml::And::new(&aml::ZERO, &0x80u8, &aml::Arg(0)), vec![&Return::new(&0x09u8)]),
            &Return::new(&0x0Bu8),
        ],
    )));
    // IQCR: the current setting as a resource template (IRQ 0 when routing is off).
    let irq0 = PciInterrupts(vec![0]);
    out.extend(encode(&Method::new(
        "IQCR".into(),
        1,
        true,
        vec![
            &Name::new("PRR0".into(), &ResourceTemplate::new(vec![&irq0])),
            &CreateDWordField::new(&Path::new("PRRI"), &Path::new("PRR0"), &5u8),
            &If::new(&LessThan::new(&aml::Arg(0), &0x80u8), vec![&Store::new(&Path::new("PRRI"), &aml::Arg(0))]),
            &Return::new(&Path::new("PRR0")),
        ],
    )));
    for k in 0..4 {
        out.extend(link(k));
    }
    let sci = PciInterrupts(vec![u32::from(SCI_IRQ)]);
    out.extend(encode(&Device::new(
        "LNKS".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0C0F")),
            &Name::new("_UID".into(), &4u8),
            &Name::new("_PRS".into(), &ResourceTemplate::new(vec![&sci])),
            &Method::new("_STA".into(), 0, false, vec![&Return::new(&0x0Bu8)]),
            &Method::new("_DIS".into(), 0, false, vec![]),
            &Method::new("_CRS".into(), 0, false, vec![&Return::new(&Path::new("_PRS"))]),
            &Method::new("_SRS".into(), 1, false, vec![]),
        ],
    )));
    out
}

/// A plain ISA device: `_HID`, `_STA` present, fixed `_CRS`, optional `_UID`.
fn isa_device(name: &str, hid: &str, uid: Option<u8>, crs: &[&dyn Aml]) -> Vec<u8> {
    let hid = EISAName::new(hid);
    let sta = 0x0Fu8;
    let crs = ResourceTemplate::new(crs.to_vec());
    let hid_n = Name::new("_HID".into(), &hid);
    let sta_n = Name::new("_STA".into(), &sta);
    let crs_n = Name::new("_CRS".into(), &crs);
    let uid_v = uid.unwrap_or(0);
    let uid_n = uid.map(|_| Name::new("_UID".into(), &uid_v));
    let mut children: Vec<&dyn Aml> = vec![&hid_n];
    if let Some(u) = &uid_n {
        children.push(u);
    }
    children.push(&sta_n);
    children.push(&crs_n);
    encode(&Device::new(Path::new(name), children))
}

/// The PIIX3 ISA bridge (00:01.0) with its PIRQ route registers as an operation region, and
/// the PC/AT devices behind it.
fn isa_bridge() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(encode(&Name::new("_ADR".into(), &0x0001_0000u32)));
    body.extend(encode(&OpRegion::new("P40C".into(), OpRegionSpace::PCIConfig, &0x60u8, &0x04u8)));
    body.extend(isa_device("PIC_", "PNP0000", None, &[&IO::new(0x20, 0x20, 1, 2), &IO::new(0xA0, 0xA0, 1, 2), &IrqNoFlags(&[2])]));
    body.extend(isa_device(
        "DMA_",
        "PNP0200",
        None,
        &[&IO::new(0x00, 0x00, 1, 0x10), &IO::new(0x81, 0x81, 1, 0x0F), &IO::new(0xC0, 0xC0, 1, 0x20), &IsaDma(4, 1)],
    ));
    body.extend(isa_device("TMR_", "PNP0100", None, &[&IO::new(0x40, 0x40, 1, 4), &IrqNoFlags(&[0])]));
    body.extend(isa_device("SPKR", "PNP0800", None, &[&IO::new(0x61, 0x61, 1, 1)]));
    body.extend(isa_device("RTC_", "PNP0B00", None, &[&IO::new(0x70, 0x70, 1, 8), &IrqNoFlags(&[8])]));
    body.extend(isa_device("KBD_", "PNP0303", None, &[&IO::new(0x60, 0x60, 1, 1), &IO::new(0x64, 0x64, 1, 1), &IrqNoFlags(&[1])]));
    body.extend(isa_device("MOU_", "PNP0F13", None, &[&IrqNoFlags(&[12])]));
    body.extend(isa_device(
        "FDC0",
        "PNP0700",
        None,
        &[&IO::new(0x3F2, 0x3F2, 0, 4), &IO::new(0x3F7, 0x3F7, 0, 1), &IrqNoFlags(&[6]), &IsaDma(2, 0)],
    ));
    body.extend(isa_device("COM1", "PNP0501", Some(1), &[&IO::new(0x3F8, 0x3F8, 0, 8), &IrqNoFlags(&[4])]));
    body.extend(isa_device("COM2", "PNP0501", Some(2), &[&IO::new(0x2F8, 0x2F8, 0, 8), &IrqNoFlags(&[3])]));
    body.extend(isa_device("COM3", "PNP0501", Some(3), &[&IO::new(0x3E8, 0x3E8, 0, 8), &IrqNoFlags(&[4])]));
    body.extend(isa_device("COM4", "PNP0501", Some(4), &[&IO::new(0x2E8, 0x2E8, 0, 8), &IrqNoFlags(&[3])]));
    let body = Raw(body);
    encode(&Device::new("ISA_".into(), vec![&body]))
}

/// The host bridge's windows: bus numbers, the configuration ports, all other I/O, the VGA
/// window and the 32-bit PCI hole from the end of low RAM to the I/O APIC.
fn pci0_crs(p: &Platform) -> Vec<u8> {
    let (hole_start, hole_end) = p.pci_hole();
    let bus = AddressSpace::<u16>::new_bus_number(0, 0xFF);
    let cfg = IO::new(0xCF8, 0xCF8, 1, 8);
    let io_low = AddressSpace::<u16>::new_io(0, 0xCF7, None);
    let io_high = AddressSpace::<u16>::new_io(0xD00, 0xFFFF, None);
    let vga = AddressSpace::<u32>::new_memory(AddressSpaceCacheable::Cacheable, true, 0xA_0000, 0xB_FFFF, None);
    let hole = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        hole_start as u32,
        hole_end as u32,
        None,
    );
    encode(&Name::new("_CRS".into(), &ResourceTemplate::new(vec![&bus, &cfg, &io_low, &io_high, &vga, &hole])))
}

/// The HPET (PNP0103), present only if its registers answer, as QEMU's DSDT checks.
fn hpet_device() -> Vec<u8> {
    let region = OpRegion::new("HPTM".into(), OpRegionSpace::SystemMemory, &(HPET_BASE as u32), &(crate::devices::hpet::LEN as u16));
    let field = aml::Field::new(
        "HPTM".into(),
        FieldAccessType::DWord,
        FieldLockRule::Lock,
        FieldUpdateRule::Preserve,
        vec![FieldEntry::Named(*b"VEND", 32), FieldEntry::Named(*b"PRD_", 32)],
    );
    let (l0, l1) = (Local(0), Local(1));
    let vendor_bad = LOr(&Equal::new(&l0, &aml::ZERO), &Equal::new(&l0, &0xFFFFu16));
    let period_bad = LOr(&Equal::new(&l1, &aml::ZERO), &GreaterThan::new(&l1, &100_000_000u32));
    let sta = Raw(encode(&Method::new(
        "_STA".into(),
        0,
        false,
        vec![
            &Store::new(&l0, &Path::new("VEND")),
            &Store::new(&l1, &Path::new("PRD_")),
            &ShiftRight::new(&l0, &l0, &0x10u8),
            &If::new(&vendor_bad, vec![&Return::new(&aml::ZERO)]),
            &If::new(&period_bad, vec![&Return::new(&aml::ZERO)]),
            &Return::new(&0x0Fu8),
        ],
    )));
    let crs = Memory32Fixed::new(false, HPET_BASE as u32, crate::devices::hpet::LEN as u32);
    encode(&Device::new(
        "HPET".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0103")),
            &Name::new("_UID".into(), &aml::ZERO),
            &region,
            &field,
            &sta,
            &Name::new("_CRS".into(), &ResourceTemplate::new(vec![&crs])),
        ],
    ))
}

fn dsdt(p: &Platform) -> Vec<u8> {
    let mut pci0 = Vec::new();
    pci0.extend(encode(&Name::new("_HID".into(), &EISAName::new("PNP0A03"))));
    pci0.extend(encode(&Name::new("_ADR".into(), &aml::ZERO)));
    pci0.extend(encode(&Name::new("_UID".into(), &aml::ZERO)));
    pci0.extend(pci0_crs(p));
    pci0.extend(prt());
    pci0.extend(isa_bridge());
    // The fw_cfg ports, so Linux's qemu_fw_cfg driver finds them and nothing else takes them.
    let fwcf_io = IO::new(0x510, 0x510, 1, 0x0C);
    pci0.extend(encode(&Device::new(
        "FWCF".into(),
        vec![
            &Name::new("_HID".into(), &"QEMU0002"),
            &Name::new("_STA".into(), &0x0Bu8),
            &Name::new("_CRS".into(), &ResourceTemplate::new(vec![&fwcf_io])),
        ],
    )));
    // The GPE0 block's ports, reserved (QEMU's "GPE0 resources").
    let gpe_io = IO::new(GPE0_BASE, GPE0_BASE, 1, GPE0_LEN as u8);
    pci0.extend(encode(&Device::new(
        "GPE0".into(),
        vec![
            &Name::new("_HID".into(), &"PNP0A06"),
            &Name::new("_UID".into(), &"GPE0 resources"),
            &Name::new("_STA".into(), &0x0Bu8),
            &Name::new("_CRS".into(), &ResourceTemplate::new(vec![&gpe_io])),
        ],
    )));
    let pci0 = Raw(pci0);

    let mut sb = encode(&Device::new("PCI0".into(), vec![&pci0]));
    sb.extend(hpet_device());
    sb.extend(pci_links());
    for i in 0..p.cpus.min(255) {
        let name = format!("C{i:03X}");
        sb.extend(encode(&Device::new(
            Path::new(&name),
            vec![&Name::new("_HID".into(), &"ACPI0007"), &Name::new("_UID".into(), &i)],
        )));
    }
    let sb = Raw(sb);

    let mut t = header(b"DSDT", 1);
    t.extend(encode(&Scope::new("\\_SB_".into(), vec![&sb])));
    // Only soft-off is offered: no S3/S4 packages, as the machine cannot suspend.
    t.extend(super::aml::sleep_state("_S5_", SLP_TYP_S5));
    finish(t)
}

impl AcpiTables {
    pub fn build(p: &Platform) -> AcpiTables {
        let mut tables = Vec::new();
        let mut index = Vec::new();
        let add = |sig: [u8; 4], t: Vec<u8>, tables: &mut Vec<u8>, index: &mut Vec<([u8; 4], usize, usize)>| {
            let at = tables.len();
            index.push((sig, at, t.len()));
            tables.extend(t);
            // Keep every table 8-byte aligned (the FACS, first, is at the 64-byte aligned start).
            tables.resize(tables.len().next_multiple_of(8), 0);
            at
        };
        let facs_at = add(*b"FACS", facs(), &mut tables, &mut index);
        let dsdt_at = add(*b"DSDT", dsdt(p), &mut tables, &mut index);
        let fadt_at = add(*b"FACP", fadt(), &mut tables, &mut index);
        let madt_at = add(*b"APIC", madt(p.cpus), &mut tables, &mut index);
        let hpet_at = add(*b"HPET", hpet(), &mut tables, &mut index);
        let pointed = [fadt_at, madt_at, hpet_at];

        let mut loader = TableLoader::default();
        loader.allocate(RSDP_FILE, 16, Zone::FSeg);
        loader.allocate(TABLES_FILE, 64, Zone::High);

        // FADT: pointers to the FACS and DSDT hold their offsets until the loader adds the
        // blob's address.
        let f = &mut tables[fadt_at..];
        f[FADT_FIRMWARE_CTRL..FADT_FIRMWARE_CTRL + 4].copy_from_slice(&(facs_at as u32).to_le_bytes());
        f[FADT_DSDT..FADT_DSDT + 4].copy_from_slice(&(dsdt_at as u32).to_le_bytes());
        f[FADT_X_DSDT..FADT_X_DSDT + 8].copy_from_slice(&(dsdt_at as u64).to_le_bytes());
        let fadt_len = index[2].2;
        fix_checksum(&mut tables[fadt_at..fadt_at + fadt_len], 9);
        loader.add_pointer(TABLES_FILE, TABLES_FILE, fadt_at + FADT_FIRMWARE_CTRL, 4);
        loader.add_pointer(TABLES_FILE, TABLES_FILE, fadt_at + FADT_DSDT, 4);
        loader.add_pointer(TABLES_FILE, TABLES_FILE, fadt_at + FADT_X_DSDT, 8);
        for &(_, at, len) in &index[1..] {
            loader.add_checksum(TABLES_FILE, at + 9, at, len);
        }

        let mut rsdt = header(b"RSDT", 1);
        let mut xsdt = header(b"XSDT", 1);
        for &at in &pointed {
            rsdt.extend_from_slice(&(at as u32).to_le_bytes());
            xsdt.extend_from_slice(&(at as u64).to_le_bytes());
        }
        let (rsdt, xsdt) = (finish(rsdt), finish(xsdt));
        let (rsdt_len, xsdt_len) = (rsdt.len(), xsdt.len());
        let rsdt_at = add(*b"RSDT", rsdt, &mut tables, &mut index);
        let xsdt_at = add(*b"XSDT", xsdt, &mut tables, &mut index);
        for k in 0..pointed.len() {
            loader.add_pointer(TABLES_FILE, TABLES_FILE, rsdt_at + 36 + 4 * k, 4);
        }
        loader.add_checksum(TABLES_FILE, rsdt_at + 9, rsdt_at, rsdt_len);
        for k in 0..pointed.len() {
            loader.add_pointer(TABLES_FILE, TABLES_FILE, xsdt_at + 36 + 8 * k, 8);
        }
        loader.add_checksum(TABLES_FILE, xsdt_at + 9, xsdt_at, xsdt_len);

        let mut rsdp = Vec::with_capacity(36);
        rsdp.extend_from_slice(b"RSD PTR ");
        rsdp.push(0);
        rsdp.extend_from_slice(&OEM_ID);
        rsdp.push(2);
        rsdp.extend_from_slice(&(rsdt_at as u32).to_le_bytes());
        rsdp.extend_from_slice(&36u32.to_le_bytes());
        rsdp.extend_from_slice(&(xsdt_at as u64).to_le_bytes());
        rsdp.extend_from_slice(&[0; 4]);
        fix_checksum(&mut rsdp[..20], 8);
        fix_checksum(&mut rsdp, 32);
        loader.add_pointer(RSDP_FILE, TABLES_FILE, 16, 4);
        loader.add_pointer(RSDP_FILE, TABLES_FILE, 24, 8);
        loader.add_checksum(RSDP_FILE, 8, 0, 20);
        loader.add_checksum(RSDP_FILE, 32, 0, 36);

        AcpiTables { tables, rsdp, loader, index }
    }

    /// One table by signature, as in the unplaced blob.
    pub fn table(&self, signature: &[u8; 4]) -> Option<&[u8]> {
        self.index.iter().find(|(s, _, _)| s == signature).map(|&(_, at, len)| &self.tables[at..at + len])
    }

    /// The tables placed at `tables_at` and the RSDP at `rsdp_at` with every pointer patched
    /// and checksum fixed, by running the loader script: for firmware that puts them in memory
    /// itself. Returns (tables image, RSDP image).
    pub fn place(&self, tables_at: u64, rsdp_at: u64) -> (Vec<u8>, Vec<u8>) {
        let files = std::collections::BTreeMap::from([
            (TABLES_FILE.to_string(), self.tables.clone()),
            (RSDP_FILE.to_string(), self.rsdp.clone()),
        ]);
        let mut placed = self
            .loader
            .run(&files, |name, _, _, _| if name == RSDP_FILE { rsdp_at } else { tables_at })
            .expect("the generated script names only its own files");
        let tables = placed.remove(TABLES_FILE).expect("allocated").1;
        let rsdp = placed.remove(RSDP_FILE).expect("allocated").1;
        (tables, rsdp)
    }
}

#[cfg(test)]
mod tests {
    use super::super::byte_sum;
    use super::*;

    fn platform(cpus: u32) -> Platform {
        Platform { ram_size: 256 << 20, cpus, ide: vec![], floppies: vec![], boot_order: "c".into(), fw_cfg_files: vec![] }
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    #[test]
    fn every_table_sums_to_zero_before_and_after_placing() {
        let t = AcpiTables::build(&platform(2));
        for &(sig, at, len) in &t.index {
            if &sig != b"FACS" {
                assert_eq!(byte_sum(&t.tables[at..at + len]), 0, "{}", String::from_utf8_lossy(&sig));
            }
        }
        let (tables, rsdp) = t.place(0x7F_0000, 0xF_5A00);
        assert_eq!(byte_sum(&rsdp[..20]), 0);
        assert_eq!(byte_sum(&rsdp), 0);
        for &(sig, at, len) in &t.index {
            if &sig != b"FACS" {
                assert_eq!(byte_sum(&tables[at..at + len]), 0, "{} after placing", String::from_utf8_lossy(&sig));
            }
        }
        // The RSDP's RSDT pointer leads to an RSDT whose first entry is the FADT, whose DSDT
        // pointer leads to the DSDT.
        let rsdt = (u32_at(&rsdp, 16) - 0x7F_0000) as usize;
        assert_eq!(&tables[rsdt..rsdt + 4], b"RSDT");
        let fadt = (u32_at(&tables, rsdt + 36) - 0x7F_0000) as usize;
        assert_eq!(&tables[fadt..fadt + 4], b"FACP");
        let dsdt = (u32_at(&tables, fadt + FADT_DSDT) - 0x7F_0000) as usize;
        assert_eq!(&tables[dsdt..dsdt + 4], b"DSDT");
        let facs = (u32_at(&tables, fadt + FADT_FIRMWARE_CTRL) - 0x7F_0000) as usize;
        assert_eq!((&tables[facs..facs + 4], (0x7F_0000 + facs) % 64), (&b"FACS"[..], 0));
        let xsdt = u64::from_le_bytes(rsdp[24..32].try_into().unwrap()) - 0x7F_0000;
        assert_eq!(&tables[xsdt as usize..xsdt as usize + 4], b"XSDT");
    }

    #[test]
    fn fadt_describes_the_piix4_pm_block() {
        let t = AcpiTables::build(&platform(1));
        let f = t.table(b"FACP").unwrap();
        assert_eq!((f.len(), f[8]), (244, 3));
        assert_eq!(u16::from_le_bytes([f[46], f[47]]), 9, "SCI");
        assert_eq!(u32_at(f, 56), 0x600, "PM1a event block");
        assert_eq!(u32_at(f, 64), 0x604, "PM1a control block");
        assert_eq!(u32_at(f, 76), 0x608, "PM timer");
        assert_eq!(u32_at(f, 80), 0xAFE0, "GPE0");
        assert_eq!(u32_at(f, 112) & (1 << 8), 0, "24-bit timer");
        assert_eq!(u16::from_le_bytes([f[109], f[110]]) & 2, 2, "8042 present");
        assert_eq!((u64::from_le_bytes(f[120..128].try_into().unwrap()), f[128]), (0xCF9, 6), "reset register");
    }

    #[test]
    fn madt_lists_each_cpu_and_the_overrides() {
        let t = AcpiTables::build(&platform(4));
        let m = t.table(b"APIC").unwrap();
        let mut at = 44;
        let mut kinds = Vec::new();
        while at < m.len() {
            kinds.push((m[at], m[at + 3]));
            at += m[at + 1] as usize;
        }
        assert_eq!(at, m.len());
        assert_eq!(kinds.iter().filter(|k| k.0 == 0).count(), 4);
        let isos: Vec<u8> = kinds.iter().filter(|k| k.0 == 2).map(|k| k.1).collect();
        assert_eq!(isos, [0, 5, 9, 10, 11]);
        assert!(kinds.contains(&(1, 0)) && kinds.iter().any(|k| k.0 == 4));
    }

    #[test]
    fn dsdt_names_the_devices_firmware_looks_for() {
        let t = AcpiTables::build(&platform(2));
        let d = t.table(b"DSDT").unwrap();
        let has = |needle: &[u8]| d.windows(needle.len()).any(|w| w == needle);
        // EISA IDs as SeaBIOS's DSDT parser looks them up (PNP0303 keyboard, PNP0501 serial).
        for id in ["PNP0303", "PNP0501", "PNP0A03", "PNP0C0F", "PNP0103", "PNP0700", "PNP0B00"] {
            assert!(has(&encode(&EISAName::new(id))), "{id}");
        }
        for name in [&b"_S5_"[..], b"LNKS", b"C001", b"_PRT", b"P40C", b"ACPI0007"] {
            assert!(has(name), "{}", String::from_utf8_lossy(name));
        }
        assert!(!has(b"_S3_"), "no suspend to RAM");
    }
}
