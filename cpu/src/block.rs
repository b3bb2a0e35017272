//! The decoded-block cache: runs of decoded instructions keyed by the host address of their
//! first byte and the code size, and the set of host pages that hold decoded code so that a
//! write to one drops its blocks (self-modifying code, Bochs's icache page map).

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{self, Insn};
use crate::fault::Fault;
use crate::mem::Access;
use crate::state::sreg;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// Longest block, in instructions.
const MAX_BLOCK: usize = 64;
/// Past this many blocks the cache is emptied rather than grown.
const MAX_BLOCKS: usize = 1 << 16;
const PAGE: u64 = 4096;

/// A multiplicative hasher for integer keys (the std SipHash is needlessly slow here).
#[derive(Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Entries in the direct-mapped cache of recently used blocks, in front of the hash map.
const RECENT: usize = 1024;

pub(crate) struct BlockCache {
    blocks: IntMap<u64, Rc<[Insn]>>,
    /// Host page start → keys of the blocks with bytes on it.
    pages: IntMap<usize, Vec<u64>>,
    /// (linear address | code bits << 56, key, block) of recently entered blocks, so that a
    /// hot loop skips the TLB and the hash lookup. Emptied whenever any mapping or block
    /// goes away.
    recent: Box<[(u64, u64, Option<Rc<[Insn]>>)]>,
}

impl BlockCache {
    pub(crate) fn new() -> BlockCache {
        BlockCache {
            blocks: IntMap::default(),
            pages: IntMap::default(),
            recent: vec![(u64::MAX, 0, None); RECENT].into_boxed_slice(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.blocks.clear();
        self.pages.clear();
        self.forget_recent();
    }

    /// Empties the recent-block cache (linear-to-host mappings may have changed).
    pub(crate) fn forget_recent(&mut self) {
        for e in self.recent.iter_mut() {
            *e = (u64::MAX, 0, None);
        }
    }

    pub(crate) fn get(&self, key: u64) -> Option<&Rc<[Insn]>> {
        self.blocks.get(&key)
    }

    #[inline]
    pub(crate) fn is_code_page(&self, host_page: usize) -> bool {
        self.pages.contains_key(&host_page)
    }

    /// Drops every block with bytes on this host page. Returns whether there were any.
    pub(crate) fn invalidate_page(&mut self, host_page: usize) -> bool {
        match self.pages.remove(&host_page) {
            Some(keys) => {
                for k in keys {
                    self.blocks.remove(&k);
                }
                self.forget_recent();
                true
            }
            None => false,
        }
    }

    /// Inserts a block; returns the host pages that just became code pages.
    fn insert(&mut self, key: u64, block: Rc<[Insn]>, pages: &[usize]) -> Vec<usize> {
        if self.blocks.len() >= MAX_BLOCKS {
            self.clear();
        }
        self.blocks.insert(key, block);
        let mut fresh = Vec::new();
        for &p in pages {
            let list = self.pages.entry(p).or_insert_with(|| {
                fresh.push(p);
                Vec::new()
            });
            list.push(key);
        }
        fresh
    }
}

impl Cpu {
    /// Code size in bits for decoding: 16, 32 or 64.
    #[inline(always)]
    pub(crate) fn code_bits(&self) -> u32 {
        self.bits
    }

    /// The block starting at CS:RIP, from the cache or freshly decoded, with its cache key
    /// (`u64::MAX` for code in device memory, which is never cached).
    #[inline]
    pub(crate) fn fetch_block(&mut self, bus: &mut dyn Bus) -> Result<(u64, Rc<[Insn]>), Fault> {
        let bits = self.code_bits();
        let lin = self.lin(sreg::CS, self.s.rip, 1, Access::Exec)?;
        let tag = lin | (u64::from(bits) << 56);
        let slot = ((lin ^ (lin >> 10)) as usize) & (RECENT - 1);
        if let (t, key, Some(b)) = &self.blocks.recent[slot] {
            if *t == tag {
                return Ok((*key, b.clone()));
            }
        }
        let host = self.code_host(bus, lin)?;
        let key = host.map(|(page, off)| (page + off) as u64 | (u64::from(bits) << 56));
        if let Some(k) = key {
            if let Some(b) = self.blocks.blocks.get(&k) {
                let b = b.clone();
                self.blocks.recent[slot] = (tag, k, Some(b.clone()));
                return Ok((k, b));
            }
        }
        let (block, last_byte) = self.decode_block(bus, bits)?;
        if let (Some(k), Some((first_page, _))) = (key, host) {
            let mut pages = vec![first_page];
            if let Some(last) = last_byte {
                if let Some((lp, _)) = self.code_host(bus, last)? {
                    if lp != first_page {
                        pages.push(lp);
                    }
                }
            }
            for p in self.blocks.insert(k, block.clone(), &pages) {
                self.tlb.protect_host_page(p);
            }
            self.blocks.recent[slot] = (tag, k, Some(block.clone()));
        }
        Ok((key.unwrap_or(u64::MAX), block))
    }

    /// Decodes instructions from CS:RIP until a control transfer, a page boundary or the size
    /// limit. Returns the block and the linear address of its last byte.
    fn decode_block(&mut self, bus: &mut dyn Bus, bits: u32) -> Result<(Rc<[Insn]>, Option<u64>), Fault> {
        let cs = self.s.seg[sreg::CS];
        let ip_mask = match bits {
            16 => 0xFFFF,
            32 => 0xFFFF_FFFF,
            _ => u64::MAX,
        };
        // Linear addresses wrap at 4 GiB outside 64-bit mode.
        let lin_mask = if bits == 64 { u64::MAX } else { 0xFFFF_FFFF };
        let start_lin = cs.base.wrapping_add(self.s.rip) & lin_mask;
        let mut ip = self.s.rip;
        let mut insns = Vec::new();
        let mut last_byte = None;
        let mut buf = [0u8; 15];
        loop {
            // Bytes available: up to 15, not past the CS limit (a 64-bit CS has none).
            let room = if bits == 64 { 15 } else { (u64::from(cs.limit) + 1).saturating_sub(ip).min(15) as usize };
            let lin = cs.base.wrapping_add(ip) & lin_mask;
            let in_page = (PAGE - lin % PAGE) as usize;
            let mut n = room.min(in_page);
            for (k, b) in buf.iter_mut().enumerate().take(n) {
                *b = self.fetch_byte(bus, lin + k as u64)?;
            }
            let mut decoded = decode::decode(&buf[..n], bits, ip);
            if decoded.is_none() && n < room {
                // The instruction continues on the next page.
                for k in n..room {
                    let a = self.wrap_lin(lin + k as u64);
                    buf[k] = self.fetch_byte(bus, a)?;
                }
                n = room;
                decoded = decode::decode(&buf[..n], bits, ip);
            }
            let insn = match decoded {
                Some(i) => i,
                // Ran out of bytes at the segment limit.
                None if insns.is_empty() => return Err(Fault::gp(0)),
                None => break,
            };
            let len = u64::from(insn.len);
            last_byte = Some(lin.wrapping_add(len - 1) & lin_mask);
            let ends = insn.ends_block;
            insns.push(Insn { ip_mask, ..insn });
            ip = (ip + len) & ip_mask;
            let next_lin = cs.base.wrapping_add(ip) & lin_mask;
            if ends || insns.len() >= MAX_BLOCK || next_lin / PAGE != start_lin / PAGE {
                break;
            }
        }
        Ok((Rc::from(insns), last_byte))
    }
}
