//! Linear to physical translation: 32-bit paging (with PSE and PSE-36), PAE paging and 4-level
//! paging (with 1 GiB pages), accessed and dirty bits written as hardware writes them, and the
//! permission checks (U/S, R/W with CR0.WP, NX, SMEP, SMAP) with #PF error codes (Intel SDM
//! vol. 3, chapter 4).

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::fault::{vec, Fault};
use crate::mem::Access;
use crate::state::flags;

pub(crate) const CR0_WP: u64 = 1 << 16;
pub(crate) const CR0_PG: u64 = 1 << 31;
pub(crate) const CR4_PSE: u64 = 1 << 4;
pub(crate) const CR4_PAE: u64 = 1 << 5;
pub(crate) const CR4_PGE: u64 = 1 << 7;
pub(crate) const CR4_SMEP: u64 = 1 << 20;
pub(crate) const CR4_SMAP: u64 = 1 << 21;
pub(crate) const EFER_NXE: u64 = 1 << 11;

/// Physical address width the CPU reports; bits above it in paging entries are reserved.
pub(crate) const MAX_PHYS_BITS: u32 = 40;

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;

/// #PF error code bits.
const PF_P: u32 = 1;
const PF_W: u32 = 2;
const PF_U: u32 = 4;
const PF_RSVD: u32 = 8;
const PF_I: u32 = 16;

const PAGE_4K: u64 = 4096;

/// A translation and what it allows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Translation {
    pub phys: u64,
    /// User-mode accesses are allowed (U/S set at every level).
    pub user: bool,
    /// Supervisor writes are allowed (R/W at every level, or CR0.WP clear).
    pub write_sup: bool,
    /// User writes are allowed (R/W at every level).
    pub write_user: bool,
    pub nx: bool,
    pub global: bool,
    /// The dirty bit is set, so writes need no page-table update.
    pub dirty: bool,
    /// The size of the page the translation came from, in bytes (4 KiB, 2 or 4 MiB, 1 GiB):
    /// what an INVLPG of any address in it must drop.
    pub page_size: u64,
}

impl Cpu {
    #[inline(always)]
    pub(crate) fn paging(&self) -> bool {
        self.s.cr0 & CR0_PG != 0
    }

    /// Translates a linear address for one access, checking permissions and setting the
    /// accessed (and, for writes, dirty) bits. Faults with #PF and CR2 set.
    pub(crate) fn translate(&mut self, bus: &mut dyn Bus, lin: u64, acc: Access, user: bool) -> Result<Translation, Fault> {
        if !self.paging() {
            return Ok(Translation {
                phys: lin & 0xFFFF_FFFF,
                user: true,
                write_sup: true,
                write_user: true,
                nx: false,
                global: false,
                dirty: true,
                page_size: PAGE_4K,
            });
        }
        let long = self.long_mode();
        let pae = self.s.cr4 & CR4_PAE != 0;
        let nxe = self.s.efer & EFER_NXE != 0;
        let rsvd_phys = if pae { !((1u64 << MAX_PHYS_BITS) - 1) & !NX & ((1u64 << 52) - 1) } else { 0 };
        let mut rsvd_hit = false;
        // (entry address, entry) of every level, for the accessed and dirty bits.
        let mut path: [(u64, u64); 4] = [(0, 0); 4];
        let mut depth = 0;
        let mut allow_rw = true;
        let mut allow_us = true;
        let mut nx = false;
        let (phys, global);
        let mut page_size = PAGE_4K;
        if !pae {
            let pde_addr = (self.s.cr3 & 0xFFFF_F000) + ((lin >> 22) & 0x3FF) * 4;
            let pde = self.phys_read(bus, pde_addr, 4);
            if pde & P == 0 {
                return Err(self.page_fault(lin, 0, acc, user));
            }
            path[0] = (pde_addr, pde);
            depth = 1;
            allow_rw &= pde & RW != 0;
            allow_us &= pde & US != 0;
            if pde & PS != 0 && self.s.cr4 & CR4_PSE != 0 {
                // 4 MiB page; bits 13..20 give physical address bits 32..39 (PSE-36).
                if pde & (1 << 21) != 0 {
                    rsvd_hit = true;
                }
                let base = (pde & 0xFFC0_0000) | (((pde >> 13) & 0xFF) << 32);
                phys = base | (lin & 0x3F_FFFF);
                global = pde & G != 0;
                page_size = 1 << 22;
            } else {
                let pte_addr = (pde & 0xFFFF_F000) + ((lin >> 12) & 0x3FF) * 4;
                let pte = self.phys_read(bus, pte_addr, 4);
                if pte & P == 0 {
                    return Err(self.page_fault(lin, 0, acc, user));
                }
                path[1] = (pte_addr, pte);
                depth = 2;
                allow_rw &= pte & RW != 0;
                allow_us &= pte & US != 0;
                phys = (pte & 0xFFFF_F000) | (lin & 0xFFF);
                global = pte & G != 0;
            }
        } else {
            let mut table;
            let mut level;
            if long {
                table = self.s.cr3 & 0x000F_FFFF_FFFF_F000;
                level = 4;
            } else {
                // PAE: the four PDPTEs sit at CR3 (32-byte aligned).
                let pdpte_addr = (self.s.cr3 & 0xFFFF_FFE0) + ((lin >> 30) & 3) * 8;
                let pdpte = self.phys_read(bus, pdpte_addr, 8);
                if pdpte & P == 0 {
                    return Err(self.page_fault(lin, 0, acc, user));
                }
                if pdpte & (rsvd_phys | 0x1E6) != 0 {
                    return Err(self.page_fault(lin, PF_P | PF_RSVD, acc, user));
                }
                table = pdpte & 0x000F_FFFF_FFFF_F000;
                level = 2;
            }
            loop {
                let shift = 12 + 9 * (level - 1);
                let addr = table + ((lin >> shift) & 0x1FF) * 8;
                let e = self.phys_read(bus, addr, 8);
                if e & P == 0 {
                    return Err(self.page_fault(lin, 0, acc, user));
                }
                path[depth] = (addr, e);
                depth += 1;
                if e & rsvd_phys != 0 || (e & NX != 0 && !nxe) {
                    rsvd_hit = true;
                }
                allow_rw &= e & RW != 0;
                allow_us &= e & US != 0;
                nx |= nxe && e & NX != 0;
                let large = e & PS != 0 && (level == 2 || (level == 3 && long));
                if level == 4 && e & PS != 0 {
                    rsvd_hit = true;
                }
                let size = 1u64 << shift;
                if large && e & ((size - 1) & !0x1FFF & 0x000F_FFFF_FFFF_F000) != 0 {
                    // Address bits below the large page's alignment must be zero.
                    rsvd_hit = true;
                }
                // A reserved bit faults at the entry that has it, before the walk goes on.
                if rsvd_hit {
                    return Err(self.page_fault(lin, PF_P | PF_RSVD, acc, user));
                }
                if level == 1 || large {
                    let frame = if large { e & 0x000F_FFFF_FFFF_F000 & !(size - 1) & !0x1000 } else { e & 0x000F_FFFF_FFFF_F000 };
                    phys = (frame & !(size - 1)) | (lin & (size - 1));
                    global = e & G != 0;
                    page_size = size;
                    break;
                }
                table = e & 0x000F_FFFF_FFFF_F000;
                level -= 1;
            }
        }
        if rsvd_hit {
            return Err(self.page_fault(lin, PF_P | PF_RSVD, acc, user));
        }
        let wp = self.s.cr0 & CR0_WP != 0;
        let smep = self.s.cr4 & CR4_SMEP != 0;
        let smap = self.s.cr4 & CR4_SMAP != 0;
        let denied = match acc {
            Access::Read => (user && !allow_us) || (!user && smap && allow_us && self.s.rflags & flags::AC == 0),
            Access::Write => {
                (user && (!allow_us || !allow_rw))
                    || (!user && !allow_rw && wp)
                    || (!user && smap && allow_us && self.s.rflags & flags::AC == 0)
            }
            Access::Exec => nx || (user && !allow_us) || (!user && smep && allow_us),
        };
        if denied {
            return Err(self.page_fault(lin, PF_P, acc, user));
        }
        // Accessed bits on every level; dirty on the leaf for a write.
        for (k, &(addr, e)) in path.iter().enumerate().take(depth) {
            let leaf = k + 1 == depth;
            let mut ne = e | A;
            if leaf && acc == Access::Write {
                ne |= D;
            }
            if ne != e {
                self.phys_write(bus, addr, if pae { 8 } else { 4 }, ne);
            }
        }
        let leaf = path[depth - 1].1;
        Ok(Translation {
            phys,
            user: allow_us,
            write_sup: allow_rw || !wp,
            write_user: allow_rw,
            nx,
            global: global && self.s.cr4 & CR4_PGE != 0,
            dirty: leaf & D != 0 || acc == Access::Write,
            page_size,
        })
    }

    /// Builds a #PF for `lin` (setting CR2) with the access-type bits of the error code.
    fn page_fault(&mut self, lin: u64, bits: u32, acc: Access, user: bool) -> Fault {
        self.s.cr2 = lin;
        let mut e = bits;
        if acc == Access::Write {
            e |= PF_W;
        }
        if user {
            e |= PF_U;
        }
        // The I/D bit: with SMEP, or with NX in effect (PAE or 4-level paging with EFER.NXE).
        let nx_paging = self.s.efer & EFER_NXE != 0 && self.s.cr4 & CR4_PAE != 0;
        if acc == Access::Exec && (nx_paging || self.s.cr4 & CR4_SMEP != 0) {
            e |= PF_I;
        }
        Fault::with_error(vec::PF, e)
    }
}
