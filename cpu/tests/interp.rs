//! Interpreter behaviour that single-instruction vectors cannot show: self-modifying code,
//! interrupts between blocks, HLT, the interrupt shadow, single-step, triple fault.

use cpu::flat::FlatBus;
use cpu::state::{flags, reg};
use cpu::{Bus, Cpu, CpuState, PageMapping, Stop};

fn run_until_halt(cpu: &mut Cpu, bus: &mut dyn Bus) -> u64 {
    let mut n = 0;
    loop {
        let r = cpu.run(bus, 100_000);
        n += r.retired;
        match r.stop {
            Stop::Budget if n < 10_000_000 => continue,
            Stop::Halted => return n,
            other => panic!("stopped with {other:?} after {n} instructions"),
        }
    }
}

fn load(bus: &mut FlatBus, at: usize, code: &[u8]) {
    bus.ram_mut()[at..at + code.len()].copy_from_slice(code);
}

#[test]
fn write_into_the_running_block_takes_effect_at_once() {
    // mov byte [cs:0x108], 0x42 ; (0x106:) nop... the MOV patches "mov al, 0x00" below it
    // within the same block, which must run with the new immediate.
    let mut bus = FlatBus::new(1 << 20);
    let code = [
        0x2E, 0xC6, 0x06, 0x08, 0x01, 0x42, // 0x100: mov byte [cs:0x108], 0x42
        0xB0, 0x00, // 0x106: mov al, 0x00   (immediate at 0x107... patched below)
        0xB4, 0x00, // 0x108: mov ah, 0x00   (this byte's immediate is at 0x109)
        0xF4, // 0x10A: hlt
    ];
    load(&mut bus, 0x100, &code);
    // Patch the opcode byte at 0x108 into "mov al, imm8" twin: B0 vs B4. We write 0x42 to
    // 0x108 so the instruction becomes "inc dx" (0x42) followed by "add [bx+si], al" ...
    // keep it simple: write the immediate of "mov al" instead.
    bus.ram_mut()[0x103] = 0x07; // target 0x107: the immediate of mov al
    let mut cpu = Cpu::new();
    cpu.set_state(&CpuState::real_mode_at(0, 0x100));
    run_until_halt(&mut cpu, &mut bus);
    assert_eq!(cpu.state().gpr[reg::RAX] & 0xFF, 0x42);
}

#[test]
fn code_rewritten_between_runs_is_decoded_again() {
    let mut bus = FlatBus::new(1 << 20);
    // 0x100: mov ax, 1 ; hlt
    load(&mut bus, 0x100, &[0xB8, 0x01, 0x00, 0xF4]);
    // 0x200: mov word [0x101], 2 ; jmp 0x100
    load(&mut bus, 0x200, &[0xC7, 0x06, 0x01, 0x01, 0x02, 0x00, 0xE9, 0xF7, 0xFE]);
    let mut cpu = Cpu::new();
    cpu.set_state(&CpuState::real_mode_at(0, 0x100));
    run_until_halt(&mut cpu, &mut bus);
    assert_eq!(cpu.state().gpr[reg::RAX], 1);
    let mut s = cpu.state();
    s.rip = 0x200;
    s.halted = false;
    cpu.set_state(&s);
    run_until_halt(&mut cpu, &mut bus);
    assert_eq!(cpu.state().gpr[reg::RAX], 2, "the block at 0x100 was decoded again");
}

/// A bus with one interrupt line that a test can raise.
struct IrqBus {
    inner: FlatBus,
    pending: Option<u8>,
}

impl Bus for IrqBus {
    fn map_page(&mut self, p: u64) -> PageMapping {
        self.inner.map_page(p)
    }
    fn mmio_read(&mut self, p: u64, s: u8) -> u64 {
        self.inner.mmio_read(p, s)
    }
    fn mmio_write(&mut self, p: u64, s: u8, v: u64) {
        self.inner.mmio_write(p, s, v)
    }
    fn io_read(&mut self, p: u16, s: u8) -> u32 {
        self.inner.io_read(p, s)
    }
    fn io_write(&mut self, p: u16, s: u8, v: u32) {
        self.inner.io_write(p, s, v)
    }
    fn intr_pending(&mut self) -> bool {
        self.pending.is_some()
    }
    fn intr_ack(&mut self) -> Option<u8> {
        self.pending.take()
    }
}

#[test]
fn hlt_waits_for_an_interrupt_and_the_handler_runs() {
    let mut bus = IrqBus { inner: FlatBus::new(1 << 20), pending: None };
    // IVT[0x20] = 0000:0300 ; handler: inc bx ; iret
    bus.inner.ram_mut()[0x80..0x84].copy_from_slice(&[0x00, 0x03, 0x00, 0x00]);
    load(&mut bus.inner, 0x300, &[0x43, 0xCF]);
    // sti ; hlt ; hlt
    load(&mut bus.inner, 0x100, &[0xFB, 0xF4, 0xF4]);
    let mut cpu = Cpu::new();
    let mut s = CpuState::real_mode_at(0, 0x100);
    s.gpr[reg::RSP] = 0x8000;
    cpu.set_state(&s);
    assert_eq!(cpu.run(&mut bus, 1000).stop, Stop::Halted);
    assert!(cpu.is_halted());
    assert_eq!(cpu.run(&mut bus, 1000).stop, Stop::Halted, "nothing pending: stays halted");
    bus.pending = Some(0x20);
    assert_eq!(cpu.run(&mut bus, 1000).stop, Stop::Halted);
    let s = cpu.state();
    assert_eq!(s.gpr[reg::RBX], 1, "handler ran");
    assert_eq!(s.rip, 0x103, "second HLT reached after IRET");
}

#[test]
fn sti_holds_interrupts_off_for_one_instruction() {
    let mut bus = IrqBus { inner: FlatBus::new(1 << 20), pending: Some(0x20) };
    bus.inner.ram_mut()[0x80..0x84].copy_from_slice(&[0x00, 0x03, 0x00, 0x00]);
    // handler: hlt
    load(&mut bus.inner, 0x300, &[0xF4]);
    // sti ; inc cx ; inc cx ; hlt
    load(&mut bus.inner, 0x100, &[0xFB, 0x41, 0x41, 0xF4]);
    let mut cpu = Cpu::new();
    let mut s = CpuState::real_mode_at(0, 0x100);
    s.gpr[reg::RSP] = 0x8000;
    cpu.set_state(&s);
    cpu.run(&mut bus, 1000);
    let s = cpu.state();
    assert_eq!(s.rip, 0x301, "interrupt taken");
    assert_eq!(s.gpr[reg::RCX], 1, "exactly the instruction after STI ran before the interrupt");
    let ret = u16::from_le_bytes([bus.inner.ram()[0x7FFA], bus.inner.ram()[0x7FFB]]);
    assert_eq!(ret, 0x102, "the interrupt came right after the instruction after STI");
}

/// LSS loads SS:SP at once and, unlike MOV SS, holds no interrupt off: in a one-instruction
/// STI window the LSS is that instruction, and a pending interrupt comes right after it.
#[test]
fn lss_opens_no_interrupt_shadow() {
    let mut bus = IrqBus { inner: FlatBus::new(1 << 20), pending: None };
    bus.inner.ram_mut()[0x80..0x84].copy_from_slice(&[0x00, 0x03, 0x00, 0x00]);
    // handler: inc bx ; iret
    load(&mut bus.inner, 0x300, &[0x43, 0xCF]);
    // the far pointer 0000:8000 for LSS
    load(&mut bus.inner, 0x200, &[0x00, 0x80, 0x00, 0x00]);
    // cli ; out 0x80, al ; sti ; lss sp, [0x200] ; inc cx ; cli ; hlt
    load(&mut bus.inner, 0x100, &[0xFA, 0xE6, 0x80, 0xFB, 0x0F, 0xB2, 0x26, 0x00, 0x02, 0x41, 0xFA, 0xF4]);
    let mut cpu = Cpu::new();
    let mut s = CpuState::real_mode_at(0, 0x100);
    s.gpr[reg::RSP] = 0x6000;
    cpu.set_state(&s);
    bus.pending = Some(0x20);
    cpu.run(&mut bus, 1000);
    let s = cpu.state();
    assert_eq!(s.gpr[reg::RBX], 1, "the handler ran");
    let ret = u16::from_le_bytes([bus.inner.ram()[0x7FFA], bus.inner.ram()[0x7FFB]]);
    assert_eq!(ret, 0x109, "taken right after the LSS, on its new stack");
    assert_eq!((s.rip, s.gpr[reg::RCX]), (0x10C, 1), "then on to the HLT");
}

/// SeaBIOS's yield(): `sti ; nop ; cli` opens a window of one instruction, in which a pending
/// interrupt must be taken (its floppy code waits for IRQ 6 that way).
#[test]
fn a_one_instruction_sti_window_takes_a_pending_interrupt() {
    let mut bus = IrqBus { inner: FlatBus::new(1 << 20), pending: None };
    bus.inner.ram_mut()[0x80..0x84].copy_from_slice(&[0x00, 0x03, 0x00, 0x00]);
    // handler: inc bx ; iret
    load(&mut bus.inner, 0x300, &[0x43, 0xCF]);
    // cli ; out 0x80, al (a bus call: the line may rise) ; sti ; nop ; cli ; inc dx ; hlt
    load(&mut bus.inner, 0x100, &[0xFA, 0xE6, 0x80, 0xFB, 0x90, 0xFA, 0x42, 0xF4]);
    let mut cpu = Cpu::new();
    let mut s = CpuState::real_mode_at(0, 0x100);
    s.gpr[reg::RSP] = 0x8000;
    cpu.set_state(&s);
    bus.pending = Some(0x20);
    cpu.run(&mut bus, 1000);
    let s = cpu.state();
    assert_eq!(s.gpr[reg::RBX], 1, "the handler ran in the window");
    let ret = u16::from_le_bytes([bus.inner.ram()[0x7FFA], bus.inner.ram()[0x7FFB]]);
    assert_eq!(ret, 0x105, "taken after the NOP, before the CLI");
    assert_eq!((s.rip, s.gpr[reg::RDX]), (0x108, 1), "then on to the HLT");
}

#[test]
fn single_step_traps_after_each_instruction() {
    let mut bus = FlatBus::new(1 << 20);
    // IVT[1] = 0000:0300 ; handler: inc bp ; iret
    bus.ram_mut()[4..8].copy_from_slice(&[0x00, 0x03, 0x00, 0x00]);
    load(&mut bus, 0x300, &[0x45, 0xCF]);
    // pushf ; pop ax ; or ah,1 ; push ax ; popf       (TF on)
    // inc cx ; inc cx ; inc cx
    // pushf ; pop ax ; and ah,0xFE ; push ax ; popf  (TF off) ; hlt
    load(
        &mut bus,
        0x100,
        &[
            0x9C, 0x58, 0x80, 0xCC, 0x01, 0x50, 0x9D, 0x41, 0x41, 0x41, 0x9C, 0x58, 0x80, 0xE4, 0xFE, 0x50, 0x9D, 0xF4,
        ],
    );
    let mut cpu = Cpu::new();
    let mut s = CpuState::real_mode_at(0, 0x100);
    s.gpr[reg::RSP] = 0x8000;
    cpu.set_state(&s);
    run_until_halt(&mut cpu, &mut bus);
    let s = cpu.state();
    assert_eq!(s.gpr[reg::RCX], 3);
    // A trap after each instruction from the one after the POPF that set TF up to and
    // including the POPF that cleared it: three INCs and five instructions.
    assert_eq!(s.gpr[reg::RBP], 8, "one #DB per instruction while TF was set");
    assert!(s.rflags & flags::TF == 0);
}

#[test]
fn a_fault_with_no_usable_stack_shuts_the_cpu_down() {
    let mut bus = FlatBus::new(1 << 20);
    // SP = 1: pushing the exception frame faults (#SS), and so does the #DF frame.
    load(&mut bus, 0x100, &[0x0F, 0x0B]); // ud2
    let mut cpu = Cpu::new();
    let mut s = CpuState::real_mode_at(0, 0x100);
    s.gpr[reg::RSP] = 1;
    cpu.set_state(&s);
    let r = cpu.run(&mut bus, 1000);
    assert!(matches!(r.stop, Stop::Shutdown(ref why) if why.contains("triple fault")), "{:?}", r.stop);
}

#[test]
fn divide_error_pushes_the_faulting_instruction() {
    let mut bus = FlatBus::new(1 << 20);
    bus.ram_mut()[0..4].copy_from_slice(&[0x00, 0x03, 0x00, 0x00]);
    load(&mut bus, 0x300, &[0xF4]);
    // xor bl,bl ; div bl
    load(&mut bus, 0x100, &[0x30, 0xDB, 0xF6, 0xF3]);
    let mut cpu = Cpu::new();
    let mut s = CpuState::real_mode_at(0, 0x100);
    s.gpr[reg::RSP] = 0x8000;
    cpu.set_state(&s);
    run_until_halt(&mut cpu, &mut bus);
    let ret = u16::from_le_bytes([bus.ram()[0x7FFA], bus.ram()[0x7FFB]]);
    assert_eq!(ret, 0x102);
}

#[test]
fn repeated_moves_keep_element_order_across_overlap_and_pages() {
    let mut bus = FlatBus::new(1 << 20);
    for k in 0..0x8000usize {
        bus.ram_mut()[0x10000 + k] = (k * 7 + 3) as u8;
    }
    let code = [
        0xB8, 0x00, 0x10, // mov ax, 0x1000
        0x8E, 0xD8, // mov ds, ax
        0x8E, 0xC0, // mov es, ax
        0x31, 0xF6, // xor si, si
        0xBF, 0x01, 0x00, // mov di, 1: destination one byte into the source
        0xB9, 0x00, 0x18, // mov cx, 0x1800
        0xF3, 0xA4, // rep movsb
        0xBE, 0xF0, 0x0F, // mov si, 0x0FF0
        0xBF, 0x00, 0x50, // mov di, 0x5000
        0xB9, 0x00, 0x04, // mov cx, 0x400
        0x66, 0xF3, 0xA5, // rep movsd, across page boundaries on both sides
        0xBF, 0x00, 0x70, // mov di, 0x7000
        0xB8, 0x34, 0x12, // mov ax, 0x1234
        0xB9, 0x00, 0x08, // mov cx, 0x800
        0xF3, 0xAB, // rep stosw
        0xF4, // hlt
    ];
    load(&mut bus, 0x100, &code);
    // What the instructions do, one element at a time.
    let mut want = bus.ram().to_vec();
    for k in 0..0x1800 {
        want[0x10001 + k] = want[0x10000 + k];
    }
    for k in 0..0x1000 {
        want[0x15000 + k] = want[0x10FF0 + k];
    }
    for k in 0..0x800 {
        want[0x17000 + 2 * k] = 0x34;
        want[0x17001 + 2 * k] = 0x12;
    }
    let mut cpu = Cpu::new();
    cpu.set_state(&CpuState::real_mode_at(0, 0x100));
    let n = run_until_halt(&mut cpu, &mut bus);
    let s = cpu.state();
    assert_eq!(s.gpr[reg::RCX] & 0xFFFF, 0);
    assert_eq!(s.gpr[reg::RSI] & 0xFFFF, 0x1FF0);
    assert_eq!(s.gpr[reg::RDI] & 0xFFFF, 0x8000);
    assert!(bus.ram()[0x10000..0x18000] == want[0x10000..0x18000], "memory differs from element-by-element semantics");
    assert!(n >= 0x1800 + 0x400 + 0x800, "every iteration counts as an instruction ({n})");
}

/// A bus that records the instruction counts `sync_time` is given before device accesses.
struct ClockBus {
    inner: FlatBus,
    synced: Vec<u64>,
    writes: usize,
}

impl Bus for ClockBus {
    fn map_page(&mut self, p: u64) -> PageMapping {
        self.inner.map_page(p)
    }
    fn mmio_read(&mut self, p: u64, s: u8) -> u64 {
        self.inner.mmio_read(p, s)
    }
    fn mmio_write(&mut self, p: u64, s: u8, v: u64) {
        self.inner.mmio_write(p, s, v)
    }
    fn io_read(&mut self, p: u16, s: u8) -> u32 {
        self.inner.io_read(p, s)
    }
    fn io_write(&mut self, _p: u16, _s: u8, _v: u32) {
        self.writes += 1;
    }
    fn intr_pending(&mut self) -> bool {
        false
    }
    fn intr_ack(&mut self) -> Option<u8> {
        None
    }
    fn sync_time(&mut self, retired: u64) {
        self.synced.push(retired);
    }
}

#[test]
fn port_writes_bring_the_bus_clock_up_to_date_first() {
    let mut bus = ClockBus { inner: FlatBus::new(1 << 20), synced: Vec::new(), writes: 0 };
    // mov cx, 10 ; l: out 0x80, al ; loop l ; hlt
    load(&mut bus.inner, 0x100, &[0xB9, 0x0A, 0x00, 0xE6, 0x80, 0xE2, 0xFC, 0xF4]);
    let mut cpu = Cpu::new();
    cpu.set_state(&CpuState::real_mode_at(0, 0x100));
    let r = cpu.run(&mut bus, 1000);
    assert_eq!(r.stop, Stop::Halted);
    assert_eq!(bus.writes, 10);
    assert_eq!(bus.synced.len(), 10, "one sync per OUT: {:?}", bus.synced);
    assert!(bus.synced.windows(2).all(|w| w[0] < w[1]), "time moves on between OUTs: {:?}", bus.synced);
    assert!(bus.synced[9] >= 18 && bus.synced[9] < r.retired, "{:?} of {}", bus.synced, r.retired);
}

/// The flags of `a - b` at `bits` bits, tested by condition code `cc` (the Jcc nibble), as
/// the SDM defines them: the reference for fused compare-and-branch pairs.
fn sub_condition(a: u64, b: u64, bits: u32, cc: u8) -> bool {
    let m = if bits == 64 { u64::MAX } else { (1 << bits) - 1 };
    let sb = 1u64 << (bits - 1);
    let (a, b) = (a & m, b & m);
    let r = a.wrapping_sub(b) & m;
    let cf = a < b;
    let zf = r == 0;
    let sf = r & sb != 0;
    let of = (a ^ b) & (a ^ r) & sb != 0;
    let pf = (r as u8).count_ones().is_multiple_of(2);
    let t = match cc >> 1 {
        0 => of,
        1 => cf,
        2 => zf,
        3 => cf || zf,
        4 => sf,
        5 => pf,
        6 => sf != of,
        _ => zf || sf != of,
    };
    t ^ (cc & 1 != 0)
}

/// A CPU in real mode at 0000:0100 with `code` there, and its 1 MiB of memory.
fn real_at_100(code: &[u8]) -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new(1 << 20);
    load(&mut bus, 0x100, code);
    let mut cpu = Cpu::new();
    cpu.set_state(&CpuState::real_mode_at(0, 0x100));
    (cpu, bus)
}

/// Runs real-mode `code` at 0x100 to its HLT and returns the CPU.
fn run_real(code: &[u8]) -> Cpu {
    let (mut cpu, mut bus) = real_at_100(code);
    run_until_halt(&mut cpu, &mut bus);
    cpu
}

#[test]
fn compares_fused_with_their_branch_take_it_as_the_flags_say() {
    // cmp al, bl / cmp eax, ebx (66 prefix) / test-free forms, each followed by Jcc over a
    // "mov cl, 0; hlt" to "mov cl, 1; hlt": the pair runs as one fused entry (byte and
    // dword compares before a Jcc of the code size). Every condition code, operands around
    // the carry, sign and overflow edges.
    let edges = [0u64, 1, 2, 0x7F, 0x80, 0x81, 0xFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1234_5678];
    for cc in 0..16u8 {
        for &a in &edges {
            for &b in &edges {
                for dword in [false, true] {
                    let mut code = Vec::new();
                    if dword {
                        code.extend([0x66, 0xB8]); // mov eax, a
                        code.extend((a as u32).to_le_bytes());
                        code.extend([0x66, 0xBB]); // mov ebx, b
                        code.extend((b as u32).to_le_bytes());
                        code.extend([0x66, 0x39, 0xD8]); // cmp eax, ebx
                    } else {
                        code.extend([0xB0, a as u8, 0xB3, b as u8]); // mov al, a; mov bl, b
                        code.extend([0x38, 0xD8]); // cmp al, bl
                    }
                    code.extend([0x70 + cc, 0x03]); // jcc +3
                    code.extend([0xB1, 0x00, 0xF4]); // mov cl, 0; hlt
                    code.extend([0xB1, 0x01, 0xF4]); // mov cl, 1; hlt
                    let cpu = run_real(&code);
                    let s = cpu.state();
                    let want = sub_condition(a, b, if dword { 32 } else { 8 }, cc);
                    assert_eq!(s.gpr[reg::RCX] & 0xFF == 1, want, "cc {cc:#x} a {a:#x} b {b:#x} dword {dword}");
                    // The flags after the pair are the compare's.
                    let f = s.rflags;
                    let m = if dword { 0xFFFF_FFFF } else { 0xFF };
                    assert_eq!(f & flags::CF != 0, (a & m) < (b & m), "CF after cmp {a:#x}, {b:#x}");
                }
            }
        }
    }
}

#[test]
fn dec_and_inc_fused_with_a_branch_or_a_trace_jump() {
    // mov cx, 5; (loop:) inc al; jmp short $+2 (a JMP inside the block: fused with the INC);
    // dec cl; jnz loop; hlt. The JNZ side-exits back to "loop", whose block runs again.
    let code = [
        0xB9, 0x05, 0x00, // 0x100: mov cx, 5
        0xB0, 0x00, // 0x103: mov al, 0
        0xFE, 0xC0, // 0x105: inc al
        0xEB, 0x00, // 0x107: jmp short 0x109
        0xFE, 0xC9, // 0x109: dec cl
        0x75, 0xF8, // 0x10B: jnz 0x105
        0xF4, // 0x10D: hlt
    ];
    let (mut cpu, mut bus) = real_at_100(&code);
    let n = run_until_halt(&mut cpu, &mut bus);
    let s = cpu.state();
    assert_eq!(s.gpr[reg::RAX] & 0xFF, 5);
    assert_eq!(s.gpr[reg::RCX] & 0xFF, 0);
    assert_eq!(s.rip, 0x10E);
    // Every instruction counts once, fused or not: 2 + 5 * 4 + HLT.
    assert_eq!(n, 2 + 5 * 4 + 1);
}

#[test]
fn a_taken_branch_to_a_later_instruction_of_its_block_counts_what_ran() {
    // A loop whose body skips two INCs on even counts: the JZ (fused with the TEST) leads to
    // an instruction of its own block, where the run loop goes on without leaving the block.
    let code = [
        0xB9, 0x0A, 0x00, // 0x100: mov cx, 10
        0x31, 0xC0, // 0x103: xor ax, ax
        0x31, 0xD2, // 0x105: xor dx, dx
        0xF6, 0xC1, 0x01, // 0x107: test cl, 1
        0x74, 0x02, // 0x10A: jz 0x10E
        0x40, // 0x10C: inc ax
        0x40, // 0x10D: inc ax
        0x42, // 0x10E: inc dx
        0x49, // 0x10F: dec cx
        0x75, 0xF5, // 0x110: jnz 0x107
        0xF4, // 0x112: hlt
    ];
    let (mut cpu, mut bus) = real_at_100(&code);
    let n = run_until_halt(&mut cpu, &mut bus);
    let s = cpu.state();
    assert_eq!(s.gpr[reg::RAX] & 0xFFFF, 10, "two INCs on each of the five odd counts");
    assert_eq!(s.gpr[reg::RDX] & 0xFFFF, 10);
    assert_eq!(s.rip, 0x113);
    // 3 + five taken rounds of 5 + five untaken rounds of 7 + HLT.
    assert_eq!(n, 3 + 5 * 5 + 5 * 7 + 1);
    // Budgets that end the run at every possible point agree on the count.
    for budget in 1..70 {
        let (mut cpu, mut bus) = real_at_100(&code);
        let mut n = 0;
        loop {
            let r = cpu.run(&mut bus, budget);
            n += r.retired;
            if r.stop == Stop::Halted {
                break;
            }
        }
        assert_eq!(n, 64, "budget {budget}");
        assert_eq!(cpu.state().gpr[reg::RAX] & 0xFFFF, 10, "budget {budget}");
    }
}

#[test]
fn a_fault_after_a_branch_within_the_block_reports_the_faulting_instruction() {
    // The JZ is taken to a DIV of the same block, which divides by zero: #DE with IP at the
    // DIV, and the skipped INCs neither ran nor count.
    let code = [
        0xBC, 0x00, 0x10, // 0x100: mov sp, 0x1000
        0xB1, 0x02, // 0x103: mov cl, 2
        0x30, 0xDB, // 0x105: xor bl, bl
        0xF6, 0xC1, 0x01, // 0x107: test cl, 1
        0x74, 0x02, // 0x10A: jz 0x10E
        0x40, // 0x10C: inc ax
        0x40, // 0x10D: inc ax
        0xF6, 0xF3, // 0x10E: div bl
        0xF4, // 0x110: hlt (not reached)
    ];
    let mut bus = FlatBus::new(1 << 20);
    load(&mut bus, 0x100, &code);
    load(&mut bus, 0, &[0x00, 0x02, 0x00, 0x00]); // IVT[0] = 0000:0200
    load(&mut bus, 0x200, &[0xF4]); // the #DE handler: hlt
    let mut cpu = Cpu::new();
    cpu.set_state(&CpuState::real_mode_at(0, 0x100));
    let n = run_until_halt(&mut cpu, &mut bus);
    let s = cpu.state();
    assert_eq!(s.rip, 0x201, "in the #DE handler");
    assert_eq!(s.gpr[reg::RAX] & 0xFFFF, 0, "the INCs were jumped over");
    let pushed_ip = u16::from_le_bytes([bus.ram()[0xFFA], bus.ram()[0xFFB]]);
    assert_eq!(pushed_ip, 0x10E, "#DE reports the DIV");
    // MOV, MOV, XOR, TEST, JZ (the DIV faulted), HLT.
    assert_eq!(n, 6);
}

#[test]
fn the_interpreter_reports_itself_free_of_speculative_attacks() {
    // mov eax, 7; xor ecx, ecx; cpuid; mov esi, edx; mov ecx, 0x10A; rdmsr; hlt
    let code = [
        0x66, 0xB8, 0x07, 0x00, 0x00, 0x00, // mov eax, 7
        0x66, 0x31, 0xC9, // xor ecx, ecx
        0x0F, 0xA2, // cpuid
        0x66, 0x89, 0xD6, // mov esi, edx
        0x66, 0xB9, 0x0A, 0x01, 0x00, 0x00, // mov ecx, 0x10A
        0x0F, 0x32, // rdmsr
        0xF4,
    ];
    let cpu = run_real(&code);
    let s = cpu.state();
    assert_ne!(s.gpr[reg::RSI] & (1 << 29), 0, "CPUID.7.EDX[29]: IA32_ARCH_CAPABILITIES");
    let caps = (s.gpr[reg::RDX] << 32) | (s.gpr[reg::RAX] & 0xFFFF_FFFF);
    // RDCL_NO (no Meltdown: Linux skips page-table isolation), SSB_NO, MDS_NO, TAA_NO.
    for bit in [0, 4, 5, 8] {
        assert_ne!(caps & (1 << bit), 0, "IA32_ARCH_CAPABILITIES bit {bit}: {caps:#x}");
    }
}
