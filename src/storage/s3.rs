//! The S3 backend: raw SigV4-signed requests to Spaces (or any S3-compatible server),
//! rustls for https, plain http for local endpoints, connections kept alive.
//!
//! Bodiless requests (label reads above all) go through `direct.rs`, which reads the
//! answer in the request's own task over its own HTTP/1.1 connections; requests with a
//! body (uploads) and the answers it leaves alone go through a pooled hyper-util client
//! (HTTP/1.1 and HTTP/2).
//!
//! Response bodies are handed on as they arrive, wrapped in an idle timeout; nothing here
//! collects an object. Faults are retried only before the answer's head is returned, i.e.
//! before a byte can have reached the client.
//!
//! The signer is swapped whole when the credentials rotate (`SIGHUP`): each request loads
//! it once (an atomic read) and is signed with the key current when it started.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::direct::{self, Direct};
use super::sigv4::{Payload, Signer};
use super::{Fetch, GetRequest, Listed, ObjectHead, PutOutcome, StorageError, MAX_DELETE_BATCH};
use crate::body::IdleTimeout;
use crate::config::{Addressing, StorageConfig};
use crate::http::{empty, full, Body, BoxError};
use crate::secret::Secret;
use crate::tracking::Tracking;

type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Largest S3 error document read to find its `<Code>`.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

pub struct S3Store {
    client: HttpClient,
    /// Bodiless requests, read in the request's task.
    direct: Arc<Direct>,
    /// Replaced whole on key rotation; loaded once per request.
    signer: ArcSwap<Signer>,
    region: String,
    /// URL prefix of label keys, ending in `/`: `{endpoint}/{bucket}/{location}/`.
    base: String,
    /// URL of the bucket itself, for the readiness probe.
    bucket_url: String,
    /// The bucket as a path to list: `/bucket` path-style, `/` on a virtual host.
    list_url: String,
    host: HeaderValue,
    /// `http` or `https`, as the endpoint says.
    scheme: String,
    location: String,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    idle_body_timeout: Duration,
    attempts: u32,
    backoff: Duration,
}

impl S3Store {
    pub fn new(cfg: &StorageConfig) -> Result<Self, StorageError> {
        let (Some(ak), Some(sk)) = (&cfg.access_key_id, &cfg.secret_access_key) else {
            return Err(StorageError::Protocol(
                "SPACES_ACCESS_KEY_ID and SPACES_SECRET_ACCESS_KEY are required".into(),
            ));
        };
        let endpoint: http::Uri = cfg
            .endpoint
            .parse()
            .map_err(|_| StorageError::Protocol("storage.endpoint is not a URL".into()))?;
        let scheme = endpoint.scheme_str().unwrap_or("https");
        let authority = endpoint
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| StorageError::Protocol("storage.endpoint has no host".into()))?;
        let (host, bucket_url, list_url) = match cfg.addressing {
            Addressing::Path => {
                let url = format!("{scheme}://{authority}/{}", cfg.bucket);
                (authority.clone(), url.clone(), url)
            }
            Addressing::Virtual => {
                let host = format!("{}.{authority}", cfg.bucket);
                let url = format!("{scheme}://{host}");
                let list = format!("{url}/");
                (host, url, list)
            }
        };
        let base = if cfg.location.is_empty() {
            format!("{bucket_url}/")
        } else {
            format!("{bucket_url}/{}/", cfg.location)
        };
        let direct = base
            .parse::<http::Uri>()
            .map_err(|e| e.to_string())
            .and_then(|uri| Direct::new(&uri, tls_config()?, cfg.connect_timeout))
            .map(|direct| direct.watermark_for(cfg.idle_body_timeout))
            .map_err(|why| StorageError::Protocol(format!("storage.endpoint: {why}")))?;
        let host = HeaderValue::try_from(host)
            .map_err(|_| StorageError::Protocol("storage.endpoint host is not valid".into()))?;
        Ok(S3Store {
            client: build_client(cfg.connect_timeout),
            direct: Arc::new(direct),
            signer: ArcSwap::from_pointee(Signer::new(ak, sk, &cfg.region)),
            region: cfg.region.clone(),
            base,
            bucket_url,
            list_url,
            host,
            scheme: scheme.to_string(),
            location: cfg.location.clone(),
            connect_timeout: cfg.connect_timeout,
            first_byte_timeout: cfg.first_byte_timeout,
            idle_body_timeout: cfg.idle_body_timeout,
            attempts: cfg.attempts.max(1),
            backoff: cfg.retry_backoff,
        })
    }

    pub fn key(&self, tracking: &Tracking) -> String {
        if self.location.is_empty() {
            [tracking.as_str(), ".pdf"].concat()
        } else {
            [&self.location, "/", tracking.as_str(), ".pdf"].concat()
        }
    }

    /// The URL of a label's object (built on every fetch: pieces put together, not
    /// `format!`, which costs several times as much).
    pub fn object_url(&self, tracking: &Tracking) -> String {
        [&self.base, tracking.as_str(), ".pdf"].concat()
    }

    /// A query-signed URL for `method` on a label, valid for `expires`: the URL
    /// `presign` prints and redirect mode sends. `host` (a custom domain or CDN host in
    /// front of the bucket, virtual-host style) is named in the URL and signed for;
    /// `overrides` become S3's `response-*` query parameters, so the answer carries the
    /// headers the gateway would have sent.
    pub fn presign_label(
        &self,
        tracking: &Tracking,
        method: &http::Method,
        expires: Duration,
        host: Option<&str>,
        overrides: &[(&str, &str)],
    ) -> Result<String, StorageError> {
        let mut url = match host {
            Some(host) => format!("{}://{host}/{}", self.scheme, self.key(tracking)),
            None => self.object_url(tracking),
        };
        let mut sep = '?';
        for (name, value) in overrides {
            url.push(sep);
            sep = '&';
            url.push_str(name);
            url.push('=');
            url.extend(percent_encoding::utf8_percent_encode(
                value,
                super::sigv4::QUERY,
            ));
        }
        self.signer()
            .presign(method, &url, expires, std::time::SystemTime::now())
            .map_err(|e| StorageError::Protocol(format!("cannot presign: {e}")))
    }

    /// The signer of requests starting now.
    pub fn signer(&self) -> Arc<Signer> {
        self.signer.load_full()
    }

    /// Signs every request that starts from now on with this key (key rotation); requests
    /// already sent, and downloads in flight, are not touched.
    pub fn set_credentials(&self, access_key_id: &Secret, secret_access_key: &Secret) {
        self.signer.store(Arc::new(Signer::new(
            access_key_id,
            secret_access_key,
            &self.region,
        )));
    }

    /// The bucket's URL: `{endpoint}/{bucket}` path-style, `https://{bucket}.{host}` on a
    /// virtual host.
    pub fn bucket_url(&self) -> &str {
        &self.bucket_url
    }

    /// The key prefix of labels, `{location}/` (empty when the location is).
    pub fn prefix(&self) -> String {
        if self.location.is_empty() {
            String::new()
        } else {
            format!("{}/", self.location)
        }
    }

    /// The `ListObjectsV2` URL of one page under `{location}/`.
    pub fn listing_url(&self, max_keys: u32, after: Option<&str>) -> String {
        let enc =
            |v: &str| percent_encoding::utf8_percent_encode(v, super::sigv4::QUERY).to_string();
        let mut url = format!(
            "{}?list-type=2&max-keys={max_keys}&prefix={}",
            self.list_url,
            enc(&self.prefix())
        );
        if let Some(token) = after {
            url.push_str("&continuation-token=");
            url.push_str(&enc(token));
        }
        url
    }

    /// The URL of `{location}/{name}`, for objects that are not labels (`doctor`'s scratch
    /// object). `name` must be URL-safe.
    pub fn scratch_url(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }

    pub async fn get(&self, req: GetRequest<'_>) -> Result<Fetch, StorageError> {
        let url = self.object_url(&req.tracking);
        let method = if req.head_only {
            Method::HEAD
        } else {
            Method::GET
        };
        // Parsed once, not per attempt; the request is put together field by field (the
        // builder converts and re-checks every part).
        let uri: http::Uri = url
            .parse()
            .map_err(|_| StorageError::Protocol("object URL does not parse".into()))?;
        let resp = self
            .send_with_retries(|| {
                let mut r = Request::new(empty());
                *r.method_mut() = method.clone();
                *r.uri_mut() = uri.clone();
                let h = r.headers_mut();
                h.insert(header::HOST, self.host.clone());
                if let Some(range) = req.range {
                    h.insert(header::RANGE, range.header_value());
                }
                for (name, value) in req.conditions.forward() {
                    // Only values that can be signed; the gateway re-evaluates them anyway.
                    if value.to_str().is_ok() {
                        h.append(name, value.clone());
                    }
                }
                Ok(r)
            })
            .await?;
        let status = resp.status();
        match status {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                let head = object_head(&resp)?;
                let body = if req.head_only {
                    empty()
                } else {
                    IdleTimeout::new(resp.into_body(), self.idle_body_timeout).boxed()
                };
                Ok(Fetch::Found { head, body })
            }
            StatusCode::NOT_MODIFIED => Ok(Fetch::NotModified {
                etag: resp.headers().get(header::ETAG).cloned(),
                last_modified: resp.headers().get(header::LAST_MODIFIED).cloned(),
            }),
            StatusCode::PRECONDITION_FAILED => Ok(Fetch::PreconditionFailed),
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let mut size = resp
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.rsplit_once('/'))
                    .and_then(|(_, n)| n.parse().ok());
                if size.is_none() {
                    // The client needs `Content-Range: bytes */size`: ask for it.
                    let probe = GetRequest {
                        range: None,
                        head_only: true,
                        ..req
                    };
                    if let Ok(Fetch::Found { head, .. }) = Box::pin(self.get(probe)).await {
                        size = Some(head.total_size);
                    }
                }
                Ok(Fetch::RangeNotSatisfiable { size })
            }
            StatusCode::NOT_FOUND => {
                let code = error_code(resp).await;
                match code.as_str() {
                    "" | "NoSuchKey" => Ok(Fetch::NotFound),
                    _ => Err(refused(404, code)),
                }
            }
            s => Err(unexpected(s, error_code(resp).await)),
        }
    }

    pub async fn put(
        &self,
        tracking: &Tracking,
        body: Body,
        len: u64,
        overwrite: bool,
    ) -> Result<PutOutcome, StorageError> {
        let url = self.object_url(tracking);
        let mut b = Request::builder()
            .method(Method::PUT)
            .uri(&url)
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_LENGTH, len)
            .header(header::CONTENT_TYPE, "application/pdf")
            .header(header::CACHE_CONTROL, "max-age=86400")
            .header("x-amz-acl", "private");
        if !overwrite {
            b = b.header(header::IF_NONE_MATCH, "*");
        }
        let mut req = b
            .body(body)
            .map_err(|e| StorageError::Protocol(e.to_string()))?;
        self.signer
            .load()
            .sign(&mut req, Payload::Unsigned, SystemTime::now())
            .map_err(|e| StorageError::Protocol(e.to_string()))?;
        let resp = self.send_once(req).await?;
        match resp.status() {
            s if s.is_success() => Ok(PutOutcome::Created {
                etag: resp
                    .headers()
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            }),
            StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => Ok(PutOutcome::AlreadyExists),
            s => Err(unexpected(s, error_code(resp).await)),
        }
    }

    /// One page of `ListObjectsV2` under `{location}/`, at most `max_keys` objects;
    /// `after` is the previous page's continuation token.
    pub async fn list(
        &self,
        after: Option<&str>,
        max_keys: u32,
    ) -> Result<(Vec<Listed>, Option<String>), StorageError> {
        let prefix = self.prefix();
        let url = self.listing_url(max_keys, after);
        let resp = self
            .send_with_retries(|| {
                Request::builder()
                    .method(Method::GET)
                    .uri(&url)
                    .header(header::HOST, self.host.clone())
                    .body(empty())
            })
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(unexpected(status, error_code(resp).await));
        }
        let xml = read_body(resp.into_body(), LIST_BODY_LIMIT)
            .await
            .map_err(|e| StorageError::Protocol(format!("bucket listing: {e}")))?;
        parse_listing(&xml, &prefix)
    }

    pub async fn probe(&self) -> Result<(), StorageError> {
        let resp = self
            .send_with_retries(|| {
                Request::builder()
                    .method(Method::HEAD)
                    .uri(&self.bucket_url)
                    .header(header::HOST, self.host.clone())
                    .body(empty())
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            s => Err(unexpected(s, error_code(resp).await)),
        }
    }

    /// Deletes up to [`MAX_DELETE_BATCH`] labels with one S3 Multi-Object Delete
    /// (`POST ?delete`, `Content-MD5` as S3 requires). Keys are built from the tracking
    /// numbers only, so nothing outside `{location}/` can be named. Returns the labels the
    /// store could not delete, with its reason; a key that was already gone counts as
    /// deleted, as S3 says.
    pub async fn delete_many(
        &self,
        labels: &[Tracking],
    ) -> Result<Vec<(Tracking, String)>, StorageError> {
        if labels.is_empty() {
            return Ok(Vec::new());
        }
        if labels.len() > MAX_DELETE_BATCH {
            return Err(StorageError::Protocol(format!(
                "at most {MAX_DELETE_BATCH} keys per delete, not {}",
                labels.len()
            )));
        }
        let keys: HashMap<String, Tracking> = labels.iter().map(|t| (self.key(t), *t)).collect();
        let xml = delete_request_xml(labels.iter().map(|t| self.key(t)));
        let md5 = content_md5(xml.as_bytes());
        let url = format!("{}?delete", self.list_url);
        let resp = self
            .send_signed_with_retries(
                || {
                    Request::builder()
                        .method(Method::POST)
                        .uri(&url)
                        .header(header::HOST, self.host.clone())
                        .header(header::CONTENT_TYPE, "application/xml")
                        .header(header::CONTENT_LENGTH, xml.len())
                        .header("content-md5", md5.as_str())
                        .body(full(Bytes::from(xml.clone())))
                },
                Payload::Bytes(xml.as_bytes()),
            )
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(unexpected(status, error_code(resp).await));
        }
        let answer = read_body(resp.into_body(), LIST_BODY_LIMIT)
            .await
            .map_err(|e| StorageError::Protocol(format!("delete answer: {e}")))?;
        let failed = parse_delete_errors(&answer)?
            .into_iter()
            .filter_map(|(key, why)| keys.get(&key).map(|t| (*t, why)))
            .collect();
        Ok(failed)
    }

    /// One signed request, sent once, its answer read whole (at most 64 KiB of body): for
    /// `doctor`, which wants the status, the S3 error code and the server's `Date` even
    /// when the answer is a refusal. `url` is one of this store's (see [`Self::listing_url`],
    /// [`Self::scratch_url`]).
    pub async fn raw(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<RawAnswer, StorageError> {
        let mut b = Request::builder()
            .method(method)
            .uri(url)
            .header(header::HOST, self.host.clone());
        if !body.is_empty() {
            b = b.header(header::CONTENT_LENGTH, body.len());
        }
        for (name, value) in headers {
            b = b.header(name, value);
        }
        let mut req = b
            .body(full(body.clone()))
            .map_err(|e| StorageError::Protocol(e.to_string()))?;
        req.extensions_mut().insert(direct::AllHeaders);
        self.signer
            .load()
            .sign(&mut req, Payload::Bytes(&body), SystemTime::now())
            .map_err(|e| StorageError::Protocol(e.to_string()))?;
        let resp = self.send_once(req).await?;
        let (parts, body) = resp.into_parts();
        let body =
            match tokio::time::timeout(self.first_byte_timeout, read_body(body, RAW_BODY_LIMIT))
                .await
            {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return Err(StorageError::Protocol(format!("answer body: {e}"))),
                Err(_) => return Err(StorageError::Timeout(self.first_byte_timeout)),
            };
        Ok(RawAnswer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a bodiless request, retrying connection faults, 5xx and `SlowDown` with
    /// jittered exponential backoff. A timeout is not retried: the caller's budget is spent.
    async fn send_with_retries(
        &self,
        build: impl Fn() -> http::Result<Request<Body>>,
    ) -> Result<Response<Body>, StorageError> {
        self.send_signed_with_retries(build, Payload::Empty).await
    }

    /// [`Self::send_with_retries`] for a request whose body `build` makes afresh each time
    /// and `payload` describes.
    async fn send_signed_with_retries(
        &self,
        build: impl Fn() -> http::Result<Request<Body>>,
        payload: Payload<'_>,
    ) -> Result<Response<Body>, StorageError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = build().map_err(|e| StorageError::Protocol(e.to_string()))?;
            self.signer
                .load()
                .sign(&mut req, payload, SystemTime::now())
                .map_err(|e| StorageError::Protocol(e.to_string()))?;
            let outcome = self.send_once(req).await;
            let retry = match &outcome {
                Ok(resp) => resp.status().is_server_error(),
                Err(StorageError::Connect(_)) => true,
                Err(_) => false,
            };
            if !retry || attempt >= self.attempts {
                return match outcome {
                    Ok(resp) if resp.status().is_server_error() => {
                        let status = resp.status();
                        Err(StorageError::Unavailable {
                            status: status.as_u16(),
                            code: error_code(resp).await,
                        })
                    }
                    other => other,
                };
            }
            if let Ok(resp) = outcome {
                // Drain the short error body so the connection can be reused.
                let _ = error_code(resp).await;
            }
            let base = self.backoff.saturating_mul(1 << (attempt - 1).min(10));
            let jitter = base.mul_f64(rand::random::<f64>() * 0.5);
            tracing::debug!(attempt, "retrying storage request");
            tokio::time::sleep(base + jitter).await;
        }
    }

    async fn send_once(&self, req: Request<Body>) -> Result<Response<Body>, StorageError> {
        let send = async {
            if http_body::Body::is_end_stream(req.body()) {
                match self.direct.send(&req).await {
                    Ok(resp) => return Ok(resp.map(BodyExt::boxed)),
                    // Left to the client: sent again there, nothing has reached the client.
                    Err(direct::Error::Unsupported) => {}
                    Err(direct::Error::ConnectTimeout) => {
                        return Err(StorageError::Timeout(self.connect_timeout))
                    }
                    // As below: nothing reached the client, safe to retry.
                    Err(direct::Error::Connect(why)) => return Err(StorageError::Connect(why)),
                    Err(direct::Error::Protocol(why)) => return Err(StorageError::Protocol(why)),
                }
            }
            match self.client.request(req).await {
                // Connect failures, and a pooled connection the server closed just as we
                // sent: nothing reached the client, so both are safe to retry.
                Err(e) if timed_out(&e) => Err(StorageError::Timeout(self.connect_timeout)),
                Err(e) => Err(StorageError::Connect(describe_client_error(&e))),
                Ok(resp) => Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed())),
            }
        };
        match tokio::time::timeout(self.first_byte_timeout, send).await {
            Err(_) => Err(StorageError::Timeout(self.first_byte_timeout)),
            Ok(r) => r,
        }
    }
}

/// The largest bucket listing page read (1,000 keys take about 300 KB).
const LIST_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The largest body [`S3Store::raw`] reads.
const RAW_BODY_LIMIT: usize = 64 * 1024;

/// A whole answer to [`S3Store::raw`].
#[derive(Debug)]
pub struct RawAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawAnswer {
    /// The S3 error document's `<Code>`, or "".
    pub fn code(&self) -> String {
        code_in(&self.body)
    }

    /// The server's clock, from its `Date` header.
    pub fn date(&self) -> Option<SystemTime> {
        let date = self.headers.get(header::DATE)?.to_str().ok()?;
        httpdate::parse_http_date(date).ok()
    }
}

/// `Content-MD5`: the base64 of the body's MD5, which S3 requires on a Multi-Object Delete.
pub fn content_md5(body: &[u8]) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// The `<Delete>` document of a Multi-Object Delete: quiet, so only failures come back.
fn delete_request_xml(keys: impl Iterator<Item = String>) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>",
    );
    for key in keys {
        xml.push_str("<Object><Key>");
        xml.push_str(&quick_xml::escape::escape(key.as_str()));
        xml.push_str("</Key></Object>");
    }
    xml.push_str("</Delete>");
    xml
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteResult {
    #[serde(default)]
    error: Vec<DeleteError>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteError {
    key: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The keys a `DeleteResult` reports as not deleted, each with `Code: Message`.
fn parse_delete_errors(xml: &[u8]) -> Result<Vec<(String, String)>, StorageError> {
    let result: DeleteResult = quick_xml::de::from_reader(xml)
        .map_err(|e| StorageError::Protocol(format!("delete answer is not valid: {e}")))?;
    Ok(result
        .error
        .into_iter()
        .map(|e| {
            let why = match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code,
                (true, false) => e.message,
                (true, true) => "not deleted".to_string(),
            };
            (e.key, why)
        })
        .collect())
}

/// The parts of a `ListObjectsV2` answer the listing needs; the rest is ignored.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    contents: Vec<ListContents>,
    next_continuation_token: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListContents {
    key: String,
    size: u64,
    last_modified: Option<String>,
}

/// The objects of one `ListObjectsV2` page, and the next page's token when it says it
/// is truncated. A key is a label when it is `{prefix}{tracking}.pdf`.
fn parse_listing(xml: &[u8], prefix: &str) -> Result<(Vec<Listed>, Option<String>), StorageError> {
    let page: ListBucketResult = quick_xml::de::from_reader(xml)
        .map_err(|e| StorageError::Protocol(format!("bucket listing is not valid: {e}")))?;
    let objects = page
        .contents
        .into_iter()
        .map(|c| Listed {
            tracking: c
                .key
                .strip_prefix(prefix)
                .and_then(|name| name.strip_suffix(".pdf"))
                .and_then(|t| Tracking::parse(t).ok()),
            key: c.key,
            size: c.size,
            last_modified: c
                .last_modified
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim()).ok()),
        })
        .collect();
    let next = page
        .next_continuation_token
        .filter(|t| page.is_truncated && !t.is_empty());
    Ok((objects, next))
}

/// TLS for storage: the webpki roots through ring, offering HTTP/1.1 (what `direct.rs`
/// speaks). `doctor` checks the endpoint's certificate with the same configuration.
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn build_client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .map(|b| {
            b.https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http.clone())
        })
        .unwrap_or_else(|_| {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_webpki_roots()
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http)
        });
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(512)
        // hyper's adaptive read buffer grows to ~400 KiB per connection, and since body
        // frames are slices of it, `BytesMut` keeps doubling it while one is in flight
        // (seen as ~460 KiB per pooled connection under the soak). A fixed 16 KiB read
        // (one TLS record) bounds each connection near 32 KiB at no measurable cost.
        .http1_read_buf_exact_size(16 * 1024)
        .build(https)
}

/// Whether the client error is the connector's connect timeout (504, not retried).
fn timed_out(e: &hyper_util::client::legacy::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        src = s.source();
    }
    false
}

fn describe_client_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn object_head<B>(resp: &Response<B>) -> Result<ObjectHead, StorageError> {
    let h = resp.headers();
    // Read as the storage readers frame the body (hyper's rules: no sign, repeats equal).
    let content_length: u64 = direct::content_length(h)
        .ok()
        .flatten()
        .ok_or_else(|| StorageError::Protocol("object answer without Content-Length".into()))?;
    let (range, total_size) = if resp.status() == StatusCode::PARTIAL_CONTENT {
        let cr = h
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range)
            .ok_or_else(|| StorageError::Protocol("206 without a valid Content-Range".into()))?;
        (Some((cr.0, cr.1)), cr.2)
    } else {
        (None, content_length)
    };
    Ok(ObjectHead {
        content_length,
        total_size,
        range,
        etag: h.get(header::ETAG).cloned(),
        last_modified: h.get(header::LAST_MODIFIED).cloned(),
    })
}

/// `bytes a-b/size` → `(a, b, size)`.
fn parse_content_range(s: &str) -> Option<(u64, u64, u64)> {
    let rest = s.trim().strip_prefix("bytes ")?;
    let (range, size) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b, size) = (a.parse().ok()?, b.parse().ok()?, size.parse().ok()?);
    (a <= b && b < size).then_some((a, b, size))
}

/// Reads the S3 error document (bounded) and returns its `<Code>`, or "" when none.
async fn error_code(resp: Response<Body>) -> String {
    let read = read_body(resp.into_body(), ERROR_BODY_LIMIT);
    let bytes = match tokio::time::timeout(Duration::from_secs(2), read).await {
        Ok(Ok(b)) => b,
        _ => Bytes::new(),
    };
    code_in(&bytes)
}

/// A whole answer body of at most `limit` bytes. Frames are read one by one (a
/// `Limited::collect` over the boxed body trips the compiler's `Send` proof for the
/// futures that await this).
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, String> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(format!("longer than {limit} bytes"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// The `<Code>` of an S3 error document (letters and digits only, at most 64), or "".
fn code_in(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| {
            code.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(64)
                .collect()
        })
        .unwrap_or_default()
}

fn hint(code: &str) -> &'static str {
    match code {
        "SignatureDoesNotMatch" => "check SPACES_SECRET_ACCESS_KEY and SPACES_REGION",
        // s3s (and so the test server) says NotSignedUp for an unknown key id.
        "InvalidAccessKeyId" | "NotSignedUp" => "check SPACES_ACCESS_KEY_ID",
        "RequestTimeTooSkewed" => "the gateway's clock is off: sync it with NTP",
        "AccessDenied" => "the key may not read this bucket: check its permissions",
        "AuthorizationHeaderMalformed" => "check SPACES_REGION (Spaces wants its slug, e.g. lon1)",
        "NoSuchBucket" => "check SPACES_BUCKET_NAME and SPACES_ENDPOINT_URL",
        _ => "check SPACES_* credentials, the region and the clock",
    }
}

fn refused(status: u16, code: String) -> StorageError {
    let hint = hint(&code);
    StorageError::Refused { status, code, hint }
}

fn unexpected(status: StatusCode, code: String) -> StorageError {
    if status.is_server_error() {
        StorageError::Unavailable {
            status: status.as_u16(),
            code,
        }
    } else if status.is_client_error() {
        refused(status.as_u16(), code)
    } else {
        StorageError::Protocol(format!("HTTP {status} {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_keeps_labels_names_the_rest_and_follows_truncation() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>shipping-labels</Name><Prefix>labels/</Prefix><KeyCount>3</KeyCount>
  <MaxKeys>3</MaxKeys><IsTruncated>true</IsTruncated>
  <Contents><Key>labels/1Z999AA10123456784.pdf</Key><LastModified>2026-11-01T10:00:00.000Z</LastModified>
    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>51200</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>labels/a&amp;b.pdf</Key><Size>10</Size></Contents>
  <Contents><Key>labels/nested/X1.pdf</Key><Size>11</Size></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;
        let (objects, next) = parse_listing(xml, "labels/").unwrap();
        assert_eq!(
            objects,
            vec![
                Listed {
                    key: "labels/1Z999AA10123456784.pdf".into(),
                    tracking: Tracking::parse("1Z999AA10123456784").ok(),
                    size: 51200,
                    last_modified: Some(
                        SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_527_200)
                    ),
                },
                Listed {
                    key: "labels/a&b.pdf".into(),
                    tracking: None,
                    size: 10,
                    last_modified: None,
                },
                Listed {
                    key: "labels/nested/X1.pdf".into(),
                    tracking: None,
                    size: 11,
                    last_modified: None,
                },
            ]
        );
        assert_eq!(
            next.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
        let last = br#"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>"#;
        assert_eq!(parse_listing(last, "labels/").unwrap(), (Vec::new(), None));
        assert!(parse_listing(b"<html>oops", "labels/").is_err());
    }

    #[test]
    fn content_md5_is_the_base64_of_the_md5() {
        // RFC 1321's test suite: MD5("") and MD5("abc"), then base64 as Content-MD5 wants.
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
    }

    #[test]
    fn delete_request_names_each_key_escaped_and_asks_for_quiet() {
        let xml = delete_request_xml(
            ["labels/A1.pdf".to_string(), "l&<b>/B2.pdf".to_string()].into_iter(),
        );
        assert!(xml.contains("<Quiet>true</Quiet>"), "{xml}");
        assert!(
            xml.contains("<Object><Key>labels/A1.pdf</Key></Object>"),
            "{xml}"
        );
        assert!(xml.contains("<Key>l&amp;&lt;b&gt;/B2.pdf</Key>"), "{xml}");
    }

    #[test]
    fn delete_answer_gives_each_failed_key_with_its_reason() {
        // The shape of the AWS documentation's DeleteObjects example answer.
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Deleted><Key>labels/A1.pdf</Key></Deleted>
  <Error><Key>labels/B2.pdf</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>
  <Error><Key>labels/C3.pdf</Key><Code>InternalError</Code></Error>
</DeleteResult>"#;
        assert_eq!(
            parse_delete_errors(xml).unwrap(),
            vec![
                (
                    "labels/B2.pdf".to_string(),
                    "AccessDenied: Access Denied".to_string()
                ),
                ("labels/C3.pdf".to_string(), "InternalError".to_string()),
            ]
        );
        assert_eq!(parse_delete_errors(b"<DeleteResult/>").unwrap(), vec![]);
        assert!(parse_delete_errors(b"<html>").is_err());
    }

    #[test]
    fn content_range_parses() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 99, 1000)));
        assert_eq!(parse_content_range("bytes 5-1/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
        assert_eq!(parse_content_range("bytes */10"), None);
    }

    #[test]
    fn every_credential_fault_names_its_own_fix() {
        for (code, fix) in [
            (
                "SignatureDoesNotMatch",
                "check SPACES_SECRET_ACCESS_KEY and SPACES_REGION",
            ),
            ("InvalidAccessKeyId", "check SPACES_ACCESS_KEY_ID"),
            ("NotSignedUp", "check SPACES_ACCESS_KEY_ID"),
            (
                "RequestTimeTooSkewed",
                "the gateway's clock is off: sync it with NTP",
            ),
            (
                "AccessDenied",
                "the key may not read this bucket: check its permissions",
            ),
            (
                "AuthorizationHeaderMalformed",
                "check SPACES_REGION (Spaces wants its slug, e.g. lon1)",
            ),
            (
                "NoSuchBucket",
                "check SPACES_BUCKET_NAME and SPACES_ENDPOINT_URL",
            ),
        ] {
            let e = refused(403, code.into());
            assert!(
                matches!(&e, StorageError::Refused { hint, .. } if *hint == fix),
                "{code}: {e}"
            );
            assert!(e.to_string().contains(code), "{e}");
        }
        assert_eq!(
            hint("SomethingElse"),
            "check SPACES_* credentials, the region and the clock"
        );
    }
}
