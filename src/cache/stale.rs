//! The rate of the "serving a stale label" warning: once per label per minute, however
//! many requests a storage outage turns into stale answers (every one of them is counted
//! in `label_gateway_stale_served_total` all the same).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::tracking::Tracking;

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
