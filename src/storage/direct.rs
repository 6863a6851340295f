//! The storage connections of bodiless requests (label GET and HEAD, listings, deletes):
//! HTTP/1.1 written and read by the request's own task, over a pool of kept-alive
//! connections (plain TCP, or rustls for https).
//!
//! hyper's client runs each connection as a task of its own and hands every body frame to
//! the request over a channel: per 50 KiB label, several wake-ups of another task, often
//! on the other worker thread (a futex call and a context switch each). Here the response
//! body reads the storage socket itself, in the task that writes to the client: a frame
//! is read and passed on in one poll. Only what S3 answers to these requests is handled:
//! a `Content-Length` body, none (HEAD, 204, 304), or one that ends with the connection.
//! Anything else (a chunked answer) is [`Error::Unsupported`], and the caller sends the
//! request again through hyper's client, before any byte has reached the client.
//!
//! A body larger than one read is read under a receive watermark ([`Watermark`]): its
//! socket wakes the task once per 128 KiB (or the rest), not per segment the store writes.
//!
//! Behaviour kept from the pooled client: a connection is reused only after its body was
//! read to the end; an idle connection that the server closed meanwhile (seen on checkout,
//! or as a failed write or an empty answer on a reused connection) costs one fresh
//! connection, not an error; a body cut short is an error, never a short success.
// Numbers a peer sent are only ever used through checked or saturating arithmetic.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::http::BoxError;

/// Bytes read from storage at a time (one TLS record); bounds each connection's buffer.
const READ_SIZE: usize = 16 * 1024;
/// Bodies larger than one read are read under a receive watermark ([`Watermark`]).
const LARGE_BODY: u64 = READ_SIZE as u64 + 1;
/// The watermark: the socket reports readable once this much has arrived (or the body's
/// rest, if less).
const WATERMARK: u64 = 128 * 1024;
/// The largest TLS record on the wire (16 KiB of plaintext and TLS 1.2's largest expansion).
const TLS_RECORD: u64 = 16 * 1024 + 2048;
/// A wait under the watermark that saw no byte for this long drops it for the body's rest
/// (an origin sending slowly must not look stalled).
const WATERMARK_CHECK: Duration = Duration::from_millis(50);
/// The shortest `storage.idle_body_timeout` the watermark is used with.
pub const WATERMARK_MIN_IDLE: Duration = Duration::from_secs(1);
/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Headers of one response head at most (hyper's client's limit).
const MAX_HEADERS: usize = 100;
/// Idle connections kept, and for how long.
const MAX_IDLE: usize = 512;
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request could not be sent or answered here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting timed out")]
    ConnectTimeout,
    #[error("{0}")]
    Connect(String),
    #[error("storage answer: {0}")]
    Protocol(String),
    /// An answer framed in a way this reader leaves to hyper's client.
    #[error("answer framed with Transfer-Encoding")]
    Unsupported,
}

/// Where the connections go.
struct Endpoint {
    /// `host:port` to connect to.
    addr: String,
    /// For https: the name the certificate must carry.
    server_name: Option<rustls::pki_types::ServerName<'static>>,
}

/// The pool and how to open connections.
pub struct Direct {
    endpoint: Endpoint,
    tls: TlsConnector,
    connect_timeout: Duration,
    idle: Mutex<VecDeque<(Conn, Instant)>>,
    /// Whether bodies are read under the receive watermark.
    watermark: bool,
}

/// One open connection and what was read from it but not yet used.
struct Conn {
    io: Stream,
    buf: BytesMut,
    /// The socket's `SO_RCVLOWAT` as last set (1, the kernel's default, when idle).
    lowat: u64,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Direct {
    /// Connections to the endpoint of `uri` (`http` or `https`), with `tls` for https.
    pub fn new(
        uri: &http::Uri,
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
    ) -> Result<Direct, String> {
        let host = uri.host().ok_or("no host")?;
        let https = match uri.scheme_str() {
            Some("https") | None => true,
            Some("http") => false,
            Some(other) => return Err(format!("scheme {other} is not http or https")),
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = if https {
            Some(
                rustls::pki_types::ServerName::try_from(bare.to_string())
                    .map_err(|_| format!("{host} is not a TLS server name"))?,
            )
        } else {
            None
        };
        Ok(Direct {
            endpoint: Endpoint {
                addr: format!("{host}:{port}"),
                server_name,
            },
            tls: TlsConnector::from(tls),
            connect_timeout,
            idle: Mutex::new(VecDeque::new()),
            watermark: true,
        })
    }

    /// Reads bodies under the receive watermark only if a body may stay silent for
    /// `idle_body_timeout`, at least [`WATERMARK_MIN_IDLE`]: a wait under the watermark
    /// lasts up to two checks (100 ms) before a slow origin drops it, a silence a much
    /// shorter timeout would take for a stall.
    pub fn watermark_for(mut self, idle_body_timeout: Duration) -> Direct {
        self.watermark = idle_body_timeout >= WATERMARK_MIN_IDLE;
        self
    }

    /// Sends a bodiless request to this pool's endpoint (whatever host its URI names: the
    /// store sends only its own) and reads the answer's head; the body follows as it is
    /// read. The answer carries the headers the store reads ([`READ_HEADERS`]), or every
    /// header when the request has the [`AllHeaders`] extension.
    pub async fn send(
        self: &Arc<Self>,
        req: &Request<crate::http::Body>,
    ) -> Result<Response<DirectBody>, Error> {
        // The answer to a HEAD has no body, whatever its `Content-Length` says.
        let head_only = req.method() == http::Method::HEAD;
        let all_headers = req.extensions().get::<AllHeaders>().is_some();
        let head = request_head(req);
        // A kept connection may have been closed by the server since; each such loss
        // costs a fresh connection, not an error.
        loop {
            let (mut conn, reused) = match self.checkout() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            let written = async {
                conn.io.write_all(&head).await?;
                conn.io.flush().await
            };
            if let Err(e) = written.await {
                if reused {
                    continue;
                }
                return Err(Error::Connect(format!("writing the request: {e}")));
            }
            // Interim answers (100, 103 Early Hints, ...) are skipped as hyper's client
            // skips them: the final answer follows on the same connection.
            let mut interim = false;
            let read = loop {
                match read_head(&mut conn, all_headers).await {
                    Ok(Some(head)) if is_interim(head.status) => interim = true,
                    other => break other,
                }
            };
            // A connection that already answered in part is not a stale one.
            let stale = reused && !interim;
            match read {
                Ok(Some(parts)) => return self.answer(conn, parts, head_only),
                Ok(None) if stale => continue,
                Ok(None) => {
                    return Err(Error::Connect(
                        "storage closed the connection without answering".into(),
                    ))
                }
                Err(HeadError::Io(_)) if stale => continue,
                Err(HeadError::Io(e)) => {
                    return Err(Error::Connect(format!("reading the answer: {e}")))
                }
                Err(HeadError::Protocol(why)) => return Err(Error::Protocol(why)),
            }
        }
    }

    fn answer(
        self: &Arc<Self>,
        conn: Conn,
        head: Head,
        head_only: bool,
    ) -> Result<Response<DirectBody>, Error> {
        let status = head.status;
        let h = &head.headers;
        // hyper's client never reuses a connection after a 101: neither is it read here.
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::Protocol("101 Switching Protocols".into()));
        }
        let te = h.contains_key(header::TRANSFER_ENCODING);
        if te && h.contains_key(header::CONTENT_LENGTH) {
            // RFC 9112 §6.3: framed two ways, an error (hyper's client would read the
            // chunks, a reader of the length something else).
            return Err(Error::Protocol(
                "answer framed with both Transfer-Encoding and Content-Length".into(),
            ));
        }
        if te {
            return Err(Error::Unsupported);
        }
        let bodiless =
            head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let length = if bodiless {
            None
        } else {
            content_length(h).map_err(|why| Error::Protocol(why.into()))?
        };
        let remaining = if bodiless { Some(0) } else { length };
        let mut body = DirectBody {
            conn: Some(conn),
            remaining,
            keep_alive: head.keep_alive && remaining.is_some(),
            pool: self.clone(),
            watermark: (self.watermark && remaining.is_some_and(|r| r >= LARGE_BODY))
                .then(Watermark::default),
        };
        if remaining == Some(0) {
            body.finish();
        }
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = head.headers;
        Ok(resp)
    }

    /// The most recently used idle connection that is still open.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((mut conn, since)) = idle.pop_back() {
            if since.elapsed() < IDLE_TIMEOUT && conn.still_open() {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while idle
            .front()
            .is_some_and(|(_, since)| since.elapsed() >= IDLE_TIMEOUT)
            || idle.len() >= MAX_IDLE
        {
            idle.pop_front();
        }
        idle.push_back((conn, Instant::now()));
    }

    async fn connect(&self) -> Result<Conn, Error> {
        let open = async {
            let tcp = TcpStream::connect(&self.endpoint.addr)
                .await
                .map_err(|e| Error::Connect(format!("connecting to storage: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let io = match &self.endpoint.server_name {
                None => Stream::Plain(tcp),
                Some(name) => Stream::Tls(Box::new(
                    self.tls
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| Error::Connect(format!("TLS with storage: {e}")))?,
                )),
            };
            Ok(Conn {
                io,
                buf: BytesMut::with_capacity(READ_SIZE),
                lowat: 1,
            })
        };
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(Error::ConnectTimeout),
        }
    }
}

/// The request line and headers, as HTTP/1.1 wants them.
fn request_head<B>(req: &Request<B>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !req.headers().contains_key(header::HOST) {
        if let Some(a) = req.uri().authority() {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(a.as_str().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `SO_RCVLOWAT` on a TCP socket (Linux: honoured by `epoll` since 4.x).
#[cfg(target_os = "linux")]
fn set_rcvlowat(tcp: &TcpStream, bytes: u64) -> bool {
    use std::os::fd::AsRawFd;
    let value = bytes.min(i32::MAX as u64) as libc::c_int;
    // SAFETY: a plain integer option on a socket this connection owns.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn set_rcvlowat(_tcp: &TcpStream, bytes: u64) -> bool {
    bytes <= 1
}

/// A parsed response head.
struct Head {
    status: StatusCode,
    headers: http::HeaderMap,
    keep_alive: bool,
}

enum HeadError {
    Io(std::io::Error),
    Protocol(String),
}

/// Reads one response head; `None` when the connection ended before any byte of it.
async fn read_head(conn: &mut Conn, all_headers: bool) -> Result<Option<Head>, HeadError> {
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
const READ_HEADERS: [&str; 8] = [
    "content-length",
    "content-range",
    "content-type",
    "etag",
    "last-modified",
    "date",
    "transfer-encoding",
    "connection",
];

fn to_head(parsed: &httparse::Response<'_, '_>, all_headers: bool) -> Result<Head, String> {
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
fn is_interim(status: StatusCode) -> bool {
    status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS
}

/// Whether a comma-separated header value lists `token` (any case), as hyper reads
/// `Connection`: a value that is not visible ASCII lists nothing.
fn has_token(value: &HeaderValue, token: &str) -> bool {
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
fn digits(bytes: &[u8]) -> Option<u64> {
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

impl Conn {
    /// Sets the socket's receive watermark (`SO_RCVLOWAT`) unless it is already `bytes`;
    /// `false` if the system refused.
    fn set_lowat(&mut self, bytes: u64) -> bool {
        if self.lowat == bytes {
            return true;
        }
        let tcp = match &self.io {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        };
        if !set_rcvlowat(tcp, bytes) {
            return false;
        }
        self.lowat = bytes;
        true
    }

    /// Whether an idle connection is still usable: nothing to read and no end of stream
    /// (a server that closed it, or sent anything unasked, makes it unusable).
    fn still_open(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut rb = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut rb),
            Poll::Pending
        )
    }
}

/// A response body read from its storage connection; the connection goes back to the
/// pool once the body has been read to its end.
pub struct DirectBody {
    conn: Option<Conn>,
    /// Bytes still to come; `None`: until the connection ends.
    remaining: Option<u64>,
    keep_alive: bool,
    pool: Arc<Direct>,
    /// For a body larger than one read: how its socket is woken.
    watermark: Option<Watermark>,
}

/// A body larger than one read waits for a receive watermark (`SO_RCVLOWAT`): the socket
/// reports readable once 128 KiB (or the body's rest) have arrived instead of at every
/// segment the origin writes, so a label wakes its task, and crosses into hyper and out to
/// the client, in fewer and larger steps: a 50 KiB label usually in one. An origin that
/// sends slowly (no byte for a check's 50 ms while waiting) drops the watermark for the
/// rest of the body: it must never look stalled to the idle-body timeout.
#[derive(Default)]
struct Watermark {
    /// Checks the wait while the watermark is up; armed at the first wait.
    check: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether bytes arrived since the last check.
    moved: bool,
    /// The origin was slow: no watermark for this body.
    off: bool,
}

impl DirectBody {
    /// The body is complete: its connection is reusable (or closed).
    fn finish(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if self.keep_alive && conn.buf.is_empty() && conn.set_lowat(1) {
                self.pool.checkin(conn);
            }
        }
    }

    /// A read would wait: sets the watermark this wait asks for (only now, so reads of
    /// bytes already there cost no system call), and checks, every 50 ms of waiting, that
    /// bytes still arrive under it; drops it for the body's rest when none did. Lowering it
    /// makes the kernel signal what already arrived.
    fn wait_under_watermark(&mut self, cx: &mut Context<'_>) {
        let (Some(w), Some(conn), Some(rest)) =
            (self.watermark.as_mut(), self.conn.as_mut(), self.remaining)
        else {
            return;
        };
        if w.off {
            return;
        }
        // Over TLS the rest counts plaintext, and part of it may already sit in rustls as
        // an undecrypted partial record: ask for a record less, so the watermark is never
        // more than what is still to come on the wire.
        let rest = match conn.io {
            Stream::Plain(_) => rest,
            Stream::Tls(_) => rest.saturating_sub(TLS_RECORD),
        };
        if !conn.set_lowat(rest.clamp(1, WATERMARK)) {
            w.off = true;
            return;
        }
        if conn.lowat <= 1 {
            return;
        }
        let check = w.check.get_or_insert_with(|| {
            w.moved = false;
            Box::pin(tokio::time::sleep(WATERMARK_CHECK))
        });
        while check.as_mut().poll(cx).is_ready() {
            if !w.moved {
                // Lowering it makes the kernel signal what already arrived.
                w.off = true;
                conn.set_lowat(1);
                return;
            }
            w.moved = false;
            check.as_mut().reset(
                tokio::time::Instant::now()
                    .checked_add(WATERMARK_CHECK)
                    .unwrap_or_else(tokio::time::Instant::now),
            );
        }
    }
}

/// A body that ended early.
#[derive(Debug, thiserror::Error)]
#[error("storage closed the connection with {0} bytes of the body still to come")]
pub struct CutShort(pub u64);

impl http_body::Body for DirectBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if this.remaining == Some(0) {
                this.finish();
                return Poll::Ready(None);
            }
            if !conn.buf.is_empty() {
                let take = match this.remaining {
                    Some(r) => r.min(conn.buf.len() as u64) as usize,
                    None => conn.buf.len(),
                };
                let chunk = conn.buf.split_to(take).freeze();
                if let Some(r) = this.remaining.as_mut() {
                    *r = r.saturating_sub(take as u64);
                    if *r == 0 {
                        this.finish();
                    }
                }
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            conn.buf.reserve(READ_SIZE);
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf) {
                Poll::Pending => {
                    this.wait_under_watermark(cx);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => {
                    this.conn = None;
                    return match this.remaining {
                        None => Poll::Ready(None),
                        Some(left) => Poll::Ready(Some(Err(Box::new(CutShort(left))))),
                    };
                }
                Poll::Ready(Ok(_)) => {
                    if let Some(w) = this.watermark.as_mut() {
                        w.moved = true;
                    }
                }
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;

    /// A TLS origin for `localhost` that answers `body` to each request and closes each
    /// connection (TLS `close_notify`, then TCP) after `per_conn` answers. Returns its
    /// port, a client config that trusts it, and its count of connections.
    async fn tls_origin(
        body: &'static [u8],
        per_conn: usize,
    ) -> (u16, Arc<rustls::ClientConfig>, Arc<AtomicUsize>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert_der = cert.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];

        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    for _ in 0..per_conn {
                        let mut got = Vec::new();
                        let mut buf = [0u8; 4096];
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        let head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                        let _ = tls.write_all(head.as_bytes()).await;
                        if !got.starts_with(b"HEAD ") {
                            let _ = tls.write_all(body).await;
                        }
                        let _ = tls.flush().await;
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
        (port, Arc::new(client), connections)
    }

    #[test]
    fn a_label_read_keeps_the_headers_the_store_reads_and_a_raw_one_keeps_all() {
        let raw = b"HTTP/1.1 200 OK\r\nx-amz-request-id: 1234\r\nContent-Length: 5\r\n\
            ETag: \"abc\"\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n\
            Server: s3s\r\nContent-Range: bytes 0-4/9\r\nx-amz-id-2: xyz\r\n\
            Content-Type: application/pdf\r\nDate: Tue, 01 Dec 2026 10:00:01 GMT\r\n\
            Connection: close\r\n\r\n";
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        assert!(parsed.parse(raw).unwrap().is_complete());

        let label = to_head(&parsed, false).unwrap();
        let mut kept: Vec<_> = label.headers.keys().map(|k| k.as_str()).collect();
        kept.sort_unstable();
        assert_eq!(
            kept,
            [
                "connection",
                "content-length",
                "content-range",
                "content-type",
                "date",
                "etag",
                "last-modified"
            ]
        );
        assert_eq!(label.headers["etag"], "\"abc\"");
        assert!(!label.keep_alive, "Connection: close is still seen");

        let all = to_head(&parsed, true).unwrap();
        assert_eq!(all.headers.len(), 10);
        assert_eq!(all.headers["x-amz-request-id"], "1234");
        assert_eq!(all.headers["server"], "s3s");
    }

    fn request(method: http::Method, port: u16) -> Request<crate::http::Body> {
        let mut r = Request::new(crate::http::empty());
        *r.method_mut() = method;
        *r.uri_mut() = format!("https://localhost:{port}/bucket/label.pdf")
            .parse()
            .unwrap();
        r
    }

    #[tokio::test]
    async fn https_answers_are_read_whole_over_kept_connections_and_a_closed_one_is_replaced() {
        let body: &'static [u8] = &[7u8; 40_000];
        let (port, tls, connections) = tls_origin(body, 2).await;
        let uri: http::Uri = format!("https://localhost:{port}/bucket/").parse().unwrap();
        let direct = Arc::new(Direct::new(&uri, tls, Duration::from_secs(5)).unwrap());

        let first = direct
            .send(&request(http::Method::GET, port))
            .await
            .unwrap();
        assert_eq!(first.status(), 200);
        assert_eq!(first.into_body().collect().await.unwrap().to_bytes(), body);
        let head = direct
            .send(&request(http::Method::HEAD, port))
            .await
            .unwrap();
        assert_eq!(head.headers()["content-length"], "40000");
        assert!(head
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty());
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "the second request reused the first connection"
        );

        // The origin closed that connection after its second answer: the next request
        // finds it closed and opens another, without an error.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = direct
            .send(&request(http::Method::GET, port))
            .await
            .unwrap();
        assert_eq!(third.into_body().collect().await.unwrap().to_bytes(), body);
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    /// The socket's `SO_RCVLOWAT` as the kernel holds it.
    fn kernel_lowat(conn: &Conn) -> i32 {
        use std::os::fd::AsRawFd;
        let Stream::Tls(s) = &conn.io else {
            panic!("a TLS connection")
        };
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads one integer option into `value`.
        let rc = unsafe {
            libc::getsockopt(
                s.get_ref().0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        value
    }

    #[tokio::test]
    async fn a_large_https_body_waits_under_the_watermark_and_its_connection_is_kept_without() {
        let body: &'static [u8] = Box::leak(vec![9u8; 4 << 20].into_boxed_slice());
        let (port, tls, connections) = tls_origin(body, 2).await;
        let uri: http::Uri = format!("https://localhost:{port}/bucket/").parse().unwrap();
        let direct = Arc::new(Direct::new(&uri, tls, Duration::from_secs(5)).unwrap());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for answer in 0..2 {
            let mut b = direct
                .send(&request(http::Method::GET, port))
                .await
                .unwrap()
                .into_body();
            assert!(b.watermark.is_some(), "4 MiB is read under the watermark");
            // Read what has arrived, without letting the origin run, until a read waits.
            let mut got = Vec::with_capacity(body.len());
            while let Poll::Ready(frame) = http_body::Body::poll_frame(Pin::new(&mut b), &mut cx) {
                got.extend_from_slice(&frame.unwrap().unwrap().into_data().unwrap());
            }
            // Socket buffers hold far less than 4 MiB at the first answer: that one waited
            // with most of the body still to come, under the full watermark (as the kernel
            // holds it). Reads of bytes already there set none.
            if answer == 0 || got.len() < body.len() - (WATERMARK + TLS_RECORD) as usize {
                let conn = b.conn.as_ref().expect("still reading");
                assert_eq!(conn.lowat, WATERMARK);
                assert_eq!(kernel_lowat(conn), WATERMARK as i32);
            }
            got.extend_from_slice(&b.collect().await.unwrap().to_bytes());
            assert!(got == body, "read whole");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1, "kept and reused");
        // The kept connection reads its next answer's head without a watermark.
        let idle = direct.idle.lock().unwrap();
        let (conn, _) = idle.front().expect("kept");
        assert_eq!((conn.lowat, kernel_lowat(conn)), (1, 1));
    }

    #[tokio::test]
    async fn no_watermark_under_an_idle_body_timeout_shorter_than_its_checks_allow() {
        let body: &'static [u8] = &[5u8; 100_000];
        let (port, tls, _) = tls_origin(body, 1).await;
        let uri: http::Uri = format!("https://localhost:{port}/bucket/").parse().unwrap();
        let direct = Direct::new(&uri, tls, Duration::from_secs(5))
            .unwrap()
            .watermark_for(WATERMARK_MIN_IDLE - Duration::from_millis(1));
        let b = Arc::new(direct)
            .send(&request(http::Method::GET, port))
            .await
            .unwrap()
            .into_body();
        assert!(b.watermark.is_none());
        assert_eq!(b.collect().await.unwrap().to_bytes(), body);
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_refused() {
        let (port, tls, _) = tls_origin(b"x", 1).await;
        let uri: http::Uri = format!("https://127.0.0.1:{port}/bucket/").parse().unwrap();
        let direct = Arc::new(Direct::new(&uri, tls, Duration::from_secs(5)).unwrap());
        let mut req = request(http::Method::GET, port);
        *req.uri_mut() = format!("https://127.0.0.1:{port}/bucket/label.pdf")
            .parse()
            .unwrap();
        match direct.send(&req).await {
            Err(Error::Connect(why)) => assert!(why.contains("TLS"), "{why}"),
            other => panic!(
                "expected a TLS failure, got {:?}",
                other.map(|r| r.status())
            ),
        }
    }

    fn head_of(raw: &str) -> Head {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        assert!(parsed.parse(raw.as_bytes()).unwrap().is_complete(), "{raw}");
        to_head(&parsed, false).unwrap()
    }

    #[test]
    fn connection_is_read_as_tokens_on_every_line_as_hyper_reads_it() {
        for (lines, keep) in [
            ("Connection: close, x-foo\r\n", false),
            ("Connection: x-foo , CLOSE\r\n", false),
            ("Connection: close\r\nConnection: keep-alive\r\n", false),
            ("Connection: keep-alive\r\nConnection: close\r\n", false),
            ("Connection: keep-alive, x-foo\r\n", true),
            ("", true),
        ] {
            let h = head_of(&format!("HTTP/1.1 200 OK\r\n{lines}\r\n"));
            assert_eq!(h.keep_alive, keep, "{lines:?}");
        }
        assert!(!head_of("HTTP/1.0 200 OK\r\n\r\n").keep_alive);
        assert!(head_of("HTTP/1.0 200 OK\r\nConnection: x, Keep-Alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn content_length_is_read_exactly_as_hyper_reads_it() {
        let cl = |lines: &[&str]| {
            let mut h = http::HeaderMap::new();
            for l in lines {
                h.append(header::CONTENT_LENGTH, HeaderValue::from_str(l).unwrap());
            }
            content_length(&h)
        };
        assert_eq!(cl(&[]), Ok(None));
        assert_eq!(cl(&["160"]), Ok(Some(160)));
        assert_eq!(cl(&["160, 160"]), Ok(Some(160)));
        assert_eq!(cl(&["160", "160,160"]), Ok(Some(160)));
        assert_eq!(cl(&["18446744073709551613"]), Ok(Some(u64::MAX - 2)));
        for bad in [
            &["+160"][..],
            &["-1"],
            &["0x10"],
            &["1 60"],
            &[""],
            &["160,"],
            &["160", "161"],
            &["160, 0"],
            &["18446744073709551614"],
            &["18446744073709551615"],
            &["18446744073709551616"],
            &["99999999999999999999999"],
        ] {
            assert!(cl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_head_of_a_hundred_headers_is_read_as_hyper_reads_it() {
        let mut raw = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..99 {
            raw.push_str(&format!("x-h{i}: v\r\n"));
        }
        raw.push_str("Content-Length: 3\r\n\r\n");
        assert_eq!(head_of(&raw).headers["content-length"], "3");
    }

    #[test]
    fn the_request_head_is_http_1_1_with_host_from_the_uri_when_missing() {
        let mut r = Request::new(());
        *r.uri_mut() = "http://example.test:9000/b/k.pdf?x=1".parse().unwrap();
        r.headers_mut()
            .insert("x-amz-date", HeaderValue::from_static("20261202T000000Z"));
        assert_eq!(
            String::from_utf8(request_head(&r)).unwrap(),
            "GET /b/k.pdf?x=1 HTTP/1.1\r\nhost: example.test:9000\r\nx-amz-date: 20261202T000000Z\r\n\r\n"
        );
    }
}
