//! The project's own ROMs (roms/), booted in-process from the reset vector with the serial port
//! and the debug console captured:
//!
//! - `interp::<rom>`: under the interpreter in deterministic mode, twice: both runs must end
//!   the same way with the same output and the same complete CPU state; the output must be
//!   what the ROM prints under another PC emulator (`tests/reference/<rom>.txt`, recorded
//!   with QEMU by `tests/reference/record-with-qemu.sh`), on the serial port and the debug
//!   console alike.
//! - `interp_vs_kvm::<rom>`: the interpreter against KVM: same serial and debug console output,
//!   same ending, and for the programs whose end state does not depend on timing (hello,
//!   exceptions, arith) the same registers, flags, selectors and segment bases (see
//!   `tests::state_differences` for what is left out and why). Skipped, saying why, where
//!   KVM cannot be used. On a host whose KVM lacks hardware virtualization (a paravirtual
//!   KVM such as PVM), real mode runs in the host kernel's instruction emulator, which cannot
//!   run everything real hardware can (UD2, DAA, ENTER with nesting): there a KVM run that
//!   fails in the backend is reported as skipped, while any difference between two finished
//!   runs still fails.

use accel::RunOutcome;
use machine::ClockMode;
use std::time::Duration;
use tests::{kvm_has_hardware_virtualization, kvm_usable, run_rom, state_differences, BackendKind, RomRun, RomSetup, RunError};

/// Wall-clock limit for a ROM that should finish: generous, for a loaded 2-core machine.
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `spin` is left spinning.
const SPIN_TIMEOUT: Duration = Duration::from_millis(500);

/// What the serial_echo ROM is given to read.
const ECHO_INPUT: &[u8] = b"Ferrite echo test\r";

struct Case {
    name: &'static str,
    input: &'static [u8],
    /// How the run must end.
    outcome: RunOutcome,
    timeout: Duration,
    /// Does the final CPU state follow from the program alone (not from when interrupts or
    /// input arrived)? Then it is compared between backends.
    timing_independent: bool,
    /// The output recorded under QEMU, if the ROM finishes.
    reference: Option<&'static str>,
}

fn case(name: &str) -> Case {
    let finishing = |reference, timing_independent, input| Case {
        name: roms::NAMES.iter().find(|n| **n == name).expect("a ROM of that name"),
        input,
        outcome: RunOutcome::Exit(0),
        timeout: FINISH_TIMEOUT,
        timing_independent,
        reference: Some(reference),
    };
    match name {
        "hello" => finishing(include_str!("../reference/hello.txt"), true, b""),
        "timer" => finishing(include_str!("../reference/timer.txt"), false, b""),
        "serial_echo" => finishing(include_str!("../reference/serial_echo.txt"), false, ECHO_INPUT),
        "exceptions" => finishing(include_str!("../reference/exceptions.txt"), true, b""),
        "arith" => finishing(include_str!("../reference/arith.txt"), true, b""),
        "spin" => Case {
            name: "spin",
            input: b"",
            outcome: RunOutcome::Timeout,
            timeout: SPIN_TIMEOUT,
            timing_independent: false,
            reference: None,
        },
        other => panic!("no test case for ROM {other:?}: add one to tests/tests/roms.rs"),
    }
}

fn run(c: &Case, backend: BackendKind) -> Result<RomRun, RunError> {
    let image = roms::by_name(c.name).expect("ROM image");
    run_rom(&RomSetup { image, backend, clock: ClockMode::Deterministic, serial_input: c.input, timeout: c.timeout })
}

/// Checks one finished run against the case: ending, output on both channels, reference.
fn check_run(c: &Case, r: &RomRun) {
    assert_eq!(r.outcome, c.outcome, "{}: wrong ending\n{}", c.name, r.describe());
    assert_eq!(
        r.serial_text(),
        r.debugcon_text(),
        "{}: the serial port and the debug console got different output\n{}",
        c.name,
        r.describe()
    );
    match c.reference {
        Some(reference) => assert_eq!(
            r.serial_text(),
            reference,
            "{}: output differs from tests/reference/{}.txt (recorded under QEMU)\n{}",
            c.name,
            c.name,
            r.describe()
        ),
        None => assert!(!r.serial.is_empty(), "{}: printed nothing\n{}", c.name, r.describe()),
    }
    if r.outcome == RunOutcome::Timeout {
        assert!(r.report.contains("rip="), "{}: the report lacks the CPU state:\n{}", c.name, r.report);
    }
}

fn interp_deterministic(name: &str) {
    let c = case(name);
    let first = run(&c, BackendKind::Interp).unwrap_or_else(|e| panic!("{name}: {e}"));
    check_run(&c, &first);
    if c.outcome == RunOutcome::Timeout {
        // Where a run stopped by the wall clock ends depends on the host's speed.
        return;
    }
    let second = run(&c, BackendKind::Interp).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(second.outcome, first.outcome, "{name}: two deterministic runs ended differently");
    assert_eq!(second.serial, first.serial, "{name}: two deterministic runs printed differently");
    assert_eq!(second.debugcon, first.debugcon, "{name}: debug console differs between two deterministic runs");
    assert_eq!(second.state, first.state, "{name}: two deterministic runs left different CPU states");
}

fn interp_vs_kvm(name: &str, test: &str) {
    if let Err(why) = kvm_usable() {
        println!("skipped: {test} needs KVM ({why})");
        return;
    }
    let c = case(name);
    let kvm = match run(&c, BackendKind::Kvm) {
        Ok(r) => r,
        Err(RunError::Backend(e, report)) if !kvm_has_hardware_virtualization() => {
            println!(
                "skipped: {test} needs KVM with hardware virtualization (this host's KVM is \
                 paravirtual and failed on the ROM: {e})\n{report}"
            );
            return;
        }
        Err(e) => panic!("{name} under KVM: {e}"),
    };
    let interp = run(&c, BackendKind::Interp).unwrap_or_else(|e| panic!("{name} under the interpreter: {e}"));
    check_run(&c, &interp);
    check_run(&c, &kvm);
    assert_eq!(kvm.serial_text(), interp.serial_text(), "{name}: serial output differs between the backends");
    assert_eq!(kvm.debugcon, interp.debugcon, "{name}: debug console output differs between the backends");
    assert_eq!(kvm.outcome, interp.outcome, "{name}: the backends ended differently");
    if c.timing_independent {
        let diff = state_differences(&interp.state, &kvm.state);
        assert!(
            diff.is_empty(),
            "{name}: final CPU state differs (interpreter vs KVM):\n  {}\n--- interpreter ---\n{}--- KVM ---\n{}",
            diff.join("\n  "),
            interp.report,
            kvm.report
        );
    }
}

macro_rules! rom_tests {
    ($($rom:ident),* $(,)?) => {
        mod interp {
            $(
                #[test]
                fn $rom() {
                    super::interp_deterministic(stringify!($rom));
                }
            )*
        }
        mod interp_vs_kvm {
            $(
                #[test]
                fn $rom() {
                    super::interp_vs_kvm(stringify!($rom), concat!("interp_vs_kvm::", stringify!($rom)));
                }
            )*
        }
    };
}

rom_tests!(hello, timer, serial_echo, exceptions, arith, spin);

/// Every ROM in roms:: has a case here (a new ROM must be added to `rom_tests!`).
#[test]
fn every_rom_is_tested() {
    const TESTED: &[&str] = &["hello", "timer", "serial_echo", "exceptions", "arith", "spin"];
    for name in roms::NAMES {
        assert!(TESTED.contains(name), "ROM {name} has no test in tests/tests/roms.rs");
        let _ = case(name);
    }
}
