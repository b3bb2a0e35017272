//! Benchmark (not a test; prints figures): what each backend costs.
//!
//! 1. A 64-bit user-mode compute loop (a xorshift and multiply mix, registers only, 13
//!    instructions an iteration) run natively on the host, as a guest under KVM (CPL 3 in long
//!    mode, the differential tests' environment, `tests::diff::env`) and under the interpreter.
//!    The guest's result must equal the host's. KVM against native is the figure the KVM
//!    backend is judged by (target: at least 95%).
//! 2. The time from nothing to the guest's first instruction under each backend: building the
//!    machine (RAM, devices, firmware tables), the backend (KVM: the VM, its memory slots and
//!    vCPU) and the `Vm`, then running a ROM whose first instruction leaves through the exit
//!    port. Median of 20.
//!
//! 3. Drawing into the VGA's linear framebuffer: 1920x1080 32-bpp pictures stored pixel by
//!    pixel from 64-bit user mode (`tests::framebuffer`), each rendered as the window would
//!    (the backend's write log handed over, then only the rows written redrawn). Under KVM
//!    the framebuffer is a memory slot with dirty logging, so a store is no exit.
//!
//! 4. What the local APIC in userspace costs under KVM (the interrupt-controller choice of
//!    `docs/ARCHITECTURE.md`): a user-mode loop writing the local APIC's TPR (an MMIO exit to
//!    userspace and the machine's APIC model each), one writing an unused port (a port exit
//!    to userspace) and one executing CPUID (handled inside the kernel's KVM), in ns an
//!    iteration; and, with `FERRITE_LINUX_OUT` naming a `tests/linux/build.sh` output, how
//!    many local APIC accesses the Debian cloud kernel makes per second of guest time booting
//!    to its shell's marker under the interpreter (the exits an in-kernel local APIC would
//!    save).
//!
//! `cargo bench -p tests --bench backends` (`-- --iterations N` for the native and KVM loop).

use accel::{RunLimits, RunOutcome, Vm};
use cpu::CpuState;
use machine::host::NullChar;
use machine::{ClockMode, Machine, MachineConfig};
use std::time::{Duration, Instant};
use tests::diff::env;
use tests::diff::runner::{End, Input, InterpSide, Side};

/// Instructions in one iteration of the loop.
const LOOP_INSNS: u64 = 13;

/// Sets up the loop: RCX = RDI iterations, RAX = 1 (the xorshift state), R8 = 0.
const PROLOGUE: &[u8] = &[
    0x48, 0x89, 0xF9, // mov rcx, rdi
    0xB8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
    0x45, 0x31, 0xC0, // xor r8d, r8d
];

const LOOP: &[u8] = &[
    0x48, 0x89, 0xC2, // mov rdx, rax
    0x48, 0xC1, 0xE2, 0x0D, // shl rdx, 13
    0x48, 0x31, 0xD0, // xor rax, rdx
    0x48, 0x89, 0xC2, // mov rdx, rax
    0x48, 0xC1, 0xEA, 0x07, // shr rdx, 7
    0x48, 0x31, 0xD0, // xor rax, rdx
    0x48, 0x89, 0xC2, // mov rdx, rax
    0x48, 0xC1, 0xE2, 0x11, // shl rdx, 17
    0x48, 0x31, 0xD0, // xor rax, rdx
    0x49, 0x01, 0xC0, // add r8, rax
    0x4D, 0x6B, 0xC0, 0x1F, // imul r8, r8, 31
    0x48, 0xFF, 0xC9, // dec rcx
    0x75, 0xD6, // jnz (back to the first mov)
];

/// The result in RAX.
const EPILOGUE: &[u8] = &[0x4C, 0x89, 0xC0]; // mov rax, r8

fn program(end: &[u8]) -> Vec<u8> {
    [PROLOGUE, LOOP, EPILOGUE, end].concat()
}

/// The loop as a host function in an executable mapping: `(iterations) -> result`.
struct Native {
    code: *mut libc::c_void,
    len: usize,
}

impl Native {
    fn new() -> Native {
        let bytes = program(&[0xC3]); // ret
        let len = 4096;
        // SAFETY: an anonymous private mapping, checked below; written before it is executed.
        let code = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        assert_ne!(code, libc::MAP_FAILED, "mmap of an executable page");
        // SAFETY: the mapping is `len` bytes long and the program is shorter.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), code as *mut u8, bytes.len()) };
        Native { code, len }
    }

    fn run(&self, iterations: u64) -> u64 {
        // SAFETY: the mapping holds a complete System V function that touches only
        // caller-saved registers (RAX, RCX, RDX, R8) and returns.
        let f: extern "sysv64" fn(u64) -> u64 = unsafe { std::mem::transmute(self.code) };
        f(iterations)
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.code, self.len) };
    }
}

fn state(iterations: u64) -> CpuState {
    let mut s = env::user_state();
    s.gpr[cpu::state::reg::RDI] = iterations;
    s
}

/// Runs the loop as a guest; returns the wall time and the result, or why it could not run.
fn guest(side: &mut dyn Side, iterations: u64) -> Result<(Duration, u64), String> {
    let code = program(&[0x0F, 0x0B]); // ud2: ends the case
    let data = vec![0u8; env::DATA_SIZE as usize];
    let s = state(iterations);
    let t = Instant::now();
    let out = side.run(&Input { code: &code, data: &data, state: &s });
    let took = t.elapsed();
    match out.end {
        End::Halted if env::vector_of(&out.state) == Some(6) => Ok((took, out.state.gpr[0])),
        other => Err(format!("{}: the loop ended with {other:?}, not UD2's #UD", side.name())),
    }
}

fn rate(iterations: u64, t: Duration) -> String {
    let insns = iterations * LOOP_INSNS;
    format!("{:>8.3} s  {:>8.1} M instructions/s", t.as_secs_f64(), insns as f64 / t.as_secs_f64() / 1e6)
}

fn compute(iterations: u64) {
    println!("compute loop: 64-bit user mode, {LOOP_INSNS} instructions an iteration");
    let native = Native::new();
    native.run(1000); // fault the page in
    let (nt, want) = {
        let t = Instant::now();
        let r = native.run(iterations);
        (t.elapsed(), r)
    };
    println!("  native  {iterations:>12} iterations {}", rate(iterations, nt));
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    match tests::diff::runner::KvmSide::new() {
        Err(why) => println!("  kvm     not measured: {why}"),
        Ok(mut kvm) => {
            kvm.timeout_ns = 600_000_000_000;
            // Once to warm up (page faults on the guest's memory), then measured.
            let _ = guest(&mut kvm, 1000);
            match guest(&mut kvm, iterations) {
                Ok((t, got)) => {
                    assert_eq!(got, want, "the guest's result differs from the host's");
                    println!(
                        "  kvm     {iterations:>12} iterations {}  ({:.1}% of native)",
                        rate(iterations, t),
                        100.0 * nt.as_secs_f64() / t.as_secs_f64()
                    );
                }
                Err(why) => println!("  kvm     failed: {why}"),
            }
        }
    }
    // The interpreter is some hundred times slower: a smaller count, checked the same way.
    let small = (iterations / 100).max(1000);
    let want_small = native.run(small);
    let mut interp = InterpSide::new();
    interp.budget = u64::MAX;
    match guest(&mut interp, small) {
        Ok((t, got)) => {
            assert_eq!(got, want_small, "the interpreter's result differs from the host's");
            println!("  interp  {small:>12} iterations {}", rate(small, t));
        }
        Err(why) => println!("  interp  failed: {why}"),
    }
}

/// A 64 KiB ROM whose reset vector leaves through the exit port with status 0.
fn exit_rom() -> Vec<u8> {
    let mut rom = vec![0xF4u8; 0x10000];
    rom[0xFFF0..0xFFF4].copy_from_slice(&[0xB0, 0x00, 0xE6, 0xF4]); // mov al, 0; out 0xF4, al
    rom
}

fn first_instruction(kind: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let machine = Machine::new(MachineConfig {
        bios: exit_rom(),
        clock: if kind == "kvm" { ClockMode::RealTime } else { ClockMode::Deterministic },
        serial: Box::new(NullChar),
        debugcon: Box::new(NullChar),
        ..MachineConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let backend: Box<dyn accel::Backend> = match kind {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        "kvm" => Box::new(accel::kvm::Kvm::new(&machine).map_err(|e| e.to_string())?),
        _ => Box::new(accel::interp::Interp::new()),
    };
    let mut vm = Vm::new(machine, backend, CpuState::default()).map_err(|e| e.to_string())?;
    let out = vm.run(&RunLimits { timeout: Some(Duration::from_secs(30)), no_reboot: true }).map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if out != RunOutcome::Exit(0) {
        return Err(format!("the ROM ended with {out:?}"));
    }
    Ok(took)
}

fn startup() {
    println!("from nothing to the first guest instruction (machine, backend, Vm, one OUT), median of 20:");
    for kind in ["interp", "kvm"] {
        let mut times = Vec::new();
        for _ in 0..20 {
            match first_instruction(kind) {
                Ok(t) => times.push(t),
                Err(why) => {
                    println!("  {kind:<7} not measured: {why}");
                    break;
                }
            }
        }
        if times.len() == 20 {
            times.sort();
            println!("  {kind:<7} {:>8.2} ms (fastest {:.2} ms)", times[10].as_secs_f64() * 1e3, times[0].as_secs_f64() * 1e3);
        }
    }
}

fn framebuffer() {
    use tests::framebuffer::{draw_instructions, Drawer, Kind, HEIGHT, WIDTH};
    let pixels = u64::from(WIDTH) * u64::from(HEIGHT);
    println!("framebuffer: {WIDTH}x{HEIGHT}x32 pictures, one 32-bit store a pixel from 64-bit user mode, each rendered:");
    for kind in [Kind::Interp, Kind::Kvm] {
        let mut d = match Drawer::new(kind) {
            Ok(d) => d,
            Err(why) => {
                println!("  {kind:?}: not measured: {why}");
                continue;
            }
        };
        let (mut draw, mut render, mut n) = (Duration::ZERO, Duration::ZERO, 0u32);
        // Pictures until two seconds have gone (at least two, at most 200); the first one,
        // which maps the pages, is not counted.
        for k in 0..=200u32 {
            let t = Instant::now();
            if let Err(why) = d.draw(0, pixels, k, 1) {
                println!("  {kind:?}: failed: {why}");
                break;
            }
            let drawn = t.elapsed();
            let t = Instant::now();
            match d.render() {
                Ok(true) => {}
                Ok(false) => println!("  {kind:?}: picture {k} was not redrawn"),
                Err(why) => println!("  {kind:?}: render failed: {why}"),
            }
            if k > 0 {
                (draw, render, n) = (draw + drawn, render + t.elapsed(), n + 1);
                if n >= 2 && draw + render > Duration::from_secs(2) {
                    break;
                }
            }
        }
        if n > 0 {
            let per = |t: Duration| t.as_secs_f64() * 1e3 / f64::from(n);
            let bytes = pixels as f64 * 4.0 * f64::from(n);
            println!(
                "  {:<7} {n:>4} pictures: draw {:>9.3} ms a picture ({:>8.1} MB/s, {:>7.1} M guest instructions/s), render {:.3} ms",
                format!("{kind:?}").to_lowercase(),
                per(draw),
                bytes / draw.as_secs_f64() / 1e6,
                draw_instructions(pixels, 1) as f64 * f64::from(n) / draw.as_secs_f64() / 1e6,
                per(render)
            );
        }
    }
}

fn exit_costs() {
    use cpu::state::reg;
    use tests::framebuffer::{Drawer, Kind};
    const LAPIC_TPR: u64 = 0xFEE0_0080;
    // mov [rdi], eax / dec rcx / jnz / ud2
    const TPR_LOOP: &[u8] = &[0x89, 0x07, 0x48, 0xFF, 0xC9, 0x75, 0xF9, 0x0F, 0x0B];
    // out dx, al / dec rcx / jnz / ud2
    const PORT_LOOP: &[u8] = &[0xEE, 0x48, 0xFF, 0xC9, 0x75, 0xFA, 0x0F, 0x0B];
    // xor eax, eax / cpuid / dec rsi / jnz / ud2
    const CPUID_LOOP: &[u8] = &[0x31, 0xC0, 0x0F, 0xA2, 0x48, 0xFF, 0xCE, 0x75, 0xF7, 0x0F, 0x0B];
    println!("exits: a user-mode loop of one access an iteration, ns an iteration:");
    for kind in [Kind::Kvm, Kind::Interp] {
        let mut d = match Drawer::new(kind) {
            Ok(d) => d,
            Err(why) => {
                println!("  {kind:?}: not measured: {why}");
                continue;
            }
        };
        let n: u64 = if kind == Kind::Kvm { 20_000 } else { 1_000_000 };
        let mut line = format!("  {:<7}", format!("{kind:?}").to_lowercase());
        for (name, code) in [("local APIC TPR write", TPR_LOOP), ("port 0x80 write", PORT_LOOP), ("CPUID", CPUID_LOOP)] {
            let mut s = tests::diff::env::user_state();
            s.gpr[reg::RCX] = n;
            s.gpr[reg::RSI] = n;
            s.gpr[reg::RDI] = LAPIC_TPR;
            s.gpr[reg::RDX] = 0x80;
            s.tr.limit = tests::framebuffer::IO_TSS_LIMIT; // OUT from user mode
            let before = d.m.lapic_accesses();
            let t = Instant::now();
            let r = d.run(code, s, None);
            let took = t.elapsed();
            match r {
                Ok(()) => {
                    line += &format!("  {name} {:>8.0}", took.as_nanos() as f64 / n as f64);
                    if name.contains("APIC") {
                        assert_eq!(d.m.lapic_accesses() - before, n, "every TPR write reached the machine's local APIC");
                    }
                }
                Err(why) => line += &format!("  {name}: failed ({why})"),
            }
        }
        println!("{line}");
    }
    let Some(dir) = std::env::var_os("FERRITE_LINUX_OUT").map(std::path::PathBuf::from) else {
        println!("  (set FERRITE_LINUX_OUT to a tests/linux/build.sh output for a Linux guest's local APIC accesses)");
        return;
    };
    use machine::firmware::boot::{BootFile, BootFiles, BootModule, DirectBoot};
    let read = |p: std::path::PathBuf| BootFile { name: p.display().to_string(), data: std::fs::read(&p).unwrap_or_default() };
    let initrd = read(dir.join("initrd.img"));
    let files = BootFiles {
        kernel: read(dir.join("cloud/vmlinuz")),
        modules: vec![BootModule { string: initrd.name.clone(), file: initrd }],
        cmdline: "console=ttyS0 panic=-1".into(),
    };
    for cpus in [1, 4] {
        let serial = machine::host::CaptureChar::new();
        let mut m = Machine::new(MachineConfig {
            ram_size: 512 << 20,
            bios: machine::firmware::stub_rom::image(),
            clock: ClockMode::Deterministic,
            serial: Box::new(serial.clone()),
            cpus,
            ..MachineConfig::default()
        })
        .expect("machine");
        let boot = match DirectBoot::new(files.clone(), m.platform()) {
            Ok(b) => b,
            Err(e) => {
                println!("  Linux: not measured: {e}");
                return;
            }
        };
        let entry = accel::boot::entry_cpu_state(&m.set_direct_boot(boot));
        let mut vm = Vm::new(m, Box::new(accel::interp::Interp::new()), entry).expect("vm");
        let out = vm.run(&RunLimits { timeout: Some(Duration::from_secs(600)), no_reboot: true });
        let secs = vm.machine.now() as f64 / 1e9;
        let text = String::from_utf8_lossy(&serial.output.lock().unwrap()).into_owned();
        let ok = text.contains("FERRITE-LINUX-OK");
        println!(
            "  Linux (cloud kernel, {cpus} CPU{}, interpreter, boot to power-off{}): {} local APIC accesses in {secs:.2} s of guest time = {:.0}/s",
            if cpus > 1 { "s" } else { "" },
            if ok { "" } else { ", DID NOT REACH ITS MARKER" },
            vm.machine.lapic_accesses(),
            vm.machine.lapic_accesses() as f64 / secs
        );
        if !ok {
            println!("  ({out:?})");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations = args
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000_000u64);
    compute(iterations);
    startup();
    framebuffer();
    exit_costs();
}
