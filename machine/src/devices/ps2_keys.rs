//! The keys of a PC keyboard (the 104/105-key layout plus the Japanese, Korean, ACPI and
//! multimedia keys) and the scan codes a PS/2 keyboard sends for them: set 2 (the default,
//! with its E0-prefixed extended keys and the PrintScreen and Pause sequences) and set 3.
//! Set 1 is set 2 through the 8042's translation table. Key names follow the W3C UI Events
//! `code` values, so a host window system's physical key codes map one to one.

use serde::{Deserialize, Serialize};

macro_rules! keys {
    ($($key:ident = $set2:literal $(e0 $e0:tt)?, $set3:literal;)*) => {
        /// A physical key of a PC keyboard.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum PcKey {
            $($key,)*
        }

        impl PcKey {
            /// Every key, in the order of the table.
            pub const ALL: &'static [PcKey] = &[$(PcKey::$key,)*];

            /// Set 2 code (without the E0 prefix), whether it is E0-prefixed, and the set 3
            /// code (0: the key has none).
            fn codes(self) -> (u8, bool, u8) {
                match self {
                    $(PcKey::$key => ($set2, keys!(@e0 $($e0)?), $set3),)*
                }
            }
        }
    };
    (@e0 x) => { true };
    (@e0) => { false };
}

keys! {
    Escape = 0x76, 0x08;
    F1 = 0x05, 0x07;
    F2 = 0x06, 0x0F;
    F3 = 0x04, 0x17;
    F4 = 0x0C, 0x1F;
    F5 = 0x03, 0x27;
    F6 = 0x0B, 0x2F;
    F7 = 0x83, 0x37;
    F8 = 0x0A, 0x3F;
    F9 = 0x01, 0x47;
    F10 = 0x09, 0x4F;
    F11 = 0x78, 0x56;
    F12 = 0x07, 0x5E;
    // PrintScreen and Pause send sequences of their own (see `make_set2`).
    PrintScreen = 0x7C e0 x, 0x57;
    ScrollLock = 0x7E, 0x5F;
    Pause = 0x77, 0x62;
    Backquote = 0x0E, 0x0E;
    Digit1 = 0x16, 0x16;
    Digit2 = 0x1E, 0x1E;
    Digit3 = 0x26, 0x26;
    Digit4 = 0x25, 0x25;
    Digit5 = 0x2E, 0x2E;
    Digit6 = 0x36, 0x36;
    Digit7 = 0x3D, 0x3D;
    Digit8 = 0x3E, 0x3E;
    Digit9 = 0x46, 0x46;
    Digit0 = 0x45, 0x45;
    Minus = 0x4E, 0x4E;
    Equal = 0x55, 0x55;
    Backspace = 0x66, 0x66;
    Tab = 0x0D, 0x0D;
    KeyQ = 0x15, 0x15;
    KeyW = 0x1D, 0x1D;
    KeyE = 0x24, 0x24;
    KeyR = 0x2D, 0x2D;
    KeyT = 0x2C, 0x2C;
    KeyY = 0x35, 0x35;
    KeyU = 0x3C, 0x3C;
    KeyI = 0x43, 0x43;
    KeyO = 0x44, 0x44;
    KeyP = 0x4D, 0x4D;
    BracketLeft = 0x54, 0x54;
    BracketRight = 0x5B, 0x5B;
    Backslash = 0x5D, 0x53;
    CapsLock = 0x58, 0x14;
    KeyA = 0x1C, 0x1C;
    KeyS = 0x1B, 0x1B;
    KeyD = 0x23, 0x23;
    KeyF = 0x2B, 0x2B;
    KeyG = 0x34, 0x34;
    KeyH = 0x33, 0x33;
    KeyJ = 0x3B, 0x3B;
    KeyK = 0x42, 0x42;
    KeyL = 0x4B, 0x4B;
    Semicolon = 0x4C, 0x4C;
    Quote = 0x52, 0x52;
    Enter = 0x5A, 0x5A;
    ShiftLeft = 0x12, 0x12;
    IntlBackslash = 0x61, 0x13;
    KeyZ = 0x1A, 0x1A;
    KeyX = 0x22, 0x22;
    KeyC = 0x21, 0x21;
    KeyV = 0x2A, 0x2A;
    KeyB = 0x32, 0x32;
    KeyN = 0x31, 0x31;
    KeyM = 0x3A, 0x3A;
    Comma = 0x41, 0x41;
    Period = 0x49, 0x49;
    Slash = 0x4A, 0x4A;
    ShiftRight = 0x59, 0x59;
    ControlLeft = 0x14, 0x11;
    MetaLeft = 0x1F e0 x, 0x8B;
    AltLeft = 0x11, 0x19;
    Space = 0x29, 0x29;
    AltRight = 0x11 e0 x, 0x39;
    MetaRight = 0x27 e0 x, 0x8C;
    ContextMenu = 0x2F e0 x, 0x8D;
    ControlRight = 0x14 e0 x, 0x58;
    Insert = 0x70 e0 x, 0x67;
    Home = 0x6C e0 x, 0x6E;
    PageUp = 0x7D e0 x, 0x6F;
    Delete = 0x71 e0 x, 0x64;
    End = 0x69 e0 x, 0x65;
    PageDown = 0x7A e0 x, 0x6D;
    ArrowUp = 0x75 e0 x, 0x63;
    ArrowLeft = 0x6B e0 x, 0x61;
    ArrowDown = 0x72 e0 x, 0x60;
    ArrowRight = 0x74 e0 x, 0x6A;
    NumLock = 0x77, 0x76;
    NumpadDivide = 0x4A e0 x, 0x77;
    NumpadMultiply = 0x7C, 0x7E;
    NumpadSubtract = 0x7B, 0x84;
    Numpad7 = 0x6C, 0x6C;
    Numpad8 = 0x75, 0x75;
    Numpad9 = 0x7D, 0x7D;
    NumpadAdd = 0x79, 0x7C;
    Numpad4 = 0x6B, 0x6B;
    Numpad5 = 0x73, 0x73;
    Numpad6 = 0x74, 0x74;
    Numpad1 = 0x69, 0x69;
    Numpad2 = 0x72, 0x72;
    Numpad3 = 0x7A, 0x7A;
    Numpad0 = 0x70, 0x70;
    NumpadDecimal = 0x71, 0x71;
    NumpadEnter = 0x5A e0 x, 0x79;
    // Japanese keyboards.
    IntlRo = 0x51, 0x00;
    IntlYen = 0x6A, 0x00;
    Convert = 0x64, 0x00;
    NonConvert = 0x67, 0x00;
    KanaMode = 0x13, 0x00;
    // Korean keyboards: Hangul and Hanja send a make code only.
    Lang1 = 0xF2, 0x00;
    Lang2 = 0xF1, 0x00;
    // ACPI keys.
    Power = 0x37 e0 x, 0x00;
    Sleep = 0x3F e0 x, 0x00;
    WakeUp = 0x5E e0 x, 0x00;
    // Multimedia keys.
    AudioVolumeMute = 0x23 e0 x, 0x00;
    AudioVolumeDown = 0x21 e0 x, 0x00;
    AudioVolumeUp = 0x32 e0 x, 0x00;
    MediaPlayPause = 0x34 e0 x, 0x00;
    MediaStop = 0x3B e0 x, 0x00;
    MediaTrackPrevious = 0x15 e0 x, 0x00;
    MediaTrackNext = 0x4D e0 x, 0x00;
    BrowserHome = 0x3A e0 x, 0x00;
}

/// The modifier keys held down, as the keyboard's own logic sees them (it changes the codes
/// of PrintScreen and Pause).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modifiers {
    pub shift: bool,
    pub ctrl: bool,
    pub alt: bool,
}

impl PcKey {
    /// The set 2 make code bytes.
    pub fn make_set2(self, m: Modifiers) -> Vec<u8> {
        match self {
            // Alt+PrintScreen is SysRq; with Shift or Ctrl the fake left shift is left out.
            PcKey::PrintScreen if m.alt => vec![0x84],
            PcKey::PrintScreen if m.shift || m.ctrl => vec![0xE0, 0x7C],
            PcKey::PrintScreen => vec![0xE0, 0x12, 0xE0, 0x7C],
            // Ctrl+Pause is Break.
            PcKey::Pause if m.ctrl => vec![0xE0, 0x7E, 0xE0, 0xF0, 0x7E],
            // Pause sends its make and break at once, and nothing when released.
            PcKey::Pause => vec![0xE1, 0x14, 0x77, 0xE1, 0xF0, 0x14, 0xF0, 0x77],
            _ => {
                let (code, e0, _) = self.codes();
                if e0 {
                    vec![0xE0, code]
                } else {
                    vec![code]
                }
            }
        }
    }

    /// The set 2 break code bytes (none for Pause and the Korean keys).
    pub fn break_set2(self, m: Modifiers) -> Vec<u8> {
        match self {
            PcKey::PrintScreen if m.alt => vec![0xF0, 0x84],
            PcKey::PrintScreen if m.shift || m.ctrl => vec![0xE0, 0xF0, 0x7C],
            PcKey::PrintScreen => vec![0xE0, 0xF0, 0x7C, 0xE0, 0xF0, 0x12],
            PcKey::Pause | PcKey::Lang1 | PcKey::Lang2 => vec![],
            _ => {
                let (code, e0, _) = self.codes();
                if e0 {
                    vec![0xE0, 0xF0, code]
                } else {
                    vec![0xF0, code]
                }
            }
        }
    }

    /// The set 3 code (make; the break is F0 and the code), if the key has one.
    pub fn set3(self) -> Option<u8> {
        let (_, _, code) = self.codes();
        (code != 0).then_some(code)
    }

    /// Whether the key repeats while held (typematic): every key but Pause and the keys
    /// without a break code.
    pub fn typematic(self) -> bool {
        !matches!(self, PcKey::Pause | PcKey::Lang1 | PcKey::Lang2)
    }

    /// Updates `m` for this key going down or up.
    pub fn track(self, m: &mut Modifiers, down: bool) {
        match self {
            PcKey::ShiftLeft | PcKey::ShiftRight => m.shift = down,
            PcKey::ControlLeft | PcKey::ControlRight => m.ctrl = down,
            PcKey::AltLeft | PcKey::AltRight => m.alt = down,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::i8042::translate_set2;

    #[test]
    fn set2_codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &k in PcKey::ALL {
            let (code, e0, _) = k.codes();
            if k != PcKey::Pause {
                assert!(seen.insert((code, e0)), "{k:?} shares its code");
            }
        }
        assert_eq!(PcKey::ALL.len(), seen.len() + 1);
    }

    #[test]
    fn translation_gives_the_set1_codes() {
        let m = Modifiers::default();
        // (key, set 1 make) for the keys whose set 1 codes every PC BIOS knows.
        let set1: &[(PcKey, &[u8])] = &[
            (PcKey::Escape, &[0x01]),
            (PcKey::Digit1, &[0x02]),
            (PcKey::Digit0, &[0x0B]),
            (PcKey::Backspace, &[0x0E]),
            (PcKey::Tab, &[0x0F]),
            (PcKey::KeyQ, &[0x10]),
            (PcKey::KeyP, &[0x19]),
            (PcKey::Enter, &[0x1C]),
            (PcKey::ControlLeft, &[0x1D]),
            (PcKey::KeyA, &[0x1E]),
            (PcKey::Backquote, &[0x29]),
            (PcKey::ShiftLeft, &[0x2A]),
            (PcKey::Backslash, &[0x2B]),
            (PcKey::KeyZ, &[0x2C]),
            (PcKey::Slash, &[0x35]),
            (PcKey::ShiftRight, &[0x36]),
            (PcKey::NumpadMultiply, &[0x37]),
            (PcKey::AltLeft, &[0x38]),
            (PcKey::Space, &[0x39]),
            (PcKey::CapsLock, &[0x3A]),
            (PcKey::F1, &[0x3B]),
            (PcKey::F7, &[0x41]),
            (PcKey::F10, &[0x44]),
            (PcKey::NumLock, &[0x45]),
            (PcKey::ScrollLock, &[0x46]),
            (PcKey::Numpad7, &[0x47]),
            (PcKey::NumpadSubtract, &[0x4A]),
            (PcKey::NumpadAdd, &[0x4E]),
            (PcKey::NumpadDecimal, &[0x53]),
            (PcKey::IntlBackslash, &[0x56]),
            (PcKey::F11, &[0x57]),
            (PcKey::F12, &[0x58]),
            (PcKey::ControlRight, &[0xE0, 0x1D]),
            (PcKey::AltRight, &[0xE0, 0x38]),
            (PcKey::NumpadEnter, &[0xE0, 0x1C]),
            (PcKey::NumpadDivide, &[0xE0, 0x35]),
            (PcKey::Home, &[0xE0, 0x47]),
            (PcKey::ArrowUp, &[0xE0, 0x48]),
            (PcKey::PageUp, &[0xE0, 0x49]),
            (PcKey::ArrowLeft, &[0xE0, 0x4B]),
            (PcKey::ArrowRight, &[0xE0, 0x4D]),
            (PcKey::End, &[0xE0, 0x4F]),
            (PcKey::ArrowDown, &[0xE0, 0x50]),
            (PcKey::PageDown, &[0xE0, 0x51]),
            (PcKey::Insert, &[0xE0, 0x52]),
            (PcKey::Delete, &[0xE0, 0x53]),
            (PcKey::MetaLeft, &[0xE0, 0x5B]),
            (PcKey::MetaRight, &[0xE0, 0x5C]),
            (PcKey::ContextMenu, &[0xE0, 0x5D]),
            (PcKey::PrintScreen, &[0xE0, 0x2A, 0xE0, 0x37]),
            (PcKey::Pause, &[0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5]),
        ];
        for &(k, want) in set1 {
            assert_eq!(translate_set2(&k.make_set2(m)), want, "{k:?} make");
            let brk: Vec<u8> = want.iter().map(|&b| if b == 0xE0 { b } else { b | 0x80 }).collect();
            if k == PcKey::PrintScreen {
                assert_eq!(translate_set2(&k.break_set2(m)), vec![0xE0, 0xB7, 0xE0, 0xAA]);
            } else if k != PcKey::Pause {
                assert_eq!(translate_set2(&k.break_set2(m)), brk, "{k:?} break");
            }
        }
        let alt = Modifiers { alt: true, ..m };
        assert_eq!(translate_set2(&PcKey::PrintScreen.make_set2(alt)), vec![0x54], "SysRq");
        let ctrl = Modifiers { ctrl: true, ..m };
        assert_eq!(translate_set2(&PcKey::Pause.make_set2(ctrl)), vec![0xE0, 0x46, 0xE0, 0xC6], "Break");
    }

    #[test]
    fn pause_has_no_break_and_no_repeat() {
        assert!(PcKey::Pause.break_set2(Modifiers::default()).is_empty());
        assert!(!PcKey::Pause.typematic());
        assert!(PcKey::KeyA.typematic());
        assert_eq!(PcKey::Escape.set3(), Some(0x08));
        assert_eq!(PcKey::MediaStop.set3(), None);
    }
}
