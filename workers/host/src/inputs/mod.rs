//! The eight host inputs: each a [`crate::runner::Collector`] that reads through
//! [`crate::sys::Reader`], keeps what it needs for deltas, and builds Datakit's points.

pub mod cloud;
pub mod cpu;
pub mod disk;
pub mod diskio;
pub mod dk;
pub mod hostobject;
pub mod mem;
pub mod net;
pub mod process;
pub mod swap;
pub mod system;

/// Per-second rate of a counter between two samples `secs` apart, as Datakit's integer
/// `/sec` fields; `None` when the counter went backwards (reset or 32-bit wrap) or no
/// time passed, so a rate is never negative.
pub(crate) fn rate(cur: u64, prev: u64, secs: f64) -> Option<i64> {
    if cur < prev || secs <= 0.0 {
        return None;
    }
    let r = (cur - prev) as f64 / secs;
    Some(if r >= i64::MAX as f64 {
        i64::MAX
    } else {
        r as i64
    })
}

/// Seconds between two point times in nanoseconds.
pub(crate) fn secs_between(prev_ns: i64, cur_ns: i64) -> f64 {
    (cur_ns - prev_ns) as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_never_negative() {
        assert_eq!(rate(2000, 1000, 10.0), Some(100));
        assert_eq!(rate(5, 4_294_967_290, 10.0), None, "32-bit wrap");
        assert_eq!(rate(5, 5, 10.0), Some(0));
        assert_eq!(rate(10, 5, 0.0), None);
        assert_eq!(rate(u64::MAX, 0, 0.5), Some(i64::MAX));
    }
}
