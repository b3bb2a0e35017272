//! Instruction handlers, one file per family (Bochs's `arith32.cc`, `shift16.cc`...). Each
//! handler runs with RIP already pointing past its instruction; returning a fault rolls RIP
//! back and delivers the exception. Handlers with a `MEM` parameter exist in a register form
//! and a memory form, chosen at decode time.

pub(crate) mod alu;
pub(crate) mod bcd;
pub(crate) mod bits;
pub(crate) mod branch;
pub(crate) mod ext;
pub(crate) mod fastcall;
pub(crate) mod fused;
pub(crate) mod io;
pub(crate) mod misc;
pub(crate) mod mov;
pub(crate) mod muldiv;
pub(crate) mod shift;
pub(crate) mod stack;
pub(crate) mod string;
pub(crate) mod system;

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Insn, RIP};
use crate::fault::Fault;
use crate::mem::Access;

/// An undefined or unsupported encoding.
pub(crate) fn ud(_cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    Err(Fault::ud())
}

pub(crate) fn nop(_cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    Ok(())
}

/// How a memory operand's effective address is formed, for handlers generic over it (the
/// commonest forms of the hottest handlers skip the general computation's tests): any form;
/// a register plus a displacement with 32-bit or with 64-bit addressing.
pub(crate) const EA_ANY: u8 = 0;
pub(crate) const EA_BASE32: u8 = 1;
pub(crate) const EA_BASE64: u8 = 2;

/// The `EA_*` form of `i`'s memory operand.
pub(crate) fn ea_kind(i: &Insn) -> u8 {
    match (i.base < 16, i.index < 16, i.asz) {
        (true, false, 4) => EA_BASE32,
        (true, false, 8) => EA_BASE64,
        _ => EA_ANY,
    }
}

impl Cpu {
    /// The effective address (offset within the segment) of the memory operand.
    #[inline(always)]
    pub(crate) fn ea(&self, i: &Insn) -> u64 {
        let mut a = i.disp;
        // Register numbers are below 16; NONE and RIP are above.
        if i.base < 16 {
            a = a.wrapping_add(self.s.gpr[usize::from(i.base & 15)]);
        } else if i.base == RIP {
            a = a.wrapping_add(self.s.rip);
        }
        if i.index < 16 {
            a = a.wrapping_add(self.s.gpr[usize::from(i.index & 15)] << (i.scale & 3));
        }
        // The address size is 2, 4 or 8.
        a & (u64::MAX >> ((64 - u32::from(i.asz) * 8) & 63))
    }

    /// The effective address by the form `K` the decoder found (`EA_*`, `ea_kind`).
    #[inline(always)]
    pub(crate) fn ea_k<const K: u8>(&self, i: &Insn) -> u64 {
        match K {
            EA_BASE32 => self.s.gpr[usize::from(i.base & 15)].wrapping_add(i.disp) & 0xFFFF_FFFF,
            EA_BASE64 => self.s.gpr[usize::from(i.base & 15)].wrapping_add(i.disp),
            _ => self.ea(i),
        }
    }

    /// The linear address of the memory operand, checked for an access of `size` bytes.
    #[inline(always)]
    pub(crate) fn mem_lin(&self, i: &Insn, size: u8, acc: Access) -> Result<u64, Fault> {
        self.lin(i.seg as usize, self.ea(i), size, acc)
    }

    /// The host address of the memory operand when the access needs nothing but the host
    /// pointer: the segment check passes and the TLB allows it (`host_for_access`). Hot
    /// handlers try this first and otherwise hand over to their full form, in tail position,
    /// so that the fast path needs no stack frame.
    /// Otherwise: the linear address if the segment check passed (the TLB did not serve
    /// it), `None` if it failed (the full form checks again and raises the fault).
    #[inline(always)]
    pub(crate) fn mem_host(&self, i: &Insn, size: u8, acc: Access) -> Result<usize, Option<u64>> {
        self.mem_host_k::<EA_ANY>(i, size, acc)
    }

    /// `mem_host` with the effective address formed as `K` says (`ea_kind`).
    #[inline(always)]
    pub(crate) fn mem_host_k<const K: u8>(&self, i: &Insn, size: u8, acc: Access) -> Result<usize, Option<u64>> {
        let Ok(lin) = self.lin(i.seg as usize, self.ea_k::<K>(i), size, acc) else {
            return Err(None);
        };
        self.host_for_access(lin, size, acc == Access::Write).ok_or(Some(lin))
    }

    /// The linear address of the memory operand, from `mem_host`'s answer when it has it.
    #[inline(always)]
    pub(crate) fn mem_lin_from(&self, i: &Insn, lin: Option<u64>, size: u8, acc: Access) -> Result<u64, Fault> {
        match lin {
            Some(l) => Ok(l),
            None => self.mem_lin(i, size, acc),
        }
    }

    /// Read-modify-write of memory at `lin` (see `modify_rm`).
    #[inline(always)]
    pub(crate) fn modify_mem(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, f: impl FnOnce(&mut Cpu, u64) -> Option<u64>) -> Result<(), Fault> {
        let old = self.read_for_write(bus, lin, size)?;
        if let Some(new) = f(self, old) {
            self.write(bus, lin, size, new)?;
        }
        Ok(())
    }

    /// Reads the r/m operand: register `r0`, or memory.
    #[inline(always)]
    pub(crate) fn read_rm<const MEM: bool>(&mut self, bus: &mut dyn Bus, i: &Insn, size: u8) -> Result<u64, Fault> {
        if MEM {
            let lin = self.mem_lin(i, size, Access::Read)?;
            self.read(bus, lin, size)
        } else {
            Ok(self.reg(i.r0, size))
        }
    }

    /// Writes the r/m operand: register `r0`, or memory.
    #[inline(always)]
    pub(crate) fn write_rm<const MEM: bool>(&mut self, bus: &mut dyn Bus, i: &Insn, size: u8, v: u64) -> Result<(), Fault> {
        if MEM {
            let lin = self.mem_lin(i, size, Access::Write)?;
            self.write(bus, lin, size, v)
        } else {
            self.set_reg(i.r0, size, v);
            Ok(())
        }
    }

    /// Read-modify-write of the r/m operand: `f` gets the old value and returns the new one,
    /// or `None` to leave it unchanged.
    #[inline(always)]
    pub(crate) fn modify_rm<const MEM: bool>(
        &mut self,
        bus: &mut dyn Bus,
        i: &Insn,
        size: u8,
        f: impl FnOnce(&mut Cpu, u64) -> Option<u64>,
    ) -> Result<(), Fault> {
        if MEM {
            let lin = self.mem_lin(i, size, Access::Write)?;
            // The read of a read-modify-write is made with write intent: a fault reports a
            // write, and comes before any flag changes.
            let old = self.read_for_write(bus, lin, size)?;
            if let Some(new) = f(self, old) {
                self.write(bus, lin, size, new)?;
            }
        } else {
            let old = self.reg(i.r0, size);
            if let Some(new) = f(self, old) {
                self.set_reg(i.r0, size, new);
            }
        }
        Ok(())
    }
}
