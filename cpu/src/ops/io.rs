//! Port I/O: IN and OUT with an immediate port or DX. (String I/O is in `string.rs`.)

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::Insn;
use crate::fault::Fault;
use crate::state::reg;

const RAX: u8 = reg::RAX as u8;

impl Cpu {
    /// Port access permission. Real mode and CPL 0 may use every port; the IOPL and I/O
    /// bitmap checks arrive with protected mode.
    #[inline(always)]
    pub(crate) fn check_io(&self, _port: u16, _size: u8) -> Result<(), Fault> {
        Ok(())
    }

    pub(crate) fn port_in(&mut self, bus: &mut dyn Bus, port: u16, size: u8) -> Result<u64, Fault> {
        self.check_io(port, size)?;
        let v = u64::from(bus.io_read(port, size));
        if bus.wants_stop() {
            self.stop_for_bus();
        }
        Ok(v)
    }

    pub(crate) fn port_out(&mut self, bus: &mut dyn Bus, port: u16, size: u8, v: u64) -> Result<(), Fault> {
        self.check_io(port, size)?;
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
