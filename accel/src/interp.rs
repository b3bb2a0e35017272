//! The interpreter backend: the `cpu` crate's [`cpu::Cpu`] running against the machine.

use crate::{AccelError, Backend, Exit};
use cpu::{Bus, CpuState, PageMapping, Stop};
use machine::{Machine, RegionKind};

/// Nominal speed of the deterministic clock: each retired instruction is this many virtual
/// nanoseconds (250 MIPS), close to what the interpreter really achieves.
pub const NS_PER_INSN: u64 = 4;
/// What a port access adds to the deterministic clock: about what an access to a legacy
/// device takes on a PC (an ISA/LPC cycle, the delay `outb` to port 0x80 stands for), far
/// more than an instruction. Code that times the hardware by its port accesses depends on
/// it: Linux's fast TSC calibration reads the 8254 back to back and expects each read to
/// take about a microsecond (the first read must outlast one 1.19 MHz clock for the count to
/// load). KVM and real-time runs pay what the host really takes.
pub const NS_PER_PORT_ACCESS: u64 = 1_000;
const MSR_APIC_BASE: u32 = 0x1B;

/// In real-time mode, how many instructions run between looks at the host clock.
const REALTIME_SLICE: u64 = 20_000;

pub struct Interp {
    cpu: cpu::Cpu,
    seeded: bool,
    /// Instructions retired by all runs so far.
    retired: u64,
    configured: bool,
}

impl Interp {
    pub fn new() -> Interp {
        Interp { cpu: cpu::Cpu::new(), seeded: false, retired: 0, configured: false }
    }

    pub fn cpu(&mut self) -> &mut cpu::Cpu {
        &mut self.cpu
    }
}

impl Default for Interp {
    fn default() -> Self {
        Interp::new()
    }
}

/// The machine as the CPU sees it.
struct MachineBus<'a> {
    m: &'a mut Machine,
    deterministic: bool,
    /// Instructions of this run already added to the deterministic clock (by `sync_time`).
    synced: u64,
    /// The deterministic run's end: when port accesses carry the clock past it, the CPU is
    /// asked to stop so the devices' deadlines are served on time.
    until: u64,
    /// Port accesses carried the clock to `until`.
    late: bool,
}

impl MachineBus<'_> {
    /// A port access takes its time on the deterministic clock.
    fn port_access(&mut self) {
        if self.deterministic {
            self.m.clock_mut().advance(NS_PER_PORT_ACCESS);
            self.late |= self.m.now() >= self.until;
        }
    }
}

impl Bus for MachineBus<'_> {
    fn map_page(&mut self, paddr: u64) -> PageMapping {
        match self.m.memory().page(paddr) {
            Some((host, RegionKind::Ram)) => PageMapping::Ram { host },
            Some((host, RegionKind::Rom)) => PageMapping::Rom { host },
            None => PageMapping::Mmio,
        }
    }
    fn map_generation(&self) -> u64 {
        self.m.memory().generation()
    }
    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64 {
        self.m.mmio_read(self.m.memory().a20_mask(paddr), size)
    }
    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        let a = self.m.memory().a20_mask(paddr);
        self.m.mmio_write(a, size, value)
    }
    fn io_read(&mut self, port: u16, size: u8) -> u32 {
        let v = self.m.io_read(port, size);
        self.port_access();
        v
    }
    fn io_write(&mut self, port: u16, size: u8, value: u32) {
        self.m.io_write(port, size, value);
        self.port_access();
    }
    fn intr_pending(&mut self) -> bool {
        self.m.intr_pending()
    }
    fn intr_ack(&mut self) -> Option<u8> {
        self.m.intr_ack()
    }
    fn wants_stop(&mut self) -> bool {
        self.m.take_attention() | std::mem::take(&mut self.late)
    }
    fn take_dma_writes(&mut self, pages: &mut Vec<u64>) {
        self.m.memory_mut().take_written(pages)
    }
    fn time_ns(&mut self, retired: u64) -> Option<u64> {
        // The deterministic clock moves before device accesses (`sync_time`) and at the end of
        // each run; in between, time is what the instructions retired since add to it.
        Some(if self.deterministic { self.m.now() + retired.saturating_sub(self.synced) * NS_PER_INSN } else { self.m.now() })
    }
    fn sync_time(&mut self, retired: u64) {
        if self.deterministic && retired > self.synced {
            self.m.clock_mut().advance((retired - self.synced) * NS_PER_INSN);
            self.synced = retired;
        }
    }
    fn set_tsc_deadline(&mut self, at_ns: Option<u64>) {
        self.m.set_tsc_deadline(at_ns)
    }
    fn msr_read(&mut self, msr: u32) -> Option<u64> {
        (msr == MSR_APIC_BASE).then(|| self.m.apic_base())
    }
    fn msr_write(&mut self, msr: u32, value: u64) -> Option<bool> {
        (msr == MSR_APIC_BASE).then(|| self.m.set_apic_base(value))
    }
    fn tpr(&mut self) -> Option<u8> {
        Some(self.m.tpr())
    }
    fn set_tpr(&mut self, tpr: u8) {
        self.m.set_tpr(tpr)
    }
    fn take_nmi(&mut self) -> bool {
        self.m.take_nmi()
    }
}

impl Backend for Interp {
    fn name(&self) -> &'static str {
        "interp"
    }

    fn run(&mut self, m: &mut Machine, until: u64) -> Result<Exit, AccelError> {
        let deterministic = m.clock().is_deterministic();
        if deterministic && !self.seeded {
            // Identical runs must see identical "random" numbers too.
            self.cpu.set_random_seed(Some(0x5EED_F3E2_217E_0001));
            self.seeded = true;
        }
        if !self.configured {
            // The machine gives every processor a local APIC with TSC-deadline mode.
            self.cpu.configure(cpu::CpuConfig {
                apic: true,
                tsc_deadline: true,
                apic_id: m.current_apic_id(),
                cpus: m.cpu_count().min(255) as u8,
            });
            self.configured = true;
        }
        loop {
            let now = m.now();
            if now >= until {
                return Ok(Exit::Deadline);
            }
            let budget = if deterministic { ((until - now) / NS_PER_INSN).max(1) } else { REALTIME_SLICE };
            let mut bus = MachineBus { m, deterministic, synced: 0, until, late: false };
            let r = self.cpu.run(&mut bus, budget);
            let synced = bus.synced;
            self.retired += r.retired;
            if deterministic {
                m.clock_mut().advance(r.retired.saturating_sub(synced) * NS_PER_INSN);
            }
            match r.stop {
                Stop::Budget => continue,
                Stop::Halted => return Ok(Exit::Halted),
                Stop::Bus => return Ok(Exit::Attention),
                Stop::Shutdown(why) => return Ok(Exit::Shutdown(why)),
            }
        }
    }

    fn state(&mut self) -> CpuState {
        self.cpu.state()
    }

    fn set_state(&mut self, state: &CpuState) -> Result<(), AccelError> {
        self.cpu.set_state(state);
        Ok(())
    }

    fn halted(&mut self) -> bool {
        self.cpu.is_halted()
    }

    fn interrupts_enabled(&mut self) -> bool {
        self.cpu.interrupts_enabled()
    }

    fn recent_instructions(&mut self, _machine: &Machine) -> Vec<String> {
        self.cpu.recent_instructions()
    }

    fn instructions_retired(&self) -> Option<u64> {
        Some(self.retired)
    }
}
