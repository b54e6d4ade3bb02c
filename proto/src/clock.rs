//! The one wall clock of the agent: nanoseconds since the Unix epoch as point times use them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, now (0 before 1970, `i64::MAX` past 2262).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2020_and_moves_forward() {
        let a = now_ns();
        // 2020-01-01T00:00:00Z in ns.
        assert!(a > 1_577_836_800_000_000_000, "{a}");
        assert!(now_ns() >= a);
    }
}
