//! The x87 floating-point unit. (Being written: until then no ESC instruction is claimed
//! here, and they do nothing, as on a machine without a coprocessor.)

use crate::decode::{Handler, Insn};
use iced_x86::Instruction;

/// The handler for an x87 instruction (with `i` adjusted as the handler needs), or `None`
/// if `instr` is not one this module implements.
pub(crate) fn select(_i: &mut Insn, _instr: &Instruction, _mem: bool) -> Option<Handler> {
    None
}
