//! A connection's lane: who reads its requests. On the public listener the lane reads
//! HTTP/1.1 request heads itself, answers a whole-label hit whose session and label are
//! both in memory on the spot (`Gateway::quick_hit`: one read, one `writev`, no hyper),
//! and hands every other request to hyper *one request at a time*: hyper gets exactly that
//! request's bytes, answers it as it always does, and the connection comes back to the
//! lane for the next one (the lane keeps one hyper connection, idle between the requests
//! it hands on, and takes the socket back once hyper has read the request, finished its
//! answer, flushed it, and waits for more). A request whose end the lane cannot know
//! without reading it as hyper would (a chunked body, a head it does not parse, HTTP/2)
//! hands the rest of the connection to hyper for good, as does the internal listener from
//! the start.
//!
//! Framing is decided once, here, before hyper sees a byte: a head as `httparse` (hyper's
//! own parser) reads it, plus a `Content-Length` body; any `Transfer-Encoding`, a
//! `Content-Length` that is not one plain number, or several that differ go to hyper for
//! good, so a request is never framed two ways.
//!
//! Why: a hit is the gateway's cheapest answer, and hyper's own work per request (its
//! request `HeaderMap`, the response `HeaderMap`, its encoding of the head) was the larger
//! part of it. Everything hyper does for the other requests, and every timeout, limit and
//! drain of the connection (`server`), stays as it was.
// Numbers a peer sent are only ever used through checked or saturating arithmetic.
#![deny(clippy::arithmetic_side_effects)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use hyper_util::rt::TokioIo;

use super::builders::Handler;
use super::lane_io::{LaneIo, Rewind, Shared};
use super::{service, BoxError, Builders, BusyGuard, Conn};
use crate::body::Progress;
use crate::gateway::{Gateway, Listener, QuickRequest, LABEL_PREFIX};

/// Headers a request head may have for the lane to parse it (hyper's own limit is 100).
const MAX_HEADERS: usize = 64;

/// The first read's room; grown up to `max_header_bytes` for a longer head.
const FIRST_READ: usize = 4096;

/// The longest request body the lane frames itself; a longer `Content-Length` hands the
/// connection to hyper for good (no upload the gateway takes comes near it).
const MAX_BODY: u64 = 1 << 32;

/// Serves `stream` until it closes: the lane on the public listener, hyper alone on the
/// internal one. The quick path asks `gateway`; hyper's service calls `handler` (the same
/// gateway in production; a recording stand-in in the differential check).
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve<S: LaneIo, H: Handler>(
    stream: S,
    peer: std::net::SocketAddr,
    kind: Listener,
    gateway: Arc<Gateway>,
    handler: Arc<H>,
    conn: Arc<Conn>,
    builders: Arc<Builders>,
) -> Result<(), BoxError> {
    if !kind.public() {
        let at = Handover::Start;
        return hyper_from_here(
            stream,
            Bytes::new(),
            at,
            peer,
            kind,
            &handler,
            &conn,
            &builders,
        )
        .await;
    }
    let max_head = builders.max_head;
    let handed = Handed::default();
    // hyper's connection for the requests the lane hands on, made at the first one and kept
    // (idle between them) for the connection's life.
    let mut hyper1 = None;
    let mut buf = BytesMut::new();
    let mut tail = Vec::new();
    let mut memo = crate::auth::SessionMemo::default();
    // HTTP/2 only from a connection's first byte: once a request was read here, hyper
    // takes the connection on as HTTP/1 only.
    let mut at = Handover::Start;
    loop {
        match parse(&buf, max_head) {
            Parsed::Partial => {
                if buf.len() >= max_head {
                    // hyper reads the rest and answers 431.
                    let prefix = buf.split().freeze();
                    drop(hyper1);
                    return hyper_from_here(
                        stream, prefix, at, peer, kind, &handler, &conn, &builders,
                    )
                    .await;
                }
                if buf.capacity().saturating_sub(buf.len()) < 512 {
                    buf.reserve(FIRST_READ.max(buf.len()).min(max_head));
                }
                match stream.try_read_buf(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if buf.is_empty() && conn.is_draining() {
                            return Ok(());
                        }
                        if buf.is_empty() && buf.capacity() > FIRST_READ {
                            // An idle connection keeps no large buffer.
                            buf = BytesMut::new();
                        }
                        // A drain that starts while the lane waits here closes the
                        // connection from outside (`server::connection`).
                        std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Parsed::Quick { len, req } => {
                at = Handover::Midway;
                let busy = conn.begin_request();
                let closing = conn.is_draining();
                if let Some(hit) = gateway.quick_hit(&req, &mut memo, &mut tail, closing).await {
                    busy.progress(false);
                    write_all(&stream, [hit.head(), &tail[..], hit.body()], &busy).await?;
                    drop(busy);
                    buf.advance(len);
                    if closing {
                        return Ok(());
                    }
                    continue;
                }
                drop(busy);
                handed.give(&mut buf, len as u64);
            }
            Parsed::Request { len } => {
                at = Handover::Midway;
                handed.give(&mut buf, len);
            }
            Parsed::Hyper => {
                let prefix = buf.split().freeze();
                drop(hyper1);
                return hyper_from_here(stream, prefix, at, peer, kind, &handler, &conn, &builders)
                    .await;
            }
        }
        // The request `handed` holds goes to hyper.
        let served = hyper1.get_or_insert_with(|| {
            Box::pin(builders.http1.serve_connection(
                TokioIo::new(Shared {
                    stream: &stream,
                    handed: &handed,
                }),
                service(handler.clone(), conn.clone(), peer, kind),
            ))
        });
        let back = || handed.done() && conn.busy.load(Ordering::Acquire) == 0;
        let next = drive(
            &conn,
            served.as_mut(),
            |served| served.graceful_shutdown(),
            back,
        )
        .await?;
        if next == Next::Closed {
            return Ok(());
        }
    }
}

/// What the lane found at the start of its buffer.
enum Parsed<'b> {
    /// Not a whole head yet.
    Partial,
    /// A head the quick path may answer, `len` bytes long (it has no body).
    Quick { len: usize, req: QuickRequest<'b> },
    /// Any other request hyper answers, `len` bytes long with its body.
    Request { len: u64 },
    /// A connection only hyper can read on from here.
    Hyper,
}

/// Reads the request head at the start of `buf`; a head longer than `max_head` is hyper's
/// to refuse (431).
fn parse(buf: &[u8], max_head: usize) -> Parsed<'_> {
    if buf.is_empty() {
        return Parsed::Partial;
    }
    // Left uninitialized: httparse writes the ones it finds (the rest would be 2 KiB
    // cleared for every request).
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Complete(_)) => return Parsed::Hyper,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        // HTTP/2's preface, a malformed head, too many headers: hyper's to answer.
        Err(_) => return Parsed::Hyper,
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Hyper;
    };
    let mut quick = version == 1
        && (method == "GET" || method == "HEAD")
        && path.starts_with(LABEL_PREFIX)
        && !path.contains('?');
    let mut body: Option<u64> = None;
    let mut cookie: Option<&str> = None;
    let mut cookies = 0usize;
    let mut cookie_bytes = 0usize;
    let mut request_id = None;
    for h in req.headers.iter() {
        match role(h.name) {
            Role::ContentLength => {
                let Some(n) = std::str::from_utf8(h.value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                else {
                    return Parsed::Hyper;
                };
                if body.is_some_and(|b| b != n) || n > MAX_BODY {
                    return Parsed::Hyper;
                }
                body = Some(n);
                quick = false;
            }
            // Its body ends where its chunks say.
            Role::TransferEncoding => return Parsed::Hyper,
            Role::Cookie => {
                cookies = cookies.saturating_add(1);
                cookie_bytes = cookie_bytes.saturating_add(h.value.len());
                cookie = h
                    .value
                    .iter()
                    .all(|&b| (b' '..0x7f).contains(&b) || b == b'\t')
                    .then(|| std::str::from_utf8(h.value).ok())
                    .flatten();
            }
            // The first, as the full path reads it (`HeaderMap::get`).
            Role::RequestId => {
                request_id.get_or_insert(h.value);
            }
            // HTTP/1.1's default said again changes nothing; any other option does.
            Role::Connection if h.value.eq_ignore_ascii_case(b"keep-alive") => {}
            Role::Connection | Role::ChangesTheAnswer => quick = false,
            Role::Other => {}
        }
    }
    if !quick || cookies > 1 {
        // `len` is at most `max_head`, the body at most `MAX_BODY`: never over.
        let Some(len) = (len as u64).checked_add(body.unwrap_or(0)) else {
            return Parsed::Hyper;
        };
        return Parsed::Request { len };
    }
    Parsed::Quick {
        len,
        req: QuickRequest {
            head_only: method == "HEAD",
            path,
            cookie,
            cookie_bytes,
            request_id,
        },
    }
}

/// What a request header means to the lane.
enum Role {
    ContentLength,
    TransferEncoding,
    Cookie,
    RequestId,
    Connection,
    /// A range, a precondition, an option of the exchange: not the plain whole hit.
    ChangesTheAnswer,
    Other,
}

/// A header's [`Role`], by its name (any case); sorted by length first, which most names
/// a client sends already tell apart.
fn role(name: &str) -> Role {
    let is = |known: &str| name.eq_ignore_ascii_case(known);
    match name.len() {
        2 if is("te") => Role::ChangesTheAnswer,
        5 if is("range") => Role::ChangesTheAnswer,
        6 if is("cookie") => Role::Cookie,
        6 if is("expect") => Role::ChangesTheAnswer,
        7 if is("upgrade") => Role::ChangesTheAnswer,
        8 if is("if-match") || is("if-range") => Role::ChangesTheAnswer,
        10 if is("connection") => Role::Connection,
        12 if is("x-request-id") => Role::RequestId,
        13 if is("if-none-match") => Role::ChangesTheAnswer,
        14 if is("content-length") => Role::ContentLength,
        17 if is("transfer-encoding") => Role::TransferEncoding,
        17 if is("if-modified-since") => Role::ChangesTheAnswer,
        19 if is("if-unmodified-since") => Role::ChangesTheAnswer,
        _ => Role::Other,
    }
}

/// Writes `parts` in order, recording progress for the `send_timeout` watch.
async fn write_all<S: LaneIo>(stream: &S, parts: [&[u8]; 3], busy: &BusyGuard) -> io::Result<()> {
    let mut parts = parts;
    loop {
        let slices = [
            IoSlice::new(parts[0]),
            IoSlice::new(parts[1]),
            IoSlice::new(parts[2]),
        ];
        match stream.try_write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                for part in parts.iter_mut() {
                    let used = n.min(part.len());
                    *part = &part[used..];
                    n = n.saturating_sub(used);
                }
                if parts.iter().all(|p| p.is_empty()) {
                    return Ok(());
                }
                busy.progress(false);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
}

/// How the connection goes on after a request hyper answered.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Back to the lane for the next request.
    Lane,
    /// hyper closed it (`Connection: close`, an error, a drain).
    Closed,
}

/// Where in its connection the lane hands it to hyper for good.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Handover {
    /// Before any request: hyper may find HTTP/2's preface (`auto`).
    Start,
    /// After requests of HTTP/1.1: HTTP/1 only, a preface now is a bad request.
    Midway,
}

/// Hands the connection to hyper for good, `prefix` first.
#[allow(clippy::too_many_arguments)]
async fn hyper_from_here<S: LaneIo, H: Handler>(
    stream: S,
    prefix: Bytes,
    at: Handover,
    peer: std::net::SocketAddr,
    kind: Listener,
    handler: &Arc<H>,
    conn: &Arc<Conn>,
    builders: &Builders,
) -> Result<(), BoxError> {
    conn.hyper_owned.store(true, Ordering::Relaxed);
    let h2 = at == Handover::Start && may_be_h2(&prefix);
    let io = TokioIo::new(Rewind { prefix, stream });
    let svc = service(handler.clone(), conn.clone(), peer, kind);
    // A connection whose first bytes are not HTTP/2's preface is HTTP/1 whatever follows:
    // hyper's http1 server answers a head it cannot read with 400 or 431 at once, where the
    // `auto` builder waits with it unsent (found by the differential check).
    if !h2 {
        let served = builders.http1.serve_connection(io, svc);
        return drive(
            conn,
            std::pin::pin!(served),
            |served| served.graceful_shutdown(),
            || false,
        )
        .await
        .map(|_| ());
    }
    let served = builders.auto.serve_connection(io, svc);
    drive(
        conn,
        std::pin::pin!(served),
        |served| served.graceful_shutdown(),
        || false,
    )
    .await
    .map(|_| ())
}

/// `prefix` is HTTP/2's connection preface, or the start of it.
pub(super) fn may_be_h2(prefix: &[u8]) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let n = prefix.len().min(PREFACE.len());
    prefix.get(..n) == PREFACE.get(..n)
}

/// Runs hyper's `served` until it ends (`Closed`) or `back` says, when it waits, that the
/// lane takes the connection back (`Lane`). Once the connection drains, hyper is told to
/// shut down gracefully (finish what is in progress, then close).
async fn drive<F, E>(
    conn: &Conn,
    mut served: Pin<&mut F>,
    graceful: impl Fn(Pin<&mut F>),
    back: impl Fn() -> bool,
) -> Result<Next, BoxError>
where
    F: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    let mut drain = std::pin::pin!(conn.drain.notified());
    let mut draining = false;
    std::future::poll_fn(|cx| {
        // The flag too: the lane's own wait may have taken the notification.
        if !draining && (conn.is_draining() || drain.as_mut().poll(cx).is_ready()) {
            draining = true;
            graceful(served.as_mut());
        }
        match served.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(Next::Closed)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending if back() => Poll::Ready(Ok(Next::Lane)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The request the lane hands to hyper, and what it watches of hyper's use of it.
#[derive(Default)]
pub(super) struct Handed {
    /// What of the request the lane already read: hyper gets it first.
    pub(super) prefix: Mutex<Bytes>,
    /// The request's bytes still in the socket.
    pub(super) remaining: AtomicU64,
    /// hyper asked for bytes past the request's end: it is done reading it.
    pub(super) read_past: AtomicBool,
    /// hyper wrote since it last flushed (or its write is waiting on the socket).
    pub(super) unflushed: AtomicBool,
}

impl Handed {
    /// Hands on the request of `len` bytes (head and body) at the start of `buf`.
    fn give(&self, buf: &mut BytesMut, len: u64) {
        let buffered = (buf.len() as u64).min(len) as usize;
        *self.lock() = buf.split_to(buffered).freeze();
        self.remaining
            .store(len.saturating_sub(buffered as u64), Ordering::Relaxed);
        self.read_past.store(false, Ordering::Relaxed);
    }

    /// hyper has read the whole request and every byte it wrote is in the socket. (hyper
    /// reads the next head only once its answer is flushed; `unflushed` does not rely on it.)
    fn done(&self) -> bool {
        self.read_past.load(Ordering::Relaxed) && !self.unflushed.load(Ordering::Relaxed)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Bytes> {
        self.prefix.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn parse(head: &[u8]) -> Parsed<'_> {
        super::parse(head, 8192)
    }

    fn quick(head: &str) -> bool {
        matches!(parse(head.as_bytes()), Parsed::Quick { .. })
    }

    #[test]
    fn a_plain_label_get_is_quick() {
        let head = "GET /shipping-label/1Z999/ HTTP/1.1\r\nHost: x\r\nCookie: a=1; sessionid=abc\r\nX-Request-Id: r-1\r\n\r\n";
        match parse(head.as_bytes()) {
            Parsed::Quick { len, req } => {
                assert_eq!(len, head.len());
                assert!(!req.head_only);
                assert_eq!(req.path, "/shipping-label/1Z999/");
                assert_eq!(req.cookie, Some("a=1; sessionid=abc"));
                assert_eq!(req.cookie_bytes, 18);
                assert_eq!(req.request_id, Some(&b"r-1"[..]));
            }
            _ => panic!("not quick"),
        }
        match parse(
            b"GET /shipping-label/1Z999/ HTTP/1.1\r\nX-Request-Id: first\r\nx-request-id: second\r\n\r\n",
        ) {
            Parsed::Quick { req, .. } => assert_eq!(req.request_id, Some(&b"first"[..])),
            _ => panic!("not quick"),
        }
        assert!(quick("HEAD /shipping-label/1Z999/ HTTP/1.1\r\n\r\n"));
        assert!(quick(
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nConnection: Keep-Alive\r\nUser-Agent: x\r\n\r\n"
        ));
    }

    #[test]
    fn anything_that_changes_the_answer_goes_to_hyper_with_its_length() {
        for head in [
            "GET /shipping-label/1Z999/ HTTP/1.0\r\n\r\n",
            "POST /shipping-label/1Z999/ HTTP/1.1\r\n\r\n",
            "GET /shipping-label/1Z999/?x=1 HTTP/1.1\r\n\r\n",
            "GET /healthz HTTP/1.1\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nRange: bytes=0-1\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nIF-MODIFIED-SINCE: x\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nif-unmodified-since: x\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nIf-Range: x\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nIf-Match: x\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nTE: trailers\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
        ] {
            match parse(head.as_bytes()) {
                Parsed::Request { len } => assert_eq!(len, head.len() as u64, "{head}"),
                _ => panic!("{head}"),
            }
        }
        let with_body = "POST /shipping-label/batch.pdf HTTP/1.1\r\nContent-Length: 12\r\ncontent-length: 12\r\n\r\n";
        match parse(with_body.as_bytes()) {
            Parsed::Request { len } => assert_eq!(len, with_body.len() as u64 + 12),
            _ => panic!("body"),
        }
    }

    #[test]
    fn a_head_only_hyper_can_read_hands_the_connection_over() {
        for head in [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "POST /shipping-label/batch.pdf HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(matches!(parse(head.as_bytes()), Parsed::Hyper), "{head}");
        }
        assert!(matches!(
            parse(b"GET /shipping-label/1Z999/ HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
        // Whole, but longer than the limit: hyper answers 431.
        let long = format!(
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert!(matches!(parse(long.as_bytes()), Parsed::Hyper));
    }

    #[test]
    fn only_the_preface_or_its_start_may_be_http2() {
        assert!(may_be_h2(b""));
        assert!(may_be_h2(b"PRI * HTTP/2.0\r\n\r\n"));
        assert!(may_be_h2(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"));
        assert!(!may_be_h2(b"PRI * HTTP/1.1\r\n\r\n"));
        assert!(!may_be_h2(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"));
    }

    #[test]
    fn a_cookie_line_not_visible_ascii_is_not_read_here() {
        match parse(
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nCookie: sessionid=\u{e9}\r\n\r\n".as_bytes(),
        ) {
            Parsed::Quick { req, .. } => {
                assert_eq!(req.cookie, None);
                assert_eq!(req.cookie_bytes, "sessionid=\u{e9}".len());
            }
            _ => panic!("not quick"),
        }
    }
}
