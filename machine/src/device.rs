//! The device trait (Firecracker's `BusDevice` is the model) and the context a device gets in
//! each call. Devices never hold references to each other or to the CPU: they raise interrupt
//! lines, ask for deadlines and report events through the context; the board routes them.

use serde::{Deserialize, Serialize};

/// The pseudo line number of a PCI function's INTx# pin in `DeviceContext::irqs`.
pub(crate) const INTX: u8 = 0xFF;

/// Something a device asks of the board beyond interrupts and deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MachineEvent {
    /// The guest asked to leave Ferrite with this status (the exit device).
    Exit(u8),
    /// Reset the whole machine (keyboard controller pulse, port 0xCF9, triple fault).
    Reset,
    /// Power off (ACPI S5): ends Ferrite with status 0.
    PowerOff,
    /// The A20 gate changed.
    A20(bool),
    /// The chipset changed how a PAM segment of 0xC0000-0xFFFFF is routed.
    Pam { segment: u8, read_ram: bool, write_ram: bool },
    /// An INIT IPI for processor `cpu`.
    Init { cpu: u32 },
    /// A startup IPI for processor `cpu`: start at `vector` << 12 in real mode.
    Startup { cpu: u32, vector: u8 },
    /// The HPET's LegacyReplacement Route went on or off: while on, ISA lines 0 and 8 carry
    /// HPET timers 0 and 1 instead of the 8254 and the RTC (the board switches them).
    LegacyReplacement(bool),
}

/// What a device sees of the board while it handles an access or a tick.
pub struct DeviceContext<'a> {
    /// Virtual time in nanoseconds.
    pub now: u64,
    pub(crate) irqs: &'a mut Vec<(u8, bool)>,
    pub(crate) events: &'a mut Vec<MachineEvent>,
    pub(crate) deadline: &'a mut Option<u64>,
    /// The ISA DMA channels, for devices other than the DMA controller itself.
    pub(crate) dma: Option<&'a mut (dyn IsaDma + 'a)>,
}

/// ISA DMA as a device on the ISA bus sees it: the DREQ/DACK handshake of one channel of the
/// 8237A pair, run by the board between the DMA controller's registers and guest memory. A
/// device asks for as much as it has (a sector); the channel takes what its count and mask
/// allow and says whether terminal count (the TC line) came with the last byte.
pub trait IsaDma {
    /// Device to memory (the 8237's "write" transfer): offers `data`.
    fn write_memory(&mut self, channel: u8, data: &[u8]) -> DmaTransfer;
    /// Memory to device (the 8237's "read" transfer): fills the front of `buf`.
    fn read_memory(&mut self, channel: u8, buf: &mut [u8]) -> DmaTransfer;
}

/// What a channel did with a device's request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaTransfer {
    /// Bytes moved (whole words on channels 5-7). Zero when the channel is masked, disabled
    /// or programmed for no transfer: the device's request stays unanswered.
    pub bytes: usize,
    /// The channel reached terminal count with the last byte moved.
    pub terminal_count: bool,
}



impl<'a> DeviceContext<'a> {
    pub fn new(
        now: u64,
        irqs: &'a mut Vec<(u8, bool)>,
        events: &'a mut Vec<MachineEvent>,
        deadline: &'a mut Option<u64>,
    ) -> Self {
        DeviceContext { now, irqs, events, deadline, dma: None }
    }
    /// Gives the device the ISA DMA channels (the board does this for every device but the
    /// DMA controller; tests pass a controller and a memory of their own).
    pub fn with_dma(mut self, dma: &'a mut (dyn IsaDma + 'a)) -> Self {
        self.dma = Some(dma);
        self
    }

    /// A DMA transfer from the device into memory on `channel` (nothing happens without DMA).
    pub fn dma_write(&mut self, channel: u8, data: &[u8]) -> DmaTransfer {
        match self.dma.as_mut() {
            Some(d) => d.write_memory(channel, data),
            None => DmaTransfer::default(),
        }
    }

    /// A DMA transfer from memory into the device on `channel`.
    pub fn dma_read(&mut self, channel: u8, buf: &mut [u8]) -> DmaTransfer {
        match self.dma.as_mut() {
            Some(d) => d.read_memory(channel, buf),
            None => DmaTransfer::default(),
        }
    }

    /// Drive ISA interrupt line `line` (0-15) to `level`; lines 16-23 are I/O APIC inputs
    /// with no 8259A behind them.
    pub fn set_irq(&mut self, line: u8, level: bool) {
        self.irqs.push((line, level));
    }

    /// Drive this PCI function's INTx# pin (the board routes it by slot and PIRQ).
    pub fn set_intx(&mut self, level: bool) {
        self.irqs.push((INTX, level));
    }

    /// An edge on an edge-triggered line: up, then down.
    pub fn pulse_irq(&mut self, line: u8) {
        self.irqs.push((line, true));
        self.irqs.push((line, false));
    }

    /// Ask to be ticked at virtual time `at` (replaces the earlier request), or never.
    pub fn set_deadline(&mut self, at: Option<u64>) {
        *self.deadline = at;
    }

    /// The deadline this device has asked for, if any.
    pub fn deadline(&self) -> Option<u64> {
        *self.deadline
    }

    pub fn event(&mut self, e: MachineEvent) {
        self.events.push(e);
    }
}

/// A device's saved state: plain data with the device's name and a format version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    pub name: String,
    pub version: u32,
    pub data: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is for device {found:?}, not {expected:?}")]
    WrongDevice { expected: String, found: String },
    #[error("{device}: snapshot version {found} is not supported (expected {expected})")]
    Version { device: String, expected: u32, found: u32 },
    #[error("{device}: malformed snapshot: {source}")]
    Malformed { device: String, source: serde_json::Error },
}

impl DeviceSnapshot {
    pub fn new<T: Serialize>(name: &str, version: u32, state: &T) -> DeviceSnapshot {
        DeviceSnapshot {
            name: name.to_string(),
            version,
            data: serde_json::to_value(state).expect("device state is plain data"),
        }
    }

    /// Checks name and version, then decodes the state.
    pub fn decode<T: for<'de> Deserialize<'de>>(&self, name: &str, version: u32) -> Result<T, SnapshotError> {
        if self.name != name {
            return Err(SnapshotError::WrongDevice { expected: name.into(), found: self.name.clone() });
        }
        if self.version != version {
            return Err(SnapshotError::Version { device: name.into(), expected: version, found: self.version });
        }
        serde_json::from_value(self.data.clone())
            .map_err(|source| SnapshotError::Malformed { device: name.into(), source })
    }
}

/// A device on the port and/or MMIO bus. Ports and MMIO offsets are given as the device was
/// registered: `port` is the absolute port number, `offset` is relative to the MMIO range.
pub trait Device: Send {
    fn name(&self) -> &'static str;

    /// A read from a port of this device. `size` is 1, 2 or 4. Unimplemented registers read as
    /// an empty bus does.
    fn io_read(&mut self, _port: u16, size: u8, _cx: &mut DeviceContext) -> u32 {
        open_bus(size) as u32
    }
    fn io_write(&mut self, _port: u16, _size: u8, _value: u32, _cx: &mut DeviceContext) {}
    fn mmio_read(&mut self, _offset: u64, size: u8, _cx: &mut DeviceContext) -> u64 {
        open_bus(size)
    }
    fn mmio_write(&mut self, _offset: u64, _size: u8, _value: u64, _cx: &mut DeviceContext) {}
    /// Called when virtual time reaches the deadline the device asked for.
    fn tick(&mut self, _cx: &mut DeviceContext) {}
    /// Called once when the machine is powered on and after each reset, after `reset`: the
    /// place to ask for a first deadline or drive initial line levels.
    fn power_on(&mut self, _cx: &mut DeviceContext) {}
    /// Back to the power-on state (host-side attachments such as a serial sink are kept).
    fn reset(&mut self);
    fn save(&self) -> DeviceSnapshot;
    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError>;
    /// The run is over: make what the guest wrote durable on the host (disk images are
    /// flushed). Failures are logged by the device.
    fn flush_media(&mut self) {}
    /// The PCI function behind this device, if it is one.
    fn as_pci(&mut self) -> Option<&mut dyn crate::pci::PciFunction> {
        None
    }
    /// The 8237A pair, if this device is it (the board runs other devices' DMA through it).
    fn as_isa_dma(&mut self) -> Option<&mut crate::devices::dma::Dma> {
        None
    }
    /// The screen this device drives, if it is a display adapter (the frontends' frames and
    /// screen text come from here).
    fn as_display(&mut self) -> Option<&mut dyn crate::display::Display> {
        None
    }
    /// The sound this device makes, if it makes any (the board mixes it, see `audio`).
    fn as_sound(&mut self) -> Option<&mut dyn crate::audio::SoundSource> {
        None
    }
    /// Guest memory access by a device that is not a PCI bus master (fw_cfg's DMA interface):
    /// whether a transfer the guest started is waiting. The board asks after every access to
    /// the device and every tick, then calls `run_memory_transfer` with the memory lent for
    /// the call, as it does for `PciFunction::run_bus_master`.
    fn memory_transfer_pending(&self) -> bool {
        false
    }
    /// Runs the waiting transfer through [`crate::Memory::read`] and [`crate::Memory::write`].
    fn run_memory_transfer(&mut self, _memory: &mut crate::Memory, _cx: &mut DeviceContext) {}
    /// The medium in drive `unit` of a storage controller (IDE: 0-3, primary master to
    /// secondary slave; floppy: 0-1), for firmware that moves sectors itself (Ferrite's BIOS)
    /// through the block backend the controller uses. `None` for an absent drive, an empty
    /// one, or a CD-ROM with its tray open.
    fn drive_media(&mut self, _unit: usize) -> Option<&mut (dyn crate::block::BlockDevice + 'static)> {
        None
    }
}

/// What a read of nothing returns: all ones, as the pulled-up ISA data bus gives.
pub fn open_bus(size: u8) -> u64 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        4 => 0xFFFF_FFFF,
        _ => u64::MAX,
    }
}
