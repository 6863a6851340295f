//! Label objects: the read (GET/HEAD with Range and preconditions, answered as a
//! [`Fetch`] outcome) and the write (PUT, never overwriting unless asked).

use std::time::SystemTime;

use http::header;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;

use super::errors::{error_code, refused};
use super::S3Store;
use crate::body::IdleTimeout;
use crate::http::{empty, Body};
use crate::storage::sigv4::Payload;
use crate::storage::{Fetch, GetRequest, ObjectHead, PutOutcome, StorageError};
use crate::tracking::Tracking;

impl S3Store {
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
                    "NoSuchKey" => Ok(Fetch::NotFound),
                    "NoSuchBucket" => Err(self.no_such_bucket()),
                    // A HEAD's bare 404 is the same for a missing key and a missing
                    // bucket: the bucket is asked (its answer kept for a while).
                    "" => self.missing_key_or_bucket().await,
                    _ => Err(refused(404, code)),
                }
            }
            s => Err(self.fault(s, error_code(resp).await)),
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
            s => Err(self.fault(s, error_code(resp).await)),
        }
    }
}

pub(super) fn object_head<B>(resp: &Response<B>) -> Result<ObjectHead, StorageError> {
    let h = resp.headers();
    // Read as the storage readers frame the body (hyper's rules: no sign, repeats equal).
    let content_length: u64 = crate::storage::direct::content_length(h)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 99, 1000)));
        assert_eq!(parse_content_range("bytes 5-1/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
        assert_eq!(parse_content_range("bytes */10"), None);
    }
}
