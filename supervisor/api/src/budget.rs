//! One memory budget for every write request at once: the bytes being read and inflated and
//! the points being decoded, taken before the memory is (ADR 0005).

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget counts in KiB permits (a `Semaphore` holds at most `u32::MAX >> 3` permits).
const UNIT: usize = 1024;

/// The shared budget. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    sem: Arc<Semaphore>,
    total_bytes: usize,
    in_use: Gauge,
}

/// The budget is spent: the request must be refused (503, retry later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spent {
    /// What the request asked for, in bytes.
    pub(crate) wanted: usize,
}

impl Budget {
    /// A budget of `total_bytes` (rounded up to a KiB, at least one), reporting the bytes in
    /// use into `in_use`.
    pub(crate) fn new(total_bytes: usize, in_use: Gauge) -> Self {
        let units = units(total_bytes).clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Budget {
            sem: Arc::new(Semaphore::new(units)),
            total_bytes: units * UNIT,
            in_use,
        }
    }

    /// The whole budget in bytes.
    pub(crate) fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// An empty lease that grows with [`Lease::grow`].
    pub(crate) fn lease(&self) -> Lease {
        Lease {
            budget: self.clone(),
            permit: None,
            units: 0,
        }
    }
}

/// What one request holds of the budget; returned in full when dropped (also on panic).
#[derive(Debug)]
pub(crate) struct Lease {
    budget: Budget,
    permit: Option<OwnedSemaphorePermit>,
    units: usize,
}

impl Lease {
    /// Takes `bytes` more, at once or not at all (never waits).
    pub(crate) fn grow(&mut self, bytes: usize) -> Result<(), Spent> {
        let n = units(bytes);
        if n == 0 {
            return Ok(());
        }
        let spent = Spent { wanted: bytes };
        let n32 = u32::try_from(n).map_err(|_| spent)?;
        let p = self
            .budget
            .sem
            .clone()
            .try_acquire_many_owned(n32)
            .map_err(|_| spent)?;
        match self.permit.as_mut() {
            Some(mine) => mine.merge(p),
            None => self.permit = Some(p),
        }
        self.units += n;
        self.budget.in_use.inc_by(as_i64(n * UNIT));
        Ok(())
    }

    /// Grows the lease until it holds at least `bytes` in all.
    pub(crate) fn grow_to(&mut self, bytes: usize) -> Result<(), Spent> {
        let held = self.units * UNIT;
        if bytes > held {
            self.grow(bytes - held)
        } else {
            Ok(())
        }
    }

    /// Takes over what `other` holds.
    pub(crate) fn absorb(&mut self, mut other: Lease) {
        if let Some(p) = other.permit.take() {
            match self.permit.as_mut() {
                Some(mine) => mine.merge(p),
                None => self.permit = Some(p),
            }
            self.units += other.units;
            other.units = 0;
        }
    }

    /// The whole budget in bytes.
    pub(crate) fn budget_total(&self) -> usize {
        self.budget.total_bytes
    }

    /// Gives back everything above `bytes` (rounded up to a KiB).
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        let keep = units(bytes);
        if keep >= self.units {
            return;
        }
        if keep == 0 {
            self.release();
            return;
        }
        if let Some(p) = self.permit.as_mut()
            && let Some(extra) = p.split(self.units - keep)
        {
            drop(extra);
            self.budget
                .in_use
                .dec_by(as_i64((self.units - keep) * UNIT));
            self.units = keep;
        }
    }

    /// The bytes held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.units * UNIT
    }

    fn release(&mut self) {
        if let Some(p) = self.permit.take() {
            drop(p);
            self.budget.in_use.dec_by(as_i64(self.units * UNIT));
            self.units = 0;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release();
    }
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_total_and_returns_everything_on_drop() {
        let gauge = Gauge::default();
        let b = Budget::new(10 * 1024, gauge.clone());
        let mut a = b.lease();
        a.grow(6 * 1024).unwrap_or_else(|_| unreachable!());
        let mut c = b.lease();
        assert_eq!(c.grow(5 * 1024), Err(Spent { wanted: 5 * 1024 }));
        assert_eq!(c.held(), 0, "a refused grow takes nothing");
        c.grow(4 * 1024).unwrap_or_else(|_| unreachable!());
        assert_eq!(gauge.get(), 10 * 1024);
        drop(a);
        assert_eq!(gauge.get(), 4 * 1024);
        drop(c);
        assert_eq!(gauge.get(), 0);
        assert_eq!(b.sem.available_permits(), 10);
    }

    #[test]
    fn grow_to_and_shrink_to_adjust_what_is_held() {
        let gauge = Gauge::default();
        let b = Budget::new(100 * 1024, gauge.clone());
        let mut l = b.lease();
        l.grow_to(3000).unwrap_or_else(|_| unreachable!());
        assert_eq!(l.held(), 3 * 1024);
        l.grow_to(1000).unwrap_or_else(|_| unreachable!());
        assert_eq!(l.held(), 3 * 1024, "grow_to never shrinks");
        l.grow_to(50 * 1024).unwrap_or_else(|_| unreachable!());
        l.shrink_to(10 * 1024);
        assert_eq!(l.held(), 10 * 1024);
        assert_eq!(gauge.get(), 10 * 1024);
        assert_eq!(b.sem.available_permits(), 90);
        l.shrink_to(0);
        assert_eq!(gauge.get(), 0);
        assert_eq!(b.sem.available_permits(), 100);
    }

    #[test]
    fn a_lease_dropped_by_a_panic_is_returned() {
        let gauge = Gauge::default();
        let b = Budget::new(8 * 1024, gauge.clone());
        let b2 = b.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let mut l = b2.lease();
            l.grow(8 * 1024).unwrap_or_else(|_| unreachable!());
            panic!("decoder bug");
        }));
        assert!(r.is_err());
        assert_eq!(gauge.get(), 0);
        assert_eq!(b.sem.available_permits(), 8);
    }
}
