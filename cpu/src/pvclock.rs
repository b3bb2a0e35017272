//! KVM's paravirtual clock ("kvmclock", Linux `Documentation/virt/kvm/x86/msr.rst`,
//! MSR_KVM_SYSTEM_TIME_NEW), kept by the interpreter for a guest that registered it under the
//! KVM backend and was then handed over: the interpreter offers no hypervisor leaves in CPUID,
//! so a guest started here never asks for it, but one that runs on KVM reads its clock from the
//! structure it registered, and that structure must go on telling the time.
//!
//! The structure (`pvclock_vcpu_time_info`, 32 bytes): version (odd while it is rewritten),
//! TSC timestamp, system time in ns at that timestamp, the TSC-to-ns multiplier (a 32.32
//! fraction after a shift) and flags. The guest computes
//! `system_time + (((tsc - tsc_timestamp) << shift) * mul >> 32)`.

use crate::bus::Bus;
use crate::cpu::Cpu;

/// MSR_KVM_SYSTEM_TIME_NEW: the guest-physical address of the structure, bit 0 = enabled.
pub const KVM_SYSTEM_TIME_NEW: u32 = 0x4B56_4D01;
/// The TSC is synchronised across processors and never goes back (PVCLOCK_TSC_STABLE_BIT).
const TSC_STABLE: u8 = 1;
pub const INFO_SIZE: usize = 32;

/// The time in ns that a structure gives at TSC `tsc`, as the guest computes it.
pub fn read(info: &[u8; INFO_SIZE], tsc: u64) -> u64 {
    let u64_at = |k: usize| u64::from_le_bytes(info[k..k + 8].try_into().expect("8 bytes"));
    let (tsc_timestamp, system_time) = (u64_at(8), u64_at(16));
    let mul = u32::from_le_bytes(info[24..28].try_into().expect("4 bytes"));
    let shift = info[28] as i8;
    let delta = tsc.wrapping_sub(tsc_timestamp);
    let delta = if shift < 0 { delta >> shift.unsigned_abs().min(63) } else { delta << shift.min(63) };
    system_time.wrapping_add(((u128::from(delta) * u128::from(mul)) >> 32) as u64)
}

/// The structure for a TSC that counts nanoseconds (the interpreter's runs at 1 GHz of virtual
/// time): the time is `system_time + (tsc - tsc_timestamp)`.
pub fn info_for_ns_tsc(version: u32, tsc: u64, system_time: u64) -> [u8; INFO_SIZE] {
    let mut b = [0u8; INFO_SIZE];
    b[0..4].copy_from_slice(&version.to_le_bytes());
    b[8..16].copy_from_slice(&tsc.to_le_bytes());
    b[16..24].copy_from_slice(&system_time.to_le_bytes());
    // (delta << 1) * 2^31 >> 32 = delta.
    b[24..28].copy_from_slice(&(1u32 << 31).to_le_bytes());
    b[28] = 1;
    b[29] = TSC_STABLE;
    b
}

impl Cpu {
    /// Rewrites the structure the guest registered so that it tells the time at this CPU's TSC
    /// rate, going on from the time the structure in memory gives now (a clock started under KVM
    /// runs on without a jump), or from `fresh` when there was none.
    pub(crate) fn update_pvclock(&mut self, bus: &mut dyn Bus, old_msr: u64, fresh: u64) {
        let msr = self.s.msr.kvm_system_time;
        if msr & 1 == 0 {
            return;
        }
        let tsc = self.tsc_now(bus);
        let time = if old_msr & 1 != 0 {
            let mut old = [0u8; INFO_SIZE];
            for (k, b) in old.iter_mut().enumerate() {
                *b = self.phys_read(bus, (old_msr & !1) + k as u64, 1) as u8;
            }
            read(&old, tsc)
        } else {
            fresh
        };
        let at = msr & !1;
        let version = (self.phys_read(bus, at, 4) as u32 | 1).wrapping_add(1);
        // Odd while the fields change, even when they are whole, as KVM writes it.
        self.phys_write(bus, at, 4, u64::from(version.wrapping_sub(1)));
        let info = info_for_ns_tsc(version, tsc, time);
        for (k, chunk) in info.chunks_exact(8).enumerate().skip(1) {
            self.phys_write(bus, at + 8 * k as u64, 8, u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        self.phys_write(bus, at, 4, u64::from(version));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ns_tsc_structure_reads_as_the_tsc_moves() {
        let info = info_for_ns_tsc(2, 1_000, 50_000);
        assert_eq!(read(&info, 1_000), 50_000);
        assert_eq!(read(&info, 1_000_000_123), 50_000 + 1_000_000_123 - 1_000);
    }

    #[test]
    fn a_kvm_structure_for_a_faster_tsc() {
        // A 2.5 GHz TSC: 0.4 ns a tick = 0.8 * 2^31 after a shift of -1... KVM's choice:
        // shift -1, mul = 0.8 * 2^32.
        let mut info = info_for_ns_tsc(4, 10_000, 7);
        info[24..28].copy_from_slice(&((0.8f64 * 4294967296.0) as u32).to_le_bytes());
        info[28] = (-1i8) as u8;
        let t = read(&info, 10_000 + 2_500_000_000);
        assert!((t as i64 - (7 + 1_000_000_000)).abs() < 2, "{t}");
    }
}
