//! The circuit breaker in front of the primary bucket: which bucket a label read tries
//! first.
//!
//! Closed (the normal state), every read tries the primary first. After `after_failures`
//! consecutive primary faults it opens: reads go to the fallback first, and one read per
//! `probe_every` tries the primary first again (the probe). The first primary answer,
//! from a probe or from a read the fallback could not serve, closes it. Each change is
//! logged (warn when it opens, info when it closes).
//!
//! All lock-free: a closed breaker costs a read one atomic load, a success one more
//! (nothing is written unless a fault came before).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Breaker {
    after_failures: u32,
    probe_every: Duration,
    /// Primary faults in a row since its last answer.
    faults: AtomicU32,
    open: AtomicBool,
    /// When the next probe may go, in nanoseconds since `epoch`.
    next_probe: AtomicU64,
    epoch: Instant,
}

impl Breaker {
    pub fn new(after_failures: u32, probe_every: Duration) -> Breaker {
        Breaker {
            after_failures: after_failures.max(1),
            probe_every,
            faults: AtomicU32::new(0),
            open: AtomicBool::new(false),
            next_probe: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether reads go to the fallback first now.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether this read tries the primary first: always while closed; while open, one
    /// read per `probe_every` (the first to ask once the time came).
    pub fn primary_first(&self) -> bool {
        !self.is_open() || self.probe_due(self.now())
    }

    /// Open: whether the probe is due at `now` (and this caller takes it).
    fn probe_due(&self, now: u64) -> bool {
        let next = self.next_probe.load(Ordering::Relaxed);
        now >= next
            && self
                .next_probe
                .compare_exchange(next, self.later(now), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The primary answered (a label, a 404, a refusal: anything but a fault).
    pub fn answered(&self) {
        if self.faults.load(Ordering::Relaxed) != 0 {
            self.faults.store(0, Ordering::Relaxed);
        }
        if self.is_open() && self.open.swap(false, Ordering::Relaxed) {
            tracing::info!(
                "storage breaker closed: the primary bucket answers again; reads go to it first"
            );
        }
    }

    /// The primary faulted (cannot connect, timeout, 5xx).
    pub fn faulted(&self, error: &super::StorageError) {
        self.faulted_at(error, self.now());
    }

    fn faulted_at(&self, error: &super::StorageError, now: u64) {
        let faults = self
            .faults
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if faults >= self.after_failures && !self.is_open() {
            self.next_probe.store(self.later(now), Ordering::Relaxed);
            if !self.open.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    faults,
                    probe_every = ?self.probe_every,
                    %error,
                    "storage breaker open: the primary bucket keeps failing; reads go to the fallback first"
                );
            }
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn later(&self, now: u64) -> u64 {
        let step = u64::try_from(self.probe_every.as_nanos()).unwrap_or(u64::MAX);
        now.saturating_add(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageError;

    fn fault() -> StorageError {
        StorageError::Unavailable {
            status: 503,
            code: "SlowDown".into(),
        }
    }

    #[test]
    fn opens_after_the_faults_in_a_row_and_an_answer_in_between_resets_the_count() {
        let b = Breaker::new(3, Duration::from_secs(3600));
        b.faulted(&fault());
        b.faulted(&fault());
        b.answered();
        b.faulted(&fault());
        b.faulted(&fault());
        assert!(!b.is_open());
        assert!(b.primary_first());
        b.faulted(&fault());
        assert!(b.is_open());
        // Open, and the probe time not come: the fallback first.
        assert!(!b.primary_first());
        b.answered();
        assert!(!b.is_open());
        assert!(b.primary_first());
    }

    #[test]
    fn while_open_one_read_per_probe_interval_tries_the_primary() {
        const SEC: u64 = 1_000_000_000;
        let b = Breaker::new(1, Duration::from_secs(10));
        b.faulted_at(&fault(), 5 * SEC);
        assert!(b.is_open());
        assert!(!b.probe_due(14 * SEC));
        let probes = (0..50).filter(|_| b.probe_due(15 * SEC)).count();
        assert_eq!(probes, 1);
        // The probe faulted: still open, the next probe a whole interval later.
        b.faulted_at(&fault(), 15 * SEC);
        assert!(b.is_open());
        assert!(!b.probe_due(24 * SEC));
        assert!(b.probe_due(25 * SEC));
    }
}
