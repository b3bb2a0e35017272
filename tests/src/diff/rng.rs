//! A small deterministic random source, so every case can be replayed from `(seed, index)`.

/// xorshift64*, seeded through splitmix64 so nearby seeds give unrelated streams.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(z | 1)
    }

    /// The generator for case `index` of a run seeded with `seed`.
    pub fn for_case(seed: u64, index: u64) -> Rng {
        Rng::new(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A value biased towards the edges arithmetic cares about: 0, 1, all ones, sign
    /// boundaries of every operand size, small numbers, and otherwise anything.
    pub fn interesting(&mut self) -> u64 {
        const EDGES: [u64; 14] = [
            0,
            1,
            2,
            u64::MAX,
            0x7F,
            0x80,
            0xFF,
            0x7FFF,
            0x8000,
            0xFFFF,
            0x7FFF_FFFF,
            0x8000_0000,
            0xFFFF_FFFF,
            0x8000_0000_0000_0000,
        ];
        match self.below(16) {
            0..=3 => {
                let e = *self.pick(&EDGES);
                // Sometimes one off the edge, sometimes with random upper bits.
                match self.below(4) {
                    0 => e.wrapping_add(1),
                    1 => e.wrapping_sub(1),
                    2 => e | (self.next() & !0xFFFF_FFFF),
                    _ => e,
                }
            }
            4..=5 => self.below(64),
            6 => self.next() & 0xFFFF_FFFF,
            7 => self.next() | 0x8000_0000_0000_0000,
            _ => self.next(),
        }
    }
}
