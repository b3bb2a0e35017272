//! Control transfers: Jcc, JMP, CALL, RET, RETF, IRET, LOOP/LOOPE/LOOPNE/JCXZ, INT n, INT3,
//! INT1, INTO, BOUND. Targets beyond the CS limit fault before anything changes.

use crate::bus::Bus;
use crate::cpu::{mask, sext, Cpu};
use crate::decode::{Handler, Insn};
use crate::fault::{vec, Fault};
use crate::state::{reg, sreg};
use crate::transfer::Far;

impl Cpu {
    /// Sets RIP to a near target truncated to the operand size, checking the CS limit.
    #[inline(always)]
    pub(crate) fn near_jump(&mut self, target: u64, osz: u8) -> Result<(), Fault> {
        let t = mask(target, osz);
        self.check_near_target(t)?;
        self.s.rip = t;
        Ok(())
    }

    /// A near branch target must be inside CS (canonical in 64-bit mode): the branch itself
    /// faults, before it changes anything.
    #[inline(always)]
    pub(crate) fn check_near_target(&self, t: u64) -> Result<(), Fault> {
        // One compare for both rules (see `Cpu::near_bias`).
        if t.wrapping_add(self.near_bias) > self.near_hi {
            Err(Fault::gp(0))
        } else {
            Ok(())
        }
    }

    /// A far transfer to `sel:off` in real or virtual-8086 mode (no descriptor checks).
    pub(crate) fn far_jump(&mut self, sel: u16, off: u64, osz: u8) -> Result<(), Fault> {
        let off = mask(off, osz);
        if off > u64::from(self.s.seg[sreg::CS].limit) {
            return Err(Fault::gp(0));
        }
        if self.vm86() {
            self.s.seg[sreg::CS] = crate::state::Segment { selector: sel, base: u64::from(sel) << 4, limit: 0xFFFF, attr: 0xFB };
            self.update_mode();
        } else {
            self.load_seg_real(sreg::CS, sel);
        }
        self.s.rip = off;
        Ok(())
    }

    /// Protected mode proper (not real, not virtual-8086): far transfers go through
    /// descriptors.
    #[inline(always)]
    pub(crate) fn pm_transfers(&self) -> bool {
        self.protected() && !self.vm86()
    }

    /// A taken branch in the middle of a block: the block ends here, with nothing for the run
    /// loop to look at (unlike other reasons to end a block).
    #[inline(always)]
    pub(crate) fn side_exit(&mut self) {
        self.stop_block();
        self.side_exit = true;
    }
}

pub(crate) fn jcc<const CC: u8, const S: u8>(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    if cpu.cond(CC) {
        cpu.near_jump(cpu.s.rip.wrapping_add(i.imm), S)?;
        cpu.side_exit();
    }
    Ok(())
}

/// Jcc for condition code `cc` (the low nibble of the opcode) and operand size `size`.
pub(crate) fn jcc_handler(cc: u8, size: u8) -> Handler {
    macro_rules! cc {
        ($($c:literal)*) => {
            match cc & 15 {
                $($c => crate::decode::sized!(size, jcc; $c),)*
                _ => unreachable!(),
            }
        };
    }
    cc!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
}

pub(crate) fn jmp_rel<const S: u8>(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.near_jump(cpu.s.rip.wrapping_add(i.imm), S)
}

/// A direct JMP inside a block, which goes on with the instructions decoded at the target
/// (`block.rs`). Those were decoded at the target's offset from the block's start; when the
/// block runs at another RIP (the same bytes reached through another CS base or mapping),
/// the target keeps that offset unless the operand size truncates it: then the block ends.
pub(crate) fn jmp_on<const S: u8>(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let t = cpu.s.rip.wrapping_add(i.imm);
    cpu.near_jump(t, S)?;
    if cpu.s.rip != t {
        cpu.side_exit();
    }
    Ok(())
}

pub(crate) fn jmp_rm<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let t = cpu.read_rm::<MEM>(bus, i, i.osz)?;
    cpu.near_jump(t, i.osz)
}

pub(crate) fn jmp_far_imm(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    if cpu.pm_transfers() {
        return cpu.far_transfer_pm(bus, Far::Jmp, i.imm2 as u16, i.imm, i.osz);
    }
    cpu.far_jump(i.imm2 as u16, i.imm, i.osz)
}

/// Reads a far pointer (offset of the operand size, then a selector) from the memory operand.
fn read_far_ptr(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(u16, u64), Fault> {
    let ea = cpu.ea(i);
    let off = cpu.read_seg(bus, i.seg as usize, ea, i.osz)?;
    let sel = cpu.read_seg(bus, i.seg as usize, mask(ea.wrapping_add(u64::from(i.osz)), i.asz), 2)?;
    Ok((sel as u16, off))
}

pub(crate) fn jmp_far_mem(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let (sel, off) = read_far_ptr(cpu, bus, i)?;
    if cpu.pm_transfers() {
        return cpu.far_transfer_pm(bus, Far::Jmp, sel, off, i.osz);
    }
    cpu.far_jump(sel, off, i.osz)
}

/// Pushes the return address and jumps; on a fault nothing has changed.
fn near_call(cpu: &mut Cpu, bus: &mut dyn Bus, target: u64, osz: u8) -> Result<(), Fault> {
    let ret = cpu.s.rip;
    let t = mask(target, osz);
    cpu.check_near_target(t)?;
    cpu.push(bus, osz, ret)?;
    cpu.s.rip = t;
    Ok(())
}

pub(crate) fn call_rel(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    near_call(cpu, bus, cpu.s.rip.wrapping_add(i.imm), i.osz)
}

pub(crate) fn call_rm<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let t = cpu.read_rm::<MEM>(bus, i, i.osz)?;
    near_call(cpu, bus, t, i.osz)
}

fn far_call(cpu: &mut Cpu, bus: &mut dyn Bus, sel: u16, off: u64, osz: u8) -> Result<(), Fault> {
    if cpu.pm_transfers() {
        return cpu.far_transfer_pm(bus, Far::Call, sel, off, osz);
    }
    if mask(off, osz) > u64::from(cpu.s.seg[sreg::CS].limit) {
        return Err(Fault::gp(0));
    }
    let old_sp = cpu.s.gpr[reg::RSP];
    let cs = u64::from(cpu.s.seg[sreg::CS].selector);
    let ret = cpu.s.rip;
    if let Err(f) = cpu.push(bus, osz, cs).and_then(|_| cpu.push(bus, osz, ret)) {
        cpu.s.gpr[reg::RSP] = old_sp;
        return Err(f);
    }
    cpu.far_jump(sel, off, osz)
}

pub(crate) fn call_far_imm(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    far_call(cpu, bus, i.imm2 as u16, i.imm, i.osz)
}

pub(crate) fn call_far_mem(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let (sel, off) = read_far_ptr(cpu, bus, i)?;
    far_call(cpu, bus, sel, off, i.osz)
}

/// RET and RET imm16.
pub(crate) fn ret(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let t = cpu.peek(bus, 0, i.osz)?;
    cpu.near_jump(t, i.osz)?;
    let sp = cpu.sp().wrapping_add(u64::from(i.osz)).wrapping_add(i.imm & 0xFFFF);
    cpu.set_sp(sp);
    Ok(())
}

/// RETF and RETF imm16.
pub(crate) fn retf(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    if cpu.pm_transfers() {
        return cpu.far_return_pm(bus, i.osz, i.imm & 0xFFFF);
    }
    let n = u64::from(i.osz);
    let off = cpu.peek(bus, 0, i.osz)?;
    let sel = cpu.peek(bus, n, 2)?;
    cpu.far_jump(sel as u16, off, i.osz)?;
    let sp = cpu.sp().wrapping_add(2 * n).wrapping_add(i.imm & 0xFFFF);
    cpu.set_sp(sp);
    Ok(())
}

/// IRET: IP, CS and FLAGS from the stack (real mode here; protected, long and
/// virtual-8086 mode in `transfer.rs`).
pub(crate) fn iret(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    // Any IRET ends NMI blocking (even one that faults later, as on hardware).
    cpu.s.pending.nmi_blocked = false;
    if cpu.vm86() {
        return cpu.iret_vm86(bus, i.osz);
    }
    if cpu.protected() {
        return cpu.iret_pm(bus, i.osz);
    }
    let n = u64::from(i.osz);
    let off = cpu.peek(bus, 0, i.osz)?;
    let sel = cpu.peek(bus, n, 2)?;
    let fl = cpu.peek(bus, 2 * n, i.osz)?;
    cpu.far_jump(sel as u16, off, i.osz)?;
    let sp = cpu.sp().wrapping_add(3 * n);
    cpu.set_sp(sp);
    let m = if i.osz == 2 { super::stack::POPF_MASK_16 } else { super::stack::POPF_MASK_32 };
    cpu.write_flags(fl, m);
    Ok(())
}

/// LOOP (0), LOOPE (1), LOOPNE (2), JCXZ/JECXZ/JRCXZ (3); the counter is CX, ECX or RCX by
/// address size.
pub(crate) fn loop_(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let count = cpu.reg(reg::RCX as u8, i.asz);
    let take = if i.imm2 == 3 {
        count == 0
    } else {
        let c = mask(count.wrapping_sub(1), i.asz);
        let take = c != 0
            && match i.imm2 {
                1 => cpu.zf(),
                2 => !cpu.zf(),
                _ => true,
            };
        if take {
            // Check the target before committing the decrement, so a fault changes nothing.
            cpu.near_jump(cpu.s.rip.wrapping_add(i.imm), i.osz)?;
            cpu.side_exit();
        }
        cpu.set_reg(reg::RCX as u8, i.asz, c);
        return Ok(());
    };
    if take {
        cpu.near_jump(cpu.s.rip.wrapping_add(i.imm), i.osz)?;
        cpu.side_exit();
    }
    Ok(())
}

pub(crate) fn int_n(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.soft_interrupt(bus, i.imm as u8)
}

/// INT1 (ICEBP): a debug trap without the gate-DPL check of INT n.
pub(crate) fn icebp(cpu: &mut Cpu, bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    cpu.stop_block();
    cpu.deliver(bus, vec::DB, crate::fault::Source::Exception(None))
}

pub(crate) fn into(cpu: &mut Cpu, bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    if cpu.of() {
        cpu.soft_interrupt(bus, 4)?;
    }
    Ok(())
}

/// BOUND r, m: #BR if the signed index lies outside [lower, upper].
pub(crate) fn bound(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let ea = cpu.ea(i);
    let lower = sext(cpu.read_seg(bus, i.seg as usize, ea, size)?, size) as i64;
    let upper = sext(cpu.read_seg(bus, i.seg as usize, mask(ea.wrapping_add(u64::from(size)), i.asz), size)?, size) as i64;
    let idx = sext(cpu.reg(i.r0, size), size) as i64;
    if idx < lower || idx > upper {
        return Err(Fault::exc(vec::BR));
    }
    Ok(())
}
