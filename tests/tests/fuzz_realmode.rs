//! Random real-mode programs: thousands of byte sequences, biased towards real opcodes and
//! prefixes, run through the interpreter from random register states, on a flat bus and on
//! the full machine (so random port writes reach the device models too). Nothing a guest does
//! may panic or hang the host; the test passing is that every run returned.

use accel::interp::Interp;
use accel::Backend;
use cpu::flat::FlatBus;
use cpu::state::sreg;
use cpu::{Cpu, CpuState, Segment};
use machine::host::NullChar;
use machine::{ClockMode, Machine, MachineConfig};

/// xorshift64*: deterministic, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Bytes that make interesting instruction streams: prefixes, common opcodes, ModRM bytes
/// with every addressing form, and plain noise.
fn program(rng: &mut Rng, len: usize) -> Vec<u8> {
    const PREFIXES: [u8; 10] = [0x66, 0x67, 0xF3, 0xF2, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        match rng.below(10) {
            0 => out.push(PREFIXES[rng.below(PREFIXES.len() as u64) as usize]),
            1 => {
                out.push(0x0F);
                out.push(rng.byte());
            }
            // Short backward/forward jumps keep the program looping inside itself.
            2 => {
                out.push(0x70 + rng.below(16) as u8);
                out.push((rng.below(40) as i8 - 30) as u8);
            }
            _ => out.push(rng.byte()),
        }
    }
    out.truncate(len);
    out
}

fn random_state(rng: &mut Rng, code_seg: u16) -> CpuState {
    let mut s = CpuState::real_mode_at(code_seg, 0x100);
    for g in s.gpr.iter_mut().take(8) {
        *g = if rng.below(4) == 0 { rng.below(4) } else { rng.next() & 0xFFFF_FFFF };
    }
    for r in [sreg::DS, sreg::ES, sreg::SS, sreg::FS, sreg::GS] {
        s.seg[r] = Segment::real_mode(rng.next() as u16 & 0x7FFF);
    }
    s.rflags = (rng.next() & 0x0CD5) | 2;
    s
}

#[test]
fn random_programs_on_a_flat_bus() {
    let mut rng = Rng(0x0F3E_2A1D_5EED_0001);
    let mut bus = FlatBus::new(0x11_0000);
    let mut cpu = Cpu::new();
    let runs = 4000;
    let mut retired = 0u64;
    for _ in 0..runs {
        // An IVT whose every vector points at a HLT, so exceptions end the run.
        let ram = bus.ram_mut();
        for v in 0..256 {
            ram[v * 4..v * 4 + 4].copy_from_slice(&[0x00, 0x05, 0x00, 0x00]);
        }
        ram[0x500] = 0xF4;
        let code = program(&mut rng, 96);
        let base = 0x1_0000 + 0x100;
        ram[base..base + code.len()].copy_from_slice(&code);
        cpu.flush_caches();
        cpu.set_state(&random_state(&mut rng, 0x1000));
        let r = cpu.run(&mut bus, 20_000);
        retired += r.retired;
    }
    println!("flat bus: {runs} random programs, {retired} instructions retired, no panic");
}

#[test]
fn random_programs_on_the_machine() {
    let mut rng = Rng(0xD1CE_BA5E_0000_0002);
    let runs = 1500;
    let mut retired = 0u64;
    for _ in 0..runs {
        let mut m = Machine::new(MachineConfig {
            ram_size: 2 << 20,
            bios: vec![0xF4; 64 * 1024],
            clock: ClockMode::Deterministic,
            serial: Box::new(NullChar),
            debugcon: Box::new(NullChar),
            ..MachineConfig::default()
        })
        .unwrap();
        let mut ivt = Vec::new();
        for _ in 0..256 {
            ivt.extend_from_slice(&[0x00, 0x05, 0x00, 0x00]);
        }
        m.memory_mut().write(0, &ivt);
        m.memory_mut().write(0x500, &[0xF4]);
        // Programs that talk to devices: OUT/IN to the PIC, PIT, UART and friends.
        let mut code = program(&mut rng, 96);
        for k in (0..code.len()).step_by(11) {
            const PORTS: [u8; 8] = [0x20, 0x21, 0xA0, 0xA1, 0x40, 0x43, 0x61, 0xF8];
            if rng.below(3) == 0 && k + 3 < code.len() {
                code[k] = 0xB0;
                code[k + 1] = rng.byte();
                code[k + 2] = if rng.below(2) == 0 { 0xE6 } else { 0xE4 };
                code[k + 3] = PORTS[rng.below(8) as usize];
            }
        }
        m.memory_mut().write(0x1_0100, &code);
        let mut interp = Interp::new();
        interp.set_state(0, &random_state(&mut rng, 0x1000)).unwrap();
        for _ in 0..20 {
            m.run_timers();
            let until = m.now() + 50_000;
            match interp.run(&mut m, until).unwrap() {
                accel::Exit::Shutdown(_) => break,
                _ => {}
            }
            m.take_events();
        }
        retired += interp.state(0).tsc;
    }
    println!("machine: {runs} random programs, {retired} instructions retired, no panic");
}
