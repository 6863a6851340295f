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

/// An origin that promises `total` bytes and sends only `sent` before closing the
/// connection (or, with `stall`, before going silent): a body cut short mid-way.
pub struct BrokenOrigin {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BrokenOrigin {
    pub async fn start(total: usize, sent: usize, stall: Option<Duration>) -> BrokenOrigin {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let h = h.clone();
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
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nContent-Type: application/pdf\r\n\
                         ETag: \"broken\"\r\nLast-Modified: Wed, 21 Oct 2026 07:28:00 GMT\r\n\r\n"
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&vec![b'x'; sent]).await;
                    let _ = s.flush().await;
                    if let Some(d) = stall {
                        tokio::time::sleep(d).await;
                    }
                    // Dropping the socket closes it with the body incomplete.
                });
            }
        });
        BrokenOrigin { addr, hits, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for BrokenOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A carrier's label server: answers every GET with `body` (after `delay`), counting hits.
pub struct Carrier {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Carrier {
    pub async fn start(body: Vec<u8>, delay: Duration) -> Carrier {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let body = Bytes::from(body);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, body) = (h.clone(), body.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        let (h, body) = (h.clone(), body.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            Ok::<_, Infallible>(http::Response::new(Full::new(body)))
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
