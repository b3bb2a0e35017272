//! Multiprocessor machines (`--smp N`): the SMP test kernel (`tests/smp/smptest.asm`,
//! assembled with NASM here, booted directly as a multiboot kernel) reads the MP table, starts
//! every application processor with INIT and STARTUP IPIs, has each report its APIC ID, passes
//! an IPI around the ring of processors, sends broadcast, logical and NMI IPIs, rewrites code
//! the others have run, and routes the PIT's IRQ 0 through the I/O APIC to each processor.
//!
//! - under the interpreter for 1, 2, 8 and 64 processors, and twice for 8 to show that the
//!   time-sliced processors run reproducibly;
//! - under KVM for the processor counts the backend runs (skipped, saying why, where KVM is
//!   unusable or the host's KVM cannot run the kernel).

use accel::RunOutcome;
use machine::firmware::boot::{BootFile, BootFiles};
use std::time::Duration;
use tests::{kvm_has_hardware_virtualization, kvm_usable, nasm, run_kernel_smp, BackendKind, RomRun, RunError};

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

fn run(cpus: u32, backend: BackendKind) -> Option<Result<RomRun, RunError>> {
    let kernel = nasm("smp/smptest.asm", &[])?;
    let files = BootFiles {
        kernel: BootFile { name: "smptest".into(), data: kernel },
        modules: vec![],
        cmdline: String::new(),
    };
    Some(run_kernel_smp(files, RAM, cpus, backend, Duration::from_secs(300)))
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

#[test]
fn under_kvm() {
    if let Err(why) = kvm_usable() {
        println!("skipped: smp under_kvm: {why}");
        return;
    }
    for cpus in [1, 2, 8, 64] {
        match run(cpus, BackendKind::Kvm) {
            None => return,
            Some(Ok(r)) => check(cpus, BackendKind::Kvm, &r),
            Some(Err(RunError::Unavailable(why))) => println!("skipped: smp under_kvm with {cpus} processors: {why}"),
            Some(Err(RunError::Backend(e, report))) if !kvm_has_hardware_virtualization() => {
                // A paravirtual KVM (PVM) emulates 32-bit ring-0 code in the host kernel,
                // whose emulator lacks instructions the kernel uses (IRET among them).
                println!(
                    "skipped: smp under_kvm with {cpus} processors: this host's KVM is paravirtual \
                     (no VMX/SVM) and failed on the kernel: {e}\n{report}"
                );
            }
            Some(Err(e)) => panic!("{cpus} processor(s) under KVM: {e}"),
        }
    }
}
