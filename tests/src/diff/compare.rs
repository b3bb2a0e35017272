//! What two runs of a case must agree on: how the run ended, the exception vector and its
//! frame (user RIP, CS, RFLAGS, RSP, SS, error code), every general register, RIP, RFLAGS,
//! CR2 after a #PF, CS/SS after the delivery, the data area and the ring-0 stack. Status
//! flags that are architecturally undefined where the case stopped (see `flags.rs`) are
//! masked out of both RFLAGS values.

use super::env::{self, DATA, KSTACK_TOP};
use super::runner::{End, Outcome};
use super::Case;
use cpu::state::flags as fl;

/// One field on which the sides disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    pub field: String,
    pub kvm: String,
    pub interp: String,
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: kvm {} / interp {}", self.field, self.kvm, self.interp)
    }
}

/// Differences known to be interpreter bugs, reported to the lead and kept out of the
/// pass/fail verdict (counted apart in the summary): (field, what the real CPU does).
pub const KNOWN: &[(&str, &str)] = &[
    // Empty now. It held ("frame.rflags.RF", "the processor sets RF in the RFLAGS image it
    // pushes for a fault-class exception; the interpreter pushed RF = 0") until commit 38d6481
    // ("debug registers: ... single-step and RF through one careful path").
];

/// Is `d` one of the known differences?
pub fn is_known(d: &Diff) -> bool {
    KNOWN.iter().any(|(f, _)| *f == d.field)
}

/// The exception frame on the ring-0 stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExcFrame {
    pub error: Option<u64>,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// The frame an outcome's stub was entered with (`None` unless halted in a stub).
pub fn frame_of(o: &Outcome) -> Option<ExcFrame> {
    let v = env::vector_of(&o.state)?;
    let q = |i: usize| {
        let off = o.kstack.len() - 8 * i;
        u64::from_le_bytes(o.kstack[off..off + 8].try_into().unwrap())
    };
    // Qwords from the top: SS, RSP, RFLAGS, CS, RIP, error code.
    Some(ExcFrame {
        ss: q(1),
        rsp: q(2),
        rflags: q(3),
        cs: q(4),
        rip: q(5),
        error: env::has_error_code(v).then(|| q(6)),
    })
}

fn vector_name(v: Option<u8>) -> String {
    const NAMES: [&str; 21] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "9", "#TS", "#NP", "#SS", "#GP", "#PF", "15",
        "#MF", "#AC", "#MC", "#XM", "#VE",
    ];
    match v {
        Some(v) if (v as usize) < NAMES.len() => format!("{} ({v})", NAMES[v as usize]),
        Some(v) => format!("vector {v:#x}"),
        None => "none".into(),
    }
}

pub fn describe_end(o: &Outcome) -> String {
    match &o.end {
        End::Halted => match env::vector_of(&o.state) {
            Some(v) => vector_name(Some(v)),
            None => format!("halted at {:#x}", o.state.rip),
        },
        End::Timeout => "timeout".into(),
        End::Shutdown(why) => format!("shutdown ({why})"),
        End::Failed(why) => format!("failed ({})", why.lines().next().unwrap_or("")),
    }
}

const GPR: [&str; 16] =
    ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

/// Status flags masked: those undefined where the case stopped (judged by the oracle's
/// frame).
pub fn undefined_mask(case: &Case, kvm: &Outcome) -> u64 {
    match frame_of(kvm) {
        Some(f) => case.layout.undefined_at(f.rip),
        None => fl::ARITH,
    }
}

pub fn compare(case: &Case, kvm: &Outcome, interp: &Outcome) -> Vec<Diff> {
    let mut d = Vec::new();
    let mut diff = |field: &str, a: String, b: String| {
        if a != b {
            d.push(Diff { field: field.into(), kvm: a, interp: b });
        }
    };
    let (ka, kb) = (describe_end(kvm), describe_end(interp));
    let both_halted = kvm.end == End::Halted && interp.end == End::Halted;
    diff("end", ka, kb);
    if !both_halted {
        return d;
    }
    let undef = undefined_mask(case, kvm);
    let (fk, fi) = (frame_of(kvm), frame_of(interp));
    if let (Some(fk), Some(fi)) = (fk, fi) {
        diff("frame.rip", format!("{:#x}", fk.rip), format!("{:#x}", fi.rip));
        diff("frame.cs", format!("{:#x}", fk.cs), format!("{:#x}", fi.cs));
        diff(
            "frame.rflags",
            format!("{:#x}", fk.rflags & !undef & !fl::RF),
            format!("{:#x}", fi.rflags & !undef & !fl::RF),
        );
        diff("frame.rflags.RF", format!("{}", fk.rflags & fl::RF != 0), format!("{}", fi.rflags & fl::RF != 0));
        diff("frame.rsp", format!("{:#x}", fk.rsp), format!("{:#x}", fi.rsp));
        diff("frame.ss", format!("{:#x}", fk.ss), format!("{:#x}", fi.ss));
        diff("frame.error", format!("{:x?}", fk.error), format!("{:x?}", fi.error));
    }
    let (sk, si) = (&kvm.state, &interp.state);
    for (n, name) in GPR.iter().enumerate() {
        diff(name, format!("{:#x}", sk.gpr[n]), format!("{:#x}", si.gpr[n]));
    }
    diff("rip", format!("{:#x}", sk.rip), format!("{:#x}", si.rip));
    diff("rflags", format!("{:#x}", sk.rflags & !undef), format!("{:#x}", si.rflags & !undef));
    if env::vector_of(sk) == Some(14) {
        diff("cr2", format!("{:#x}", sk.cr2), format!("{:#x}", si.cr2));
    }
    use cpu::state::sreg;
    diff("cs", format!("{:#x}", sk.seg[sreg::CS].selector), format!("{:#x}", si.seg[sreg::CS].selector));
    diff("ss", format!("{:#x}", sk.seg[sreg::SS].selector), format!("{:#x}", si.seg[sreg::SS].selector));
    if let Some(m) = memory_diff(DATA, &kvm.data, &interp.data) {
        d.push(m);
    }
    // Below the frame the ring-0 stack must be untouched on both sides.
    let frame_len = fk.map_or(0, |f| if f.error.is_some() { 48 } else { 40 });
    let below = kvm.kstack.len() - frame_len;
    if let Some(m) = memory_diff(KSTACK_TOP - kvm.kstack.len() as u64, &kvm.kstack[..below], &interp.kstack[..below]) {
        d.push(Diff { field: "kstack".into(), ..m });
    }
    d
}

/// The differing bytes of two copies of a memory area, summarised.
fn memory_diff(base: u64, a: &[u8], b: &[u8]) -> Option<Diff> {
    let first = a.iter().zip(b).position(|(x, y)| x != y)?;
    let last = a.iter().zip(b).rposition(|(x, y)| x != y)?;
    let count = a.iter().zip(b).filter(|(x, y)| x != y).count();
    let end = (last + 1).min(first + 16);
    let hex = |s: &[u8]| s.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ");
    Some(Diff {
        field: format!("memory {:#x}..{:#x} ({count} bytes differ)", base + first as u64, base + last as u64 + 1),
        kvm: format!("[{:#x}] {}", base + first as u64, hex(&a[first..end])),
        interp: format!("[{:#x}] {}", base + first as u64, hex(&b[first..end])),
    })
}

/// A final state in a few lines.
pub fn describe_outcome(o: &Outcome) -> String {
    let s = &o.state;
    let mut out = format!("  end: {}\n", describe_end(o));
    if let Some(f) = frame_of(o) {
        out += &format!(
            "  frame: rip={:#x} cs={:#x} rflags={:#x} rsp={:#x} ss={:#x}{}\n",
            f.rip,
            f.cs,
            f.rflags,
            f.rsp,
            f.ss,
            f.error.map(|e| format!(" error={e:#x}")).unwrap_or_default()
        );
    }
    out += &regs(&s.gpr);
    out += &format!("  rip={:#x} rflags={:#x} cr2={:#x}\n", s.rip, s.rflags, s.cr2);
    out
}

pub fn regs(g: &[u64; 16]) -> String {
    let mut out = String::new();
    for row in 0..4 {
        out += " ";
        for col in 0..4 {
            let n = row * 4 + col;
            out += &format!(" {:>3}={:016x}", GPR[n], g[n]);
        }
        out += "\n";
    }
    out
}
