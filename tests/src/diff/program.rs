//! A program as units of instructions: its control flow (forward branches, CALL/RET inside a
//! template), which flags are undefined where, and its machine code (iced-x86's block
//! encoder, with each instruction's index as its label).

use super::env::{CODE, CODE_SIZE};
use super::flags::{effects, Effects};
use super::gen::{Target, Unit};
use iced_x86::{BlockEncoder, BlockEncoderOptions, Code, Instruction, InstructionBlock, Mnemonic};

/// Label addresses: instruction n of a program is "at" `LABELS + 16 n` until encoded.
const LABELS: u64 = 0x7F00_0000_0000;

/// One instruction of the flattened program (the last one is the UD2 terminator).
#[derive(Clone, Debug)]
pub struct FlatIns {
    pub instr: Instruction,
    pub unit: usize,
    pub succ: Vec<usize>,
    pub effects: Effects,
    pub raw: Option<Vec<u8>>,
    pub terminator: bool,
}

/// Flattens `units` and appends the terminator.
pub fn flatten(units: &[Unit]) -> Vec<FlatIns> {
    let mut starts = Vec::with_capacity(units.len() + 1);
    let mut n = 0;
    for u in units {
        starts.push(n);
        n += u.ins.len();
    }
    starts.push(n);
    let mut out = Vec::with_capacity(n + 1);
    for (ui, u) in units.iter().enumerate() {
        for (k, ins) in u.ins.iter().enumerate() {
            let i = starts[ui] + k;
            let resolve = |t: Target| match t {
                Target::Unit(j) => starts[j.min(units.len())],
                Target::Local(l) => starts[ui] + l,
            };
            let m = ins.instr.mnemonic();
            let succ = if let Some(t) = ins.target {
                let t = resolve(t);
                match m {
                    Mnemonic::Jmp | Mnemonic::Call => vec![t],
                    _ => vec![i + 1, t],
                }
            } else if m == Mnemonic::Ret {
                ins.returns_to.map(|l| vec![starts[ui] + l]).unwrap_or_default()
            } else {
                vec![i + 1]
            };
            // Raw bytes: their flag effects are those of what they decode to.
            let eff = match &ins.raw {
                Some(bytes) => {
                    let d = iced_x86::Decoder::new(64, bytes, iced_x86::DecoderOptions::NONE).decode();
                    if d.is_invalid() {
                        Effects::default()
                    } else {
                        effects(&d)
                    }
                }
                None => effects(&ins.instr),
            };
            out.push(FlatIns {
                instr: ins.instr,
                unit: ui,
                succ,
                effects: eff,
                raw: ins.raw.clone(),
                terminator: false,
            });
        }
    }
    out.push(FlatIns {
        instr: Instruction::with(Code::Ud2),
        unit: units.len(),
        succ: Vec::new(),
        effects: Effects::default(),
        raw: None,
        terminator: true,
    });
    out
}

/// For each instruction, the flags that may be undefined when it starts (`None`: not
/// reachable).
pub fn taint(flat: &[FlatIns]) -> Vec<Option<u64>> {
    let mut t: Vec<Option<u64>> = vec![None; flat.len()];
    t[0] = Some(0);
    for _ in 0..flat.len() + 2 {
        let mut changed = false;
        for i in 0..flat.len() {
            let Some(before) = t[i] else { continue };
            let after = flat[i].effects.taint_after(before);
            for &s in &flat[i].succ {
                if s >= flat.len() {
                    continue;
                }
                let new = t[s].unwrap_or(0) | after;
                if t[s] != Some(new) {
                    t[s] = Some(new);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    t
}

/// No reachable instruction reads a flag that may be undefined there.
pub fn flags_ok(units: &[Unit]) -> bool {
    let flat = flatten(units);
    let t = taint(&flat);
    flat.iter().zip(&t).all(|(f, t)| t.map_or(true, |t| f.effects.read & t == 0))
}

/// A program in machine code.
#[derive(Clone, Debug)]
pub struct Layout {
    pub code: Vec<u8>,
    pub flat: Vec<FlatIns>,
    /// Address of each flat instruction (the last: the terminator).
    pub addr: Vec<u64>,
    pub taint: Vec<Option<u64>>,
}

impl Layout {
    pub fn assemble(units: &[Unit]) -> Result<Layout, String> {
        let flat = flatten(units);
        let taint = taint(&flat);
        let mut list = Vec::with_capacity(flat.len());
        let starts: Vec<usize> = {
            let mut v = Vec::new();
            let mut n = 0;
            for u in units {
                v.push(n);
                n += u.ins.len();
            }
            v
        };
        for (i, f) in flat.iter().enumerate() {
            let mut instr = f.instr;
            instr.set_ip(LABELS + 16 * i as u64);
            if !f.terminator {
                let u = &units[f.unit];
                let k = i - starts[f.unit];
                if u.ins[k].target.is_some() {
                    // The resolved target: a branch's taken successor is its last.
                    let t = *f.succ.last().expect("branch has a target");
                    instr.set_near_branch64(LABELS + 16 * t as u64);
                }
            }
            list.push(instr);
        }
        let block = InstructionBlock::new(&list, CODE);
        let r = BlockEncoder::encode(
            64,
            block,
            BlockEncoderOptions::DONT_FIX_BRANCHES | BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )
        .map_err(|e| e.to_string())?;
        if r.code_buffer.len() as u64 > CODE_SIZE - 16 {
            return Err(format!("program too long: {} bytes", r.code_buffer.len()));
        }
        let addr = r.new_instruction_offsets.iter().map(|&o| CODE + u64::from(o)).collect();
        Ok(Layout { code: r.code_buffer, flat, addr, taint })
    }

    /// The flat instruction at `rip`.
    pub fn index_at(&self, rip: u64) -> Option<usize> {
        self.addr.iter().position(|&a| a == rip)
    }

    /// Flags to leave out of the comparison when the case stopped with RIP (the faulting
    /// instruction, or the one after a trap) at `rip`: those undefined there, or all status
    /// flags if `rip` is not an instruction of the program.
    pub fn undefined_at(&self, rip: u64) -> u64 {
        match self.index_at(rip) {
            Some(i) => self.taint[i].unwrap_or(cpu::state::flags::ARITH),
            None => cpu::state::flags::ARITH,
        }
    }

    pub fn len_of(&self, i: usize) -> usize {
        let end = if i + 1 < self.addr.len() { self.addr[i + 1] } else { CODE + self.code.len() as u64 };
        (end - self.addr[i]) as usize
    }

    /// The bytes of flat instruction `i`.
    pub fn bytes_of(&self, i: usize) -> &[u8] {
        let a = (self.addr[i] - CODE) as usize;
        &self.code[a..a + self.len_of(i)]
    }
}
