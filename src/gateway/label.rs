//! The label path, as named phases called in a fixed order:
//! check the session → look up the hot cache → fetch from storage → respond
//! (and, for a label storage lacks, regenerate). Each phase returns a value that says what
//! happened; only faults are errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::Method;
use http_body_util::BodyExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::request::{validators, LabelRequest};
use super::{Gateway, Reply, Trace};
use crate::auth::{ClientInfo, Verdict};
use crate::body::Tee;
use crate::cache::{CachedLabel, Fallback, Fill, FillGuard, Filler};
use crate::config::OnDeny;
use crate::error::{GatewayError, Refusal};
use crate::http::{parse_range, Body, CacheState, Conditions, RangeRequest};
use crate::regenerate::Regenerated;
use crate::storage::{Fetch, GetRequest, ObjectHead};
use crate::tracking::Tracking;

/// What the hot-cache lookup found.
enum Lookup {
    Hit(Arc<CachedLabel>),
    /// Not in memory: fetch from storage, filling the cache when holding the fill lock.
    Miss(Option<FillGuard>),
}

/// Characters escaped in the `next=` parameter (Django keeps `/` readable too).
const NEXT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl Gateway {
    /// session → cache → storage → respond, for one label.
    pub(super) async fn serve_label(
        &self,
        parts: &Parts,
        tracking: Tracking,
        peer: SocketAddr,
        request_id: &HeaderValue,
        trace: &mut Trace,
    ) -> Result<Reply, GatewayError> {
        let req = self.label_request(parts, tracking, peer, request_id)?;
        if self.check_session(&req, trace).await? == Verdict::Deny {
            return Ok(Reply::Refused(self.denial(parts)));
        }
        // In redirect mode a hot label is still served from memory (faster than a
        // redirect), but a miss never fills the cache: its bytes go around the gateway.
        let may_fill = self.redirect.is_none();
        match self.lookup_cache(&req, trace, may_fill).await {
            Lookup::Hit(label) => Ok(self.serve_from_memory(&req, &label, CacheState::Hit)),
            // Boxed: a hit should not carry (and move) the storage call's state.
            Lookup::Miss(fill) => match &self.redirect {
                Some(redirect) => Box::pin(self.serve_redirect(redirect, &req)).await,
                None => Box::pin(self.serve_from_storage(&req, fill, trace)).await,
            },
        }
    }

    /// Reads what the phases need from the request head.
    fn label_request<'a>(
        &self,
        parts: &'a Parts,
        tracking: Tracking,
        peer: SocketAddr,
        request_id: &'a HeaderValue,
    ) -> Result<LabelRequest<'a>, GatewayError> {
        self.check_cookie_size(parts)?;
        let head_only = parts.method == Method::HEAD;
        let range = match parse_range(parts.headers.get(header::RANGE)) {
            RangeRequest::Single(spec) if !head_only => Some(spec),
            _ => None,
        };
        let conditions = Conditions::from_headers(&parts.headers);
        Ok(LabelRequest {
            parts,
            tracking,
            peer,
            request_id,
            head_only,
            conditions,
            range,
        })
    }

    /// A `Cookie` header over `[server] max_cookie_bytes` is refused (431) before anything
    /// reads it.
    pub(super) fn check_cookie_size(&self, parts: &Parts) -> Result<(), GatewayError> {
        let cookie_bytes: usize = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.len())
            .sum();
        if cookie_bytes as u64 > self.config.server.max_cookie_bytes.as_u64() {
            return Err(GatewayError::HeaderTooLarge);
        }
        Ok(())
    }

    /// Phase 1: the session check, always before any cache or storage access.
    async fn check_session(
        &self,
        req: &LabelRequest<'_>,
        trace: &mut Trace,
    ) -> Result<Verdict, GatewayError> {
        let cookie = self
            .auth
            .session_cookie(&req.parts.headers, req.parts.version);
        let client = ClientInfo {
            peer: req.peer.ip(),
            headers: &req.parts.headers,
            request_id: req.request_id,
            trusted_proxies: &self.trusted_proxies,
        };
        let decision = self
            .auth
            .decide(cookie.as_deref(), req.tracking, client)
            .await
            .map_err(|e| GatewayError::AuthUnavailable(e.0))?;
        trace.auth = Some(decision.source);
        trace.user = decision.user;
        Ok(decision.verdict)
    }

    /// Phase 2: the hot cache. A miss that may fill the cache takes the fill lock, or waits
    /// for the request that holds it and looks once more.
    async fn lookup_cache(
        &self,
        req: &LabelRequest<'_>,
        trace: &mut Trace,
        may_fill: bool,
    ) -> Lookup {
        let Some(cache) = &self.cache else {
            trace.cache = Some(CacheState::Miss);
            return Lookup::Miss(None);
        };
        let key = cache.key(req.tracking);
        if let Some(label) = cache.get(&key).await {
            trace.cache = Some(CacheState::Hit);
            return Lookup::Hit(label);
        }
        let lookup = if !may_fill || !req.can_fill() {
            Lookup::Miss(None)
        } else {
            match cache.begin_fill(&key) {
                Fill::Leader(guard) => Lookup::Miss(Some(guard)),
                Fill::Wait(waiters) => {
                    cache.wait(waiters).await;
                    match cache.get(&key).await {
                        Some(label) => Lookup::Hit(label),
                        None => Lookup::Miss(None),
                    }
                }
            }
        };
        trace.cache = Some(match lookup {
            Lookup::Hit(_) => CacheState::Hit,
            Lookup::Miss(_) => CacheState::Miss,
        });
        lookup
    }

    /// Phases 3 and 4 for a miss: fetch from storage (filling the cache when `fill` is
    /// the fill lock), then respond; a label storage lacks goes to regeneration, and a
    /// storage fault to the stale label, if one is held.
    async fn serve_from_storage(
        &self,
        req: &LabelRequest<'_>,
        fill: Option<FillGuard>,
        trace: &mut Trace,
    ) -> Result<Reply, GatewayError> {
        let fetch = match self.fetch(req).await {
            Ok(fetch) => fetch,
            Err(fault) => {
                // Released first: a request waiting for this fill asks storage (and falls
                // back) on its own.
                drop(fill);
                return self.serve_stale(req, fault, trace).await;
            }
        };
        match fetch {
            Fetch::Found { head, body } => {
                let body = match fill {
                    Some(guard) => self.tee_into_cache(guard, &head, body),
                    None => body,
                };
                Ok(self.found(req, &head, body, CacheState::Miss))
            }
            Fetch::NotModified {
                etag,
                last_modified,
            } => {
                let head = ObjectHead {
                    content_length: 0,
                    total_size: 0,
                    range: None,
                    etag,
                    last_modified,
                };
                Ok(Reply::Response(self.not_modified(
                    req.tracking,
                    &head,
                    CacheState::Miss,
                )))
            }
            Fetch::PreconditionFailed => Ok(Reply::Refused(Refusal::PreconditionFailed)),
            Fetch::RangeNotSatisfiable { size } => {
                Ok(Reply::Refused(Refusal::RangeNotSatisfiable { size }))
            }
            Fetch::NotFound => {
                self.forget_stale(req).await;
                self.regenerate_missing(req).await
            }
        }
    }

    /// Storage failed: with a fault (no connection, a timeout, a 5xx), a label held past
    /// its freshness by less than `[cache] stale_if_error` answers instead, saying
    /// `X-Cache: STALE`; anything else (a refusal: credentials, region, clock) stays the
    /// error it is.
    async fn serve_stale(
        &self,
        req: &LabelRequest<'_>,
        error: GatewayError,
        trace: &mut Trace,
    ) -> Result<Reply, GatewayError> {
        let (Some(cache), GatewayError::Storage(fault)) = (&self.cache, &error) else {
            return Err(error);
        };
        let (label, state) = match cache.fallback(req.tracking, fault).await {
            None => return Err(error),
            Some(Fallback::Fresh(label)) => (label, CacheState::Hit),
            Some(Fallback::Stale(label)) => (label, CacheState::Stale),
        };
        trace.cache = Some(state);
        Ok(self.serve_from_memory(req, &label, state))
    }

    /// Storage says the label is gone: a copy held past its freshness must not answer for
    /// it during a later outage.
    async fn forget_stale(&self, req: &LabelRequest<'_>) {
        if let Some(cache) = &self.cache {
            if !self.config.cache.stale_if_error.is_zero() {
                cache.purge(&cache.key(req.tracking)).await;
            }
        }
    }

    /// Phase 3: one storage GET (or HEAD). A range whose `If-Range` no longer matches the
    /// stored label is fetched again whole, per RFC 9110 §13.1.5.
    async fn fetch(&self, req: &LabelRequest<'_>) -> Result<Fetch, GatewayError> {
        let mut get = GetRequest {
            tracking: req.tracking,
            range: req.range,
            conditions: &req.conditions,
            head_only: req.head_only,
        };
        let fetch = self.timed_get(get).await?;
        if let Fetch::Found { head, .. } = &fetch {
            if head.range.is_some() && !req.conditions.range_applies(&validators(head)) {
                get.range = None;
                return self.timed_get(get).await;
            }
        }
        Ok(fetch)
    }

    /// One storage request, counted and timed to its response head.
    async fn timed_get(&self, get: GetRequest<'_>) -> Result<Fetch, GatewayError> {
        self.metrics.storage_fetches.inc();
        let sent = Instant::now();
        let fetch = self.storage.get(get).await;
        self.metrics.storage_first_byte.observe(sent.elapsed());
        Ok(fetch?)
    }

    /// The fill lock's holder streams the body through a tee that inserts the label once
    /// it passed complete. A body too large (or a range) is not cached: the guard drops
    /// and any waiters fetch on their own.
    fn tee_into_cache(&self, guard: FillGuard, head: &ObjectHead, body: Body) -> Body {
        match &self.cache {
            Some(cache) if head.range.is_none() && cache.admits(head.content_length) => {
                let filler = Filler::new(guard, head.etag.clone(), head.last_modified.clone());
                Tee::new(body, head.content_length, filler).boxed()
            }
            _ => body,
        }
    }

    /// Storage has no such label: ask the app to regenerate it (GET only), else the
    /// "label missing" page.
    pub(super) async fn regenerate_missing(
        &self,
        req: &LabelRequest<'_>,
    ) -> Result<Reply, GatewayError> {
        let missing = |tracking_url: Option<String>| {
            Reply::Refused(Refusal::LabelMissing {
                tracking: req.tracking,
                tracking_url: tracking_url.or_else(|| self.tracking_url(req.tracking)),
            })
        };
        let regen = match &self.regenerator {
            Some(r) if !req.head_only => r,
            _ => return Ok(missing(None)),
        };
        // A denied or cookieless request never gets here: the session check came first.
        let session = self
            .auth
            .session_key(&req.parts.headers, req.parts.version)
            .unwrap_or_default();
        let outcome = regen
            .regenerate(req.tracking, session, req.request_id)
            .await?;
        match &*outcome {
            Regenerated::Missing { tracking_url } => Ok(missing(tracking_url.clone())),
            Regenerated::Label(bytes) => {
                let label = Arc::new(CachedLabel::fresh_pdf(bytes.clone(), None));
                Ok(self.serve_from_memory(req, &label, CacheState::Miss))
            }
        }
    }

    /// The denied answer: a 404 that reveals nothing (for a browser, a page with the way
    /// to log in), or the login redirect. It depends on the request only, never on the
    /// label: the same bytes whether or not it exists.
    pub(super) fn denial(&self, parts: &Parts) -> Refusal {
        let wants_html = parts
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .any(|v| v.as_bytes().windows(9).any(|w| w == b"text/html"));
        match self.config.auth.on_deny {
            OnDeny::NotFound => Refusal::Denied {
                login: wants_html.then(|| self.login_location(parts)),
            },
            OnDeny::Redirect => match HeaderValue::try_from(self.login_location(parts)) {
                Ok(location) => Refusal::LoginRedirect { location },
                Err(_) => Refusal::Denied { login: None },
            },
        }
    }

    /// `login_url` with `next=` back to this request's path and query.
    fn login_location(&self, parts: &Parts) -> String {
        let next = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let login = &self.config.auth.login_url;
        let sep = if login.contains('?') { '&' } else { '?' };
        format!("{login}{sep}next={}", utf8_percent_encode(next, NEXT))
    }

    fn tracking_url(&self, tracking: Tracking) -> Option<String> {
        let t = &self.config.regenerate.tracking_url_template;
        (!t.is_empty()).then(|| t.replace("{tracking}", tracking.as_str()))
    }
}
