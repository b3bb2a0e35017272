//! Decimal arithmetic: DAA, DAS, AAA, AAS, AAM, AAD, as the SDM specifies them for 386 and
//! later processors.

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::Insn;
use crate::fault::Fault;
use crate::flags::FlagOp;
use crate::state::flags::*;
use crate::state::reg;

const RAX: u8 = reg::RAX as u8;

pub(crate) fn daa(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    let old_al = cpu.reg(RAX, 1);
    let old_cf = cpu.cf();
    let mut al = old_al;
    let mut cf = false;
    let mut af = false;
    if al & 0xF > 9 || cpu.af() {
        cf = old_cf || al + 6 > 0xFF;
        al = (al + 6) & 0xFF;
        af = true;
    }
    if old_al > 0x99 || old_cf {
        al = (al + 0x60) & 0xFF;
        cf = true;
    }
    finish(cpu, al, cf, af, old_al);
    Ok(())
}

pub(crate) fn das(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    let old_al = cpu.reg(RAX, 1);
    let old_cf = cpu.cf();
    let mut al = old_al;
    let mut cf = false;
    let mut af = false;
    if al & 0xF > 9 || cpu.af() {
        cf = old_cf || al < 6;
        al = al.wrapping_sub(6) & 0xFF;
        af = true;
    }
    if old_al > 0x99 || old_cf {
        al = al.wrapping_sub(0x60) & 0xFF;
        cf = true;
    }
    finish(cpu, al, cf, af, old_al);
    Ok(())
}

/// Stores AL and the flags of DAA/DAS. OF is undefined; it is set as the signed overflow from
/// the old to the new AL, which matches the processors we compare against.
fn finish(cpu: &mut Cpu, al: u64, cf: bool, af: bool, old_al: u64) {
    cpu.set_reg(RAX, 1, al);
    let mut f = cpu.szp(al, 1);
    if cf {
        f |= CF;
    }
    if af {
        f |= AF;
    }
    if (old_al ^ al) & al & 0x80 != 0 {
        f |= OF;
    }
    cpu.set_status(ARITH, f);
}

pub(crate) fn aaa(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    let ax = cpu.reg(RAX, 2);
    let adjust = ax & 0xF > 9 || cpu.af();
    let ax = if adjust { ax.wrapping_add(0x106) } else { ax };
    cpu.set_reg(RAX, 2, ax & 0xFF0F);
    let mut f = cpu.szp(ax & 0x0F, 1);
    if adjust {
        f |= AF | CF;
    }
    cpu.set_status(ARITH, f);
    Ok(())
}

pub(crate) fn aas(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    let ax = cpu.reg(RAX, 2);
    let adjust = ax & 0xF > 9 || cpu.af();
    let ax = if adjust { ax.wrapping_sub(6).wrapping_sub(0x100) } else { ax };
    cpu.set_reg(RAX, 2, ax & 0xFF0F);
    let mut f = cpu.szp(ax & 0x0F, 1);
    if adjust {
        f |= AF | CF;
    }
    cpu.set_status(ARITH, f);
    Ok(())
}

pub(crate) fn aam(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let base = i.imm & 0xFF;
    if base == 0 {
        return Err(Fault::de());
    }
    let al = cpu.reg(RAX, 1);
    let (ah, al) = (al / base, al % base);
    cpu.set_reg(RAX, 2, (ah << 8) | al);
    // Flags as a logical operation on the new AL: SF, ZF, PF defined; OF, AF, CF clear.
    cpu.set_lazy(FlagOp::Logic, 1, al, al, al);
    Ok(())
}

pub(crate) fn aad(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let base = i.imm & 0xFF;
    let ax = cpu.reg(RAX, 2);
    let (al, ah) = (ax & 0xFF, ax >> 8);
    let prod = (ah * base) & 0xFF;
    let r = (al + prod) & 0xFF;
    cpu.set_reg(RAX, 2, r);
    // The adjustment is an 8-bit addition; its flags are what processors leave behind.
    cpu.set_lazy(FlagOp::Add, 1, al, prod, r);
    Ok(())
}
