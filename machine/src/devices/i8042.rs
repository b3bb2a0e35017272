//! The Intel 8042 keyboard controller of the PC/AT and PS/2 (ports 0x60 and 0x64) with a PS/2
//! keyboard on its first port and a PS/2 mouse (IntelliMouse and IntelliMouse Explorer) on
//! its auxiliary port. Follows IBM's "Keyboard/Auxiliary Device Controller" chapter of the
//! PS/2 Hardware Interface Technical Reference and the IBM keyboard and mouse references;
//! details that vary between 8042 firmwares follow QEMU, which SeaBIOS and guests expect.
//!
//! The keyboard speaks scan code set 2 (or 1 or 3 when told); the controller translates its
//! bytes to set 1 when bit 6 of the command byte says so. The output buffer is fed one byte
//! at a time from the controller's own answers, then the keyboard, then the mouse. IRQ 1 and
//! IRQ 12 follow a full output buffer when the command byte enables them.

use crate::device::{Device, DeviceContext, DeviceSnapshot, MachineEvent, SnapshotError};
use crate::devices::ps2_keys::{Modifiers, PcKey};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

const NAME: &str = "i8042";
const VERSION: u32 = 1;

pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;
pub const KBD_IRQ: u8 = 1;
pub const AUX_IRQ: u8 = 12;

// Status register.
const ST_OBF: u8 = 0x01;
const ST_SYS: u8 = 0x04;
/// A2: the last write went to the command port.
const ST_CMD: u8 = 0x08;
/// The keyboard inhibit switch is off (the key lock is open).
const ST_UNLOCKED: u8 = 0x10;
const ST_AUX_OBF: u8 = 0x20;

// Command byte.
const CB_KBD_INT: u8 = 0x01;
const CB_AUX_INT: u8 = 0x02;
const CB_SYS: u8 = 0x04;
const CB_KBD_DISABLE: u8 = 0x10;
const CB_AUX_DISABLE: u8 = 0x20;
const CB_TRANSLATE: u8 = 0x40;

// Output port.
const OP_RESET: u8 = 0x01;
const OP_A20: u8 = 0x02;
const OP_KBD_OBF: u8 = 0x10;
const OP_AUX_OBF: u8 = 0x20;
/// Reset line inactive, A20 on, the unused lines and the keyboard clock and data high.
const OP_POWER_ON: u8 = 0xCF;

const ACK: u8 = 0xFA;
const RESEND: u8 = 0xFE;
const BAT_OK: u8 = 0xAA;

/// A PS/2 keyboard buffers 16 bytes.
const KBD_QUEUE: usize = 16;
/// Room in the mouse for a few packets and command answers.
const AUX_QUEUE: usize = 64;
/// How often host input is looked at while a host holds an input handle.
const POLL_NS: u64 = 10_000_000;
/// Host events that may wait for room in the keyboard's buffer (see
/// `I8042::drain_host_input`); beyond them keys go in as they come, and overrun it.
const HOST_BACKLOG: usize = 256;

/// The 8042's table from scan code set 2 to set 1 (the high half passes through, but for the
/// two codes above 0x7F that keys send: F7 and SysRq).
const TRANSLATION: [u8; 256] = {
    let low: [u8; 128] = [
        0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59, //
        0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b, //
        0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d, //
        0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f, //
        0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61, //
        0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76, //
        0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f, //
        0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54, //
    ];
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i < 128 { low[i] } else { i as u8 };
        i += 1;
    }
    t[0x83] = 0x41;
    t[0x84] = 0x54;
    t
};

/// Set 2 bytes as the 8042 passes them on in translating mode: F0 is swallowed and sets the
/// high bit of the next translated byte.
pub fn translate_set2(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut f0 = false;
    for &b in bytes {
        if b == 0xF0 {
            f0 = true;
            continue;
        }
        out.push(TRANSLATION[b as usize] | if f0 { 0x80 } else { 0 });
        f0 = false;
    }
    out
}

/// Mouse buttons for [`I8042::mouse_move`] (a bit set).
pub mod buttons {
    pub const LEFT: u8 = 0x01;
    pub const RIGHT: u8 = 0x02;
    pub const MIDDLE: u8 = 0x04;
    /// The fourth and fifth buttons (back, forward): reported by an IntelliMouse Explorer.
    pub const BACK: u8 = 0x08;
    pub const FORWARD: u8 = 0x10;
}

/// Input from the host's keyboard and mouse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostInput {
    Press(PcKey),
    Release(PcKey),
    /// Relative motion: `dx` right, `dy` down (screen directions), `dz` wheel notches
    /// towards the user; `buttons` is the full button state ([`buttons`]).
    Mouse { dx: i32, dy: i32, dz: i32, buttons: u8 },
}

/// A handle a host window keeps to feed the keyboard and mouse from its own thread. The
/// controller looks at it on every guest access and every 10 ms of virtual time while any
/// handle is alive.
#[derive(Clone, Default)]
pub struct Ps2Input(Arc<Mutex<VecDeque<HostInput>>>);

impl Ps2Input {
    pub fn send(&self, input: HostInput) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push_back(input);
    }
}

/// Where [`Ps2Input`] handles come from, for the board to keep without holding one (a held
/// handle makes the controller poll).
#[derive(Clone, Default)]
pub struct Ps2InputSource(Weak<Mutex<VecDeque<HostInput>>>);

impl Ps2InputSource {
    /// A handle, while the controller exists.
    pub fn handle(&self) -> Option<Ps2Input> {
        self.0.upgrade().map(Ps2Input)
    }
}

// ---- The keyboard. ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Keyboard {
    queue: VecDeque<u8>,
    scanning: bool,
    /// Scan code set 1, 2 or 3.
    set: u8,
    leds: u8,
    /// The typematic rate/delay byte (F3).
    typematic: u8,
    /// A command waiting for its parameter byte.
    pending: Option<u8>,
    last_sent: u8,
    /// Keys held down (the host's physical state).
    held: Vec<PcKey>,
    mods: Modifiers,
    /// The key that repeats and when it next does.
    repeat: Option<(PcKey, u64)>,
}

impl Keyboard {
    fn new() -> Keyboard {
        Keyboard {
            queue: VecDeque::new(),
            scanning: true,
            set: 2,
            leds: 0,
            typematic: 0x2B, // 10.9 characters/s after 500 ms
            pending: None,
            last_sent: 0,
            held: Vec::new(),
            mods: Modifiers::default(),
            repeat: None,
        }
    }

    /// Back to the power-on defaults; the keys the host holds stay held.
    fn reset(&mut self) {
        let held = std::mem::take(&mut self.held);
        let mods = self.mods;
        *self = Keyboard { held, mods, ..Keyboard::new() };
    }

    fn defaults(&mut self) {
        self.typematic = 0x2B;
        self.set = 2;
        self.repeat = None;
    }

    fn send(&mut self, b: u8) {
        if self.queue.len() < KBD_QUEUE {
            self.queue.push_back(b);
        }
    }

    /// Queues a key's bytes, or the overrun code when they do not fit.
    fn send_key(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.queue.len() + bytes.len() <= KBD_QUEUE {
            self.queue.extend(bytes);
        } else if self.queue.back() != Some(&self.overrun()) {
            // The overrun code takes the buffer's last place.
            tracing::debug!("keyboard buffer overrun");
            if self.queue.len() >= KBD_QUEUE {
                self.queue.pop_back();
            }
            self.queue.push_back(self.overrun());
        }
    }

    /// Whether the bytes `e` queues fit in the buffer (an event that queues none always does).
    fn has_room_for(&self, e: &HostInput) -> bool {
        let bytes = match *e {
            HostInput::Press(k) if self.scanning && !self.held.contains(&k) => self.make_code(k).len(),
            HostInput::Release(k) if self.scanning && self.held.contains(&k) => self.break_code(k).len(),
            _ => 0,
        };
        self.queue.len() + bytes <= KBD_QUEUE
    }

    fn overrun(&self) -> u8 {
        if self.set == 1 {
            0xFF
        } else {
            0x00
        }
    }

    fn make_code(&self, key: PcKey) -> Vec<u8> {
        match self.set {
            1 => translate_set2(&key.make_set2(self.mods)),
            3 => key.set3().map_or(vec![], |c| vec![c]),
            _ => key.make_set2(self.mods),
        }
    }

    fn break_code(&self, key: PcKey) -> Vec<u8> {
        match self.set {
            1 => translate_set2(&key.break_set2(self.mods)),
            3 => key.set3().map_or(vec![], |c| vec![0xF0, c]),
            _ => key.break_set2(self.mods),
        }
    }

    /// The typematic delay and period in nanoseconds (IBM keyboard reference: period
    /// (8 + A) * 2^B * 4.17 ms, delay (1 + D) * 250 ms).
    fn typematic_times(&self) -> (u64, u64) {
        let t = self.typematic;
        let (a, b, d) = ((t & 7) as u64, ((t >> 3) & 3) as u64, ((t >> 5) & 3) as u64);
        ((1 + d) * 250_000_000, (8 + a) * (1 << b) * 4_170_000)
    }

    fn press(&mut self, key: PcKey, now: u64) {
        if self.held.contains(&key) {
            // The host's own auto-repeat: the keyboard repeats by itself.
            return;
        }
        self.held.push(key);
        if self.scanning {
            let bytes = self.make_code(key);
            self.send_key(&bytes);
        }
        key.track(&mut self.mods, true);
        self.repeat = key.typematic().then(|| (key, now + self.typematic_times().0));
    }

    fn release(&mut self, key: PcKey) {
        let Some(i) = self.held.iter().position(|&k| k == key) else { return };
        self.held.remove(i);
        key.track(&mut self.mods, false);
        if self.scanning {
            let bytes = self.break_code(key);
            self.send_key(&bytes);
        }
        if matches!(self.repeat, Some((k, _)) if k == key) {
            self.repeat = None;
        }
    }

    /// Sends the repeats due by `now`.
    fn run_typematic(&mut self, now: u64) {
        let Some((key, mut at)) = self.repeat else { return };
        let period = self.typematic_times().1;
        if now >= at {
            // One repeat per period, but a stalled host gets one, not a burst.
            if self.scanning {
                let bytes = self.make_code(key);
                self.send_key(&bytes);
            }
            at = now + period;
            self.repeat = Some((key, at));
        }
    }

    /// A byte from the controller (the host writing port 0x60).
    fn receive(&mut self, b: u8) {
        if let Some(cmd) = self.pending.take() {
            // A byte with the top bit set is a new command rather than a parameter.
            if b < 0x80 || (cmd == 0xF0 && b < 0xED) {
                self.parameter(cmd, b);
                return;
            }
        }
        self.command(b);
    }

    fn parameter(&mut self, cmd: u8, b: u8) {
        match cmd {
            0xED => {
                self.leds = b & 7;
                self.send(ACK);
            }
            0xF3 => {
                self.typematic = b & 0x7F;
                self.send(ACK);
            }
            0xF0 => match b {
                0 => {
                    self.send(ACK);
                    self.send(self.set);
                }
                1..=3 => {
                    self.set = b;
                    self.send(ACK);
                }
                _ => {
                    self.send(RESEND);
                    self.pending = Some(0xF0);
                }
            },
            // FB/FC/FD: set 3 key types, one key per byte until the next command.
            _ => {
                self.send(ACK);
                self.pending = Some(cmd);
            }
        }
    }

    fn command(&mut self, b: u8) {
        match b {
            0xFF => {
                self.queue.clear();
                self.scanning = true;
                self.leds = 0;
                self.defaults();
                self.send(ACK);
                self.send(BAT_OK);
            }
            0xFE => {
                let last = self.last_sent;
                self.send(last);
            }
            0xF6 => {
                self.defaults();
                self.queue.clear();
                self.send(ACK);
            }
            0xF5 => {
                self.defaults();
                self.queue.clear();
                self.scanning = false;
                self.send(ACK);
            }
            0xF4 => {
                self.queue.clear();
                self.scanning = true;
                self.send(ACK);
            }
            0xF2 => {
                self.send(ACK);
                self.send(0xAB);
                self.send(0x83);
            }
            0xEE => self.send(0xEE),
            0xED | 0xF3 | 0xF0 | 0xFB | 0xFC | 0xFD => {
                self.send(ACK);
                self.pending = Some(b);
            }
            // Set 3 key types for all keys: acknowledged; every key stays make/break/typematic.
            0xF7..=0xFA => self.send(ACK),
            _ => {
                tracing::debug!(b, "keyboard: unknown command");
                self.send(RESEND);
            }
        }
    }
}

// ---- The mouse. ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Mouse {
    queue: VecDeque<u8>,
    pending: Option<u8>,
    reporting: bool,
    remote: bool,
    wrap: bool,
    scaling_2to1: bool,
    /// 0-3: 1, 2, 4, 8 counts per millimetre.
    resolution: u8,
    rate: u8,
    /// 0 (standard), 3 (IntelliMouse: wheel), 4 (IntelliMouse Explorer: wheel, 5 buttons).
    id: u8,
    /// The last three sample rates set: the knock sequences that unlock the wheel.
    rates: [u8; 3],
    buttons: u8,
    /// Motion not yet reported, in counts at the default resolution (4/mm), y up.
    dx: i32,
    dy: i32,
    dz: i32,
    buttons_changed: bool,
    /// Stream mode: the earliest time of the next packet.
    next_sample: u64,
    last_sent: u8,
}

impl Mouse {
    fn new() -> Mouse {
        Mouse {
            queue: VecDeque::new(),
            pending: None,
            reporting: false,
            remote: false,
            wrap: false,
            scaling_2to1: false,
            resolution: 2,
            rate: 100,
            id: 0,
            rates: [0; 3],
            buttons: 0,
            dx: 0,
            dy: 0,
            dz: 0,
            buttons_changed: false,
            next_sample: 0,
            last_sent: 0,
        }
    }

    fn reset(&mut self) {
        let buttons = self.buttons;
        *self = Mouse { buttons, ..Mouse::new() };
    }

    fn defaults(&mut self) {
        self.reporting = false;
        self.scaling_2to1 = false;
        self.resolution = 2;
        self.rate = 100;
    }

    fn send(&mut self, b: u8) {
        if self.queue.len() < AUX_QUEUE {
            self.queue.push_back(b);
        }
    }

    fn receive(&mut self, b: u8) {
        if self.wrap && b != 0xFF && b != 0xEC {
            self.send(b);
            return;
        }
        if let Some(cmd) = self.pending.take() {
            match cmd {
                0xF3 => {
                    self.rate = b.max(1);
                    self.rates = [self.rates[1], self.rates[2], b];
                    match (self.id, self.rates) {
                        (0, [200, 100, 80]) => self.id = 3,
                        (3, [200, 200, 80]) => self.id = 4,
                        _ => {}
                    }
                }
                _ => self.resolution = b & 3,
            }
            self.send(ACK);
            return;
        }
        match b {
            0xFF => {
                self.reset();
                self.send(ACK);
                self.send(BAT_OK);
                self.send(0x00);
            }
            0xFE => {
                let last = self.last_sent;
                self.send(last);
            }
            0xF6 => {
                self.defaults();
                self.send(ACK);
            }
            0xF5 => {
                self.reporting = false;
                self.send(ACK);
            }
            0xF4 => {
                self.reporting = true;
                self.send(ACK);
            }
            0xF3 | 0xE8 => {
                self.pending = Some(b);
                self.send(ACK);
            }
            0xF2 => {
                self.send(ACK);
                self.send(self.id);
            }
            0xF0 => {
                self.remote = true;
                self.send(ACK);
            }
            0xEE => {
                self.wrap = true;
                self.send(ACK);
            }
            0xEC => {
                self.wrap = false;
                self.send(ACK);
            }
            0xEB => {
                self.send(ACK);
                self.packet(false);
            }
            0xEA => {
                self.remote = false;
                self.send(ACK);
            }
            0xE9 => {
                self.send(ACK);
                let b = self.buttons;
                let status = (self.remote as u8) << 6
                    | (self.reporting as u8) << 5
                    | (self.scaling_2to1 as u8) << 4
                    | (b & buttons::LEFT != 0) as u8 * 4
                    | (b & buttons::MIDDLE != 0) as u8 * 2
                    | (b & buttons::RIGHT != 0) as u8;
                self.send(status);
                self.send(self.resolution);
                self.send(self.rate);
            }
            0xE7 => {
                self.scaling_2to1 = true;
                self.send(ACK);
            }
            0xE6 => {
                self.scaling_2to1 = false;
                self.send(ACK);
            }
            _ => {
                tracing::debug!(b, "mouse: unknown command");
                self.send(RESEND);
            }
        }
    }

    fn packet_len(&self) -> usize {
        if self.id == 0 {
            3
        } else {
            4
        }
    }

    /// Counts to report out of `acc` at the current resolution; the rest stays.
    fn take(acc: &mut i32, resolution: u8, limit: i32) -> i32 {
        let mul = 1i64 << resolution;
        let counts = ((*acc as i64 * mul) / 4).clamp(-(limit as i64), limit as i64);
        *acc -= (counts * 4 / mul) as i32;
        counts as i32
    }

    /// Builds and queues one data packet from the motion and buttons not yet reported.
    fn packet(&mut self, stream: bool) {
        let mut dx = Self::take(&mut self.dx, self.resolution, 255);
        let mut dy = Self::take(&mut self.dy, self.resolution, 255);
        if stream && self.scaling_2to1 {
            // 2:1 scaling (IBM mouse reference): 1->1, 2->1, 3->3, 4->6, 5->9, n->2n.
            let scale = |v: i32| {
                let m = v.abs();
                let s = match m {
                    0..=1 => m,
                    2 => 1,
                    3 => 3,
                    4 => 6,
                    5 => 9,
                    _ => 2 * m,
                };
                s.min(255) * v.signum()
            };
            dx = scale(dx);
            dy = scale(dy);
        }
        let b = self.buttons;
        let first = 0x08
            | (b & buttons::LEFT != 0) as u8
            | ((b & buttons::RIGHT != 0) as u8) << 1
            | ((b & buttons::MIDDLE != 0) as u8) << 2
            | ((dx < 0) as u8) << 4
            | ((dy < 0) as u8) << 5;
        self.send(first);
        self.send(dx as u8);
        self.send(dy as u8);
        match self.id {
            3 => {
                let z = self.dz.clamp(-128, 127);
                self.dz -= z;
                self.send(z as u8);
            }
            4 => {
                let z = self.dz.clamp(-8, 7);
                self.dz -= z;
                let extra = ((b & buttons::BACK != 0) as u8) << 4 | ((b & buttons::FORWARD != 0) as u8) << 5;
                self.send((z as u8 & 0x0F) | extra);
            }
            _ => self.dz = 0,
        }
        self.buttons_changed = false;
    }

    fn moved(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        let clamp = |v: i64| v.clamp(-(1 << 20), 1 << 20) as i32;
        self.dx = clamp(self.dx as i64 + dx as i64);
        // The host's y grows downwards, the mouse's upwards.
        self.dy = clamp(self.dy as i64 - dy as i64);
        self.dz = clamp(self.dz as i64 + dz as i64);
        if buttons != self.buttons {
            // A press and its release in one burst of host input (a quick click, a stalled
            // emulation thread): the earlier state goes out first, or the click is lost.
            if self.buttons_changed && self.streaming() && self.queue.len() + self.packet_len() <= AUX_QUEUE {
                self.packet(true);
            }
            self.buttons = buttons;
            self.buttons_changed = true;
        }
    }

    fn has_news(&self) -> bool {
        self.dx != 0 || self.dy != 0 || (self.dz != 0 && self.id != 0) || self.buttons_changed
    }

    fn streaming(&self) -> bool {
        self.reporting && !self.remote && !self.wrap
    }

    /// Stream mode: a packet at most once per sample period while something changed.
    fn run_stream(&mut self, now: u64) {
        if self.streaming() && self.has_news() && now >= self.next_sample {
            if self.queue.len() + self.packet_len() <= AUX_QUEUE {
                self.packet(true);
                self.next_sample = now + 1_000_000_000 / self.rate.max(1) as u64;
            }
        }
    }

    fn next_event(&self) -> Option<u64> {
        (self.streaming() && self.has_news()).then_some(self.next_sample)
    }
}

// ---- The controller. ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// Internal RAM: byte 0 is the command byte.
    ram: [u8; 32],
    output_port: u8,
    /// SYS and A2 (the rest of the status register is computed).
    status: u8,
    /// A controller command waiting for its data byte.
    pending: Option<u8>,
    /// The output buffer: the byte and whether it came from the auxiliary device.
    obuf: Option<(u8, bool)>,
    /// What port 0x60 reads when the output buffer is empty: the last byte it held.
    last_out: u8,
    /// The controller's own bytes waiting for the output buffer (command answers, D2/D3).
    answers: VecDeque<(u8, bool)>,
    /// Translation saw F0: the next translated byte gets bit 7.
    xlat_f0: bool,
    irq1: bool,
    irq12: bool,
    kbd: Keyboard,
    mouse: Mouse,
}

impl State {
    fn new() -> State {
        let mut ram = [0u8; 32];
        ram[0] = CB_KBD_INT | CB_AUX_INT;
        State {
            ram,
            output_port: OP_POWER_ON,
            status: 0,
            pending: None,
            obuf: None,
            last_out: 0,
            answers: VecDeque::new(),
            xlat_f0: false,
            irq1: false,
            irq12: false,
            kbd: Keyboard::new(),
            mouse: Mouse::new(),
        }
    }
}

/// The 8042 with its keyboard and mouse.
pub struct I8042 {
    s: State,
    input: Ps2Input,
    /// Bytes loaded into the output buffer so far (to tell a new byte from the old one).
    loads: u64,
}

impl Default for I8042 {
    fn default() -> Self {
        I8042::new()
    }
}

impl I8042 {
    pub fn new() -> I8042 {
        I8042 { s: State::new(), input: Ps2Input::default(), loads: 0 }
    }

    /// A handle for the host's keyboard and mouse events (see [`Ps2Input`]).
    pub fn input(&self) -> Ps2Input {
        self.input.clone()
    }

    /// Handles on demand, without holding one.
    pub fn input_source(&self) -> Ps2InputSource {
        Ps2InputSource(Arc::downgrade(&self.input.0))
    }

    /// A key went down on the host.
    pub fn press(&mut self, key: PcKey, cx: &mut DeviceContext) {
        self.access(cx, |k, cx| k.s.kbd.press(key, cx.now))
    }

    /// A key came up on the host.
    pub fn release(&mut self, key: PcKey, cx: &mut DeviceContext) {
        self.access(cx, |k, _| k.s.kbd.release(key))
    }

    /// The host mouse moved (`dx` right, `dy` down, `dz` wheel notches towards the user)
    /// and/or its buttons changed (`buttons` is the whole state, see [`buttons`]).
    pub fn mouse_move(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8, cx: &mut DeviceContext) {
        self.access(cx, |k, _| k.s.mouse.moved(dx, dy, dz, buttons))
    }

    /// The keyboard LEDs as the guest set them: bit 0 Scroll Lock, 1 Num Lock, 2 Caps Lock.
    pub fn leds(&self) -> u8 {
        self.s.kbd.leds
    }

    fn command_byte(&self) -> u8 {
        self.s.ram[0]
    }

    /// Takes in the host's events, in order, as far as the keyboard's buffer has room for
    /// their bytes: a burst of host events (xdotool typing, a paste, or an emulation thread
    /// that fell behind the window's) reaches the guest at the rate it reads the keyboard, as
    /// a person's typing spread over time would, instead of overrunning the buffer at once.
    /// A guest that does not read lets at most HOST_BACKLOG events wait; then they go in as
    /// they come, and the keyboard overruns as it would.
    fn drain_host_input(&mut self, now: u64) {
        let mut q = self.input.0.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&e) = q.front() {
            if q.len() <= HOST_BACKLOG && !self.s.kbd.has_room_for(&e) {
                break;
            }
            q.pop_front();
            match e {
                HostInput::Press(k) => self.s.kbd.press(k, now),
                HostInput::Release(k) => self.s.kbd.release(k),
                HostInput::Mouse { dx, dy, dz, buttons } => self.s.mouse.moved(dx, dy, dz, buttons),
            }
        }
    }

    /// Fills an empty output buffer: the controller's answers first, then the keyboard (if
    /// its interface is enabled), then the mouse.
    fn refill(&mut self) {
        let was_empty = self.s.obuf.is_none();
        self.refill_from_queues();
        if was_empty && self.s.obuf.is_some() {
            self.loads += 1;
        }
    }

    fn refill_from_queues(&mut self) {
        let s = &mut self.s;
        while s.obuf.is_none() {
            if let Some(a) = s.answers.pop_front() {
                s.obuf = Some(a);
            } else if s.ram[0] & CB_KBD_DISABLE == 0 && !s.kbd.queue.is_empty() {
                let b = s.kbd.queue.pop_front().unwrap_or(0);
                s.kbd.last_sent = b;
                if s.ram[0] & CB_TRANSLATE != 0 {
                    if b == 0xF0 {
                        s.xlat_f0 = true;
                        continue;
                    }
                    let t = TRANSLATION[b as usize] | if s.xlat_f0 { 0x80 } else { 0 };
                    s.xlat_f0 = false;
                    s.obuf = Some((t, false));
                } else {
                    s.obuf = Some((b, false));
                }
            } else if s.ram[0] & CB_AUX_DISABLE == 0 && !s.mouse.queue.is_empty() {
                let b = s.mouse.queue.pop_front().unwrap_or(0);
                s.mouse.last_sent = b;
                s.obuf = Some((b, true));
            } else {
                break;
            }
        }
    }

    /// IRQ 1 and IRQ 12 follow the output buffer. A new byte replacing one the guest just
    /// read shows as a fresh edge, as the line drops between the two on hardware.
    fn update_irqs(&mut self, cx: &mut DeviceContext, fresh: bool) {
        let cb = self.command_byte();
        let (kbd, aux) = match self.s.obuf {
            Some((_, false)) => (cb & CB_KBD_INT != 0, false),
            Some((_, true)) => (false, cb & CB_AUX_INT != 0),
            None => (false, false),
        };
        for (line, level, cur) in [(KBD_IRQ, kbd, &mut self.s.irq1), (AUX_IRQ, aux, &mut self.s.irq12)] {
            if *cur && level && fresh {
                cx.set_irq(line, false);
                cx.set_irq(line, true);
            } else if *cur != level {
                cx.set_irq(line, level);
            }
            *cur = level;
        }
    }

    fn schedule(&self, cx: &mut DeviceContext) {
        let mut next = [self.s.kbd.repeat.map(|r| r.1), self.s.mouse.next_event()].into_iter().flatten().min();
        if Arc::strong_count(&self.input.0) > 1 {
            next = Some(next.map_or(cx.now + POLL_NS, |n| n.min(cx.now + POLL_NS)));
        }
        cx.set_deadline(next.map(|t| t.max(cx.now + 1)));
    }

    /// Every access and tick: host input and the devices' own timing first, then the access,
    /// then the output buffer, the interrupt lines and the next deadline.
    fn access<R>(&mut self, cx: &mut DeviceContext, f: impl FnOnce(&mut Self, &mut DeviceContext) -> R) -> R {
        self.drain_host_input(cx.now);
        let loads = self.loads;
        let r = f(self, cx);
        self.s.kbd.run_typematic(cx.now);
        self.s.mouse.run_stream(cx.now);
        self.refill();
        self.update_irqs(cx, self.loads != loads);
        self.schedule(cx);
        r
    }

    fn answer(&mut self, b: u8) {
        self.s.answers.push_back((b, false));
    }

    fn set_output_port(&mut self, v: u8, cx: &mut DeviceContext) {
        self.s.output_port = v;
        cx.event(MachineEvent::A20(v & OP_A20 != 0));
        if v & OP_RESET == 0 {
            cx.event(MachineEvent::Reset);
        }
    }

    fn read_data(&mut self) -> u8 {
        match self.s.obuf.take() {
            Some((b, _)) => {
                self.s.last_out = b;
                b
            }
            None => self.s.last_out,
        }
    }

    fn read_status(&self) -> u8 {
        let (obf, aux) = match self.s.obuf {
            Some((_, aux)) => (ST_OBF, if aux { ST_AUX_OBF } else { 0 }),
            None => (0, 0),
        };
        obf | aux | ST_UNLOCKED | (self.s.status & (ST_SYS | ST_CMD))
    }

    fn write_data(&mut self, v: u8, cx: &mut DeviceContext) {
        self.s.status &= !ST_CMD;
        match self.s.pending.take() {
            Some(c @ 0x60..=0x7F) => {
                self.s.ram[(c & 0x1F) as usize] = v;
                if c == 0x60 {
                    self.s.status = (self.s.status & !ST_SYS) | (v & CB_SYS);
                }
            }
            Some(0xD1) => self.set_output_port(v, cx),
            Some(0xD2) => self.s.answers.push_back((v, false)),
            Some(0xD3) => self.s.answers.push_back((v, true)),
            Some(0xD4) => {
                // Talking to the mouse enables its interface (as QEMU's controller does).
                self.s.ram[0] &= !CB_AUX_DISABLE;
                self.s.mouse.receive(v);
            }
            _ => {
                // A byte for the keyboard; sending one enables its interface.
                self.s.ram[0] &= !CB_KBD_DISABLE;
                self.s.kbd.receive(v);
            }
        }
    }

    fn write_command(&mut self, c: u8, cx: &mut DeviceContext) {
        self.s.status |= ST_CMD;
        self.s.pending = None;
        match c {
            0x20..=0x3F => {
                let v = self.s.ram[(c & 0x1F) as usize];
                self.answer(v);
            }
            0x60..=0x7F | 0xD1..=0xD4 => self.s.pending = Some(c),
            0xA4 => self.answer(0xF1), // no password installed
            0xA7 => self.s.ram[0] |= CB_AUX_DISABLE,
            0xA8 => self.s.ram[0] &= !CB_AUX_DISABLE,
            0xA9 | 0xAB => self.answer(0x00), // interface test: no fault
            0xAA => {
                self.s.status |= ST_SYS;
                self.answer(0x55);
            }
            0xAD => self.s.ram[0] |= CB_KBD_DISABLE,
            0xAE => self.s.ram[0] &= !CB_KBD_DISABLE,
            // Input port: keyboard not inhibited.
            0xC0 => self.answer(0x80),
            0xD0 => {
                let (kbd, aux) = match self.s.obuf {
                    Some((_, false)) => (OP_KBD_OBF, 0),
                    Some((_, true)) => (0, OP_AUX_OBF),
                    None => (0, 0),
                };
                let v = (self.s.output_port & !(OP_KBD_OBF | OP_AUX_OBF)) | kbd | aux;
                self.answer(v);
            }
            // HP Vectra A20 commands, which QEMU's controller also knows.
            0xDD | 0xDF => {
                let on = c == 0xDF;
                self.s.output_port = (self.s.output_port & !OP_A20) | if on { OP_A20 } else { 0 };
                cx.event(MachineEvent::A20(on));
            }
            0xE0 => self.answer(0x00), // test inputs
            0xF0..=0xFF => {
                // Pulse the output port lines whose bits are 0 for 6 µs: bit 0 is reset.
                if c & 1 == 0 {
                    cx.event(MachineEvent::Reset);
                }
            }
            _ => tracing::debug!(c, "8042: unknown controller command"),
        }
    }
}

impl Device for I8042 {
    fn name(&self) -> &'static str {
        NAME
    }

    fn io_read(&mut self, port: u16, size: u8, cx: &mut DeviceContext) -> u32 {
        self.access(cx, |k, _| {
            (0..size.min(4)).fold(0u32, |acc, i| {
                let b = match port.wrapping_add(i as u16) {
                    DATA_PORT => k.read_data(),
                    COMMAND_PORT => k.read_status(),
                    _ => 0xFF,
                };
                acc | (b as u32) << (8 * i)
            })
        })
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, cx: &mut DeviceContext) {
        self.access(cx, |k, cx| {
            for i in 0..size.min(4) {
                let v = (value >> (8 * i)) as u8;
                match port.wrapping_add(i as u16) {
                    DATA_PORT => k.write_data(v, cx),
                    COMMAND_PORT => k.write_command(v, cx),
                    _ => {}
                }
            }
        })
    }

    fn tick(&mut self, cx: &mut DeviceContext) {
        self.access(cx, |_, _| {})
    }

    fn power_on(&mut self, cx: &mut DeviceContext) {
        self.access(cx, |_, _| {})
    }

    /// Controller, keyboard and mouse back to their power-on state; keys and buttons the
    /// host holds stay held.
    fn reset(&mut self) {
        let (kbd, mouse) = (self.s.kbd.clone(), self.s.mouse.clone());
        self.s = State::new();
        self.s.kbd = kbd;
        self.s.kbd.reset();
        self.s.mouse = mouse;
        self.s.mouse.reset();
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        let s: State = snapshot.decode(NAME, VERSION)?;
        if !(1..=3).contains(&s.kbd.set) {
            return Err(SnapshotError::Malformed {
                device: NAME.into(),
                source: <serde_json::Error as serde::de::Error>::custom("keyboard scan code set out of range"),
            });
        }
        self.s = s;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// The controller on a fake clock, recording IRQ edges and events.
    struct Bench {
        k: I8042,
        now: u64,
        deadline: Option<u64>,
        irqs: Vec<(u8, bool)>,
        events: Vec<MachineEvent>,
    }

    impl Bench {
        fn new() -> Bench {
            let mut b = Bench { k: I8042::new(), now: 0, deadline: None, irqs: Vec::new(), events: Vec::new() };
            b.with(|k, cx| k.power_on(cx));
            b
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut I8042, &mut DeviceContext) -> R) -> R {
            let mut dl = self.deadline;
            let mut cx = DeviceContext::new(self.now, &mut self.irqs, &mut self.events, &mut dl);
            let r = f(&mut self.k, &mut cx);
            self.deadline = dl;
            r
        }

        fn cmd(&mut self, c: u8) {
            self.with(|k, cx| k.io_write(COMMAND_PORT, 1, c as u32, cx));
        }

        fn data(&mut self, v: u8) {
            self.with(|k, cx| k.io_write(DATA_PORT, 1, v as u32, cx));
        }

        fn status(&mut self) -> u8 {
            self.with(|k, cx| k.io_read(COMMAND_PORT, 1, cx)) as u8
        }

        fn read(&mut self) -> u8 {
            self.with(|k, cx| k.io_read(DATA_PORT, 1, cx)) as u8
        }

        /// Everything waiting in the output buffer, as a polling driver reads it.
        fn drain(&mut self) -> Vec<u8> {
            let mut out = Vec::new();
            while self.status() & ST_OBF != 0 {
                out.push(self.read());
            }
            out
        }

        fn set_command_byte(&mut self, v: u8) {
            self.cmd(0x60);
            self.data(v);
        }

        fn press(&mut self, key: PcKey) {
            self.with(|k, cx| k.press(key, cx));
        }

        fn release(&mut self, key: PcKey) {
            self.with(|k, cx| k.release(key, cx));
        }

        fn run_to(&mut self, t: u64) {
            while let Some(d) = self.deadline.filter(|&d| d <= t) {
                self.now = self.now.max(d);
                self.deadline = None;
                self.with(|k, cx| k.tick(cx));
            }
            self.now = t;
        }

        fn rising(&self, line: u8) -> usize {
            self.irqs.iter().filter(|&&(l, v)| l == line && v).count()
        }
    }

    #[test]
    fn self_test_and_interface_tests() {
        let mut b = Bench::new();
        assert_eq!(b.status() & ST_SYS, 0, "cold boot: system flag clear");
        b.cmd(0xAA);
        assert_eq!(b.status() & (ST_OBF | ST_SYS | ST_CMD), ST_OBF | ST_SYS | ST_CMD);
        assert_eq!(b.read(), 0x55);
        b.cmd(0xAB);
        assert_eq!(b.read(), 0x00);
        b.cmd(0xA9);
        assert_eq!(b.read(), 0x00);
        assert_eq!(b.status() & ST_OBF, 0);
        assert_eq!(b.read(), 0x00, "an empty buffer reads its last byte");
        b.cmd(0xA4);
        assert_eq!(b.drain(), vec![0xF1]);
        b.cmd(0xC0);
        assert_eq!(b.drain(), vec![0x80]);
        b.data(0xEE);
        assert_eq!(b.status() & ST_CMD, 0, "A2 follows the last port written");
    }

    #[test]
    fn command_byte_read_write_and_ram() {
        let mut b = Bench::new();
        b.cmd(0x20);
        assert_eq!(b.drain(), vec![0x03]);
        b.set_command_byte(0x65);
        b.cmd(0x20);
        assert_eq!(b.drain(), vec![0x65]);
        assert_eq!(b.status() & ST_SYS, ST_SYS, "the SYS bit of the command byte");
        b.cmd(0x7F);
        b.data(0x99);
        b.cmd(0x3F);
        assert_eq!(b.drain(), vec![0x99]);
        b.cmd(0xAD);
        b.cmd(0xA7);
        b.cmd(0x20);
        assert_eq!(b.drain(), vec![0x75]);
        b.cmd(0xAE);
        b.cmd(0xA8);
        b.cmd(0x20);
        assert_eq!(b.drain(), vec![0x45]);
    }

    #[test]
    fn keyboard_reset_identify_and_echo_untranslated() {
        let mut b = Bench::new();
        b.set_command_byte(0x01);
        b.data(0xFF);
        assert_eq!(b.drain(), vec![ACK, BAT_OK]);
        b.data(0xF2);
        assert_eq!(b.drain(), vec![ACK, 0xAB, 0x83]);
        b.data(0xEE);
        assert_eq!(b.drain(), vec![0xEE]);
        b.data(0x42);
        assert_eq!(b.drain(), vec![RESEND], "unknown command");
        b.data(0xFE);
        assert_eq!(b.drain(), vec![RESEND], "resend repeats the last byte");
    }

    #[test]
    fn translation_to_set1() {
        let mut b = Bench::new();
        b.set_command_byte(0x41); // IRQ 1, translate
        b.data(0xF2);
        assert_eq!(b.drain(), vec![ACK, 0xAB, 0x41], "0x83 translates to 0x41");
        b.press(PcKey::KeyA);
        b.release(PcKey::KeyA);
        b.press(PcKey::ArrowUp);
        b.release(PcKey::ArrowUp);
        assert_eq!(b.drain(), vec![0x1E, 0x9E, 0xE0, 0x48, 0xE0, 0xC8]);
        b.data(0xF0);
        b.data(0x00);
        assert_eq!(b.drain(), vec![ACK, ACK, 0x41], "scan set 2, translated");
        // Untranslated: set 2 as the keyboard sends it.
        b.set_command_byte(0x01);
        b.press(PcKey::PrintScreen);
        b.release(PcKey::PrintScreen);
        assert_eq!(b.drain(), vec![0xE0, 0x12, 0xE0, 0x7C, 0xE0, 0xF0, 0x7C, 0xE0, 0xF0, 0x12]);
        b.press(PcKey::Pause);
        b.release(PcKey::Pause);
        assert_eq!(b.drain(), vec![0xE1, 0x14, 0x77, 0xE1, 0xF0, 0x14, 0xF0, 0x77], "Pause: no break code");
    }

    #[test]
    fn scan_code_sets_1_and_3() {
        let mut b = Bench::new();
        b.set_command_byte(0x00);
        b.data(0xF0);
        b.data(0x01);
        b.data(0xF0);
        b.data(0x00);
        assert_eq!(b.drain(), vec![ACK, ACK, ACK, ACK, 0x01]);
        b.press(PcKey::KeyA);
        b.release(PcKey::KeyA);
        assert_eq!(b.drain(), vec![0x1E, 0x9E], "set 1 from the keyboard itself");
        b.data(0xF0);
        b.data(0x03);
        b.press(PcKey::Escape);
        b.release(PcKey::Escape);
        b.press(PcKey::ControlRight);
        assert_eq!(b.drain(), vec![ACK, ACK, 0x08, 0xF0, 0x08, 0x58]);
        b.data(0xF0);
        b.data(0x07);
        assert_eq!(b.drain(), vec![ACK, RESEND], "no set 7");
    }

    #[test]
    fn leds_typematic_and_parameters_that_are_commands() {
        let mut b = Bench::new();
        b.set_command_byte(0x00);
        b.data(0xED);
        b.data(0x05);
        assert_eq!(b.k.leds(), 5);
        b.data(0xF3);
        b.data(0x00); // 30 characters/s after 250 ms
        assert_eq!(b.drain(), vec![ACK, ACK, ACK, ACK]);
        b.data(0xED);
        b.data(0xF2); // not an LED byte: a new command
        assert_eq!(b.drain(), vec![ACK, ACK, 0xAB, 0x83]);
        assert_eq!(b.k.leds(), 5);
        // Typematic: the make code again after the delay, then every period.
        b.press(PcKey::KeyB);
        assert_eq!(b.drain(), vec![0x32]);
        b.run_to(250 * MS - 1);
        assert!(b.drain().is_empty());
        b.run_to(250 * MS);
        assert_eq!(b.drain(), vec![0x32]);
        b.run_to(250 * MS + 33_360_000 * 3);
        assert_eq!(b.drain(), vec![0x32; 3], "8 * 4.17 ms period");
        b.release(PcKey::KeyB);
        b.run_to(2_000 * MS);
        assert_eq!(b.drain(), vec![0xF0, 0x32]);
        assert_eq!(b.deadline, None);
        // The host's own repeats are ignored; a second key takes over the repeat.
        b.press(PcKey::KeyC);
        b.press(PcKey::KeyC);
        b.press(PcKey::KeyD);
        b.run_to(b.now + 300 * MS);
        b.release(PcKey::KeyC);
        b.release(PcKey::KeyD);
        let got = b.drain();
        let n = got.len();
        assert_eq!(got[0], 0x21);
        assert!(n > 6 && got[1..n - 4].iter().all(|&x| x == 0x23), "only D repeats: {got:x?}");
        assert_eq!(got[n - 4..], [0xF0, 0x21, 0xF0, 0x23]);
    }

    #[test]
    fn disabled_scanning_and_buffer_overrun() {
        let mut b = Bench::new();
        b.set_command_byte(0x00);
        b.data(0xF5);
        assert_eq!(b.drain(), vec![ACK]);
        b.press(PcKey::KeyA);
        b.release(PcKey::KeyA);
        assert!(b.drain().is_empty(), "not scanning");
        b.data(0xF4);
        assert_eq!(b.drain(), vec![ACK]);
        // The keyboard interface disabled: 16 bytes buffer in the keyboard, then overrun.
        b.cmd(0xAD);
        for k in [PcKey::KeyQ, PcKey::KeyW, PcKey::KeyE, PcKey::KeyR, PcKey::KeyT, PcKey::KeyY, PcKey::KeyU] {
            b.press(k);
            b.release(k);
        }
        assert!(b.drain().is_empty());
        b.cmd(0xAE);
        let got = b.drain();
        assert_eq!(got.len(), 16);
        assert_eq!(got[15], 0x00, "set 2 overrun code");
    }

    #[test]
    fn a_burst_of_host_keys_waits_for_room_instead_of_overrunning() {
        use PcKey::*;
        let mut b = Bench::new();
        b.set_command_byte(0x40); // translation to set 1, no interrupts
        let input = b.k.input();
        // 19 keys, 38 bytes at once: more than the keyboard's 16.
        let keys = [KeyQ, KeyW, KeyE, KeyR, KeyT, KeyY, KeyU, KeyI, KeyO, KeyP, KeyA, KeyS, KeyD, KeyF, KeyG, KeyH, KeyJ, KeyK, KeyL];
        let codes = (0x10..=0x19).chain(0x1E..=0x26);
        for k in keys {
            input.send(HostInput::Press(k));
            input.send(HostInput::Release(k));
        }
        let mut got = Vec::new();
        for i in 1..=10 {
            b.run_to(i * POLL_NS);
            got.extend(b.drain());
        }
        let want: Vec<u8> = codes.flat_map(|c| [c, c | 0x80]).collect();
        assert_eq!(got, want, "every key, in order, no overrun code");
        // A guest that stops reading: the backlog fills, then the buffer overruns.
        b.cmd(0xAD);
        for _ in 0..HOST_BACKLOG {
            input.send(HostInput::Press(KeyZ));
            input.send(HostInput::Release(KeyZ));
        }
        b.run_to(20 * POLL_NS);
        b.cmd(0xAE);
        let got = b.drain();
        // 16 bytes of set 2 (five keys' 1 + 2 bytes, the overrun code), translated; then the
        // events that waited.
        let z = [0x2C, 0xAC];
        let want: Vec<u8> = z.repeat(5).into_iter().chain([0xFF]).chain(z.repeat(HOST_BACKLOG / 2)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn irq1_per_byte_with_fresh_edges() {
        let mut b = Bench::new();
        b.set_command_byte(0x41);
        b.irqs.clear();
        b.press(PcKey::ArrowLeft); // E0 6B: two bytes
        assert_eq!(b.irqs, vec![(KBD_IRQ, true)]);
        assert_eq!(b.read(), 0xE0);
        assert_eq!(b.rising(KBD_IRQ), 2, "the second byte is a new edge");
        assert_eq!(b.read(), 0x4B);
        assert_eq!(b.irqs.last(), Some(&(KBD_IRQ, false)));
        // Interrupts off in the command byte: no IRQ, OBF still set.
        b.set_command_byte(0x40);
        b.irqs.clear();
        b.release(PcKey::ArrowLeft);
        assert!(b.irqs.is_empty());
        assert_eq!(b.status() & ST_OBF, ST_OBF);
    }

    #[test]
    fn a20_and_reset_through_the_output_port() {
        let mut b = Bench::new();
        b.cmd(0xD0);
        assert_eq!(b.drain(), vec![0xCF & !0x30 | 0x00]);
        b.cmd(0xD1);
        b.data(0xCD);
        assert_eq!(b.events, vec![MachineEvent::A20(false)]);
        b.cmd(0xD0);
        assert_eq!(b.read(), 0xCD, "bits 4-5: the buffer was empty when the port was read");
        b.cmd(0xD1);
        b.data(0xCF);
        assert_eq!(b.events.last(), Some(&MachineEvent::A20(true)));
        b.events.clear();
        b.cmd(0xD1);
        b.data(0xCE);
        assert_eq!(b.events, vec![MachineEvent::A20(true), MachineEvent::Reset]);
        b.events.clear();
        b.cmd(0xDD);
        b.cmd(0xDF);
        assert_eq!(b.events, vec![MachineEvent::A20(false), MachineEvent::A20(true)]);
        b.events.clear();
        b.cmd(0xFF);
        assert!(b.events.is_empty(), "no line pulsed");
        b.cmd(0xFE);
        assert_eq!(b.events, vec![MachineEvent::Reset]);
        b.events.clear();
        b.cmd(0xF0);
        assert_eq!(b.events, vec![MachineEvent::Reset]);
    }

    #[test]
    fn write_to_keyboard_and_aux_output_buffers() {
        let mut b = Bench::new();
        b.set_command_byte(0x03);
        b.irqs.clear();
        b.cmd(0xD2);
        b.data(0x12);
        assert_eq!(b.status() & (ST_OBF | ST_AUX_OBF), ST_OBF);
        assert_eq!(b.read(), 0x12);
        b.cmd(0xD3);
        b.data(0x34);
        assert_eq!(b.status() & (ST_OBF | ST_AUX_OBF), ST_OBF | ST_AUX_OBF);
        assert_eq!(b.read(), 0x34);
        assert_eq!(b.irqs, vec![(KBD_IRQ, true), (KBD_IRQ, false), (AUX_IRQ, true), (AUX_IRQ, false)]);
    }

    fn aux(b: &mut Bench, v: u8) {
        b.cmd(0xD4);
        b.data(v);
    }

    #[test]
    fn mouse_reset_identify_and_intellimouse_knock() {
        let mut b = Bench::new();
        b.set_command_byte(0x02);
        aux(&mut b, 0xFF);
        assert_eq!(b.drain(), vec![ACK, BAT_OK, 0x00]);
        aux(&mut b, 0xF2);
        assert_eq!(b.drain(), vec![ACK, 0x00]);
        for r in [200, 100, 80] {
            aux(&mut b, 0xF3);
            aux(&mut b, r);
        }
        aux(&mut b, 0xF2);
        assert_eq!(b.drain()[6..], [ACK, 0x03]);
        for r in [200, 200, 80] {
            aux(&mut b, 0xF3);
            aux(&mut b, r);
        }
        aux(&mut b, 0xF2);
        assert_eq!(b.drain()[6..], [ACK, 0x04]);
        aux(&mut b, 0xFF);
        aux(&mut b, 0xF2);
        assert_eq!(b.drain(), vec![ACK, BAT_OK, 0x00, ACK, 0x00], "reset forgets the wheel");
    }

    #[test]
    fn mouse_stream_packets_at_the_sample_rate() {
        let mut b = Bench::new();
        b.set_command_byte(0x02);
        aux(&mut b, 0xF4);
        assert_eq!(b.drain(), vec![ACK]);
        b.with(|k, cx| k.mouse_move(10, 5, 0, buttons::LEFT, cx));
        // dx 10, dy -5 (up is positive), left button, bit 3 always set, Y sign.
        assert_eq!(b.drain(), vec![0x29, 10, 0xFB]);
        assert_eq!(b.status() & ST_AUX_OBF, 0);
        b.with(|k, cx| k.mouse_move(1000, 0, 0, buttons::LEFT, cx));
        assert!(b.drain().is_empty(), "next packet waits for the 100 Hz sample");
        b.run_to(10 * MS);
        assert_eq!(b.drain(), vec![0x09, 255, 0], "clamped to 255, the rest follows");
        b.run_to(20 * MS);
        assert_eq!(b.drain(), vec![0x09, 255, 0]);
        b.run_to(50 * MS);
        assert_eq!(b.drain(), vec![0x09, 255, 0, 0x09, 235, 0]);
        assert_eq!(b.deadline, None);
        // IntelliMouse: a fourth byte with the wheel.
        for r in [200, 100, 80] {
            aux(&mut b, 0xF3);
            aux(&mut b, r);
        }
        b.drain();
        b.run_to(100 * MS);
        b.with(|k, cx| k.mouse_move(-3, 0, 2, 0, cx));
        assert_eq!(b.drain(), vec![0x18, 0xFD, 0x00, 0x02]);
        // Status request and remote mode.
        aux(&mut b, 0xE9);
        assert_eq!(b.drain(), vec![ACK, 0x20, 2, 80]);
        aux(&mut b, 0xF0);
        b.with(|k, cx| k.mouse_move(4, 0, 0, buttons::RIGHT, cx));
        b.run_to(200 * MS);
        assert_eq!(b.drain(), vec![ACK]);
        aux(&mut b, 0xEB);
        assert_eq!(b.drain(), vec![ACK, 0x0A, 4, 0, 0]);
    }

    #[test]
    fn a_click_within_one_sample_period_is_not_lost() {
        let mut b = Bench::new();
        b.set_command_byte(0x00);
        let input = b.k.input();
        aux(&mut b, 0xF4);
        b.drain();
        b.with(|k, cx| k.mouse_move(1, 0, 0, 0, cx));
        assert_eq!(b.drain(), vec![0x08, 1, 0]);
        // Press and release before the next 100 Hz sample, as host input arrives in bursts.
        input.send(HostInput::Mouse { dx: 0, dy: 0, dz: 0, buttons: buttons::RIGHT });
        input.send(HostInput::Mouse { dx: 0, dy: 0, dz: 0, buttons: 0 });
        b.run_to(10 * MS);
        assert_eq!(b.drain(), vec![0x0A, 0, 0, 0x08, 0, 0], "the press, then the release");
    }

    #[test]
    fn mouse_scaling_resolution_and_wrap() {
        let mut b = Bench::new();
        b.set_command_byte(0x00);
        aux(&mut b, 0xE7);
        aux(&mut b, 0xF4);
        b.drain();
        b.with(|k, cx| k.mouse_move(4, 0, 0, 0, cx));
        assert_eq!(b.drain(), vec![0x08, 6, 0], "2:1 scaling of 4 is 6");
        aux(&mut b, 0xE6);
        aux(&mut b, 0xE8);
        aux(&mut b, 0x00); // 1 count/mm: a quarter of the default
        b.drain();
        b.run_to(50 * MS);
        b.with(|k, cx| k.mouse_move(10, 0, 0, 0, cx));
        assert_eq!(b.drain(), vec![0x08, 2, 0]);
        aux(&mut b, 0xEB);
        assert_eq!(b.drain(), vec![ACK, 0x08, 0, 0], "the remainder is less than a count");
        aux(&mut b, 0xEE);
        aux(&mut b, 0x42);
        aux(&mut b, 0xEC);
        assert_eq!(b.drain(), vec![ACK, 0x42, ACK], "wrap mode echoes");
        aux(&mut b, 0x55);
        assert_eq!(b.drain(), vec![RESEND]);
    }

    #[test]
    fn keyboard_before_mouse_and_disabled_aux_holds_data() {
        let mut b = Bench::new();
        b.set_command_byte(0x20); // aux interface disabled
        aux(&mut b, 0xF4); // D4 enables it again
        assert_eq!(b.drain(), vec![ACK]);
        b.cmd(0xA7);
        b.with(|k, cx| k.mouse_move(1, 0, 0, 0, cx));
        b.press(PcKey::KeyA);
        assert_eq!(b.drain(), vec![0x1C], "the mouse waits while its interface is disabled");
        b.cmd(0xA8);
        assert_eq!(b.drain(), vec![0x08, 1, 0]);
    }

    #[test]
    fn host_input_handle_is_polled() {
        let mut b = Bench::new();
        b.set_command_byte(0x00);
        assert_eq!(b.deadline, None, "no handle: no polling");
        let source = b.k.input_source();
        b.with(|k, cx| k.tick(cx));
        assert_eq!(b.deadline, None, "a source is not a handle");
        let input = source.handle().unwrap();
        b.with(|k, cx| k.tick(cx));
        assert_eq!(b.deadline, Some(b.now + POLL_NS));
        input.send(HostInput::Press(PcKey::Enter));
        input.send(HostInput::Release(PcKey::Enter));
        b.run_to(POLL_NS);
        assert_eq!(b.drain(), vec![0x5A, 0xF0, 0x5A]);
        drop(input);
        b.run_to(3 * POLL_NS);
        assert_eq!(b.deadline, None);
    }

    #[test]
    fn nonsense_is_harmless() {
        let mut b = Bench::new();
        let mut seed = 0xDEAD_BEEF_1234_5678u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let v = (seed >> 24) as u8;
            match seed % 5 {
                0 => {
                    if !matches!(v, 0xF0..=0xFF | 0xD1 | 0xDD) {
                        b.cmd(v)
                    }
                }
                1 => b.data(v),
                2 => {
                    b.status();
                }
                3 => {
                    b.read();
                }
                _ => b.run_to(b.now + (seed >> 40) % (100 * MS)),
            }
            let k = PcKey::ALL[(seed >> 32) as usize % PcKey::ALL.len()];
            if seed & 0x100 != 0 {
                b.press(k);
            } else {
                b.release(k);
            }
            assert!(!matches!(b.deadline, Some(d) if d <= b.now));
        }
        b.with(|k, cx| k.io_write(0x60, 4, 0xFFFF_FFFF, cx));
        assert_eq!(b.with(|k, cx| k.io_read(0x64, 2, cx)) >> 8, 0xFF);
    }

    #[test]
    fn save_restore_round_trip() {
        let mut a = Bench::new();
        a.set_command_byte(0x43);
        aux(&mut a, 0xF4);
        a.press(PcKey::ShiftLeft);
        a.press(PcKey::KeyM);
        a.with(|k, cx| k.mouse_move(3, 3, 0, 0, cx));
        let snap = a.k.save();
        let mut b = Bench::new();
        b.k.restore(&snap).unwrap();
        b.now = a.now;
        b.deadline = a.deadline;
        for bench in [&mut a, &mut b] {
            bench.run_to(600 * MS);
            bench.release(PcKey::KeyM);
        }
        assert_eq!(a.drain(), b.drain());
        assert_eq!(a.k.save(), b.k.save());
        let mut bad = snap.clone();
        bad.data["kbd"]["set"] = serde_json::json!(9);
        assert!(b.k.restore(&bad).is_err());
        assert!(b.k.restore(&DeviceSnapshot::new("rtc", VERSION, &())).is_err());
    }
}
