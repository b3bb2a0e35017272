//! What a display adapter shows, as the frontends take it: a frame of RGBA pixels with a
//! generation number (so an unchanged picture is not encoded or uploaded again), and the text of
//! the screen for scripts. The VGA device (`devices::vga`) is the one implementation.

/// A picture: `width` x `height` pixels, RGBA8, row-major, no padding between rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
    /// Set by [`Display::render`]: equal generations mean equal pictures. 0 is never drawn.
    pub generation: u64,
    /// The generation the pixels show (0: unknown). It trails `generation` when a front end
    /// swaps buffers (the mailbox hands back an older one); the display then redraws only what
    /// changed since this one.
    pub drawn: u64,
    /// The rows the last render wrote: every row that can differ from the picture before
    /// (all of them when it drew the whole picture, none when nothing changed).
    pub changed_rows: std::ops::Range<u32>,
}

impl Frame {
    pub fn new() -> Frame {
        Frame::default()
    }

    /// Resizes to `width` x `height` (contents unspecified until drawn).
    pub fn resize(&mut self, width: u32, height: u32) {
        if (width, height) != (self.width, self.height) {
            self.drawn = 0;
        }
        self.width = width;
        self.height = height;
        self.pixels.resize(width as usize * height as usize * 4, 0);
    }

    /// The pixel at (x, y) as [r, g, b, a]; None outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 4]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        self.pixels[i..i + 4].try_into().ok()
    }
}

/// A device that drives a screen.
pub trait Display {
    /// Draws the current picture at virtual time `now` (cursor and text blink follow it) into
    /// `frame`, unless `frame` already holds it: returns whether it drew.
    fn render(&mut self, now: u64, frame: &mut Frame) -> bool;

    /// The screen as text: in text modes one line per character row (trailing blanks dropped,
    /// code page 437 mapped to Unicode); otherwise a single line naming the mode, such as
    /// `graphics mode 320x200, 256 colours` or `display off`.
    fn screen_text(&self) -> String;
}
