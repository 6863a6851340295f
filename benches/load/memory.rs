//! The memory run: many concurrent downloads of the large label through the gateway, by a
//! small tokio client that checks every byte, while the gateway's peak RSS is recorded.
//! Zero-buffer streaming shows as a peak that does not grow with clients × label size.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;

pub struct MemoryRun {
    pub clients: usize,
    pub complete: usize,
    /// Body bytes received by all clients, checked against the label.
    pub bytes: u64,
    pub elapsed: Duration,
    /// The first few failures, for the report.
    pub failures: Vec<String>,
}

/// `clients` connections open first, then all send `GET path` at once and read the whole
/// body, comparing it with `expected`.
pub async fn run(
    addr: SocketAddr,
    path: &str,
    cookie: &str,
    clients: usize,
    expected: Arc<Vec<u8>>,
    within: Duration,
) -> MemoryRun {
    let request: Arc<[u8]> = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: sessionid={cookie}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
    .into();
    let start = Arc::new(Barrier::new(clients));
    let began = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (request, expected, start) = (request.clone(), expected.clone(), start.clone());
            tokio::spawn(async move {
                let conn = tokio::net::TcpStream::connect(addr).await;
                start.wait().await;
                let fut = download(conn.context("connect")?, &request, &expected);
                tokio::time::timeout(within, fut)
                    .await
                    .context("download timed out")?
            })
        })
        .collect();
    let mut run = MemoryRun {
        clients,
        complete: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        failures: Vec::new(),
    };
    for t in tasks {
        match t.await {
            Ok(Ok(n)) => {
                run.complete += 1;
                run.bytes += n;
            }
            Ok(Err(e)) => run.failures.push(format!("{e:#}")),
            Err(e) => run.failures.push(e.to_string()),
        }
    }
    run.elapsed = began.elapsed();
    run.failures.truncate(5);
    run
}

/// One download; returns the body length once every byte matched `expected`.
async fn download(
    mut s: tokio::net::TcpStream,
    request: &[u8],
    expected: &[u8],
) -> anyhow::Result<u64> {
    s.write_all(request).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    let head_end = loop {
        if let Some(i) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if filled == buf.len() {
            bail!("response head too large");
        }
        let n = s.read(&mut buf[filled..]).await?;
        if n == 0 {
            bail!("connection closed before the response head");
        }
        filled += n;
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head")?;
    if !head.starts_with("HTTP/1.1 200 ") {
        bail!("status line {:?}", head.lines().next().unwrap_or(""));
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .context("no Content-Length")?;
    if len != expected.len() {
        bail!("Content-Length {len}, label is {}", expected.len());
    }
    let mut got = 0;
    let check = |chunk: &[u8], got: &mut usize| -> anyhow::Result<()> {
        let end = *got + chunk.len();
        if end > len || chunk != &expected[*got..end] {
            bail!("body differs from the label at byte {}", *got);
        }
        *got = end;
        Ok(())
    };
    check(&buf[head_end..filled], &mut got)?;
    while got < len {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("body ended after {got} of {len} bytes");
        }
        check(&buf[..n], &mut got)?;
    }
    Ok(got as u64)
}
