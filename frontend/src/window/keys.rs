//! The host keyboard as the guest's PS/2 keyboard: winit's physical key codes (the position of
//! a key, whatever the host's layout says it types) name the same W3C key positions as
//! `PcKey`; the keys held are tracked so that losing the focus releases them, and the
//! window's own hotkeys (Ctrl+Alt+letter) are taken out before the guest sees them.

use machine::devices::i8042::HostInput;
use machine::devices::ps2_keys::PcKey;
use winit::keyboard::KeyCode;

macro_rules! same_names {
    ($code:expr; $($name:ident),* $(,)?; $($other:ident => $pc:ident),* $(,)?) => {
        match $code {
            $(KeyCode::$name => Some(PcKey::$name),)*
            $(KeyCode::$other => Some(PcKey::$pc),)*
            _ => None,
        }
    };
}

/// The PC key at a host key's position, if a PC keyboard has it.
pub fn pc_key(code: KeyCode) -> Option<PcKey> {
    same_names!(code;
        Escape, F1, F2, F3, F4, F5, F6, F7, F8, F9, F10, F11, F12, PrintScreen, ScrollLock, Pause,
        Backquote, Digit1, Digit2, Digit3, Digit4, Digit5, Digit6, Digit7, Digit8, Digit9, Digit0,
        Minus, Equal, Backspace, Tab, KeyQ, KeyW, KeyE, KeyR, KeyT, KeyY, KeyU, KeyI, KeyO, KeyP,
        BracketLeft, BracketRight, Backslash, CapsLock, KeyA, KeyS, KeyD, KeyF, KeyG, KeyH, KeyJ,
        KeyK, KeyL, Semicolon, Quote, Enter, ShiftLeft, IntlBackslash, KeyZ, KeyX, KeyC, KeyV,
        KeyB, KeyN, KeyM, Comma, Period, Slash, ShiftRight, ControlLeft, AltLeft, Space, AltRight,
        ContextMenu, ControlRight, Insert, Home, PageUp, Delete, End, PageDown, ArrowUp,
        ArrowLeft, ArrowDown, ArrowRight, NumLock, NumpadDivide, NumpadMultiply, NumpadSubtract,
        Numpad7, Numpad8, Numpad9, NumpadAdd, Numpad4, Numpad5, Numpad6, Numpad1, Numpad2,
        Numpad3, Numpad0, NumpadDecimal, NumpadEnter, IntlRo, IntlYen, Convert, NonConvert,
        KanaMode, Lang1, Lang2, Power, Sleep, WakeUp, AudioVolumeMute, AudioVolumeDown,
        AudioVolumeUp, MediaPlayPause, MediaStop, MediaTrackPrevious, MediaTrackNext, BrowserHome;
        SuperLeft => MetaLeft, SuperRight => MetaRight, Meta => MetaLeft,
    )
}

/// What the window does for a hotkey: Ctrl+Alt and a letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hotkey {
    Pause,
    Reset,
    Screenshot,
    Fullscreen,
    ReleaseGrab,
    Quit,
}

impl Hotkey {
    /// The hotkeys and their letters, for the help text.
    pub const ALL: [(Hotkey, KeyCode, &'static str); 6] = [
        (Hotkey::Pause, KeyCode::KeyP, "Ctrl+Alt+P pause/resume"),
        (Hotkey::Reset, KeyCode::KeyR, "Ctrl+Alt+R reset"),
        (Hotkey::Screenshot, KeyCode::KeyS, "Ctrl+Alt+S screenshot"),
        (Hotkey::Fullscreen, KeyCode::KeyF, "Ctrl+Alt+F full screen"),
        (Hotkey::ReleaseGrab, KeyCode::KeyG, "Ctrl+Alt+G release the mouse"),
        (Hotkey::Quit, KeyCode::KeyQ, "Ctrl+Alt+Q quit"),
    ];

    fn of(code: KeyCode) -> Option<Hotkey> {
        Hotkey::ALL.iter().find(|(_, c, _)| *c == code).map(|(h, _, _)| *h)
    }
}

/// The keyboard between host and guest.
#[derive(Default)]
pub struct Keyboard {
    /// PC keys the guest has been told are down, in the order they went down.
    held: Vec<PcKey>,
    /// Host keys taken as hotkeys: their release is not the guest's either.
    hotkeys_held: Vec<KeyCode>,
}

/// What a host key event comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyAction {
    /// Input for the guest.
    Guest(HostInput),
    Hotkey(Hotkey),
    Nothing,
}

impl Keyboard {
    /// A host key went down (`pressed`) or up. `repeat` marks the host's own auto-repeat,
    /// which the guest never sees: its keyboard repeats by itself, at the rate it was told.
    pub fn key(&mut self, code: KeyCode, pressed: bool, repeat: bool) -> KeyAction {
        if pressed && self.ctrl_alt_held() {
            if let Some(h) = Hotkey::of(code) {
                if !self.hotkeys_held.contains(&code) {
                    self.hotkeys_held.push(code);
                }
                return if repeat { KeyAction::Nothing } else { KeyAction::Hotkey(h) };
            }
        }
        if !pressed {
            if let Some(i) = self.hotkeys_held.iter().position(|&c| c == code) {
                self.hotkeys_held.remove(i);
                return KeyAction::Nothing;
            }
        }
        let Some(key) = pc_key(code) else {
            tracing::debug!("host key {code:?} has no PC key");
            return KeyAction::Nothing;
        };
        match (pressed, self.held.iter().position(|&k| k == key)) {
            (true, None) => {
                self.held.push(key);
                KeyAction::Guest(HostInput::Press(key))
            }
            (false, Some(i)) => {
                self.held.remove(i);
                KeyAction::Guest(HostInput::Release(key))
            }
            // A repeat, or a release of a key pressed before the window had the focus.
            _ => KeyAction::Nothing,
        }
    }

    /// The window lost the keyboard: every key the guest holds comes up (the host will not
    /// say when they are released), modifiers included.
    pub fn release_all(&mut self) -> Vec<HostInput> {
        self.hotkeys_held.clear();
        self.held.drain(..).rev().map(HostInput::Release).collect()
    }

    fn ctrl_alt_held(&self) -> bool {
        let ctrl = self.held.iter().any(|k| matches!(k, PcKey::ControlLeft | PcKey::ControlRight));
        let alt = self.held.iter().any(|k| matches!(k, PcKey::AltLeft | PcKey::AltRight));
        ctrl && alt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every winit key code, by its W3C name, as far as a PC keyboard has them.
    fn all_codes() -> Vec<KeyCode> {
        PcKey::ALL
            .iter()
            .map(|k| {
                let name = format!("{k:?}").replace("Meta", "Super");
                *CODES.iter().find(|c| format!("{c:?}") == name).unwrap_or_else(|| panic!("no KeyCode named {name}"))
            })
            .collect()
    }

    /// The key codes named like PC keys (winit has no list of its own).
    const CODES: &[KeyCode] = &[
        KeyCode::Escape, KeyCode::F1, KeyCode::F2, KeyCode::F3, KeyCode::F4, KeyCode::F5, KeyCode::F6, KeyCode::F7,
        KeyCode::F8, KeyCode::F9, KeyCode::F10, KeyCode::F11, KeyCode::F12, KeyCode::PrintScreen, KeyCode::ScrollLock,
        KeyCode::Pause, KeyCode::Backquote, KeyCode::Digit1, KeyCode::Digit2, KeyCode::Digit3, KeyCode::Digit4,
        KeyCode::Digit5, KeyCode::Digit6, KeyCode::Digit7, KeyCode::Digit8, KeyCode::Digit9, KeyCode::Digit0,
        KeyCode::Minus, KeyCode::Equal, KeyCode::Backspace, KeyCode::Tab, KeyCode::KeyQ, KeyCode::KeyW, KeyCode::KeyE,
        KeyCode::KeyR, KeyCode::KeyT, KeyCode::KeyY, KeyCode::KeyU, KeyCode::KeyI, KeyCode::KeyO, KeyCode::KeyP,
        KeyCode::BracketLeft, KeyCode::BracketRight, KeyCode::Backslash, KeyCode::CapsLock, KeyCode::KeyA,
        KeyCode::KeyS, KeyCode::KeyD, KeyCode::KeyF, KeyCode::KeyG, KeyCode::KeyH, KeyCode::KeyJ, KeyCode::KeyK,
        KeyCode::KeyL, KeyCode::Semicolon, KeyCode::Quote, KeyCode::Enter, KeyCode::ShiftLeft, KeyCode::IntlBackslash,
        KeyCode::KeyZ, KeyCode::KeyX, KeyCode::KeyC, KeyCode::KeyV, KeyCode::KeyB, KeyCode::KeyN, KeyCode::KeyM,
        KeyCode::Comma, KeyCode::Period, KeyCode::Slash, KeyCode::ShiftRight, KeyCode::ControlLeft,
        KeyCode::SuperLeft, KeyCode::AltLeft, KeyCode::Space, KeyCode::AltRight, KeyCode::SuperRight,
        KeyCode::ContextMenu, KeyCode::ControlRight, KeyCode::Insert, KeyCode::Home, KeyCode::PageUp,
        KeyCode::Delete, KeyCode::End, KeyCode::PageDown, KeyCode::ArrowUp, KeyCode::ArrowLeft, KeyCode::ArrowDown,
        KeyCode::ArrowRight, KeyCode::NumLock, KeyCode::NumpadDivide, KeyCode::NumpadMultiply,
        KeyCode::NumpadSubtract, KeyCode::Numpad7, KeyCode::Numpad8, KeyCode::Numpad9, KeyCode::NumpadAdd,
        KeyCode::Numpad4, KeyCode::Numpad5, KeyCode::Numpad6, KeyCode::Numpad1, KeyCode::Numpad2, KeyCode::Numpad3,
        KeyCode::Numpad0, KeyCode::NumpadDecimal, KeyCode::NumpadEnter, KeyCode::IntlRo, KeyCode::IntlYen,
        KeyCode::Convert, KeyCode::NonConvert, KeyCode::KanaMode, KeyCode::Lang1, KeyCode::Lang2, KeyCode::Power,
        KeyCode::Sleep, KeyCode::WakeUp, KeyCode::AudioVolumeMute, KeyCode::AudioVolumeDown,
        KeyCode::AudioVolumeUp, KeyCode::MediaPlayPause, KeyCode::MediaStop, KeyCode::MediaTrackPrevious,
        KeyCode::MediaTrackNext, KeyCode::BrowserHome,
    ];

    #[test]
    fn every_pc_key_has_its_host_key() {
        for (code, &key) in all_codes().into_iter().zip(PcKey::ALL) {
            assert_eq!(pc_key(code), Some(key), "{code:?}");
        }
        assert_eq!(pc_key(KeyCode::F13), None);
    }

    #[test]
    fn host_repeats_are_dropped_and_releases_pair_with_presses() {
        let mut k = Keyboard::default();
        assert_eq!(k.key(KeyCode::KeyA, true, false), KeyAction::Guest(HostInput::Press(PcKey::KeyA)));
        assert_eq!(k.key(KeyCode::KeyA, true, true), KeyAction::Nothing);
        assert_eq!(k.key(KeyCode::KeyA, false, false), KeyAction::Guest(HostInput::Release(PcKey::KeyA)));
        assert_eq!(k.key(KeyCode::KeyB, false, false), KeyAction::Nothing, "pressed before the focus came");
    }

    #[test]
    fn focus_loss_releases_modifiers_and_keys() {
        let mut k = Keyboard::default();
        k.key(KeyCode::ShiftLeft, true, false);
        k.key(KeyCode::ControlRight, true, false);
        k.key(KeyCode::KeyX, true, false);
        assert_eq!(
            k.release_all(),
            [PcKey::KeyX, PcKey::ControlRight, PcKey::ShiftLeft].map(HostInput::Release).to_vec()
        );
        assert!(k.release_all().is_empty());
        assert_eq!(k.key(KeyCode::KeyX, false, false), KeyAction::Nothing);
    }

    #[test]
    fn hotkeys_need_ctrl_and_alt_and_never_reach_the_guest() {
        let mut k = Keyboard::default();
        assert_eq!(k.key(KeyCode::KeyG, true, false), KeyAction::Guest(HostInput::Press(PcKey::KeyG)));
        k.key(KeyCode::KeyG, false, false);
        k.key(KeyCode::ControlLeft, true, false);
        k.key(KeyCode::AltRight, true, false);
        assert_eq!(k.key(KeyCode::KeyG, true, false), KeyAction::Hotkey(Hotkey::ReleaseGrab));
        assert_eq!(k.key(KeyCode::KeyG, true, true), KeyAction::Nothing);
        assert_eq!(k.key(KeyCode::KeyG, false, false), KeyAction::Nothing);
        // Ctrl+Alt+Delete is the guest's.
        assert_eq!(k.key(KeyCode::Delete, true, false), KeyAction::Guest(HostInput::Press(PcKey::Delete)));
        assert_eq!(k.key(KeyCode::KeyQ, true, false), KeyAction::Hotkey(Hotkey::Quit));
    }
}
