//! The power management function of the Intel 82371AB (PIIX4), PCI 00:01.3 (PIIX4 datasheet
//! sections 3.5 and 7; QEMU `hw/acpi/piix4.c`, which the QEMU "pc" board puts next to a PIIX3):
//! the PMBA register places a 64-byte block of ACPI fixed hardware (PM1 status/enable, PM1
//! control, the 24-bit 3.579545 MHz PM timer) when PMREGMISC enables it; the SCI is ISA IRQ 9,
//! level, driven while an enabled status bit is set; SLP_EN with sleep type 0 (soft off) powers
//! the machine off. The APM control port 0xB2 switches ACPI mode as QEMU's does (there is no
//! SMM), and the GPE0 block sits at QEMU's fixed 0xAFE0. SMBus registers are plain storage.

use crate::device::{open_bus, Device, DeviceContext, DeviceSnapshot, MachineEvent, SnapshotError};
use crate::pci::{devfn, BarKind, BarMapping, DevFn, PciConfig, PciFunction};
use serde::{Deserialize, Serialize};

pub const DEVFN: DevFn = devfn(1, 3);
/// Where the firmware (SeaBIOS) maps the PM block, and where the FADT says it is.
pub const PM_BASE: u16 = 0x600;
pub const PM1A_EVT: u16 = PM_BASE;
pub const PM1A_CNT: u16 = PM_BASE + 4;
pub const PM_TMR: u16 = PM_BASE + 8;
/// QEMU's GPE0 block: two status bytes, two enable bytes.
pub const GPE0_BASE: u16 = 0xAFE0;
pub const GPE0_LEN: u16 = 4;
/// APM control and status ports (the FADT's SMI command port).
pub const APM_CNT_PORT: u16 = 0xB2;
pub const APM_STS_PORT: u16 = 0xB3;
pub const ACPI_ENABLE: u8 = 0xF1;
pub const ACPI_DISABLE: u8 = 0xF0;
pub const SCI_IRQ: u8 = 9;
/// PIIX4's sleep type for soft off (PMCNTRL SUS_TYP 000), the value in the DSDT's `_S5`.
pub const SLP_TYP_S5: u8 = 0;
/// The fixed ports the board gives this function from power-on.
pub const FIXED_PORTS: [(u16, u16); 2] = [(APM_CNT_PORT, 2), (GPE0_BASE, GPE0_LEN)];

/// The PM timer's frequency.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// Index under which the PM block appears among the function's port windows (not a BAR).
pub const PM_WINDOW: u8 = 8;
const PM_BLOCK_LEN: u64 = 64;

const PMBA: u16 = 0x40;
const DEVACTB: u16 = 0x58;
const PMREGMISC: u16 = 0x80;
const SMBBA: u16 = 0x90;
const SMBHSTCFG: u16 = 0xD2;

/// PM1 status/enable bits.
const TMROF: u16 = 1 << 0;
const GBL: u16 = 1 << 5;
const PWRBTN: u16 = 1 << 8;
const RTC: u16 = 1 << 10;
/// Enable bits that can raise the SCI.
const SCI_EVENTS: u16 = TMROF | GBL | PWRBTN | RTC;
/// PM1 control bits.
const SCI_EN: u16 = 1 << 0;
const SLP_EN: u16 = 1 << 13;

const NAME: &str = "piix4-pm";
const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    gpe_sts: u16,
    gpe_en: u16,
    apm_cnt: u8,
    apm_sts: u8,
    /// The PM timer's bit 23 generation last seen: a change sets TMROF_STS.
    timer_epoch: u64,
    sci: bool,
}

pub struct Piix4Pm {
    config: PciConfig,
    s: State,
}

impl Default for Piix4Pm {
    fn default() -> Self {
        Piix4Pm::new()
    }
}

fn power_on_config() -> PciConfig {
    let mut c = PciConfig::new(0x8086, 0x7113, 0x06_80_00, 3);
    c.set16(crate::pci::config::SUBSYSTEM_VENDOR, 0x1AF4);
    c.set16(crate::pci::config::SUBSYSTEM_VENDOR + 2, 0x1100);
    c.set_interrupt_pin(1);
    // PMBA: bit 0 reads 1 (I/O space), bits 15:6 the base.
    c.set8(PMBA, 0x01);
    c.set_writable(PMBA, 0xC0);
    c.set_writable(PMBA + 1, 0xFF);
    // Device activity B: APMC_EN (bit 25) set says "SMM already set up", which keeps SeaBIOS
    // from relying on an SMI that this board cannot deliver (QEMU does the same without SMM).
    c.set8(DEVACTB + 3, 0x02);
    for k in 0..4 {
        c.set_writable(DEVACTB + k, 0xFF);
    }
    c.set_writable(PMREGMISC, 0x01);
    c.set8(SMBBA, 0x01);
    c.set_writable(SMBBA, 0xF0);
    c.set_writable(SMBBA + 1, 0xFF);
    c.set_writable(SMBHSTCFG, 0x0F);
    c
}

/// PM timer ticks since power-on at virtual time `now` (nanoseconds).
fn ticks(now: u64) -> u64 {
    (u128::from(now) * u128::from(PM_TIMER_HZ) / 1_000_000_000) as u64
}

/// The first virtual time at which the timer reaches `tick`.
fn time_of_tick(tick: u64) -> u64 {
    (u128::from(tick) * 1_000_000_000).div_ceil(u128::from(PM_TIMER_HZ)) as u64
}

impl Piix4Pm {
    pub fn new() -> Piix4Pm {
        Piix4Pm { config: power_on_config(), s: State::default() }
    }

    /// The PM timer value at `now`: 24 bits.
    pub fn timer(now: u64) -> u32 {
        (ticks(now) & 0xFF_FFFF) as u32
    }

    /// Where the PM block decodes now, if the guest enabled it.
    fn pm_base(&self) -> Option<u16> {
        (self.config.get8(PMREGMISC) & 1 != 0).then(|| self.config.get16(PMBA) & 0xFFC0).filter(|&b| b != 0)
    }

    /// The power button was pressed (the host's "shut down" request): the guest's ACPI sees a
    /// fixed power button event.
    pub fn press_power_button(&mut self, cx: &mut DeviceContext) {
        self.s.pm1_sts |= PWRBTN;
        self.update(cx);
    }

    /// Brings TMROF_STS up to date with virtual time.
    fn sync_timer(&mut self, now: u64) {
        let epoch = ticks(now) >> 23;
        if epoch != self.s.timer_epoch {
            self.s.timer_epoch = epoch;
            self.s.pm1_sts |= TMROF;
        }
    }

    /// Recomputes the SCI level and the next timer deadline (QEMU's `pm_update_sci`).
    fn update(&mut self, cx: &mut DeviceContext) {
        self.sync_timer(cx.now);
        let sci = self.s.pm1_sts & self.s.pm1_en & SCI_EVENTS != 0 || self.s.gpe_sts & self.s.gpe_en != 0;
        if sci != self.s.sci {
            self.s.sci = sci;
            cx.set_irq(SCI_IRQ, sci);
        }
        let wait_overflow = self.s.pm1_en & TMROF != 0 && self.s.pm1_sts & TMROF == 0;
        cx.set_deadline(wait_overflow.then(|| time_of_tick((self.s.timer_epoch + 1) << 23)));
    }

    fn write_pm1_cnt(&mut self, v: u16, cx: &mut DeviceContext) {
        self.s.pm1_cnt = v & !SLP_EN;
        if v & SLP_EN != 0 {
            match (v >> 10 & 7) as u8 {
                SLP_TYP_S5 => {
                    tracing::info!("ACPI: soft off (S5)");
                    cx.event(MachineEvent::PowerOff);
                }
                t => tracing::debug!("ACPI: sleep type {t} requested; only soft off is supported"),
            }
        }
    }

    fn pm_read(&mut self, off: u64, cx: &mut DeviceContext) -> u8 {
        self.sync_timer(cx.now);
        let b = |v: u16, k: u64| (v >> (8 * k)) as u8;
        match off {
            0..=1 => b(self.s.pm1_sts, off),
            2..=3 => b(self.s.pm1_en, off - 2),
            4..=5 => b(self.s.pm1_cnt, off - 4),
            8..=11 => (Self::timer(cx.now) >> (8 * (off - 8))) as u8,
            _ => 0,
        }
    }

    fn pm_write(&mut self, off: u64, size: u8, value: u32, cx: &mut DeviceContext) {
        // Registers are written whole (a 16-bit register with a byte write keeps the other
        // byte), then the model reacts once.
        let merge = |old: u16, base: u64| -> u16 {
            let mut v = old;
            for k in 0..u64::from(size) {
                let at = off + k;
                if (base..base + 2).contains(&at) {
                    let shift = 8 * (at - base);
                    v = (v & !(0xFF << shift)) | (((value >> (8 * k)) as u16 & 0xFF) << shift);
                }
            }
            v
        };
        let touches = |base: u64| off < base + 2 && off + u64::from(size) > base;
        if touches(0) {
            // Write one to clear; bytes not written clear nothing.
            self.sync_timer(cx.now);
            let clear = merge(0, 0);
            self.s.pm1_sts &= !clear;
        }
        if touches(2) {
            self.s.pm1_en = merge(self.s.pm1_en, 2) & (SCI_EVENTS);
        }
        if touches(4) {
            let v = merge(self.s.pm1_cnt, 4);
            self.write_pm1_cnt(v, cx);
        }
        if off >= 6 && !touches(0) && !touches(2) && !touches(4) {
            tracing::debug!(offset = off, value, "PIIX4 PM: write to a read-only or reserved register");
        }
        self.update(cx);
    }

    fn gpe_read(&self, off: u16) -> u8 {
        match off {
            0..=1 => (self.s.gpe_sts >> (8 * off)) as u8,
            _ => (self.s.gpe_en >> (8 * (off - 2))) as u8,
        }
    }

    fn gpe_write(&mut self, off: u16, v: u8) {
        match off {
            0..=1 => self.s.gpe_sts &= !(u16::from(v) << (8 * off)),
            _ => {
                let shift = 8 * (off - 2);
                self.s.gpe_en = (self.s.gpe_en & !(0xFF << shift)) | u16::from(v) << shift;
            }
        }
    }
}

impl Device for Piix4Pm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn io_read(&mut self, port: u16, size: u8, _cx: &mut DeviceContext) -> u32 {
        let v = (0..u16::from(size)).fold(0u32, |v, k| {
            let p = port.wrapping_add(k);
            let b = match p {
                APM_CNT_PORT => self.s.apm_cnt,
                APM_STS_PORT => self.s.apm_sts,
                p if (GPE0_BASE..GPE0_BASE + GPE0_LEN).contains(&p) => self.gpe_read(p - GPE0_BASE),
                _ => return v | (0xFF << (8 * k)),
            };
            v | u32::from(b) << (8 * k)
        });
        v & open_bus(size) as u32
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, cx: &mut DeviceContext) {
        for k in 0..u16::from(size) {
            let b = (value >> (8 * k)) as u8;
            match port.wrapping_add(k) {
                APM_CNT_PORT => {
                    self.s.apm_cnt = b;
                    match b {
                        ACPI_ENABLE => self.s.pm1_cnt |= SCI_EN,
                        ACPI_DISABLE => self.s.pm1_cnt &= !SCI_EN,
                        _ => tracing::debug!(value = b, "APM command without SMM: ignored"),
                    }
                }
                APM_STS_PORT => self.s.apm_sts = b,
                p if (GPE0_BASE..GPE0_BASE + GPE0_LEN).contains(&p) => self.gpe_write(p - GPE0_BASE, b),
                _ => {}
            }
        }
        self.update(cx);
    }

    fn tick(&mut self, cx: &mut DeviceContext) {
        self.update(cx);
    }

    fn reset(&mut self) {
        self.config = power_on_config();
        self.s = State::default();
    }

    fn power_on(&mut self, cx: &mut DeviceContext) {
        self.s.timer_epoch = ticks(cx.now) >> 23;
        self.s.sci = false;
        cx.set_irq(SCI_IRQ, false);
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &(&self.config, &self.s))
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        let (config, s): (PciConfig, State) = snapshot.decode(NAME, VERSION)?;
        self.config = config;
        self.s = s;
        Ok(())
    }

    fn as_pci(&mut self) -> Option<&mut dyn PciFunction> {
        Some(self)
    }
}

impl PciFunction for Piix4Pm {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn io_windows(&self) -> Vec<BarMapping> {
        self.pm_base()
            .map(|base| BarMapping { index: PM_WINDOW, kind: BarKind::Io, base: u64::from(base), size: PM_BLOCK_LEN })
            .into_iter()
            .collect()
    }

    fn bar_read(&mut self, bar: u8, offset: u64, size: u8, cx: &mut DeviceContext) -> u64 {
        if bar != PM_WINDOW {
            return open_bus(size);
        }
        (0..u64::from(size)).fold(0, |v, k| v | u64::from(self.pm_read(offset + k, cx)) << (8 * k))
    }

    fn bar_write(&mut self, bar: u8, offset: u64, size: u8, value: u64, cx: &mut DeviceContext) {
        if bar == PM_WINDOW {
            self.pm_write(offset, size, value as u32, cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bench {
        pm: Piix4Pm,
        now: u64,
        irqs: Vec<(u8, bool)>,
        events: Vec<MachineEvent>,
        deadline: Option<u64>,
    }

    impl Bench {
        fn new() -> Bench {
            let mut b = Bench { pm: Piix4Pm::new(), now: 0, irqs: vec![], events: vec![], deadline: None };
            b.with(|pm, cx| pm.power_on(cx));
            b
        }
        fn with<R>(&mut self, f: impl FnOnce(&mut Piix4Pm, &mut DeviceContext) -> R) -> R {
            let mut cx = DeviceContext::new(self.now, &mut self.irqs, &mut self.events, &mut self.deadline);
            f(&mut self.pm, &mut cx)
        }
        fn read(&mut self, off: u64, size: u8) -> u64 {
            self.with(|pm, cx| pm.bar_read(PM_WINDOW, off, size, cx))
        }
        fn write(&mut self, off: u64, size: u8, v: u64) {
            self.with(|pm, cx| pm.bar_write(PM_WINDOW, off, size, v, cx))
        }
    }

    #[test]
    fn identity_and_pmba_window() {
        let mut b = Bench::new();
        let c = b.pm.config();
        assert_eq!((c.read(0, 2), c.read(2, 2), c.read(8, 4) >> 8), (0x8086, 0x7113, 0x06_80_00));
        assert_eq!(c.get8(0x5B), 0x02, "APMC_EN: no SMM handshake");
        assert!(b.pm.io_windows().is_empty(), "off until PMREGMISC enables it");
        b.pm.config_mut().write(PMBA, 4, 0x0601);
        b.pm.config_mut().write(PMREGMISC, 1, 1);
        let w = b.pm.io_windows();
        assert_eq!((w[0].base, w[0].size), (0x600, 64));
        assert_eq!(b.pm.config().read(PMBA, 4), 0x601);
    }

    #[test]
    fn timer_counts_at_3_579545_mhz_in_24_bits() {
        let mut b = Bench::new();
        b.now = 1_000_000_000;
        assert_eq!(b.read(8, 4), 3_579_545);
        b.now = 10_000_000_000;
        assert_eq!(b.read(8, 4), 35_795_450 & 0xFF_FFFF);
        assert_eq!(b.read(9, 1), (35_795_450 >> 8) & 0xFF);
    }

    #[test]
    fn timer_overflow_raises_the_sci_when_enabled() {
        let mut b = Bench::new();
        b.write(2, 2, u64::from(TMROF));
        let at = b.deadline.expect("a deadline at the next bit-23 flip");
        assert_eq!(at, time_of_tick(1 << 23));
        assert!(at > 2_343_000_000 && at < 2_344_000_000, "2^23 ticks is about 2.34 s");
        b.now = at;
        b.with(|pm, cx| pm.tick(cx));
        assert_eq!(b.read(0, 2) as u16 & TMROF, TMROF);
        assert_eq!(b.irqs.last(), Some(&(SCI_IRQ, true)));
        assert_eq!(b.deadline, None, "no deadline while the status is pending");
        b.write(0, 2, u64::from(TMROF));
        assert_eq!(b.irqs.last(), Some(&(SCI_IRQ, false)));
        assert_eq!(b.deadline, Some(time_of_tick(2 << 23)));
    }

    #[test]
    fn sleep_enable_with_soft_off_powers_off() {
        let mut b = Bench::new();
        b.write(4, 2, u64::from(SLP_EN | 5 << 10));
        assert!(b.events.is_empty(), "type 5 is not soft off on the PIIX4");
        b.write(4, 2, u64::from(SLP_EN | u16::from(SLP_TYP_S5) << 10 | SCI_EN));
        assert_eq!(b.events, [MachineEvent::PowerOff]);
        assert_eq!(b.read(4, 2) as u16, SCI_EN, "SLP_EN reads back as 0");
    }

    #[test]
    fn apm_port_switches_acpi_mode() {
        let mut b = Bench::new();
        b.with(|pm, cx| pm.io_write(APM_CNT_PORT, 1, u32::from(ACPI_ENABLE), cx));
        assert_eq!(b.read(4, 2) as u16 & SCI_EN, SCI_EN);
        b.with(|pm, cx| pm.io_write(APM_CNT_PORT, 1, u32::from(ACPI_DISABLE), cx));
        assert_eq!(b.read(4, 2) as u16 & SCI_EN, 0);
        assert_eq!(b.with(|pm, cx| pm.io_read(APM_CNT_PORT, 1, cx)), u32::from(ACPI_DISABLE));
    }

    #[test]
    fn power_button_and_gpe() {
        let mut b = Bench::new();
        b.write(2, 2, u64::from(PWRBTN));
        b.with(|pm, cx| pm.press_power_button(cx));
        assert_eq!(b.irqs.last(), Some(&(SCI_IRQ, true)));
        b.write(0, 1, 0);
        assert_eq!(b.irqs.last(), Some(&(SCI_IRQ, true)), "writing zeros clears nothing");
        b.write(0, 2, u64::from(PWRBTN));
        assert_eq!(b.irqs.last(), Some(&(SCI_IRQ, false)));
        b.with(|pm, cx| pm.io_write(GPE0_BASE + 2, 1, 0xFF, cx));
        assert_eq!(b.with(|pm, cx| pm.io_read(GPE0_BASE, 4, cx)), 0x00FF_0000);
    }

    #[test]
    fn snapshot_round_trips() {
        let mut b = Bench::new();
        b.write(2, 2, u64::from(PWRBTN));
        b.pm.config_mut().write(PMBA, 4, 0x0601);
        let snap = b.pm.save();
        let mut other = Piix4Pm::new();
        other.restore(&snap).unwrap();
        assert_eq!(other.save(), snap);
        assert!(other.restore(&DeviceSnapshot::new("x", 1, &())).is_err());
    }
}
