//! One signed request read whole, status, headers and body: `doctor`'s view of the store.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};

use super::errors::code_in;
use super::transport::read_body;
use super::S3Store;
use crate::http::full;
use crate::storage::direct;
use crate::storage::sigv4::Payload;
use crate::storage::StorageError;

impl S3Store {
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
}

/// The largest body [`S3Store::raw`] reads.
pub(super) const RAW_BODY_LIMIT: usize = 64 * 1024;

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
