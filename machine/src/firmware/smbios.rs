//! SMBIOS tables (DMTF DSP0134 3.x, structures as of version 2.8) in the two fw_cfg files
//! SeaBIOS reads, as QEMU makes them (`hw/smbios/smbios.c`): "etc/smbios/smbios-tables" (the
//! structures back to back) and "etc/smbios/smbios-anchor" (a 31-byte 2.1-style "_SM_" entry
//! point whose table address the firmware fills in). Types: 0 BIOS, 1 system, 3 chassis, 4 one
//! per CPU, 16 memory array, 17 one per 16 GiB memory device, 19 one per RAM range, 32 boot
//! status, 127 end. Handles follow QEMU's numbering (type << 8 | index).

use super::{byte_sum, fix_checksum, Platform, VENDOR};

pub const TABLES_FILE: &str = "etc/smbios/smbios-tables";
pub const ANCHOR_FILE: &str = "etc/smbios/smbios-anchor";

/// The largest memory device QEMU describes with one type 17 structure.
const DIMM_MAX: u64 = 16 << 30;

/// One structure: formatted part (header included) and its strings.
struct Structure {
    data: Vec<u8>,
    strings: Vec<String>,
}

impl Structure {
    fn new(kind: u8, handle: u16) -> Structure {
        let mut data = vec![kind, 0];
        data.extend_from_slice(&handle.to_le_bytes());
        Structure { data, strings: Vec::new() }
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.data.push(v);
        self
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.data.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.data.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.data.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A string field: its number, or 0 for none.
    fn str(&mut self, s: &str) -> &mut Self {
        if s.is_empty() {
            return self.u8(0);
        }
        self.strings.push(s.to_string());
        let n = self.strings.len() as u8;
        self.u8(n)
    }

    fn encode(&mut self, out: &mut Vec<u8>) -> usize {
        self.data[1] = self.data.len() as u8;
        let start = out.len();
        out.extend_from_slice(&self.data);
        if self.strings.is_empty() {
            out.push(0);
        }
        for s in &self.strings {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        out.push(0);
        out.len() - start
    }
}

/// The built tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smbios {
    pub tables: Vec<u8>,
    pub anchor: Vec<u8>,
}

impl Smbios {
    pub fn build(p: &Platform) -> Smbios {
        let mut list = Vec::new();

        let mut t0 = Structure::new(0, 0x0000);
        t0.str(VENDOR).str(env!("CARGO_PKG_VERSION")).u16(0xE800).str("01/01/2024").u8(0);
        // Characteristics not supported (bit 3); extension: targeted content distribution and
        // virtual machine; release 0.0; no embedded controller.
        t0.u64(1 << 3).u8(0).u8(0x14).u8(0).u8(0).u8(0xFF).u8(0xFF);
        list.push(t0);

        let mut t1 = Structure::new(1, 0x0100);
        t1.str(VENDOR).str("Standard PC (i440FX + PIIX, 1996)").str(env!("CARGO_PKG_VERSION")).str("");
        t1.data.extend_from_slice(&[0; 16]); // UUID: not set
        t1.u8(6).str("").str("");
        list.push(t1);

        let mut t3 = Structure::new(3, 0x0300);
        t3.str(VENDOR).u8(1).str("").str("").str("");
        // Boot-up, power supply and thermal state safe; security unknown; OEM 0; height 0;
        // power cords 0; no contained elements.
        t3.u8(3).u8(3).u8(3).u8(2).u32(0).u8(0).u8(0).u8(0).u8(3).str("");
        list.push(t3);

        for i in 0..p.cpus {
            let mut t4 = Structure::new(4, 0x0400 + i as u16);
            t4.str(&format!("CPU {i}")).u8(3).u8(0xFE).str(VENDOR).u64(0).str("").u8(0);
            // External clock unknown, max and current speed 2000 MHz, populated and enabled,
            // upgrade "other", no cache information.
            t4.u16(0).u16(2000).u16(2000).u8(0x41).u8(1).u16(0xFFFF).u16(0xFFFF).u16(0xFFFF);
            t4.str("").str("").str("");
            // One core, one thread; characteristics unknown; family 2: "other".
            t4.u8(1).u8(1).u8(1).u16(0x02).u16(0x01);
            list.push(t4);
        }

        let dimms = p.ram_size.div_ceil(DIMM_MAX);
        let mut t16 = Structure::new(16, 0x1000);
        let kib = p.ram_size >> 10;
        t16.u8(1).u8(3).u8(6);
        if kib < 0x8000_0000 {
            t16.u32(kib as u32).u16(0xFFFE).u16(dimms as u16).u64(0);
        } else {
            t16.u32(0x8000_0000).u16(0xFFFE).u16(dimms as u16).u64(p.ram_size);
        }
        list.push(t16);

        for i in 0..dimms {
            let size = (p.ram_size - i * DIMM_MAX).min(DIMM_MAX);
            let mib = size >> 20;
            let mut t17 = Structure::new(17, 0x1100 + i as u16);
            t17.u16(0x1000).u16(0xFFFE).u16(0xFFFF).u16(0xFFFF);
            if mib < 0x7FFF {
                t17.u16(mib as u16);
            } else {
                t17.u16(0x7FFF);
            }
            t17.u8(0x09).u8(0).str(&format!("DIMM {i}")).str("").u8(0x07).u16(0x0002).u16(0);
            t17.str(VENDOR).str("").str("").str("").u8(0);
            t17.u32(if mib < 0x7FFF { 0 } else { mib as u32 }).u16(0).u16(0).u16(0).u16(0);
            list.push(t17);
        }

        for (i, (addr, len, _)) in p.e820().into_iter().enumerate() {
            let mut t19 = Structure::new(19, 0x1300 + i as u16);
            let (start_k, end_k) = (addr >> 10, (addr + len - 1) >> 10);
            if end_k < 0xFFFF_FFFF {
                t19.u32(start_k as u32).u32(end_k as u32).u16(0x1000).u8(1).u64(0).u64(0);
            } else {
                t19.u32(0xFFFF_FFFF).u32(0xFFFF_FFFF).u16(0x1000).u8(1).u64(addr).u64(addr + len - 1);
            }
            list.push(t19);
        }

        let mut t32 = Structure::new(32, 0x2000);
        t32.data.extend_from_slice(&[0; 6]);
        t32.u8(0);
        list.push(t32);

        list.push(Structure::new(127, 0x7F00));

        let mut tables = Vec::new();
        let mut max = 0;
        for s in &mut list {
            max = max.max(s.encode(&mut tables));
        }

        let mut anchor = Vec::with_capacity(31);
        anchor.extend_from_slice(b"_SM_");
        anchor.extend_from_slice(&[0, 31, 2, 8]);
        anchor.extend_from_slice(&(max as u16).to_le_bytes());
        anchor.extend_from_slice(&[0; 6]);
        anchor.extend_from_slice(b"_DMI_");
        anchor.push(0);
        anchor.extend_from_slice(&(tables.len() as u16).to_le_bytes());
        anchor.extend_from_slice(&0u32.to_le_bytes());
        anchor.extend_from_slice(&(list.len() as u16).to_le_bytes());
        anchor.push(0x28);
        let mut s = Smbios { tables, anchor };
        s.set_address(0);
        s
    }

    /// Points the entry point at tables placed at `addr` and fixes both checksums.
    pub fn set_address(&mut self, addr: u32) {
        self.anchor[0x18..0x1C].copy_from_slice(&addr.to_le_bytes());
        fix_checksum(&mut self.anchor[0x10..0x1F], 5);
        fix_checksum(&mut self.anchor, 4);
        debug_assert_eq!(byte_sum(&self.anchor), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the structures: (type, handle) of each, checking formatted length and strings.
    fn walk(t: &[u8]) -> Vec<(u8, u16)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < t.len() {
            let (kind, len) = (t[at], t[at + 1] as usize);
            out.push((kind, u16::from_le_bytes([t[at + 2], t[at + 3]])));
            let mut s = at + len;
            while !(t[s] == 0 && t[s + 1] == 0) {
                s += 1;
            }
            at = s + 2;
        }
        assert_eq!(at, t.len());
        out
    }

    #[test]
    fn structures_and_entry_point() {
        let p = Platform { ram_size: 20 << 30, cpus: 2, ide: vec![], floppies: vec![], boot_order: "c".into(), fw_cfg_files: vec![] };
        let s = Smbios::build(&p);
        let kinds: Vec<u8> = walk(&s.tables).iter().map(|k| k.0).collect();
        assert_eq!(kinds, [0, 1, 3, 4, 4, 16, 17, 17, 19, 19, 32, 127]);
        assert_eq!(s.anchor.len(), 31);
        assert_eq!(&s.anchor[0x10..0x15], b"_DMI_");
        assert_eq!(byte_sum(&s.anchor), 0);
        assert_eq!(byte_sum(&s.anchor[0x10..]), 0);
        assert_eq!(u16::from_le_bytes([s.anchor[0x16], s.anchor[0x17]]) as usize, s.tables.len());
        assert_eq!(u16::from_le_bytes([s.anchor[0x1C], s.anchor[0x1D]]), 12);
    }
}
