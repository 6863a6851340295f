//! `/internal/...`: calls from the Django app to the gateway, behind the bearer token of
//! `[internal]` (compared in constant time). Without a configured token every call is
//! refused, so a forgotten variable fails closed.
//!
//! - `PUT /internal/labels/{tracking}[?overwrite=true]`: store a label (streamed to storage
//!   when it has a `Content-Length`, else buffered up to `max_upload_bytes`).
//! - `POST /internal/labels/{tracking}/fetch` `{"url": "https://..."}`: download a carrier
//!   label and store it the same way.
//! - `DELETE /internal/cache/{tracking}`: evict one label from memory.
//! - `POST /internal/sessions/revoke` `{"session_key": "..."}`: drop a logged-out session's
//!   cached verdicts (the app's logout signal calls it on every copy).
//! - `PUT /internal/cache/{tracking}`: warm one label into memory ahead of a print wave
//!   (204 held now, 404 not in storage, 409 cannot be held).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::whole::Whole;
use super::{Gateway, InternalRoute, Reply};
use crate::body::Prefixed;
use crate::error::{GatewayError, Refusal};
use crate::http::{empty, full, Body, BoxError};
use crate::outbound::{describe, read_limited, Limited};
use crate::secret::Secret;
use crate::storage::PutOutcome;
use crate::tracking::Tracking;

const PDF_MAGIC: &[u8] = b"%PDF-";

/// Checks `Authorization: Bearer <token>` against the configured token.
/// The scheme is case-insensitive (RFC 9110 §11.1), one or more spaces follow it.
pub fn authorized(token: Option<&Secret>, headers: &HeaderMap) -> bool {
    let Some(token) = token else { return false };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
    else {
        return false;
    };
    let Some((scheme, credentials)) = value.split_at_checked(6) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"Bearer") || !credentials.starts_with(b" ") {
        return false;
    }
    let start = credentials
        .iter()
        .position(|&b| b != b' ')
        .unwrap_or(credentials.len());
    token.matches(&credentials[start..])
}

impl Gateway {
    /// One `/internal/` call: the route must exist (404), then the token must match (401),
    /// then the handler runs.
    pub(super) async fn internal(
        &self,
        parts: &Parts,
        body: Incoming,
        route: InternalRoute,
    ) -> Result<Reply, GatewayError> {
        if route == InternalRoute::NotFound {
            return Err(GatewayError::RouteNotFound);
        }
        if !authorized(self.internal_token.load().as_deref(), &parts.headers) {
            return Err(GatewayError::Unauthorized);
        }
        let resp = match route {
            InternalRoute::Label(tracking) => {
                if parts.method != Method::PUT {
                    return Err(GatewayError::MethodNotAllowed { allow: "PUT" });
                }
                self.ingest_upload(parts, body, tracking).await
            }
            InternalRoute::Fetch(tracking) => {
                if parts.method != Method::POST {
                    return Err(GatewayError::MethodNotAllowed { allow: "POST" });
                }
                self.ingest_fetch(parts, body, tracking).await
            }
            InternalRoute::Cache(tracking) => {
                if parts.method == Method::PUT {
                    return self.warm(tracking).await;
                }
                if parts.method != Method::DELETE {
                    return Err(GatewayError::MethodNotAllowed {
                        allow: "DELETE, PUT",
                    });
                }
                if let Some(cache) = &self.cache {
                    let purged = cache.purge(&cache.key(tracking)).await;
                    tracing::info!(%tracking, purged, "cache purge");
                }
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                Ok(r)
            }
            InternalRoute::RevokeSession => {
                if parts.method != Method::POST {
                    return Err(GatewayError::MethodNotAllowed { allow: "POST" });
                }
                self.revoke_session(body).await
            }
            InternalRoute::BadTracking => Err(GatewayError::BadTracking),
            InternalRoute::NotFound => Err(GatewayError::RouteNotFound),
        }?;
        Ok(Reply::Response(resp))
    }
}

impl Gateway {
    /// `PUT /internal/cache/{tracking}`: loads the label into the hot cache ahead of its
    /// prints, through the fill lock single requests share. 204 once it is held (or was);
    /// 404 when storage has none (nothing is regenerated); 409 when it cannot be held
    /// (the cache is off, or the label is over `max_object_bytes`).
    async fn warm(&self, tracking: Tracking) -> Result<Reply, GatewayError> {
        let Some(cache) = self.whole.cache() else {
            return Err(GatewayError::Conflict(
                "the hot cache is off (cache.enabled = false)".into(),
            ));
        };
        let max = cache.max_object_bytes();
        match self.whole.load(tracking, max).await? {
            Whole::Bytes(_) => {
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                Ok(Reply::Response(r))
            }
            Whole::Absent => Ok(Reply::Refused(Refusal::LabelMissing {
                tracking,
                tracking_url: None,
            })),
            Whole::TooLarge { size } => Err(GatewayError::Conflict(format!(
                "label {tracking} is {size} bytes, more than cache.max_object_bytes ({max})"
            ))),
        }
    }

    /// `PUT /internal/labels/{tracking}`: the request body goes to storage as it arrives
    /// once its first bytes proved it a PDF.
    async fn ingest_upload(
        &self,
        parts: &Parts,
        body: Incoming,
        tracking: Tracking,
    ) -> Result<Response<Body>, GatewayError> {
        let max = self.config.internal.max_upload_bytes.as_u64();
        let overwrite = overwrite_requested(parts);
        let declared = match parts.headers.get(header::CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| GatewayError::BadRequest("invalid Content-Length".into()))?,
            ),
        };
        // Whether the client's own body broke (it went away mid-upload): that is the
        // client's doing, not a storage fault, whatever error storage reports for it.
        let client_failed = Arc::new(AtomicBool::new(false));
        let failed = client_failed.clone();
        let mut body: Body = body
            .map_err(move |e| {
                failed.store(true, Ordering::SeqCst);
                BoxError::from(e)
            })
            .boxed();
        let linger = !expects_continue(parts);
        if declared.is_some_and(|n| n > max) {
            if linger && declared.is_some_and(|n| n <= DRAIN_LIMIT) {
                drain(&mut body).await;
            }
            return Err(too_large(max));
        }
        if declared == Some(0) {
            return Err(not_pdf());
        }
        let prefix = read_prefix(&mut body, PDF_MAGIC.len()).await?;
        if !prefix.starts_with(PDF_MAGIC) {
            if linger {
                drain(&mut body).await;
            }
            return Err(not_pdf());
        }
        let (upload, len) = match declared {
            Some(len) => (Prefixed::new(prefix, body).boxed(), len),
            // No length (chunked): buffer, bounded, so storage gets a Content-Length.
            None => {
                let mut buf = BytesMut::from(&prefix[..]);
                while let Some(frame) = body.frame().await {
                    let frame =
                        frame.map_err(|e| GatewayError::BadRequest(format!("body: {e}")))?;
                    if let Ok(data) = frame.into_data() {
                        if (buf.len() + data.len()) as u64 > max {
                            if linger {
                                drain(&mut body).await;
                            }
                            return Err(too_large(max));
                        }
                        buf.extend_from_slice(&data);
                    }
                }
                let len = buf.len() as u64;
                (full(buf.freeze()), len)
            }
        };
        match self.store(tracking, upload, len, overwrite).await {
            Err(GatewayError::Storage(e)) if client_failed.load(Ordering::SeqCst) => {
                tracing::info!(%tracking, error = %e, "upload abandoned by the client mid-body");
                Err(GatewayError::BadRequest(
                    "the upload ended before its Content-Length".into(),
                ))
            }
            other => other,
        }
    }

    /// `POST /internal/sessions/revoke` with `{"session_key": "..."}`: the app's logout
    /// signal drops that session's cached verdicts, so a logged-out cookie is refused at
    /// once instead of after `allow_ttl`. The key is never logged.
    async fn revoke_session(&self, body: Incoming) -> Result<Response<Body>, GatewayError> {
        #[derive(serde::Deserialize)]
        struct Revoke {
            session_key: String,
        }
        let req: Revoke = read_json(body, 4 * 1024, "{\"session_key\": \"...\"}").await?;
        let key = req.session_key.trim();
        if key.is_empty() || key.len() > 1024 || key.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(GatewayError::BadRequest(
                "session_key must be a non-empty printable token".into(),
            ));
        }
        self.auth.revoke(key);
        tracing::info!("session verdicts revoked");
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok(r)
    }

    /// `POST /internal/labels/{tracking}/fetch` with `{"url": "..."}`.
    async fn ingest_fetch(
        &self,
        parts: &Parts,
        body: Incoming,
        tracking: Tracking,
    ) -> Result<Response<Body>, GatewayError> {
        let cfg = &self.config.internal;
        #[derive(serde::Deserialize)]
        struct FetchRequest {
            url: String,
        }
        let req: FetchRequest = read_json(body, 16 * 1024, "{\"url\": \"https://...\"}").await?;
        let url = reqwest::Url::parse(&req.url)
            .map_err(|_| GatewayError::BadRequest("url is not a valid URL".into()))?;
        match url.scheme() {
            "https" => {}
            "http" if cfg.fetch_allow_http => {}
            "http" => {
                return Err(GatewayError::BadRequest(
                    "only https carrier URLs are allowed (internal.fetch_allow_http)".into(),
                ))
            }
            _ => return Err(GatewayError::BadRequest("url must be http(s)".into())),
        }
        // The same answer for every refused target, and the same for every target that
        // could not be fetched: the caller learns nothing about what listens where.
        self.carrier
            .rules
            .check_url(&url)
            .map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        let host = url.host_str().unwrap_or("").to_string();
        let resp = self
            .carrier
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| carrier_error(&e, &host))?;
        if !resp.status().is_success() {
            return Err(GatewayError::Carrier(format!(
                "carrier {host} answered {}",
                resp.status().as_u16()
            )));
        }
        let max = cfg.max_upload_bytes.as_u64();
        let Limited::Body(bytes) = read_limited(resp, max).await.map_err(|e| {
            if e == "timed out" {
                GatewayError::UpstreamTimeout {
                    what: "carrier download",
                }
            } else {
                GatewayError::Carrier(format!("carrier {host}: {e}"))
            }
        })?
        else {
            return Err(too_large(max));
        };
        if !bytes.starts_with(PDF_MAGIC) {
            return Err(GatewayError::UnsupportedMediaType(format!(
                "the carrier's answer from {host} is not a PDF"
            )));
        }
        let len = bytes.len() as u64;
        self.store(tracking, full(bytes), len, overwrite_requested(parts))
            .await
    }

    /// Writes to storage, then drops stale copies (memory, remembered regeneration
    /// outcomes) and answers 201 `{key, size, etag}` or 409.
    async fn store(
        &self,
        tracking: Tracking,
        body: Body,
        len: u64,
        overwrite: bool,
    ) -> Result<Response<Body>, GatewayError> {
        match self.storage.put(&tracking, body, len, overwrite).await? {
            PutOutcome::AlreadyExists => Err(GatewayError::Conflict(format!(
                "label {tracking} already exists; add ?overwrite=true to replace it"
            ))),
            PutOutcome::Created { etag } => {
                if let Some(cache) = &self.cache {
                    cache.purge(&cache.key(tracking)).await;
                }
                if let Some(regen) = &self.regenerator {
                    regen.forget(tracking).await;
                }
                tracing::info!(%tracking, size = len, overwrite, "label ingested");
                let json = serde_json::json!({
                    "key": self.storage.key(&tracking),
                    "size": len,
                    "etag": etag,
                });
                let mut r = Response::new(full(json.to_string()));
                *r.status_mut() = StatusCode::CREATED;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Ok(r)
            }
        }
    }
}

/// A small JSON request body (at most `limit` bytes) of the `shape` the error names.
async fn read_json<T: serde::de::DeserializeOwned>(
    body: Incoming,
    limit: usize,
    shape: &str,
) -> Result<T, GatewayError> {
    let raw = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|_| GatewayError::BadRequest("request body must be a small JSON object".into()))?
        .to_bytes();
    serde_json::from_slice(&raw)
        .map_err(|_| GatewayError::BadRequest(format!("expected JSON {shape}")))
}

fn carrier_error(e: &reqwest::Error, host: &str) -> GatewayError {
    if e.is_timeout() {
        GatewayError::UpstreamTimeout {
            what: "carrier download",
        }
    } else {
        // A redirect to a refused address, a name with no public address, a refused or
        // reset connection: all one answer to the caller; the log has the detail.
        GatewayError::Carrier(format!("carrier {host}: {}", describe(e)))
    }
}

fn overwrite_requested(parts: &Parts) -> bool {
    parts.uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "overwrite=true" || kv == "overwrite=1")
    })
}

fn too_large(max: u64) -> GatewayError {
    GatewayError::PayloadTooLarge(format!("label larger than max_upload_bytes ({max} bytes)"))
}

fn not_pdf() -> GatewayError {
    GatewayError::UnsupportedMediaType("body is not a PDF (must start with %PDF-)".into())
}

/// Reads frames until at least `n` bytes arrived (or the body ended); returns them.
/// The most of a refused upload read and dropped before answering.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
/// How long a refused upload may take to be read and dropped.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and drops the rest of a refused upload (bounded by [`DRAIN_LIMIT`] and
/// [`DRAIN_TIME`]) before the refusal is sent. Answering while the client is still sending
/// and then closing makes the kernel reset the connection, and the client (Python
/// `requests` as much as reqwest) reports a broken pipe instead of our 413 or 415: the
/// same problem nginx's lingering close solves.
async fn drain(body: &mut Body) {
    let read = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// A client that sent `Expect: 100-continue` has not sent its body yet: the refusal alone
/// tells it not to, so there is nothing to drain.
fn expects_continue(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

async fn read_prefix(body: &mut Body, n: usize) -> Result<Bytes, GatewayError> {
    let mut buf = BytesMut::new();
    while buf.len() < n {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(GatewayError::BadRequest(format!("body: {e}"))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn bearer_token_must_match_exactly() {
        let token = Secret::new("s3cret");
        let mut h = HeaderMap::new();
        assert!(!authorized(Some(&token), &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorized(Some(&token), &h));
        assert!(
            !authorized(None, &h),
            "no configured token refuses everything"
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cre"),
        );
        assert!(!authorized(Some(&token), &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(!authorized(Some(&token), &h));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let token = Secret::new("s3cret");
        for ok in ["bearer s3cret", "BEARER s3cret", "BeArEr  s3cret"] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(ok));
            assert!(authorized(Some(&token), &h), "{ok}");
        }
        for bad in [
            "Bearers3cret",
            "Bearer",
            "Bearer ",
            "Bear s3cret",
            "bearer s3cret x",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert!(!authorized(Some(&token), &h), "{bad}");
        }
    }
}
