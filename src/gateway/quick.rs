//! The quick path: a whole label answered from memory below hyper (the connection lane of
//! `server::lane` reads the request head and writes the answer itself). It makes the
//! label path's own checks in the same order (cookie size, session verdict, hot cache)
//! but answers only when each is already settled in memory: a session allowed by a cached
//! verdict and a label in the hot cache. Anything else returns `None` and the request goes
//! the full way through hyper and [`Gateway::handle`], which answers it as always. The
//! connection keeps its last session cookie's hash and allowing verdict ([`SessionMemo`]:
//! only while the verdict's time in the cache lasts and nothing was invalidated since).
//!
//! The answer is the full path's answer to a whole-label hit, the same header lines in the
//! same order: the status line and the label headers are encoded once per cached label
//! ([`CachedLabel::hit_head`]), the request id and the date are appended per request, and
//! the metrics and the access line are the full path's.
// Numbers a peer sent are only ever used through checked or saturating arithmetic.
#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::route::{route, Route};
use super::Gateway;
use crate::auth::SessionMemo;
use crate::cache::CachedLabel;
use crate::http::X_REQUEST_ID;
use crate::metrics::{Outcome, RouteKind};

/// A request head as the lane parsed it: a `GET` or `HEAD` of HTTP/1.1 without a body,
/// a query, a range, a precondition or a connection option, with at most one `Cookie`
/// line (the lane sends any other request the full way without asking).
pub struct QuickRequest<'a> {
    pub head_only: bool,
    /// The request target, a path without a query.
    pub path: &'a str,
    /// The one `Cookie` line, when it is visible ASCII; `cookie_bytes` counts it anyway.
    pub cookie: Option<&'a str>,
    pub cookie_bytes: usize,
    /// The client's `X-Request-Id`.
    pub request_id: Option<&'a [u8]>,
}

/// A whole-label answer: [`QuickHit::head`] (shared by every hit of the label), then the
/// request's own header lines and the blank line (written into the caller's buffer), then
/// [`QuickHit::body`]. It holds the cached label itself: writing from it counts no
/// reference of the label's bytes, which every core's hits would share.
pub struct QuickHit {
    label: Arc<CachedLabel>,
    head_only: bool,
}

impl QuickHit {
    pub fn head(&self) -> &[u8] {
        self.label.hit_head.get().map_or(&[], |h| &h[..])
    }

    pub fn body(&self) -> &[u8] {
        if self.head_only {
            &[]
        } else {
            &self.label.data
        }
    }
}

impl Gateway {
    /// Answers `req` from memory when its session is allowed by a cached verdict and its
    /// label is hot; writes the request's header lines (id, date, `Connection: close` when
    /// `closing`) and the blank line into `tail`. `None`: the request goes the full way.
    pub async fn quick_hit(
        &self,
        req: &QuickRequest<'_>,
        memo: &mut SessionMemo,
        tail: &mut Vec<u8>,
        closing: bool,
    ) -> Option<QuickHit> {
        let started = Instant::now();
        let Route::Label(tracking) = route(req.path) else {
            return None;
        };
        let cache = self.cache.as_ref()?;
        // Over the limit: the full path answers 431.
        if req.cookie_bytes as u64 > self.config.server.max_cookie_bytes.as_u64() {
            return None;
        }
        let cookie = self.auth.session_cookie_in_line(req.cookie?)?;
        let user = self
            .auth
            .cached_allow(cookie, tracking, started, memo)
            .await?;
        let label = cache.get_hit(&cache.key(tracking)).await?;
        label
            .hit_head
            .get_or_init(|| self.encode_hit_head(tracking, &label));
        let bytes = if req.head_only { 0 } else { label.len };

        let fresh;
        let request_id = match req.request_id {
            Some(id) if super::ops::is_sane_id(id) => id,
            _ => {
                fresh = self.request_ids.fresh();
                &fresh[..]
            }
        };
        tail.clear();
        tail.extend_from_slice(X_REQUEST_ID.as_str().as_bytes());
        tail.extend_from_slice(b": ");
        tail.extend_from_slice(request_id);
        tail.extend_from_slice(b"\r\ndate: ");
        let now = SystemTime::now();
        with_http_date(now, |date| tail.extend_from_slice(date));
        if closing {
            tail.extend_from_slice(b"\r\nconnection: close");
        }
        tail.extend_from_slice(b"\r\n\r\n");

        self.metrics.requests.inc();
        self.metrics.quick_hits.inc();
        self.metrics.record_status(200);
        let elapsed = started.elapsed();
        self.metrics
            .request_duration
            .observe(RouteKind::Label, Outcome::Hit, elapsed);
        if self.config.log.access_log {
            crate::telemetry::access_at(
                &crate::telemetry::Access {
                    method: if req.head_only { "HEAD" } else { "GET" },
                    path: req.path,
                    status: 200,
                    bytes,
                    duration_us: elapsed.as_micros() as u64,
                    auth: crate::auth::Source::Cache.as_str(),
                    user: user.unwrap_or("-"),
                    cache: "hit",
                    labels: None,
                    // Checked above: letters, digits and `-_.:` only.
                    request_id: std::str::from_utf8(request_id).unwrap_or("-"),
                },
                now,
            );
        }
        Some(QuickHit {
            label,
            head_only: req.head_only,
        })
    }

    /// The status line and headers of a whole-label hit as hyper writes them (lowercase
    /// names, `name: value`), without the request id and the date.
    fn encode_hit_head(&self, tracking: crate::tracking::Tracking, label: &CachedLabel) -> Bytes {
        let headers = self.hit_headers(tracking, label);
        let mut head = Vec::with_capacity(320);
        head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for (name, value) in headers {
            if name == X_REQUEST_ID {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        Bytes::from(head)
    }
}

/// The current time as an HTTP date (`Tue, 01 Dec 2026 10:00:00 GMT`), formatted once per
/// second per thread as hyper does for its own `Date` headers.
fn with_http_date(now: SystemTime, f: impl FnOnce(&[u8])) {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, [u8; 29])> =
            const { std::cell::RefCell::new((u64::MAX, [0; 29])) };
    }
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == text.len() {
                text.copy_from_slice(formatted.as_bytes());
                *at = secs;
            }
        }
        f(&text[..]);
    });
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_an_http_date_of_now() {
        let mut seen = Vec::new();
        with_http_date(SystemTime::now(), |d| seen.extend_from_slice(d));
        let text = std::str::from_utf8(&seen).unwrap();
        let parsed = httpdate::parse_http_date(text).unwrap();
        let skew = SystemTime::now()
            .duration_since(parsed)
            .unwrap_or_default()
            .as_secs();
        assert!(skew <= 1, "{text}");
    }
}
