//! KVM's paravirtual clock survives moves between backends: `multiboot/clocktest.asm`
//! registers kvmclock under KVM and reads it without end while this test moves its state to
//! the interpreter and then to a new KVM VM. The clock must never go back (the guest checks
//! every reading), must not jump ahead across a move, and must keep the HPET's rate on each
//! backend (the interpreter rewrites the structure for its own TSC; KVM's clock is set to the
//! time the structure gave when the state comes back). The same guest is then paused and
//! resumed from another thread at random moments: its clocks stand still together while it is
//! paused. Needs KVM (skipped without it).

use accel::{Backend, RunLimits, RunOutcome, Vm, Watch};
use machine::firmware::boot::{BootFile, BootFiles, DirectBoot};
use machine::host::CaptureChar;
use machine::{ClockMode, Machine, MachineConfig};
use std::time::Duration;

/// The HPET's period (Ferrite's runs at 100 MHz).
const HPET_NS: u64 = 10;

/// Whole "tick N K H" lines: (N, kvmclock ns, HPET counter).
fn ticks(text: &str) -> Vec<(u64, u64, u64)> {
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n')?.strip_prefix("tick "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (hex(f[0]), hex(f[1]), hex(f[2]))
        })
        .collect()
}

/// Runs `vm` until the guest has printed `n` ticks (or ended).
fn run_to_tick(vm: &mut Vm, serial: &CaptureChar, n: usize) -> RunOutcome {
    let limits = RunLimits { timeout: Some(Duration::from_secs(120)), no_reboot: true };
    let text = |s: &CaptureChar| String::from_utf8_lossy(&s.output.lock().unwrap()).into_owned();
    let s = serial.clone();
    vm.run_watched(&limits, Duration::from_millis(1), &mut |_, _| if ticks(&text(&s)).len() >= n { Watch::Stop(7) } else { Watch::Continue })
        .unwrap()
}

fn hand_over(vm: &mut Vm, to: Box<dyn Backend>) {
    let state = vm.backend.state(0);
    assert!(state.msr.kvm_system_time & 1 != 0, "the guest registered kvmclock: {:#x}", state.msr.kvm_system_time);
    vm.backend = to;
    vm.backend.set_state(0, &state).unwrap();
}

/// The clock test kernel under KVM, ready to run; `None` (and why, printed) if it cannot be.
fn clocktest_vm(test: &str) -> Option<(Vm, CaptureChar)> {
    if let Err(why) = tests::kvm_usable() {
        println!("skipped: {test}: {why}");
        return None;
    }
    let kernel = tests::nasm("multiboot/clocktest.asm", &[])?;
    let serial = CaptureChar::new();
    let mut m = Machine::new(MachineConfig {
        ram_size: 64 << 20,
        bios: machine::firmware::stub_rom::image(),
        clock: ClockMode::RealTime,
        serial: Box::new(serial.clone()),
        ..MachineConfig::default()
    })
    .unwrap();
    let files = BootFiles { kernel: BootFile { name: "clocktest".into(), data: kernel }, modules: vec![], cmdline: String::new() };
    let boot = DirectBoot::new(files, m.platform()).unwrap();
    let entry = accel::boot::entry_cpu_state(&m.set_direct_boot(boot));
    let kvm = accel::kvm::Kvm::new(&m).unwrap();
    Some((Vm::new(m, Box::new(kvm), entry).unwrap(), serial))
}

/// Checks the ticks: kvmclock keeps the HPET's rate (both follow the machine's clock),
/// loosely (a wrong scale is off by the host TSC's frequency in GHz); across a move between
/// backends (`moves`: the tick counts at which they were made) it may miss the moment the move
/// took, but never runs ahead. (The machine's clock may show the move's time one tick late:
/// the two ticks after a move are judged together.)
fn check_rates(out: &str, moves: &[usize]) {
    let t = ticks(out);
    assert_eq!(t.len(), 40, "{out}");
    for (i, w) in t.windows(2).enumerate() {
        let ((_, k0, h0), (n1, k1, h1)) = (w[0], w[1]);
        let (dk, dh) = (k1 - k0, (h1 - h0) * HPET_NS);
        if let Some(&m) = moves.iter().find(|&&m| m == i + 1 || m == i) {
            let (_, k2, h2) = t[(m + 1).min(t.len() - 1)];
            let (_, k0, h0) = t[m - 1];
            let (dk, dh) = (k2 - k0, (h2 - h0) * HPET_NS);
            assert!(dk <= dh + 5_000_000 && dk + 1_000_000_000 >= dh, "ticks {m}-{} (around a move): kvmclock +{dk} ns, HPET +{dh} ns\n{out}", m + 2);
        } else {
            assert!(dk.abs_diff(dh) * 4 <= dh, "tick {n1}: kvmclock +{dk} ns, HPET +{dh} ns\n{out}");
        }
    }
}

#[test]
fn kvmclock_runs_on_across_moves_between_backends() {
    let Some((mut vm, serial)) = clocktest_vm("kvmclock_runs_on_across_moves_between_backends") else { return };
    let text = || String::from_utf8_lossy(&serial.output.lock().unwrap()).into_owned();

    // KVM, then the interpreter, then a new KVM VM; the moves come after ticks 8 and 16.
    assert_eq!(run_to_tick(&mut vm, &serial, 8), RunOutcome::Stopped(7), "{}", text());
    let first_move = ticks(&text()).len();
    hand_over(&mut vm, Box::new(accel::interp::Interp::new()));
    assert_eq!(run_to_tick(&mut vm, &serial, 16), RunOutcome::Stopped(7), "{}", text());
    let second_move = ticks(&text()).len();
    let kvm = accel::kvm::Kvm::new(&vm.machine).unwrap();
    hand_over(&mut vm, Box::new(kvm));
    let end = run_to_tick(&mut vm, &serial, usize::MAX);
    let out = text();
    assert_eq!(end, RunOutcome::Exit(0), "{}\n{out}", vm.report());
    assert!(!out.contains("FAIL"), "{out}");

    check_rates(&out, &[first_move, second_move]);
}

#[test]
fn paused_and_resumed_from_another_thread() {
    let Some((mut vm, serial)) = clocktest_vm("paused_and_resumed_from_another_thread") else { return };
    let control = vm.control();
    let pauser = std::thread::spawn(move || {
        // Eight pauses at moments and of lengths from a fixed pseudo-random sequence.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |lo: u64, hi: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(lo + x % (hi - lo))
        };
        for _ in 0..8 {
            std::thread::sleep(next(20, 120));
            control.pause();
            assert!(control.is_paused());
            std::thread::sleep(next(30, 150));
            control.resume();
        }
    });
    let end = run_to_tick(&mut vm, &serial, usize::MAX);
    pauser.join().unwrap();
    let out = String::from_utf8_lossy(&serial.output.lock().unwrap()).into_owned();
    assert_eq!(end, RunOutcome::Exit(0), "{}\n{out}", vm.report());
    assert!(!out.contains("FAIL"), "{out}");
    // Paused, the guest's clocks stood still together: no tick sees kvmclock run ahead.
    check_rates(&out, &[]);
}
