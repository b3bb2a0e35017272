//! The Motorola MC146818A real-time clock and its CMOS RAM as a PC wires it: index port 0x70
//! (bit 7 masks NMI), data port 0x71, 128 bytes, interrupt on IRQ 8 (MC146818A datasheet; the
//! CMOS layout is the IBM AT's with the additions SeaBIOS reads on a QEMU-style PC).
//!
//! The clock is computed from virtual time, never ticked: the divider chain has a phase
//! (`origin`), update cycles fall every second of it, and the time and date are a count of
//! seconds moved forward by the updates that happened. Flags in register C are caught up
//! whenever the guest looks, and deadlines are asked only for interrupts the guest enabled.

use crate::block::Geometry;
use crate::clock::ClockMode;
use crate::device::{Device, DeviceContext, DeviceSnapshot, SnapshotError};
use crate::devices::fdc::FloppyKind;
use crate::memory::LOW_RAM_LIMIT;
use serde::{Deserialize, Serialize};

const NAME: &str = "rtc";
const VERSION: u32 = 1;

pub const RTC_IRQ: u8 = 8;
const CMOS_SIZE: usize = 128;

const NS_PER_S: i128 = 1_000_000_000;
/// The 32.768 kHz time base; one second is this many divider clocks.
const HZ: i128 = 32_768;
/// Update cycles complete half a second into each divider second: the datasheet's "first
/// update occurs 500 ms after the divider reset is removed".
const UPDATE_PHASE: i128 = HZ / 2;
/// UIP is high for the 244 µs before an update cycle and the 1984 µs it lasts (8 + 65 clocks).
const UIP_TICKS: i128 = 73;

/// The fixed start of the clock in deterministic mode: 2026-01-01 00:00:00.
pub const DETERMINISTIC_EPOCH: i64 = 1_767_225_600;

// Register numbers.
const REG_SECONDS: usize = 0x00;
const REG_SECONDS_ALARM: usize = 0x01;
const REG_MINUTES: usize = 0x02;
const REG_MINUTES_ALARM: usize = 0x03;
const REG_HOURS: usize = 0x04;
const REG_HOURS_ALARM: usize = 0x05;
const REG_DAY_OF_WEEK: usize = 0x06;
const REG_DAY: usize = 0x07;
const REG_MONTH: usize = 0x08;
const REG_YEAR: usize = 0x09;
const REG_A: usize = 0x0A;
const REG_B: usize = 0x0B;
const REG_C: usize = 0x0C;
const REG_D: usize = 0x0D;
const REG_CENTURY: usize = 0x32;
/// The registers that hold the time and date (the century byte counts, as on QEMU's PC).
const CLOCK_REGS: [usize; 8] =
    [REG_SECONDS, REG_MINUTES, REG_HOURS, REG_DAY_OF_WEEK, REG_DAY, REG_MONTH, REG_YEAR, REG_CENTURY];

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_SQWE: u8 = 0x08;
const B_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const B_DSE: u8 = 0x01;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;

/// What the CMOS RAM says about the machine, as a BIOS reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmosConfig {
    pub ram_size: u64,
    /// Floppy drives A: and B:.
    pub floppies: [Option<FloppyKind>; 2],
    /// Hard disks 0 and 1 (primary master and slave), with the geometry the BIOS tables get.
    pub hard_disks: [Option<Geometry>; 2],
    /// Boot devices in order, QEMU's letters: `a` floppy, `c` hard disk, `d` CD-ROM, `n`
    /// network; at most three.
    pub boot_order: String,
    pub cpus: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CmosError {
    #[error("boot order {order:?}: {problem}")]
    BootOrder { order: String, problem: String },
    #[error("{0} processors do not fit the CMOS processor count (1 to 256)")]
    Cpus(u32),
}

/// QEMU's encoding of a boot device for SeaBIOS (CMOS 0x3D and 0x38).
fn boot_code(c: char) -> Option<u8> {
    match c {
        'a' | 'b' => Some(1),
        'c' => Some(2),
        'd' => Some(3),
        'n' => Some(4),
        _ => None,
    }
}

impl CmosConfig {
    /// The configuration bytes of the CMOS RAM (everything but the clock).
    fn fill(&self, cmos: &mut [u8]) -> Result<(), CmosError> {
        let kb = |bytes: u64| bytes / 1024;
        let below_4g = self.ram_size.min(LOW_RAM_LIMIT);
        let above_4g = self.ram_size - below_4g;
        let put16 = |cmos: &mut [u8], at: usize, v: u64| {
            let v = v.min(0xFFFF) as u16;
            cmos[at] = v as u8;
            cmos[at + 1] = (v >> 8) as u8;
        };
        put16(cmos, 0x15, kb(below_4g).min(640));
        let ext = kb(below_4g.saturating_sub(1 << 20));
        put16(cmos, 0x17, ext);
        put16(cmos, 0x30, ext);
        put16(cmos, 0x34, below_4g.saturating_sub(16 << 20) / 65536);
        let high = (above_4g / 65536).min(0xFF_FFFF);
        cmos[0x5B] = high as u8;
        cmos[0x5C] = (high >> 8) as u8;
        cmos[0x5D] = (high >> 16) as u8;

        let code = |f: Option<FloppyKind>| f.map_or(0, |k| k.cmos_type());
        cmos[0x10] = code(self.floppies[0]) << 4 | code(self.floppies[1]);
        let floppies = self.floppies.iter().flatten().count() as u8;
        // Equipment: floppies present and their count - 1, a coprocessor, a PS/2 mouse (the
        // bit QEMU sets), display bits 00 (a VGA with its own BIOS).
        let mut equipment = 0x02 | 0x04;
        if floppies > 0 {
            equipment |= 0x01 | (floppies - 1) << 6;
        }
        cmos[0x14] = equipment;

        // Hard disks: type 15 in the old nibbles says "see the extended type", 47 is the
        // user-defined type whose parameters follow at 0x1B and 0x24.
        cmos[0x12] = 0;
        for (i, g) in self.hard_disks.iter().enumerate() {
            let Some(g) = g else { continue };
            cmos[0x12] |= if i == 0 { 0xF0 } else { 0x0F };
            cmos[0x19 + i] = 47;
            let at = if i == 0 { 0x1B } else { 0x24 };
            let cyl = g.cylinders.min(16383);
            let heads = g.heads.min(16);
            cmos[at] = cyl as u8;
            cmos[at + 1] = (cyl >> 8) as u8;
            cmos[at + 2] = heads;
            cmos[at + 3] = 0xFF; // write precompensation: none
            cmos[at + 4] = 0xFF;
            cmos[at + 5] = 0xC0 | if heads > 8 { 0x08 } else { 0 };
            cmos[at + 6] = cyl as u8; // landing zone
            cmos[at + 7] = (cyl >> 8) as u8;
            cmos[at + 8] = g.sectors;
        }

        let order = &self.boot_order;
        if order.chars().count() > 3 {
            return Err(CmosError::BootOrder { order: order.clone(), problem: "at most three boot devices".into() });
        }
        let mut codes = [0u8; 3];
        for (i, c) in order.chars().enumerate() {
            codes[i] = boot_code(c).ok_or_else(|| CmosError::BootOrder {
                order: order.clone(),
                problem: format!("unknown device {c:?} (a: floppy, c: disk, d: CD-ROM, n: network)"),
            })?;
        }
        cmos[0x3D] = codes[1] << 4 | codes[0];
        // Bit 0 clear: SeaBIOS checks a floppy's boot signature.
        cmos[0x38] = codes[2] << 4;

        if !(1..=256).contains(&self.cpus) {
            return Err(CmosError::Cpus(self.cpus));
        }
        cmos[0x5F] = (self.cpus - 1) as u8;

        let sum: u16 = cmos[0x10..=0x2D].iter().map(|&b| b as u16).sum();
        cmos[0x2E] = (sum >> 8) as u8;
        cmos[0x2F] = sum as u8;
        Ok(())
    }
}

// ---- Calendar arithmetic (proleptic Gregorian, days since 1970-01-01). ----

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// 0 = Sunday.
fn weekday(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

/// The broken-down time of `secs` seconds since 1970-01-01 00:00:00.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    weekday: i64,
}

fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Civil { year, month, day, hour: tod / 3600, minute: tod / 60 % 60, second: tod % 60, weekday: weekday(days) }
}

/// The last Sunday of `month` (April or October) in `year`, at 01:59:59: the moment the
/// datasheet's daylight saving rule changes the time on the next update.
fn dst_point(year: i64, month: i64) -> i64 {
    let last = days_from_civil(year, month + 1, 1) - 1;
    let sunday = last - weekday(last);
    sunday * 86_400 + 3600 + 3599
}

/// The shown time `n` updates after `shown`, with the MC146818A's daylight saving rule: on
/// the last Sunday of April 01:59:59 is followed by 03:00:00; on the last Sunday of October
/// the first 01:59:59 is followed by 01:00:00. `repeat` says the clock is in that repeated
/// hour (the October change already made). Returns the new time and `repeat`.
fn advance_dst(mut shown: i64, mut n: i64, mut repeat: bool) -> (i64, bool) {
    loop {
        let y = civil(shown).year;
        let october = dst_point(y, 10);
        // The repeated hour runs from 01:00:00 to that day's 01:59:59.
        if !(shown <= october && october - shown < 3600) {
            repeat = false;
        }
        let mut next: Option<(i64, i64)> = None;
        for year in [y, y + 1] {
            for (month, jump) in [(4, 3600), (10, -3600)] {
                let p = dst_point(year, month);
                if p < shown || (repeat && p == october) {
                    continue;
                }
                if next.map_or(true, |(q, _)| p < q) {
                    next = Some((p, jump));
                }
            }
        }
        let Some((p, jump)) = next else { return (shown + n, false) };
        if shown + n <= p {
            let end = shown + n;
            return (end, repeat && end <= october);
        }
        n -= p + 1 - shown;
        shown = p + 1 + jump;
        repeat = jump < 0;
    }
}

// ---- The chip. ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    cmos: Vec<u8>,
    index: u8,
    nmi_masked: bool,
    /// Virtual time (ns, may be before 0) at which the divider chain stood at zero.
    origin: i64,
    /// While the calendar runs: the time and date after update number `base_index`.
    base_secs: i64,
    base_index: i64,
    /// The guest's day of week minus the computed one (the chip counts it on its own).
    dow_offset: u8,
    /// Daylight saving: in the repeated hour of October as of `base_index`.
    dst_repeat: bool,
    /// PF, AF and UF as of `synced`.
    flags: u8,
    synced: u64,
    /// IRQF: the level driven on IRQ 8.
    irq: bool,
    /// The clock has been set from the host or the epoch (once, at the first power-on).
    started: bool,
}

/// The MC146818A with the PC's CMOS contents.
pub struct Rtc {
    mode: ClockMode,
    s: State,
}

impl Rtc {
    /// A clock with its CMOS filled from `config`. In `RealTime` mode the clock starts at the
    /// host's wall time (UTC) when the machine powers on; in `Deterministic` mode at
    /// 2026-01-01 00:00:00, so identical runs read identical times.
    pub fn new(config: &CmosConfig, mode: ClockMode) -> Result<Rtc, CmosError> {
        let mut cmos = vec![0u8; CMOS_SIZE];
        config.fill(&mut cmos)?;
        cmos[REG_A] = 0x26; // 32.768 kHz time base, 1024 Hz periodic rate
        cmos[REG_B] = B_24H;
        Ok(Rtc {
            mode,
            s: State {
                cmos,
                index: 0,
                nmi_masked: false,
                origin: 0,
                base_secs: DETERMINISTIC_EPOCH,
                base_index: 0,
                dow_offset: 0,
                dst_repeat: false,
                flags: 0,
                synced: 0,
                irq: false,
                started: false,
            },
        })
    }

    /// Port 0x70 bit 7 as last written: NMI is masked.
    pub fn nmi_masked(&self) -> bool {
        self.s.nmi_masked
    }

    /// A CMOS byte as stored (the clock registers as of the last access).
    pub fn cmos(&self, index: u8) -> u8 {
        self.s.cmos[(index & 0x7F) as usize]
    }

    fn a(&self) -> u8 {
        self.s.cmos[REG_A]
    }

    fn b(&self) -> u8 {
        self.s.cmos[REG_B]
    }

    /// DV2-DV0 select a running time base (010 for the PC's 32.768 kHz crystal; 000 and 001,
    /// as on QEMU, count too); 11x holds the divider in reset and 011-101 are test modes.
    fn divider_running(&self) -> bool {
        (self.a() >> 4) & 7 <= 2
    }

    fn calendar_running(&self) -> bool {
        self.divider_running() && self.b() & B_SET == 0
    }

    /// Divider clocks since `origin` at virtual time `t` (floor).
    fn ticks(&self, t: u64) -> i128 {
        ((t as i128 - self.s.origin as i128) * HZ).div_euclid(NS_PER_S)
    }

    /// The first virtual time at which divider clock `tick` has happened.
    fn time_of(&self, tick: i128) -> u64 {
        let ns = self.s.origin as i128 + (tick * NS_PER_S + HZ - 1).div_euclid(HZ);
        ns.clamp(0, u64::MAX as i128) as u64
    }

    /// The number of the last update cycle completed by time `t`.
    fn updates_through(&self, t: u64) -> i64 {
        (self.ticks(t) - UPDATE_PHASE).div_euclid(HZ) as i64
    }

    /// Divider clocks between periodic interrupts for rate select `rs` (0: none).
    fn period_ticks(rs: u8) -> Option<i128> {
        match rs {
            0 => None,
            1 | 2 => Some(1 << (rs + 6)),
            _ => Some(1 << (rs - 1)),
        }
    }

    /// The time and date (and daylight saving state) after update `n`.
    fn calendar_at(&self, n: i64) -> (i64, bool) {
        let steps = n - self.s.base_index;
        if self.b() & B_DSE != 0 {
            advance_dst(self.s.base_secs, steps, self.s.dst_repeat)
        } else {
            (self.s.base_secs + steps, false)
        }
    }

    fn encode(&self, v: i64) -> u8 {
        let v = v.rem_euclid(100) as u8;
        if self.b() & B_BINARY != 0 {
            v
        } else {
            (v / 10) << 4 | v % 10
        }
    }

    fn decode(&self, b: u8) -> i64 {
        if self.b() & B_BINARY != 0 {
            b as i64
        } else {
            (b >> 4) as i64 * 10 + (b & 0xF) as i64
        }
    }

    fn encode_hours(&self, h: i64) -> u8 {
        if self.b() & B_24H != 0 {
            self.encode(h)
        } else {
            let h12 = if h % 12 == 0 { 12 } else { h % 12 };
            self.encode(h12) | if h >= 12 { 0x80 } else { 0 }
        }
    }

    fn decode_hours(&self, b: u8) -> i64 {
        if self.b() & B_24H != 0 {
            self.decode(b)
        } else {
            self.decode(b & 0x7F) % 12 + if b & 0x80 != 0 { 12 } else { 0 }
        }
    }

    /// Writes the running calendar into the time and date registers.
    fn materialize(&mut self, t: u64) {
        if !self.calendar_running() {
            return;
        }
        let (secs, _) = self.calendar_at(self.updates_through(t));
        let c = civil(secs);
        let dow = (c.weekday + self.s.dow_offset as i64) % 7 + 1;
        let values = [
            self.encode(c.second),
            self.encode(c.minute),
            self.encode_hours(c.hour),
            dow as u8,
            self.encode(c.day),
            self.encode(c.month),
            self.encode(c.year),
            self.encode(c.year / 100),
        ];
        for (&r, v) in CLOCK_REGS.iter().zip(values) {
            self.s.cmos[r] = v;
        }
    }

    /// Takes the time and date registers as the calendar from update `updates_through(t)` on
    /// (after the guest wrote them or changed the format). Values out of range carry into
    /// the next field, as the count of seconds they add up to.
    fn rebase(&mut self, t: u64) {
        if !self.calendar_running() {
            return;
        }
        let n = self.updates_through(t);
        let (was, repeat) = self.calendar_at(n);
        let r = |i: usize| self.s.cmos[i];
        let (sec, min, hour) = (self.decode(r(REG_SECONDS)), self.decode(r(REG_MINUTES)), self.decode_hours(r(REG_HOURS)));
        let (day, month) = (self.decode(r(REG_DAY)), self.decode(r(REG_MONTH)));
        let year = self.decode(r(REG_CENTURY)) * 100 + self.decode(r(REG_YEAR));
        let m0 = month - 1;
        let days = days_from_civil(year + m0.div_euclid(12), m0.rem_euclid(12) + 1, 1) + day - 1;
        let secs = days * 86_400 + hour * 3600 + min * 60 + sec;
        if [sec < 60, min < 60, hour < 24, (1..=31).contains(&day), (1..=12).contains(&month)].contains(&false) {
            tracing::debug!(sec, min, hour, day, month, year, "RTC: time registers out of range");
        }
        self.s.dow_offset = (r(REG_DAY_OF_WEEK) as i64 - 1 - weekday(secs.div_euclid(86_400))).rem_euclid(7) as u8;
        self.s.dst_repeat = repeat && secs == was;
        self.s.base_secs = secs;
        self.s.base_index = n;
    }

    fn alarm_matches(&self, secs: i64) -> bool {
        let c = civil(secs);
        let now = [self.encode(c.second), self.encode(c.minute), self.encode_hours(c.hour)];
        let alarm = [self.s.cmos[REG_SECONDS_ALARM], self.s.cmos[REG_MINUTES_ALARM], self.s.cmos[REG_HOURS_ALARM]];
        // Alarm bytes 0xC0-0xFF match any value.
        now.iter().zip(alarm).all(|(&v, a)| a & 0xC0 == 0xC0 || a == v)
    }

    /// Catches PF, AF and UF up with virtual time `t`.
    fn sync(&mut self, t: u64) {
        let from = self.s.synced;
        if t <= from {
            return;
        }
        self.s.synced = t;
        if !self.divider_running() {
            return;
        }
        if let Some(p) = Self::period_ticks(self.a() & 0x0F) {
            if self.ticks(t).div_euclid(p) > self.ticks(from).div_euclid(p) {
                self.s.flags |= C_PF;
            }
        }
        if self.calendar_running() {
            let (n0, n1) = (self.updates_through(from), self.updates_through(t));
            if n1 > n0 {
                self.s.flags |= C_UF;
                // Every time of day comes round within two days: older updates can add
                // nothing an alarm would not see again.
                let first = (n0 + 1).max(n1 - 2 * 86_400);
                let (mut secs, mut repeat) = self.calendar_at(first);
                for n in first..=n1 {
                    if self.alarm_matches(secs) {
                        self.s.flags |= C_AF;
                        break;
                    }
                    if n < n1 {
                        (secs, repeat) = if self.b() & B_DSE != 0 { advance_dst(secs, 1, repeat) } else { (secs + 1, false) };
                    }
                }
            }
        }
    }

    /// Drives IRQ 8 from IRQF = PF·PIE + AF·AIE + UF·UIE (the flag and enable bits line up).
    fn update_irq(&mut self, cx: &mut DeviceContext) {
        let irqf = self.s.flags & self.b() & (C_PF | C_AF | C_UF) != 0;
        if irqf != self.s.irq {
            self.s.irq = irqf;
            cx.set_irq(RTC_IRQ, irqf);
        }
    }

    /// Asks for the next moment an enabled interrupt could raise IRQF.
    fn schedule(&self, cx: &mut DeviceContext) {
        if self.s.irq || !self.divider_running() {
            cx.set_deadline(None);
            return;
        }
        let t = self.ticks(cx.now);
        let mut next: Option<i128> = None;
        let mut consider = |tick: i128| next = Some(next.map_or(tick, |n: i128| n.min(tick)));
        if self.b() & B_PIE != 0 {
            if let Some(p) = Self::period_ticks(self.a() & 0x0F) {
                consider((t.div_euclid(p) + 1) * p);
            }
        }
        if self.b() & (B_UIE | B_AIE) != 0 && self.calendar_running() {
            consider(((t - UPDATE_PHASE).div_euclid(HZ) + 1) * HZ + UPDATE_PHASE);
        }
        cx.set_deadline(next.map(|tick| self.time_of(tick).max(cx.now + 1)));
    }

    /// Sets the clock running from the host's wall time or the deterministic epoch.
    fn start(&mut self, now: u64) {
        let (secs, nanos) = match self.mode {
            ClockMode::Deterministic => (DETERMINISTIC_EPOCH, 0),
            ClockMode::RealTime => match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
                Err(_) => {
                    tracing::warn!("host clock is before 1970; the RTC starts at 2026-01-01");
                    (DETERMINISTIC_EPOCH, 0)
                }
            },
        };
        // The next update completes when the host's second ends.
        self.s.origin = now as i64 + (1_000_000_000 - nanos) - 500_000_000;
        self.s.base_index = self.updates_through(now);
        self.s.base_secs = secs;
        self.s.dow_offset = 0;
        self.s.dst_repeat = false;
        self.s.synced = now;
        self.s.started = true;
        self.materialize(now);
    }

    fn read_data(&mut self, cx: &mut DeviceContext) -> u8 {
        let i = self.s.index as usize;
        match i {
            REG_A => {
                let uip = self.calendar_running() && {
                    let into = (self.ticks(cx.now) - UPDATE_PHASE).rem_euclid(HZ);
                    into >= HZ - UIP_TICKS
                };
                self.a() & 0x7F | if uip { A_UIP } else { 0 }
            }
            REG_C => {
                let v = self.s.flags | if self.s.irq { C_IRQF } else { 0 };
                self.s.flags = 0;
                self.update_irq(cx);
                v
            }
            REG_D => D_VRT,
            _ if CLOCK_REGS.contains(&i) => {
                self.materialize(cx.now);
                self.s.cmos[i]
            }
            _ => self.s.cmos[i],
        }
    }

    fn write_data(&mut self, v: u8, cx: &mut DeviceContext) {
        let i = self.s.index as usize;
        let now = cx.now;
        match i {
            REG_A => {
                self.materialize(now);
                let was_running = self.divider_running();
                self.s.cmos[REG_A] = v & 0x7F;
                if !was_running && self.divider_running() {
                    // Leaving divider reset: the chain starts from zero.
                    self.s.origin = now as i64;
                }
                self.rebase(now);
            }
            REG_B => {
                self.materialize(now);
                // Setting SET clears UIE (datasheet, register B).
                let v = if v & B_SET != 0 { v & !B_UIE } else { v };
                self.s.cmos[REG_B] = v;
                self.rebase(now);
                self.update_irq(cx);
            }
            REG_C | REG_D => tracing::debug!(reg = i, v, "RTC: write to a read-only register"),
            _ if CLOCK_REGS.contains(&i) => {
                self.materialize(now);
                self.s.cmos[i] = v;
                self.rebase(now);
            }
            _ => self.s.cmos[i] = v,
        }
    }

    /// Every access: flags caught up first, then the access, then IRQ 8 and the deadline.
    fn access<R>(&mut self, cx: &mut DeviceContext, f: impl FnOnce(&mut Self, &mut DeviceContext) -> R) -> R {
        self.sync(cx.now);
        self.update_irq(cx);
        let r = f(self, cx);
        self.update_irq(cx);
        self.schedule(cx);
        r
    }

    fn read_byte(&mut self, port: u16, cx: &mut DeviceContext) -> u8 {
        match port {
            0x71 => self.read_data(cx),
            // The index register is write-only on the PIIX.
            _ => 0xFF,
        }
    }

    fn write_byte(&mut self, port: u16, v: u8, cx: &mut DeviceContext) {
        match port {
            0x70 => {
                self.s.nmi_masked = v & 0x80 != 0;
                self.s.index = v & 0x7F;
            }
            0x71 => self.write_data(v, cx),
            _ => {}
        }
    }
}

impl Device for Rtc {
    fn name(&self) -> &'static str {
        NAME
    }

    fn io_read(&mut self, port: u16, size: u8, cx: &mut DeviceContext) -> u32 {
        self.access(cx, |rtc, cx| {
            (0..size.min(4)).fold(0u32, |acc, i| {
                let p = port.wrapping_add(i as u16);
                let b = if matches!(p, 0x70 | 0x71) { rtc.read_byte(p, cx) } else { 0xFF };
                acc | (b as u32) << (8 * i)
            })
        })
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, cx: &mut DeviceContext) {
        self.access(cx, |rtc, cx| {
            for i in 0..size.min(4) {
                let p = port.wrapping_add(i as u16);
                rtc.write_byte(p, (value >> (8 * i)) as u8, cx);
            }
        })
    }

    fn tick(&mut self, cx: &mut DeviceContext) {
        self.access(cx, |_, _| {})
    }

    fn power_on(&mut self, cx: &mut DeviceContext) {
        if !self.s.started {
            self.start(cx.now);
        }
        self.access(cx, |_, _| {});
    }

    /// The RESET pin: interrupt enables and flags cleared; the battery-backed clock and RAM
    /// keep running and keep their contents.
    fn reset(&mut self) {
        self.s.cmos[REG_B] &= !(B_PIE | B_AIE | B_UIE | B_SQWE);
        self.s.flags = 0;
        self.s.irq = false;
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        let s: State = snapshot.decode(NAME, VERSION)?;
        if s.cmos.len() != CMOS_SIZE {
            return Err(SnapshotError::Malformed {
                device: NAME.into(),
                source: <serde_json::Error as serde::de::Error>::custom("CMOS is not 128 bytes"),
            });
        }
        self.s = s;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MachineEvent;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    fn config() -> CmosConfig {
        CmosConfig {
            ram_size: 32 << 20,
            floppies: [Some(FloppyKind::M1_44), None],
            hard_disks: [Some(Geometry { cylinders: 1024, heads: 16, sectors: 63 }), None],
            boot_order: "cda".into(),
            cpus: 2,
        }
    }

    /// An RTC on a fake clock: deadlines fire when the test moves time past them.
    struct Bench {
        rtc: Rtc,
        now: u64,
        deadline: Option<u64>,
        /// (time, level) of every change on IRQ 8.
        irq8: Vec<(u64, bool)>,
    }

    impl Bench {
        fn new() -> Bench {
            Bench::with_mode(ClockMode::Deterministic)
        }

        fn with_mode(mode: ClockMode) -> Bench {
            let mut b = Bench { rtc: Rtc::new(&config(), mode).unwrap(), now: 0, deadline: None, irq8: Vec::new() };
            b.with(|r, cx| r.power_on(cx));
            b
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut Rtc, &mut DeviceContext) -> R) -> R {
            let (mut irqs, mut events) = (Vec::new(), Vec::<MachineEvent>::new());
            let mut dl = self.deadline;
            let mut cx = DeviceContext::new(self.now, &mut irqs, &mut events, &mut dl);
            let r = f(&mut self.rtc, &mut cx);
            self.deadline = dl;
            for (line, level) in irqs {
                assert_eq!(line, RTC_IRQ);
                self.irq8.push((self.now, level));
            }
            r
        }

        fn read(&mut self, reg: u8) -> u8 {
            self.with(|r, cx| r.io_write(0x70, 1, reg as u32, cx));
            self.with(|r, cx| r.io_read(0x71, 1, cx)) as u8
        }

        fn write(&mut self, reg: u8, v: u8) {
            self.with(|r, cx| r.io_write(0x70, 1, reg as u32, cx));
            self.with(|r, cx| r.io_write(0x71, 1, v as u32, cx));
        }

        fn run_to(&mut self, t: u64) {
            while let Some(d) = self.deadline.filter(|&d| d <= t) {
                self.now = self.now.max(d);
                self.deadline = None;
                self.with(|r, cx| r.tick(cx));
            }
            self.now = t;
        }

        fn rises(&self) -> Vec<u64> {
            self.irq8.iter().filter(|e| e.1).map(|e| e.0).collect()
        }

        fn time(&mut self) -> [u8; 8] {
            [0, 2, 4, 6, 7, 8, 9, 0x32].map(|r| self.read(r))
        }
    }

    #[test]
    fn calendar_conversions() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 1, 1) * 86_400, DETERMINISTIC_EPOCH);
        for d in [-800_000, -1, 0, 59, 10_956, 20_454, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(weekday(days_from_civil(2026, 1, 1)), 4, "a Thursday");
    }

    #[test]
    fn deterministic_clock_starts_at_the_epoch_in_bcd_24h() {
        let mut b = Bench::new();
        // Seconds, minutes, hours, day of week (Thursday = 5), day, month, year, century.
        assert_eq!(b.time(), [0x00, 0x00, 0x00, 5, 0x01, 0x01, 0x26, 0x20]);
        b.run_to(S - 1);
        assert_eq!(b.read(0), 0x00);
        b.run_to(S);
        assert_eq!(b.read(0), 0x01, "the first update completes one second in");
        b.run_to(3600 * 25 * S + 5 * S);
        assert_eq!(b.time(), [0x05, 0x00, 0x01, 6, 0x02, 0x01, 0x26, 0x20]);
        assert_eq!(b.read(0x0D), 0x80, "VRT");
        assert_eq!(b.deadline, None, "no interrupt enabled: no deadlines");
    }

    #[test]
    fn real_time_clock_starts_at_host_utc() {
        let host = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let mut b = Bench::with_mode(ClockMode::RealTime);
        let t = b.time().map(|v| (v >> 4) * 10 + (v & 15));
        let c = civil(host);
        assert_eq!(t[6] as i64 + 100 * t[7] as i64, c.year);
        assert_eq!((t[5] as i64, t[4] as i64), (c.month, c.day));
        let shown = days_from_civil(c.year, c.month, c.day) * 86_400 + t[2] as i64 * 3600 + t[1] as i64 * 60 + t[0] as i64;
        assert!((shown - host).abs() <= 2, "RTC {shown}, host {host}");
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut b = Bench::new();
        b.run_to(13 * 3600 * S + 7 * 60 * S);
        // 12 h, binary: the guest rewrites every register in the new format.
        b.write(0x0B, B_SET | B_BINARY);
        for (r, v) in [(0x32, 20), (0x09, 26), (0x08, 1), (0x07, 1), (0x04, 0x80 | 1), (0x02, 59), (0x00, 58)] {
            b.write(r, v);
        }
        b.write(0x0B, B_BINARY);
        b.run_to(b.now + 2 * S);
        assert_eq!([b.read(0), b.read(2), b.read(4)], [0, 0, 0x80 | 2]);
        b.write(0x0B, B_SET | B_BINARY);
        b.write(0x04, 0x80 | 11);
        b.write(0x02, 59);
        b.write(0x00, 59);
        b.write(0x0B, B_BINARY);
        b.run_to(b.now + S);
        assert_eq!(b.read(4), 12, "11:59:59 PM is followed by 12 AM");
        assert_eq!(b.read(7), 2, "next day");
        // BCD 12 h: 12 PM is 0x92.
        b.write(0x0B, B_SET);
        b.write(0x04, 0x92);
        b.write(0x0B, 0);
        assert_eq!(b.read(4), 0x92);
    }

    #[test]
    fn set_bit_freezes_the_clock_and_divider_reset_restarts_the_phase() {
        let mut b = Bench::new();
        b.write(0x0B, B_24H | B_SET);
        b.run_to(10 * S);
        assert_eq!(b.read(0), 0, "no updates while SET");
        assert_eq!(b.read(0x0A) & A_UIP, 0);
        b.write(0x00, 0x30);
        b.write(0x0B, B_24H);
        b.run_to(11 * S - 1);
        assert_eq!(b.read(0), 0x30);
        b.run_to(11 * S);
        assert_eq!(b.read(0), 0x31, "updates keep the divider's phase");
        // Divider reset then released at 11.3 s: the first update comes 500 ms later.
        b.write(0x0A, 0x70 | 6);
        b.run_to(20 * S);
        assert_eq!(b.read(0), 0x31, "held in reset");
        b.write(0x0A, 0x26);
        b.run_to(20 * S + 500 * MS - 1);
        assert_eq!(b.read(0), 0x31);
        b.run_to(20 * S + 500 * MS);
        assert_eq!(b.read(0), 0x32);
    }

    #[test]
    fn uip_is_high_for_the_2228_us_before_each_update() {
        let mut b = Bench::new();
        let update = 5 * S;
        b.run_to(update - 2_229_000);
        assert_eq!(b.read(0x0A), 0x26);
        b.run_to(update - 2_200_000);
        assert_eq!(b.read(0x0A), 0xA6);
        assert_eq!(b.read(0), 0x04, "old time until the update completes");
        b.run_to(update);
        assert_eq!(b.read(0x0A), 0x26);
        assert_eq!(b.read(0), 0x05);
    }

    #[test]
    fn periodic_interrupt_at_the_programmed_rate() {
        let mut b = Bench::new();
        b.write(0x0A, 0x26); // 1024 Hz
        b.write(0x0B, B_24H | B_PIE);
        let start = b.now;
        let mut n = 0;
        while b.now < start + 100 * MS {
            b.run_to(b.deadline.unwrap());
            assert!(b.rtc.s.irq);
            assert_eq!(b.read(0x0C) & (C_IRQF | C_PF), C_IRQF | C_PF);
            n += 1;
        }
        assert!((102..=103).contains(&n), "{n} interrupts in 100 ms at 1024 Hz");
        // Consecutive edges are 976.5625 µs apart (rounded up to the nanosecond).
        let r = b.rises();
        assert!(r.windows(2).all(|w| (976_562..=976_563).contains(&(w[1] - w[0]))));
        // Without reading C, IRQF stays set and nothing more happens.
        b.run_to(b.deadline.unwrap());
        let edges = b.irq8.len();
        assert_eq!(b.deadline, None);
        b.run_to(b.now + S);
        assert_eq!(b.irq8.len(), edges);
        // Rate 15: 2 Hz. Rate 3: 8192 Hz.
        b.write(0x0A, 0x2F);
        b.read(0x0C);
        let t0 = b.now;
        b.run_to(b.deadline.unwrap());
        assert!(b.now - t0 <= 500 * MS && b.rises().last() == Some(&b.now));
        b.read(0x0C);
        let t1 = b.now;
        b.run_to(b.deadline.unwrap());
        assert_eq!(b.now - t1, 500 * MS);
        b.write(0x0A, 0x23);
        b.read(0x0C);
        let t2 = b.now;
        b.run_to(b.deadline.unwrap());
        assert!(b.now - t2 <= 122_071);
    }

    #[test]
    fn flags_are_set_without_enables_and_cleared_on_read() {
        let mut b = Bench::new();
        b.run_to(2 * S);
        let c = b.read(0x0C);
        assert_eq!(c, C_PF | C_UF, "PF and UF set, IRQF not (no enables)");
        assert_eq!(b.read(0x0C), 0);
        assert!(b.irq8.is_empty());
        // Enabling PIE with PF already set raises IRQF at once.
        b.run_to(b.now + 10 * MS);
        b.write(0x0B, B_24H | B_PIE);
        assert_eq!(b.irq8, vec![(b.now, true)]);
        assert_eq!(b.read(0x0C), C_IRQF | C_PF);
        assert_eq!(b.irq8.last(), Some(&(b.now, false)));
    }

    #[test]
    fn update_ended_and_alarm_interrupts() {
        let mut b = Bench::new();
        b.write(0x0B, B_24H | B_UIE);
        b.run_to(b.deadline.unwrap());
        assert_eq!(b.now, S);
        // PF is set too: the periodic rate runs whether or not PIE is set.
        assert_eq!(b.read(0x0C), C_IRQF | C_PF | C_UF);
        b.write(0x0B, B_24H | B_AIE);
        b.write(0x01, 0x30); // 00:00:30
        b.write(0x03, 0x00);
        b.write(0x05, 0x00);
        b.read(0x0C);
        while !b.rtc.s.irq {
            b.run_to(b.deadline.unwrap());
        }
        assert_eq!(b.now, 30 * S);
        assert_eq!(b.read(0x0C), C_IRQF | C_PF | C_AF | C_UF);
        // Don't-care hours and minutes: every minute at :10.
        b.write(0x01, 0x10);
        b.write(0x03, 0xFF);
        b.write(0x05, 0xC0);
        b.read(0x0C);
        while !b.rtc.s.irq {
            b.run_to(b.deadline.unwrap());
        }
        assert_eq!(b.now, 70 * S);
        b.read(0x0C);
        while !b.rtc.s.irq {
            b.run_to(b.deadline.unwrap());
        }
        assert_eq!(b.now, 130 * S);
        // An alarm that passed unseen during a long jump still shows in C.
        b.write(0x0B, B_24H);
        b.read(0x0C);
        b.run_to(b.now + 3 * 86_400 * S);
        assert_eq!(b.read(0x0C) & C_AF, C_AF);
        b.write(0x01, 0x61); // never matches a valid BCD second
        b.read(0x0C);
        b.run_to(b.now + 3 * 86_400 * S);
        assert_eq!(b.read(0x0C) & C_AF, 0);
    }

    #[test]
    fn set_clears_uie() {
        let mut b = Bench::new();
        b.write(0x0B, B_24H | B_UIE);
        b.write(0x0B, B_24H | B_UIE | B_SET);
        assert_eq!(b.read(0x0B), B_24H | B_SET);
    }

    #[test]
    fn daylight_saving_rule_of_the_datasheet() {
        let mut b = Bench::new();
        b.write(0x0B, B_24H | B_SET | B_DSE);
        // 2026-04-26 is the last Sunday of April.
        for (r, v) in [(0x09, 0x26), (0x08, 0x04), (0x07, 0x26), (0x04, 0x01), (0x02, 0x59), (0x00, 0x58)] {
            b.write(r, v);
        }
        b.write(0x0B, B_24H | B_DSE);
        b.run_to(b.now + 2 * S);
        assert_eq!([b.read(4), b.read(2), b.read(0)], [0x03, 0x00, 0x00], "01:59:59 -> 03:00:00");
        // 2026-10-25: the first 01:59:59 goes back to 01:00:00, the second one does not.
        b.write(0x0B, B_24H | B_SET | B_DSE);
        for (r, v) in [(0x08, 0x10), (0x07, 0x25), (0x04, 0x01), (0x02, 0x59), (0x00, 0x58)] {
            b.write(r, v);
        }
        b.write(0x0B, B_24H | B_DSE);
        b.run_to(b.now + 2 * S);
        assert_eq!([b.read(4), b.read(2), b.read(0)], [0x01, 0x00, 0x00]);
        b.run_to(b.now + 3600 * S);
        assert_eq!([b.read(4), b.read(2), b.read(0)], [0x02, 0x00, 0x00], "the repeated hour passes once");
        // A year later both changes happened again: 2027-10-31 is the last Sunday.
        let (secs, repeat) = advance_dst(days_from_civil(2027, 1, 1) * 86_400, 365 * 86_400, false);
        assert_eq!((secs, repeat), (days_from_civil(2028, 1, 1) * 86_400, false));
    }

    #[test]
    fn day_of_week_keeps_the_guests_offset() {
        let mut b = Bench::new();
        b.write(0x0B, B_24H | B_SET);
        b.write(0x06, 2);
        b.write(0x04, 0x23);
        b.write(0x02, 0x59);
        b.write(0x00, 0x59);
        b.write(0x0B, B_24H);
        b.run_to(b.now + S);
        assert_eq!(b.read(0x06), 3);
        b.run_to(b.now + 5 * 86_400 * S);
        assert_eq!(b.read(0x06), 1, "wraps 7 -> 1");
    }

    #[test]
    fn cmos_contents_for_the_bios() {
        let b = Bench::new();
        let c = |i| b.rtc.cmos(i);
        assert_eq!((c(0x15), c(0x16)), (0x80, 0x02), "640 KiB");
        assert_eq!(c(0x17) as u16 | (c(0x18) as u16) << 8, 31 * 1024);
        assert_eq!(c(0x30) as u16 | (c(0x31) as u16) << 8, 31 * 1024);
        assert_eq!(c(0x34) as u16 | (c(0x35) as u16) << 8, 256, "16 MiB above 16 MiB in 64 KiB units");
        assert_eq!([c(0x5B), c(0x5C), c(0x5D)], [0, 0, 0]);
        assert_eq!(c(0x10), 0x40, "A: 1.44 MB, no B:");
        assert_eq!(c(0x14), 0x07, "one floppy, FPU, mouse");
        assert_eq!((c(0x12), c(0x19)), (0xF0, 47));
        assert_eq!([c(0x1B), c(0x1C), c(0x1D), c(0x23)], [0x00, 0x04, 16, 63]);
        assert_eq!((c(0x3D), c(0x38)), (0x32, 0x10), "disk, CD-ROM, floppy: first device in the low nibble");
        assert_eq!(c(0x5F), 1);
        assert_eq!(c(0x32), 0x20);
        let sum: u16 = (0x10..=0x2D).map(|i| c(i) as u16).sum();
        assert_eq!(((c(0x2E) as u16) << 8) | c(0x2F) as u16, sum);

        // 6 GiB: 64 MiB cap on the 16-bit fields, the rest above 4 GiB.
        let big = CmosConfig { ram_size: 6 << 30, floppies: [Some(FloppyKind::M2_88), Some(FloppyKind::M1_44)], ..config() };
        let r = Rtc::new(&big, ClockMode::Deterministic).unwrap();
        assert_eq!((r.cmos(0x17), r.cmos(0x18)), (0xFF, 0xFF));
        assert_eq!((r.cmos(0x34), r.cmos(0x35)), (0x00, 0xDF), "3.5 GiB below 4 GiB, less 16 MiB, in 64 KiB");
        let high = (6u64 << 30) - LOW_RAM_LIMIT;
        assert_eq!(r.cmos(0x5B) as u64 | (r.cmos(0x5C) as u64) << 8 | (r.cmos(0x5D) as u64) << 16, high / 65536);
        assert_eq!(r.cmos(0x10), 0x54);
        assert_eq!(r.cmos(0x14) & 0xC1, 0x41, "two floppies");

        for bad in ["x", "cdan"] {
            let cfg = CmosConfig { boot_order: bad.into(), ..config() };
            assert!(matches!(Rtc::new(&cfg, ClockMode::Deterministic), Err(CmosError::BootOrder { .. })), "{bad}");
        }
        assert!(Rtc::new(&CmosConfig { cpus: 0, ..config() }, ClockMode::Deterministic).is_err());
        let r = Rtc::new(&CmosConfig { boot_order: "a".into(), ..config() }, ClockMode::Deterministic).unwrap();
        assert_eq!((r.cmos(0x3D), r.cmos(0x38)), (0x01, 0x00));
    }

    #[test]
    fn index_port_keeps_the_nmi_mask_and_ram_is_plain_storage() {
        let mut b = Bench::new();
        b.with(|r, cx| r.io_write(0x70, 1, 0x80 | 0x40, cx));
        assert!(b.rtc.nmi_masked());
        b.with(|r, cx| r.io_write(0x71, 1, 0x5A, cx));
        assert_eq!(b.rtc.cmos(0x40), 0x5A);
        assert_eq!(b.with(|r, cx| r.io_read(0x70, 1, cx)), 0xFF);
        b.write(0x40, 0xA5);
        assert!(!b.rtc.nmi_masked());
        assert_eq!(b.read(0x40), 0xA5);
        b.write(0x0C, 0xFF);
        b.write(0x0D, 0x00);
        assert_eq!(b.read(0x0D), 0x80);
        let wide = b.with(|r, cx| r.io_read(0x71, 2, cx));
        assert_eq!(wide >> 8, 0xFF);
    }

    #[test]
    fn reset_keeps_time_and_ram_but_clears_enables() {
        let mut b = Bench::new();
        b.write(0x0F, 0x0A); // shutdown status byte
        b.write(0x0B, B_24H | B_PIE | B_AIE | B_SQWE);
        b.run_to(3 * S + 1);
        b.rtc.reset();
        b.deadline = None;
        b.with(|r, cx| r.power_on(cx));
        assert_eq!(b.read(0x0F), 0x0A);
        assert_eq!(b.read(0x0B), B_24H);
        assert_eq!(b.read(0x00), 0x03, "the clock kept its time");
        assert_eq!(b.deadline, None);
    }

    #[test]
    fn garbage_in_the_time_registers_never_panics() {
        let mut b = Bench::new();
        let mut seed = 0x1234_5678_9ABC_DEF1u64;
        for _ in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let reg = (seed % 0x0E) as u8;
            let v = (seed >> 8) as u8;
            if seed & 0x10000 != 0 {
                b.write(reg, v);
            } else {
                b.read(reg);
            }
            b.run_to(b.now + (seed >> 40) % (3 * S));
            assert!(!matches!(b.deadline, Some(d) if d <= b.now));
        }
    }

    #[test]
    fn save_restore_continues_identically() {
        let mut a = Bench::new();
        a.write(0x0B, B_24H | B_PIE | B_UIE);
        a.write(0x0A, 0x2A);
        a.run_to(1_234 * MS);
        a.write(0x50, 0x77);
        let snap = a.rtc.save();
        let mut b = Bench::new();
        b.rtc.restore(&snap).unwrap();
        b.now = a.now;
        b.deadline = a.deadline;
        a.irq8.clear();
        b.irq8.clear();
        for bench in [&mut a, &mut b] {
            for _ in 0..50 {
                bench.run_to(bench.now + 7 * MS);
                bench.read(0x0C);
            }
        }
        assert_eq!(a.irq8, b.irq8);
        assert_eq!(a.time(), b.time());
        assert_eq!(b.read(0x50), 0x77);
        a.read(0x50);
        assert_eq!(a.rtc.save(), b.rtc.save());
        let mut bad = snap.clone();
        bad.data["cmos"] = serde_json::json!([1, 2, 3]);
        assert!(b.rtc.restore(&bad).is_err());
        assert!(b.rtc.restore(&DeviceSnapshot::new("pit", VERSION, &())).is_err());
    }
}
