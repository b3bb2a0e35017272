//! AML pieces the DSDT needs that the `acpi_tables` crate does not provide (ACPI 6.5 section
//! 6.4 resource descriptors, section 20 AML encoding): the ISA IRQ and DMA descriptors, an
//! extended interrupt descriptor with several interrupts, the logical operators, and raw
//! pre-encoded AML for objects built in loops.

use acpi_tables::{Aml, AmlSink};

/// Already encoded AML, spliced in as is.
pub struct Raw(pub Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

/// Encodes one object.
pub fn encode(obj: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    obj.to_aml_bytes(&mut v);
    v
}

/// `IRQNoFlags () {irqs}`: the small IRQ descriptor (edge, active high, exclusive).
pub struct IrqNoFlags(pub &'static [u8]);

impl Aml for IrqNoFlags {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let mask = self.0.iter().fold(0u16, |m, &i| m | 1 << i);
        sink.byte(0x22);
        sink.word(mask);
    }
}

/// `DMA (Compatibility, NotBusMaster, ...) {channel}`: the ISA DMA descriptor with its flags
/// byte (transfer type in bits 0-1: 0 for 8-bit, 1 for 8- and 16-bit).
pub struct IsaDma(pub u8, pub u8);

impl Aml for IsaDma {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(0x2A);
        sink.byte(1 << self.0);
        sink.byte(self.1);
    }
}

/// `Interrupt (ResourceConsumer, Level, ActiveHigh, Shared) {irqs}`: what PCI interrupt links
/// offer and use.
pub struct PciInterrupts(pub Vec<u32>);

impl Aml for PciInterrupts {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(0x89);
        sink.word(2 + 4 * self.0.len() as u16);
        // Consumer (bit 0), level (bit 1 clear), active high (bit 2 clear), shared (bit 3).
        sink.byte(0x09);
        sink.byte(self.0.len() as u8);
        for &i in &self.0 {
            sink.dword(i);
        }
    }
}

/// `LOr (a, b)`.
pub struct LOr<'a>(pub &'a dyn Aml, pub &'a dyn Aml);

impl Aml for LOr<'_> {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(0x91);
        self.0.to_aml_bytes(sink);
        self.1.to_aml_bytes(sink);
    }
}

/// `Name (_Sx_, Package () {typ, typ, 0, 0})`: the sleep type values for PM1a/PM1b control.
pub fn sleep_state(name: &str, slp_typ: u8) -> Vec<u8> {
    use acpi_tables::aml::{Name, Package, Path};
    let zero = 0u8;
    encode(&Name::new(Path::new(name), &Package::new(vec![&slp_typ, &slp_typ, &zero, &zero])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_encode_as_the_spec_says() {
        assert_eq!(encode(&IrqNoFlags(&[1, 12])), [0x22, 0x02, 0x10]);
        assert_eq!(encode(&IsaDma(2, 0)), [0x2A, 0x04, 0x00]);
        assert_eq!(encode(&PciInterrupts(vec![5, 10])), [0x89, 10, 0, 0x09, 2, 5, 0, 0, 0, 10, 0, 0, 0]);
        assert_eq!(sleep_state("_S5_", 0), [0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0]);
    }
}
