//! `ferrite --kernel`: direct kernel boot as a user runs it. Files that cannot be booted are
//! refused before the guest starts, with exit status 2 and one line naming the option, the
//! file and the problem; a multiboot kernel (tests/multiboot/mbtest.asm, assembled here when
//! NASM is installed) gets its command line after its file name as given, and its modules
//! with their strings.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::{describe, ferrite};

fn scratch(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ferrite-kernel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

fn write(name: &str, data: &[u8]) -> String {
    let path = scratch(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// Runs ferrite and checks it refused with status 2 and exactly one line on standard error
/// that starts with `prefix` and contains `problem`.
#[track_caller]
fn assert_refused(args: &[&str], prefix: &str, problem: &str) {
    let o = ferrite(args);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", describe(&o));
    assert!(lines[0].starts_with(prefix), "starts with {prefix:?}: {}", describe(&o));
    assert!(lines[0].contains(problem), "says {problem:?}: {}", describe(&o));
    assert!(o.stdout.is_empty(), "the guest never ran: {}", describe(&o));
}

/// A multiboot 1 kernel with load addresses in its header, loaded at `load`.
fn multiboot(load: u32, load_end: u32, bss_end: u32, entry: u32) -> Vec<u8> {
    let flags: u32 = 1 << 16 | 1 << 1;
    let mut d = Vec::new();
    for v in [0x1BAD_B002, flags, 0u32.wrapping_sub(0x1BAD_B002).wrapping_sub(flags), load, load, load_end, bss_end, entry] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d.resize(0x200, 0xF4);
    d
}

/// A bzImage header (protocol 2.15, 64-bit entry) with `kernel_len` bytes of kernel that
/// decompresses into `init_size` bytes at 16 MiB.
fn bzimage(kernel_len: usize, init_size: u32) -> Vec<u8> {
    let mut d = vec![0u8; 5 * 512 + kernel_len];
    d[0x1F1] = 4;
    d[0x1F4..0x1F8].copy_from_slice(&((kernel_len / 16) as u32).to_le_bytes());
    d[0x1FE..0x200].copy_from_slice(&[0x55, 0xAA]);
    d[0x200..0x202].copy_from_slice(&[0xEB, 0x6A]);
    d[0x202..0x206].copy_from_slice(b"HdrS");
    d[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    d[0x211] = 1;
    d[0x22C..0x230].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    d[0x234] = 1;
    d[0x236..0x238].copy_from_slice(&1u16.to_le_bytes());
    d[0x238..0x23C].copy_from_slice(&2047u32.to_le_bytes());
    d[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
    d[0x260..0x264].copy_from_slice(&init_size.to_le_bytes());
    d
}

#[test]
fn a_file_that_is_not_a_kernel() {
    let k = write("zeros.bin", &[0; 8192]);
    assert_refused(&["--kernel", &k], &format!("ferrite: --kernel {k}: "), "not a kernel Ferrite can boot");
    let missing = scratch("does-not-exist");
    assert_refused(&["--kernel", &missing], &format!("ferrite: --kernel {missing}: "), "No such file");
}

#[test]
fn a_truncated_bzimage() {
    let full = bzimage(0x10000, 0x40_0000);
    let k = write("truncated-bzImage", &full[..full.len() - 4096]);
    assert_refused(&["--kernel", &k], &format!("ferrite: --kernel {k}: "), "the file is truncated");
}

#[test]
fn multiboot_headers_with_impossible_addresses() {
    let cases = [
        ("bios-area.elf", multiboot(0xF_0000, 0, 0, 0xF_0000), "overlaps the VGA and BIOS area"),
        ("beyond-ram.elf", multiboot(0x10_0000, 0, 0x200_0000, 0x10_0000), "lies beyond RAM"),
        ("end-before-start.elf", multiboot(0x20_0000, 0x10_0000, 0, 0x20_0000), "load_end_addr 0x100000 is below load_addr 0x200000"),
        ("low.elf", multiboot(0x1000, 0, 0, 0x1000), "below 0x10000"),
        ("entry-outside.elf", multiboot(0x10_0000, 0, 0, 0x90_0000), "entry point 0x900000 is outside"),
    ];
    for (name, image, problem) in cases {
        let k = write(name, &image);
        assert_refused(&["-m", "16M", "--kernel", &k], &format!("ferrite: --kernel {k}: "), problem);
    }
}

#[test]
fn an_initrd_larger_than_ram() {
    let big = scratch("big-initrd");
    std::fs::File::create(&big).unwrap().set_len(40 << 20).unwrap();
    let k = write("mb.elf", &multiboot(0x10_0000, 0, 0, 0x10_0000));
    assert_refused(&["-m", "16M", "--kernel", &k, "--initrd", &big], &format!("ferrite: --initrd {big}: "), "does not fit");
    let k = write("bzImage", &bzimage(0x1000, 0x40_0000));
    assert_refused(&["-m", "32M", "--kernel", &k, "--initrd", &big], &format!("ferrite: --initrd {big}: "), "the initrd is 40.0 MiB");
    let missing = scratch("no-initrd");
    assert_refused(&["--kernel", &k, "--initrd", &missing], &format!("ferrite: --initrd {missing}: "), "No such file");
}

#[test]
fn kernel_options_alone_are_usage_errors() {
    for args in [&["--initrd", "x"][..], &["--append", "quiet"], &["--kernel", "k", "--bios", "b"]] {
        assert_eq!(ferrite(args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn a_multiboot_kernel_gets_its_command_line_and_modules() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/multiboot/mbtest.asm");
    let kernel = scratch("mbtest.elf");
    let include = format!("-I{}/", src.parent().unwrap().display());
    match Command::new("nasm").args(["-f", "bin", "-DFORMAT_ELF", &include, "-o", &kernel]).arg(&src).output() {
        Ok(o) => assert!(o.status.success(), "nasm: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            println!("skipped: a_multiboot_kernel_gets_its_command_line_and_modules needs nasm: {e}");
            return;
        }
    }
    let m1 = write("one,two.txt", b"module one\n");
    let m2 = write("two.txt", b"module two\n");
    let list = format!("{} x=1 y,{}", m1.replace(',', ",,"), m2);
    let o = ferrite(&["--accel", "interp", "--kernel", &kernel, "--initrd", &list, "--append", "-a b"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("\ncmdline: {kernel} -a b\n")), "{out}");
    assert!(out.contains(&format!(" {m1} x=1 y\nmodule-data: module one\n")), "{out}");
    assert!(out.contains(&format!(" {m2}\nmodule-data: module two\n")), "{out}");
    assert!(out.contains("mbtest: done, 00000000 failure(s)"), "{out}");
}
