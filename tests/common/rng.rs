//! The tests' deterministic random generator, so that failures reproduce.
//!
//! Each test keeps the algorithm and seeds it was written with, so its sequence of values is
//! unchanged: [`Rng::new`] is SplitMix64 (kernel, convolution and differential tests),
//! [`Rng::xorshift`] is xorshift64* (loader and fuzz-corpus mutations), [`Rng::lcg`] is Knuth's
//! MMIX linear congruential generator (naive float references in `ops_conv`). The helpers
//! (`below`, `range`, `pick`, `f32`, ...) derive their values from `next_u64` the same way
//! whatever the algorithm.
#![allow(dead_code)]

#[derive(Clone, Copy, Debug)]
enum Algo {
    SplitMix64,
    XorShift64Star,
    Lcg,
}

#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    algo: Algo,
}

impl Rng {
    /// SplitMix64 from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: seed,
            algo: Algo::SplitMix64,
        }
    }

    /// xorshift64* from `seed` (which must not be 0: the state would stay 0).
    pub fn xorshift(seed: u64) -> Rng {
        Rng {
            state: seed,
            algo: Algo::XorShift64Star,
        }
    }

    /// The MMIX LCG from `seed`; its output is the whole new state.
    pub fn lcg(seed: u64) -> Rng {
        Rng {
            state: seed,
            algo: Algo::Lcg,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        match self.algo {
            Algo::SplitMix64 => {
                self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            }
            Algo::XorShift64Star => {
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
            }
            Algo::Lcg => {
                self.state = self
                    .state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                self.state
            }
        }
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// Uniform in `lo..=hi`.
    pub fn usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as i64, hi as i64) as usize
    }

    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }

    /// Uniform in [0, 1), 24 bits.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }

    /// Uniform in [lo, hi).
    pub fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Log-uniform in [lo, hi).
    pub fn scale(&mut self, lo: f32, hi: f32) -> f32 {
        (self.f32_in(lo.ln(), hi.ln())).exp()
    }

    /// Uniform int8.
    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }

    pub fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.i8()).collect()
    }

    /// int8 with the extremes over-represented (-128 and 127 one time in eight each).
    pub fn i8_extreme(&mut self) -> i8 {
        match self.below(8) {
            0 => -128,
            1 => 127,
            _ => self.next_u64() as i8,
        }
    }

    pub fn i8s_extreme(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.i8_extreme()).collect()
    }
}
