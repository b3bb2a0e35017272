//! Direct kernel boot (`machine::firmware::boot`) with no BIOS running:
//!
//! - `multiboot_*`: the multiboot test kernel (`tests/multiboot/mbtest.asm`, assembled with
//!   NASM here, as an ELF file, with header load addresses, and as a multiboot2 kernel) checks
//!   its boot information and the machine a PC BIOS would leave, and prints both; the output
//!   is compared with what the machine's memory map, the command line and the modules must
//!   give. Under the interpreter and under KVM (skipped, saying why, where KVM is unusable).
//! - `stub_rom_*`: the ROM's interrupt handlers serve a real-mode program: the timer ticks
//!   the BIOS data area and calls INT 1Ch, INT 10h returns.
//! - `reset_loads_the_kernel_again`: after a reset the kernel is back in memory.

use accel::{RunLimits, RunOutcome, Vm};
use cpu::CpuState;
use machine::firmware::boot::{BootFile, BootFiles, BootModule, DirectBoot};
use machine::firmware::{post, stub_rom, Platform, E820_RAM};
use machine::host::CaptureChar;
use machine::{ClockMode, Machine, MachineConfig};
use std::time::Duration;
use tests::{kvm_usable, run_kernel, BackendKind};

const RAM: u64 = 64 << 20;
const FORMATS: [&str; 3] = ["ELF", "AOUT", "MB2"];

/// Assembles the test kernel in one format; `None` (with the reason printed) without NASM.
fn mbtest(format: &str) -> Option<Vec<u8>> {
    tests::nasm("multiboot/mbtest.asm", &[&format!("FORMAT_{format}")])
}

const MODULE1: &[u8] = b"first module text\nsecond line\n";
const MODULE2: &[u8] = b"other";

fn files(format: &str, kernel: Vec<u8>) -> BootFiles {
    let module = |name: &str, string: &str, data: &[u8]| BootModule {
        file: BootFile { name: name.into(), data: data.to_vec() },
        string: string.into(),
    };
    BootFiles {
        kernel: BootFile { name: format!("/boot/mbtest-{format}.bin"), data: kernel },
        modules: vec![module("/boot/m1.txt", "/boot/m1.txt arg1 arg2", MODULE1), module("/boot/m2.txt", "/boot/m2.txt", MODULE2)],
        cmdline: "hello world".into(),
    }
}

/// What the kernel must print about its boot information, line by line (checks aside).
fn expected_info(format: &str) -> Vec<String> {
    let p = Platform { ram_size: RAM, cpus: 1, ide: vec![], floppies: vec![], boot_order: "cda".into(), fw_cfg_files: vec![] };
    let e820 = post::bios_e820(&p, stub_rom::SIZE as u64);
    let upper = e820.iter().find(|e| e.0 == 0x10_0000 && e.2 == E820_RAM).unwrap().1 >> 10;
    let mut lines = vec![
        format!("cmdline: /boot/mbtest-{format}.bin hello world"),
        "loader: Ferrite".into(),
        "mem_lower 0000027f".into(),
        format!("mem_upper {upper:08x}"),
    ];
    lines.extend(e820.iter().map(|&(a, l, t)| format!("mmap {a:016x} {l:016x} {t:08x}")));
    lines.push("module-data: first module text".into());
    lines.push("module-data: other".into());
    lines.push("mbtest: done, 00000000 failure(s)".into());
    lines
}

/// Checks one run's output; returns it for messages.
fn check_run(format: &str, backend: BackendKind) {
    let Some(kernel) = mbtest(format) else { return };
    let run = match run_kernel(files(format, kernel), RAM, backend, Duration::from_secs(120)) {
        Ok(run) => run,
        Err(e) => panic!("{format} under {backend:?}: {e}"),
    };
    let text = run.serial_text();
    assert_eq!(run.outcome, RunOutcome::Exit(0), "{format}: {}", run.describe());
    let lines: Vec<&str> = text.lines().collect();
    for want in expected_info(format) {
        assert!(lines.contains(&want.as_str()), "{format} under {backend:?}: no line {want:?} in\n{text}");
    }
    assert!(!text.contains("FAIL"), "{format}: {text}");
    // Modules: page aligned one after the other, their ends exact, their strings whole.
    let modules: Vec<(u64, u64, String)> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("module "))
        .map(|l| {
            let mut f = l.splitn(3, ' ');
            let hex = |s: Option<&str>| u64::from_str_radix(s.unwrap(), 16).unwrap();
            (hex(f.next()), hex(f.next()), f.next().unwrap().to_string())
        })
        .collect();
    assert_eq!(modules.len(), 2, "{text}");
    assert_eq!(modules[0].2, "/boot/m1.txt arg1 arg2");
    assert_eq!(modules[1].2, "/boot/m2.txt");
    assert_eq!(modules[0].1 - modules[0].0, MODULE1.len() as u64);
    assert_eq!(modules[1].1 - modules[1].0, MODULE2.len() as u64);
    // KVM offers its paravirtual clock (four more checks of it); the interpreter does not.
    let kvmclock = match backend {
        BackendKind::Kvm => "kvmclock: offered",
        BackendKind::Interp => "kvmclock: not offered",
    };
    assert!(lines.contains(&kvmclock), "{format} under {backend:?}: no line {kvmclock:?} in\n{text}");
    let passes = lines.iter().filter(|l| l.starts_with("PASS ")).count();
    let checks = if format == "MB2" { 20 } else { 19 } + if backend == BackendKind::Kvm { 4 } else { 0 };
    assert_eq!(passes, checks, "{format}: every check ran and passed:\n{text}");
}

#[test]
fn multiboot_kernels_under_the_interpreter() {
    for format in FORMATS {
        check_run(format, BackendKind::Interp);
    }
}

#[test]
fn multiboot_kernels_under_kvm() {
    if let Err(why) = kvm_usable() {
        println!("skipped: multiboot_kernels_under_kvm: {why}");
        return;
    }
    for format in FORMATS {
        check_run(format, BackendKind::Kvm);
    }
}

/// A machine with the stub ROM, left as after POST, running `code` in real mode at 0:7C00.
fn real_mode_run(code: &[u8], extra: &[(u64, &[u8])]) -> (RunOutcome, Machine) {
    let mut m = Machine::new(MachineConfig {
        ram_size: 16 << 20,
        bios: stub_rom::image(),
        clock: ClockMode::Deterministic,
        serial: Box::new(CaptureChar::new()),
        ..MachineConfig::default()
    })
    .unwrap();
    post::leave_post_state(&mut m, &stub_rom::ENTRY_POINTS, stub_rom::TABLES_AREA);
    m.memory_mut().write_ram(0x7C00, code);
    for (at, bytes) in extra {
        m.memory_mut().write_ram(*at, bytes);
    }
    let mut vm = Vm::new(m, Box::new(accel::interp::Interp::new()), CpuState::real_mode_at(0, 0x7C00)).unwrap();
    let outcome = vm.run(&RunLimits { timeout: Some(Duration::from_secs(60)), no_reboot: true }).unwrap();
    (outcome, vm.machine)
}

#[test]
fn stub_rom_serves_timer_ticks_and_int_1ch() {
    // INT 1Ch at 0:7D00 counts its calls at 0:0500. The program calls INT 10h (the dummy
    // IRET), enables interrupts, halts until the BIOS tick count reaches 10, and exits with
    // the number of INT 1Ch calls.
    let hook_1c = [0x2E, 0xFF, 0x06, 0x00, 0x05, 0xCF]; // inc word cs:[0x500]; iret
    let vector = [0x00, 0x7D, 0x00, 0x00]; // 0000:7D00
    let program = [
        0xCD, 0x10, // int 0x10
        0xFB, // sti
        0xF4, // .wait: hlt
        0x66, 0x83, 0x3E, 0x6C, 0x04, 0x0A, // cmp dword [0x46C], 10
        0x72, 0xF7, // jb .wait
        0xFA, // cli
        0xA0, 0x00, 0x05, // mov al, [0x500]
        0xE6, 0xF4, // out 0xF4, al
    ];
    let (outcome, m) = real_mode_run(&program, &[(0x7D00, &hook_1c), (0x1C * 4, &vector)]);
    let mut ticks = [0u8; 4];
    m.memory().read(0x46C, &mut ticks);
    assert_eq!(u32::from_le_bytes(ticks), 10, "the deterministic clock starts at midnight");
    assert_eq!(outcome, RunOutcome::Exit(10), "INT 1Ch once per tick, and each tick ended at the 8259A");
}

#[test]
fn reset_loads_the_kernel_again() {
    let Some(kernel) = mbtest("AOUT") else { return };
    let image = kernel.clone();
    let mut m = Machine::new(MachineConfig { ram_size: RAM, bios: stub_rom::image(), ..MachineConfig::default() }).unwrap();
    let boot = DirectBoot::new(files("AOUT", kernel), m.platform()).unwrap();
    let entry = m.set_direct_boot(boot);
    let mut loaded = vec![0u8; image.len()];
    m.memory().read(0x10_0000, &mut loaded);
    assert_eq!(loaded, image);
    m.memory_mut().write_ram(0x10_0000, &vec![0xCC; image.len()]);
    m.memory_mut().write_ram(0, &[0; 1024]);
    m.reset();
    m.memory().read(0x10_0000, &mut loaded);
    assert_eq!(loaded, image, "the kernel is loaded again");
    let mut vector = [0u8; 4];
    m.memory().read(8 * 4, &mut vector);
    assert_eq!(u32::from_le_bytes(vector), 0xF000_FEA5, "and the interrupt vectors written again");
    let again = DirectBoot::new(files("AOUT", image), m.platform()).unwrap().load(&mut m);
    assert_eq!(again, entry, "the same entry state every time");
}

#[test]
fn port_reads_take_the_time_of_an_isa_access() {
    // Linux's fast TSC calibration reads 8254 counter 2 back to back, counting reads per
    // change of the counter's high byte (256 clocks, 214.6 us); on a PC each read takes about
    // a microsecond. The program counts the (LSB, MSB) read pairs while the high byte is 0xFF
    // (the first pair after loading the count already gone) and while it is 0xFE.
    let program = [
        0xE4, 0x61, 0x24, 0xFD, 0x0C, 0x01, 0xE6, 0x61, // port 0x61: gate on, speaker off
        0xB0, 0xB0, 0xE6, 0x43, // counter 2, LSB then MSB, mode 0
        0xB0, 0xFF, 0xE6, 0x42, 0xE6, 0x42, // count 0xFFFF
        0xE4, 0x42, 0xE4, 0x42, // one read, as Linux does, for the count to load
        0x31, 0xC9, // xor cx, cx
        0xE4, 0x42, 0xE4, 0x42, 0x3C, 0xFF, 0x75, 0x03, 0x41, 0x75, 0xF5, // count while MSB = FF
        0x31, 0xD2, // xor dx, dx
        0xE4, 0x42, 0xE4, 0x42, 0x3C, 0xFE, 0x75, 0x03, 0x42, 0x75, 0xF5, // count while MSB = FE
        0x89, 0x0E, 0x00, 0x05, 0x89, 0x16, 0x02, 0x05, // mov [0x500], cx; mov [0x502], dx
        0x30, 0xC0, 0xE6, 0xF4, // exit 0
    ];
    let (outcome, m) = real_mode_run(&program, &[]);
    assert_eq!(outcome, RunOutcome::Exit(0));
    let mut counts = [0u8; 4];
    m.memory().read(0x500, &mut counts);
    let (ff, fe) = (u16::from_le_bytes([counts[0], counts[1]]), u16::from_le_bytes([counts[2], counts[3]]));
    // About 2 us a pair: ~107 pairs in 214.6 us (the first period lost a few to the setup).
    assert!((90..=110).contains(&fe), "pairs of reads while the high byte was 0xFE: {fe}");
    assert!((80..=110).contains(&ff), "pairs of reads while the high byte was 0xFF: {ff}");
}

#[test]
fn post_leaves_an_mp_table_in_the_f_segment() {
    // Found as an OS scans for it: "_MP_" on a 16-byte boundary in the F segment, checksums
    // zero, a PCMP table with one processor entry per CPU.
    let mut m = Machine::new(MachineConfig { ram_size: 64 << 20, cpus: 3, bios: stub_rom::image(), ..MachineConfig::default() }).unwrap();
    post::leave_post_state(&mut m, &stub_rom::ENTRY_POINTS, stub_rom::TABLES_AREA);
    let mut seg = vec![0u8; 0x1_0000];
    m.memory().read(0xF_0000, &mut seg);
    let sum = |b: &[u8]| b.iter().fold(0u8, |s, x| s.wrapping_add(*x));
    let at = (0..seg.len()).step_by(16).find(|&i| &seg[i..i + 4] == b"_MP_").expect("an MP floating pointer");
    let fp = &seg[at..at + 16];
    assert_eq!((fp[8], fp[9], sum(fp)), (1, 4, 0), "length, revision 1.4, checksum");
    let table_at = u32::from_le_bytes(fp[4..8].try_into().unwrap()) as usize;
    let len = u16::from_le_bytes([seg[table_at - 0xF_0000 + 4], seg[table_at - 0xF_0000 + 5]]) as usize;
    let table = &seg[table_at - 0xF_0000..table_at - 0xF_0000 + len];
    assert_eq!((&table[..4], sum(table)), (&b"PCMP"[..], 0));
    let (mut at, mut cpus) = (44, 0);
    while at < table.len() {
        cpus += usize::from(table[at] == 0);
        at += if table[at] == 0 { 20 } else { 8 };
    }
    assert_eq!(cpus, 3);
}
