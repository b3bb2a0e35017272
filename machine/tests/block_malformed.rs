//! Every check made when an image is opened: each damaged image is refused with an error that
//! names the file and the problem, for writing as for reading, and the file is left exactly
//! as it was.

#[path = "block_util.rs"]
mod util;

use machine::block::{self, BlockError, CreateFormat, OpenOptions};
use std::path::{Path, PathBuf};
use util::{check_when_free, pattern, qemu_img, qemu_ok, s, TempDir, MIB};

/// Opens `p` for writing and for checking; both must fail with an error that `want` accepts,
/// names `blame`, and leaves every image in `untouched` byte for byte as it was.
fn refused(p: &Path, blame: &Path, untouched: &[&Path], want: fn(&BlockError) -> bool) -> String {
    let before: Vec<Vec<u8>> = untouched.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let err = match util::open_when_free(p, &OpenOptions::default()) {
        Ok(_) => panic!("{} opened", p.display()),
        Err(e) => e,
    };
    assert!(want(&err), "unexpected error kind: {err:?}");
    let msg = err.to_string();
    let name = blame.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "error does not name {name}: {msg}");
    assert!(check_when_free(p).is_err(), "check passed");
    for (f, b) in untouched.iter().zip(before) {
        assert!(std::fs::read(f).unwrap() == b, "{} was modified", f.display());
    }
    println!("{msg}");
    msg
}

fn patch(p: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn read(p: &Path, at: u64, n: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut b = vec![0u8; n];
    std::fs::File::open(p).unwrap().read_exact_at(&mut b, at).unwrap();
    b
}

/// Rewrites the dynamic header's checksum after an edit.
fn reseal_header(p: &Path) {
    let mut h = read(p, 512, 1024);
    h[36..40].fill(0);
    let sum = !h.iter().fold(0u32, |s, &b| s.wrapping_add(b as u32));
    patch(p, 512 + 36, &sum.to_be_bytes());
}

/// A dynamic VHD with blocks 0, 1 and 3 allocated.
fn dynamic_vhd(dir: &TempDir, name: &str) -> PathBuf {
    let p = dir.join(name);
    block::create(&p, CreateFormat::VhdDynamic, 8 * MIB, None).unwrap();
    let mut d = util::open_when_free(&p, &OpenOptions::default()).unwrap();
    for blk in [0u64, 1, 3] {
        d.write_at(blk * 2 * MIB + 4096, &pattern(blk, 8192)).unwrap();
    }
    d.flush().unwrap();
    p
}

fn bat_entry(p: &Path, i: u64) -> u32 {
    u32::from_be_bytes(read(p, 1536 + 4 * i, 4).try_into().unwrap())
}

#[test]
fn vhd_bad_footer_checksum() {
    let dir = TempDir::new("bad-footer");
    let p = dynamic_vhd(&dir, "d.vhd");
    let len = std::fs::metadata(&p).unwrap().len();
    patch(&p, len - 512 + 40, &[0x7F]);
    let msg = refused(&p, &p, &[&p], |e| matches!(e, BlockError::Checksum { .. }));
    assert!(msg.contains("footer"));
    let f = dir.join("f.vhd");
    block::create(&f, CreateFormat::VhdFixed, MIB, None).unwrap();
    let len = std::fs::metadata(&f).unwrap().len();
    patch(&f, len - 512 + 70, &[0x01]);
    refused(&f, &f, &[&f], |e| matches!(e, BlockError::Checksum { .. }));
}

#[test]
fn vhd_bad_header_checksum() {
    let dir = TempDir::new("bad-header");
    let p = dynamic_vhd(&dir, "d.vhd");
    patch(&p, 512 + 32, &[0, 0x10, 0, 0]);
    let msg = refused(&p, &p, &[&p], |e| matches!(e, BlockError::Checksum { .. }));
    assert!(msg.contains("dynamic header"));
}

#[test]
fn vhd_truncated() {
    let dir = TempDir::new("truncated");
    let p = dynamic_vhd(&dir, "d.vhd");
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 1024 * 1024).unwrap();
    let msg = refused(&p, &p, &[&p], |e| matches!(e, BlockError::Truncated { .. }));
    assert!(msg.contains("BAT entry 3"), "{msg}");
    // Cut into the BAT itself.
    std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(1600).unwrap();
    refused(&p, &p, &[&p], |e| matches!(e, BlockError::Truncated { .. }));
    // A fixed disk cut short loses its footer; named as VHD it is refused.
    let f = dir.join("f.vhd");
    block::create(&f, CreateFormat::VhdFixed, MIB, None).unwrap();
    std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(4096).unwrap();
    let o = OpenOptions { format: Some(block::Format::Vhd), ..OpenOptions::default() };
    let err = util::open_when_free(&f, &o).err().expect("refused").to_string();
    assert!(err.contains("f.vhd") && err.contains("footer"), "{err}");
    // A fixed footer whose size is more than the file holds.
    let g = dir.join("g.vhd");
    block::create(&g, CreateFormat::VhdFixed, MIB, None).unwrap();
    let tail = read(&g, std::fs::metadata(&g).unwrap().len() - 512, 512);
    std::fs::OpenOptions::new().write(true).open(&g).unwrap().set_len(512 * 1024).unwrap();
    patch(&g, 512 * 1024, &tail);
    refused(&g, &g, &[&g], |e| matches!(e, BlockError::Truncated { .. }));
}

#[test]
fn vhd_bat_pointing_outside_the_file_or_at_metadata() {
    let dir = TempDir::new("bad-bat");
    let p = dynamic_vhd(&dir, "d.vhd");
    let good = read(&p, 1536, 16);
    patch(&p, 1536 + 8, &0x00F0_0000u32.to_be_bytes());
    let msg = refused(&p, &p, &[&p], |e| matches!(e, BlockError::Truncated { .. }));
    assert!(msg.contains("BAT entry 2"), "{msg}");
    patch(&p, 1536, &good);
    // Two entries sharing a block.
    patch(&p, 1536 + 8, &bat_entry(&p, 1).to_be_bytes());
    let msg = refused(&p, &p, &[&p], |e| matches!(e, BlockError::Malformed { .. }));
    assert!(msg.contains("overlaps"), "{msg}");
    patch(&p, 1536, &good);
    // A block laid over the dynamic header.
    patch(&p, 1536 + 8, &1u32.to_be_bytes());
    let msg = refused(&p, &p, &[&p], |e| matches!(e, BlockError::Malformed { .. }));
    assert!(msg.contains("overlaps"), "{msg}");
    patch(&p, 1536, &good);
    util::open_when_free(&p, &OpenOptions::default()).expect("repaired BAT opens");
    // Too few BAT entries for the disk size.
    patch(&p, 512 + 28, &2u32.to_be_bytes());
    reseal_header(&p);
    refused(&p, &p, &[&p], |e| matches!(e, BlockError::Malformed { .. }));
}

fn chain(dir: &TempDir) -> (PathBuf, PathBuf) {
    let base = dynamic_vhd(dir, "base.vhd");
    let child = dir.join("child.vhd");
    block::create(&child, CreateFormat::VhdDynamic, 0, Some(&base)).unwrap();
    let mut c = util::open_when_free(&child, &OpenOptions::default()).unwrap();
    c.write_at(5 * MIB, &pattern(9, 4096)).unwrap();
    c.flush().unwrap();
    (base, child)
}

#[test]
fn vhd_missing_parent() {
    let dir = TempDir::new("no-parent");
    let (base, child) = chain(&dir);
    std::fs::rename(&base, dir.join("elsewhere.vhd")).unwrap();
    let msg = refused(&child, &child, &[&child], |e| matches!(e, BlockError::ParentMissing { .. }));
    assert!(msg.contains("base.vhd"), "the paths tried are listed: {msg}");
}

#[test]
fn vhd_replaced_parent() {
    let dir = TempDir::new("other-parent");
    let (base, child) = chain(&dir);
    std::fs::remove_file(&base).unwrap();
    block::create(&base, CreateFormat::VhdDynamic, 8 * MIB, None).unwrap();
    let msg = refused(&child, &base, &[&child, &base], |e| matches!(e, BlockError::ParentChanged { .. }));
    assert!(msg.contains("unique id"), "{msg}");
}

#[test]
fn vhd_modified_parent() {
    let dir = TempDir::new("modified-parent");
    let (base, child) = chain(&dir);
    let f = std::fs::OpenOptions::new().write(true).open(&base).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600)).unwrap();
    drop(f);
    let msg = refused(&child, &base, &[&child, &base], |e| matches!(e, BlockError::ParentChanged { .. }));
    assert!(msg.contains("modified"), "{msg}");
}

#[test]
fn vhd_parent_that_is_not_a_vhd() {
    let dir = TempDir::new("raw-parent");
    let (base, child) = chain(&dir);
    std::fs::write(&base, vec![0u8; 8 << 20]).unwrap();
    refused(&child, &base, &[&child, &base], |e| matches!(e, BlockError::ParentChanged { .. }));
}

/// Points locator 0 of `p` at `target` (relative), drops the others.
fn relocate(p: &Path, target: &str) {
    let data: Vec<u8> = format!(".\\{target}").encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let entry = read(p, 512 + 576, 24);
    let offset = u64::from_be_bytes(entry[16..24].try_into().unwrap());
    patch(p, offset, &data);
    patch(p, 512 + 576 + 8, &(data.len() as u32).to_be_bytes());
    patch(p, 512 + 576 + 24, &[0u8; 24 * 7]);
    reseal_header(p);
}

#[test]
fn vhd_parent_loops() {
    let dir = TempDir::new("loop");
    let (_base, child) = chain(&dir);
    // child -> child
    let me = dir.join("me.vhd");
    std::fs::copy(&child, &me).unwrap();
    relocate(&me, "me.vhd");
    let msg = refused(&me, &me, &[&me], |e| matches!(e, BlockError::ParentLoop { .. }));
    assert!(msg.contains("loops"), "{msg}");
    // x -> y -> x
    let y = dir.join("y.vhd");
    std::fs::copy(&child, &y).unwrap();
    let x = dir.join("x.vhd");
    block::create(&x, CreateFormat::VhdDynamic, 0, Some(&y)).unwrap();
    relocate(&y, "x.vhd");
    refused(&x, &y, &[&x, &y], |e| matches!(e, BlockError::ParentLoop { .. }));
}

#[test]
fn vhd_locator_outside_the_file() {
    let dir = TempDir::new("bad-locator");
    let (_base, child) = chain(&dir);
    patch(&child, 512 + 576 + 16, &(1u64 << 40).to_be_bytes());
    reseal_header(&child);
    let msg = refused(&child, &child, &[&child], |e| matches!(e, BlockError::Malformed { .. }));
    assert!(msg.contains("locator"), "{msg}");
}

#[test]
fn vhd_without_any_footer() {
    let dir = TempDir::new("no-footer");
    let p = dynamic_vhd(&dir, "d.vhd");
    patch(&p, 0, b"xxxxxxxx");
    let len = std::fs::metadata(&p).unwrap().len();
    patch(&p, len - 512, b"xxxxxxxx");
    let o = OpenOptions { format: Some(block::Format::Vhd), ..OpenOptions::default() };
    let err = util::open_when_free(&p, &o).err().expect("refused").to_string();
    assert!(err.contains("d.vhd") && err.contains("no footer"), "{err}");
}

/// A fresh qcow2 image written by Ferrite, and its header fields' offsets.
fn qcow2(dir: &TempDir, name: &str) -> PathBuf {
    let p = dir.join(name);
    block::create(&p, CreateFormat::Qcow2, 8 * MIB, None).unwrap();
    let mut d = util::open_when_free(&p, &OpenOptions::default()).unwrap();
    d.write_at(MIB, &pattern(4, 300_000)).unwrap();
    d.flush().unwrap();
    p
}

#[test]
fn qcow2_damaged_headers_and_tables() {
    let dir = TempDir::new("qcow2-bad");
    let p = qcow2(&dir, "q.qcow2");
    let good = read(&p, 0, 512);
    type Case = (&'static str, u64, Vec<u8>, fn(&BlockError) -> bool);
    let cases: [Case; 6] = [
        ("version 7", 4, 7u32.to_be_bytes().to_vec(), |e| matches!(e, BlockError::Malformed { .. })),
        ("cluster bits 30", 20, 30u32.to_be_bytes().to_vec(), |e| matches!(e, BlockError::Malformed { .. })),
        ("L1 table past the end", 40, (1u64 << 40).to_be_bytes().to_vec(), |e| matches!(e, BlockError::Truncated { .. })),
        ("refcount table past the end", 48, (1u64 << 40).to_be_bytes().to_vec(), |e| matches!(e, BlockError::Truncated { .. })),
        ("dirty", 72 + 7, vec![1], |e| matches!(e, BlockError::Malformed { .. })),
        ("encrypted", 32, 1u32.to_be_bytes().to_vec(), |e| matches!(e, BlockError::Unsupported { .. })),
    ];
    for (what, at, bytes, want) in cases {
        patch(&p, at, &bytes);
        println!("{what}:");
        refused(&p, &p, &[&p], want);
        patch(&p, 0, &good);
    }
    util::open_when_free(&p, &OpenOptions::default()).expect("restored header opens");
}

#[test]
fn qcow2_truncated() {
    let dir = TempDir::new("qcow2-trunc");
    let p = qcow2(&dir, "q.qcow2");
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 200_000).unwrap();
    let msg = refused(&p, &p, &[&p], |e| matches!(e, BlockError::Truncated { .. }));
    assert!(msg.contains("past the end"), "{msg}");
}

#[test]
fn qcow2_missing_and_looping_backing_files() {
    let dir = TempDir::new("qcow2-chain");
    let a = qcow2(&dir, "a.qcow2");
    let b = dir.join("b.qcow2");
    block::create(&b, CreateFormat::Qcow2, 0, Some(&a)).unwrap();
    std::fs::rename(&a, dir.join("gone.qcow2")).unwrap();
    let msg = refused(&b, &b, &[&b], |e| matches!(e, BlockError::ParentMissing { .. }));
    assert!(msg.contains("a.qcow2"), "{msg}");
    std::fs::rename(dir.join("gone.qcow2"), &a).unwrap();
    let Some(bin) = qemu_img("qcow2_missing_and_looping_backing_files (loop half)") else { return };
    // a -> b -> a, made with an unsafe rebase.
    qemu_ok(&bin, &["rebase", "-u", "-F", "qcow2", "-b", "b.qcow2", s(&a)]);
    refused(&b, &b, &[&a, &b], |e| matches!(e, BlockError::ParentLoop { .. }));
}
