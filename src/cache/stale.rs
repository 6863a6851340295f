//! What a request falls back on when storage fails ([`LabelCache::fallback`]): the label
//! held past its freshness, within `stale_if_error`. Each such answer is counted in
//! `label_gateway_stale_served_total` and logged at most once per label per minute
//! ([`StaleLog`]), however many requests an outage turns into stale answers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{CachedLabel, LabelCache};
use crate::storage::StorageError;
use crate::tracking::Tracking;

/// A label held when storage failed.
pub enum Fallback {
    /// Fresh after all: another request filled it again while this one asked storage.
    Fresh(Arc<CachedLabel>),
    /// Past its freshness, within `stale_if_error`: counted and logged.
    Stale(Arc<CachedLabel>),
}

impl Fallback {
    pub fn label(&self) -> &Arc<CachedLabel> {
        match self {
            Fallback::Fresh(l) | Fallback::Stale(l) => l,
        }
    }
}

impl LabelCache {
    /// The label to answer `tracking` with now that storage failed with `fault`: only for
    /// an outage (a refusal stays an error), and only a label within `ttl +
    /// stale_if_error`.
    pub async fn fallback(&self, tracking: Tracking, fault: &StorageError) -> Option<Fallback> {
        if !fault.is_outage() {
            return None;
        }
        let label = self.get_stale(&self.key(tracking)).await?;
        if self.fresh(&label) {
            return Some(Fallback::Fresh(label));
        }
        self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
        if self.stale_log.should_log(tracking) {
            tracing::warn!(
                %tracking,
                past_freshness_s = self.past_freshness(&label).as_secs(),
                error = %fault,
                "storage failed: serving the cached label past its freshness (cache.stale_if_error)"
            );
        }
        Some(Fallback::Stale(label))
    }
}

/// How often one label's stale answers are logged at most.
pub const EVERY: Duration = Duration::from_secs(60);

/// Labels remembered before the ones logged over a minute ago are forgotten.
const REMEMBERED: usize = 4096;

/// When each label's stale answer was last logged (on the tokio clock, so tests can move
/// it).
#[derive(Debug, Default)]
pub struct StaleLog {
    logged: Mutex<HashMap<Tracking, Instant>>,
}

impl StaleLog {
    /// Whether a stale answer of `tracking` should be logged now; `true` at most once per
    /// [`EVERY`] for each label.
    pub fn should_log(&self, tracking: Tracking) -> bool {
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged
            .get(&tracking)
            .is_some_and(|at| now.duration_since(*at) < EVERY)
        {
            return false;
        }
        if logged.len() >= REMEMBERED {
            logged.retain(|_, at| now.duration_since(*at) < EVERY);
        }
        logged.insert(tracking, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_label_is_logged_once_a_minute() {
        let log = StaleLog::default();
        let a = Tracking::parse("STALE1").unwrap();
        let b = Tracking::parse("STALE2").unwrap();
        assert!(log.should_log(a));
        assert!(!log.should_log(a));
        assert!(log.should_log(b), "another label is logged on its own");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!log.should_log(a));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(log.should_log(a), "again after a minute");
        assert!(!log.should_log(a));
    }
}
