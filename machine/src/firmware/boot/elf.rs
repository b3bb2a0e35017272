//! The loadable part of an ELF executable (System V ABI, "Program Header"): 32- or 64-bit,
//! little-endian, for the i386 or x86-64. Only what a boot loader needs: the PT_LOAD segments
//! with their physical addresses, and the entry point.

/// One PT_LOAD segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Physical address (p_paddr), where a boot loader puts it.
    pub paddr: u64,
    /// Virtual address (p_vaddr), to translate the entry point.
    pub vaddr: u64,
    /// Bytes of the file: offset and length.
    pub offset: u64,
    pub filesz: u64,
    /// Size in memory; past `filesz` it is zero (bss).
    pub memsz: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elf {
    pub class64: bool,
    pub entry: u64,
    pub segments: Vec<Segment>,
}

const PT_LOAD: u32 = 1;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;

/// Parses the program headers; the error says what is wrong with the file.
pub fn parse(data: &[u8]) -> Result<Elf, String> {
    if data.len() < 52 || &data[..4] != b"\x7FELF" {
        return Err("not an ELF file".into());
    }
    let class64 = match data[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    if data[5] != 1 {
        return Err("big-endian ELF file; x86 kernels are little-endian".into());
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| data.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let u64_at = |o: usize| data.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let short = || "the ELF header runs past the end of the file".to_string();
    let machine = u16_at(18).ok_or_else(short)?;
    if machine != EM_386 && machine != EM_X86_64 {
        return Err(format!("ELF file for machine {machine}, not the i386 or x86-64"));
    }
    let (entry, phoff, phentsize, phnum) = if class64 {
        (u64_at(24).ok_or_else(short)?, u64_at(32).ok_or_else(short)?, u16_at(54).ok_or_else(short)?, u16_at(56).ok_or_else(short)?)
    } else {
        (
            u64::from(u32_at(24).ok_or_else(short)?),
            u64::from(u32_at(28).ok_or_else(short)?),
            u16_at(42).ok_or_else(short)?,
            u16_at(44).ok_or_else(short)?,
        )
    };
    let min_entsize = if class64 { 56 } else { 32 };
    if usize::from(phentsize) < min_entsize && phnum > 0 {
        return Err(format!("program header entries of {phentsize} bytes (at least {min_entsize} expected)"));
    }
    let mut segments = Vec::new();
    for i in 0..u64::from(phnum) {
        let at = phoff
            .checked_add(i * u64::from(phentsize))
            .filter(|&a| a + min_entsize as u64 <= data.len() as u64)
            .ok_or_else(|| format!("program header {i} lies past the end of the file"))? as usize;
        if u32_at(at) != Some(PT_LOAD) {
            continue;
        }
        let s = if class64 {
            Segment {
                offset: u64_at(at + 8).expect("checked"),
                vaddr: u64_at(at + 16).expect("checked"),
                paddr: u64_at(at + 24).expect("checked"),
                filesz: u64_at(at + 32).expect("checked"),
                memsz: u64_at(at + 40).expect("checked"),
            }
        } else {
            Segment {
                offset: u64::from(u32_at(at + 4).expect("checked")),
                vaddr: u64::from(u32_at(at + 8).expect("checked")),
                paddr: u64::from(u32_at(at + 12).expect("checked")),
                filesz: u64::from(u32_at(at + 16).expect("checked")),
                memsz: u64::from(u32_at(at + 20).expect("checked")),
            }
        };
        if s.offset.checked_add(s.filesz).filter(|&end| end <= data.len() as u64).is_none() {
            return Err(format!(
                "segment {i} ({} bytes at file offset {:#x}) runs past the end of the file ({} bytes)",
                s.filesz,
                s.offset,
                data.len()
            ));
        }
        if s.memsz < s.filesz {
            return Err(format!("segment {i} is smaller in memory ({:#x}) than in the file ({:#x})", s.memsz, s.filesz));
        }
        if s.memsz > 0 {
            segments.push(s);
        }
    }
    if segments.is_empty() {
        return Err("the ELF file has no loadable segment".into());
    }
    Ok(Elf { class64, entry, segments })
}

impl Elf {
    /// The entry point as a physical address: translated through the segment whose virtual
    /// range holds it (kernels linked to run high), as GRUB does.
    pub fn physical_entry(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| (s.vaddr..s.vaddr + s.memsz).contains(&self.entry))
            .map_or(self.entry, |s| self.entry - s.vaddr + s.paddr)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF32 executable: one segment of `code` at `paddr` (virtual `vaddr`), `bss`
    /// bytes of bss, entry `entry`.
    pub fn elf32(code: &[u8], vaddr: u32, paddr: u32, bss: u32, entry: u32) -> Vec<u8> {
        let mut f = vec![0u8; 0x60];
        f[..4].copy_from_slice(b"\x7FELF");
        f[4] = 1;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&EM_386.to_le_bytes());
        f[24..28].copy_from_slice(&entry.to_le_bytes());
        f[28..32].copy_from_slice(&52u32.to_le_bytes());
        f[42..44].copy_from_slice(&32u16.to_le_bytes());
        f[44..46].copy_from_slice(&1u16.to_le_bytes());
        let ph = 52;
        f[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        f[ph + 4..ph + 8].copy_from_slice(&0x60u32.to_le_bytes());
        f[ph + 8..ph + 12].copy_from_slice(&vaddr.to_le_bytes());
        f[ph + 12..ph + 16].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 16..ph + 20].copy_from_slice(&(code.len() as u32).to_le_bytes());
        f[ph + 20..ph + 24].copy_from_slice(&(code.len() as u32 + bss).to_le_bytes());
        f.extend_from_slice(code);
        f
    }

    #[test]
    fn parses_a_segment_and_translates_the_entry() {
        let f = elf32(&[0x90; 16], 0xC010_0000, 0x10_0000, 32, 0xC010_0004);
        let e = parse(&f).unwrap();
        assert!(!e.class64);
        assert_eq!(e.segments, vec![Segment { paddr: 0x10_0000, vaddr: 0xC010_0000, offset: 0x60, filesz: 16, memsz: 48 }]);
        assert_eq!(e.physical_entry(), 0x10_0004);
    }

    #[test]
    fn broken_files_say_why() {
        let f = elf32(&[0x90; 16], 0x10_0000, 0x10_0000, 0, 0x10_0000);
        assert!(parse(&f[..0x65]).unwrap_err().contains("past the end of the file"));
        let mut g = f.clone();
        g[18] = 40; // ARM
        assert!(parse(&g).unwrap_err().contains("not the i386"));
        let mut g = f.clone();
        g[52] = 2; // PT_DYNAMIC: nothing to load
        assert!(parse(&g).unwrap_err().contains("no loadable segment"));
        assert!(parse(b"\x7FELF").is_err());
    }
}
