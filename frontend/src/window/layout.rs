//! Where the guest's picture goes in the window: its shape on a monitor (the VGA's own modes
//! fill a 4:3 screen whatever their pixel count, as a CRT shows them; larger modes, which only
//! VBE sets, have square pixels), the rectangle it is drawn in for integer or fit-to-window
//! scaling, and the window size that shows it at a whole multiple.

use crate::cli::{Aspect, Scaling};

/// A rectangle in window pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// The largest frame a VGA CRT mode gives (720x400 text, 640x480 graphics, 360x480 mode X):
/// up to it a picture fills a 4:3 screen.
const CRT_MAX: (u32, u32) = (720, 480);

/// The picture's size on a monitor, in square units, for a `w` x `h` frame: 4:3 for the
/// VGA's own modes (the larger side kept, the other stretched), the frame itself otherwise.
pub fn display_size(w: u32, h: u32, aspect: Aspect) -> (u32, u32) {
    if w == 0 || h == 0 {
        return (w.max(1), h.max(1));
    }
    if aspect == Aspect::Square || w > CRT_MAX.0 || h > CRT_MAX.1 {
        return (w, h);
    }
    if w * 3 >= h * 4 {
        (w, (w * 3).div_ceil(4))
    } else {
        ((h * 4).div_ceil(3), h)
    }
}

/// Where a picture of display size `d` goes in a `win` window: centred, as large as
/// `scaling` allows. Integer scaling falls back to fitting when not even one whole multiple
/// fits.
pub fn place(d: (u32, u32), win: (u32, u32), scaling: Scaling) -> Rect {
    let (dw, dh) = (u64::from(d.0.max(1)), u64::from(d.1.max(1)));
    let (ww, wh) = (u64::from(win.0), u64::from(win.1));
    let k = (ww / dw).min(wh / dh);
    let (w, h) = if scaling == Scaling::Integer && k >= 1 {
        (dw * k, dh * k)
    } else if ww * dh <= wh * dw {
        // The width decides.
        (ww, (ww * dh + dw / 2) / dw)
    } else {
        ((wh * dw + dh / 2) / dh, wh)
    };
    let (w, h) = (w.min(ww), h.min(wh));
    Rect { x: ((ww - w) / 2) as u32, y: ((wh - h) / 2) as u32, w: w as u32, h: h as u32 }
}

/// The whole multiple of display size `d` that a `win` window holds (at least 1).
pub fn scale_of(d: (u32, u32), win: (u32, u32)) -> u32 {
    (win.0 / d.0.max(1)).min(win.1 / d.1.max(1)).max(1)
}

/// The largest whole multiple of `d` that fits in `area` (a monitor, less some room for the
/// desktop's panels), at least 1.
pub fn fitting_scale(d: (u32, u32), area: (u32, u32)) -> u32 {
    let room = (area.0 * 9 / 10, area.1 * 9 / 10);
    scale_of(d, room).min(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vga_modes_fill_four_by_three() {
        assert_eq!(display_size(720, 400, Aspect::Auto), (720, 540), "80x25 text");
        assert_eq!(display_size(320, 200, Aspect::Auto), (320, 240), "mode 13h");
        assert_eq!(display_size(640, 350, Aspect::Auto), (640, 480), "EGA");
        assert_eq!(display_size(640, 480, Aspect::Auto), (640, 480));
        assert_eq!(display_size(360, 480, Aspect::Auto), (640, 480), "mode X, tall");
        assert_eq!(display_size(1920, 1080, Aspect::Auto), (1920, 1080), "VBE: square pixels");
        assert_eq!(display_size(800, 600, Aspect::Auto), (800, 600));
        assert_eq!(display_size(320, 200, Aspect::Square), (320, 200));
    }

    #[test]
    fn integer_scaling_centres_a_whole_multiple() {
        assert_eq!(place((320, 240), (1000, 800), Scaling::Integer), Rect { x: 20, y: 40, w: 960, h: 720 });
        assert_eq!(place((720, 400), (720, 400), Scaling::Integer), Rect { x: 0, y: 0, w: 720, h: 400 });
        // Too small for one: fit instead.
        assert_eq!(place((1920, 1080), (960, 600), Scaling::Integer), Rect { x: 0, y: 30, w: 960, h: 540 });
    }

    #[test]
    fn fit_scaling_fills_one_side() {
        assert_eq!(place((320, 240), (1000, 800), Scaling::Fit), Rect { x: 0, y: 25, w: 1000, h: 750 });
        assert_eq!(place((320, 240), (1600, 900), Scaling::Fit), Rect { x: 200, y: 0, w: 1200, h: 900 });
        assert_eq!(place((4, 3), (0, 0), Scaling::Fit), Rect { x: 0, y: 0, w: 0, h: 0 });
    }

    #[test]
    fn window_scales() {
        assert_eq!(scale_of((320, 240), (960, 720)), 3);
        assert_eq!(scale_of((320, 240), (100, 100)), 1);
        assert_eq!(fitting_scale((720, 540), (1920, 1080)), 1);
        assert_eq!(fitting_scale((320, 240), (1920, 1080)), 4);
        assert_eq!(fitting_scale((320, 240), (100_000, 100_000)), 8);
    }
}
