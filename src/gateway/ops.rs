//! What operators and orchestrators ask of the gateway itself: readiness (both peers
//! answer, cached briefly), `/metrics`, and the request id every response carries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::respond::text;
use super::{Gateway, Reply};
use crate::error::GatewayError;
use crate::http::{full, Body, X_REQUEST_ID};
use crate::metrics::Scrape;

/// How long a readiness verdict is reused, so a busy orchestrator does not probe storage
/// on every poll.
const READY_CACHE: Duration = Duration::from_secs(2);

/// The last readiness verdict and when it was taken.
#[derive(Default)]
pub(super) struct Readiness {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

/// Request ids: the client's when it is a sane token, else a fresh one.
pub(super) struct RequestIds {
    seed: u64,
}

/// Fresh ids are numbered in blocks of this many per thread, so that numbering a request
/// writes no memory another thread writes too (one shared counter bounced between cores
/// on every request).
const ID_BLOCK: u64 = 1 << 16;

/// The next block of numbers a thread takes.
static NEXT_ID_BLOCK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's next number and the end of its block.
    static ID_NUMBERS: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// A number no other call in this process got.
fn next_id_number() -> u64 {
    ID_NUMBERS.with(|numbers| {
        let (mut next, mut end) = numbers.get();
        if next == end {
            next = NEXT_ID_BLOCK.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        numbers.set((next + 1, end));
        next
    })
}

impl RequestIds {
    pub fn new() -> RequestIds {
        RequestIds {
            seed: rand::random(),
        }
    }

    /// The client's `X-Request-Id` when it is a sane token, else a fresh one.
    pub fn for_request(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(v) = headers.get(&X_REQUEST_ID) {
            if is_sane_id(v.as_bytes()) {
                return v.clone();
            }
        }
        let hex = self.fresh();
        HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }

    /// A fresh id: 16 lowercase hex digits.
    pub fn fresh(&self) -> [u8; 16] {
        let n = next_id_number();
        // A bijective mix of the counter keeps ids unique per process and unguessable-ish.
        let id = (n ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.seed.rotate_left(17);
        let mut hex = [0u8; 16];
        for (i, digit) in hex.iter_mut().enumerate() {
            *digit = b"0123456789abcdef"[((id >> (60 - 4 * i)) & 0xf) as usize];
        }
        hex
    }
}

/// Whether a client's `X-Request-Id` is kept: 1 to 128 letters, digits and `-_.:`.
pub fn is_sane_id(b: &[u8]) -> bool {
    (1..=128).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

impl Gateway {
    /// `/readyz`: 200 when storage and the session check endpoint both answer, 503 while
    /// draining or when either does not.
    pub(super) async fn readyz(&self) -> Result<Reply, GatewayError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(GatewayError::NotReady);
        }
        let cached = self
            .readiness
            .last
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .filter(|(at, _)| at.elapsed() < READY_CACHE);
        let result = match cached {
            Some((_, r)) => r,
            None => {
                // Storage (signed HEAD of the bucket) and the app's check URL (any HTTP
                // status counts: it is reachable).
                let (storage, app) = tokio::join!(self.storage.probe(), self.auth.probe());
                let r = match (storage, app) {
                    (Ok(()), Ok(())) => Ok(()),
                    (Err(e), _) => Err(format!("storage: {e}")),
                    (_, Err(e)) => Err(format!("session check endpoint: {e}")),
                };
                if let Ok(mut g) = self.readiness.last.lock() {
                    *g = Some((Instant::now(), r.clone()));
                }
                r
            }
        };
        match result {
            Ok(()) => Ok(Reply::Response(text(StatusCode::OK, "ready\n"))),
            Err(e) => {
                tracing::warn!(error = %e, "not ready");
                Err(GatewayError::NotReady)
            }
        }
    }

    /// `/metrics` in the OpenMetrics text format.
    pub(super) async fn metrics_response(&self) -> Response<Body> {
        let mut scrape = Scrape::default();
        self.metrics.scrape(&mut scrape);
        if let Some(cache) = &self.cache {
            cache.settle().await;
            cache.scrape_metrics(&mut scrape);
        }
        self.batches.scrape_metrics(&mut scrape, &self.whole);
        self.auth.stats.scrape(&mut scrape);
        self.storage.scrape_metrics(&mut scrape);
        let out = scrape.render();
        let mut resp = Response::new(full(out));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_request_ids_are_unique_across_threads() {
        let ids = std::sync::Arc::new(RequestIds::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    (0..5000)
                        .map(|_| ids.for_request(&HeaderMap::new()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert_eq!(id.len(), 16, "{id:?}");
                assert!(seen.insert(id), "an id given twice");
            }
        }
        assert_eq!(seen.len(), 20_000);
    }

    #[test]
    fn a_sane_client_request_id_is_kept_and_another_replaced() {
        let ids = RequestIds::new();
        let mut h = HeaderMap::new();
        h.insert(
            X_REQUEST_ID.clone(),
            HeaderValue::from_static("abc-123.x:y_z"),
        );
        assert_eq!(ids.for_request(&h), "abc-123.x:y_z");
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("no spaces"));
        assert_ne!(ids.for_request(&h), "no spaces");
    }
}
