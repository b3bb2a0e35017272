//! Interoperability with QEMU's own tools: images Ferrite creates and writes are read by
//! qemu-img with the same content (and pass `qemu-img check` where the format has checks:
//! qcow2; QEMU's vpc driver has none), and images QEMU creates and writes are read and
//! written by Ferrite. Skipped, saying so, where qemu-img is missing.

#[path = "block_util.rs"]
mod util;

use machine::block::{self, CreateFormat, OpenOptions};
use std::path::Path;
use util::{assert_disk_is, exercise, qemu_img, qemu_ok, run_qemu_img, s, Rng, TempDir, MIB};

fn qemu_format(f: CreateFormat) -> &'static str {
    match f {
        CreateFormat::Raw => "raw",
        CreateFormat::VhdFixed | CreateFormat::VhdDynamic => "vpc",
        CreateFormat::Qcow2 => "qcow2",
    }
}

fn virtual_size(bin: &Path, fmt: &str, p: &Path) -> u64 {
    let info = qemu_ok(bin, &["info", "-f", fmt, "--output=json", s(p)]);
    let at = info.find("\"virtual-size\":").expect("virtual-size in qemu-img info");
    info[at + 15..].trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// qemu-img agrees that `img` holds `model`: info, check (qcow2), convert and compare.
fn qemu_agrees(bin: &Path, fmt: &str, img: &Path, model: &[u8], dir: &TempDir) {
    assert_eq!(virtual_size(bin, fmt, img), model.len() as u64, "{}", img.display());
    if fmt == "qcow2" {
        let out = qemu_ok(bin, &["check", "-f", fmt, s(img)]);
        assert!(out.contains("No errors"), "{out}");
    }
    let raw = dir.join("converted.raw");
    let _ = std::fs::remove_file(&raw);
    qemu_ok(bin, &["convert", "-f", fmt, "-O", "raw", s(img), s(&raw)]);
    assert!(std::fs::read(&raw).unwrap() == model, "qemu-img convert of {} differs from what Ferrite wrote", img.display());
    let truth = dir.join("model.raw");
    std::fs::write(&truth, model).unwrap();
    qemu_ok(bin, &["compare", "-f", fmt, "-F", "raw", s(img), s(&truth)]);
}

#[test]
fn qemu_img_reads_what_ferrite_writes() {
    let Some(bin) = qemu_img("qemu_img_reads_what_ferrite_writes") else { return };
    let dir = TempDir::new("qemu-reads");
    let mut rng = Rng::seeded();
    println!("seed {:#x}", rng.0);
    for (name, f) in [("f.vhd", CreateFormat::VhdFixed), ("d.vhd", CreateFormat::VhdDynamic), ("q.qcow2", CreateFormat::Qcow2)] {
        let p = dir.join(name);
        let size = block::create(&p, f, 21 * MIB + 4096, None).unwrap();
        // Untouched, it reads as zeros.
        qemu_agrees(&bin, qemu_format(f), &p, &vec![0u8; size as usize], &dir);
        let mut model = vec![0u8; size as usize];
        let mut d = util::open_when_free(&p, &OpenOptions::default()).unwrap();
        exercise(d.as_mut(), &mut model, &mut rng, 250);
        d.flush().unwrap();
        drop(d);
        qemu_agrees(&bin, qemu_format(f), &p, &model, &dir);
    }
}

#[test]
fn qemu_img_reads_a_ferrite_qcow2_chain() {
    let Some(bin) = qemu_img("qemu_img_reads_a_ferrite_qcow2_chain") else { return };
    let dir = TempDir::new("qemu-chain");
    let mut rng = Rng::seeded();
    let base = dir.join("base.qcow2");
    let size = block::create(&base, CreateFormat::Qcow2, 12 * MIB, None).unwrap();
    let mut model = vec![0u8; size as usize];
    let mut d = util::open_when_free(&base, &OpenOptions::default()).unwrap();
    exercise(d.as_mut(), &mut model, &mut rng, 60);
    d.flush().unwrap();
    drop(d);
    let top = dir.join("top.qcow2");
    block::create(&top, CreateFormat::Qcow2, 0, Some(&base)).unwrap();
    let base_model = model.clone();
    let mut d = util::open_when_free(&top, &OpenOptions::default()).unwrap();
    exercise(d.as_mut(), &mut model, &mut rng, 120);
    d.flush().unwrap();
    drop(d);
    qemu_agrees(&bin, "qcow2", &top, &model, &dir);
    qemu_agrees(&bin, "qcow2", &base, &base_model, &dir);
    let info = qemu_ok(&bin, &["info", s(&top)]);
    assert!(info.contains("backing file: base.qcow2"), "{info}");
}

/// Writes QEMU-made data with qemu-io: patterns at aligned and unaligned places.
fn qemu_io_scribble(fmt: &str, p: &Path) -> bool {
    let Ok(out) = std::process::Command::new("qemu-io")
        .args(["-f", fmt])
        .args(["-c", "write -P 0xa5 0 1M", "-c", "write -P 0x5a 3145216 70000", "-c", "write -P 0x11 5000 3", "-c", "write -z 100000 4096", "-c", "write -P 0x77 8388096 1024"])
        .arg(p)
        .output()
    else {
        return false;
    };
    assert!(out.status.success(), "qemu-io: {}", String::from_utf8_lossy(&out.stderr));
    true
}

#[test]
fn ferrite_reads_and_writes_what_qemu_makes() {
    let Some(bin) = qemu_img("ferrite_reads_and_writes_what_qemu_makes") else { return };
    let dir = TempDir::new("ferrite-reads");
    let mut rng = Rng::seeded();
    println!("seed {:#x}", rng.0);
    for (name, fmt, opts) in [("f.vhd", "vpc", "subformat=fixed"), ("d.vhd", "vpc", "subformat=dynamic"), ("q.qcow2", "qcow2", "compat=1.1"), ("q2.qcow2", "qcow2", "compat=0.10")] {
        let p = dir.join(name);
        qemu_ok(&bin, &["create", "-q", "-f", fmt, "-o", opts, s(&p), "10M"]);
        if !qemu_io_scribble(fmt, &p) {
            println!("skipped: writing with qemu-io in ferrite_reads_and_writes_what_qemu_makes needs qemu-io");
        }
        let raw = dir.join("truth.raw");
        let _ = std::fs::remove_file(&raw);
        qemu_ok(&bin, &["convert", "-f", fmt, "-O", "raw", s(&p), s(&raw)]);
        let mut model = std::fs::read(&raw).unwrap();
        let mut d = util::open_when_free(&p, &OpenOptions::default()).unwrap();
        assert_disk_is(d.as_mut(), &model);
        exercise(d.as_mut(), &mut model, &mut rng, 200);
        d.flush().unwrap();
        drop(d);
        qemu_agrees(&bin, fmt, &p, &model, &dir);
    }
}

#[test]
fn ferrite_reads_a_qemu_qcow2_chain_and_converted_vhd() {
    let Some(bin) = qemu_img("ferrite_reads_a_qemu_qcow2_chain_and_converted_vhd") else { return };
    let dir = TempDir::new("qemu-made");
    let mut rng = Rng::seeded();
    let src = dir.join("src.raw");
    let mut data = vec![0u8; 9 * MIB as usize];
    for _ in 0..40 {
        let off = rng.below(data.len() as u64 - 70_000) as usize;
        let n = 1 + rng.below(65_536) as usize;
        rng.fill(&mut data[off..off + n]);
    }
    std::fs::write(&src, &data).unwrap();
    let vhd = dir.join("conv.vhd");
    qemu_ok(&bin, &["convert", "-O", "vpc", "-o", "subformat=dynamic", s(&src), s(&vhd)]);
    let mut d = util::open_when_free(&vhd, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
    let mut got = vec![0u8; data.len()];
    d.read_at(0, &mut got).unwrap();
    assert!(got == data, "a VHD converted by qemu-img reads back differently");
    assert!(d.len() >= data.len() as u64);

    let base = dir.join("base.qcow2");
    qemu_ok(&bin, &["convert", "-O", "qcow2", s(&src), s(&base)]);
    let top = dir.join("top.qcow2");
    qemu_ok(&bin, &["create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", s(&top)]);
    let mut d = util::open_when_free(&top, &OpenOptions::default()).unwrap();
    let mut model = data.clone();
    assert_disk_is(d.as_mut(), &model);
    exercise(d.as_mut(), &mut model, &mut rng, 100);
    d.flush().unwrap();
    drop(d);
    qemu_agrees(&bin, "qcow2", &top, &model, &dir);
}

#[test]
fn vhd_sizes_and_geometry_match_qemu() {
    let Some(bin) = qemu_img("vhd_sizes_and_geometry_match_qemu") else { return };
    let dir = TempDir::new("qemu-sizes");
    for (i, size) in [MIB, 10 * MIB + 3, 2 << 30, 100 << 30, 200 << 30].into_iter().enumerate() {
        let ours = dir.join(&format!("ours{i}.vhd"));
        let theirs = dir.join(&format!("theirs{i}.vhd"));
        let got = block::create(&ours, CreateFormat::VhdDynamic, size, None).unwrap();
        qemu_ok(&bin, &["create", "-q", "-f", "vpc", s(&theirs), &size.to_string()]);
        assert_eq!(got, virtual_size(&bin, "vpc", &theirs), "size {size}");
        assert_eq!(virtual_size(&bin, "vpc", &ours), got, "QEMU reads our size {size}");
        let (a, b) = (std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
        assert_eq!(a[56..60], b[56..60], "CHS geometry for {size}");
        let d = util::open_when_free(&theirs, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
        assert_eq!(d.len(), got);
    }
}

#[test]
fn qemu_sees_ferrite_locks() {
    let Some(bin) = qemu_img("qemu_sees_ferrite_locks") else { return };
    let dir = TempDir::new("qemu-lock");
    let p = dir.join("l.qcow2");
    block::create(&p, CreateFormat::Qcow2, 4 * MIB, None).unwrap();
    let w = util::open_when_free(&p, &OpenOptions::default()).unwrap();
    let (code, out) = run_qemu_img(&bin, &["check", s(&p)]);
    assert_ne!(code, 0, "qemu-img check of an image Ferrite is writing should fail on the lock");
    assert!(out.contains("lock"), "{out}");
    let (code, _) = run_qemu_img(&bin, &["info", "-U", s(&p)]);
    assert_eq!(code, 0, "force-share still reads");
    drop(w);
    // And the other way round: a QEMU writer (qemu-io holding the image open) keeps Ferrite out.
    let mut child = match std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", s(&p)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => {
            println!("skipped: the QEMU-writer half of qemu_sees_ferrite_locks needs qemu-io");
            return;
        }
    };
    let mut seen = false;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if let Err(e) = block::open(&p, &OpenOptions::default()) {
            assert!(matches!(e, machine::block::BlockError::Locked { .. }), "{e}");
            seen = true;
            break;
        }
    }
    drop(child.stdin.take());
    let _ = child.wait();
    assert!(seen, "Ferrite opened an image qemu-io holds for writing");
    util::open_when_free(&p, &OpenOptions::default()).expect("free once qemu-io quit");
}

#[test]
fn qemu_reads_a_ferrite_differencing_vhd_or_says_why_not() {
    let Some(bin) = qemu_img("qemu_reads_a_ferrite_differencing_vhd_or_says_why_not") else { return };
    let dir = TempDir::new("qemu-diff");
    let base = dir.join("base.vhd");
    let child = dir.join("child.vhd");
    block::create(&base, CreateFormat::VhdDynamic, 4 * MIB, None).unwrap();
    block::create(&child, CreateFormat::VhdDynamic, 0, Some(&base)).unwrap();
    // QEMU's vpc driver has no differencing support; record what it does with ours.
    let (code, out) = run_qemu_img(&bin, &["info", s(&child)]);
    println!("qemu-img info on a differencing VHD: exit {code}: {}", out.trim());
}
