//! Not a test: what a frame costs from guest memory to the window at 640x480 and 1920x1080,
//! with one pixel or the whole picture changing, on the CPU (X11 shared memory and softbuffer,
//! also at twice the size) and on wgpu's Vulkan (render and present apart, wall and CPU time,
//! and the X server's CPU), and the CPU an idle text-mode guest in the window uses, under Xvfb
//! (`cargo bench -p frontend --bench frame`; `FERRITE_BENCH_RENDERERS=x11,soft` for some).
//! The render alone, in the 32-, 16- and 8-bit modes: `cargo bench -p machine --bench render`.

#[allow(dead_code, unused_imports)]
#[path = "../tests/window.rs"]
mod window;

fn main() {
    window::frame_cost_and_idle_cpu();
}
