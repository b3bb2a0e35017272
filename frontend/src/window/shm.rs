//! Drawing the guest's frame through the X server's shared memory (MIT-SHM 1.2, memfd
//! segments passed to the server): the frames the emulation thread renders into are themselves
//! segments the X server has attached, in the window's byte order (BGRA, the little-endian
//! 0xAARRGGBB of 24- and 32-bit TrueColor visuals). A picture shown at one window pixel per
//! guest pixel then costs this side one copy, video memory to the segment, on the emulation
//! thread; the window's thread sends a PutImage for the rows that changed and the X server
//! copies them in its own process. A scaled picture (integer or fit-to-window scaling, full
//! screen) is scaled nearest-neighbour into a segment of the window's own and sent from there.
//!
//! A linear 32-bit mode costs this side no copy at all: its bytes (B, G, R, unused) are what
//! the visual reads, and video memory is itself a memory file (the VGA's), attached once as a
//! segment; the frame then carries only where the picture is ([`machine::Scanout`]) and the
//! PutImage takes the changed rows from video memory at the mode's offset and pitch. The
//! guest writes that memory whenever it likes, as it writes real video memory while it is
//! scanned out, so nothing waits before it is written again and a picture may tear. Scaled,
//! such a picture is first copied out of video memory (`Frame::materialise`).
//!
//! The X server reads a segment after the PutImage, asynchronously: a segment is written again
//! only after the reply to a request sent after its PutImage (requests are handled in order),
//! which the window waits for before it hands a frame back to the emulation thread
//! ([`ShmPresenter::recycle`]) and before it draws into its own segment again.
//!
//! Our own connection to the X server (DISPLAY), beside winit's: its replies and errors do not
//! mix with winit's events. Where MIT-SHM or a 24/32-bit little-endian TrueColor window is not
//! to be had, [`ShmPresenter::new`] says why and the window draws with softbuffer.

use super::layout::Rect;
use super::soft::scaled;
use machine::{Frame, PixelFormat, PixelMemory, VideoMemory};
use std::ops::Range;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use winit::raw_window_handle::{HasWindowHandle, RawWindowHandle};
use winit::window::Window;
use x11rb::connection::{Connection, RequestConnection, SequenceNumber};
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{self, ConnectionExt as _, CreateGCAux, ImageFormat, ImageOrder, VisualClass};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

/// The X11 window id of `window`; None on another platform (Wayland).
pub fn x11_window(window: &Window) -> Option<xproto::Window> {
    match window.window_handle().ok()?.as_raw() {
        RawWindowHandle::Xlib(h) => Some(h.window as xproto::Window),
        RawWindowHandle::Xcb(h) => Some(h.window.get()),
        _ => None,
    }
}

/// Where a picture is in the window: its rectangle, the window's size and the picture's.
type Layout = (Rect, (u32, u32), (u32, u32));

pub struct ShmPresenter {
    conn: Arc<RustConnection>,
    window: xproto::Window,
    gc: xproto::Gcontext,
    depth: u8,
    size: (u32, u32),
    /// Where scaled pictures (and frames that are not our segments) are drawn: the picture's
    /// rectangle in the window, row-major.
    canvas: Segment,
    /// The sequence number of a request sent after the last PutImage: its reply says the X
    /// server has read every segment sent so far. (Its cookie was forgotten, not dropped, so
    /// the reply waits to be collected.)
    pending: Option<SequenceNumber>,
    /// For each column of the rectangle, the source column (for the last frame width and
    /// rectangle width).
    columns: Vec<u32>,
    columns_for: (u32, u32),
    /// A source row as BGRA words, for stretched rows of an RGBA frame.
    row: Vec<u32>,
    /// What the window shows, as of the last draw: the rectangle, the window's size and the
    /// picture's.
    shown: Option<Layout>,
    errors: u64,
    /// The guest's video memory, attached as a segment (read-only): pictures in it (a linear
    /// 32-bit mode, [`machine::Scanout`]) are sent from it as they are.
    video: Option<(VideoMemory, shm::Seg)>,
    /// The server refused to attach video memory: pictures in it are copied out instead.
    video_refused: bool,
    /// Draws sent straight from video memory, from the frames' own segments, and through the
    /// canvas.
    from_video: u64,
    direct: u64,
    through_canvas: u64,
}

impl ShmPresenter {
    /// MIT-SHM for X11 window `id` (see [`x11_window`]), or why not.
    pub fn new(id: xproto::Window, size: (u32, u32)) -> Result<ShmPresenter, String> {
        let (conn, _) = RustConnection::connect(None).map_err(|e| format!("cannot connect to the X server: {e}"))?;
        let conn = Arc::new(conn);
        let failed = |e: &dyn std::fmt::Display| format!("X11: {e}");
        let version = conn
            .shm_query_version()
            .map_err(|e| format!("no MIT-SHM extension ({e})"))?
            .reply()
            .map_err(|e| format!("no MIT-SHM extension ({e})"))?;
        if (version.major_version, version.minor_version) < (1, 2) {
            return Err(format!(
                "MIT-SHM {}.{} cannot take memory file descriptors (1.2 can)",
                version.major_version, version.minor_version
            ));
        }
        let geometry = conn.get_geometry(id).map_err(|e| failed(&e))?.reply().map_err(|e| failed(&e))?;
        let attributes = conn.get_window_attributes(id).map_err(|e| failed(&e))?.reply().map_err(|e| failed(&e))?;
        let setup = conn.setup();
        let visual = setup
            .roots
            .iter()
            .flat_map(|s| &s.allowed_depths)
            .filter(|d| d.depth == geometry.depth)
            .flat_map(|d| &d.visuals)
            .find(|v| v.visual_id == attributes.visual);
        let bits = setup.pixmap_formats.iter().find(|f| f.depth == geometry.depth).map(|f| f.bits_per_pixel);
        let bgra = visual.is_some_and(|v| {
            matches!(v.class, VisualClass::TRUE_COLOR | VisualClass::DIRECT_COLOR)
                && (v.red_mask, v.green_mask, v.blue_mask) == (0xFF_0000, 0xFF00, 0xFF)
        });
        if !(bgra && bits == Some(32) && setup.image_byte_order == ImageOrder::LSB_FIRST && geometry.depth >= 24) {
            return Err(format!(
                "the window's pixels are not 32-bit little-endian 8:8:8 (depth {}, {bits:?} bits a pixel)",
                geometry.depth
            ));
        }
        // A segment the server attaches, checked: a server on another machine cannot.
        let mut probe = Segment::new(conn.clone());
        if !probe.reserve(4096) {
            return Err("cannot make a shared memory segment".into());
        }
        let seg = probe.map.as_ref().map(|m| m.seg).expect("reserved");
        conn.get_input_focus().map_err(|e| failed(&e))?.reply().map_err(|e| failed(&e))?;
        while let Some(event) = conn.poll_for_event().map_err(|e| failed(&e))? {
            if let Event::Error(e) = event {
                return Err(format!("the X server cannot attach our shared memory (segment {seg:#x}: {:?})", e.error_kind));
            }
        }
        let gc = conn.generate_id().map_err(|e| failed(&e))?;
        conn.create_gc(gc, id, &CreateGCAux::new().foreground(0).graphics_exposures(0))
            .map_err(|e| failed(&e))?
            .check()
            .map_err(|e| failed(&e))?;
        Ok(ShmPresenter {
            canvas: Segment::new(conn.clone()),
            conn,
            window: id,
            gc,
            depth: geometry.depth,
            size,
            pending: None,
            columns: Vec::new(),
            columns_for: (0, 0),
            row: Vec::new(),
            shown: None,
            errors: 0,
            video: None,
            video_refused: false,
            from_video: 0,
            direct: 0,
            through_canvas: 0,
        })
    }

    pub fn name(&self) -> &str {
        "CPU (X11 shared memory)"
    }

    pub fn resize(&mut self, size: (u32, u32)) {
        self.size = (size.0.max(1), size.1.max(1));
        self.shown = None;
    }

    /// The frame the window no longer shows, to be drawn into again: once the X server has
    /// read it; and a segment of ours in its place if it is not one (the first frames, drawn
    /// before the window existed), so from then on the emulation thread draws into segments.
    /// Such frames accept pictures left in video memory (`Frame::accepts_scanout`).
    pub fn recycle(&mut self, old: Frame) -> Frame {
        self.wait();
        if self.segment_of(&old).is_some() {
            return old;
        }
        Frame { accepts_scanout: !self.video_refused, ..Frame::lent(PixelFormat::Bgra, Box::new(Segment::new(self.conn.clone()))) }
    }

    /// Whether `frame`, its picture in video memory, is drawn from there into `rect` (at one
    /// window pixel per guest pixel, if the server could attach video memory); otherwise its
    /// pixels are needed (`Frame::materialise`).
    pub fn shows_scanout(&mut self, frame: &Frame, rect: Rect) -> bool {
        let Some(s) = &frame.scanout else { return false };
        (rect.w, rect.h) == (frame.width, frame.height) && self.attach_video(&s.memory).is_ok()
    }

    /// Draws `frame` into `rect` (black around it). With `rows` (the picture's rows that
    /// changed since the last draw) and the window showing the last picture in the same place,
    /// only the window rows showing those are sent.
    pub fn draw(&mut self, frame: &Frame, rect: Rect, rows: Option<Range<u32>>) -> Result<(), String> {
        self.report_errors();
        let layout = (rect, self.size, (frame.width, frame.height));
        let drawn = frame.width > 0
            && frame.height > 0
            && rect.w > 0
            && rect.h > 0
            && (frame.scanout.is_some() || frame.pixels.len() >= (frame.width * frame.height * 4) as usize);
        let rows = rows.filter(|_| drawn && self.shown == Some(layout));
        if rows.is_none() {
            self.fill_around(if drawn { Some(rect) } else { None })?;
        }
        self.shown = drawn.then_some(layout);
        if !drawn {
            return self.flush();
        }
        let direct = (rect.w, rect.h) == (frame.width, frame.height);
        if let Some(s) = frame.scanout.as_ref().filter(|_| direct) {
            // Straight from video memory (which the guest keeps writing, as real scanout: no
            // wait before it is written again, and a picture may tear).
            let rows = rows.unwrap_or(0..frame.height);
            if rows.is_empty() {
                return Ok(());
            }
            let seg = self.attach_video(&s.memory)?;
            let (total, offset) = ((s.pitch / 4) as u32, s.offset);
            self.put(seg, (total, frame.height), offset, (frame.width, rows.clone()), (rect.x, rect.y + rows.start))?;
            self.from_video += 1;
            return self.flush();
        }
        if frame.scanout.is_some() {
            return Err("a scaled picture in video memory was not copied out of it".into());
        }
        match self.segment_of(frame) {
            Some(seg) if direct => {
                let rows = rows.unwrap_or(0..frame.height);
                if rows.is_empty() {
                    return Ok(());
                }
                self.put(seg, (frame.width, frame.height), 0, (frame.width, rows.clone()), (rect.x, rect.y + rows.start))?;
                self.direct += 1;
            }
            _ => {
                // The window rows to draw.
                let window_rows = match &rows {
                    Some(r) => {
                        let from = (0..rect.h).find(|&y| scaled(y, frame.height, rect.h) >= r.start);
                        let to = (0..rect.h).rev().find(|&y| scaled(y, frame.height, rect.h) < r.end);
                        match (from, to) {
                            (Some(a), Some(b)) if a <= b && !r.is_empty() => a..b + 1,
                            _ => return Ok(()), // nothing changed: the window shows the picture
                        }
                    }
                    None => 0..rect.h,
                };
                // The X server may still be reading the canvas.
                self.wait();
                self.scale_into_canvas(frame, rect, window_rows.clone());
                let Some(seg) = self.canvas.map.as_ref().map(|m| m.seg) else {
                    return Err("no shared memory for the scaled picture".into());
                };
                self.put(seg, (rect.w, rect.h), 0, (rect.w, window_rows.clone()), (rect.x, rect.y + window_rows.start))?;
                self.through_canvas += 1;
            }
        }
        // A request after the PutImage: its reply says the server has read the segment.
        let cookie = self.conn.get_input_focus().map_err(|e| format!("X11: {e}"))?;
        self.pending = Some(cookie.sequence_number());
        std::mem::forget(cookie);
        self.flush()
    }

    /// How the pictures went, for `FERRITE_FRAME_STATS`.
    pub fn summary(&self) -> String {
        format!(
            "{} sent straight from video memory, {} sent from the frames' own segments, {} scaled or converted into the window's",
            self.from_video, self.direct, self.through_canvas
        )
    }

    /// The segment `frame`'s pixels are in, if they are BGRA in a segment of this connection.
    fn segment_of(&self, frame: &Frame) -> Option<shm::Seg> {
        let segment = frame.pixels.memory()?.as_any().downcast_ref::<Segment>()?;
        let map = segment.map.as_ref()?;
        (frame.format == PixelFormat::Bgra && Arc::ptr_eq(&segment.conn, &self.conn)).then_some(map.seg)
    }

    /// The segment of video memory `memory`, attached when it is new (a new machine's).
    fn attach_video(&mut self, memory: &VideoMemory) -> Result<shm::Seg, String> {
        if let Some((m, seg)) = &self.video {
            if m.same(memory) {
                return Ok(*seg);
            }
        }
        if self.video_refused {
            return Err("the X server cannot attach video memory".into());
        }
        self.detach_video();
        // Checked at once (one round trip per machine): if the server refuses, pictures in
        // video memory are copied out from then on, and the frames stop accepting them.
        let attached = (|| {
            let fd = memory.fd().try_clone_to_owned().map_err(|e| format!("cannot pass video memory on: {e}"))?;
            let seg = self.conn.generate_id().map_err(|e| format!("X11: {e}"))?;
            let cookie = self.conn.shm_attach_fd(seg, fd, true).map_err(|e| format!("X11: {e}"))?;
            cookie.check().map_err(|e| format!("X11: the server cannot attach video memory: {e:?}"))?;
            Ok::<_, String>(seg)
        })();
        match attached {
            Ok(seg) => {
                self.video = Some((memory.clone(), seg));
                Ok(seg)
            }
            Err(e) => {
                tracing::warn!("{e}; pictures in video memory are copied instead");
                self.video_refused = true;
                Err(e)
            }
        }
    }

    fn detach_video(&mut self) {
        if let Some((_, seg)) = self.video.take() {
            let _ = self.conn.shm_detach(seg);
        }
    }

    /// Rows `rows` (`width` pixels of each) of a `total` picture at `offset` in segment `seg`,
    /// to window position `to`.
    fn put(&self, seg: shm::Seg, total: (u32, u32), offset: usize, (width, rows): (u32, Range<u32>), to: (u32, u32)) -> Result<(), String> {
        let narrow = |v: u32| u16::try_from(v).map_err(|_| format!("a picture too large for X11 ({v} pixels)"));
        let at = |v: u32| i16::try_from(v).map_err(|_| format!("a window too large for X11 ({v} pixels)"));
        self.conn
            .shm_put_image(
                self.window,
                self.gc,
                narrow(total.0)?,
                narrow(total.1)?,
                0,
                narrow(rows.start)?,
                narrow(width)?,
                narrow(rows.len() as u32)?,
                at(to.0)?,
                at(to.1)?,
                self.depth,
                ImageFormat::Z_PIXMAP.into(),
                false,
                seg,
                u32::try_from(offset).map_err(|_| format!("a picture too far into video memory ({offset} bytes)"))?,
            )
            .map_err(|e| format!("X11: {e}"))?;
        Ok(())
    }

    /// Paints the window black around `rect` (all of it without one).
    fn fill_around(&self, rect: Option<Rect>) -> Result<(), String> {
        let (ww, wh) = self.size;
        let r = rect.unwrap_or(Rect { x: 0, y: 0, w: 0, h: 0 });
        let clip = |v: u32| v.min(u32::from(u16::MAX)) as u16;
        let mut black = Vec::new();
        let mut add = |x: u32, y: u32, w: u32, h: u32| {
            if w > 0 && h > 0 {
                black.push(xproto::Rectangle { x: clip(x) as i16, y: clip(y) as i16, width: clip(w), height: clip(h) });
            }
        };
        add(0, 0, ww, r.y);
        add(0, r.y + r.h, ww, wh.saturating_sub(r.y + r.h));
        add(0, r.y, r.x, r.h);
        add(r.x + r.w, r.y, ww.saturating_sub(r.x + r.w), r.h);
        if !black.is_empty() {
            self.conn.poly_fill_rectangle(self.window, self.gc, &black).map_err(|e| format!("X11: {e}"))?;
        }
        Ok(())
    }

    /// Window rows `window_rows` of the picture in `rect` (rows of the rectangle), into the
    /// canvas: nearest-neighbour, a row that repeats the source row above copied from it.
    fn scale_into_canvas(&mut self, frame: &Frame, rect: Rect, window_rows: Range<u32>) {
        if (rect.w, frame.width) != self.columns_for {
            self.columns = (0..rect.w).map(|x| scaled(x, frame.width, rect.w)).collect();
            self.columns_for = (rect.w, frame.width);
        }
        if !self.canvas.reserve(rect.w as usize * rect.h as usize * 4) {
            return;
        }
        let canvas = self.canvas.bytes_mut();
        let (row_len, src_len) = (rect.w as usize * 4, frame.width as usize * 4);
        let mut last_source = None;
        for y in window_rows {
            let sy = scaled(y, frame.height, rect.h);
            let at = y as usize * row_len;
            if last_source == Some(sy) {
                canvas.copy_within(at - row_len..at, at);
                continue;
            }
            last_source = Some(sy);
            let src = &frame.pixels[sy as usize * src_len..][..src_len];
            let out = &mut canvas[at..at + row_len];
            if rect.w == frame.width {
                match frame.format {
                    PixelFormat::Bgra => out.copy_from_slice(src),
                    PixelFormat::Rgba => PixelFormat::Bgra.convert_rgba(src, out),
                }
                continue;
            }
            self.row.resize(frame.width as usize, 0);
            for (o, s) in self.row.iter_mut().zip(src.chunks_exact(4)) {
                let v = u32::from_le_bytes(s.try_into().expect("4 bytes"));
                *o = match frame.format {
                    PixelFormat::Bgra => v,
                    PixelFormat::Rgba => (v & 0xFF00_FF00) | (v & 0xFF) << 16 | (v >> 16 & 0xFF),
                };
            }
            for (o, &sx) in out.chunks_exact_mut(4).zip(&self.columns) {
                o.copy_from_slice(&self.row[sx as usize].to_le_bytes());
            }
        }
    }

    /// Waits until the X server has read every segment sent so far.
    fn wait(&mut self) {
        if let Some(sequence) = self.pending.take() {
            if let Err(e) = self.conn.wait_for_reply_or_error(sequence) {
                tracing::warn!("X11: {e}");
            }
        }
    }

    fn flush(&self) -> Result<(), String> {
        self.conn.flush().map_err(|e| format!("X11: {e}"))
    }

    /// Errors the X server sent for requests whose replies no one waits for, logged (the
    /// first few).
    fn report_errors(&mut self) {
        while let Ok(Some(event)) = self.conn.poll_for_event() {
            if let Event::Error(e) = event {
                self.errors += 1;
                if self.errors <= 3 {
                    tracing::warn!("X11 error drawing the window: {:?} (request {}.{})", e.error_kind, e.major_opcode, e.minor_opcode);
                }
            }
        }
    }
}

impl Drop for ShmPresenter {
    fn drop(&mut self) {
        self.wait();
        self.detach_video();
        let _ = self.conn.free_gc(self.gc);
        let _ = self.conn.flush();
    }
}

/// Memory shared with the X server: a memfd mapped here and attached there (read-only) as a
/// segment. A frame's pixels lent by the window ([`PixelMemory`]), or the window's canvas.
/// Made larger, it is a new memfd and segment (the server maps a segment at its size when it
/// attaches it, so the old one is never shrunk under it); dropped, the segment is detached.
pub struct Segment {
    conn: Arc<RustConnection>,
    map: Option<Mapping>,
}

struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    seg: shm::Seg,
}

// SAFETY: the mapping is owned by the Segment alone (no other pointer to it exists in this
// process), so moving it to another thread moves the only access to it; the X server reads it
// only between a PutImage and the reply the window waits for before handing the frame back.
unsafe impl Send for Segment {}

impl Segment {
    fn new(conn: Arc<RustConnection>) -> Segment {
        Segment { conn, map: None }
    }

    /// A new memfd of `len` bytes, mapped and attached.
    fn create(&self, len: usize) -> std::io::Result<Mapping> {
        // SAFETY: memfd_create takes a NUL-terminated name and flags and returns a new file
        // descriptor (or -1), which OwnedFd then owns.
        let fd = unsafe { libc::memfd_create(c"ferrite-frame".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let file = std::fs::File::from(fd);
        file.set_len(len as u64)?;
        // SAFETY: a new shared mapping of the whole file, at an address the kernel picks; it
        // stays valid (and aliases nothing in this process) until `Drop for Mapping` unmaps it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(std::io::Error::last_os_error)?;
        let unmapped = |e: &dyn std::fmt::Display| {
            // SAFETY: the mapping made above, not yet handed to anything.
            unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
            std::io::Error::other(format!("X11: {e}"))
        };
        let seg = self.conn.generate_id().map_err(|e| unmapped(&e))?;
        // The server gets the descriptor (and keeps its own mapping until the detach).
        self.conn.shm_attach_fd(seg, OwnedFd::from(file), true).map_err(|e| unmapped(&e))?;
        self.conn.flush().map_err(|e| unmapped(&e))?;
        Ok(Mapping { ptr, len, seg })
    }

    fn release(&mut self) {
        if let Some(m) = self.map.take() {
            let _ = self.conn.shm_detach(m.seg);
            let _ = self.conn.flush();
            // SAFETY: the mapping `create` made, no longer referenced (`self.map` is gone).
            unsafe { libc::munmap(m.ptr.as_ptr().cast(), m.len) };
        }
    }
}

impl PixelMemory for Segment {
    fn reserve(&mut self, len: usize) -> bool {
        if self.map.as_ref().is_some_and(|m| m.len >= len) {
            return true;
        }
        self.release();
        match self.create(len.max(1).next_multiple_of(4096)) {
            Ok(m) => {
                self.map = Some(m);
                true
            }
            Err(e) => {
                tracing::warn!("cannot share {len} bytes with the X server: {e}");
                false
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.map {
            // SAFETY: `len` bytes mapped read-write until `release`; `&self` keeps them.
            Some(m) => unsafe { std::slice::from_raw_parts(m.ptr.as_ptr(), m.len) },
            None => &[],
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.map {
            // SAFETY: as above, and `&mut self` makes this the only reference.
            Some(m) => unsafe { std::slice::from_raw_parts_mut(m.ptr.as_ptr(), m.len) },
            None => &mut [],
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.map {
            Some(m) => write!(f, "X11 shared memory segment {:#x} ({} bytes)", m.seg, m.len),
            None => write!(f, "X11 shared memory (none yet)"),
        }
    }
}
