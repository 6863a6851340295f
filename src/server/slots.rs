//! Connection accounting: the slot table behind `max_connections`, each open connection's
//! busy/idle state, and the eviction of the longest-idle connection when a newcomer finds
//! the table full.
//!
//! A connection is *busy* while one of its requests is being answered (until the response
//! body is finished) and *idle* otherwise: before its first request head, between
//! keep-alive requests, or while a slow client is still sending a head. When the limit is
//! reached, a newcomer closes the connection that has been idle the longest and takes its
//! slot, as nginx reuses idle connections when it runs out: sockets that hold a slot
//! without asking for anything never lock a real client out. A connection idle for less
//! than [`EVICT_MIN_IDLE`] is spared (it may have just been accepted with its request still
//! in flight, or just finished a response not yet flushed): a newcomer that finds none old
//! enough looks again until `accept_wait` ends. In a burst over the limit, newcomers so
//! wait and get a 503 instead of closing each other mid-request. Only when nothing idle can
//! be reclaimed within `accept_wait` does the newcomer get a short 503.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::body::Progress;

/// How long a connection must have been idle before a newcomer at the limit may close it
/// (capped at half of `accept_wait`, so a newcomer can outwait it).
pub const EVICT_MIN_IDLE: Duration = Duration::from_millis(50);

/// The clock of the slot table's timestamps: time since it was made, on the kernel's
/// coarse monotonic clock on Linux (a few milliseconds' resolution, read without the
/// time stamp counter). Every frame a response body passes records one (the
/// `send_timeout` watch); the precise clock's read showed in a streamed label's profile,
/// while the timeouts it serves are whole seconds.
#[derive(Clone, Copy)]
pub(super) struct Epoch(Duration);

impl Epoch {
    pub(super) fn now() -> Epoch {
        Epoch(coarse_monotonic())
    }

    pub(super) fn elapsed(&self) -> Duration {
        coarse_monotonic().saturating_sub(self.0)
    }
}

#[cfg(target_os = "linux")]
fn coarse_monotonic() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` only writes the `timespec` it is given; the clock exists
    // on every Linux since 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn coarse_monotonic() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// The connection slots: the limit, and every open connection's busy/idle state so that
/// a newcomer at the limit can close the longest-idle one.
pub(super) struct Slots {
    pub(super) limit: Arc<Semaphore>,
    /// Clock origin for [`Conn::idle_since_ms`].
    pub(super) epoch: Epoch,
    pub(super) next_id: AtomicU64,
    pub(super) open: Mutex<HashMap<u64, Arc<Conn>>>,
}

/// One open connection, as the slot table sees it.
pub(super) struct Conn {
    pub(super) epoch: Epoch,
    /// Requests started whose response is not finished (HTTP/2: open streams).
    pub(super) busy: AtomicUsize,
    /// Requests started on this connection so far.
    pub(super) requests: AtomicU64,
    /// When `busy` last fell to zero, in ms since `epoch`: the eviction order.
    pub(super) idle_since_ms: AtomicU64,
    /// When hyper last asked a response body for more, in ms since `epoch`, and whether
    /// that body was then waiting on its own source: the `send_timeout` watch.
    pub(super) progress_ms: AtomicU64,
    pub(super) body_waiting: AtomicBool,
    /// Set once hyper has read what the client had sent on connecting: a connection whose
    /// first request is already waiting in its socket is not idle, whatever its counters say.
    pub(super) read_once: AtomicBool,
    /// Set by the newcomer that chose this connection to close.
    pub(super) evicted: AtomicBool,
    pub(super) evict: Notify,
    /// Set when the connection should close once its request in progress is answered
    /// (shutdown, or chosen to close while busy); `drain` tells whoever reads it.
    pub(super) draining: AtomicBool,
    pub(super) drain: Notify,
    /// hyper reads the connection for good (HTTP/2, the internal listener, a head only
    /// hyper frames): a drain goes through hyper's graceful shutdown even when idle.
    pub(super) hyper_owned: AtomicBool,
}

impl Slots {
    pub(super) fn new(max_connections: usize) -> Slots {
        Slots {
            limit: Arc::new(Semaphore::new(max_connections)),
            epoch: Epoch::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            epoch: self.epoch,
            busy: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            progress_ms: AtomicU64::new(0),
            body_waiting: AtomicBool::new(false),
            read_once: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            draining: AtomicBool::new(false),
            drain: Notify::new(),
            hyper_owned: AtomicBool::new(false),
        });
        self.lock().insert(id, conn.clone());
        Registered {
            slots: self.clone(),
            id,
            conn,
        }
    }

    /// Asks the longest-idle connection to close, among those idle for at least
    /// `min_idle`; `false` when there is none.
    pub(super) fn evict_idle(&self, min_idle: Duration) -> bool {
        let now = self.epoch.elapsed();
        let open = self.lock();
        let victim = open
            .values()
            .filter(|c| {
                c.read_once.load(Ordering::Acquire)
                    && !c.evicted.load(Ordering::Relaxed)
                    && c.idle_at(now).is_some_and(|idle| idle >= min_idle)
            })
            .min_by_key(|c| c.idle_since_ms.load(Ordering::Relaxed));
        match victim {
            Some(c) => {
                c.evicted.store(true, Ordering::Relaxed);
                // A stored permit: the victim sees it even if it is not waiting right now.
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a connection from the slot table when its task ends, however it ends.
pub(super) struct Registered {
    pub(super) slots: Arc<Slots>,
    pub(super) id: u64,
    pub(super) conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.slots.lock().remove(&self.id);
    }
}

impl Conn {
    /// Marks a request as started; the connection is busy until the guard drops, which
    /// happens when hyper has finished (or abandoned) the response body.
    pub(super) fn begin_request(self: &Arc<Self>) -> BusyGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // Until the response is ready the gateway is the one working, not the client.
        self.body_waiting.store(true, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.clone())
    }

    /// Asks the connection to close once its request in progress is answered.
    pub(super) fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
        // A stored permit: seen even if nothing waits on it right now.
        self.drain.notify_one();
    }

    pub(super) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

pub(super) struct BusyGuard(Arc<Conn>);

impl Progress for BusyGuard {
    fn progress(&self, waiting: bool) {
        let c = &self.0;
        c.progress_ms
            .store(c.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        c.body_waiting.store(waiting, Ordering::Relaxed);
    }
}

impl Conn {
    /// How long the connection has had no request in progress at `now` (time since
    /// `epoch`); `None` while busy. One clock read serves a whole scan of the slot table.
    pub(super) fn idle_at(&self, now: Duration) -> Option<Duration> {
        if self.busy.load(Ordering::Acquire) != 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
        Some(now.saturating_sub(since))
    }

    /// How long a busy connection's client has read nothing while its response had bytes
    /// to give; `None` when idle or when the response itself is waiting (on storage).
    pub(super) fn stalled_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::Acquire) == 0 || self.body_waiting.load(Ordering::Relaxed) {
            return None;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        Some(Duration::from_millis(
            now.saturating_sub(self.progress_ms.load(Ordering::Relaxed)),
        ))
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let c = &self.0;
        let now = c.epoch.elapsed().as_millis() as u64;
        c.idle_since_ms.store(now, Ordering::Relaxed);
        c.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// At the limit: closes the longest-idle connection old enough to spare and waits for a
/// slot, looking again every few milliseconds while none is old enough, for at most `wait`.
pub(super) async fn make_room(slots: &Arc<Slots>, wait: Duration) -> Option<OwnedSemaphorePermit> {
    let deadline = tokio::time::Instant::now() + wait;
    let min_idle = EVICT_MIN_IDLE.min(wait / 2);
    let tick = (min_idle / 4).max(Duration::from_millis(1));
    let acquire = slots.limit.clone().acquire_owned();
    tokio::pin!(acquire);
    let mut evicted = false;
    loop {
        if !evicted {
            evicted = slots.evict_idle(min_idle);
        }
        let next = if evicted {
            deadline
        } else {
            (tokio::time::Instant::now() + tick).min(deadline)
        };
        tokio::select! {
            permit = acquire.as_mut() => return permit.ok(),
            _ = tokio::time::sleep_until(next) => {
                if next >= deadline {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_epoch_moves_forward_with_time() {
        let epoch = Epoch::now();
        let first = epoch.elapsed();
        std::thread::sleep(Duration::from_millis(60));
        let later = epoch.elapsed();
        assert!(later >= first);
        // The coarse clock lags by at most a tick (10 ms at the slowest kernel setting).
        assert!(later >= Duration::from_millis(50), "{later:?}");
    }
}
