//! Architecturally undefined status flags: the one table that says which flags an instruction
//! leaves undefined, with the SDM's own words (Intel SDM vol. 2, each instruction's "Flags
//! Affected"). The generator tracks these through each program ("taint"): a later
//! instruction that would read an undefined flag is not generated, and flags still undefined
//! where the case stops are masked out of the comparison.
//!
//! Reads, writes and the immediate-count special cases (a shift by an immediate 0 changes
//! nothing) come from iced-x86's instruction info. A shift or rotate by CL and a REP-prefixed
//! CMPS/SCAS may change no flag at all (count 0), so after them a flag that was undefined
//! stays undefined ([`Effects::may_skip`]).

use cpu::state::flags as fl;
use iced_x86::{Instruction, Mnemonic, OpKind, RflagsBits};

/// When an entry applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// The (masked) count is not 0.
    CountNonZero,
    /// The (masked) count is more than 1.
    CountAbove1,
    /// The (masked) count is more than the operand size in bits (SHLD/SHRD).
    CountAboveSize,
    /// A control or debug register is an operand (MOV CRn/DRn).
    CrDr,
}

pub struct Undefined {
    pub mnemonics: &'static [Mnemonic],
    /// RFLAGS bits (cpu::state::flags).
    pub flags: u64,
    pub when: When,
    pub sdm: &'static str,
}

use Mnemonic as M;

const OF: u64 = fl::OF;
const SF: u64 = fl::SF;
const ZF: u64 = fl::ZF;
const AF: u64 = fl::AF;
const PF: u64 = fl::PF;
const CF: u64 = fl::CF;

/// The table. Every instruction the generator emits that is not listed here defines every
/// flag it writes (checked against iced-x86's view by `tests::table_covers_iced`).
pub const UNDEFINED: &[Undefined] = &[
    Undefined {
        mnemonics: &[M::And, M::Or, M::Xor, M::Test],
        flags: AF,
        when: When::Always,
        sdm: "The OF and CF flags are cleared; the SF, ZF, and PF flags are set according to the result. The state of the AF flag is undefined.",
    },
    Undefined {
        mnemonics: &[M::Mul],
        flags: SF | ZF | AF | PF,
        when: When::Always,
        sdm: "The OF and CF flags are set to 0 if the upper half of the result is 0; otherwise, they are set to 1. The SF, ZF, AF, and PF flags are undefined.",
    },
    Undefined {
        mnemonics: &[M::Imul],
        flags: SF | ZF | AF | PF,
        when: When::Always,
        sdm: "For the one operand form of the instruction, the CF and OF flags are set when significant bits are carried into the upper half of the result and cleared when the result fits exactly in the lower half of the result. For the two- and three-operand forms of the instruction, the CF and OF flags are set when the result must be truncated to fit in the destination operand size and cleared when the result fits exactly in the destination operand size. The SF, ZF, AF, and PF flags are undefined.",
    },
    Undefined {
        mnemonics: &[M::Div, M::Idiv],
        flags: CF | OF | SF | ZF | AF | PF,
        when: When::Always,
        sdm: "The CF, OF, SF, ZF, AF, and PF flags are undefined.",
    },
    Undefined {
        mnemonics: &[M::Shl, M::Sal, M::Shr, M::Sar],
        flags: AF,
        when: When::CountNonZero,
        sdm: "If the count is 0, the flags are not affected. For a non-zero count, the AF flag is undefined.",
    },
    Undefined {
        mnemonics: &[M::Shl, M::Sal, M::Shr, M::Sar],
        flags: OF,
        when: When::CountAbove1,
        sdm: "The OF flag is affected only for 1-bit shifts (see \"Description\" above); otherwise, it is undefined.",
    },
    Undefined {
        mnemonics: &[M::Rol, M::Ror, M::Rcl, M::Rcr],
        flags: OF,
        when: When::CountAbove1,
        sdm: "If the masked count is 0, the flags are not affected. If the masked count is 1, then the OF flag is affected, otherwise (masked count is greater than 1) the OF flag is undefined.",
    },
    Undefined {
        mnemonics: &[M::Shld, M::Shrd],
        flags: AF,
        when: When::CountNonZero,
        sdm: "If a shift occurs, the AF flag is undefined. If the count operand is 0, the flags are not affected.",
    },
    Undefined {
        mnemonics: &[M::Shld, M::Shrd],
        flags: OF,
        when: When::CountAbove1,
        sdm: "For a 1-bit shift, the OF flag is set if a sign change occurred; otherwise, it is cleared. For shifts greater than 1 bit, the OF flag is undefined.",
    },
    Undefined {
        mnemonics: &[M::Shld, M::Shrd],
        flags: CF | OF | SF | ZF | AF | PF,
        when: When::CountAboveSize,
        sdm: "If the count is greater than the operand size, the flags are undefined. (And: if the count is greater than the operand size, the result is undefined; the generator never makes such a count.)",
    },
    Undefined {
        mnemonics: &[M::Bt, M::Bts, M::Btr, M::Btc],
        flags: OF | SF | AF | PF,
        when: When::Always,
        sdm: "The CF flag contains the value of the selected bit. The ZF flag is unaffected. The OF, SF, AF, and PF flags are undefined.",
    },
    Undefined {
        mnemonics: &[M::Bsf, M::Bsr],
        flags: CF | OF | SF | AF | PF,
        when: When::Always,
        sdm: "The ZF flag is set to 1 if the source operand is 0; otherwise, the ZF flag is cleared. The CF, OF, SF, AF, and PF flags are undefined.",
    },
    Undefined {
        mnemonics: &[M::Lzcnt, M::Tzcnt],
        flags: OF | SF | PF | AF,
        when: When::Always,
        sdm: "The ZF flag is set to 1 in case of zero output (most significant bit of the source is set), and to 0 otherwise, CF flag is set to 1 if input was zero and cleared otherwise. OF, SF, PF and AF flags are undefined.",
    },
    Undefined {
        mnemonics: &[M::Mov],
        flags: CF | OF | SF | ZF | AF | PF,
        when: When::CrDr,
        sdm: "(MOV to/from control registers, MOV to/from debug registers) The OF, SF, ZF, AF, PF, and CF flags are undefined.",
    },
    Undefined {
        mnemonics: &[M::Andn],
        flags: AF | PF,
        when: When::Always,
        sdm: "SF and ZF are updated based on result. OF and CF flags are cleared. AF and PF flags are undefined.",
    },
    Undefined {
        mnemonics: &[M::Bextr],
        flags: AF | SF | PF,
        when: When::Always,
        sdm: "ZF is updated based on the result. AF, SF, and PF are undefined. All other flags are cleared.",
    },
    Undefined {
        mnemonics: &[M::Blsi],
        flags: AF | PF,
        when: When::Always,
        sdm: "ZF and SF flags are updated based on the result. CF flag is set if the source is not zero. OF flags are cleared. AF and PF flags are undefined.",
    },
    Undefined {
        mnemonics: &[M::Blsmsk],
        flags: AF | PF,
        when: When::Always,
        sdm: "SF is updated based on the result. CF is set if the source if zero. ZF and OF flags are cleared. AF and PF flag are undefined.",
    },
    Undefined {
        mnemonics: &[M::Blsr],
        flags: AF | PF,
        when: When::Always,
        sdm: "ZF and SF flags are updated based on the result. CF is set if the source is zero. OF flag is cleared. AF and PF flags are undefined.",
    },
    Undefined {
        mnemonics: &[M::Bzhi],
        flags: AF | PF,
        when: When::Always,
        sdm: "ZF, CF and SF flags are updated based on the result. OF flag is cleared. AF and PF flags are undefined.",
    },
];

/// An instruction's effect on the status flags, as RFLAGS bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub read: u64,
    /// Written (defined or not) when the instruction changes flags at all.
    pub modified: u64,
    /// Left undefined (per `UNDEFINED`, plus iced-x86's view as a safety net).
    pub undefined: u64,
    /// The instruction may leave every flag as it was (count 0 in CL or RCX).
    pub may_skip: bool,
}

impl Effects {
    /// Which flags are undefined after the instruction, given those undefined before.
    pub fn taint_after(&self, before: u64) -> u64 {
        if self.may_skip {
            before | self.undefined
        } else {
            (before & !self.modified) | self.undefined
        }
    }
}

/// iced-x86's RflagsBits as RFLAGS bits (status flags and DF, AC, IF).
pub fn from_iced(bits: u32) -> u64 {
    let map = [
        (RflagsBits::OF, OF),
        (RflagsBits::SF, SF),
        (RflagsBits::ZF, ZF),
        (RflagsBits::AF, AF),
        (RflagsBits::CF, CF),
        (RflagsBits::PF, PF),
        (RflagsBits::DF, fl::DF),
        (RflagsBits::IF, fl::IF),
        (RflagsBits::AC, fl::AC),
    ];
    map.iter().filter(|(i, _)| bits & i != 0).map(|(_, f)| f).fold(0, |a, b| a | b)
}

/// The shift or rotate count of `i` if it is an immediate (`None` for CL), masked as the
/// processor masks it.
fn imm_count(i: &Instruction) -> Option<Option<u32>> {
    let m = i.mnemonic();
    if !matches!(m, M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror | M::Rcl | M::Rcr | M::Shld | M::Shrd) {
        return None;
    }
    let last = i.op_count() - 1;
    let wide = i.op0_register().size() == 8 || (i.op0_kind() != OpKind::Register && i.memory_size().size() == 8);
    let mask = if wide { 0x3F } else { 0x1F };
    Some(match i.op_kind(last) {
        OpKind::Register => None,
        OpKind::Immediate8 => Some(u32::from(i.immediate8()) & mask),
        // D0-D3 /n: the count 1 is implied (iced shows it as the constant 1).
        _ => Some(1),
    })
}

/// The operand size in bits of a shift's destination.
fn dest_bits(i: &Instruction) -> u32 {
    if i.op0_kind() == OpKind::Register {
        i.op0_register().size() as u32 * 8
    } else {
        i.memory_size().size() as u32 * 8
    }
}

/// The SDM table's undefined flags for `i`.
pub fn sdm_undefined(i: &Instruction) -> u64 {
    let m = i.mnemonic();
    let count = imm_count(i);
    let mut out = 0;
    for e in UNDEFINED {
        if !e.mnemonics.contains(&m) {
            continue;
        }
        let applies = match (e.when, count) {
            (When::Always, _) => true,
            (When::CrDr, _) => (0..i.op_count()).any(|k| {
                i.op_kind(k) == OpKind::Register && (i.op_register(k).is_cr() || i.op_register(k).is_dr())
            }),
            // Count in CL: anything is possible.
            (_, Some(None)) => true,
            (When::CountNonZero, Some(Some(c))) => c != 0,
            (When::CountAbove1, Some(Some(c))) => c > 1,
            (When::CountAboveSize, Some(Some(c))) => c > dest_bits(i),
            (_, None) => true,
        };
        if applies {
            out |= e.flags;
        }
    }
    out
}

/// Everything the generator and the comparison need to know about `i` and the flags.
pub fn effects(i: &Instruction) -> Effects {
    let m = i.mnemonic();
    let count = imm_count(i);
    let may_skip = matches!(count, Some(None))
        || ((i.has_rep_prefix() || i.has_repne_prefix())
            && matches!(m, M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq | M::Scasb | M::Scasw | M::Scasd | M::Scasq));
    Effects {
        read: from_iced(i.rflags_read()),
        modified: from_iced(i.rflags_modified()),
        undefined: sdm_undefined(i) | from_iced(i.rflags_undefined()),
        may_skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn decode(bytes: &[u8]) -> Instruction {
        Decoder::new(64, bytes, DecoderOptions::NONE).decode()
    }

    #[test]
    fn shifts_by_immediate() {
        // shl eax, 1: OF defined, AF undefined
        assert_eq!(sdm_undefined(&decode(&[0xD1, 0xE0])), AF);
        // shl eax, 5
        assert_eq!(sdm_undefined(&decode(&[0xC1, 0xE0, 5])), AF | OF);
        // shl eax, 32: masked to 0, nothing
        assert_eq!(sdm_undefined(&decode(&[0xC1, 0xE0, 32])), 0);
        // shl rax, 32: 64-bit masks to 6 bits
        assert_eq!(sdm_undefined(&decode(&[0x48, 0xC1, 0xE0, 32])), AF | OF);
        // shl eax, cl: all possible
        assert_eq!(sdm_undefined(&decode(&[0xD3, 0xE0])), AF | OF);
        assert!(effects(&decode(&[0xD3, 0xE0])).may_skip);
        // shld ax, bx, 17: more than the operand size
        assert_eq!(sdm_undefined(&decode(&[0x66, 0x0F, 0xA4, 0xD8, 17])), CF | OF | SF | ZF | AF | PF);
    }

    #[test]
    fn taint_flow() {
        let mul = effects(&decode(&[0xF7, 0xE3])); // mul ebx
        let t = mul.taint_after(0);
        assert_eq!(t, SF | ZF | AF | PF);
        let add = effects(&decode(&[0x01, 0xD8])); // add eax, ebx
        assert_eq!(add.taint_after(t), 0);
        let shl_cl = effects(&decode(&[0xD3, 0xE0]));
        assert_eq!(shl_cl.taint_after(t), t | AF | OF);
        let adc = effects(&decode(&[0x11, 0xD8]));
        assert_eq!(adc.read, CF);
    }
}

#[cfg(test)]
mod coverage {
    use super::*;
    use crate::diff::{Case, GenConfig};
    use std::collections::BTreeSet;

    /// Every flag iced-x86 calls undefined for an instruction the generator makes is in the
    /// SDM table too (the table is complete for what is generated).
    #[test]
    fn table_covers_iced() {
        let mut cfg = GenConfig::default_mix();
        cfg.include_known_bad = true;
        let mut missing = BTreeSet::new();
        for i in 0..1500 {
            let case = Case::generate(&cfg, 0x7AB1E, i);
            for f in &case.layout.flat {
                if f.raw.is_some() {
                    continue;
                }
                let extra = from_iced(f.instr.rflags_undefined()) & !sdm_undefined(&f.instr);
                if extra != 0 {
                    missing.insert(format!("{:?}: {}", f.instr.mnemonic(), crate::diff::flag_names(extra)));
                }
            }
        }
        assert!(missing.is_empty(), "undefined per iced-x86 but not in the table: {missing:?}");
    }
}
