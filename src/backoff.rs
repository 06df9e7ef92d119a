//! Exponential back-off with jitter, shared by the source's reconnects and MQTT's: each
//! failure doubles the wait up to a ceiling, a success starts again from the floor, and every
//! wait is stretched by up to 25 % so that a fleet of cameras restarted together does not
//! hammer one broker or one NVR in step.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    /// Waits from `min` up to `max` (configuration keeps both finite and at most an hour).
    pub fn new(min: Duration, max: Duration) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Backoff {
            min,
            max: max.max(min),
            next: min,
            // Differs per process and per instance.
            seed: nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// From seconds, as the configuration gives them.
    pub fn from_secs(min: f64, max: f64) -> Self {
        Self::new(Duration::from_secs_f64(min), Duration::from_secs_f64(max))
    }

    /// The wait before the next attempt (with jitter); the one after it is twice as long.
    pub fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // xorshift64: cheap, and good enough to de-synchronise.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let frac = (self.seed % 1000) as f64 / 4000.0;
        base + base.mul_f64(frac)
    }

    /// The last attempt worked: start again from the floor.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_ceiling_with_bounded_jitter() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut b = Backoff::new(min, max);
        let mut base = min;
        let mut jittered = 0;
        for _ in 0..12 {
            let w = b.next_wait();
            assert!(w >= base && w <= base.mul_f64(1.25), "{w:?} for {base:?}");
            if w > base {
                jittered += 1;
            }
            base = (base * 2).min(max);
        }
        assert!(jittered >= 6, "the waits carry jitter ({jittered} of 12)");
        b.reset();
        assert!(b.next_wait() <= min.mul_f64(1.25));
        // The largest waits configuration allows do not overflow.
        let mut b = Backoff::from_secs(3600.0, 3600.0);
        for _ in 0..100 {
            assert!(b.next_wait() <= Duration::from_secs(4500));
        }
    }
}
