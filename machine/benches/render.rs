//! Not a test: what the VGA's render costs, guest memory to an RGBA or BGRA frame, in the 32-, 16- and
//! 8-bit linear (VBE) modes at 640x480 and 1920x1080: a whole picture (a new mode, a palette
//! change, panning, a new buffer) and a picture of which one pixel changed (only its line is
//! drawn again).
//! `cargo bench -p machine --bench render`.

use machine::devices::vga::{self, Vga};
use machine::pci::PciFunction;
use machine::{Device, DeviceContext, Display, Frame, MachineEvent, PixelFormat};
use std::time::{Duration, Instant};

fn with<R>(vga: &mut Vga, f: impl FnOnce(&mut Vga, &mut DeviceContext) -> R) -> R {
    let (mut irqs, mut events, mut deadline) = (Vec::new(), Vec::<MachineEvent>::new(), None);
    let mut cx = DeviceContext::new(0, &mut irqs, &mut events, &mut deadline);
    f(vga, &mut cx)
}

/// This thread's CPU time: on a machine shared with other work, wall time counts the waits.
fn cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Mean wall time and CPU time of `f` over `runs` runs, in milliseconds.
fn mean(runs: u32, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let (wall, cpu) = (Instant::now(), cpu_time());
    for _ in 0..runs {
        f();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(runs);
    (ms(wall.elapsed()), ms(cpu_time() - cpu))
}

fn main() {
    for (w, h, bpp) in [(640u16, 480u16, 32u16), (1920, 1080, 32), (1920, 1080, 16), (1920, 1080, 8)] {
        let mut vga = Vga::new(None);
        for (i, v) in [(vga::vbe::XRES, w), (vga::vbe::YRES, h), (vga::vbe::BPP, bpp), (vga::vbe::ENABLE, 0x41)] {
            with(&mut vga, |d, cx| {
                d.io_write(vga::vbe::INDEX_PORT, 2, i as u32, cx);
                d.io_write(vga::vbe::DATA_PORT, 2, u32::from(v), cx);
            });
        }
        // A picture in every pixel.
        let size = u64::from(w) * u64::from(h) * u64::from(bpp / 8);
        for at in (0..size).step_by(8) {
            with(&mut vga, |d, cx| d.bar_write(0, at, 8, at.wrapping_mul(0x9E37_79B9_7F4A_7C15), cx));
        }
        // RGBA (screenshots, wgpu, softbuffer) and BGRA (X11's byte order, the window's
        // shared memory).
        for format in [PixelFormat::Rgba, PixelFormat::Bgra] {
            let mut frame = Frame { format, ..Frame::new() };
            let whole = mean(50, || {
                frame.drawn = 0;
                frame.generation = 0;
                vga.render(0, &mut frame);
            });
            let mut k = 0u64;
            let pixel = mean(2000, || {
                k += 1;
                with(&mut vga, |d, cx| d.bar_write(0, (k * 4096 + 12) % size, 4, k, cx));
                vga.render(0, &mut frame);
            });
            println!(
                "render {w}x{h} {bpp} bpp to {format:?}: whole picture {:.3} ms ({:.3} ms CPU), one pixel changed {:.3} ms ({:.3} ms CPU)",
                whole.0, whole.1, pixel.0, pixel.1
            );
        }
    }
}
