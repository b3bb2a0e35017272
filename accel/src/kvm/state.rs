//! `CpuState` to and from the vCPU's KVM register sets: KVM_{GET,SET}_{REGS,SREGS,DEBUGREGS,
//! MSRS,VCPU_EVENTS} (Documentation/virt/kvm/api.rst). The halted flag is not here: with a
//! userspace interrupt controller KVM leaves HLT to userspace and refuses any MP state but
//! RUNNABLE, so the backend keeps it itself.
//!
//! Not covered because `CpuState` does not hold them (yet): x87/SSE/AVX state, the SYSENTER,
//! SYSCALL, PAT and KERNEL_GS_BASE MSRs, queued exceptions and a queued interrupt vector.
//! `set_state` leaves the first groups as they are and clears the queued events.
//!
//! Two things KVM itself normalises, so a round trip keeps them only if they are already in
//! the form a processor would hold: on Intel with unrestricted guest, usable segments other
//! than LDTR come back with the accessed type bit set, and an unusable (not present) segment
//! comes back with all attribute bits clear.

use cpu::state::{flags, DescriptorTable, PendingEvents, Segment};
use cpu::{CpuState, F80};
use kvm_bindings::{
    kvm_debugregs, kvm_dtable, kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, kvm_vcpu_events, Msrs,
    KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW, KVM_X86_SHADOW_INT_MOV_SS, KVM_X86_SHADOW_INT_STI,
};
use kvm_ioctls::VcpuFd;

pub(super) const MSR_IA32_TSC: u32 = 0x10;

/// A segment register in KVM's unpacked form. A segment that is not present is marked
/// unusable, as VMX wants for a null selector loaded in protected mode (QEMU does the same).
pub(super) fn to_kvm_segment(s: &Segment) -> kvm_segment {
    let a = s.attr;
    let bit = |n: u16| ((a >> n) & 1) as u8;
    let present = bit(7);
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (a & 0xF) as u8,
        s: bit(4),
        dpl: ((a >> 5) & 3) as u8,
        present,
        avl: bit(12),
        l: bit(13),
        db: bit(14),
        g: bit(15),
        unusable: (present == 0) as u8,
        padding: 0,
    }
}

pub(super) fn from_kvm_segment(k: &kvm_segment) -> Segment {
    let b = |v: u8, n: u16| u16::from(v & 1) << n;
    let attr = u16::from(k.type_ & 0xF)
        | b(k.s, 4)
        | (u16::from(k.dpl & 3) << 5)
        | b((k.present != 0 && k.unusable == 0) as u8, 7)
        | b(k.avl, 12)
        | b(k.l, 13)
        | b(k.db, 14)
        | b(k.g, 15);
    Segment { selector: k.selector, base: k.base, limit: k.limit, attr }
}

fn to_dtable(t: &DescriptorTable) -> kvm_dtable {
    kvm_dtable { base: t.base, limit: t.limit, padding: [0; 3] }
}

fn from_dtable(t: &kvm_dtable) -> DescriptorTable {
    DescriptorTable { base: t.base, limit: t.limit }
}

/// kvm_regs names registers; `CpuState::gpr` is in encoding order.
pub(super) fn to_kvm_regs(s: &CpuState) -> kvm_regs {
    let g = &s.gpr;
    kvm_regs {
        rax: g[0],
        rcx: g[1],
        rdx: g[2],
        rbx: g[3],
        rsp: g[4],
        rbp: g[5],
        rsi: g[6],
        rdi: g[7],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: s.rip,
        rflags: s.rflags,
    }
}

fn from_kvm_regs(r: &kvm_regs, s: &mut CpuState) {
    s.gpr =
        [r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15];
    s.rip = r.rip;
    s.rflags = r.rflags;
}

/// Fills `sregs` (as read from the vCPU, so fields `CpuState` lacks keep their values) from
/// `s`. No interrupt is left queued through the interrupt bitmap.
pub(super) fn fill_kvm_sregs(s: &CpuState, sregs: &mut kvm_sregs) {
    use cpu::state::sreg::*;
    sregs.es = to_kvm_segment(&s.seg[ES]);
    sregs.cs = to_kvm_segment(&s.seg[CS]);
    sregs.ss = to_kvm_segment(&s.seg[SS]);
    sregs.ds = to_kvm_segment(&s.seg[DS]);
    sregs.fs = to_kvm_segment(&s.seg[FS]);
    sregs.gs = to_kvm_segment(&s.seg[GS]);
    sregs.ldt = to_kvm_segment(&s.ldtr);
    sregs.tr = to_kvm_segment(&s.tr);
    sregs.gdt = to_dtable(&s.gdtr);
    sregs.idt = to_dtable(&s.idtr);
    sregs.cr0 = s.cr0;
    sregs.cr2 = s.cr2;
    sregs.cr3 = s.cr3;
    sregs.cr4 = s.cr4;
    sregs.cr8 = s.cr8;
    sregs.efer = s.efer;
    sregs.apic_base = s.apic_base;
    sregs.interrupt_bitmap = [0; 4];
}

fn from_kvm_sregs(k: &kvm_sregs, s: &mut CpuState) {
    use cpu::state::sreg::*;
    s.seg[ES] = from_kvm_segment(&k.es);
    s.seg[CS] = from_kvm_segment(&k.cs);
    s.seg[SS] = from_kvm_segment(&k.ss);
    s.seg[DS] = from_kvm_segment(&k.ds);
    s.seg[FS] = from_kvm_segment(&k.fs);
    s.seg[GS] = from_kvm_segment(&k.gs);
    s.ldtr = from_kvm_segment(&k.ldt);
    s.tr = from_kvm_segment(&k.tr);
    s.gdtr = from_dtable(&k.gdt);
    s.idtr = from_dtable(&k.idt);
    s.cr0 = k.cr0;
    s.cr2 = k.cr2;
    s.cr3 = k.cr3;
    s.cr4 = k.cr4;
    s.cr8 = k.cr8;
    s.efer = k.efer;
    s.apic_base = k.apic_base;
}

/// Interrupt shadow and NMI; no exception or interrupt stays queued. VMX refuses "blocking by
/// STI" while IF is clear, so a shadow with IF clear is given as the MOV SS kind.
pub(super) fn to_kvm_events(s: &CpuState) -> kvm_vcpu_events {
    let mut e =
        kvm_vcpu_events { flags: KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW, ..Default::default() };
    if s.pending.interrupt_shadow {
        e.interrupt.shadow =
            if s.rflags & flags::IF != 0 { KVM_X86_SHADOW_INT_STI } else { KVM_X86_SHADOW_INT_MOV_SS } as u8;
    }
    e.nmi.pending = s.pending.nmi as u8;
    e.nmi.masked = s.pending.nmi_blocked as u8;
    e
}

fn from_kvm_events(e: &kvm_vcpu_events) -> PendingEvents {
    PendingEvents {
        interrupt_shadow: e.interrupt.shadow != 0,
        nmi: e.nmi.pending != 0 || e.nmi.injected != 0,
        nmi_blocked: e.nmi.masked != 0,
    }
}

/// MSR numbers of the named fields of `cpu::Msrs`, read and written as a batch.
const NAMED_MSRS: [u32; 12] = [
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0xC000_0081, // STAR
    0xC000_0082, // LSTAR
    0xC000_0083, // CSTAR
    0xC000_0084, // FMASK
    0xC000_0102, // KERNEL_GS_BASE
    0xC000_0103, // TSC_AUX
    0x277,       // PAT
    0x1A0,       // MISC_ENABLE
    cpu::pvclock::KVM_SYSTEM_TIME_NEW,
];

fn named_msr(m: &mut cpu::Msrs, index: u32) -> &mut u64 {
    match index {
        0x174 => &mut m.sysenter_cs,
        0x175 => &mut m.sysenter_esp,
        0x176 => &mut m.sysenter_eip,
        0xC000_0081 => &mut m.star,
        0xC000_0082 => &mut m.lstar,
        0xC000_0083 => &mut m.cstar,
        0xC000_0084 => &mut m.fmask,
        0xC000_0102 => &mut m.kernel_gs_base,
        0xC000_0103 => &mut m.tsc_aux,
        0x277 => &mut m.pat,
        cpu::pvclock::KVM_SYSTEM_TIME_NEW => &mut m.kvm_system_time,
        _ => &mut m.misc_enable,
    }
}

/// The named MSRs and the MTRRs of `s`, as KVM entries.
fn msr_entries(s: &CpuState) -> Vec<kvm_msr_entry> {
    let mut m = s.msr.clone();
    let mut out: Vec<kvm_msr_entry> =
        NAMED_MSRS.iter().map(|&index| kvm_msr_entry { index, data: *named_msr(&mut m, index), ..Default::default() }).collect();
    out.extend(s.msr.mtrr.iter().map(|(&index, &data)| kvm_msr_entry { index, data, ..Default::default() }));
    out
}

/// Physical x87 registers and the full tag word from the FXSAVE image KVM keeps (registers in
/// stack order, abridged tags).
fn from_kvm_fpu(f: &kvm_fpu, s: &mut CpuState) {
    let top = (f.fsw >> 11) & 7;
    let mut ftw = 0u16;
    for st in 0..8u16 {
        let phys = ((top + st) & 7) as usize;
        let b = &f.fpr[st as usize];
        let signif = u64::from_le_bytes(b[0..8].try_into().unwrap());
        let sign_exp = u16::from_le_bytes([b[8], b[9]]);
        s.fpu.regs[phys] = F80 { signif, sign_exp };
        let tag = if f.ftwx & (1 << phys) == 0 {
            3
        } else if sign_exp & 0x7FFF == 0x7FFF || (sign_exp & 0x7FFF != 0 && signif >> 63 == 0) || (sign_exp & 0x7FFF == 0 && signif != 0) {
            2
        } else if sign_exp & 0x7FFF == 0 && signif == 0 {
            1
        } else {
            0
        };
        ftw |= tag << (2 * phys);
    }
    s.fpu.fcw = f.fcw;
    s.fpu.fsw = f.fsw;
    s.fpu.ftw = ftw;
    s.fpu.fop = f.last_opcode;
    s.fpu.fip = f.last_ip;
    s.fpu.fdp = f.last_dp;
    for (k, x) in f.xmm.iter().enumerate() {
        s.sse.xmm[k] = [u64::from_le_bytes(x[0..8].try_into().unwrap()), u64::from_le_bytes(x[8..16].try_into().unwrap())];
    }
    s.sse.mxcsr = f.mxcsr;
}

/// Loads the x87 and SSE state: through KVM_SET_XSAVE where KVM keeps an XSAVE image (setting
/// XSTATE_BV's x87 and SSE bits so the values are used, not the init state), else KVM_SET_FPU.
fn write_fpu(vcpu: &VcpuFd, s: &CpuState) -> Result<(), String> {
    let f = to_kvm_fpu(s);
    let Ok(mut x) = vcpu.get_xsave() else {
        return vcpu.set_fpu(&f).map_err(|e| format!("KVM_SET_FPU: {e}"));
    };
    let mut legacy = [0u8; 512];
    legacy[0..2].copy_from_slice(&f.fcw.to_le_bytes());
    legacy[2..4].copy_from_slice(&f.fsw.to_le_bytes());
    legacy[4] = f.ftwx;
    legacy[6..8].copy_from_slice(&f.last_opcode.to_le_bytes());
    legacy[8..16].copy_from_slice(&f.last_ip.to_le_bytes());
    legacy[16..24].copy_from_slice(&f.last_dp.to_le_bytes());
    legacy[24..28].copy_from_slice(&f.mxcsr.to_le_bytes());
    // MXCSR_MASK is read-only: keep KVM's.
    let mask_word = x.region[7];
    for k in 0..8 {
        legacy[32 + 16 * k..48 + 16 * k].copy_from_slice(&f.fpr[k]);
    }
    for k in 0..16 {
        legacy[160 + 16 * k..176 + 16 * k].copy_from_slice(&f.xmm[k]);
    }
    for (k, w) in legacy.chunks(4).enumerate() {
        x.region[k] = u32::from_le_bytes(w.try_into().unwrap());
    }
    x.region[7] = mask_word;
    // XSTATE_BV (bytes 512..520): x87 and SSE state present.
    x.region[128] |= 3;
    // SAFETY: `x` came from KVM_GET_XSAVE on this vCPU, so its XSTATE header describes only
    // components the kernel itself sized within the 4 KiB region.
    unsafe { vcpu.set_xsave(&x) }.map_err(|e| format!("KVM_SET_XSAVE: {e}"))
}

fn to_kvm_fpu(s: &CpuState) -> kvm_fpu {
    let mut f = kvm_fpu { fcw: s.fpu.fcw, fsw: s.fpu.fsw, last_opcode: s.fpu.fop, last_ip: s.fpu.fip, last_dp: s.fpu.fdp, mxcsr: s.sse.mxcsr, ..Default::default() };
    let top = (s.fpu.fsw >> 11) & 7;
    for st in 0..8u16 {
        let phys = ((top + st) & 7) as usize;
        let r = s.fpu.regs[phys];
        f.fpr[st as usize][0..8].copy_from_slice(&r.signif.to_le_bytes());
        f.fpr[st as usize][8..10].copy_from_slice(&r.sign_exp.to_le_bytes());
        if (s.fpu.ftw >> (2 * phys)) & 3 != 3 {
            f.ftwx |= 1 << phys;
        }
    }
    for (k, x) in s.sse.xmm.iter().enumerate() {
        f.xmm[k][0..8].copy_from_slice(&x[0].to_le_bytes());
        f.xmm[k][8..16].copy_from_slice(&x[1].to_le_bytes());
    }
    f
}

pub(super) fn to_kvm_debugregs(s: &CpuState) -> kvm_debugregs {
    kvm_debugregs { db: [s.dr[0], s.dr[1], s.dr[2], s.dr[3]], dr6: s.dr[4], dr7: s.dr[5], ..Default::default() }
}

fn tsc_msrs(value: u64) -> Msrs {
    Msrs::from_entries(&[kvm_msr_entry { index: MSR_IA32_TSC, data: value, ..Default::default() }])
        .expect("one MSR entry fits")
}

/// Reads the whole `CpuState` except `halted`, which the caller fills in.
pub(super) fn read(vcpu: &VcpuFd) -> Result<CpuState, String> {
    let mut s = CpuState::default();
    let regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    from_kvm_regs(&regs, &mut s);
    let sregs = vcpu.get_sregs().map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    from_kvm_sregs(&sregs, &mut s);
    let d = vcpu.get_debug_regs().map_err(|e| format!("KVM_GET_DEBUGREGS: {e}"))?;
    s.dr = [d.db[0], d.db[1], d.db[2], d.db[3], d.dr6, d.dr7];
    let mut msrs = tsc_msrs(0);
    match vcpu.get_msrs(&mut msrs) {
        Ok(1) => s.tsc = msrs.as_slice()[0].data,
        Ok(_) => return Err("KVM_GET_MSRS: IA32_TSC not read".into()),
        Err(e) => return Err(format!("KVM_GET_MSRS (IA32_TSC): {e}")),
    }
    let ev = vcpu.get_vcpu_events().map_err(|e| format!("KVM_GET_VCPU_EVENTS: {e}"))?;
    s.pending = from_kvm_events(&ev);
    // The named MSRs and whatever MTRRs KVM keeps; KVM stops at the first one it does not
    // know, which leaves that field and those after it at their power-on values.
    let mtrr_indices: Vec<u32> = [0x2FF, 0x250, 0x258, 0x259].into_iter().chain(0x268..=0x26F).chain(0x200..0x210).collect();
    let mut want: Vec<kvm_msr_entry> = NAMED_MSRS.iter().chain(mtrr_indices.iter()).map(|&index| kvm_msr_entry { index, ..Default::default() }).collect();
    let mut batch = Msrs::from_entries(&want).map_err(|e| format!("MSR list: {e:?}"))?;
    let n = vcpu.get_msrs(&mut batch).map_err(|e| format!("KVM_GET_MSRS: {e}"))?;
    want.truncate(n);
    for e in &batch.as_slice()[..n] {
        if NAMED_MSRS.contains(&e.index) {
            *named_msr(&mut s.msr, e.index) = e.data;
        } else if e.data != 0 {
            s.msr.mtrr.insert(e.index, e.data);
        }
    }
    let fpu = vcpu.get_fpu().map_err(|e| format!("KVM_GET_FPU: {e}"))?;
    from_kvm_fpu(&fpu, &mut s);
    if let Ok(x) = vcpu.get_xsave() {
        // The XSAVE image is authoritative where KVM keeps one (KVM_GET_FPU may not report
        // MXCSR from it): its legacy area has the FXSAVE layout.
        s.sse.mxcsr = x.region[6];
    }
    if let Ok(x) = vcpu.get_xcrs() {
        if let Some(x0) = x.xcrs[..x.nr_xcrs as usize].iter().find(|x| x.xcr == 0) {
            s.xcr0 = x0.value;
        }
    }
    Ok(s)
}

/// Writes everything `CpuState` holds except `halted` and `wait_for_sipi`, the TSC only with
/// `with_tsc` (INIT and STARTUP leave it running; a write would skew it against the other
/// vCPUs'). Control registers and EFER go first so that the mode the other registers are
/// checked against is already the new one.
pub(super) fn write(vcpu: &VcpuFd, s: &CpuState, with_tsc: bool) -> Result<(), String> {
    let mut sregs = vcpu.get_sregs().map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    fill_kvm_sregs(s, &mut sregs);
    vcpu.set_sregs(&sregs).map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    vcpu.set_regs(&to_kvm_regs(s)).map_err(|e| format!("KVM_SET_REGS: {e}"))?;
    vcpu.set_debug_regs(&to_kvm_debugregs(s)).map_err(|e| format!("KVM_SET_DEBUGREGS: {e}"))?;
    if with_tsc {
        match vcpu.set_msrs(&tsc_msrs(s.tsc)) {
            Ok(1) => {}
            Ok(_) => return Err("KVM_SET_MSRS: IA32_TSC refused".into()),
            Err(e) => return Err(format!("KVM_SET_MSRS (IA32_TSC): {e}")),
        }
    }
    vcpu.set_vcpu_events(&to_kvm_events(s)).map_err(|e| format!("KVM_SET_VCPU_EVENTS: {e}"))?;
    let entries = msr_entries(s);
    let batch = Msrs::from_entries(&entries).map_err(|e| format!("MSR list: {e:?}"))?;
    let n = vcpu.set_msrs(&batch).map_err(|e| format!("KVM_SET_MSRS: {e}"))?;
    if n < entries.len() {
        tracing::debug!("KVM refused MSR {:#x}; it and the MSRs after it keep KVM's values", entries[n].index);
    }
    write_fpu(vcpu, s)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_attributes_map_both_ways() {
        for attr in [0x9B, 0x93, 0xA09B, 0xC093, 0x20FB, 0x108B, 0x82, 0xF3] {
            let s = Segment { selector: 0x2B, base: 0x1234_5000, limit: 0xFFFF_FFFF, attr };
            assert_eq!(from_kvm_segment(&to_kvm_segment(&s)), s, "attr {attr:#x}");
        }
        let k = to_kvm_segment(&Segment { selector: 0x10, base: 0, limit: 0xFFFFF, attr: 0xA09B });
        assert_eq!((k.type_, k.s, k.dpl, k.present, k.l, k.db, k.g, k.unusable), (11, 1, 0, 1, 1, 0, 1, 0));
        let null = to_kvm_segment(&Segment::default());
        assert_eq!((null.present, null.unusable), (0, 1));
        assert_eq!(from_kvm_segment(&null), Segment::default());
    }

    #[test]
    fn general_registers_keep_encoding_order() {
        let mut s = CpuState::default();
        for (i, r) in s.gpr.iter_mut().enumerate() {
            *r = 0x100 + i as u64;
        }
        let k = to_kvm_regs(&s);
        assert_eq!(
            (k.rax, k.rcx, k.rdx, k.rbx, k.rsp, k.rbp, k.rsi, k.rdi, k.r15),
            (0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x10F)
        );
        let mut back = CpuState::default();
        from_kvm_regs(&k, &mut back);
        assert_eq!(back.gpr, s.gpr);
    }

    #[test]
    fn shadow_kind_follows_if() {
        let mut s = CpuState::default();
        s.pending.interrupt_shadow = true;
        assert_eq!(u32::from(to_kvm_events(&s).interrupt.shadow), KVM_X86_SHADOW_INT_MOV_SS);
        s.rflags |= flags::IF;
        assert_eq!(u32::from(to_kvm_events(&s).interrupt.shadow), KVM_X86_SHADOW_INT_STI);
    }
}
