//! Small hand-written hyper servers for what a real peer cannot be made to do on demand:
//! answer a fixed status (a 500, an allow-all 204), stall, or reset mid-body. Each counts
//! the requests it saw.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

/// Answers every request with a fixed status after an optional delay.
pub struct Responder {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Responder {
    pub async fn start(status: u16, delay: Duration) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let h = h.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        let h = h.clone();
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let mut r = http::Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = http::StatusCode::from_u16(status).expect("status");
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Responder { addr, hits, task }
    }

    /// An allow-all session check (204), for tests about storage.
    pub async fn allow_all() -> Responder {
        Self::start(204, Duration::ZERO).await
    }

    pub fn url(&self) -> String {
        format!("http://{}/check/{{tracking}}/", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

/// A carrier's label server: answers every GET with `body` (after `delay`), counting hits.
pub struct Carrier {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Carrier {
    pub async fn start(body: Vec<u8>, delay: Duration) -> Carrier {
        Carrier::serve(CarrierAnswer::Body(Bytes::from(body)), delay).await
    }

    /// A carrier whose every answer is a `302` to `location`.
    pub async fn redirecting(location: &str) -> Carrier {
        Carrier::serve(
            CarrierAnswer::Redirect(location.to_string()),
            Duration::ZERO,
        )
        .await
    }

    async fn serve(answer: CarrierAnswer, delay: Duration) -> Carrier {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, answer) = (h.clone(), answer.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        let (h, answer) = (h.clone(), answer.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            Ok::<_, Infallible>(match answer {
                                CarrierAnswer::Body(body) => http::Response::new(Full::new(body)),
                                CarrierAnswer::Redirect(to) => http::Response::builder()
                                    .status(302)
                                    .header("location", to)
                                    .body(Full::new(Bytes::new()))
                                    .expect("redirect response"),
                            })
                        }
                    });
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Carrier { addr, hits, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Carrier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
enum CarrierAnswer {
    Body(Bytes),
    Redirect(String),
}

/// A listener that only counts the connections made to it: a target the gateway must
/// never reach (loopback services, metadata endpoints).
pub struct Trap {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    pub async fn start() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Trap {
            addr,
            accepted,
            task,
        }
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a [`ScriptedOrigin`] does with one request.
#[derive(Debug, Clone)]
pub enum Act {
    /// A complete answer with `Content-Length`, `ETag` and `Last-Modified`.
    Answer { status: u16, body: Vec<u8> },
    /// Waits `delay` before sending anything, then answers.
    Delayed {
        delay: Duration,
        status: u16,
        body: Vec<u8>,
    },
    /// Promises `total` bytes, sends `sent` of them, then (after `stall`, if any) closes.
    Cut {
        total: usize,
        sent: usize,
        stall: Option<Duration>,
    },
    /// Sends nothing until `open` turns true, then answers: a request the test holds.
    Held {
        open: tokio::sync::watch::Receiver<bool>,
        status: u16,
        body: Vec<u8>,
    },
    /// Reads the request and closes the connection without a byte of answer.
    Hangup,
    /// A complete 200 that does not say `Connection: close` but closes anyway, as a
    /// server whose keep-alive timeout just ran out does: the client's pooled connection
    /// is dead when it is next used.
    QuietClose { body: Vec<u8> },
    /// A complete answer whose first `fast` bytes go at once and the rest in `piece`-byte
    /// pieces, one every `every`: slow in total, never silent for long.
    Trickle {
        body: Vec<u8>,
        fast: usize,
        piece: usize,
        every: Duration,
    },
    /// A complete answer whose body is sent in `Transfer-Encoding: chunked` (S3 sends
    /// `Content-Length`; other S3-compatible servers may not, for error documents).
    Chunked { status: u16, body: Vec<u8> },
}

impl Act {
    pub fn ok(body: &[u8]) -> Act {
        Act::Answer {
            status: 200,
            body: body.to_vec(),
        }
    }

    /// An S3 error document with `code`.
    pub fn error(status: u16, code: &str) -> Act {
        Act::Answer {
            status,
            body: format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code></Error>").into_bytes(),
        }
    }
}

/// A raw-TCP origin that plays a script, one [`Act`] per request (then `then` forever):
/// 500s before a 200, a slow first byte, a body cut or stalled mid-way. Every answer
/// closes its connection (saying so, except [`Act::QuietClose`]), so each request is a
/// fresh one. Counts the requests it read.
pub struct ScriptedOrigin {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedOrigin {
    pub async fn start(script: Vec<Act>, then: Act) -> ScriptedOrigin {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let script = Arc::new(std::sync::Mutex::new(
            script
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let (h, script, then) = (h.clone(), script.clone(), then.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let act = script.lock().expect("script").pop_front().unwrap_or(then);
                    let head_as = |status: u16, len: usize, close: bool| {
                        format!(
                            "HTTP/1.1 {status} Scripted\r\nContent-Length: {len}\r\n\
                             Content-Type: application/pdf\r\nETag: \"scripted\"\r\n\
                             Last-Modified: Wed, 21 Oct 2026 07:28:00 GMT\r\n{}\r\n",
                            if close { "Connection: close\r\n" } else { "" }
                        )
                    };
                    let head = |status: u16, len: usize| head_as(status, len, true);
                    match act {
                        Act::Answer { status, body } => {
                            let _ = s.write_all(head(status, body.len()).as_bytes()).await;
                            let _ = s.write_all(&body).await;
                        }
                        Act::Delayed {
                            delay,
                            status,
                            body,
                        } => {
                            tokio::time::sleep(delay).await;
                            let _ = s.write_all(head(status, body.len()).as_bytes()).await;
                            let _ = s.write_all(&body).await;
                        }
                        Act::Held {
                            mut open,
                            status,
                            body,
                        } => {
                            let _ = open.wait_for(|o| *o).await;
                            let _ = s.write_all(head(status, body.len()).as_bytes()).await;
                            let _ = s.write_all(&body).await;
                        }
                        Act::Cut { total, sent, stall } => {
                            let _ = s.write_all(head(200, total).as_bytes()).await;
                            let _ = s.write_all(&vec![b'x'; sent]).await;
                            let _ = s.flush().await;
                            if let Some(d) = stall {
                                tokio::time::sleep(d).await;
                            }
                        }
                        Act::Trickle {
                            body,
                            fast,
                            piece,
                            every,
                        } => {
                            let _ = s.write_all(head(200, body.len()).as_bytes()).await;
                            let _ = s.write_all(&body[..fast]).await;
                            for p in body[fast..].chunks(piece) {
                                let _ = s.flush().await;
                                tokio::time::sleep(every).await;
                                let _ = s.write_all(p).await;
                            }
                        }
                        Act::Hangup => {}
                        Act::Chunked { status, body } => {
                            let head = format!(
                                "HTTP/1.1 {status} Scripted\r\nTransfer-Encoding: chunked\r\n\
                                        Content-Type: application/pdf\r\nETag: \"scripted\"\r\n\
                                        Last-Modified: Wed, 21 Oct 2026 07:28:00 GMT\r\n\
                                        Connection: close\r\n\r\n"
                            );
                            let _ = s.write_all(head.as_bytes()).await;
                            for chunk in body.chunks(40) {
                                let _ = s
                                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                                    .await;
                                let _ = s.write_all(chunk).await;
                                let _ = s.write_all(b"\r\n").await;
                            }
                            let _ = s.write_all(b"0\r\n\r\n").await;
                        }
                        Act::QuietClose { body } => {
                            let _ = s
                                .write_all(head_as(200, body.len(), false).as_bytes())
                                .await;
                            let _ = s.write_all(&body).await;
                        }
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
        ScriptedOrigin { addr, hits, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A session check that flaps: sessions named `deny...` get 403 or 500, every other one
/// 204 or 500, chosen pseudo-randomly per call after a short random delay. Records the
/// status it gave each `X-Request-Id`, so a test can hold every response to the verdict
/// its own request got.
pub struct FlappingAuth {
    pub addr: SocketAddr,
    pub verdicts: Arc<std::sync::Mutex<std::collections::HashMap<String, u16>>>,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FlappingAuth {
    pub async fn start(seed: u64) -> FlappingAuth {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let verdicts: Arc<std::sync::Mutex<std::collections::HashMap<String, u16>>> =
            Arc::default();
        let (h, v) = (hits.clone(), verdicts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, v) = (h.clone(), v.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (h, v) = (h.clone(), v.clone());
                        async move {
                            let n = h.fetch_add(1, Ordering::SeqCst) as u64;
                            let mut x = (n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
                            x ^= x >> 29;
                            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
                            x ^= x >> 32;
                            let deny = req
                                .headers()
                                .get("cookie")
                                .and_then(|c| c.to_str().ok())
                                .is_some_and(|c| c.contains("=deny"));
                            let status = match (deny, x & 1 == 0) {
                                (true, true) => 403,
                                (false, true) => 204,
                                (_, false) => 500,
                            };
                            if let Some(id) = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|r| r.to_str().ok())
                            {
                                v.lock().expect("verdicts").insert(id.to_string(), status);
                            }
                            tokio::time::sleep(Duration::from_micros((x >> 8) % 3000)).await;
                            let mut r = http::Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = http::StatusCode::from_u16(status).expect("status");
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FlappingAuth {
            addr,
            verdicts,
            hits,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/check/{{tracking}}/", self.addr)
    }

    /// The status this app gave the request `id`, if it was asked.
    pub fn verdict(&self, id: &str) -> Option<u16> {
        self.verdicts.lock().expect("verdicts").get(id).copied()
    }
}

impl Drop for FlappingAuth {
    fn drop(&mut self) {
        self.task.abort();
    }
}
