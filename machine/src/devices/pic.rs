//! The PC/AT pair of Intel 8259A interrupt controllers (slave cascaded on the master's IR2) and
//! the PIIX edge/level control registers (ELCR, ports 0x4D0/0x4D1). Follows the Intel 8259A
//! datasheet (231468) and the PIIX3 ELCR description, checked against QEMU's i8259 model.

use crate::device::{DeviceSnapshot, SnapshotError};
use serde::{Deserialize, Serialize};

const NAME: &str = "pic";
const VERSION: u32 = 1;

/// IRQ 0, 1 and 2 cannot be level triggered (PIIX3 ELCR1).
const MASTER_ELCR_MASK: u8 = 0xF8;
/// IRQ 8 and 13 cannot be level triggered (PIIX3 ELCR2).
const SLAVE_ELCR_MASK: u8 = 0xDE;
/// The master input the slave's INT output is wired to.
const CASCADE_IR: u8 = 2;

/// Where a chip is in its initialization sequence: which ICW the next odd-port write is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Init {
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Chip {
    master: bool,
    irr: u8,
    isr: u8,
    imr: u8,
    /// Levels of the IR inputs as last driven: edge detection compares against these.
    lines: u8,
    /// Lines that are level triggered (ELCR).
    elcr: u8,
    /// The IR that currently has the highest priority (rotation moves it).
    top: u8,
    /// T7-T3 of the vectors (ICW2).
    base: u8,
    init: Init,
    single: bool,
    icw4_needed: bool,
    /// Master: which IRs have a slave (S7-S0). Slave: its ID (ID2-ID0).
    icw3: u8,
    /// ICW4 µPM: 8086 mode. Without it the chip would answer INTA with 8080 CALL bytes.
    x86: bool,
    auto_eoi: bool,
    rotate_on_aeoi: bool,
    special_fully_nested: bool,
    special_mask: bool,
    /// OCW3 P: the next read is a poll (an acknowledge that returns the level).
    poll: bool,
    /// OCW3 RIS: the even port reads the ISR rather than the IRR.
    read_isr: bool,
}

impl Chip {
    fn new(master: bool) -> Chip {
        Chip {
            master,
            irr: 0,
            isr: 0,
            imr: 0,
            lines: 0,
            elcr: 0,
            top: 0,
            base: if master { 0x08 } else { 0x70 },
            init: Init::Ready,
            single: false,
            icw4_needed: true,
            icw3: if master { 1 << CASCADE_IR } else { CASCADE_IR },
            x86: true,
            auto_eoi: false,
            rotate_on_aeoi: false,
            special_fully_nested: false,
            special_mask: false,
            poll: false,
            read_isr: false,
        }
    }

    fn which(&self) -> &'static str {
        if self.master {
            "master"
        } else {
            "slave"
        }
    }

    /// Rank of `ir` in the current priority order: 0 is the highest.
    fn rank(&self, ir: u8) -> u8 {
        ir.wrapping_sub(self.top) & 7
    }

    /// The highest-priority IR whose bit is set in `bits`.
    fn highest(&self, bits: u8) -> Option<u8> {
        (0..8).map(|r| self.top.wrapping_add(r) & 7).find(|&ir| bits & (1 << ir) != 0)
    }

    /// The IR the priority resolver would signal on INT now, if any.
    fn request(&self) -> Option<u8> {
        let pending = self.irr & !self.imr;
        if self.special_mask {
            // Special mask mode: in-service levels only inhibit themselves; everything else
            // that is unmasked may interrupt, lower priorities included (datasheet, SMM).
            return self.highest(pending & !self.isr);
        }
        let want = self.highest(pending)?;
        match self.highest(self.isr) {
            None => Some(want),
            Some(cur) if self.rank(want) < self.rank(cur) => Some(want),
            // Special fully nested mode: the master lets a higher-priority slave request
            // through while that slave's IR is already in service.
            Some(cur)
                if self.special_fully_nested && self.master && cur == CASCADE_IR && want == CASCADE_IR =>
            {
                Some(want)
            }
            Some(_) => None,
        }
    }

    /// Drives input `ir` to `level`, latching an IRR bit on a rising edge (or following the
    /// level on a level-triggered line).
    fn set_line(&mut self, ir: u8, level: bool) {
        let bit = 1 << ir;
        if self.elcr & bit != 0 {
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && self.lines & bit == 0 {
            self.irr |= bit;
        }
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
    }

    /// The INTA (or poll) side of accepting `ir`.
    fn accept(&mut self, ir: u8) {
        let bit = 1 << ir;
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.top = (ir + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        // A level-triggered request stays in the IRR while its line is high.
        if self.elcr & bit == 0 {
            self.irr &= !bit;
        }
    }

    fn set_elcr(&mut self, value: u8) {
        let mask = if self.master { MASTER_ELCR_MASK } else { SLAVE_ELCR_MASK };
        if value & !mask != 0 {
            tracing::debug!(chip = self.which(), value, "ELCR: bits for edge-only IRQs ignored");
        }
        self.elcr = value & mask;
        // A line that becomes level triggered shows its current level in the IRR at once.
        self.irr = (self.irr & !self.elcr) | (self.lines & self.elcr);
    }

    fn read(&mut self, a0: bool) -> u8 {
        if self.poll {
            self.poll = false;
            return match self.request() {
                Some(ir) => {
                    self.accept(ir);
                    0x80 | ir
                }
                None => 0,
            };
        }
        if a0 {
            self.imr
        } else if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }

    fn write(&mut self, a0: bool, value: u8) {
        if !a0 {
            if value & 0x10 != 0 {
                self.icw1(value);
            } else if value & 0x08 != 0 {
                self.ocw3(value);
            } else {
                self.ocw2(value);
            }
            return;
        }
        match self.init {
            Init::Ready => self.imr = value,
            Init::Icw2 => {
                if value & 7 != 0 {
                    tracing::debug!(chip = self.which(), value, "ICW2: low three bits ignored in 8086 mode");
                }
                self.base = value & 0xF8;
                self.init = if !self.single {
                    Init::Icw3
                } else if self.icw4_needed {
                    Init::Icw4
                } else {
                    self.finish_init()
                };
            }
            Init::Icw3 => {
                self.icw3 = value;
                if self.master && value != 1 << CASCADE_IR {
                    tracing::debug!(value, "ICW3: master's slave inputs differ from the PC's IR2");
                } else if !self.master && value != CASCADE_IR {
                    tracing::debug!(value, "ICW3: slave ID differs from the PC's 2");
                }
                self.init = if self.icw4_needed { Init::Icw4 } else { self.finish_init() };
            }
            Init::Icw4 => {
                self.x86 = value & 0x01 != 0;
                self.auto_eoi = value & 0x02 != 0;
                self.special_fully_nested = value & 0x10 != 0;
                if value & 0x0C != 0 {
                    tracing::debug!(chip = self.which(), value, "ICW4: buffered mode has no effect here");
                }
                self.init = self.finish_init();
            }
        }
    }

    fn finish_init(&mut self) -> Init {
        if !self.x86 {
            tracing::debug!(chip = self.which(), "8080/8085 mode selected; vectors are still delivered 8086-style");
        }
        Init::Ready
    }

    /// ICW1 starts initialization: the datasheet's list of what it resets.
    fn icw1(&mut self, value: u8) {
        if value & 0x08 != 0 {
            // PIIX3: LTIM is disabled, the ELCR decides edge or level per line.
            tracing::debug!(chip = self.which(), "ICW1: LTIM ignored (edge/level comes from the ELCR)");
        }
        self.single = value & 0x02 != 0;
        self.icw4_needed = value & 0x01 != 0;
        // With IC4 clear, every ICW4 function is zero.
        self.x86 = false;
        self.auto_eoi = false;
        self.special_fully_nested = false;
        self.imr = 0;
        self.isr = 0;
        // The edge sense latch is reset: a line already high must fall and rise again.
        self.irr = self.lines & self.elcr;
        self.top = 0;
        self.special_mask = false;
        self.read_isr = false;
        self.poll = false;
        self.rotate_on_aeoi = false;
        self.init = Init::Icw2;
    }

    fn ocw2(&mut self, value: u8) {
        let level = value & 7;
        match value >> 5 {
            // Non-specific EOI (with rotation for 0b101). In special mask mode, masked
            // in-service bits are left alone (datasheet note to OCW2).
            0b001 | 0b101 => {
                let candidates = if self.special_mask { self.isr & !self.imr } else { self.isr };
                if let Some(ir) = self.highest(candidates) {
                    self.isr &= !(1 << ir);
                    if value >> 5 == 0b101 {
                        self.top = (ir + 1) & 7;
                    }
                }
            }
            0b011 => self.isr &= !(1 << level),
            0b111 => {
                self.isr &= !(1 << level);
                self.top = (level + 1) & 7;
            }
            0b100 => self.rotate_on_aeoi = true,
            0b000 => self.rotate_on_aeoi = false,
            // Set priority: `level` becomes the lowest.
            0b110 => self.top = (level + 1) & 7,
            _ => {}
        }
    }

    fn ocw3(&mut self, value: u8) {
        if value & 0x80 != 0 {
            tracing::debug!(chip = self.which(), value, "OCW3: bit 7 should be 0");
        }
        if value & 0x40 != 0 {
            self.special_mask = value & 0x20 != 0;
        }
        if value & 0x04 != 0 {
            self.poll = true;
        }
        if value & 0x02 != 0 {
            self.read_isr = value & 0x01 != 0;
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    master: Chip,
    slave: Chip,
}

/// The master and slave 8259A of a PC/AT. Not a bus device: the board owns it and calls it
/// directly for ports 0x20, 0x21, 0xA0, 0xA1, 0x4D0 and 0x4D1 and for interrupt acknowledge.
pub struct DualPic {
    s: State,
}

impl Default for DualPic {
    fn default() -> Self {
        DualPic::new()
    }
}

impl DualPic {
    pub fn new() -> DualPic {
        DualPic { s: State { master: Chip::new(true), slave: Chip::new(false) } }
    }

    /// Drives ISA interrupt line `line` (0-15). Line 2 is the cascade input on a PC and has
    /// nothing else attached; driving it is accepted (some boards route IRQ9 there) but logged.
    pub fn set_irq(&mut self, line: u8, level: bool) {
        match line {
            0..=7 => {
                if line == CASCADE_IR {
                    tracing::debug!(level, "IRQ2 driven directly; it is the cascade input");
                }
                self.s.master.set_line(line, level);
            }
            8..=15 => {
                self.s.slave.set_line(line - 8, level);
                self.cascade();
            }
            _ => tracing::debug!(line, level, "interrupt line out of range"),
        }
    }

    /// The master's INT output: the CPU's INTR input.
    pub fn intr_pending(&self) -> bool {
        self.s.master.request().is_some()
    }

    /// The two INTA cycles: returns the vector and moves the request into service. With no
    /// request left (it went away after INTR was sampled) the chip answers with its IR7
    /// vector without setting an ISR bit: the spurious interrupt of the datasheet.
    pub fn acknowledge(&mut self) -> u8 {
        let master_ir = self.s.master.request();
        let vector = match master_ir {
            None => {
                tracing::debug!("spurious interrupt on the master (IRQ7)");
                self.s.master.base | 7
            }
            Some(ir) if ir == CASCADE_IR && self.cascade_enabled() => {
                self.s.master.accept(ir);
                if self.s.slave.icw3 & 7 != CASCADE_IR {
                    // The slave does not recognise its cascade address and stays off the bus.
                    tracing::debug!(id = self.s.slave.icw3 & 7, "slave ID is not 2: INTA reads a floating bus");
                    0xFF
                } else {
                    match self.s.slave.request() {
                        Some(sir) => {
                            self.s.slave.accept(sir);
                            self.s.slave.base | sir
                        }
                        None => {
                            // The master's IR2 stays in service: the handler must EOI it.
                            tracing::debug!("spurious interrupt on the slave (IRQ15)");
                            self.s.slave.base | 7
                        }
                    }
                }
            }
            Some(ir) => {
                self.s.master.accept(ir);
                self.s.master.base | ir
            }
        };
        self.cascade();
        vector
    }

    /// Port read: 0x20/0x21 master, 0xA0/0xA1 slave, 0x4D0/0x4D1 ELCR.
    pub fn read(&mut self, port: u16) -> u8 {
        let v = match port {
            0x20 | 0x21 => self.s.master.read(port & 1 != 0),
            0xA0 | 0xA1 => self.s.slave.read(port & 1 != 0),
            0x4D0 => self.s.master.elcr,
            0x4D1 => self.s.slave.elcr,
            _ => {
                tracing::debug!(port, "PIC read from a port it does not own");
                0xFF
            }
        };
        self.cascade();
        v
    }

    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            0x20 | 0x21 => self.s.master.write(port & 1 != 0, value),
            0xA0 | 0xA1 => self.s.slave.write(port & 1 != 0, value),
            0x4D0 => self.s.master.set_elcr(value),
            0x4D1 => self.s.slave.set_elcr(value),
            _ => tracing::debug!(port, value, "PIC write to a port it does not own"),
        }
        self.cascade();
    }

    /// Power-on state: both chips uninitialised with every line low and the ELCR cleared
    /// (all edge triggered), as after PCIRST# on a PIIX.
    pub fn reset(&mut self) {
        *self = DualPic::new();
    }

    pub fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    pub fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        self.s = snapshot.decode(NAME, VERSION)?;
        Ok(())
    }

    /// Does the master treat IR2 as a cascade input (ICW1 cascade mode, ICW3 S2)?
    fn cascade_enabled(&self) -> bool {
        !self.s.master.single && self.s.master.icw3 & (1 << CASCADE_IR) != 0
    }

    /// The slave's INT output drives the master's IR2 (edge triggered on the master).
    fn cascade(&mut self) {
        let level = self.s.slave.request().is_some();
        self.s.master.set_line(CASCADE_IR, level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence a PC BIOS (and Linux) uses: cascade, edge, ICW4, vectors 0x08/0x70.
    fn pc_init(pic: &mut DualPic, master_base: u8, slave_base: u8) {
        pic.write(0x20, 0x11);
        pic.write(0x21, master_base);
        pic.write(0x21, 0x04);
        pic.write(0x21, 0x01);
        pic.write(0xA0, 0x11);
        pic.write(0xA1, slave_base);
        pic.write(0xA1, 0x02);
        pic.write(0xA1, 0x01);
    }

    fn eoi_master(pic: &mut DualPic) {
        pic.write(0x20, 0x20);
    }

    fn eoi_slave(pic: &mut DualPic) {
        pic.write(0xA0, 0x20);
    }

    #[test]
    fn init_sets_vectors_and_clears_mask() {
        let mut pic = DualPic::new();
        pic.write(0x21, 0xFF);
        pc_init(&mut pic, 0x20, 0x28);
        assert_eq!(pic.read(0x21), 0, "ICW1 clears the IMR");
        assert!(!pic.intr_pending());
        pic.set_irq(1, true);
        assert!(pic.intr_pending());
        assert_eq!(pic.acknowledge(), 0x21);
        pic.set_irq(1, false);
        eoi_master(&mut pic);
        pic.set_irq(10, true);
        assert!(pic.intr_pending());
        assert_eq!(pic.acknowledge(), 0x2A);
    }

    #[test]
    fn single_mode_without_icw3() {
        let mut pic = DualPic::new();
        pic.write(0x20, 0x13); // single, ICW4 needed
        pic.write(0x21, 0x40);
        pic.write(0x21, 0x01); // this is ICW4, not ICW3
        pic.write(0x21, 0x01); // and this OCW1, masking IR0
        assert_eq!(pic.read(0x21), 0x01);
        pic.set_irq(0, true);
        assert!(!pic.intr_pending());
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x43);
    }

    #[test]
    fn mask_blocks_and_unmask_delivers() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        pic.write(0x21, 0x01);
        pic.set_irq(0, true);
        assert!(!pic.intr_pending());
        assert_eq!(pic.read(0x20) & 1, 1, "masked request still shows in the IRR");
        pic.write(0x21, 0x00);
        assert!(pic.intr_pending());
        assert_eq!(pic.acknowledge(), 0x08);
    }

    #[test]
    fn fully_nested_priority_and_eoi() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        pic.set_irq(4, true);
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x0B, "IR3 beats IR4");
        // IR3 in service blocks IR4 but not IR1.
        assert!(!pic.intr_pending());
        pic.set_irq(1, true);
        assert!(pic.intr_pending());
        assert_eq!(pic.acknowledge(), 0x09);
        pic.write(0x20, 0x0B); // OCW3: read ISR
        assert_eq!(pic.read(0x20), 0b0000_1010);
        eoi_master(&mut pic); // clears IR1, the highest in service
        assert_eq!(pic.read(0x20), 0b0000_1000);
        assert!(!pic.intr_pending());
        pic.write(0x20, 0x63); // specific EOI for IR3
        assert_eq!(pic.read(0x20), 0);
        assert_eq!(pic.acknowledge(), 0x0C);
        pic.write(0x20, 0x0A); // back to the IRR
        assert_eq!(pic.read(0x20), 0, "edge requests leave the IRR when acknowledged");
    }

    #[test]
    fn edge_needs_a_new_rising_edge() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        pic.set_irq(5, true);
        assert_eq!(pic.acknowledge(), 0x0D);
        eoi_master(&mut pic);
        pic.set_irq(5, true); // still high: no edge
        assert!(!pic.intr_pending());
        pic.set_irq(5, false);
        pic.set_irq(5, true);
        assert!(pic.intr_pending());
    }

    #[test]
    fn level_triggered_lines_follow_the_elcr() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        pic.write(0x4D0, 0xFF);
        pic.write(0x4D1, 0xFF);
        assert_eq!(pic.read(0x4D0), 0xF8, "IRQ0-2 are edge only");
        assert_eq!(pic.read(0x4D1), 0xDE, "IRQ8 and IRQ13 are edge only");
        pic.set_irq(11, true);
        assert_eq!(pic.acknowledge(), 0x73);
        eoi_slave(&mut pic);
        eoi_master(&mut pic);
        // Still high: a level-triggered line asks again after EOI.
        assert!(pic.intr_pending());
        assert_eq!(pic.acknowledge(), 0x73);
        pic.set_irq(11, false);
        eoi_slave(&mut pic);
        eoi_master(&mut pic);
        assert!(!pic.intr_pending());
        // A request that goes away before INTA: the IRR follows it down.
        pic.set_irq(5, true);
        assert!(pic.intr_pending());
        pic.set_irq(5, false);
        assert!(!pic.intr_pending());
    }

    #[test]
    fn switching_to_level_shows_a_high_line() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        pic.set_irq(9, true);
        assert_eq!(pic.acknowledge(), 0x71);
        eoi_slave(&mut pic);
        eoi_master(&mut pic);
        assert!(!pic.intr_pending(), "edge triggered: the held line asks once");
        pic.write(0x4D1, 0x02);
        assert!(pic.intr_pending(), "level triggered: the held line asks again");
        assert_eq!(pic.acknowledge(), 0x71);
    }

    #[test]
    fn cascade_needs_eoi_on_both_chips() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        pic.set_irq(12, true);
        pic.set_irq(14, true);
        assert_eq!(pic.acknowledge(), 0x74);
        pic.write(0x20, 0x0B);
        assert_eq!(pic.read(0x20), 0x04, "master IR2 in service");
        pic.write(0xA0, 0x0B);
        assert_eq!(pic.read(0xA0), 0x10);
        // Slave IR6 waits for the slave EOI, then for the master's.
        assert!(!pic.intr_pending());
        eoi_slave(&mut pic);
        assert!(!pic.intr_pending(), "master IR2 still in service");
        eoi_master(&mut pic);
        assert!(pic.intr_pending());
        assert_eq!(pic.acknowledge(), 0x76);
        // Master IRQ1 outranks the whole slave; IRQ3 does not outrank IR2.
        pic.set_irq(3, true);
        assert!(!pic.intr_pending());
        pic.set_irq(1, true);
        assert_eq!(pic.acknowledge(), 0x09);
    }

    #[test]
    fn special_fully_nested_lets_the_slave_nest() {
        let mut pic = DualPic::new();
        pic.write(0x20, 0x11);
        pic.write(0x21, 0x08);
        pic.write(0x21, 0x04);
        pic.write(0x21, 0x11); // SFNM
        pic.write(0xA0, 0x11);
        pic.write(0xA1, 0x70);
        pic.write(0xA1, 0x02);
        pic.write(0xA1, 0x01);
        pic.set_irq(14, true);
        assert_eq!(pic.acknowledge(), 0x76);
        pic.set_irq(9, true);
        assert!(pic.intr_pending(), "higher slave request gets through while IR2 is in service");
        assert_eq!(pic.acknowledge(), 0x71);
        pic.set_irq(3, true);
        assert!(!pic.intr_pending(), "IR3 is still below IR2");
    }

    #[test]
    fn spurious_interrupts_use_ir7() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        assert_eq!(pic.acknowledge(), 0x0F);
        pic.write(0x20, 0x0B);
        assert_eq!(pic.read(0x20), 0, "no ISR bit for a spurious IRQ7");
        // A level-triggered slave request dropped after INTR was sampled.
        pic.write(0x4D1, 0x02);
        pic.set_irq(9, true);
        assert!(pic.intr_pending());
        // The line falls after INTR was sampled; the master's IR2 edge is already latched.
        pic.set_irq(9, false);
        assert_eq!(pic.acknowledge(), 0x77);
        assert_eq!(pic.read(0x20), 0x04, "master IR2 went into service");
        pic.write(0xA0, 0x0B);
        assert_eq!(pic.read(0xA0), 0);
    }

    #[test]
    fn automatic_eoi_with_rotation() {
        let mut pic = DualPic::new();
        pic.write(0x20, 0x13);
        pic.write(0x21, 0x08);
        pic.write(0x21, 0x03); // 8086, AEOI
        pic.write(0x20, 0x80); // rotate in AEOI
        for ir in [1, 4, 6] {
            pic.set_irq(ir, true);
        }
        assert_eq!(pic.acknowledge(), 0x09);
        pic.write(0x20, 0x0B);
        assert_eq!(pic.read(0x20), 0, "AEOI leaves nothing in service");
        // IR1 is now lowest: IR4 then IR6, and after IR6, IR1 would come after IR7.
        pic.set_irq(1, false);
        pic.set_irq(1, true);
        assert_eq!(pic.acknowledge(), 0x0C);
        assert_eq!(pic.acknowledge(), 0x0E);
        assert_eq!(pic.acknowledge(), 0x09);
    }

    #[test]
    fn rotation_commands() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        pic.write(0x20, 0xC4); // set priority: IR4 lowest, IR5 highest
        pic.set_irq(3, true);
        pic.set_irq(6, true);
        assert_eq!(pic.acknowledge(), 0x0E);
        pic.write(0x20, 0xA0); // rotate on non-specific EOI: IR6 becomes lowest
        assert_eq!(pic.acknowledge(), 0x0B);
        pic.write(0x20, 0xE3); // rotate on specific EOI 3: IR4 highest
        pic.set_irq(0, true);
        pic.set_irq(4, true);
        assert_eq!(pic.acknowledge(), 0x0C);
    }

    #[test]
    fn special_mask_mode_enables_lower_levels() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x0B);
        pic.set_irq(5, true);
        assert!(!pic.intr_pending());
        pic.write(0x21, 0x08); // mask the level in service
        pic.write(0x20, 0x68); // OCW3: set special mask
        assert!(pic.intr_pending());
        assert_eq!(pic.acknowledge(), 0x0D);
        // Non-specific EOI skips the masked in-service IR3.
        eoi_master(&mut pic);
        pic.write(0x20, 0x0B);
        assert_eq!(pic.read(0x20), 0x08);
        pic.write(0x20, 0x48); // reset special mask
        pic.write(0x21, 0x00);
        eoi_master(&mut pic);
        assert_eq!(pic.read(0x20), 0);
    }

    #[test]
    fn poll_mode_acknowledges_on_read() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        pic.write(0x20, 0x0C);
        assert_eq!(pic.read(0x20), 0x00, "nothing pending");
        pic.set_irq(6, true);
        pic.write(0x20, 0x0C);
        assert_eq!(pic.read(0x20), 0x86);
        pic.write(0x20, 0x0B);
        assert_eq!(pic.read(0x20), 0x40, "poll put IR6 in service");
        assert_eq!(pic.read(0x21), 0, "one read only, then the IMR again");
        // Slave through the master: the master reports IR2, then the slave is polled.
        eoi_master(&mut pic);
        pic.set_irq(13, true);
        pic.write(0x20, 0x0C);
        assert_eq!(pic.read(0x20), 0x82);
        pic.write(0xA0, 0x0C);
        assert_eq!(pic.read(0xA1), 0x85);
    }

    #[test]
    fn nonsense_does_not_panic() {
        let mut pic = DualPic::new();
        pic.set_irq(16, true);
        pic.set_irq(255, false);
        assert_eq!(pic.read(0x22), 0xFF);
        pic.write(0x20, 0x18); // ICW1 with LTIM
        pic.write(0x21, 0x07);
        pic.write(0x21, 0xFF);
        pic.write(0x21, 0xFF);
        pic.write(0x20, 0xFF);
        pic.write(0x20, 0x40);
        for v in 0..=255u8 {
            pic.write(0xA0, v & !0x10);
            pic.write(0xA1, v);
            pic.set_irq(v & 15, v & 1 != 0);
            let _ = pic.read(0xA0);
            if pic.intr_pending() {
                pic.acknowledge();
            }
        }
    }

    #[test]
    fn wrong_slave_id_floats_the_bus() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        pic.write(0xA0, 0x11);
        pic.write(0xA1, 0x70);
        pic.write(0xA1, 0x03);
        pic.write(0xA1, 0x01);
        pic.set_irq(8, true);
        assert_eq!(pic.acknowledge(), 0xFF);
    }

    #[test]
    fn save_restore_round_trip() {
        let mut pic = DualPic::new();
        pc_init(&mut pic, 0x08, 0x70);
        pic.write(0x4D1, 0x08);
        pic.write(0x21, 0x10);
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x0B);
        pic.set_irq(11, true);
        pic.set_irq(4, true);
        pic.write(0x20, 0x0B);
        let snap = pic.save();

        let mut copy = DualPic::new();
        copy.restore(&snap).unwrap();
        assert_eq!(copy.save(), snap);
        for p in [&mut pic, &mut copy] {
            assert_eq!(p.read(0x20), 0x08, "ISR read selection survives");
            assert_eq!(p.acknowledge(), 0x73, "the slave (IR2) outranks IR3 in service");
            p.write(0x21, 0x00);
            eoi_slave(p);
            eoi_master(p);
            assert_eq!(p.acknowledge(), 0x73, "level line 11 still high");
            p.set_irq(11, false);
            eoi_slave(p);
            eoi_master(p);
            assert!(!p.intr_pending(), "IR4 waits for IR3");
            eoi_master(p);
            assert_eq!(p.acknowledge(), 0x0C);
        }
        assert_eq!(pic.save(), copy.save());

        let bad = DeviceSnapshot::new("pit", VERSION, &());
        assert!(copy.restore(&bad).is_err());
        let old = DeviceSnapshot::new(NAME, VERSION + 1, &snap.data);
        assert!(copy.restore(&old).is_err());
    }
}
