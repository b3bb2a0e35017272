//! The processor: architectural state plus the interpreter's caches, and the run loop that
//! executes cached blocks, checking interrupts and the instruction budget between blocks.

use crate::block::{Block, BlockCache, CodeEvents};
use crate::bus::{Bus, PageMapping};
use crate::decode::Insn;
use crate::fault::Fault;
use crate::flags::Lazy;
use crate::mem::Tlb;
use crate::seg::SegCheck;
use crate::state::{flags, sreg, CpuState};

/// Why `run` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The instruction budget is spent.
    Budget,
    /// HLT: waiting for an interrupt that is not pending.
    Halted,
    /// The bus asked to stop after an I/O or MMIO access.
    Bus,
    /// Triple fault or another condition that shuts the processor down.
    Shutdown(String),
    /// PAUSE with [`Cpu::set_yield_on_pause`] on: the processor spins waiting for another
    /// one, which had better run now.
    Yield,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult {
    pub retired: u64,
    pub stop: Stop,
}

/// How many recently executed blocks the CPU remembers for fault reports.
const HISTORY: usize = 32;

/// What a processor reports beyond its instruction set: the platform it sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuConfig {
    /// A local APIC is present (CPUID.1:EDX.APIC) and IA32_APIC_BASE is the bus's.
    pub apic: bool,
    /// The local APIC timer has TSC-deadline mode (CPUID.1:ECX bit 24, IA32_TSC_DEADLINE),
    /// which needs a bus that implements [`Bus::set_tsc_deadline`].
    pub tsc_deadline: bool,
    /// This processor's initial APIC ID (CPUID.1:EBX[31:24]).
    pub apic_id: u8,
    /// Logical processors in the package (CPUID.1:EBX[23:16], HTT when more than one).
    pub cpus: u8,
}

impl Default for CpuConfig {
    /// A lone processor without a local APIC: what a bare [`Bus`] can give.
    fn default() -> Self {
        CpuConfig { apic: false, tsc_deadline: false, apic_id: 0, cpus: 1 }
    }
}

pub struct Cpu {
    /// Platform facts CPUID reports (see [`Cpu::configure`]).
    pub(crate) config: CpuConfig,
    /// Architectural state. `s.rflags` holds every flag but the six arithmetic status flags,
    /// which live in `lazy` (`flags.rs`) and are copied into `s.rflags` by
    /// `materialize_flags`.
    pub(crate) s: CpuState,
    pub(crate) lazy: Lazy,
    pub(crate) tlb: Tlb,
    pub(crate) blocks: BlockCache,
    /// Set by a handler (through `stop_block`) to end the current block after this
    /// instruction (a write hit decoded code, the bus wants attention, HLT, a mode change).
    pub(crate) end_block: bool,
    /// A state with kvmclock enabled was loaded: the next run rewrites its structure.
    pvclock_handover: bool,
    /// The next block runs one instruction only: the one an interrupt shadow covers.
    shadow_step: bool,
    /// How many of the running block's instructions may run: its length, or 0 once
    /// `stop_block` was called, so that the run loop's one bound check also sees `end_block`.
    block_end: usize,
    /// With `end_block`: the block ended at a taken branch (a side exit), which needs no
    /// `attention`.
    pub(crate) side_exit: bool,
    /// Something must be looked at before the next block: an interrupt shadow or HLT, a fault
    /// just delivered, a stop, a non-maskable interrupt, dropped blocks to free. Interrupt
    /// lines are looked at after any bus call that may have moved them (see `Watched`).
    pub(crate) attention: bool,
    pub(crate) stop: Option<Stop>,
    /// Bus map generation the TLB was filled under.
    pub(crate) map_gen: u64,
    /// Ring of (linear address, block) of recently entered blocks, for reports.
    history: [(u64, u64); HISTORY],
    history_pos: usize,
    /// Code size in bits (16, 32, 64) of the current CS and mode: see `update_mode`.
    pub(crate) bits: u32,
    /// A near branch target `t` is valid when `t + near_bias <= near_hi` (wrapping): the CS
    /// limit outside 64-bit mode (bias 0), canonical in it (bias 2^47, bound 2^48 - 1).
    pub(crate) near_bias: u64,
    pub(crate) near_hi: u64,
    scratch_pages: Vec<u64>,
    /// Virtual time (ns) at which `s.tsc` was the TSC value, once a clocked bus was seen.
    tsc_anchor: Option<u64>,
    /// Virtual time at the end of the last run.
    last_ns: u64,
    /// Instructions retired so far in the current `run` call (counted per block; iterations
    /// of repeated string instructions beyond the first are added as they run).
    pub(crate) run_retired: u64,
    /// RDRAND/RDSEED state for reproducible runs; `None` takes the host's randomness.
    pub(crate) random_seed: Option<u64>,
    /// Enabled debug-register breakpoints, by kind (see `debug.rs`).
    pub(crate) bp: crate::debug::Breakpoints,
    /// Data and I/O breakpoints hit by the instruction being executed (DR6 B0-B3 bits).
    pub(crate) db_pending: u8,
    /// The instruction just executed loaded RF (IRET): it stays as loaded.
    pub(crate) rf_loaded: bool,
    /// The instruction just executed was MOV SS or POP SS: debug traps wait one instruction.
    pub(crate) ss_shadow: bool,
    /// Breakpoint hits held back by MOV SS, reported with the next instruction's.
    pub(crate) held_db: u64,
    /// Per segment register, what its memory operands may touch (see `seg.rs`).
    pub(crate) segc: [SegCheck; 6],
    /// 1 at CPL 3, else 0 (from SS, kept by `refresh_seg`): which TLB tags apply.
    pub(crate) user: usize,
    /// Instructions retired since `s.tsc` was last loaded: the time-stamp counter advances
    /// by one per instruction.
    retired: u64,
    /// PAUSE ends the run with `Stop::Yield` (see `set_yield_on_pause`).
    pub(crate) yield_on_pause: bool,
    /// Set by a fused pair (`ops::fused`) whose Jcc faulted after its first instruction
    /// completed: the fault belongs to the Jcc.
    pub(crate) fused_partial: bool,
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu::new()
    }
}

impl Cpu {
    pub fn new() -> Cpu {
        Cpu {
            s: CpuState::default(),
            lazy: Lazy::default(),
            tlb: Tlb::new(),
            blocks: BlockCache::new(),
            end_block: false,
            block_end: 0,
            side_exit: false,
            attention: true,
            stop: None,
            map_gen: u64::MAX,
            history: [(0, u64::MAX); HISTORY],
            history_pos: 0,
            bits: 16,
            near_bias: 0,
            near_hi: 0xFFFF,
            scratch_pages: Vec::new(),
            random_seed: None,
            tsc_anchor: None,
            pvclock_handover: false,
            shadow_step: false,
            last_ns: 0,
            run_retired: 0,
            bp: crate::debug::Breakpoints::default(),
            db_pending: 0,
            rf_loaded: false,
            ss_shadow: false,
            held_db: 0,
            segc: [SegCheck::REAL; 6],
            user: 0,
            retired: 0,
            yield_on_pause: false,
            fused_partial: false,
            config: CpuConfig::default(),
        }
    }

    /// Sets what this processor reports about itself and its platform (CPUID's APIC bits and
    /// topology). Takes effect at the next CPUID.
    /// With more than one processor, their decoded code is kept coherent through
    /// [`Cpu::take_code_events`] and [`Cpu::code_events_of_others`].
    pub fn configure(&mut self, config: CpuConfig) {
        self.config = config;
        self.blocks.shared = config.cpus > 1;
    }

    /// Takes what this processor did to code pages since the last call (pages it decoded
    /// code from, pages of other processors' code it wrote), appending to `out`. Every other
    /// processor on the same memory must get them (`code_events_of_others`) before it runs
    /// again. Empty unless configured with more than one processor.
    pub fn take_code_events(&mut self, out: &mut CodeEvents) {
        out.decoded.append(&mut self.blocks.events.decoded);
        out.written.append(&mut self.blocks.events.written);
    }

    /// Takes in what other processors did to code pages (see [`CodeEvents`]): their new code
    /// pages are written through the slow path from now on, and this processor's blocks on
    /// pages they wrote are dropped. Only between runs.
    pub fn code_events_of_others(&mut self, ev: &CodeEvents) {
        for &p in &ev.decoded {
            self.blocks.decoded_elsewhere(p);
            self.tlb.protect_host_page(p);
        }
        for &p in &ev.written {
            self.blocks.written_elsewhere(p);
        }
        if self.blocks.has_dead() {
            self.blocks.free_dead();
        }
    }

    /// `set_state` for a state the processor reached by itself (INIT, a STARTUP IPI: see
    /// `CpuState::after_init` and `CpuState::startup`): its time-stamp counter runs on, as it
    /// does through those on hardware, instead of being loaded from `s`.
    pub fn set_state_keeping_tsc(&mut self, s: &CpuState) {
        let (tsc, anchor, last_ns, retired) = (self.s.tsc, self.tsc_anchor, self.last_ns, self.retired);
        self.set_state(s);
        (self.s.tsc, self.tsc_anchor, self.last_ns, self.retired) = (tsc, anchor, last_ns, retired);
    }

    /// The state's TSC value holds at virtual time `now_ns` (normally the TSC is anchored to
    /// the bus's clock at the next run). Processors whose states are loaded together but
    /// first run at different times (time-sliced processors) must be anchored so, or their
    /// time-stamp counters would differ by the time between.
    pub fn anchor_tsc(&mut self, now_ns: u64) {
        self.s.tsc = self.tsc();
        self.retired = 0;
        self.tsc_anchor = Some(now_ns);
        self.last_ns = now_ns;
    }

    /// With other processors time-sliced on the same thread, PAUSE (the spin-wait hint, as
    /// in every spinlock) ends the run with `Stop::Yield`, so that the processor holding
    /// the lock gets to run (what pause-loop exiting does for virtual machines).
    pub fn set_yield_on_pause(&mut self, on: bool) {
        self.yield_on_pause = on;
    }

    /// Waiting for a STARTUP IPI (see [`CpuState::wait_for_sipi`]).
    pub fn is_waiting_for_sipi(&self) -> bool {
        self.s.wait_for_sipi
    }

    pub fn config(&self) -> CpuConfig {
        self.config
    }

    /// The architectural state, with the lazily kept flags folded in.
    pub fn state(&self) -> CpuState {
        let mut s = self.s.clone();
        s.rflags = self.rflags();
        s.tsc = self.tsc();
        s
    }

    /// Loads a state; every cache that depended on the old one is dropped.
    pub fn set_state(&mut self, state: &CpuState) {
        self.s = state.clone();
        self.pvclock_handover = state.msr.kvm_system_time & 1 != 0;
        self.set_rflags((state.rflags & 0x003F_7FD5) | flags::FIXED1);
        self.flush_tlb();
        self.map_gen = u64::MAX;
        self.retired = 0;
        self.tsc_anchor = None;
        self.blocks.forget_recent();
        self.attention = true;
        self.update_mode();
        self.refresh_breakpoints();
    }

    /// Recomputes what depends on CS and the mode registers. Called whenever they change.
    pub(crate) fn update_mode(&mut self) {
        let cs = &self.s.seg[sreg::CS];
        self.bits = if self.s.efer & (1 << 10) != 0 && cs.attr & 0x2000 != 0 {
            64
        } else if cs.attr & 0x4000 != 0 {
            32
        } else {
            16
        };
        (self.near_bias, self.near_hi) = if self.bits == 64 { (1 << 47, (1 << 48) - 1) } else { (0, u64::from(cs.limit)) };
        // Chain links are keyed by RIP: a new CS (base, limit, size, privilege) voids them.
        self.blocks.forget_links();
        self.refresh_all_segs();
    }

    /// Drops every cached translation, and with them the blocks found by linear address.
    pub(crate) fn flush_tlb(&mut self) {
        self.tlb.flush();
        self.blocks.forget_recent();
    }

    /// The TSC as of the end of the last run (for `state()`).
    pub(crate) fn tsc(&self) -> u64 {
        match self.tsc_anchor {
            Some(a) => self.s.tsc.wrapping_add(self.last_ns.wrapping_sub(a)),
            None => self.s.tsc.wrapping_add(self.retired),
        }
    }

    /// The TSC now, for RDTSC and RDMSR in the middle of a run.
    pub(crate) fn tsc_now(&mut self, bus: &mut dyn Bus) -> u64 {
        match (self.tsc_anchor, bus.time_ns(self.run_retired)) {
            (Some(a), Some(t)) => self.s.tsc.wrapping_add(t.wrapping_sub(a)),
            _ => self.s.tsc.wrapping_add(self.retired).wrapping_add(self.run_retired),
        }
    }

    pub(crate) fn set_tsc(&mut self, bus: &mut dyn Bus, v: u64) {
        self.s.tsc = v;
        // `retired` gets this run's count added at its end: start from minus what is in it.
        self.retired = 0u64.wrapping_sub(self.run_retired);
        self.tsc_anchor = bus.time_ns(self.run_retired);
        self.last_ns = self.tsc_anchor.unwrap_or(0);
    }

    /// Drops decoded code and cached translations (after the host changed guest memory behind
    /// the CPU's back, e.g. loading a new image).
    pub fn flush_caches(&mut self) {
        self.flush_tlb();
        self.blocks.clear();
    }

    /// Makes RDRAND/RDSEED a fixed pseudo-random sequence from `seed` (deterministic runs), or
    /// the host's randomness again with `None`.
    pub fn set_random_seed(&mut self, seed: Option<u64>) {
        self.random_seed = seed.map(|s| s | 1);
    }

    /// Signals a non-maskable interrupt (delivered between blocks; held while an NMI handler
    /// runs, until its IRET).
    pub fn raise_nmi(&mut self) {
        self.s.pending.nmi = true;
        self.attention = true;
    }

    pub fn is_halted(&self) -> bool {
        self.s.halted
    }

    pub fn interrupts_enabled(&self) -> bool {
        self.s.rflags & flags::IF != 0
    }

    /// Runs at most `max_insns` instructions (finishing the block in progress: at most one
    /// block more).
    pub fn run(&mut self, bus: &mut dyn Bus, max_insns: u64) -> RunResult {
        if self.s.wait_for_sipi {
            // Nothing runs and nothing is taken (NMIs and interrupts stay pending) until
            // the STARTUP IPI; the time-stamp counter runs.
            if let Some(t) = bus.time_ns(0) {
                self.tsc_anchor.get_or_insert(t);
                self.last_ns = t;
            }
            return RunResult { retired: 0, stop: Stop::Halted };
        }
        let gen = bus.map_generation();
        if gen != self.map_gen {
            self.flush_tlb();
            self.map_gen = gen;
        }
        self.drop_code_written_by_others(bus);
        if self.tsc_anchor.is_none() {
            self.tsc_anchor = bus.time_ns(0);
        }
        if std::mem::take(&mut self.pvclock_handover) {
            // A state loaded with kvmclock on (from KVM): the structure goes on from the time
            // it gives, at this CPU's TSC rate.
            let msr = self.s.msr.kvm_system_time;
            self.update_pvclock(bus, msr, 0);
        }
        self.run_retired = 0;
        self.stop = None;
        let mut watched = Watched { bus, touched: true };
        let r = self.run_blocks(&mut watched, max_insns);
        self.retired = self.retired.wrapping_add(r.retired);
        if let Some(t) = bus.time_ns(r.retired) {
            self.last_ns = t;
        }
        r
    }

    fn run_blocks(&mut self, bus: &mut Watched, max_insns: u64) -> RunResult {
        // The block just executed, whose chain links lead to the next; null when there is
        // none or it may have been freed. `prev_rip` and `prev_gen`: where and under which
        // chain generation it was entered (a loop that is one block re-enters it there).
        let mut prev: *const Block = std::ptr::null();
        let mut prev_rip = 0;
        let mut prev_gen = u64::MAX;
        loop {
            if self.attention || bus.touched {
                self.attention = false;
                bus.touched = false;
                if let Some(stop) = self.stop.take() {
                    return RunResult { retired: self.run_retired, stop };
                }
                if !self.check_events(bus) {
                    return RunResult { retired: self.run_retired, stop: Stop::Halted };
                }
                if let Some(stop) = self.stop.take() {
                    return RunResult { retired: self.run_retired, stop };
                }
                if self.blocks.has_dead() {
                    prev = std::ptr::null();
                    self.blocks.free_dead();
                }
            }
            if self.run_retired >= max_insns {
                return RunResult { retired: self.run_retired, stop: Stop::Budget };
            }
            let rip = self.s.rip;
            let gen = self.blocks.chain_gen;
            let block = if rip == prev_rip && gen == prev_gen && !prev.is_null() {
                // The same block again (a loop): under one chain generation a RIP leads to
                // one block, as the chain links assume. Not recorded again in the history.
                prev
            } else {
                // SAFETY: `prev` is null or a block not freed since it executed (`free_dead`
                // runs only above, and clears it).
                let next = if prev.is_null() { None } else { unsafe { &*prev }.successor(rip, gen) };
                let block = match next {
                    Some(b) => b,
                    None => match self.fetch_block(bus) {
                        Ok(b) => {
                            if !prev.is_null() && self.blocks.chain_gen == gen && unsafe { &*b }.key != u64::MAX {
                                // SAFETY: as above; `b` is cached (not device memory), so it
                                // lives until the generation moves on.
                                unsafe { &*prev }.link(rip, gen, b);
                            }
                            if self.blocks.has_dead() {
                                self.attention = true;
                            }
                            b
                        }
                        Err(f) => {
                            self.raise(bus, f);
                            prev = std::ptr::null();
                            continue;
                        }
                    },
                };
                // SAFETY: `block` was just found in the cache (or adopted by it) and is not
                // freed before the next pass through `free_dead`.
                self.record(unsafe { &*block }.key);
                block
            };
            // After an interrupt shadow (STI, MOV SS) one instruction runs, then interrupts are
            // looked at again.
            let shadow = std::mem::take(&mut self.shadow_step);
            // SAFETY: as above.
            self.run_retired += self.exec_block(bus, unsafe { &*block }, max_insns, shadow);
            prev = block;
            prev_rip = rip;
            prev_gen = gen;
        }
    }

    /// Drops decoded code from pages that DMA or a loader wrote since the last run.
    fn drop_code_written_by_others(&mut self, bus: &mut dyn Bus) {
        let mut pages = std::mem::take(&mut self.scratch_pages);
        bus.take_dma_writes(&mut pages);
        for &p in &pages {
            if let PageMapping::Ram { host } = bus.map_page(p) {
                self.blocks.written_elsewhere(host as usize);
            }
        }
        pages.clear();
        self.scratch_pages = pages;
        if self.blocks.has_dead() {
            self.blocks.free_dead();
        }
    }

    /// Interrupts between blocks. Returns false if the CPU stays halted. Called only when
    /// something may have changed (`attention`, or a bus call since the last look); whatever
    /// must be looked at again next time, without a bus call in between, asks for it here.
    fn check_events(&mut self, watched: &mut Watched) -> bool {
        if self.s.pending.interrupt_shadow {
            self.s.pending.interrupt_shadow = false;
            // Nothing was looked at: look after the next instruction.
            self.shadow_step = true;
            self.attention = true;
            return !self.s.halted;
        }
        if watched.bus.take_nmi() {
            self.s.pending.nmi = true;
        }
        if self.s.pending.nmi {
            if !self.s.pending.nmi_blocked {
                self.s.pending.nmi = false;
                self.s.pending.nmi_blocked = true;
                self.s.halted = false;
                self.raise(watched, Fault::Interrupt(2));
                return true;
            }
            // Held until the handler's IRET: keep looking.
            self.attention = true;
        }
        if watched.bus.intr_pending() {
            if self.s.rflags & flags::IF != 0 {
                if let Some(vector) = watched.bus.intr_ack() {
                    self.s.halted = false;
                    self.raise(watched, Fault::Interrupt(vector));
                }
            }
            // Masked by IF (which POPF or IRET may set without a bus call), or just
            // acknowledged with another behind it: keep looking.
            watched.touched = true;
        }
        !self.s.halted
    }

    /// Runs a block; returns the guest instructions retired. A block that ends with a taken
    /// branch to its own start (a loop that is one block) runs again at once while nothing
    /// asks for a look between blocks and the budget (`max_insns`) allows. `one`: only the
    /// block's first instruction runs (unfused), after an interrupt shadow.
    fn exec_block(&mut self, bus: &mut Watched, block: &Block, max_insns: u64, one: bool) -> u64 {
        self.end_block = false;
        if one || self.debug_active() {
            // The instructions one by one, unfused.
            let plain = if block.plain.is_empty() { &block.insns[..] } else { &block.plain[..] };
            let plain = if one { &plain[..1.min(plain.len())] } else { plain };
            if !self.debug_active() {
                return self.exec_insns(bus, plain);
            }
            let mut n = 0;
            for insn in plain.iter() {
                let (k, go_on) = self.exec_one_debug(bus, insn);
                n += k;
                if !go_on {
                    break;
                }
            }
            self.side_exit = false;
            if self.end_block {
                self.attention = true;
            }
            return n;
        }
        // The slice itself, not the `Box`: the `Box` lives in a `Block`, which has interior
        // mutability (its chain links), so its pointer would be reloaded after every call.
        let insns: &[Insn] = &block.insns;
        let start = self.s.rip;
        let gen = self.blocks.chain_gen;
        let mut retired = 0;
        loop {
            self.block_end = insns.len();
            let mut k = 0;
            // Guest instructions of entries jumped over (`Insn::pos` counts them).
            let mut skipped = 0;
            loop {
                while k < self.block_end {
                    // SAFETY: `block_end` is the block's length or 0 (`stop_block`).
                    let insn = unsafe { insns.get_unchecked(k) };
                    // From the block's start, not from the RIP the last instruction left: no
                    // chain through memory from one instruction to the next.
                    let next = start.wrapping_add(insn.next as i64 as u64) & insn.ip_mask;
                    self.s.rip = next;
                    if let Err(fault) = (insn.exec)(self, bus, insn) {
                        let mut done = if k == 0 { 0 } else { u64::from(insns[k - 1].pos) - skipped };
                        let ip = insn.start_rip(start);
                        self.s.rip = ip;
                        if std::mem::take(&mut self.fused_partial) {
                            // The Jcc of a fused pair faulted: its first instruction is done.
                            self.s.rip = ip.wrapping_add(u64::from(insn.len1)) & insn.ip_mask;
                            done += 1;
                        }
                        self.side_exit = false;
                        self.raise(bus, fault);
                        return retired + done;
                    }
                    k += 1;
                }
                // A taken branch to a later entry of this block (`Insn::skip`) goes on there,
                // if it landed where that entry was decoded.
                if self.side_exit && k > 0 {
                    let from = &insns[k - 1];
                    // (0: none; otherwise a later entry, `link_forward_branches`.)
                    let to = usize::from(from.skip);
                    if to != 0 && self.s.rip == insns[to].start_rip(start) {
                        skipped += u64::from(insns[to - 1].pos - from.pos);
                        self.side_exit = false;
                        self.end_block = false;
                        self.block_end = insns.len();
                        k = to;
                        continue;
                    }
                }
                break;
            }
            retired += insns.get(k.wrapping_sub(1)).map_or(0, |i| u64::from(i.pos)) - skipped;
            if !self.end_block {
                return retired;
            }
            // Whatever ended the block (a write to code, the bus, a mode change) but a taken
            // branch may want a look before the next one.
            if !std::mem::take(&mut self.side_exit) {
                self.attention = true;
                return retired;
            }
            if self.s.rip != start || self.attention || bus.touched || self.blocks.chain_gen != gen || self.run_retired + retired >= max_insns {
                return retired;
            }
            self.end_block = false;
        }
    }

    /// Runs `insns` once (no loop), for the one instruction after an interrupt shadow.
    fn exec_insns(&mut self, bus: &mut Watched, insns: &[Insn]) -> u64 {
        self.block_end = insns.len();
        let mut k = 0;
        while k < self.block_end {
            let insn = &insns[k];
            let ip = self.s.rip;
            self.s.rip = ip.wrapping_add(u64::from(insn.len)) & insn.ip_mask;
            if let Err(fault) = (insn.exec)(self, bus, insn) {
                self.s.rip = ip;
                self.side_exit = false;
                self.raise(bus, fault);
                return k as u64;
            }
            k += 1;
        }
        if self.end_block && !std::mem::take(&mut self.side_exit) {
            self.attention = true;
        }
        k as u64
    }

    /// Ends the running block after the current instruction.
    #[inline(always)]
    pub(crate) fn stop_block(&mut self) {
        self.end_block = true;
        self.block_end = 0;
    }

    #[inline(always)]
    fn record(&mut self, key: u64) {
        let lin = self.s.seg[sreg::CS].base.wrapping_add(self.s.rip);
        self.history[self.history_pos] = (lin, key);
        self.history_pos = (self.history_pos + 1) % HISTORY;
    }

    /// The instructions of the most recently entered blocks, oldest first, disassembled.
    pub fn recent_instructions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for k in 0..HISTORY {
            let (lin, key) = self.history[(self.history_pos + k) % HISTORY];
            if key == u64::MAX {
                continue;
            }
            let Some(instrs) = self.blocks.get(key) else {
                out.push(format!("{lin:#010x}  (block since overwritten)"));
                continue;
            };
            // A block may go on at a jump target: place each instruction by its decoded IP.
            let first = instrs.first().map_or(0, |i| i.ip());
            for i in instrs.iter() {
                let a = lin.wrapping_add(i.ip().wrapping_sub(first));
                out.push(format!("{a:#010x}  {}", crate::decode::text(i)));
            }
        }
        let keep = out.len().saturating_sub(48);
        out.split_off(keep)
    }

    // ---- register access -------------------------------------------------------------

    /// Reads an operand-sized register. 8-bit register numbers 0-15 are the low bytes of the
    /// general registers, 16-19 the high bytes AH, CH, DH, BH.
    #[inline(always)]
    pub(crate) fn reg(&self, r: u8, size: u8) -> u64 {
        // (Register numbers are below 16 but for the high bytes: `& 15` spares bounds checks.)
        match size {
            1 => {
                if r < 16 {
                    self.s.gpr[usize::from(r & 15)] & 0xFF
                } else {
                    (self.s.gpr[usize::from(r & 3)] >> 8) & 0xFF
                }
            }
            2 => self.s.gpr[usize::from(r & 15)] & 0xFFFF,
            4 => self.s.gpr[usize::from(r & 15)] & 0xFFFF_FFFF,
            _ => self.s.gpr[usize::from(r & 15)],
        }
    }

    /// Writes an operand-sized register as hardware does: 8- and 16-bit writes keep the rest,
    /// 32-bit writes clear the upper half.
    #[inline(always)]
    pub(crate) fn set_reg(&mut self, r: u8, size: u8, v: u64) {
        match size {
            1 => {
                if r < 16 {
                    let g = &mut self.s.gpr[usize::from(r & 15)];
                    *g = (*g & !0xFF) | (v & 0xFF);
                } else {
                    let g = &mut self.s.gpr[usize::from(r & 3)];
                    *g = (*g & !0xFF00) | ((v & 0xFF) << 8);
                }
            }
            2 => {
                let g = &mut self.s.gpr[usize::from(r & 15)];
                *g = (*g & !0xFFFF) | (v & 0xFFFF);
            }
            4 => self.s.gpr[usize::from(r & 15)] = v & 0xFFFF_FFFF,
            _ => self.s.gpr[usize::from(r & 15)] = v,
        }
    }

    /// Protected mode enabled (CR0.PE).
    #[inline(always)]
    pub(crate) fn protected(&self) -> bool {
        self.s.cr0 & 1 != 0
    }

    /// Loads a segment register as real mode does: selector and base change; the cached
    /// limit and attributes stay (which is what "unreal mode" relies on).
    pub(crate) fn load_seg_real(&mut self, s: usize, selector: u16) {
        let seg = &mut self.s.seg[s];
        seg.selector = selector;
        seg.base = u64::from(selector) << 4;
        if s == sreg::CS {
            // A far transfer in real mode leaves CS as a 16-bit code segment.
            seg.attr = (seg.attr & !0x4000) | 0x9B;
            self.update_mode();
        } else {
            self.refresh_seg(s);
        }
    }
}

/// The bus as the run loop hands it to instructions: it notes any call that may have moved
/// an interrupt line (port and MMIO accesses, interrupt acknowledge, MSRs, the TPR), so that
/// between blocks the CPU asks about interrupts only after one. Lines move only through the
/// bus's own calls or between `run` calls (see `Bus::intr_pending`). Every `Bus` method is
/// forwarded here: one left to its default would silently do nothing.
pub(crate) struct Watched<'a> {
    pub(crate) bus: &'a mut dyn Bus,
    pub(crate) touched: bool,
}

impl Bus for Watched<'_> {
    #[inline]
    fn map_page(&mut self, paddr: u64) -> PageMapping {
        self.bus.map_page(paddr)
    }
    fn map_generation(&self) -> u64 {
        self.bus.map_generation()
    }
    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64 {
        self.touched = true;
        self.bus.mmio_read(paddr, size)
    }
    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        self.touched = true;
        self.bus.mmio_write(paddr, size, value)
    }
    fn io_read(&mut self, port: u16, size: u8) -> u32 {
        self.touched = true;
        self.bus.io_read(port, size)
    }
    fn io_write(&mut self, port: u16, size: u8, value: u32) {
        self.touched = true;
        self.bus.io_write(port, size, value)
    }
    fn intr_pending(&mut self) -> bool {
        self.bus.intr_pending()
    }
    fn intr_ack(&mut self) -> Option<u8> {
        self.touched = true;
        self.bus.intr_ack()
    }
    fn wants_stop(&mut self) -> bool {
        self.touched = true;
        self.bus.wants_stop()
    }
    fn take_dma_writes(&mut self, pages: &mut Vec<u64>) {
        self.touched = true;
        self.bus.take_dma_writes(pages)
    }
    fn time_ns(&mut self, retired: u64) -> Option<u64> {
        self.bus.time_ns(retired)
    }
    fn sync_time(&mut self, retired: u64) {
        // Devices brought up to date may raise a line.
        self.touched = true;
        self.bus.sync_time(retired)
    }
    fn set_tsc_deadline(&mut self, at_ns: Option<u64>) {
        // A deadline already past fires at once.
        self.touched = true;
        self.bus.set_tsc_deadline(at_ns)
    }
    fn msr_read(&mut self, msr: u32) -> Option<u64> {
        self.touched = true;
        self.bus.msr_read(msr)
    }
    fn msr_write(&mut self, msr: u32, value: u64) -> Option<bool> {
        self.touched = true;
        self.bus.msr_write(msr, value)
    }
    fn tpr(&mut self) -> Option<u8> {
        self.bus.tpr()
    }
    fn set_tpr(&mut self, tpr: u8) {
        self.touched = true;
        self.bus.set_tpr(tpr)
    }
    fn take_nmi(&mut self) -> bool {
        self.touched = true;
        self.bus.take_nmi()
    }
}

/// Masks `v` to `size` bytes.
#[inline(always)]
pub(crate) fn mask(v: u64, size: u8) -> u64 {
    // A shift rather than a match: no branch when the size is only known at run time. (Sizes
    // other than 1, 2 and 4 leave `v` whole.)
    v & (u64::MAX >> ((64 - u32::from(size.min(8)) * 8) & 63))
}

/// The sign bit of a `size`-byte value.
#[inline(always)]
pub(crate) fn sign_bit(size: u8) -> u64 {
    1u64 << (u32::from(size) * 8 - 1)
}

/// Sign-extends a `size`-byte value to 64 bits.
#[inline(always)]
pub(crate) fn sext(v: u64, size: u8) -> u64 {
    let sh = (64 - u32::from(size.min(8)) * 8) & 63;
    (((v << sh) as i64) >> sh) as u64
}
