//! Model-specific registers: the ones operating systems read and write. Any other number
//! faults (#GP), as on hardware, so guests probing with `rdmsr_safe` see what is missing.

use crate::cpu::Cpu;
use crate::fault::Fault;
use crate::seg::canonical;
use crate::state::sreg;

pub(crate) const TSC: u32 = 0x10;
pub(crate) const PLATFORM_ID: u32 = 0x17;
pub(crate) const APIC_BASE: u32 = 0x1B;
/// IA32_BIOS_SIGN_ID: the microcode revision (0: none loaded) after a write of 0 and CPUID.
pub(crate) const BIOS_SIGN_ID: u32 = 0x8B;
pub(crate) const TSC_DEADLINE: u32 = 0x6E0;
/// IA32_ARCH_CAPABILITIES (read-only): an interpreter executes nothing speculatively, so it
/// reports itself free of the speculative and microarchitectural-buffer attacks: RDCL_NO
/// (Meltdown: no kernel page-table isolation needed), SSB_NO, MDS_NO, IF_PSCHANGE_MC_NO,
/// TAA_NO, SBDR_SSDP_NO, FBSDP_NO, PSDP_NO, BHI_NO, PBRSB_NO, GDS_NO, RFDS_NO.
pub(crate) const ARCH_CAPABILITIES: u32 = 0x10A;
const ARCH_CAPABILITIES_VALUE: u64 =
    1 | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 13) | (1 << 14) | (1 << 15) | (1 << 20) | (1 << 24) | (1 << 26) | (1 << 27);
pub(crate) const MTRR_CAP: u32 = 0xFE;
pub(crate) const SYSENTER_CS: u32 = 0x174;
pub(crate) const SYSENTER_ESP: u32 = 0x175;
pub(crate) const SYSENTER_EIP: u32 = 0x176;
pub(crate) const MISC_ENABLE: u32 = 0x1A0;
pub(crate) const PAT: u32 = 0x277;
pub(crate) const MTRR_DEF_TYPE: u32 = 0x2FF;
pub(crate) const EFER: u32 = 0xC000_0080;
pub(crate) const STAR: u32 = 0xC000_0081;
pub(crate) const LSTAR: u32 = 0xC000_0082;
pub(crate) const CSTAR: u32 = 0xC000_0083;
pub(crate) const FMASK: u32 = 0xC000_0084;
pub(crate) const FS_BASE: u32 = 0xC000_0100;
pub(crate) const GS_BASE: u32 = 0xC000_0101;
pub(crate) const KERNEL_GS_BASE: u32 = 0xC000_0102;
pub(crate) const TSC_AUX: u32 = 0xC000_0103;

/// Variable-range MTRRs implemented (MTRRcap.VCNT).
const MTRR_VARIABLE: u32 = 8;

fn is_mtrr(n: u32) -> bool {
    matches!(n, 0x250 | 0x258 | 0x259 | 0x268..=0x26F | MTRR_DEF_TYPE) || (0x200..0x200 + 2 * MTRR_VARIABLE).contains(&n)
}

impl Cpu {
    pub(crate) fn read_msr(&self, n: u32) -> Option<u64> {
        let m = &self.s.msr;
        Some(match n {
            TSC => self.tsc(),
            PLATFORM_ID | BIOS_SIGN_ID => 0,
            ARCH_CAPABILITIES => ARCH_CAPABILITIES_VALUE,
            APIC_BASE => self.s.apic_base,
            TSC_DEADLINE if self.config.tsc_deadline => m.tsc_deadline,
            // Fixed-range MTRRs and write-combining supported, VCNT variable ranges.
            MTRR_CAP => 0x500 | u64::from(MTRR_VARIABLE),
            SYSENTER_CS => m.sysenter_cs,
            SYSENTER_ESP => m.sysenter_esp,
            SYSENTER_EIP => m.sysenter_eip,
            MISC_ENABLE => m.misc_enable,
            PAT => m.pat,
            EFER => self.s.efer,
            STAR => m.star,
            LSTAR => m.lstar,
            CSTAR => m.cstar,
            FMASK => m.fmask,
            FS_BASE => self.s.seg[sreg::FS].base,
            GS_BASE => self.s.seg[sreg::GS].base,
            KERNEL_GS_BASE => m.kernel_gs_base,
            TSC_AUX => m.tsc_aux,
            crate::pvclock::KVM_SYSTEM_TIME_NEW => m.kvm_system_time,
            n if is_mtrr(n) => m.mtrr.get(&n).copied().unwrap_or(0),
            _ => return None,
        })
    }

    pub(crate) fn write_msr(&mut self, n: u32, v: u64) -> Result<(), Fault> {
        let need_canonical = matches!(n, SYSENTER_ESP | SYSENTER_EIP | LSTAR | CSTAR | FS_BASE | GS_BASE | KERNEL_GS_BASE);
        if need_canonical && !canonical(v) {
            return Err(Fault::gp(0));
        }
        let m = &mut self.s.msr;
        match n {
            TSC => {
                self.s.tsc = v;
            }
            APIC_BASE => self.s.apic_base = v,
            // Writing 0 before CPUID is how the revision is read; no microcode updates.
            BIOS_SIGN_ID => {}
            SYSENTER_CS => m.sysenter_cs = v & 0xFFFF,
            SYSENTER_ESP => m.sysenter_esp = v,
            SYSENTER_EIP => m.sysenter_eip = v,
            MISC_ENABLE => m.misc_enable = v,
            PAT => {
                // Each byte must be a valid memory type: 0, 1, 4, 5, 6 or 7.
                if (0..8).any(|k| matches!((v >> (8 * k)) & 0xFF, 2 | 3 | 8..=0xFF)) {
                    return Err(Fault::gp(0));
                }
                m.pat = v;
            }
            EFER => self.write_efer(v)?,
            STAR => m.star = v,
            LSTAR => m.lstar = v,
            CSTAR => m.cstar = v,
            FMASK => m.fmask = v & 0xFFFF_FFFF,
            FS_BASE => self.s.seg[sreg::FS].base = v,
            GS_BASE => self.s.seg[sreg::GS].base = v,
            KERNEL_GS_BASE => m.kernel_gs_base = v,
            TSC_AUX => m.tsc_aux = v & 0xFFFF_FFFF,
            // Bits 5:1 are reserved; the structure is 4-byte aligned (KVM refuses the rest).
            crate::pvclock::KVM_SYSTEM_TIME_NEW if v & 0x1E != 0 => return Err(Fault::gp(0)),
            crate::pvclock::KVM_SYSTEM_TIME_NEW => m.kvm_system_time = v,
            n if is_mtrr(n) => {
                m.mtrr.insert(n, v);
            }
            _ => {
                tracing::debug!("WRMSR of unknown MSR {n:#x}: #GP");
                return Err(Fault::gp(0));
            }
        }
        Ok(())
    }
}
