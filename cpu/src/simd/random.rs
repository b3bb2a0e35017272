//! RDRAND and RDSEED: random numbers from the host's operating-system source (the one
//! getrandom(2) reads: /dev/urandom), always available, so CF = 1. A host without that
//! device falls back to SipHash keyed by std's per-process random keys over a counter and
//! the time.
//!
//! These make a run depend on the host's randomness, like the instructions on hardware.

use super::Form;
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::state::flags::{AF, CF, OF, PF, SF, ZF};
use iced_x86::Mnemonic as M;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::sync::Mutex;

pub(super) fn select(f: &Form, _sub: &mut u64) -> Option<Handler> {
    match f.m {
        M::Rdrand | M::Rdseed if !f.mem => Some(rdrand as Handler),
        _ => None,
    }
}

/// RDRAND/RDSEED r16/r32/r64 (`osz` is the register's size).
fn rdrand(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = match cpu.random_seed.as_mut() {
        // Deterministic runs: xorshift64* from the seed the host set.
        Some(x) => {
            *x ^= *x >> 12;
            *x ^= *x << 25;
            *x ^= *x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        None => random_u64(),
    };
    cpu.set_reg(i.r0, i.osz, v);
    cpu.set_status(CF | OF | SF | ZF | AF | PF, CF);
    Ok(())
}

struct Pool {
    file: Option<std::fs::File>,
    buf: [u8; 256],
    pos: usize,
    counter: u64,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { file: None, buf: [0; 256], pos: 256, counter: 0 });

/// 64 random bits.
pub(crate) fn random_u64() -> u64 {
    let mut p = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if p.pos + 8 > p.buf.len() {
        if p.file.is_none() {
            p.file = std::fs::File::open("/dev/urandom").ok();
        }
        let Pool { file, buf, .. } = &mut *p;
        let filled = file.as_mut().is_some_and(|f| f.read_exact(buf).is_ok());
        if !filled {
            p.counter += 1;
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(p.counter);
            h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
            return h.finish();
        }
        p.pos = 0;
    }
    let k = p.pos;
    p.pos += 8;
    u64::from_le_bytes(p.buf[k..k + 8].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_differ() {
        let v: Vec<u64> = (0..64).map(|_| super::random_u64()).collect();
        let mut d = v.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), v.len());
    }
}
