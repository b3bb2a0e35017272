//! Differential testing of the interpreter against the real CPU: random 64-bit user-mode
//! programs run under KVM (on a paravirtual KVM, ring 3 runs natively: the host CPU is the
//! oracle) and under the interpreter, from the same `CpuState` and memory, and everything
//! the program could change is compared.
//!
//! - `env`: the long-mode environment (page tables, GDT, IDT, TSS, stubs) both sides share.
//! - `gen`: the program generator, by instruction class.
//! - `flags`: the table of architecturally undefined flags.
//! - `program`: control flow, undefined-flag tracking and assembly.
//! - `runner`: the interpreter (flat bus) and KVM (machine) sides.
//! - `compare`: what must agree, and the reports.
//!
//! `tests/examples/difftest.rs` is the command-line runner; `tests/tests/diff_kvm.rs` runs a
//! sample in the test suite.

pub mod compare;
pub mod env;
pub mod flags;
pub mod gen;
pub mod known;
pub mod program;
pub mod rng;
pub mod runner;

use compare::Diff;
use cpu::CpuState;
use gen::{Class, Frame, Generator, Unit};
use iced_x86::{Formatter, IntelFormatter, Mnemonic, OpKind};
use program::Layout;
use rng::Rng;
use runner::{Input, Outcome, Side};
use std::collections::BTreeMap;

/// What cases are made of.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub classes: Vec<Class>,
    /// Top-level units per case: 1..=max_units.
    pub max_units: usize,
    /// Generate the forms and values of `known::KNOWN_BAD` too (to check fixes).
    pub include_known_bad: bool,
}

impl GenConfig {
    /// Every class that is on by default and that the host CPU supports.
    pub fn default_mix() -> GenConfig {
        GenConfig {
            classes: Class::ALL.iter().copied().filter(|c| c.default_on() && c.host_supports()).collect(),
            max_units: 24,
            include_known_bad: false,
        }
    }

    pub fn only(class: Class) -> GenConfig {
        GenConfig { classes: vec![class], ..GenConfig::default_mix() }
    }
}

/// One test case: initial registers, flags and data, and the program.
#[derive(Clone, Debug)]
pub struct Case {
    pub seed: u64,
    pub index: u64,
    pub frame: Frame,
    pub rflags: u64,
    pub data: Vec<u8>,
    pub units: Vec<Unit>,
    pub layout: Layout,
}

impl Case {
    /// Case `index` of the run seeded with `seed`: always the same case for the same
    /// arguments.
    pub fn generate(cfg: &GenConfig, seed: u64, index: u64) -> Case {
        let mut rng = Rng::for_case(seed, index);
        loop {
            let frame = Frame::random(&mut rng);
            let rflags = (rng.next() & env::RANDOM_FLAGS) | env::FIXED_FLAGS;
            let mut data = vec![0u8; env::DATA_SIZE as usize];
            for chunk in data.chunks_mut(8) {
                let v = if rng.chance(1, 4) { rng.interesting() } else { rng.next() };
                chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
            }
            let n = rng.range(1, cfg.max_units as u64) as usize;
            let sub = Rng::new(rng.next());
            let mut g = Generator::new(sub, frame.clone(), cfg.classes.clone());
            g.avoid = !cfg.include_known_bad && !known::KNOWN_BAD.is_empty();
            let units = g.generate(n);
            if units.is_empty() {
                continue;
            }
            if let Ok(layout) = Layout::assemble(&units) {
                return Case { seed, index, frame, rflags, data, units, layout };
            }
        }
    }

    /// A case running the given bytes (then UD2) from a random state: `difftest --bytes`.
    pub fn from_bytes(seed: u64, index: u64, bytes: &[u8]) -> Case {
        let mut rng = Rng::for_case(seed, index);
        let frame = Frame::random(&mut rng);
        let rflags = (rng.next() & env::RANDOM_FLAGS) | env::FIXED_FLAGS;
        let mut data = vec![0u8; env::DATA_SIZE as usize];
        for chunk in data.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
        }
        // One unit per instruction the bytes decode to (so flags are tracked per instruction).
        let mut units = Vec::new();
        let mut dec = iced_x86::Decoder::new(64, bytes, iced_x86::DecoderOptions::NONE);
        let mut at = 0;
        while at < bytes.len() {
            let i = dec.decode();
            let len = if i.is_invalid() { (bytes.len() - at).min(16) } else { i.len() };
            let piece = bytes[at..at + len].to_vec();
            let db = iced_x86::Instruction::with_declare_byte(&piece).expect("1 to 16 bytes");
            units.push(Unit {
                class: Class::Invalid,
                ins: vec![gen::Ins { instr: db, target: None, returns_to: None, raw: Some(piece) }],
                key: 0,
            });
            at += len;
            if i.is_invalid() {
                // Undecodable: the rest goes as it is, 16 bytes at a time.
                dec = iced_x86::Decoder::new(64, &bytes[at..], iced_x86::DecoderOptions::NONE);
                while at < bytes.len() {
                    let n = (bytes.len() - at).min(16);
                    let db = iced_x86::Instruction::with_declare_byte(&bytes[at..at + n]).expect("1 to 16 bytes");
                    units.push(Unit {
                        class: Class::Invalid,
                        ins: vec![gen::Ins { instr: db, target: None, returns_to: None, raw: Some(bytes[at..at + n].to_vec()) }],
                        key: 0,
                    });
                    at += n;
                }
                let _ = &dec;
                break;
            }
        }
        let layout = Layout::assemble(&units).expect("raw bytes assemble");
        Case { seed, index, frame, rflags, data, units, layout }
    }

    /// The same case with other units (for narrowing a mismatch down); `None` if they do
    /// not assemble.
    pub fn with_units(&self, units: Vec<Unit>) -> Option<Case> {
        let layout = Layout::assemble(&units).ok()?;
        Some(Case { units, layout, ..self.clone() })
    }

    pub fn state(&self) -> CpuState {
        use cpu::state::sreg;
        let mut s = env::user_state();
        s.gpr = self.frame.gpr;
        s.rflags = self.rflags;
        s.seg[sreg::FS].base = self.frame.fs_base;
        s.seg[sreg::GS].base = self.frame.gs_base;
        s
    }

    /// Instructions in the program, the terminator not counted.
    pub fn instructions(&self) -> usize {
        self.layout.flat.len() - 1
    }

    /// Disassembly with addresses and bytes; `mark` flags one flat instruction.
    pub fn listing(&self, mark: Option<usize>) -> String {
        let mut out = String::new();
        let mut fmt = IntelFormatter::new();
        let mut dec = iced_x86::Decoder::with_ip(64, &self.layout.code, env::CODE, iced_x86::DecoderOptions::NONE);
        let mut text = String::new();
        for (i, &a) in self.layout.addr.iter().enumerate() {
            let bytes = self.layout.bytes_of(i);
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            text.clear();
            dec.set_position((a - env::CODE) as usize).ok();
            dec.set_ip(a);
            let ins = dec.decode();
            if ins.is_invalid() {
                text.push_str("(invalid)");
            } else {
                fmt.format(&ins, &mut text);
            }
            let undefined = self.layout.taint[i].filter(|&t| t != 0).map(|t| format!("   ; undefined here: {}", flag_names(t)));
            out += &format!(
                "{} {a:#07x}  {:<32} {}{}\n",
                if mark == Some(i) { ">" } else { " " },
                hex.join(" "),
                text,
                undefined.unwrap_or_default()
            );
        }
        out
    }

    /// Initial registers, flags and what the program may not change.
    pub fn describe_start(&self) -> String {
        format!(
            "{}  rflags={:#x} [{}]  ({})\n",
            compare::regs(&self.frame.gpr),
            self.rflags,
            flag_names(self.rflags),
            gen::describe_frame(&self.frame)
        )
    }

    /// The name a mismatch is counted under: the key instruction of unit `u` (its iced-x86
    /// code, with prefixes and whether an operand is in memory).
    pub fn form_of_unit(&self, u: usize) -> String {
        let unit = &self.units[u];
        let ins = &unit.ins[unit.key];
        if let Some(raw) = &ins.raw {
            return format!("raw {}", raw.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "));
        }
        form_name(&ins.instr, unit.class)
    }
}

pub fn form_name(i: &iced_x86::Instruction, class: Class) -> String {
    let mut s = format!("{:?}", i.code());
    if i.has_lock_prefix() {
        s = format!("lock {s}");
    }
    if i.has_rep_prefix() {
        s = format!("rep {s}");
    }
    if i.has_repne_prefix() {
        s = format!("repne {s}");
    }
    if (0..i.op_count()).any(|k| matches!(i.op_kind(k), OpKind::MemorySegESI | OpKind::MemoryESEDI))
        || (i.op_count() > 0
            && (0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Memory)
            && i.memory_base().size() == 4)
    {
        s += " a32";
    }
    if (0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Memory) && i.mnemonic() != Mnemonic::Lea {
        s += " mem";
    }
    if class == Class::Call {
        s = format!("call/ret template: {s}");
    }
    s
}

pub fn flag_names(f: u64) -> String {
    use cpu::state::flags as fl;
    let names = [
        (fl::OF, "OF"),
        (fl::DF, "DF"),
        (fl::IF, "IF"),
        (fl::TF, "TF"),
        (fl::SF, "SF"),
        (fl::ZF, "ZF"),
        (fl::AF, "AF"),
        (fl::PF, "PF"),
        (fl::CF, "CF"),
        (fl::AC, "AC"),
        (fl::ID, "ID"),
        (fl::RF, "RF"),
        (fl::NT, "NT"),
    ];
    names.iter().filter(|(b, _)| f & b != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(" ")
}

/// The result of one case on both sides.
pub struct Checked {
    /// Differences, known ones (`compare::KNOWN`) left out.
    pub diffs: Vec<Diff>,
    /// Known differences.
    pub known: Vec<Diff>,
    pub kvm: Outcome,
    pub interp: Outcome,
}

/// Both sides, ready to run cases.
pub struct Harness {
    pub interp: runner::InterpSide,
    pub oracle: Box<dyn Side>,
}

impl Harness {
    /// The interpreter against KVM; `Err` says why KVM cannot be used.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub fn with_kvm() -> Result<Harness, String> {
        let kvm = runner::KvmSide::new()?;
        let mut h = Harness { interp: runner::InterpSide::new(), oracle: Box::new(kvm) };
        h.probe()?;
        Ok(h)
    }

    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    pub fn with_kvm() -> Result<Harness, String> {
        Err("KVM exists only on Linux x86-64 hosts".into())
    }

    /// Runs a known case on the oracle: `mov eax, 1 / ud2` must end in #UD at the UD2 with
    /// EAX = 1, or this KVM cannot serve as the oracle.
    pub fn probe(&mut self) -> Result<(), String> {
        let mut s = env::user_state();
        s.gpr[4] = env::DATA + 0x1000;
        let code = [0xB8, 1, 0, 0, 0, 0x0F, 0x0B];
        let data = vec![0u8; env::DATA_SIZE as usize];
        let o = self.oracle.run(&Input { code: &code, data: &data, state: &s });
        let f = compare::frame_of(&o);
        let ok = o.end == runner::End::Halted
            && env::vector_of(&o.state) == Some(6)
            && f.map(|f| f.rip) == Some(env::CODE + 5)
            && o.state.gpr[0] == 1;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "the probe case (mov eax, 1 / ud2 at CPL 3) did not end in #UD at the UD2 under {}:\n{}",
                self.oracle.name(),
                compare::describe_outcome(&o)
            ))
        }
    }

    pub fn check(&mut self, case: &Case) -> Checked {
        let state = case.state();
        let input = Input { code: &case.layout.code, data: &case.data, state: &state };
        let kvm = self.oracle.run(&input);
        let interp = self.interp.run(&input);
        let (known, diffs) = compare::compare(case, &kvm, &interp).into_iter().partition(compare::is_known);
        Checked { diffs, known, kvm, interp }
    }

    fn mismatches(&mut self, case: &Case) -> bool {
        !self.check(case).diffs.is_empty()
    }

    /// The shortest prefix of `case` (in units) that still mismatches: its last unit is the
    /// culprit. Binary search, then a step back while shorter prefixes still mismatch.
    pub fn culprit(&mut self, case: &Case) -> Option<Case> {
        let prefix = |n: usize| case.with_units(truncate(&case.units, n));
        let (mut lo, mut hi) = (0usize, case.units.len());
        // Invariant: prefix(hi) mismatches; prefix(lo) is believed not to.
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            match prefix(mid) {
                Some(c) if self.mismatches(&c) => hi = mid,
                _ => lo = mid,
            }
        }
        let c = prefix(hi)?;
        self.mismatches(&c).then_some(c)
    }

    /// Drops every unit before the culprit that the mismatch does not need.
    pub fn minimize(&mut self, case: &Case) -> Case {
        let mut cur = case.clone();
        let form = cur.form_of_unit(cur.units.len() - 1);
        let mut j = cur.units.len().saturating_sub(1);
        while j > 0 {
            j -= 1;
            let units = remove_unit(&cur.units, j);
            if let Some(c) = cur.with_units(units) {
                if c.form_of_unit(c.units.len() - 1) == form && self.mismatches(&c) {
                    cur = c;
                }
            }
        }
        cur
    }
}

/// The first `n` units; branches past them go to the terminator.
pub fn truncate(units: &[Unit], n: usize) -> Vec<Unit> {
    let mut out: Vec<Unit> = units[..n].to_vec();
    for u in &mut out {
        for i in &mut u.ins {
            if let Some(gen::Target::Unit(t)) = i.target {
                i.target = Some(gen::Target::Unit(t.min(n)));
            }
        }
    }
    out
}

/// `units` without unit `j`; branches to it go to the unit after it.
pub fn remove_unit(units: &[Unit], j: usize) -> Vec<Unit> {
    let mut out: Vec<Unit> = units.to_vec();
    out.remove(j);
    for u in &mut out {
        for i in &mut u.ins {
            if let Some(gen::Target::Unit(t)) = i.target {
                i.target = Some(gen::Target::Unit(if t > j { t - 1 } else { t }));
            }
        }
    }
    out
}

/// A mismatch narrowed down, for the report.
pub struct Finding {
    pub form: String,
    pub case: Case,
    pub checked: Checked,
    /// The original case's seed and index (to replay it).
    pub seed: u64,
    pub index: u64,
}

impl Finding {
    pub fn report(&self) -> String {
        let c = &self.case;
        let ck = &self.checked;
        let mark = compare::frame_of(&ck.kvm).and_then(|f| c.layout.index_at(f.rip));
        let mut out = format!(
            "mismatch in {} (case {} of seed {:#x}; narrowed to {} instruction(s))\n",
            self.form,
            self.index,
            self.seed,
            c.instructions()
        );
        out += "code (> where KVM stopped):\n";
        out += &c.listing(mark);
        out += "initial state:\n";
        out += &c.describe_start();
        out += "kvm:\n";
        out += &compare::describe_outcome(&ck.kvm);
        out += "interp:\n";
        out += &compare::describe_outcome(&ck.interp);
        out += &format!(
            "masked as undefined: {}\ndiffering:\n",
            match compare::undefined_mask(c, &ck.kvm) {
                0 => "nothing".to_string(),
                m => flag_names(m),
            }
        );
        for d in &ck.diffs {
            out += &format!("  {d}\n");
        }
        out
    }
}

/// Counts for the summary.
#[derive(Default)]
pub struct Stats {
    pub cases: u64,
    pub instructions: u64,
    pub mismatching_cases: u64,
    /// Mismatches by the culprit's form (`unclassified` when narrowing was skipped or did
    /// not reproduce).
    pub by_form: BTreeMap<String, u64>,
    /// How cases ended, by the oracle.
    pub ends: BTreeMap<String, u64>,
    /// Units generated per class.
    pub classes: BTreeMap<&'static str, u64>,
    /// Cases with a known difference, by field.
    pub known: BTreeMap<String, u64>,
}

impl Stats {
    pub fn count_case(&mut self, case: &Case, checked: &Checked) {
        self.cases += 1;
        self.instructions += case.instructions() as u64;
        for d in &checked.known {
            *self.known.entry(d.field.clone()).or_default() += 1;
        }
        for u in &case.units {
            *self.classes.entry(u.class.name()).or_default() += 1;
        }
        let end = match compare::frame_of(&checked.kvm) {
            Some(f) if f.rip == *case.layout.addr.last().unwrap() && env::vector_of(&checked.kvm.state) == Some(6) => {
                "completed (UD2 terminator)".to_string()
            }
            _ => compare::describe_end(&checked.kvm),
        };
        *self.ends.entry(end).or_default() += 1;
    }
}
