//! The KVM backend: the machine's CPU run by the host kernel (Documentation/virt/kvm/api.rst),
//! with Firecracker's vCPU loop as the model. Guest RAM and ROM are memory slots built from
//! `Memory::regions` (ROM read-only, so guest writes to it come back as MMIO exits and are
//! dropped); everything else is device memory and reaches the machine as MMIO exits. The
//! interrupt controller stays in userspace: the machine's 8259A pair is the only source of
//! interrupts, injected with KVM_INTERRUPT, exactly as the interpreter takes them.
//!
//! Differences from the interpreter, all from KVM itself: time is real time (a deterministic
//! clock is moved on by the time spent in the guest); the A20 gate is not applied; `halted` is
//! the backend's own flag, since KVM refuses any MP state but RUNNABLE without its in-kernel
//! interrupt controller; x87/SSE state and MSRs beyond the TSC are left to KVM (CpuState does
//! not hold them yet).
//!
//! What a paravirtual KVM (PVM, nested clouds) runs, as measured by `accel/tests/kvm.rs` on
//! the workplace's host (the comment at the top of that file has the figures): 64-bit user
//! code natively; real mode, 32-bit protected mode and ring 0 through the host kernel's
//! instruction emulator at a few MIPS, where software interrupts in ring 0 fail.

mod kick;
mod state;

use crate::{AccelError, Backend, Exit};
use cpu::state::flags;
use cpu::CpuState;
use kick::{KickGuard, Kicker};
use kvm_bindings::{
    kvm_interrupt, kvm_run, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES, KVM_MEM_READONLY,
};
use kvm_ioctls::{Cap, VcpuExit, VcpuFd, VmFd};
use machine::{Machine, Region, RegionKind};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// KVM on Intel without unrestricted guest runs real mode through a TSS (three pages) and
/// an identity-mapped page table (one page) that it keeps in guest-physical memory. QEMU's
/// addresses: just below 0xFF00_0000, the lowest address a BIOS image (at most 16 MiB) can
/// start at, and clear of the local APIC (0xFEE0_0000) and IOAPIC (0xFEC0_0000) windows.
const IDENTITY_MAP_ADDR: u64 = 0xFEFF_C000;
const TSS_ADDR: u64 = 0xFEFF_D000;
const KVM_PRIVATE_END: u64 = TSS_ADDR + 3 * 4096;

/// KVM_INTERRUPT = _IOW(KVMIO, 0x86, struct kvm_interrupt); kvm-ioctls has no wrapper.
const KVM_INTERRUPT: libc::c_ulong = (1 << 30) | (4 << 16) | (0xAE << 8) | 0x86;

/// What the backend cannot work without, and what for.
const REQUIRED_CAPS: &[(Cap, &str, &str)] = &[
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY", "guest memory slots"),
    (Cap::ReadonlyMem, "KVM_CAP_READONLY_MEM", "the BIOS as read-only memory"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT", "stopping the vCPU at device deadlines"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID", "setting the guest's CPUID"),
    (Cap::VcpuEvents, "KVM_CAP_VCPU_EVENTS", "saving the interrupt shadow and pending NMI"),
    (Cap::Debugregs, "KVM_CAP_DEBUGREGS", "saving the debug registers"),
];

/// Which memory map the slots were built from: changes when the machine's memory is
/// remapped (its generation) or when `run` is handed another machine.
#[derive(Clone, Copy, PartialEq, Eq)]
struct MapKey {
    generation: u64,
    low_ram: usize,
    ram_size: u64,
    bios_size: u64,
}

impl MapKey {
    fn of(m: &Machine) -> MapKey {
        let mem = m.memory();
        MapKey {
            generation: mem.generation(),
            low_ram: mem.page(0).map_or(0, |(p, _)| p as usize),
            ram_size: mem.ram_size(),
            bios_size: mem.bios_size(),
        }
    }
}

pub struct Kvm {
    vcpu: Vcpu,
    /// Declared after the vCPU so the vCPU fd closes first.
    vm: VmFd,
    _kvm: kvm_ioctls::Kvm,
    kicker: Kicker,
    /// The regions registered as slots 0.., in order.
    slots: Vec<Region>,
    map_key: MapKey,
}

/// The vCPU and what the backend caches about it.
struct Vcpu {
    fd: VcpuFd,
    /// HLT was executed and no interrupt has been taken since. KVM leaves this to userspace
    /// when the interrupt controller is there.
    halted: bool,
    /// RFLAGS.IF, from kvm_run after each KVM_RUN or from the last `set_state`.
    if_flag: bool,
    /// kvm_run's `ready_for_interrupt_injection` describes the vCPU as it is now (false
    /// after `set_state` until KVM_RUN returns again).
    run_info_valid: bool,
    /// The last exit was I/O or MMIO, which KVM finishes (an IN's value to the register, a
    /// string instruction's memory side) only on the next KVM_RUN.
    io_pending: bool,
}

/// What one exit asks of the loop.
enum Step {
    /// Run on.
    Resume,
    /// An I/O or MMIO access was handled.
    Accessed,
    /// KVM_RUN returned EINTR or EAGAIN: a kick, or another signal.
    Interrupted,
    Return(Exit),
    Fail(String),
}

impl Kvm {
    /// Opens /dev/kvm and builds a VM with one vCPU whose memory is `machine`'s. The machine
    /// (its memory) must outlive the backend's use of it; `run` re-registers the memory if it
    /// is given a machine whose memory map differs.
    pub fn new(machine: &Machine) -> Result<Kvm, AccelError> {
        let unavailable = AccelError::KvmUnavailable;
        if machine.cpu_count() > 1 {
            return Err(unavailable(format!(
                "the KVM backend runs one processor so far; --smp {} needs --accel interp",
                machine.cpu_count()
            )));
        }
        let kvm = kvm_ioctls::Kvm::new().map_err(|e| unavailable(format!("cannot open /dev/kvm: {e}")))?;
        let api = kvm.get_api_version();
        if api < 0 {
            return Err(unavailable("/dev/kvm does not answer KVM_GET_API_VERSION (is it a KVM device?)".into()));
        }
        if api != 12 {
            return Err(unavailable(format!("/dev/kvm speaks API version {api}, not 12")));
        }
        for &(cap, name, what) in REQUIRED_CAPS {
            if !kvm.check_extension(cap) {
                return Err(unavailable(format!("the host KVM lacks {name}, needed for {what}")));
            }
        }
        let vm = kvm.create_vm().map_err(|e| AccelError::Kvm(format!("KVM_CREATE_VM: {e}")))?;
        for r in machine.memory().regions() {
            if r.guest < KVM_PRIVATE_END && IDENTITY_MAP_ADDR < r.guest + r.size {
                return Err(AccelError::Kvm(format!(
                    "memory at {:#x}-{:#x} overlaps KVM's private pages at {IDENTITY_MAP_ADDR:#x}-{KVM_PRIVATE_END:#x}",
                    r.guest,
                    r.guest + r.size
                )));
            }
        }
        if vm.check_extension(Cap::SetIdentityMapAddr) {
            vm.set_identity_map_address(IDENTITY_MAP_ADDR)
                .map_err(|e| AccelError::Kvm(format!("KVM_SET_IDENTITY_MAP_ADDR {IDENTITY_MAP_ADDR:#x}: {e}")))?;
        }
        if vm.check_extension(Cap::SetTssAddr) {
            vm.set_tss_address(TSS_ADDR as usize)
                .map_err(|e| AccelError::Kvm(format!("KVM_SET_TSS_ADDR {TSS_ADDR:#x}: {e}")))?;
        }
        let mut cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| AccelError::Kvm(format!("KVM_GET_SUPPORTED_CPUID: {e}")))?;
        filter_cpuid(&mut cpuid);
        let fd = vm.create_vcpu(0).map_err(|e| AccelError::Kvm(format!("KVM_CREATE_VCPU: {e}")))?;
        fd.set_cpuid2(&cpuid).map_err(|e| AccelError::Kvm(format!("KVM_SET_CPUID2: {e}")))?;
        let kicker = Kicker::new().map_err(AccelError::Kvm)?;
        let mut k = Kvm {
            vcpu: Vcpu { fd, halted: false, if_flag: false, run_info_valid: false, io_pending: false },
            vm,
            _kvm: kvm,
            kicker,
            slots: Vec::new(),
            map_key: MapKey::of(machine),
        };
        k.map_memory(machine)?;
        tracing::debug!(slots = k.slots.len(), "KVM VM created");
        Ok(k)
    }

    /// Makes the memory slots match the machine's regions.
    fn map_memory(&mut self, m: &Machine) -> Result<(), AccelError> {
        let regions = m.memory().regions();
        self.map_key = MapKey::of(m);
        if regions == self.slots {
            return Ok(());
        }
        for slot in (0..self.slots.len()).rev() {
            let gone = kvm_userspace_memory_region { slot: slot as u32, ..Default::default() };
            // SAFETY: a zero-sized region deletes the slot; no host memory is handed over.
            unsafe { self.vm.set_user_memory_region(gone) }
                .map_err(|e| AccelError::Kvm(format!("deleting memory slot {slot}: {e}")))?;
        }
        self.slots.clear();
        for (slot, r) in regions.iter().enumerate() {
            let region = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: if r.kind == RegionKind::Rom { KVM_MEM_READONLY } else { 0 },
                guest_phys_addr: r.guest,
                memory_size: r.size,
                userspace_addr: r.host as u64,
            };
            // SAFETY: `r.host` points at `r.size` bytes of page-aligned RAM or ROM owned by the
            // machine's `Memory`, which lives as long as the machine; `run` re-registers before
            // running if the memory it is given is no longer this one.
            unsafe { self.vm.set_user_memory_region(region) }.map_err(|e| {
                AccelError::Kvm(format!(
                    "memory slot {slot} ({:?} at {:#x}, {:#x} bytes): {e}",
                    r.kind, r.guest, r.size
                ))
            })?;
            self.slots.push(*r);
        }
        Ok(())
    }
}

/// The supported CPUID, minus what this machine lacks: there is no local APIC (the 8259A
/// pair is the interrupt controller), so no APIC, x2APIC or TSC-deadline timer. Further
/// filtering (a stable model, topology leaves, the hypervisor leaves) is still to come.
fn filter_cpuid(cpuid: &mut CpuId) {
    for e in cpuid.as_mut_slice() {
        if e.function == 1 {
            e.edx &= !(1 << 9);
            e.ecx &= !((1 << 21) | (1 << 24));
            e.ebx &= 0x00FF_FFFF;
        }
    }
}

impl Vcpu {
    fn kvm_run(&mut self) -> &mut kvm_run {
        self.fd.get_kvm_run()
    }

    /// Before each KVM_RUN: inject the PIC's interrupt if the vCPU can take it now, else ask
    /// KVM to exit as soon as it can.
    fn offer_interrupt(&mut self, m: &mut Machine) -> Result<(), String> {
        if !m.intr_pending() {
            self.kvm_run().request_interrupt_window = 0;
            return Ok(());
        }
        let run = self.kvm_run();
        let ready = run.ready_for_interrupt_injection != 0 && run.if_flag != 0;
        if self.run_info_valid && ready {
            if let Some(vector) = m.intr_ack() {
                let irq = kvm_interrupt { irq: u32::from(vector) };
                // SAFETY: KVM_INTERRUPT on our vCPU fd reads one kvm_interrupt from `irq`,
                // which lives across the call.
                let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_INTERRUPT as _, &irq) };
                if r != 0 {
                    return Err(format!("KVM_INTERRUPT vector {vector:#x}: {}", std::io::Error::last_os_error()));
                }
                tracing::trace!(vector, "interrupt injected");
                // Injected: not ready again until KVM has delivered it.
                self.run_info_valid = false;
            }
        }
        let more = m.intr_pending();
        self.kvm_run().request_interrupt_window = more as u8;
        Ok(())
    }

    /// One KVM_RUN, with the exit handled as far as the machine goes.
    fn run_once(&mut self, m: &mut Machine) -> Step {
        let run_ptr: *const kvm_run = self.fd.get_kvm_run();
        let step = match self.fd.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                // SAFETY: the exit was KVM_EXIT_IO, so `io` is the union member in use; the
                // bytes read are not those of `data`.
                let io = unsafe { (*run_ptr).__bindgen_anon_1.io };
                io_out(m, port, io.size, data);
                Step::Accessed
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                // SAFETY: as for IoOut.
                let io = unsafe { (*run_ptr).__bindgen_anon_1.io };
                io_in(m, port, io.size, data);
                Step::Accessed
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                mmio_read(m, addr, data);
                Step::Accessed
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                mmio_write(m, addr, data);
                Step::Accessed
            }
            Ok(VcpuExit::Hlt) => {
                self.halted = true;
                Step::Resume
            }
            Ok(VcpuExit::IrqWindowOpen) | Ok(VcpuExit::Intr) => Step::Resume,
            Ok(VcpuExit::Shutdown) => Step::Return(Exit::Shutdown("triple fault (KVM_EXIT_SHUTDOWN)".into())),
            Ok(VcpuExit::SystemEvent(kind, data)) => {
                Step::Return(Exit::Shutdown(format!("KVM system event {kind} {data:x?}")))
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                Step::Fail(format!("VM entry failed on host CPU {cpu}: hardware_entry_failure_reason {reason:#x}"))
            }
            Ok(VcpuExit::InternalError) => {
                // SAFETY: the exit was KVM_EXIT_INTERNAL_ERROR, whose member is `internal`.
                let e = unsafe { (*run_ptr).__bindgen_anon_1.internal };
                let n = (e.ndata as usize).min(e.data.len());
                Step::Fail(format!(
                    "KVM internal error, suberror {} ({}), data {:x?}",
                    e.suberror,
                    internal_error_name(e.suberror),
                    &e.data[..n]
                ))
            }
            Ok(other) => Step::Fail(format!("unexpected KVM exit {other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Step::Interrupted,
            Err(e) => Step::Fail(format!("KVM_RUN: {e}")),
        };
        let run = self.kvm_run();
        self.if_flag = run.if_flag != 0;
        self.run_info_valid = true;
        self.io_pending = matches!(step, Step::Accessed);
        step
    }

    fn set_immediate_exit(&mut self, on: bool) {
        let p = std::ptr::addr_of_mut!(self.kvm_run().immediate_exit);
        // SAFETY: `p` is inside the vCPU's kvm_run mapping; volatile because the kick signal
        // handler on this thread writes the same byte.
        unsafe { std::ptr::write_volatile(p, on as u8) };
    }

    /// Lets KVM finish the last I/O exit without running guest code: KVM_RUN with
    /// `immediate_exit` completes the pending access, then returns EINTR. A string
    /// instruction longer than one buffer may exit for I/O again on the way.
    fn finish_io(&mut self, m: &mut Machine) -> Result<(), String> {
        while self.io_pending {
            self.set_immediate_exit(true);
            let step = self.run_once(m);
            self.set_immediate_exit(false);
            match step {
                Step::Interrupted | Step::Accessed | Step::Resume => {}
                Step::Return(e) => return Err(format!("while finishing an I/O access: {e:?}")),
                Step::Fail(why) => return Err(why),
            }
        }
        Ok(())
    }

    fn report(&self) -> String {
        match state::read(&self.fd) {
            Ok(s) => s.report(),
            Err(e) => format!("(registers unavailable: {e})\n"),
        }
    }
}

fn internal_error_name(suberror: u32) -> &'static str {
    match suberror {
        kvm_bindings::KVM_INTERNAL_ERROR_EMULATION => "instruction emulation failed",
        kvm_bindings::KVM_INTERNAL_ERROR_SIMUL_EX => "exception while delivering an exception",
        kvm_bindings::KVM_INTERNAL_ERROR_DELIVERY_EV => "event delivery failed",
        kvm_bindings::KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON => "unexpected exit reason",
        _ => "unknown",
    }
}

/// `data` holds `count` items of `size` bytes (string I/O hands over many at once).
fn io_out(m: &mut Machine, port: u16, size: u8, data: &[u8]) {
    let size = size.clamp(1, 4);
    for item in data.chunks(size as usize) {
        let mut v = [0u8; 4];
        v[..item.len()].copy_from_slice(item);
        m.io_write(port, size, u32::from_le_bytes(v));
    }
}

fn io_in(m: &mut Machine, port: u16, size: u8, data: &mut [u8]) {
    let size = size.clamp(1, 4);
    for item in data.chunks_mut(size as usize) {
        let v = m.io_read(port, size).to_le_bytes();
        let n = item.len();
        item.copy_from_slice(&v[..n]);
    }
}

/// MMIO of 1, 2, 4 or 8 bytes goes to the machine whole; other lengths byte by byte.
fn mmio_read(m: &mut Machine, addr: u64, data: &mut [u8]) {
    match data.len() {
        n @ (1 | 2 | 4 | 8) => {
            let v = m.mmio_read(addr, n as u8).to_le_bytes();
            data.copy_from_slice(&v[..n]);
        }
        _ => {
            for (i, b) in data.iter_mut().enumerate() {
                *b = m.mmio_read(addr + i as u64, 1) as u8;
            }
        }
    }
}

fn mmio_write(m: &mut Machine, addr: u64, data: &[u8]) {
    match data.len() {
        n @ (1 | 2 | 4 | 8) => {
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(data);
            m.mmio_write(addr, n as u8, u64::from_le_bytes(v));
        }
        _ => {
            for (i, &b) in data.iter().enumerate() {
                m.mmio_write(addr + i as u64, 1, u64::from(b));
            }
        }
    }
}

/// The run loop proper, with the kick timer armed by `kick` while it runs.
fn run_vcpu(vcpu: &mut Vcpu, kick: &mut KickGuard, m: &mut Machine, until: u64) -> Result<Exit, AccelError> {
    let deterministic = m.clock().is_deterministic();
    let mut wall_deadline = None;
    loop {
        let now = m.now();
        if now >= until {
            return Ok(Exit::Deadline);
        }
        if vcpu.halted {
            if vcpu.if_flag && m.intr_pending() {
                vcpu.halted = false;
            } else {
                return Ok(Exit::Halted);
            }
        }
        vcpu.offer_interrupt(m).map_err(|e| AccelError::Kvm(format!("{e}\n{}", vcpu.report())))?;
        if until != u64::MAX {
            let at = *wall_deadline.get_or_insert_with(|| Instant::now() + Duration::from_nanos(until - now));
            kick.arm(at);
        }
        let started = deterministic.then(Instant::now);
        let step = vcpu.run_once(m);
        if let Some(t) = started {
            // A deterministic clock does not follow the host; under KVM it is moved on by
            // the time the guest spent running, so deadlines still come.
            m.clock_mut().advance(t.elapsed().as_nanos() as u64);
        }
        match step {
            Step::Resume => {}
            Step::Accessed => {
                if m.take_attention() {
                    return Ok(Exit::Attention);
                }
            }
            Step::Interrupted => {
                vcpu.set_immediate_exit(false);
                // The kick may have come early by the deterministic clock: aim again.
                wall_deadline = None;
                kick.disarmed();
            }
            Step::Return(e) => return Ok(e),
            Step::Fail(why) => return Err(AccelError::Kvm(format!("{why}\n{}", vcpu.report()))),
        }
    }
}

impl Backend for Kvm {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn run(&mut self, m: &mut Machine, until: u64) -> Result<Exit, AccelError> {
        if MapKey::of(m) != self.map_key {
            self.map_memory(m)?;
        }
        self.vcpu.set_immediate_exit(false);
        let immediate_exit = std::ptr::addr_of_mut!(self.vcpu.kvm_run().immediate_exit);
        let mut kick = self.kicker.enter(immediate_exit).map_err(AccelError::Kvm)?;
        let r = run_vcpu(&mut self.vcpu, &mut kick, m, until);
        drop(kick);
        self.vcpu.set_immediate_exit(false);
        // Leave the vCPU consistent for `state` and `set_state`, which cannot reach the machine.
        let done = self.vcpu.finish_io(m).map_err(|e| AccelError::Kvm(format!("{e}\n{}", self.vcpu.report())));
        // The hardware sees DMA and firmware writes to guest memory directly: the list of
        // written pages the interpreter uses to drop decoded code would only grow here.
        let mut written = Vec::new();
        m.memory_mut().take_written(&mut written);
        let exit = r?;
        done?;
        Ok(exit)
    }

    fn state(&mut self, _cpu: usize) -> CpuState {
        match state::read(&self.vcpu.fd) {
            Ok(mut s) => {
                s.halted = self.vcpu.halted;
                s
            }
            Err(e) => {
                tracing::error!("cannot read the KVM vCPU state: {e}");
                CpuState { halted: self.vcpu.halted, ..CpuState::default() }
            }
        }
    }

    fn set_state(&mut self, _cpu: usize, s: &CpuState) -> Result<(), AccelError> {
        state::write(&self.vcpu.fd, s).map_err(AccelError::Kvm)?;
        self.vcpu.halted = s.halted;
        self.vcpu.if_flag = s.rflags & flags::IF != 0;
        self.vcpu.run_info_valid = false;
        Ok(())
    }

    fn halted(&mut self, _cpu: usize) -> bool {
        self.vcpu.halted
    }

    fn interrupts_enabled(&mut self, _cpu: usize) -> bool {
        self.vcpu.if_flag
    }
}
