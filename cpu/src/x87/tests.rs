//! Unit tests of the x87: results checked bit for bit against values computed with 1000-bit
//! arithmetic (mpmath) and rounded to nearest extended, and handler behaviour on a bare CPU.

use super::arith::{binop, remainder, round_to_int, scale, sqrt, ADD, DIV, MUL, SUB};
use super::exc::*;
use super::f80::INDEFINITE;
use super::load_store::{constant, from_bcd, to_int};
use super::sw;
use super::transcend::{atan2, exp2m1, trig, ylog2};
use crate::flat::FlatBus;
use crate::state::{CpuState, F80};
use crate::{Cpu, Stop};

/// FCW after FNINIT: everything masked, extended precision, round to nearest.
const FCW: u16 = 0x037F;

fn f(signif: u64, sign_exp: u16) -> F80 {
    F80 { signif, sign_exp }
}

const ONE: F80 = F80 { signif: 1 << 63, sign_exp: 0x3FFF };
const THREE: F80 = F80 { signif: 0xC000_0000_0000_0000, sign_exp: 0x4000 };

#[rustfmt::skip]
const TABLE: &[(&str, &[F80], F80)] = &[
        ("sin", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFE }], F80 { signif: 0xF57743A2582F7F44, sign_exp: 0x3FFD }),
        ("cos", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFE }], F80 { signif: 0xE0A94032DBEA7CEE, sign_exp: 0x3FFE }),
        ("tan", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFE }], F80 { signif: 0x8BDA7ADF9A3A5219, sign_exp: 0x3FFE }),
        ("sin", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }], F80 { signif: 0xD76AA47848677021, sign_exp: 0x3FFE }),
        ("cos", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }], F80 { signif: 0x8A51407DA8345C92, sign_exp: 0x3FFE }),
        ("tan", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }], F80 { signif: 0xC75922E5F71D2DC5, sign_exp: 0x3FFF }),
        ("sin", &[F80 { signif: 0xA7C5AC471B478423, sign_exp: 0x3FEE }], F80 { signif: 0xA7C5AC470F450F0E, sign_exp: 0x3FEE }),
        ("cos", &[F80 { signif: 0xA7C5AC471B478423, sign_exp: 0x3FEE }], F80 { signif: 0xFFFFFFFFC906404C, sign_exp: 0x3FFE }),
        ("tan", &[F80 { signif: 0xA7C5AC471B478423, sign_exp: 0x3FEE }], F80 { signif: 0xA7C5AC47334C6E4C, sign_exp: 0x3FEE }),
        ("sin", &[F80 { signif: 0xC000000000000000, sign_exp: 0x3FBA }], F80 { signif: 0xC000000000000000, sign_exp: 0x3FBA }),
        ("cos", &[F80 { signif: 0xC000000000000000, sign_exp: 0x3FBA }], F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }),
        ("tan", &[F80 { signif: 0xC000000000000000, sign_exp: 0x3FBA }], F80 { signif: 0xC000000000000000, sign_exp: 0x3FBA }),
        ("sin", &[F80 { signif: 0xC000000000000000, sign_exp: 0x4000 }], F80 { signif: 0x9081C36DB6AADA79, sign_exp: 0x3FFC }),
        ("cos", &[F80 { signif: 0xC000000000000000, sign_exp: 0x4000 }], F80 { signif: 0xFD7025F42F2E9308, sign_exp: 0xBFFE }),
        ("tan", &[F80 { signif: 0xC000000000000000, sign_exp: 0x4000 }], F80 { signif: 0x91F7B892A5C37866, sign_exp: 0xBFFC }),
        ("sin", &[F80 { signif: 0xA000000000000000, sign_exp: 0x4002 }], F80 { signif: 0x8B44F7AF9A7A92CF, sign_exp: 0xBFFE }),
        ("cos", &[F80 { signif: 0xA000000000000000, sign_exp: 0x4002 }], F80 { signif: 0xD6CD64486358F905, sign_exp: 0xBFFE }),
        ("tan", &[F80 { signif: 0xA000000000000000, sign_exp: 0x4002 }], F80 { signif: 0xA5FAF9A5F1BC12F0, sign_exp: 0x3FFE }),
        ("sin", &[F80 { signif: 0x9502F90000000000, sign_exp: 0x4020 }], F80 { signif: 0xF99A63C49C6F2B1A, sign_exp: 0xBFFD }),
        ("cos", &[F80 { signif: 0x9502F90000000000, sign_exp: 0x4020 }], F80 { signif: 0xDF84C480EB7F65B5, sign_exp: 0x3FFE }),
        ("tan", &[F80 { signif: 0x9502F90000000000, sign_exp: 0x4020 }], F80 { signif: 0x8EF0007A0F690AA4, sign_exp: 0xBFFE }),
        ("sin", &[F80 { signif: 0xC90FDAA22168C235, sign_exp: 0x4000 }], F80 { signif: 0x8000000000000000, sign_exp: 0xBFBF }),
        ("cos", &[F80 { signif: 0xC90FDAA22168C235, sign_exp: 0x4000 }], F80 { signif: 0x8000000000000000, sign_exp: 0xBFFF }),
        ("tan", &[F80 { signif: 0xC90FDAA22168C235, sign_exp: 0x4000 }], F80 { signif: 0x8000000000000000, sign_exp: 0x3FBF }),
        ("sin", &[F80 { signif: 0xC000000000000000, sign_exp: 0x403D }], F80 { signif: 0xC3E85DBD8E174203, sign_exp: 0xBFFD }),
        ("cos", &[F80 { signif: 0xC000000000000000, sign_exp: 0x403D }], F80 { signif: 0xEC84C28F80083089, sign_exp: 0x3FFE }),
        ("tan", &[F80 { signif: 0xC000000000000000, sign_exp: 0x403D }], F80 { signif: 0xD40B486D574B6507, sign_exp: 0xBFFD }),
        ("sin", &[F80 { signif: 0xA000000000000000, sign_exp: 0xC000 }], F80 { signif: 0x9935786E7E558405, sign_exp: 0xBFFE }),
        ("cos", &[F80 { signif: 0xA000000000000000, sign_exp: 0xC000 }], F80 { signif: 0xCD17BF7C2C5BE959, sign_exp: 0xBFFE }),
        ("tan", &[F80 { signif: 0xA000000000000000, sign_exp: 0xC000 }], F80 { signif: 0xBF3CDA7005D8A565, sign_exp: 0x3FFE }),
        ("sin", &[F80 { signif: 0xC980000000000000, sign_exp: 0xC005 }], F80 { signif: 0xDE80B5B1224BE5D1, sign_exp: 0xBFFC }),
        ("cos", &[F80 { signif: 0xC980000000000000, sign_exp: 0xC005 }], F80 { signif: 0xF9E22F81ED1330C9, sign_exp: 0x3FFE }),
        ("tan", &[F80 { signif: 0xC980000000000000, sign_exp: 0xC005 }], F80 { signif: 0xE3F2F391CCF21395, sign_exp: 0xBFFC }),
        ("sin", &[F80 { signif: 0xE000000000000000, sign_exp: 0x403D }], F80 { signif: 0x8E3D60783E619E54, sign_exp: 0xBFFE }),
        ("cos", &[F80 { signif: 0xE000000000000000, sign_exp: 0x403D }], F80 { signif: 0xD4D8D6190E5F0BE5, sign_exp: 0xBFFE }),
        ("tan", &[F80 { signif: 0xE000000000000000, sign_exp: 0x403D }], F80 { signif: 0xAB13E3C20E23C58A, sign_exp: 0x3FFE }),
        ("atan", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }, F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }], F80 { signif: 0xC90FDAA22168C235, sign_exp: 0x3FFE }),
        ("atan", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }, F80 { signif: 0x8000000000000000, sign_exp: 0x4000 }], F80 { signif: 0xED63382B0DDA7B45, sign_exp: 0x3FFD }),
        ("atan", &[F80 { signif: 0xC000000000000000, sign_exp: 0xC000 }, F80 { signif: 0x8000000000000000, sign_exp: 0x3FFE }], F80 { signif: 0xB3EC431DE4CDE4C9, sign_exp: 0xBFFF }),
        ("atan", &[F80 { signif: 0xA2425FF75E14FC32, sign_exp: 0x3F9B }, F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }], F80 { signif: 0xA2425FF75E14FC32, sign_exp: 0x3F9B }),
        ("atan", &[F80 { signif: 0x8000000000000000, sign_exp: 0x4000 }, F80 { signif: 0xDBE6FECEBDEDD5BF, sign_exp: 0xBFDD }], F80 { signif: 0xC90FDAA23CE5A20F, sign_exp: 0x3FFF }),
        ("atan", &[F80 { signif: 0x8000000000000000, sign_exp: 0xBFFF }, F80 { signif: 0x8000000000000000, sign_exp: 0xBFFF }], F80 { signif: 0x96CBE3F9990E91A8, sign_exp: 0xC000 }),
        ("atan", &[F80 { signif: 0xB333333333333333, sign_exp: 0x3FFE }, F80 { signif: 0x999999999999999A, sign_exp: 0xBFFD }], F80 { signif: 0xFCE3591C6321A3DF, sign_exp: 0x3FFF }),
        ("atan", &[F80 { signif: 0xA000000000000000, sign_exp: 0x4001 }, F80 { signif: 0x83126E978D4FDF3B, sign_exp: 0x3FF5 }], F80 { signif: 0xC9094CE96818FE34, sign_exp: 0x3FFF }),
        ("f2xm1", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFE }], F80 { signif: 0xD413CCCFE7799211, sign_exp: 0x3FFD }),
        ("f2xm1", &[F80 { signif: 0x8000000000000000, sign_exp: 0xBFFE }], F80 { signif: 0x95F619980C4336F7, sign_exp: 0xBFFD }),
        ("f2xm1", &[F80 { signif: 0xDBE6FECEBDEDD5BF, sign_exp: 0x3FDD }], F80 { signif: 0x986CB7A12110919D, sign_exp: 0x3FDD }),
        ("f2xm1", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }], F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }),
        ("f2xm1", &[F80 { signif: 0x8000000000000000, sign_exp: 0xBFFF }], F80 { signif: 0x8000000000000000, sign_exp: 0xBFFE }),
        ("f2xm1", &[F80 { signif: 0x999999999999999A, sign_exp: 0x3FFD }], F80 { signif: 0xECB11EFFE0CA3870, sign_exp: 0x3FFC }),
        ("f2xm1", &[F80 { signif: 0xFD70A3D70A3D70A4, sign_exp: 0xBFFE }], F80 { signif: 0xFE38293BFB0F4572, sign_exp: 0xBFFD }),
        ("f2xm1", &[F80 { signif: 0xFFBE76C8B4395810, sign_exp: 0x3FFE }], F80 { signif: 0xFFA52DE61C11F256, sign_exp: 0x3FFE }),
        ("f2xm1", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FB9 }], F80 { signif: 0xB17217F7D1CF79AC, sign_exp: 0x3FB8 }),
        ("f2xm1", &[F80 { signif: 0xD1B71758E219652C, sign_exp: 0x3FF1 }], F80 { signif: 0x915E587B74A02B50, sign_exp: 0x3FF1 }),
        ("yl2x", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }, F80 { signif: 0xA000000000000000, sign_exp: 0x4002 }], F80 { signif: 0xD49A784BCD1B8AFE, sign_exp: 0x4000 }),
        ("yl2x", &[F80 { signif: 0x8000000000000000, sign_exp: 0x4000 }, F80 { signif: 0x999999999999999A, sign_exp: 0x3FFD }], F80 { signif: 0xDE54E37A9C4BD22C, sign_exp: 0xC000 }),
        ("yl2x", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }, F80 { signif: 0x8000000000000000, sign_exp: 0x4063 }], F80 { signif: 0xC800000000000000, sign_exp: 0x4005 }),
        ("yl2x", &[F80 { signif: 0xC000000000000000, sign_exp: 0xC000 }, F80 { signif: 0xC000000000000000, sign_exp: 0x3FFF }], F80 { signif: 0xE0A02756F9C1CB6F, sign_exp: 0xBFFF }),
        ("yl2x", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }, F80 { signif: 0xA666666666666666, sign_exp: 0x017F }], F80 { signif: 0xF9FE7C6772F3E09F, sign_exp: 0xC00C }),
        ("yl2x", &[F80 { signif: 0xCCCCCCCCCCCCCCCD, sign_exp: 0x3FFB }, F80 { signif: 0x800000D6BF94D5E5, sign_exp: 0x3FFF }], F80 { signif: 0xF7DA654F28F21CEA, sign_exp: 0x3FE4 }),
        ("yl2x", &[F80 { signif: 0xE000000000000000, sign_exp: 0x4001 }, F80 { signif: 0xC000000000000000, sign_exp: 0x3FFE }], F80 { signif: 0xB9EFD21A874892A9, sign_exp: 0xC000 }),
        ("yl2xp1", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }, F80 { signif: 0xDBE6FECEBDEDD5BF, sign_exp: 0x3FDD }], F80 { signif: 0x9EA0415B6F908C1F, sign_exp: 0x3FDE }),
        ("yl2xp1", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }, F80 { signif: 0x8000000000000000, sign_exp: 0xBFFD }], F80 { signif: 0xD47FCB8C0852F0C1, sign_exp: 0xBFFD }),
        ("yl2xp1", &[F80 { signif: 0xC000000000000000, sign_exp: 0x4000 }, F80 { signif: 0x947AE147AE147AE1, sign_exp: 0x3FFD }], F80 { signif: 0x8D120B94AF870B5C, sign_exp: 0x3FFF }),
        ("yl2xp1", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }, F80 { signif: 0x8000000000000000, sign_exp: 0x3FFE }], F80 { signif: 0x95C01A39FBD687A0, sign_exp: 0x3FFE }),
        ("yl2xp1", &[F80 { signif: 0x8000000000000000, sign_exp: 0xC000 }, F80 { signif: 0x94A4CF2019D7BA15, sign_exp: 0x1911 }], F80 { signif: 0xD67299553AFDD43E, sign_exp: 0x9912 }),
        ("yl2xp1", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }, F80 { signif: 0x95E9E1B089A02752, sign_exp: 0xBFFD }], F80 { signif: 0xFFE7129F98BE75FC, sign_exp: 0xBFFD }),
        ("yl2xp1", &[F80 { signif: 0x8000000000000000, sign_exp: 0x3FFF }, F80 { signif: 0x8000000000000000, sign_exp: 0x3FBF }], F80 { signif: 0xB8AA3B295C17F0BB, sign_exp: 0x3FBF }),
        ("sqrt", &[F80 { signif: 0x8000000000000000, sign_exp: 0x4000 }], F80 { signif: 0xB504F333F9DE6484, sign_exp: 0x3FFF }),
        ("sqrt", &[F80 { signif: 0xC000000000000000, sign_exp: 0x4000 }], F80 { signif: 0xDDB3D742C265539E, sign_exp: 0x3FFF }),
        ("sqrt", &[F80 { signif: 0xCCCCCCCCCCCCCCCD, sign_exp: 0x3FFB }], F80 { signif: 0xA1E89B12424876DA, sign_exp: 0x3FFD }),
        ("sqrt", &[F80 { signif: 0x9C3D73864F3805C0, sign_exp: 0x0C17 }], F80 { signif: 0x8D6AB6B8952EBF81, sign_exp: 0x260B }),
        ("sqrt", &[F80 { signif: 0xE000000000000000, sign_exp: 0x7E81 }], F80 { signif: 0xA953FD4E97C74DBC, sign_exp: 0x5F40 }),
];

#[test]
fn transcendentals_round_correctly_on_reference_values() {
    let mut bad = Vec::new();
    for (name, args, want) in TABLE {
        let got = match *name {
            "sin" => trig(args[0], 0, FCW).unwrap(),
            "cos" => trig(args[0], 1, FCW).unwrap(),
            "tan" => trig(args[0], 3, FCW).unwrap(),
            "atan" => atan2(args[0], args[1], FCW),
            "f2xm1" => exp2m1(args[0], FCW),
            "yl2x" => ylog2(args[0], args[1], false, FCW),
            "yl2xp1" => ylog2(args[0], args[1], true, FCW),
            _ => sqrt(args[0], FCW),
        };
        if got.value != Some(*want) {
            bad.push(format!("{name}{args:x?}: got {:x?}, want {want:x?}", got.value));
        }
    }
    assert!(bad.is_empty(), "{} of {} wrong:\n{}", bad.len(), TABLE.len(), bad.join("\n"));
}

fn flags_of(o: super::Outcome) -> u16 {
    o.flags
}

#[test]
fn one_third_under_precision_and_rounding_control() {
    let third = |fcw| binop(ONE, THREE, DIV, fcw);
    let o = third(FCW);
    assert_eq!(o.value, Some(f(0xAAAA_AAAA_AAAA_AAAB, 0x3FFD)));
    assert_eq!((o.flags, o.up), (PE, true));
    // Rounding down, toward zero: truncated; up: as nearest.
    assert_eq!(third(FCW | 0x400).value, Some(f(0xAAAA_AAAA_AAAA_AAAA, 0x3FFD)));
    assert_eq!(third(FCW | 0xC00).value, Some(f(0xAAAA_AAAA_AAAA_AAAA, 0x3FFD)));
    assert!(!third(FCW | 0xC00).up);
    assert_eq!(third(FCW | 0x800).value, Some(f(0xAAAA_AAAA_AAAA_AAAB, 0x3FFD)));
    // PC = double: 53 bits; PC = single: 24 bits; the exponent range stays extended.
    assert_eq!(third(0x027F).value, Some(f(0xAAAA_AAAA_AAAA_A800, 0x3FFD)));
    assert_eq!(third(0x007F).value, Some(f(0xAAAA_AB00_0000_0000, 0x3FFD)));
    // -1/3 rounded down grows in magnitude.
    let o = binop(f(1 << 63, 0xBFFF), THREE, DIV, FCW | 0x400);
    assert_eq!((o.value, o.up), (Some(f(0xAAAA_AAAA_AAAA_AAAB, 0xBFFD)), true));
}

#[test]
fn special_operands_of_the_basic_operations() {
    let inf = f(1 << 63, 0x7FFF);
    let ninf = f(1 << 63, 0xFFFF);
    let zero = f(0, 0);
    let nzero = f(0, 0x8000);
    assert_eq!(binop(inf, inf, SUB, FCW).value, Some(INDEFINITE));
    assert_eq!(flags_of(binop(inf, ninf, ADD, FCW)), IE);
    assert_eq!(binop(zero, inf, MUL, FCW).value, Some(INDEFINITE));
    assert_eq!(binop(zero, zero, DIV, FCW).value, Some(INDEFINITE));
    let o = binop(ONE, nzero, DIV, FCW);
    assert_eq!((o.value, o.flags), (Some(ninf), ZE));
    assert_eq!(binop(ONE, nzero, DIV, FCW & !ZE).value, None, "unmasked ZE: no result");
    assert_eq!(binop(ONE, ONE, SUB, FCW).value, Some(zero), "x - x = +0");
    assert_eq!(binop(ONE, ONE, SUB, FCW | 0x400).value, Some(nzero), "x - x = -0 rounding down");
    assert_eq!(binop(nzero, zero, ADD, FCW).value, Some(zero));
    assert_eq!(binop(nzero, nzero, ADD, FCW).value, Some(nzero));
    // Unsupported encodings are invalid operands.
    for bad in [f(0x4000_0000_0000_0000, 0x3FFF), f(0, 0x7FFF), f(0x4000_0000_0000_0001, 0x7FFF)] {
        assert_eq!(binop(ONE, bad, ADD, FCW).value, Some(INDEFINITE), "{bad:x?}");
        assert_eq!(binop(ONE, bad, ADD, FCW).flags, IE);
        assert_eq!(sqrt(bad, FCW).value, Some(INDEFINITE));
        assert_eq!(binop(ONE, bad, MUL, FCW & !IE).value, None);
    }
    // NaNs: an SNaN is quieted with IE; a QNaN passes without.
    let snan = f(0x8000_0000_0000_0001, 0x7FFF);
    let qnan = f(0xC000_0000_0000_0005, 0xFFFF);
    assert_eq!(binop(ONE, snan, ADD, FCW).value, Some(f(0xC000_0000_0000_0001, 0x7FFF)));
    assert_eq!(binop(ONE, snan, ADD, FCW).flags, IE);
    assert_eq!(binop(qnan, ONE, DIV, FCW).flags, 0);
    assert_eq!(binop(qnan, f(0, 0), DIV, FCW).flags, 0, "a QNaN wins over a zero-divide");
}

#[test]
fn denormals_underflow_and_overflow() {
    let min_normal = f(1 << 63, 0x0001);
    let denormal = f(1 << 62, 0x0000);
    // min_normal / 2 is exact: a denormal, no underflow when masked.
    let o = binop(min_normal, f(1 << 63, 0x4000), DIV, FCW);
    assert_eq!((o.value, o.flags), (Some(denormal), 0));
    // Unmasked, the exact tiny result still underflows, delivered with the exponent biased.
    let o = binop(min_normal, f(1 << 63, 0x4000), DIV, FCW & !UE);
    assert_eq!((o.value, o.flags), (Some(f(1 << 63, 0x6000)), UE));
    // A denormal operand raises DE; unmasked, nothing is stored.
    assert_eq!(binop(denormal, ONE, MUL, FCW).flags, DE);
    assert_eq!(binop(denormal, ONE, MUL, FCW & !DE).value, None);
    // An inexact tiny result: UE and PE.
    let o = binop(f(0xC000_0000_0000_0001, 0x0001), f(1 << 63, 0x4000), DIV, FCW);
    assert_eq!(o.flags, UE | PE);
    assert_eq!(o.value, Some(f(0x6000_0000_0000_0000, 0)), "ties to even");
    // Overflow: infinity when masked, the biased value when not.
    let max = f(u64::MAX, 0x7FFE);
    let o = binop(max, max, MUL, FCW);
    assert_eq!((o.value, o.flags, o.up), (Some(f(1 << 63, 0x7FFF)), OE | PE, true));
    let o = binop(max, max, MUL, FCW | 0xC00);
    assert_eq!(o.value, Some(max), "toward zero: the largest finite value");
    let o = binop(max, max, MUL, FCW & !OE);
    assert_eq!(o.value.unwrap().sign_exp, 32767 + 16383 - 24576, "biased by 24576");
    // With PC = single the largest finite value has 24 bits.
    let o = binop(max, max, MUL, 0x0C7F);
    assert_eq!(o.value, Some(f(0xFFFF_FF00_0000_0000, 0x7FFE)));
}

#[test]
fn square_root() {
    let two = f(1 << 63, 0x4000);
    assert_eq!(sqrt(two, FCW).value, Some(f(0xB504_F333_F9DE_6484, 0x3FFF)));
    assert_eq!(sqrt(f(0x9000_0000_0000_0000, 0x4002), FCW).value, Some(THREE), "sqrt(9)");
    assert_eq!(sqrt(f(0x9000_0000_0000_0000, 0x4002), FCW).flags, 0);
    assert_eq!(sqrt(f(1 << 63, 0xBFFF), FCW).value, Some(INDEFINITE));
    assert_eq!(sqrt(f(0, 0x8000), FCW).value, Some(f(0, 0x8000)), "sqrt(-0) = -0");
    assert_eq!(sqrt(f(1, 0), FCW).value, Some(f(0xB504_F333_F9DE_6484, 16383 - 8223)), "sqrt(2^-16445)");
}

#[test]
fn fprem_and_fprem1() {
    let five = f(0xA000_0000_0000_0000, 0x4001);
    let (o, cc) = remainder(five, THREE, false, FCW);
    assert_eq!((o.value, cc), (Some(f(1 << 63, 0x4000)), sw::C1), "5 rem 3 = 2, q = 1");
    let (o, cc) = remainder(five, THREE, true, FCW);
    assert_eq!((o.value, cc), (Some(f(1 << 63, 0xBFFF)), sw::C3), "IEEE: 5 rem 3 = -1, q = 2");
    // 1.5 × 2^100 rem 7: reduced over several partial steps, C2 set until the last.
    let mut a = f(0xC000_0000_0000_0000, 0x3FFF + 100);
    let seven = f(0xE000_0000_0000_0000, 0x4001);
    let mut steps = 0;
    loop {
        let (o, cc) = remainder(a, seven, false, FCW);
        a = o.value.unwrap();
        steps += 1;
        if cc & sw::C2 == 0 {
            break;
        }
        assert!(steps < 10);
    }
    // 1.5 × 2^100 = 3 × 2^99; 2^99 mod 7 = 2^(99 mod 3) = 1; so 3 mod 7 = 3.
    assert_eq!(a, THREE);
    assert!(steps >= 2);
    // Invalid cases and the zero remainder's sign.
    assert_eq!(remainder(f(1 << 63, 0x7FFF), ONE, false, FCW).0.value, Some(INDEFINITE));
    assert_eq!(remainder(ONE, f(0, 0), false, FCW).0.value, Some(INDEFINITE));
    assert_eq!(remainder(f(0xC000_0000_0000_0000, 0xC001), THREE, false, FCW).0.value, Some(f(0, 0x8000)));
}

#[test]
fn rounding_to_integers() {
    let two_and_half = f(0xA000_0000_0000_0000, 0x4000);
    let neg = f(0xA000_0000_0000_0000, 0xC000);
    let two = f(1 << 63, 0x4000);
    assert_eq!(round_to_int(two_and_half, FCW).value, Some(two));
    assert_eq!(round_to_int(two_and_half, FCW | 0x800).value, Some(THREE));
    assert_eq!(round_to_int(neg, FCW | 0x400).value, Some(f(0xC000_0000_0000_0000, 0xC000)));
    assert_eq!(round_to_int(neg, FCW | 0xC00).value, Some(f(1 << 63, 0xC000)));
    assert_eq!(round_to_int(f(1 << 63, 0xBFFE), FCW).value, Some(f(0, 0x8000)), "-0.5 -> -0");
    assert_eq!(round_to_int(two_and_half, FCW).flags, PE);
    assert_eq!(to_int(f(1 << 63, 0x3FFF + 40), 32, 0), Err(IE));
    assert_eq!(to_int(f(1 << 63, 0xC000 + 30), 32, 0), Ok((-(1i128 << 31), 0, false)));
    assert_eq!(to_int(f(1 << 63, 0x4000 + 30), 32, 0), Err(IE), "+2^31 overflows");
    assert_eq!(to_int(two_and_half, 16, 3), Ok((2, PE, false)));
    assert_eq!(to_int(f(0xC000_0000_0000_0000, 0x7FFF), 64, 0), Err(IE), "NaN");
}

#[test]
fn scale_and_constants() {
    let o = scale(ONE, f(1 << 63, 0x3FFF + 14), FCW);
    assert_eq!((o.value, o.flags), (Some(f(1 << 63, 0x7FFF)), OE | PE), "1 × 2^16384");
    let o = scale(ONE, f(0x8020_0000_0000_0000, 0xC00D), FCW);
    assert_eq!((o.value, o.flags), (Some(f(1 << 45, 0)), 0), "1 × 2^-16400 is an exact denormal");
    let o = scale(THREE, f(0xB000_0000_0000_0000, 0xBFFF), FCW);
    assert_eq!(o.value, Some(f(0xC000_0000_0000_0000, 0x3FFF)), "trunc(-1.375) = -1");
    assert_eq!(scale(f(0, 0), f(1 << 63, 0x7FFF), FCW).value, Some(INDEFINITE), "0 × 2^+inf");
    // The constants round by the rounding control (the x87's table).
    assert_eq!(constant(2, 0), f(0xC90F_DAA2_2168_C235, 0x4000));
    assert_eq!(constant(2, 1), f(0xC90F_DAA2_2168_C234, 0x4000));
    assert_eq!(constant(3, 0), f(0xD49A_784B_CD1B_8AFE, 0x4000));
    assert_eq!(constant(3, 2), f(0xD49A_784B_CD1B_8AFF, 0x4000));
    assert_eq!(constant(4, 0), f(0xB8AA_3B29_5C17_F0BC, 0x3FFF));
    assert_eq!(constant(4, 3), f(0xB8AA_3B29_5C17_F0BB, 0x3FFF));
    assert_eq!(constant(5, 0), f(0x9A20_9A84_FBCF_F799, 0x3FFD));
    assert_eq!(constant(6, 0), f(0xB172_17F7_D1CF_79AC, 0x3FFE));
    assert_eq!(constant(6, 1), f(0xB172_17F7_D1CF_79AB, 0x3FFE));
}

#[test]
fn bcd() {
    let v = from_bcd(0x1234_5678_9012_3456, 0x8078);
    assert_eq!(to_int(v, 64, 0), Ok((-781_234_567_890_123_456, 0, false)));
    assert_eq!(from_bcd(0, 0x8000), f(0, 0x8000), "-0");
}

#[test]
fn transcendental_special_cases() {
    let inf = f(1 << 63, 0x7FFF);
    assert_eq!(trig(inf, 0, FCW).unwrap().value, Some(INDEFINITE));
    assert!(trig(f(1 << 63, 0x3FFF + 63), 0, FCW).is_none(), "|x| >= 2^63: C2, operand unchanged");
    assert!(trig(f(u64::MAX, 0x3FFF + 62), 1, FCW).is_some());
    assert_eq!(trig(f(0, 0x8000), 0, FCW).unwrap().value, Some(f(0, 0x8000)));
    assert_eq!(trig(f(0, 0x8000), 1, FCW).unwrap().value, Some(ONE));
    // sin of a tiny x is x, inexact; rounding toward zero gives the value just below.
    let tiny = f(1 << 63, 0x3FFF - 100);
    let o = trig(tiny, 0, FCW).unwrap();
    assert_eq!((o.value, o.flags), (Some(tiny), PE));
    assert_eq!(trig(tiny, 0, FCW | 0xC00).unwrap().value, Some(f(u64::MAX, 0x3FFF - 101)));
    assert_eq!(trig(tiny, 3, FCW | 0x800).unwrap().value, Some(f((1 << 63) + 1, 0x3FFF - 100)), "tan x > x");
    let o = trig(f(1 << 62, 0), 0, FCW).unwrap();
    assert_eq!(o.flags, DE | UE | PE, "sin of a denormal");
    // atan2 quadrants and signed zeros.
    let neg_one = f(1 << 63, 0xBFFF);
    let pi = f(0xC90F_DAA2_2168_C235, 0x4000);
    assert_eq!(atan2(f(0, 0), neg_one, FCW).value, Some(pi));
    assert_eq!(atan2(f(0, 0x8000), neg_one, FCW).value, Some(f(pi.signif, 0xC000)));
    assert_eq!(atan2(f(0, 0x8000), ONE, FCW).value, Some(f(0, 0x8000)));
    assert_eq!(atan2(inf, f(1 << 63, 0xFFFF), FCW).value, Some(f(0x96CB_E3F9_990E_91A8, 0x4000)), "3pi/4");
    // Logarithms: ZE for log(0) with a finite y, invalid for negative x.
    let o = ylog2(ONE, f(0, 0), false, FCW);
    assert_eq!((o.value, o.flags), (Some(f(1 << 63, 0xFFFF)), ZE));
    assert_eq!(ylog2(ONE, neg_one, false, FCW).value, Some(INDEFINITE));
    assert_eq!(ylog2(f(0, 0), inf, false, FCW).value, Some(INDEFINITE), "0 × log2(inf)");
    let o = ylog2(THREE, f(1 << 63, 0x3FFF + 10), false, FCW);
    assert_eq!((o.value, o.flags), (Some(f(0xF000_0000_0000_0000, 0x4003)), 0), "3 × log2(1024) = 30 exactly");
    assert_eq!(ylog2(neg_one, f(0, 0x8000), true, FCW).value, Some(f(0, 0)), "-1 × log2(1 - 0) = +0");
    assert_eq!(exp2m1(f(1 << 63, 0xFFFF), FCW).value, Some(neg_one));
    assert_eq!(exp2m1(ONE, FCW).value, Some(ONE));
    assert_eq!(exp2m1(ONE, FCW).flags, 0, "2^1 - 1 is exact");
    assert_eq!(exp2m1(neg_one, FCW).value, Some(f(1 << 63, 0xBFFE)));
}

#[test]
fn every_esc_encoding_is_claimed() {
    let mut missing = Vec::new();
    for bits in [16, 32, 64] {
        for b0 in 0xD8u8..=0xDF {
            for modrm in 0..=255u8 {
                let bytes = [b0, modrm, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
                let Some((i, instr)) = crate::decode::decode_with(&bytes, bits, 0) else { continue };
                if instr.is_invalid() {
                    continue;
                }
                let mem = (0..instr.op_count()).any(|k| instr.op_kind(k) == iced_x86::OpKind::Memory);
                let mut j = i.clone();
                if super::select(&mut j, &instr, mem).is_none() {
                    missing.push(format!("{bits}-bit {b0:02x} {modrm:02x}: {:?}", instr.code()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// A small deterministic generator for the robustness test.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }
}

/// Random x87 instructions on random register contents (unnormals, pseudo-NaNs, denormals,
/// infinities included), under every control word: nothing may panic.
#[test]
fn random_x87_code_never_panics() {
    let mut rng = Lcg(0x5EED);
    let specials = [0u16, 0x7FFF, 0xFFFF, 0x8000, 0x3FFF, 0x0001, 0x7FFE, 0x4040, 0x3F00];
    for round in 0..60 {
        let mut bus = FlatBus::new(1 << 20);
        let ram = bus.ram_mut();
        // Interrupt vectors all point at an IRET.
        for v in 0..256 {
            ram[v * 4..v * 4 + 4].copy_from_slice(&[0x00, 0x0F, 0x00, 0x00]);
        }
        ram[0xF00] = 0xCF;
        for k in 0..0x4000 {
            // Mostly ESC opcodes, with WAIT, FCOMI's flag consumers and plain bytes mixed in.
            let b = rng.next();
            ram[0x1000 + k] = match b % 8 {
                0..=3 => 0xD8 + (b >> 8) as u8 % 8,
                4 => 0x9B,
                _ => (b >> 16) as u8,
            };
        }
        ram[0x5000] = 0xF4;
        let mut s = CpuState::real_mode_at(0, 0x1000);
        s.gpr = [0x1234; 16];
        for r in s.fpu.regs.iter_mut() {
            let e = specials[(rng.next() % specials.len() as u64) as usize];
            *r = F80 { signif: rng.next() << (rng.next() % 12), sign_exp: e ^ ((rng.next() % 4) as u16) };
        }
        s.fpu.ftw = rng.next() as u16;
        s.fpu.fsw = rng.next() as u16 & 0x3800;
        s.fpu.fcw = (rng.next() as u16 & 0x0F3F) | 0x40;
        if round % 3 == 0 {
            s.cr0 |= 1 << 5; // NE: #MF for pending exceptions
        }
        let mut cpu = Cpu::new();
        cpu.set_state(&s);
        let r = cpu.run(&mut bus, 20_000);
        assert!(matches!(r.stop, Stop::Budget | Stop::Halted | Stop::Shutdown(_)), "{r:?}");
    }
}

#[test]
fn fop_is_the_opcode_and_modrm() {
    let cases: &[(&[u8], u32, u16)] = &[
        (&[0xDD, 0x40, 0x12], 16, 0x540),             // fld qword [bx+si+0x12]
        (&[0xD9, 0x06, 0x34, 0x12], 16, 0x106),       // fld dword [0x1234]
        (&[0xDB, 0x2E, 0x34, 0x12], 16, 0x32E),       // fld tword [0x1234]
        (&[0xD8, 0x46, 0x00], 16, 0x046),             // fadd dword [bp+0]
        (&[0xDC, 0x04, 0x24], 32, 0x404),             // fadd qword [esp]
        (&[0xDE, 0x84, 0x88, 0, 1, 0, 0], 32, 0x684), // fiadd word [eax+ecx*4+0x100]
        (&[0xD9, 0x45, 0x08], 32, 0x145),             // fld dword [ebp+8]
        (&[0xD9, 0x05, 0, 0, 0, 0], 64, 0x105),       // fld dword [rip]
        (&[0xDE, 0xE9], 32, 0x6E9),                   // fsubp st(1), st
        (&[0xD9, 0xCB], 16, 0x1CB),                   // fxch st(3)
        (&[0xD9, 0xFE], 16, 0x1FE),                   // fsin
        (&[0xDA, 0xE9], 16, 0x2E9),                   // fucompp
        (&[0xDF, 0xE0], 16, 0x7E0),                   // fnstsw ax
    ];
    for &(bytes, bits, fop) in cases {
        let (i, instr) = crate::decode::decode_with(bytes, bits, 0).unwrap();
        let mut j = i.clone();
        let mem = (0..instr.op_count()).any(|k| instr.op_kind(k) == iced_x86::OpKind::Memory);
        super::select(&mut j, &instr, mem).unwrap();
        assert_eq!((j.imm2 & 0x7FF) as u16, fop, "{bytes:02x?}");
    }
}

/// Runs `code` (then HLT) in real mode at 0000:1000 with `data` at 0x2000.
fn run_code(code: &[u8], data: &[u8]) -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new(1 << 16);
    bus.ram_mut()[0x1000..0x1000 + code.len()].copy_from_slice(code);
    bus.ram_mut()[0x1000 + code.len()] = 0xF4;
    bus.ram_mut()[0x2000..0x2000 + data.len()].copy_from_slice(data);
    let mut cpu = Cpu::new();
    cpu.set_state(&CpuState::real_mode_at(0, 0x1000));
    let r = cpu.run(&mut bus, 1000);
    assert_eq!(r.stop, Stop::Halted);
    (cpu, bus)
}

#[test]
fn unmasked_overflow_stores_nothing_to_memory_and_leaves_the_stack() {
    // fldcw [0x2000]; fld tword [0x2002]; fst dword [0x2010]; fstp qword [0x2018]
    let code = [0xD9, 0x2E, 0x00, 0x20, 0xDB, 0x2E, 0x02, 0x20, 0xD9, 0x16, 0x10, 0x20, 0xDD, 0x1E, 0x18, 0x20];
    let mut data = vec![0u8; 0x20];
    data[0..2].copy_from_slice(&(FCW & !OE).to_le_bytes());
    data[2..10].copy_from_slice(&(1u64 << 63).to_le_bytes());
    data[10..12].copy_from_slice(&(0x3FFF + 1000u16).to_le_bytes()); // 2^1000
    let (cpu, bus) = run_code(&code, &data);
    let s = cpu.state();
    assert_eq!(&bus.ram()[0x2010..0x2014], &[0; 4], "no single stored");
    assert_eq!(&bus.ram()[0x2018..0x2020], &(1u64 << 62 | 0x3E7u64 << 52).to_le_bytes(), "the double is exact");
    assert_eq!(s.fpu.fsw & (OE | sw::ES | sw::B), OE | sw::ES | sw::B);
    assert_eq!((s.fpu.fsw >> 11) & 7, 0, "popped by the FSTP");
    assert!(cpu.fpu_error(), "FERR#: the pending exception");
}

#[test]
fn unmasked_underflow_delivers_the_biased_result_to_the_register() {
    // fldcw [0x2000]; fld tword [0x2002]; fmul st0, st0; fstp tword [0x2010]
    let code = [0xD9, 0x2E, 0x00, 0x20, 0xDB, 0x2E, 0x02, 0x20, 0xD8, 0xC8, 0xDB, 0x3E, 0x10, 0x20];
    let mut data = vec![0u8; 0x20];
    data[0..2].copy_from_slice(&(FCW & !UE).to_le_bytes());
    data[2..10].copy_from_slice(&(1u64 << 63).to_le_bytes());
    data[10..12].copy_from_slice(&(0x3FFF - 10000u16).to_le_bytes()); // 2^-10000
    let (cpu, bus) = run_code(&code, &data);
    assert_eq!(&bus.ram()[0x2010..0x2018], &(1u64 << 63).to_le_bytes());
    let se = u16::from_le_bytes([bus.ram()[0x2018], bus.ram()[0x2019]]);
    assert_eq!(se, (0x3FFF - 20000 + 24576) as u16, "2^-20000 biased by 2^24576");
    assert_eq!(cpu.state().fpu.fsw & 0xFF, UE | sw::ES);
}
