//! `--display window` as a person uses it, under Xvfb: SeaBIOS boots a small program from a
//! disk (`window_guest.asm`) in a real window; ImageMagick's `import` photographs the window,
//! which must show what `--screenshot` renders (text mode, mode 13h, a 1920x1080 VBE mode),
//! and keys typed with `xdotool` must reach the guest as the PC keyboard's scan codes. Linux
//! (the cloud kernel and busybox initramfs of `tests/linux/build.sh`, booted directly) runs a
//! shell on its VGA console, and commands typed into the window must run. Each test starts its
//! own X server, and skips, saying why, where Xvfb, xdotool, ImageMagick, nasm or SeaBIOS is
//! missing (or, for Linux, where the guest cannot be built).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";
const SEABIOS_VGA: &str = "/usr/share/seabios/vgabios-stdvga.bin";
const GUEST: &str = include_str!("window_guest.asm");
/// Polls of the guest's output and of the window: a bound on waiting, not a speed check.
const POLLS: u32 = 3000;
const POLL: Duration = Duration::from_millis(100);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-window-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn have(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// What the tests need from the host, or why they skip.
fn missing() -> Option<String> {
    for (program, arg, package) in [
        ("Xvfb", "-help", "xvfb"),
        ("xdotool", "version", "xdotool"),
        ("import", "-version", "imagemagick"),
        ("nasm", "-v", "nasm"),
        ("xwininfo", "-version", "x11-utils"),
    ] {
        if !have(program, arg) {
            return Some(format!("{program} (apt-get install {package})"));
        }
    }
    for file in [SEABIOS, SEABIOS_VGA] {
        if !Path::new(file).exists() {
            return Some(format!("{file} (apt-get install seabios)"));
        }
    }
    None
}

/// An X server of the test's own.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    /// An X server started with `args` besides the display and screen.
    fn start_with(args: &[&str]) -> Option<Xvfb> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        for _ in 0..20 {
            // Displays 100 and up, ten a process, so test binaries running at once differ.
            let n = 100 + (std::process::id() % 3000) * 10 + NEXT.fetch_add(1, Ordering::SeqCst) % 10;
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() || Path::new(&format!("/tmp/.X{n}-lock")).exists() {
                continue;
            }
            let display = format!(":{n}");
            let mut child = Command::new("Xvfb")
                .args([&display, "-screen", "0", "2048x1536x24", "-nolisten", "tcp"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            for _ in 0..100 {
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    return Some(Xvfb { child, display });
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(POLL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        None
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DISPLAY", &self.display).env_remove("WAYLAND_DISPLAY");
        c
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The X server, or None after saying why the test skips.
fn x_server(test: &str) -> Option<Xvfb> {
    x_server_with(test, &[])
}

/// The X server started with `args`, or None after saying why the test skips.
fn x_server_with(test: &str, args: &[&str]) -> Option<Xvfb> {
    if let Some(what) = missing() {
        eprintln!("skipped: {test} needs {what}");
        return None;
    }
    let x = Xvfb::start_with(args);
    if x.is_none() {
        eprintln!("skipped: {test}: Xvfb did not start an X server");
    }
    x
}

/// A 4 MiB disk for `test` whose boot sector is the guest program built with `variant`'s
/// words as `-D` defines.
fn boot_disk(test: &str, variant: &str) -> PathBuf {
    let src = scratch(&format!("{test}.asm"));
    std::fs::write(&src, GUEST).unwrap();
    let bin = scratch(&format!("{test}.bin"));
    let defines = variant.split_whitespace().map(|d| format!("-D{d}"));
    let o = Command::new("nasm").args(["-f", "bin", "-o"]).arg(&bin).args(defines).arg(&src).output().unwrap();
    assert!(o.status.success(), "nasm: {}", String::from_utf8_lossy(&o.stderr));
    let mut disk = std::fs::read(&bin).unwrap();
    disk.resize(4 << 20, 0);
    let path = scratch(&format!("{test}.img"));
    std::fs::write(&path, disk).unwrap();
    path
}

/// Ferrite in a window, booting a guest variant.
struct Guest {
    child: Child,
    debugcon: PathBuf,
    stderr: PathBuf,
    window: String,
    /// `--screen-text`'s file, shown when a wait fails.
    screen: Option<PathBuf>,
}

impl Guest {
    fn start(x: &Xvfb, test: &str, variant: &str, extra: &[&str]) -> Guest {
        Guest::start_with_env(x, test, variant, extra, &[])
    }

    fn start_with_env(x: &Xvfb, test: &str, variant: &str, extra: &[&str], env: &[(&str, &str)]) -> Guest {
        let disk = boot_disk(test, variant);
        let debugcon = scratch(&format!("{test}.debugcon"));
        let stderr = scratch(&format!("{test}.stderr"));
        let _ = std::fs::remove_file(&debugcon);
        let mut cmd = x.command(env!("CARGO_BIN_EXE_ferrite"));
        cmd.args(["--display", "window", "--accel", "interp", "--bios", SEABIOS, "--vga-rom", SEABIOS_VGA])
            .arg("--hda")
            .arg(&disk)
            .arg("--debugcon")
            .arg(format!("file:{}", debugcon.display()))
            .args(["--serial", "none"])
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("FERRITE_RENDERER")
            .env_remove("WGPU_BACKEND")
            .envs(env.iter().copied())
            .current_dir(scratch(""))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let child = cmd.spawn().expect("start ferrite");
        let mut g = Guest { child, debugcon, stderr, window: String::new(), screen: None };
        g.wait_for_output("READY\n");
        g.find_window(x);
        g
    }

    /// Ferrite in a window under the interpreter with the soft renderer and `args`, its COM1
    /// written to a file that stands in for the debug console (`output` reads it) and its
    /// screen text to `{test}.txt`. The caller waits for the guest, then `find_window`.
    fn start_on_serial(x: &Xvfb, test: &str, args: &[&std::ffi::OsStr]) -> Guest {
        let serial = scratch(&format!("{test}.serial"));
        let stderr = scratch(&format!("{test}.stderr"));
        let screen = scratch(&format!("{test}.txt"));
        let _ = std::fs::remove_file(&serial);
        let child = x
            .command(env!("CARGO_BIN_EXE_ferrite"))
            .args(["--display", "window", "--renderer", "soft", "--accel", "interp"])
            .args(args)
            .arg("--serial")
            .arg(format!("file:{}", serial.display()))
            .arg("--screen-text")
            .arg(&screen)
            .env_remove("RUST_LOG")
            .env_remove("FERRITE_RENDERER")
            .current_dir(scratch(""))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start ferrite");
        Guest { child, debugcon: serial, stderr, window: String::new(), screen: Some(screen) }
    }

    /// Finds Ferrite's window (the last of its process's windows).
    fn find_window(&mut self, x: &Xvfb) {
        let o = x
            .command("xdotool")
            .args(["search", "--sync", "--pid", &self.child.id().to_string()])
            .output()
            .expect("xdotool search");
        self.window = String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or("").to_string();
        assert!(!self.window.is_empty(), "no window for ferrite: {}", self.describe());
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.debugcon).unwrap_or_default()
    }

    fn describe(&self) -> String {
        let screen = match &self.screen {
            Some(p) => format!("\nthe screen:\n{}", std::fs::read_to_string(p).unwrap_or_default()),
            None => String::new(),
        };
        format!(
            "guest output: {:?}\nferrite's stderr:\n{}{screen}",
            self.output(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits until the guest's debug console output contains `text`.
    fn wait_for_output(&mut self, text: &str) {
        self.wait_for_output_polls(text, POLLS);
    }

    fn wait_for_output_polls(&mut self, text: &str, polls: u32) {
        for _ in 0..polls {
            if self.output().contains(text) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ferrite exited ({status}) before the guest said {text:?}\n{}", self.describe());
            }
            std::thread::sleep(POLL);
        }
        panic!("the guest never said {text:?}\n{}", self.describe());
    }

    /// Destroys the window (xdotool's windowclose; there is no window manager to ask it to
    /// close) and waits for Ferrite to exit.
    fn close(self, x: &Xvfb) -> std::process::ExitStatus {
        let _ = x.command("xdotool").args(["windowclose", &self.window]).status();
        self.wait_for_exit()
    }

    fn wait_for_exit(mut self) -> std::process::ExitStatus {
        for _ in 0..POLLS {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        panic!("ferrite did not exit after its window was closed, Ctrl+Alt+Q or the guest's power-off\n{}", self.describe());
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An RGB picture.
#[derive(PartialEq, Eq)]
struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl std::fmt::Debug for Picture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{} picture", self.width, self.height)
    }
}

/// The window's contents as the X server has them.
fn photograph(x: &Xvfb, window: &str) -> Option<Picture> {
    let o = x.command("import").args(["-window", window, "-depth", "8", "ppm:-"]).output().ok()?;
    if !o.status.success() {
        return None;
    }
    parse_ppm(&o.stdout)
}

fn parse_ppm(data: &[u8]) -> Option<Picture> {
    // "P6 <w> <h> 255" and one whitespace byte, then the pixels.
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while data.get(at)?.is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !data.get(at)?.is_ascii_whitespace() {
            at += 1;
        }
        fields.push(std::str::from_utf8(&data[start..at]).ok()?.to_string());
    }
    at += 1;
    let (width, height): (u32, u32) = (fields[1].parse().ok()?, fields[2].parse().ok()?);
    if fields[0] != "P6" || fields[3] != "255" {
        return None;
    }
    let rgb = data.get(at..at + (width * height * 3) as usize)?.to_vec();
    Some(Picture { width, height, rgb })
}

/// `--screenshot`'s PNG, without its alpha.
fn read_screenshot(path: &Path) -> Option<Picture> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    if info.color_type != png::ColorType::Rgba {
        return None;
    }
    let rgb = buf[..info.buffer_size()].chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    Some(Picture { width: info.width, height: info.height, rgb })
}

/// Where two pictures differ first, for the failure message.
fn first_difference(a: &Picture, b: &Picture) -> String {
    if (a.width, a.height) != (b.width, b.height) {
        return format!("the window is {}x{}, the screenshot {}x{}", a.width, a.height, b.width, b.height);
    }
    match a.rgb.chunks(3).zip(b.rgb.chunks(3)).position(|(p, q)| p != q) {
        Some(i) => format!(
            "pixel ({}, {}): window {:?}, screenshot {:?}",
            i as u32 % a.width,
            i as u32 / a.width,
            &a.rgb[i * 3..i * 3 + 3],
            &b.rgb[i * 3..i * 3 + 3]
        ),
        None => "none".into(),
    }
}

/// Boots `variant` in a window at one window pixel per guest pixel and waits until the
/// window shows exactly what `--screenshot` wrote; returns that picture and what Ferrite said.
fn window_matches_screenshot(
    test: &str,
    variant: &str,
    renderer: &str,
    env: &[(&str, &str)],
    size: (u32, u32),
) -> Option<(Picture, String)> {
    window_matches_screenshot_on(&x_server(test)?, test, variant, renderer, env, size)
}

/// `window_matches_screenshot` on X server `x`.
fn window_matches_screenshot_on(
    x: &Xvfb,
    test: &str,
    variant: &str,
    renderer: &str,
    env: &[(&str, &str)],
    size: (u32, u32),
) -> Option<(Picture, String)> {
    let png = scratch(&format!("{test}.png"));
    let _ = std::fs::remove_file(&png);
    let png_arg = png.to_str().unwrap().to_string();
    let guest = Guest::start_with_env(
        x,
        test,
        variant,
        &["--renderer", renderer, "--aspect", "square", "--window-scale", "1", "--screenshot", &png_arg],
        env,
    );
    let mut last = String::from("no photograph of the window");
    for _ in 0..POLLS {
        if let (Some(shot), Some(window)) = (read_screenshot(&png), photograph(x, &guest.window)) {
            if (shot.width, shot.height) == size && window == shot {
                let path = guest.stderr.clone();
                let status = guest.close(x);
                // What Ferrite said, to its exit.
                let stderr = std::fs::read_to_string(&path).unwrap_or_default();
                eprintln!("{test}: {}", stderr.lines().find(|l| l.contains("window drawn by")).unwrap_or("?"));
                assert!(status.success(), "ferrite's exit status after the window closed: {status}\n{stderr}");
                return Some((shot, stderr));
            }
            last = first_difference(&window, &shot);
        }
        std::thread::sleep(POLL);
    }
    panic!("{test}: the window never showed the screenshot: {last}\n{}", guest.describe());
}

#[test]
fn without_a_desktop_the_window_is_refused_before_the_guest_starts() {
    let o = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["--display", "window"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--display window: cannot open a window: neither WAYLAND_DISPLAY"), "{err}");
    assert!(!err.contains("accelerator"), "the guest was not set up: {err}");
}

/// Under Xvfb the CPU draws through the X server's shared memory: the frames the emulation
/// thread renders are segments the server reads, shown at one window pixel per guest pixel.
#[test]
fn window_shows_text_mode() {
    let Some((shot, stderr)) = window_matches_screenshot("window_shows_text_mode", "TEXT", "x11", &[], (720, 400)) else {
        return;
    };
    assert!(stderr.contains("window drawn by CPU (X11 shared memory)"), "{stderr}");
    // White on blue in the first row: the guest's text, not a blank window.
    assert!(shot.rgb[..720 * 16 * 3].chunks(3).any(|p| p == [0xFF, 0xFF, 0xFF]));
    assert!(shot.rgb[..720 * 16 * 3].chunks(3).any(|p| p == [0, 0, 0xAA]));
}

/// `--renderer soft` forces the fallback where X11 shared memory is not to be had: softbuffer.
#[test]
fn window_shows_text_mode_through_softbuffer() {
    let test = "window_shows_text_mode_through_softbuffer";
    let Some((shot, stderr)) = window_matches_screenshot(test, "TEXT", "soft", &[], (720, 400)) else { return };
    assert!(stderr.contains("window drawn by CPU (softbuffer)"), "{stderr}");
    assert!(shot.rgb[..720 * 16 * 3].chunks(3).any(|p| p == [0xFF, 0xFF, 0xFF]));
}

/// An X server without MIT-SHM (as a remote one is, in effect): `--renderer x11` says so and
/// draws with softbuffer, the window showing the same picture.
#[test]
fn without_mit_shm_the_window_draws_with_softbuffer() {
    let test = "without_mit_shm_the_window_draws_with_softbuffer";
    let Some(x) = x_server_with(test, &["-extension", "MIT-SHM"]) else { return };
    let Some((_, stderr)) = window_matches_screenshot_on(&x, test, "MODE13", "x11", &[], (320, 200)) else { return };
    assert!(stderr.contains("no X11 shared memory: no MIT-SHM extension"), "{stderr}");
    assert!(stderr.contains("window drawn by CPU (softbuffer)"), "{stderr}");
}

/// wgpu asked for an API this host does not have (WGPU_BACKEND=metal on Linux) finds no
/// adapter: the CPU draws instead, and says so.
#[test]
fn window_shows_mode_13h_where_wgpu_finds_no_adapter() {
    let test = "window_shows_mode_13h_where_wgpu_finds_no_adapter";
    let Some((shot, stderr)) = window_matches_screenshot(test, "MODE13", "auto", &[("WGPU_BACKEND", "metal")], (320, 200))
    else {
        return;
    };
    assert!(stderr.contains("drawing with the CPU instead"), "{stderr}");
    assert!(stderr.contains("window drawn by CPU (X11 shared memory)"), "{stderr}");
    // Pixel (x, y) has colour x + 2y of the VGA BIOS's default palette.
    let px = |x: usize, y: usize| &shot.rgb[(y * 320 + x) * 3..][..3];
    assert_eq!(px(1, 0), [0, 0, 0xAA], "colour 1: blue");
    assert_eq!(px(0, 1), [0, 0xAA, 0], "colour 2: green");
    assert_eq!(px(15, 0), [0xFF, 0xFF, 0xFF], "colour 15: white");
    assert_eq!(px(13, 1), [0xFF, 0xFF, 0xFF], "colour 15 again");
}

/// The guest's 1920x1080 picture: pixel (x, y) is red (x + y) / 8, green y, blue x.
fn assert_vbe_pattern(shot: &Picture) {
    let px = |x: usize, y: usize| &shot.rgb[(y * 1920 + x) * 3..][..3];
    assert_eq!(px(5, 7), [1, 7, 5], "red (x + y) / 8, green y, blue x");
    assert_eq!(px(1919, 1079), [((1919 + 1079) / 8 % 256) as u8, (1079 % 256) as u8, (1919 % 256) as u8]);
}

#[test]
fn window_shows_a_1920x1080_vbe_mode_through_wgpu_or_its_fallback() {
    let test = "window_shows_a_1920x1080_vbe_mode_through_wgpu_or_its_fallback";
    // Vulkan asked for by name: Mesa's lavapipe where there is no GPU (auto would skip it).
    let Some((shot, _)) = window_matches_screenshot(test, "VBE", "vulkan", &[], (1920, 1080)) else { return };
    assert_vbe_pattern(&shot);
}

/// The 1920x1080 picture through X11 shared memory: a 32-bit linear mode, sent to the X server
/// straight from video memory (itself a segment the server reads), copied by nobody but it.
#[test]
fn window_shows_a_1920x1080_vbe_mode_through_x11_shared_memory() {
    let test = "window_shows_a_1920x1080_vbe_mode_through_x11_shared_memory";
    let Some((shot, stderr)) = window_matches_screenshot(test, "VBE", "x11", &[("FERRITE_FRAME_STATS", "1")], (1920, 1080))
    else {
        return;
    };
    assert!(stderr.contains("window drawn by CPU (X11 shared memory)"), "{stderr}");
    // Once the window's segments went round (the first pictures come before the window
    // exists, as copies), pictures went to the X server straight from video memory.
    let sent = stderr.lines().find_map(|l| l.strip_prefix("ferrite: X11 shared memory: ")).expect("the presenter's figures");
    let (from_video, rest) = sent.split_once(" sent straight from video memory, ").expect("the presenter's figures");
    assert!(from_video.parse::<u64>().unwrap() > 0, "{stderr}");
    assert!(rest.contains("sent from the frames' own segments"), "{stderr}");
    assert_vbe_pattern(&shot);
}

/// The keys of a 105-key PC keyboard as X keycodes (Linux evdev codes plus 8, as Xvfb numbers
/// them, whatever the layout), their names, and the scan code set 1 bytes the guest must read
/// for their press (the 8042 translates the keyboard's set 2). xdotool types a number of two
/// or more digits as a keycode, so no keymap lookup (which adds Shift for some keysyms) runs.
const KEYS: &[(u8, &str, &[u8])] = &[
    (9, "Escape", &[0x01]), (10, "1", &[0x02]), (11, "2", &[0x03]), (12, "3", &[0x04]), (13, "4", &[0x05]),
    (14, "5", &[0x06]), (15, "6", &[0x07]), (16, "7", &[0x08]), (17, "8", &[0x09]), (18, "9", &[0x0A]),
    (19, "0", &[0x0B]), (20, "minus", &[0x0C]), (21, "equal", &[0x0D]), (22, "BackSpace", &[0x0E]),
    (23, "Tab", &[0x0F]), (24, "Q", &[0x10]), (25, "W", &[0x11]), (26, "E", &[0x12]), (27, "R", &[0x13]),
    (28, "T", &[0x14]), (29, "Y", &[0x15]), (30, "U", &[0x16]), (31, "I", &[0x17]), (32, "O", &[0x18]),
    (33, "P", &[0x19]), (34, "bracketleft", &[0x1A]), (35, "bracketright", &[0x1B]), (36, "Return", &[0x1C]),
    (37, "Control_L", &[0x1D]), (38, "A", &[0x1E]), (39, "S", &[0x1F]), (40, "D", &[0x20]), (41, "F", &[0x21]),
    (42, "G", &[0x22]), (43, "H", &[0x23]), (44, "J", &[0x24]), (45, "K", &[0x25]), (46, "L", &[0x26]),
    (47, "semicolon", &[0x27]), (48, "apostrophe", &[0x28]), (49, "grave", &[0x29]), (50, "Shift_L", &[0x2A]),
    (51, "backslash", &[0x2B]), (52, "Z", &[0x2C]), (53, "X", &[0x2D]), (54, "C", &[0x2E]), (55, "V", &[0x2F]),
    (56, "B", &[0x30]), (57, "N", &[0x31]), (58, "M", &[0x32]), (59, "comma", &[0x33]), (60, "period", &[0x34]),
    (61, "slash", &[0x35]), (62, "Shift_R", &[0x36]), (63, "KP_Multiply", &[0x37]), (64, "Alt_L", &[0x38]),
    (65, "space", &[0x39]), (66, "Caps_Lock", &[0x3A]), (67, "F1", &[0x3B]), (68, "F2", &[0x3C]),
    (69, "F3", &[0x3D]), (70, "F4", &[0x3E]), (71, "F5", &[0x3F]), (72, "F6", &[0x40]), (73, "F7", &[0x41]),
    (74, "F8", &[0x42]), (75, "F9", &[0x43]), (76, "F10", &[0x44]), (77, "Num_Lock", &[0x45]),
    (78, "Scroll_Lock", &[0x46]), (79, "KP_7", &[0x47]), (80, "KP_8", &[0x48]), (81, "KP_9", &[0x49]),
    (82, "KP_Subtract", &[0x4A]), (83, "KP_4", &[0x4B]), (84, "KP_5", &[0x4C]), (85, "KP_6", &[0x4D]),
    (86, "KP_Add", &[0x4E]), (87, "KP_1", &[0x4F]), (88, "KP_2", &[0x50]), (89, "KP_3", &[0x51]),
    (90, "KP_0", &[0x52]), (91, "KP_Decimal", &[0x53]), (94, "less (the 102nd key)", &[0x56]),
    (95, "F11", &[0x57]), (96, "F12", &[0x58]),
    // Extended keys.
    (104, "KP_Enter", &[0xE0, 0x1C]), (105, "Control_R", &[0xE0, 0x1D]), (106, "KP_Divide", &[0xE0, 0x35]),
    (108, "Alt_R", &[0xE0, 0x38]), (110, "Home", &[0xE0, 0x47]), (111, "Up", &[0xE0, 0x48]),
    (112, "Prior", &[0xE0, 0x49]), (113, "Left", &[0xE0, 0x4B]), (114, "Right", &[0xE0, 0x4D]),
    (115, "End", &[0xE0, 0x4F]), (116, "Down", &[0xE0, 0x50]), (117, "Next", &[0xE0, 0x51]),
    (118, "Insert", &[0xE0, 0x52]), (119, "Delete", &[0xE0, 0x53]), (133, "Super_L", &[0xE0, 0x5B]),
    (134, "Super_R", &[0xE0, 0x5C]), (135, "Menu", &[0xE0, 0x5D]),
    // Print Screen sends a fake left shift around its code; Pause sends its make and break at
    // once and nothing when released.
    (107, "Print", &[0xE0, 0x2A, 0xE0, 0x37]), (127, "Pause", &[0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5]),
];

/// The set 1 bytes for releasing a key whose press sent `make`.
fn break_code(make: &[u8]) -> Vec<u8> {
    match make {
        [0xE0, 0x2A, 0xE0, 0x37] => vec![0xE0, 0xB7, 0xE0, 0xAA],
        [0xE1, ..] => vec![],
        _ => make.iter().map(|&b| if b == 0xE0 { b } else { b | 0x80 }).collect(),
    }
}

/// The bytes the guest printed after READY.
fn scan_codes(output: &str) -> Vec<u8> {
    let after = output.split_once("READY\n").map_or("", |(_, rest)| rest);
    after.split_whitespace().map(|h| u8::from_str_radix(h, 16).unwrap()).collect()
}

fn focus(x: &Xvfb, window: &str) {
    let _ = x.command("xdotool").args(["windowfocus", "--sync", window]).status();
}

#[test]
fn typed_keys_reach_the_guest_as_scan_codes() {
    let test = "typed_keys_reach_the_guest_as_scan_codes";
    let Some(x) = x_server(test) else { return };
    let mut guest = Guest::start(&x, test, "KEYS", &["--renderer", "soft"]);
    focus(&x, &guest.window);
    let mut want = Vec::new();
    for &(keycode, name, make) in KEYS {
        // Keycode 9 would be read as the keysym "9": Escape goes by name.
        let key = if keycode < 10 { name.to_string() } else { keycode.to_string() };
        let o = x.command("xdotool").args(["key", &key]).output().unwrap();
        assert!(o.status.success(), "xdotool key {key} ({name}): {}", String::from_utf8_lossy(&o.stderr));
        want.extend_from_slice(make);
        want.extend(break_code(make));
        // One key at a time: the guest's keyboard holds 16 bytes.
        let expected_hex: String = want.iter().map(|b| format!("{b:02X} ")).collect();
        guest.wait_for_output(&format!("READY\n{expected_hex}"));
    }
    assert_eq!(scan_codes(&guest.output()), want);
    // Ctrl+Alt+Q quits; the guest sees Ctrl and Alt go down, but not the Q.
    assert!(x.command("xdotool").args(["key", "37+64+24"]).status().unwrap().success());
    let status = guest.wait_for_exit();
    assert!(status.success(), "ferrite's exit status after Ctrl+Alt+Q: {status}");
}

#[test]
fn a_held_key_repeats_at_the_guests_rate_and_focus_loss_releases_it() {
    let test = "a_held_key_repeats_at_the_guests_rate_and_focus_loss_releases_it";
    let Some(x) = x_server(test) else { return };
    let mut guest = Guest::start(&x, test, "KEYS", &["--renderer", "soft"]);
    focus(&x, &guest.window);
    let xdo = |args: &[&str]| assert!(x.command("xdotool").args(args).status().unwrap().success(), "xdotool {args:?}");
    // The guest set a 1 s typematic delay: the keyboard, not the host's auto-repeat, repeats.
    xdo(&["keydown", "38"]); // A
    guest.wait_for_output("READY\n1E 1E ");
    xdo(&["keyup", "38"]);
    guest.wait_for_output(" 9E ");
    // Shift held when the window loses the focus comes up in the guest.
    xdo(&["keydown", "50"]); // left Shift
    guest.wait_for_output(" 2A ");
    let root = x.command("xwininfo").arg("-root").output().expect("xwininfo (apt-get install x11-utils)");
    let root = String::from_utf8_lossy(&root.stdout);
    let root = root.split_whitespace().find(|w| w.starts_with("0x")).expect("the root window's id");
    xdo(&["windowfocus", root]);
    xdo(&["keyup", "50"]);
    guest.wait_for_output(" AA ");
    let codes = scan_codes(&guest.output());
    assert!(codes.iter().take_while(|&&b| b == 0x1E).count() >= 2, "{codes:02X?}");
    let status = guest.close(&x);
    assert!(status.success(), "ferrite's exit status after the window closed: {status}");
}

fn window_title(x: &Xvfb, window: &str) -> String {
    let o = x.command("xdotool").args(["getwindowname", window]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Waits until the window's title contains `text`.
fn wait_for_title(x: &Xvfb, guest: &Guest, text: &str) {
    for _ in 0..POLLS {
        if window_title(x, &guest.window).contains(text) {
            return;
        }
        std::thread::sleep(POLL);
    }
    panic!("the title never said {text:?}: {:?}\n{}", window_title(x, &guest.window), guest.describe());
}

#[test]
fn hotkeys_pause_resume_and_take_a_screenshot() {
    let test = "hotkeys_pause_resume_and_take_a_screenshot";
    let Some(x) = x_server(test) else { return };
    let png = scratch(&format!("{test}.png"));
    let _ = std::fs::remove_file(&png);
    // X11 shared memory: the window's frames are BGRA, the hotkey's PNG must still be RGBA.
    let mut guest = Guest::start(&x, test, "KEYS", &["--renderer", "x11", "--screenshot", png.to_str().unwrap()]);
    focus(&x, &guest.window);
    let xdo = |args: &[&str]| assert!(x.command("xdotool").args(args).status().unwrap().success(), "xdotool {args:?}");
    wait_for_title(&x, &guest, "running - interp");
    // Ctrl+Alt+P: paused, and keys typed meanwhile do not reach the guest.
    xdo(&["key", "37+64+33"]);
    wait_for_title(&x, &guest, "paused");
    let before = scan_codes(&guest.output());
    xdo(&["key", "38"]);
    std::thread::sleep(Duration::from_millis(300));
    xdo(&["key", "37+64+33"]);
    wait_for_title(&x, &guest, "running");
    xdo(&["key", "39"]); // S
    guest.wait_for_output("1F 9F ");
    let after: Vec<u8> = scan_codes(&guest.output())[before.len()..].to_vec();
    assert!(!after.contains(&0x1E), "A typed while paused reached the guest: {after:02X?}");
    // Ctrl+Alt+S: the screen as a PNG in the current directory.
    let shots = || {
        let mut names: Vec<String> = std::fs::read_dir(scratch(""))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("ferrite-") && n.ends_with(".png"))
            .collect();
        names.sort();
        names
    };
    let had = shots().len();
    xdo(&["key", "37+64+39"]);
    for _ in 0..POLLS {
        if shots().len() > had {
            break;
        }
        std::thread::sleep(POLL);
    }
    let names = shots();
    assert!(names.len() > had, "no screenshot after Ctrl+Alt+S\n{}", guest.describe());
    // The same picture as --screenshot's (which the headless path renders in RGBA), once
    // the cursor's blink phase agrees.
    let hotkey = names.iter().rev().find_map(|n| read_screenshot(&scratch(n))).expect("the hotkey's PNG");
    let mut last = String::new();
    let same = (0..POLLS).any(|_| {
        let matched = read_screenshot(&png).is_some_and(|shot| {
            last = first_difference(&hotkey, &shot);
            shot == hotkey
        });
        if !matched {
            std::thread::sleep(POLL);
        }
        matched
    });
    assert!(same, "Ctrl+Alt+S's PNG is not --screenshot's picture: {last}");
    let status = guest.close(&x);
    assert!(status.success(), "ferrite's exit status after the window closed: {status}");
}

/// The guest's mouse packets after READY: IntelliMouse packets of 4 bytes (buttons and
/// signs, X, Y up, wheel).
fn mouse_packets(output: &str) -> Vec<[u8; 4]> {
    scan_codes(output).chunks_exact(4).map(|p| [p[0], p[1], p[2], p[3]]).collect()
}

#[test]
fn a_click_grabs_the_mouse_and_motion_buttons_and_wheel_reach_the_guest() {
    let test = "a_click_grabs_the_mouse_and_motion_buttons_and_wheel_reach_the_guest";
    let Some(x) = x_server(test) else { return };
    let mut guest = Guest::start(&x, test, "MOUSE", &["--renderer", "soft"]);
    assert!(guest.output().contains("ID 03\n"), "the mouse became an IntelliMouse: {}", guest.describe());
    focus(&x, &guest.window);
    let xdo = |args: &[&str]| assert!(x.command("xdotool").args(args).status().unwrap().success(), "xdotool {args:?}");
    xdo(&["mousemove", "--window", &guest.window, "50", "50"]);
    // Not grabbed yet: the click grabs and is not the guest's.
    xdo(&["click", "1"]);
    let wait_for = |guest: &mut Guest, what: &str, check: &dyn Fn(&[[u8; 4]]) -> bool| {
        for _ in 0..POLLS {
            if check(&mouse_packets(&guest.output())) {
                return;
            }
            std::thread::sleep(POLL);
        }
        panic!("the guest never got {what}: {:02X?}\n{}", mouse_packets(&guest.output()), guest.describe());
    };
    for _ in 0..POLLS {
        let name = x.command("xdotool").args(["getwindowname", &guest.window]).output().unwrap();
        if String::from_utf8_lossy(&name.stdout).contains("Ctrl+Alt+G releases the mouse") {
            break;
        }
        std::thread::sleep(POLL);
    }
    assert!(mouse_packets(&guest.output()).is_empty(), "the grabbing click reached the guest");
    xdo(&["mousemove_relative", "--", "30", "-20"]);
    // Right and up: positive X, positive Y (PS/2 counts up), no sign bits.
    wait_for(&mut guest, "motion right and up", &|p| {
        p.iter().map(|p| i32::from(p[1])).sum::<i32>() >= 1 && p.iter().all(|p| p[0] & 0x30 == 0 && p[0] & 0x08 != 0)
    });
    xdo(&["click", "3"]);
    wait_for(&mut guest, "the right button down and up", &|p| {
        p.iter().position(|p| p[0] & 0x07 == 0x02).is_some_and(|i| p[i..].iter().any(|p| p[0] & 0x07 == 0))
    });
    // Button 5 scrolls towards the user (positive), button 4 away (negative). (winit counts a
    // notch for both the press and the release of XTest's wheel buttons, so not just 1.)
    xdo(&["click", "5"]);
    wait_for(&mut guest, "the wheel towards the user", &|p| p.iter().any(|p| (p[3] as i8) > 0));
    xdo(&["click", "4"]);
    wait_for(&mut guest, "the wheel away from the user", &|p| p.iter().any(|p| (p[3] as i8) < 0));
    // Ctrl+Alt+G lets the mouse go: motion no longer reaches the guest.
    xdo(&["key", "37+64+42"]);
    for _ in 0..POLLS {
        let name = x.command("xdotool").args(["getwindowname", &guest.window]).output().unwrap();
        if String::from_utf8_lossy(&name.stdout).contains("click to grab the mouse") {
            break;
        }
        std::thread::sleep(POLL);
    }
    let before = guest.output();
    xdo(&["mousemove_relative", "--", "40", "40"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(mouse_packets(&guest.output()), mouse_packets(&before), "motion after the grab was released");
    let status = guest.close(&x);
    assert!(status.success(), "ferrite's exit status after the window closed: {status}");
}

/// CPU time (user + system) a process has used so far, from /proc.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = Command::new("getconf").arg("CLK_TCK").output().ok()?;
    let hz: f64 = String::from_utf8_lossy(&hz.stdout).trim().parse().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / hz))
}

/// Not a test: the benchmark (`cargo bench -p frontend --bench frame`, which runs
/// `frame_cost_and_idle_cpu`).
#[test]
#[ignore = "a benchmark that prints figures, not a test; run it with `cargo bench -p frontend --bench frame`"]
fn frame_cost_and_idle_cpu_benchmark() {
    frame_cost_and_idle_cpu();
}

/// What a frame costs from guest memory to the window at 640x480 and 1920x1080 on the CPU
/// paths (X11 shared memory and softbuffer; also at twice the size) and on wgpu's Vulkan
/// (Mesa's lavapipe here), while the guest changes one
/// pixel without end and while it pans the picture by a line and back without end (every row
/// of every picture changes): the emulation thread's render and the window's upload and draw,
/// each as wall time and as its thread's CPU time, their sum, and the X server's CPU for each
/// picture it was sent; then the CPU an idle text-mode guest in the window uses.
pub fn frame_cost_and_idle_cpu() {
    // A 4K screen, for 1920x1080 at twice its size.
    let Some(x) = x_server_with("frame_cost_and_idle_cpu_benchmark", &["-screen", "0", "3840x2160x24"]) else { return };
    // FERRITE_BENCH_RENDERERS=x11,soft measures only those.
    let chosen = std::env::var("FERRITE_BENCH_RENDERERS").unwrap_or_else(|_| "x11,soft,vulkan".into());
    let chosen: Vec<&str> = chosen.split(',').collect();
    println!("a frame from guest memory to the window under Xvfb, means per frame (wall, and the thread's CPU):");
    // At one window pixel per guest pixel on every renderer; then at twice the size on the
    // CPU's two.
    let mut runs = Vec::new();
    for renderer in ["x11", "soft", "vulkan"] {
        for (w, h) in [(640, 480), (1920, 1080)] {
            for change in [("one pixel", ""), ("whole picture", " WHOLE")] {
                runs.push((renderer, (w, h), change, 1));
            }
        }
    }
    for renderer in ["x11", "soft"] {
        for (w, h) in [(640, 480), (1920, 1080)] {
            runs.push((renderer, (w, h), ("whole picture", " WHOLE"), 2));
        }
    }
    for (renderer, (w, h), (change, defines), scale) in runs {
        if !chosen.contains(&renderer) {
            continue;
        }
        let shown = if scale == 1 { "1:1".to_string() } else { format!("at {}x{}", w * scale, h * scale) };
        let test = format!("bench-{w}x{h}-{renderer}{}-{scale}", defines.replace(' ', "-"));
        let variant = format!("VBE BENCH WIDTH={w} HEIGHT={h}{defines}");
        let guest = Guest::start_with_env(
            &x,
            &test,
            &variant,
            &["--renderer", renderer, "--aspect", "square", "--window-scale", &scale.to_string()],
            &[("FERRITE_FRAME_STATS", "1")],
        );
        let server = cpu_time(x.child.id());
        std::thread::sleep(Duration::from_secs(10));
        let server = cpu_time(x.child.id()).zip(server).map(|(after, before)| after - before);
        let stderr = guest.stderr.clone();
        let status = guest.close(&x);
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        let costs = |what: &str| text.lines().find(|l| l.contains(what)).and_then(frame_costs);
        let drawn_by = text.lines().find_map(|l| l.strip_prefix("ferrite: window drawn by ")).unwrap_or("?");
        let dropped = text.lines().find_map(|l| l.strip_prefix("ferrite: frames dropped while the window lagged: "));
        let shm = text.lines().find_map(|l| l.strip_prefix("ferrite: X11 shared memory: ")).map(|s| format!("; {s}"));
        print!("  {w}x{h} {shown}, {change} changes, {drawn_by}: ");
        match (costs("frame render"), costs("frame present")) {
            (Some(r), Some(p)) => {
                let server = server.map_or("?".into(), |s| format!("{:.3}", s.as_secs_f64() * 1e3 / p.0.max(1) as f64));
                println!(
                    "render {:.3} ms ({:.3} CPU) + present {:.3} ms ({:.3} CPU) = {:.3} ms ({:.3} CPU); \
                     X server {server} ms CPU a frame; {} frames drawn, {} dropped{}",
                    r.1,
                    r.2,
                    p.1,
                    p.2,
                    r.1 + p.1,
                    r.2 + p.2,
                    p.0,
                    dropped.unwrap_or("?"),
                    shm.unwrap_or_default()
                );
            }
            _ => println!("no figures (exit {status}):\n{text}"),
        }
    }
    for renderer in ["x11", "soft", "vulkan"].into_iter().filter(|r| chosen.contains(r)) {
        let test = format!("bench-idle-{renderer}");
        let guest = Guest::start(&x, &test, "TEXT", &["--renderer", renderer]);
        std::thread::sleep(Duration::from_secs(3));
        let pid = guest.child.id();
        let (t0, c0) = (std::time::Instant::now(), cpu_time(pid).unwrap());
        std::thread::sleep(Duration::from_secs(20));
        let (t1, c1) = (std::time::Instant::now(), cpu_time(pid).unwrap());
        let share = (c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64() * 100.0;
        println!("idle text-mode guest, --renderer {renderer}: {share:.1}% of a core");
        guest.close(&x);
    }
}

/// The frame count, mean wall time and mean CPU time (ms) of a `FERRITE_FRAME_STATS` line:
/// "...: N frames, mean W ms (C ms CPU), max M ms".
fn frame_costs(line: &str) -> Option<(u64, f64, f64)> {
    let (before, rest) = line.split_once(" frames, mean ")?;
    let count = before.rsplit(' ').next()?;
    let (wall, rest) = rest.split_once(" ms (")?;
    let (cpu, _) = rest.split_once(" ms CPU")?;
    Some((count.parse().ok()?, wall.parse().ok()?, cpu.parse().ok()?))
}

/// Where the CPU renderer takes output pixel `i` from when `from` pixels cover `to`.
fn nearest(i: u32, from: u32, to: u32) -> u32 {
    ((u64::from(i) * u64::from(from) + u64::from(from) / 2) / u64::from(to)).min(u64::from(from - 1)) as u32
}

/// Scaled pictures: mode 13h at twice 320x240, through X11 shared memory (scaled into a
/// segment of the window's) and through softbuffer.
#[test]
fn mode_13h_fills_a_four_by_three_window() {
    for renderer in ["x11", "soft"] {
        mode_13h_fills_a_four_by_three_window_with(renderer);
    }
}

fn mode_13h_fills_a_four_by_three_window_with(renderer: &str) {
    // --aspect auto: 320x200 is shown 320x240 (times 2 here), as a 4:3 monitor shows it.
    let test = format!("mode_13h_fills_a_four_by_three_window_{renderer}");
    scaled_window_shows_the_screenshot(&test, "MODE13", renderer, (320, 200), (640, 480));
}

/// A 32-bit VBE picture, which the X11 presenter otherwise sends straight from video memory,
/// shown at twice its size: copied out of video memory and scaled.
#[test]
fn a_32_bit_vbe_picture_is_scaled_from_video_memory() {
    for renderer in ["x11", "soft"] {
        let test = format!("a_32_bit_vbe_picture_is_scaled_from_video_memory_{renderer}");
        scaled_window_shows_the_screenshot(&test, "VBE WIDTH=640 HEIGHT=480", renderer, (640, 480), (1280, 960));
    }
}

/// The guest `variant`, its picture `size`, in a window of twice its size (`--window-scale
/// 2`) that shows the `--screenshot` stretched to `window_size`, nearest-neighbour.
fn scaled_window_shows_the_screenshot(test: &str, variant: &str, renderer: &str, size: (u32, u32), window_size: (u32, u32)) {
    let Some(x) = x_server(test) else { return };
    let png = scratch(&format!("{test}.png"));
    let _ = std::fs::remove_file(&png);
    let png_arg = png.to_str().unwrap().to_string();
    let guest = Guest::start(&x, test, variant, &["--renderer", renderer, "--window-scale", "2", "--screenshot", &png_arg]);
    let mut last = String::from("no photograph of the window");
    let ((w, h), (ww, wh)) = (size, window_size);
    for _ in 0..POLLS {
        if let (Some(shot), Some(window)) = (read_screenshot(&png), photograph(&x, &guest.window)) {
            if (shot.width, shot.height, window.width, window.height) == (w, h, ww, wh) {
                let expected: Vec<u8> = (0..wh)
                    .flat_map(|y| (0..ww).map(move |x| (x, y)))
                    .flat_map(|(x, y)| {
                        let i = ((nearest(y, h, wh) * w + nearest(x, w, ww)) * 3) as usize;
                        [shot.rgb[i], shot.rgb[i + 1], shot.rgb[i + 2]]
                    })
                    .collect();
                if window.rgb == expected {
                    let stderr = std::fs::read_to_string(&guest.stderr).unwrap_or_default();
                    let status = guest.close(&x);
                    assert!(status.success(), "ferrite's exit status after the window closed: {status}");
                    let drawn_by = if renderer == "x11" { "X11 shared memory" } else { "softbuffer" };
                    assert!(stderr.contains(&format!("window drawn by CPU ({drawn_by})")), "{stderr}");
                    return;
                }
                last = first_difference(&window, &Picture { width: ww, height: wh, rgb: expected });
            } else {
                last = format!("the window is {}x{}, the screenshot {}x{}", window.width, window.height, shot.width, shot.height);
            }
        }
        std::thread::sleep(POLL);
    }
    panic!("{test}: the window never showed the screenshot stretched to {ww}x{wh}: {last}\n{}", guest.describe());
}

/// The default guest (no drive, no --bios) in a window: after its tour it echoes typed keys on
/// the screen and on COM1, and Esc ends it with status 0.
#[test]
fn the_default_guest_echoes_keys_until_esc() {
    let test = "the_default_guest_echoes_keys_until_esc";
    let Some(x) = x_server(test) else { return };
    let text = scratch(&format!("{test}.txt"));
    let mut guest = Guest::start_on_serial(&x, test, &[]);
    guest.wait_for_output("[5/5] keyboard: type in the window");
    guest.find_window(&x);
    focus(&x, &guest.window);
    assert!(x.command("xdotool").args(["key", "h", "i", "exclam"]).status().unwrap().success());
    guest.wait_for_output("INT 16h); Esc ends the demo\r\nhi!");
    let mut screen = String::new();
    for _ in 0..POLLS {
        screen = std::fs::read_to_string(&text).unwrap_or_default();
        if screen.contains(" hi!") && screen.contains("key: '!'  scan code 02h  character 21h") {
            break;
        }
        std::thread::sleep(POLL);
    }
    assert!(screen.contains(" hi!"), "the keys are not on the screen:\n{screen}");
    assert!(screen.contains("key: '!'  scan code 02h  character 21h"), "the last key is not shown:\n{screen}");
    assert!(x.command("xdotool").args(["key", "Escape"]).status().unwrap().success());
    guest.wait_for_output("Esc pressed");
    let status = guest.wait_for_exit();
    assert!(status.success(), "ferrite's exit status after Esc: {status}");
}

/// The Linux guest: the cloud kernel and the initramfs of this tree's `tests/linux/init`, made
/// by `tests/linux/build.sh --kernel-only` in the target directory (a few seconds once the
/// kernel package is there: it is taken from `$FERRITE_LINUX_OUT/debs`,
/// `$FERRITE_LINUX_GUESTS/debs` or `linux.rs`'s guests when one has it, else downloaded with
/// apt-get), or why there is none.
fn linux_guest() -> Result<PathBuf, String> {
    static GUEST: std::sync::Mutex<Option<Result<PathBuf, String>>> = std::sync::Mutex::new(None);
    let mut g = GUEST.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = tmp.join("window-linux-guest");
        let debs = out.join("debs");
        std::fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
        let sources = ["FERRITE_LINUX_OUT", "FERRITE_LINUX_GUESTS"]
            .iter()
            .filter_map(std::env::var_os)
            .map(PathBuf::from)
            .chain([tmp.join("linux-guests")])
            .map(|d| d.join("debs"));
        for entry in sources.filter_map(|d| std::fs::read_dir(d).ok()).flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let to = debs.join(&name);
            if name.starts_with("linux-image-") && name.contains("-cloud-amd64_") && !to.exists() {
                // A link where the file system allows it: the package is tens of MiB.
                let _ = std::fs::hard_link(entry.path(), &to).or_else(|_| std::fs::copy(entry.path(), &to).map(drop));
            }
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/linux/build.sh");
        let run = Command::new("bash")
            .arg(&script)
            .arg("--kernel-only")
            .arg(&out)
            .env("FERRITE_LINUX_FLAVOURS", "cloud")
            .output()
            .map_err(|e| format!("cannot run tests/linux/build.sh: {e}"))?;
        if !run.status.success() {
            let why = String::from_utf8_lossy(&run.stderr);
            return Err(format!("tests/linux/build.sh --kernel-only failed: {}", why.lines().last().unwrap_or("")));
        }
        Ok(out)
    })
    .clone()
}

/// Linux in the window (booted directly, `console=tty0 console=ttyS0 ferrite.shell`: the
/// init's shell on tty1, the VGA console, which reads the PS/2 keyboard). Commands typed with
/// xdotool must run: their output goes to COM1 (`> /dev/ttyS0`), and it is computed by the shell
/// (`$((6*7))`), so it is not the keys echoed. The typing uses shifted characters, the
/// extended keys Left, Delete, Home, End and keypad Enter to edit and enter the line, and
/// Ctrl+C, which must interrupt the foreground job (the shell has tty1 as its controlling
/// terminal); `poweroff -f` then ends the run through ACPI with status 0. The boot takes some
/// tens of seconds under the interpreter in real time; the waits are generous.
#[test]
fn commands_typed_in_the_window_run_in_a_linux_shell() {
    let test = "commands_typed_in_the_window_run_in_a_linux_shell";
    let Some(x) = x_server(test) else { return };
    let dir = match linux_guest() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipped: {test}: the Linux guest could not be built: {why}");
            return;
        }
    };
    let (kernel, initrd) = (dir.join("cloud/vmlinuz"), dir.join("initrd.img"));
    let args: [&std::ffi::OsStr; 8] = [
        "-m".as_ref(),
        "256M".as_ref(),
        "--kernel".as_ref(),
        kernel.as_os_str(),
        "--initrd".as_ref(),
        initrd.as_os_str(),
        "--append".as_ref(),
        "console=tty0 console=ttyS0 panic=-1 ferrite.shell".as_ref(),
    ];
    let mut guest = Guest::start_on_serial(&x, test, &args);
    // Up to 15 minutes for the boot, as linux.rs allows: a bound, not a speed check.
    guest.wait_for_output_polls("FERRITE-SHELL-READY", POLLS * 3);
    guest.find_window(&x);
    focus(&x, &guest.window);
    let xdo = |args: &[&str]| assert!(x.command("xdotool").args(args).status().unwrap().success(), "xdotool {args:?}");
    // "cho ...xy", two Lefts and two Deletes take the x and y away, Home and "e" make it echo.
    // Typed as fast as xdotool can: the burst waits for room in the keyboard's buffer.
    xdo(&["type", "--delay", "1", "cho FERRITE-$((6*7))xy"]);
    xdo(&["key", "Left", "Left", "Delete", "Delete", "Home", "e", "End"]);
    xdo(&["type", " >/dev/ttyS0"]);
    xdo(&["key", "KP_Enter"]);
    let line = |guest: &mut Guest, want: &str| {
        guest.wait_for_output(want);
        let out = guest.output();
        assert!(out.lines().any(|l| l.trim_end() == want), "{want} is not a line of its own\n{}", guest.describe());
    };
    line(&mut guest, "FERRITE-42");
    // Ctrl+C reaches the foreground job through the terminal: the subshell's trap says so. It
    // waits in `wait`, which a trapped signal ends even when it came just before (a signal
    // between the marker and a foreground `sleep` starting would go unnoticed).
    xdo(&["type", "(trap 'echo FERRITE-INT-$((2+3)) >/dev/ttyS0; exit' INT; sleep 1000 & echo FERRITE-WAITING >/dev/ttyS0; wait)"]);
    xdo(&["key", "Return"]);
    line(&mut guest, "FERRITE-WAITING");
    xdo(&["key", "ctrl+c"]);
    line(&mut guest, "FERRITE-INT-5");
    xdo(&["type", "poweroff -f"]);
    xdo(&["key", "Return"]);
    let status = guest.wait_for_exit();
    assert_eq!(status.code(), Some(0), "ferrite's exit status after poweroff -f (ACPI power-off)");
}
