//! Not a test: what a frame costs from guest memory to the window at 640x480 and 1920x1080
//! with each renderer, and the CPU an idle text-mode guest in the window uses, under Xvfb
//! (`cargo bench -p frontend --bench frame`). The render alone, for whole pictures too:
//! `cargo bench -p machine --bench render`.

#[allow(dead_code, unused_imports)]
#[path = "../tests/window.rs"]
mod window;

fn main() {
    window::frame_cost_and_idle_cpu();
}
