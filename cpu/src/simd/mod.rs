//! MMX, SSE, SSE2, SSE3, SSSE3, SSE4.1, SSE4.2 and PCLMULQDQ, the FXSAVE/XSAVE state
//! instructions, and RDRAND/RDSEED (Intel SDM vol. 1 chapters 9-13, vol. 2 instruction pages).
//! Only legacy (non-VEX) encodings: anything else stays #UD.
//!
//! Floating point is computed by `softfloat.rs` bit-exactly as the hardware does under MXCSR;
//! unmasked exceptions store nothing and raise #XM (#UD without CR4.OSXMMEXCPT).
//!
//! `Insn` fields as this module's handlers read them (set by `select`):
//! - `opr[k]`: register number of operand k (XMM 0-15, MM 0-7 or a general register), or
//!   `NONE`; `r0`/`r1` repeat `opr[0]`/`opr[1]`.
//! - `osz`: size in bytes of the memory operand (memory forms only).
//! - `rep`: `ALIGN16` when a 16-byte memory operand must be 16-byte aligned (#GP(0) if not).
//! - `imm`: the imm8; `imm2`: a sub-operation or size chosen at decode time.

mod approx;
mod convert;
mod fp;
mod int;
mod mov;
mod random;
mod shuffle;
mod softfloat;
mod state;
mod string;

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn, NONE};
use crate::fault::Fault;
use crate::mem::Access;
use iced_x86::{Code, EncodingKind, Instruction, Mnemonic, OpKind};
pub(crate) use softfloat::mx;
pub(crate) use state::{XCR0_SUPPORTED, XSAVE_SIZE};

/// A 128-bit value as two little-endian quadwords, low first (the layout of `SseState::xmm`).
pub(crate) type X = [u64; 2];

/// `Insn::rep` bit: the 16-byte memory operand must be aligned.
pub(crate) const ALIGN16: u8 = 1;

pub(crate) const CR0_EM: u64 = 1 << 2;
pub(crate) const CR0_TS: u64 = 1 << 3;
pub(crate) const CR0_NE: u64 = 1 << 5;
pub(crate) const CR4_OSFXSR: u64 = 1 << 9;
pub(crate) const CR4_OSXMMEXCPT: u64 = 1 << 10;
pub(crate) const CR4_OSXSAVE: u64 = 1 << 18;
const VEC_NM: u8 = 7;
const VEC_MF: u8 = 16;
const VEC_XM: u8 = 19;
/// FSW.ES: an unmasked x87 exception is pending.
const FSW_ES: u16 = 0x80;

/// What `select` learned about an instruction, for the family selectors.
pub(crate) struct Form {
    pub m: Mnemonic,
    pub code: Code,
    pub mem: bool,
    /// Some operand is an MMX register.
    pub mmx: bool,
    /// Operand 1 is an immediate (the shift-by-immediate forms).
    pub imm1: bool,
}

/// The handler for an MMX/SSE/state-management instruction (with `i` adjusted as the
/// handler needs), or `None` if `instr` is not one this module implements.
pub(crate) fn select(i: &mut Insn, instr: &Instruction, mem: bool) -> Option<Handler> {
    // LOCK makes every one of these #UD.
    if instr.encoding() != EncodingKind::Legacy || instr.has_lock_prefix() {
        return None;
    }
    let mut opr = [NONE; 4];
    let mut mmx = false;
    for k in 0..instr.op_count().min(4) {
        if instr.op_kind(k) == OpKind::Register {
            let r = instr.op_register(k);
            if r.is_gpr8() {
                // No instruction here takes an 8-bit register.
                return None;
            }
            opr[k as usize] = r.number() as u8;
            mmx |= r.is_mm();
        }
    }
    let imm1 = instr.op_count() > 1 && instr.op_kind(1) == OpKind::Immediate8;
    let form = Form { m: instr.mnemonic(), code: instr.code(), mem, mmx, imm1 };
    let mut sub = 0u64;
    let h = mov::select(&form, &mut sub)
        .or_else(|| int::select(&form, &mut sub))
        .or_else(|| shuffle::select(&form, &mut sub))
        .or_else(|| fp::select(&form, &mut sub))
        .or_else(|| convert::select(&form, &mut sub))
        .or_else(|| string::select(&form, &mut sub))
        .or_else(|| state::select(&form, &mut sub))
        .or_else(|| random::select(&form, &mut sub))?;
    i.opr = opr;
    i.r0 = opr[0];
    i.r1 = opr[1];
    i.imm2 = sub;
    i.rep = 0;
    if mem {
        let size = instr.memory_size().size();
        i.osz = size.min(255) as u8;
        let unaligned_ok = matches!(
            form.m,
            Mnemonic::Movups | Mnemonic::Movupd | Mnemonic::Movdqu | Mnemonic::Lddqu | Mnemonic::Pcmpestri | Mnemonic::Pcmpestri64 | Mnemonic::Pcmpestrm | Mnemonic::Pcmpestrm64 | Mnemonic::Pcmpistri | Mnemonic::Pcmpistrm
        );
        if size == 16 && !unaligned_ok {
            i.rep = ALIGN16;
        }
    }
    Some(h)
}

/// Picks the monomorphised handler for the MMX/XMM and register/memory form.
macro_rules! pick {
    ($f:path, $mmx:expr, $mem:expr) => {{
        use $f as h;
        match ($mmx, $mem) {
            (false, false) => h::<false, false> as Handler,
            (false, true) => h::<false, true> as Handler,
            (true, false) => h::<true, false> as Handler,
            (true, true) => h::<true, true> as Handler,
        }
    }};
}
pub(crate) use pick;

/// Picks the register or memory form.
macro_rules! by_mem {
    ($f:path, $mem:expr) => {{
        use $f as h;
        if $mem {
            h::<true> as Handler
        } else {
            h::<false> as Handler
        }
    }};
}
pub(crate) use by_mem;

impl Cpu {
    /// The checks every SSE instruction makes first: #UD without OSFXSR or with CR0.EM, #NM
    /// with CR0.TS.
    #[inline(always)]
    pub(crate) fn sse_ready(&self) -> Result<(), Fault> {
        if self.s.cr0 & CR0_EM != 0 || self.s.cr4 & CR4_OSFXSR == 0 {
            return Err(Fault::ud());
        }
        if self.s.cr0 & CR0_TS != 0 {
            return Err(Fault::exc(VEC_NM));
        }
        Ok(())
    }

    /// The checks an instruction touching MMX registers makes: #UD with CR0.EM, #NM with
    /// CR0.TS, #MF for a pending unmasked x87 exception (with CR0.NE; without it the error
    /// goes out on FERR# and the instruction proceeds).
    #[inline(always)]
    pub(crate) fn mmx_ready(&self) -> Result<(), Fault> {
        if self.s.cr0 & CR0_EM != 0 {
            return Err(Fault::ud());
        }
        if self.s.cr0 & CR0_TS != 0 {
            return Err(Fault::exc(VEC_NM));
        }
        if self.s.fpu.fsw & FSW_ES != 0 && self.s.cr0 & CR0_NE != 0 {
            return Err(Fault::exc(VEC_MF));
        }
        Ok(())
    }

    /// `sse_ready` for SSE instructions with an MMX operand: both sets of checks.
    #[inline(always)]
    pub(crate) fn sse_mmx_ready(&self) -> Result<(), Fault> {
        self.sse_ready()?;
        self.mmx_ready()
    }

    #[inline(always)]
    pub(crate) fn xmm(&self, r: u8) -> X {
        self.s.sse.xmm[usize::from(r & 15)]
    }

    #[inline(always)]
    pub(crate) fn set_xmm(&mut self, r: u8, v: X) {
        self.s.sse.xmm[usize::from(r & 15)] = v;
    }

    #[inline(always)]
    pub(crate) fn mm(&self, r: u8) -> u64 {
        self.s.fpu.regs[usize::from(r & 7)].signif
    }

    /// Writes an MMX register: the significand of the aliased x87 register, with its sign and
    /// exponent set to all ones. Callers make the MMX transition (`mmx_enter`).
    #[inline(always)]
    pub(crate) fn set_mm(&mut self, r: u8, v: u64) {
        let reg = &mut self.s.fpu.regs[usize::from(r & 7)];
        reg.signif = v;
        reg.sign_exp = 0xFFFF;
    }

    /// What every MMX instruction but EMMS does to the x87 state: TOP = 0, all tags valid.
    #[inline(always)]
    pub(crate) fn mmx_enter(&mut self) {
        self.s.fpu.fsw &= !0x3800;
        self.s.fpu.ftw = 0;
    }

    /// The linear address of a 16-byte memory operand (checked for the whole access and, where
    /// the instruction requires it, for 16-byte alignment).
    #[inline(always)]
    pub(crate) fn lin16(&self, i: &Insn, acc: Access) -> Result<u64, Fault> {
        let lin = self.mem_lin(i, 16, acc)?;
        if i.rep & ALIGN16 != 0 && lin & 15 != 0 {
            return Err(Fault::gp(0));
        }
        Ok(lin)
    }

    /// Reads the memory operand (`i.osz` bytes: 1, 2, 4, 8 or 16), zero-extended.
    #[inline(always)]
    pub(crate) fn load_m(&mut self, bus: &mut dyn Bus, i: &Insn) -> Result<X, Fault> {
        if i.osz == 16 {
            let lin = self.lin16(i, Access::Read)?;
            let lo = self.read(bus, lin, 8)?;
            let hi = self.read(bus, self.wrap_lin(lin + 8), 8)?;
            Ok([lo, hi])
        } else {
            let lin = self.mem_lin(i, i.osz, Access::Read)?;
            Ok([self.read(bus, lin, i.osz)?, 0])
        }
    }

    /// Writes the memory operand (`i.osz` bytes), checking the whole access before writing.
    #[inline(always)]
    pub(crate) fn store_m(&mut self, bus: &mut dyn Bus, i: &Insn, v: X) -> Result<(), Fault> {
        if i.osz == 16 {
            let lin = self.lin16(i, Access::Write)?;
            self.store16(bus, lin, v)
        } else {
            let lin = self.mem_lin(i, i.osz, Access::Write)?;
            self.write(bus, lin, i.osz, v[0])
        }
    }

    /// Writes 16 bytes at a checked linear address as two quadwords, making sure the second
    /// can be written before writing the first.
    pub(crate) fn store16(&mut self, bus: &mut dyn Bus, lin: u64, v: X) -> Result<(), Fault> {
        let hi = self.wrap_lin(lin + 8);
        if (lin ^ (lin + 15)) & !0xFFF != 0 {
            let user = self.cpl() == 3;
            self.translate(bus, self.wrap_lin(lin + 15), Access::Write, user)?;
        }
        self.write(bus, lin, 8, v[0])?;
        self.write(bus, hi, 8, v[1])
    }

    /// Reports the SIMD floating-point exceptions an instruction raised (`flags`, MXCSR bits
    /// 0-5): with all of them masked they are ORed into MXCSR and the result may be stored.
    /// An unmasked one raises #XM (#UD without CR4.OSXMMEXCPT) and the result must not be
    /// stored; an unmasked pre-computation exception (IE, DE, ZE) leaves only those flags
    /// set, as the computation never happened.
    #[inline(always)]
    pub(crate) fn sse_exceptions(&mut self, flags: u32) -> Result<(), Fault> {
        if flags == 0 {
            return Ok(());
        }
        let masks = (self.s.sse.mxcsr >> mx::MASK_SHIFT) & mx::FLAGS;
        let unmasked = flags & !masks;
        if unmasked == 0 {
            self.s.sse.mxcsr |= flags;
            return Ok(());
        }
        self.s.sse.mxcsr |= if unmasked & mx::PRE != 0 { flags & mx::PRE } else { flags };
        Err(if self.s.cr4 & CR4_OSXMMEXCPT != 0 { Fault::exc(VEC_XM) } else { Fault::ud() })
    }

    /// The floating-point environment MXCSR sets.
    #[inline(always)]
    pub(crate) fn fp_env(&self) -> softfloat::Env {
        softfloat::Env::new(self.s.sse.mxcsr)
    }

    /// The XMM source operand: register `r1`, or memory.
    #[inline(always)]
    pub(crate) fn src_x<const MEM: bool>(&mut self, bus: &mut dyn Bus, i: &Insn) -> Result<X, Fault> {
        if MEM {
            self.load_m(bus, i)
        } else {
            Ok(self.xmm(i.r1))
        }
    }

    /// The MMX source operand: register `r1`, or memory.
    #[inline(always)]
    pub(crate) fn src_mm<const MEM: bool>(&mut self, bus: &mut dyn Bus, i: &Insn) -> Result<u64, Fault> {
        if MEM {
            Ok(self.load_m(bus, i)?[0])
        } else {
            Ok(self.mm(i.r1))
        }
    }
}

/// The common shape of a two-operand MMX or SSE instruction: dst = f(dst, src, width in
/// bytes), with the checks and the MMX transition.
#[inline(always)]
pub(crate) fn binary<const MMX: bool, const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, f: impl FnOnce(X, X, usize) -> X) -> Result<(), Fault> {
    if MMX {
        cpu.mmx_ready()?;
        let b = cpu.src_mm::<MEM>(bus, i)?;
        let a = cpu.mm(i.r0);
        let r = f([a, 0], [b, 0], 8);
        cpu.mmx_enter();
        cpu.set_mm(i.r0, r[0]);
    } else {
        cpu.sse_ready()?;
        let b = cpu.src_x::<MEM>(bus, i)?;
        let a = cpu.xmm(i.r0);
        let r = f(a, b, 16);
        cpu.set_xmm(i.r0, r);
    }
    Ok(())
}

/// Lane views of a 128-bit value.
pub(crate) mod lanes {
    use super::X;

    #[inline(always)]
    pub(crate) fn b(v: X) -> [u8; 16] {
        let mut o = [0u8; 16];
        o[..8].copy_from_slice(&v[0].to_le_bytes());
        o[8..].copy_from_slice(&v[1].to_le_bytes());
        o
    }
    #[inline(always)]
    pub(crate) fn from_b(o: [u8; 16]) -> X {
        [u64::from_le_bytes(o[..8].try_into().unwrap()), u64::from_le_bytes(o[8..].try_into().unwrap())]
    }
    #[inline(always)]
    pub(crate) fn w(v: X) -> [u16; 8] {
        let b = b(v);
        std::array::from_fn(|k| u16::from_le_bytes([b[2 * k], b[2 * k + 1]]))
    }
    #[inline(always)]
    pub(crate) fn from_w(o: [u16; 8]) -> X {
        let mut b = [0u8; 16];
        for (k, x) in o.iter().enumerate() {
            b[2 * k..2 * k + 2].copy_from_slice(&x.to_le_bytes());
        }
        from_b(b)
    }
    #[inline(always)]
    pub(crate) fn d(v: X) -> [u32; 4] {
        [v[0] as u32, (v[0] >> 32) as u32, v[1] as u32, (v[1] >> 32) as u32]
    }
    #[inline(always)]
    pub(crate) fn from_d(o: [u32; 4]) -> X {
        [u64::from(o[0]) | (u64::from(o[1]) << 32), u64::from(o[2]) | (u64::from(o[3]) << 32)]
    }
    #[inline(always)]
    pub(crate) fn to128(v: X) -> u128 {
        u128::from(v[0]) | (u128::from(v[1]) << 64)
    }
    #[inline(always)]
    pub(crate) fn from128(v: u128) -> X {
        [v as u64, (v >> 64) as u64]
    }

    /// Lane-wise maps over the first `w` bytes (8 for MMX, 16 for XMM).
    #[inline(always)]
    pub(crate) fn map8(a: X, c: X, w: usize, f: impl Fn(u8, u8) -> u8) -> X {
        let (a, c) = (b(a), b(c));
        from_b(std::array::from_fn(|k| if k < w { f(a[k], c[k]) } else { 0 }))
    }
    #[inline(always)]
    pub(crate) fn map16(a: X, c: X, wd: usize, f: impl Fn(u16, u16) -> u16) -> X {
        let (a, c) = (w(a), w(c));
        from_w(std::array::from_fn(|k| if k < wd / 2 { f(a[k], c[k]) } else { 0 }))
    }
    #[inline(always)]
    pub(crate) fn map32(a: X, c: X, w: usize, f: impl Fn(u32, u32) -> u32) -> X {
        let (a, c) = (d(a), d(c));
        from_d(std::array::from_fn(|k| if k < w / 4 { f(a[k], c[k]) } else { 0 }))
    }
    #[inline(always)]
    pub(crate) fn map64(a: X, c: X, w: usize, f: impl Fn(u64, u64) -> u64) -> X {
        [f(a[0], c[0]), if w == 16 { f(a[1], c[1]) } else { 0 }]
    }
}

#[cfg(test)]
mod tests;
