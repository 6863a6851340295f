//! `/shipping-label/batch.pdf` and `/shipping-label/batch.zip`: many labels in one answer,
//! as named phases called in order:
//! read the list (every tracking number validated, before anything else) → take a batch
//! slot → check the session for every label → plan (which labels exist, regenerating the
//! missing ones) → stream the answer.
//!
//! Access is all or nothing: every label passes the session check (through the verdict
//! cache single prints use) before storage is even asked, and one denied label makes the
//! whole batch the ordinary denied answer, so a batch never tells which labels exist or
//! whose they are. Missing labels are known before the first byte (a HEAD per label not
//! in the hot cache), so a batch that lacks some fails with the list of them, or with
//! `partial=1` is served without them.
//!
//! The request is read in `asked` (the list, validated) and the answer written in
//! `stream`; this module holds the phases, the slots and counters, and the answer's head.
//!
//! The answer streams: a producer task fetches a bounded number of labels ahead (each
//! through the cache → storage path single labels use), writes each into the merged PDF
//! or the ZIP as it arrives, and hands the bytes to the response through a small channel.
//! The response starts once the first label is written, so a first label that cannot be
//! read is still a clean 502; a later one cuts the response (the client sees a broken
//! download, never a shorter file that looks complete). When the client goes away the
//! channel closes, the producer stops, and the fetches in flight are aborted.

mod asked;
mod stream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response};
use hyper::body::Incoming;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::whole::{Labels, Presence};
use super::{BatchFormat, Gateway, Reply, Trace};
use crate::auth::{ClientInfo, Source, Verdict};
use crate::config::BatchConfig;
use crate::error::{GatewayError, Refusal};
use crate::http::Body;
use crate::metrics::Scrape;
use crate::regenerate::Regenerated;
use crate::tracking::Tracking;
use asked::{read_asked, wants_json};
use stream::{body_from, Origin, Producer, CHANNEL_LABELS};

static X_LABELS_COUNT: HeaderName = HeaderName::from_static("x-labels-count");
static X_LABELS_MISSING: HeaderName = HeaderName::from_static("x-labels-missing");
static X_LABELS_MISSING_COUNT: HeaderName = HeaderName::from_static("x-labels-missing-count");

/// `X-Labels-Missing` lists at most this many bytes of tracking numbers (whole ones), so
/// the response head fits nginx's default 4 KiB `proxy_buffer_size`;
/// `X-Labels-Missing-Count` always has the full count.
const MISSING_HEADER_BYTES: usize = 2048;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub served: AtomicU64,
    pub labels: AtomicU64,
    pub busy: AtomicU64,
    pub abandoned: AtomicU64,
    pub cut: AtomicU64,
}

/// The batch slots and counters.
pub(super) struct Batches {
    slots: Arc<Semaphore>,
    pub stats: Arc<BatchStats>,
}

impl Batches {
    pub fn new(cfg: &BatchConfig) -> Batches {
        Batches {
            slots: Arc::new(Semaphore::new(cfg.max_concurrent)),
            stats: Arc::default(),
        }
    }

    /// Appends the batch counters in Prometheus text format.
    pub fn scrape_metrics(&self, scrape: &mut Scrape, labels: &Labels) {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.stats;
        for (name, help, value) in [
            (
                "label_gateway_batches_total",
                "Batches whose answer started.",
                g(&s.served),
            ),
            (
                "label_gateway_batch_labels_total",
                "Labels written into batch answers.",
                g(&s.labels),
            ),
            (
                "label_gateway_batches_busy_total",
                "Batches refused over batch.max_concurrent (503).",
                g(&s.busy),
            ),
            (
                "label_gateway_batches_abandoned_total",
                "Batches whose client went away before the end (fetching stopped).",
                g(&s.abandoned),
            ),
            (
                "label_gateway_batches_cut_total",
                "Batches cut after their answer started (a label failed).",
                g(&s.cut),
            ),
            (
                "label_gateway_whole_label_storage_requests_total",
                "Storage requests of batches and warm-ups (HEADs and GETs).",
                g(&labels.storage_requests),
            ),
        ] {
            scrape.counter(name, help, value);
        }
    }
}

impl Gateway {
    /// The batch path, phase by phase.
    pub(super) async fn batch(
        &self,
        parts: &Parts,
        body: Incoming,
        peer: SocketAddr,
        format: BatchFormat,
        request_id: &HeaderValue,
        trace: &mut Trace,
    ) -> Result<Reply, GatewayError> {
        if parts.method != Method::GET && parts.method != Method::POST {
            return Err(GatewayError::MethodNotAllowed { allow: "GET, POST" });
        }
        self.check_cookie_size(parts)?;
        let asked = read_asked(parts, body, &self.config.batch).await?;
        trace.labels = Some(asked.labels.len());
        let slot = self
            .batches
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                self.batches.stats.busy.fetch_add(1, Ordering::Relaxed);
                GatewayError::BatchesBusy
            })?;
        if self
            .check_every_label(parts, peer, request_id, &asked.labels, trace)
            .await?
            == Verdict::Deny
        {
            return Ok(Reply::Refused(self.denial(parts)));
        }
        let (items, missing) = self.plan(parts, request_id, &asked.labels).await?;
        if !missing.is_empty() && (!asked.partial || items.is_empty()) {
            return Ok(Reply::Refused(Refusal::LabelsMissing {
                missing,
                json: wants_json(parts),
            }));
        }
        let count = items.len();
        let body = self.start_stream(items, format, request_id, slot).await?;
        Ok(Reply::Response(batch_response(
            body, format, count, &missing,
        )))
    }

    /// Every label's session check, a bounded number at once, stopping at the first
    /// denial. The verdict cache is the one single prints use.
    async fn check_every_label(
        &self,
        parts: &Parts,
        peer: SocketAddr,
        request_id: &HeaderValue,
        labels: &[Tracking],
        trace: &mut Trace,
    ) -> Result<Verdict, GatewayError> {
        let cookie = self.auth.session_cookie(&parts.headers, parts.version);
        let cookie = cookie.as_deref();
        let client = ClientInfo {
            peer: peer.ip(),
            headers: &parts.headers,
            request_id,
            trusted_proxies: &self.trusted_proxies,
        };
        let mut checks = futures_util::stream::iter(labels.iter().copied())
            .map(|t| self.auth.decide(cookie, t, client))
            .buffer_unordered(self.config.batch.check_concurrency);
        // The access log says `app` when any label asked the app, and names the audit user
        // the app gave (one session: one user).
        let mut source = Source::Cache;
        while let Some(checked) = checks.next().await {
            let decision = checked.map_err(|e| GatewayError::AuthUnavailable(e.0))?;
            if decision.source != Source::Cache {
                source = decision.source;
            }
            if decision.verdict == Verdict::Deny {
                trace.auth = Some(decision.source);
                return Ok(Verdict::Deny);
            }
            if trace.user.is_none() {
                trace.user = decision.user;
            }
        }
        trace.auth = Some(source);
        Ok(Verdict::Allow)
    }

    /// Which labels exist (the hot cache, else a storage HEAD), a bounded number at once;
    /// a label storage lacks goes to regeneration as a single print's would. Returns the
    /// labels to write, in order, and the ones missing.
    async fn plan(
        &self,
        parts: &Parts,
        request_id: &HeaderValue,
        labels: &[Tracking],
    ) -> Result<(Vec<(Tracking, Origin)>, Vec<Tracking>), GatewayError> {
        let max = self.config.batch.max_label_bytes.as_u64();
        // A denied or cookieless request never gets here: the session check came first.
        let session = self
            .auth
            .session_key(&parts.headers, parts.version)
            .unwrap_or_default();
        let whole = self.whole.for_prints();
        let whole = &whole;
        let mut found = futures_util::stream::iter(labels.iter().copied())
            .map(|t| async move {
                let origin = match whole.presence(t).await? {
                    Presence::Hot => Some(Origin::Stored),
                    Presence::Stored { size } if size > max => {
                        return Err(too_large(t, size, max));
                    }
                    Presence::Stored { .. } => Some(Origin::Stored),
                    Presence::Absent => match &self.regenerator {
                        None => None,
                        Some(regen) => match &*regen.regenerate(t, session, request_id).await? {
                            Regenerated::Label(bytes) => Some(Origin::Regenerated(bytes.clone())),
                            Regenerated::Missing { .. } => None,
                        },
                    },
                };
                Ok((t, origin))
            })
            .buffered(self.config.batch.fetch_ahead);
        let mut items = Vec::with_capacity(labels.len());
        let mut missing = Vec::new();
        while let Some(planned) = found.next().await {
            match planned? {
                (t, Some(origin)) => items.push((t, origin)),
                (t, None) => missing.push(t),
            }
        }
        Ok((items, missing))
    }

    /// Starts the producer and waits for its first chunk: a first label that cannot be
    /// read fails the batch with its own status.
    async fn start_stream(
        &self,
        items: Vec<(Tracking, Origin)>,
        format: BatchFormat,
        request_id: &HeaderValue,
        slot: OwnedSemaphorePermit,
    ) -> Result<Body, GatewayError> {
        let (tx, mut rx) = mpsc::channel(CHANNEL_LABELS);
        let producer = Producer {
            labels: self.whole.for_prints(),
            stats: self.batches.stats.clone(),
            fetch_ahead: self.config.batch.fetch_ahead,
            max_label_bytes: self.config.batch.max_label_bytes.as_u64(),
            request_id: request_id.clone(),
            tx,
            _slot: slot,
        };
        tokio::spawn(producer.run(items, format));
        let first = match rx.recv().await {
            Some(Ok(message)) => message,
            Some(Err(e)) => return Err(e),
            None => {
                return Err(GatewayError::BadGateway(
                    "the batch ended before its first label".into(),
                ))
            }
        };
        self.batches.stats.served.fetch_add(1, Ordering::Relaxed);
        Ok(body_from(first, rx))
    }
}

fn too_large(tracking: Tracking, size: u64, max: u64) -> GatewayError {
    GatewayError::UnreadableLabel {
        tracking,
        reason: format!("it is {size} bytes, more than batch.max_label_bytes ({max})"),
    }
}

/// The streamed answer's head.
fn batch_response(
    body: Body,
    format: BatchFormat,
    count: usize,
    missing: &[Tracking],
) -> Response<Body> {
    let (content_type, disposition) = match format {
        BatchFormat::Pdf => (
            "application/pdf",
            format!("inline; filename=\"labels-{count}.pdf\""),
        ),
        BatchFormat::Zip => (
            "application/zip",
            format!("attachment; filename=\"labels-{count}.zip\""),
        ),
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::try_from(disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(X_LABELS_COUNT.clone(), HeaderValue::from(count));
    if !missing.is_empty() {
        let mut list = String::new();
        for t in missing {
            if list.len() + t.len() + 2 > MISSING_HEADER_BYTES {
                break;
            }
            if !list.is_empty() {
                list.push_str(", ");
            }
            list.push_str(t);
        }
        // Tracking numbers are [A-Za-z0-9_-]: always a valid header value.
        if let Ok(v) = HeaderValue::try_from(list) {
            h.insert(X_LABELS_MISSING.clone(), v);
        }
        h.insert(
            X_LABELS_MISSING_COUNT.clone(),
            HeaderValue::from(missing.len()),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Tracking {
        Tracking::parse(s).unwrap()
    }

    #[test]
    fn the_missing_header_lists_whole_numbers_within_its_budget() {
        let missing: Vec<Tracking> = (0..100).map(|i| t(&format!("{i:0>60}"))).collect();
        let resp = batch_response(crate::http::empty(), BatchFormat::Pdf, 3, &missing);
        let list = resp.headers()["x-labels-missing"].to_str().unwrap();
        assert!(list.len() <= MISSING_HEADER_BYTES);
        assert!(list.split(", ").all(|t| t.len() == 60));
        assert_eq!(resp.headers()["x-labels-missing-count"], "100");
        assert_eq!(
            resp.headers()["content-disposition"],
            "inline; filename=\"labels-3.pdf\""
        );
    }
}
