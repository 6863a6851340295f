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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::header;
use http::{Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

mod body;
mod conn;
mod head;

pub use body::DirectBody;
use body::Watermark;
#[cfg(test)]
use head::to_head;
pub use head::{content_length, AllHeaders};
use head::{is_interim, read_head, Head, HeadError};

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

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use http::header::HeaderValue;
    use http_body_util::BodyExt;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};
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
