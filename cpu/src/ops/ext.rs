//! Integer extensions of later processors: CMPXCHG8B/16B, POPCNT, LZCNT, TZCNT, MOVBE, BMI1
//! and BMI2 (ANDN, BEXTR, BLSI, BLSMSK, BLSR, BZHI, MULX, PDEP, PEXT, RORX, SARX, SHLX, SHRX),
//! ADX (ADCX, ADOX) and CRC32.

use crate::bus::Bus;
use crate::cpu::{mask, sext, Cpu};
use crate::decode::Insn;
use crate::fault::Fault;
use crate::mem::Access;
use crate::state::flags::*;
use crate::state::reg;
use iced_x86::Mnemonic;

/// CMPXCHG8B m64 / CMPXCHG16B m128 (which must be 16-byte aligned).
pub(crate) fn cmpxchg8b16b(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let half = if i.osz == 8 { 8 } else { 4 };
    let ea = cpu.ea(i);
    let lin = cpu.lin(i.seg as usize, ea, half * 2, Access::Write)?;
    if half == 8 && lin % 16 != 0 {
        return Err(Fault::gp(0));
    }
    let lo = cpu.read_for_write(bus, lin, half)?;
    let hi = cpu.read(bus, cpu.wrap_lin(lin + u64::from(half)), half)?;
    let (ax, dx) = (cpu.reg(reg::RAX as u8, half), cpu.reg(reg::RDX as u8, half));
    if lo == ax && hi == dx {
        let (bx, cx) = (cpu.reg(reg::RBX as u8, half), cpu.reg(reg::RCX as u8, half));
        cpu.write(bus, lin, half, bx)?;
        cpu.write(bus, cpu.wrap_lin(lin + u64::from(half)), half, cx)?;
        cpu.set_flag(ZF, true);
    } else {
        // The locked cycle writes the old value back.
        cpu.write(bus, lin, half, lo)?;
        cpu.write(bus, cpu.wrap_lin(lin + u64::from(half)), half, hi)?;
        cpu.set_reg(reg::RAX as u8, half, lo);
        cpu.set_reg(reg::RDX as u8, half, hi);
        cpu.set_flag(ZF, false);
    }
    Ok(())
}

fn src<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, pos: usize, size: u8) -> Result<u64, Fault> {
    if MEM && i.opr[pos] == crate::decode::NONE {
        cpu.read_rm::<true>(bus, i, size)
    } else {
        Ok(cpu.reg(i.opr[pos], size))
    }
}

/// POPCNT (0), LZCNT (1), TZCNT (2) r, r/m.
pub(crate) fn count_bits<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let bits = u32::from(size) * 8;
    let v = src::<MEM>(cpu, bus, i, 1, size)?;
    let r = match i.imm2 {
        0 => u64::from(v.count_ones()),
        1 => u64::from(v.leading_zeros() - (64 - bits)),
        _ => u64::from(if v == 0 { bits } else { v.trailing_zeros() }),
    };
    cpu.set_reg(i.r0, size, r);
    if i.imm2 == 0 {
        cpu.set_status(ARITH, if v == 0 { ZF } else { 0 });
    } else {
        let f = if v == 0 { CF } else { 0 } | if r == 0 { ZF } else { 0 };
        cpu.set_status(CF | ZF, f);
    }
    Ok(())
}

fn swap(v: u64, size: u8) -> u64 {
    match size {
        2 => u64::from((v as u16).swap_bytes()),
        4 => u64::from((v as u32).swap_bytes()),
        _ => v.swap_bytes(),
    }
}

pub(crate) fn movbe_load(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = cpu.read_rm::<true>(bus, i, i.osz)?;
    cpu.set_reg(i.r0, i.osz, swap(v, i.osz));
    Ok(())
}

pub(crate) fn movbe_store(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = cpu.reg(i.r1, i.osz);
    cpu.write_rm::<true>(bus, i, i.osz, swap(v, i.osz))
}

pub(crate) fn bmi_op(m: Mnemonic) -> u64 {
    use Mnemonic as M;
    match m {
        M::Andn => 0,
        M::Bextr => 1,
        M::Bzhi => 2,
        M::Pdep => 3,
        M::Pext => 4,
        M::Sarx => 5,
        M::Shlx => 6,
        M::Shrx => 7,
        M::Blsi => 8,
        M::Blsmsk => 9,
        M::Blsr => 10,
        M::Rorx => 11,
        _ => 12,
    }
}

fn pdep(src: u64, mut m: u64) -> u64 {
    let (mut r, mut k) = (0, 0);
    while m != 0 {
        let low = m & m.wrapping_neg();
        if src >> k & 1 != 0 {
            r |= low;
        }
        m &= m - 1;
        k += 1;
    }
    r
}

fn pext(src: u64, mut m: u64) -> u64 {
    let (mut r, mut k) = (0, 0);
    while m != 0 {
        let low = m & m.wrapping_neg();
        if src & low != 0 {
            r |= 1 << k;
        }
        m &= m - 1;
        k += 1;
    }
    r
}

/// The VEX-encoded BMI1/BMI2 group. Operand positions: destination first; for the forms
/// with a VEX.vvvv source the order is as the SDM writes it.
pub(crate) fn bmi<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let bits = u64::from(size) * 8;
    let sb = 1u64 << (bits - 1);
    let szf = |r: u64| (if r == 0 { ZF } else { 0 }) | (if r & sb != 0 { SF } else { 0 });
    match i.imm2 {
        // ANDN r, vvvv, r/m
        0 => {
            let a = cpu.reg(i.opr[1], size);
            let b = src::<MEM>(cpu, bus, i, 2, size)?;
            let r = mask(!a & b, size);
            cpu.set_reg(i.r0, size, r);
            cpu.set_status(ARITH & !(AF | PF), szf(r));
        }
        // BEXTR r, r/m, vvvv
        1 => {
            let v = src::<MEM>(cpu, bus, i, 1, size)?;
            let ctl = cpu.reg(i.opr[2], size);
            let (start, len) = (ctl & 0xFF, (ctl >> 8) & 0xFF);
            let r = if start >= bits { 0 } else { (v >> start) & if len >= 64 { u64::MAX } else { (1u64 << len) - 1 } };
            let r = mask(r, size);
            cpu.set_reg(i.r0, size, r);
            cpu.set_status(ZF | CF | OF, if r == 0 { ZF } else { 0 });
        }
        // BZHI r, r/m, vvvv
        2 => {
            let v = src::<MEM>(cpu, bus, i, 1, size)?;
            let n = cpu.reg(i.opr[2], size) & 0xFF;
            let r = if n >= bits { v } else { v & ((1u64 << n) - 1) };
            let r = mask(r, size);
            cpu.set_reg(i.r0, size, r);
            cpu.set_status(ZF | SF | CF | OF, szf(r) | if n > bits - 1 { CF } else { 0 });
        }
        // PDEP / PEXT r, vvvv, r/m
        3 | 4 => {
            let a = cpu.reg(i.opr[1], size);
            let m = src::<MEM>(cpu, bus, i, 2, size)?;
            let r = if i.imm2 == 3 { pdep(a, m) } else { pext(a, m) };
            cpu.set_reg(i.r0, size, mask(r, size));
        }
        // SARX / SHLX / SHRX r, r/m, vvvv
        5..=7 => {
            let v = src::<MEM>(cpu, bus, i, 1, size)?;
            let c = cpu.reg(i.opr[2], size) & (bits - 1);
            let r = match i.imm2 {
                5 => (sext(v, size) as i64 >> c) as u64,
                6 => v << c,
                _ => v >> c,
            };
            cpu.set_reg(i.r0, size, mask(r, size));
        }
        // BLSI / BLSMSK / BLSR vvvv, r/m: the destination is operand 0.
        8..=10 => {
            let v = src::<MEM>(cpu, bus, i, 1, size)?;
            let r = mask(
                match i.imm2 {
                    8 => v & v.wrapping_neg(),
                    9 => v ^ v.wrapping_sub(1),
                    _ => v & v.wrapping_sub(1),
                },
                size,
            );
            cpu.set_reg(i.r0, size, r);
            let cf = match i.imm2 {
                8 => v != 0,
                _ => v == 0,
            };
            let zs = if i.imm2 == 9 { szf(r) & !ZF } else { szf(r) };
            cpu.set_status(ZF | SF | CF | OF, zs | if cf { CF } else { 0 });
        }
        // RORX r, r/m, imm8
        11 => {
            let v = src::<MEM>(cpu, bus, i, 1, size)?;
            let c = i.imm & (bits - 1);
            let r = if c == 0 { v } else { (v >> c) | (v << (bits - c)) };
            cpu.set_reg(i.r0, size, mask(r, size));
        }
        // MULX r_hi, r_lo (vvvv), r/m: EDX/RDX times the source, no flags.
        _ => {
            let v = src::<MEM>(cpu, bus, i, 2, size)?;
            let d = cpu.reg(reg::RDX as u8, size);
            let p = u128::from(d) * u128::from(v);
            // The low half first, so that when both destinations are the same register the
            // high half wins, as the SDM specifies.
            cpu.set_reg(i.opr[1], size, mask(p as u64, size));
            cpu.set_reg(i.r0, size, mask((p >> bits) as u64, size));
        }
    }
    Ok(())
}

/// ADCX (`imm2` 0, carry in and out through CF) / ADOX (1, through OF).
pub(crate) fn adx<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let b = src::<MEM>(cpu, bus, i, 1, size)?;
    let a = cpu.reg(i.r0, size);
    let flag = if i.imm2 == 0 { CF } else { OF };
    let c_in = u128::from(cpu.rflags() & flag != 0);
    let wide = u128::from(a) + u128::from(b) + c_in;
    let r = mask(wide as u64, size);
    let carry = wide >> (u32::from(size) * 8) != 0;
    cpu.set_reg(i.r0, size, r);
    cpu.set_status(flag, if carry { flag } else { 0 });
    Ok(())
}

/// CRC32 r32/r64, r/m8/16/32/64: CRC-32C (Castagnoli), bit-reflected, no final inversion.
pub(crate) fn crc32<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let ssz = i.imm2 as u8;
    let v = src::<MEM>(cpu, bus, i, 1, ssz)?;
    let mut crc = cpu.reg(i.r0, 4) as u32;
    for k in 0..ssz {
        crc ^= u32::from((v >> (8 * k)) as u8);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    cpu.set_reg(i.r0, i.osz, u64::from(crc));
    Ok(())
}
