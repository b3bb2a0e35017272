//! Host-side ends of character devices (serial ports, the debug console): where the guest's
//! output goes and where its input comes from.

use crossbeam::channel::{Receiver, TryRecvError};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// The host end of a character device. Never blocks the emulator.
pub trait CharBackend: Send {
    fn write(&mut self, data: &[u8]);
    /// The next byte of input, if one has arrived.
    fn read(&mut self) -> Option<u8> {
        None
    }
}

/// Discards output, never has input.
pub struct NullChar;

impl CharBackend for NullChar {
    fn write(&mut self, _data: &[u8]) {}
}

/// Writes to standard output (flushed per write, so a line appears as the guest prints it)
/// and, when `input` is set, reads standard input on a thread of its own.
pub struct StdioChar {
    input: Option<Receiver<u8>>,
}

impl StdioChar {
    pub fn new(with_input: bool) -> StdioChar {
        let input = with_input.then(|| {
            let (tx, rx) = crossbeam::channel::unbounded();
            std::thread::Builder::new()
                .name("stdin".into())
                .spawn(move || {
                    let mut buf = [0u8; 256];
                    let mut stdin = std::io::stdin();
                    while let Ok(n) = stdin.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if buf[..n].iter().any(|&b| tx.send(b).is_err()) {
                            break;
                        }
                    }
                })
                .expect("spawn stdin reader");
            rx
        });
        StdioChar { input }
    }
}

impl CharBackend for StdioChar {
    fn write(&mut self, data: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(data);
        let _ = out.flush();
    }

    fn read(&mut self) -> Option<u8> {
        match self.input.as_ref()?.try_recv() {
            Ok(b) => Some(b),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.input = None;
                None
            }
        }
    }
}

/// Appends output to a file.
pub struct FileChar {
    file: std::fs::File,
}

impl FileChar {
    pub fn create(path: &std::path::Path) -> std::io::Result<FileChar> {
        Ok(FileChar { file: std::fs::File::create(path)? })
    }
}

impl CharBackend for FileChar {
    fn write(&mut self, data: &[u8]) {
        if let Err(e) = self.file.write_all(data) {
            tracing::warn!("serial output file: {e}");
        }
    }
}

/// Collects output in memory and serves input from a queue: for tests, and for the
/// `--expect-serial` watcher.
#[derive(Clone, Default)]
pub struct CaptureChar {
    pub output: Arc<Mutex<Vec<u8>>>,
    pub input: Arc<Mutex<std::collections::VecDeque<u8>>>,
}

impl CaptureChar {
    pub fn new() -> CaptureChar {
        CaptureChar::default()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    pub fn push_input(&self, data: &[u8]) {
        self.input.lock().unwrap().extend(data);
    }
}

impl CharBackend for CaptureChar {
    fn write(&mut self, data: &[u8]) {
        self.output.lock().unwrap().extend_from_slice(data);
    }

    fn read(&mut self) -> Option<u8> {
        self.input.lock().unwrap().pop_front()
    }
}

/// Sends output to several backends (the terminal and a capture for `--expect-serial`).
pub struct TeeChar(pub Vec<Box<dyn CharBackend>>);

impl CharBackend for TeeChar {
    fn write(&mut self, data: &[u8]) {
        for b in &mut self.0 {
            b.write(data);
        }
    }

    fn read(&mut self) -> Option<u8> {
        self.0.iter_mut().find_map(|b| b.read())
    }
}
