//! A connection's lane: who reads its requests. On the public listener the lane reads
//! HTTP/1.1 request heads itself, answers a whole-label hit whose session and label are
//! both in memory on the spot (`Gateway::quick_hit`: one read, one `writev`, no hyper),
//! and hands every other request to hyper *one request at a time*: hyper gets exactly that
//! request's bytes, answers it as it always does, and the connection comes back to the
//! lane for the next one. A request whose end the lane cannot know without reading it as
//! hyper would (a chunked body, a head it does not parse, HTTP/2) hands the rest of the
//! connection to hyper for good, as does the internal listener from the start.
//!
//! Why: a hit is the gateway's cheapest answer, and hyper's own work per request (its
//! request `HeaderMap`, the response `HeaderMap`, its encoding of the head) was the larger
//! part of it. Everything hyper does for the other requests, and every timeout, limit and
//! drain of the connection (`server`), stays as it was.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{service, BoxError, Builders, BusyGuard, Conn};
use crate::body::Progress;
use crate::gateway::{Gateway, Listener, QuickRequest, LABEL_PREFIX};

/// Headers a request head may have for the lane to parse it (hyper's own limit is 100).
const MAX_HEADERS: usize = 64;

/// The first read's room; grown up to `max_header_bytes` for a longer head.
const FIRST_READ: usize = 4096;

/// Serves `stream` until it closes: the lane on the public listener, hyper alone on the
/// internal one.
pub(super) async fn serve(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    kind: Listener,
    gateway: Arc<Gateway>,
    conn: Arc<Conn>,
    builders: Arc<Builders>,
) -> Result<(), BoxError> {
    let max_head = builders.max_head;
    let mut drain = std::pin::pin!(conn.drain.notified());
    if !kind.public() {
        return hyper_from_here(stream, Bytes::new(), peer, kind, &gateway, &conn, &builders).await;
    }
    let mut buf = BytesMut::new();
    let mut tail = Vec::new();
    loop {
        match parse(&buf) {
            Parsed::Partial => {
                if buf.len() >= max_head {
                    // hyper reads the rest and answers 431.
                    let prefix = buf.split().freeze();
                    return hyper_from_here(stream, prefix, peer, kind, &gateway, &conn, &builders)
                        .await;
                }
                if buf.capacity() - buf.len() < 512 {
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
                        // Readable, or asked to drain (seen above on the next turn).
                        std::future::poll_fn(|cx| {
                            if drain.as_mut().poll(cx).is_ready() {
                                drain.set(conn.drain.notified());
                                return Poll::Ready(Ok(()));
                            }
                            stream.poll_read_ready(cx)
                        })
                        .await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Parsed::Quick { len, req } => {
                let req = QuickRequest { peer, ..req };
                let busy = conn.begin_request();
                let closing = conn.is_draining();
                match gateway.quick_hit(&req, &mut tail, closing).await {
                    Some(hit) => {
                        busy.progress(false);
                        write_all(&stream, [&hit.head[..], &tail[..], &hit.body[..]], &busy)
                            .await?;
                        drop(busy);
                        buf.advance(len);
                        if closing {
                            return Ok(());
                        }
                    }
                    None => {
                        drop(busy);
                        let next = one_request(
                            &mut stream,
                            &mut buf,
                            len as u64,
                            peer,
                            kind,
                            &gateway,
                            &conn,
                            &builders,
                        )
                        .await?;
                        if next == Next::Closed {
                            return Ok(());
                        }
                    }
                }
            }
            Parsed::Request { len } => {
                let next = one_request(
                    &mut stream,
                    &mut buf,
                    len,
                    peer,
                    kind,
                    &gateway,
                    &conn,
                    &builders,
                )
                .await?;
                if next == Next::Closed {
                    return Ok(());
                }
            }
            Parsed::Hyper => {
                let prefix = buf.split().freeze();
                return hyper_from_here(stream, prefix, peer, kind, &gateway, &conn, &builders)
                    .await;
            }
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

fn parse(buf: &[u8]) -> Parsed<'_> {
    if buf.is_empty() {
        return Parsed::Partial;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
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
    let mut body = 0u64;
    let mut cookie: Option<&str> = None;
    let mut cookies = 0usize;
    let mut cookie_bytes = 0usize;
    let mut request_id = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
            else {
                return Parsed::Hyper;
            };
            if body != 0 && body != n {
                return Parsed::Hyper;
            }
            body = n;
            quick = false;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Its body ends where its chunks say.
            return Parsed::Hyper;
        } else if name.eq_ignore_ascii_case("cookie") {
            cookies += 1;
            cookie_bytes += h.value.len();
            cookie = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| v.bytes().all(|b| (b' '..0x7f).contains(&b) || b == b'\t'));
        } else if name.eq_ignore_ascii_case("x-request-id") {
            request_id = Some(h.value);
        } else if quick && changes_the_answer(name) {
            quick = false;
        }
    }
    if !quick || cookies > 1 {
        return Parsed::Request {
            len: len as u64 + body,
        };
    }
    Parsed::Quick {
        len,
        req: QuickRequest {
            head_only: method == "HEAD",
            path,
            cookie,
            cookie_bytes,
            request_id,
            peer: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        },
    }
}

/// Request headers after which a label's answer is not the plain whole hit: a range, a
/// precondition, an option of the connection or the exchange.
fn changes_the_answer(name: &str) -> bool {
    const NAMES: [&str; 10] = [
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "connection",
        "expect",
        "upgrade",
        "te",
    ];
    NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// Writes `parts` in order, recording progress for the `send_timeout` watch.
async fn write_all(stream: &TcpStream, parts: [&[u8]; 3], busy: &BusyGuard) -> io::Result<()> {
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
                    n -= used;
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

/// Hands the request at the start of `buf`, `len` bytes with its body, to hyper, and takes
/// the connection back once hyper has written the whole answer and waits for the next
/// request. What of the request is in `buf` goes to hyper first.
#[allow(clippy::too_many_arguments)]
async fn one_request(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    len: u64,
    peer: std::net::SocketAddr,
    kind: Listener,
    gateway: &Arc<Gateway>,
    conn: &Arc<Conn>,
    builders: &Builders,
) -> Result<Next, BoxError> {
    let buffered = (buf.len() as u64).min(len) as usize;
    let prefix = buf.split_to(buffered).freeze();
    let watch = Watch::default();
    let io = Handoff {
        stream,
        prefix,
        remaining: Some(len - buffered as u64),
        watch: Some(&watch),
    };
    let served = builders.http1.serve_connection(
        TokioIo::new(io),
        service(gateway.clone(), conn.clone(), peer, kind),
    );
    let back = || watch.done() && conn.busy.load(Ordering::Acquire) == 0;
    drive(
        conn,
        std::pin::pin!(served),
        |served| served.graceful_shutdown(),
        back,
    )
    .await
}

/// Hands the connection to hyper for good, `prefix` first.
async fn hyper_from_here(
    stream: TcpStream,
    prefix: Bytes,
    peer: std::net::SocketAddr,
    kind: Listener,
    gateway: &Arc<Gateway>,
    conn: &Arc<Conn>,
    builders: &Builders,
) -> Result<(), BoxError> {
    let io = Handoff {
        stream,
        prefix,
        remaining: None,
        watch: None,
    };
    let served = builders.auto.serve_connection(
        TokioIo::new(io),
        service(gateway.clone(), conn.clone(), peer, kind),
    );
    drive(
        conn,
        std::pin::pin!(served),
        |served| served.graceful_shutdown(),
        || false,
    )
    .await
    .map(|_| ())
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

/// What the lane watches of hyper's use of a [`Handoff`] for one request.
#[derive(Default)]
struct Watch {
    /// hyper asked for bytes past the request's end: it is done reading it.
    read_past: AtomicBool,
    /// hyper wrote since it last flushed (or its write is waiting on the socket).
    unflushed: AtomicBool,
}

impl Watch {
    /// hyper has read the whole request and every byte it wrote is in the socket.
    fn done(&self) -> bool {
        self.read_past.load(Ordering::Relaxed) && !self.unflushed.load(Ordering::Relaxed)
    }
}

/// The connection as hyper sees it: `prefix` (what the lane already read) first, then the
/// socket, up to `remaining` bytes when hyper serves one request.
struct Handoff<'w, S> {
    stream: S,
    prefix: Bytes,
    remaining: Option<u64>,
    watch: Option<&'w Watch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Handoff<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(out.remaining());
            out.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let Some(remaining) = this.remaining else {
            return Pin::new(&mut this.stream).poll_read(cx, out);
        };
        if remaining == 0 {
            // The next request is the lane's: hyper waits here until the lane takes the
            // connection back (nothing wakes it, nothing needs to).
            if let Some(w) = this.watch {
                w.read_past.store(true, Ordering::Relaxed);
            }
            return Poll::Pending;
        }
        let room = (out.remaining() as u64).min(remaining) as usize;
        let mut limited = ReadBuf::new(out.initialize_unfilled_to(room));
        std::task::ready!(Pin::new(&mut this.stream).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        out.advance(n);
        this.remaining = Some(remaining - n as u64);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Handoff<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.mark_unflushed();
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.mark_unflushed();
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if let (Poll::Ready(Ok(())), Some(w)) = (&flushed, self.watch) {
            w.unflushed.store(false, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl<S> Handoff<'_, S> {
    fn mark_unflushed(&self) {
        if let Some(w) = self.watch {
            w.unflushed.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(quick("HEAD /shipping-label/1Z999/ HTTP/1.1\r\n\r\n"));
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
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
        ] {
            match parse(head.as_bytes()) {
                Parsed::Request { len } => assert_eq!(len, head.len() as u64, "{head}"),
                _ => panic!("{head}"),
            }
        }
        let with_body = "POST /shipping-label/batch.pdf HTTP/1.1\r\nContent-Length: 12\r\n\r\n";
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
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "GET /shipping-label/1Z999/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(matches!(parse(head.as_bytes()), Parsed::Hyper), "{head}");
        }
        assert!(matches!(
            parse(b"GET /shipping-label/1Z999/ HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
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
