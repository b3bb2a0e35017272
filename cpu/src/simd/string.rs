//! SSE4.2 string compares: PCMPESTRI, PCMPESTRM (explicit lengths in EAX/EDX, RAX/RDX with
//! REX.W), PCMPISTRI, PCMPISTRM (implicit, NUL-terminated), as the SDM's "Packed Compare
//! String" section (vol. 2, 4.1) defines them: imm8 selects the element format, the
//! aggregation (equal any, ranges, equal each, equal ordered), the polarity and the output.
//! The memory operand need not be aligned.

use super::{by_mem, lanes, Form, X};
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::state::flags::{AF, CF, OF, PF, SF, ZF};
use crate::state::reg;
use iced_x86::Mnemonic as M;

// `imm2` bits.
const EXPLICIT: u64 = 1;
const MASK_OUT: u64 = 2;
/// REX.W: the lengths are RAX and RDX.
const WIDE: u64 = 4;

pub(super) fn select(f: &Form, sub: &mut u64) -> Option<Handler> {
    *sub = match f.m {
        M::Pcmpestri => EXPLICIT,
        M::Pcmpestri64 => EXPLICIT | WIDE,
        M::Pcmpestrm => EXPLICIT | MASK_OUT,
        M::Pcmpestrm64 => EXPLICIT | MASK_OUT | WIDE,
        M::Pcmpistri => 0,
        M::Pcmpistrm => MASK_OUT,
        _ => return None,
    };
    Some(by_mem!(pcmpstr, f.mem))
}

/// The elements of an operand as signed or unsigned integers: 16 bytes or 8 words.
fn elements(v: X, words: bool, signed: bool) -> ([i32; 16], usize) {
    let mut e = [0i32; 16];
    if words {
        for (k, w) in lanes::w(v).iter().enumerate() {
            e[k] = if signed { i32::from(*w as i16) } else { i32::from(*w) };
        }
        (e, 8)
    } else {
        for (k, b) in lanes::b(v).iter().enumerate() {
            e[k] = if signed { i32::from(*b as i8) } else { i32::from(*b) };
        }
        (e, 16)
    }
}

/// An explicit length: the register's absolute value, at most `n`.
fn explicit_len(v: u64, wide: bool, n: usize) -> usize {
    let abs = if wide { (v as i64).unsigned_abs() } else { u64::from((v as i32).unsigned_abs()) };
    abs.min(n as u64) as usize
}

/// The index of the first zero element, or `n`.
fn implicit_len(e: &[i32; 16], n: usize) -> usize {
    e[..n].iter().position(|&x| x == 0).unwrap_or(n)
}

/// The comparison core: IntRes2 as a bit mask (bit j for element j of the second operand).
pub(super) fn compare(a: &[i32; 16], la: usize, b: &[i32; 16], lb: usize, n: usize, imm: u8) -> u32 {
    let agg = (imm >> 2) & 3;
    let mut res1 = 0u32;
    match agg {
        // Equal any: b[j] equals some valid a[i].
        0 => {
            for (j, x) in b[..lb].iter().enumerate() {
                if a[..la].contains(x) {
                    res1 |= 1 << j;
                }
            }
        }
        // Ranges: a holds (low, high) pairs; b[j] lies in a valid one.
        1 => {
            for (j, &x) in b[..lb].iter().enumerate() {
                let pairs = la.min(n) / 2;
                if (0..pairs).any(|k| a[2 * k] <= x && x <= a[2 * k + 1]) {
                    res1 |= 1 << j;
                }
            }
        }
        // Equal each: element-wise equality; two invalid elements compare equal.
        2 => {
            for j in 0..n {
                let eq = match (j < la, j < lb) {
                    (true, true) => a[j] == b[j],
                    (false, false) => true,
                    _ => false,
                };
                if eq {
                    res1 |= 1 << j;
                }
            }
        }
        // Equal ordered: a occurs in b at position j (an invalid a element matches anything,
        // a valid one never matches an invalid b element).
        _ => {
            for j in 0..n {
                let mut all = true;
                for k in 0..n - j {
                    let ok = if k >= la {
                        true
                    } else if j + k >= lb {
                        false
                    } else {
                        a[k] == b[j + k]
                    };
                    if !ok {
                        all = false;
                        break;
                    }
                }
                if all {
                    res1 |= 1 << j;
                }
            }
        }
    }
    let all = (1u32 << n) - 1;
    match (imm >> 4) & 3 {
        1 => !res1 & all,
        3 => res1 ^ ((1u32 << lb) - 1),
        _ => res1,
    }
}

fn pcmpstr<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let src2 = cpu.src_x::<MEM>(bus, i)?;
    let src1 = cpu.xmm(i.r0);
    let imm = i.imm as u8;
    let words = imm & 1 != 0;
    let signed = imm & 2 != 0;
    let (a, n) = elements(src1, words, signed);
    let (b, _) = elements(src2, words, signed);
    let (la, lb) = if i.imm2 & EXPLICIT != 0 {
        let wide = i.imm2 & WIDE != 0;
        (explicit_len(cpu.s.gpr[reg::RAX], wide, n), explicit_len(cpu.s.gpr[reg::RDX], wide, n))
    } else {
        (implicit_len(&a, n), implicit_len(&b, n))
    };
    let res2 = compare(&a, la, &b, lb, n, imm);
    if i.imm2 & MASK_OUT != 0 {
        let m = if imm & 0x40 != 0 {
            let bytes: [u8; 16] = std::array::from_fn(|k| {
                let e = if words { k / 2 } else { k };
                if res2 >> e & 1 != 0 {
                    0xFF
                } else {
                    0
                }
            });
            lanes::from_b(bytes)
        } else {
            [u64::from(res2), 0]
        };
        cpu.set_xmm(0, m);
    } else {
        let idx = if res2 == 0 {
            n as u64
        } else if imm & 0x40 != 0 {
            u64::from(31 - res2.leading_zeros())
        } else {
            u64::from(res2.trailing_zeros())
        };
        cpu.set_reg(reg::RCX as u8, 4, idx);
    }
    let mut fl = 0;
    if res2 != 0 {
        fl |= CF;
    }
    if lb < n {
        fl |= ZF;
    }
    if la < n {
        fl |= SF;
    }
    if res2 & 1 != 0 {
        fl |= OF;
    }
    cpu.set_status(CF | ZF | SF | OF | AF | PF, fl);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &[u8]) -> [i32; 16] {
        std::array::from_fn(|k| i32::from(*s.get(k).unwrap_or(&0)))
    }

    #[test]
    fn aggregations() {
        // Equal any: which bytes of "hello world" are vowels.
        let set = bytes(b"aeiou");
        let text = bytes(b"hello world");
        assert_eq!(compare(&set, 5, &text, 11, 16, 0x00), 0b000_1001_0010);
        // Ranges: 'a'..'z'.
        let r = bytes(b"az");
        let t = bytes(b"aB1z");
        assert_eq!(compare(&r, 2, &t, 4, 16, 0x04), 0b1001);
        // Equal ordered: "lo" inside "hello" at 3; negative polarity masks the rest.
        let needle = bytes(b"lo");
        let hay = bytes(b"hello");
        assert_eq!(compare(&needle, 2, &hay, 5, 16, 0x0C), 1 << 3);
        // Equal each with masked negative polarity: the differing valid positions.
        let x = bytes(b"abcd");
        let y = bytes(b"abxd");
        // (Positions past both strings compare equal, and masking leaves them set.)
        assert_eq!(compare(&x, 4, &y, 4, 16, 0x38), 0xFFF4);
    }
}
