//! The KVM backend: the machine's processors run by the host kernel
//! (Documentation/virt/kvm/api.rst), with Firecracker's vCPU loop as the model. Guest RAM and
//! ROM are memory slots built from `Memory::regions` (ROM read-only, so guest writes to it come
//! back as MMIO exits and are dropped); everything else is device memory and reaches the
//! machine as MMIO exits. The interrupt controllers stay in userspace, shared with the
//! interpreter: the machine's 8259A pair, I/O APIC and local APICs (whose registers are MMIO
//! exits); interrupts are injected with KVM_INTERRUPT, exactly as the interpreter takes them.
//!
//! With `--smp N` there is one vCPU per processor and, for each `run`, one host thread per
//! vCPU. The machine is behind a lock taken for each exit's device accesses only; the first
//! vCPU to end the run (a deadline, an exit the machine must look at, all vCPUs idle) kicks
//! the others out of KVM_RUN. Application processors wait for SIPI in userspace (KVM's MP
//! states need its in-kernel APIC).
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
    kvm_interrupt, kvm_run, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY,
};
use kvm_ioctls::{Cap, VcpuExit, VcpuFd, VmFd};
use machine::{Machine, Region, RegionKind};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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
    /// One per processor of the machine; processor i has APIC ID i.
    vcpus: Vec<Vcpu>,
    /// Declared after the vCPUs so their fds close first.
    vm: VmFd,
    _kvm: kvm_ioctls::Kvm,
    /// One per vCPU: each vCPU thread has its own deadline timer.
    kickers: Vec<Kicker>,
    /// The regions registered as slots 0.., in order.
    slots: Vec<Region>,
    map_key: MapKey,
    /// A state with kvmclock on was loaded: where its structure is and the TSC loaded, for
    /// setting the VM's clock before the next run.
    clock_handover: Option<(u64, u64)>,
    /// Set from another thread (`VmControl`): the run ends at once.
    interrupt: Arc<AtomicBool>,
}

/// The vCPU and what the backend caches about it.
struct Vcpu {
    fd: VcpuFd,
    /// The processor's index in the machine (its local APIC).
    index: usize,
    /// HLT was executed and no interrupt has been taken since. KVM leaves this to userspace
    /// when the interrupt controller is there.
    halted: bool,
    /// An application processor waiting for a STARTUP IPI (KVM's MP states need its in-kernel
    /// local APIC; the machine's is in userspace): it does not run.
    wait_for_sipi: bool,
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
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| AccelError::Kvm(format!("KVM_GET_SUPPORTED_CPUID: {e}")))?;
        let n = machine.cpu_count().max(1);
        let max = kvm.get_max_vcpus();
        if n > max {
            return Err(unavailable(format!("the host KVM runs at most {max} vCPUs per VM; the machine has {n} processors")));
        }
        let mut vcpus = Vec::with_capacity(n);
        let mut kickers = Vec::with_capacity(n);
        for index in 0..n {
            let mut own = cpuid.clone();
            filter_cpuid(&mut own, index as u8, n as u8);
            let fd = vm.create_vcpu(index as u64).map_err(|e| AccelError::Kvm(format!("KVM_CREATE_VCPU {index}: {e}")))?;
            fd.set_cpuid2(&own).map_err(|e| AccelError::Kvm(format!("KVM_SET_CPUID2 (vCPU {index}): {e}")))?;
            vcpus.push(Vcpu {
                fd,
                index,
                halted: false,
                wait_for_sipi: index > 0,
                if_flag: false,
                run_info_valid: false,
                io_pending: false,
            });
            kickers.push(Kicker::new().map_err(AccelError::Kvm)?);
        }
        let mut k = Kvm {
            vcpus,
            vm,
            _kvm: kvm,
            kickers,
            slots: Vec::new(),
            map_key: MapKey::of(machine),
            clock_handover: None,
            interrupt: Arc::default(),
        };
        k.map_memory(machine)?;
        tracing::debug!(slots = k.slots.len(), vcpus = n, "KVM VM created");
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
                flags: match r.kind {
                    RegionKind::Ram => 0,
                    RegionKind::Rom => KVM_MEM_READONLY,
                    // The framebuffer: KVM logs the pages written, the display asks for them.
                    RegionKind::DeviceRam => KVM_MEM_LOG_DIRTY_PAGES,
                },
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

    /// Adds the pages the guest wrote in directly mapped device memory since the last call
    /// (KVM's dirty log of those slots, which the call also clears) to the machine's log.
    fn collect_dirty_log(&mut self, m: &mut Machine) -> Result<(), AccelError> {
        for (slot, r) in self.slots.iter().enumerate().filter(|(_, r)| r.kind == RegionKind::DeviceRam) {
            let bitmap = self
                .vm
                .get_dirty_log(slot as u32, r.size as usize)
                .map_err(|e| AccelError::Kvm(format!("dirty log of memory slot {slot} at {:#x}: {e}", r.guest)))?;
            for (w, &bits) in bitmap.iter().enumerate() {
                let mut b = bits;
                while b != 0 {
                    let page = w as u64 * 64 + u64::from(b.trailing_zeros());
                    m.memory_mut().log_device_write(r.guest + page * machine::memory::PAGE_SIZE, 1);
                    b &= b - 1;
                }
            }
        }
        Ok(())
    }
}

/// The supported CPUID, made to describe processor `id` of `count` on this machine: a local
/// APIC (the machine's, in userspace: its registers are MMIO exits) with this processor's ID
/// and the package's size (leaves 1, 4 and 0xB, as the interpreter reports them), but no
/// x2APIC and no TSC-deadline timer (their MSRs would go to KVM, not to the machine's APIC).
/// CPUID leaf of KVM's paravirtual features and the bits Ferrite keeps (Linux
/// `arch/x86/include/uapi/asm/kvm_para.h`).
const KVM_CPUID_FEATURES: u32 = 0x4000_0001;
const KVM_FEATURE_NOP_IO_DELAY: u32 = 1 << 1;
const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;
const KVM_FEATURE_CLOCKSOURCE_STABLE_BIT: u32 = 1 << 24;

fn filter_cpuid(cpuid: &mut CpuId, id: u8, count: u8) {
    let (id32, n) = (u32::from(id), u32::from(count.max(1)));
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.edx |= 1 << 9;
                e.ecx &= !((1 << 21) | (1 << 24));
                e.ebx = (e.ebx & 0xFFFF) | (n << 16) | (id32 << 24);
                if n > 1 {
                    e.edx |= 1 << 28;
                } else {
                    e.edx &= !(1 << 28);
                }
            }
            4 => e.eax = (e.eax & 0x03FF_FFFF) | ((n - 1) << 26),
            // KVM's paravirtual features: only what works with the machine's local APIC in
            // userspace and what `CpuState` carries to the other backend: the clock
            // (kvmclock through the new MSRs, with the stable-TSC flag) and port 0x80 without
            // delay. PV EOI, PV IPIs, PV unhalt need the in-kernel local APIC; async page
            // faults and steal time keep state `CpuState` does not hold.
            KVM_CPUID_FEATURES => e.eax &= KVM_FEATURE_NOP_IO_DELAY | KVM_FEATURE_CLOCKSOURCE2 | KVM_FEATURE_CLOCKSOURCE_STABLE_BIT,
            0xB => {
                let level = e.index;
                (e.eax, e.ebx, e.ecx) = match level {
                    0 => (0, 1, 1 << 8),
                    1 => (32 - (n - 1).leading_zeros(), n, (2 << 8) | 1),
                    _ => (0, 0, level & 0xFF),
                };
                e.edx = id32;
            }
            _ => {}
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

    /// One KVM_RUN, with the exit handled as far as the machine goes (the machine is locked
    /// for that only, so other vCPUs run meanwhile).
    fn run_once(&mut self, mm: &MachineLock) -> Step {
        let run_ptr: *const kvm_run = self.fd.get_kvm_run();
        let cpu = self.index;
        let step = match self.fd.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                // SAFETY: the exit was KVM_EXIT_IO, so `io` is the union member in use; the
                // bytes read are not those of `data`.
                let io = unsafe { (*run_ptr).__bindgen_anon_1.io };
                io_out(&mut lock(mm, cpu), port, io.size, data);
                Step::Accessed
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                // SAFETY: as for IoOut.
                let io = unsafe { (*run_ptr).__bindgen_anon_1.io };
                io_in(&mut lock(mm, cpu), port, io.size, data);
                Step::Accessed
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                mmio_read(&mut lock(mm, cpu), addr, data);
                Step::Accessed
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                mmio_write(&mut lock(mm, cpu), addr, data);
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
    fn finish_io(&mut self, mm: &MachineLock) -> Result<(), String> {
        while self.io_pending {
            self.set_immediate_exit(true);
            let step = self.run_once(mm);
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

/// The machine as the vCPU threads share it.
type MachineLock<'m> = Mutex<&'m mut Machine>;

/// Locks the machine for processor `cpu`: its local APIC is the one the accesses concern.
fn lock<'a, 'm>(mm: &'a MachineLock<'m>, cpu: usize) -> MutexGuard<'a, &'m mut Machine> {
    let mut g = mm.lock().unwrap_or_else(|e| e.into_inner());
    g.set_current_cpu(cpu);
    g
}

/// What the vCPU threads of one `run` share: the first to end the run (a deadline, an
/// exit the machine must see, every vCPU idle, a failure) records why and stops the others.
struct Coord {
    /// vCPUs taking part in the run.
    n: usize,
    stop: AtomicBool,
    /// vCPUs with nothing to run (halted, or waiting for SIPI).
    idle: AtomicUsize,
    /// Idle vCPUs wait here (with the machine's lock) for the run to end.
    cv: Condvar,
    /// The vCPU threads, for kicking them out of KVM_RUN; `None` once a thread is done.
    threads: Mutex<Vec<Option<libc::pthread_t>>>,
    outcome: Mutex<Option<Result<Exit, AccelError>>>,
    /// The backend's `interrupt` flag (a `VmControl` request).
    interrupt: Arc<AtomicBool>,
}

impl Coord {
    /// `n` of the machine's `all` vCPUs take part.
    fn new(all: usize, n: usize, interrupt: Arc<AtomicBool>) -> Coord {
        Coord {
            interrupt,
            n,
            stop: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            cv: Condvar::new(),
            threads: Mutex::new(vec![None; all]),
            outcome: Mutex::new(None),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Ends the run with `r` unless another vCPU already did; gets the others out of KVM_RUN
    /// and out of their idle waits.
    fn finish(&self, me: usize, r: Result<Exit, AccelError>) {
        {
            let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            if o.is_none() {
                *o = Some(r);
            }
        }
        if self.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        let threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for (i, t) in threads.iter().enumerate() {
            if let (true, Some(t)) = (i != me, t) {
                // SAFETY: the thread is alive: it removes itself from the list (under this
                // lock) before it ends; the kick signal has a handler in every vCPU thread.
                unsafe { libc::pthread_kill(*t, kick::kick_signal()) };
            }
        }
    }

    /// A vCPU has nothing to run: true if it is the last one, so the machine is halted;
    /// otherwise waits (the guard released meanwhile) for the run to end. Nothing else can
    /// give it work: whatever could (an IPI, an interrupt routed to it, a timer) is a change
    /// to the machine that ends the run (`take_attention`, or the deadline).
    fn idle<'a, 'm>(&self, g: MutexGuard<'a, &'m mut Machine>) -> (MutexGuard<'a, &'m mut Machine>, bool) {
        if self.stopping() {
            return (g, false);
        }
        if self.idle.fetch_add(1, Ordering::AcqRel) + 1 >= self.n {
            self.idle.fetch_sub(1, Ordering::AcqRel);
            return (g, true);
        }
        // `finish` sets `stop`, then takes and drops the machine's lock before notifying:
        // checked above with the lock held, it cannot be missed.
        let (g, _) = self.cv.wait_timeout(g, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner());
        self.idle.fetch_sub(1, Ordering::AcqRel);
        (g, false)
    }

    /// Wakes the idle vCPUs after `finish`.
    fn wake_idle(&self, mm: &MachineLock) {
        drop(mm.lock().unwrap_or_else(|e| e.into_inner()));
        self.cv.notify_all();
    }
}

/// The run loop proper for one vCPU, with the kick timer armed by `kick` while it runs.
fn run_vcpu(vcpu: &mut Vcpu, kick: &mut KickGuard, mm: &MachineLock, until: u64, co: &Coord) -> Result<Exit, AccelError> {
    let mut wall_deadline = None;
    loop {
        if co.stopping() || co.interrupt.load(Ordering::Acquire) {
            return Ok(Exit::Attention);
        }
        let mut g = lock(mm, vcpu.index);
        let now = g.now();
        if now >= until {
            return Ok(Exit::Deadline);
        }
        let deterministic = g.clock().is_deterministic();
        if vcpu.wait_for_sipi || (vcpu.halted && !(vcpu.if_flag && g.intr_pending())) {
            let (_g, all) = co.idle(g);
            if all {
                return Ok(Exit::Halted);
            }
            continue;
        }
        vcpu.halted = false;
        vcpu.offer_interrupt(&mut g).map_err(|e| AccelError::Kvm(format!("{e}\n{}", vcpu.report())))?;
        drop(g);
        if until != u64::MAX {
            let at = *wall_deadline.get_or_insert_with(|| Instant::now() + Duration::from_nanos(until - now));
            kick.arm(at);
        }
        // Asked to stop after the check above: the kick found the timer armed, or finds
        // this.
        if co.interrupt.load(Ordering::Acquire) {
            return Ok(Exit::Attention);
        }
        // A deterministic clock does not follow the host; under KVM the first vCPU moves it
        // on by the time it spent in the guest, so deadlines still come.
        let started = (deterministic && vcpu.index == 0).then(Instant::now);
        let step = vcpu.run_once(mm);
        if let Some(t) = started {
            lock(mm, vcpu.index).clock_mut().advance(t.elapsed().as_nanos() as u64);
        }
        match step {
            Step::Resume => {}
            Step::Accessed => {
                if lock(mm, vcpu.index).take_attention() {
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

/// One vCPU's share of a `run`, on the calling thread: runs it until the run ends, then lets
/// KVM finish its last I/O access so that `state` and `set_state` see a consistent vCPU.
fn vcpu_thread(vcpu: &mut Vcpu, kicker: &Kicker, mm: &MachineLock, until: u64, co: &Coord) {
    let me = vcpu.index;
    // SAFETY: pthread_self has no preconditions.
    co.threads.lock().unwrap_or_else(|e| e.into_inner())[me] = Some(unsafe { libc::pthread_self() });
    vcpu.set_immediate_exit(false);
    let immediate_exit = std::ptr::addr_of_mut!(vcpu.kvm_run().immediate_exit);
    let r = match kicker.enter(immediate_exit) {
        Ok(mut kick) => {
            let r = if co.stopping() { Ok(Exit::Attention) } else { run_vcpu(vcpu, &mut kick, mm, until, co) };
            drop(kick);
            r
        }
        Err(e) => Err(AccelError::Kvm(e)),
    };
    co.threads.lock().unwrap_or_else(|e| e.into_inner())[me] = None;
    vcpu.set_immediate_exit(false);
    let done = vcpu.finish_io(mm).map_err(|e| AccelError::Kvm(format!("{e}\n{}", vcpu.report())));
    co.finish(me, r.and_then(|exit| done.map(|()| exit)));
    co.wake_idle(mm);
}

impl Backend for Kvm {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn collect_device_writes(&mut self, m: &mut Machine) -> Result<(), AccelError> {
        self.collect_dirty_log(m)
    }

    fn watch_interrupts(&mut self, flag: Arc<AtomicBool>) -> Option<crate::vm::Kick> {
        self.interrupt = flag;
        let kicks: Vec<_> = self.kickers.iter().map(Kicker::kick_now).collect();
        Some(Arc::new(move || kicks.iter().for_each(kick::KickNow::kick)))
    }

    fn run(&mut self, m: &mut Machine, until: u64) -> Result<Exit, AccelError> {
        if let Some((at, tsc)) = self.clock_handover.take() {
            let mut info = [0u8; cpu::pvclock::INFO_SIZE];
            m.memory().read(at, &mut info);
            let clock = kvm_bindings::kvm_clock_data { clock: cpu::pvclock::read(&info, tsc), ..Default::default() };
            self.vm.set_clock(&clock).map_err(|e| AccelError::Kvm(format!("KVM_SET_CLOCK: {e}")))?;
        }
        if MapKey::of(m) != self.map_key {
            if m.memory().regions() != self.slots {
                // A slot's dirty log goes with it: hand it to the machine first.
                self.collect_dirty_log(m)?;
            }
            self.map_memory(m)?;
        }
        // Only vCPUs with something to do run: a halted one with nothing pending, or one
        // waiting for SIPI, gets work only from a change to the machine, which ends the run.
        let runnable: Vec<bool> = self
            .vcpus
            .iter()
            .map(|v| {
                m.set_current_cpu(v.index);
                !v.wait_for_sipi && !(v.halted && !(v.if_flag && m.intr_pending()))
            })
            .collect();
        let n = runnable.iter().filter(|&&r| r).count();
        if n == 0 {
            m.set_current_cpu(0);
            return Ok(Exit::Halted);
        }
        let co = Coord::new(self.vcpus.len(), n, self.interrupt.clone());
        let mm: MachineLock = Mutex::new(m);
        let mut running = self.vcpus.iter_mut().zip(&self.kickers).zip(runnable).filter(|(_, r)| *r).map(|(v, _)| v);
        if n == 1 {
            let (vcpu, kicker) = running.next().expect("one runnable vCPU");
            vcpu_thread(vcpu, kicker, &mm, until, &co);
        } else {
            // One host thread per running vCPU for the length of the run.
            std::thread::scope(|s| {
                for (vcpu, kicker) in running {
                    let (mm, co) = (&mm, &co);
                    s.spawn(move || vcpu_thread(vcpu, kicker, mm, until, co));
                }
            });
        }
        let m = mm.into_inner().unwrap_or_else(|e| e.into_inner());
        m.set_current_cpu(0);
        // The hardware sees DMA and firmware writes to guest memory directly: the list of
        // written pages the interpreter uses to drop decoded code would only grow here.
        let mut written = Vec::new();
        m.memory_mut().take_written(&mut written);
        let outcome = co.outcome.into_inner().unwrap_or_else(|e| e.into_inner());
        outcome.unwrap_or(Ok(Exit::Attention))
    }

    fn cpu_count(&self) -> usize {
        self.vcpus.len()
    }

    fn state(&mut self, cpu: usize) -> CpuState {
        let v = &self.vcpus[cpu];
        match state::read(&v.fd) {
            Ok(mut s) => {
                s.halted = v.halted;
                s.wait_for_sipi = v.wait_for_sipi;
                s
            }
            Err(e) => {
                tracing::error!("cannot read the state of KVM vCPU {cpu}: {e}");
                CpuState { halted: v.halted, wait_for_sipi: v.wait_for_sipi, ..CpuState::default() }
            }
        }
    }

    fn set_state(&mut self, cpu: usize, s: &CpuState) -> Result<(), AccelError> {
        if s.msr.kvm_system_time & 1 != 0 {
            // The guest reads kvmclock: before it runs, set the VM's clock to the time the
            // structure in its memory gives at the TSC loaded now, so it runs on unbroken.
            self.clock_handover = Some((s.msr.kvm_system_time & !1, s.tsc));
        }
        self.vcpus[cpu].load(s, true)
    }

    fn set_state_keeping_tsc(&mut self, cpu: usize, s: &CpuState) -> Result<(), AccelError> {
        self.vcpus[cpu].load(s, false)
    }

    fn halted(&mut self, cpu: usize) -> bool {
        let v = &self.vcpus[cpu];
        v.halted || v.wait_for_sipi
    }

    fn interrupts_enabled(&mut self, cpu: usize) -> bool {
        let v = &self.vcpus[cpu];
        v.if_flag && !v.wait_for_sipi
    }
}

impl Vcpu {
    /// Writes `s` into the vCPU (its TSC too, with `with_tsc`) and what the backend caches.
    fn load(&mut self, s: &CpuState, with_tsc: bool) -> Result<(), AccelError> {
        state::write(&self.fd, s, with_tsc).map_err(AccelError::Kvm)?;
        self.load_flags(s);
        Ok(())
    }

    /// What the backend caches about a vCPU whose state was just written.
    fn load_flags(&mut self, s: &CpuState) {
        self.halted = s.halted;
        self.wait_for_sipi = s.wait_for_sipi;
        self.if_flag = s.rflags & flags::IF != 0;
        self.run_info_valid = false;
    }
}
