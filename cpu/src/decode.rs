//! Decode once: iced-x86 decodes an instruction, and this module turns it into the compact
//! [`Insn`] the interpreter executes, with its handler chosen here (register and memory forms
//! separately) so that executing it is one indirect call and no re-decoding.

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::fault::Fault;
use crate::ops::{self, alu, bcd, bits, branch, ext, fastcall, io, misc, mov, muldiv, shift, stack, string, system};
use iced_x86::{Code, Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic, OpKind, Register};

pub(crate) type Handler = fn(&mut Cpu, &mut dyn Bus, &Insn) -> Result<(), Fault>;

/// No register in a base/index slot.
pub(crate) const NONE: u8 = 0xFF;
/// The base slot holds RIP (RIP-relative addressing: `disp` is relative to the next RIP).
pub(crate) const RIP: u8 = 0xFE;

pub(crate) const REP: u8 = 1;
pub(crate) const REPNE: u8 = 2;

/// One decoded instruction in the form the handlers read.
#[derive(Clone)]
pub(crate) struct Insn {
    pub exec: Handler,
    pub len: u8,
    /// Operand size in bytes: 1, 2, 4 or 8.
    pub osz: u8,
    /// Address size in bytes: 2, 4 or 8.
    pub asz: u8,
    /// First and second register operands: a general register number (8-bit: 0-15 low byte,
    /// 16-19 AH..BH), a segment register number, or a condition code, as the handler expects.
    pub r0: u8,
    pub r1: u8,
    /// The register of each operand position (`NONE` where the operand is not a register):
    /// for three-operand forms whose registers and memory operand come in any order.
    pub opr: [u8; 4],
    /// Memory operand: segment, base, index, scale shift, displacement.
    pub seg: u8,
    pub base: u8,
    pub index: u8,
    pub scale: u8,
    pub disp: u64,
    /// REP/REPE (1) or REPNE (2) prefix on string instructions.
    pub rep: u8,
    /// Immediate (masked to the operand size), or a branch displacement relative to the next
    /// instruction.
    pub imm: u64,
    /// Second immediate: ENTER's nesting level, a far pointer's selector, MOVZX/MOVSX's source
    /// size, a shift count's kind.
    pub imm2: u64,
    /// Where RIP wraps: 0xFFFF for 16-bit code, 0xFFFF_FFFF for 32-bit code.
    pub ip_mask: u64,
    /// RIP after this entry, as an offset from the RIP its block started at (wrapping, then
    /// masked with `ip_mask`): the run loop sets RIP from the block's start without reading
    /// the RIP the previous instruction left (`Cpu::exec_block`). Set by `decode_block`.
    pub next: i32,
    /// A conditional branch (alone or the second half of a fused pair) whose target is a
    /// later entry of its block: that entry's index (0: none). The run loop goes on there when
    /// the branch is taken instead of leaving the block (`Cpu::exec_block`).
    pub skip: u8,
    /// Control transfers, I/O and anything that changes how the following code must be
    /// decoded or interrupted end their block.
    pub ends_block: bool,
    /// Guest instructions in the block up to and including this one (a fused pair counts
    /// two): what the block has retired when it leaves after this entry.
    pub pos: u8,
    /// A compare or arithmetic fused with the Jcc after it (`ops::fused`): the first
    /// instruction's length (0 when not fused) and the Jcc's condition code. The Jcc's
    /// displacement is in `imm2`.
    pub len1: u8,
    pub cc: u8,
}

impl Insn {
    /// RIP at this entry's first byte, in a block entered at RIP `block_start`.
    #[inline(always)]
    pub(crate) fn start_rip(&self, block_start: u64) -> u64 {
        block_start.wrapping_add(self.next as i64 as u64).wrapping_sub(u64::from(self.len)) & self.ip_mask
    }
}

// The run loop walks arrays of these: keep one a cache line.
const _: () = assert!(std::mem::size_of::<Insn>() <= 64);

/// An instruction as text, for reports (blocks keep the decoder's view beside their `Insn`s,
/// out of the way of execution: see `Block::instrs`).
pub(crate) fn text(instr: &Instruction) -> String {
    let mut out = String::new();
    IntelFormatter::new().format(instr, &mut out);
    out
}

fn gpr_index(r: Register) -> u8 {
    let n = r as u32;
    let rel = |first: Register| (n - first as u32) as u8;
    if r.is_gpr8() {
        let i = rel(Register::AL);
        match i {
            0..=3 => i,
            4..=7 => 16 + (i - 4),
            _ => i - 4,
        }
    } else if r.is_gpr16() {
        rel(Register::AX)
    } else if r.is_gpr32() {
        rel(Register::EAX)
    } else if r.is_gpr64() {
        rel(Register::RAX)
    } else if r.is_segment_register() {
        rel(Register::ES)
    } else if r.is_cr() {
        rel(Register::CR0)
    } else if r.is_dr() {
        rel(Register::DR0)
    } else {
        NONE
    }
}

fn mem_asz(instr: &Instruction, bits: u32) -> u8 {
    for k in 0..instr.op_count() {
        match instr.op_kind(k) {
            OpKind::MemorySegSI | OpKind::MemorySegDI | OpKind::MemoryESDI => return 2,
            OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI => return 4,
            OpKind::MemorySegRSI | OpKind::MemorySegRDI | OpKind::MemoryESRDI => return 8,
            OpKind::Memory => {
                let r = if instr.memory_base() != Register::None { instr.memory_base() } else { instr.memory_index() };
                if r != Register::None {
                    return match r.size() {
                        2 => 2,
                        4 => 4,
                        _ => 8,
                    };
                }
                return match instr.memory_displ_size() {
                    2 => 2,
                    4 => 4,
                    8 => 8,
                    _ => (bits / 8) as u8,
                };
            }
            _ => {}
        }
    }
    match instr.op_code().address_size() {
        16 => 2,
        32 => 4,
        64 => 8,
        _ => (bits / 8) as u8,
    }
}

fn op_size(instr: &Instruction) -> u8 {
    match instr.op_code().operand_size() {
        16 => return 2,
        32 => return 4,
        64 => return 8,
        _ => {}
    }
    if instr.op_count() > 0 {
        match instr.op_kind(0) {
            OpKind::Register => {
                let s = instr.op0_register().size();
                if matches!(s, 1 | 2 | 4 | 8) {
                    return s as u8;
                }
            }
            OpKind::Memory
            | OpKind::MemoryESDI
            | OpKind::MemoryESEDI
            | OpKind::MemoryESRDI
            | OpKind::MemorySegSI
            | OpKind::MemorySegESI
            | OpKind::MemorySegRSI => {
                let s = instr.memory_size().size();
                if matches!(s, 1 | 2 | 4 | 8) {
                    return s as u8;
                }
            }
            _ => {}
        }
    }
    if instr.op_count() > 1 && instr.op_kind(1) == OpKind::Register {
        let s = instr.op1_register().size();
        if matches!(s, 1 | 2 | 4 | 8) {
            return s as u8;
        }
    }
    1
}

/// Decodes one instruction from `bytes` (code size `bits`, at `ip`). `None` if the bytes run
/// out before the instruction ends; undefined encodings decode to a #UD handler.
#[cfg(test)]
pub(crate) fn decode(bytes: &[u8], bits: u32, ip: u64) -> Option<Insn> {
    decode_with(bytes, bits, ip).map(|(i, _)| i)
}

/// [`decode`], with the decoder's view of the instruction.
pub(crate) fn decode_with(bytes: &[u8], bits: u32, ip: u64) -> Option<(Insn, Instruction)> {
    let mut d = Decoder::with_ip(bits, bytes, ip, DecoderOptions::NONE);
    let instr = d.decode();
    if instr.is_invalid() {
        return match d.last_error() {
            iced_x86::DecoderError::NoMoreBytes => None,
            _ => Some((undefined(&instr, bits, bytes.len().min(15)), instr)),
        };
    }
    let mut i = Insn {
        exec: ops::ud,
        len: instr.len() as u8,
        osz: op_size(&instr),
        asz: mem_asz(&instr, bits),
        r0: NONE,
        r1: NONE,
        opr: [NONE; 4],
        seg: 3,
        base: NONE,
        index: NONE,
        scale: 0,
        disp: 0,
        rep: if instr.has_repne_prefix() {
            REPNE
        } else if instr.has_rep_prefix() {
            REP
        } else {
            0
        },
        imm: 0,
        imm2: 0,
        ip_mask: u64::MAX,
        next: 0,
        skip: 0,
        ends_block: false,
        pos: 0,
        len1: 0,
        cc: 0,
    };
    let mut has_mem = false;
    let mut has_imm = false;
    let mut regs = 0;
    for k in 0..instr.op_count() {
        match instr.op_kind(k) {
            OpKind::Register => {
                let r = gpr_index(instr.op_register(k));
                if k < 4 {
                    i.opr[k as usize] = r;
                }
                match regs {
                    0 => i.r0 = r,
                    1 => i.r1 = r,
                    _ => {}
                }
                regs += 1;
            }
            OpKind::Memory => {
                has_mem = true;
                i.seg = gpr_index(instr.memory_segment());
                let b = instr.memory_base();
                i.base = if b == Register::RIP || b == Register::EIP { RIP } else { gpr_index(b) };
                i.index = gpr_index(instr.memory_index());
                i.scale = instr.memory_index_scale().trailing_zeros() as u8;
                if bits == 64 && matches!(i.seg, 0 | 1 | 3) {
                    // ES, CS and DS overrides are ignored in 64-bit mode: the segment that
                    // decides #SS against #GP for a non-canonical address is the default one
                    // (SS for RSP/RBP bases). An SS override still makes it #SS, as the
                    // processor does (found by the KVM differential test).
                    i.seg = if i.base == 4 || i.base == 5 { 2 } else { 3 };
                }
                i.disp = if i.base == RIP {
                    instr.memory_displacement64().wrapping_sub(instr.next_ip())
                } else {
                    instr.memory_displacement64()
                };
                if regs == 0 {
                    // The memory operand comes first: the register operand is the source.
                    regs = 1;
                }
            }
            OpKind::MemorySegSI
            | OpKind::MemorySegESI
            | OpKind::MemorySegRSI
            | OpKind::MemorySegDI
            | OpKind::MemorySegEDI
            | OpKind::MemorySegRDI => {
                i.seg = gpr_index(instr.memory_segment());
            }
            OpKind::MemoryESDI | OpKind::MemoryESEDI | OpKind::MemoryESRDI => {}
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                i.imm = instr.near_branch_target().wrapping_sub(instr.next_ip());
            }
            OpKind::FarBranch16 => {
                i.imm = u64::from(instr.far_branch16());
                i.imm2 = u64::from(instr.far_branch_selector());
            }
            OpKind::FarBranch32 => {
                i.imm = u64::from(instr.far_branch32());
                i.imm2 = u64::from(instr.far_branch_selector());
            }
            OpKind::Immediate8_2nd => i.imm2 = instr.immediate(k),
            _ => {
                // Immediates, sign-extended by iced to their operand's size.
                if !has_imm {
                    i.imm = instr.immediate(k);
                    has_imm = true;
                } else {
                    i.imm2 = instr.immediate(k);
                }
            }
        }
    }
    select(&mut i, &instr, has_mem, has_imm);
    Some((i, instr))
}

/// The target of a direct near JMP (rel8/rel16/rel32), if `instr` is one.
pub(crate) fn direct_jump_target(instr: &Instruction) -> Option<u64> {
    (instr.mnemonic() == Mnemonic::Jmp && matches!(instr.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64))
        .then(|| instr.near_branch_target())
}

fn undefined(instr: &Instruction, bits: u32, len: usize) -> Insn {
    Insn {
        exec: ops::ud,
        len: instr.len().max(1).min(len) as u8,
        osz: 2,
        asz: (bits / 8) as u8,
        r0: NONE,
        r1: NONE,
        opr: [NONE; 4],
        seg: 3,
        base: NONE,
        index: NONE,
        scale: 0,
        disp: 0,
        rep: 0,
        imm: 0,
        imm2: 0,
        ip_mask: u64::MAX,
        next: 0,
        skip: 0,
        ends_block: true,
        pos: 0,
        len1: 0,
        cc: 0,
    }
}

macro_rules! by_mem {
    ($mem:expr, $f:path) => {
        if $mem { { use $f as h; h::<true> as Handler } } else { { use $f as h; h::<false> as Handler } }
    };
}

/// The instance of a handler generic over the operand size (its last const parameter, in
/// bytes) for `size`: `sized!(size, f, MEM; A, B)` is `f::<A, B, MEM, size>`. Handlers on the
/// hot paths are specialised so that register access and masking fold away.
macro_rules! sized {
    ($size:expr, $f:path $(, $mem:tt)?; $($g:tt),*) => {{
        use $f as h;
        match $size {
            1 => h::<$($g,)* $($mem,)? 1> as $crate::decode::Handler,
            2 => h::<$($g,)* $($mem,)? 2> as $crate::decode::Handler,
            4 => h::<$($g,)* $($mem,)? 4> as $crate::decode::Handler,
            _ => h::<$($g,)* $($mem,)? 8> as $crate::decode::Handler,
        }
    }};
}
pub(crate) use sized;

/// `sized!` for a handler generic over `<MEM, S>`.
macro_rules! by_mem_size {
    ($mem:expr, $size:expr, $f:path) => {
        if $mem {
            sized!($size, $f, true;)
        } else {
            sized!($size, $f, false;)
        }
    };
}

/// Chooses the handler. Everything not listed here is #UD.
fn select(i: &mut Insn, instr: &Instruction, mem: bool, has_imm: bool) {
    use Mnemonic as M;
    let code = instr.code();
    let m = instr.mnemonic();
    let op1_is_reg = instr.op_count() > 1 && instr.op_kind(1) == OpKind::Register;
    let op0_is_reg = instr.op_count() > 0 && instr.op_kind(0) == OpKind::Register;
    let mut ends = false;
    let mut undefined = false;
    if let Some(h) = crate::x87::select(i, instr, mem).or_else(|| crate::simd::select(i, instr, mem)) {
        i.exec = h;
        return;
    }
    let h: Handler = match m {
        M::Add | M::Or | M::Adc | M::Sbb | M::And | M::Sub | M::Xor | M::Cmp => {
            let op = alu::op_of(m);
            if has_imm {
                alu::rm_imm_handler(op, mem, i.osz)
            } else if op0_is_reg && mem {
                alu::r_m_handler(op, i.osz)
            } else {
                alu::rm_r_handler(op, mem, i.osz)
            }
        }
        M::Test => {
            if has_imm {
                alu::rm_imm_handler(alu::TEST, mem, i.osz)
            } else {
                alu::rm_r_handler(alu::TEST, mem, i.osz)
            }
        }
        M::Inc => by_mem_size!(mem, i.osz, alu::inc),
        M::Dec => by_mem_size!(mem, i.osz, alu::dec),
        M::Neg => by_mem!(mem, alu::neg),
        M::Not => by_mem!(mem, alu::not),
        M::Mul => by_mem!(mem, muldiv::mul),
        M::Div => by_mem!(mem, muldiv::div),
        M::Idiv => by_mem!(mem, muldiv::idiv),
        M::Imul => match instr.op_count() {
            1 => by_mem!(mem, muldiv::imul1),
            2 => by_mem_size!(mem, i.osz, muldiv::imul2),
            _ => by_mem_size!(mem, i.osz, muldiv::imul3),
        },
        M::Mov => match (instr.op_kind(0), instr.op_count() > 1) {
            _ if instr.op0_register().is_segment_register() => {
                ends = i.r0 == 2; // MOV SS holds interrupts off for one instruction
                by_mem!(mem, mov::mov_sreg_rm)
            }
            _ if op1_is_reg && instr.op1_register().is_segment_register() => by_mem!(mem, mov::mov_rm_sreg),
            _ if instr.op0_register().is_cr() || (op1_is_reg && instr.op1_register().is_cr()) => {
                ends = true;
                if instr.op0_register().is_cr() {
                    misc::mov_cr_r as Handler
                } else {
                    misc::mov_r_cr as Handler
                }
            }
            _ if instr.op0_register().is_dr() || (op1_is_reg && instr.op1_register().is_dr()) => {
                // Breakpoints armed or disarmed change how the following code must run.
                ends = true;
                if instr.op0_register().is_dr() {
                    misc::mov_dr_r as Handler
                } else {
                    misc::mov_r_dr as Handler
                }
            }
            _ if has_imm => by_mem_size!(mem, i.osz, mov::mov_rm_imm),
            (OpKind::Register, _) if mem => match ops::ea_kind(i) {
                ops::EA_BASE32 => sized!(i.osz, mov::mov_r_m; 1),
                ops::EA_BASE64 => sized!(i.osz, mov::mov_r_m; 2),
                _ => sized!(i.osz, mov::mov_r_m; 0),
            },
            _ if mem => match ops::ea_kind(i) {
                ops::EA_BASE32 => sized!(i.osz, mov::mov_rm_r, true; 1),
                ops::EA_BASE64 => sized!(i.osz, mov::mov_rm_r, true; 2),
                _ => sized!(i.osz, mov::mov_rm_r, true; 0),
            },
            _ => sized!(i.osz, mov::mov_rm_r, false; 0),
        },
        M::Movzx => {
            i.imm2 = src_size(instr);
            by_mem!(mem, mov::movzx)
        }
        M::Movsx | M::Movsxd => {
            i.imm2 = src_size(instr);
            by_mem!(mem, mov::movsx)
        }
        M::Lea => sized!(i.osz, mov::lea;),
        M::Xchg => by_mem!(mem, mov::xchg),
        M::Pause => ops::misc::pause as Handler,
        M::Nop | M::Wait | M::Prefetchnta | M::Prefetcht0 | M::Prefetcht1 | M::Prefetcht2 | M::Prefetchw => {
            ops::nop as Handler
        }
        // The hint space 0F 18-0F 1F executes as NOP on a CPU without the feature that gave
        // an encoding meaning there (CET's ENDBR and RDSSP, MPX, CLDEMOTE), with no memory
        // access: distribution binaries built with -fcf-protection start functions with ENDBR64.
        M::Endbr32
        | M::Endbr64
        | M::Rdsspd
        | M::Rdsspq
        | M::Reservednop
        | M::Cldemote
        | M::Bndcl
        | M::Bndcn
        | M::Bndcu
        | M::Bndldx
        | M::Bndmk
        | M::Bndmov
        | M::Bndstx
        | M::Prefetch => ops::nop as Handler,
        M::Xlatb => mov::xlat as Handler,
        M::Lds | M::Les | M::Lss | M::Lfs | M::Lgs => {
            i.r1 = match m {
                M::Les => 0,
                M::Lss => 2,
                M::Lds => 3,
                M::Lfs => 4,
                _ => 5,
            };
            ends = m == M::Lss;
            mov::load_far_pointer as Handler
        }
        M::Cbw | M::Cwde | M::Cdqe => mov::cbw as Handler,
        M::Cwd | M::Cdq | M::Cqo => mov::cwd as Handler,
        M::Cmove
        | M::Cmovne
        | M::Cmovo
        | M::Cmovno
        | M::Cmovb
        | M::Cmovae
        | M::Cmovbe
        | M::Cmova
        | M::Cmovs
        | M::Cmovns
        | M::Cmovp
        | M::Cmovnp
        | M::Cmovl
        | M::Cmovge
        | M::Cmovle
        | M::Cmovg => {
            i.imm2 = cc_of(instr);
            by_mem!(mem, mov::cmov)
        }
        M::Push => {
            if op0_is_reg && instr.op0_register().is_segment_register() {
                stack::push_sreg as Handler
            } else if has_imm {
                stack::push_imm as Handler
            } else {
                by_mem!(mem, stack::push_rm)
            }
        }
        M::Pop => {
            if op0_is_reg && instr.op0_register().is_segment_register() {
                ends = true;
                stack::pop_sreg as Handler
            } else {
                by_mem!(mem, stack::pop_rm)
            }
        }
        M::Pusha | M::Pushad => stack::pusha as Handler,
        M::Popa | M::Popad => stack::popa as Handler,
        M::Pushf | M::Pushfd | M::Pushfq => stack::pushf as Handler,
        M::Popf | M::Popfd | M::Popfq => {
            ends = true;
            stack::popf as Handler
        }
        M::Enter => stack::enter as Handler,
        M::Leave => stack::leave as Handler,
        M::Rol | M::Ror | M::Rcl | M::Rcr | M::Shl | M::Sal | M::Shr | M::Sar => {
            i.imm2 = shift::op_of(m);
            // The count: CL, or an immediate (1 for the D0-D3 forms).
            let by_cl = instr.op_count() > 1 && instr.op_kind(1) == OpKind::Register;
            shift::handler(i.imm2, by_cl, mem, i.osz)
        }
        M::Shld | M::Shrd => {
            i.imm2 = u64::from(m == M::Shrd);
            if instr.op_kind(2) == OpKind::Register {
                by_mem!(mem, shift::shxd_cl)
            } else {
                // The count is the one immediate: keep it in `imm`, the direction in `imm2`.
                by_mem!(mem, shift::shxd_imm)
            }
        }
        M::Bt | M::Bts | M::Btr | M::Btc => {
            let op = match m {
                M::Bt => 0,
                M::Bts => 1,
                M::Btr => 2,
                _ => 3,
            };
            i.imm2 = op;
            if has_imm {
                by_mem!(mem, bits::bt_imm)
            } else {
                by_mem!(mem, bits::bt_r)
            }
        }
        M::Bsf => by_mem!(mem, bits::bsf),
        M::Bsr => by_mem!(mem, bits::bsr),
        M::Bswap => bits::bswap as Handler,
        M::Seto
        | M::Setno
        | M::Setb
        | M::Setae
        | M::Sete
        | M::Setne
        | M::Setbe
        | M::Seta
        | M::Sets
        | M::Setns
        | M::Setp
        | M::Setnp
        | M::Setl
        | M::Setge
        | M::Setle
        | M::Setg => {
            i.imm2 = cc_of(instr);
            by_mem!(mem, bits::setcc)
        }
        M::Xadd => by_mem!(mem, alu::xadd),
        M::Cmpxchg8b | M::Cmpxchg16b => {
            i.osz = if m == M::Cmpxchg16b { 8 } else { 4 };
            ext::cmpxchg8b16b as Handler
        }
        M::Popcnt | M::Lzcnt | M::Tzcnt => {
            i.imm2 = match m {
                M::Popcnt => 0,
                M::Lzcnt => 1,
                _ => 2,
            };
            by_mem!(mem, ext::count_bits)
        }
        M::Movbe => {
            if mem && instr.op_kind(0) == OpKind::Memory {
                ext::movbe_store as Handler
            } else {
                ext::movbe_load as Handler
            }
        }
        M::Andn | M::Bextr | M::Bzhi | M::Pdep | M::Pext | M::Sarx | M::Shlx | M::Shrx | M::Blsi | M::Blsmsk | M::Blsr | M::Rorx | M::Mulx => {
            i.imm2 = ext::bmi_op(m);
            by_mem!(mem, ext::bmi)
        }
        M::Adcx | M::Adox => {
            i.imm2 = u64::from(m == M::Adox);
            by_mem!(mem, ext::adx)
        }
        M::Crc32 => {
            i.imm2 = src_size(instr);
            // The destination is r32 or r64 whatever the source size (and a 66 prefix) says.
            i.osz = instr.op0_register().size() as u8;
            by_mem!(mem, ext::crc32)
        }
        M::Cmpxchg => by_mem!(mem, alu::cmpxchg),
        // A taken Jcc, LOOP or JCXZ leaves the block (a side exit); not taken, the block goes on.
        M::Jo | M::Jno | M::Jb | M::Jae | M::Je | M::Jne | M::Jbe | M::Ja | M::Js | M::Jns | M::Jp | M::Jnp | M::Jl | M::Jge | M::Jle | M::Jg => {
            i.imm2 = cc_of(instr);
            branch::jcc_handler(i.imm2 as u8, i.osz)
        }
        M::Jmp => {
            ends = true;
            match instr.op_kind(0) {
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => sized!(i.osz, branch::jmp_rel;),
                OpKind::FarBranch16 | OpKind::FarBranch32 => branch::jmp_far_imm as Handler,
                _ if instr.is_jmp_far_indirect() => branch::jmp_far_mem as Handler,
                _ => by_mem!(mem, branch::jmp_rm),
            }
        }
        M::Call => {
            ends = true;
            match instr.op_kind(0) {
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => branch::call_rel as Handler,
                OpKind::FarBranch16 | OpKind::FarBranch32 => branch::call_far_imm as Handler,
                _ if instr.is_call_far_indirect() => branch::call_far_mem as Handler,
                _ => by_mem!(mem, branch::call_rm),
            }
        }
        M::Ret => {
            ends = true;
            branch::ret as Handler
        }
        M::Retf => {
            ends = true;
            branch::retf as Handler
        }
        M::Iret | M::Iretd | M::Iretq => {
            ends = true;
            branch::iret as Handler
        }
        M::Loop | M::Loope | M::Loopne | M::Jcxz | M::Jecxz | M::Jrcxz => {
            i.imm2 = match m {
                M::Loop => 0,
                M::Loope => 1,
                M::Loopne => 2,
                _ => 3,
            };
            branch::loop_ as Handler
        }
        M::Int => {
            ends = true;
            branch::int_n as Handler
        }
        M::Int3 => {
            ends = true;
            i.imm = 3;
            branch::int_n as Handler
        }
        M::Int1 => {
            ends = true;
            branch::icebp as Handler
        }
        M::Into => {
            ends = true;
            branch::into as Handler
        }
        M::Bound => branch::bound as Handler,
        M::Hlt => {
            ends = true;
            misc::hlt as Handler
        }
        M::Movsb | M::Movsw | M::Movsd if instr.op_count() == 2 && instr.op_kind(0) != OpKind::Register => string::movs as Handler,
        M::Movsq => string::movs as Handler,
        M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq if instr.op_count() == 2 && !has_imm => string::cmps as Handler,
        M::Stosb | M::Stosw | M::Stosd | M::Stosq => string::stos as Handler,
        M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => string::lods as Handler,
        M::Scasb | M::Scasw | M::Scasd | M::Scasq => string::scas as Handler,
        M::Insb | M::Insw | M::Insd => {
            ends = true;
            string::ins as Handler
        }
        M::Outsb | M::Outsw | M::Outsd => {
            ends = true;
            string::outs as Handler
        }
        M::In => {
            ends = true;
            if has_imm {
                io::in_imm as Handler
            } else {
                io::in_dx as Handler
            }
        }
        M::Out => {
            ends = true;
            if has_imm {
                io::out_imm as Handler
            } else {
                io::out_dx as Handler
            }
        }
        M::Clc | M::Stc | M::Cmc | M::Cld | M::Std | M::Cli => {
            i.imm2 = match m {
                M::Clc => 0,
                M::Stc => 1,
                M::Cmc => 2,
                M::Cld => 3,
                M::Std => 4,
                _ => 5,
            };
            misc::flag_op as Handler
        }
        M::Sti => {
            ends = true;
            misc::sti as Handler
        }
        M::Stac | M::Clac => {
            i.imm2 = u64::from(m == M::Stac);
            misc::stac_clac as Handler
        }
        M::Lahf => misc::lahf as Handler,
        M::Sahf => misc::sahf as Handler,
        M::Salc => misc::salc as Handler,
        M::Daa => bcd::daa as Handler,
        M::Das => bcd::das as Handler,
        M::Aaa => bcd::aaa as Handler,
        M::Aas => bcd::aas as Handler,
        M::Aam => bcd::aam as Handler,
        M::Aad => bcd::aad as Handler,
        M::Lidt | M::Lgdt => {
            ends = true;
            i.imm2 = u64::from(m == M::Lidt);
            misc::load_table as Handler
        }
        M::Sidt | M::Sgdt => {
            i.imm2 = u64::from(m == M::Sidt);
            misc::store_table as Handler
        }
        M::Smsw => by_mem!(mem, misc::smsw),
        M::Lmsw => {
            ends = true;
            by_mem!(mem, misc::lmsw)
        }
        M::Clts => misc::clts as Handler,
        M::Lldt => {
            ends = true;
            by_mem!(mem, system::lldt)
        }
        M::Ltr => by_mem!(mem, system::ltr),
        M::Sldt | M::Str => {
            i.imm2 = u64::from(m == M::Str);
            by_mem!(mem, system::store_selector)
        }
        M::Lar | M::Lsl => {
            i.imm2 = u64::from(m == M::Lsl);
            by_mem!(mem, system::lar_lsl)
        }
        M::Verr | M::Verw => {
            i.imm2 = u64::from(m == M::Verw);
            by_mem!(mem, system::verr_verw)
        }
        M::Arpl => by_mem!(mem, system::arpl),
        M::Cpuid => misc::cpuid as Handler,
        M::Rdtsc => misc::rdtsc as Handler,
        M::Rdpmc => misc::rdpmc as Handler,
        M::Rdtscp => fastcall::rdtscp as Handler,
        M::Syscall => {
            ends = true;
            fastcall::syscall as Handler
        }
        M::Sysret | M::Sysretq => {
            ends = true;
            fastcall::sysret as Handler
        }
        M::Sysenter => {
            ends = true;
            fastcall::sysenter as Handler
        }
        M::Sysexit | M::Sysexitq => {
            ends = true;
            fastcall::sysexit as Handler
        }
        M::Swapgs => fastcall::swapgs as Handler,
        M::Rdmsr => misc::rdmsr as Handler,
        M::Wrmsr => misc::wrmsr as Handler,
        M::Invlpg => {
            ends = true;
            misc::invlpg as Handler
        }
        M::Lfence | M::Sfence | M::Mfence | M::Clflush => ops::nop as Handler,
        M::Invd | M::Wbinvd => misc::cache_control as Handler,
        _ => {
            tracing::debug!("no handler for {:?}: #UD", code);
            undefined = true;
            ops::ud as Handler
        }
    };
    // OUT and OUTS name DX first; their size is the data's.
    match code {
        Code::Out_DX_AL | Code::Outsb_DX_m8 | Code::Insb_m8_DX => i.osz = 1,
        Code::Out_DX_AX => i.osz = 2,
        Code::Out_DX_EAX => i.osz = 4,
        _ => {}
    }
    i.exec = h;
    i.ends_block = ends || undefined;
}

fn src_size(instr: &Instruction) -> u64 {
    match instr.op_kind(1) {
        OpKind::Register => instr.op1_register().size() as u64,
        _ => instr.memory_size().size() as u64,
    }
}

fn cc_of(instr: &Instruction) -> u64 {
    use iced_x86::ConditionCode as C;
    (match instr.condition_code() {
        C::o => 0,
        C::no => 1,
        C::b => 2,
        C::ae => 3,
        C::e => 4,
        C::ne => 5,
        C::be => 6,
        C::a => 7,
        C::s => 8,
        C::ns => 9,
        C::p => 10,
        C::np => 11,
        C::l => 12,
        C::ge => 13,
        C::le => 14,
        C::g => 15,
        C::None => 0,
    }) as u64
}
