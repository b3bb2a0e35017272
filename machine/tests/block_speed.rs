//! Throughput figures per format, printed, never asserted (ignored by default):
//! `cargo test -p machine --test block_speed -- --ignored --nocapture`.

#[path = "block_util.rs"]
mod util;

use machine::block::{self, CreateFormat, OpenOptions};
use std::time::Instant;
use util::{pattern, Rng, TempDir, MIB};

#[test]
#[ignore = "a benchmark that prints throughput, not a test; run it with `cargo test -p machine --test block_speed -- --ignored --nocapture`"]
fn throughput() {
    let dir = TempDir::new("speed");
    let size = 256 * MIB;
    let chunk = pattern(1, 64 * 1024);
    for (name, f) in [("raw", CreateFormat::Raw), ("vhd-fixed", CreateFormat::VhdFixed), ("vhd-dynamic", CreateFormat::VhdDynamic), ("qcow2", CreateFormat::Qcow2)] {
        let p = dir.join(name);
        block::create(&p, f, size, None).unwrap();
        let mut d = block::open(&p, &OpenOptions::default()).unwrap();
        let t = Instant::now();
        for off in (0..size).step_by(chunk.len()) {
            d.write_at(off, &chunk).unwrap();
        }
        d.flush().unwrap();
        let w = t.elapsed().as_secs_f64();
        let mut buf = vec![0u8; chunk.len()];
        let t = Instant::now();
        for off in (0..size).step_by(chunk.len()) {
            d.read_at(off, &mut buf).unwrap();
        }
        let r = t.elapsed().as_secs_f64();
        let mut rng = Rng::new(7);
        let small = pattern(2, 4096);
        let t = Instant::now();
        for i in 0..4000 {
            d.write_at(rng.below(size / 4096) * 4096, &small).unwrap();
            if i % 100 == 99 {
                d.flush().unwrap();
            }
        }
        d.flush().unwrap();
        let rw = t.elapsed().as_secs_f64();
        println!(
            "{name:12} sequential 64 KiB writes + flush {:7.0} MiB/s, reads {:7.0} MiB/s; 4 KiB random writes (flush every 100) {:7.0} IOPS",
            size as f64 / MIB as f64 / w,
            size as f64 / MIB as f64 / r,
            4000.0 / rw
        );
    }
}
