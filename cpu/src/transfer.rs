//! Protected-mode and long-mode control transfers: far JMP and CALL (direct and through call
//! gates, with the stack switch of an inner-privilege call), far RET, IRET, and delivery of
//! interrupts and exceptions through the IDT (Intel SDM vol. 3, 5.8 and 6.12-6.14; vol. 2,
//! JMP, CALL, RET, IRET).

use crate::bus::Bus;
use crate::cpu::{mask, Cpu};
use crate::fault::{Fault, Source};
use crate::seg::{attr, canonical, Descriptor};
use crate::state::{flags, reg, sreg, Segment};
use crate::task::TaskSwitch;

/// System descriptor types.
const TSS16_AVAIL: u8 = 1;
const CALL_GATE16: u8 = 4;
const TASK_GATE: u8 = 5;
const INT_GATE16: u8 = 6;
const TRAP_GATE16: u8 = 7;
const TSS32_AVAIL: u8 = 9;
const CALL_GATE32: u8 = 12;
const INT_GATE32: u8 = 14;
const TRAP_GATE32: u8 = 15;

/// Far JMP or far CALL.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Far {
    Jmp,
    Call,
}

/// A stack being built somewhere other than SS:SP (a new privilege level's stack), so that
/// nothing is committed until every push has succeeded.
struct NewStack {
    seg: Segment,
    sp: u64,
    /// Width of the stack pointer: 2, 4 or 8.
    width: u8,
    long: bool,
}

impl Cpu {
    pub(crate) fn iopl(&self) -> u8 {
        ((self.s.rflags >> 12) & 3) as u8
    }

    fn push_new(&mut self, bus: &mut dyn Bus, st: &mut NewStack, size: u8, v: u64) -> Result<(), Fault> {
        let sp = mask(st.sp.wrapping_sub(u64::from(size)), st.width);
        let lin = if st.long {
            if !canonical(sp) {
                return Err(Fault::ss(0));
            }
            sp
        } else {
            let ok = if st.seg.attr & attr::DC != 0 {
                let top = if st.seg.attr & attr::DB != 0 { 0xFFFF_FFFF } else { 0xFFFF };
                sp > u64::from(st.seg.limit) && sp + u64::from(size) - 1 <= top
            } else {
                sp + u64::from(size) - 1 <= u64::from(st.seg.limit)
            };
            if !ok {
                return Err(Fault::ss(u32::from(st.seg.selector & 0xFFFC)));
            }
            st.seg.base.wrapping_add(sp) & 0xFFFF_FFFF
        };
        self.write_sys(bus, lin, size, v)?;
        st.sp = sp;
        Ok(())
    }

    /// The stack for privilege level `dpl` from the current TSS: (SS selector, stack pointer).
    fn tss_stack(&mut self, bus: &mut dyn Bus, dpl: u8) -> Result<(u16, u64), Fault> {
        let tr = self.s.tr;
        let ts = Fault::ts(u32::from(tr.selector & 0xFFFC));
        if self.long_mode() {
            let off = 4 + 8 * u64::from(dpl);
            if off + 7 > u64::from(tr.limit) {
                return Err(ts);
            }
            let rsp = self.read_sys(bus, tr.base.wrapping_add(off), 8)?;
            return Ok((u16::from(dpl), rsp));
        }
        let is32 = matches!((tr.attr & 0xF) as u8, 9 | 11);
        let (sp_off, ss_off, width) = if is32 {
            (4 + 8 * u64::from(dpl), 8 + 8 * u64::from(dpl), 4)
        } else {
            (2 + 4 * u64::from(dpl), 4 + 4 * u64::from(dpl), 2)
        };
        if ss_off + 1 > u64::from(tr.limit) {
            return Err(ts);
        }
        let sp = self.read_sys(bus, tr.base.wrapping_add(sp_off), width)?;
        let ss = self.read_sys(bus, tr.base.wrapping_add(ss_off), 2)? as u16;
        Ok((ss, sp))
    }

    /// Checks a stack segment for privilege level `dpl` (inner calls, interrupts, outer
    /// returns). Errors are #TS for a new inner stack, #GP for a return.
    fn stack_segment(&mut self, bus: &mut dyn Bus, sel: u16, dpl: u8, for_return: bool) -> Result<(u64, Descriptor), Fault> {
        let err = u32::from(sel & 0xFFFC);
        let bad = if for_return { Fault::gp(err) } else { Fault::ts(err) };
        if sel & 0xFFFC == 0 {
            return Err(bad);
        }
        let (addr, d) = self.read_descriptor(bus, sel).map_err(|_| bad)?;
        if (sel & 3) as u8 != dpl || !d.is_data() || d.attr() & attr::RW == 0 || d.dpl() != dpl {
            return Err(bad);
        }
        if !d.present() {
            return Err(Fault::ss(err));
        }
        Ok((addr, d))
    }

    /// Installs a new CS (privilege level `cpl`) and RIP.
    fn set_cs(&mut self, sel: u16, d: Descriptor, cpl: u8, rip: u64) {
        let mut seg = d.segment((sel & !3) | u16::from(cpl));
        seg.attr |= attr::ACCESSED;
        self.s.seg[sreg::CS] = seg;
        self.update_mode();
        self.s.rip = rip;
    }

    /// Checks a code segment as the target of a far transfer at privilege `cpl`. Returns the
    /// descriptor's address and the descriptor.
    fn code_target(&mut self, bus: &mut dyn Bus, sel: u16) -> Result<(u64, Descriptor), Fault> {
        let err = u32::from(sel & 0xFFFC);
        if sel & 0xFFFC == 0 {
            return Err(Fault::gp(0));
        }
        let (addr, d) = self.read_descriptor(bus, sel)?;
        if !d.is_code() {
            return Err(Fault::gp(err));
        }
        Ok((addr, d))
    }

    /// Far JMP or CALL in protected or long mode.
    pub(crate) fn far_transfer_pm(&mut self, bus: &mut dyn Bus, kind: Far, sel: u16, off: u64, osz: u8) -> Result<(), Fault> {
        let cpl = self.cpl();
        let err = u32::from(sel & 0xFFFC);
        if sel & 0xFFFC == 0 {
            return Err(Fault::gp(0));
        }
        let (addr, d) = self.read_descriptor(bus, sel)?;
        if d.is_segment() {
            if !d.is_code() {
                return Err(Fault::gp(err));
            }
            let rpl = (sel & 3) as u8;
            if d.conforming() {
                if d.dpl() > cpl {
                    return Err(Fault::gp(err));
                }
            } else if rpl > cpl || d.dpl() != cpl {
                return Err(Fault::gp(err));
            }
            if !d.present() {
                return Err(Fault::np(err));
            }
            let target = mask(off, osz);
            self.check_code_offset(d, target)?;
            if kind == Far::Call {
                self.push_far_return(bus, osz)?;
            }
            self.set_accessed(bus, addr, d)?;
            self.set_cs(sel, d, cpl, target);
            return Ok(());
        }
        match d.system_type() {
            CALL_GATE16 | CALL_GATE32 => self.through_call_gate(bus, kind, sel, addr, d),
            TSS16_AVAIL | TSS32_AVAIL if !self.long_mode() => {
                if d.dpl() < cpl || d.dpl() < (sel & 3) as u8 {
                    return Err(Fault::gp(err));
                }
                if !d.present() {
                    return Err(Fault::np(err));
                }
                let how = if kind == Far::Call { TaskSwitch::Call } else { TaskSwitch::Jmp };
                self.task_switch(bus, sel, how)
            }
            TASK_GATE if !self.long_mode() => {
                if d.dpl() < cpl || d.dpl() < (sel & 3) as u8 {
                    return Err(Fault::gp(err));
                }
                if !d.present() {
                    return Err(Fault::np(err));
                }
                let how = if kind == Far::Call { TaskSwitch::Call } else { TaskSwitch::Jmp };
                self.task_switch(bus, (d.0 >> 16) as u16, how)
            }
            _ => Err(Fault::gp(err)),
        }
    }

    fn check_code_offset(&self, d: Descriptor, target: u64) -> Result<(), Fault> {
        let long_target = self.long_mode() && d.attr() & attr::L != 0;
        if long_target {
            if !canonical(target) {
                return Err(Fault::gp(0));
            }
        } else if target > u64::from(d.limit()) {
            return Err(Fault::gp(0));
        }
        Ok(())
    }

    /// Pushes CS and the return RIP for a far CALL on the current stack; on a fault SP is
    /// left as it was.
    fn push_far_return(&mut self, bus: &mut dyn Bus, osz: u8) -> Result<(), Fault> {
        let old_sp = self.s.gpr[reg::RSP];
        let cs = u64::from(self.s.seg[sreg::CS].selector);
        let ret = self.s.rip;
        let r = self.push(bus, osz, cs).and_then(|_| self.push(bus, osz, ret));
        if r.is_err() {
            self.s.gpr[reg::RSP] = old_sp;
        }
        r
    }

    fn through_call_gate(&mut self, bus: &mut dyn Bus, kind: Far, gate_sel: u16, gate_addr: u64, gate: Descriptor) -> Result<(), Fault> {
        let cpl = self.cpl();
        let gerr = u32::from(gate_sel & 0xFFFC);
        if gate.dpl() < cpl || (gate_sel & 3) as u8 > gate.dpl() {
            return Err(Fault::gp(gerr));
        }
        if !gate.present() {
            return Err(Fault::np(gerr));
        }
        let raw = gate.0;
        let long = self.long_mode();
        let target_sel = (raw >> 16) as u16;
        let mut target = (raw & 0xFFFF) | if gate.system_type() == CALL_GATE16 { 0 } else { (raw >> 32) & 0xFFFF_0000 };
        if long {
            // 64-bit call gates are 16 bytes: the upper half holds offset bits 63..32.
            let hi = self.read_sys(bus, gate_addr + 8, 8)?;
            target |= (hi & 0xFFFF_FFFF) << 32;
        }
        let gate_size: u8 = if long {
            8
        } else if gate.system_type() == CALL_GATE32 {
            4
        } else {
            2
        };
        let (addr, d) = self.code_target(bus, target_sel)?;
        let terr = u32::from(target_sel & 0xFFFC);
        if d.dpl() > cpl || (kind == Far::Jmp && !d.conforming() && d.dpl() != cpl) {
            return Err(Fault::gp(terr));
        }
        if long && (d.attr() & attr::L == 0 || d.attr() & attr::DB != 0) {
            return Err(Fault::gp(terr));
        }
        if !d.present() {
            return Err(Fault::np(terr));
        }
        self.check_code_offset(d, target)?;
        if kind == Far::Jmp || d.conforming() || d.dpl() == cpl {
            if kind == Far::Call {
                self.push_far_return(bus, gate_size)?;
            }
            self.set_accessed(bus, addr, d)?;
            self.set_cs(target_sel, d, cpl, target);
            return Ok(());
        }
        // A call to an inner privilege level: switch to that level's stack from the TSS,
        // copy the parameters, push the caller's SS:SP and CS:IP there.
        let new_cpl = d.dpl();
        let (ss_sel, sp) = self.tss_stack(bus, new_cpl)?;
        let old_ss = self.s.seg[sreg::SS];
        let old_sp = self.s.gpr[reg::RSP];
        let mut st = if long {
            NewStack { seg: Segment { selector: u16::from(new_cpl), base: 0, limit: 0, attr: u16::from(new_cpl) << 5 }, sp: sp & !0xF, width: 8, long: true }
        } else {
            let (_, sd) = self.stack_segment(bus, ss_sel, new_cpl, false)?;
            let width = if sd.attr() & attr::DB != 0 { 4 } else { 2 };
            NewStack { seg: sd.segment(ss_sel), sp: mask(sp, width), width, long: false }
        };
        self.push_new(bus, &mut st, gate_size, u64::from(old_ss.selector))?;
        self.push_new(bus, &mut st, gate_size, old_sp)?;
        if !long {
            let count = (raw >> 32) & 0x1F;
            let old_width = self.stack_width();
            for k in (0..count).rev() {
                let off = mask(old_sp.wrapping_add(k * u64::from(gate_size)), old_width);
                let v = self.read_seg(bus, sreg::SS, off, gate_size)?;
                self.push_new(bus, &mut st, gate_size, v)?;
            }
        }
        self.push_new(bus, &mut st, gate_size, u64::from(self.s.seg[sreg::CS].selector))?;
        self.push_new(bus, &mut st, gate_size, self.s.rip)?;
        self.set_accessed(bus, addr, d)?;
        self.s.seg[sreg::SS] = st.seg;
        self.set_reg(reg::RSP as u8, st.width, st.sp);
        self.set_cs(target_sel, d, new_cpl, target);
        Ok(())
    }

    /// Far RET (with `extra` bytes of parameters to drop) in protected or long mode.
    pub(crate) fn far_return_pm(&mut self, bus: &mut dyn Bus, osz: u8, extra: u64) -> Result<(), Fault> {
        let n = u64::from(osz);
        let rip = self.peek(bus, 0, osz)?;
        let sel = self.peek(bus, n, osz)? as u16;
        self.return_to(bus, sel, rip, osz, 2 * n, extra, None)
    }

    /// The common part of RETF and IRET: checks the code selector being returned to, and
    /// for a return to an outer level pops SS:SP too. `popped` bytes have been read so far;
    /// `flags` is IRET's flags image, applied once everything checked out.
    #[allow(clippy::too_many_arguments)]
    fn return_to(
        &mut self,
        bus: &mut dyn Bus,
        sel: u16,
        rip: u64,
        osz: u8,
        popped: u64,
        extra: u64,
        flags: Option<u64>,
    ) -> Result<(), Fault> {
        let cpl = self.cpl();
        let rpl = (sel & 3) as u8;
        let err = u32::from(sel & 0xFFFC);
        let (addr, d) = self.code_target(bus, sel)?;
        if rpl < cpl {
            return Err(Fault::gp(err));
        }
        if d.conforming() {
            if d.dpl() > rpl {
                return Err(Fault::gp(err));
            }
        } else if d.dpl() != rpl {
            return Err(Fault::gp(err));
        }
        if !d.present() {
            return Err(Fault::np(err));
        }
        let n = u64::from(osz);
        let to64 = self.long_mode() && d.attr() & attr::L != 0;
        let rip = if to64 { rip } else { mask(rip, osz.min(4)) };
        self.check_code_offset(d, rip)?;
        // In 64-bit mode IRET always pops SS:RSP; otherwise only a return to an outer level.
        let pops_stack = rpl > cpl || (flags.is_some() && self.bits == 64);
        if !pops_stack {
            self.set_accessed(bus, addr, d)?;
            let sp = self.sp().wrapping_add(popped).wrapping_add(extra);
            self.set_cs(sel, d, cpl, rip);
            self.set_sp(sp);
            if let Some(f) = flags {
                self.iret_flags(f, osz, cpl);
            }
            return Ok(());
        }
        let new_sp = self.peek(bus, popped + extra, osz)?;
        let ss_sel = self.peek(bus, popped + extra + n, osz)? as u16;
        let ss = if ss_sel & 0xFFFC == 0 && to64 && rpl < 3 {
            Segment { selector: ss_sel, base: 0, limit: 0, attr: u16::from(rpl) << 5 }
        } else {
            let (ss_addr, sd) = self.stack_segment(bus, ss_sel, rpl, true)?;
            self.set_accessed(bus, ss_addr, sd)?;
            sd.segment(ss_sel)
        };
        self.set_accessed(bus, addr, d)?;
        if let Some(f) = flags {
            self.iret_flags(f, osz, cpl);
        }
        self.set_cs(sel, d, rpl, rip);
        self.s.seg[sreg::SS] = ss;
        self.refresh_seg(sreg::SS);
        let width = if self.bits == 64 { 8 } else if ss.attr & attr::DB != 0 { 4 } else { 2 };
        self.set_reg(reg::RSP as u8, width, new_sp.wrapping_add(if rpl > cpl { extra } else { 0 }));
        if rpl > cpl {
            // Data segments the outer level may not use become null.
            for s in [sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
                let a = self.s.seg[s].attr;
                let dpl = ((a >> 5) & 3) as u8;
                let data_or_nonconf = a & attr::CODE == 0 || a & attr::DC == 0;
                if a & attr::P != 0 && data_or_nonconf && dpl < rpl {
                    self.s.seg[s].selector = 0;
                    self.s.seg[s].attr = 0;
                    self.refresh_seg(s);
                }
            }
        }
        Ok(())
    }

    /// Applies the flags image of an IRET at the old `cpl`.
    fn iret_flags(&mut self, f: u64, osz: u8, cpl: u8) {
        self.rf_loaded = true;
        let mut m = flags::CF | flags::PF | flags::AF | flags::ZF | flags::SF | flags::TF | flags::DF | flags::OF | flags::NT;
        if osz >= 4 {
            m |= flags::AC | flags::ID | flags::RF;
            if cpl == 0 {
                m |= flags::VIF | flags::VIP;
            }
        }
        if cpl <= self.iopl() {
            m |= flags::IF;
        }
        if cpl == 0 {
            m |= flags::IOPL;
        }
        let m = if osz == 2 { m & 0xFFFF } else { m };
        self.write_flags(f, m);
    }

    /// IRET in protected or long mode (not virtual-8086 mode).
    pub(crate) fn iret_pm(&mut self, bus: &mut dyn Bus, osz: u8) -> Result<(), Fault> {
        if self.s.rflags & flags::NT != 0 && !self.long_mode() {
            // Return to the task named by the back link of the current TSS.
            let link = self.read_sys(bus, self.s.tr.base, 2)? as u16;
            return self.task_switch(bus, link, TaskSwitch::Iret);
        }
        let n = u64::from(osz);
        let rip = self.peek(bus, 0, osz)?;
        let sel = self.peek(bus, n, osz)? as u16;
        let f = self.peek(bus, 2 * n, osz)?;
        if osz == 4 && f & flags::VM != 0 && self.cpl() == 0 && !self.long_mode() {
            return self.iret_to_vm86(bus, rip, sel, f);
        }
        self.return_to(bus, sel, rip, osz, 3 * n, 0, Some(f))
    }

    /// IRET from ring 0 back to virtual-8086 mode: the frame also holds ESP, SS, ES, DS, FS, GS.
    fn iret_to_vm86(&mut self, bus: &mut dyn Bus, eip: u64, cs: u16, f: u64) -> Result<(), Fault> {
        let mut v = [0u64; 6];
        for (k, slot) in v.iter_mut().enumerate() {
            *slot = self.peek(bus, 12 + 4 * k as u64, 4)?;
        }
        self.set_rflags((f & 0x003F_7FD5) | flags::FIXED1 | flags::VM);
        let vseg = |sel: u64| {
            let sel = sel as u16;
            Segment { selector: sel, base: u64::from(sel) << 4, limit: 0xFFFF, attr: 0xF3 }
        };
        self.s.seg[sreg::CS] = Segment { attr: 0xFB, ..vseg(u64::from(cs)) };
        self.s.seg[sreg::SS] = vseg(v[1]);
        self.s.seg[sreg::ES] = vseg(v[2]);
        self.s.seg[sreg::DS] = vseg(v[3]);
        self.s.seg[sreg::FS] = vseg(v[4]);
        self.s.seg[sreg::GS] = vseg(v[5]);
        self.s.gpr[reg::RSP] = v[0] & 0xFFFF_FFFF;
        self.s.rip = eip & 0xFFFF;
        self.update_mode();
        self.stop_block();
        Ok(())
    }

    /// IRET in virtual-8086 mode: allowed at IOPL 3, where it works as in real mode but
    /// cannot change IOPL; otherwise #GP for the monitor.
    pub(crate) fn iret_vm86(&mut self, bus: &mut dyn Bus, osz: u8) -> Result<(), Fault> {
        if self.iopl() < 3 {
            return Err(Fault::gp(0));
        }
        let n = u64::from(osz);
        let ip = self.peek(bus, 0, osz)?;
        let cs = self.peek(bus, n, 2)? as u16;
        let f = self.peek(bus, 2 * n, osz)?;
        if ip > 0xFFFF {
            return Err(Fault::gp(0));
        }
        self.s.seg[sreg::CS] = Segment { selector: cs, base: u64::from(cs) << 4, limit: 0xFFFF, attr: 0xFB };
        self.update_mode();
        self.s.rip = ip;
        let sp = self.sp().wrapping_add(3 * n);
        self.set_sp(sp);
        let m = if osz == 2 { 0x4DD5 | flags::IF } else { 0x4DD5 | flags::IF | flags::AC | flags::ID | flags::RF };
        self.write_flags(f, m);
        Ok(())
    }

    // ---- interrupt and exception delivery -------------------------------------------------

    /// Reads and checks an IDT gate. Returns (gate low quadword, high quadword in long mode).
    fn idt_gate(&mut self, bus: &mut dyn Bus, vector: u8, source: Source, long: bool) -> Result<(u64, u64), Fault> {
        // EXT: the event being delivered came from outside the program (an interrupt or an
        // earlier exception), not from INT n.
        let ext = u32::from(source != Source::Soft);
        let entry = u64::from(vector) * if long { 16 } else { 8 };
        let idt_err = (u32::from(vector) << 3) | 2 | ext;
        if entry + if long { 15 } else { 7 } > u64::from(self.s.idtr.limit) {
            return Err(Fault::gp(idt_err));
        }
        let lo = self.read_sys(bus, self.s.idtr.base.wrapping_add(entry), 8)?;
        let hi = if long { self.read_sys(bus, self.s.idtr.base.wrapping_add(entry + 8), 8)? } else { 0 };
        let g = Descriptor(lo);
        let ok_type = match g.system_type() {
            INT_GATE32 | TRAP_GATE32 => !g.is_segment(),
            INT_GATE16 | TRAP_GATE16 | TASK_GATE => !g.is_segment() && !long,
            _ => false,
        };
        if !ok_type {
            return Err(Fault::gp(idt_err));
        }
        if source == Source::Soft && g.dpl() < self.cpl() {
            return Err(Fault::gp(idt_err));
        }
        if !g.present() {
            return Err(Fault::np(idt_err));
        }
        Ok((lo, hi))
    }

    /// Protected-mode (not long-mode) delivery through an interrupt or trap gate.
    pub(crate) fn deliver_protected(&mut self, bus: &mut dyn Bus, vector: u8, source: Source) -> Result<(), Fault> {
        let (raw, _) = self.idt_gate(bus, vector, source, false)?;
        let g = Descriptor(raw);
        if g.system_type() == TASK_GATE {
            let error = match source {
                Source::Exception(e) => e,
                _ => None,
            };
            return self.task_switch(bus, (raw >> 16) as u16, TaskSwitch::Int(error));
        }
        // EXT: the event being delivered came from outside the program (an interrupt or an
        // earlier exception), not from INT n.
        let ext = u32::from(source != Source::Soft);
        let is32 = g.system_type() >= INT_GATE32;
        let trap = g.system_type() & 1 == 1;
        let size: u8 = if is32 { 4 } else { 2 };
        let target_sel = (raw >> 16) as u16;
        let target = (raw & 0xFFFF) | if is32 { (raw >> 32) & 0xFFFF_0000 } else { 0 };
        let terr = u32::from(target_sel & 0xFFFC) | ext;
        if target_sel & 0xFFFC == 0 {
            return Err(Fault::gp(ext));
        }
        let (addr, d) = self.read_descriptor(bus, target_sel)?;
        let cpl = self.cpl();
        if !d.is_code() || d.dpl() > cpl {
            return Err(Fault::gp(terr));
        }
        if !d.present() {
            return Err(Fault::np(terr));
        }
        let vm = self.vm86();
        let new_cpl = if !d.conforming() && d.dpl() < cpl { d.dpl() } else { cpl };
        if vm && new_cpl != 0 {
            return Err(Fault::gp(terr));
        }
        if target > u64::from(d.limit()) {
            return Err(Fault::gp(ext));
        }
        let error = match source {
            Source::Exception(e) => e,
            _ => None,
        };
        let fl = self.rflags();
        let (old_cs, old_ip) = (u64::from(self.s.seg[sreg::CS].selector), self.s.rip);
        if new_cpl < cpl {
            let (ss_sel, sp) = self.tss_stack(bus, new_cpl)?;
            let (ss_addr, sd) = self.stack_segment(bus, ss_sel, new_cpl, false)?;
            let width = if sd.attr() & attr::DB != 0 { 4 } else { 2 };
            let mut st = NewStack { seg: sd.segment(ss_sel), sp: mask(sp, width), width, long: false };
            if vm {
                for s in [sreg::GS, sreg::FS, sreg::DS, sreg::ES] {
                    self.push_new(bus, &mut st, size, u64::from(self.s.seg[s].selector))?;
                }
            }
            self.push_new(bus, &mut st, size, u64::from(self.s.seg[sreg::SS].selector))?;
            self.push_new(bus, &mut st, size, self.s.gpr[reg::RSP])?;
            self.push_new(bus, &mut st, size, fl)?;
            self.push_new(bus, &mut st, size, old_cs)?;
            self.push_new(bus, &mut st, size, old_ip)?;
            if let Some(e) = error {
                self.push_new(bus, &mut st, size, u64::from(e))?;
            }
            self.set_accessed(bus, ss_addr, sd)?;
            self.set_accessed(bus, addr, d)?;
            if vm {
                for s in [sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
                    self.s.seg[s] = Segment { selector: 0, base: 0, limit: 0, attr: 0 };
                }
            }
            self.s.seg[sreg::SS] = st.seg;
            self.set_reg(reg::RSP as u8, st.width, st.sp);
        } else {
            let old_sp = self.s.gpr[reg::RSP];
            let r = (|| {
                self.push(bus, size, fl)?;
                self.push(bus, size, old_cs)?;
                self.push(bus, size, old_ip)?;
                if let Some(e) = error {
                    self.push(bus, size, u64::from(e))?;
                }
                Ok(())
            })();
            if let Err(f) = r {
                self.s.gpr[reg::RSP] = old_sp;
                return Err(f);
            }
            self.set_accessed(bus, addr, d)?;
        }
        self.materialize_flags();
        self.s.rflags &= !(flags::TF | flags::NT | flags::RF | flags::VM);
        if !trap {
            self.s.rflags &= !flags::IF;
        }
        self.set_cs(target_sel, d, new_cpl, target);
        self.refresh_all_segs();
        self.s.halted = false;
        Ok(())
    }

    /// Long-mode delivery through a 16-byte gate: always pushes SS:RSP, may switch to an IST
    /// stack, aligns the new stack to 16 bytes.
    pub(crate) fn deliver_long(&mut self, bus: &mut dyn Bus, vector: u8, source: Source) -> Result<(), Fault> {
        let (lo, hi) = self.idt_gate(bus, vector, source, true)?;
        let g = Descriptor(lo);
        // EXT: the event being delivered came from outside the program (an interrupt or an
        // earlier exception), not from INT n.
        let ext = u32::from(source != Source::Soft);
        let trap = g.system_type() & 1 == 1;
        let target_sel = (lo >> 16) as u16;
        let target = (lo & 0xFFFF) | ((lo >> 32) & 0xFFFF_0000) | ((hi & 0xFFFF_FFFF) << 32);
        let ist = (lo >> 32) & 7;
        let terr = u32::from(target_sel & 0xFFFC) | ext;
        if target_sel & 0xFFFC == 0 {
            return Err(Fault::gp(ext));
        }
        let (addr, d) = self.read_descriptor(bus, target_sel)?;
        let cpl = self.cpl();
        if !d.is_code() || d.dpl() > cpl || d.attr() & attr::L == 0 || d.attr() & attr::DB != 0 {
            return Err(Fault::gp(terr));
        }
        if !d.present() {
            return Err(Fault::np(terr));
        }
        if !canonical(target) {
            return Err(Fault::gp(ext));
        }
        let new_cpl = if !d.conforming() && d.dpl() < cpl { d.dpl() } else { cpl };
        let sp = if ist != 0 {
            let off = 0x24 + 8 * (ist - 1);
            if off + 7 > u64::from(self.s.tr.limit) {
                return Err(Fault::ts(u32::from(self.s.tr.selector & 0xFFFC)));
            }
            self.read_sys(bus, self.s.tr.base.wrapping_add(off), 8)?
        } else if new_cpl < cpl {
            self.tss_stack(bus, new_cpl)?.1
        } else {
            self.s.gpr[reg::RSP]
        };
        let error = match source {
            Source::Exception(e) => e,
            _ => None,
        };
        let new_ss = if new_cpl < cpl {
            Segment { selector: u16::from(new_cpl), base: 0, limit: 0, attr: u16::from(new_cpl) << 5 }
        } else {
            self.s.seg[sreg::SS]
        };
        let mut st = NewStack { seg: new_ss, sp: sp & !0xF, width: 8, long: true };
        let fl = self.rflags();
        self.push_new(bus, &mut st, 8, u64::from(self.s.seg[sreg::SS].selector))?;
        self.push_new(bus, &mut st, 8, self.s.gpr[reg::RSP])?;
        self.push_new(bus, &mut st, 8, fl)?;
        self.push_new(bus, &mut st, 8, u64::from(self.s.seg[sreg::CS].selector))?;
        self.push_new(bus, &mut st, 8, self.s.rip)?;
        if let Some(e) = error {
            self.push_new(bus, &mut st, 8, u64::from(e))?;
        }
        self.set_accessed(bus, addr, d)?;
        self.s.seg[sreg::SS] = st.seg;
        self.s.gpr[reg::RSP] = st.sp;
        self.materialize_flags();
        self.s.rflags &= !(flags::TF | flags::NT | flags::RF);
        if !trap {
            self.s.rflags &= !flags::IF;
        }
        self.set_cs(target_sel, d, new_cpl, target);
        self.s.halted = false;
        Ok(())
    }
}
