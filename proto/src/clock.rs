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

/// The last instant, at or before now, that is a whole number of `period`s after one
/// process-wide origin. Periodic timers started there (`tokio::time::interval_at`, with
/// `MissedTickBehavior::Skip` so a late tick keeps the grid) tick at once and then on the
/// shared grid: with periods that divide each other they fire at the same instants, so an
/// idle process wakes once for all of them instead of once for each.
pub fn grid_start(period: std::time::Duration) -> std::time::Instant {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    let period_ns = period.as_nanos().max(1);
    let since = std::time::Instant::now()
        .saturating_duration_since(origin)
        .as_nanos();
    let last = since / period_ns * period_ns;
    origin + std::time::Duration::from_nanos(u64::try_from(last).unwrap_or(u64::MAX))
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

#[cfg(test)]
mod grid_tests {
    use super::grid_start;
    use std::time::{Duration, Instant};

    #[test]
    fn timers_of_dividing_periods_started_apart_share_their_instants() {
        let one = grid_start(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(30));
        let two = grid_start(Duration::from_secs(2));
        let now = Instant::now();
        assert!(one <= now && two <= now);
        // Both lie on the same grid: every tick of the 2 s timer is a tick of the 1 s one.
        let gap = if one > two {
            one.duration_since(two)
        } else {
            two.duration_since(one)
        };
        assert_eq!(
            gap.as_nanos() % Duration::from_secs(1).as_nanos(),
            0,
            "{gap:?}"
        );
        assert!(now.duration_since(two) < Duration::from_secs(2));
    }
}
