//! Fast system calls: SYSCALL/SYSRET (64-bit mode), SYSENTER/SYSEXIT, SWAPGS, RDTSCP. The
//! segments they load are fixed flat descriptors computed from the MSRs, never read from the
//! GDT (Intel SDM vol. 2, SYSCALL, SYSRET, SYSENTER, SYSEXIT).

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::Insn;
use crate::fault::Fault;
use crate::seg::canonical;
use crate::state::{flags, reg, sreg, Segment};

/// Flat 4 GiB code and data segments, in `Segment::attr` layout.
const CODE64_DPL0: u16 = 0xA09B;
const CODE32_DPL0: u16 = 0xC09B;
const DATA_DPL0: u16 = 0xC093;
const CODE64_DPL3: u16 = 0xA0FB;
const CODE32_DPL3: u16 = 0xC0FB;
const DATA_DPL3: u16 = 0xC0F3;

const EFER_SCE: u64 = 1;

fn flat(selector: u64, attr: u16) -> Segment {
    Segment { selector: selector as u16, base: 0, limit: 0xFFFF_FFFF, attr }
}

impl Cpu {
    fn set_flat_cs_ss(&mut self, cs: Segment, ss: Segment) {
        self.s.seg[sreg::CS] = cs;
        self.s.seg[sreg::SS] = ss;
        self.update_mode();
        self.stop_block();
    }
}

pub(crate) fn syscall(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    if cpu.bits != 64 || cpu.s.efer & EFER_SCE == 0 {
        return Err(Fault::ud());
    }
    let star = cpu.s.msr.star;
    let sel = (star >> 32) & 0xFFFC;
    cpu.s.gpr[reg::RCX] = cpu.s.rip;
    let fl = cpu.rflags() & !flags::RF;
    cpu.s.gpr[11] = fl;
    cpu.set_rflags((fl & !cpu.s.msr.fmask & !flags::RF) | flags::FIXED1);
    cpu.s.rip = cpu.s.msr.lstar;
    cpu.set_flat_cs_ss(flat(sel, CODE64_DPL0), flat(sel + 8, DATA_DPL0));
    Ok(())
}

pub(crate) fn sysret(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    if cpu.bits != 64 || cpu.s.efer & EFER_SCE == 0 {
        return Err(Fault::ud());
    }
    cpu.require_cpl0()?;
    let base = (cpu.s.msr.star >> 48) & 0xFFFF;
    let rcx = cpu.s.gpr[reg::RCX];
    let (cs, rip) = if i.osz == 8 {
        if !canonical(rcx) {
            return Err(Fault::gp(0));
        }
        (flat((base + 16) | 3, CODE64_DPL3), rcx)
    } else {
        (flat(base | 3, CODE32_DPL3), rcx & 0xFFFF_FFFF)
    };
    let r11 = cpu.s.gpr[11];
    cpu.set_rflags((r11 & 0x003C_7FD7) | flags::FIXED1);
    cpu.s.rip = rip;
    // SS keeps its selector arithmetic but, as on Intel processors, gets flat DPL 3 data.
    cpu.set_flat_cs_ss(cs, flat((base + 8) | 3, DATA_DPL3));
    Ok(())
}

pub(crate) fn sysenter(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    if !cpu.protected() {
        return Err(Fault::gp(0));
    }
    let cs = cpu.s.msr.sysenter_cs & 0xFFFC;
    if cs == 0 {
        return Err(Fault::gp(0));
    }
    cpu.materialize_flags();
    cpu.s.rflags &= !(flags::VM | flags::IF | flags::RF);
    let long = cpu.long_mode();
    cpu.s.rip = if long { cpu.s.msr.sysenter_eip } else { cpu.s.msr.sysenter_eip & 0xFFFF_FFFF };
    cpu.s.gpr[reg::RSP] = if long { cpu.s.msr.sysenter_esp } else { cpu.s.msr.sysenter_esp & 0xFFFF_FFFF };
    cpu.set_flat_cs_ss(flat(cs, if long { CODE64_DPL0 } else { CODE32_DPL0 }), flat(cs + 8, DATA_DPL0));
    Ok(())
}

pub(crate) fn sysexit(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let base = cpu.s.msr.sysenter_cs & 0xFFFC;
    if !cpu.protected() || cpu.vm86() || cpu.cpl() != 0 || base == 0 {
        return Err(Fault::gp(0));
    }
    let (cs, ss, rip, rsp) = if i.osz == 8 {
        let (rdx, rcx) = (cpu.s.gpr[reg::RDX], cpu.s.gpr[reg::RCX]);
        if !canonical(rdx) || !canonical(rcx) {
            return Err(Fault::gp(0));
        }
        (flat((base + 32) | 3, CODE64_DPL3), flat((base + 40) | 3, DATA_DPL3), rdx, rcx)
    } else {
        let (edx, ecx) = (cpu.s.gpr[reg::RDX] & 0xFFFF_FFFF, cpu.s.gpr[reg::RCX] & 0xFFFF_FFFF);
        (flat((base + 16) | 3, CODE32_DPL3), flat((base + 24) | 3, DATA_DPL3), edx, ecx)
    };
    cpu.s.rip = rip;
    cpu.s.gpr[reg::RSP] = rsp;
    cpu.set_flat_cs_ss(cs, ss);
    Ok(())
}

pub(crate) fn swapgs(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    if cpu.bits != 64 {
        return Err(Fault::ud());
    }
    cpu.require_cpl0()?;
    let gs = cpu.s.seg[sreg::GS].base;
    cpu.s.seg[sreg::GS].base = cpu.s.msr.kernel_gs_base;
    cpu.s.msr.kernel_gs_base = gs;
    Ok(())
}

pub(crate) fn rdtscp(cpu: &mut Cpu, bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    let t = cpu.tsc_now(bus);
    cpu.set_reg(reg::RAX as u8, 4, t & 0xFFFF_FFFF);
    cpu.set_reg(reg::RDX as u8, 4, t >> 32);
    let aux = cpu.s.msr.tsc_aux;
    cpu.set_reg(reg::RCX as u8, 4, aux);
    Ok(())
}
