//! Multiprocessor machines (`--smp N`): the SMP test kernel (`tests/smp/smptest.asm`,
//! assembled with NASM here, booted directly as a multiboot kernel) reads the MP table, starts
//! every application processor with INIT and STARTUP IPIs, has each report its APIC ID, passes
//! an IPI around the ring of processors, sends broadcast, logical and NMI IPIs, rewrites code
//! the others have run, and routes the PIT's IRQ 0 through the I/O APIC to each processor.
//!
//! - under the interpreter for 1, 2, 8 and 64 processors, and twice for 8 to show that the
//!   time-sliced processors run reproducibly;
//! - under KVM (one host thread per vCPU) for the same counts; on a paravirtual KVM (no
//!   VMX/SVM) the kernel's 32-bit ring-0 IRET stops the host's instruction emulator, so there
//!   only the start-up (every processor up with its APIC ID) is checked; skipped, saying why,
//!   where KVM is unusable.

use accel::RunOutcome;
use machine::firmware::boot::{BootFile, BootFiles};
use std::time::Duration;
use tests::{kvm_has_hardware_virtualization, kvm_usable, nasm, run_kernel_keeping_output, run_kernel_smp, BackendKind, RomRun, RunError};

const RAM: u64 = 64 << 20;

/// The checks the kernel makes, each printed as "PASS name" (one processor has no one to
/// exchange code with, so the last cross-modifying check needs two).
fn checks(cpus: u32) -> Vec<&'static str> {
    let mut c = vec![
        "mp-config-signature",
        "mp-config-checksum",
        "mp-local-apic-address",
        "mp-bsp-first",
        "mp-ioapic-and-irq0",
        "all-processors-up",
        "ipi-ring-complete",
        "ipi-ring-every-processor",
        "ipi-all-excluding-self",
        "ipi-logical-flat",
        "ipi-nmi",
        "cross-modifying-code-seen-by-others",
        "cross-modifying-code-own-write",
        "ioapic-irq0-to-each-processor",
    ];
    if cpus > 1 {
        c.push("cross-modifying-code-written-by-another");
    }
    c
}

fn files() -> Option<BootFiles> {
    let kernel = nasm("smp/smptest.asm", &[])?;
    Some(BootFiles { kernel: BootFile { name: "smptest".into(), data: kernel }, modules: vec![], cmdline: String::new() })
}

fn run(cpus: u32, backend: BackendKind) -> Option<Result<RomRun, RunError>> {
    Some(run_kernel_smp(files()?, RAM, cpus, backend, Duration::from_secs(300)))
}

/// Checks one run's output: every processor up with its own APIC ID, every check passed.
fn check(cpus: u32, backend: BackendKind, r: &RomRun) {
    let text = r.serial_text();
    let what = format!("{cpus} processor(s) under {backend:?}");
    assert_eq!(r.outcome, RunOutcome::Exit(0), "{what}: {}\n{text}", r.report);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&format!("smptest: {cpus} processor(s) in the MP table").as_str()), "{what}:\n{text}");
    for i in 0..cpus {
        let want = format!("cpu {i}: apic id {i}");
        assert!(lines.contains(&want.as_str()), "{what}: no line {want:?} in\n{text}");
    }
    assert_eq!(lines.iter().filter(|l| l.starts_with("cpu ")).count(), cpus as usize, "{what}: one report per processor:\n{text}");
    for c in checks(cpus) {
        let want = format!("PASS {c}");
        assert!(lines.contains(&want.as_str()), "{what}: no line {want:?} in\n{text}");
    }
    assert!(!text.contains("FAIL"), "{what}:\n{text}");
    assert!(lines.contains(&"smptest: done, 0 failure(s)"), "{what}:\n{text}");
}

fn interp(cpus: u32) -> Option<RomRun> {
    let r = run(cpus, BackendKind::Interp)?.unwrap_or_else(|e| panic!("{cpus} processor(s) under the interpreter: {e}"));
    check(cpus, BackendKind::Interp, &r);
    Some(r)
}

#[test]
fn one_processor() {
    interp(1);
}

#[test]
fn two_processors() {
    interp(2);
}

#[test]
fn eight_processors_twice_alike() {
    let Some(first) = interp(8) else { return };
    let Some(second) = interp(8) else { return };
    assert_eq!(first.serial, second.serial, "two deterministic runs printed differently");
    assert_eq!(first.state, second.state, "two deterministic runs left the bootstrap processor differently");
}

#[test]
fn sixty_four_processors() {
    interp(64);
}

/// The start-up part of the kernel's output: processors found, each one up with its own APIC
/// ID (as CPUID says it too), all of them started.
fn check_startup(cpus: u32, text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&format!("smptest: {cpus} processor(s) in the MP table").as_str()), "{cpus} under KVM:\n{text}");
    for i in 0..cpus {
        let want = format!("cpu {i}: apic id {i}");
        assert!(lines.contains(&want.as_str()), "{cpus} under KVM: no line {want:?} in\n{text}");
    }
    assert!(lines.contains(&"PASS all-processors-up"), "{cpus} under KVM:\n{text}");
    assert!(!text.contains("FAIL"), "{cpus} under KVM:\n{text}");
}

#[test]
fn under_kvm() {
    if let Err(why) = kvm_usable() {
        println!("skipped: smp under_kvm: {why}");
        return;
    }
    let Some(files) = files() else { return };
    for cpus in [1, 2, 8, 64] {
        let (r, partial) = run_kernel_keeping_output(files.clone(), RAM, cpus, BackendKind::Kvm, Duration::from_secs(300));
        match r {
            Ok(r) => check(cpus, BackendKind::Kvm, &r),
            Err(RunError::Unavailable(why)) => println!("skipped: smp under_kvm with {cpus} processors: {why}"),
            Err(RunError::Backend(e, _)) if !kvm_has_hardware_virtualization() => {
                // A paravirtual KVM (PVM) emulates 32-bit ring-0 code in the host kernel,
                // whose emulator lacks instructions the kernel uses (IRET among them): the
                // processors must all have come up before that.
                let text = String::from_utf8_lossy(&partial);
                check_startup(cpus, &text);
                println!(
                    "partly skipped: smp under_kvm with {cpus} processors: all came up with INIT/SIPI and \
                     reported their APIC IDs; then this host's KVM (paravirtual, no VMX/SVM) failed: {e}"
                );
            }
            Err(e) => panic!("{cpus} processor(s) under KVM: {e}"),
        }
    }
}

/// Four processors under the interpreter, stopped once the application processors are up,
/// their states handed to a new interpreter backend (as a move between backends does), and
/// run on: the kernel finishes with every check passed.
#[test]
fn states_handed_to_a_new_backend_midway() {
    use accel::{RunLimits, Vm, Watch};
    use machine::firmware::boot::DirectBoot;
    use machine::host::CaptureChar;
    use machine::{ClockMode, Machine, MachineConfig};

    let Some(files) = files() else { return };
    let cpus = 4;
    let serial = CaptureChar::new();
    let mut m = Machine::new(MachineConfig {
        ram_size: RAM,
        bios: machine::firmware::stub_rom::image(),
        clock: ClockMode::Deterministic,
        serial: Box::new(serial.clone()),
        cpus,
        ..MachineConfig::default()
    })
    .unwrap();
    let boot = DirectBoot::new(files, m.platform()).unwrap();
    let entry = accel::boot::entry_cpu_state(&m.set_direct_boot(boot));
    let mut vm = Vm::new(m, Box::new(accel::interp::Interp::new()), entry).unwrap();
    let limits = RunLimits { timeout: Some(Duration::from_secs(120)), no_reboot: true };
    let printed = |s: &CaptureChar| String::from_utf8_lossy(&s.output.lock().unwrap()).into_owned();
    let watched = serial.clone();
    let first = vm
        .run_watched(&limits, Duration::ZERO, &mut |_, _| {
            if printed(&watched).contains("PASS all-processors-up") {
                Watch::Stop(7)
            } else {
                Watch::Continue
            }
        })
        .unwrap();
    assert_eq!(first, RunOutcome::Stopped(7), "{}", printed(&serial));
    assert!(!printed(&serial).contains("smptest: done"), "stopped too late to mean anything:\n{}", printed(&serial));
    let states: Vec<_> = (0..cpus as usize).map(|i| vm.backend.state(i)).collect();
    assert!(states.iter().all(|s| !s.wait_for_sipi), "every processor was started");
    let mut fresh: Box<dyn accel::Backend> = Box::new(accel::interp::Interp::new());
    for (i, s) in states.iter().enumerate() {
        fresh.set_state(i, s).unwrap();
    }
    vm.backend = fresh;
    let end = vm.run(&limits).unwrap();
    let text = printed(&serial);
    assert_eq!(end, RunOutcome::Exit(0), "{}\n{text}", vm.report());
    for c in checks(cpus) {
        assert!(text.lines().any(|l| l == format!("PASS {c}")), "no PASS {c} in\n{text}");
    }
    assert!(!text.contains("FAIL"), "{text}");
}
