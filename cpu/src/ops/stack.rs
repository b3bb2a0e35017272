//! The stack: PUSH, POP (general, immediate, memory and segment forms), PUSHA/POPA,
//! PUSHF/POPF, ENTER, LEAVE.

use crate::bus::Bus;
use crate::cpu::{mask, Cpu};
use crate::decode::Insn;
use crate::fault::Fault;
use crate::state::{flags, reg, sreg};

pub(crate) fn push_rm<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = cpu.read_rm::<MEM>(bus, i, i.osz)?;
    cpu.push(bus, i.osz, v)
}

pub(crate) fn push_imm(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.push(bus, i.osz, mask(i.imm, i.osz))
}

/// PUSH Sreg: with a 32-bit operand the slot is 4 bytes but only the selector's 16 bits are
/// written, as recent processors do.
pub(crate) fn push_sreg(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let sel = u64::from(cpu.s.seg[i.r0 as usize].selector);
    if i.osz == 2 {
        return cpu.push(bus, 2, sel);
    }
    let w = cpu.stack_width();
    let sp = mask(cpu.s.gpr[reg::RSP].wrapping_sub(u64::from(i.osz)), w);
    cpu.write_seg(bus, sreg::SS, sp, 2, sel)?;
    cpu.set_reg(reg::RSP as u8, w, sp);
    Ok(())
}

/// POP r/m: the value is read first, and a memory destination addressed through SP uses the
/// incremented SP, as the SDM specifies.
pub(crate) fn pop_rm<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let old_sp = cpu.s.gpr[reg::RSP];
    let v = cpu.pop(bus, i.osz)?;
    if let Err(f) = cpu.write_rm::<MEM>(bus, i, i.osz, v) {
        cpu.s.gpr[reg::RSP] = old_sp;
        return Err(f);
    }
    Ok(())
}

/// POP Sreg: SP moves by the stack-address size of the SS the value was popped from, also when
/// the instruction is POP SS and loads a stack segment of the other size (a 16-bit stack popping
/// a 32-bit SS moves SP, not ESP), as on hardware.
pub(crate) fn pop_sreg(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = cpu.peek(bus, 0, i.osz)?;
    let w = cpu.stack_width();
    let sp = cpu.sp().wrapping_add(u64::from(i.osz));
    cpu.load_seg(bus, i.r0 as usize, v as u16)?;
    cpu.set_reg(reg::RSP as u8, w, sp);
    if i.r0 as usize == sreg::SS {
        cpu.s.pending.interrupt_shadow = true;
        cpu.attention = true;
        cpu.ss_shadow = true;
    }
    Ok(())
}

pub(crate) fn pusha(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let old_sp = cpu.s.gpr[reg::RSP];
    let sp_value = cpu.reg(reg::RSP as u8, i.osz);
    for r in [reg::RAX, reg::RCX, reg::RDX, reg::RBX, reg::RSP, reg::RBP, reg::RSI, reg::RDI] {
        let v = if r == reg::RSP { sp_value } else { cpu.reg(r as u8, i.osz) };
        if let Err(f) = cpu.push(bus, i.osz, v) {
            cpu.s.gpr[reg::RSP] = old_sp;
            return Err(f);
        }
    }
    Ok(())
}

pub(crate) fn popa(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let n = u64::from(i.osz);
    let mut vals = [0u64; 8];
    for (k, v) in vals.iter_mut().enumerate() {
        *v = cpu.peek(bus, k as u64 * n, i.osz)?;
    }
    for (k, r) in [reg::RDI, reg::RSI, reg::RBP, reg::RSP, reg::RBX, reg::RDX, reg::RCX, reg::RAX].into_iter().enumerate() {
        if r != reg::RSP {
            cpu.set_reg(r as u8, i.osz, vals[k]);
        }
    }
    let sp = cpu.sp().wrapping_add(8 * n);
    cpu.set_sp(sp);
    Ok(())
}

pub(crate) fn pushf(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    if cpu.vm86() && cpu.iopl() < 3 {
        return Err(Fault::gp(0));
    }
    // The image on the stack never has RF or VM set.
    let f = cpu.rflags() & !(flags::RF | flags::VM);
    cpu.push(bus, i.osz, f)
}

/// Bits POPF and IRET may change in real mode (and at CPL 0).
pub(crate) const POPF_MASK_16: u64 = 0x7FD5;
pub(crate) const POPF_MASK_32: u64 = 0x0024_7FD5;

pub(crate) fn popf(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    if cpu.vm86() && cpu.iopl() < 3 {
        return Err(Fault::gp(0));
    }
    let v = cpu.pop(bus, i.osz)?;
    let mut m = if i.osz == 2 { POPF_MASK_16 } else { POPF_MASK_32 };
    if cpu.protected() {
        // IOPL changes only at CPL 0 (never in virtual-8086 mode); IF only at CPL <= IOPL.
        if cpu.cpl() > 0 {
            m &= !flags::IOPL;
        }
        if cpu.cpl() > cpu.iopl() {
            m &= !flags::IF;
        }
    }
    cpu.write_flags(v, m);
    Ok(())
}

pub(crate) fn enter(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let n = u64::from(size);
    let alloc = i.imm & 0xFFFF;
    let level = i.imm2 & 0x1F;
    let w = cpu.stack_width();
    let saved_sp = cpu.s.gpr[reg::RSP];
    let saved_bp = cpu.s.gpr[reg::RBP];
    let r = (|| {
        cpu.push(bus, size, cpu.reg(reg::RBP as u8, size))?;
        // FrameTemp is the operand-size stack pointer (SDM: ESP for a 32-bit ENTER, SP for a
        // 16-bit one), not the stack-address-size one: a 32-bit ENTER on a 16-bit stack keeps
        // ESP's upper half in the new EBP and in the frame pointer it pushes.
        let frame = cpu.reg(reg::RSP as u8, size);
        if level > 0 {
            let mut bp = cpu.reg(reg::RBP as u8, w);
            for _ in 1..level {
                bp = mask(bp.wrapping_sub(n), w);
                let v = cpu.read_seg(bus, sreg::SS, bp, size)?;
                cpu.push(bus, size, v)?;
            }
            cpu.push(bus, size, frame)?;
        }
        let new_sp = mask(cpu.sp().wrapping_sub(alloc), w);
        // The bottom of the new frame must be inside the stack segment, and writable at the
        // page level too: the SDM has ENTER page-fault whenever a write at the final stack
        // pointer would (test386.asm's POST 1A checks this from ring 3).
        let lin = cpu.lin(sreg::SS, new_sp, 1, crate::mem::Access::Write)?;
        let user = cpu.cpl() == 3;
        cpu.translate(bus, lin, crate::mem::Access::Write, user)?;
        cpu.set_reg(reg::RBP as u8, size, frame);
        cpu.set_sp(new_sp);
        Ok(())
    })();
    if r.is_err() {
        cpu.s.gpr[reg::RSP] = saved_sp;
        cpu.s.gpr[reg::RBP] = saved_bp;
    }
    r
}

pub(crate) fn leave(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let w = cpu.stack_width();
    let bp = cpu.reg(reg::RBP as u8, w);
    let v = cpu.read_seg(bus, sreg::SS, bp, i.osz)?;
    cpu.set_sp(bp.wrapping_add(u64::from(i.osz)));
    cpu.set_reg(reg::RBP as u8, i.osz, v);
    Ok(())
}

impl Cpu {
    /// Writes the flags in `m` from `v` (POPF, IRET, SAHF...), keeping the others.
    pub(crate) fn write_flags(&mut self, v: u64, m: u64) {
        let old = self.rflags();
        self.set_rflags(((old & !m) | (v & m)) | flags::FIXED1);
        if old & flags::IF == 0 && self.s.rflags & flags::IF != 0 {
            self.stop_block();
        }
        if (old ^ self.s.rflags) & flags::TF != 0 {
            self.stop_block();
        }
    }
}
