//! Unit tests of the module as a whole: which encodings it claims, the checks every
//! instruction makes (#UD, #NM, #MF, alignment #GP, #XM), MMX's effect on the x87 state, and
//! the state instructions. Arithmetic is checked bit for bit against the host in
//! `softfloat.rs`, `approx.rs` and `cpu/tests/simd_host.rs`.

use super::mx;
use crate::cpu::Cpu;
use crate::decode::{decode, Insn};
use crate::fault::Fault;
use crate::flat::FlatBus;
use crate::state::{reg, CpuState, F80};
use iced_x86::{CpuidFeature as F, Decoder, DecoderOptions, EncodingKind, Mnemonic as M};

const UD: Fault = Fault::Exception { vector: 6, error: None };
const NM: Fault = Fault::Exception { vector: 7, error: None };
const MF: Fault = Fault::Exception { vector: 16, error: None };
const XM: Fault = Fault::Exception { vector: 19, error: None };
const GP0: Fault = Fault::Exception { vector: 13, error: Some(0) };

fn mine(features: &[F]) -> bool {
    features.iter().any(|f| {
        matches!(
            f,
            F::MMX | F::SSE | F::SSE2 | F::SSE3 | F::SSSE3 | F::SSE4_1 | F::SSE4_2 | F::PCLMULQDQ | F::FXSR | F::XSAVE | F::XSAVEOPT | F::RDRAND | F::RDSEED
        )
    })
}

/// Claimed elsewhere: FISTTP (x87), prefetches and fences (no-ops in decode.rs), CRC32
/// (ops/ext.rs).
fn elsewhere(m: M) -> bool {
    matches!(m, M::Fisttp | M::Prefetchnta | M::Prefetcht0 | M::Prefetcht1 | M::Prefetcht2 | M::Lfence | M::Mfence | M::Sfence | M::Crc32)
}

/// Every 0F, 0F 38 and 0F 3A opcode with every prefix and ModRM byte, in 64-bit and 32-bit
/// code: each instruction of the extensions this module implements must get a handler, and
/// nothing else may.
#[test]
fn claims_exactly_its_encodings() {
    let mut claimed = 0;
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for bits in [64u32, 32] {
        let rexes: &[&[u8]] = if bits == 64 { &[&[], &[0x48], &[0x4D]] } else { &[&[]] };
        for pfx in [&[][..], &[0x66], &[0xF2], &[0xF3]] {
            for rex in rexes {
                for map in [&[0x0F][..], &[0x0F, 0x38], &[0x0F, 0x3A]] {
                    for op in 0..=255u8 {
                        for modrm in 0..=255u8 {
                            let mut bytes: Vec<u8> = pfx.iter().chain(rex.iter()).chain(map.iter()).copied().collect();
                            bytes.extend_from_slice(&[op, modrm, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
                            let instr = Decoder::new(bits, &bytes, DecoderOptions::NONE).decode();
                            if instr.is_invalid() {
                                continue;
                            }
                            let Some(mut i) = decode(&bytes, bits, 0) else { continue };
                            let mem = (0..instr.op_count()).any(|k| instr.op_kind(k) == iced_x86::OpKind::Memory);
                            let got = super::select(&mut i, &instr, mem).is_some();
                            let want = instr.encoding() == EncodingKind::Legacy && mine(instr.cpuid_features()) && !elsewhere(instr.mnemonic());
                            if got {
                                claimed += 1;
                            }
                            if want && !got {
                                missing.push(format!("{:?}", instr.code()));
                            }
                            if got && !want {
                                wrong.push(format!("{:?}", instr.code()));
                            }
                        }
                    }
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    wrong.sort();
    wrong.dedup();
    assert!(missing.is_empty(), "no handler for {missing:?}");
    assert!(wrong.is_empty(), "claimed but not ours: {wrong:?}");
    assert!(claimed > 10_000);
}

/// A CPU in real mode with SSE enabled (CR4.OSFXSR, OSXMMEXCPT, CR0.MP; EM clear) and XSAVE
/// (CR4.OSXSAVE), and a bus with RAM for data at 0x1000.
fn machine() -> (Cpu, FlatBus) {
    let mut s = CpuState::real_mode_at(0, 0x7C00);
    s.cr0 = (s.cr0 & !4) | 2 | 0x20;
    s.cr4 |= 0x600 | 0x4_0000;
    let mut cpu = Cpu::new();
    cpu.set_state(&s);
    (cpu, FlatBus::new(1 << 20))
}

/// Decodes `code` as 16-bit code and runs its one instruction's handler.
fn exec(cpu: &mut Cpu, bus: &mut FlatBus, code: &[u8]) -> Result<(), Fault> {
    let mut bytes = code.to_vec();
    bytes.extend_from_slice(&[0x90; 8]);
    let i: Insn = decode(&bytes, 16, 0).expect("decodes");
    (i.exec)(cpu, bus, &i)
}

fn exec32(cpu: &mut Cpu, bus: &mut FlatBus, code: &[u8]) -> Result<(), Fault> {
    let mut bytes = code.to_vec();
    bytes.extend_from_slice(&[0x90; 8]);
    let i: Insn = decode(&bytes, 32, 0).expect("decodes");
    (i.exec)(cpu, bus, &i)
}

// Encodings used below (16-bit code).
const ADDPS_X0_X1: &[u8] = &[0x0F, 0x58, 0xC1];
const DIVPS_X0_X1: &[u8] = &[0x0F, 0x5E, 0xC1];
const MULSS_X0_X1: &[u8] = &[0xF3, 0x0F, 0x59, 0xC1];
const PADDB_MM0_MM1: &[u8] = &[0x0F, 0xFC, 0xC1];
const MOVAPS_X0_MEM: &[u8] = &[0x0F, 0x28, 0x06, 0x01, 0x10]; // movaps xmm0, [0x1001]
const MOVUPS_X0_MEM: &[u8] = &[0x0F, 0x10, 0x06, 0x01, 0x10]; // movups xmm0, [0x1001]
const ADDPS_X0_MEM: &[u8] = &[0x0F, 0x58, 0x06, 0x01, 0x10]; // addps xmm0, [0x1001]
const ADDSS_X0_MEM: &[u8] = &[0xF3, 0x0F, 0x58, 0x06, 0x01, 0x10]; // addss xmm0, [0x1001]
const PCMPISTRI_MEM: &[u8] = &[0x66, 0x0F, 0x3A, 0x63, 0x06, 0x01, 0x10, 0x00]; // pcmpistri xmm0, [0x1001], 0
const MOVQ_MM0_MEM: &[u8] = &[0x0F, 0x6F, 0x06, 0x00, 0x10]; // movq mm0, [0x1000]

#[test]
fn sse_needs_osfxsr_and_fpu_present() {
    let (mut cpu, mut bus) = machine();
    assert_eq!(exec(&mut cpu, &mut bus, ADDPS_X0_X1), Ok(()));
    cpu.s.cr4 &= !0x200;
    assert_eq!(exec(&mut cpu, &mut bus, ADDPS_X0_X1), Err(UD), "CR4.OSFXSR clear");
    cpu.s.cr4 |= 0x200;
    cpu.s.cr0 |= 4;
    assert_eq!(exec(&mut cpu, &mut bus, ADDPS_X0_X1), Err(UD), "CR0.EM set");
    assert_eq!(exec(&mut cpu, &mut bus, PADDB_MM0_MM1), Err(UD), "MMX with CR0.EM");
    cpu.s.cr0 &= !4;
    cpu.s.cr0 |= 8;
    assert_eq!(exec(&mut cpu, &mut bus, ADDPS_X0_X1), Err(NM), "CR0.TS set");
    assert_eq!(exec(&mut cpu, &mut bus, PADDB_MM0_MM1), Err(NM), "MMX with CR0.TS");
    assert_eq!(exec(&mut cpu, &mut bus, &[0x0F, 0xAE, 0x06, 0x00, 0x10]), Err(NM), "FXSAVE with CR0.TS");
    cpu.s.cr0 &= !8;
    // MMX waits for a pending unmasked x87 exception (with CR0.NE).
    cpu.s.fpu.fsw |= 0x80;
    assert_eq!(exec(&mut cpu, &mut bus, PADDB_MM0_MM1), Err(MF));
    assert_eq!(exec(&mut cpu, &mut bus, ADDPS_X0_X1), Ok(()), "SSE does not");
}

#[test]
fn sixteen_byte_operands_must_be_aligned_where_the_sdm_says() {
    let (mut cpu, mut bus) = machine();
    assert_eq!(exec(&mut cpu, &mut bus, MOVAPS_X0_MEM), Err(GP0));
    assert_eq!(exec(&mut cpu, &mut bus, ADDPS_X0_MEM), Err(GP0));
    assert_eq!(exec(&mut cpu, &mut bus, MOVUPS_X0_MEM), Ok(()));
    assert_eq!(exec(&mut cpu, &mut bus, ADDSS_X0_MEM), Ok(()), "scalar operands need no alignment");
    assert_eq!(exec(&mut cpu, &mut bus, PCMPISTRI_MEM), Ok(()), "nor the string compares'");
    // lddqu xmm0, [0x1001]
    assert_eq!(exec(&mut cpu, &mut bus, &[0xF2, 0x0F, 0xF0, 0x06, 0x01, 0x10]), Ok(()));
    // fxsave [0x1008]: 16-byte alignment
    assert_eq!(exec(&mut cpu, &mut bus, &[0x0F, 0xAE, 0x06, 0x08, 0x10]), Err(GP0));
    // xsave [0x1010]: 64-byte alignment
    assert_eq!(exec(&mut cpu, &mut bus, &[0x0F, 0xAE, 0x26, 0x10, 0x10]), Err(GP0));
}

#[test]
fn unmasked_exceptions_raise_xm_and_store_nothing() {
    let (mut cpu, mut bus) = machine();
    let one = 0x3F80_0000u64;
    cpu.s.sse.xmm[0] = [one | (one << 32), one | (one << 32)];
    cpu.s.sse.xmm[1] = [one << 32, one | (one << 32)]; // element 0 is +0.0
    let before = cpu.s.sse.xmm[0];
    // Masked: +inf in element 0, ZE set.
    assert_eq!(exec(&mut cpu, &mut bus, DIVPS_X0_X1), Ok(()));
    assert_eq!(cpu.s.sse.xmm[0][0] & 0xFFFF_FFFF, 0x7F80_0000);
    assert_eq!(cpu.s.sse.mxcsr & mx::FLAGS, mx::ZE);
    // Unmasked: #XM, destination unchanged.
    cpu.s.sse.xmm[0] = before;
    cpu.s.sse.mxcsr = mx::DEFAULT & !(mx::ZE << mx::MASK_SHIFT);
    assert_eq!(exec(&mut cpu, &mut bus, DIVPS_X0_X1), Err(XM));
    assert_eq!(cpu.s.sse.xmm[0], before);
    assert_eq!(cpu.s.sse.mxcsr & mx::FLAGS, mx::ZE);
    // Without CR4.OSXMMEXCPT the same is #UD.
    cpu.s.cr4 &= !0x400;
    assert_eq!(exec(&mut cpu, &mut bus, DIVPS_X0_X1), Err(UD));
    cpu.s.cr4 |= 0x400;
    // Unmasked underflow: an exact tiny result still signals (and FTZ does not apply).
    cpu.s.sse.xmm[0] = [0x0080_0000, 0];
    cpu.s.sse.xmm[1] = [0x3F00_0000, 0];
    cpu.s.sse.mxcsr = (mx::DEFAULT & !mx::UM) | mx::FTZ;
    assert_eq!(exec(&mut cpu, &mut bus, MULSS_X0_X1), Err(XM));
    assert_eq!(cpu.s.sse.mxcsr & mx::FLAGS, mx::UE);
    assert_eq!(cpu.s.sse.xmm[0][0], 0x0080_0000);
    // Unmasked overflow: OE and PE, nothing stored.
    cpu.s.sse.xmm[0] = [0x7F7F_FFFF, 0];
    cpu.s.sse.xmm[1] = [0x4000_0000, 0];
    cpu.s.sse.mxcsr = mx::DEFAULT & !(mx::OE << mx::MASK_SHIFT);
    assert_eq!(exec(&mut cpu, &mut bus, MULSS_X0_X1), Err(XM));
    assert_eq!(cpu.s.sse.mxcsr & mx::FLAGS, mx::OE | mx::PE);
    // An unmasked pre-computation exception leaves only those flags: the masked overflow
    // of element 1 is never computed.
    cpu.s.sse.xmm[0] = [0x7FA0_0000 | (0x7F7F_FFFF << 32), 0]; // SNaN, max
    cpu.s.sse.xmm[1] = [0x3F80_0000 | (0x7F7F_FFFF << 32), 0];
    cpu.s.sse.mxcsr = mx::DEFAULT & !(mx::IE << mx::MASK_SHIFT);
    assert_eq!(exec(&mut cpu, &mut bus, ADDPS_X0_X1), Err(XM));
    assert_eq!(cpu.s.sse.mxcsr & mx::FLAGS, mx::IE);
}

#[test]
fn mmx_aliases_the_x87_registers() {
    let (mut cpu, mut bus) = machine();
    cpu.s.fpu.fsw = 5 << 11;
    cpu.s.fpu.ftw = 0xFFFF;
    cpu.s.fpu.regs[1] = F80 { signif: 0x0102_0304_0506_0708, sign_exp: 0x1234 };
    cpu.s.fpu.regs[0] = F80 { signif: 0x1010_1010_1010_1010, sign_exp: 0x4000 };
    assert_eq!(exec(&mut cpu, &mut bus, PADDB_MM0_MM1), Ok(()));
    assert_eq!(cpu.s.fpu.regs[0], F80 { signif: 0x1112_1314_1516_1718, sign_exp: 0xFFFF });
    assert_eq!(cpu.s.fpu.regs[1].sign_exp, 0x1234, "a source keeps its exponent");
    assert_eq!(cpu.s.fpu.fsw & 0x3800, 0, "TOP = 0");
    assert_eq!(cpu.s.fpu.ftw, 0, "all tags valid");
    // EMMS empties every tag.
    assert_eq!(exec(&mut cpu, &mut bus, &[0x0F, 0x77]), Ok(()));
    assert_eq!(cpu.s.fpu.ftw, 0xFFFF);
    // A faulting MMX load changes nothing.
    cpu.s.fpu.fsw = 3 << 11;
    cpu.s.seg[3].limit = 0x800;
    cpu.refresh_seg(3);
    assert_eq!(exec(&mut cpu, &mut bus, MOVQ_MM0_MEM), Err(GP0));
    assert_eq!((cpu.s.fpu.fsw, cpu.s.fpu.ftw), (3 << 11, 0xFFFF));
}

fn word(bus: &FlatBus, a: usize) -> u16 {
    u16::from_le_bytes(bus.ram()[a..a + 2].try_into().unwrap())
}

fn dword(bus: &FlatBus, a: usize) -> u32 {
    u32::from_le_bytes(bus.ram()[a..a + 4].try_into().unwrap())
}

fn qword(bus: &FlatBus, a: usize) -> u64 {
    u64::from_le_bytes(bus.ram()[a..a + 8].try_into().unwrap())
}

// fxsave [0x1000] / fxrstor [0x1000] / xsave [0x1000] / xrstor [0x1000] (16-bit code).
const FXSAVE: &[u8] = &[0x0F, 0xAE, 0x06, 0x00, 0x10];
const FXRSTOR: &[u8] = &[0x0F, 0xAE, 0x0E, 0x00, 0x10];
const XSAVE: &[u8] = &[0x0F, 0xAE, 0x26, 0x00, 0x10];
const XRSTOR: &[u8] = &[0x0F, 0xAE, 0x2E, 0x00, 0x10];

#[test]
fn fxsave_and_fxrstor() {
    let (mut cpu, mut bus) = machine();
    cpu.s.fpu.fcw = 0x027F;
    cpu.s.fpu.fsw = 6 << 11;
    cpu.s.fpu.ftw = 0x0FFF | (1 << 12) | (2 << 14); // R6 zero, R7 special, others empty
    cpu.s.fpu.regs[6] = F80 { signif: 0, sign_exp: 0x8000 };
    cpu.s.fpu.regs[7] = F80 { signif: 0xC000_0000_0000_0000, sign_exp: 0x7FFF };
    cpu.s.fpu.fop = 0x1D9;
    cpu.s.fpu.fip = 0x1234_5678;
    cpu.s.fpu.fcs = 0x18;
    cpu.s.sse.mxcsr = 0x3F80 | mx::PE;
    for r in 0..16 {
        cpu.s.sse.xmm[r] = [r as u64 * 0x0101, !(r as u64)];
    }
    bus.ram_mut()[0x1000..0x1200].fill(0xEE);
    assert_eq!(exec(&mut cpu, &mut bus, FXSAVE), Ok(()));
    assert_eq!(word(&bus, 0x1000), 0x027F);
    assert_eq!(word(&bus, 0x1002), 6 << 11);
    assert_eq!(bus.ram()[0x1004], 0xC0, "abridged tags: R6 and R7 in use");
    assert_eq!(word(&bus, 0x1006), 0x1D9);
    assert_eq!(dword(&bus, 0x1008), 0x1234_5678);
    assert_eq!(word(&bus, 0x100C), 0x18);
    assert_eq!(dword(&bus, 0x1018), 0x3F80 | mx::PE);
    assert_eq!(dword(&bus, 0x101C), 0xFFFF, "MXCSR_MASK");
    // ST(0) is R6, ST(1) is R7.
    assert_eq!(word(&bus, 0x1020 + 8), 0x8000);
    assert_eq!(qword(&bus, 0x1030), 0xC000_0000_0000_0000);
    assert_eq!(qword(&bus, 0x10A0 + 16 * 7), 7 * 0x0101);
    assert_eq!(bus.ram()[0x10A0 + 16 * 8], 0xEE, "outside 64-bit mode only XMM0-7");
    assert_eq!(bus.ram()[0x11D0], 0xEE, "software-available bytes untouched");
    // Round trip through a changed state.
    let saved = cpu.s.clone();
    cpu.s.fpu = Default::default();
    cpu.s.sse.mxcsr = mx::DEFAULT;
    cpu.s.sse.xmm[3] = [0, 0];
    cpu.s.sse.xmm[12] = [1, 2];
    assert_eq!(exec(&mut cpu, &mut bus, FXRSTOR), Ok(()));
    assert_eq!(cpu.s.fpu, saved.fpu);
    assert_eq!(cpu.s.sse.mxcsr, saved.sse.mxcsr);
    assert_eq!(cpu.s.sse.xmm[3], saved.sse.xmm[3]);
    assert_eq!(cpu.s.sse.xmm[12], [1, 2], "XMM8-15 untouched outside 64-bit mode");
    // Reserved MXCSR bits: #GP(0) and nothing loaded.
    bus.ram_mut()[0x101A] = 1;
    cpu.s.fpu.fcw = 0x037F;
    assert_eq!(exec(&mut cpu, &mut bus, FXRSTOR), Err(GP0));
    assert_eq!(cpu.s.fpu.fcw, 0x037F);
}

#[test]
fn xsave_xrstor_and_xcr0() {
    let (mut cpu, mut bus) = machine();
    // xsetbv / xgetbv
    const XSETBV: &[u8] = &[0x0F, 0x01, 0xD1];
    const XGETBV: &[u8] = &[0x0F, 0x01, 0xD0];
    let set = |cpu: &mut Cpu, bus: &mut FlatBus, v: u64, ecx: u64| {
        cpu.s.gpr[reg::RAX] = v & 0xFFFF_FFFF;
        cpu.s.gpr[reg::RDX] = v >> 32;
        cpu.s.gpr[reg::RCX] = ecx;
        exec(cpu, bus, XSETBV)
    };
    assert_eq!(set(&mut cpu, &mut bus, 3, 0), Ok(()));
    assert_eq!(cpu.s.xcr0, 3);
    assert_eq!(set(&mut cpu, &mut bus, 2, 0), Err(GP0), "x87 must stay enabled");
    assert_eq!(set(&mut cpu, &mut bus, 7, 0), Err(GP0), "AVX is not implemented");
    assert_eq!(set(&mut cpu, &mut bus, 3, 1), Err(GP0), "only XCR0 exists");
    cpu.s.gpr[reg::RCX] = 0;
    cpu.s.gpr[reg::RAX] = 0xFFFF_FFFF;
    assert_eq!(exec(&mut cpu, &mut bus, XGETBV), Ok(()));
    assert_eq!((cpu.s.gpr[reg::RAX], cpu.s.gpr[reg::RDX]), (3, 0));
    cpu.s.cr4 &= !0x4_0000;
    assert_eq!(exec(&mut cpu, &mut bus, XGETBV), Err(UD), "CR4.OSXSAVE clear");
    assert_eq!(exec(&mut cpu, &mut bus, XSAVE), Err(UD));
    cpu.s.cr4 |= 0x4_0000;

    // XSAVE of both components, x87 in its initial state, SSE in use.
    cpu.s.sse.xmm[5] = [0x55, 0x66];
    bus.ram_mut()[0x1000..0x1400].fill(0xEE);
    bus.ram_mut()[0x1200..0x1240].fill(0);
    cpu.s.gpr[reg::RAX] = 3;
    cpu.s.gpr[reg::RDX] = 0;
    assert_eq!(exec(&mut cpu, &mut bus, XSAVE), Ok(()));
    assert_eq!(word(&bus, 0x1000), 0x037F);
    assert_eq!(qword(&bus, 0x10A0 + 16 * 5), 0x55);
    assert_eq!(qword(&bus, 0x1200), 2, "XSTATE_BV: SSE in use, x87 initial");
    assert_eq!(bus.ram()[0x11A0], 0xEE, "bytes 416-511 untouched");
    // Only x87 requested: the SSE area and MXCSR stay as they were.
    cpu.s.sse.xmm[5] = [0x77, 0x88];
    cpu.s.gpr[reg::RAX] = 1;
    assert_eq!(exec(&mut cpu, &mut bus, XSAVE), Ok(()));
    assert_eq!(qword(&bus, 0x10A0 + 16 * 5), 0x55);
    assert_eq!(qword(&bus, 0x1200), 2, "bit 1 kept, bit 0 still 0");

    // XRSTOR: SSE from the image, and a component absent from XSTATE_BV initialised.
    cpu.s.gpr[reg::RAX] = 3;
    cpu.s.fpu.fcw = 0x0262;
    cpu.s.fpu.ftw = 0;
    assert_eq!(exec(&mut cpu, &mut bus, XRSTOR), Ok(()));
    assert_eq!(cpu.s.sse.xmm[5], [0x55, 0x66]);
    assert_eq!((cpu.s.fpu.fcw, cpu.s.fpu.ftw), (0x037F, 0xFFFF), "x87 initialised");
    // Header checks.
    bus.ram_mut()[0x1200] = 4;
    assert_eq!(exec(&mut cpu, &mut bus, XRSTOR), Err(GP0), "XSTATE_BV beyond XCR0");
    bus.ram_mut()[0x1200] = 2;
    bus.ram_mut()[0x120F] = 0x80;
    assert_eq!(exec(&mut cpu, &mut bus, XRSTOR), Err(GP0), "compacted format");
}

#[test]
fn fxsave64_and_xmm8_15_in_64_bit_mode() {
    // Straight to a 64-bit code segment with paging off is not a state real hardware can
    // reach, but the handlers only look at the code size.
    let (mut cpu, mut bus) = machine();
    cpu.bits = 64;
    cpu.refresh_all_segs();
    cpu.s.fpu.fip = 0x1_2345_6789;
    cpu.s.sse.xmm[15] = [0xF15, 0];
    let mut bytes = vec![0x48, 0x0F, 0xAE, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00]; // fxsave64 [0x1000]
    bytes.extend_from_slice(&[0x90; 8]);
    let i = decode(&bytes, 64, 0).unwrap();
    assert_eq!((i.exec)(&mut cpu, &mut bus, &i), Ok(()));
    assert_eq!(qword(&bus, 0x1008), 0x1_2345_6789, "64-bit FIP");
    assert_eq!(qword(&bus, 0x10A0 + 16 * 15), 0xF15);
}

#[test]
fn ldmxcsr_stmxcsr() {
    let (mut cpu, mut bus) = machine();
    bus.ram_mut()[0x1000..0x1004].copy_from_slice(&0xFFC0u32.to_le_bytes());
    assert_eq!(exec(&mut cpu, &mut bus, &[0x0F, 0xAE, 0x16, 0x00, 0x10]), Ok(()));
    assert_eq!(cpu.s.sse.mxcsr, 0xFFC0);
    assert_eq!(exec(&mut cpu, &mut bus, &[0x0F, 0xAE, 0x1E, 0x04, 0x10]), Ok(()));
    assert_eq!(dword(&bus, 0x1004), 0xFFC0);
    bus.ram_mut()[0x1002] = 1;
    assert_eq!(exec(&mut cpu, &mut bus, &[0x0F, 0xAE, 0x16, 0x00, 0x10]), Err(GP0), "reserved bit 16");
    assert_eq!(cpu.s.sse.mxcsr, 0xFFC0);
}

#[test]
fn rdrand_rdseed() {
    let (mut cpu, mut bus) = machine();
    cpu.set_status(crate::state::flags::ARITH, crate::state::flags::ZF);
    // rdrand eax; rdseed ebx (32-bit code)
    assert_eq!(exec32(&mut cpu, &mut bus, &[0x0F, 0xC7, 0xF0]), Ok(()));
    assert_eq!(cpu.rflags() & crate::state::flags::ARITH, crate::state::flags::CF);
    cpu.s.gpr[reg::RBX] = u64::MAX;
    assert_eq!(exec32(&mut cpu, &mut bus, &[0x0F, 0xC7, 0xFB]), Ok(()));
    assert_eq!(cpu.s.gpr[reg::RBX] >> 32, 0, "a 32-bit destination clears the upper half");
}

#[test]
fn maskmovq_writes_selected_bytes_at_ds_di() {
    let (mut cpu, mut bus) = machine();
    cpu.s.gpr[reg::RDI] = 0x1000;
    cpu.s.fpu.regs[0].signif = 0x8877_6655_4433_2211;
    cpu.s.fpu.regs[1].signif = 0x8000_0080_0000_8000;
    bus.ram_mut()[0x1000..0x1008].fill(0xEE);
    assert_eq!(exec(&mut cpu, &mut bus, &[0x0F, 0xF7, 0xC1]), Ok(()));
    assert_eq!(qword(&bus, 0x1000), 0x88EE_EE55_EEEE_22EE);
}
