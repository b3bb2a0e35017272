//! A quick interpreter speed check on a tight 16-bit loop (ADD, XOR, INC, LOOP): prints M instructions/s.
use cpu::flat::FlatBus;
use cpu::{Cpu, CpuState};
fn main() {
    // mov cx,0 ; l: add ax,cx ; xor bx,ax ; inc dx ; loop l ; jmp short 0
    let code = [0xB9, 0x00, 0x00, 0x01, 0xC8, 0x31, 0xC3, 0x42, 0xE2, 0xF9, 0xEB, 0xF3];
    let mut bus = FlatBus::new(1 << 20);
    bus.ram_mut()[0x100..0x100 + code.len()].copy_from_slice(&code);
    let mut cpu = Cpu::new();
    cpu.set_state(&CpuState::real_mode_at(0, 0x100));
    let t = std::time::Instant::now();
    let mut n = 0;
    while n < 200_000_000 {
        n += cpu.run(&mut bus, 1_000_000).retired;
    }
    let dt = t.elapsed().as_secs_f64();
    println!("{n} instructions in {dt:.2}s: {:.0} MIPS", n as f64 / dt / 1e6);
}
