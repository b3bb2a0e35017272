//! The `ferrite` binary as a user runs it: options, error messages, exit statuses.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn ferrite(args: &[&str]) -> Output {
    ferrite_with_input(args, b"")
}

fn ferrite_with_input(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferrite");
    child.stdin.take().unwrap().write_all(input).expect("write stdin");
    child.wait_with_output().expect("wait for ferrite")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn describe(o: &Output) -> String {
    format!("status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}", o.status.code(), stdout(o), stderr(o))
}

#[track_caller]
fn assert_status(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", describe(o));
}

/// A scratch directory for this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write_image(name: &str, image: &[u8]) -> String {
    let path = scratch(name);
    std::fs::write(&path, image).unwrap();
    path.to_string_lossy().into_owned()
}

/// A 64 KiB BIOS with `code` at F000:0000 and the reset vector jumping there.
fn image_with(code: &[u8]) -> Vec<u8> {
    let mut b = vec![0xF4; 0x10000];
    b[..code.len()].copy_from_slice(code);
    b[0xFFF0..0xFFF5].copy_from_slice(&[0xEA, 0x00, 0x00, 0x00, 0xF0]); // jmp F000:0000
    b
}

const HELLO_LINE: &str = "Hello from Ferrite! This is the hello ROM, running in real mode.";
/// The hello ROM, for tests that need a guest that ends by itself.
const HELLO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../roms/build/hello.bin");

#[test]
fn the_bios_with_nothing_to_boot_says_so() {
    // With no option at all the built-in demo runs (tests/demo.rs); a boot order names drives.
    let o = ferrite(&["--boot", "c"]);
    assert_status(&o, 121);
    assert!(stdout(&o).contains("No bootable device."), "{}", describe(&o));
    assert!(stderr(&o).contains("ferrite: accelerator: "), "the backend line is missing\n{}", describe(&o));
    let o = ferrite(&["--bios", HELLO]);
    assert_status(&o, 0);
    assert!(stdout(&o).contains(HELLO_LINE), "{}", describe(&o));
}

#[test]
fn interpreter_is_deterministic_by_default() {
    let o = ferrite(&["--accel", "interp", "--bios", HELLO]);
    assert_status(&o, 0);
    assert!(stderr(&o).contains("interpreter (as asked); deterministic clock"), "{}", describe(&o));
}

#[test]
fn help_lists_the_options() {
    let o = ferrite(&["--help"]);
    assert_status(&o, 0);
    for opt in ["--accel", "--memory", "--bios", "--serial", "--debugcon", "--display", "--timeout", "--deterministic", "--no-reboot"] {
        assert!(stdout(&o).contains(opt), "--help lacks {opt}\n{}", describe(&o));
    }
}

#[test]
fn bad_options_are_usage_errors() {
    for (args, expect) in [
        (&["--accel", "qemu"][..], "--accel"),
        (&["--memory", "12X"], "--memory"),
        (&["-m", "512K"], "from 1M to 1T"),
        (&["-m", "0"], "from 1M to 1T"),
        (&["-m", "2T"], "from 1M to 1T"),
        (&["--serial", "tcp:1234"], "--serial"),
        (&["--debugcon", "file:"], "--debugcon"),
        (&["--timeout", "-1"], "--timeout"),
        (&["--timeout", "soon"], "--timeout"),
        (&["--display", "vnc"], "--display"),
        (&["--no-such-option"], "--no-such-option"),
    ] {
        let o = ferrite(args);
        assert_status(&o, 2);
        assert!(stderr(&o).contains(expect), "{args:?}: the message does not name {expect}\n{}", describe(&o));
        assert!(stdout(&o).is_empty(), "{args:?}: the guest ran\n{}", describe(&o));
    }
}

#[test]
fn deterministic_and_kvm_conflict() {
    let o = ferrite(&["--deterministic", "--accel", "kvm"]);
    assert_status(&o, 2);
    assert!(stderr(&o).contains("--deterministic cannot be used with --accel kvm"), "{}", describe(&o));
    let o = ferrite(&["--deterministic", "--bios", HELLO]);
    assert_status(&o, 0);
    assert!(stderr(&o).contains("deterministic clock"), "{}", describe(&o));
}

#[test]
fn missing_bios_names_the_file() {
    let o = ferrite(&["--bios", "nosuch.bin"]);
    assert_status(&o, 2);
    assert_eq!(stderr(&o), "ferrite: --bios nosuch.bin: No such file or directory\n", "{}", describe(&o));
}

#[test]
fn malformed_bios_names_the_file_and_the_problem() {
    let path = write_image("short.bin", &[0x90; 1000]);
    let o = ferrite(&["--bios", &path]);
    assert_status(&o, 2);
    let expect =
        format!("ferrite: --bios {path}: the image is 1000 bytes; it must be a multiple of 64 KiB, from 64 KiB to 16 MiB\n");
    assert_eq!(stderr(&o), expect, "{}", describe(&o));
    let dir = scratch("");
    let o = ferrite(&["--bios", dir.to_str().unwrap()]);
    assert_status(&o, 2);
    assert!(stderr(&o).starts_with("ferrite: --bios "), "{}", describe(&o));
}

#[test]
fn unwritable_serial_file_is_a_usage_error() {
    let o = ferrite(&["--serial", "file:/nonexistent/ferrite/serial.log"]);
    assert_status(&o, 2);
    assert_eq!(
        stderr(&o),
        "ferrite: --serial file:/nonexistent/ferrite/serial.log: No such file or directory\n",
        "{}",
        describe(&o)
    );
}

#[test]
fn guest_exit_status_comes_through() {
    // mov al, 42; out 0xF4, al; hlt
    let path = write_image("exit42.bin", &image_with(&[0xB0, 42, 0xE6, 0xF4, 0xF4]));
    let o = ferrite(&["--bios", &path]);
    assert_status(&o, 42);
    let exceptions = write_image("exceptions.bin", roms::EXCEPTIONS);
    let o = ferrite(&["--bios", &exceptions]);
    assert_status(&o, 0);
    assert!(stdout(&o).contains("exceptions: PASS"), "{}", describe(&o));
}

#[test]
fn timeout_reports_the_cpu_state() {
    let spin = write_image("spin.bin", roms::SPIN);
    let o = ferrite(&["--bios", &spin, "--timeout", "0.5"]);
    assert_status(&o, 124);
    assert!(stdout(&o).contains("spin: looping forever"), "{}", describe(&o));
    let err = stderr(&o);
    assert!(err.contains("ferrite: timeout"), "{}", describe(&o));
    assert!(err.contains("rip=") && err.contains("cs=f000"), "no CPU state in the report\n{}", describe(&o));
    assert!(err.contains("last instructions executed"), "no instruction history in the report\n{}", describe(&o));
}

#[test]
fn halted_for_good_is_stuck() {
    // cli; hlt
    let path = write_image("stuck.bin", &image_with(&[0xFA, 0xF4]));
    let o = ferrite(&["--bios", &path, "--timeout", "60"]);
    assert_status(&o, 121);
    assert!(stderr(&o).contains("ferrite: the guest is stuck"), "{}", describe(&o));
    assert!(stderr(&o).contains("rip="), "{}", describe(&o));
}

#[test]
fn triple_fault_under_no_reboot() {
    // lidt [cs:0x10] with a zero limit, then int3: #GP, #DF, shutdown.
    let mut code = vec![0x2E, 0x0F, 0x01, 0x1E, 0x10, 0x00, 0xCC, 0xF4];
    code.resize(0x10, 0xF4);
    code.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // limit 0, base 0
    let path = write_image("triple.bin", &image_with(&code));
    let o = ferrite(&["--bios", &path, "--no-reboot", "--timeout", "60"]);
    assert_status(&o, 122);
    assert!(stderr(&o).contains("triple fault"), "{}", describe(&o));
    assert!(stderr(&o).contains("rip="), "{}", describe(&o));
}

#[test]
fn sys_triple_rom_ends_in_a_triple_fault_under_no_reboot() {
    // roms/asm/sys_triple.asm: two lines, then a #GP with an IDT limit of 0 in protected mode.
    let path = write_image("sys_triple.bin", roms::SYS_TRIPLE);
    let o = ferrite(&["--bios", &path, "--no-reboot", "--timeout", "60"]);
    assert_status(&o, 122);
    assert!(stdout(&o).contains("sys_triple: IDT limit 0, now MOV DS"), "{}", describe(&o));
    assert!(!stdout(&o).contains("FAIL"), "{}", describe(&o));
    assert!(stderr(&o).contains("triple fault"), "{}", describe(&o));
}

#[test]
fn memory_sizes_are_accepted() {
    for size in ["64", "1G", "2048K", "16MiB"] {
        let o = ferrite(&["-m", size, "--serial", "none", "--bios", HELLO]);
        assert_status(&o, 0);
    }
}

#[test]
fn serial_and_debugcon_go_where_asked() {
    let serial = scratch("serial.log");
    let debugcon = scratch("debugcon.log");
    let o = ferrite(&[
        "--bios",
        HELLO,
        "--serial",
        &format!("file:{}", serial.display()),
        "--debugcon",
        &format!("file:{}", debugcon.display()),
    ]);
    assert_status(&o, 0);
    assert!(stdout(&o).is_empty(), "{}", describe(&o));
    assert!(std::fs::read_to_string(&serial).unwrap().contains(HELLO_LINE));
    assert!(std::fs::read_to_string(&debugcon).unwrap().contains(HELLO_LINE));
    let o = ferrite(&["--serial", "none", "--debugcon", "stdio", "--bios", HELLO]);
    assert_status(&o, 0);
    assert_eq!(stdout(&o).matches(HELLO_LINE).count(), 1, "{}", describe(&o));
}

#[test]
fn serial_stdio_takes_standard_input() {
    let echo = write_image("serial_echo.bin", roms::SERIAL_ECHO);
    let o = ferrite_with_input(&["--bios", &echo, "--timeout", "60"], b"typed at the terminal\n");
    assert_status(&o, 0);
    assert!(stdout(&o).contains("serial_echo: read \"typed at the terminal\" (21 bytes)"), "{}", describe(&o));
}

#[test]
fn accel_kvm_says_whether_kvm_can_be_used() {
    let host = accel::select::probe_host();
    let o = ferrite(&["--accel", "kvm", "--timeout", "60", "--bios", HELLO]);
    match host.kvm_device {
        Err(why) => {
            assert_status(&o, 2);
            assert!(stderr(&o).contains("--accel kvm: KVM cannot be used"), "{}", describe(&o));
            println!("note: /dev/kvm unusable here ({why}): checked the error only");
        }
        Ok(()) => {
            // Creating the VM can still fail (capabilities); then the message must say so.
            if o.status.code() == Some(2) {
                assert!(stderr(&o).contains("--accel kvm: "), "{}", describe(&o));
            } else {
                assert_status(&o, 0);
                assert!(stderr(&o).contains("accelerator: KVM"), "{}", describe(&o));
                assert!(stdout(&o).contains(HELLO_LINE), "{}", describe(&o));
            }
        }
    }
}

#[test]
fn a_vga_rom_that_is_not_one_is_refused_before_the_guest_starts() {
    let path = write_image("not_a_rom.bin", &[0u8; 512]);
    let o = ferrite(&["--vga-rom", &path, "--display", "none"]);
    assert_status(&o, 2);
    assert!(stderr(&o).contains("--vga-rom") && stderr(&o).contains("55 AA"), "{}", describe(&o));
    let o = ferrite(&["--vga-rom", "/nonexistent/vga.bin", "--display", "none"]);
    assert_status(&o, 2);
    assert!(stderr(&o).contains("/nonexistent/vga.bin"), "{}", describe(&o));
}
