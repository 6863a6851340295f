//! The storage answer's head, read as hyper's client reads it: interim answers told
//! apart, `Connection` and `Content-Length` read by hyper's rules.
// Numbers a peer sent are only ever used through checked or saturating arithmetic.
#![deny(clippy::arithmetic_side_effects)]
use std::pin::Pin;

use http::header::{self, HeaderName, HeaderValue};
use http::StatusCode;

use super::{Conn, MAX_HEAD, MAX_HEADERS, READ_SIZE};

/// A parsed response head.
pub(super) struct Head {
    pub(super) status: StatusCode,
    pub(super) headers: http::HeaderMap,
    pub(super) keep_alive: bool,
}

pub(super) enum HeadError {
    Io(std::io::Error),
    Protocol(String),
}

/// Reads one response head; `None` when the connection ended before any byte of it.
pub(super) async fn read_head(
    conn: &mut Conn,
    all_headers: bool,
) -> Result<Option<Head>, HeadError> {
    loop {
        if !conn.buf.is_empty() {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&conn.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = to_head(&parsed, all_headers).map_err(HeadError::Protocol)?;
                    let _ = conn.buf.split_to(len);
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) if conn.buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Err(HeadError::Protocol("answer head too large".into()))
                }
                Err(e) => return Err(HeadError::Protocol(format!("unreadable head: {e}"))),
            }
        }
        conn.buf.reserve(READ_SIZE);
        let had = conn.buf.len();
        let n = std::future::poll_fn(|cx| {
            tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)
        })
        .await
        .map_err(HeadError::Io)?;
        if n == 0 {
            return if had == 0 {
                Ok(None)
            } else {
                Err(HeadError::Protocol(
                    "storage closed the connection mid-head".into(),
                ))
            };
        }
    }
}

/// A request extension: its answer keeps every header (`doctor`'s raw answers show them).
#[derive(Debug, Clone, Copy)]
pub struct AllHeaders;

/// The answer headers the store reads (a label's length, range and validators, and the
/// framing); the rest of what S3 sends (request ids, server, storage class, ...) is not
/// copied into the answer's map, which took a parse, an allocation and a hash per header
/// on every label fetch.
pub(super) const READ_HEADERS: [&str; 8] = [
    "content-length",
    "content-range",
    "content-type",
    "etag",
    "last-modified",
    "date",
    "transfer-encoding",
    "connection",
];

pub(super) fn to_head(
    parsed: &httparse::Response<'_, '_>,
    all_headers: bool,
) -> Result<Head, String> {
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("bad status")?;
    let mut headers = http::HeaderMap::with_capacity(if all_headers {
        parsed.headers.len()
    } else {
        READ_HEADERS.len()
    });
    // hyper's client: HTTP/1.1 keeps the connection unless a `close` token appears on
    // any `Connection` line; HTTP/1.0 closes it unless one asks `keep-alive`.
    let mut keep_alive = parsed.version == Some(1);
    let mut saw_close = false;
    for h in parsed.headers.iter() {
        if !all_headers && !READ_HEADERS.iter().any(|r| h.name.eq_ignore_ascii_case(r)) {
            continue;
        }
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "bad header name")?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| "bad header value")?;
        if name == header::CONNECTION {
            if saw_close || has_token(&value, "close") {
                saw_close = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = has_token(&value, "keep-alive");
            }
        }
        headers.append(name, value);
    }
    Ok(Head {
        status,
        headers,
        keep_alive,
    })
}

/// 100 and 102-199: an interim answer, the final one still to come (101 is final).
pub(super) fn is_interim(status: StatusCode) -> bool {
    status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS
}

/// Whether a comma-separated header value lists `token` (any case), as hyper reads
/// `Connection`: a value that is not visible ASCII lists nothing.
pub(super) fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// The body length the `Content-Length` lines give, read exactly as hyper's client reads
/// them: every comma-separated value on every line plain digits (no sign, no padding but
/// the spaces around a comma), all equal, and at most `u64::MAX - 2` (hyper's own bound);
/// `Ok(None)` without any. Anything else is an error, the answer refused.
pub fn content_length(headers: &http::HeaderMap) -> Result<Option<u64>, &'static str> {
    let mut length = None;
    for line in headers.get_all(header::CONTENT_LENGTH) {
        let line = line.to_str().map_err(|_| "bad Content-Length")?;
        for v in line.split(',') {
            let n = digits(v.trim().as_bytes()).ok_or("bad Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length");
            }
            length = Some(n);
        }
    }
    match length {
        Some(n) if n > u64::MAX - 2 => Err("Content-Length too large"),
        other => Ok(other),
    }
}

/// A decimal number of plain ASCII digits, `None` if empty, not digits or over `u64`.
pub(super) fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n
            .checked_mul(10)?
            .checked_add(u64::from(b.wrapping_sub(b'0'))),
        _ => None,
    })
}
