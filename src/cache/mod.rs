//! The hot-label cache: a moka `future::Cache` weighed in bytes, filled by teeing the
//! origin's body as it streams to the first client, plus the fill lock that makes
//! concurrent misses of one label share one origin fetch.
//!
//! Admission rules: a complete 200 body whose length matches its `Content-Length`, at
//! most `max_object_bytes`. Never a partial body, never a 206, never an error.
//!
//! A filled label is copied once into one buffer of exactly its size. Keeping the origin's
//! frames instead would be copy-free but would pin the storage client's read buffers (up to
//! 64 KiB each, shared with whatever that connection read next), so the bytes moka weighs
//! would not be the bytes held; one buffer also lets a hit go out as a single write.
//!
//! Freshness is the gateway's own rule, one function ([`LabelCache::fresh`]) for every
//! lookup: a label is fresh for `ttl` after its insertion. moka holds it for
//! `ttl + stale_if_error`, so that a label past its freshness is still at hand when storage
//! fails ([`LabelCache::fallback`], `stale.rs`); such labels weigh against `max_bytes`
//! like the fresh ones. The hot list written on drain and warmed on start is `hotlist.rs`.

pub mod hotlist;
mod stale;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use moka::future::Cache;
use moka::notification::RemovalCause;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::{Keep, TeeSink};
use crate::config::CacheConfig;
use crate::http::Body;
use crate::metrics::Counter;
use crate::tracking::Tracking;

pub use stale::{Fallback, StaleLog};

/// What one cached label weighs besides its bytes: the key, the headers kept with it and
/// moka's own bookkeeping, rounded up. `label_gateway_cache_bytes` counts it too.
pub const ENTRY_OVERHEAD_BYTES: u64 = 256;

/// Which label. A cache belongs to one gateway and so to one store: two configurations
/// never share entries, and the key needs no store part (hashing and reference-counting
/// one on every hit cost more than the lookup itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub tracking: Tracking,
}

/// The moka cache under [`LabelCache`]. foldhash is seeded per process as std's SipHash
/// is, at a fraction of its cost per lookup.
type Labels = Cache<CacheKey, Arc<CachedLabel>, foldhash::fast::RandomState>;

/// A whole label held in memory.
#[derive(Debug)]
pub struct CachedLabel {
    pub data: Bytes,
    pub len: u64,
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<HeaderValue>,
    /// For the TTL check on the tokio clock (moka's own clock cannot be paused in tests).
    inserted: Instant,
    /// The headers of a whole-label `200` hit, built on the first one and cloned for the
    /// rest (a clone costs a fraction of writing ten headers into a new map).
    pub hit_headers: std::sync::OnceLock<http::HeaderMap>,
    /// The same response's HTTP/1.1 status line and headers as bytes on the wire (all but
    /// the request's id and the date), for the quick path (`gateway::quick`).
    pub hit_head: std::sync::OnceLock<Bytes>,
}

impl CachedLabel {
    pub fn new(data: Bytes, etag: Option<HeaderValue>, last_modified: Option<HeaderValue>) -> Self {
        CachedLabel {
            len: data.len() as u64,
            data,
            etag,
            last_modified,
            inserted: Instant::now(),
            hit_headers: std::sync::OnceLock::new(),
            hit_head: std::sync::OnceLock::new(),
        }
    }

    /// A label just produced by the gateway itself (regenerated): modified now.
    pub fn fresh_pdf(data: Bytes, etag: Option<HeaderValue>) -> Self {
        CachedLabel::new(
            data,
            etag,
            HeaderValue::try_from(httpdate::fmt_http_date(std::time::SystemTime::now())).ok(),
        )
    }

    /// A body over `start..=end` of the label (the whole label without a range): one
    /// frame, sliced, not copied.
    pub fn body(&self, range: Option<(u64, u64)>) -> Body {
        use http_body_util::BodyExt;
        let data = match range {
            _ if self.data.is_empty() => Bytes::new(),
            None => self.data.clone(),
            Some((start, end)) => {
                let end = end.min(self.len - 1);
                self.data.slice(start.min(end) as usize..=end as usize)
            }
        };
        http_body_util::Full::new(data)
            .map_err(|never| match never {})
            .boxed()
    }
}

/// Counters for logs and `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: Counter,
    pub misses: Counter,
    pub inserts: AtomicU64,
    pub evictions: AtomicU64,
    pub coalesced: AtomicU64,
    /// Waiters that stopped waiting for a fill that made no progress.
    pub stalled: AtomicU64,
    /// Answers served from a label past its freshness because storage failed.
    pub stale_served: AtomicU64,
    /// Labels loaded from the hot list on start.
    pub warmed: AtomicU64,
}

/// What a fill's waiters watch: `None` until the leader's storage answer starts
/// streaming, then the bytes streamed so far.
type Waiters = watch::Receiver<Option<u64>>;

/// What a miss should do.
pub enum Fill {
    /// Fetch from the origin; hand the guard to a [`Filler`] so it can insert the label.
    Leader(FillGuard),
    /// Another request is fetching this label: wait for it, then look again.
    Wait(Waiters),
}

pub struct LabelCache {
    cache: Labels,
    inflight: Arc<Mutex<HashMap<CacheKey, Waiters>>>,
    ttl: Duration,
    /// `ttl + stale_if_error`: how long a label may serve at all (moka's own ttl).
    usable: Duration,
    max_bytes: u64,
    max_object_bytes: u64,
    /// How long a waiting miss waits for the leader's storage answer to start before
    /// fetching on its own.
    pub lock_timeout: Duration,
    /// How long a waiting miss waits for a leader whose stream stopped moving.
    fill_stall: Duration,
    pub stats: Arc<CacheStats>,
    /// Rate of the "serving a stale label" warnings.
    pub stale_log: StaleLog,
}

impl LabelCache {
    pub fn new(cfg: &CacheConfig, lock_timeout: Duration) -> LabelCache {
        let stats = Arc::new(CacheStats::default());
        let s = stats.clone();
        // Validated: at most 30 days past a ttl read from a human duration.
        let usable = cfg.ttl.saturating_add(cfg.stale_if_error);
        let mut b = Cache::builder()
            .max_capacity(cfg.max_bytes.as_u64())
            .weigher(|_k: &CacheKey, v: &Arc<CachedLabel>| {
                // Bytes plus the per-entry overhead, saturating at u32::MAX.
                u32::try_from(v.len + ENTRY_OVERHEAD_BYTES).unwrap_or(u32::MAX)
            })
            .time_to_live(usable)
            .eviction_listener(move |_k, _v, cause| {
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                    s.evictions.fetch_add(1, Ordering::Relaxed);
                }
            });
        if let Some(tti) = cfg.tti {
            b = b.time_to_idle(tti);
        }
        LabelCache {
            cache: b.build_with_hasher(foldhash::fast::RandomState::default()),
            inflight: Arc::default(),
            ttl: cfg.ttl,
            usable,
            max_bytes: cfg.max_bytes.as_u64(),
            max_object_bytes: cfg.max_object_bytes.as_u64(),
            lock_timeout,
            fill_stall: cfg.fill_stall,
            stats,
            stale_log: StaleLog::default(),
        }
    }

    pub fn key(&self, tracking: Tracking) -> CacheKey {
        CacheKey { tracking }
    }

    /// A fresh cached label, counting the hit or the miss.
    pub async fn get(&self, key: &CacheKey) -> Option<Arc<CachedLabel>> {
        match self.cache.get(key).await {
            Some(label) if self.fresh(&label) => {
                self.stats.hits.inc();
                Some(label)
            }
            Some(label) => {
                // Kept while it may still serve a request that storage fails.
                if !self.usable(&label) {
                    self.cache.invalidate(key).await;
                }
                self.stats.misses.inc();
                None
            }
            None => {
                self.stats.misses.inc();
                None
            }
        }
    }

    /// A fresh cached label, counting a hit but not a miss: the quick path asks first, and
    /// a request it cannot answer goes the full way, which counts the miss once.
    pub async fn get_hit(&self, key: &CacheKey) -> Option<Arc<CachedLabel>> {
        let label = self.cache.get(key).await.filter(|l| self.fresh(l))?;
        self.stats.hits.inc();
        Some(label)
    }

    /// Whether `label` is still within `ttl` (on the tokio clock; see [`CachedLabel`]).
    pub fn fresh(&self, label: &CachedLabel) -> bool {
        label.inserted.elapsed() < self.ttl
    }

    /// Whether `label` is within `ttl + stale_if_error`: fresh, or stale but still fit to
    /// answer when storage fails.
    fn usable(&self, label: &CachedLabel) -> bool {
        label.inserted.elapsed() < self.usable
    }

    /// How long past its freshness `label` is (zero while fresh).
    pub fn past_freshness(&self, label: &CachedLabel) -> Duration {
        label.inserted.elapsed().saturating_sub(self.ttl)
    }

    /// The label held for `key`, fresh or past its freshness by less than
    /// `stale_if_error`, counting neither a hit nor a miss: what a request answers when
    /// storage failed with a fault. The caller tells a stale one by [`LabelCache::fresh`]
    /// (another request may have filled it again in between).
    pub async fn get_stale(&self, key: &CacheKey) -> Option<Arc<CachedLabel>> {
        self.cache.get(key).await.filter(|l| self.usable(l))
    }

    /// Whether `key` is held and fresh, without counting a hit or a miss (a batch asks
    /// before it reads).
    pub async fn holds(&self, key: &CacheKey) -> bool {
        self.cache
            .get(key)
            .await
            .is_some_and(|label| self.fresh(&label))
    }

    /// The largest label admitted.
    pub fn max_object_bytes(&self) -> u64 {
        self.max_object_bytes
    }

    /// Whether an object of this size may be cached.
    pub fn admits(&self, len: u64) -> bool {
        len <= self.max_object_bytes
    }

    /// Takes the fill lock for `key`, or joins the request that holds it.
    pub fn begin_fill(&self, key: &CacheKey) -> Fill {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(key) {
            // A leader whose guard is gone has already cleaned up; a closed channel here
            // means a stale entry, so take over.
            if rx.has_changed().is_ok() {
                self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                return Fill::Wait(rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        map.insert(*key, rx);
        Fill::Leader(FillGuard {
            key: *key,
            tx: Some(tx),
            inflight: self.inflight.clone(),
            cache: self.cache.clone(),
            stats: self.stats.clone(),
        })
    }

    /// Waits until the leader of `key` finishes or gives up: at most `lock_timeout` for
    /// its storage answer to start, then as long as its stream keeps moving (a pause of
    /// `fill_stall` ends the wait: the leader's client may have stopped reading, and this
    /// request must not wait for it).
    pub async fn wait(&self, mut waiters: Waiters) {
        loop {
            let limit = if waiters.borrow_and_update().is_some() {
                self.fill_stall
            } else {
                self.lock_timeout
            };
            match tokio::time::timeout(limit, waiters.changed()).await {
                Ok(Ok(())) => continue,
                // The sender is gone: the leader finished (or failed) either way.
                Ok(Err(_)) => return,
                Err(_) => {
                    self.stats.stalled.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Inserts a label directly (ingest and regeneration prime the cache this way).
    pub async fn insert(&self, key: CacheKey, label: CachedLabel) {
        if self.admits(label.len) {
            self.stats.inserts.fetch_add(1, Ordering::Relaxed);
            self.cache.insert(key, Arc::new(label)).await;
        }
    }

    /// Evicts one label (the app regenerated it).
    pub async fn purge(&self, key: &CacheKey) -> bool {
        self.cache.remove(key).await.is_some()
    }

    /// Bytes held now (weighted size; moka applies pending writes lazily).
    pub fn bytes_held(&self) -> u64 {
        self.cache.weighted_size()
    }

    pub fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Reads the cache's counters and sizes into a `/metrics` scrape.
    pub fn scrape_metrics(&self, s: &mut crate::metrics::Scrape) {
        let st = &self.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.counter(
            "label_gateway_cache_hits_total",
            "Labels served from memory.",
            st.hits.get(),
        );
        s.counter(
            "label_gateway_cache_misses_total",
            "Lookups that found no label.",
            st.misses.get(),
        );
        s.counter(
            "label_gateway_cache_inserts_total",
            "Labels admitted.",
            g(&st.inserts),
        );
        s.counter(
            "label_gateway_cache_evictions_total",
            "Labels evicted for size or age.",
            g(&st.evictions),
        );
        s.counter(
            "label_gateway_cache_coalesced_total",
            "Misses that waited for another request's fetch.",
            g(&st.coalesced),
        );
        s.counter(
            "label_gateway_cache_fill_stalls_total",
            "Misses that stopped waiting for another request's fetch that made no progress.",
            g(&st.stalled),
        );
        s.counter(
            "label_gateway_stale_served_total",
            "Answers from a label past its freshness because storage failed (X-Cache: STALE).",
            g(&st.stale_served),
        );
        s.counter(
            "label_gateway_hot_list_warmed_total",
            "Labels loaded into the cache from the hot list on start.",
            g(&st.warmed),
        );
        s.gauge(
            "label_gateway_cache_bytes",
            "Label bytes held.",
            self.bytes_held(),
        );
        s.gauge(
            "label_gateway_cache_entries",
            "Labels held.",
            self.entries(),
        );
    }

    /// Applies pending moka maintenance (tests and `/metrics` read settled numbers).
    pub async fn settle(&self) {
        self.cache.run_pending_tasks().await;
    }
}

/// Held by the request fetching a label for the cache. Dropped without `finish`, it
/// releases the waiters so they fetch on their own: nobody hangs on a failed fill.
pub struct FillGuard {
    key: CacheKey,
    tx: Option<watch::Sender<Option<u64>>>,
    inflight: Arc<Mutex<HashMap<CacheKey, Waiters>>>,
    cache: Labels,
    stats: Arc<CacheStats>,
}

impl FillGuard {
    fn release(&mut self) {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&self.key);
        drop(map);
        self.tx.take();
    }

    /// Inserts the complete label, then wakes the waiters (so they find it). The tee runs
    /// this before it hands on the label's last byte.
    fn finish(mut self, label: CachedLabel) -> Keep {
        let cache = self.cache.clone();
        let key = self.key;
        self.stats.inserts.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            cache.insert(key, Arc::new(label)).await;
            self.release();
        })
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.release();
        }
    }
}

/// What a leader's [`Tee`](crate::body::Tee) hands the complete label to: the fill lock
/// and the validators to keep with the bytes.
pub struct Filler {
    guard: FillGuard,
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

impl Filler {
    pub fn new(
        guard: FillGuard,
        etag: Option<HeaderValue>,
        last_modified: Option<HeaderValue>,
    ) -> Filler {
        Filler {
            guard,
            etag,
            last_modified,
        }
    }
}

impl TeeSink for Filler {
    fn progress(&self, seen: u64) {
        // The start always (a request that comes to wait later must know the stream
        // began); each frame only when someone waits (the map holds one receiver).
        if let Some(tx) = &self.guard.tx {
            if seen == 0 || tx.receiver_count() > 1 {
                tx.send_replace(Some(seen));
            }
        }
    }

    fn complete(self, data: Bytes) -> Keep {
        self.guard
            .finish(CachedLabel::new(data, self.etag, self.last_modified))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Tee;
    use crate::http::BoxError;
    use bytesize::ByteSize;
    use http_body::{Body as _, Frame};
    use http_body_util::BodyExt;

    fn t(s: &str) -> Tracking {
        Tracking::parse(s).unwrap()
    }

    fn label(data: &'static [u8]) -> Arc<CachedLabel> {
        Arc::new(CachedLabel::new(Bytes::from_static(data), None, None))
    }

    async fn collect(b: Body) -> Vec<u8> {
        b.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn ranges_slice_the_one_buffer() {
        let l = label(b"0123456789");
        assert_eq!(collect(l.body(None)).await, b"0123456789");
        assert_eq!(collect(l.body(Some((2, 5)))).await, b"2345");
        assert_eq!(collect(l.body(Some((4, 7)))).await, b"4567");
        assert_eq!(collect(l.body(Some((9, 9)))).await, b"9");
        assert_eq!(l.body(Some((3, 8))).size_hint().exact(), Some(6));
    }

    fn config(ttl: Duration) -> CacheConfig {
        CacheConfig {
            enabled: true,
            max_bytes: ByteSize::mib(1),
            max_object_bytes: ByteSize::kib(64),
            ttl,
            tti: None,
            fill_stall: Duration::from_millis(250),
            stale_if_error: Duration::ZERO,
            hot_list: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_leaves_a_fill_whose_stream_stopped_moving() {
        let c = LabelCache::new(&config(Duration::from_secs(60)), Duration::from_secs(60));
        let key = c.key(t("T5"));
        let Fill::Leader(guard) = c.begin_fill(&key) else {
            panic!("first miss leads")
        };
        let filler = Filler::new(guard, None, None);
        // The leader's stream began and moved once, then its client stopped reading.
        filler.progress(0);
        filler.progress(16_384);
        let Fill::Wait(rx) = c.begin_fill(&key) else {
            panic!("second miss waits")
        };
        let started = Instant::now();
        c.wait(rx).await;
        // Paused clock: exactly the stall limit, not the 60 s lock timeout.
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        assert_eq!(c.stats.stalled.load(Ordering::Relaxed), 1);
        drop(filler);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_stays_while_the_stream_moves_and_before_it_starts() {
        let c = Arc::new(LabelCache::new(
            &config(Duration::from_secs(60)),
            Duration::from_secs(60),
        ));
        let key = c.key(t("T6"));
        let Fill::Leader(guard) = c.begin_fill(&key) else {
            panic!("first miss leads")
        };
        let Fill::Wait(rx) = c.begin_fill(&key) else {
            panic!("second miss waits")
        };
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                c.wait(rx).await;
                started.elapsed()
            })
        };
        // Storage takes 2 s to answer (longer than the stall limit: not a stall), then
        // frames come every 200 ms, then the body completes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let filler = Filler::new(guard, None, None);
        filler.progress(0);
        for i in 1..=5 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            filler.progress(i * 1000);
        }
        drop(filler);
        let waited = waiter.await.unwrap();
        assert_eq!(waited, Duration::from_millis(3000));
        assert_eq!(c.stats.stalled.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_ttl_on_the_tokio_clock() {
        let c = LabelCache::new(&config(Duration::from_secs(60)), Duration::from_secs(1));
        let key = c.key(t("T1"));
        c.insert(
            key,
            CachedLabel::new(Bytes::from_static(b"pdf"), None, None),
        )
        .await;
        assert!(c.get(&key).await.is_some());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(c.get(&key).await.is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(c.get(&key).await.is_none(), "expired after ttl");
    }

    #[tokio::test(start_paused = true)]
    async fn a_label_past_its_freshness_is_kept_for_stale_if_error_only() {
        let mut cfg = config(Duration::from_secs(60));
        cfg.stale_if_error = Duration::from_secs(30);
        let c = LabelCache::new(&cfg, Duration::from_secs(1));
        let key = c.key(t("T7"));
        c.insert(
            key,
            CachedLabel::new(Bytes::from_static(b"pdf"), None, None),
        )
        .await;
        let held = c.get_stale(&key).await.expect("fresh is usable too");
        assert!(c.fresh(&held));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(c.get(&key).await.is_none(), "past ttl: a miss");
        assert!(c.get_hit(&key).await.is_none());
        assert!(!c.holds(&key).await);
        let stale = c.get_stale(&key).await.expect("kept for a storage fault");
        assert!(!c.fresh(&stale));
        assert_eq!(c.past_freshness(&stale), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(c.get(&key).await.is_none());
        assert!(
            c.get_stale(&key).await.is_none(),
            "past ttl + stale_if_error"
        );
    }

    #[tokio::test]
    async fn second_miss_waits_and_a_dropped_leader_releases_it() {
        let c = LabelCache::new(&config(Duration::from_secs(60)), Duration::from_secs(5));
        let key = c.key(t("T2"));
        let Fill::Leader(guard) = c.begin_fill(&key) else {
            panic!("first miss leads")
        };
        let Fill::Wait(rx) = c.begin_fill(&key) else {
            panic!("second miss waits")
        };
        let waiter = tokio::spawn(async move {
            let started = Instant::now();
            let mut rx = rx;
            while rx.changed().await.is_ok() {}
            started.elapsed()
        });
        drop(guard);
        let waited = waiter.await.unwrap();
        assert!(waited < Duration::from_secs(5));
        assert!(
            matches!(c.begin_fill(&key), Fill::Leader(_)),
            "lock released"
        );
    }

    #[tokio::test]
    async fn tee_caches_a_complete_body_as_one_copy() {
        let c = LabelCache::new(&config(Duration::from_secs(60)), Duration::from_secs(5));
        let key = c.key(t("T3"));
        let Fill::Leader(guard) = c.begin_fill(&key) else {
            panic!()
        };
        // Three frames sliced from one larger read buffer, as a client connection yields.
        let read_buf = Bytes::from_static(b"%PDF-1.4 hello, and the next response's head");
        let frames = [
            read_buf.slice(0..5),
            read_buf.slice(5..9),
            read_buf.slice(9..14),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(
            frames.map(|f| Ok::<_, BoxError>(Frame::data(f))),
        ));
        let tee = Tee::new(body.boxed(), 14, Filler::new(guard, None, None));
        assert_eq!(collect(tee.boxed()).await, b"%PDF-1.4 hello");
        // Kept before the last frame was handed on: no waiting needed.
        let label = c.get(&key).await.expect("complete body cached");
        assert_eq!(&label.data[..], b"%PDF-1.4 hello");
        // A copy of its own: holding the label does not pin the read buffer.
        let held = read_buf.as_ptr_range();
        assert!(!held.contains(&label.data.as_ptr()));
        // The fill lock was released with it.
        assert!(
            matches!(c.begin_fill(&key), Fill::Leader(_)),
            "lock released"
        );
    }

    #[tokio::test]
    async fn tee_with_wrong_length_caches_nothing() {
        let c = LabelCache::new(&config(Duration::from_secs(60)), Duration::from_secs(5));
        let key = c.key(t("T4"));
        let Fill::Leader(guard) = c.begin_fill(&key) else {
            panic!()
        };
        let body = crate::http::full(Bytes::from_static(b"short"));
        let tee = Tee::new(body, 100, Filler::new(guard, None, None));
        assert_eq!(collect(tee.boxed()).await, b"short");
        tokio::task::yield_now().await;
        assert!(c.get(&key).await.is_none());
        assert!(
            matches!(c.begin_fill(&key), Fill::Leader(_)),
            "lock released"
        );
    }
}
