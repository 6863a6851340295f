//! Asking the Django app to regenerate a label that storage does not have.
//!
//! One regeneration per tracking number runs at a time: concurrent requests share its
//! outcome (moka coalesces them). "Cannot regenerate" (the app's 404/410) is remembered for
//! `negative_ttl`, so printers retrying in a loop do not hammer the carrier; failures (5xx,
//! timeouts) are never remembered. The regenerated PDF is read whole, bounded by
//! `[internal] max_upload_bytes`: it must be checked (`%PDF-`, length) before it is stored,
//! and labels are small.
//!
//! The request that asked the app also stores the new label back (never overwriting) and
//! primes the hot cache, in the background: the printer gets its bytes without waiting
//! for storage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::HeaderValue;
use moka::future::Cache;
use moka::Expiry;

use crate::cache::{CachedLabel, LabelCache};
use crate::config::Config;
use crate::http::full;
use crate::outbound::{describe, read_limited, Limited, USER_AGENT};
use crate::secret::Secret;
use crate::storage::{PutOutcome, Storage};
use crate::tracking::Tracking;

/// What the app said.
#[derive(Debug, Clone)]
pub enum Regenerated {
    /// The new label's bytes (a checked PDF).
    Label(Bytes),
    /// The app has no label; maybe a carrier tracking page to offer instead.
    Missing { tracking_url: Option<String> },
}

/// The most outcomes remembered at once, whatever their size.
const MAX_OUTCOMES: u64 = 10_000;

/// How long a produced label is shared with late concurrent requests (storage has it soon).
const LABEL_SHARE: Duration = Duration::from_secs(10);

struct OutcomeExpiry {
    negative: Duration,
}

impl Expiry<Tracking, Arc<Regenerated>> for OutcomeExpiry {
    fn expire_after_create(
        &self,
        _key: &Tracking,
        value: &Arc<Regenerated>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(match **value {
            Regenerated::Label(_) => LABEL_SHARE,
            Regenerated::Missing { .. } => self.negative,
        })
    }
}

/// Why no outcome came back.
#[derive(Debug, Clone)]
pub enum RegenerateError {
    /// The app could not be asked or did not answer usably (the detail is for the log).
    Unavailable(String),
    /// This session started too many regenerations; it may try again after this long.
    Throttled { retry_after: Duration },
}

/// Per-session token buckets: `burst` regenerations at once, refilled at `per_minute`.
struct SessionLimit {
    buckets: Cache<crate::auth::SessionHash, Arc<Mutex<Bucket>>>,
    burst: f64,
    per_second: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl SessionLimit {
    fn new(burst: u32, per_minute: u32) -> SessionLimit {
        let burst = f64::from(burst);
        let per_second = f64::from(per_minute) / 60.0;
        // A bucket untouched long enough to be full again is the same as no bucket.
        let refill = Duration::from_secs_f64(burst / per_second + 1.0);
        SessionLimit {
            buckets: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(refill)
                .build(),
            burst,
            per_second,
        }
    }

    /// Takes one token from `session`'s bucket, or says how long until there is one.
    async fn take(&self, session: crate::auth::SessionHash) -> Result<(), Duration> {
        let bucket = self
            .buckets
            .get_with(session, async {
                Arc::new(Mutex::new(Bucket {
                    tokens: self.burst,
                    at: Instant::now(),
                }))
            })
            .await;
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refilled = b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_second;
        b.tokens = refilled.min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
        }
    }
}

pub struct Regenerator {
    client: reqwest::Client,
    url: String,
    /// Replaced on key rotation (`SIGHUP`).
    token: ArcSwapOption<Secret>,
    max_bytes: u64,
    outcomes: Cache<Tracking, Arc<Regenerated>>,
    /// Where a regenerated label is stored back, and the cache it primes.
    storage: Arc<Storage>,
    cache: Option<Arc<LabelCache>>,
    limit: SessionLimit,
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
}

impl Regenerator {
    /// `None` when `[regenerate] url` is empty (regeneration off).
    pub fn new(
        config: &Config,
        storage: Arc<Storage>,
        cache: Option<Arc<LabelCache>>,
    ) -> Result<Option<Regenerator>, reqwest::Error> {
        let r = &config.regenerate;
        if r.url.is_empty() {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(r.timeout.min(Duration::from_secs(5)))
            .timeout(r.timeout)
            .user_agent(USER_AGENT)
            .build()?;
        // Each outcome weighs its bytes plus a share of `remember_bytes`, so both bounds
        // hold: the labels held never pass `remember_bytes`, and there are never more than
        // MAX_OUTCOMES of them (a "cannot regenerate" is tiny, but its entry is not).
        let per_outcome = (r.remember_bytes.as_u64() / MAX_OUTCOMES).max(256);
        Ok(Some(Regenerator {
            client,
            url: r.url.clone(),
            token: ArcSwapOption::from_pointee(r.token.clone()),
            max_bytes: config.internal.max_upload_bytes.as_u64(),
            outcomes: Cache::builder()
                .max_capacity(r.remember_bytes.as_u64())
                .weigher(move |_k: &Tracking, v: &Arc<Regenerated>| {
                    let bytes = match &**v {
                        Regenerated::Label(b) => b.len() as u64,
                        Regenerated::Missing { tracking_url } => {
                            tracking_url.as_ref().map_or(0, |u| u.len() as u64)
                        }
                    };
                    u32::try_from(bytes + per_outcome).unwrap_or(u32::MAX)
                })
                .expire_after(OutcomeExpiry {
                    negative: r.negative_ttl,
                })
                .build(),
            storage,
            cache,
            limit: SessionLimit::new(r.per_session_burst, r.per_session_per_minute),
            calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }))
    }

    /// The outcome for `tracking`, asked for by `session` (a hash of its cookie, keyed
    /// like the verdict cache). A remembered outcome costs the session nothing; a new
    /// call to the app takes one of its tokens. Concurrent calls share one call to the
    /// app; the one that made it also stores the new label back.
    pub async fn regenerate(
        &self,
        tracking: Tracking,
        session: crate::auth::SessionHash,
        request_id: &HeaderValue,
    ) -> Result<Arc<Regenerated>, RegenerateError> {
        if let Some(outcome) = self.outcomes.get(&tracking).await {
            return Ok(outcome);
        }
        if let Err(retry_after) = self.limit.take(session).await {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(RegenerateError::Throttled { retry_after });
        }
        let entry = self
            .outcomes
            .entry(tracking)
            .or_try_insert_with(async { self.call_app(tracking, request_id).await.map(Arc::new) })
            .await
            .map_err(|e: Arc<String>| RegenerateError::Unavailable((*e).clone()))?;
        let fresh = entry.is_fresh();
        let outcome = entry.into_value();
        if let (true, Regenerated::Label(bytes)) = (fresh, &*outcome) {
            self.store_back(tracking, bytes.clone());
        }
        Ok(outcome)
    }

    /// Uploads a regenerated label (never overwriting) and primes the cache, in the
    /// background.
    fn store_back(&self, tracking: Tracking, bytes: Bytes) {
        let storage = self.storage.clone();
        let cache = self.cache.clone();
        tokio::spawn(async move {
            let len = bytes.len() as u64;
            match storage
                .put(&tracking, full(bytes.clone()), len, false)
                .await
            {
                Ok(outcome) => {
                    tracing::info!(%tracking, ?outcome, "regenerated label stored");
                    if let (Some(cache), PutOutcome::Created { etag }) = (cache, outcome) {
                        let label = CachedLabel::fresh_pdf(
                            bytes,
                            etag.and_then(|e| HeaderValue::try_from(e).ok()),
                        );
                        cache.insert(cache.key(tracking), label).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(%tracking, error = %e, "regenerated label could not be stored")
                }
            }
        });
    }

    /// Sends `token` with every call to the app from now on (key rotation).
    pub fn set_token(&self, token: Option<Secret>) {
        self.token.store(token.map(Arc::new));
    }

    /// Forgets a remembered outcome (a label was ingested meanwhile).
    pub async fn forget(&self, tracking: Tracking) {
        self.outcomes.invalidate(&tracking).await;
    }

    async fn call_app(
        &self,
        tracking: Tracking,
        request_id: &HeaderValue,
    ) -> Result<Regenerated, String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let url = self.url.replace("{tracking}", tracking.as_str());
        let mut req = self
            .client
            .post(url)
            .header("x-request-id", request_id.clone());
        if let Some(token) = &*self.token.load() {
            req = req.bearer_auth(token.expose());
        }
        let resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        match status {
            200 => {
                let Limited::Body(body) = read_limited(resp, self.max_bytes).await? else {
                    return Err("regenerated label is larger than max_upload_bytes".into());
                };
                if !body.starts_with(b"%PDF-") {
                    return Err("the app's regenerated label is not a PDF".into());
                }
                Ok(Regenerated::Label(body))
            }
            404 | 410 => {
                let body = match read_limited(resp, 16 * 1024).await {
                    Ok(Limited::Body(b)) => Some(b),
                    _ => None,
                };
                let tracking_url = body
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v.get("tracking_url")?.as_str().map(str::to_string))
                    .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
                Ok(Regenerated::Missing { tracking_url })
            }
            s => Err(format!("regeneration endpoint answered {s}")),
        }
    }
}
