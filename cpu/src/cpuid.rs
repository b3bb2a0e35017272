//! CPUID: reports exactly what this interpreter implements, and nothing more, so that
//! software which trusts CPUID never takes a path that would #UD.

use crate::cpu::Cpu;

/// Highest basic and extended leaves.
const MAX_BASIC: u32 = 0x7;
const MAX_EXT: u32 = 0x8000_0008;

// Leaf 1 EDX.
const FPU: u32 = 1;
const PSE: u32 = 1 << 3;
const TSC: u32 = 1 << 4;
const MSR: u32 = 1 << 5;
const PAE: u32 = 1 << 6;
const CX8: u32 = 1 << 8;
const SEP: u32 = 1 << 11;
const MTRR: u32 = 1 << 12;
const PGE: u32 = 1 << 13;
const CMOV: u32 = 1 << 15;
const PAT: u32 = 1 << 16;
const PSE36: u32 = 1 << 17;
const CLFSH: u32 = 1 << 19;
// Leaf 1 ECX.
const CX16: u32 = 1 << 13;
const MOVBE: u32 = 1 << 22;
const POPCNT: u32 = 1 << 23;
// Leaf 7 EBX.
const BMI1: u32 = 1 << 3;
const SMEP: u32 = 1 << 7;
const BMI2: u32 = 1 << 8;
const ADX: u32 = 1 << 19;
const SMAP: u32 = 1 << 20;
// Leaf 0x80000001.
const LAHF_LM: u32 = 1;
const ABM: u32 = 1 << 5;
const SYSCALL: u32 = 1 << 11;
const NX: u32 = 1 << 20;
const RDTSCP: u32 = 1 << 27;
const LM: u32 = 1 << 29;

fn text(s: &[u8; 12]) -> [u32; 3] {
    let w = |k: usize| u32::from_le_bytes([s[k], s[k + 1], s[k + 2], s[k + 3]]);
    [w(0), w(4), w(8)]
}

impl Cpu {
    /// The four registers CPUID returns for `leaf` and `sub`-leaf: [EAX, EBX, ECX, EDX].
    pub(crate) fn cpuid_leaf(&self, leaf: u32, sub: u32) -> [u32; 4] {
        match leaf {
            0 => {
                let [b, d, c] = text(b"GenuineIntel");
                [MAX_BASIC, b, c, d]
            }
            // Family 6, model 15, stepping 1. EBX: CLFLUSH line size 8 (64 bytes), one
            // logical processor.
            1 => [0x0000_06F1, (8 << 8) | (1 << 16), CX16 | MOVBE | POPCNT, FPU | PSE | TSC | MSR | PAE | CX8 | SEP | MTRR | PGE | CMOV | PAT | PSE36 | CLFSH],
            7 if sub == 0 => [0, BMI1 | SMEP | BMI2 | ADX | SMAP, 0, 0],
            0x8000_0000 => [MAX_EXT, 0, 0, 0],
            0x8000_0001 => [0, 0, LAHF_LM | ABM, SYSCALL | NX | RDTSCP | LM],
            0x8000_0002..=0x8000_0004 => {
                let brand = b"Ferrite virtual x86-64 CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
                let k = ((leaf - 0x8000_0002) * 16) as usize;
                let w = |o: usize| u32::from_le_bytes(brand[k + o..k + o + 4].try_into().unwrap());
                [w(0), w(4), w(8), w(12)]
            }
            // 40 physical address bits, 48 linear.
            0x8000_0008 => [40 | (48 << 8), 0, 0, 0],
            _ => [0, 0, 0, 0],
        }
    }
}
