//! A store stand-in that answers on kept-alive connections with crafted framing, as no
//! real S3 server does on demand: an interim answer (`103 Early Hints`, `100 Continue`)
//! before the real one, a `101`, a body framed both by `Transfer-Encoding` and by
//! `Content-Length`. Each request gets its own label (the one whose name its path holds),
//! so a test sees at once when one label's bytes answer another's request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the store sends around its answers.
#[derive(Debug, Clone)]
pub enum Craft {
    /// `head` (an interim answer's whole head), then after `delay` the real answer (with
    /// no delay both go in one write).
    Before { head: &'static str, delay: Duration },
    /// The answer's body in chunks under `Transfer-Encoding: chunked` and, on the same
    /// head, `Content-Length: length`.
    ChunksAndLength { length: usize },
}

/// Serves `labels` (name, bytes) on kept-alive connections, crafting the first `times`
/// answers as [`Craft`] says (plain answers after). Counts the requests it read.
pub struct CraftedStore {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CraftedStore {
    pub async fn start(labels: Vec<(&'static str, Vec<u8>)>, craft: Craft, times: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let (h, labels) = (hits.clone(), Arc::new(labels));
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (h, labels, craft) = (h.clone(), labels.clone(), craft.clone());
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 8192];
                    loop {
                        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&got[..end]).into_owned();
                        got.drain(..end + 4);
                        let nth = h.fetch_add(1, Ordering::SeqCst);
                        let line = head.lines().next().unwrap_or_default();
                        let label = labels.iter().find(|(name, _)| line.contains(name));
                        let (status, body) = match label {
                            Some((_, body)) => (200, &body[..]),
                            None => (404, &b""[..]),
                        };
                        let bodiless = line.starts_with("HEAD ");
                        let mut out = Vec::new();
                        let crafted = nth < times;
                        match &craft {
                            Craft::Before { head, delay } if crafted => {
                                out.extend_from_slice(head.as_bytes());
                                if !delay.is_zero() {
                                    let _ = s.write_all(&out).await;
                                    out.clear();
                                    tokio::time::sleep(*delay).await;
                                }
                            }
                            Craft::ChunksAndLength { length } if crafted => {
                                out.extend_from_slice(
                                    format!(
                                        "HTTP/1.1 {status} OK\r\nTransfer-Encoding: chunked\r\n\
                                         Content-Length: {length}\r\n\
                                         Content-Type: application/pdf\r\n\r\n"
                                    )
                                    .as_bytes(),
                                );
                                if !bodiless {
                                    for c in body.chunks(20) {
                                        out.extend_from_slice(
                                            format!("{:x}\r\n", c.len()).as_bytes(),
                                        );
                                        out.extend_from_slice(c);
                                        out.extend_from_slice(b"\r\n");
                                    }
                                    out.extend_from_slice(b"0\r\n\r\n");
                                }
                                if s.write_all(&out).await.is_err() {
                                    return;
                                }
                                continue;
                            }
                            _ => {}
                        }
                        out.extend_from_slice(
                            format!(
                                "HTTP/1.1 {status} OK\r\nContent-Length: {}\r\n\
                                 Content-Type: application/pdf\r\nETag: \"e{}\"\r\n\r\n",
                                body.len(),
                                body.len()
                            )
                            .as_bytes(),
                        );
                        if !bodiless {
                            out.extend_from_slice(body);
                        }
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        CraftedStore { addr, hits, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for CraftedStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}
