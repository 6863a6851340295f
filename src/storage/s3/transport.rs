//! Sending: signing each attempt, the direct path for bodiless requests and the pooled
//! client for the rest, retries with backoff, timeouts, reading a bounded answer body.

use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;

use super::errors::error_code;
use super::S3Store;
use crate::http::{Body, BoxError};
use crate::storage::direct;
use crate::storage::sigv4::Payload;
use crate::storage::StorageError;

impl S3Store {
    /// Sends a bodiless request, retrying connection faults, 5xx and `SlowDown` with
    /// jittered exponential backoff. A timeout is not retried: the caller's budget is spent.
    pub(super) async fn send_with_retries(
        &self,
        build: impl Fn() -> http::Result<Request<Body>>,
    ) -> Result<Response<Body>, StorageError> {
        self.send_signed_with_retries(build, Payload::Empty).await
    }

    /// [`Self::send_with_retries`] for a request whose body `build` makes afresh each time
    /// and `payload` describes.
    pub(super) async fn send_signed_with_retries(
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

    pub(super) async fn send_once(
        &self,
        req: Request<Body>,
    ) -> Result<Response<Body>, StorageError> {
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

/// Whether the client error is the connector's connect timeout (504, not retried).
pub(super) fn timed_out(e: &hyper_util::client::legacy::Error) -> bool {
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

pub(super) fn describe_client_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// A whole answer body of at most `limit` bytes. Frames are read one by one (a
/// `Limited::collect` over the boxed body trips the compiler's `Send` proof for the
/// futures that await this).
pub(super) async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, String> {
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
