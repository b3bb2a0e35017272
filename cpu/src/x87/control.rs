//! Control instructions: FNINIT, FNCLEX, FLDCW, FNSTCW, FNSTSW (m16 and AX), FNSTENV, FLDENV,
//! FNSAVE, FRSTOR, FNOP, and the 8087/287 leftovers FNENI, FNDISI, FNSETPM that a 387 and later
//! ignore. Environment layouts: Intel SDM vol. 1, figures 8-9 to 8-12 (16- and 32-bit, real and
//! protected mode).

use super::f80::tag_of;
use super::{sw, CONTROL, NOWAIT};
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::state::{FpuState, F80};
use iced_x86::Code;

/// Bits of the control word that always read as written: everything but the reserved bits,
/// of which bit 6 reads as one.
const FCW_RESERVED: u16 = 0xE0C0;

const WIDE: u64 = 1;

/// The handler and its `imm2` behaviour flags.
pub(super) fn select(i: &mut Insn, code: Code) -> Option<(Handler, u64)> {
    use Code as C;
    let ctl = CONTROL;
    let nowait = CONTROL | NOWAIT;
    let mut wide = |w: bool| i.imm = u64::from(w) * WIDE;
    Some(match code {
        C::Fninit => (fninit as Handler, nowait),
        C::Finit => (fninit as Handler, ctl),
        C::Fnclex => (fnclex as Handler, nowait),
        C::Fclex => (fnclex as Handler, ctl),
        C::Fldcw_m2byte => (fldcw as Handler, ctl),
        C::Fnstcw_m2byte => (fnstcw as Handler, nowait),
        C::Fstcw_m2byte => (fnstcw as Handler, ctl),
        C::Fnstsw_m2byte => (fnstsw_mem as Handler, nowait),
        C::Fstsw_m2byte => (fnstsw_mem as Handler, ctl),
        C::Fnstsw_AX => (fnstsw_ax as Handler, nowait),
        C::Fstsw_AX => (fnstsw_ax as Handler, ctl),
        C::Fnstenv_m14byte | C::Fnstenv_m28byte => {
            wide(code == C::Fnstenv_m28byte);
            (fnstenv as Handler, nowait)
        }
        C::Fstenv_m14byte | C::Fstenv_m28byte => {
            wide(code == C::Fstenv_m28byte);
            (fnstenv as Handler, ctl)
        }
        C::Fldenv_m14byte | C::Fldenv_m28byte => {
            wide(code == C::Fldenv_m28byte);
            (fldenv as Handler, ctl)
        }
        C::Fnsave_m94byte | C::Fnsave_m108byte => {
            wide(code == C::Fnsave_m108byte);
            (fnsave as Handler, nowait)
        }
        C::Fsave_m94byte | C::Fsave_m108byte => {
            wide(code == C::Fsave_m108byte);
            (fnsave as Handler, ctl)
        }
        C::Frstor_m94byte | C::Frstor_m108byte => {
            wide(code == C::Frstor_m108byte);
            (frstor as Handler, ctl)
        }
        C::Fnop => (fnop as Handler, 0),
        C::Fneni | C::Fndisi | C::Fnsetpm => (fnop as Handler, nowait),
        C::Feni | C::Fdisi | C::Fsetpm => (fnop as Handler, ctl),
        _ => return None,
    })
}

fn fnop(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)
}

fn fninit(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    cpu.fpu_init();
    Ok(())
}

impl Cpu {
    pub(crate) fn fpu_init(&mut self) {
        let regs = self.s.fpu.regs;
        self.s.fpu = FpuState { regs, ..FpuState::default() };
    }

    /// The full tag word, from the registers' contents (empty stays empty).
    pub(crate) fn fpu_full_tags(&self) -> u16 {
        let mut t = 0;
        for p in 0..8 {
            let tag = if self.phys_tag(p) == 3 { 3 } else { tag_of(self.s.fpu.regs[p]) };
            t |= tag << (2 * p);
        }
        t
    }

    /// Loads a tag word: empty where it says so, else the tag the contents earn.
    fn fpu_load_tags(&mut self, tags: u16) {
        for p in 0..8 {
            let t = if (tags >> (2 * p)) & 3 == 3 { 3 } else { tag_of(self.s.fpu.regs[p]) };
            self.set_phys_tag(p, t);
        }
    }

    /// Real-address layouts (real and virtual-8086 mode) hold 20- or 32-bit linear pointers.
    fn fpu_real_layout(&self) -> bool {
        !self.protected() || self.vm86()
    }
}

fn fnclex(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    cpu.s.fpu.fsw &= !(0xFF | sw::B);
    Ok(())
}

fn fldcw(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let v = cpu.fpu_read(bus, i, 0, 2)? as u16;
    cpu.s.fpu.fcw = (v & !FCW_RESERVED) | 0x40;
    cpu.fpu_recompute_es();
    Ok(())
}

fn fnstcw(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let v = cpu.s.fpu.fcw;
    cpu.fpu_write(bus, i, 0, 2, u64::from(v))
}

fn fnstsw_mem(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let v = cpu.s.fpu.fsw;
    cpu.fpu_write(bus, i, 0, 2, u64::from(v))
}

fn fnstsw_ax(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let v = cpu.s.fpu.fsw;
    cpu.set_reg(0, 2, u64::from(v));
    Ok(())
}

/// The environment as it is laid out in memory: 14 bytes (7 words) or 28 (7 dwords).
fn env_image(cpu: &Cpu, wide: bool) -> [u32; 7] {
    let f = &cpu.s.fpu;
    let tags = u32::from(cpu.fpu_full_tags());
    let (fcw, fsw, fop) = (u32::from(f.fcw), u32::from(f.fsw), u32::from(f.fop & 0x7FF));
    if cpu.fpu_real_layout() {
        let ip = (f.fip as u32).wrapping_add(u32::from(f.fcs) << 4);
        let dp = (f.fdp as u32).wrapping_add(u32::from(f.fds) << 4);
        if wide {
            let hi = 0xFFFF_0000;
            [hi | fcw, hi | fsw, hi | tags, hi | (ip & 0xFFFF), ((ip >> 4) & 0x0FFF_F000) | fop, hi | (dp & 0xFFFF), (dp >> 4) & 0x0FFF_F000]
        } else {
            [fcw, fsw, tags, ip & 0xFFFF, ((ip >> 4) & 0xF000) | fop, dp & 0xFFFF, (dp >> 4) & 0xF000]
        }
    } else if wide {
        let hi = 0xFFFF_0000;
        [hi | fcw, hi | fsw, hi | tags, f.fip as u32, u32::from(f.fcs) | (fop << 16), f.fdp as u32, hi | u32::from(f.fds)]
    } else {
        [fcw, fsw, tags, f.fip as u32 & 0xFFFF, u32::from(f.fcs), f.fdp as u32 & 0xFFFF, u32::from(f.fds)]
    }
}

fn store_env(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, wide: bool) -> Result<(), Fault> {
    let img = env_image(cpu, wide);
    let step = if wide { 4 } else { 2 };
    for (k, w) in img.iter().enumerate() {
        cpu.fpu_write(bus, i, k as u64 * step, step as u8, u64::from(*w))?;
    }
    Ok(())
}

fn read_env(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, wide: bool) -> Result<[u32; 7], Fault> {
    let step = if wide { 4 } else { 2 };
    let mut img = [0u32; 7];
    for (k, w) in img.iter_mut().enumerate() {
        *w = cpu.fpu_read(bus, i, k as u64 * step, step as u8)? as u32;
    }
    Ok(img)
}

/// Loads an environment image (the tag word after the registers, by the caller).
fn apply_env(cpu: &mut Cpu, img: &[u32; 7], wide: bool) -> u16 {
    let real = cpu.fpu_real_layout();
    let f = &mut cpu.s.fpu;
    f.fcw = (img[0] as u16 & !FCW_RESERVED) | 0x40;
    f.fsw = img[1] as u16;
    if real {
        let (ip, dp) = if wide {
            ((img[3] & 0xFFFF) | ((img[4] & 0x0FFF_F000) << 4), (img[5] & 0xFFFF) | ((img[6] & 0x0FFF_F000) << 4))
        } else {
            ((img[3] & 0xFFFF) | ((img[4] & 0xF000) << 4), (img[5] & 0xFFFF) | ((img[6] & 0xF000) << 4))
        };
        f.fip = u64::from(ip);
        f.fcs = 0;
        f.fdp = u64::from(dp);
        f.fds = 0;
        f.fop = (img[4] & 0x7FF) as u16;
    } else if wide {
        f.fip = u64::from(img[3]);
        f.fcs = img[4] as u16;
        f.fop = ((img[4] >> 16) & 0x7FF) as u16;
        f.fdp = u64::from(img[5]);
        f.fds = img[6] as u16;
    } else {
        f.fip = u64::from(img[3] & 0xFFFF);
        f.fcs = img[4] as u16;
        f.fdp = u64::from(img[5] & 0xFFFF);
        f.fds = img[6] as u16;
    }
    img[2] as u16
}

fn fnstenv(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let wide = i.imm & WIDE != 0;
    cpu.fpu_check_write(i, if wide { 28 } else { 14 })?;
    store_env(cpu, bus, i, wide)?;
    // FNSTENV then masks every exception.
    cpu.s.fpu.fcw |= 0x3F;
    Ok(())
}

fn fldenv(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let wide = i.imm & WIDE != 0;
    cpu.fpu_check_read(i, if wide { 28 } else { 14 })?;
    let img = read_env(cpu, bus, i, wide)?;
    let tags = apply_env(cpu, &img, wide);
    cpu.fpu_load_tags(tags);
    cpu.fpu_recompute_es();
    Ok(())
}

fn fnsave(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let wide = i.imm & WIDE != 0;
    let base = if wide { 28 } else { 14 };
    cpu.fpu_check_write(i, base as u8 + 80)?;
    store_env(cpu, bus, i, wide)?;
    for k in 0..8u8 {
        let r = cpu.st(k);
        let off = base + 10 * u64::from(k);
        cpu.fpu_write(bus, i, off, 8, r.signif)?;
        cpu.fpu_write(bus, i, off + 8, 2, u64::from(r.sign_exp))?;
    }
    cpu.fpu_init();
    Ok(())
}

fn frstor(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let wide = i.imm & WIDE != 0;
    let base = if wide { 28 } else { 14 };
    cpu.fpu_check_read(i, base as u8 + 80)?;
    let img = read_env(cpu, bus, i, wide)?;
    let mut regs = [F80::default(); 8];
    for (k, r) in regs.iter_mut().enumerate() {
        let off = base + 10 * k as u64;
        r.signif = cpu.fpu_read(bus, i, off, 8)?;
        r.sign_exp = cpu.fpu_read(bus, i, off + 8, 2)? as u16;
    }
    let tags = apply_env(cpu, &img, wide);
    let top = cpu.fpu_top();
    for (k, r) in regs.iter().enumerate() {
        cpu.s.fpu.regs[(top + k) & 7] = *r;
    }
    cpu.fpu_load_tags(tags);
    cpu.fpu_recompute_es();
    Ok(())
}
