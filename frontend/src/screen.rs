//! The headless runner's view of the screen: `--screenshot PATH` (a PNG) and `--screen-text
//! PATH` (the text of the screen), written before the guest starts, about once a second while
//! it runs (from the run loop's watcher) and at exit. Each file is replaced atomically (a
//! temporary file beside it, then a rename), so a script polling it never reads half a file.

use anyhow::{anyhow, Context, Result};
use machine::{Frame, Machine};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the files are refreshed while the guest runs.
pub const REFRESH: Duration = Duration::from_secs(1);

pub struct ScreenOutputs {
    png: Option<PathBuf>,
    text: Option<PathBuf>,
    frame: Frame,
    screen_text: String,
    /// What the files hold now: the frame generation in the PNG, the text in the text file.
    png_generation: u64,
    written_text: Option<String>,
    last_refresh: Option<Instant>,
    /// A failed refresh while running is reported once; the last write at exit reports again.
    warned: bool,
}

impl ScreenOutputs {
    pub fn new(png: Option<PathBuf>, text: Option<PathBuf>) -> ScreenOutputs {
        ScreenOutputs {
            png,
            text,
            frame: Frame::new(),
            screen_text: String::new(),
            png_generation: 0,
            written_text: None,
            last_refresh: None,
            warned: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.png.is_none() && self.text.is_none()
    }

    /// Takes the picture and the text of the screen now; returns the text (what a check of the
    /// screen's contents looks at).
    pub fn capture(&mut self, m: &mut Machine) -> &str {
        let now = m.now();
        match m.display() {
            Some(d) => {
                d.render(now, &mut self.frame);
                self.screen_text = d.screen_text();
            }
            None => self.screen_text = "no display\n".into(),
        }
        &self.screen_text
    }

    /// Captures the screen and writes whatever changed. Errors name the option and the file.
    pub fn refresh(&mut self, m: &mut Machine) -> Result<()> {
        self.last_refresh = Some(Instant::now());
        if self.is_empty() {
            return Ok(());
        }
        self.capture(m);
        if let Some(path) = &self.png {
            if self.frame.generation != self.png_generation && self.frame.width > 0 {
                let image = encode_png(&self.frame).with_context(|| format!("--screenshot {}", path.display()))?;
                write_atomically(path, &image).map_err(|e| anyhow!("--screenshot {}: {e}", path.display()))?;
                self.png_generation = self.frame.generation;
            }
        }
        if let Some(path) = &self.text {
            if self.written_text.as_deref() != Some(self.screen_text.as_str()) {
                write_atomically(path, self.screen_text.as_bytes())
                    .map_err(|e| anyhow!("--screen-text {}: {e}", path.display()))?;
                self.written_text = Some(self.screen_text.clone());
            }
        }
        Ok(())
    }

    /// Called by the run loop's watcher: refreshes when [`REFRESH`] has passed.
    pub fn poll(&mut self, m: &mut Machine) {
        if self.is_empty() || self.last_refresh.is_some_and(|t| t.elapsed() < REFRESH) {
            return;
        }
        if let Err(e) = self.refresh(m) {
            if !std::mem::replace(&mut self.warned, true) {
                eprintln!("ferrite: {e:#} (will retry)");
            }
        }
    }
}

pub fn encode_png(frame: &Frame) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, frame.width, frame.height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&frame.rgba())?;
    writer.finish()?;
    Ok(out)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| {
        let text = e.to_string();
        let text = text.find(" (os error ").map_or(text.as_str(), |i| &text[..i]).to_string();
        std::io::Error::new(e.kind(), text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrite-screen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn atomic_writes_replace_and_leave_no_temporary_file() {
        let path = scratch("a.txt");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        let e = write_atomically(Path::new("/nonexistent/ferrite/x.txt"), b"x").unwrap_err();
        assert_eq!(e.to_string(), "No such file or directory");
    }

    #[test]
    fn png_round_trips() {
        let mut f = Frame::new();
        f.resize(3, 2);
        for (i, b) in f.pixels.iter_mut().enumerate() {
            *b = i as u8;
        }
        let image = encode_png(&f).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(image)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height, info.color_type), (3, 2, png::ColorType::Rgba));
        assert_eq!(&buf[..info.buffer_size()], &f.pixels[..]);
    }
}
