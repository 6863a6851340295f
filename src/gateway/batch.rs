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
//! The answer streams: a producer task fetches a bounded number of labels ahead (each
//! through the cache → storage path single labels use), writes each into the merged PDF
//! or the ZIP as it arrives, and hands the bytes to the response through a small channel.
//! The response starts once the first label is written, so a first label that cannot be
//! read is still a clean 502; a later one cuts the response (the client sees a broken
//! download, never a shorter file that looks complete). When the client goes away the
//! channel closes, the producer stops, and the fetches in flight are aborted.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::AbortOnDropHandle;

use super::whole::{Labels, Presence, Whole};
use super::{BatchFormat, Gateway, Reply, Trace};
use crate::auth::{ClientInfo, Source, Verdict};
use crate::batch::pdf::Merger;
use crate::batch::zip::ZipWriter;
use crate::config::BatchConfig;
use crate::error::{GatewayError, Refusal};
use crate::http::{Body, BoxError};
use crate::metrics::Scrape;
use crate::regenerate::Regenerated;
use crate::tracking::Tracking;

static X_LABELS_COUNT: HeaderName = HeaderName::from_static("x-labels-count");
static X_LABELS_MISSING: HeaderName = HeaderName::from_static("x-labels-missing");
static X_LABELS_MISSING_COUNT: HeaderName = HeaderName::from_static("x-labels-missing-count");

/// `X-Labels-Missing` lists at most this many bytes of tracking numbers (whole ones), so
/// the response head fits nginx's default 4 KiB `proxy_buffer_size`;
/// `X-Labels-Missing-Count` always has the full count.
const MISSING_HEADER_BYTES: usize = 2048;

/// Labels' worth of output waiting between the producer and the response: the producer
/// runs at most this far ahead of what the client has taken.
const CHANNEL_LABELS: usize = 2;

/// Labels up to this size are merged on the producer's own task (about 65 µs of parsing
/// at most); larger ones on the blocking pool, off the async workers.
const INLINE_MERGE_BYTES: usize = 256 * 1024;

/// What the producer hands the response: one label's chunks, or the last ones. A channel
/// that closes before `Last` (the producer failed or died) ends the body in an error, so
/// the client never takes a cut answer for a complete one.
enum Message {
    Label(Vec<Bytes>),
    Last(Vec<Bytes>),
}

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

/// What the client asked for: distinct labels in the order given, and `partial`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Asked {
    labels: Vec<Tracking>,
    partial: bool,
}

/// Where a planned label's bytes come from.
enum Origin {
    /// The hot cache or storage: read when its turn comes.
    Stored,
    /// Regenerated while planning (storage gets it in the background).
    Regenerated(Bytes),
}

/// A label's bytes on their way to the writer.
enum Pending {
    Ready(Bytes),
    Fetching(AbortOnDropHandle<Result<Whole, GatewayError>>),
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

/// The response body: `first`, then what the producer sends, ending in an error unless
/// the producer's `Last` arrived.
fn body_from(first: Message, mut rx: mpsc::Receiver<Result<Message, GatewayError>>) -> Body {
    let mut ended = false;
    let rest = futures_util::stream::poll_fn(move |cx| match rx.poll_recv(cx) {
        std::task::Poll::Ready(None) if !ended => {
            ended = true;
            std::task::Poll::Ready(Some(Err(GatewayError::BadGateway(
                "the batch stopped before its end".into(),
            ))))
        }
        other => other,
    });
    let frames = futures_util::stream::once(async move { Ok(first) })
        .chain(rest)
        .scan(false, |done, message| {
            let frames: Vec<Result<Frame<Bytes>, BoxError>> = match message {
                _ if *done => Vec::new(),
                Ok(Message::Label(chunks)) => {
                    chunks.into_iter().map(|c| Ok(Frame::data(c))).collect()
                }
                Ok(Message::Last(chunks)) => {
                    *done = true;
                    chunks.into_iter().map(|c| Ok(Frame::data(c))).collect()
                }
                Err(e) => vec![Err(BoxError::from(e))],
            };
            std::future::ready(Some(futures_util::stream::iter(frames)))
        })
        .flatten();
    BodyExt::boxed(StreamBody::new(frames))
}

/// The task that writes a batch: fetches ahead, writes each label as its turn comes,
/// and stops as soon as the client is gone. It holds the batch's slot until it ends.
struct Producer {
    labels: Labels,
    stats: Arc<BatchStats>,
    fetch_ahead: usize,
    max_label_bytes: u64,
    request_id: HeaderValue,
    tx: mpsc::Sender<Result<Message, GatewayError>>,
    _slot: OwnedSemaphorePermit,
}

/// The answer being written.
enum Output {
    Pdf(Merger),
    Zip(ZipWriter),
}

impl Producer {
    async fn run(self, items: Vec<(Tracking, Origin)>, format: BatchFormat) {
        let mut output = match format {
            BatchFormat::Pdf => Output::Pdf(Merger::new()),
            BatchFormat::Zip => Output::Zip(ZipWriter::new(std::time::SystemTime::now())),
        };
        let mut items = items.into_iter();
        let mut ahead: VecDeque<(Tracking, Pending)> = VecDeque::with_capacity(self.fetch_ahead);
        let mut written = 0usize;
        loop {
            while ahead.len() < self.fetch_ahead {
                let Some((t, origin)) = items.next() else {
                    break;
                };
                ahead.push_back((t, self.fetch(t, origin)));
            }
            let Some((tracking, pending)) = ahead.pop_front() else {
                break;
            };
            let chunks = match self.bytes_of(tracking, pending).await {
                Ok(bytes) => output.add(tracking, bytes).await,
                Err(e) => Err(e),
            };
            let chunks = match chunks {
                Ok(chunks) => chunks,
                Err(e) => return self.fail(tracking, written, e).await,
            };
            if self.tx.send(Ok(Message::Label(chunks))).await.is_err() {
                return self.abandoned(written);
            }
            written += 1;
            self.stats.labels.fetch_add(1, Ordering::Relaxed);
        }
        let tail = match output {
            Output::Pdf(m) => m.finish(),
            Output::Zip(z) => z.finish(),
        };
        let last = Message::Last(vec![Bytes::from(tail)]);
        if self.tx.send(Ok(last)).await.is_err() {
            self.abandoned(written);
        }
    }

    /// Starts reading a stored label in its own task (so it keeps moving, and a single
    /// request waiting on the same fill lock is never held up by this batch's client).
    fn fetch(&self, tracking: Tracking, origin: Origin) -> Pending {
        match origin {
            Origin::Regenerated(bytes) => Pending::Ready(bytes),
            Origin::Stored => {
                let labels = self.labels.clone();
                let max = self.max_label_bytes;
                Pending::Fetching(AbortOnDropHandle::new(tokio::spawn(async move {
                    labels.load(tracking, max).await
                })))
            }
        }
    }

    async fn bytes_of(&self, tracking: Tracking, pending: Pending) -> Result<Bytes, GatewayError> {
        let whole = match pending {
            Pending::Ready(bytes) => return Ok(bytes),
            Pending::Fetching(task) => task.await.map_err(|e| {
                GatewayError::BadGateway(format!("label {tracking}: reading it failed: {e}"))
            })??,
        };
        match whole {
            Whole::Bytes(bytes) => Ok(bytes),
            Whole::TooLarge { size } => Err(too_large(tracking, size, self.max_label_bytes)),
            // It was there when the batch was planned.
            Whole::Absent => Err(GatewayError::BadGateway(format!(
                "label {tracking} disappeared from storage during the batch"
            ))),
        }
    }

    /// A label failed: before the answer started, the error is the answer; after, the
    /// response is cut and the log says why.
    async fn fail(&self, tracking: Tracking, written: usize, e: GatewayError) {
        if written > 0 {
            self.stats.cut.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                request_id = self.request_id.to_str().unwrap_or("-"),
                %tracking,
                written,
                error = %e,
                "batch cut short: the client gets a broken download, not a short file"
            );
        }
        let _ = self.tx.send(Err(e)).await;
    }

    fn abandoned(&self, written: usize) {
        self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            request_id = self.request_id.to_str().unwrap_or("-"),
            written,
            "batch abandoned by its client: fetching stopped"
        );
    }
}

impl Output {
    /// The chunks that carry `bytes` into the answer.
    async fn add(&mut self, tracking: Tracking, bytes: Bytes) -> Result<Vec<Bytes>, GatewayError> {
        let unreadable = |reason: String| GatewayError::UnreadableLabel { tracking, reason };
        match self {
            Output::Pdf(merger) => {
                // A parser panic on a hostile file fails this label (and its batch) only.
                let added = if bytes.len() <= INLINE_MERGE_BYTES {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| merger.add(&bytes)))
                        .map_err(|_| unreadable("the PDF parser failed on it".into()))?
                } else {
                    // A large label takes milliseconds to parse: off the async workers.
                    let mut taken = std::mem::take(merger);
                    let (taken, added) = tokio::task::spawn_blocking(move || {
                        let added = taken.add(&bytes);
                        (taken, added)
                    })
                    .await
                    .map_err(|_| unreadable("the PDF parser failed on it".into()))?;
                    *merger = taken;
                    added
                };
                let chunk = added.map_err(|e| unreadable(e.0))?;
                Ok(vec![Bytes::from(chunk)])
            }
            Output::Zip(zip) => {
                if !bytes.starts_with(b"%PDF-") {
                    return Err(unreadable("it does not start with %PDF-".into()));
                }
                let header = zip
                    .add(&format!("{tracking}.pdf"), &bytes)
                    .map_err(|e| unreadable(e.to_string()))?;
                Ok(vec![Bytes::from(header), bytes])
            }
        }
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

/// Whether the client asked for JSON rather than a page: `application/json` in `Accept`,
/// before any `text/html`.
fn wants_json(parts: &Parts) -> bool {
    let accept = parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    match (accept.find("application/json"), accept.find("text/html")) {
        (Some(json), Some(html)) => json < html,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Reads the list: `t=` (repeated or comma-separated) and `partial=` from the query, and
/// for a POST also from a form body or JSON `{"tracking": [...], "partial": true}`. Every
/// tracking number is validated here, before any session check or storage call.
async fn read_asked(
    parts: &Parts,
    body: Incoming,
    cfg: &BatchConfig,
) -> Result<Asked, GatewayError> {
    let mut list = List::new(cfg.max_labels);
    if let Some(query) = parts.uri.query() {
        list.form(query.as_bytes())?;
    }
    if parts.method == Method::POST {
        // Each label is at most 64 characters plus its field's punctuation.
        let limit = cfg.max_labels * 96 + 4096;
        let raw = http_body_util::Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    GatewayError::PayloadTooLarge(format!(
                        "batch request body larger than {limit} bytes"
                    ))
                } else {
                    GatewayError::BadRequest(format!("request body: {e}"))
                }
            })?
            .to_bytes();
        if !raw.is_empty() {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase())
                .unwrap_or_default();
            match content_type.as_str() {
                "application/x-www-form-urlencoded" => list.form(&raw)?,
                "application/json" => list.json(&raw)?,
                _ => {
                    return Err(GatewayError::UnsupportedMediaType(
                        "send the list as a form (t=...&t=...) or as JSON {\"tracking\": [...]}"
                            .into(),
                    ))
                }
            }
        }
    }
    if list.asked.labels.is_empty() {
        return Err(GatewayError::BadRequest(
            "no tracking numbers: give t=... (repeated or comma-separated)".into(),
        ));
    }
    Ok(list.asked)
}

/// The list being read: distinct labels in first-seen order, bounded.
struct List {
    asked: Asked,
    seen: HashSet<Tracking>,
    max: usize,
}

impl List {
    fn new(max: usize) -> List {
        List {
            asked: Asked::default(),
            seen: HashSet::new(),
            max,
        }
    }

    fn push(&mut self, raw: &str) -> Result<(), GatewayError> {
        let t = Tracking::parse(raw).map_err(|_| {
            let shown: String = raw.chars().take(80).collect();
            GatewayError::BadRequest(format!(
                "invalid tracking number {shown:?}: must be 1-64 characters of A-Z a-z 0-9 _ -"
            ))
        })?;
        if self.seen.insert(t) {
            if self.asked.labels.len() == self.max {
                return Err(GatewayError::PayloadTooLarge(format!(
                    "more than {} labels in one batch (batch.max_labels)",
                    self.max
                )));
            }
            self.asked.labels.push(t);
        }
        Ok(())
    }

    fn form(&mut self, raw: &[u8]) -> Result<(), GatewayError> {
        for (key, value) in url::form_urlencoded::parse(raw) {
            match &*key {
                "t" => {
                    for piece in value.split(',') {
                        self.push(piece)?;
                    }
                }
                "partial" => self.asked.partial = flag(&value)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn json(&mut self, raw: &[u8]) -> Result<(), GatewayError> {
        #[derive(serde::Deserialize)]
        struct Body {
            tracking: Vec<String>,
            #[serde(default)]
            partial: Option<bool>,
        }
        let body: Body = serde_json::from_slice(raw).map_err(|_| {
            GatewayError::BadRequest(
                "expected JSON {\"tracking\": [\"1Z...\", ...]} (and optionally \"partial\": true)"
                    .into(),
            )
        })?;
        for t in &body.tracking {
            self.push(t)?;
        }
        if let Some(partial) = body.partial {
            self.asked.partial = partial;
        }
        Ok(())
    }
}

fn flag(v: &str) -> Result<bool, GatewayError> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(GatewayError::BadRequest("partial must be 1 or 0".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Tracking {
        Tracking::parse(s).unwrap()
    }

    fn form(max: usize, raw: &str) -> Result<Asked, GatewayError> {
        let mut list = List::new(max);
        list.form(raw.as_bytes())?;
        Ok(list.asked)
    }

    #[test]
    fn repeated_and_comma_separated_lists_keep_the_first_place_of_each() {
        let asked = form(10, "t=B&t=A,C&x=1&t=B,D&partial=1").unwrap();
        assert_eq!(asked.labels, vec![t("B"), t("A"), t("C"), t("D")]);
        assert!(asked.partial);
        let asked = form(10, "t=A%2CB").unwrap();
        assert_eq!(
            asked.labels,
            vec![t("A"), t("B")],
            "an encoded comma splits too"
        );
    }

    #[test]
    fn the_first_bad_tracking_number_is_named() {
        let e = form(10, "t=OK1&t=bad.one&t=also%2Fbad").unwrap_err();
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains("\"bad.one\""), "{e}");
        let e = form(10, "t=A,,B").unwrap_err();
        assert!(e.to_string().contains("\"\""), "{e}");
        let e = form(10, "t=A&partial=maybe").unwrap_err();
        assert!(e.to_string().contains("partial"), "{e}");
    }

    #[test]
    fn more_distinct_labels_than_the_limit_is_413_naming_it() {
        assert!(form(3, "t=A,B,C,A,B,C").is_ok(), "repeats do not count");
        let e = form(3, "t=A,B,C,D").unwrap_err();
        assert_eq!(e.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.to_string().contains("more than 3 labels"), "{e}");
    }

    #[test]
    fn json_lists_are_read_like_forms() {
        let mut list = List::new(10);
        list.json(br#"{"tracking": ["A", "B", "A"], "partial": true}"#)
            .unwrap();
        assert_eq!(list.asked.labels, vec![t("A"), t("B")]);
        assert!(list.asked.partial);
        let mut list = List::new(10);
        assert!(list.json(br#"{"tracking": "A"}"#).is_err());
        assert!(list.json(br#"{"tracking": ["A/B"]}"#).is_err());
    }

    #[tokio::test]
    async fn a_body_whose_producer_stops_before_the_last_chunk_ends_in_an_error() {
        let chunk = |s: &'static str| vec![Bytes::from_static(s.as_bytes())];
        let (tx, rx) = mpsc::channel(2);
        tx.send(Ok(Message::Label(chunk("b")))).await.unwrap();
        tx.send(Ok(Message::Last(chunk("c")))).await.unwrap();
        drop(tx);
        let whole = body_from(Message::Label(chunk("a")), rx).collect().await;
        assert_eq!(whole.unwrap().to_bytes(), "abc");

        let (tx, rx) = mpsc::channel(2);
        tx.send(Ok(Message::Label(chunk("b")))).await.unwrap();
        drop(tx);
        let cut = body_from(Message::Label(chunk("a")), rx).collect().await;
        assert!(
            cut.is_err(),
            "a producer gone before Last must not look complete"
        );
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
