//! Interpreter speed on fixed guest workloads (`cargo bench -p cpu`): each program from
//! `benches/asm/` runs on a bare CPU for a fixed wall time and the guest instructions retired
//! per second are printed (a repeated string instruction counts one per iteration), by wall
//! time and by the process's CPU time (which a busy machine disturbs less). Prints numbers
//! only; nothing here asserts on time.
//!
//! `FERRITE_BENCH_SECONDS` sets the time per workload (default 2); `FERRITE_BENCH_INSNS`
//! runs a fixed number of instructions instead (for instruction-counting profilers such as
//! `valgrind --tool=callgrind`, whose totals then divide by a known count).

use cpu::flat::FlatBus;
use cpu::{Cpu, CpuState};
use std::time::{Duration, Instant};

const WORKLOADS: &[(&str, &[u8], &str)] = &[
    ("integer", include_bytes!("asm/integer.bin"), "ALU, shifts, LEA, IMUL, compares and branches"),
    ("copy_rep", include_bytes!("asm/copy_rep.bin"), "64 KiB copies with REP MOVSD"),
    ("copy_loop", include_bytes!("asm/copy_loop.bin"), "64 KiB copies with a MOV/ADD/DEC/JNZ loop"),
    ("x87", include_bytes!("asm/x87.bin"), "FADD, FMUL, FSQRT, FDIV, FCOMP, FNSTSW"),
    ("sse", include_bytes!("asm/sse.bin"), "ADDPS, MULPS, SQRTPS, DIVPS, MULSD, ADDSD, MOVAPS/MOVUPS, PADDD, COMISS"),
    ("paging", include_bytes!("asm/paging.bin"), "4 KiB pages over 48 MiB, strided, CR3 reloads"),
];

fn main() {
    // `cargo bench` passes --bench; a filter argument picks workloads by name.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let seconds: f64 = std::env::var("FERRITE_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let insns: Option<u64> = std::env::var("FERRITE_BENCH_INSNS").ok().and_then(|s| s.parse().ok());
    println!("{:<10} {:>10} {:>10} {:>14}  what", "workload", "M instr/s", "(CPU time)", "instructions");
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
        let c = cpu_time();
        let mut n = 0u64;
        let more = |n: u64| match insns {
            Some(max) => n < max,
            None => t.elapsed() < Duration::from_secs_f64(seconds),
        };
        while more(n) {
            let r = cpu.run(&mut bus, insns.map_or(5_000_000, |max| (max - n).min(5_000_000)));
            n += r.retired;
            if r.retired == 0 {
                eprintln!("{name}: the CPU stopped: {:?}\n{}", r.stop, cpu.state().report());
                break;
            }
        }
        let dt = t.elapsed().as_secs_f64();
        let dc = cpu_time() - c;
        println!("{:<10} {:>10.1} {:>10.1} {:>14}  {}", name, n as f64 / dt / 1e6, n as f64 / dc / 1e6, n, what);
    }
}

/// CPU time this process has used, in seconds (user + system, from /proc; 10 ms ticks, so
/// only meaningful over runs of a second or more). Falls back to wall time elsewhere.
fn cpu_time() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return start.elapsed().as_secs_f64();
    };
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    if f.len() != 2 {
        return start.elapsed().as_secs_f64();
    }
    // USER_HZ is 100 on every Linux configuration that matters here.
    (f[0] + f[1]) as f64 / 100.0
}
