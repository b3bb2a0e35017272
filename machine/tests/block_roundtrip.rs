//! Round trips through every format: random aligned and unaligned writes checked against an
//! in-memory model, across flushes and reopens; parent chains; detection and overrides; the
//! snapshot overlay; locking; the raw probe guard.

#[path = "block_util.rs"]
mod util;

use machine::block::{self, BlockError, CreateFormat, Format, OpenOptions};
use std::path::Path;
use util::{assert_disk_is, exercise, pattern, Rng, TempDir, MIB};

fn rw() -> OpenOptions {
    OpenOptions::default()
}

fn ro() -> OpenOptions {
    OpenOptions { read_only: true, ..OpenOptions::default() }
}

fn round_trip(format: CreateFormat, name: &str) {
    let dir = TempDir::new(name);
    let path = dir.join(name);
    let size = block::create(&path, format, 9 * MIB + 512, None).unwrap();
    assert!(size >= 9 * MIB + 512);
    let mut rng = Rng::seeded();
    println!("seed {:#x}", rng.0);
    let mut model = vec![0u8; size as usize];
    {
        let mut disk = util::open_when_free(&path, &rw()).unwrap();
        assert_disk_is(disk.as_mut(), &model);
        exercise(disk.as_mut(), &mut model, &mut rng, 300);
        disk.flush().unwrap();
    }
    let mut disk = util::open_when_free(&path, &rw()).unwrap();
    assert_disk_is(disk.as_mut(), &model);
    exercise(disk.as_mut(), &mut model, &mut rng, 100);
    drop(disk);
    let mut disk = util::open_when_free(&path, &ro()).unwrap();
    assert_disk_is(disk.as_mut(), &model);
    let report = disk.check().unwrap();
    assert!(report.warnings.is_empty(), "{report:?}");
    assert!(matches!(disk.write_at(0, &[1]), Err(BlockError::ReadOnly { .. })));
}

#[test]
fn raw_round_trip() {
    round_trip(CreateFormat::Raw, "rt.img");
}

#[test]
fn vhd_fixed_round_trip() {
    round_trip(CreateFormat::VhdFixed, "rt-fixed.vhd");
}

#[test]
fn vhd_dynamic_round_trip() {
    round_trip(CreateFormat::VhdDynamic, "rt-dyn.vhd");
}

#[test]
fn qcow2_round_trip() {
    round_trip(CreateFormat::Qcow2, "rt.qcow2");
}

/// A chain base <- mid <- top, each level written; every level reads as its own model and the
/// lower levels are left as they were.
fn chain(format: CreateFormat, base_format: CreateFormat, ext: &str) {
    let dir = TempDir::new("chain");
    let mut rng = Rng::seeded();
    println!("seed {:#x}", rng.0);
    let base = dir.join(&format!("base.{ext}"));
    let size = block::create(&base, base_format, 8 * MIB, None).unwrap();
    let mut models = vec![vec![0u8; size as usize]];
    {
        let mut d = util::open_when_free(&base, &rw()).unwrap();
        exercise(d.as_mut(), &mut models[0], &mut rng, 80);
        d.flush().unwrap();
    }
    std::fs::create_dir(dir.join("sub")).unwrap();
    let mid = dir.join(&format!("sub/mid.{ext}"));
    let top = dir.join(&format!("top.{ext}"));
    for (child, parent) in [(&mid, &base), (&top, &mid)] {
        assert_eq!(block::create(child, format, 0, Some(parent)).unwrap(), size);
        let mut model = models.last().unwrap().clone();
        let mut d = util::open_when_free(child, &rw()).unwrap();
        assert_disk_is(d.as_mut(), &model);
        exercise(d.as_mut(), &mut model, &mut rng, 120);
        d.flush().unwrap();
        drop(d);
        models.push(model);
    }
    for (path, model) in [&base, &mid, &top].into_iter().zip(&models) {
        let mut d = util::open_when_free(path, &ro()).unwrap();
        assert_disk_is(d.as_mut(), model);
    }
    let report = util::check_when_free(&top).unwrap();
    assert_eq!(report.parents.len(), 2, "{report:?}");
    // Moving the whole set keeps it working: parents are found by relative paths.
    let moved = dir.join("moved");
    std::fs::create_dir(&moved).unwrap();
    std::fs::create_dir(moved.join("sub")).unwrap();
    for name in [format!("base.{ext}"), format!("sub/mid.{ext}"), format!("top.{ext}")] {
        let (from, to) = (dir.join(&name), moved.join(&name));
        std::fs::rename(&from, &to).unwrap();
    }
    // (rename keeps the modification times a VHD child checks its parent's against)
    let mut d = util::open_when_free(&moved.join(format!("top.{ext}")), &ro()).unwrap();
    assert_disk_is(d.as_mut(), &models[2]);
}

#[test]
fn vhd_differencing_chain() {
    chain(CreateFormat::VhdDynamic, CreateFormat::VhdDynamic, "vhd");
}

#[test]
fn vhd_differencing_over_fixed() {
    chain(CreateFormat::VhdDynamic, CreateFormat::VhdFixed, "vhd");
}

#[test]
fn qcow2_backing_chain_over_qcow2() {
    chain(CreateFormat::Qcow2, CreateFormat::Qcow2, "qcow2");
}

#[test]
fn qcow2_backing_chain_over_raw() {
    chain(CreateFormat::Qcow2, CreateFormat::Raw, "img");
}

#[test]
fn formats_are_detected_from_content_and_can_be_overridden() {
    let dir = TempDir::new("detect");
    for (name, f, want) in [
        ("a.qcow2.img", CreateFormat::Qcow2, Format::Qcow2),
        ("b.raw", CreateFormat::VhdDynamic, Format::Vhd),
        ("c.vhd", CreateFormat::VhdFixed, Format::Vhd),
        ("d.vhd", CreateFormat::Raw, Format::Raw),
    ] {
        let p = dir.join(name);
        block::create(&p, f, 4 * MIB, None).unwrap();
        assert_eq!(block::detect(&p).unwrap(), want, "{name}");
        assert_eq!(util::open_when_free(&p, &ro()).unwrap().format(), want);
    }
    // format=raw shows a fixed VHD's bytes, footer included.
    let fixed = dir.join("c.vhd");
    let vhd_size = util::open_when_free(&fixed, &ro()).unwrap().len();
    let o = OpenOptions { format: Some(Format::Raw), ..ro() };
    let mut d = util::open_when_free(&fixed, &o).unwrap();
    assert_eq!(d.len(), vhd_size + 512);
    let mut tail = [0u8; 8];
    d.read_at(d.len() - 512, &mut tail).unwrap();
    assert_eq!(&tail, b"conectix");
    // The wrong explicit format is refused, naming the file.
    let o = OpenOptions { format: Some(Format::Vhd), ..ro() };
    let err = util::open_when_free(&dir.join("d.vhd"), &o).err().unwrap().to_string();
    assert!(err.contains("d.vhd") && err.contains("footer"), "{err}");
}

#[test]
fn an_iso_is_read_only() {
    let dir = TempDir::new("iso");
    let p = dir.join("cd.bin");
    let mut img = vec![0u8; 64 * 1024];
    img[0x8000] = 1;
    img[0x8001..0x8006].copy_from_slice(b"CD001");
    std::fs::write(&p, &img).unwrap();
    let mut d = util::open_when_free(&p, &rw()).unwrap();
    assert_eq!(d.format(), Format::Iso);
    assert!(d.is_read_only());
    assert!(matches!(d.write_at(0, &[1]), Err(BlockError::ReadOnly { .. })));
}

fn file_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn snapshot_writes_never_reach_the_image() {
    let dir = TempDir::new("snap");
    for (name, f) in [("s.img", CreateFormat::Raw), ("s.vhd", CreateFormat::VhdDynamic), ("s.qcow2", CreateFormat::Qcow2)] {
        let p = dir.join(name);
        let size = block::create(&p, f, 6 * MIB, None).unwrap();
        let mut model = vec![0u8; size as usize];
        {
            let mut d = util::open_when_free(&p, &rw()).unwrap();
            d.write_at(MIB, &pattern(1, 5000)).unwrap();
            model[MIB as usize..MIB as usize + 5000].copy_from_slice(&pattern(1, 5000));
            d.flush().unwrap();
        }
        let before = file_bytes(&p);
        let snap = OpenOptions { snapshot: true, ..OpenOptions::default() };
        let mut d = util::open_when_free(&p, &snap).unwrap();
        assert!(!d.is_read_only());
        let mut rng = Rng::seeded();
        exercise(d.as_mut(), &mut model, &mut rng, 150);
        d.flush().unwrap();
        assert_disk_is(d.as_mut(), &model);
        // A writer is locked out while the snapshot's base is in use.
        assert!(matches!(block::open(&p, &rw()), Err(BlockError::Locked { .. })), "{name}");
        drop(d);
        assert!(file_bytes(&p) == before, "{name} changed under --snapshot");
    }
}

#[test]
fn writers_lock_each_other_out_readers_do_not() {
    let dir = TempDir::new("lock");
    for (name, f) in [("l.img", CreateFormat::Raw), ("l.vhd", CreateFormat::VhdDynamic), ("l.qcow2", CreateFormat::Qcow2)] {
        let p = dir.join(name);
        block::create(&p, f, 4 * MIB, None).unwrap();
        let w = block::open(&p, &rw()).unwrap();
        let err = block::open(&p, &rw()).err().expect("second writer refused");
        assert!(matches!(err, BlockError::Locked { .. }), "{err}");
        assert!(err.to_string().contains(name), "{err}");
        util::open_when_free(&p, &ro()).expect("a reader may join a writer");
        assert!(matches!(block::check(&p, &OpenOptions::default()), Err(BlockError::Locked { .. })), "check refuses a live image");
        let nolock = OpenOptions { locking: false, ..rw() };
        util::open_when_free(&p, &nolock).expect("locking=off opens anyway");
        drop(w);
        util::open_when_free(&p, &rw()).expect("free again");
    }
    // A parent in use by a child cannot be opened for writing.
    let base = dir.join("base.vhd");
    let child = dir.join("child.vhd");
    block::create(&base, CreateFormat::VhdDynamic, 4 * MIB, None).unwrap();
    block::create(&child, CreateFormat::VhdDynamic, 0, Some(&base)).unwrap();
    let c = util::open_when_free(&child, &rw()).unwrap();
    assert!(matches!(block::open(&base, &rw()), Err(BlockError::Locked { .. })));
    let _c2 = util::open_when_free(&child, &ro()).expect("a second reader of the chain");
    drop(c);
}

#[test]
fn a_detected_raw_image_refuses_a_guest_written_format_header() {
    let dir = TempDir::new("guard");
    let p = dir.join("guest.img");
    block::create(&p, CreateFormat::Raw, 4 * MIB, None).unwrap();
    let mut d = util::open_when_free(&p, &rw()).unwrap();
    let mut sector = [0u8; 512];
    sector[..4].copy_from_slice(b"QFI\xfb");
    assert!(matches!(d.write_at(0, &sector), Err(BlockError::Invalid { .. })));
    assert!(d.write_at(0, b"QF").is_ok(), "harmless prefixes pass");
    assert!(d.write_at(2, b"I\xfb").is_err(), "completing the magic piecewise does not");
    assert!(d.write_at(4 * MIB - 512, b"conectix").is_err(), "nor a VHD footer at the end");
    drop(d);
    let o = OpenOptions { format: Some(Format::Raw), ..rw() };
    let mut d = util::open_when_free(&p, &o).unwrap();
    d.write_at(0, &sector).expect("allowed when the user says raw");
}

#[test]
fn sector_helpers_and_ranges() {
    let dir = TempDir::new("sectors");
    let p = dir.join("s.vhd");
    let size = block::create(&p, CreateFormat::VhdDynamic, 3 * MIB, None).unwrap();
    let mut d = util::open_when_free(&p, &rw()).unwrap();
    assert_eq!(d.sector_count(), size / 512);
    let g = d.geometry().unwrap();
    assert_eq!(g.total_sectors(), size / 512);
    d.write_sectors(5, &pattern(3, 1024)).unwrap();
    let mut b = vec![0u8; 1024];
    d.read_sectors(5, &mut b).unwrap();
    assert_eq!(b, pattern(3, 1024));
    assert!(matches!(d.read_sectors(0, &mut [0u8; 100]), Err(BlockError::OutOfRange { .. })));
    assert!(matches!(d.read_at(size - 1, &mut [0u8; 2]), Err(BlockError::OutOfRange { .. })));
    assert!(matches!(d.write_sectors(u64::MAX / 256, &[0u8; 512]), Err(BlockError::OutOfRange { .. })));
    assert!(block::create(&p, CreateFormat::Raw, MIB, None).is_err(), "create never overwrites");
}

#[test]
fn an_interrupted_allocation_is_reused_and_cleared() {
    let dir = TempDir::new("interrupted");
    for parent in [false, true] {
        let p = dir.join(if parent { "child.vhd" } else { "dyn.vhd" });
        let base = dir.join("base.vhd");
        let size;
        let mut model;
        if parent {
            size = block::create(&base, CreateFormat::VhdDynamic, 8 * MIB, None).unwrap();
            model = vec![0u8; size as usize];
            let mut b = util::open_when_free(&base, &rw()).unwrap();
            let fill = pattern(77, 4 * MIB as usize);
            b.write_at(2 * MIB, &fill).unwrap();
            model[2 * MIB as usize..6 * MIB as usize].copy_from_slice(&fill);
            drop(b);
            block::create(&p, CreateFormat::VhdDynamic, 0, Some(&base)).unwrap();
        } else {
            size = block::create(&p, CreateFormat::VhdDynamic, 8 * MIB, None).unwrap();
            model = vec![0u8; size as usize];
        }
        // A block allocated and filled but never flushed: the process "dies" (no drop, no
        // flush), so the BAT never learns of it.
        let mut d = util::open_when_free(&p, &OpenOptions { locking: false, ..rw() }).unwrap();
        d.write_at(0, &pattern(1, 2 * MIB as usize)).unwrap();
        std::mem::forget(d);
        let report = block::check(&p, &OpenOptions::default()).unwrap();
        assert!(report.warnings.iter().any(|w| w.contains("interrupted allocation")), "{report:?}");
        let mut d = util::open_when_free(&p, &rw()).unwrap();
        assert_disk_is(d.as_mut(), &model);
        // The next allocation takes the leaked space; none of the old bytes may show.
        d.write_at(2 * MIB + 4096, &pattern(2, 1024)).unwrap();
        model[(2 * MIB + 4096) as usize..(2 * MIB + 5120) as usize].copy_from_slice(&pattern(2, 1024));
        assert_disk_is(d.as_mut(), &model);
        d.flush().unwrap();
        drop(d);
        let mut d = util::open_when_free(&p, &ro()).unwrap();
        assert_disk_is(d.as_mut(), &model);
        assert!(d.check().unwrap().warnings.is_empty());
        if let Some(bin) = util::qemu_img("an_interrupted_allocation_is_reused_and_cleared (QEMU half)") {
            if !parent {
                let truth = dir.join("truth.raw");
                std::fs::write(&truth, &model).unwrap();
                util::qemu_ok(&bin, &["compare", "-f", "vpc", "-F", "raw", util::s(&p), util::s(&truth)]);
            }
        }
    }
}

#[test]
fn a_dynamic_vhd_that_lost_its_end_footer_opens_from_the_copy() {
    let dir = TempDir::new("lost-footer");
    let p = dir.join("d.vhd");
    let size = block::create(&p, CreateFormat::VhdDynamic, 6 * MIB, None).unwrap();
    let mut model = vec![0u8; size as usize];
    let mut d = util::open_when_free(&p, &rw()).unwrap();
    d.write_at(MIB, &pattern(5, 5000)).unwrap();
    model[MIB as usize..MIB as usize + 5000].copy_from_slice(&pattern(5, 5000));
    drop(d);
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 512).unwrap();
    let mut d = util::open_when_free(&p, &ro()).unwrap();
    assert_disk_is(d.as_mut(), &model);
    assert!(d.check().unwrap().warnings.iter().any(|w| w.contains("copy at offset 0")));
    drop(d);
    let mut d = util::open_when_free(&p, &rw()).unwrap();
    d.write_at(4 * MIB, &pattern(6, 512)).unwrap();
    model[4 * MIB as usize..4 * MIB as usize + 512].copy_from_slice(&pattern(6, 512));
    d.flush().unwrap();
    drop(d);
    let mut d = util::open_when_free(&p, &ro()).unwrap();
    assert_disk_is(d.as_mut(), &model);
    let tail = std::fs::read(&p).unwrap();
    assert_eq!(&tail[tail.len() - 512..tail.len() - 504], b"conectix", "the footer is back at the end");
}
