//! `ferrite img`: images it creates are what qemu-img expects (when qemu-img is installed:
//! `apt-get install qemu-utils`), `check` and `info` describe them, and bad requests are
//! refused with the file named and nothing overwritten.

use std::path::PathBuf;
use std::process::{Command, Output};

mod common;
use common::{describe, ferrite};

#[track_caller]
fn assert_status(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", describe(o));
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("ferrite-img-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `qemu-img info` of `file` read as `format`: (format, virtual size, backing file), or
/// `None` when qemu-img is not installed.
fn qemu_info(file: &str, format: &str) -> Option<(String, u64, Option<String>)> {
    let o = match Command::new("qemu-img").args(["info", "-f", format, "--output=json", file]).output() {
        Ok(o) => o,
        Err(_) => return None,
    };
    assert!(o.status.success(), "qemu-img refused {file}: {}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let field = |name: &str| -> Option<String> {
        let at = text.find(&format!("\"{name}\":"))? + name.len() + 3;
        let rest = text[at..].trim_start();
        let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim().trim_matches('"').to_string())
    };
    Some((field("format").unwrap(), field("virtual-size").unwrap().parse().unwrap(), field("backing-filename")))
}

fn have_qemu_img() -> bool {
    let ok = Command::new("qemu-img").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping the qemu-img comparison: qemu-img is not installed (apt-get install -y qemu-utils)");
    }
    ok
}

#[test]
fn created_images_are_what_qemu_img_reads() {
    let dir = Scratch::new("create");
    let check_with_qemu = have_qemu_img();
    for (format, qemu_format, name) in [("raw", "raw", "a.img"), ("vhd", "vpc", "b.vhd"), ("vhd-fixed", "vpc", "c.vhd"), ("qcow2", "qcow2", "d.qcow2")] {
        let file = dir.path(name);
        let o = ferrite(&["img", "create", "--format", format, "--size", "64M", &file]);
        assert_status(&o, 0);
        assert!(String::from_utf8_lossy(&o.stdout).starts_with(&format!("created {file}")), "{}", describe(&o));
        let o = ferrite(&["img", "check", &file]);
        assert_status(&o, 0);
        assert!(String::from_utf8_lossy(&o.stdout).contains("no problems found"), "{}", describe(&o));
        if check_with_qemu {
            let (f, size, _) = qemu_info(&file, qemu_format).unwrap();
            assert_eq!(f, qemu_format, "{file}");
            // VHD sizes round up to a whole CHS geometry, as qemu-img's do.
            assert!((64 << 20..(64 << 20) + (1 << 20)).contains(&size), "{file}: {size}");
        }
    }
    if check_with_qemu {
        let o = Command::new("qemu-img").args(["check", &dir.path("d.qcow2")]).output().unwrap();
        assert!(o.status.success(), "qemu-img check: {}", String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn children_name_their_parents() {
    let dir = Scratch::new("parent");
    for (format, qemu_format, parent, child) in [("qcow2", "qcow2", "p.qcow2", "c.qcow2"), ("vhd", "vpc", "p.vhd", "c.vhd")] {
        let (parent_path, child_path) = (dir.path(parent), dir.path(child));
        assert_status(&ferrite(&["img", "create", "-f", format, "-s", "16M", &parent_path]), 0);
        let o = ferrite(&["img", "create", "-f", format, "--parent", &parent_path, &child_path]);
        assert_status(&o, 0);
        let o = ferrite(&["img", "info", &child_path]);
        assert_status(&o, 0);
        assert!(String::from_utf8_lossy(&o.stdout).contains("parent: "), "{}", describe(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains(parent), "{}", describe(&o));
        if have_qemu_img() {
            let (_, size, backing) = qemu_info(&child_path, qemu_format).unwrap();
            assert!(size >= 16 << 20);
            // QEMU's vpc driver reads a differencing VHD but knows nothing of its parent.
            if format == "qcow2" {
                assert!(backing.is_some_and(|b| b.ends_with(parent)), "{child}");
            }
        }
    }
}

#[test]
fn bad_requests_are_refused_and_nothing_is_overwritten() {
    let dir = Scratch::new("bad");
    let file = dir.path("x.img");
    std::fs::write(&file, b"precious").unwrap();
    let o = ferrite(&["img", "create", "-f", "raw", "-s", "1M", &file]);
    assert_status(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("x.img: already exists"), "{}", describe(&o));
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    let o = ferrite(&["img", "create", "-f", "raw", &dir.path("y.img")]);
    assert_status(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--size"), "{}", describe(&o));
    let o = ferrite(&["img", "create", "-f", "vmdk", "-s", "1M", &dir.path("z.img")]);
    assert_status(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("vmdk"), "{}", describe(&o));
    let o = ferrite(&["img", "create", "-f", "raw", "-s", "1M", "--parent", &file, &dir.path("w.img")]);
    assert_status(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot have a parent"), "{}", describe(&o));
    let mut bad = b"QFI\xfb\x00\x00\x00\x03".to_vec();
    bad.resize(512, 0);
    std::fs::write(dir.path("bad.qcow2"), &bad).unwrap();
    let o = ferrite(&["img", "check", &dir.path("bad.qcow2")]);
    assert_status(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.qcow2"), "{}", describe(&o));
    let o = ferrite(&["img", "info", &dir.path("missing.img")]);
    assert_status(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.img"), "{}", describe(&o));
    // Guest options do not mix with the subcommand.
    let o = ferrite(&["--smp", "2", "img", "info", &file]);
    assert_status(&o, 2);
}
