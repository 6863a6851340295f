//! Asking the Django app to regenerate a label that storage does not have.
//!
//! One regeneration per tracking number runs at a time: concurrent requests share its
//! outcome (moka coalesces them). "Cannot regenerate" (the app's 404/410) is remembered for
//! `negative_ttl`, so printers retrying in a loop do not hammer the carrier; failures (5xx,
//! timeouts) are never remembered. The regenerated PDF is read whole, bounded by
//! `[internal] max_upload_bytes`: it must be checked (`%PDF-`, length) before it is stored,
//! and labels are small.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use moka::future::Cache;
use moka::Expiry;

use crate::config::Config;
use crate::config::Secret;

/// What the app said.
#[derive(Debug, Clone)]
pub enum Regenerated {
    /// The new label's bytes (a checked PDF).
    Label(Bytes),
    /// The app has no label; maybe a carrier tracking page to offer instead.
    Missing { tracking_url: Option<String> },
}

/// How long a produced label is shared with late concurrent requests (storage has it soon).
const LABEL_SHARE: Duration = Duration::from_secs(10);

struct OutcomeExpiry {
    negative: Duration,
}

impl Expiry<Box<str>, Arc<Regenerated>> for OutcomeExpiry {
    fn expire_after_create(
        &self,
        _key: &Box<str>,
        value: &Arc<Regenerated>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(match **value {
            Regenerated::Label(_) => LABEL_SHARE,
            Regenerated::Missing { .. } => self.negative,
        })
    }
}

pub struct Regenerator {
    client: reqwest::Client,
    url: String,
    token: Option<Secret>,
    max_bytes: u64,
    outcomes: Cache<Box<str>, Arc<Regenerated>>,
    pub calls: AtomicU64,
}

impl Regenerator {
    /// `None` when `[regenerate] url` is empty (regeneration off).
    pub fn new(config: &Config) -> Result<Option<Regenerator>, reqwest::Error> {
        let r = &config.regenerate;
        if r.url.is_empty() {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(r.timeout.min(Duration::from_secs(5)))
            .timeout(r.timeout)
            .user_agent(concat!("label-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Some(Regenerator {
            client,
            url: r.url.clone(),
            token: r.token.clone(),
            max_bytes: config.internal.max_upload_bytes.as_u64(),
            outcomes: Cache::builder()
                .max_capacity(10_000)
                .expire_after(OutcomeExpiry {
                    negative: r.negative_ttl,
                })
                .build(),
            calls: AtomicU64::new(0),
        }))
    }

    /// The outcome for `tracking`, and whether this call is the one that asked the app
    /// (only that one stores the label).
    pub async fn regenerate(
        &self,
        tracking: &str,
        request_id: &HeaderValue,
    ) -> Result<(Arc<Regenerated>, bool), String> {
        let entry = self
            .outcomes
            .entry(Box::from(tracking))
            .or_try_insert_with(async { self.call_app(tracking, request_id).await.map(Arc::new) })
            .await
            .map_err(|e: Arc<String>| (*e).clone())?;
        let fresh = entry.is_fresh();
        Ok((entry.into_value(), fresh))
    }

    /// Forgets a remembered outcome (a label was ingested meanwhile).
    pub async fn forget(&self, tracking: &str) {
        self.outcomes.invalidate(tracking).await;
    }

    async fn call_app(
        &self,
        tracking: &str,
        request_id: &HeaderValue,
    ) -> Result<Regenerated, String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let url = self.url.replace("{tracking}", tracking);
        let mut req = self
            .client
            .post(url)
            .header("x-request-id", request_id.clone());
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        let resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        match status {
            200 => {
                let body = read_limited(resp, self.max_bytes).await?.ok_or_else(|| {
                    "regenerated label is larger than max_upload_bytes".to_string()
                })?;
                if !body.starts_with(b"%PDF-") {
                    return Err("the app's regenerated label is not a PDF".into());
                }
                Ok(Regenerated::Label(body))
            }
            404 | 410 => {
                let body = read_limited(resp, 16 * 1024).await.ok().flatten();
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

/// Reads a body of at most `max` bytes; `Ok(None)` when it is larger.
pub async fn read_limited(mut resp: reqwest::Response, max: u64) -> Result<Option<Bytes>, String> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Ok(None);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
        if (buf.len() + chunk.len()) as u64 > max {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// Names the failure without the URL's query or any header.
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the body".into()
    } else {
        "request failed".into()
    }
}
