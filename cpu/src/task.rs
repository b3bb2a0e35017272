//! Hardware task switching (Intel SDM vol. 3, chapter 7): JMP or CALL to a TSS or task gate,
//! an interrupt or exception through a task gate, and IRET with NT set. 16-bit and 32-bit
//! TSS formats. (Long mode has no task switching: the callers never get here in IA-32e mode.)

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::fault::Fault;
use crate::seg::{attr, Descriptor};
use crate::state::{flags, sreg, Segment};

/// What started the switch: decides the busy bits, the back link and NT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskSwitch {
    Jmp,
    Call,
    /// An interrupt or exception through a task gate (with the error code to push, if any).
    Int(Option<u32>),
    Iret,
}

const BUSY: u64 = 2 << 40;

impl Cpu {
    /// Switches to the task whose TSS descriptor is `sel`. The caller has checked the gate
    /// (if any) and the privilege rules of the instruction.
    pub(crate) fn task_switch(&mut self, bus: &mut dyn Bus, sel: u16, how: TaskSwitch) -> Result<(), Fault> {
        let err = u32::from(sel & 0xFFFC);
        if sel & 4 != 0 {
            return Err(Fault::gp(err));
        }
        let (naddr, nd) = self.read_descriptor(bus, sel)?;
        let ntype = nd.system_type();
        let busy_ok = how == TaskSwitch::Iret;
        let valid = !nd.is_segment()
            && match ntype {
                1 | 9 => !busy_ok,
                3 | 11 => busy_ok,
                _ => false,
            };
        if !valid {
            return Err(if how == TaskSwitch::Iret { Fault::ts(err) } else { Fault::gp(err) });
        }
        if !nd.present() {
            return Err(Fault::np(err));
        }
        let new32 = ntype >= 9;
        if nd.limit() < if new32 { 0x67 } else { 0x2B } {
            return Err(Fault::ts(err));
        }
        let nbase = nd.base();

        // Save the outgoing task's dynamic state.
        let old = self.s.tr;
        let old32 = matches!(old.attr & 0xF, 9 | 11);
        let mut fl = self.rflags();
        if how == TaskSwitch::Iret {
            fl &= !flags::NT;
        }
        let ob = old.base;
        if old32 {
            self.write_sys(bus, ob + 0x20, 4, self.s.rip)?;
            self.write_sys(bus, ob + 0x24, 4, fl)?;
            for k in 0..8 {
                self.write_sys(bus, ob + 0x28 + 4 * k as u64, 4, self.s.gpr[k])?;
            }
            for k in 0..6 {
                self.write_sys(bus, ob + 0x48 + 4 * k as u64, 2, u64::from(self.s.seg[k].selector))?;
            }
        } else {
            self.write_sys(bus, ob + 0x0E, 2, self.s.rip)?;
            self.write_sys(bus, ob + 0x10, 2, fl)?;
            for k in 0..8 {
                self.write_sys(bus, ob + 0x12 + 2 * k as u64, 2, self.s.gpr[k])?;
            }
            for k in 0..4 {
                self.write_sys(bus, ob + 0x22 + 2 * k as u64, 2, u64::from(self.s.seg[k].selector))?;
            }
        }
        if matches!(how, TaskSwitch::Jmp | TaskSwitch::Iret) {
            if let Ok(oaddr) = self.descriptor_address(old.selector) {
                let d = self.read_sys(bus, oaddr, 8)?;
                self.write_sys(bus, oaddr, 8, d & !BUSY)?;
            }
        }

        // Read the incoming task's state before changing anything else.
        let rd = |c: &mut Cpu, bus: &mut dyn Bus, off: u64, n: u8| c.read_sys(bus, nbase + off, n);
        let (neip, nfl, ngpr, nsel, nldt, ncr3);
        if new32 {
            ncr3 = Some(rd(self, bus, 0x1C, 4)?);
            neip = rd(self, bus, 0x20, 4)?;
            nfl = rd(self, bus, 0x24, 4)?;
            let mut g = [0u64; 8];
            for (k, v) in g.iter_mut().enumerate() {
                *v = rd(self, bus, 0x28 + 4 * k as u64, 4)?;
            }
            ngpr = g;
            let mut s = [0u16; 6];
            for (k, v) in s.iter_mut().enumerate() {
                *v = rd(self, bus, 0x48 + 4 * k as u64, 2)? as u16;
            }
            nsel = s;
            nldt = rd(self, bus, 0x60, 2)? as u16;
        } else {
            ncr3 = None;
            neip = rd(self, bus, 0x0E, 2)?;
            nfl = rd(self, bus, 0x10, 2)? | (self.s.rflags & 0xFFFF_0000 & !flags::VM);
            let mut g = self.s.gpr;
            for (k, v) in g.iter_mut().take(8).enumerate() {
                *v = (*v & !0xFFFF) | rd(self, bus, 0x12 + 2 * k as u64, 2)?;
            }
            ngpr = g[..8].try_into().unwrap();
            let mut s = [0u16; 6];
            for (k, v) in s.iter_mut().take(4).enumerate() {
                *v = rd(self, bus, 0x22 + 2 * k as u64, 2)? as u16;
            }
            nsel = s;
            nldt = rd(self, bus, 0x2A, 2)? as u16;
        }
        if matches!(how, TaskSwitch::Call | TaskSwitch::Int(_)) {
            self.write_sys(bus, nbase, 2, u64::from(old.selector))?;
        }
        if how != TaskSwitch::Iret {
            let d = self.read_sys(bus, naddr, 8)?;
            self.write_sys(bus, naddr, 8, d | BUSY)?;
        }

        // From here on the switch has happened: faults belong to the new task.
        self.s.tr = Descriptor(nd.0 | BUSY).segment(sel);
        self.s.tr.attr |= 2;
        self.s.cr0 |= 8; // TS
        if let (Some(cr3), true) = (ncr3, self.paging()) {
            self.write_cr3(bus, cr3)?;
        }
        self.s.rip = neip;
        for (k, v) in ngpr.iter().enumerate() {
            self.s.gpr[k] = *v;
        }
        self.set_rflags((nfl & 0x003F_7FD5) | flags::FIXED1);
        if matches!(how, TaskSwitch::Call | TaskSwitch::Int(_)) {
            self.s.rflags |= flags::NT;
        }
        // Selectors first (so a fault reports them), then descriptors with full checks.
        for (k, &s) in nsel.iter().enumerate() {
            self.s.seg[k].selector = s;
        }
        self.s.ldtr.selector = nldt;
        self.stop_block();
        self.load_task_segments(bus, nsel, nldt)?;
        if let TaskSwitch::Int(Some(code)) = how {
            let size = if new32 { 4 } else { 2 };
            self.push(bus, size, u64::from(code))?;
        }
        Ok(())
    }

    /// Loads LDTR and the segment registers of a task just switched to; errors are #TS.
    fn load_task_segments(&mut self, bus: &mut dyn Bus, sel: [u16; 6], ldt: u16) -> Result<(), Fault> {
        let ts = |s: u16| Fault::ts(u32::from(s & 0xFFFC));
        if ldt & 0xFFFC == 0 {
            self.s.ldtr = Segment { selector: ldt, base: 0, limit: 0, attr: 0 };
        } else {
            if ldt & 4 != 0 {
                return Err(ts(ldt));
            }
            let (_, d) = self.read_descriptor(bus, ldt).map_err(|_| ts(ldt))?;
            if d.is_segment() || d.system_type() != 2 {
                return Err(ts(ldt));
            }
            if !d.present() {
                return Err(Fault::np(u32::from(ldt & 0xFFFC)));
            }
            self.s.ldtr = d.segment(ldt);
        }
        if self.s.rflags & flags::VM != 0 {
            for (k, &s) in sel.iter().enumerate() {
                let a = if k == sreg::CS { 0xFB } else { 0xF3 };
                self.s.seg[k] = Segment { selector: s, base: u64::from(s) << 4, limit: 0xFFFF, attr: a };
            }
            self.update_mode();
            return Ok(());
        }
        // CS decides the new CPL.
        let cs = sel[sreg::CS];
        let cpl = (cs & 3) as u8;
        if cs & 0xFFFC == 0 {
            return Err(ts(cs));
        }
        let (caddr, cd) = self.read_descriptor(bus, cs).map_err(|_| ts(cs))?;
        let ok = cd.is_code() && if cd.conforming() { cd.dpl() <= cpl } else { cd.dpl() == cpl };
        if !ok {
            return Err(ts(cs));
        }
        if !cd.present() {
            return Err(Fault::np(u32::from(cs & 0xFFFC)));
        }
        // SS at the new CPL.
        let ss = sel[sreg::SS];
        if ss & 0xFFFC == 0 || (ss & 3) as u8 != cpl {
            return Err(ts(ss));
        }
        let (saddr, sd) = self.read_descriptor(bus, ss).map_err(|_| ts(ss))?;
        if !sd.is_data() || sd.attr() & attr::RW == 0 || sd.dpl() != cpl {
            return Err(ts(ss));
        }
        if !sd.present() {
            return Err(Fault::ss(u32::from(ss & 0xFFFC)));
        }
        self.set_accessed(bus, caddr, cd)?;
        self.set_accessed(bus, saddr, sd)?;
        self.s.seg[sreg::SS] = sd.segment(ss);
        self.s.seg[sreg::CS] = cd.segment(cs);
        self.update_mode();
        for s in [sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
            let v = sel[s];
            // A data segment the new task may not use is a #TS, not a null load.
            self.load_seg(bus, s, v).map_err(|f| match f {
                Fault::Exception { vector: crate::fault::vec::GP, .. } => ts(v),
                other => other,
            })?;
        }
        Ok(())
    }
}
