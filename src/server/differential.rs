//! The lane's differential check against plain hyper: arbitrary request bytes, cut into
//! arbitrary reads, are served once by the public listener's lane (`serve_lane_with`:
//! the lane, its hand-offs and hyper's service exactly as in production, over an
//! in-memory stream) and once by hyper alone: plain `hyper::server::conn::http1` with the
//! listener's settings, or, for a connection that opens with HTTP/2's preface (or a start
//! of it), the `auto` builder the listener serves HTTP/2 with. Both must show the service the same requests
//! (method, target, version, header lines, body bytes or the error reading it, in order),
//! write back the same bytes, and both end the connection or both keep it open. Shared by
//! the fuzz target `lane_vs_hyper` and the bounded run in the test suite.
//!
//! Behind both is the production service (`builders::service`, which marks the connection
//! busy until the answer's body is finished) calling a recording handler that answers
//! every request deterministically (with a fixed `Date`, so hyper adds none of its own).
//! The quick path asks a real gateway, with an empty cache and no session verdict: every
//! quick-shaped head is parsed, taken to `Gateway::quick_hit`, missed there and handed to
//! hyper, the way a miss goes in production. A real hit is not staged here: it would need
//! the reference side to answer that one request as the full path does while the recorder
//! answers the rest, and what the differential checks, where a request ends and the next
//! begins, is decided by the lane's parse before the gateway is asked (a hit consumes
//! exactly the head a miss hands on). The hit's bytes are held to the full path's by
//! `tests/it/lane.rs`.
//!
//! The input never ends (no EOF): once its last read is taken both sides wait for more,
//! and the run stops when nothing is left to do. The caller's runtime must have its clock
//! paused (`start_paused`), so that moment comes at once; hyper's and the gateway's own
//! timers are longer than [`SETTLE`]. Normalised before comparing: the values of `date` and
//! `x-request-id` lines (hyper's error answers carry the current date).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::builders::{builders, service, Handler};
use super::{serve_lane_with, Slots};
use crate::gateway::{Gateway, Listener};

/// How long, on the paused clock, a side may take before the run stops and compares.
pub const SETTLE: Duration = Duration::from_secs(5);

/// The `Date` the recording handler answers with.
const FIXED_DATE: &str = "Thu, 01 Jan 2026 00:00:00 GMT";

/// A request as the service saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, the error reading it, or `None` while it is still being read.
    pub body: Option<Result<Vec<u8>, String>>,
}

/// One side's run.
#[derive(Debug)]
struct Run {
    seen: Vec<Seen>,
    written: Vec<u8>,
    /// The connection ended (closed or failed) before the run stopped.
    ended: bool,
}

/// A fuzz input as the bytes and the reads they are cut into: the first byte bounds the
/// size of each read (0: the whole input in one read), the rest is what the client sends.
pub fn split_input(data: &[u8]) -> (&[u8], u8) {
    match data.split_first() {
        Some((&cut, bytes)) => (bytes, cut),
        None => (&[], 0),
    }
}

/// `bytes` cut into reads of 1 to `cut` bytes each (a fixed sequence from `cut`).
fn pieces(bytes: &[u8], cut: u8) -> VecDeque<Bytes> {
    let all = Bytes::copy_from_slice(bytes);
    if all.is_empty() {
        return VecDeque::new();
    }
    if cut == 0 {
        return VecDeque::from([all]);
    }
    let mut state = u64::from(cut).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = VecDeque::new();
    let mut rest = all;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = usize::try_from(state % u64::from(cut))
            .unwrap_or(0)
            .saturating_add(1)
            .min(rest.len());
        out.push_back(rest.split_to(size));
    }
    out
}

/// Serves `bytes`, cut into reads by `cut`, to the lane and to hyper alone, and compares
/// what each made of them: `Ok` with the number of requests the service saw, `Err` saying
/// how they disagree. Needs a runtime whose clock is paused.
pub async fn compare(bytes: &[u8], cut: u8) -> Result<usize, String> {
    let gateway = gateway()?;
    let lane = run(true, bytes, cut, &gateway).await;
    let hyper = run(false, bytes, cut, &gateway).await;
    if lane.seen != hyper.seen {
        return Err(format!(
            "the service saw\n  through the lane: {:?}\n  from hyper alone: {:?}",
            lane.seen, hyper.seen
        ));
    }
    let (a, b) = (
        last_error_answer(normalise(&lane.written)),
        last_error_answer(normalise(&hyper.written)),
    );
    let unsent = error_answer_unsent(&a, lane.ended, &b, hyper.ended);
    if a != b && !unsent {
        return Err(format!(
            "written back\n  by the lane ({}):  {:?}\n  hyper alone ({}): {:?}",
            if lane.ended { "ended" } else { "open" },
            String::from_utf8_lossy(&a),
            if hyper.ended { "ended" } else { "open" },
            String::from_utf8_lossy(&b)
        ));
    }
    if lane.ended != hyper.ended && !unsent {
        return Err(format!(
            "the lane {} the connection, hyper alone {}",
            if lane.ended { "ended" } else { "kept" },
            if hyper.ended { "ended it" } else { "kept it" }
        ));
    }
    Ok(lane.seen.len())
}

/// Both sides' runs of `bytes`, written out (to look into a finding).
pub async fn describe(bytes: &[u8], cut: u8) -> Result<String, String> {
    let gateway = gateway()?;
    let mut out = String::new();
    for (name, through_lane) in [("lane", true), ("hyper alone", false)] {
        let run = run(through_lane, bytes, cut, &gateway).await;
        out.push_str(&format!(
            "{name} ({}): seen {:?}\n  wrote {:?}\n",
            if run.ended { "ended" } else { "open" },
            run.seen,
            String::from_utf8_lossy(&run.written)
        ));
    }
    Ok(out)
}

async fn run(through_lane: bool, bytes: &[u8], cut: u8, gateway: &Arc<Gateway>) -> Run {
    let recorder = Arc::new(Recorder::default());
    let written = Arc::new(Mutex::new(Vec::new()));
    let script = Script {
        reads: pieces(bytes, cut),
        written: written.clone(),
    };
    let ended = if through_lane {
        let served = serve_lane_with(script, gateway.clone(), recorder.clone());
        tokio::time::timeout(SETTLE, served).await.is_ok()
    } else {
        let slots = Arc::new(Slots::new(1));
        let registered = slots.register();
        let svc = service(
            recorder.clone(),
            registered.conn.clone(),
            peer(),
            Listener::Public,
        );
        let builders = builders(gateway);
        let io = TokioIo::new(script);
        if super::lane::may_be_h2(bytes) {
            let served = builders.auto.serve_connection(io, svc);
            tokio::time::timeout(SETTLE, served).await.is_ok()
        } else {
            let served = builders.http1.serve_connection(io, svc);
            tokio::time::timeout(SETTLE, served).await.is_ok()
        }
    };
    let seen = recorder.lock().clone();
    let written = written.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Run {
        seen,
        written,
        ended,
    }
}

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000))
}

/// The gateway behind the quick path: nothing cached, no session verdict, storage a local
/// folder nothing is read from (made once per process).
fn gateway() -> Result<Arc<Gateway>, String> {
    static GATEWAY: OnceLock<Result<Arc<Gateway>, String>> = OnceLock::new();
    GATEWAY
        .get_or_init(|| {
            let toml = format!(
                "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n\
                 [storage]\nbackend = \"local\"\nlocal_root = \"{}\"\n\
                 [auth]\ncheck_url = \"http://127.0.0.1:9/check\"\n[log]\naccess_log = false\n",
                std::env::temp_dir().display()
            );
            let env = std::collections::BTreeMap::from([(
                "LABEL_GATEWAY_REGENERATE__URL".to_string(),
                String::new(),
            )]);
            let config =
                crate::config::Config::from_toml_str(&toml, &env).map_err(|e| e.to_string())?;
            Gateway::new(config)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// hyper's own error answers (400, 414, 431), with which it closes a connection.
const ERROR_STATUSES: [&str; 3] = [
    "400 Bad Request",
    "414 URI Too Long",
    "431 Request Header Fields Too Large",
];

/// `written` with a closing error answer of hyper's in one form: after an HTTP/1.0
/// request, hyper alone writes it as `HTTP/1.0` without `connection: close` (its
/// connection remembers the last version), where the lane's fresh hyper connection writes
/// `HTTP/1.1` with it. Both close the connection right after; the client reads the same
/// refusal.
fn last_error_answer(mut written: Vec<u8>) -> Vec<u8> {
    for status in ERROR_STATUSES {
        let old = format!("HTTP/1.0 {status}\r\ncontent-length: 0\r\ndate: -\r\n\r\n");
        if written.ends_with(old.as_bytes()) {
            written.truncate(written.len().saturating_sub(old.len()));
            written.extend_from_slice(
                format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\ndate: -\r\n\r\n")
                    .as_bytes(),
            );
        }
    }
    written
}

/// One side answered a head it cannot read with hyper's own error answer and closed;
/// the other wrote the same before it and no answer to that head. Harmless,
/// and hyper's doing on both sides: hyper's http1 server, finding a bad head once the
/// read that completed it is in, queues its answer without asking to be polled again, so
/// whether the answer goes out before the client sends more depends on how the bytes were
/// cut into reads (the lane hands hyper a head in one piece, so it answers at once). The
/// requests the service saw are compared before this, with no such allowance.
fn error_answer_unsent(a: &[u8], a_ended: bool, b: &[u8], b_ended: bool) -> bool {
    // The side that answered closed; the other still waits, or closed without a word
    // (hyper alone, when the bytes after a head it cannot read are HTTP/2's preface, ends
    // the connection as an HTTP/2 one instead of answering 400; the lane hands hyper that
    // head alone).
    let (long, short) = match (a_ended, b_ended) {
        (true, _) if a.len() > b.len() => (a, b),
        (_, true) if b.len() > a.len() => (b, a),
        _ => return false,
    };
    let Some(tail) = long.strip_prefix(short) else {
        return false;
    };
    ERROR_STATUSES.iter().any(|status| {
        tail == format!(
            "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\ndate: -\r\n\r\n"
        )
        .as_bytes()
    })
}

/// `written` with the values of its `date` and `x-request-id` lines blanked.
fn normalise(written: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(written.len());
    let mut rest = written;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i.saturating_add(1));
        let (line, next) = rest.split_at(end);
        let blanked = ["date:", "x-request-id:"].iter().find(|name| {
            line.get(..name.len())
                .is_some_and(|l| l.eq_ignore_ascii_case(name.as_bytes()))
        });
        match blanked {
            Some(name) => {
                out.extend_from_slice(&line[..name.len()]);
                out.extend_from_slice(b" -");
                if line.ends_with(b"\r\n") {
                    out.extend_from_slice(b"\r\n");
                }
            }
            None => out.extend_from_slice(line),
        }
        rest = next;
    }
    out
}

/// The handler behind the service on both sides: records each request, answers it with
/// its number, method, target and body length.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Handler for Recorder {
    fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
        _peer: SocketAddr,
        _kind: Listener,
    ) -> impl std::future::Future<Output = http::Response<crate::http::Body>> + Send {
        let (parts, body) = req.into_parts();
        let seen = Seen {
            method: parts.method.to_string(),
            target: parts.uri.to_string(),
            version: format!("{:?}", parts.version),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: None,
        };
        let line = format!("{} {}", seen.method, seen.target);
        let index = {
            let mut all = self.lock();
            all.push(seen);
            all.len().saturating_sub(1)
        };
        async move {
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .map_err(|e| e.to_string());
            let text = match &body {
                Ok(b) => format!("{index} {line} {}\n", b.len()),
                Err(_) => format!("{index} {line} unread\n"),
            };
            if let Some(seen) = self.lock().get_mut(index) {
                seen.body = Some(body);
            }
            let mut resp = http::Response::new(crate::http::full(text));
            let headers = resp.headers_mut();
            headers.insert(
                http::header::DATE,
                http::HeaderValue::from_static(FIXED_DATE),
            );
            headers.insert("x-seen", http::HeaderValue::from(index));
            resp
        }
    }
}

/// The client's side, in memory: its reads are the input's pieces, one at most per read,
/// then nothing more (never an end); what is written back is kept.
struct Script {
    reads: VecDeque<Bytes>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(piece) = self.reads.front_mut() else {
            // Nothing more will come: the run stops on the paused clock.
            return Poll::Pending;
        };
        let n = piece.len().min(out.remaining());
        out.put_slice(&piece[..n]);
        piece.advance(n);
        if piece.is_empty() {
            self.reads.pop_front();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
