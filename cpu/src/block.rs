//! The decoded-block cache: runs of decoded instructions keyed by the host address of their
//! first byte and the code size, and the set of host pages that hold decoded code so that a
//! write to one drops its blocks (self-modifying code, Bochs's icache page map).

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{self, Insn};
use iced_x86::Instruction;
use crate::fault::Fault;
use crate::mem::Access;
use crate::state::sreg;
use std::collections::HashMap;
use std::cell::Cell;
use std::hash::{BuildHasherDefault, Hasher};
use std::ptr::NonNull;

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
        // A product's low bits depend only on the key's low bits, which are zero for page
        // addresses; the table takes its bucket from the low bits (and a tag from the top
        // seven), so fold the well-mixed high half down.
        self.0 ^ (self.0 >> 32)
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

/// Words of `BlockCache::code_lin` (4,096 bits).
const CODE_LIN_WORDS: usize = 64;

#[inline(always)]
fn code_lin_bit(page: u64) -> (usize, u64) {
    let h = (page ^ (page >> 12)) as usize & (CODE_LIN_WORDS * 64 - 1);
    (h / 64, 1 << (h % 64))
}

/// One decoded block, with the blocks that followed it last (block chaining: the run loop
/// finds the next block from the one just executed without hashing anything).
pub(crate) struct Block {
    /// What the run loop executes: the instructions, with fusable pairs fused
    /// (`ops::fused`).
    pub(crate) insns: Box<[Insn]>,
    /// The instructions one by one, for running under debug traps and breakpoints; empty
    /// when nothing fused (then `insns` are they).
    pub(crate) plain: Box<[Insn]>,
    /// The decoder's view of each instruction, for reports only: kept apart so that the
    /// `Insn`s the run loop walks stay small.
    instrs: Box<[Instruction]>,
    /// The cache key (host address | code bits << 56), `u64::MAX` for code in device memory.
    pub(crate) key: u64,
    /// The block's last byte is on the page after its first.
    crosses: bool,
    /// Direct-mapped by RIP: a block with side exits has several successors.
    links: [Cell<Link>; LINKS],
}

const LINKS: usize = 4;

#[inline(always)]
fn link_slot(rip: u64) -> usize {
    ((rip ^ (rip >> 2) ^ (rip >> 6)) as usize) & (LINKS - 1)
}

/// "After this block, RIP = `rip` continued in block `to`", valid while the cache's chain
/// generation is `gen`.
#[derive(Clone, Copy)]
struct Link {
    rip: u64,
    gen: u64,
    to: *const Block,
}

const NO_LINK: Link = Link { rip: 0, gen: u64::MAX, to: std::ptr::null() };

impl Block {
    /// The block chained after this one for `rip`, if the link is still valid.
    #[inline(always)]
    pub(crate) fn successor(&self, rip: u64, gen: u64) -> Option<*const Block> {
        let l = self.links[link_slot(rip)].get();
        (l.rip == rip && l.gen == gen).then_some(l.to)
    }

    pub(crate) fn link(&self, rip: u64, gen: u64, to: *const Block) {
        self.links[link_slot(rip)].set(Link { rip, gen, to });
    }
}

/// Blocks live in individual heap allocations owned by the cache through raw pointers, so
/// that the run loop can execute one while handlers change the cache (a write to a code page
/// drops blocks, possibly the one running). A dropped block goes to `dead` and is freed only
/// between blocks (`free_dead`), when nothing points into it; every path that drops a block
/// also bumps the generations that validate the recent-block cache and the chain links, so
/// neither can reach a dead block.
pub(crate) struct BlockCache {
    blocks: IntMap<u64, NonNull<Block>>,
    /// Host page start → keys of the blocks with bytes on it.
    pages: IntMap<usize, Vec<u64>>,
    /// (linear address, generation << 8 | mode, block) of recently entered blocks, so that a
    /// block reached other than through a chain link skips the TLB and the hash lookup.
    recent: Box<[(u64, u64, *const Block)]>,
    /// Validates `recent`: bumped whenever any mapping or block goes away.
    recent_gen: u64,
    /// The linear pages blocks were found through (in `recent` and chain links) since
    /// `recent_gen` last moved, as one bit per hash of the page number: an INVLPG of a page
    /// whose bit is clear leaves them valid (a bit set by another page only costs a
    /// `forget_recent` more).
    code_lin: Box<[u64; CODE_LIN_WORDS]>,
    /// Validates chain links: bumped with `recent_gen` and whenever CS or the mode changes
    /// (a link is keyed by RIP alone).
    pub(crate) chain_gen: u64,
    /// Blocks dropped but perhaps still executing.
    dead: Vec<NonNull<Block>>,
    /// Other processors share this memory (see [`CodeEvents`]).
    pub(crate) shared: bool,
    /// Host pages that hold other processors' decoded code, as they told: written only
    /// through the slow path, so that the write can be told back to them.
    foreign: IntMap<usize, ()>,
    /// What this processor did to code pages that the others must hear of.
    pub(crate) events: CodeEvents,
}

/// Decoded code and processors sharing memory. Each processor keeps its own decoded blocks
/// and write-protects (in its TLB) the pages they came from, so its own writes to them drop
/// them; a write by another processor would go unseen. So processors tell each other:
/// `decoded` lists host pages that just became code pages here (the others stop writing them
/// through their TLBs), `written` lists pages of the others' code that this processor wrote
/// (the others drop their blocks on them). The driver of the processors passes each one's
/// events to all the others before they next run (see `Cpu::take_code_events`): with
/// processors time-sliced on one thread, that is before any of them can execute stale code.
#[derive(Clone, Debug, Default)]
pub struct CodeEvents {
    pub decoded: Vec<usize>,
    pub written: Vec<usize>,
}

impl CodeEvents {
    pub fn is_empty(&self) -> bool {
        self.decoded.is_empty() && self.written.is_empty()
    }

    pub fn clear(&mut self) {
        self.decoded.clear();
        self.written.clear();
    }
}

impl Drop for BlockCache {
    fn drop(&mut self) {
        self.clear();
        self.free_dead();
    }
}

impl BlockCache {
    pub(crate) fn new() -> BlockCache {
        BlockCache {
            blocks: IntMap::default(),
            pages: IntMap::default(),
            recent: vec![(u64::MAX, u64::MAX, std::ptr::null()); RECENT].into_boxed_slice(),
            recent_gen: 0,
            code_lin: Box::new([0; CODE_LIN_WORDS]),
            chain_gen: 0,
            dead: Vec::new(),
            shared: false,
            foreign: IntMap::default(),
            events: CodeEvents::default(),
        }
    }

    pub(crate) fn clear(&mut self) {
        let all: Vec<NonNull<Block>> = self.blocks.drain().map(|(_, b)| b).collect();
        self.dead.extend(all);
        self.pages.clear();
        self.forget_recent();
    }

    /// Forgets every block found by linear address (linear-to-host mappings may have
    /// changed) and every chain link.
    #[inline]
    pub(crate) fn forget_recent(&mut self) {
        self.recent_gen += 1;
        self.chain_gen += 1;
        self.code_lin.fill(0);
    }

    /// Notes that a block was found through the linear page `page` (and the next one if it
    /// `crosses` onto it).
    #[inline]
    fn note_code_lin(&mut self, page: u64, crosses: bool) {
        for p in [page, page + u64::from(crosses)] {
            let (w, b) = code_lin_bit(p);
            self.code_lin[w] |= b;
        }
    }

    /// After an INVLPG that dropped the linear pages `first..=last`: forgets the blocks found
    /// by linear address and the chain links if any may have come through them.
    pub(crate) fn pages_unmapped(&mut self, first: u64, last: u64) {
        let hit = last - first >= (CODE_LIN_WORDS * 64) as u64
            || (first..=last).any(|p| {
                let (w, b) = code_lin_bit(p);
                self.code_lin[w] & b != 0
            });
        if hit {
            self.forget_recent();
        }
    }

    /// Forgets the chain links (CS or the mode changed).
    #[inline]
    pub(crate) fn forget_links(&mut self) {
        self.chain_gen += 1;
    }

    /// Whether dropped blocks wait to be freed.
    #[inline(always)]
    pub(crate) fn has_dead(&self) -> bool {
        !self.dead.is_empty()
    }

    /// Frees dropped blocks. Only between blocks: no block may be executing, and the caller
    /// must hold no pointer to a block across this call.
    pub(crate) fn free_dead(&mut self) {
        for b in self.dead.drain(..) {
            // SAFETY: every pointer in `dead` came from `Box::into_raw` in `insert` or
            // `adopt`, was removed from `blocks` when it was pushed here, and appears once.
            drop(unsafe { Box::from_raw(b.as_ptr()) });
        }
    }

    /// The instructions of a cached block, as decoded (for reports).
    pub(crate) fn get(&self, key: u64) -> Option<&[Instruction]> {
        // SAFETY: blocks in the map are live allocations owned by the cache.
        self.blocks.get(&key).map(|b| unsafe { &*b.as_ptr() }.instrs.as_ref())
    }

    /// Whether this processor or another holds decoded code from the page (writes to it
    /// must not go through the TLB).
    #[inline]
    pub(crate) fn is_code_page(&self, host_page: usize) -> bool {
        self.pages.contains_key(&host_page) || (self.shared && self.foreign.contains_key(&host_page))
    }

    /// This processor writes the page: drops every block with bytes on it, and tells the
    /// other processors if they have code there. Returns whether this one had any.
    pub(crate) fn invalidate_page(&mut self, host_page: usize) -> bool {
        if self.shared && self.foreign.remove(&host_page).is_some() {
            self.events.written.push(host_page);
        }
        self.drop_page(host_page)
    }

    /// Another processor, or DMA, wrote the page: drops this processor's blocks on it, and
    /// forgets that others have code there (they hear of the write too).
    pub(crate) fn written_elsewhere(&mut self, host_page: usize) -> bool {
        self.foreign.remove(&host_page);
        self.drop_page(host_page)
    }

    /// Another processor decoded code from the page.
    pub(crate) fn decoded_elsewhere(&mut self, host_page: usize) {
        self.foreign.insert(host_page, ());
    }

    /// Drops every block with bytes on this host page. Returns whether there were any.
    fn drop_page(&mut self, host_page: usize) -> bool {
        match self.pages.remove(&host_page) {
            Some(keys) => {
                for k in keys {
                    if let Some(b) = self.blocks.remove(&k) {
                        self.dead.push(b);
                    }
                }
                self.forget_recent();
                true
            }
            None => false,
        }
    }

    /// Inserts a block; returns it and the host pages that just became code pages.
    fn insert(&mut self, key: u64, block: Box<Block>, pages: &[usize]) -> (*const Block, Vec<usize>) {
        if self.blocks.len() >= MAX_BLOCKS {
            self.clear();
        }
        let b = NonNull::from(Box::leak(block));
        if let Some(old) = self.blocks.insert(key, b) {
            self.dead.push(old);
            self.forget_recent();
        }
        let mut fresh = Vec::new();
        for &p in pages {
            let list = self.pages.entry(p).or_insert_with(|| {
                fresh.push(p);
                Vec::new()
            });
            list.push(key);
        }
        (b.as_ptr(), fresh)
    }

    /// Takes a block that is not cached (code in device memory): it lives until the next
    /// `free_dead`, long enough to execute once.
    fn adopt(&mut self, block: Box<Block>) -> *const Block {
        let b = NonNull::from(Box::leak(block));
        self.dead.push(b);
        b.as_ptr()
    }
}

impl Cpu {
    /// Code size in bits for decoding: 16, 32 or 64.
    #[inline(always)]
    pub(crate) fn code_bits(&self) -> u32 {
        self.bits
    }

    /// The block starting at CS:RIP, from the cache or freshly decoded. The pointer stays
    /// valid until the next `free_dead` (see `BlockCache`).
    pub(crate) fn fetch_block(&mut self, bus: &mut dyn Bus) -> Result<*const Block, Fault> {
        let bits = self.code_bits();
        let lin = self.lin(sreg::CS, self.s.rip, 1, Access::Exec)?;
        // The mode part of the tag: code size, and user or supervisor (execute permission).
        let mode = u64::from(bits) | ((self.user as u64) << 7);
        let tag = (self.blocks.recent_gen << 8) | mode;
        let slot = ((lin ^ (lin >> 10)) as usize) & (RECENT - 1);
        let (t, g, b) = self.blocks.recent[slot];
        if t == lin && g == tag {
            return Ok(b);
        }
        let host = self.code_host(bus, lin)?;
        let key = host.map(|(page, off)| (page + off) as u64 | (u64::from(bits) << 56));
        if let Some(k) = key {
            if let Some(b) = self.blocks.blocks.get(&k) {
                let b = b.as_ptr() as *const Block;
                self.blocks.recent[slot] = (lin, tag, b);
                // SAFETY: a block in the cache is alive.
                self.blocks.note_code_lin(lin / PAGE, unsafe { &*b }.crosses);
                return Ok(b);
            }
        }
        let (insns, plain, instrs, last_byte) = self.decode_block(bus, bits)?;
        let crosses = last_byte.is_some_and(|l| l / PAGE != lin / PAGE);
        let block = Box::new(Block { insns, plain, instrs, key: key.unwrap_or(u64::MAX), crosses, links: [const { Cell::new(NO_LINK) }; LINKS] });
        let (Some(k), Some((first_page, _))) = (key, host) else {
            return Ok(self.blocks.adopt(block));
        };
        let mut pages = vec![first_page];
        if let Some(last) = last_byte {
            if let Some((lp, _)) = self.code_host(bus, last)? {
                if lp != first_page {
                    pages.push(lp);
                }
            }
        }
        let (b, fresh) = self.blocks.insert(k, block, &pages);
        for p in fresh {
            self.tlb.protect_host_page(p);
            if self.blocks.shared {
                self.blocks.events.decoded.push(p);
            }
        }
        // Decoding may have dropped blocks (a page walk setting accessed bits in a page that
        // holds code): the generation moved on, and the entry must carry the new one.
        let tag = (self.blocks.recent_gen << 8) | mode;
        self.blocks.recent[slot] = (lin, tag, b);
        self.blocks.note_code_lin(lin / PAGE, crosses);
        Ok(b)
    }

    /// Decodes instructions from CS:RIP until a control transfer, a page boundary or the size
    /// limit. Returns the block's entries (fused), its plain instructions (empty if the same),
    /// the decoder's view and the linear address of its last byte.
    #[allow(clippy::type_complexity)]
    fn decode_block(&mut self, bus: &mut dyn Bus, bits: u32) -> Result<(Box<[Insn]>, Box<[Insn]>, Box<[Instruction]>, Option<u64>), Fault> {
        let cs = self.s.seg[sreg::CS];
        let ip_mask = match bits {
            16 => 0xFFFF,
            32 => 0xFFFF_FFFF,
            _ => u64::MAX,
        };
        // Linear addresses wrap at 4 GiB outside 64-bit mode.
        let lin_mask = if bits == 64 { u64::MAX } else { 0xFFFF_FFFF };
        let start_lin = cs.base.wrapping_add(self.s.rip) & lin_mask;
        let start_ip = self.s.rip;
        let mut ip = start_ip;
        let mut insns = Vec::new();
        let mut instrs = Vec::new();
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
            let mut decoded = decode::decode_with(&buf[..n], bits, ip);
            if decoded.is_none() && n < room {
                // The instruction continues on the next page.
                for k in n..room {
                    let a = self.wrap_lin(lin + k as u64);
                    buf[k] = self.fetch_byte(bus, a)?;
                }
                n = room;
                decoded = decode::decode_with(&buf[..n], bits, ip);
            }
            let (insn, instr) = match decoded {
                Some(i) => i,
                // Ran out of bytes at the segment limit.
                None if insns.is_empty() => return Err(Fault::gp(0)),
                None => break,
            };
            let len = u64::from(insn.len);
            last_byte = Some(lin.wrapping_add(len - 1) & lin_mask);
            let mut ends = insn.ends_block;
            ip = (ip + len) & ip_mask;
            // A block lies within a page (and the instruction that ends it): small offsets.
            let mut insn = Insn { ip_mask, next: ip.wrapping_sub(start_ip) as i32, ..insn };
            // A direct JMP to the block's own page: the block goes on at the target (a trace),
            // with a JMP that leaves the block should the target come out differently when
            // the bytes run at another address (see `branch::jmp_on`).
            if let Some(target) = decode::direct_jump_target(&instr) {
                let t_lin = cs.base.wrapping_add(target) & lin_mask;
                // The JMP itself must lie within the page too: the block's pages are its first
                // and its last instruction's.
                let jmp_end = lin.wrapping_add(len - 1) & lin_mask;
                if t_lin / PAGE == start_lin / PAGE && jmp_end / PAGE == start_lin / PAGE && insns.len() + 1 < MAX_BLOCK {
                    insn.exec = crate::decode::sized!(insn.osz, crate::ops::branch::jmp_on;);
                    insn.ends_block = false;
                    ip = target;
                    ends = false;
                }
            }
            insns.push(insn);
            instrs.push(instr);
            let next_lin = cs.base.wrapping_add(ip) & lin_mask;
            if ends || insns.len() >= MAX_BLOCK || next_lin / PAGE != start_lin / PAGE {
                break;
            }
        }
        let (insns, plain) = match crate::ops::fused::fuse(&mut insns, &instrs, bits) {
            Some(mut fused) => {
                link_forward_branches(&mut fused, &instrs);
                (fused.into_boxed_slice(), insns.into_boxed_slice())
            }
            None => {
                link_forward_branches(&mut insns, &instrs);
                (insns.into_boxed_slice(), Box::default())
            }
        };
        Ok((insns, plain, instrs.into_boxed_slice(), last_byte))
    }
}

/// Sets `Insn::skip` of the block's conditional branches that lead forward to one of its own
/// entries (an `if` over a few instructions), so that taking one goes on in the block. The
/// entries are `instrs` in order, a fused pair (`len1` set) standing for two.
fn link_forward_branches(entries: &mut [Insn], instrs: &[Instruction]) {
    let mut starts = Vec::with_capacity(entries.len());
    let mut targets = Vec::with_capacity(entries.len());
    let mut jumps = Vec::with_capacity(entries.len());
    let mut m = 0;
    for e in entries.iter() {
        starts.push(instrs[m].ip());
        let branch = &instrs[if e.len1 != 0 { m + 1 } else { m }];
        targets.push(branch.is_jcc_short_or_near().then(|| branch.near_branch_target()));
        jumps.push(branch.mnemonic() == iced_x86::Mnemonic::Jmp);
        m += if e.len1 != 0 { 2 } else { 1 };
    }
    for k in 0..entries.len() {
        let Some(t) = targets[k] else { continue };
        // Straight on only: past a trace's JMP the block may hold the same bytes again (a
        // loop unrolled by the trace), and going there would only make the loop longer.
        for j in k + 1..entries.len() {
            if starts[j] == t {
                entries[k].skip = j as u8;
                break;
            }
            if jumps[j] {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_addresses_spread_over_the_low_bits_of_their_hashes() {
        // hashbrown picks the bucket from the low bits: page-aligned keys (host pages of
        // code) must not all land in one.
        let buckets: std::collections::HashSet<u64> = (0..1024u64)
            .map(|p| {
                let mut h = IntHasher::default();
                h.write_usize(0x7f00_0000_0000 + (p << 12) as usize);
                h.finish() & 1023
            })
            .collect();
        assert!(buckets.len() > 512, "{} distinct buckets of 1024", buckets.len());
    }
}
