//! Port I/O: IN and OUT with an immediate port or DX. (String I/O is in `string.rs`.)

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::Insn;
use crate::fault::Fault;
use crate::state::reg;

const RAX: u8 = reg::RAX as u8;

impl Cpu {
    /// Port access permission: free in real mode and at CPL <= IOPL; otherwise (and always
    /// in virtual-8086 mode) the TSS I/O permission bitmap decides.
    #[inline(always)]
    pub(crate) fn check_io(&mut self, bus: &mut dyn Bus, port: u16, size: u8) -> Result<(), Fault> {
        if self.bp.io != 0 {
            self.check_io_bp(port, size);
        }
        if !self.protected() || (!self.vm86() && self.cpl() <= self.iopl()) {
            return Ok(());
        }
        self.check_io_bitmap(bus, port, size)
    }

    #[cold]
    fn check_io_bitmap(&mut self, bus: &mut dyn Bus, port: u16, size: u8) -> Result<(), Fault> {
        let tr = self.s.tr;
        let is32 = matches!(tr.attr & 0xF, 9 | 11);
        if !is32 || tr.limit < 0x67 {
            return Err(Fault::gp(0));
        }
        let map = self.read_sys(bus, tr.base.wrapping_add(0x66), 2)?;
        let byte = map + u64::from(port / 8);
        if byte + 1 > u64::from(tr.limit) {
            return Err(Fault::gp(0));
        }
        let bits = self.read_sys(bus, tr.base.wrapping_add(byte), 2)?;
        let want = ((1u64 << size) - 1) << (port % 8);
        if bits & want != 0 {
            return Err(Fault::gp(0));
        }
        Ok(())
    }

    pub(crate) fn port_in(&mut self, bus: &mut dyn Bus, port: u16, size: u8) -> Result<u64, Fault> {
        self.check_io(bus, port, size)?;
        bus.sync_time(self.run_retired);
        let v = u64::from(bus.io_read(port, size));
        if bus.wants_stop() {
            self.stop_for_bus();
        }
        Ok(v)
    }

    pub(crate) fn port_out(&mut self, bus: &mut dyn Bus, port: u16, size: u8, v: u64) -> Result<(), Fault> {
        self.check_io(bus, port, size)?;
        bus.sync_time(self.run_retired);
        bus.io_write(port, size, v as u32);
        if bus.wants_stop() {
            self.stop_for_bus();
        }
        Ok(())
    }
}

pub(crate) fn in_imm(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = cpu.port_in(bus, i.imm as u8 as u16, i.osz)?;
    cpu.set_reg(RAX, i.osz, v);
    Ok(())
}

pub(crate) fn in_dx(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let port = cpu.reg(reg::RDX as u8, 2) as u16;
    let v = cpu.port_in(bus, port, i.osz)?;
    cpu.set_reg(RAX, i.osz, v);
    Ok(())
}

pub(crate) fn out_imm(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = cpu.reg(RAX, i.osz);
    cpu.port_out(bus, i.imm as u8 as u16, i.osz, v)
}

pub(crate) fn out_dx(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let port = cpu.reg(reg::RDX as u8, 2) as u16;
    let v = cpu.reg(RAX, i.osz);
    cpu.port_out(bus, port, i.osz, v)
}
