//! The state instructions: EMMS, LDMXCSR/STMXCSR, FXSAVE/FXRSTOR, XSAVE/XSAVEOPT/XRSTOR for
//! the x87 and SSE components (standard format; Intel SDM vol. 1 10.5 and chapter 13) and
//! XGETBV/XSETBV. The x87 part of the images comes from and goes to `CpuState::fpu`, with the
//! abridged tag word of the image translated to and from the full one kept there.

use super::{mx, Form, CR0_EM, CR0_TS, CR4_OSXSAVE, VEC_NM};
use crate::bus::Bus;
use crate::cpu::{mask, Cpu};
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::mem::Access;
use crate::state::{reg, FpuState, F80};
use iced_x86::Code;

/// The XSAVE state components implemented: x87 and SSE.
pub(crate) const XCR0_SUPPORTED: u64 = 0x3;
/// Size of the standard-format XSAVE area for x87 and SSE: the legacy region and the header.
pub(crate) const XSAVE_SIZE: u32 = 512 + 64;

const RFBM_X87: u64 = 1;
const RFBM_SSE: u64 = 2;
const RFBM_AVX: u64 = 4;

// `imm2` values.
const FXSAVE: u64 = 0;
const FXRSTOR: u64 = 1;
const XSAVE: u64 = 2;
const XRSTOR: u64 = 3;
/// The REX.W forms: 64-bit instruction and data pointers in the image.
const WIDE: u64 = 4;

pub(super) fn select(f: &Form, sub: &mut u64) -> Option<Handler> {
    use Code as C;
    let (op, h): (u64, Handler) = match f.code {
        C::Emms => (0, emms as Handler),
        C::Ldmxcsr_m32 if f.mem => (0, ldmxcsr as Handler),
        C::Stmxcsr_m32 if f.mem => (0, stmxcsr as Handler),
        C::Fxsave_m512byte if f.mem => (FXSAVE, fxsave as Handler),
        C::Fxsave64_m512byte if f.mem => (FXSAVE | WIDE, fxsave as Handler),
        C::Fxrstor_m512byte if f.mem => (FXRSTOR, fxrstor as Handler),
        C::Fxrstor64_m512byte if f.mem => (FXRSTOR | WIDE, fxrstor as Handler),
        C::Xsave_mem | C::Xsaveopt_mem if f.mem => (XSAVE, xsave as Handler),
        C::Xsave64_mem | C::Xsaveopt64_mem if f.mem => (XSAVE | WIDE, xsave as Handler),
        C::Xrstor_mem if f.mem => (XRSTOR, xrstor as Handler),
        C::Xrstor64_mem if f.mem => (XRSTOR | WIDE, xrstor as Handler),
        C::Xgetbv => (0, xgetbv as Handler),
        C::Xsetbv => (0, xsetbv as Handler),
        _ => return None,
    };
    *sub = op;
    Some(h)
}

/// EMMS: every x87 register tagged empty.
fn emms(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    cpu.mmx_ready()?;
    cpu.s.fpu.ftw = 0xFFFF;
    Ok(())
}

fn ldmxcsr(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let v = cpu.load_m(bus, i)?[0] as u32;
    if v & !mx::WRITABLE != 0 {
        return Err(Fault::gp(0));
    }
    cpu.s.sse.mxcsr = v;
    Ok(())
}

fn stmxcsr(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let v = u64::from(cpu.s.sse.mxcsr);
    cpu.store_m(bus, i, [v, 0])
}

/// The abridged tag word of FXSAVE: one bit per physical register, set unless empty.
pub(crate) fn abridged_tags(ftw: u16) -> u8 {
    (0..8).fold(0u8, |t, r| if (ftw >> (2 * r)) & 3 != 3 { t | (1 << r) } else { t })
}

/// The full tag of a register that is not empty, from its contents.
fn tag_of(r: F80) -> u16 {
    let exp = r.sign_exp & 0x7FFF;
    if exp == 0x7FFF || (exp != 0 && r.signif >> 63 == 0) || (exp == 0 && r.signif != 0) {
        2
    } else if exp == 0 {
        1
    } else {
        0
    }
}

/// The full tag word from an abridged one and the physical registers.
pub(crate) fn full_tags(abridged: u8, regs: &[F80; 8]) -> u16 {
    (0..8).fold(0u16, |t, r| t | (if abridged >> r & 1 == 0 { 3 } else { tag_of(regs[r]) }) << (2 * r))
}

/// Bytes 0-159 of the legacy image: control, status, abridged tags, opcode, instruction and
/// data pointers (32-bit format with selectors, or 64-bit with `wide`), MXCSR and its mask,
/// and ST(0)-ST(7) in stack order.
fn legacy_header(fpu: &FpuState, mxcsr: u32, wide: bool) -> [u8; 160] {
    let mut b = [0u8; 160];
    b[0..2].copy_from_slice(&fpu.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&fpu.fsw.to_le_bytes());
    b[4] = abridged_tags(fpu.ftw);
    b[6..8].copy_from_slice(&(fpu.fop & 0x7FF).to_le_bytes());
    if wide {
        b[8..16].copy_from_slice(&fpu.fip.to_le_bytes());
        b[16..24].copy_from_slice(&fpu.fdp.to_le_bytes());
    } else {
        b[8..12].copy_from_slice(&(fpu.fip as u32).to_le_bytes());
        b[12..14].copy_from_slice(&fpu.fcs.to_le_bytes());
        b[16..20].copy_from_slice(&(fpu.fdp as u32).to_le_bytes());
        b[20..22].copy_from_slice(&fpu.fds.to_le_bytes());
    }
    b[24..28].copy_from_slice(&mxcsr.to_le_bytes());
    b[28..32].copy_from_slice(&mx::WRITABLE.to_le_bytes());
    let top = usize::from((fpu.fsw >> 11) & 7);
    for st in 0..8 {
        let r = fpu.regs[(top + st) & 7];
        let o = 32 + 16 * st;
        b[o..o + 8].copy_from_slice(&r.signif.to_le_bytes());
        b[o + 8..o + 10].copy_from_slice(&r.sign_exp.to_le_bytes());
    }
    b
}

/// The x87 state an image's bytes 0-159 describe (MXCSR is handled by the callers).
fn load_x87(b: &[u8], wide: bool) -> FpuState {
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let fsw = u16_at(2);
    let top = usize::from((fsw >> 11) & 7);
    let mut regs = [F80::default(); 8];
    for st in 0..8 {
        let o = 32 + 16 * st;
        regs[(top + st) & 7] = F80 { signif: u64_at(o), sign_exp: u16_at(o + 8) };
    }
    let (fip, fcs, fdp, fds) = if wide { (u64_at(8), 0, u64_at(16), 0) } else { (u64::from(u32_at(8)), u16_at(12), u64::from(u32_at(16)), u16_at(20)) };
    FpuState { fcw: u16_at(0), fsw, ftw: full_tags(b[4], &regs), fop: u16_at(6) & 0x7FF, fip, fcs, fdp, fds, regs }
}

impl Cpu {
    /// XMM registers that exist in the current mode: 16 in 64-bit mode, else 8.
    fn xmm_count(&self) -> usize {
        if self.bits == 64 {
            16
        } else {
            8
        }
    }

    /// Linear addresses of the `len / 16` 16-byte chunks of the memory operand (checked
    /// against the segment), after checking its alignment.
    fn area(&self, i: &Insn, len: usize, align: u64, acc: Access) -> Result<Vec<u64>, Fault> {
        let ea = self.ea(i);
        let first = self.lin(i.seg as usize, ea, 16, acc)?;
        if first % align != 0 {
            return Err(Fault::gp(0));
        }
        (0..len / 16).map(|k| self.lin(i.seg as usize, mask(ea.wrapping_add(16 * k as u64), i.asz), 16, acc)).collect()
    }

    /// Makes sure every page under `chunks` can be written before anything is.
    fn check_writable(&mut self, bus: &mut dyn Bus, chunks: &[u64]) -> Result<(), Fault> {
        let user = self.cpl() == 3;
        let mut last_page = u64::MAX;
        for &c in chunks {
            for a in [c, self.wrap_lin(c + 15)] {
                if a >> 12 != last_page {
                    self.translate(bus, a, Access::Write, user)?;
                    last_page = a >> 12;
                }
            }
        }
        Ok(())
    }

    /// Writes `bytes` (a multiple of 8 long) at offset `off` of the area.
    fn put(&mut self, bus: &mut dyn Bus, chunks: &[u64], off: usize, bytes: &[u8]) -> Result<(), Fault> {
        for (k, q) in bytes.chunks(8).enumerate() {
            let o = off + 8 * k;
            let lin = self.wrap_lin(chunks[o / 16] + (o % 16) as u64);
            self.write(bus, lin, 8, u64::from_le_bytes(q.try_into().unwrap()))?;
        }
        Ok(())
    }

    /// Reads `len` bytes (a multiple of 8) at offset `off` of the area.
    fn get(&mut self, bus: &mut dyn Bus, chunks: &[u64], off: usize, len: usize) -> Result<Vec<u8>, Fault> {
        let mut out = Vec::with_capacity(len);
        for k in 0..len / 8 {
            let o = off + 8 * k;
            let lin = self.wrap_lin(chunks[o / 16] + (o % 16) as u64);
            out.extend_from_slice(&self.read(bus, lin, 8)?.to_le_bytes());
        }
        Ok(out)
    }

    fn xmm_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        for r in 0..self.xmm_count() {
            let x = self.s.sse.xmm[r];
            out.extend_from_slice(&x[0].to_le_bytes());
            out.extend_from_slice(&x[1].to_le_bytes());
        }
        out
    }

    fn set_xmm_bytes(&mut self, b: &[u8]) {
        for r in 0..self.xmm_count() {
            let q = |k: usize| u64::from_le_bytes(b[16 * r + 8 * k..16 * r + 8 * k + 8].try_into().unwrap());
            self.s.sse.xmm[r] = [q(0), q(1)];
        }
    }

    /// The state-management checks: #NM when CR0.TS or CR0.EM says the FPU is not there.
    fn fx_ready(&self) -> Result<(), Fault> {
        if self.s.cr0 & (CR0_TS | CR0_EM) != 0 {
            return Err(Fault::exc(VEC_NM));
        }
        Ok(())
    }

    /// The XSAVE family's checks: #UD without CR4.OSXSAVE, #NM with CR0.TS.
    fn xsave_ready(&self) -> Result<(), Fault> {
        if self.s.cr4 & CR4_OSXSAVE == 0 {
            return Err(Fault::ud());
        }
        if self.s.cr0 & CR0_TS != 0 {
            return Err(Fault::exc(VEC_NM));
        }
        Ok(())
    }

    /// XINUSE: which components differ from their initial configuration.
    fn xinuse(&self) -> u64 {
        let f = &self.s.fpu;
        let x87_init = f.fcw == 0x037F && f.fsw == 0 && f.ftw == 0xFFFF && f.fop == 0 && f.fip == 0 && f.fdp == 0 && f.fcs == 0 && f.fds == 0 && f.regs.iter().all(|r| *r == F80::default());
        let sse_init = self.s.sse.mxcsr == mx::DEFAULT && self.s.sse.xmm.iter().all(|x| *x == [0, 0]);
        u64::from(!x87_init) | (u64::from(!sse_init) << 1)
    }
}

/// FXSAVE m512byte (16-byte aligned): the x87 header, MXCSR, ST(0)-ST(7) and the XMM
/// registers of the current mode; the reserved and software-available bytes are left alone.
fn fxsave(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fx_ready()?;
    let chunks = cpu.area(i, 512, 16, Access::Write)?;
    cpu.check_writable(bus, &chunks)?;
    let head = legacy_header(&cpu.s.fpu, cpu.s.sse.mxcsr, i.imm2 & WIDE != 0);
    let xmm = cpu.xmm_bytes();
    cpu.put(bus, &chunks, 0, &head)?;
    cpu.put(bus, &chunks, 160, &xmm)
}

/// FXRSTOR m512byte: #GP(0) for reserved MXCSR bits, before anything changes.
fn fxrstor(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fx_ready()?;
    let chunks = cpu.area(i, 512, 16, Access::Read)?;
    let n = cpu.xmm_count();
    let b = cpu.get(bus, &chunks, 0, 160 + 16 * n)?;
    let mxcsr = u32::from_le_bytes(b[24..28].try_into().unwrap());
    if mxcsr & !mx::WRITABLE != 0 {
        return Err(Fault::gp(0));
    }
    cpu.s.fpu = load_x87(&b, i.imm2 & WIDE != 0);
    cpu.s.sse.mxcsr = mxcsr;
    cpu.set_xmm_bytes(&b[160..]);
    Ok(())
}

/// The requested-feature bitmap: EDX:EAX AND XCR0.
fn rfbm(cpu: &Cpu) -> u64 {
    ((cpu.reg(reg::RDX as u8, 4) << 32) | cpu.reg(reg::RAX as u8, 4)) & cpu.s.xcr0
}

/// XSAVE/XSAVEOPT mem (64-byte aligned, standard format). XSAVEOPT saves everything too,
/// which its definition allows.
fn xsave(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.xsave_ready()?;
    let rfbm = rfbm(cpu);
    let chunks = cpu.area(i, XSAVE_SIZE as usize, 64, Access::Write)?;
    cpu.check_writable(bus, &chunks)?;
    let old_bv = u64::from_le_bytes(cpu.get(bus, &chunks, 512, 8)?.try_into().unwrap());
    let head = legacy_header(&cpu.s.fpu, cpu.s.sse.mxcsr, i.imm2 & WIDE != 0);
    if rfbm & RFBM_X87 != 0 {
        cpu.put(bus, &chunks, 0, &head[..24])?;
        cpu.put(bus, &chunks, 32, &head[32..])?;
    }
    if rfbm & (RFBM_SSE | RFBM_AVX) != 0 {
        cpu.put(bus, &chunks, 24, &head[24..32])?;
    }
    if rfbm & RFBM_SSE != 0 {
        let xmm = cpu.xmm_bytes();
        cpu.put(bus, &chunks, 160, &xmm)?;
    }
    let bv = (old_bv & !rfbm) | (cpu.xinuse() & rfbm);
    cpu.put(bus, &chunks, 512, &bv.to_le_bytes())
}

/// XRSTOR mem: components in RFBM are loaded from the image where XSTATE_BV has them, else
/// set to their initial configuration; MXCSR is loaded whenever SSE is requested. #GP(0) for
/// a compacted or malformed header, XSTATE_BV bits outside XCR0, or reserved MXCSR bits,
/// before anything changes.
fn xrstor(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.xsave_ready()?;
    let rfbm = rfbm(cpu);
    let chunks = cpu.area(i, XSAVE_SIZE as usize, 64, Access::Read)?;
    let header = cpu.get(bus, &chunks, 512, 64)?;
    let bv = u64::from_le_bytes(header[0..8].try_into().unwrap());
    if bv & !cpu.s.xcr0 != 0 || header[8..24].iter().any(|&b| b != 0) {
        return Err(Fault::gp(0));
    }
    let n = cpu.xmm_count();
    let b = cpu.get(bus, &chunks, 0, 160 + 16 * n)?;
    let mxcsr = u32::from_le_bytes(b[24..28].try_into().unwrap());
    let load_mxcsr = rfbm & (RFBM_SSE | RFBM_AVX) != 0;
    if load_mxcsr && mxcsr & !mx::WRITABLE != 0 {
        return Err(Fault::gp(0));
    }
    if rfbm & RFBM_X87 != 0 {
        cpu.s.fpu = if bv & RFBM_X87 != 0 { load_x87(&b, i.imm2 & WIDE != 0) } else { FpuState { fcw: 0x037F, fsw: 0, ftw: 0xFFFF, fop: 0, fip: 0, fcs: 0, fdp: 0, fds: 0, regs: [F80::default(); 8] } };
    }
    if rfbm & RFBM_SSE != 0 {
        if bv & RFBM_SSE != 0 {
            cpu.set_xmm_bytes(&b[160..]);
        } else {
            for r in 0..n {
                cpu.s.sse.xmm[r] = [0, 0];
            }
        }
    }
    if load_mxcsr {
        cpu.s.sse.mxcsr = mxcsr;
    }
    Ok(())
}

fn xgetbv(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    if cpu.s.cr4 & CR4_OSXSAVE == 0 {
        return Err(Fault::ud());
    }
    if cpu.reg(reg::RCX as u8, 4) != 0 {
        return Err(Fault::gp(0));
    }
    let v = cpu.s.xcr0;
    cpu.set_reg(reg::RAX as u8, 4, v & 0xFFFF_FFFF);
    cpu.set_reg(reg::RDX as u8, 4, v >> 32);
    Ok(())
}

/// XSETBV: ring 0 only; XCR0 must keep x87 and may add SSE, nothing else.
fn xsetbv(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    if cpu.s.cr4 & CR4_OSXSAVE == 0 {
        return Err(Fault::ud());
    }
    cpu.require_cpl0()?;
    let v = (cpu.reg(reg::RDX as u8, 4) << 32) | cpu.reg(reg::RAX as u8, 4);
    if cpu.reg(reg::RCX as u8, 4) != 0 || v & RFBM_X87 == 0 || v & !XCR0_SUPPORTED != 0 {
        return Err(Fault::gp(0));
    }
    cpu.s.xcr0 = v;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_words() {
        let mut regs = [F80::default(); 8];
        regs[0] = F80 { signif: 1 << 63, sign_exp: 0x3FFF }; // 1.0: valid
        regs[1] = F80 { signif: 0, sign_exp: 0 }; // zero
        regs[2] = F80 { signif: 1 << 63, sign_exp: 0x7FFF }; // infinity: special
        regs[3] = F80 { signif: 5, sign_exp: 0xFFFF }; // an MMX value: special
        let full = full_tags(0x0F, &regs);
        assert_eq!(full, 0xFF00 | (2 << 6) | (2 << 4) | (1 << 2));
        assert_eq!(abridged_tags(full), 0x0F);
        assert_eq!(abridged_tags(0xFFFF), 0);
        assert_eq!(abridged_tags(0), 0xFF);
    }

    #[test]
    fn legacy_image_round_trip() {
        let mut regs = [F80::default(); 8];
        regs[7] = F80 { signif: 0xC000_0000_0000_0000, sign_exp: 0x4000 };
        // R7 valid, the rest empty.
        let f = FpuState { fsw: 3 << 11, ftw: 0x3FFF, regs, fip: 0x1234, fcs: 0x08, ..FpuState::default() };
        let img = legacy_header(&f, 0x1F80, false);
        assert_eq!(img[4], 0x80);
        // R7 is ST(4) with TOP = 3.
        assert_eq!(&img[32 + 64..32 + 72], &0xC000_0000_0000_0000u64.to_le_bytes());
        assert_eq!(load_x87(&img, false), f);
    }
}
