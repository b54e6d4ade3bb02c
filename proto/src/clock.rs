//! The one wall clock of the agent: nanoseconds since the Unix epoch as point times use them.
//!
//! [`now_ns`] is the host clock plus the `[dataway.ntp]` offset of this process (0 until the
//! supervisor measured Dataway's clock off by more than the threshold; the supervisor sets it
//! in itself and in every worker), so points stamped "now" carry Dataway's time as Datakit's
//! do. [`host_now_ns`] is the host clock alone (what a Dataway time is compared with).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static OFFSET_NS: AtomicI64 = AtomicI64::new(0);

/// Nanoseconds since the Unix epoch on the host clock (0 before 1970, `i64::MAX` past 2262).
pub fn host_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Now for point times: the host clock plus this process's offset ([`set_offset_ns`]).
pub fn now_ns() -> i64 {
    host_now_ns().saturating_add(OFFSET_NS.load(Ordering::Relaxed))
}

/// Sets the offset added to the host clock by [`now_ns`].
pub fn set_offset_ns(offset: i64) {
    OFFSET_NS.store(offset, Ordering::Relaxed);
}

/// The offset added to the host clock by [`now_ns`].
pub fn offset_ns() -> i64 {
    OFFSET_NS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2020_moves_forward_and_carries_the_offset() {
        let a = now_ns();
        // 2020-01-01T00:00:00Z in ns.
        assert!(a > 1_577_836_800_000_000_000, "{a}");
        assert!(now_ns() >= a);
        set_offset_ns(3_600_000_000_000);
        let shifted = now_ns() - host_now_ns();
        set_offset_ns(0);
        assert!(
            (3_599_000_000_000..=3_600_000_000_000).contains(&shifted),
            "{shifted}"
        );
    }
}
