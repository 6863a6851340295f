//! The gateway: its parts, and one request from route to access-log line.
//!
//! [`Gateway::handle`] reads top to bottom: route, the route's handler, then the one
//! mapping of refusals and faults to responses (`error.rs`), then the access log. Each
//! file of this folder has one job:
//! - `route.rs`: the route table (paths to [`Route`]s, tracking numbers validated);
//! - `label.rs`: the label path as named phases (session → cache → storage → respond);
//! - `batch/`: many labels in one merged PDF or ZIP (`/shipping-label/batch.pdf`);
//! - `whole.rs`: whole labels in memory through the same cache and storage (batches,
//!   warm-up);
//! - `request.rs`: what the label path's phases share (the request as they see it, a
//!   label head's validators), below both `label.rs` and `respond.rs`;
//! - `respond.rs`: label responses (200/206/304, their headers, from storage or memory);
//! - `internal.rs`: `/internal/...` calls from the app (ingest, carrier fetch, purge,
//!   warm-up, session revocation);
//! - `redirect.rs`: redirect mode (a 307 to a presigned URL instead of the bytes);
//! - `quick.rs`: a whole hit answered below hyper for the connection lane
//!   (`server::lane`), when its session and label are both already in memory;
//! - `ops.rs`: readiness, `/metrics` and request ids;
//! - `reload.rs`: key rotation on `SIGHUP` (secrets read again from their files).

mod batch;
mod internal;
mod label;
mod ops;
mod quick;
mod redirect;
mod reload;
mod request;
mod respond;
mod route;
mod whole;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

pub use quick::{QuickHit, QuickRequest};
pub use route::{route, BatchFormat, InternalRoute, Listener, Route, LABEL_PREFIX};

use crate::auth::{Authenticator, Source};
use crate::cache::LabelCache;
use crate::config::Config;
use crate::error::{Audience, GatewayError, Refusal, StartupError};
use crate::http::{cache_control, Body, CacheState, X_REQUEST_ID};
use crate::metrics::{Metrics, Outcome, RouteKind};
use crate::regenerate::Regenerator;
use crate::storage::Storage;

/// What a handler answered: a response of its own, or a normal refusal that `error.rs`
/// turns into one. Faults travel separately, as [`GatewayError`].
pub enum Reply {
    Response(Response<Body>),
    Refused(Refusal),
}

/// What the access log line and the latency histogram say about a request besides
/// method, path and status.
#[derive(Debug, Default)]
struct Trace {
    auth: Option<Source>,
    cache: Option<CacheState>,
    /// A batch: how many distinct labels it asked for.
    labels: Option<usize>,
    /// The route the request took, for the `route` label.
    route: RouteKind,
    /// Who the session check said the session belongs to (`X-Label-User`).
    user: Option<Arc<str>>,
}

impl Trace {
    /// The request's `outcome` label.
    fn outcome(&self, reply: &Result<Reply, GatewayError>) -> Outcome {
        match reply {
            Err(_) => Outcome::Error,
            _ if self.route != RouteKind::Label => Outcome::Ok,
            Ok(Reply::Refused(Refusal::Denied { .. } | Refusal::LoginRedirect { .. })) => {
                Outcome::Denied
            }
            Ok(Reply::Refused(Refusal::LabelMissing { .. })) => Outcome::Missing,
            Ok(_) if self.cache == Some(CacheState::Hit) => Outcome::Hit,
            Ok(_) => Outcome::Miss,
        }
    }
}

pub struct Gateway {
    pub config: Arc<Config>,
    pub auth: Authenticator,
    pub storage: Arc<Storage>,
    /// `None` when `[cache] enabled = false`.
    pub cache: Option<Arc<LabelCache>>,
    /// `None` when `[regenerate] url` is empty.
    pub regenerator: Option<Regenerator>,
    /// Downloads carrier labels for `/internal/labels/{tracking}/fetch`.
    carrier: crate::outbound::Carrier,
    pub metrics: Metrics,
    cache_control: HeaderValue,
    draining: AtomicBool,
    readiness: ops::Readiness,
    request_ids: ops::RequestIds,
    /// `[server] trusted_proxies`, parsed.
    trusted_proxies: Vec<ipnet::IpNet>,
    /// `Some` in redirect mode (`[redirect] enabled`).
    redirect: Option<redirect::Redirector>,
    /// The `/internal/` bearer token in force: replaced by [`Gateway::reload_secrets`].
    internal_token: arc_swap::ArcSwapOption<crate::secret::Secret>,
    /// Every secret in force, by variable name, for [`Gateway::reload_secrets`].
    secrets: Mutex<reload::Secrets>,
    /// Batch slots and counters.
    batches: batch::Batches,
    /// Whole-label reads (batches, warm-up) through the same cache and storage.
    whole: whole::Labels,
}

impl Gateway {
    pub fn new(config: Config) -> Result<Gateway, StartupError> {
        let storage = Arc::new(Storage::from_config(&config)?);
        let auth = Authenticator::new(&config.auth).map_err(|reason| StartupError::HttpClient {
            setting: "auth.check_url",
            reason,
        })?;
        let cache = config.cache.enabled.then(|| {
            Arc::new(LabelCache::new(
                &config.cache,
                config.storage.first_byte_timeout,
            ))
        });
        let regenerator =
            Regenerator::new(&config, storage.clone(), cache.clone()).map_err(|reason| {
                StartupError::HttpClient {
                    setting: "regenerate.url",
                    reason,
                }
            })?;
        let carrier = crate::outbound::carrier_client(&config.internal).map_err(|reason| {
            StartupError::HttpClient {
                setting: "internal.fetch_*",
                reason,
            }
        })?;
        let trusted_proxies = config.server.trusted_nets().unwrap_or_default();
        let internal_token = arc_swap::ArcSwapOption::from_pointee(config.internal.token.clone());
        let secrets = Mutex::new(reload::Secrets::from_config(&config));
        let batches = batch::Batches::new(&config.batch);
        let whole = whole::Labels::new(storage.clone(), cache.clone());
        Ok(Gateway {
            internal_token,
            secrets,
            trusted_proxies,
            redirect: redirect::Redirector::new(&config.redirect),
            cache,
            regenerator,
            carrier,
            cache_control: cache_control(config.server.response_max_age),
            config: Arc::new(config),
            auth,
            storage,
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
            readiness: ops::Readiness::default(),
            request_ids: ops::RequestIds::new(),
            batches,
            whole,
        })
    }

    /// Marks the gateway as draining: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Writes the hot list (`[cache] hot_list`, when set): the drain's hook. A drain goes on
    /// whether or not it could be written.
    pub fn save_hot_list(&self) {
        if let (Some(cache), Some(path)) = (&self.cache, self.config.cache.hot_list()) {
            crate::cache::hotlist::save(cache, path);
        }
    }

    /// Starts warming the labels of the hot list in the background (the start's hook):
    /// readiness does not wait for it, and a drain stops it.
    pub fn warm_from_hot_list(self: &Arc<Self>) {
        let (Some(cache), Some(path)) = (self.cache.clone(), self.config.cache.hot_list()) else {
            return;
        };
        let path = path.to_path_buf();
        let gateway = self.clone();
        tokio::spawn(async move {
            let max = cache.max_object_bytes();
            let load = |tracking| {
                let whole = gateway.whole.clone();
                async move {
                    use crate::cache::hotlist::Warmed;
                    Ok::<_, GatewayError>(match whole.load(tracking, max).await? {
                        whole::Whole::Bytes(bytes) => Warmed::Held(bytes.len() as u64),
                        whole::Whole::Absent => Warmed::Gone,
                        whole::Whole::TooLarge { .. } => Warmed::TooLarge,
                    })
                }
            };
            let draining = || gateway.draining.load(Ordering::Relaxed);
            crate::cache::hotlist::warm_from(&cache, &path, load, draining).await;
        });
    }

    /// How refusals and faults are told to a caller of `path`.
    pub fn audience(&self, path: &str) -> Audience {
        Audience {
            json: path.starts_with("/internal/"),
            retry_after_secs: self.config.server.retry_after.as_secs(),
        }
    }

    /// The whole request path.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        listener: Listener,
    ) -> Response<Body> {
        let started = Instant::now();
        self.metrics.requests.inc();
        let (parts, body) = req.into_parts();
        let request_id = self.request_ids.for_request(&parts.headers);
        let mut trace = Trace::default();
        let path = parts.uri.path();
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
        let kind = trace.outcome(&outcome);
        let mut resp = match outcome {
            Ok(Reply::Response(resp)) => resp,
            Ok(Reply::Refused(refusal)) => {
                if matches!(
                    refusal,
                    Refusal::Denied { .. } | Refusal::LoginRedirect { .. }
                ) {
                    self.metrics.denied.fetch_add(1, Ordering::Relaxed);
                }
                refusal.into_response(self.audience(path))
            }
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::warn!(request_id = ?request_id, path, error = %e, "request failed");
                    if matches!(e, GatewayError::Storage(_)) {
                        self.metrics.storage_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                e.into_response(self.audience(path))
            }
        };
        let status = resp.status().as_u16();
        self.metrics.record_status(status);
        let elapsed = started.elapsed();
        self.metrics
            .request_duration
            .observe(trace.route, kind, elapsed);
        if self.config.log.access_log {
            access_log(&parts, &resp, status, elapsed, &trace, &request_id);
        }
        // Moved in last, after the log line that names it: no copy of it is made.
        resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
        resp
    }

    /// Route, then the route's handler. Operator routes are boxed so that their state
    /// does not size every request's future (moved several times per request).
    async fn dispatch(
        &self,
        parts: &Parts,
        body: Incoming,
        peer: SocketAddr,
        listener: Listener,
        request_id: &HeaderValue,
        trace: &mut Trace,
    ) -> Result<Reply, GatewayError> {
        let route = route(parts.uri.path());
        trace.route = match route {
            Route::Label(_) | Route::BadTracking if listener.public() => RouteKind::Label,
            Route::Healthz | Route::Readyz => RouteKind::Health,
            Route::Metrics if listener.internal() => RouteKind::Metrics,
            Route::Internal(_) if listener.internal() => RouteKind::Internal,
            _ => RouteKind::Other,
        };
        match route {
            Route::BadTracking if listener.public() => Err(GatewayError::BadTracking),
            Route::Label(tracking) if listener.public() => {
                if parts.method != Method::GET && parts.method != Method::HEAD {
                    return Err(GatewayError::MethodNotAllowed { allow: "GET, HEAD" });
                }
                self.serve_label(parts, tracking, peer, request_id, trace)
                    .await
            }
            Route::Batch(format) if listener.public() => {
                Box::pin(self.batch(parts, body, peer, format, request_id, trace)).await
            }
            Route::Healthz => Ok(Reply::Response(respond::text(StatusCode::OK, "ok\n"))),
            Route::Readyz => Box::pin(self.readyz()).await,
            Route::Metrics if listener.internal() => {
                Ok(Reply::Response(Box::pin(self.metrics_response()).await))
            }
            Route::Internal(internal) if listener.internal() => {
                Box::pin(self.internal(parts, body, internal)).await
            }
            _ => Err(GatewayError::RouteNotFound),
        }
    }
}

/// One line per request: what was asked, what was answered, how the session and the
/// cache were used, and whose session it was (the audit trail). Never a cookie or a
/// query's secret.
fn access_log(
    parts: &Parts,
    resp: &Response<Body>,
    status: u16,
    elapsed: Duration,
    trace: &Trace,
    request_id: &HeaderValue,
) {
    let bytes = http_body::Body::size_hint(resp.body())
        .exact()
        .or_else(|| {
            resp.headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(0);
    crate::telemetry::access(&crate::telemetry::Access {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        status,
        bytes,
        duration_us: elapsed.as_micros() as u64,
        auth: trace.auth.map_or("-", Source::as_str),
        user: trace.user.as_deref().unwrap_or("-"),
        cache: match trace.cache {
            Some(CacheState::Hit) => "hit",
            Some(CacheState::Miss) => "miss",
            Some(CacheState::Stale) => "stale",
            None => "-",
        },
        labels: trace.labels,
        request_id: request_id.to_str().unwrap_or("-"),
    });
}
