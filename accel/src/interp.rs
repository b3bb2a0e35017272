//! The interpreter backend: the `cpu` crate's [`cpu::Cpu`] running against the machine.

use crate::{AccelError, Backend, Exit};
use cpu::{Bus, CodeEvents, CpuState, PageMapping, Stop};
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

/// With more than one processor, the longest run of one before the next gets its turn, in
/// instructions (40 us of deterministic time). A processor also gives way early at PAUSE,
/// as spinlocks spin, and when it halts.
const QUANTUM: u64 = 10_000;

/// The processors of the machine, time-sliced on the calling thread: each runs in turn for
/// up to a quantum, the virtual clock moving on with each, so a run is reproducible in
/// deterministic mode. Every instruction completes before another processor runs, so
/// LOCK-prefixed instructions are atomic and memory is sequentially consistent: stronger
/// than x86's ordering, which permits nothing this model cannot show.
pub struct Interp {
    cpus: Vec<Vcpu>,
    /// Instructions retired by all runs so far.
    retired: u64,
    /// The processor whose turn comes next (a run may end in the middle of a round).
    next: usize,
    /// Scratch lists, kept for their allocations.
    written: Vec<u64>,
    events: CodeEvents,
}

struct Vcpu {
    cpu: cpu::Cpu,
    /// CPUID and the random-number seed were set from the machine.
    configured: bool,
    /// Physical pages written by DMA and loaders that this processor has not looked at.
    dma: Vec<u64>,
    /// What the other processors did to code pages since this one last ran.
    code: CodeEvents,
    /// A state was loaded: its TSC holds at the time of the next run.
    anchor: bool,
}

impl Vcpu {
    fn new(index: usize) -> Vcpu {
        let mut cpu = cpu::Cpu::new();
        if index > 0 {
            cpu.set_state(&application_processor());
        }
        Vcpu { cpu, configured: false, dma: Vec::new(), code: CodeEvents::default(), anchor: true }
    }

    /// Neither halted nor waiting for a STARTUP IPI.
    fn runnable(&self) -> bool {
        !self.cpu.is_halted() && !self.cpu.is_waiting_for_sipi()
    }
}

/// An application processor at power-on: waiting for INIT and a STARTUP IPI.
pub fn application_processor() -> CpuState {
    CpuState { wait_for_sipi: true, apic_base: 0xFEE0_0800, ..CpuState::default() }
}

impl Interp {
    pub fn new() -> Interp {
        Interp { cpus: vec![Vcpu::new(0)], retired: 0, next: 0, written: Vec::new(), events: CodeEvents::default() }
    }

    /// The bootstrap processor's interpreter.
    pub fn cpu(&mut self) -> &mut cpu::Cpu {
        &mut self.cpus[0].cpu
    }

    /// Processor `i`, made (waiting for a STARTUP IPI) if the machine has that many and it
    /// was not there yet.
    fn vcpu(&mut self, i: usize) -> &mut Vcpu {
        while self.cpus.len() <= i {
            let n = self.cpus.len();
            self.cpus.push(Vcpu::new(n));
        }
        &mut self.cpus[i]
    }

    /// Runs processor `i` for at most `budget` instructions.
    fn run_one(&mut self, m: &mut Machine, i: usize, budget: u64, until: u64) -> cpu::RunResult {
        let deterministic = m.clock().is_deterministic();
        let n = self.cpus.len();
        m.set_current_cpu(i);
        // DMA and loader writes go to every processor's list; each drops its code there.
        m.memory_mut().take_written(&mut self.written);
        if !self.written.is_empty() {
            for v in &mut self.cpus {
                v.dma.extend_from_slice(&self.written);
            }
            self.written.clear();
        }
        let others_runnable = (0..n).any(|j| j != i && self.cpus[j].runnable());
        let v = &mut self.cpus[i];
        if !v.configured {
            // The machine gives every processor a local APIC with TSC-deadline mode.
            v.cpu.configure(cpu::CpuConfig {
                apic: true,
                tsc_deadline: true,
                apic_id: m.current_apic_id(),
                cpus: m.cpu_count().min(255) as u8,
            });
            if deterministic {
                // Identical runs must see identical "random" numbers too.
                v.cpu.set_random_seed(Some(0x5EED_F3E2_217E_0001 + ((i as u64) << 32)));
            }
            v.configured = true;
        }
        if !v.code.is_empty() {
            v.cpu.code_events_of_others(&v.code);
            v.code.clear();
        }
        v.cpu.set_yield_on_pause(others_runnable);
        let mut bus = MachineBus { m, deterministic, synced: 0, until, late: false, dma: &mut v.dma };
        let r = v.cpu.run(&mut bus, budget);
        let synced = bus.synced;
        if deterministic {
            m.clock_mut().advance(r.retired.saturating_sub(synced) * NS_PER_INSN);
        }
        self.retired += r.retired;
        if n > 1 {
            v.cpu.take_code_events(&mut self.events);
            if !self.events.is_empty() {
                for (j, o) in self.cpus.iter_mut().enumerate() {
                    if j != i {
                        o.code.decoded.extend_from_slice(&self.events.decoded);
                        o.code.written.extend_from_slice(&self.events.written);
                    }
                }
                self.events.clear();
            }
        }
        r
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
    /// Pages written by DMA and loaders that this processor has yet to see.
    dma: &'a mut Vec<u64>,
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
        let mem = self.m.memory();
        match mem.page(paddr) {
            Some((host, RegionKind::Ram)) => PageMapping::Ram { host },
            Some((host, RegionKind::Rom)) => PageMapping::Rom { host },
            // Device memory (the framebuffer): written directly once its write is logged;
            // until then the first write goes through the board, which logs it.
            Some((host, RegionKind::DeviceRam)) if mem.device_page_logged(paddr) => PageMapping::Ram { host },
            Some((host, RegionKind::DeviceRam)) => PageMapping::Rom { host },
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
        pages.append(self.dma)
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
        let n = m.cpu_count().max(1);
        self.vcpu(n - 1);
        self.cpus.truncate(n);
        let now = m.now();
        for v in self.cpus.iter_mut().filter(|v| v.anchor) {
            v.cpu.anchor_tsc(now);
            v.anchor = false;
        }
        // Processors in a row that had nothing to do; all of them: the machine is halted.
        let mut idle = 0;
        loop {
            let now = m.now();
            if now >= until {
                return Ok(Exit::Deadline);
            }
            let i = self.next;
            self.next = (i + 1) % n;
            let mut budget = if deterministic { ((until - now) / NS_PER_INSN).max(1) } else { REALTIME_SLICE };
            if n > 1 {
                budget = budget.min(QUANTUM);
            }
            let r = self.run_one(m, i, budget, until);
            match r.stop {
                Stop::Budget | Stop::Yield => idle = 0,
                Stop::Halted => {
                    // One that halted after running has had its look at pending interrupts.
                    idle = if r.retired > 0 { 1 } else { idle + 1 };
                    if idle >= n {
                        return Ok(Exit::Halted);
                    }
                }
                Stop::Bus => return Ok(Exit::Attention),
                Stop::Shutdown(why) => {
                    let who = if n > 1 { format!("processor {i}: ") } else { String::new() };
                    return Ok(Exit::Shutdown(format!("{who}{why}")));
                }
            }
        }
    }

    fn cpu_count(&self) -> usize {
        self.cpus.len()
    }

    fn state(&mut self, cpu: usize) -> CpuState {
        self.vcpu(cpu).cpu.state()
    }

    fn set_state(&mut self, cpu: usize, state: &CpuState) -> Result<(), AccelError> {
        let v = self.vcpu(cpu);
        v.cpu.set_state(state);
        v.anchor = true;
        Ok(())
    }

    fn set_state_keeping_tsc(&mut self, cpu: usize, state: &CpuState) -> Result<(), AccelError> {
        self.vcpu(cpu).cpu.set_state_keeping_tsc(state);
        Ok(())
    }

    fn halted(&mut self, cpu: usize) -> bool {
        let c = &self.vcpu(cpu).cpu;
        c.is_halted() || c.is_waiting_for_sipi()
    }

    fn interrupts_enabled(&mut self, cpu: usize) -> bool {
        let c = &self.vcpu(cpu).cpu;
        c.interrupts_enabled() && !c.is_waiting_for_sipi()
    }

    fn recent_instructions(&mut self, cpu: usize, _machine: &Machine) -> Vec<String> {
        self.vcpu(cpu).cpu.recent_instructions()
    }

    fn instructions_retired(&self) -> Option<u64> {
        Some(self.retired)
    }
}
