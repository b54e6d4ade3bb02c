//! A per-(client IP, path) token bucket, as Datakit's tollbooth limiter behaves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets idle this long are forgotten (Datakit's fixed one-minute TTL).
const IDLE_TTL: Duration = Duration::from_secs(60);
/// The map is swept at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Hard cap on tracked keys; past it the oldest-idle sweep runs at once.
const MAX_KEYS: usize = 100_000;

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Inner {
    buckets: HashMap<(String, String), Bucket>,
    last_sweep: Instant,
}

/// Token buckets refilled at `rate` per second with a burst of `max(1, rate)`.
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    inner: Mutex<Inner>,
}

impl RateLimiter {
    /// A limiter, or `None` when `rate <= 0` (disabled).
    pub(crate) fn new(rate: f64) -> Option<Self> {
        if rate.is_nan() || rate <= 0.0 {
            return None;
        }
        Some(RateLimiter {
            rate,
            burst: rate.max(1.0),
            inner: Mutex::new(Inner {
                buckets: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        })
    }

    /// The configured rate.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes a token for `(ip, path)` at `now`; false when the bucket is empty.
    pub(crate) fn allow(&self, ip: &str, path: &str, now: Instant) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(inner.last_sweep) >= SWEEP_EVERY
            || inner.buckets.len() >= MAX_KEYS
        {
            inner
                .buckets
                .retain(|_, b| now.saturating_duration_since(b.last) < IDLE_TTL);
            if inner.buckets.len() >= MAX_KEYS {
                inner.buckets.clear();
            }
            inner.last_sweep = now;
        }
        let key = (ip.to_string(), path.to_string());
        let bucket = inner.buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_when_rate_is_not_positive() {
        assert!(RateLimiter::new(0.0).is_none());
        assert!(RateLimiter::new(-1.0).is_none());
    }

    #[test]
    fn allows_a_burst_of_rate_then_refills_over_time() {
        let rl = RateLimiter::new(2.0).unwrap_or_else(|| unreachable!());
        let t0 = Instant::now();
        assert!(rl.allow("1.2.3.4", "/v1/ping", t0));
        assert!(rl.allow("1.2.3.4", "/v1/ping", t0));
        assert!(!rl.allow("1.2.3.4", "/v1/ping", t0));
        // Another path and another client have their own buckets.
        assert!(rl.allow("1.2.3.4", "/v1/ntp", t0));
        assert!(rl.allow("5.6.7.8", "/v1/ping", t0));
        assert!(rl.allow("1.2.3.4", "/v1/ping", t0 + Duration::from_millis(500)));
        assert!(!rl.allow("1.2.3.4", "/v1/ping", t0 + Duration::from_millis(500)));
    }

    #[test]
    fn forgets_idle_buckets() {
        let rl = RateLimiter::new(1.0).unwrap_or_else(|| unreachable!());
        let t0 = Instant::now();
        rl.allow("a", "/p", t0);
        rl.allow("b", "/p", t0);
        assert_eq!(rl.keys(), 2);
        rl.allow("c", "/p", t0 + IDLE_TTL + SWEEP_EVERY);
        assert_eq!(rl.keys(), 1);
    }
}
