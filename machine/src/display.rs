//! What a display adapter shows, as the frontends take it: a frame of 32-bit pixels (in the
//! byte order the front end asks for) with a generation number (so an unchanged picture is not
//! encoded or uploaded again), and the text of the screen for scripts. The VGA device
//! (`devices::vga`) is the one implementation.

use std::any::Any;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// How a frame's pixels lie in memory: four bytes each, the last (alpha) always 0xFF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PixelFormat {
    /// Bytes R, G, B, A: PNG, wgpu's RGBA textures.
    #[default]
    Rgba,
    /// Bytes B, G, R, A: the little-endian word 0xAARRGGBB of X11's 24- and 32-bit TrueColor
    /// visuals (and Wayland's ARGB8888), which a display server takes as it is.
    Bgra,
}

impl PixelFormat {
    /// The colour `rgba` (bytes R, G, B, A) as this format's bytes; and back, the swap being
    /// its own inverse.
    pub fn from_rgba(self, rgba: [u8; 4]) -> [u8; 4] {
        match self {
            PixelFormat::Rgba => rgba,
            PixelFormat::Bgra => [rgba[2], rgba[1], rgba[0], rgba[3]],
        }
    }

    /// A pixel of this format as bytes R, G, B, A.
    pub fn to_rgba(self, px: [u8; 4]) -> [u8; 4] {
        self.from_rgba(px)
    }

    /// RGBA pixels (`src`) as this format's, into `out` (as many pixels as both hold): a copy,
    /// or one straight loop over words that the compiler turns into vector code.
    pub fn convert_rgba(self, src: &[u8], out: &mut [u8]) {
        match self {
            PixelFormat::Rgba => {
                let n = src.len().min(out.len());
                out[..n].copy_from_slice(&src[..n]);
            }
            PixelFormat::Bgra => {
                for (o, s) in out.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                    let v = u32::from_le_bytes(s.try_into().expect("4 bytes"));
                    let swapped = (v & 0xFF00_FF00) | (v & 0xFF) << 16 | (v >> 16 & 0xFF);
                    o.copy_from_slice(&swapped.to_le_bytes());
                }
            }
        }
    }
}

/// Memory a front end lends frames for their pixels: a segment it shares with the display
/// server, say, so that the picture drawn into it needs no copy on the front end's side.
pub trait PixelMemory: Send + std::fmt::Debug {
    /// Makes the memory at least `len` bytes long (its contents unspecified); false when it
    /// cannot, and the frame keeps its pixels in memory of its own instead.
    fn reserve(&mut self, len: usize) -> bool;
    /// The memory (at least as long as the last `reserve` asked).
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
    /// For the front end to recognise its own memory.
    fn as_any(&self) -> &dyn Any;
}

/// A frame's pixel bytes: a vector of its own, or memory lent by a front end. Either way a
/// slice of exactly the frame's bytes.
pub struct Pixels {
    len: usize,
    store: Store,
}

enum Store {
    Owned(Vec<u8>),
    Lent(Box<dyn PixelMemory>),
}

impl Pixels {
    /// Pixels in memory lent by a front end (empty until resized).
    pub fn lent(memory: Box<dyn PixelMemory>) -> Pixels {
        Pixels { len: 0, store: Store::Lent(memory) }
    }

    /// `len` bytes (new bytes unspecified, zero in memory of its own).
    pub fn resize(&mut self, len: usize) {
        match &mut self.store {
            Store::Owned(v) => v.resize(len, 0),
            Store::Lent(m) => {
                if !m.reserve(len) {
                    tracing::warn!("cannot have {len} bytes of the front end's memory for a frame: using memory of its own");
                    self.store = Store::Owned(vec![0; len]);
                }
            }
        }
        self.len = len;
    }

    /// The front end's memory the pixels are in, if they are in lent memory.
    pub fn memory(&self) -> Option<&dyn PixelMemory> {
        match &self.store {
            Store::Lent(m) => Some(m.as_ref()),
            Store::Owned(_) => None,
        }
    }
}

impl Default for Pixels {
    fn default() -> Pixels {
        Pixels::from(Vec::new())
    }
}

impl From<Vec<u8>> for Pixels {
    fn from(v: Vec<u8>) -> Pixels {
        Pixels { len: v.len(), store: Store::Owned(v) }
    }
}

impl Deref for Pixels {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.store {
            Store::Owned(v) => &v[..self.len],
            Store::Lent(m) => &m.bytes()[..self.len],
        }
    }
}

impl DerefMut for Pixels {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.store {
            Store::Owned(v) => &mut v[..self.len],
            Store::Lent(m) => &mut m.bytes_mut()[..self.len],
        }
    }
}

/// A copy of lent pixels is a vector of its own.
impl Clone for Pixels {
    fn clone(&self) -> Pixels {
        Pixels::from(self.to_vec())
    }

    /// Into the same memory where it is long enough (a lent segment stays lent).
    fn clone_from(&mut self, source: &Pixels) {
        self.resize(source.len());
        self.copy_from_slice(source);
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Pixels) -> bool {
        **self == **other
    }
}

impl Eq for Pixels {}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.store {
            Store::Owned(_) => "own memory",
            Store::Lent(m) => return write!(f, "{} bytes in {m:?}", self.len),
        };
        write!(f, "{} bytes in {kind}", self.len)
    }
}

/// A display adapter's video memory as a front end sees it: the memory file (memfd) behind it,
/// which a display server can map, and a read-only mapping of it in this process. The guest
/// writes it all the time (as it writes real video memory while it is scanned out): readers
/// copy what is there, and a picture read while the guest draws may tear.
#[derive(Clone)]
pub struct VideoMemory(Arc<VideoMap>);

struct VideoMap {
    file: Arc<OwnedFd>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and only read with copies (`VideoMemory::read`); it lives
// until the last clone is dropped.
unsafe impl Send for VideoMap {}
unsafe impl Sync for VideoMap {}

impl VideoMemory {
    /// `len` bytes of `file`, mapped read-only.
    pub(crate) fn map(file: Arc<OwnedFd>, len: usize) -> std::io::Result<VideoMemory> {
        // SAFETY: a new read-only shared mapping of the file at an address the kernel picks,
        // unmapped in `Drop for VideoMap`.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(VideoMemory(Arc::new(VideoMap { file, ptr: ptr.cast(), len })))
    }

    /// The memory file (for a display server to map; a front end dups it to pass it on).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.file.as_fd()
    }

    pub fn len(&self) -> usize {
        self.0.len
    }

    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// Whether `other` is the same memory (a new machine's video memory is not).
    pub fn same(&self, other: &VideoMemory) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Copies the bytes from `at` into `out` (as many as there are; the rest of `out` is left).
    pub fn read(&self, at: usize, out: &mut [u8]) {
        let n = out.len().min(self.0.len.saturating_sub(at));
        // SAFETY: `at..at + n` lies in the mapping, which lives as long as `self`. The guest
        // may write those bytes meanwhile (another thread, or the memory's other mapping):
        // a raw copy of bytes, as a display server's, not a reference to them.
        unsafe { std::ptr::copy_nonoverlapping(self.0.ptr.add(at), out.as_mut_ptr(), n) };
    }
}

impl Drop for VideoMap {
    fn drop(&mut self) {
        // SAFETY: mapped in `VideoMemory::map` with this length, unmapped once.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

impl std::fmt::Debug for VideoMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "video memory ({} bytes, fd {})", self.0.len, self.0.file.as_raw_fd())
    }
}

/// A picture that is video memory itself: a linear mode of 32-bit pixels (bytes B, G, R and
/// one unused, as a 24-bit X11 visual reads them) whose rows start at `offset` and are
/// `pitch` bytes apart (a multiple of 4). A front end that shows it straight from video
/// memory copies nothing.
#[derive(Clone, Debug)]
pub struct Scanout {
    pub memory: VideoMemory,
    pub offset: usize,
    pub pitch: usize,
}

impl PartialEq for Scanout {
    fn eq(&self, other: &Scanout) -> bool {
        self.memory.same(&other.memory) && (self.offset, self.pitch) == (other.offset, other.pitch)
    }
}

impl Eq for Scanout {}

/// A picture: `width` x `height` pixels of 4 bytes in `format`, row-major, no padding between
/// rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// Set when the frame is made; a display draws in it.
    pub format: PixelFormat,
    pub pixels: Pixels,
    /// Set by [`Display::render`]: equal generations mean equal pictures. 0 is never drawn.
    pub generation: u64,
    /// The generation the pixels show (0: unknown). It trails `generation` when a front end
    /// swaps buffers (the mailbox hands back an older one); the display then redraws only what
    /// changed since this one.
    pub drawn: u64,
    /// The rows the last render wrote: every row that can differ from the picture before
    /// (all of them when it drew the whole picture, none when nothing changed).
    pub changed_rows: std::ops::Range<u32>,
    /// Set by a front end: it shows a picture in video memory ([`Scanout`]) as it is, so the
    /// display need not copy one into `pixels`.
    pub accepts_scanout: bool,
    /// Set by [`Display::render`] (only when `accepts_scanout`): the picture is in video
    /// memory, not in `pixels` (which are stale; [`Frame::materialise`] copies it there).
    pub scanout: Option<Scanout>,
}

impl Frame {
    /// An empty RGBA frame in memory of its own.
    pub fn new() -> Frame {
        Frame::default()
    }

    /// An empty frame of `format` whose pixels go in `memory`, lent by a front end.
    pub fn lent(format: PixelFormat, memory: Box<dyn PixelMemory>) -> Frame {
        Frame { format, pixels: Pixels::lent(memory), ..Frame::default() }
    }

    /// Resizes to `width` x `height` (contents unspecified until drawn).
    pub fn resize(&mut self, width: u32, height: u32) {
        if (width, height) != (self.width, self.height) {
            self.drawn = 0;
        }
        self.width = width;
        self.height = height;
        self.pixels.resize(width as usize * height as usize * 4);
    }

    /// A picture in video memory (see [`Frame::scanout`]) copied into `pixels`, in the
    /// frame's format, for a front end that needs the pixels themselves (a scaled picture, a
    /// screenshot). Nothing for a frame whose picture is in `pixels` already.
    pub fn materialise(&mut self) {
        let Some(s) = self.scanout.take() else { return };
        self.pixels.resize(self.width as usize * self.height as usize * 4);
        let row = self.width as usize * 4;
        if row == 0 {
            return;
        }
        let format = self.format;
        for (y, out) in self.pixels.chunks_exact_mut(row).enumerate() {
            let at = s.offset + y * s.pitch;
            if at + row > s.memory.len() {
                out.fill(0); // beyond video memory's end: black
            }
            s.memory.read(at, out);
            // B, G, R, unused: BGRA with alpha 0xFF, or swapped (straight word loops).
            for px in out.chunks_exact_mut(4) {
                let v = u32::from_le_bytes(px.try_into().expect("4 bytes")) | 0xFF00_0000;
                px.copy_from_slice(&v.to_le_bytes());
            }
            if format == PixelFormat::Rgba {
                for px in out.chunks_exact_mut(4) {
                    let v = u32::from_le_bytes(px.try_into().expect("4 bytes"));
                    let swapped = (v & 0xFF00_FF00) | (v & 0xFF) << 16 | (v >> 16 & 0xFF);
                    px.copy_from_slice(&swapped.to_le_bytes());
                }
            }
        }
    }

    /// The pixel at (x, y) as [r, g, b, a]; None outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 4]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        if let Some(s) = &self.scanout {
            let mut px = [0; 4];
            s.memory.read(s.offset + y as usize * s.pitch + x as usize * 4, &mut px);
            return Some([px[2], px[1], px[0], 0xFF]);
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        self.pixels[i..i + 4].try_into().ok().map(|p| self.format.to_rgba(p))
    }

    /// The picture as RGBA bytes (borrowed when it is RGBA already).
    pub fn rgba(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.scanout.is_some() {
            let mut copy = Frame { width: self.width, height: self.height, scanout: self.scanout.clone(), ..Frame::default() };
            copy.materialise();
            return std::borrow::Cow::Owned(copy.pixels.to_vec());
        }
        match self.format {
            PixelFormat::Rgba => std::borrow::Cow::Borrowed(&self.pixels[..]),
            PixelFormat::Bgra => {
                let mut out = vec![0; self.pixels.len()];
                PixelFormat::Bgra.convert_rgba(&self.pixels, &mut out);
                std::borrow::Cow::Owned(out)
            }
        }
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

    /// The current picture, if it is a linear picture of 32-bit pixels in video memory that a
    /// front end can show as it is (see [`Scanout`]): where it is and its size.
    fn scanout(&self) -> Option<(Scanout, u32, u32)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory lent by a pretend front end, which refuses more than `limit` bytes.
    #[derive(Debug)]
    struct Lent {
        bytes: Vec<u8>,
        limit: usize,
    }

    impl PixelMemory for Lent {
        fn reserve(&mut self, len: usize) -> bool {
            if len > self.limit {
                return false;
            }
            self.bytes.resize(len.max(self.bytes.len()), 0xEE);
            true
        }
        fn bytes(&self) -> &[u8] {
            &self.bytes
        }
        fn bytes_mut(&mut self) -> &mut [u8] {
            &mut self.bytes
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[test]
    fn lent_pixels_are_the_frames_exact_bytes() {
        let mut f = Frame::lent(PixelFormat::Bgra, Box::new(Lent { bytes: Vec::new(), limit: 64 }));
        f.resize(4, 2);
        assert_eq!(f.pixels.len(), 32);
        f.pixels[..4].copy_from_slice(&[1, 2, 3, 0xFF]);
        assert_eq!(f.pixel(0, 0), Some([3, 2, 1, 0xFF]), "BGRA read as RGBA");
        assert_eq!(&f.rgba()[..4], &[3, 2, 1, 0xFF]);
        let lent = f.pixels.memory().and_then(|m| m.as_any().downcast_ref::<Lent>()).expect("still lent");
        assert_eq!(&lent.bytes[..4], &[1, 2, 3, 0xFF], "written where the front end sees it");
        // Smaller: the same memory, the slice shorter.
        f.resize(2, 2);
        assert_eq!(f.pixels.len(), 16);
        assert!(f.pixels.memory().is_some());
        // A copy is a vector of its own, equal in bytes.
        let copy = f.clone();
        assert!(copy.pixels.memory().is_none());
        assert_eq!(copy, f);
        // More than the front end gives: memory of its own, and the frame still works.
        f.resize(8, 8);
        assert!(f.pixels.memory().is_none());
        assert_eq!(f.pixels.len(), 256);
    }

    #[test]
    fn formats_convert_both_ways() {
        let rgba = [0x11, 0x22, 0x33, 0xFF, 0xAA, 0xBB, 0xCC, 0xFF];
        let mut bgra = [0u8; 8];
        PixelFormat::Bgra.convert_rgba(&rgba, &mut bgra);
        assert_eq!(bgra, [0x33, 0x22, 0x11, 0xFF, 0xCC, 0xBB, 0xAA, 0xFF]);
        let mut back = [0u8; 8];
        PixelFormat::Bgra.convert_rgba(&bgra, &mut back);
        assert_eq!(back, rgba);
        PixelFormat::Rgba.convert_rgba(&rgba, &mut back);
        assert_eq!(back, rgba);
        assert_eq!(PixelFormat::Bgra.from_rgba([1, 2, 3, 4]), [3, 2, 1, 4]);
    }
}
