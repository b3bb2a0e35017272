//! Interpreter speed on fixed guest workloads (`cargo bench -p cpu`): each program from
//! `benches/asm/` runs on a bare CPU for a fixed wall time and the guest instructions retired
//! per second are printed (a repeated string instruction counts one per iteration). Prints
//! numbers only; nothing here asserts on time.

use cpu::flat::FlatBus;
use cpu::{Cpu, CpuState};
use std::time::{Duration, Instant};

const WORKLOADS: &[(&str, &[u8], &str)] = &[
    ("integer", include_bytes!("asm/integer.bin"), "ALU, shifts, LEA, IMUL, compares and branches"),
    ("copy_rep", include_bytes!("asm/copy_rep.bin"), "64 KiB copies with REP MOVSD"),
    ("copy_loop", include_bytes!("asm/copy_loop.bin"), "64 KiB copies with a MOV/ADD/DEC/JNZ loop"),
    ("x87", include_bytes!("asm/x87.bin"), "FADD, FMUL, FSQRT, FDIV, FCOMP, FNSTSW"),
    ("paging", include_bytes!("asm/paging.bin"), "4 KiB pages over 48 MiB, strided, CR3 reloads"),
];

fn main() {
    // `cargo bench` passes --bench; a filter argument picks workloads by name.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let seconds: f64 = std::env::var("FERRITE_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    println!("{:<10} {:>10} {:>14}  {}", "workload", "M instr/s", "instructions", "what");
    for (name, image, what) in WORKLOADS {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let mut bus = FlatBus::new(80 << 20);
        bus.ram_mut()[0x7C00..0x7C00 + image.len()].copy_from_slice(image);
        let mut cpu = Cpu::new();
        cpu.set_state(&CpuState::real_mode_at(0, 0x7C00));
        // Warm up (decode, TLB), then measure.
        cpu.run(&mut bus, 2_000_000);
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_secs_f64(seconds) {
            let r = cpu.run(&mut bus, 5_000_000);
            n += r.retired;
            if r.retired == 0 {
                eprintln!("{name}: the CPU stopped: {:?}\n{}", r.stop, cpu.state().report());
                break;
            }
        }
        let dt = t.elapsed().as_secs_f64();
        println!("{:<10} {:>10.1} {:>14}  {}", name, n as f64 / dt / 1e6, n, what);
    }
}
