//! Ferrite's own ROMs: test programs written in NASM (`asm/`), built by `build.sh` into 64 KiB
//! BIOS images (`build/`) that are committed, so building Ferrite needs no assembler. Each
//! reports through COM1 and the 0xE9 debug console and leaves through the exit device (port
//! 0xF4), whose low byte becomes Ferrite's exit status. The `sys_*` ROMs test what user mode
//! cannot reach (modes, paging, gates, tasks, debug registers, fast system calls, I/O
//! permissions), one PASS/FAIL line per check, with the scaffolding in `asm/inc/sys.inc`.
//! Boot programs (`boot/`) are built into `build/*.img`: a boot sector and what it loads, for a
//! BIOS to boot from a floppy.

/// Ferrite's PC BIOS (`bios/bios.asm`): the firmware Ferrite boots when no `--bios` is given.
/// A real-mode ROM whose services the machine carries out in Rust behind an I/O port
/// (`machine::firmware::bios`); it boots floppies, hard disks and El Torito CDs.
pub const BIOS: &[u8] = include_bytes!("../build/bios.bin");

/// Prints a greeting and exits 0.
pub const HELLO: &[u8] = include_bytes!("../build/hello.bin");
/// Programs the 8259A pair and the PIT, counts ten IRQ0 ticks with STI; HLT, exits 0.
pub const TIMER: &[u8] = include_bytes!("../build/timer.bin");
/// Reads a line from COM1 (polling LSR.DR), prints it back, exits 0.
pub const SERIAL_ECHO: &[u8] = include_bytes!("../build/serial_echo.bin");
/// Provokes #DE, #UD, #BR, INT n, INT3 and INTO and checks what they push; exits 0 if all pass.
pub const EXCEPTIONS: &[u8] = include_bytes!("../build/exceptions.bin");
/// Works through the real-mode integer instruction set, prints checksums, exits 0.
pub const ARITH: &[u8] = include_bytes!("../build/arith.bin");
/// Prints one line, then loops forever: for `--timeout`.
pub const SPIN: &[u8] = include_bytes!("../build/spin.bin");
/// Real, 16/32-bit protected, unreal, long (64-bit and compatibility) and virtual-8086 mode,
/// and the switches between them; exits 0 if every check passes.
pub const SYS_MODES: &[u8] = include_bytes!("../build/sys_modes.bin");
/// 32-bit, PAE and 4-level paging with every page size, #PF error codes and CR2, accessed and
/// dirty bits, CR0.WP, global pages, NX, SMEP and SMAP.
pub const SYS_PAGING: &[u8] = include_bytes!("../build/sys_paging.bin");
/// Call gates to the same and inner levels, interrupt and trap gates, privilege checks and
/// their error codes, conforming code, RETF/IRET to an outer level, LAR/LSL/VERR/VERW/ARPL.
pub const SYS_GATES: &[u8] = include_bytes!("../build/sys_gates.bin");
/// Task switches by CALL, JMP, IRET and task gates, busy bits, back links, a 16-bit TSS and a
/// double fault through a task gate.
pub const SYS_TASKS: &[u8] = include_bytes!("../build/sys_tasks.bin");
/// Debug registers (instruction, data and I/O breakpoints), DR6, RF, single-step, INT1 and
/// general detect.
pub const SYS_DEBUG: &[u8] = include_bytes!("../build/sys_debug.bin");
/// SYSENTER/SYSEXIT, SYSCALL/SYSRET, SWAPGS, the FS/GS base MSRs and RDTSCP.
pub const SYS_FASTCALL: &[u8] = include_bytes!("../build/sys_fastcall.bin");
/// The TSS I/O permission bitmap and IOPL from rings 1 and 3; CLI/STI/POPF/IRET at CPL > IOPL.
pub const SYS_IOBITMAP: &[u8] = include_bytes!("../build/sys_iobitmap.bin");
/// Prints two lines, then triple-faults (a #GP with an IDT limit of 0): ends in shutdown.
pub const SYS_TRIPLE: &[u8] = include_bytes!("../build/sys_triple.bin");

/// The firmware Ferrite boots when no `--bios` is given.
pub const DEFAULT: &[u8] = BIOS;

/// Ferrite's default guest (`boot/demo.asm`): a boot program that tours the machine (colour
/// text, the timer tick and the real-time clock, mode 13h, a PC-speaker tune, keyboard echo)
/// on screen and COM1. `ferrite` boots it from a built-in floppy when given no drive,
/// `--bios` or `--kernel`.
pub const DEMO: &[u8] = include_bytes!("../build/demo.img");

/// Boot programs built from `boot/` (whole sectors, the first a boot sector), by name.
pub const BOOT: &[(&str, &[u8])] = &[("demo", DEMO)];

/// A 1.44 MB floppy image holding `program` from its first sector, the rest zero: what the
/// BIOS boots a boot program from.
pub fn floppy_image(program: &[u8]) -> Vec<u8> {
    let mut image = vec![0; FLOPPY_SIZE];
    image[..program.len()].copy_from_slice(program);
    image
}

/// Bytes on a 1.44 MB floppy: 80 cylinders, 2 heads, 18 sectors of 512 bytes.
pub const FLOPPY_SIZE: usize = 80 * 2 * 18 * 512;

/// Firmware built from `bios/` rather than `asm/` (not test programs: not in [`ALL`]).
pub const FIRMWARE: &[(&str, &[u8])] = &[("bios", BIOS)];

/// Every ROM by name (the name of its source file in `asm/`).
pub const ALL: &[(&str, &[u8])] = &[
    ("hello", HELLO),
    ("timer", TIMER),
    ("serial_echo", SERIAL_ECHO),
    ("exceptions", EXCEPTIONS),
    ("arith", ARITH),
    ("spin", SPIN),
    ("sys_modes", SYS_MODES),
    ("sys_paging", SYS_PAGING),
    ("sys_gates", SYS_GATES),
    ("sys_tasks", SYS_TASKS),
    ("sys_debug", SYS_DEBUG),
    ("sys_fastcall", SYS_FASTCALL),
    ("sys_iobitmap", SYS_IOBITMAP),
    ("sys_triple", SYS_TRIPLE),
];

/// The names of all ROMs, in the order of [`ALL`].
pub const NAMES: &[&str] = &[
    "hello",
    "timer",
    "serial_echo",
    "exceptions",
    "arith",
    "spin",
    "sys_modes",
    "sys_paging",
    "sys_gates",
    "sys_tasks",
    "sys_debug",
    "sys_fastcall",
    "sys_iobitmap",
    "sys_triple",
];

/// The image of the ROM called `name`.
pub fn by_name(name: &str) -> Option<&'static [u8]> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, image)| *image)
}

/// Size of every image: one 64 KiB BIOS.
pub const IMAGE_SIZE: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_table() {
        let names: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, NAMES);
        for name in NAMES {
            assert!(by_name(name).is_some(), "{name}");
        }
        assert!(by_name("nosuch").is_none());
        assert_eq!(DEFAULT, BIOS);
    }

    #[test]
    fn boot_programs_are_boot_sectors_that_fit_a_track() {
        for (name, image) in BOOT {
            assert!(image.len() % 512 == 0 && image.len() <= 18 * 512, "{name}: {} bytes", image.len());
            assert_eq!(image[510..512], [0x55, 0xAA], "{name}: no boot signature");
        }
        let floppy = floppy_image(DEMO);
        assert_eq!(floppy.len(), 1_474_560);
        assert_eq!(&floppy[..DEMO.len()], DEMO);
        assert!(floppy[DEMO.len()..].iter().all(|&b| b == 0));
    }

    #[test]
    fn every_image_is_a_bios_with_a_reset_vector() {
        for (name, image) in ALL.iter().chain(FIRMWARE) {
            assert_eq!(image.len(), IMAGE_SIZE, "{name}");
            // JMP F000:entry at the reset vector, F000:FFF0.
            let v = &image[0xFFF0..];
            assert_eq!(v[0], 0xEA, "{name}: reset vector is not a far jump");
            assert_eq!(u16::from_le_bytes([v[3], v[4]]), 0xF000, "{name}: far jump leaves segment F000");
            let entry = u16::from_le_bytes([v[1], v[2]]) as usize;
            assert!(entry < 0xFFF0, "{name}: entry {entry:#x} inside the reset vector");
        }
    }
}
