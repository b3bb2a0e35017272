//! The board: owns memory, the clock and the devices, routes port and MMIO accesses to them,
//! interrupt lines to the interrupt controller, and deadlines to the backend's run loop.
//! Port I/O is a flat 65,536-entry table (Bochs, v86); MMIO is a sorted range map consulted
//! only on the CPU's slow path.

use crate::clock::{Clock, ClockMode};
use crate::device::{Device, DeviceContext, DeviceSnapshot, MachineEvent, SnapshotError};
use crate::devices::{debugcon::DebugCon, exit::ExitDevice, pic::DualPic, pit::Pit, uart::Uart};
use crate::host::CharBackend;
use crate::memory::{Memory, MemoryError};
use serde::{Deserialize, Serialize};

pub const COM1_PORT: u16 = 0x3F8;
pub const COM1_IRQ: u8 = 4;
pub const DEBUGCON_PORT: u16 = 0xE9;
pub const EXIT_PORT: u16 = 0xF4;

pub struct MachineConfig {
    pub ram_size: u64,
    pub bios: Vec<u8>,
    pub clock: ClockMode,
    pub serial: Box<dyn CharBackend>,
    pub debugcon: Box<dyn CharBackend>,
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("snapshot has {found} devices, this machine {expected}")]
    DeviceCount { expected: usize, found: usize },
}

/// Which handler a port belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PortOwner {
    None,
    Pic,
    Device(u16),
}

struct MmioRange {
    start: u64,
    len: u64,
    device: usize,
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
}

impl Machine {
    pub fn new(cfg: MachineConfig) -> Result<Machine, MachineError> {
        let memory = Memory::new(cfg.ram_size, &cfg.bios)?;
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
        };
        for p in [0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1] {
            m.ports[p] = PortOwner::Pic;
        }
        m.add_io_device(Box::new(Pit::new()), &[(0x40, 4), (0x61, 1)]);
        m.add_io_device(Box::new(Uart::new(COM1_IRQ, cfg.serial)), &[(COM1_PORT, 8)]);
        m.add_io_device(Box::new(DebugCon::new(cfg.debugcon)), &[(DEBUGCON_PORT, 1)]);
        m.add_io_device(Box::new(ExitDevice::new()), &[(EXIT_PORT, 1)]);
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

    /// Attaches a device to a guest-physical MMIO range. Ranges must not overlap.
    pub fn add_mmio_device(&mut self, dev: Box<dyn Device>, start: u64, len: u64) -> usize {
        let idx = self.devices.len();
        self.devices.push(dev);
        self.deadlines.push(None);
        self.mmio.push(MmioRange { start, len, device: idx });
        self.mmio.sort_by_key(|r| r.start);
        idx
    }

    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    pub fn memory_mut(&mut self) -> &mut Memory {
        &mut self.memory
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
        let mut cx = DeviceContext::new(now, &mut self.irqs, &mut self.events, &mut deadline);
        let r = f(self.devices[idx].as_mut(), &mut cx);
        if deadline != self.deadlines[idx] {
            self.deadlines[idx] = deadline;
            self.attention = true;
        }
        self.route();
        r
    }

    fn route(&mut self) {
        for (line, level) in self.irqs.drain(..) {
            self.pic.set_irq(line, level);
        }
        if !self.events.is_empty() {
            self.attention = true;
            for e in &self.events {
                if let MachineEvent::A20(on) = *e {
                    self.memory.set_a20(on);
                }
            }
        }
    }

    pub fn io_read(&mut self, port: u16, size: u8) -> u32 {
        match self.ports[port as usize] {
            PortOwner::None => {
                tracing::trace!(port = format_args!("{port:#x}"), size, "read from unassigned port");
                crate::device::open_bus(size) as u32
            }
            PortOwner::Pic => self.pic.read(port) as u32 | if size > 1 { 0xFFFF_FF00 & crate::device::open_bus(size) as u32 } else { 0 },
            PortOwner::Device(i) => self.with_device(i as usize, |d, cx| d.io_read(port, size, cx)),
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
        }
    }

    fn mmio_find(&self, addr: u64) -> Option<(usize, u64)> {
        let i = self.mmio.partition_point(|r| r.start <= addr);
        let r = self.mmio.get(i.checked_sub(1)?)?;
        (addr - r.start < r.len).then_some((r.device, addr - r.start))
    }

    pub fn mmio_read(&mut self, addr: u64, size: u8) -> u64 {
        match self.mmio_find(addr) {
            Some((d, off)) => self.with_device(d, |d, cx| d.mmio_read(off, size, cx)),
            None => {
                tracing::trace!(addr = format_args!("{addr:#x}"), size, "read from unassigned memory");
                crate::device::open_bus(size)
            }
        }
    }

    pub fn mmio_write(&mut self, addr: u64, size: u8, value: u64) {
        match self.mmio_find(addr) {
            Some((d, off)) => self.with_device(d, |d, cx| d.mmio_write(off, size, value, cx)),
            None => {
                // A write to a read-only mapping: shadow RAM takes it if the chipset says so.
                let bytes = value.to_le_bytes();
                if !self.memory.write_shadow(addr, &bytes[..size as usize]) {
                    tracing::trace!(addr = format_args!("{addr:#x}"), size, value, "write to ROM or unassigned memory");
                }
            }
        }
    }

    /// Is a maskable interrupt waiting for the CPU?
    pub fn intr_pending(&self) -> bool {
        self.pic.intr_pending()
    }

    /// Interrupt acknowledge: the vector to deliver.
    pub fn intr_ack(&mut self) -> Option<u8> {
        self.pic.intr_pending().then(|| self.pic.acknowledge())
    }

    /// The earliest deadline any device asked for.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.iter().flatten().copied().min()
    }

    /// Ticks every device whose deadline has come.
    pub fn run_timers(&mut self) {
        let now = self.clock.now();
        for i in 0..self.devices.len() {
            if matches!(self.deadlines[i], Some(t) if t <= now) {
                self.deadlines[i] = None;
                self.with_device(i, |d, cx| d.tick(cx));
            }
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

    /// Power-on reset of every device (memory contents are kept, as on a warm reset).
    pub fn reset(&mut self) {
        self.pic.reset();
        for d in &mut self.devices {
            d.reset();
        }
        self.deadlines.iter_mut().for_each(|d| *d = None);
        self.memory.set_a20(true);
        self.power_on();
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
        Ok(())
    }
}
