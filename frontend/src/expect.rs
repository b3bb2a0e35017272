//! `--expect-serial REGEX` and `--expect-screen REGEX`: the run ends with status 0 as soon as
//! every expectation has matched, so a test needs no shell watchdog. The serial output is
//! copied into a buffer shared with COM1's backend; the screen's text is looked at on each
//! turn of the run loop's watcher (about every 50 ms of wall time). A serial expectation can
//! match anywhere in all the output so far; a screen expectation must match the screen as it
//! is at one of those looks. Once matched, an expectation stays matched.

use machine::host::CaptureChar;
use machine::Machine;
use regex::Regex;

/// A match may span at most this many bytes already searched before new output arrived.
const OVERLAP: usize = 64 * 1024;
/// Output kept for matching and for the report; older output is dropped beyond this.
const KEEP: usize = 8 << 20;

struct Expectation {
    re: Regex,
    matched: bool,
}

pub struct Expectations {
    serial: Vec<Expectation>,
    screen: Vec<Expectation>,
    /// What COM1 wrote, shared with its backend.
    output: CaptureChar,
    /// Bytes of `output` already searched by every serial expectation.
    searched: usize,
    last_screen: String,
}

impl Expectations {
    pub fn new(serial: &[Regex], screen: &[Regex]) -> Expectations {
        let e = |re: &Regex| Expectation { re: re.clone(), matched: false };
        Expectations {
            serial: serial.iter().map(e).collect(),
            screen: screen.iter().map(e).collect(),
            output: CaptureChar::new(),
            searched: 0,
            last_screen: String::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.serial.is_empty() && self.screen.is_empty()
    }

    pub fn wants_serial(&self) -> bool {
        !self.serial.is_empty()
    }

    /// The backend to tee COM1's output into.
    pub fn serial_tap(&self) -> CaptureChar {
        self.output.clone()
    }

    /// Looks at the new serial output and the screen; true when everything has matched.
    pub fn check(&mut self, m: &mut Machine) -> bool {
        if self.is_empty() {
            return false;
        }
        if self.serial.iter().any(|e| !e.matched) {
            let mut out = self.output.output.lock().unwrap();
            if out.len() > KEEP {
                let drop = out.len() - KEEP / 2;
                out.drain(..drop);
                self.searched = self.searched.saturating_sub(drop);
            }
            if out.len() > self.searched {
                let from = self.searched.saturating_sub(OVERLAP);
                let text = String::from_utf8_lossy(&out[from..]);
                for e in self.serial.iter_mut().filter(|e| !e.matched) {
                    e.matched = e.re.is_match(&text);
                }
                self.searched = out.len();
            }
        }
        if self.screen.iter().any(|e| !e.matched) {
            self.last_screen = match m.display() {
                Some(d) => d.screen_text(),
                None => String::new(),
            };
            for e in self.screen.iter_mut().filter(|e| !e.matched) {
                e.matched = e.re.is_match(&self.last_screen);
            }
        }
        self.serial.iter().chain(&self.screen).all(|e| e.matched)
    }

    /// What did not match and what was last seen, for a timeout or an early end.
    pub fn report(&self) -> String {
        let mut r = String::new();
        for (what, list) in [("--expect-serial", &self.serial), ("--expect-screen", &self.screen)] {
            for e in list {
                let verdict = if e.matched { "matched" } else { "NOT matched" };
                r.push_str(&format!("  {what} {:?}: {verdict}\n", e.re.as_str()));
            }
        }
        if self.serial.iter().any(|e| !e.matched) {
            let out = self.output.output.lock().unwrap();
            let text = String::from_utf8_lossy(&out);
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            r.push_str(&format!("  the serial output's last {} lines:\n", tail.len()));
            for l in tail {
                r.push_str(&format!("    | {l}\n"));
            }
        }
        if self.screen.iter().any(|e| !e.matched) {
            r.push_str("  the screen as last seen:\n");
            for l in self.last_screen.lines() {
                r.push_str(&format!("    | {}\n", l.trim_end()));
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use machine::host::CharBackend;

    fn machine() -> Machine {
        Machine::new(machine::MachineConfig { bios: roms::HELLO.to_vec(), ..machine::MachineConfig::default() }).unwrap()
    }

    #[test]
    fn all_serial_expectations_must_match_even_across_writes() {
        let re = |s| crate::cli::parse_regex(s).unwrap();
        let mut x = Expectations::new(&[re("login: $"), re("Linux version \\d")], &[]);
        let mut m = machine();
        let mut tap = x.serial_tap();
        tap.write(b"[    0.0] Linux vers");
        assert!(!x.check(&mut m));
        tap.write(b"ion 6.1\nbox log");
        assert!(!x.check(&mut m));
        // A prompt waits without a newline: `$` matches at the end of the output so far.
        tap.write(b"in: ");
        assert!(x.check(&mut m));
        assert!(x.report().contains("\"login: $\": matched"));
    }

    #[test]
    fn the_report_names_what_did_not_match_and_the_last_output() {
        let re = |s| crate::cli::parse_regex(s).unwrap();
        let mut x = Expectations::new(&[re("never")], &[re("nor this")]);
        let mut m = machine();
        x.serial_tap().write(b"one\ntwo\n");
        assert!(!x.check(&mut m));
        let r = x.report();
        assert!(r.contains("--expect-serial \"never\": NOT matched"), "{r}");
        assert!(r.contains("--expect-screen \"nor this\": NOT matched"), "{r}");
        assert!(r.contains("    | two"), "{r}");
    }

    #[test]
    fn no_expectations_never_end_the_run() {
        let mut x = Expectations::new(&[], &[]);
        assert!(!x.check(&mut machine()));
    }
}
