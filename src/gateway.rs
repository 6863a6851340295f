//! Routing and the ordered phases of a request: route → auth → cache → storage → respond.
//!
//! [`Gateway::handle`] is the whole request path, read top to bottom. Each phase returns a
//! value or a [`GatewayError`]; the error becomes a response in `error.rs` only.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::auth::{Authenticator, ClientInfo, Source, Verdict};
use crate::cache::{CachedLabel, Fill, LabelCache, TeeBody};
use crate::config::{Config, OnDeny};
use crate::error::GatewayError;
use crate::http::{
    cache_control, empty, full, parse_range, Body, Conditions, LabelHeaders, Precondition,
    RangeRequest, Validators, X_REQUEST_ID,
};
use crate::metrics::Metrics;
use crate::regenerate::{Regenerated, Regenerator};
use crate::storage::{Fetch, GetRequest, ObjectHead, Storage};

/// Path prefix of the label route.
pub const LABEL_PREFIX: &str = "/shipping-label/";

/// Which routes a listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The only listener: every route.
    Combined,
    /// The public one when `internal_listen` is set: labels and health only.
    Public,
    /// `internal_listen`: `/internal/...`, `/metrics` and health.
    Internal,
}

/// Where a path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// A label, with a tracking number that passed validation.
    Label(&'a str),
    /// The label route with a tracking number that did not.
    BadTracking,
    Healthz,
    Readyz,
    Metrics,
    /// `/internal/...`: the rest of the path after `/internal/`.
    Internal(&'a str),
    NotFound,
}

/// Maps a raw (still percent-encoded) path to a route. Tracking numbers are checked on
/// the raw bytes, so `%2e`, `..`, `/` and anything non-ASCII never pass.
pub fn route(path: &str) -> Route<'_> {
    if let Some(rest) = path.strip_prefix(LABEL_PREFIX) {
        let tracking = rest.strip_suffix('/').unwrap_or(rest);
        return if valid_tracking(tracking) {
            Route::Label(tracking)
        } else {
            Route::BadTracking
        };
    }
    if path == "/shipping-label" {
        return Route::BadTracking;
    }
    match path {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        _ => match path.strip_prefix("/internal/") {
            Some(rest) => Route::Internal(rest),
            None => Route::NotFound,
        },
    }
}

/// `[A-Za-z0-9_-]{1,64}`: can never form a storage key outside `{location}/`.
pub fn valid_tracking(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Characters escaped in the `next=` parameter (Django keeps `/` readable too).
const NEXT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What the access log line says about a request besides method, path and status.
#[derive(Debug, Default)]
struct Trace {
    auth: Option<Source>,
    cache: Option<bool>,
}

/// Readiness, cached so a busy orchestrator does not probe storage on every poll.
#[derive(Default)]
struct Readiness {
    last: std::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

const READY_CACHE: Duration = Duration::from_secs(2);

pub struct Gateway {
    pub config: Arc<Config>,
    pub auth: Authenticator,
    pub storage: Arc<Storage>,
    /// `None` when `[cache] enabled = false`.
    pub cache: Option<Arc<LabelCache>>,
    /// `None` when `[regenerate] url` is empty.
    pub regenerator: Option<Regenerator>,
    /// Downloads carrier labels for `/internal/labels/{tracking}/fetch`.
    pub(crate) carrier: reqwest::Client,
    pub metrics: Metrics,
    cache_control: HeaderValue,
    draining: AtomicBool,
    readiness: Readiness,
    request_seq: AtomicU64,
    request_seed: u64,
}

impl Gateway {
    pub fn new(config: Config) -> Result<Gateway, GatewayError> {
        let storage = Storage::from_config(&config)?;
        let auth = Authenticator::new(&config.auth)
            .map_err(|e| GatewayError::Internal(format!("HTTP client: {e}")))?;
        let cache = config.cache.enabled.then(|| {
            Arc::new(LabelCache::new(
                &config.cache,
                storage.identity(),
                config.storage.first_byte_timeout,
            ))
        });
        let regenerator = Regenerator::new(&config)
            .map_err(|e| GatewayError::Internal(format!("HTTP client: {e}")))?;
        let carrier = crate::internal::carrier_client(&config.internal)
            .map_err(|e| GatewayError::Internal(format!("HTTP client: {e}")))?;
        Ok(Gateway {
            cache,
            regenerator,
            carrier,
            cache_control: cache_control(config.server.response_max_age),
            config: Arc::new(config),
            auth,
            storage: Arc::new(storage),
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
            readiness: Readiness::default(),
            request_seq: AtomicU64::new(0),
            request_seed: rand::random(),
        })
    }

    /// Marks the gateway as draining: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// The whole request path.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        listener: Listener,
    ) -> Response<Body> {
        let started = self.config.log.access_log.then(Instant::now);
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = req.into_parts();
        let request_id = self.request_id(&parts.headers);
        let mut trace = Trace::default();
        let path = parts.uri.path();
        let is_internal = path.starts_with("/internal/");
        let outcome = {
            let mut work = std::pin::pin!(self.dispatch(
                &parts,
                body,
                peer,
                listener,
                &request_id,
                &mut trace
            ));
            // A cache hit finishes on its first poll: only a request that has to wait gets
            // a `request_timeout` timer (creating one costs more than the hit itself).
            match std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
                Poll::Ready(outcome) => outcome,
                Poll::Pending => tokio::time::timeout(self.config.server.request_timeout, work)
                    .await
                    .unwrap_or(Err(GatewayError::UpstreamTimeout { what: "request" })),
            }
        };
        let mut resp = match outcome {
            Ok(resp) => resp,
            Err(e) => {
                let status = e.status();
                if status.is_server_error() {
                    tracing::warn!(request_id = ?request_id, path, error = %e, "request failed");
                    if matches!(e, GatewayError::Storage(_)) {
                        self.metrics.storage_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                e.into_response(self.config.server.retry_after.as_secs(), is_internal)
            }
        };
        resp.headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id.clone());
        let status = resp.status().as_u16();
        self.metrics.record_status(status);
        if let Some(started) = started {
            let bytes = http_body::Body::size_hint(resp.body())
                .exact()
                .or_else(|| {
                    resp.headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|s| s.parse().ok())
                })
                .unwrap_or(0);
            tracing::info!(
                target: "access",
                method = %parts.method,
                path,
                status,
                bytes,
                duration_us = started.elapsed().as_micros() as u64,
                auth = trace.auth.map_or("-", Source::as_str),
                cache = match trace.cache { Some(true) => "hit", Some(false) => "miss", None => "-" },
                request_id = request_id.to_str().unwrap_or("-"),
            );
        }
        resp
    }

    async fn dispatch(
        &self,
        parts: &Parts,
        body: Incoming,
        peer: SocketAddr,
        listener: Listener,
        request_id: &HeaderValue,
        trace: &mut Trace,
    ) -> Result<Response<Body>, GatewayError> {
        let route = route(parts.uri.path());
        let internal_ok = listener != Listener::Public;
        let public_ok = listener != Listener::Internal;
        match route {
            Route::BadTracking if public_ok => Err(GatewayError::BadTracking),
            Route::Label(tracking) if public_ok => {
                if parts.method != Method::GET && parts.method != Method::HEAD {
                    return Err(GatewayError::MethodNotAllowed { allow: "GET, HEAD" });
                }
                self.serve_label(parts, tracking, peer, request_id, trace)
                    .await
            }
            Route::Healthz => Ok(text(StatusCode::OK, "ok\n")),
            // Operator routes are boxed so that their state does not size every request's
            // future (moved several times per request).
            Route::Readyz => Box::pin(self.readyz()).await,
            Route::Metrics if internal_ok => Ok(Box::pin(self.metrics_response()).await),
            Route::Internal(rest) if internal_ok => {
                Box::pin(self.internal(parts, body, rest)).await
            }
            _ => Err(GatewayError::RouteNotFound),
        }
    }

    /// route → auth → (cache) → storage → respond, for one label.
    async fn serve_label(
        &self,
        parts: &Parts,
        tracking: &str,
        peer: SocketAddr,
        request_id: &HeaderValue,
        trace: &mut Trace,
    ) -> Result<Response<Body>, GatewayError> {
        let head_only = parts.method == Method::HEAD;
        let cookie_bytes: usize = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.len())
            .sum();
        if cookie_bytes as u64 > self.config.server.max_cookie_bytes.as_u64() {
            return Err(GatewayError::HeaderTooLarge);
        }

        // Auth: always first, before any cache or storage access.
        let cookie = self.auth.session_cookie(&parts.headers);
        let client = ClientInfo {
            peer: peer.ip(),
            headers: &parts.headers,
            request_id,
        };
        let (verdict, source) = self
            .auth
            .check(cookie.as_deref(), tracking, client)
            .await
            .map_err(|e| GatewayError::AuthUnavailable(e.0))?;
        trace.auth = Some(source);
        if verdict == Verdict::Deny {
            self.metrics.denied.fetch_add(1, Ordering::Relaxed);
            return Err(self.denied(parts));
        }

        // Cache, then storage.
        let conditions = Conditions::from_headers(&parts.headers);
        let range = match parse_range(parts.headers.get(header::RANGE)) {
            RangeRequest::Single(spec) if !head_only => Some(spec),
            _ => None,
        };
        let mut fill = None;
        if let Some(cache) = &self.cache {
            let key = cache.key(tracking);
            if let Some(label) = cache.get(&key).await {
                trace.cache = Some(true);
                return self.memory_response(tracking, &label, &conditions, range, head_only, true);
            }
            trace.cache = Some(false);
            // Only a plain GET can fill the cache; the rest go straight to storage.
            if range.is_none() && !head_only && conditions.is_empty() {
                match cache.begin_fill(&key) {
                    Fill::Leader(guard) => fill = Some(guard),
                    Fill::Wait(waiters) => {
                        cache.wait(waiters).await;
                        if let Some(label) = cache.get(&key).await {
                            trace.cache = Some(true);
                            return self.memory_response(
                                tracking,
                                &label,
                                &conditions,
                                range,
                                head_only,
                                true,
                            );
                        }
                    }
                }
            }
        } else {
            trace.cache = Some(false);
        }
        let mut get = GetRequest {
            tracking,
            range,
            conditions: &conditions,
            head_only,
        };
        self.metrics.storage_fetches.fetch_add(1, Ordering::Relaxed);
        // The storage and regenerate calls are boxed: a hit should not carry (and move)
        // their state.
        let mut fetch = Box::pin(self.storage.get(get)).await?;
        if let Fetch::Found { head, .. } = &fetch {
            if head.range.is_some() && !conditions.range_applies(&validators(head)) {
                // If-Range no longer matches: the whole label, per RFC 9110 §13.1.5.
                get.range = None;
                fetch = Box::pin(self.storage.get(get)).await?;
            }
        }
        if let (Some(guard), Some(cache), Fetch::Found { head, body }) =
            (fill, &self.cache, &mut fetch)
        {
            if head.range.is_none() && cache.admits(head.content_length) {
                let inner = std::mem::replace(body, empty());
                *body = http_body_util::BodyExt::boxed(TeeBody::new(
                    inner,
                    head.content_length,
                    head.content_type.clone(),
                    head.etag.clone(),
                    head.last_modified.clone(),
                    guard,
                ));
            }
            // Otherwise the guard drops here and any waiters fetch on their own.
        }
        match fetch {
            Fetch::Found { head, body } => {
                self.label_response(tracking, &head, body, &conditions, false)
            }
            Fetch::NotModified {
                etag,
                last_modified,
            } => {
                let head = ObjectHead {
                    content_length: 0,
                    total_size: 0,
                    range: None,
                    content_type: None,
                    etag,
                    last_modified,
                };
                Ok(self.not_modified(tracking, &head, false))
            }
            Fetch::PreconditionFailed => Err(GatewayError::PreconditionFailed),
            Fetch::RangeNotSatisfiable { size } => Err(GatewayError::RangeNotSatisfiable { size }),
            Fetch::NotFound => {
                Box::pin(self.missing(tracking, request_id, &conditions, range, head_only)).await
            }
        }
    }

    /// Builds the 200/206 (or 304/412 after the gateway's own precondition check).
    fn label_response(
        &self,
        tracking: &str,
        head: &ObjectHead,
        body: Body,
        conditions: &Conditions,
        hit: bool,
    ) -> Result<Response<Body>, GatewayError> {
        match precondition(conditions, head) {
            Precondition::NotModified => return Ok(self.not_modified(tracking, head, hit)),
            Precondition::Failed => return Err(GatewayError::PreconditionFailed),
            Precondition::Proceed => {}
        }
        let mut resp = Response::new(body);
        let h = resp.headers_mut();
        // Label headers, Content-Length, Content-Range, X-Request-Id and hyper's Date: sized
        // once instead of growing (and rehashing) past the default eight.
        h.reserve(12);
        self.label_headers(tracking, head, hit).write(h);
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(head.content_length),
        );
        if let Some((start, end)) = head.range {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::try_from(format!("bytes {start}-{end}/{}", head.total_size))
            {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        Ok(resp)
    }

    /// Storage has no such label: ask the app to regenerate it (GET only), else the
    /// "label missing" page.
    async fn missing(
        &self,
        tracking: &str,
        request_id: &HeaderValue,
        conditions: &Conditions,
        range: Option<crate::http::RangeSpec>,
        head_only: bool,
    ) -> Result<Response<Body>, GatewayError> {
        let regen = match &self.regenerator {
            Some(r) if !head_only => r,
            _ => {
                return Err(GatewayError::LabelMissing {
                    tracking: tracking.to_string(),
                    tracking_url: self.tracking_url(tracking),
                })
            }
        };
        let (outcome, fresh) = regen
            .regenerate(tracking, request_id)
            .await
            .map_err(GatewayError::RegenerateUnavailable)?;
        match &*outcome {
            Regenerated::Missing { tracking_url } => Err(GatewayError::LabelMissing {
                tracking: tracking.to_string(),
                tracking_url: tracking_url.clone().or_else(|| self.tracking_url(tracking)),
            }),
            Regenerated::Label(bytes) => {
                if fresh {
                    self.store_regenerated(tracking, bytes.clone());
                }
                let label = Arc::new(CachedLabel::new(
                    bytes.clone(),
                    Some(HeaderValue::from_static("application/pdf")),
                    None,
                    HeaderValue::try_from(httpdate::fmt_http_date(std::time::SystemTime::now()))
                        .ok(),
                ));
                self.memory_response(tracking, &label, conditions, range, head_only, false)
            }
        }
    }

    /// Uploads a regenerated label (never overwriting) and primes the cache, in the
    /// background: the printer gets its bytes without waiting for storage.
    fn store_regenerated(&self, tracking: &str, bytes: bytes::Bytes) {
        let storage = self.storage.clone();
        let cache = self.cache.clone();
        let tracking = tracking.to_string();
        tokio::spawn(async move {
            let len = bytes.len() as u64;
            match storage
                .put(&tracking, full(bytes.clone()), len, false)
                .await
            {
                Ok(outcome) => {
                    tracing::info!(tracking, ?outcome, "regenerated label stored");
                    if let (Some(cache), crate::storage::PutOutcome::Created { etag }) =
                        (cache, outcome)
                    {
                        let label = CachedLabel::new(
                            bytes,
                            Some(HeaderValue::from_static("application/pdf")),
                            etag.and_then(|e| HeaderValue::try_from(e).ok()),
                            HeaderValue::try_from(httpdate::fmt_http_date(
                                std::time::SystemTime::now(),
                            ))
                            .ok(),
                        );
                        cache.insert(cache.key(&tracking), label).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(tracking, error = %e, "regenerated label could not be stored")
                }
            }
        });
    }

    /// A label from memory (a cache hit, or a regenerated label), with the same semantics
    /// and headers as from storage.
    fn memory_response(
        &self,
        tracking: &str,
        label: &std::sync::Arc<CachedLabel>,
        conditions: &Conditions,
        range: Option<crate::http::RangeSpec>,
        head_only: bool,
        hit: bool,
    ) -> Result<Response<Body>, GatewayError> {
        let mut head = ObjectHead {
            content_length: label.len,
            total_size: label.len,
            range: None,
            content_type: label.content_type.clone(),
            etag: label.etag.clone(),
            last_modified: label.last_modified.clone(),
        };
        match precondition(conditions, &head) {
            Precondition::NotModified => return Ok(self.not_modified(tracking, &head, hit)),
            Precondition::Failed => return Err(GatewayError::PreconditionFailed),
            Precondition::Proceed => {}
        }
        if let Some(spec) = range.filter(|_| conditions.range_applies(&validators(&head))) {
            let r = spec
                .resolve(label.len)
                .ok_or(GatewayError::RangeNotSatisfiable {
                    size: Some(label.len),
                })?;
            head.range = Some((r.start, r.end));
            head.content_length = r.len();
        }
        let body = if head_only {
            empty()
        } else {
            label.body(head.range)
        };
        self.label_response(tracking, &head, body, &Conditions::default(), hit)
    }

    fn not_modified(&self, tracking: &str, head: &ObjectHead, hit: bool) -> Response<Body> {
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        self.label_headers(tracking, head, hit)
            .write(resp.headers_mut());
        resp.headers_mut().remove(header::CONTENT_TYPE);
        resp
    }

    fn label_headers<'a>(
        &'a self,
        tracking: &'a str,
        head: &'a ObjectHead,
        hit: bool,
    ) -> LabelHeaders<'a> {
        LabelHeaders {
            tracking,
            content_type: head.content_type.as_ref(),
            etag: head.etag.as_ref(),
            last_modified: head.last_modified.as_ref(),
            cache_control: &self.cache_control,
            hit,
        }
    }

    fn denied(&self, parts: &Parts) -> GatewayError {
        match self.config.auth.on_deny {
            OnDeny::NotFound => GatewayError::Denied,
            OnDeny::Redirect => {
                let next = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                let login = &self.config.auth.login_url;
                let sep = if login.contains('?') { '&' } else { '?' };
                let location = format!("{login}{sep}next={}", utf8_percent_encode(next, NEXT));
                match HeaderValue::try_from(location) {
                    Ok(location) => GatewayError::LoginRedirect { location },
                    Err(_) => GatewayError::Denied,
                }
            }
        }
    }

    fn tracking_url(&self, tracking: &str) -> Option<String> {
        let t = &self.config.regenerate.tracking_url_template;
        (!t.is_empty()).then(|| t.replace("{tracking}", tracking))
    }

    async fn readyz(&self) -> Result<Response<Body>, GatewayError> {
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
                // Both peers must answer: storage (signed HEAD of the bucket) and the app's
                // check URL (any HTTP status counts: it is reachable).
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
            Ok(()) => Ok(text(StatusCode::OK, "ready\n")),
            Err(e) => {
                tracing::warn!(error = %e, "not ready");
                Err(GatewayError::NotReady)
            }
        }
    }

    async fn metrics_response(&self) -> Response<Body> {
        let mut out = String::with_capacity(2048);
        self.metrics.render(&mut out);
        if let Some(cache) = &self.cache {
            cache.settle().await;
            cache.render_metrics(&mut out);
        }
        let a = &self.auth.stats;
        crate::metrics::write_metric(
            &mut out,
            "label_gateway_auth_app_calls_total",
            "counter",
            "Session checks sent to the app.",
            a.app_calls.load(Ordering::Relaxed),
        );
        crate::metrics::write_metric(
            &mut out,
            "label_gateway_auth_unavailable_total",
            "counter",
            "Session checks that failed (answered 503).",
            a.unavailable.load(Ordering::Relaxed),
        );
        let mut resp = Response::new(full(out));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        resp
    }

    /// The client's `X-Request-Id` when it is a sane token, else a fresh one.
    fn request_id(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(v) = headers.get(&X_REQUEST_ID) {
            let b = v.as_bytes();
            if (1..=128).contains(&b.len())
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
            {
                return v.clone();
            }
        }
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        // A bijective mix of the counter keeps ids unique per process and unguessable-ish.
        let id = (n ^ self.request_seed).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ self.request_seed.rotate_left(17);
        let mut hex = [0u8; 16];
        for (i, digit) in hex.iter_mut().enumerate() {
            *digit = b"0123456789abcdef"[((id >> (60 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

/// RFC 9110 preconditions against `head`; a request without any (the common case) skips
/// parsing the label's dates.
fn precondition(conditions: &Conditions, head: &ObjectHead) -> Precondition {
    if conditions.is_empty() {
        Precondition::Proceed
    } else {
        conditions.evaluate(&validators(head))
    }
}

fn validators(head: &ObjectHead) -> Validators<'_> {
    Validators {
        etag: head.etag.as_ref().and_then(|v| v.to_str().ok()),
        last_modified: head
            .last_modified
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok()),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_paths_route_with_or_without_trailing_slash() {
        assert_eq!(
            route("/shipping-label/1Z999AA10123456784/"),
            Route::Label("1Z999AA10123456784")
        );
        assert_eq!(
            route("/shipping-label/abc_DEF-9"),
            Route::Label("abc_DEF-9")
        );
    }

    #[test]
    fn bad_tracking_numbers_are_rejected() {
        let long = format!("/shipping-label/{}/", "A".repeat(65));
        for p in [
            "/shipping-label/",
            "/shipping-label//",
            "/shipping-label/../etc/passwd",
            "/shipping-label/%2e%2e%2f/",
            "/shipping-label/a.pdf/",
            "/shipping-label/a/b/",
            "/shipping-label/a%00/",
            "/shipping-label/caf\u{e9}/",
            "/shipping-label/a\\b/",
            "/shipping-label",
            long.as_str(),
        ] {
            assert_eq!(route(p), Route::BadTracking, "{p}");
        }
        assert_eq!(
            route(&format!("/shipping-label/{}/", "A".repeat(64))),
            Route::Label(&"A".repeat(64))
        );
    }

    #[test]
    fn operator_routes_and_unknown_paths() {
        assert_eq!(route("/healthz"), Route::Healthz);
        assert_eq!(route("/readyz"), Route::Readyz);
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(route("/internal/cache/X"), Route::Internal("cache/X"));
        assert_eq!(route("/"), Route::NotFound);
        assert_eq!(route("/shipping-labels/X/"), Route::NotFound);
    }

    #[test]
    fn tracking_validation_is_exact() {
        assert!(valid_tracking("a"));
        assert!(valid_tracking("Z-9_x"));
        assert!(!valid_tracking(""));
        assert!(!valid_tracking("a b"));
        assert!(!valid_tracking("a+b"));
        assert!(!valid_tracking(&"x".repeat(65)));
    }
}
