//! String instructions: MOVS, CMPS, SCAS, LODS, STOS, INS, OUTS, with REP/REPE/REPNE. A
//! repeated instruction runs in chunks: when a chunk ends with iterations left, RIP is set
//! back to the instruction so that interrupts and deadlines are served between chunks and the
//! instruction simply continues, as on hardware.

use crate::bus::Bus;
use crate::cpu::{mask, Cpu};
use crate::decode::{Insn, REP, REPNE};
use crate::fault::Fault;
use crate::flags::FlagOp;
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
    let mut n = 0;
    loop {
        let count = cpu.reg(cx, i.asz);
        if count == 0 {
            return Ok(());
        }
        if n == CHUNK || cpu.end_block {
            // Come back to this instruction after serving interrupts.
            cpu.s.rip = cpu.s.rip.wrapping_sub(u64::from(i.len)) & i.ip_mask;
            cpu.end_block = true;
            return Ok(());
        }
        let go_on = body(cpu, bus)?;
        cpu.set_reg(cx, i.asz, count - 1);
        n += 1;
        if !go_on {
            return Ok(());
        }
    }
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

pub(crate) fn movs(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
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
    repeat(cpu, bus, i, |c, b| {
        let di = c.reg(reg::RDI as u8, i.asz);
        // Check the destination before the port read, which may have side effects.
        c.lin(sreg::ES, di, i.osz, crate::mem::Access::Write)?;
        let v = c.port_in(b, port, i.osz)?;
        c.write_seg(b, sreg::ES, di, i.osz, v)?;
        c.advance(reg::RDI, i);
        Ok(true)
    })
}

pub(crate) fn outs(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let port = cpu.reg(reg::RDX as u8, 2) as u16;
    repeat(cpu, bus, i, |c, b| {
        let si = c.reg(reg::RSI as u8, i.asz);
        let v = c.read_seg(b, i.seg as usize, si, i.osz)?;
        c.port_out(b, port, i.osz, v)?;
        c.advance(reg::RSI, i);
        Ok(true)
    })
}
