//! Random but valid 64-bit user-mode programs.
//!
//! Forms come from iced-x86's own opcode tables: every `Code` valid in 64-bit mode whose
//! mnemonic belongs to an enabled [`Class`] and whose operands are all of kinds the operand
//! builder knows (general registers, memory, immediates, near branches, string operands)
//! becomes a form, so every encoding of an instruction (the 0x83 and 0x81 and AL-short
//! forms of ADD, moffs MOVs, the 0x90+r XCHGs...) is generated without listing it. A few
//! instructions need set-up and come as short templates (string instructions, CALL/RET, POPF,
//! ENTER/LEAVE, DIV with a divisor that does not overflow).
//!
//! How memory operands stay inside the data area: each case picks two pointer registers and
//! one index register (0-63) from RBX, RBP and R8-R15, and no generated instruction may write
//! them (checked with iced-x86's register-use info, implicit writes included); RSP points into
//! the data area and only stack instructions change it. Memory operands are built from those
//! registers (base, base + index * scale, either with displacements), RIP-relative and absolute
//! addresses into the data area, RSP-relative, 32-bit addressing, and FS/GS overrides (small
//! bases). LEA, NOP and PREFETCH, which touch no memory, get arbitrary registers.
//!
//! Undefined flags (see `flags.rs`): no instruction is generated that reads a flag which is
//! undefined on any path reaching it.
//!
//! x87, MMX and SSE are classes here but generate nothing yet (they were not in the interpreter
//! when this was written; they are now): the operand builder has no ST/MM/XMM kinds and the
//! comparison looks at no FPU/SSE state. Switching them on means: those operand kinds in
//! `build`, `CpuState::fpu`/`sse` (which the KVM backend now converts) in `compare`, the x87/
//! SSE undefined-flag and undefined-result rules in `flags.rs`, and taking them out of
//! `Class::unimplemented`.

use super::env::{DATA, DATA_SIZE};
use super::rng::Rng;
use cpu::state::flags as fl;
use iced_x86::{
    Code, DecoderOptions, EncodingKind, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpCodeOperandKind as K,
    OpKind, Register,
};
use std::sync::OnceLock;

/// Instruction classes; `--class` picks one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Alu,
    Unary,
    MulDiv,
    Shift,
    Bits,
    Bmi,
    Adx,
    Crc32,
    Movbe,
    Atomic,
    Mov,
    Cmov,
    Stack,
    Flags,
    Convert,
    String,
    Branch,
    Call,
    Misc,
    Invalid,
    Privileged,
    SysInfo,
    X87,
    Mmx,
    Sse,
}

impl Class {
    pub const ALL: [Class; 25] = [
        Class::Alu,
        Class::Unary,
        Class::MulDiv,
        Class::Shift,
        Class::Bits,
        Class::Bmi,
        Class::Adx,
        Class::Crc32,
        Class::Movbe,
        Class::Atomic,
        Class::Mov,
        Class::Cmov,
        Class::Stack,
        Class::Flags,
        Class::Convert,
        Class::String,
        Class::Branch,
        Class::Call,
        Class::Misc,
        Class::Invalid,
        Class::Privileged,
        Class::SysInfo,
        Class::X87,
        Class::Mmx,
        Class::Sse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Alu => "alu",
            Class::Unary => "unary",
            Class::MulDiv => "muldiv",
            Class::Shift => "shift",
            Class::Bits => "bits",
            Class::Bmi => "bmi",
            Class::Adx => "adx",
            Class::Crc32 => "crc32",
            Class::Movbe => "movbe",
            Class::Atomic => "atomic",
            Class::Mov => "mov",
            Class::Cmov => "cmov",
            Class::Stack => "stack",
            Class::Flags => "flags",
            Class::Convert => "convert",
            Class::String => "string",
            Class::Branch => "branch",
            Class::Call => "call",
            Class::Misc => "misc",
            Class::Invalid => "invalid",
            Class::Privileged => "privileged",
            Class::SysInfo => "sysinfo",
            Class::X87 => "x87",
            Class::Mmx => "mmx",
            Class::Sse => "sse",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Class::Alu => "ADD OR ADC SBB AND SUB XOR CMP TEST, all sizes, reg/mem/imm forms, LOCK on memory forms",
            Class::Unary => "INC DEC NEG NOT",
            Class::MulDiv => "MUL IMUL (1, 2, 3 operands) DIV IDIV (#DE agreed, often preceded by a set-up that avoids it)",
            Class::Shift => "ROL ROR RCL RCR SHL SAL SHR SAR SHLD SHRD by 1, imm8 and CL",
            Class::Bits => "BT BTS BTR BTC BSF BSR POPCNT LZCNT TZCNT BSWAP",
            Class::Bmi => "BMI1/BMI2: ANDN BEXTR BLSI BLSMSK BLSR BZHI PDEP PEXT RORX SARX SHLX SHRX MULX",
            Class::Adx => "ADCX ADOX",
            Class::Crc32 => "CRC32 (all source sizes)",
            Class::Movbe => "MOVBE",
            Class::Atomic => "CMPXCHG CMPXCHG8B CMPXCHG16B XADD XCHG, with and without LOCK",
            Class::Mov => "MOV (incl. moffs, imm64) MOVZX MOVSX MOVSXD LEA (any registers)",
            Class::Cmov => "CMOVcc SETcc",
            Class::Stack => "PUSH POP (reg, mem, imm, 16/64-bit) PUSHF/POPF ENTER/LEAVE",
            Class::Flags => "CLC STC CMC CLD STD LAHF SAHF",
            Class::Convert => "CBW CWDE CDQE CWD CDQ CQO",
            Class::String => "MOVS CMPS STOS LODS SCAS, all sizes, with REP/REPE/REPNE, 64/32-bit addressing",
            Class::Branch => "Jcc JMP (rel8/rel32) LOOP LOOPE LOOPNE JRCXZ JECXZ, forward only",
            Class::Call => "CALL rel32 with RET / RET imm16, CALL to the next instruction with POP",
            Class::Misc => "NOP (all forms) PAUSE fences PREFETCHh CLFLUSH XLAT",
            Class::Invalid => "opcodes invalid in 64-bit mode, UD0/UD1/UD2, LOCK where it is not allowed (#UD)",
            Class::Privileged => "HLT CLI STI IN OUT INS OUTS INT1 MOV CR/DR LGDT LIDT LLDT LTR INVLPG RDMSR WRMSR CLTS LMSW INVD WBINVD SWAPGS SYSEXIT RDPMC from ring 3 (INT n, INT3, SYSCALL, SYSENTER, SYSRET: see EXCLUDED)",
            Class::SysInfo => "SGDT SIDT SLDT STR SMSW from ring 3 (CR4.UMIP clear)",
            Class::X87 => "x87 (generates nothing yet: no ST operands, no FPU state compared)",
            Class::Mmx => "MMX (generates nothing yet: no MM operands, no MMX state compared)",
            Class::Sse => "SSE (generates nothing yet: no XMM operands, no SSE state compared)",
        }
    }

    pub fn by_name(name: &str) -> Option<Class> {
        Class::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// Not in the generator (see the top of this file): never generated.
    pub fn unimplemented(self) -> bool {
        matches!(self, Class::X87 | Class::Mmx | Class::Sse)
    }

    /// In the default mix. SysInfo is off: on a paravirtual KVM the host's UMIP makes the
    /// host kernel emulate these, with the host's own table addresses (see the report).
    pub fn default_on(self) -> bool {
        !self.unimplemented() && self != Class::SysInfo
    }

    /// Whether the host CPU can run the class natively (the oracle must have it).
    pub fn host_supports(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Class::Bmi => is_x86_feature_detected!("bmi1") && is_x86_feature_detected!("bmi2"),
                Class::Adx => is_x86_feature_detected!("adx"),
                Class::Crc32 => is_x86_feature_detected!("sse4.2"),
                Class::Movbe => is_x86_feature_detected!("movbe"),
                Class::Bits => is_x86_feature_detected!("popcnt") && is_x86_feature_detected!("lzcnt"),
                _ => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            true
        }
    }
}

fn class_of(m: Mnemonic) -> Option<Class> {
    use Mnemonic as M;
    Some(match m {
        M::Add | M::Or | M::Adc | M::Sbb | M::And | M::Sub | M::Xor | M::Cmp | M::Test => Class::Alu,
        M::Inc | M::Dec | M::Neg | M::Not => Class::Unary,
        M::Mul | M::Imul | M::Div | M::Idiv => Class::MulDiv,
        M::Rol | M::Ror | M::Rcl | M::Rcr | M::Shl | M::Sal | M::Shr | M::Sar | M::Shld | M::Shrd => Class::Shift,
        M::Bt | M::Bts | M::Btr | M::Btc | M::Bsf | M::Bsr | M::Popcnt | M::Lzcnt | M::Tzcnt | M::Bswap => Class::Bits,
        M::Andn | M::Bextr | M::Blsi | M::Blsmsk | M::Blsr | M::Bzhi | M::Pdep | M::Pext | M::Rorx | M::Sarx | M::Shlx
        | M::Shrx | M::Mulx => Class::Bmi,
        M::Adcx | M::Adox => Class::Adx,
        M::Crc32 => Class::Crc32,
        M::Movbe => Class::Movbe,
        M::Cmpxchg | M::Cmpxchg8b | M::Cmpxchg16b | M::Xadd | M::Xchg => Class::Atomic,
        M::Mov | M::Movzx | M::Movsx | M::Movsxd | M::Lea => Class::Mov,
        M::Cmovo | M::Cmovno | M::Cmovb | M::Cmovae | M::Cmove | M::Cmovne | M::Cmovbe | M::Cmova | M::Cmovs | M::Cmovns
        | M::Cmovp | M::Cmovnp | M::Cmovl | M::Cmovge | M::Cmovle | M::Cmovg | M::Seto | M::Setno | M::Setb | M::Setae
        | M::Sete | M::Setne | M::Setbe | M::Seta | M::Sets | M::Setns | M::Setp | M::Setnp | M::Setl | M::Setge
        | M::Setle | M::Setg => Class::Cmov,
        M::Push | M::Pop => Class::Stack,
        M::Clc | M::Stc | M::Cmc | M::Cld | M::Std | M::Lahf | M::Sahf => Class::Flags,
        M::Cbw | M::Cwde | M::Cdqe | M::Cwd | M::Cdq | M::Cqo => Class::Convert,
        M::Movsb | M::Movsw | M::Movsd | M::Movsq | M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq | M::Stosb | M::Stosw
        | M::Stosd | M::Stosq | M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq | M::Scasb | M::Scasw | M::Scasd | M::Scasq => {
            Class::String
        }
        M::Jo | M::Jno | M::Jb | M::Jae | M::Je | M::Jne | M::Jbe | M::Ja | M::Js | M::Jns | M::Jp | M::Jnp | M::Jl
        | M::Jge | M::Jle | M::Jg | M::Jmp | M::Loop | M::Loope | M::Loopne | M::Jrcxz | M::Jecxz => Class::Branch,
        M::Nop | M::Pause | M::Lfence | M::Sfence | M::Mfence | M::Prefetchnta | M::Prefetcht0 | M::Prefetcht1
        | M::Prefetcht2 | M::Prefetchw | M::Clflush | M::Xlatb => Class::Misc,
        M::Hlt | M::Cli | M::Sti | M::In | M::Out | M::Insb | M::Insw | M::Insd | M::Outsb | M::Outsw | M::Outsd
        | M::Int | M::Int3 | M::Int1 | M::Lgdt | M::Lidt | M::Lldt | M::Ltr | M::Invlpg | M::Rdmsr | M::Wrmsr
        | M::Clts | M::Lmsw | M::Invd | M::Wbinvd | M::Swapgs | M::Syscall | M::Sysenter | M::Sysexit | M::Sysexitq
        | M::Sysret | M::Sysretq | M::Rdpmc => Class::Privileged,
        M::Sgdt | M::Sidt | M::Sldt | M::Str | M::Smsw => Class::SysInfo,
        _ => return None,
    })
}

/// Forms left out, each with the reason. (The report lists these too.)
pub const EXCLUDED: &[(Code, &str)] = &[
    (Code::Bswap_r16, "BSWAP with a 16-bit operand: the SDM says the result is undefined"),
    (Code::Jmp_rm64, "indirect JMP: the target would be a random register; not generated"),
    (Code::Call_rm64, "indirect CALL: not generated"),
    (Code::Pushq_FS, "segment registers are left out (selector loads under a paravirtual KVM run on the host's GDT)"),
    (Code::Pushq_GS, "segment registers are left out"),
    (Code::Popq_FS, "segment registers are left out"),
    (Code::Popq_GS, "segment registers are left out"),
    (Code::Pushw_FS, "segment registers are left out"),
    (Code::Pushw_GS, "segment registers are left out"),
    (Code::Popw_FS, "segment registers are left out"),
    (Code::Popw_GS, "segment registers are left out"),
    (Code::Mov_r32m16_Sreg, "segment registers are left out"),
    (Code::Mov_r64m16_Sreg, "segment registers are left out"),
    (Code::Mov_Sreg_r32m16, "segment registers are left out"),
    (Code::Mov_Sreg_r64m16, "segment registers are left out"),
    (Code::Mov_Sreg_rm16, "segment registers are left out"),
    (Code::Jmp_rm16, "JMP r/m16 (66 FF /4) in 64-bit mode: Intel ignores the 66 prefix, AMD jumps to a 16-bit target"),
    (Code::Call_rm16, "CALL r/m16 (66 FF /2) in 64-bit mode: vendor-specific like JMP r/m16"),
    (Code::Int_imm8, "PVM: INT n from ring 3 raises #UD under the paravirtual KVM, whatever the gate's DPL (architecturally: #GP(n*8+2) through a DPL-0 gate, delivery through a DPL-3 gate)"),
    (Code::Int3, "PVM: INT3 from ring 3 is delivered as #BP through a DPL-0 gate (architecturally #GP(0x1A))"),
    (Code::Syscall, "PVM: SYSCALL from ring 3 is the paravirtual guest's system call path and ignores the guest's EFER.SCE = 0 (architecturally #UD)"),
    (Code::Sysretd, "PVM: SYSRET from ring 3 is executed natively under the host's EFER.SCE = 1: #GP(0) instead of the #UD the guest's EFER.SCE = 0 asks for"),
    (Code::Sysretq, "PVM: as SYSRET"),
    (Code::Sysenter, "PVM: SYSENTER from ring 3 raises #UD under the paravirtual KVM (architecturally on Intel #GP(0) with IA32_SYSENTER_CS = 0)"),
];

/// An operand kind the builder handles.
fn supported(k: K) -> bool {
    matches!(
        k,
        K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r64_or_mem
            | K::mem
            | K::mem_offs
            | K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_opcode
            | K::r16_rm
            | K::r32_reg
            | K::r32_opcode
            | K::r32_rm
            | K::r32_vvvv
            | K::r64_reg
            | K::r64_opcode
            | K::r64_rm
            | K::r64_vvvv
            | K::al
            | K::cl
            | K::ax
            | K::dx
            | K::eax
            | K::rax
            | K::imm8
            | K::imm8_const_1
            | K::imm8sex16
            | K::imm8sex32
            | K::imm8sex64
            | K::imm16
            | K::imm32
            | K::imm32sex64
            | K::imm64
            | K::seg_rSI
            | K::es_rDI
            | K::seg_rBX_al
            | K::br64_1
            | K::br64_4
            | K::cr_reg
            | K::dr_reg
    )
}

/// One instruction form: an iced-x86 `Code` and its class.
#[derive(Clone, Copy, Debug)]
pub struct Form {
    pub code: Code,
    pub class: Class,
}

/// Every generated form by class, built once from iced-x86's tables.
pub fn forms() -> &'static Vec<Vec<Form>> {
    static FORMS: OnceLock<Vec<Vec<Form>>> = OnceLock::new();
    FORMS.get_or_init(|| {
        let mut by_class = vec![Vec::new(); Class::ALL.len()];
        for code in Code::values() {
            let oc = code.op_code();
            if !oc.is_instruction() || !oc.mode64() || oc.decoder_option() != DecoderOptions::NONE {
                continue;
            }
            let Some(class) = class_of(code.mnemonic()) else { continue };
            let enc_ok = match oc.encoding() {
                EncodingKind::Legacy => true,
                EncodingKind::VEX => class == Class::Bmi,
                _ => false,
            };
            if !enc_ok || EXCLUDED.iter().any(|&(c, _)| c == code) {
                continue;
            }
            // 16-bit near branches, RET and CALL with a 66 prefix: Intel ignores the prefix in
            // 64-bit mode, AMD truncates RIP to 16 bits. The oracle is one vendor; the forms
            // are vendor-specific, so they are left out.
            if matches!(
                oc.op_kinds().first(),
                Some(K::br16_1 | K::br16_2 | K::br32_1 | K::br32_4)
            ) {
                continue;
            }
            if !oc.op_kinds().iter().all(|&k| supported(k)) {
                continue;
            }
            // Far JMP/CALL through memory (FF /5, FF /3): segment loads, left out with the
            // segment registers (and a paravirtual KVM answers them with #UD from ring 3).
            if matches!(code.mnemonic(), Mnemonic::Jmp | Mnemonic::Call) && oc.op_kinds().first() == Some(&K::mem) {
                continue;
            }
            // MOV to/from CR8 from ring 3 and the others are all #GP; keep them in Privileged.
            if matches!(code.mnemonic(), Mnemonic::Mov) && oc.op_kinds().iter().any(|&k| matches!(k, K::cr_reg | K::dr_reg))
            {
                by_class[Class::Privileged as usize].push(Form { code, class: Class::Privileged });
                continue;
            }
            if oc.op_kinds().iter().any(|&k| matches!(k, K::cr_reg | K::dr_reg)) {
                continue;
            }
            by_class[class as usize].push(Form { code, class });
        }
        by_class
    })
}

/// Where a branch goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The first instruction of top-level unit n (n = the number of units: the terminator).
    Unit(usize),
    /// Instruction n of the same unit.
    Local(usize),
}

/// One instruction of a program.
#[derive(Clone, Debug)]
pub struct Ins {
    pub instr: Instruction,
    pub target: Option<Target>,
    /// For RET in a CALL template: where it returns to (a local index).
    pub returns_to: Option<usize>,
    /// Bytes given as they are (the `Invalid` class).
    pub raw: Option<Vec<u8>>,
}

impl Ins {
    fn new(instr: Instruction) -> Ins {
        Ins { instr, target: None, returns_to: None, raw: None }
    }
}

/// A top-level piece of a program: one instruction or a template. Branches target units,
/// never the inside of one.
#[derive(Clone, Debug)]
pub struct Unit {
    pub class: Class,
    pub ins: Vec<Ins>,
    /// The instruction the unit is about (the others set it up).
    pub key: usize,
}

/// Registers by number (the encoding order) and size.
const R64: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];
const R32: [Register; 16] = [
    Register::EAX,
    Register::ECX,
    Register::EDX,
    Register::EBX,
    Register::ESP,
    Register::EBP,
    Register::ESI,
    Register::EDI,
    Register::R8D,
    Register::R9D,
    Register::R10D,
    Register::R11D,
    Register::R12D,
    Register::R13D,
    Register::R14D,
    Register::R15D,
];
const R16: [Register; 16] = [
    Register::AX,
    Register::CX,
    Register::DX,
    Register::BX,
    Register::SP,
    Register::BP,
    Register::SI,
    Register::DI,
    Register::R8W,
    Register::R9W,
    Register::R10W,
    Register::R11W,
    Register::R12W,
    Register::R13W,
    Register::R14W,
    Register::R15W,
];
const R8: [Register; 16] = [
    Register::AL,
    Register::CL,
    Register::DL,
    Register::BL,
    Register::SPL,
    Register::BPL,
    Register::SIL,
    Register::DIL,
    Register::R8L,
    Register::R9L,
    Register::R10L,
    Register::R11L,
    Register::R12L,
    Register::R13L,
    Register::R14L,
    Register::R15L,
];
const HIGH8: [Register; 4] = [Register::AH, Register::CH, Register::DH, Register::BH];

fn reg(size: usize, n: usize) -> Register {
    match size {
        1 => R8[n],
        2 => R16[n],
        4 => R32[n],
        _ => R64[n],
    }
}

const RSP: usize = 4;
const RBX: usize = 3;
const RBP: usize = 5;
const RCX: usize = 1;
/// Pointer and index registers are picked from these.
const POINTER_CANDIDATES: [usize; 10] = [3, 5, 8, 9, 10, 11, 12, 13, 14, 15];

/// Offsets in the data area where pointer registers and RSP start.
const PTR_LO: u64 = 0x400;
const PTR_HI: u64 = 0x1A00;
const RSP_LO: u64 = 0x800;
const RSP_HI: u64 = 0x1800;

/// A program's fixed registers and the values the case starts with.
#[derive(Clone, Debug)]
pub struct Frame {
    pub ptr: [usize; 2],
    pub index: usize,
    pub gpr: [u64; 16],
    pub fs_base: u64,
    pub gs_base: u64,
}

impl Frame {
    pub fn random(rng: &mut Rng) -> Frame {
        let mut pool: Vec<usize> = POINTER_CANDIDATES.to_vec();
        let mut take = |rng: &mut Rng| pool.remove(rng.below(pool.len() as u64) as usize);
        let ptr = [take(rng), take(rng)];
        let index = take(rng);
        let mut gpr = [0u64; 16];
        for g in gpr.iter_mut() {
            *g = rng.interesting();
        }
        for &p in &ptr {
            let mut v = DATA + rng.range(PTR_LO, PTR_HI - 1);
            if rng.chance(1, 2) {
                v &= !7;
            }
            gpr[p] = v;
        }
        gpr[index] = rng.below(64);
        let mut sp = DATA + rng.range(RSP_LO, RSP_HI - 1);
        if rng.chance(3, 4) {
            sp &= !7;
        }
        gpr[RSP] = sp;
        Frame { ptr, index, gpr, fs_base: rng.below(0x100), gs_base: rng.below(0x100) }
    }

    fn protected(&self, n: usize) -> bool {
        n == RSP || n == self.ptr[0] || n == self.ptr[1] || n == self.index
    }
}

/// A memory operand and, where it is known when generating, the address it names.
struct Mem {
    base: Register,
    index: Register,
    scale: u32,
    disp: i64,
    displ_size: u32,
    seg: Register,
    addr: Option<u64>,
}

pub struct Generator {
    pub rng: Rng,
    pub frame: Frame,
    classes: Vec<Class>,
    /// Align the next memory operand whatever the dice say (cmpxchg16b-alignment).
    force_align: bool,
    /// Stay clear of the interpreter bugs in `known.rs`.
    pub avoid: bool,
    info: InstructionInfoFactory,
    pub units: Vec<Unit>,
}

/// What a unit may do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allow {
    Plain,
    /// May change RSP through stack instructions.
    Stack,
}

impl Generator {
    pub fn new(rng: Rng, frame: Frame, classes: Vec<Class>) -> Generator {
        Generator { rng, frame, classes, force_align: false, avoid: true, info: InstructionInfoFactory::new(), units: Vec::new() }
    }

    // ---- operands ---------------------------------------------------------------------

    /// A register number for an operand: destinations (`dest`) avoid the fixed registers;
    /// sources may be anything.
    fn reg_num(&mut self, dest: bool) -> usize {
        loop {
            let n = self.rng.below(16) as usize;
            if !dest && self.rng.chance(1, 4) {
                return n;
            }
            if !self.frame.protected(n) {
                return n;
            }
        }
    }

    fn gp_reg(&mut self, size: usize, dest: bool) -> Register {
        let n = self.reg_num(dest);
        if size == 1 && n < 4 && self.rng.chance(1, 4) {
            return HIGH8[n];
        }
        reg(size, n)
    }

    fn seg_override(&mut self) -> (Register, u64) {
        match self.rng.below(20) {
            0 => (Register::FS, self.frame.fs_base),
            1 => (Register::GS, self.frame.gs_base),
            2 => (*self.rng.pick(&[Register::DS, Register::ES, Register::CS, Register::SS]), 0),
            _ => (Register::None, 0),
        }
    }

    /// A memory operand inside the data area for an access of `size` bytes, aligned to
    /// `align` where the generator can control the address.
    fn mem(&mut self, size: u64, align: u64) -> Mem {
        let (seg, seg_base) = self.seg_override();
        let f = &self.frame;
        let p = f.ptr[self.rng.below(2) as usize];
        let pv = f.gpr[p];
        let x = f.index;
        let xv = f.gpr[x];
        let mut m = Mem {
            base: R64[p],
            index: Register::None,
            scale: 1,
            disp: 0,
            displ_size: 0,
            seg,
            addr: None,
        };
        let small = |rng: &mut Rng| rng.range(0, 0x3FF) as i64 - 0x200;
        match self.rng.below(16) {
            0..=3 => {
                m.disp = self.rng.range(0, 255) as i64 - 128;
                m.addr = Some(pv);
            }
            4..=5 => {
                m.disp = small(&mut self.rng);
                m.displ_size = 4;
                m.addr = Some(pv);
            }
            6..=9 => {
                m.index = R64[x];
                m.scale = *self.rng.pick(&[1, 2, 4, 8]);
                m.disp = small(&mut self.rng);
                m.addr = Some(pv + xv * u64::from(m.scale));
            }
            10 => {
                // Index register as the base, pointer as the index.
                m.base = R64[x];
                m.index = R64[p];
                m.disp = small(&mut self.rng);
                m.addr = Some(pv + xv);
            }
            11..=12 => {
                // RIP-relative: iced takes the absolute target.
                m.base = Register::RIP;
                m.addr = Some(DATA + self.rng.range(0x200, DATA_SIZE - 0x200));
            }
            13 => {
                m.base = Register::None;
                m.displ_size = 4;
                m.addr = Some(DATA + self.rng.range(0x200, DATA_SIZE - 0x200));
            }
            14 => {
                // 32-bit addressing (0x67).
                m.base = R32[p];
                if self.rng.chance(1, 2) {
                    m.index = R32[x];
                    m.scale = *self.rng.pick(&[1, 2, 4, 8]);
                }
                m.disp = small(&mut self.rng);
                m.addr = Some(pv + if m.index != Register::None { xv * u64::from(m.scale) } else { 0 });
            }
            _ => {
                // RSP-relative: the address moves with the stack.
                m.base = Register::RSP;
                m.disp = self.rng.range(0, 0x1FF) as i64 - 0x100;
            }
        }
        if let Some(a) = m.addr {
            let mut full = a.wrapping_add(m.disp as u64);
            if align > 1 && (self.force_align || self.rng.chance(3, 4)) {
                // Align the linear address, segment base included.
                let off = (full + seg_base) % align;
                full -= off;
            }
            if m.base == Register::RIP || m.base == Register::None {
                m.disp = full as i64;
            } else {
                m.disp = full.wrapping_sub(a) as i64;
            }
            m.addr = Some(full + seg_base);
        }
        let _ = size;
        m
    }

    /// A memory operand with any registers: for LEA, NOP and PREFETCH, which access nothing.
    fn mem_any(&mut self) -> Mem {
        let r = |g: &mut Generator| {
            if g.rng.chance(1, 6) {
                Register::None
            } else {
                let n = g.rng.below(16) as usize;
                if g.rng.chance(1, 5) {
                    R32[n]
                } else {
                    R64[n]
                }
            }
        };
        let mut base = r(self);
        let mut index = r(self);
        if index == Register::RSP || index == Register::ESP {
            index = Register::None;
        }
        // Both halves of one address use one address size.
        if base != Register::None && index != Register::None && base.size() != index.size() {
            index = if base.size() == 4 { index.full_register32() } else { index.full_register() };
            if index == Register::RSP || index == Register::ESP {
                index = Register::None;
            }
        }
        if self.rng.chance(1, 10) {
            base = Register::RIP;
            index = Register::None;
        }
        let disp = match self.rng.below(3) {
            0 => 0,
            1 => self.rng.range(0, 255) as i64 - 128,
            _ => self.rng.next() as i32 as i64,
        };
        let disp = if base == Register::RIP { DATA as i64 + disp } else { disp };
        Mem { base, index, scale: *self.rng.pick(&[1, 2, 4, 8]), disp, displ_size: 0, seg: Register::None, addr: None }
    }

    fn put_mem(i: &mut Instruction, k: u32, m: &Mem) {
        i.set_op_kind(k, OpKind::Memory);
        i.set_memory_base(m.base);
        i.set_memory_index(m.index);
        i.set_memory_index_scale(if m.index == Register::None { 1 } else { m.scale });
        i.set_memory_displacement64(m.disp as u64);
        let ds = if m.base == Register::None && m.index == Register::None {
            if m.displ_size == 8 {
                8
            } else {
                4
            }
        } else if m.displ_size != 0 {
            m.displ_size
        } else if m.disp == 0 {
            0
        } else if m.disp >= -128 && m.disp < 128 {
            1
        } else if m.base.size() == 4 {
            4
        } else {
            8
        };
        i.set_memory_displ_size(ds);
        i.set_segment_prefix(m.seg);
    }

    fn imm_value(&mut self, k: K, code: Code) -> u64 {
        let m = code.mnemonic();
        let shift = matches!(
            m,
            Mnemonic::Rol
                | Mnemonic::Ror
                | Mnemonic::Rcl
                | Mnemonic::Rcr
                | Mnemonic::Shl
                | Mnemonic::Sal
                | Mnemonic::Shr
                | Mnemonic::Sar
                | Mnemonic::Shld
                | Mnemonic::Shrd
                | Mnemonic::Rorx
        );
        match k {
            K::imm8 if shift => match self.rng.below(4) {
                0 => self.rng.below(256),
                1 => self.rng.range(0, 3),
                _ => self.rng.below(65),
            },
            K::imm8 => self.rng.interesting() & 0xFF,
            K::imm8_const_1 => 1,
            K::imm8sex16 | K::imm8sex32 | K::imm8sex64 => self.rng.interesting() as i8 as i64 as u64,
            K::imm16 => self.rng.interesting() & 0xFFFF,
            K::imm32 => self.rng.interesting() & 0xFFFF_FFFF,
            K::imm32sex64 => self.rng.interesting() as i32 as i64 as u64,
            _ => self.rng.interesting(),
        }
    }

    /// Builds one instruction of `code` with random operands. Branch targets are left for the
    /// caller; `asz` is the address size of string operands (64 or 32).
    fn build(&mut self, code: Code, asz: u32) -> Option<Instruction> {
        let oc = code.op_code();
        let mut i = Instruction::default();
        i.set_code(code);
        let kinds = oc.op_kinds();
        let m = code.mnemonic();
        let no_access = matches!(
            m,
            Mnemonic::Lea
                | Mnemonic::Nop
                | Mnemonic::Prefetchnta
                | Mnemonic::Prefetcht0
                | Mnemonic::Prefetcht1
                | Mnemonic::Prefetcht2
                | Mnemonic::Prefetchw
        );
        let mem_size = (oc.memory_size().size() as u64).max(1);
        let align = if m == Mnemonic::Cmpxchg16b { 16 } else if self.rng.chance(1, 2) { mem_size.min(8) } else { 1 };
        self.force_align = self.avoid && m == Mnemonic::Cmpxchg16b;
        let bt_mem = matches!(m, Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc);
        let mut mem_used = false;
        for (n, &k) in kinds.iter().enumerate() {
            let n = n as u32;
            let dest = n == 0;
            let size_of = |k: K| match k {
                K::r8_or_mem | K::r8_reg | K::r8_opcode => 1,
                K::r16_or_mem | K::r16_reg | K::r16_opcode | K::r16_rm => 2,
                K::r32_or_mem | K::r32_reg | K::r32_opcode | K::r32_rm | K::r32_vvvv => 4,
                _ => 8,
            };
            match k {
                K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem => {
                    if self.rng.chance(1, 2) {
                        let m = if no_access { self.mem_any() } else { self.mem(mem_size, align) };
                        Self::put_mem(&mut i, n, &m);
                        mem_used = true;
                    } else {
                        i.set_op_kind(n, OpKind::Register);
                        let r = self.gp_reg(size_of(k), dest);
                        i.set_op_register(n, r);
                    }
                }
                K::mem => {
                    let m = if no_access { self.mem_any() } else { self.mem(mem_size, align) };
                    Self::put_mem(&mut i, n, &m);
                    mem_used = true;
                }
                K::mem_offs => {
                    let a = DATA + self.rng.range(0x200, DATA_SIZE - 0x200);
                    let m = Mem {
                        base: Register::None,
                        index: Register::None,
                        scale: 1,
                        disp: a as i64,
                        displ_size: 8,
                        seg: Register::None,
                        addr: Some(a),
                    };
                    Self::put_mem(&mut i, n, &m);
                }
                K::r8_reg | K::r8_opcode | K::r16_reg | K::r16_opcode | K::r16_rm | K::r32_reg | K::r32_opcode
                | K::r32_rm | K::r32_vvvv | K::r64_reg | K::r64_opcode | K::r64_rm | K::r64_vvvv => {
                    i.set_op_kind(n, OpKind::Register);
                    // BT* with a memory operand address bits beyond it through the offset
                    // register: mostly the small index register.
                    // (Always, while known.rs lists btx-pf-write.)
                    let r = if bt_mem && mem_used && n == 1 && (self.avoid || self.rng.chance(3, 4)) {
                        reg(size_of(k), self.frame.index)
                    } else {
                        self.gp_reg(size_of(k), dest)
                    };
                    i.set_op_register(n, r);
                }
                K::al | K::cl | K::ax | K::dx | K::eax | K::rax => {
                    i.set_op_kind(n, OpKind::Register);
                    let r = match k {
                        K::al => Register::AL,
                        K::cl => Register::CL,
                        K::ax => Register::AX,
                        K::dx => Register::DX,
                        K::eax => Register::EAX,
                        _ => Register::RAX,
                    };
                    i.set_op_register(n, r);
                }
                K::imm8 | K::imm8_const_1 | K::imm8sex16 | K::imm8sex32 | K::imm8sex64 | K::imm16 | K::imm32
                | K::imm32sex64 | K::imm64 => {
                    let v = self.imm_value(k, code);
                    let second_imm = n > 0 && kinds[..n as usize].iter().any(|&p| matches!(p, K::imm16));
                    match k {
                        K::imm8 | K::imm8_const_1 if second_imm => {
                            i.set_op_kind(n, OpKind::Immediate8_2nd);
                            i.set_immediate8_2nd(v as u8);
                        }
                        K::imm8 | K::imm8_const_1 => {
                            i.set_op_kind(n, OpKind::Immediate8);
                            i.set_immediate8(v as u8);
                        }
                        K::imm8sex16 => {
                            i.set_op_kind(n, OpKind::Immediate8to16);
                            i.set_immediate8to16(v as i8 as i16);
                        }
                        K::imm8sex32 => {
                            i.set_op_kind(n, OpKind::Immediate8to32);
                            i.set_immediate8to32(v as i8 as i32);
                        }
                        K::imm8sex64 => {
                            i.set_op_kind(n, OpKind::Immediate8to64);
                            i.set_immediate8to64(v as i8 as i64);
                        }
                        K::imm16 => {
                            i.set_op_kind(n, OpKind::Immediate16);
                            i.set_immediate16(v as u16);
                        }
                        K::imm32 => {
                            i.set_op_kind(n, OpKind::Immediate32);
                            i.set_immediate32(v as u32);
                        }
                        K::imm32sex64 => {
                            i.set_op_kind(n, OpKind::Immediate32to64);
                            i.set_immediate32to64(v as i32 as i64);
                        }
                        _ => {
                            i.set_op_kind(n, OpKind::Immediate64);
                            i.set_immediate64(v);
                        }
                    }
                }
                K::seg_rSI => {
                    i.set_op_kind(n, if asz == 32 { OpKind::MemorySegESI } else { OpKind::MemorySegRSI });
                    let (seg, _) = self.seg_override();
                    i.set_segment_prefix(seg);
                }
                K::es_rDI => {
                    i.set_op_kind(n, if asz == 32 { OpKind::MemoryESEDI } else { OpKind::MemoryESRDI });
                }
                K::seg_rBX_al => {
                    i.set_op_kind(n, OpKind::Memory);
                    i.set_memory_base(Register::RBX);
                    i.set_memory_index(Register::AL);
                    i.set_memory_index_scale(1);
                }
                K::br64_1 | K::br64_4 => {
                    i.set_op_kind(n, OpKind::NearBranch64);
                }
                K::cr_reg => {
                    i.set_op_kind(n, OpKind::Register);
                    i.set_op_register(n, *self.rng.pick(&[Register::CR0, Register::CR2, Register::CR3, Register::CR4, Register::CR8]));
                }
                K::dr_reg => {
                    i.set_op_kind(n, OpKind::Register);
                    i.set_op_register(n, *self.rng.pick(&[Register::DR0, Register::DR3, Register::DR6, Register::DR7]));
                }
                _ => return None,
            }
        }
        // Counts of 16-bit SHLD/SHRD above 16 leave the result undefined: keep them at most 16.
        if matches!(m, Mnemonic::Shld | Mnemonic::Shrd) && kinds.last() == Some(&K::imm8) {
            let size = if i.op0_kind() == OpKind::Register { i.op0_register().size() } else { oc.memory_size().size() };
            if size == 2 && (i.immediate8() & 0x1F) > 16 {
                i.set_immediate8(i.immediate8() & 0xF);
            }
        }
        if oc.can_use_lock_prefix() && mem_used && self.rng.chance(1, 3) {
            i.set_has_lock_prefix(true);
        }
        if self.avoid && !self.clear_of_known_bad(&mut i) {
            return None;
        }
        Some(i)
    }

    /// Steers `i` clear of the bugs in `known.rs` (false: drop it).
    fn clear_of_known_bad(&mut self, i: &mut Instruction) -> bool {
        let m = i.mnemonic();
        let reg0 = i.op0_kind() == OpKind::Register;
        // xadd-same-register
        if m == Mnemonic::Xadd && reg0 && i.op1_kind() == OpKind::Register && i.op0_register() == i.op1_register() {
            return false;
        }
        // cmpxchg-r32-unequal
        if i.code() == Code::Cmpxchg_rm32_r32 && reg0 {
            return false;
        }
        // cmpxchg16b-alignment: only addresses known to be aligned.
        // (RSP-relative addresses are not known when generating.)
        if m == Mnemonic::Cmpxchg16b && i.memory_base() == Register::RSP {
            return false;
        }
        // ... and the interpreter checks the offset, not the linear address: no FS/GS base that
        // is not itself aligned.
        if m == Mnemonic::Cmpxchg16b {
            let base = match i.segment_prefix() {
                Register::FS => self.frame.fs_base,
                Register::GS => self.frame.gs_base,
                _ => 0,
            };
            if base % 16 != 0 {
                return false;
            }
        }
        // shift32-count0: an immediate count that masks to 0 on a 32-bit register.
        let shift = matches!(
            m,
            Mnemonic::Rol
                | Mnemonic::Ror
                | Mnemonic::Rcl
                | Mnemonic::Rcr
                | Mnemonic::Shl
                | Mnemonic::Sal
                | Mnemonic::Shr
                | Mnemonic::Sar
                | Mnemonic::Shld
                | Mnemonic::Shrd
        );
        let last = i.op_count().saturating_sub(1);
        if shift && reg0 && i.op0_register().size() == 4 && i.op_kind(last) == OpKind::Immediate8 && i.immediate8() & 31 == 0 {
            i.set_immediate8(i.immediate8() | (1 + self.rng.below(31) as u8));
        }
        true
    }

    /// Does `i` encode, and does it leave the fixed registers alone?
    fn acceptable(&mut self, i: &Instruction, allow: Allow) -> bool {
        let mut enc = iced_x86::Encoder::new(64);
        let probe_ip = if i.is_ip_rel_memory_operand() { i.memory_displacement64().wrapping_sub(0x100) } else { 0x10000 };
        let mut probe = *i;
        if probe.op0_kind() == OpKind::NearBranch64 {
            probe.set_near_branch64(probe_ip + 0x10);
        }
        if enc.encode(&probe, probe_ip).is_err() {
            return false;
        }
        for k in 0..i.op_count() {
            if i.op_kind(k) == OpKind::Register && i.op_register(k).is_gpr() && i.op_register(k).full_register() == Register::RSP
            {
                let writes = {
                    let info = self.info.info(i);
                    matches!(
                        match k {
                            0 => info.op0_access(),
                            1 => info.op1_access(),
                            2 => info.op2_access(),
                            _ => info.op3_access(),
                        },
                        OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
                    )
                };
                if writes {
                    return false;
                }
            }
        }
        let info = self.info.info(i);
        for u in info.used_registers() {
            let r = u.register();
            if !r.is_gpr() {
                continue;
            }
            let n = r.full_register().number();
            let writes =
                matches!(u.access(), OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite);
            if writes && self.frame.protected(n) && !(n == RSP && allow == Allow::Stack) {
                return false;
            }
        }
        true
    }

    fn simple(&mut self, code: Code, allow: Allow) -> Option<Ins> {
        let i = self.build(code, 64)?;
        // A 16-bit SHLD/SHRD by CL needs its count set up first (shift_unit does it).
        if is_shxd16_cl(&i) {
            return None;
        }
        // shift32-count0: a 32-bit register shifted by CL, whose count is not known here.
        if self.avoid && is_shift32_reg_cl(&i) {
            return None;
        }
        self.acceptable(&i, allow).then(|| Ins::new(i))
    }

    // ---- units --------------------------------------------------------------------------

    /// A random form of `class` (`None` when the class has no forms or the try failed).
    fn pick_form(&mut self, class: Class) -> Option<Code> {
        let list = &forms()[class as usize];
        if list.is_empty() {
            return None;
        }
        let code = list[self.rng.below(list.len() as u64) as usize].code;
        // known.rs: crc32-rm16, outs-permission-order, rdpmc.
        let bad = matches!(
            code,
            Code::Crc32_r32_rm16 | Code::Outsb_DX_m8 | Code::Outsw_DX_m16 | Code::Outsd_DX_m32 | Code::Rdpmc
        );
        (!(self.avoid && bad)).then_some(code)
    }

    /// One unit of `class`; `None` if this try did not work out (the caller tries again).
    fn unit(&mut self, class: Class, here: usize, total: usize) -> Option<Unit> {
        let ins = match class {
            Class::String => self.string_unit()?,
            Class::Branch => self.branch_unit(here, total)?,
            Class::Call => self.call_unit()?,
            Class::Invalid => self.invalid_unit()?,
            Class::Stack => self.stack_unit()?,
            Class::MulDiv => self.muldiv_unit()?,
            Class::Shift => self.shift_unit()?,
            Class::Misc => self.misc_unit()?,
            Class::Privileged => self.privileged_unit()?,
            c if c.unimplemented() => return None,
            c => {
                let code = self.pick_form(c)?;
                vec![self.simple(code, Allow::Plain)?]
            }
        };
        // Set-up comes first; the call template is about its CALL.
        let key = if class == Class::Call { 0 } else if class == Class::Stack && ins.len() > 1 {
            match ins[0].instr.mnemonic() {
                Mnemonic::Enter | Mnemonic::Pushf | Mnemonic::Pushfq => 0,
                _ => ins.len() - 1,
            }
        } else {
            ins.len() - 1
        };
        Some(Unit { class, ins, key })
    }

    fn lea(&mut self, dst: usize, src: usize, disp: i64) -> Ins {
        let mut i = Instruction::default();
        i.set_code(Code::Lea_r64_m);
        i.set_op_kind(0, OpKind::Register);
        i.set_op_register(0, R64[dst]);
        Self::put_mem(
            &mut i,
            1,
            &Mem { base: R64[src], index: Register::None, scale: 1, disp, displ_size: 0, seg: Register::None, addr: None },
        );
        Ins::new(i)
    }

    fn mov_imm(&mut self, dst: usize, v: u64) -> Ins {
        let i = if v <= 0xFFFF_FFFF {
            Instruction::with2(Code::Mov_r32_imm32, R32[dst], v as u32).unwrap()
        } else {
            Instruction::with2(Code::Mov_r64_imm64, R64[dst], v).unwrap()
        };
        Ins::new(i)
    }

    fn string_unit(&mut self) -> Option<Vec<Ins>> {
        let code = self.pick_form(Class::String)?;
        let asz = if self.rng.chance(1, 4) { 32 } else { 64 };
        let mut s = self.build(code, asz)?;
        let m = code.mnemonic();
        let compares = matches!(m, Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq | Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq);
        let rep = self.rng.below(3);
        match rep {
            0 => {}
            1 => s.set_has_rep_prefix(true),
            // REPNE on MOVS/STOS/LODS is reserved (SDM vol. 2, 2.1.1): only with compares.
            _ if compares => s.set_has_repne_prefix(true),
            _ => s.set_has_rep_prefix(true),
        }
        let mut out = Vec::new();
        let reads_rsi = (0..s.op_count()).any(|k| matches!(s.op_kind(k), OpKind::MemorySegRSI | OpKind::MemorySegESI));
        let reads_rdi = (0..s.op_count()).any(|k| matches!(s.op_kind(k), OpKind::MemoryESRDI | OpKind::MemoryESEDI));
        let p = self.frame.ptr;
        if reads_rsi {
            let d = self.rng.range(0, 0x1FF) as i64 - 0x100;
            let src = p[self.rng.below(2) as usize];
            out.push(self.lea(6, src, d));
        }
        if reads_rdi {
            let d = self.rng.range(0, 0x1FF) as i64 - 0x100;
            let src = p[self.rng.below(2) as usize];
            out.push(self.lea(7, src, d));
        }
        if rep != 0 {
            let mut n = self.rng.range(0, 9);
            // (Not with ECX = 0 while known.rs lists rep-a32-ecx0.)
            if asz == 32 && self.rng.chance(1, 3) && !(self.avoid && n == 0) {
                n |= self.rng.next() & !0xFFFF_FFFF;
            }
            out.push(self.mov_imm(RCX, n));
        }
        if !self.acceptable(&s, Allow::Plain) {
            return None;
        }
        out.push(Ins::new(s));
        Some(out)
    }

    fn branch_unit(&mut self, here: usize, total: usize) -> Option<Vec<Ins>> {
        let code = self.pick_form(Class::Branch)?;
        let mut i = self.build(code, 64)?;
        let short = code.op_code().op_kinds().first() == Some(&K::br64_1);
        let max_ahead = if short { 3 } else { 12 };
        let last = (here + max_ahead).min(total);
        let target = self.rng.range(here as u64 + 1, last as u64) as usize;
        i.set_near_branch64(0);
        if !self.acceptable(&i, Allow::Plain) {
            return None;
        }
        Some(vec![Ins { instr: i, target: Some(Target::Unit(target)), returns_to: None, raw: None }])
    }

    /// Does `i` write memory?
    fn writes_memory(&mut self, i: &Instruction) -> bool {
        self.info.info(i).used_memory().iter().any(|m| {
            matches!(m.access(), OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite)
        })
    }

    /// Plain instructions for the inside of templates: no stack, no branches. Inside CALL
    /// templates (`call`) no memory writes either while known.rs lists noncanonical-branch:
    /// they could overwrite the return address.
    fn body(&mut self, n: usize) -> Option<Vec<Ins>> {
        self.body_in(n, false)
    }

    fn body_in(&mut self, n: usize, call: bool) -> Option<Vec<Ins>> {
        let plain: Vec<Class> = self
            .classes
            .iter()
            .copied()
            .filter(|c| {
                !matches!(
                    c,
                    Class::Stack | Class::Branch | Class::Call | Class::Invalid | Class::Privileged | Class::String
                ) && !c.unimplemented()
            })
            .collect();
        let plain = if plain.is_empty() { vec![Class::Alu, Class::Mov] } else { plain };
        let mut out = Vec::new();
        for _ in 0..n {
            let mut got = None;
            for _ in 0..8 {
                let c = *self.rng.pick(&plain);
                let Some(code) = self.pick_form(c) else { continue };
                if let Some(i) = self.simple(code, Allow::Plain) {
                    if call && self.avoid && self.writes_memory(&i.instr) {
                        continue;
                    }
                    got = Some(i);
                    break;
                }
            }
            out.push(got?);
        }
        Some(out)
    }

    fn call_unit(&mut self) -> Option<Vec<Ins>> {
        let mut out = Vec::new();
        if self.rng.chance(1, 4) {
            // call next / pop r: the pushed return address lands in a register.
            let call = Instruction::with_branch(Code::Call_rel32_64, 0).ok()?;
            out.push(Ins { instr: call, target: Some(Target::Local(1)), returns_to: None, raw: None });
            let r = self.reg_num(true);
            let pop = Instruction::with1(Code::Pop_r64, R64[r]).ok()?;
            if !self.acceptable(&pop, Allow::Stack) {
                return None;
            }
            out.push(Ins::new(pop));
            return Some(out);
        }
        //     call L / jmp M / L: body / ret [n] / M:
        let n = self.rng.range(0, 3) as usize;
        let body = self.body_in(n, true)?;
        let call = Instruction::with_branch(Code::Call_rel32_64, 0).ok()?;
        out.push(Ins { instr: call, target: Some(Target::Local(2)), returns_to: None, raw: None });
        let jmp_code = if self.rng.chance(1, 2) { Code::Jmp_rel8_64 } else { Code::Jmp_rel32_64 };
        let end = 3 + body.len();
        let jmp = Instruction::with_branch(jmp_code, 0).ok()?;
        out.push(Ins { instr: jmp, target: Some(Target::Local(end)), returns_to: None, raw: None });
        out.extend(body);
        let ret = if self.rng.chance(1, 3) {
            let imm = *self.rng.pick(&[0u32, 8, 16, 24, 3]);
            Instruction::with1(Code::Retnq_imm16, imm).ok()?
        } else {
            Instruction::with(Code::Retnq)
        };
        out.push(Ins { instr: ret, target: None, returns_to: Some(1), raw: None });
        // M: is the next unit; the jump's Local(end) is past this unit's last instruction.
        Some(out)
    }

    fn stack_unit(&mut self) -> Option<Vec<Ins>> {
        match self.rng.below(10) {
            0 | 1 => {
                // POPF from a value that keeps TF clear (single-step traps are not generated),
                // AC clear (see env::RANDOM_FLAGS) and NT clear: a paravirtual KVM now and then
                // loses an NT that ring 3 set (about 1 case in 300,000 under host load; the
                // same case agrees when run again), and NT does nothing in 64-bit user code but
                // make IRET fault.
                let mut out = Vec::new();
                let wide = self.rng.chance(3, 4);
                let v = self.rng.next() & !(fl::TF | fl::AC | fl::NT);
                if wide {
                    out.push(Ins::new(Instruction::with1(Code::Pushq_imm32, v as u32 as i32).ok()?));
                    out.push(Ins::new(Instruction::with(Code::Popfq)));
                } else {
                    out.push(Ins::new(Instruction::with1(Code::Push_imm16, (v & 0xFFFF) as u32).ok()?));
                    out.push(Ins::new(Instruction::with(Code::Popfw)));
                }
                Some(out)
            }
            2 => {
                // PUSHF, sometimes followed by POPF of what it pushed.
                let wide = self.rng.chance(3, 4);
                let mut out = vec![Ins::new(Instruction::with(if wide { Code::Pushfq } else { Code::Pushfw }))];
                if self.rng.chance(1, 2) {
                    out.push(Ins::new(Instruction::with(if wide { Code::Popfq } else { Code::Popfw })));
                }
                Some(out)
            }
            3 => {
                // ENTER size, level / body / LEAVE, when RBP is free to change.
                if self.frame.protected(RBP) {
                    return None;
                }
                // 16-bit ENTER/LEAVE move RSP out of the data area (onto the read-only code
                // page), where faulting read-modify-writes meet rmw-fault-flags.
                let wide = self.avoid || self.rng.chance(4, 5);
                let size = *self.rng.pick(&[0u32, 8, 16, 24, 40, 3]);
                let level = if self.rng.chance(3, 4) { self.rng.below(4) as u32 } else { self.rng.below(256) as u32 };
                let code = if wide { Code::Enterq_imm16_imm8 } else { Code::Enterw_imm16_imm8 };
                let enter = Instruction::with2(code, size, level).ok()?;
                let mut out = vec![Ins::new(enter)];
                let n = self.rng.range(0, 2) as usize;
                out.extend(self.body(n)?);
                out.push(Ins::new(Instruction::with(if wide { Code::Leaveq } else { Code::Leavew })));
                Some(out)
            }
            _ => {
                let code = self.pick_form(Class::Stack)?;
                // PUSHF/POPF come from the templates above.
                if matches!(code.mnemonic(), Mnemonic::Pushf | Mnemonic::Pushfq | Mnemonic::Popf | Mnemonic::Popfq) {
                    return None;
                }
                let i = self.build(code, 64)?;
                self.acceptable(&i, Allow::Stack).then(|| vec![Ins::new(i)])
            }
        }
    }

    fn muldiv_unit(&mut self) -> Option<Vec<Ins>> {
        let code = self.pick_form(Class::MulDiv)?;
        let m = code.mnemonic();
        let i = self.simple(code, Allow::Plain)?;
        if !matches!(m, Mnemonic::Div | Mnemonic::Idiv) || self.rng.chance(1, 3) {
            return Some(vec![i]);
        }
        // A dividend that cannot overflow for most divisors: zero- or sign-extend it first.
        let size = if i.instr.op0_kind() == OpKind::Register {
            i.instr.op0_register().size()
        } else {
            i.instr.memory_size().size()
        };
        let prep = match (m, size) {
            (Mnemonic::Div, 1) => Instruction::with2(Code::Movzx_r32_rm8, Register::EAX, Register::AL).ok()?,
            (Mnemonic::Div, _) => Instruction::with2(Code::Xor_r32_rm32, Register::EDX, Register::EDX).ok()?,
            (_, 1) => Instruction::with(Code::Cbw),
            (_, 2) => Instruction::with(Code::Cwd),
            (_, 4) => Instruction::with(Code::Cdq),
            _ => Instruction::with(Code::Cqo),
        };
        if !self.acceptable(&prep, Allow::Plain) {
            return None;
        }
        Some(vec![Ins::new(prep), i])
    }

    fn shift_unit(&mut self) -> Option<Vec<Ins>> {
        let code = self.pick_form(Class::Shift)?;
        let i = self.build(code, 64)?;
        if !self.acceptable(&i, Allow::Plain) {
            return None;
        }
        let i = Ins::new(i);
        let m = code.mnemonic();
        let by_cl = i.instr.op_kind(i.instr.op_count() - 1) == OpKind::Register;
        let size =
            if i.instr.op0_kind() == OpKind::Register { i.instr.op0_register().size() } else { i.instr.memory_size().size() };
        if matches!(m, Mnemonic::Shld | Mnemonic::Shrd) && by_cl && size == 2 {
            // A count above 16 leaves a 16-bit SHLD/SHRD's result undefined: and ecx, 15 first.
            let prep = Instruction::with2(Code::And_rm32_imm8, Register::ECX, 15u32).ok()?;
            return Some(vec![Ins::new(prep), i]);
        }
        let reg32 = i.instr.op0_kind() == OpKind::Register && size == 4;
        if by_cl && self.avoid && reg32 {
            // shift32-count0: a count that does not mask to 0.
            let n = *self.rng.pick(&[1u64, 2, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 255]);
            return Some(vec![self.mov_imm(RCX, n), i]);
        }
        if by_cl && self.rng.chance(1, 2) {
            // Interesting counts: 0, 1, the size and around it.
            let n = *self.rng.pick(&[0u64, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255]);
            return Some(vec![self.mov_imm(RCX, n), i]);
        }
        Some(vec![i])
    }

    fn misc_unit(&mut self) -> Option<Vec<Ins>> {
        let code = self.pick_form(Class::Misc)?;
        if code.mnemonic() == Mnemonic::Xlatb {
            let i = self.build(code, 64)?;
            let mut out = Vec::new();
            if !self.frame.ptr.contains(&RBX) {
                if self.frame.protected(RBX) {
                    return None;
                }
                let p = self.frame.ptr[self.rng.below(2) as usize];
                let d = self.rng.range(0, 0x1FF) as i64 - 0x200;
                out.push(self.lea(RBX, p, d));
            }
            out.push(Ins::new(i));
            return Some(out);
        }
        Some(vec![self.simple(code, Allow::Plain)?])
    }

    fn privileged_unit(&mut self) -> Option<Vec<Ins>> {
        let code = self.pick_form(Class::Privileged)?;
        let mut i = self.build(code, 64)?;
        if code == Code::Int_imm8 && self.rng.chance(1, 2) {
            i.set_immediate8(*self.rng.pick(&super::env::USER_VECTORS));
        }
        if !self.acceptable(&i, Allow::Stack) {
            return None;
        }
        Some(vec![Ins::new(i)])
    }

    fn invalid_unit(&mut self) -> Option<Vec<Ins>> {
        // Opcodes that are invalid in 64-bit mode or always #UD, each with a ModRM-ish byte
        // after it that makes any ModRM form register-direct.
        const RAW: &[&[u8]] = &[
            &[0x06],
            &[0x07],
            &[0x0E],
            &[0x16],
            &[0x17],
            &[0x1E],
            &[0x1F],
            &[0x27],
            &[0x2F],
            &[0x37],
            &[0x3F],
            &[0x60],
            &[0x61],
            &[0x82, 0xC0, 0x01],
            &[0x9A, 0, 0, 0, 0, 0, 0],
            &[0xCE],
            &[0xD4, 0x0A],
            &[0xD5, 0x0A],
            &[0xD6],
            &[0xEA, 0, 0, 0, 0, 0, 0],
            &[0x0F, 0x0B],
            &[0x0F, 0xB9, 0xC0],
            &[0x0F, 0xFF, 0xC0],
            &[0x0F, 0x04],
            &[0x0F, 0x0A],
            &[0x0F, 0x0C],
            &[0x0F, 0x24, 0xC0],
            &[0x0F, 0x26, 0xC0],
            &[0x0F, 0x36],
            &[0xC6, 0xC8, 0x00],
            &[0xC7, 0xC8, 0, 0, 0, 0],
            &[0x8F, 0xC8],
            &[0xFE, 0xD0],
            &[0xFF, 0xF8],
            &[0x0F, 0xC7, 0xC8],
            &[0x8D, 0xC0],
        ];
        if self.rng.chance(1, 3) {
            // LOCK where it is not allowed: a register destination or a non-lockable form.
            let class = *self.rng.pick(&[Class::Alu, Class::Unary, Class::Mov, Class::Bits]);
            let code = self.pick_form(class)?;
            let mut i = self.build(code, 64)?;
            i.set_has_lock_prefix(true);
            if !self.acceptable(&i, Allow::Plain) {
                return None;
            }
            let legal = code.op_code().can_use_lock_prefix() && i.op0_kind() == OpKind::Memory;
            return (!legal).then(|| vec![Ins::new(i)]);
        }
        let bytes = self.rng.pick(RAW).to_vec();
        let db = Instruction::with_declare_byte(&bytes).ok()?;
        Some(vec![Ins { instr: db, target: None, returns_to: None, raw: Some(bytes) }])
    }

    /// Generates `n` units, avoiding reads of undefined flags.
    pub fn generate(&mut self, n: usize) -> Vec<Unit> {
        let mut units: Vec<Unit> = Vec::new();
        let mut tries = 0;
        while units.len() < n && tries < n * 40 {
            tries += 1;
            let total: u64 = self.classes.iter().map(|&c| weight(c)).sum();
            let mut r = self.rng.below(total);
            let mut class = self.classes[0];
            for &c in &self.classes {
                if r < weight(c) {
                    class = c;
                    break;
                }
                r -= weight(c);
            }
            let here = units.len();
            let Some(unit) = self.unit(class, here, n) else { continue };
            units.push(unit);
            if !super::program::flags_ok(&units) {
                units.pop();
            }
        }
        units
    }
}

/// SHLD/SHRD of a 16-bit operand by CL: a count above 16 leaves the result undefined.
fn is_shxd16_cl(i: &Instruction) -> bool {
    matches!(i.mnemonic(), Mnemonic::Shld | Mnemonic::Shrd)
        && i.op_kind(2) == OpKind::Register
        && (if i.op0_kind() == OpKind::Register { i.op0_register().size() } else { i.memory_size().size() }) == 2
}

/// A shift or rotate of a 32-bit register by CL.
fn is_shift32_reg_cl(i: &Instruction) -> bool {
    matches!(
        i.mnemonic(),
        Mnemonic::Rol
            | Mnemonic::Ror
            | Mnemonic::Rcl
            | Mnemonic::Rcr
            | Mnemonic::Shl
            | Mnemonic::Sal
            | Mnemonic::Shr
            | Mnemonic::Sar
            | Mnemonic::Shld
            | Mnemonic::Shrd
    ) && i.op0_kind() == OpKind::Register
        && i.op0_register().size() == 4
        && i.op_kind(i.op_count() - 1) == OpKind::Register
}

/// How often each class is picked, relative to the others: the classes that end a case at
/// once (an exception) come less often, so that most cases run further.
fn weight(c: Class) -> u64 {
    match c {
        Class::Invalid | Class::Privileged | Class::SysInfo => 1,
        _ => 4,
    }
}

/// The registers a case may not write through anything but stack instructions: for the
/// report.
pub fn describe_frame(f: &Frame) -> String {
    format!(
        "pointers {} {}, index {}, fs.base {:#x}, gs.base {:#x}",
        format!("{:?}", R64[f.ptr[0]]).to_lowercase(),
        format!("{:?}", R64[f.ptr[1]]).to_lowercase(),
        format!("{:?}", R64[f.index]).to_lowercase(),
        f.fs_base,
        f.gs_base
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_implemented_class_has_forms() {
        for c in Class::ALL {
            let n = forms()[c as usize].len();
            if c.unimplemented() {
                assert_eq!(n, 0, "{c:?}");
            } else if !matches!(c, Class::Call | Class::Invalid) {
                assert!(n > 0, "{c:?} has no forms");
            }
        }
    }
}
