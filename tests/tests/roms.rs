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
//!   runs still fails. The system-level ROMs (sys_*) are compared line by line as far as
//!   such a KVM got: the lines it printed before failing in the backend, or before the ROM
//!   met an exception it did not expect (this KVM refuses some modes outright, 32-bit paging
//!   for one), must be the interpreter's first lines.
//!
//! The sys_* ROMs print one PASS/FAIL line per check. Two lists per ROM allow differences,
//! each entry naming a check (or, as a prefix followed by ": ", a group of checks):
//! `known_failures`, checks Ferrite's interpreter is known to get wrong, which the ROM marks
//! so that they print KNOWN instead of FAIL (each is written up in the case's comment with
//! what the Intel SDM and QEMU say); and `qemu_lacks`, checks QEMU's TCG (the reference) fails
//! because it does not implement what they test (`tests/reference/<rom>.note` says which and
//! why). Outputs are compared with those lines read as PASS and the summary lines left out;
//! a listed check that stops failing fails the test, so the lists cannot go stale.

use accel::RunOutcome;
use machine::ClockMode;
use std::time::Duration;
use tests::{
    kvm_has_hardware_virtualization, kvm_usable, run_rom, run_rom_keeping_output, state_differences, BackendKind, RomRun,
    RomSetup, RunError,
};

/// Wall-clock limit for a ROM that should finish: generous, for a loaded 2-core machine.
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `spin` is left spinning.
const SPIN_TIMEOUT: Duration = Duration::from_millis(500);

/// What the serial_echo ROM is given to read.
const ECHO_INPUT: &[u8] = b"Ferrite echo test\r";

/// The exit status of a ROM hit by an exception it did not expect (ferrite.inc's
/// EXIT_UNEXPECTED).
const EXIT_UNEXPECTED: u8 = 0xEE;

/// How a run must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Exit(u8),
    Timeout,
    TripleFault,
}

impl Ending {
    fn matches(self, outcome: &RunOutcome) -> bool {
        match (self, outcome) {
            (Ending::Exit(want), RunOutcome::Exit(got)) => want == *got,
            (Ending::Timeout, RunOutcome::Timeout) => true,
            (Ending::TripleFault, RunOutcome::TripleFault(_)) => true,
            _ => false,
        }
    }
}

struct Case {
    name: &'static str,
    input: &'static [u8],
    ending: Ending,
    timeout: Duration,
    /// Does the final CPU state follow from the program alone (not from when interrupts or
    /// input arrived)? Then it is compared between backends.
    timing_independent: bool,
    /// The output recorded under QEMU, if the ROM finishes.
    reference: Option<&'static str>,
    /// Checks the interpreter is known to fail (the ROM prints KNOWN for them).
    known_failures: &'static [&'static str],
    /// Checks QEMU fails: FAIL lines in the reference.
    qemu_lacks: &'static [&'static str],
}

fn case(name: &str) -> Case {
    let finishing = |reference, timing_independent, input| Case {
        name: roms::NAMES.iter().find(|n| **n == name).expect("a ROM of that name"),
        input,
        ending: Ending::Exit(0),
        timeout: FINISH_TIMEOUT,
        timing_independent,
        reference: Some(reference),
        known_failures: &[],
        qemu_lacks: &[],
    };
    // The system-level ROMs: their end state is not compared between backends, because a
    // known failure of the interpreter takes a different path through the program.
    let sys = |reference, known_failures, qemu_lacks| Case { known_failures, qemu_lacks, ..finishing(reference, false, b"") };
    match name {
        "hello" => finishing(include_str!("../reference/hello.txt"), true, b""),
        "timer" => finishing(include_str!("../reference/timer.txt"), false, b""),
        "serial_echo" => finishing(include_str!("../reference/serial_echo.txt"), false, ECHO_INPUT),
        "exceptions" => finishing(include_str!("../reference/exceptions.txt"), true, b""),
        "arith" => finishing(include_str!("../reference/arith.txt"), true, b""),
        "spin" => Case {
            name: "spin",
            input: b"",
            ending: Ending::Timeout,
            timeout: SPIN_TIMEOUT,
            timing_independent: false,
            reference: None,
            known_failures: &[],
            qemu_lacks: &[],
        },
        // QEMU's TCG checks no segment limits or types on data accesses, and lets EFER.LME
        // change under paging (sys_modes.note).
        "sys_modes" => sys(
            include_str!("../reference/sys_modes.txt"),
            &[],
            &[
                "16-bit protected mode: read past the segment limit is #GP(0)",
                "write through a read-only data segment is #GP(0)",
                "a null DS loads, and using it is #GP(0)",
                "real mode: an offset past a 64 KiB limit is #GP (vector 13)",
                "paging on: WRMSR changing EFER.LME is #GP(0)",
            ],
        ),
        "sys_paging" => sys(
            include_str!("../reference/sys_paging.txt"),
            &[],
            // QEMU 7.2's TCG: RSVD page faults lack the P bit (error 8, not 9); every CR3
            // load flushes global translations too; no PDPTE check on MOV CR3 (sys_paging.note).
            &[
                "#PF: 4 MiB PDE with reserved bit 21 set (RSVD)",
                "CR3 load with CR4.PGE: a global translation survives",
                "#PF: PAE PDE with an address bit above MAXPHYADDR (RSVD)",
                "#PF: PAE 2 MiB PDE with reserved bit 13 set (RSVD)",
                "#PF: PAE, the NX bit with EFER.NXE clear is reserved (RSVD)",
                "PAE: MOV CR3 with a reserved bit in a present PDPTE is #GP(0)",
                "#PF: 4-level 2 MiB PDE with reserved bit 13 set (RSVD)",
                "#PF: 1 GiB PDPTE with reserved bit 13 set (RSVD)",
                "#PF: PS set in a PML4 entry (RSVD)",
                "#PF: a reserved bit in the PML4 entry counts, not the empty table under it (RSVD)",
            ],
        ),
        "sys_gates" => sys(
            include_str!("../reference/sys_gates.txt"),
            // SDM vol. 3, 6.13: the error code's EXT bit is set when the exception occurred
            // while delivering an event external to the program "such as an interrupt or an
            // earlier exception"; #BR whose gate is not present must give #NP(5*8+2+1 = 2Bh).
            // QEMU gives 2Ah.
            &[],
            &["#BR through a not-present gate is #NP(IDT entry, EXT)"],
        ),
        "sys_tasks" => sys(include_str!("../reference/sys_tasks.txt"), &[], &[]),
        "sys_debug" => sys(
            include_str!("../reference/sys_debug.txt"),
            &[],
            // QEMU 7.2: no RF in the frame of a fault, INT1 (F1h) is #UD, no general
            // detect (sys_debug.note).
            &[
                "a fault (#GP) pushes EFLAGS with RF set",
                "INT1 (F1h) raises #DB",
                "INT1: a trap, EIP after it",
                "INT1 at ring 3 through a DPL 0 gate: #DB, no privilege check",
                "INT1 at ring 3: returns to ring 3",
                "general detect: MOV from DR0 with DR7.GD is #DB",
                "general detect: a fault, EIP at the MOV",
                "general detect: DR6.BD",
            ],
        ),
        // QEMU 7.2: SYSCALL loses the arithmetic flags, no canonical check on WRMSR of the
        // GS base (sys_fastcall.note).
        "sys_fastcall" => sys(
            include_str!("../reference/sys_fastcall.txt"),
            &[],
            &["SYSCALL: RFLAGS AND NOT IA32_FMASK", "WRMSR of a non-canonical IA32_GS_BASE is #GP(0)"],
        ),
        "sys_iobitmap" => sys(include_str!("../reference/sys_iobitmap.txt"), &[], &[]),
        // Ends in a triple fault: what it printed before must match QEMU's.
        "sys_triple" => Case { ending: Ending::TripleFault, ..sys(include_str!("../reference/sys_triple.txt"), &[], &[]) },
        other => panic!("no test case for ROM {other:?}: add one to tests/tests/roms.rs"),
    }
}

fn run(c: &Case, backend: BackendKind) -> Result<RomRun, RunError> {
    run_rom(&setup(c, backend))
}

fn setup(c: &Case, backend: BackendKind) -> RomSetup<'static> {
    let image = roms::by_name(c.name).expect("ROM image");
    RomSetup { image, backend, clock: ClockMode::Deterministic, serial_input: c.input, timeout: c.timeout }
}

/// A check's line: ("PASS" | "FAIL" | "KNOWN", the check's name).
fn check_line(line: &str) -> Option<(&'static str, &str)> {
    for (prefix, verdict) in [("PASS  ", "PASS"), ("FAIL  ", "FAIL"), ("KNOWN ", "KNOWN")] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return Some((verdict, rest.split(": got ").next().unwrap_or(rest)));
        }
    }
    None
}

/// Does `entry` (from a case's list) name the check `name`: the check itself, or the group
/// of checks `entry: ...`?
fn names(entry: &str, name: &str) -> bool {
    name == entry || name.strip_prefix(entry).is_some_and(|rest| rest.starts_with(": "))
}

/// The complete lines of a ROM's output, without line ends.
fn lines(text: &str) -> Vec<&str> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    if complete.is_empty() && !text.starts_with('\n') {
        return Vec::new();
    }
    complete.split('\n').map(|l| l.trim_end_matches('\r')).collect()
}

/// A ROM's output with the differences its case allows taken out: a check failing with one
/// of `verdicts` (FAIL or KNOWN in the reference, KNOWN from Ferrite) that `listed` names
/// reads as PASS, and the summary lines (the counts, the verdict) are left out. Without
/// lists: every line.
fn normalized(text: &str, rom: &str, verdicts: &[&str], listed: &[&str], has_lists: bool) -> Vec<String> {
    let summary = |l: &str| {
        l.strip_prefix(rom).and_then(|r| r.strip_prefix(": ")).is_some_and(|r| {
            r == "PASS" || r == "FAIL" || (r.split(' ').next().is_some_and(|n| n.parse::<u32>().is_ok()) && r.contains(" checks"))
        })
    };
    lines(text)
        .into_iter()
        .filter(|l| !(has_lists && summary(l)))
        .map(|l| match check_line(l) {
            Some((v, name)) if verdicts.contains(&v) && listed.iter().any(|e| names(e, name)) => format!("PASS  {name}"),
            _ => l.to_string(),
        })
        .collect()
}

impl Case {
    fn has_lists(&self) -> bool {
        !self.known_failures.is_empty() || !self.qemu_lacks.is_empty()
    }

    /// Ferrite's output (either backend), normalized for comparison.
    fn ours(&self, text: &str) -> Vec<String> {
        normalized(text, self.name, &["KNOWN"], self.known_failures, self.has_lists())
    }

    fn reference_lines(&self, reference: &str) -> Vec<String> {
        normalized(reference, self.name, &["FAIL", "KNOWN"], self.qemu_lacks, self.has_lists())
    }
}

/// The first line where two outputs differ, for messages.
fn first_difference(a: &[String], b: &[String]) -> String {
    let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    format!(
        "line {}:\n  {}\n  {}",
        at + 1,
        a.get(at).map_or("(end of output)", |s| s.as_str()),
        b.get(at).map_or("(end of output)", |s| s.as_str())
    )
}

/// Checks one finished run against the case: ending, output on both channels, reference.
fn check_run(c: &Case, r: &RomRun) {
    assert!(c.ending.matches(&r.outcome), "{}: wrong ending, expected {:?}\n{}", c.name, c.ending, r.describe());
    assert_eq!(
        r.serial_text(),
        r.debugcon_text(),
        "{}: the serial port and the debug console got different output\n{}",
        c.name,
        r.describe()
    );
    match c.reference {
        Some(reference) if !c.has_lists() => assert_eq!(
            r.serial_text(),
            reference,
            "{}: output differs from tests/reference/{}.txt (recorded under QEMU)\n{}",
            c.name,
            c.name,
            r.describe()
        ),
        Some(reference) => {
            let ours = c.ours(&r.serial_text());
            let theirs = c.reference_lines(reference);
            assert!(
                ours == theirs,
                "{}: output differs from tests/reference/{}.txt (recorded under QEMU; compared with the \
                 known failures and what QEMU lacks read as PASS), {} (ours, then QEMU's)\n{}",
                c.name,
                c.name,
                first_difference(&ours, &theirs),
                r.describe()
            );
            for entry in c.qemu_lacks {
                assert!(
                    lines(reference).iter().any(|l| check_line(l).is_some_and(|(v, n)| v != "PASS" && names(entry, n))),
                    "{}: tests/reference/{}.txt no longer fails {entry:?}: take it out of qemu_lacks",
                    c.name,
                    c.name
                );
            }
        }
        None => assert!(!r.serial.is_empty(), "{}: printed nothing\n{}", c.name, r.describe()),
    }
    if r.outcome == RunOutcome::Timeout {
        assert!(r.report.contains("rip="), "{}: the report lacks the CPU state:\n{}", c.name, r.report);
    }
}

/// The interpreter's KNOWN lines must be exactly the case's known failures: a new one must be
/// listed (and written up), and one that passes now must be unmarked in the ROM and here.
fn check_known_failures(c: &Case, r: &RomRun) {
    let text = r.serial_text();
    let known: Vec<&str> = lines(&text).into_iter().filter_map(check_line).filter(|(v, _)| *v == "KNOWN").map(|(_, n)| n).collect();
    for name in &known {
        assert!(
            c.known_failures.iter().any(|e| names(e, name)),
            "{}: the ROM marks {name:?} as a known failure, but tests/tests/roms.rs does not list it",
            c.name
        );
    }
    for entry in c.known_failures {
        assert!(
            known.iter().any(|n| names(entry, n)),
            "{}: {entry:?} passes under the interpreter now: remove its known-failure mark (XEQ, \
             XCHECK, XEXPECT_*) from roms/asm/{}.asm and the entry from tests/tests/roms.rs",
            c.name,
            c.name
        );
    }
}

fn interp_deterministic(name: &str) {
    let c = case(name);
    let first = run(&c, BackendKind::Interp).unwrap_or_else(|e| panic!("{name}: {e}"));
    check_run(&c, &first);
    check_known_failures(&c, &first);
    if c.ending == Ending::Timeout {
        // Where a run stopped by the wall clock ends depends on the host's speed.
        return;
    }
    let second = run(&c, BackendKind::Interp).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(second.outcome, first.outcome, "{name}: two deterministic runs ended differently");
    assert_eq!(second.serial, first.serial, "{name}: two deterministic runs printed differently");
    assert_eq!(second.debugcon, first.debugcon, "{name}: debug console differs between two deterministic runs");
    assert_eq!(second.state, first.state, "{name}: two deterministic runs left different CPU states");
}

/// On a paravirtual KVM, compares a run that stopped early with the interpreter's as far as it
/// got, then reports the rest as skipped.
fn compare_partial(c: &Case, test: &str, kvm_output: &[u8], why: &str) {
    let interp = run(c, BackendKind::Interp).unwrap_or_else(|e| panic!("{} under the interpreter: {e}", c.name));
    check_run(c, &interp);
    let kvm_text = String::from_utf8_lossy(kvm_output);
    // Up to the report of an unexpected exception, if the ROM made one.
    let kept: Vec<&str> = lines(&kvm_text).into_iter().take_while(|l| !l.starts_with("unexpected ")).collect();
    let kept = kept.join("\n") + "\n";
    let mut kvm = c.ours(&kept);
    while kvm.last().is_some_and(|l| l.is_empty()) {
        kvm.pop();
    }
    let mut ours = c.ours(&interp.serial_text());
    // A paravirtual KVM hands the guest the host's CPUID (filtered), so checks of what CPUID
    // advertises describe the backend, not the instruction semantics being compared: they are
    // left out on both sides.
    let about_cpuid = |l: &String| l.contains("CPUID");
    kvm.retain(|l| !about_cpuid(l));
    ours.retain(|l| !about_cpuid(l));
    assert!(
        kvm.len() <= ours.len() && kvm[..] == ours[..kvm.len()],
        "{}: before KVM stopped, its output differs from the interpreter's, {} (KVM's, then the interpreter's)",
        c.name,
        first_difference(&kvm, &ours)
    );
    println!(
        "partly skipped: {test}: the first {} of {} lines agree with the interpreter; then this host's KVM \
         (paravirtual, without hardware virtualization) stopped: {why}",
        kvm.len(),
        ours.len()
    );
}

fn interp_vs_kvm(name: &str, test: &str) {
    if let Err(why) = kvm_usable() {
        println!("skipped: {test} needs KVM ({why})");
        return;
    }
    let c = case(name);
    let paravirtual = !kvm_has_hardware_virtualization();
    let is_sys = c.name.starts_with("sys_");
    let (attempt, partial) = run_rom_keeping_output(&setup(&c, BackendKind::Kvm));
    let kvm = match attempt {
        Ok(r) if paravirtual && is_sys && r.outcome == RunOutcome::Exit(EXIT_UNEXPECTED) => {
            let text = r.serial_text();
            let what = lines(&text).into_iter().find(|l| l.starts_with("unexpected ")).unwrap_or("").to_string();
            compare_partial(&c, test, &r.serial, &format!("the ROM met an exception the interpreter does not raise ({what})"));
            return;
        }
        Ok(r) => r,
        Err(RunError::Backend(e, report)) if paravirtual && is_sys => {
            compare_partial(&c, test, &partial, &format!("KVM failed in the backend: {e}\n{report}"));
            return;
        }
        Err(RunError::Backend(e, report)) if paravirtual => {
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
    assert_eq!(c.ours(&kvm.serial_text()), c.ours(&interp.serial_text()), "{name}: serial output differs between the backends");
    if !c.has_lists() {
        assert_eq!(kvm.debugcon, interp.debugcon, "{name}: debug console output differs between the backends");
    }
    assert!(
        std::mem::discriminant(&kvm.outcome) == std::mem::discriminant(&interp.outcome) && c.ending.matches(&kvm.outcome),
        "{name}: the backends ended differently: {:?} vs {:?}",
        kvm.outcome,
        interp.outcome
    );
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
        /// Every ROM in roms:: has a case here (a new ROM must be added to `rom_tests!`).
        #[test]
        fn every_rom_is_tested() {
            const TESTED: &[&str] = &[$(stringify!($rom)),*];
            for name in roms::NAMES {
                assert!(TESTED.contains(name), "ROM {name} has no test in tests/tests/roms.rs");
                let _ = case(name);
            }
        }
    };
}

rom_tests!(
    hello,
    timer,
    serial_echo,
    exceptions,
    arith,
    spin,
    sys_modes,
    sys_paging,
    sys_gates,
    sys_tasks,
    sys_debug,
    sys_fastcall,
    sys_iobitmap,
    sys_triple,
);

#[test]
fn normalizing_reads_listed_failures_as_passes() {
    let known = ["b check", "c"];
    let text = "sys_x: title\r\nPASS  a\r\nKNOWN b check: got 1, expected 2\r\nKNOWN c: vector: got 1, expected 2\r\nsys_x: 3 checks, 0 failed, 2 known failures\r\nsys_x: PASS\r\n";
    assert_eq!(normalized(text, "sys_x", &["KNOWN"], &known, true), ["sys_x: title", "PASS  a", "PASS  b check", "PASS  c: vector"]);
    let reference = "sys_x: title\r\nPASS  a\r\nPASS  b check\r\nFAIL  c: vector: got 3, expected 2\r\nsys_x: 3 checks, 1 failed, 0 known failures\r\nsys_x: FAIL\r\n";
    assert_eq!(normalized(reference, "sys_x", &["FAIL", "KNOWN"], &["c"], true), ["sys_x: title", "PASS  a", "PASS  b check", "PASS  c: vector"]);
    // An unlisted failure stays one, and a name that merely starts the same is not a group.
    assert_eq!(normalized("FAIL  cx\r\n", "sys_x", &["FAIL"], &["c"], true), ["FAIL  cx"]);
    assert_eq!(lines("a\r\nb\r\npartial"), ["a", "b"]);
}
