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

mod errors;
mod listing;
mod object;
mod raw;
mod tls;
mod transport;

pub use listing::content_md5;
pub use raw::RawAnswer;
pub use tls::tls_config;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, Request};

use super::direct::Direct;
use super::sigv4::Signer;
use super::StorageError;
use crate::config::{Addressing, StorageConfig};
use crate::http::empty;
use crate::secret::Secret;
use crate::tracking::Tracking;
use errors::{error_code, unexpected};
use tls::{build_client, HttpClient};

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
                crate::storage::sigv4::QUERY,
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

    /// The URL of `{location}/{name}`, for objects that are not labels (`doctor`'s scratch
    /// object). `name` must be URL-safe.
    pub fn scratch_url(&self, name: &str) -> String {
        format!("{}{name}", self.base)
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
}
