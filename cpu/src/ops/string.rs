//! String instructions: MOVS, CMPS, SCAS, LODS, STOS, INS, OUTS, with REP/REPE/REPNE. A
//! repeated instruction runs in chunks: when a chunk ends with iterations left, RIP is set
//! back to the instruction so that interrupts and deadlines are served between chunks and the
//! instruction simply continues, as on hardware.

use crate::bus::Bus;
use crate::cpu::{mask, Cpu};
use crate::decode::{Insn, REP, REPNE};
use crate::fault::Fault;
use crate::flags::FlagOp;
use crate::mem::Access;
use crate::state::{flags, reg, sreg};

/// Iterations of a repeated string instruction between looks at interrupts.
const CHUNK: u64 = 4096;

impl Cpu {
    #[inline(always)]
    fn step(&self, size: u8) -> u64 {
        if self.s.rflags & flags::DF != 0 {
            (u64::from(size)).wrapping_neg()
        } else {
            u64::from(size)
        }
    }

    #[inline(always)]
    fn advance(&mut self, r: usize, i: &Insn) {
        let v = mask(self.s.gpr[r].wrapping_add(self.step(i.osz)), i.asz);
        self.set_reg(r as u8, i.asz, v);
    }
}

/// Runs `body` once, or under REP as many times as CX says (or until `body` says stop, for
/// the REPE/REPNE forms). `body` returns whether to go on.
#[inline(always)]
fn repeat(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    i: &Insn,
    mut body: impl FnMut(&mut Cpu, &mut dyn Bus) -> Result<bool, Fault>,
) -> Result<(), Fault> {
    if i.rep == 0 {
        body(cpu, bus)?;
        return Ok(());
    }
    let cx = reg::RCX as u8;
    if i.asz == 4 && cpu.bits == 64 {
        // ECX as the count: RCX's upper half is cleared even when nothing repeats.
        let c = cpu.reg(cx, 4);
        cpu.set_reg(cx, 4, c);
    }
    let mut n = 0u64;
    // Each iteration counts as an instruction retired (the first is the instruction itself),
    // so time and instruction counts see the work a long REP does.
    let r = loop {
        let count = cpu.reg(cx, i.asz);
        if count == 0 {
            break Ok(());
        }
        if n == CHUNK || cpu.end_block {
            // Come back to this instruction after serving interrupts.
            cpu.s.rip = cpu.s.rip.wrapping_sub(u64::from(i.len)) & i.ip_mask;
            cpu.stop_block();
            break Ok(());
        }
        let go_on = match body(cpu, bus) {
            Ok(g) => g,
            Err(f) => break Err(f),
        };
        cpu.set_reg(cx, i.asz, count - 1);
        n += 1;
        if !go_on {
            break Ok(());
        }
    };
    cpu.run_retired += n.saturating_sub(1);
    r
}

/// For CMPS and SCAS: does the REPE/REPNE condition allow another iteration?
#[inline(always)]
fn rep_condition(cpu: &Cpu, i: &Insn) -> bool {
    match i.rep {
        REP => cpu.zf(),
        REPNE => !cpu.zf(),
        _ => true,
    }
}

/// REP MOVS/STOS over plain RAM, forward: moves whole runs that stay within one page on each
/// side at once. Returns false when the element-by-element path must do the next part (a TLB
/// miss, a page boundary, overlap that makes element order visible, DF set, MMIO...).
fn bulk(cpu: &mut Cpu, i: &Insn, movs: bool) -> bool {
    if i.rep != REP || cpu.s.rflags & flags::DF != 0 || cpu.end_block {
        return false;
    }
    let size = u64::from(i.osz);
    let count = cpu.reg(reg::RCX as u8, i.asz);
    if count < 2 {
        return false;
    }
    let amask = mask(u64::MAX, i.asz);
    let di = cpu.reg(reg::RDI as u8, i.asz);
    let si = cpu.reg(reg::RSI as u8, i.asz);
    // Elements that fit before either offset wraps, either page ends, and the chunk limit.
    let page_left = |lin: u64| (4096 - lin % 4096) / size;
    let mut n = count.min(CHUNK).min((amask - di) / size + 1);
    if movs {
        n = n.min((amask - si) / size + 1);
    }
    let sz = i.osz;
    let Ok(dlin) = cpu.lin(sreg::ES, di, sz, Access::Write) else { return false };
    n = n.min(page_left(dlin));
    if movs {
        let Ok(slin) = cpu.lin(i.seg as usize, si, sz, Access::Read) else { return false };
        n = n.min(page_left(slin));
    }
    if n < 2 {
        return false;
    }
    // The last element must pass the segment checks too.
    if cpu.lin(sreg::ES, di + (n - 1) * size, sz, Access::Write).is_err() {
        return false;
    }
    let Some(dst) = cpu.host_for(dlin, true) else { return false };
    let bytes = (n * size) as usize;
    if movs {
        if cpu.lin(i.seg as usize, si + (n - 1) * size, sz, Access::Read).is_err() {
            return false;
        }
        let Ok(slin) = cpu.lin(i.seg as usize, si, sz, Access::Read) else { return false };
        let Some(src) = cpu.host_for(slin, false) else { return false };
        // Forward element order equals memmove unless the destination starts inside the
        // source run (then earlier stores feed later loads).
        if dst > src && dst < src + bytes {
            return false;
        }
        // SAFETY: both runs lie within single 4 KiB host pages the TLB maps (checked above),
        // and `copy` handles any overlap.
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) };
        cpu.set_reg(reg::RSI as u8, i.asz, (si + n * size) & amask);
    } else {
        let v = cpu.reg(reg::RAX as u8, i.osz).to_le_bytes();
        for k in 0..n as usize {
            // SAFETY: as above: the run lies within one mapped RAM page.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), (dst + k * size as usize) as *mut u8, size as usize) };
        }
    }
    cpu.set_reg(reg::RDI as u8, i.asz, (di + n * size) & amask);
    cpu.set_reg(reg::RCX as u8, i.asz, count - n);
    cpu.run_retired += n;
    true
}

pub(crate) fn movs(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let mut runs = 0;
    while runs < 64 && bulk(cpu, i, true) {
        runs += 1;
    }
    repeat(cpu, bus, i, |c, b| {
        let si = c.reg(reg::RSI as u8, i.asz);
        let di = c.reg(reg::RDI as u8, i.asz);
        let v = c.read_seg(b, i.seg as usize, si, i.osz)?;
        c.write_seg(b, sreg::ES, di, i.osz, v)?;
        c.advance(reg::RSI, i);
        c.advance(reg::RDI, i);
        Ok(true)
    })
}

pub(crate) fn stos(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let mut runs = 0;
    while runs < 64 && bulk(cpu, i, false) {
        runs += 1;
    }
    let v = cpu.reg(reg::RAX as u8, i.osz);
    repeat(cpu, bus, i, |c, b| {
        let di = c.reg(reg::RDI as u8, i.asz);
        c.write_seg(b, sreg::ES, di, i.osz, v)?;
        c.advance(reg::RDI, i);
        Ok(true)
    })
}

pub(crate) fn lods(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    repeat(cpu, bus, i, |c, b| {
        let si = c.reg(reg::RSI as u8, i.asz);
        let v = c.read_seg(b, i.seg as usize, si, i.osz)?;
        c.set_reg(reg::RAX as u8, i.osz, v);
        c.advance(reg::RSI, i);
        Ok(true)
    })
}

pub(crate) fn cmps(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    repeat(cpu, bus, i, |c, b| {
        let si = c.reg(reg::RSI as u8, i.asz);
        let di = c.reg(reg::RDI as u8, i.asz);
        let a = c.read_seg(b, i.seg as usize, si, i.osz)?;
        let d = c.read_seg(b, sreg::ES, di, i.osz)?;
        c.set_lazy(FlagOp::Sub, i.osz, a, d, a.wrapping_sub(d));
        c.advance(reg::RSI, i);
        c.advance(reg::RDI, i);
        Ok(rep_condition(c, i))
    })
}

pub(crate) fn scas(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let a = cpu.reg(reg::RAX as u8, i.osz);
    repeat(cpu, bus, i, |c, b| {
        let di = c.reg(reg::RDI as u8, i.asz);
        let d = c.read_seg(b, sreg::ES, di, i.osz)?;
        c.set_lazy(FlagOp::Sub, i.osz, a, d, a.wrapping_sub(d));
        c.advance(reg::RDI, i);
        Ok(rep_condition(c, i))
    })
}

pub(crate) fn ins(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let port = cpu.reg(reg::RDX as u8, 2) as u16;
    // Port permission is checked before any memory access.
    cpu.check_io(bus, port, i.osz)?;
    repeat(cpu, bus, i, |c, b| {
        let di = c.reg(reg::RDI as u8, i.asz);
        // Check the destination before the port read, which may have side effects.
        c.lin(sreg::ES, di, i.osz, Access::Write)?;
        let v = c.port_in(b, port, i.osz)?;
        c.write_seg(b, sreg::ES, di, i.osz, v)?;
        c.advance(reg::RDI, i);
        Ok(true)
    })
}

pub(crate) fn outs(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let port = cpu.reg(reg::RDX as u8, 2) as u16;
    cpu.check_io(bus, port, i.osz)?;
    repeat(cpu, bus, i, |c, b| {
        let si = c.reg(reg::RSI as u8, i.asz);
        let v = c.read_seg(b, i.seg as usize, si, i.osz)?;
        c.port_out(b, port, i.osz, v)?;
        c.advance(reg::RSI, i);
        Ok(true)
    })
}
