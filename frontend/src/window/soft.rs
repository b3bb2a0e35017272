//! Drawing the guest's frame with the CPU (softbuffer: shared memory on X11, a buffer on
//! Wayland), for hosts where wgpu finds no adapter or when `--renderer soft` asks. The picture
//! is scaled nearest-neighbour into the window's buffer; rows that repeat a source row are
//! copied from the row above.

use super::layout::Rect;
use machine::{Frame, PixelFormat};
use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::Arc;
use winit::window::Window;

pub struct SoftPresenter {
    surface: softbuffer::Surface<Arc<Window>, Arc<Window>>,
    size: (u32, u32),
    /// For each column of the rectangle, the source column (for the last frame width and
    /// rectangle width).
    columns: Vec<u32>,
    columns_for: (u32, u32),
    /// A source row as window pixels, for stretched rows.
    row: Vec<u32>,
    /// What the window's buffer shows, as of the last present: the rectangle, the window's
    /// size and the picture's.
    shown: Option<(Rect, (u32, u32), (u32, u32))>,
}

impl SoftPresenter {
    pub fn new(window: Arc<Window>, size: (u32, u32)) -> Result<SoftPresenter, String> {
        let context = softbuffer::Context::new(window.clone()).map_err(|e| format!("softbuffer: {e}"))?;
        let surface = softbuffer::Surface::new(&context, window).map_err(|e| format!("softbuffer: {e}"))?;
        let mut p =
            SoftPresenter { surface, size: (0, 0), columns: Vec::new(), columns_for: (0, 0), row: Vec::new(), shown: None };
        p.resize(size);
        Ok(p)
    }

    pub fn name(&self) -> &str {
        "CPU (softbuffer)"
    }

    pub fn resize(&mut self, size: (u32, u32)) {
        let (w, h) = (size.0.max(1), size.1.max(1));
        if let (Some(nw), Some(nh)) = (NonZeroU32::new(w), NonZeroU32::new(h)) {
            if let Err(e) = self.surface.resize(nw, nh) {
                tracing::warn!("softbuffer: {e}");
            }
        }
        self.size = (w, h);
        self.shown = None;
    }

    /// Draws `frame` into `rect` (black around it) and presents. With `rows` (the picture's
    /// rows that changed since the last draw) and a buffer that still holds the last picture
    /// in the same place, only the window rows showing those are drawn and sent.
    pub fn draw(&mut self, frame: &Frame, rect: Rect, rows: Option<Range<u32>>) -> Result<(), String> {
        let (ww, wh) = self.size;
        if (rect.w, frame.width) != self.columns_for {
            self.columns = (0..rect.w).map(|x| scaled(x, frame.width, rect.w)).collect();
            self.columns_for = (rect.w, frame.width);
        }
        let mut buffer = self.surface.buffer_mut().map_err(|e| format!("softbuffer: {e}"))?;
        if buffer.len() < ww as usize * wh as usize {
            return Ok(()); // a resize is on its way
        }
        let drawn = frame.width > 0 && frame.height > 0 && frame.pixels.len() >= (frame.width * frame.height * 4) as usize;
        let layout = (rect, self.size, (frame.width, frame.height));
        let only = rows.filter(|_| drawn && buffer.age() == 1 && self.shown == Some(layout));
        // The window rows to draw.
        let window_rows = match &only {
            Some(r) => {
                let from = (rect.y..rect.y + rect.h).find(|&y| scaled(y - rect.y, frame.height, rect.h) >= r.start);
                let to = (rect.y..rect.y + rect.h).rev().find(|&y| scaled(y - rect.y, frame.height, rect.h) < r.end);
                match (from, to) {
                    (Some(a), Some(b)) if a <= b && !r.is_empty() => a..b + 1,
                    _ => return Ok(()), // nothing changed: the window shows the picture
                }
            }
            None => 0..wh,
        };
        let row_len = ww as usize;
        let mut last_source = None;
        for y in window_rows.clone() {
            let row = &mut buffer[y as usize * row_len..][..row_len];
            let inside = drawn && y >= rect.y && y < rect.y + rect.h;
            if !inside {
                row.fill(0);
                continue;
            }
            let sy = scaled(y - rect.y, frame.height, rect.h);
            let (left, rest) = row.split_at_mut(rect.x as usize);
            let (middle, right) = rest.split_at_mut(rect.w as usize);
            left.fill(0);
            right.fill(0);
            if last_source == Some(sy) {
                let above = (y as usize - 1) * row_len + rect.x as usize;
                buffer.copy_within(above..above + rect.w as usize, y as usize * row_len + rect.x as usize);
                continue;
            }
            let src = &frame.pixels[(sy * frame.width * 4) as usize..][..(frame.width * 4) as usize];
            if rect.w == frame.width {
                to_xrgb(frame.format, src, middle);
            } else {
                self.row.resize(frame.width as usize, 0);
                to_xrgb(frame.format, src, &mut self.row);
                for (out, &sx) in middle.iter_mut().zip(&self.columns) {
                    *out = self.row[sx as usize];
                }
            }
            last_source = Some(sy);
        }
        self.shown = Some(layout);
        if only.is_none() {
            return buffer.present().map_err(|e| format!("softbuffer: {e}"));
        }
        let damage = softbuffer::Rect {
            x: rect.x,
            y: window_rows.start,
            width: NonZeroU32::new(rect.w.max(1)).expect("not zero"),
            height: NonZeroU32::new(window_rows.len() as u32).expect("rows to draw"),
        };
        buffer.present_with_damage(&[damage]).map_err(|e| format!("softbuffer: {e}"))
    }
}

/// A frame's pixels as the window's 0RGB words: one straight loop over 4-byte pieces, which
/// the compiler turns into vector code (a 1920x1080 picture converts as fast as it copies).
/// BGRA bytes are those words already (alpha in the unused byte).
fn to_xrgb(format: PixelFormat, src: &[u8], out: &mut [u32]) {
    match format {
        PixelFormat::Rgba => {
            for (o, s) in out.iter_mut().zip(src.chunks_exact(4)) {
                let v = u32::from_le_bytes(s.try_into().expect("4 bytes"));
                *o = (v & 0xFF) << 16 | (v & 0xFF00) | (v >> 16 & 0xFF);
            }
        }
        PixelFormat::Bgra => {
            for (o, s) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = u32::from_le_bytes(s.try_into().expect("4 bytes")) & 0xFF_FFFF;
            }
        }
    }
}

/// The source index for output index `i` when `from` pixels are stretched over `to`.
pub fn scaled(i: u32, from: u32, to: u32) -> u32 {
    ((u64::from(i) * u64::from(from) + u64::from(from) / 2) / u64::from(to.max(1))).min(u64::from(from.saturating_sub(1)))
        as u32
}

#[cfg(test)]
mod tests {
    use super::scaled;
    use machine::PixelFormat;

    #[test]
    fn rgba_becomes_xrgb() {
        let mut out = [0u32; 2];
        super::to_xrgb(PixelFormat::Rgba, &[0x11, 0x22, 0x33, 0xFF, 0xAA, 0xBB, 0xCC, 0x00], &mut out);
        assert_eq!(out, [0x0011_2233, 0x00AA_BBCC]);
        super::to_xrgb(PixelFormat::Bgra, &[0x33, 0x22, 0x11, 0xFF, 0xCC, 0xBB, 0xAA, 0xFF], &mut out);
        assert_eq!(out, [0x0011_2233, 0x00AA_BBCC]);
    }

    #[test]
    fn whole_multiples_repeat_each_source_pixel() {
        let cols: Vec<u32> = (0..6).map(|x| scaled(x, 3, 6)).collect();
        assert_eq!(cols, [0, 0, 1, 1, 2, 2]);
        let same: Vec<u32> = (0..4).map(|x| scaled(x, 4, 4)).collect();
        assert_eq!(same, [0, 1, 2, 3]);
        // 200 rows over 240: every row is used, some twice.
        let rows: Vec<u32> = (0..240).map(|y| scaled(y, 200, 240)).collect();
        assert_eq!(rows.iter().copied().collect::<std::collections::BTreeSet<_>>().len(), 200);
        assert_eq!(*rows.last().unwrap(), 199);
    }
}
