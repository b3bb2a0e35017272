//! CPUID: reports exactly what this interpreter implements, and nothing more, so that
//! software which trusts CPUID never takes a path that would #UD.

use crate::cpu::Cpu;

/// Highest basic and extended leaves.
const MAX_BASIC: u32 = 0xD;

/// Cache line size in bytes (CLFLUSH, leaf 4).
const LINE: u32 = 64;

/// A cache as leaf 4 describes it.
struct Cache {
    /// 1 data, 2 instruction, 3 unified.
    kind: u32,
    level: u32,
    size: u32,
    ways: u32,
}

/// The caches reported: what a Core 2-era part has, per core L1s and a shared L2. Nothing
/// is simulated; software sizes buffers and reports from these.
const CACHES: [Cache; 3] = [
    Cache { kind: 1, level: 1, size: 32 << 10, ways: 8 },
    Cache { kind: 2, level: 1, size: 32 << 10, ways: 8 },
    Cache { kind: 3, level: 2, size: 4 << 20, ways: 16 },
];
const MAX_EXT: u32 = 0x8000_0008;

// Leaf 1 EDX.
const FPU: u32 = 1;
const PSE: u32 = 1 << 3;
const TSC: u32 = 1 << 4;
const MSR: u32 = 1 << 5;
const PAE: u32 = 1 << 6;
const CX8: u32 = 1 << 8;
const APIC: u32 = 1 << 9;
const SEP: u32 = 1 << 11;
const MTRR: u32 = 1 << 12;
const PGE: u32 = 1 << 13;
const CMOV: u32 = 1 << 15;
const PAT: u32 = 1 << 16;
const PSE36: u32 = 1 << 17;
const CLFSH: u32 = 1 << 19;
const MMX: u32 = 1 << 23;
const FXSR: u32 = 1 << 24;
const SSE: u32 = 1 << 25;
const SSE2: u32 = 1 << 26;
const HTT: u32 = 1 << 28;
// Leaf 1 ECX.
const SSE3: u32 = 1;
const PCLMULQDQ: u32 = 1 << 1;
const SSSE3: u32 = 1 << 9;
const CX16: u32 = 1 << 13;
const SSE4_1: u32 = 1 << 19;
const SSE4_2: u32 = 1 << 20;
const MOVBE: u32 = 1 << 22;
const POPCNT: u32 = 1 << 23;
const TSC_DEADLINE: u32 = 1 << 24;
const XSAVE: u32 = 1 << 26;
const OSXSAVE: u32 = 1 << 27;
const RDRAND: u32 = 1 << 30;
// Leaf 7 EBX.
const BMI1: u32 = 1 << 3;
const SMEP: u32 = 1 << 7;
const BMI2: u32 = 1 << 8;
const RDSEED: u32 = 1 << 18;
const ADX: u32 = 1 << 19;
const SMAP: u32 = 1 << 20;
// Leaf 7 EDX.
const ARCH_CAPABILITIES: u32 = 1 << 29;
// Leaf 0xD sub-leaf 1 EAX.
const XSAVEOPT: u32 = 1;
// Leaf 0x80000001.
const LAHF_LM: u32 = 1;
const ABM: u32 = 1 << 5;
const SYSCALL: u32 = 1 << 11;
const NX: u32 = 1 << 20;
const RDTSCP: u32 = 1 << 27;
const LM: u32 = 1 << 29;
const PAGE1GB: u32 = 1 << 26;

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
            // Family 6, model 15, stepping 1. EBX: CLFLUSH line size 8 (64 bytes), the
            // logical processor count and the initial APIC ID from the configuration.
            1 => {
                let cfg = &self.config;
                // OSXSAVE mirrors CR4.OSXSAVE.
                let osxsave = if self.s.cr4 & crate::simd::CR4_OSXSAVE != 0 { OSXSAVE } else { 0 };
                let deadline = if cfg.apic && cfg.tsc_deadline { TSC_DEADLINE } else { 0 };
                let ecx = SSE3 | PCLMULQDQ | SSSE3 | CX16 | SSE4_1 | SSE4_2 | MOVBE | POPCNT | deadline | XSAVE | osxsave | RDRAND;
                let apic = if cfg.apic { APIC } else { 0 };
                let htt = if cfg.cpus > 1 { HTT } else { 0 };
                let edx = FPU | PSE | TSC | MSR | PAE | CX8 | apic | SEP | MTRR | PGE | CMOV | PAT | PSE36 | CLFSH | MMX | FXSR | SSE | SSE2 | htt;
                let ebx = (8 << 8) | (u32::from(cfg.cpus.max(1)) << 16) | (u32::from(cfg.apic_id) << 24);
                [0x0000_06F1, ebx, ecx, edx]
            }
            // Deterministic cache parameters, one sub-leaf per cache, then a null one.
            4 => match CACHES.get(sub as usize) {
                Some(c) => {
                    let cores = u32::from(self.config.cpus.max(1)) - 1;
                    let sharing = if c.level == 2 { cores } else { 0 };
                    let eax = c.kind | (c.level << 5) | (1 << 8) | (sharing << 14) | ((cores & 0x3F) << 26);
                    let sets = c.size / (c.ways * LINE);
                    [eax, ((c.ways - 1) << 22) | (LINE - 1), sets - 1, 0]
                }
                None => [0; 4],
            },
            // EDX: IA32_ARCH_CAPABILITIES, which says the processor is not open to the
            // speculative-execution attacks (`msr::ARCH_CAPABILITIES`).
            7 if sub == 0 => [0, BMI1 | SMEP | BMI2 | RDSEED | ADX | SMAP, 0, ARCH_CAPABILITIES],
            // Extended topology: one thread per core (SMT level), `cpus` cores per package.
            0xB => {
                let id = u32::from(self.config.apic_id);
                let cpus = u32::from(self.config.cpus.max(1));
                match sub {
                    0 => [0, 1, 1 << 8, id],
                    1 => [32 - (cpus - 1).leading_zeros(), cpus, (2 << 8) | 1, id],
                    _ => [0, 0, sub & 0xFF, id],
                }
            }
            // XSAVE: the x87 and SSE components in the standard format (legacy region and
            // header); sub-leaf 1: XSAVEOPT only.
            0xD if sub == 0 => {
                let size = crate::simd::XSAVE_SIZE;
                [crate::simd::XCR0_SUPPORTED as u32, size, size, 0]
            }
            0xD if sub == 1 => [XSAVEOPT, 0, 0, 0],
            0x8000_0000 => [MAX_EXT, 0, 0, 0],
            0x8000_0001 => [0, 0, LAHF_LM | ABM, SYSCALL | NX | PAGE1GB | RDTSCP | LM],
            0x8000_0002..=0x8000_0004 => {
                let brand = b"Ferrite virtual x86-64 CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
                let k = ((leaf - 0x8000_0002) * 16) as usize;
                let w = |o: usize| u32::from_le_bytes(brand[k + o..k + o + 4].try_into().unwrap());
                [w(0), w(4), w(8), w(12)]
            }
            // L2: size in KiB, associativity code 8 (16-way), line size.
            0x8000_0006 => [0, 0, ((CACHES[2].size >> 10) << 16) | (8 << 12) | LINE, 0],
            // 40 physical address bits, 48 linear.
            0x8000_0008 => [40 | (48 << 8), 0, 0, 0],
            _ => [0, 0, 0, 0],
        }
    }
}
