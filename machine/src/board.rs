//! The board: owns memory, the clock and the devices, routes port and MMIO accesses to them,
//! interrupt lines to the interrupt controller, and deadlines to the backend's run loop.
//! Port I/O is a flat 65,536-entry table (Bochs, v86); MMIO is a sorted range map consulted
//! only on the CPU's slow path.

use crate::clock::{Clock, ClockMode};
use crate::device::{Device, DeviceContext, DeviceSnapshot, MachineEvent, SnapshotError};
use crate::devices::{debugcon::DebugCon, exit::ExitDevice, i440fx::I440fx, piix3::Piix3Isa, pic::DualPic, pit::Pit, uart::Uart};
use crate::apic::ioapic::IoApic;
use crate::apic::lapic::{Effects as LapicEffects, Lapic, Shorthand};
use crate::apic::{delivery as apic_delivery, Message, IOAPIC_BASE};
use crate::block::BlockDevice;
use crate::host::CharBackend;
use crate::device::{open_bus, INTX};
use crate::memory::{DeviceRamId, Memory, MemoryError, PamMode};
use crate::pci::{devfn, pirq_of, BarKind, DevFn, PIIX3_ISA, PIRQ_ROUTE, ROM_INDEX};
use serde::{Deserialize, Serialize};

pub const COM1_PORT: u16 = 0x3F8;
pub const COM1_IRQ: u8 = 4;
/// COM2, COM3 and COM4: (base port, IRQ) as on every PC.
pub const COM2_4: [(u16, u8); 3] = [(0x2F8, 3), (0x3E8, 4), (0x2E8, 3)];
pub const DEBUGCON_PORT: u16 = 0xE9;
/// Where SeaBIOS writes its debug log (QEMU's isa-debugcon address for it); the debug console
/// takes it as well as port 0xE9.
pub const SEABIOS_LOG_PORT: u16 = 0x402;
pub const EXIT_PORT: u16 = 0xF4;

pub struct MachineConfig {
    pub ram_size: u64,
    pub bios: Vec<u8>,
    pub clock: ClockMode,
    pub serial: Box<dyn CharBackend>,
    /// Where COM2, COM3 and COM4 go (missing ones: nowhere; the UARTs are always there).
    pub serial_more: Vec<Box<dyn CharBackend>>,
    pub debugcon: Box<dyn CharBackend>,
    /// IDE drives: primary master, primary slave, secondary master, secondary slave.
    pub ide: [Option<Drive>; 4],
    /// Floppy drives A: and B:.
    pub floppy: [Option<Box<dyn BlockDevice>>; 2],
    /// The VGA option ROM (for example SeaBIOS's `vgabios-stdvga.bin`), served from the VGA
    /// device's expansion ROM BAR.
    pub vga_rom: Option<Vec<u8>>,
    /// Boot device order for the firmware, e.g. `"cda"` (CD, disk, floppy).
    pub boot_order: String,
    /// Number of processors.
    pub cpus: u32,
    /// Named files the fw_cfg device offers the guest beside its own, as QEMU's `-fw_cfg
    /// name=...`: (name, contents). User files take names under `opt/` (QEMU's convention).
    pub fw_cfg_files: Vec<(String, Vec<u8>)>,
}

/// A drive on an IDE channel.
pub struct Drive {
    pub media: Box<dyn BlockDevice>,
    /// An ATAPI CD-ROM (else an ATA hard disk).
    pub cdrom: bool,
}

impl Default for MachineConfig {
    /// 128 MiB, no firmware image (set `bios`), deterministic clock, nothing attached.
    fn default() -> Self {
        MachineConfig {
            ram_size: 128 << 20,
            bios: Vec::new(),
            clock: ClockMode::Deterministic,
            serial: Box::new(crate::host::NullChar),
            serial_more: Vec::new(),
            debugcon: Box::new(crate::host::NullChar),
            ide: [None, None, None, None],
            floppy: [None, None],
            vga_rom: None,
            boot_order: "cda".into(),
            cpus: 1,
            fw_cfg_files: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("snapshot has {found} devices, this machine {expected}")]
    DeviceCount { expected: usize, found: usize },
    #[error(transparent)]
    Floppy(#[from] crate::devices::fdc::FdcError),
    #[error(transparent)]
    Cmos(#[from] crate::devices::rtc::CmosError),
}

/// Which handler a port belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PortOwner {
    None,
    Pic,
    Device(u16),
    /// PCI configuration mechanism #1 (0xCF8-0xCFF).
    PciConfig,
    /// An I/O BAR of a PCI function: an index into `Machine::io_bars`.
    Bar(u16),
    /// The service port of Ferrite's own BIOS (`firmware::bios`).
    BiosService,
}

struct MmioRange {
    start: u64,
    len: u64,
    device: usize,
    /// `Some(bar)` for a PCI function's BAR (accessed through `bar_read`/`bar_write`; the
    /// expansion ROM is served from `rom()`), `None` for a fixed device range.
    bar: Option<u8>,
}

/// An I/O BAR as the port table maps it.
#[derive(Clone, Copy)]
struct IoBar {
    base: u16,
    len: u32,
    device: usize,
    bar: u8,
}

pub struct Machine {
    memory: Memory,
    clock: Clock,
    pic: DualPic,
    devices: Vec<Box<dyn Device>>,
    deadlines: Vec<Option<u64>>,
    ports: Box<[PortOwner]>,
    mmio: Vec<MmioRange>,
    irqs: Vec<(u8, bool)>,
    events: Vec<MachineEvent>,
    /// Something happened that the CPU loop should look at before running on.
    attention: bool,
    /// PCI functions on bus 0: (device/function, index in `devices`).
    pci: Vec<(DevFn, usize)>,
    /// The CONFIG_ADDRESS register at 0xCF8.
    pci_address: u32,
    io_bars: Vec<IoBar>,
    /// Per PIRQ line, which devices (by index) assert it; and the ISA IRQ it drives now.
    pirq_assert: [Vec<usize>; 4],
    pirq_irq: [Option<u8>; 4],
    /// Level of each ISA line as driven by PCI interrupts, apart from the ISA devices.
    pci_isa_level: u16,
    /// Per interrupt line (ISA 0-15, I/O APIC-only 16-23), which devices drive it high: bit
    /// `index` of the device (63 for index 63 and up). Lines are wired-OR, so two devices can
    /// share one (COM1 and COM3 on IRQ 4, a UART gating its output with OUT2).
    isa_drivers: [u64; 24],
    /// The 8237A pair (index in `devices`): other devices' ISA DMA runs through it.
    isa_dma: Option<usize>,
    /// The 8042 (index in `devices`) and where host keyboard and mouse handles come from.
    ps2: Option<(usize, crate::devices::i8042::Ps2InputSource)>,
    ioapic: IoApic,
    /// One local APIC per processor.
    lapics: Vec<Lapic>,
    /// The processor the backend is running now (whose local APIC answers at 0xFEE00000).
    current_cpu: usize,
    /// Guest accesses to a local APIC's registers so far (what an in-kernel local APIC under
    /// KVM would save exits on; see `lapic_accesses`).
    lapic_accesses: u64,
    /// What firmware tables describe (RAM, processors, drives).
    platform: crate::firmware::Platform,
    /// The IDE controller and the floppy controller (indices in `devices`), whose drives'
    /// media Ferrite's BIOS reads and writes.
    ide: Option<usize>,
    fdc: Option<usize>,
    /// The HPET (index in `devices`) and where ISA lines 0 and 8 come from: the 8254 and the
    /// RTC, or HPET timers 0 and 1 under LegacyReplacement Route.
    hpet: Option<usize>,
    legacy_route: crate::devices::hpet::LegacyRoute,
    /// Sound: the mixer, once a sink is attached (`add_audio_sink`).
    mixer: Option<crate::audio::Mixer>,
    /// The ACPI and SMBIOS tables, built once.
    firmware: crate::firmware::FirmwareTables,
    /// A kernel loaded directly (no firmware runs): loaded again after every reset.
    direct_boot: Option<Box<crate::firmware::boot::DirectBoot>>,
}

/// A drive as firmware addresses it: on the IDE controller (0-3, primary master to secondary
/// slave) or the floppy controller (0-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriveSlot {
    Ide(usize),
    Floppy(usize),
}

/// Saved state of the board's devices and clock (memory and CPU are saved by their owners).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineSnapshot {
    pub version: u32,
    pub now: u64,
    pub a20: bool,
    pub pic: DeviceSnapshot,
    pub devices: Vec<DeviceSnapshot>,
    pub deadlines: Vec<Option<u64>>,
    #[serde(default)]
    pub pci: PciSnapshot,
    #[serde(default)]
    pub apic: Option<ApicSnapshot>,
    #[serde(default)]
    pub legacy_route: crate::devices::hpet::LegacyRoute,
}

/// The I/O APIC and the local APICs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApicSnapshot {
    pub ioapic: DeviceSnapshot,
    pub lapics: Vec<DeviceSnapshot>,
}

/// The board's own PCI state: the configuration address latch and the PCI interrupt levels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PciSnapshot {
    pub address: u32,
    pub pirq_assert: [Vec<usize>; 4],
    pub pirq_irq: [Option<u8>; 4],
    pub isa_level: u16,
    /// Which devices drive each interrupt line (see `Machine::isa_drivers`).
    #[serde(default)]
    pub isa_drivers: Vec<u64>,
}

impl Machine {
    pub fn new(cfg: MachineConfig) -> Result<Machine, MachineError> {
        let memory = Memory::new(cfg.ram_size, &cfg.bios)?;
        // What the firmware tables describe, read before the devices take their parts of `cfg`.
        let platform = crate::firmware::Platform::from_config(&cfg);
        let firmware = crate::firmware::FirmwareTables::build(&platform);
        let mut m = Machine {
            memory,
            clock: Clock::new(cfg.clock),
            pic: DualPic::new(),
            devices: Vec::new(),
            deadlines: Vec::new(),
            ports: vec![PortOwner::None; 0x10000].into_boxed_slice(),
            mmio: Vec::new(),
            irqs: Vec::new(),
            events: Vec::new(),
            attention: false,
            pci: Vec::new(),
            pci_address: 0,
            io_bars: Vec::new(),
            pirq_assert: Default::default(),
            pirq_irq: [None; 4],
            pci_isa_level: 0,
            isa_drivers: [0; 24],
            isa_dma: None,
            ps2: None,
            ioapic: IoApic::new(),
            lapics: (0..cfg.cpus.max(1)).map(|i| Lapic::new(i as u8, i == 0)).collect(),
            current_cpu: 0,
            lapic_accesses: 0,
            platform: platform.clone(),
            ide: None,
            fdc: None,
            hpet: None,
            legacy_route: Default::default(),
            mixer: None,
            firmware,
            direct_boot: None,
        };
        if crate::firmware::bios::is_ferrite_bios(&cfg.bios) {
            m.ports[usize::from(crate::firmware::bios::SERVICE_PORT)] = PortOwner::BiosService;
        }
        for p in [0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1] {
            m.ports[p] = PortOwner::Pic;
        }
        m.add_io_device(Box::new(Pit::new()), &[(0x40, 4), (0x61, 1)]);
        m.add_io_device(Box::new(Uart::new(COM1_IRQ, cfg.serial)), &[(COM1_PORT, 8)]);
        let mut more = cfg.serial_more.into_iter();
        for (port, irq) in COM2_4 {
            let backend = more.next().unwrap_or_else(|| Box::new(crate::host::NullChar));
            m.add_io_device(Box::new(Uart::new(irq, backend)), &[(port, 8)]);
        }
        // Port 0x402 too: where SeaBIOS writes its log (QEMU users attach isa-debugcon there).
        m.add_io_device(Box::new(DebugCon::new(cfg.debugcon)), &[(DEBUGCON_PORT, 1), (SEABIOS_LOG_PORT, 1)]);
        m.add_io_device(Box::new(ExitDevice::new()), &[(EXIT_PORT, 1)]);
        // The legacy ISA devices of a PC/AT with a PIIX3:
        // - the 8237A DMA pair: 0x00-0x0F, 0xC0-0xDF, page registers 0x81-0x8F (0x80 is left
        //   to a POST code port); other devices' DMA runs through it, see `with_device`;
        // - the MC146818A RTC and CMOS RAM at 0x70-0x71 (IRQ 8), filled from this configuration;
        // - the 8042 keyboard controller with a PS/2 keyboard and mouse at 0x60/0x64 (IRQs 1, 12);
        // - port 0x92 and the reset control register 0xCF9 (inside the PCI configuration
        //   range: `add_pci_function` leaves it to this device);
        // - the 82077AA floppy controller at 0x3F0-0x3F5 and 0x3F7 (IRQ 6, DMA 2).
        {
            use crate::block::{Geometry, SECTOR_SIZE};
            use crate::devices::{dma::Dma, fdc::Fdc, i8042::I8042, rtc::CmosConfig, rtc::Rtc, sysctl::SysCtl};
            let hard_disks = [0, 1].map(|i| match &cfg.ide[i] {
                Some(d) if !d.cdrom => {
                    Some(d.media.geometry().unwrap_or_else(|| Geometry::vhd_for_sectors(d.media.len() / SECTOR_SIZE)))
                }
                _ => None,
            });
            let fdc = Fdc::new(cfg.floppy)?;
            let cmos = CmosConfig {
                ram_size: cfg.ram_size,
                floppies: fdc.kinds(),
                hard_disks,
                boot_order: cfg.boot_order.clone(),
                cpus: cfg.cpus,
            };
            let rtc = Rtc::new(&cmos, cfg.clock)?;
            m.isa_dma = Some(m.add_io_device(Box::new(Dma::new()), &[(0x00, 16), (0xC0, 32), (0x81, 15)]));
            m.add_io_device(Box::new(rtc), &[(0x70, 2)]);
            let kbc = I8042::new();
            let source = kbc.input_source();
            m.ps2 = Some((m.add_io_device(Box::new(kbc), &[(0x60, 1), (0x64, 1)]), source));
            m.add_io_device(Box::new(SysCtl::new()), &[(0x92, 1), (0xCF9, 1)]);
            m.fdc = Some(m.add_io_device(Box::new(fdc), &[(0x3F0, 6), (0x3F7, 1)]));
        }
        // Sound: a Sound Blaster 16 at 0x220 (IRQ 5, DMA 1, HDMA 5) and its OPL3, which also
        // answers at the AdLib's 0x388 (the PC speaker is the PIT's).
        {
            use crate::devices::{opl, sb16};
            m.add_io_device(Box::new(sb16::Sb16::new()), &sb16::PORTS);
            let fm = m.add_io_device(Box::new(opl::Opl::new()), &opl::ADLIB_PORTS);
            m.add_io_ports(fm, &opl::SB_PORTS);
        }
        m.add_pci_function(Box::new(I440fx::new()), devfn(0, 0));
        m.add_pci_function(Box::new(Piix3Isa::new()), devfn(1, 0));
        // IDE: the PIIX3's IDE function (00:01.1) with the configured drives, on the PC/AT's
        // legacy ports and IRQs 14/15 as well as its bus-master BAR.
        let ide = m.add_pci_function(Box::new(crate::devices::ide::PiixIde::new(cfg.ide)), crate::devices::ide::DEVFN);
        m.add_io_ports(ide, &crate::devices::ide::LEGACY_PORTS);
        m.ide = Some(ide);
        // VGA: the standard VGA PCI function at 00:02.0 (QEMU's stdvga, Bochs VBE) with its
        // legacy ports and the 0xA0000-0xBFFFF window.
        crate::devices::vga::attach(&mut m, cfg.vga_rom);
        // Firmware interface and power management: fw_cfg (0x510, DMA at 0x514) serving the
        // e820 map, boot order, ACPI and SMBIOS tables built from the configuration; the PIIX4
        // ACPI function (00:01.3) with its PM block wherever PMBA puts it, the APM ports 0xB2-0xB3
        // and QEMU's GPE0 block at 0xAFE0.
        m.add_io_device(Box::new(crate::devices::fw_cfg::FwCfg::for_platform(&platform, &m.firmware)), &crate::devices::fw_cfg::PORTS);
        let pm = m.add_pci_function(Box::new(crate::devices::piix4_pm::Piix4Pm::new()), crate::devices::piix4_pm::DEVFN);
        m.add_io_ports(pm, &crate::devices::piix4_pm::FIXED_PORTS);
        // The HPET at 0xFED00000 (the ACPI HPET table and the DSDT's PNP0103 describe it).
        {
            use crate::devices::hpet::{Hpet, BASE, LEN};
            m.hpet = Some(m.add_mmio_device(Box::new(Hpet::new()), BASE, LEN));
        }
        m.power_on();
        Ok(m)
    }

    /// Attaches a device to the given port ranges (first port, count). Returns its index.
    pub fn add_io_device(&mut self, dev: Box<dyn Device>, ranges: &[(u16, u16)]) -> usize {
        let idx = self.devices.len();
        self.devices.push(dev);
        self.deadlines.push(None);
        for &(start, count) in ranges {
            for p in start..start + count {
                self.ports[p as usize] = PortOwner::Device(idx as u16);
            }
        }
        idx
    }

    /// Claims more port ranges (first port, count) for device `idx`: the fixed legacy ports of
    /// a PCI function, which decode whatever its BARs say.
    pub fn add_io_ports(&mut self, idx: usize, ranges: &[(u16, u16)]) {
        for &(start, count) in ranges {
            for p in start..start + count {
                self.ports[p as usize] = PortOwner::Device(idx as u16);
            }
        }
    }

    /// Attaches a device to a guest-physical MMIO range. Ranges must not overlap.
    pub fn add_mmio_device(&mut self, dev: Box<dyn Device>, start: u64, len: u64) -> usize {
        let idx = self.devices.len();
        self.devices.push(dev);
        self.deadlines.push(None);
        self.mmio.push(MmioRange { start, len, device: idx, bar: None });
        self.mmio.sort_by_key(|r| r.start);
        idx
    }

    /// Routes a fixed guest-physical range to an attached device (the VGA's 0xA0000 window).
    /// Ranges must not overlap.
    pub fn add_mmio_range(&mut self, idx: usize, start: u64, len: u64) {
        self.mmio.push(MmioRange { start, len, device: idx, bar: None });
        self.mmio.sort_by_key(|r| r.start);
    }

    /// The display adapter (the first device that drives a screen), for frames and screen text.
    pub fn display(&mut self) -> Option<&mut dyn crate::display::Display> {
        self.deliver_device_writes();
        let i = self.devices.iter_mut().position(|d| d.as_display().is_some())?;
        self.devices[i].as_display()
    }

    /// Tells devices which pages of their directly mapped memory the guest wrote since they
    /// were last told (the write log of [`Memory::take_device_writes`]; under KVM the backend
    /// first adds its dirty log to it).
    pub fn deliver_device_writes(&mut self) {
        let mut pages = Vec::new();
        self.memory.take_device_writes(&mut pages);
        for (id, offset) in pages {
            if let Some(f) = self.devices.get_mut(id.device).and_then(|d| d.as_pci()) {
                f.direct_memory_written(id.bar, offset, crate::memory::PAGE_SIZE);
            }
        }
    }

    /// Sends everything the sound devices play from now on to `sink` as well. The first sink
    /// starts the mixer: from then on the devices render, and the board mixes every
    /// `audio::MIX_INTERVAL_NS` of virtual time.
    pub fn add_audio_sink(&mut self, sink: Box<dyn crate::audio::AudioSink>) {
        let now = self.clock.now();
        if self.mixer.is_none() {
            let mixer = crate::audio::Mixer::new(now);
            // Bring every source up to now with its stream off, then start it where the
            // mixer starts.
            for i in self.sound_devices() {
                self.with_device(i, |d, cx| {
                    if let Some(s) = d.as_sound() {
                        s.render(cx);
                        s.stream().set_enabled(true, mixer.start_position());
                    }
                });
            }
            self.mixer = Some(mixer);
            self.attention = true;
        }
        if let Some(m) = self.mixer.as_mut() {
            m.add_sink(sink);
        }
    }

    fn sound_devices(&mut self) -> Vec<usize> {
        (0..self.devices.len()).filter(|&i| self.devices[i].as_sound().is_some()).collect()
    }

    /// Renders and mixes what the sound devices played up to now.
    pub fn flush_audio(&mut self) {
        let Some(mut mixer) = self.mixer.take() else { return };
        let now = self.clock.now();
        let sources = self.sound_devices();
        for &i in &sources {
            self.with_device(i, |d, cx| {
                if let Some(s) = d.as_sound() {
                    s.render(cx);
                }
            });
        }
        let streams: Vec<&mut crate::audio::SoundStream> = self
            .devices
            .iter_mut()
            .filter_map(|d| d.as_sound())
            .map(|s| s.stream())
            .collect();
        mixer.mix(now, streams.into_iter());
        self.mixer = Some(mixer);
    }

    /// The run is over: mixes what is left and finishes the sinks (closing files). Returns
    /// the sinks' errors.
    pub fn finish_audio(&mut self) -> Vec<String> {
        self.flush_audio();
        self.mixer.as_mut().map_or_else(Vec::new, |m| m.finish())
    }

    /// Attaches a PCI function at `devfn` on bus 0 (the first one also claims the
    /// configuration ports). Its BARs are mapped when the guest programs and enables them.
    pub fn add_pci_function(&mut self, mut dev: Box<dyn Device>, devfn: DevFn) -> usize {
        assert!(dev.as_pci().is_some(), "{} is not a PCI function", dev.name());
        assert!(self.pci.iter().all(|&(f, _)| f != devfn), "PCI slot {devfn:#x} taken twice");
        // Ports a device already claimed stay its own: byte accesses to 0xCF9 belong to the
        // reset control register, while a 32-bit access at 0xCF8 (dispatched by its first
        // port) and 0xCFC-0xCFF stay configuration cycles.
        for p in 0xCF8..=0xCFF {
            if self.ports[p] == PortOwner::None {
                self.ports[p] = PortOwner::PciConfig;
            }
        }
        let idx = self.devices.len();
        self.devices.push(dev);
        self.deadlines.push(None);
        self.pci.push((devfn, idx));
        self.pci.sort();
        idx
    }

    fn pci_function(&mut self, devfn: DevFn) -> Option<usize> {
        self.pci.iter().find(|&&(f, _)| f == devfn).map(|&(_, i)| i)
    }

    fn pci_config_access(&mut self, port: u16, size: u8, write: Option<u32>) -> u32 {
        if port == 0xCF8 && size == 4 {
            if let Some(v) = write {
                self.pci_address = v & 0x80FF_FFFC;
            }
            return self.pci_address;
        }
        if port < 0xCFC {
            // Byte and word accesses to 0xCF8-0xCFB are not configuration cycles.
            return open_bus(size) as u32;
        }
        let a = self.pci_address;
        let bus = (a >> 16) & 0xFF;
        let target = ((a >> 8) & 0xFF) as DevFn;
        let offset = (a & 0xFC) as u16 + (port - 0xCFC);
        let idx = if a & 0x8000_0000 != 0 && bus == 0 { self.pci_function(target) } else { None };
        let Some(idx) = idx else {
            return open_bus(size) as u32;
        };
        match write {
            None => self.devices[idx].as_pci().map_or(u32::MAX, |f| f.config_read(offset, size)),
            Some(v) => {
                self.with_device(idx, |d, cx| {
                    if let Some(f) = d.as_pci() {
                        f.config_write(offset, size, v, cx);
                    }
                });
                self.remap_bars(idx);
                if target == PIIX3_ISA && (PIRQ_ROUTE..PIRQ_ROUTE + 4).contains(&offset) {
                    self.reroute_pirqs();
                }
                0
            }
        }
    }

    /// Maps a PCI function's BARs where its configuration space says they decode now.
    fn remap_bars(&mut self, idx: usize) {
        let Some(f) = self.devices[idx].as_pci() else { return };
        let mut maps = f.config().mappings();
        maps.extend(f.io_windows());
        // Memory BARs backed by plain memory are mapped directly as well (the MMIO range
        // below still serves what the direct mapping cannot: an overlap with other memory).
        let direct: Vec<_> = (0..ROM_INDEX)
            .filter_map(|bar| {
                let buf = f.direct_memory(bar)?;
                let at = maps.iter().find(|m| m.index == bar && m.kind != BarKind::Io);
                let size = at.map_or(buf.len() as u64, |m| m.size.min(buf.len() as u64));
                Some((bar, at.map(|m| m.base), buf.as_mut_ptr(), size))
            })
            .collect();
        for (bar, guest, host, size) in direct {
            self.memory.map_device_ram(DeviceRamId { device: idx, bar }, guest, host, size);
        }
        // Drop the old I/O BAR ports and MMIO ranges of this function.
        for (k, b) in self.io_bars.iter().enumerate() {
            if b.device == idx {
                for p in u32::from(b.base)..u32::from(b.base) + b.len {
                    if self.ports[p as usize] == PortOwner::Bar(k as u16) {
                        self.ports[p as usize] = PortOwner::None;
                    }
                }
            }
        }
        self.mmio.retain(|r| !(r.device == idx && r.bar.is_some()));
        for m in maps {
            match m.kind {
                BarKind::Io => {
                    let k = match self.io_bars.iter().position(|b| b.device == idx && b.bar == m.index) {
                        Some(k) => k,
                        None => {
                            self.io_bars.push(IoBar { base: 0, len: 0, device: idx, bar: m.index });
                            self.io_bars.len() - 1
                        }
                    };
                    self.io_bars[k].base = m.base as u16;
                    self.io_bars[k].len = m.size as u32;
                    for p in m.base..m.base + m.size {
                        match self.ports[p as usize] {
                            PortOwner::None | PortOwner::Bar(_) => self.ports[p as usize] = PortOwner::Bar(k as u16),
                            _ => tracing::debug!("PCI I/O BAR at {:#x} overlaps a fixed device's port; the device keeps it", p),
                        }
                    }
                }
                _ => {
                    self.mmio.push(MmioRange { start: m.base, len: m.size, device: idx, bar: Some(m.index) });
                }
            }
        }
        self.mmio.sort_by_key(|r| r.start);
        self.attention = true;
    }

    /// Recomputes which ISA IRQ each PIRQ line drives (after the PIIX3's route registers
    /// changed), moving asserted levels along.
    fn reroute_pirqs(&mut self) {
        for pirq in 0..4 {
            let new = self.pirq_target(pirq);
            if new != self.pirq_irq[pirq] {
                let asserted = !self.pirq_assert[pirq].is_empty();
                if asserted {
                    if let Some(old) = self.pirq_irq[pirq] {
                        self.drive_pci_isa(old, pirq, false);
                    }
                }
                self.pirq_irq[pirq] = new;
                if asserted {
                    if let Some(n) = new {
                        self.drive_pci_isa(n, pirq, true);
                    }
                }
            }
        }
    }

    fn pirq_target(&mut self, pirq: usize) -> Option<u8> {
        let idx = self.pci_function(PIIX3_ISA)?;
        let v = self.devices[idx].as_pci()?.config().get8(PIRQ_ROUTE + pirq as u16);
        // Bit 7 disables the routing; IRQs 0-2, 8 and 13 are reserved.
        let irq = v & 0xF;
        (v & 0x80 == 0 && !matches!(irq, 0 | 1 | 2 | 8 | 13)).then_some(irq)
    }

    /// Sets the PCI contribution of `pirq` to ISA line `irq` (PCI lines are wired-OR).
    fn drive_pci_isa(&mut self, irq: u8, pirq: usize, level: bool) {
        let others = (0..4).any(|p| p != pirq && self.pirq_irq[p] == Some(irq) && !self.pirq_assert[p].is_empty());
        let level = level || others;
        let bit = 1u16 << irq;
        if level != (self.pci_isa_level & bit != 0) {
            self.pci_isa_level ^= bit;
            let isa = self.isa_drivers.get(usize::from(irq)).is_some_and(|&m| m != 0);
            self.isa_line(irq, level || isa);
        }
    }

    /// Device `from` (an index in `devices`) drives interrupt line `line` to `level`; the line
    /// is high while any device or PCI interrupt drives it.
    fn device_line(&mut self, from: Option<usize>, line: u8, level: bool) {
        let Some(mask) = self.isa_drivers.get_mut(usize::from(line)) else {
            tracing::debug!("interrupt line {line} does not exist; ignored");
            return;
        };
        let bit = 1u64 << from.unwrap_or(63).min(63);
        if level {
            *mask |= bit;
        } else {
            *mask &= !bit;
        }
        let pci = line < 16 && self.pci_isa_level & (1 << line) != 0;
        let effective = *mask != 0 || pci;
        self.isa_line(line, effective);
    }

    /// An ISA interrupt line (0-15) changed level: it reaches the 8259A pair and the I/O APIC.
    /// Lines 16-23 exist only on the I/O APIC.
    fn isa_line(&mut self, line: u8, level: bool) {
        if line < 16 {
            self.pic.set_irq(line, level);
        }
        let pin = if line < 16 { IoApic::pin_of_isa(line) } else { line as usize };
        if line != 2 {
            if let Some(m) = self.ioapic.set_pin(pin, level) {
                self.deliver_message(m);
            }
        }
    }

    /// Sends an interrupt message to the local APICs it addresses.
    fn deliver_message(&mut self, m: Message) {
        let targets: Vec<usize> = (0..self.lapics.len()).filter(|&i| self.lapics[i].matches(m.logical, m.dest)).collect();
        self.deliver_to(&m, &targets);
    }

    fn deliver_to(&mut self, m: &Message, targets: &[usize]) {
        match m.delivery {
            apic_delivery::LOWEST => {
                // Lowest priority: any one of them; the first is as good as the rest here.
                if let Some(&i) = targets.first() {
                    self.lapics[i].accept(m);
                }
            }
            apic_delivery::INIT | apic_delivery::STARTUP => {
                for &i in targets {
                    self.events.push(if m.delivery == apic_delivery::INIT {
                        MachineEvent::Init { cpu: i as u32 }
                    } else {
                        MachineEvent::Startup { cpu: i as u32, vector: m.vector }
                    });
                }
            }
            _ => {
                for &i in targets {
                    self.lapics[i].accept(m);
                }
            }
        }
        self.attention = true;
    }

    /// Applies what a local APIC register write asks of the board.
    fn lapic_effects(&mut self, cpu: usize, fx: LapicEffects) {
        if let Some(v) = fx.eoi {
            for m in self.ioapic.eoi(v) {
                self.deliver_message(m);
            }
        }
        if let Some((m, sh)) = fx.ipi {
            let n = self.lapics.len();
            let targets: Vec<usize> = match sh {
                Shorthand::None => (0..n).filter(|&i| self.lapics[i].matches(m.logical, m.dest)).collect(),
                Shorthand::SelfOnly => vec![cpu],
                Shorthand::All => (0..n).collect(),
                Shorthand::AllButSelf => (0..n).filter(|&i| i != cpu).collect(),
            };
            self.deliver_to(&m, &targets);
        }
        if fx.timer_changed {
            self.attention = true;
        }
    }

    /// Chooses the processor whose local APIC the next accesses and interrupt checks concern.
    pub fn set_current_cpu(&mut self, cpu: usize) {
        self.current_cpu = cpu.min(self.lapics.len() - 1);
    }

    pub fn cpu_count(&self) -> usize {
        self.lapics.len()
    }

    /// INIT reached processor `cpu`: its local APIC returns to its power-up state but for
    /// its ID and IA32_APIC_BASE (SDM 3A 10.4.7.3). The processor itself is the backend's.
    pub fn init_cpu(&mut self, cpu: usize) {
        let Some(l) = self.lapics.get(cpu) else { return };
        let (id, base) = (l.id(), l.base);
        let mut fresh = Lapic::new(id, base & crate::apic::lapic::APIC_BASE_BSP != 0);
        fresh.base = base;
        self.lapics[cpu] = fresh;
        self.attention = true;
    }

    /// The current processor's local APIC ID.
    pub fn current_apic_id(&self) -> u8 {
        self.lapics[self.current_cpu].id()
    }

    /// IA32_TSC_DEADLINE of the current processor was written: its timer fires at virtual
    /// time `at_ns` (`None` disarms) if it is in TSC-deadline mode.
    pub fn set_tsc_deadline(&mut self, at_ns: Option<u64>) {
        self.lapics[self.current_cpu].set_tsc_deadline(at_ns);
        self.attention = true;
    }

    /// The current processor's IA32_APIC_BASE.
    pub fn apic_base(&self) -> u64 {
        self.lapics[self.current_cpu].base
    }

    /// Writes the current processor's IA32_APIC_BASE; false if the value is refused.
    pub fn set_apic_base(&mut self, v: u64) -> bool {
        let ok = self.lapics[self.current_cpu].write_base(v);
        self.attention = true;
        ok
    }

    pub fn tpr(&self) -> u8 {
        self.lapics[self.current_cpu].tpr()
    }

    pub fn set_tpr(&mut self, v: u8) {
        self.lapics[self.current_cpu].set_tpr(v);
    }

    /// Takes an NMI waiting for the current processor.
    pub fn take_nmi(&mut self) -> bool {
        self.lapics[self.current_cpu].take_nmi()
    }

    /// The local APIC register window of the current processor, if `addr` falls in it.
    /// How many times the guest read or wrote a local APIC register through its MMIO page
    /// (each an exit to userspace under KVM, where the machine's APICs live).
    pub fn lapic_accesses(&self) -> u64 {
        self.lapic_accesses
    }

    fn lapic_window(&self, addr: u64) -> Option<u64> {
        let l = &self.lapics[self.current_cpu];
        let base = l.base & 0x0000_00FF_FFFF_F000;
        (l.globally_enabled() && addr >= base && addr < base + 0x1000).then(|| addr - base)
    }

    /// A PCI function at `idx` drove its INTx# pin.
    fn pci_intx(&mut self, idx: usize, level: bool) {
        let Some(&(devfn, _)) = self.pci.iter().find(|&&(_, i)| i == idx) else { return };
        let pin = self.devices[idx].as_pci().map_or(0, |f| f.config().interrupt_pin());
        if pin == 0 {
            return;
        }
        let pirq = pirq_of(devfn, pin);
        let list = &mut self.pirq_assert[pirq];
        let was = !list.is_empty();
        if level {
            if !list.contains(&idx) {
                list.push(idx);
            }
        } else {
            list.retain(|&i| i != idx);
        }
        let now = !self.pirq_assert[pirq].is_empty();
        if was != now {
            if let Some(irq) = self.pirq_target(pirq) {
                self.pirq_irq[pirq] = Some(irq);
                self.drive_pci_isa(irq, pirq, now);
            }
        }
    }

    /// What firmware tables describe (RAM, processors, drives).
    pub fn platform(&self) -> &crate::firmware::Platform {
        &self.platform
    }

    /// The medium in a drive, for firmware that reads and writes drives itself (see
    /// `Device::drive_media`).
    pub fn drive_media(&mut self, slot: DriveSlot) -> Option<&mut (dyn BlockDevice + 'static)> {
        let (idx, unit) = match slot {
            DriveSlot::Ide(u) => (self.ide?, u),
            DriveSlot::Floppy(u) => (self.fdc?, u),
        };
        self.devices[idx].drive_media(unit)
    }

    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    pub fn memory_mut(&mut self) -> &mut Memory {
        &mut self.memory
    }

    /// A handle through which a host window feeds the PS/2 keyboard and mouse (see
    /// `devices::i8042::Ps2Input`). The controller polls it every 10 ms while any is held.
    pub fn ps2_input(&mut self) -> Option<crate::devices::i8042::Ps2Input> {
        let (idx, source) = self.ps2.clone()?;
        let handle = source.handle()?;
        // Tick the controller now so it starts polling.
        self.deadlines[idx] = Some(self.clock.now());
        self.attention = true;
        Some(handle)
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn clock_mut(&mut self) -> &mut Clock {
        &mut self.clock
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Runs `f` on device `idx` with a context, then routes what it raised.
    fn with_device<R>(&mut self, idx: usize, f: impl FnOnce(&mut dyn Device, &mut DeviceContext) -> R) -> R {
        let now = self.clock.now();
        let mut deadline = self.deadlines[idx];
        // ISA DMA: every device but the 8237 pair itself gets its channels, run against guest
        // memory (`Memory::write` tells the CPU which pages changed).
        let (dev, dma) = crate::devices::dma::split_for_dma(&mut self.devices, idx, self.isa_dma);
        let mut bus = dma.map(|dma| crate::devices::dma::IsaDmaBus { dma, memory: &mut self.memory });
        let mut cx = DeviceContext::new(now, &mut self.irqs, &mut self.events, &mut deadline);
        if let Some(bus) = bus.as_mut() {
            cx = cx.with_dma(bus);
        }
        let r = f(dev, &mut cx);
        self.serve_bus_master(idx, &mut deadline);
        self.serve_memory_transfer(idx, &mut deadline);
        if deadline != self.deadlines[idx] {
            self.deadlines[idx] = deadline;
            self.attention = true;
        }
        self.route(Some(idx));
        r
    }

    /// PCI bus mastering (see `PciFunction::bus_master_pending`): a function whose guest just
    /// started a DMA transfer runs it here, with guest memory lent for the call. The CPU is
    /// then asked to stop, so it drops code decoded from pages the transfer overwrote before
    /// it runs on.
    fn serve_bus_master(&mut self, idx: usize, deadline: &mut Option<u64>) {
        let Some(f) = self.devices[idx].as_pci() else { return };
        if f.bus_master_pending() {
            let mut cx = DeviceContext::new(self.clock.now(), &mut self.irqs, &mut self.events, deadline);
            f.run_bus_master(&mut self.memory, &mut cx);
            self.attention = true;
        }
    }

    /// The same for a device that is not a PCI function (`Device::memory_transfer_pending`).
    fn serve_memory_transfer(&mut self, idx: usize, deadline: &mut Option<u64>) {
        if self.devices[idx].memory_transfer_pending() {
            let mut cx = DeviceContext::new(self.clock.now(), &mut self.irqs, &mut self.events, deadline);
            self.devices[idx].run_memory_transfer(&mut self.memory, &mut cx);
            self.attention = true;
        }
    }

    fn route(&mut self, from: Option<usize>) {
        let irqs = std::mem::take(&mut self.irqs);
        for &(line, level) in &irqs {
            match (line, from) {
                (INTX, Some(idx)) => self.pci_intx(idx, level),
                (INTX, None) => {}
                (l, _) if crate::devices::hpet::LegacyRoute::switches(l) => {
                    let from_hpet = from.is_some() && from == self.hpet;
                    if let Some(level) = self.legacy_route.drive(from_hpet, line, level) {
                        self.isa_line(line, level);
                    }
                }
                _ => self.device_line(from, line, level),
            }
        }
        self.irqs = irqs;
        self.irqs.clear();
        if !self.events.is_empty() {
            self.attention = true;
            let events = std::mem::take(&mut self.events);
            for e in &events {
                match *e {
                    MachineEvent::A20(on) => self.memory.set_a20(on),
                    MachineEvent::Pam { segment, read_ram, write_ram } => {
                        self.memory.set_pam(segment as usize, PamMode { read_ram, write_ram })
                    }
                    MachineEvent::LegacyReplacement(on) => {
                        for (line, level) in self.legacy_route.set_enabled(on) {
                            self.isa_line(line, level);
                        }
                    }
                    _ => {}
                }
            }
            // Only events the run loop acts on stay queued for it (after any that delivering
            // an interrupt just queued).
            let raised = std::mem::replace(&mut self.events, events);
            self.events.extend(raised);
            self.events.retain(|e| !matches!(e, MachineEvent::Pam { .. } | MachineEvent::LegacyReplacement(_)));
        }
    }

    pub fn io_read(&mut self, port: u16, size: u8) -> u32 {
        match self.ports[port as usize] {
            PortOwner::None => {
                tracing::trace!(port = format_args!("{port:#x}"), size, "read from unassigned port");
                open_bus(size) as u32
            }
            PortOwner::Pic => self.pic.read(port) as u32 | if size > 1 { 0xFFFF_FF00 & open_bus(size) as u32 } else { 0 },
            PortOwner::Device(i) => self.with_device(i as usize, |d, cx| d.io_read(port, size, cx)),
            PortOwner::PciConfig => self.pci_config_access(port, size, None),
            PortOwner::BiosService => open_bus(size) as u32,
            PortOwner::Bar(k) => {
                let b = self.io_bars[k as usize];
                let off = u64::from(port - b.base);
                self.with_device(b.device, |d, cx| d.as_pci().map_or(u64::MAX, |f| f.bar_read(b.bar, off, size, cx))) as u32
            }
        }
    }

    pub fn io_write(&mut self, port: u16, size: u8, value: u32) {
        match self.ports[port as usize] {
            PortOwner::None => {
                tracing::trace!(port = format_args!("{port:#x}"), size, value, "write to unassigned port");
            }
            PortOwner::Pic => {
                self.pic.write(port, value as u8);
                self.attention = true;
            }
            PortOwner::Device(i) => self.with_device(i as usize, |d, cx| d.io_write(port, size, value, cx)),
            PortOwner::PciConfig => {
                self.pci_config_access(port, size, Some(value));
            }
            PortOwner::BiosService => {
                if size == 4 {
                    crate::firmware::bios::service(self, value);
                } else {
                    tracing::debug!(size, value, "BIOS service port: not a 32-bit write, ignored");
                }
                // The service may have written guest memory (the CPU drops code decoded from
                // it) or reprogrammed devices.
                self.attention = true;
            }
            PortOwner::Bar(k) => {
                let b = self.io_bars[k as usize];
                let off = u64::from(port - b.base);
                self.with_device(b.device, |d, cx| {
                    if let Some(f) = d.as_pci() {
                        f.bar_write(b.bar, off, size, u64::from(value), cx)
                    }
                })
            }
        }
    }

    fn mmio_find(&self, addr: u64) -> Option<(usize, u64, Option<u8>)> {
        let i = self.mmio.partition_point(|r| r.start <= addr);
        let r = self.mmio.get(i.checked_sub(1)?)?;
        (addr - r.start < r.len).then_some((r.device, addr - r.start, r.bar))
    }

    pub fn mmio_read(&mut self, addr: u64, size: u8) -> u64 {
        if let Some(off) = self.lapic_window(addr) {
            self.lapic_accesses += 1;
            let now = self.clock.now();
            return u64::from(self.lapics[self.current_cpu].read(off & !3, now)) >> (8 * (off & 3));
        }
        if (IOAPIC_BASE..IOAPIC_BASE + 0x1000).contains(&addr) {
            return u64::from(self.ioapic.mmio_read(addr - IOAPIC_BASE));
        }
        match self.mmio_find(addr) {
            Some((d, off, None)) => self.with_device(d, |d, cx| d.mmio_read(off, size, cx)),
            Some((d, off, Some(ROM_INDEX))) => {
                let rom = self.devices[d].as_pci().and_then(|f| f.rom());
                (0..u64::from(size)).fold(0, |v, k| {
                    let b = rom.and_then(|r| r.get((off + k) as usize)).copied().unwrap_or(0xFF);
                    v | (u64::from(b) << (8 * k))
                })
            }
            Some((d, off, Some(bar))) => {
                self.with_device(d, |d, cx| d.as_pci().map_or(open_bus(size), |f| f.bar_read(bar, off, size, cx)))
            }
            None => {
                tracing::trace!(addr = format_args!("{addr:#x}"), size, "read from unassigned memory");
                open_bus(size)
            }
        }
    }

    pub fn mmio_write(&mut self, addr: u64, size: u8, value: u64) {
        if let Some(off) = self.lapic_window(addr) {
            self.lapic_accesses += 1;
            let now = self.clock.now();
            let cpu = self.current_cpu;
            let fx = self.lapics[cpu].write(off & !3, value as u32, now);
            self.lapic_effects(cpu, fx);
            return;
        }
        if (IOAPIC_BASE..IOAPIC_BASE + 0x1000).contains(&addr) {
            for m in self.ioapic.mmio_write(addr - IOAPIC_BASE, value as u32) {
                self.deliver_message(m);
            }
            self.attention = true;
            return;
        }
        match self.mmio_find(addr) {
            Some((d, off, None)) => self.with_device(d, |d, cx| d.mmio_write(off, size, value, cx)),
            Some((_, _, Some(ROM_INDEX))) => {}
            Some((d, off, Some(bar))) => {
                self.with_device(d, |d, cx| {
                    if let Some(f) = d.as_pci() {
                        f.bar_write(bar, off, size, value, cx)
                    }
                });
                // A directly mapped page written for the first time since the device was
                // told: from now on the CPU may write it directly.
                self.memory.log_device_write(addr, u64::from(size));
            }
            None => {
                // A write to a read-only mapping: shadow RAM takes it if the chipset says so.
                let bytes = value.to_le_bytes();
                if !self.memory.write_shadow(addr, &bytes[..size as usize]) {
                    tracing::trace!(addr = format_args!("{addr:#x}"), size, value, "write to ROM or unassigned memory");
                }
            }
        }
    }

    /// Is a maskable interrupt waiting for the current CPU: from its local APIC, or from the
    /// 8259A through LINT0 (virtual wire) or with the APIC off?
    pub fn intr_pending(&self) -> bool {
        let l = &self.lapics[self.current_cpu];
        l.pending().is_some() || (self.current_cpu == 0 && l.accepts_pic() && self.pic.intr_pending())
    }

    /// Interrupt acknowledge: the vector to deliver (APIC interrupts first, as the local
    /// APIC answers INTA for them).
    pub fn intr_ack(&mut self) -> Option<u8> {
        let cpu = self.current_cpu;
        if let Some(v) = self.lapics[cpu].ack() {
            return Some(v);
        }
        (cpu == 0 && self.lapics[cpu].accepts_pic() && self.pic.intr_pending()).then(|| self.pic.acknowledge())
    }

    /// The earliest deadline any device (or local APIC timer) asked for.
    pub fn next_deadline(&self) -> Option<u64> {
        let devices = self.deadlines.iter().flatten().copied().min();
        let timers = self.lapics.iter().filter_map(|l| l.deadline()).min();
        let mix = self.mixer.as_ref().map(|m| m.next_mix);
        [devices, timers, mix].into_iter().flatten().min()
    }

    /// Ticks every device whose deadline has come.
    pub fn run_timers(&mut self) {
        let now = self.clock.now();
        for l in &mut self.lapics {
            if l.deadline().is_some_and(|t| t <= now) {
                l.timer_expired(now);
                self.attention = true;
            }
        }
        for i in 0..self.devices.len() {
            if matches!(self.deadlines[i], Some(t) if t <= now) {
                self.deadlines[i] = None;
                self.with_device(i, |d, cx| d.tick(cx));
            }
        }
        if self.mixer.as_ref().is_some_and(|m| m.next_mix <= now) {
            self.flush_audio();
        }
    }

    /// Takes and clears the "look at me" flag: a device raised an event, changed a deadline or
    /// the interrupt controller was reprogrammed since the last call.
    pub fn take_attention(&mut self) -> bool {
        std::mem::take(&mut self.attention)
    }

    pub fn take_events(&mut self) -> Vec<MachineEvent> {
        std::mem::take(&mut self.events)
    }

    /// The run is over: every device makes what the guest wrote durable on the host (disk
    /// images are flushed; they close when the machine is dropped).
    pub fn flush_media(&mut self) {
        for d in &mut self.devices {
            d.flush_media();
        }
    }

    /// Power-on reset of every device (memory contents are kept, as on a warm reset).
    pub fn reset(&mut self) {
        self.pic.reset();
        for d in &mut self.devices {
            d.reset();
        }
        self.ioapic.reset();
        let n = self.lapics.len();
        self.lapics = (0..n).map(|i| Lapic::new(i as u8, i == 0)).collect();
        self.current_cpu = 0;
        self.pci_address = 0;
        self.pirq_assert = Default::default();
        self.pirq_irq = [None; 4];
        self.pci_isa_level = 0;
        self.legacy_route = Default::default();
        self.isa_drivers = [0; 24];
        for i in 0..self.devices.len() {
            self.remap_bars(i);
        }
        for k in 0..crate::memory::PAM_SEGMENTS {
            self.memory.set_pam(k, PamMode::default());
        }
        self.deadlines.iter_mut().for_each(|d| *d = None);
        self.memory.set_a20(true);
        self.power_on();
        if let Some(boot) = self.direct_boot.take() {
            boot.load(self);
            self.direct_boot = Some(boot);
        }
    }

    /// The ACPI and SMBIOS tables, as fw_cfg serves them.
    pub fn firmware_tables(&self) -> &crate::firmware::FirmwareTables {
        &self.firmware
    }

    /// Boots `boot` directly: leaves the machine as a BIOS leaves it after POST, loads the
    /// kernel and returns the processor state to start it with. Every later reset does the
    /// same again (a PC would run its firmware, which would load the kernel again).
    pub fn set_direct_boot(&mut self, boot: crate::firmware::boot::DirectBoot) -> crate::firmware::boot::EntryState {
        let entry = boot.load(self);
        self.direct_boot = Some(Box::new(boot));
        entry
    }

    fn power_on(&mut self) {
        for i in 0..self.devices.len() {
            self.with_device(i, |d, cx| d.power_on(cx));
        }
    }

    pub fn save(&self) -> MachineSnapshot {
        MachineSnapshot {
            version: 1,
            now: self.clock.now(),
            a20: self.memory.a20(),
            pic: self.pic.save(),
            devices: self.devices.iter().map(|d| d.save()).collect(),
            deadlines: self.deadlines.clone(),
            pci: PciSnapshot {
                address: self.pci_address,
                pirq_assert: self.pirq_assert.clone(),
                pirq_irq: self.pirq_irq,
                isa_level: self.pci_isa_level,
                isa_drivers: self.isa_drivers.to_vec(),
            },
            apic: Some(ApicSnapshot { ioapic: self.ioapic.save(), lapics: self.lapics.iter().map(|l| l.save()).collect() }),
            legacy_route: self.legacy_route.clone(),
        }
    }

    pub fn restore(&mut self, s: &MachineSnapshot) -> Result<(), MachineError> {
        if s.devices.len() != self.devices.len() || s.deadlines.len() != self.devices.len() {
            return Err(MachineError::DeviceCount { expected: self.devices.len(), found: s.devices.len() });
        }
        self.pic.restore(&s.pic)?;
        for (d, snap) in self.devices.iter_mut().zip(&s.devices) {
            d.restore(snap)?;
        }
        self.deadlines = s.deadlines.clone();
        self.clock.set(s.now);
        self.memory.set_a20(s.a20);
        self.pci_address = s.pci.address;
        self.pirq_assert = s.pci.pirq_assert.clone();
        self.pirq_irq = s.pci.pirq_irq;
        self.pci_isa_level = s.pci.isa_level;
        self.legacy_route = s.legacy_route.clone();
        self.isa_drivers = [0; 24];
        for (d, &v) in self.isa_drivers.iter_mut().zip(&s.pci.isa_drivers) {
            *d = v;
        }
        for i in 0..self.devices.len() {
            self.remap_bars(i);
        }
        if let Some(a) = &s.apic {
            if a.lapics.len() != self.lapics.len() {
                return Err(MachineError::DeviceCount { expected: self.lapics.len(), found: a.lapics.len() });
            }
            self.ioapic.restore(&a.ioapic)?;
            for (l, snap) in self.lapics.iter_mut().zip(&a.lapics) {
                l.restore(snap)?;
            }
        }
        Ok(())
    }
}
