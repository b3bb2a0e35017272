//! SSE programs on a bare CPU: assembled from `tests/asm/simd_*.asm` (NASM, the built `.bin`
//! committed beside each source) and run on a flat bus. Instruction semantics are compared
//! with the host processor in `simd_host.rs`; this checks what programs see: enabling SSE,
//! the exceptions, and the state instructions.

use cpu::flat::FlatBus;
use cpu::{Cpu, CpuState, Stop};

fn run(image: &[u8], at: usize) -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new(1 << 20);
    bus.ram_mut()[at..at + image.len()].copy_from_slice(image);
    let mut cpu = Cpu::new();
    cpu.set_state(&CpuState::real_mode_at(0, at as u16));
    let mut n = 0;
    loop {
        let r = cpu.run(&mut bus, 100_000);
        n += r.retired;
        match r.stop {
            Stop::Halted => break,
            Stop::Budget if n < 1_000_000 => {}
            other => panic!("{other:?} after {n} instructions\n{}\n{}", cpu.state().report(), cpu.recent_instructions().join("\n")),
        }
    }
    (cpu, bus)
}

fn dword(bus: &FlatBus, a: usize) -> u32 {
    u32::from_le_bytes(bus.ram()[a..a + 4].try_into().unwrap())
}

#[test]
fn enabling_sse_exceptions_and_state_instructions() {
    let (cpu, bus) = run(include_bytes!("asm/simd_modes.bin"), 0x7C00);
    let ram = bus.ram();
    assert_eq!(dword(&bus, 0x510), 5, "five exceptions");
    assert_eq!(&ram[0x500..0x505], &[6, 13, 19, 6, 7], "#UD before OSFXSR, #GP misaligned, #XM, #UD without OSXMMEXCPT, #NM");
    let edx = dword(&bus, 0x560);
    assert_eq!(edx >> 23 & 0xF, 0xF, "CPUID: MMX, FXSR, SSE, SSE2");
    let ecx = dword(&bus, 0x558);
    for bit in [0, 1, 9, 19, 20, 26, 30] {
        assert_ne!(ecx & (1 << bit), 0, "CPUID.1:ECX bit {bit}");
    }
    assert_eq!(ecx & (1 << 27), 0, "OSXSAVE clear before CR4.OSXSAVE");
    assert_ne!(dword(&bus, 0x55C) & (1 << 27), 0, "OSXSAVE set after");
    let sum: Vec<u32> = (0..4).map(|k| dword(&bus, 0x520 + 4 * k)).collect();
    assert_eq!(sum, [1.5f32.to_bits(), 2.25f32.to_bits(), 0.0f32.to_bits(), 1.0e10f32.to_bits()]);
    let reversed: Vec<u8> = (1..16).rev().chain([0]).map(|b| b as u8).collect();
    assert_eq!(&ram[0x570..0x580], &reversed[..], "PSHUFB reverses and zeroes");
    assert_eq!(dword(&bus, 0x530), 12, "PCMPISTRI finds the NUL");
    assert_eq!(dword(&bus, 0x534), 1_414_213, "trunc(sqrt(2e12))");
    assert_eq!(dword(&bus, 0x538), 0x1D84, "ZE set by the unmasked division");
    assert_eq!(ram[0x540], 0xFF, "MMX tags every register valid");
    assert_eq!(u16::from_le_bytes([ram[0x542], ram[0x543]]) & 0x3800, 0, "MMX sets TOP to 0");
    assert_eq!(ram[0x541], 0, "EMMS empties them");
    assert_eq!((dword(&bus, 0x548), dword(&bus, 0x54C)), (1, 3), "XCR0 before and after XSETBV");
    assert_eq!(dword(&bus, 0x550), 1.0f32.to_bits(), "XRSTOR brought XMM0 back");
    assert_eq!(dword(&bus, 0x554) & 0x8D5, 1, "RDRAND: CF = 1, the other flags clear");
    assert_eq!(cpu.state().xcr0, 3);
}
