//! Serving sockets for input families: TCP accept/serve ([`tcp`]), HTTP on a family's own
//! port with the route handlers ([`http`]), UDP and Unix datagram
//! receive ([`udp`], batched with `recvmmsg` in [`mmsg`]), and the rate limit their reports
//! share ([`Tally`]).
//!
//! A family supplies what it does with bytes (a [`tcp::Connection`] per TCP connection, a
//! [`udp::Datagrams`] per datagram socket); the kit does the rest the same way for every
//! family: connection cap, idle timeout, bounded reads, accept errors backed off, graceful
//! drain on stop, kernel drop counting, and the uniform [`crate::telemetry`] counters.

pub mod http;
pub mod mmsg;
pub mod tcp;
pub mod udp;

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most often a kit report (accept errors, refused connections, kernel drops) is logged.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// A count of events reported at most every `every`: what hot paths use instead of logging
/// per event.
#[derive(Debug)]
pub struct Tally {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new(REPORT_EVERY)
    }
}

impl Tally {
    /// A tally reported at most every `every`.
    pub fn new(every: Duration) -> Tally {
        Tally {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Adds `n` events; returns how many happened since the last report when one is due
    /// (the first call is always due).
    pub fn due(&self, n: u64) -> Option<u64> {
        let mut s = self.state.lock().ok()?;
        s.1 += n;
        let now = Instant::now();
        if s.0.is_some_and(|t| now.duration_since(t) < self.every) {
            return None;
        }
        s.0 = Some(now);
        Some(std::mem::take(&mut s.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_reports_the_first_event_then_sums_until_the_next_report() {
        let t = Tally::new(Duration::from_secs(3600));
        assert_eq!(t.due(2), Some(2));
        assert_eq!(t.due(5), None);
        assert_eq!(t.due(1), None);
        let fast = Tally::new(Duration::ZERO);
        assert_eq!(fast.due(1), Some(1));
        assert_eq!(fast.due(4), Some(4));
    }
}
