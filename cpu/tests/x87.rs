//! x87 programs on a bare CPU: assembled from `tests/asm/x87_*.asm` (NASM, the built `.bin`
//! committed beside each source), run on a flat bus, and their stored results compared bit for
//! bit with IEEE/x87 values.

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

fn word(bus: &FlatBus, a: usize) -> u16 {
    u16::from_le_bytes(bus.ram()[a..a + 2].try_into().unwrap())
}

fn dword(bus: &FlatBus, a: usize) -> u32 {
    u32::from_le_bytes(bus.ram()[a..a + 4].try_into().unwrap())
}

/// An 80-bit value as (significand, sign and exponent).
fn tword(bus: &FlatBus, a: usize) -> (u64, u16) {
    (u64::from_le_bytes(bus.ram()[a..a + 8].try_into().unwrap()), word(bus, a + 8))
}

const INDEFINITE: (u64, u16) = (0xC000_0000_0000_0000, 0xFFFF);
const PI: (u64, u16) = (0xC90F_DAA2_2168_C235, 0x4000);
const ONE: (u64, u16) = (1 << 63, 0x3FFF);

#[test]
fn real_mode_arithmetic_rounding_and_exceptions() {
    let (_, b) = run(include_bytes!("asm/x87_real.bin"), 0x7C00);
    assert_eq!(tword(&b, 0x500), (0xAAAA_AAAA_AAAA_AAAB, 0x3FFD), "1/3, extended");
    assert_eq!(word(&b, 0x50A), 0x3A20, "PE, C1: rounded up; TOP 7");
    assert_eq!(tword(&b, 0x510), (0xAAAA_AB00_0000_0000, 0x3FFD), "1/3, PC = single");
    assert_eq!(tword(&b, 0x520), (0xAAAA_AAAA_AAAA_A800, 0x3FFD), "1/3, PC = double");
    assert_eq!(tword(&b, 0x530), (0xAAAA_AAAA_AAAA_AAAA, 0x3FFD), "1/3, rounding down");
    assert_eq!(tword(&b, 0x540), (0x4000_0000_0000_0000, 0), "exact denormal");
    assert_eq!(word(&b, 0x54A), 0, "exact: no underflow while masked");
    assert_eq!(tword(&b, 0x550), (0x3000_0000_0000_0000, 0), "inexact denormal, ties to even");
    assert_eq!(word(&b, 0x55A), 0x0030, "UE and PE");
    assert_eq!(tword(&b, 0x560), (0xC000_0000_0000_0005, 0xFFFF), "QNaN + SNaN = the QNaN");
    assert_eq!(word(&b, 0x56A), 0x0001, "IE for the SNaN");
    assert_eq!(tword(&b, 0x570), INDEFINITE, "unnormal operand");
    assert_eq!(word(&b, 0x57A), 0x0001);
    assert_eq!(tword(&b, 0x580), (0xC000_0000_0000_0000, 0x4000), "1.5 × 2^100 rem 7 = 3");
    assert!(word(&b, 0x58A) >= 2, "partial remainders first ({} steps)", word(&b, 0x58A));
    assert_eq!(word(&b, 0x58C) & 0x0400, 0, "C2 clear at the end");
    assert_eq!(tword(&b, 0x590), (1 << 63, 0xBFFF), "FPREM1 5 by 3 = -1");
    assert_eq!(word(&b, 0x59A), 0x7000, "quotient 2: C3; TOP 6");
    assert_eq!(&b.ram()[0x5A0..0x5A7], &[0x41, 0x04, 0x42, 0x44, 0x05, 0x01, 0x00], "FXAM classes");
    assert_eq!(&b.ram()[0x5B0..0x5BA], &[0x78, 0x56, 0x34, 0x12, 0x90, 0x78, 0x56, 0x34, 0x12, 0x00], "FBSTP");
    assert_eq!(&b.ram()[0x5C0..0x5CA], &[0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x80], "FBSTP -999...9");
    assert_eq!(&b.ram()[0x5D0..0x5DA], &[0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xFF], "FBSTP 1e18: BCD indefinite");
    assert_eq!(word(&b, 0x5DA), 0x0021, "IE, and PE still set from the store before");
    assert_eq!(dword(&b, 0x5E0), 0x8000_0000, "FIST of 2^40: integer indefinite");
    assert_eq!(word(&b, 0x5E4), 0x3801, "IE; TOP 7");
    assert_eq!(word(&b, 0x5E6), 0xFFFE, "FISTP -2.5 rounding up");
    assert_eq!(word(&b, 0x5E8), 0xFFFE, "FISTTP -2.5");
    assert_eq!(word(&b, 0x5EA), 2, "FIST 2.5 to nearest even");
    assert_eq!(word(&b, 0x5F0), 0x0003, "FCOMI 0 < 1: CF");
    assert_eq!(word(&b, 0x5F2), 0x0047, "FUCOMIP with a QNaN: ZF PF CF");
    assert_eq!(word(&b, 0x5F4), 0x3000, "FCOM 2 > 1");
    assert_eq!(word(&b, 0x5F6), 0x3100, "FCOM 1 < 2: C0");
    assert_eq!(tword(&b, 0x6C0), ONE, "FCMOVB taken");
    assert_eq!(word(&b, 0x600), 0x3A41, "stack overflow: IE SF C1, TOP 7");
    assert_eq!(tword(&b, 0x602), INDEFINITE);
    assert_eq!(tword(&b, 0x610), (1 << 63, 0xBFBF), "FSIN(FLDPI) = -2^-64 with the 66-bit pi");
    assert_eq!(tword(&b, 0x620), (0x8BDA_7ADF_9A3A_5219, 0x3FFE), "tan 0.5");
    assert_eq!(tword(&b, 0x630), (1 << 63, 0x403E), "FSIN(2^63) leaves the operand");
    assert_eq!(word(&b, 0x63A), 0x3C20, "C2: out of range (PE from FSIN and FPTAN before)");
    // FSAVE, 16-bit real-mode layout: FCW, FSW, FTW, IP[15:0], IP[19:16] and FOP, DP, then ST(0..7).
    let env: Vec<u16> = (0..7).map(|k| word(&b, 0x640 + 2 * k)).collect();
    assert_eq!(env, [0x037F, 0x3000, 0x0FFF, 0x7DBF, 0x01E8, 0, 0], "FLD1 at 0000:7DBF was the last");
    assert_eq!(tword(&b, 0x64E), ONE);
    assert_eq!(tword(&b, 0x658), PI);
    assert_eq!(tword(&b, 0x6A0), ONE, "FRSTOR");
    assert_eq!(tword(&b, 0x6AA), PI);
    assert_eq!(word(&b, 0x6B4), 0x3000);
}

#[test]
fn protected_mode_environment_pending_exceptions_and_device_not_available() {
    let (cpu, b) = run(include_bytes!("asm/x87_pm.bin"), 0x7C00);
    // FNSTENV, 32-bit protected layout, after `fld dword [0x7CE6]` at 0008:7C2F (FOP D9 05).
    let env: Vec<u32> = (0..7).map(|k| dword(&b, 0x500 + 4 * k)).collect();
    assert_eq!(env, [0xFFFF_037B, 0xFFFF_3800, 0xFFFF_3FFF, 0x7C2F, 0x0105_0008, 0x7CE6, 0xFFFF_0010]);
    assert_eq!(word(&b, 0x520), 0x037F, "FNSTENV masks every exception");
    assert_eq!(word(&b, 0x522), 0x037B, "FLDENV restores the control word");
    assert_eq!(word(&b, 0x524), 0xA884, "unmasked ZE: B, ES, ZE; nothing popped (TOP 5)");
    assert_eq!(dword(&b, 0x528), 1, "CR0.NE clear: the waiting FNOP ran");
    assert_eq!(dword(&b, 0x530), 1, "CR0.NE set: one #MF");
    assert_eq!(word(&b, 0x534), 0xA884, "FSW as the #MF handler saw it");
    assert_eq!(dword(&b, 0x52C), 1, "the FNOP ran after the handler's FNCLEX");
    assert_eq!(dword(&b, 0x544), 1, "WAIT with TS but not MP: no #NM");
    assert_eq!(dword(&b, 0x540), 3, "#NM: WAIT with TS and MP, ESC with TS, ESC with EM");
    // FNSAVE, 32-bit protected layout, after `fadd qword [0x7CEA]` at 0008:7CAE (FOP DC 05).
    let env: Vec<u32> = (0..7).map(|k| dword(&b, 0x600 + 4 * k)).collect();
    assert_eq!(env, [0xFFFF_037B, 0xFFFF_1800, 0xFFFF_043F, 0x7CAE, 0x0405_0008, 0x7CEA, 0xFFFF_0010]);
    let regs: Vec<(u64, u16)> = (0..5).map(|k| tword(&b, 0x600 + 28 + 10 * k)).collect();
    assert_eq!(regs, [(0xA000_0000_0000_0000, 0x3FFF), ONE, (0, 0), ONE, (0xA000_0000_0000_0000, 0x4000)], "1 + 0.25, 1, 0, 1, 2.5");
    assert_eq!(word(&b, 0x680), 0, "FNSAVE ends with FNINIT");
    let s = cpu.state();
    assert_eq!((s.fpu.fcw, s.fpu.ftw), (0x037F, 0xFFFF));
    assert!(!cpu.fpu_error());
}
