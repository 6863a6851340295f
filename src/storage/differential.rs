//! The storage client's differential check against hyper's client: one answer's bytes,
//! served in pieces by a loopback server, are read by [`Direct`] and by hyper's own
//! HTTP/1.1 client; both must make the same of them (status, every header line, the
//! body or an error), or `Direct` must refuse the answer before passing a byte on (its
//! `send` fails: the caller sends the request again through hyper's client or answers
//! 502). Shared by the fuzz target `direct_vs_hyper` and the bounded run in the test
//! suite, so both hold `Direct` to the same rule.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::direct::{AllHeaders, Direct};

/// How long one reader may take over one answer (a loopback answer takes microseconds).
const LIMIT: Duration = Duration::from_secs(5);

/// What a reader made of an answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Read {
    pub status: StatusCode,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, or `None` when reading it failed.
    pub body: Option<Bytes>,
}

/// A fuzz input as an answer and the size of the pieces it is written in: the first
/// byte is the piece size (0: one write), the rest the answer.
pub fn split_input(data: &[u8]) -> (&[u8], usize) {
    match data.split_first() {
        Some((&size, answer)) => (answer, usize::from(size)),
        None => (&[], 0),
    }
}

/// Serves `answer` to `Direct` and to hyper's client, written in `piece`-byte pieces
/// (0: at once), and compares what they read: `Ok(true)` when both read it alike,
/// `Ok(false)` when `Direct` refused it; `Err` says how they disagree.
pub async fn compare(answer: &[u8], piece: usize) -> Result<bool, String> {
    let direct = by_direct(answer, piece).await?;
    let Some(direct) = direct else {
        // Refused before any byte was passed on: the caller never sees the answer.
        return Ok(false);
    };
    let hyper = by_hyper(answer, piece).await?;
    match hyper {
        None => Err(format!(
            "direct read {direct:?}, hyper's client refused the answer"
        )),
        Some(hyper) if hyper != direct => Err(format!("direct read {direct:?}, hyper {hyper:?}")),
        Some(_) => Ok(true),
    }
}

/// A loopback server that reads one request head, writes `answer` in pieces, closes.
async fn serve(answer: &[u8], piece: usize) -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let answer = Arc::new(answer.to_vec());
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let _ = s.set_nodelay(true);
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or_default()),
            }
        }
        let size = if piece == 0 {
            answer.len().max(1)
        } else {
            piece
        };
        for part in answer.chunks(size) {
            if s.write_all(part).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        let _ = s.shutdown().await;
        // Read on until the client closes, so it never sees a reset.
        let _ = tokio::time::timeout(LIMIT, async {
            while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
    });
    Ok(format!("http://{addr}"))
}

/// What `Direct` read, `None` when it refused the answer.
async fn by_direct(answer: &[u8], piece: usize) -> Result<Option<Read>, String> {
    let base = serve(answer, piece).await?;
    let uri: http::Uri = format!("{base}/bucket/").parse().map_err(|_| "uri")?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let direct = Arc::new(Direct::new(&uri, Arc::new(tls), LIMIT)?);
    let mut req = Request::new(crate::http::empty());
    *req.uri_mut() = format!("{base}/bucket/label.pdf")
        .parse()
        .map_err(|_| "uri")?;
    req.extensions_mut().insert(AllHeaders);
    let read = async {
        let Ok(resp) = direct.send(&req).await else {
            return None;
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.ok().map(|b| b.to_bytes());
        Some(Read {
            status: parts.status,
            headers: lines(&parts.headers),
            body,
        })
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .map_err(|_| "direct hung over the answer".to_string())
}

/// What hyper's client read, `None` when it refused the answer.
async fn by_hyper(answer: &[u8], piece: usize) -> Result<Option<Read>, String> {
    let base = serve(answer, piece).await?;
    let addr = base.trim_start_matches("http://").to_string();
    let read = async {
        let tcp = TcpStream::connect(&addr).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = Request::get("/bucket/label.pdf")
            .header(http::header::HOST, addr.as_str())
            .body(Empty::<Bytes>::new())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.ok().map(|b| b.to_bytes());
        Some(Read {
            status: parts.status,
            headers: lines(&parts.headers),
            body,
        })
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .map_err(|_| "hyper's client hung over the answer".to_string())
}

/// Every header line, in order.
fn lines(headers: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}
