//! Jittered exponential backoff for worker restarts.

use std::time::Duration;

/// An invalid backoff configuration.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidBackoff {
    /// `min` is zero or larger than `max`.
    #[error("backoff min {min:?} must be > 0 and <= max {max:?}")]
    Range {
        /// Lower bound.
        min: Duration,
        /// Upper bound.
        max: Duration,
    },
    /// Jitter outside `0.0..1.0`.
    #[error("backoff jitter {0} must be in 0.0..1.0")]
    Jitter(f64),
}

/// Exponential backoff: `min`, doubling per failure up to `max`, each delay scaled by a random
/// factor in `1 ± jitter`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: f64,
    failures: u32,
}

impl Backoff {
    /// A validated backoff.
    #[cfg_attr(not(test), allow(dead_code))]
    ///
    /// # Errors
    /// [`InvalidBackoff`] when the bounds or jitter are out of range.
    pub fn try_new(min: Duration, max: Duration, jitter: f64) -> Result<Self, InvalidBackoff> {
        if min.is_zero() || min > max {
            return Err(InvalidBackoff::Range { min, max });
        }
        if !(0.0..1.0).contains(&jitter) {
            return Err(InvalidBackoff::Jitter(jitter));
        }
        Ok(Backoff {
            min,
            max,
            jitter,
            failures: 0,
        })
    }

    /// The worker restart policy: 100 ms doubling to 30 s, ±20 %.
    pub fn worker_restart() -> Self {
        Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(30),
            jitter: 0.2,
            failures: 0,
        }
    }

    /// The worker restart policy, checked (a unit test keeps it valid).
    #[cfg(test)]
    fn worker_restart_checked() -> Result<Self, InvalidBackoff> {
        Backoff::try_new(Duration::from_millis(100), Duration::from_secs(30), 0.2)
    }

    /// The next delay (before jitter it is `min * 2^failures`, capped at `max`).
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let factor = 1.0 + self.jitter * (rand::random::<f64>() * 2.0 - 1.0);
        base.mul_f64(factor).min(self.max)
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to `min` (after a healthy period).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_restart_policy_is_valid() {
        assert!(Backoff::worker_restart_checked().is_ok());
    }

    #[test]
    fn rejects_inverted_bounds_and_bad_jitter() {
        assert!(Backoff::try_new(Duration::from_secs(2), Duration::from_secs(1), 0.1).is_err());
        assert!(Backoff::try_new(Duration::ZERO, Duration::from_secs(1), 0.1).is_err());
        assert!(Backoff::try_new(Duration::from_millis(1), Duration::from_secs(1), 1.5).is_err());
    }

    #[test]
    fn doubles_until_the_cap_and_stays_within_jitter() {
        let mut b =
            Backoff::try_new(Duration::from_millis(100), Duration::from_secs(1), 0.2).unwrap();
        let expected = [100u64, 200, 400, 800, 1000, 1000];
        for want in expected {
            let got = b.next_delay().as_millis() as u64;
            let lo = (want as f64 * 0.8) as u64;
            let hi = ((want as f64 * 1.2) as u64).min(1000);
            assert!(
                got >= lo && got <= hi,
                "delay {got} ms not within {lo}..={hi}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
