//! MMX, SSE through SSE4.2, and the FXSAVE/XSAVE state instructions. (Being written: until
//! then nothing is claimed here, and these encodings raise #UD.)

use crate::decode::{Handler, Insn};
use iced_x86::Instruction;

/// The handler for an MMX/SSE/state-management instruction (with `i` adjusted as the
/// handler needs), or `None` if `instr` is not one this module implements.
pub(crate) fn select(_i: &mut Insn, _instr: &Instruction, _mem: bool) -> Option<Handler> {
    None
}
