//! Redirect mode: after the session check, a label that is not hot in memory is answered
//! with a 307 to a short-lived presigned URL of its object, so its bytes go from the
//! bucket to the client without passing through the gateway.
//!
//! The URL carries the headers the gateway would have sent (S3's `response-*` query
//! overrides) and is signed for the request's method (a HEAD gets a HEAD URL). With
//! `check_exists`, a signed HEAD goes first, so a missing label still regenerates or gets
//! the 404 page; a found answer is remembered briefly, never longer than a URL lives.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use moka::future::Cache;

use super::request::LabelRequest;
use super::{Gateway, Reply};
use crate::config::RedirectConfig;
use crate::error::GatewayError;
use crate::http::{empty, Body};
use crate::storage::{Fetch, GetRequest};
use crate::tracking::Tracking;

/// How long "this label exists" is remembered (capped by the URLs' lifetime).
const EXISTS_MEMORY: Duration = Duration::from_secs(10);

pub(super) struct Redirector {
    expires: Duration,
    host: Option<String>,
    check_exists: bool,
    exists: Cache<Tracking, ()>,
}

impl Redirector {
    pub fn new(cfg: &RedirectConfig) -> Option<Redirector> {
        cfg.enabled.then(|| Redirector {
            expires: cfg.expires,
            host: (!cfg.host.is_empty()).then(|| cfg.host.clone()),
            check_exists: cfg.check_exists,
            exists: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(EXISTS_MEMORY.min(cfg.expires))
                .build(),
        })
    }
}

impl Gateway {
    /// The redirect for a label that is not in memory: 307 to its presigned URL, or
    /// (storage has none) regeneration or the missing-label page.
    pub(super) async fn serve_redirect(
        &self,
        redirect: &Redirector,
        req: &LabelRequest<'_>,
    ) -> Result<Reply, GatewayError> {
        // The primary's URL, also while reads fail over to a fallback bucket.
        let Some(store) = self.storage.s3() else {
            // Validation refuses redirect mode on a local store.
            return Err(GatewayError::BadGateway(
                "redirect mode needs an S3 store".into(),
            ));
        };
        if redirect.check_exists && redirect.exists.get(&req.tracking).await.is_none() {
            let head = GetRequest {
                tracking: req.tracking,
                range: None,
                conditions: &Default::default(),
                head_only: true,
            };
            match self.storage.get(head).await? {
                Fetch::NotFound => return self.regenerate_missing(req).await,
                _ => redirect.exists.insert(req.tracking, ()).await,
            }
        }
        let disposition = format!("inline; filename=\"{}.pdf\"", req.tracking);
        let cache_control = self.cache_control.to_str().unwrap_or("private, no-cache");
        let url = store.presign_label(
            &req.tracking,
            &req.parts.method,
            redirect.expires,
            redirect.host.as_deref(),
            &[
                ("response-cache-control", cache_control),
                ("response-content-disposition", &disposition),
                ("response-content-type", "application/pdf"),
            ],
        )?;
        let location = HeaderValue::try_from(url)
            .map_err(|_| GatewayError::BadGateway("presigned URL is not a header value".into()))?;
        let mut resp: Response<Body> = Response::new(empty());
        *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        let h = resp.headers_mut();
        h.insert(header::LOCATION, location);
        // The URL is a bearer token for `expires`: never stored anywhere.
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        Ok(Reply::Response(resp))
    }
}
