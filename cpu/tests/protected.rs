//! Protected-mode programs on a bare CPU: assembled from `tests/asm/*.asm` (NASM, the built
//! `.bin` committed beside each source) and run on a flat bus.

use cpu::flat::FlatBus;
use cpu::state::sreg;
use cpu::{Cpu, CpuState, Stop};

fn run(image: &[u8], at: usize) -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new(1 << 20);
    bus.ram_mut()[at..at + image.len()].copy_from_slice(image);
    let mut cpu = Cpu::new();
    cpu.set_state(&CpuState::real_mode_at(0, at as u16));
    let mut n = 0;
    loop {
        let r = cpu.run(&mut bus, 100_000);
        n += r.retired;
        match r.stop {
            Stop::Halted => break,
            Stop::Budget if n < 1_000_000 => {}
            other => panic!("{other:?} after {n} instructions\n{}\n{}", cpu.state().report(), cpu.recent_instructions().join("\n")),
        }
    }
    (cpu, bus)
}

fn dword(bus: &FlatBus, a: usize) -> u32 {
    u32::from_le_bytes(bus.ram()[a..a + 4].try_into().unwrap())
}

#[test]
fn gates_rings_and_the_tss_stack() {
    let (cpu, bus) = run(include_bytes!("asm/pm_basic.bin"), 0x7C00);
    let s = cpu.state();
    assert_eq!(dword(&bus, 0x500), 2, "INT 0x30 from ring 0 and from ring 3");
    assert_eq!(dword(&bus, 0x504), 0x1B, "the second call came from ring-3 CS");
    assert_eq!(dword(&bus, 0x510), 0x1234, "ring-3 code ran");
    assert_eq!(dword(&bus, 0x50C), 0x70000 - 20, "ring-0 stack from TSS.ESP0 with SS:ESP, EFLAGS, CS, EIP");
    assert_eq!(dword(&bus, 0x508), 0x31 * 8 + 2, "#GP error code names the IDT entry");
    assert_eq!(s.seg[sreg::CS].selector, 0x08);
    assert_eq!(s.seg[sreg::SS].selector, 0x10);
}

#[test]
fn paging_faults_accessed_dirty_and_long_mode() {
    let (cpu, bus) = run(include_bytes!("asm/paging.bin"), 0x7C00);
    let s = cpu.state();
    assert_eq!(dword(&bus, 0x500), 2, "two #PFs in 32-bit paging");
    assert_eq!(dword(&bus, 0x530), 3, "first #PF: protection, write, supervisor (CR0.WP)");
    assert_eq!(dword(&bus, 0x534), 0, "second #PF: not present, read, supervisor");
    assert_eq!(dword(&bus, 0x508), 0x403000);
    assert_eq!(dword(&bus, 0x510) & 0x60, 0x60, "write set A and D");
    assert_eq!(dword(&bus, 0x514) & 0x60, 0x20, "read set A only");
    let v = u64::from(dword(&bus, 0x518)) | (u64::from(dword(&bus, 0x51C)) << 32);
    assert_eq!(v, 0x1234567890ABCDEFu64.wrapping_add(0x1234567890ABCDEF >> 4), "64-bit arithmetic");
    assert_eq!(dword(&bus, 0x520), 0, "#PF in long mode: not present, read");
    assert_eq!(dword(&bus, 0x524), 0x400000);
    assert_eq!(s.efer & 0x500, 0x500, "LME and LMA");
}

#[test]
fn task_switch_by_call_iret_and_double_fault_task_gate() {
    let (cpu, bus) = run(include_bytes!("asm/tasks.bin"), 0x7C00);
    assert_eq!(dword(&bus, 0x500), 1, "task B ran");
    assert_eq!(dword(&bus, 0x504) & 0xFFFF, 0x18, "B's back link names task A");
    assert_ne!(dword(&bus, 0x508) & 0x4000, 0, "NT set in the called task");
    assert_eq!(dword(&bus, 0x50C), 1, "IRET returned to task A");
    assert_eq!(dword(&bus, 0x510), 0, "#DF pushes error code 0");
    assert_eq!(dword(&bus, 0x514) & 0xFFFF, 0x28, "running in the #DF task");
    assert_eq!(cpu.state().tr.selector, 0x28);
}

fn word(bus: &FlatBus, a: usize) -> u16 {
    u16::from_le_bytes(bus.ram()[a..a + 2].try_into().unwrap())
}

#[test]
fn debug_registers_instruction_data_io_and_general_detect() {
    let image = include_bytes!("asm/debugregs.bin");
    let (_, bus) = run(image, 0x7C00);
    // `target` is at offset 0x28 in the listing of debugregs.asm (`nasm -l`).
    let target = 0x7C28;
    assert_eq!(word(&bus, 0x50E), 4, "four #DB");
    assert_eq!(word(&bus, 0x500), target, "instruction breakpoint is a fault at the instruction");
    assert_eq!(word(&bus, 0x502) & 0xF, 1, "DR6.B0");
    assert_eq!(word(&bus, 0x506) & 0xF, 2, "DR6.B1 for the data write");
    assert_eq!(word(&bus, 0x50A) & 0xF, 4, "DR6.B2 for the I/O port");
    assert_ne!(word(&bus, 0x50C) & 0x2000, 0, "DR6.BD for general detect");
    assert!(word(&bus, 0x504) > word(&bus, 0x500), "data breakpoint traps after the write");
    assert!(word(&bus, 0x508) > word(&bus, 0x504), "I/O breakpoint traps after the OUT");
}

#[test]
fn stack_size_of_pop_ss_lss_and_enter_and_the_page_check_of_enter() {
    let (_, bus) = run(include_bytes!("asm/stack_size.bin"), 0x7C00);
    assert_eq!(dword(&bus, 0x5F0), 0xFF, "no exception");
    assert_eq!(dword(&bus, 0x500), 0x0002_0000, "32-bit POP SS on a 16-bit stack: SP wrapped to 0, ESP's upper half kept");
    assert_eq!(dword(&bus, 0x504) & 0xFFFF, 0x20);
    assert_eq!(dword(&bus, 0x508), 0xFFFF, "LSS loads ESP whole");
    assert_eq!(dword(&bus, 0x50C) & 0xFFFF, 0x20);
    assert_eq!(dword(&bus, 0x510), 0x0001_FFFC, "32-bit ENTER on a 16-bit stack: EBP = FrameTemp = ESP");
    assert_eq!(dword(&bus, 0x514), 0x0001_FFF0, "SP moved by 4 + 4 + 8, ESP's upper half kept");
    assert_eq!(dword(&bus, 0x518), 0x0001_FFFC, "the pushed frame pointer is ESP");
    assert_eq!(dword(&bus, 0x520), 3, "ENTER's final stack pointer is in a read-only page: #PF, protection, write");
    assert_eq!(dword(&bus, 0x524), 0x30FF4, "CR2 is the final stack pointer");
    assert_eq!(dword(&bus, 0x528), 0x1234_5678, "EBP unchanged");
    assert_eq!(dword(&bus, 0x52C), 0x31100, "ESP unchanged");
}
