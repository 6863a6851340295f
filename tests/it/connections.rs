//! Connection handling against clients that misbehave: heads dribbled a byte at a time,
//! connections that send nothing or idle after a request, requests slower than the header
//! timeout, ten thousand idle sockets against the connection limit, every slot busy, and
//! clients that stop reading. Each test pins what the client sees. Time only appears as
//! generous "does not hang" bounds.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::standins::{Act, ScriptedOrigin};
use crate::support::{self, get_label, pdf_bytes, Responder, S3Server, ANY_SESSION, HANG, SLACK};

/// Reads until the peer closes (or resets); returns what arrived. Gives up at `limit`.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

async fn health_gateway(
    extra: &[(&str, &str)],
) -> (S3Server, Responder, label_gateway::server::Running) {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), extra)).await;
    (s3, check, gw)
}

/// Sends `head` one byte every 250 ms on `s` (each read is quick, only the head as a whole
/// is late) and asserts the gateway closes the connection within the 1 s header timeout
/// (plus slack) without answering it.
async fn dribbled_head_is_cut(s: TcpStream, head: Vec<u8>) {
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for b in head {
            if wr.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let started = Instant::now();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(1) + SLACK, async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    assert!(
        closed.is_ok(),
        "still open after {:?}: the header timeout did not fire",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 408"),
        "closed, or told 408, never served: {text}"
    );
}

/// A keep-alive connection whose first request has been answered 200.
async fn answered_once(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    s
}

fn padded_head() -> Vec<u8> {
    format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64)
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_dribbling_its_headers_is_cut_at_the_header_timeout() {
    let (_s3, _check, gw) =
        health_gateway(&[("LABEL_GATEWAY_SERVER__HEADER_READ_TIMEOUT", "1s")]).await;
    let s = TcpStream::connect(gw.addr()).await.unwrap();
    dribbled_head_is_cut(s, padded_head()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_that_sends_nothing_is_closed_at_the_header_timeout() {
    let (_s3, _check, gw) =
        health_gateway(&[("LABEL_GATEWAY_SERVER__HEADER_READ_TIMEOUT", "1s")]).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(1) + SLACK).await;
    assert_eq!(got.as_deref(), Some(&b""[..]), "closed without a word");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connection_is_closed_at_the_header_timeout() {
    let (_s3, _check, gw) =
        health_gateway(&[("LABEL_GATEWAY_SERVER__HEADER_READ_TIMEOUT", "1s")]).await;
    let mut s = answered_once(gw.addr()).await;
    let rest = read_until_closed(&mut s, Duration::from_secs(1) + SLACK).await;
    assert!(
        rest.is_some(),
        "an idle keep-alive connection must not be held forever"
    );
}

/// After a first request is answered, a second head dribbled a byte at a time is cut at
/// the header timeout too: the timer restarts when a response ends.
#[tokio::test(flavor = "multi_thread")]
async fn second_head_dribbled_on_a_keep_alive_connection_is_cut_at_the_header_timeout() {
    let (_s3, _check, gw) =
        health_gateway(&[("LABEL_GATEWAY_SERVER__HEADER_READ_TIMEOUT", "1s")]).await;
    let s = answered_once(gw.addr()).await;
    dribbled_head_is_cut(s, padded_head()).await;
}

/// An origin stand-in that holds its first `holds` GETs until `open` is sent (then answers
/// `good`), behind a gateway with the cache off, so every request reaches it, and `setting`.
struct HeldOrigin {
    open: tokio::sync::watch::Sender<bool>,
    good: Vec<u8>,
    origin: ScriptedOrigin,
    _check: Responder,
    gw: label_gateway::server::Running,
}

impl HeldOrigin {
    async fn start(holds: usize, seed: u8, setting: (&str, &str)) -> HeldOrigin {
        let good = pdf_bytes(5_000, seed);
        let (open, opened) = tokio::sync::watch::channel(false);
        let held = Act::Held {
            open: opened,
            status: 200,
            body: good.clone(),
        };
        let origin = ScriptedOrigin::start(vec![held; holds], Act::ok(&good)).await;
        let check = Responder::allow_all().await;
        let gw = support::start_gateway(support::origin_config(
            &origin.endpoint(),
            &check.url(),
            &[setting, ("LABEL_GATEWAY_CACHE__ENABLED", "false")],
        ))
        .await;
        HeldOrigin {
            open,
            good,
            origin,
            _check: check,
            gw,
        }
    }
}

/// A request that takes longer than the header timeout to answer (here the origin holds
/// it for 2 s against a 1 s header timeout) is not cut: only idle connections are.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_slower_than_the_header_timeout_is_not_cut() {
    // Bound whole: fields left out of a destructuring would be dropped (and stopped) here.
    let held = HeldOrigin::start(1, 71, ("LABEL_GATEWAY_SERVER__HEADER_READ_TIMEOUT", "1s")).await;
    let (open, good, gw) = (held.open.clone(), &held.good, &held.gw);
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = open.send(true);
    });
    let r = get_label(gw, "SLOW1")
        .cookie(ANY_SESSION)
        .timeout(HANG)
        .try_send()
        .await
        .expect("answered, not cut");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), good);
    release.await.unwrap();
}

/// Raises the soft open-file limit to the hard one, returning the soft limit now in force.
fn raise_fd_limit() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
        lim.rlim_cur
    }
}

/// 10,000 idle sockets (fewer only if the open-file limit cannot allow them) against a
/// limit of 50: a real client arriving after them is served at once, because a newcomer at
/// the limit closes the longest-idle connection instead of waiting behind it.
/// The 50 ms protection of young connections is `a_just_accepted_connection_is_not_closed_to_make_room`.
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_idle_connections_over_the_limit_do_not_lock_out_a_real_client() {
    let fds = raise_fd_limit();
    // This process holds the client end of every idle socket, and the gateway's ends of
    // at most the 50 it serves (plus a few being closed): keep a margin for those and for
    // the rest of the test binary running alongside.
    let idle_count = 10_000.min(fds.saturating_sub(1_500) as usize);
    assert!(
        idle_count >= 500,
        "open-file limit {fds} is too low for this test"
    );

    let s3 = S3Server::start().await;
    let data = pdf_bytes(30_000, 69);
    s3.put_label("REAL1", &data).await;
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[
            ("LABEL_GATEWAY_SERVER__MAX_CONNECTIONS", "50"),
            // Long enough that only the limit's handling can let the client in.
            ("LABEL_GATEWAY_SERVER__HEADER_READ_TIMEOUT", "60s"),
        ],
    ))
    .await;
    let addr = gw.addr();

    // Open the idle sockets 64 at a time; some half-send a head (slowloris style).
    let mut idle = Vec::with_capacity(idle_count);
    let mut next = 0;
    while next < idle_count {
        let batch = (idle_count - next).min(64);
        let opened = futures_util::future::join_all((0..batch).map(|j| async move {
            let mut s = TcpStream::connect(addr).await.ok()?;
            if j % 8 == 0 {
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await;
            }
            Some(s)
        }))
        .await;
        idle.extend(opened.into_iter().flatten());
        next += batch;
    }
    assert!(idle.len() >= idle_count * 9 / 10, "opened {}", idle.len());
    // Let the flood settle into idle sockets: the gateway accepts them behind the client's
    // connects, and a newcomer never closes a connection younger than EVICT_MIN_IDLE, so
    // while the burst is still arriving newcomers are refused rather than cutting each
    // other. Settled = no refusal for a quarter second.
    let metrics = &gw.gateway.metrics;
    let refused = || {
        metrics
            .connections_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = refused();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = refused();
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }

    let started = Instant::now();
    let r = get_label(&gw, "REAL1")
        .cookie(ANY_SESSION)
        .timeout(HANG)
        .try_send()
        .await
        .expect("the real client gets an answer");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(r.bytes().await.unwrap(), data);
    assert!(
        started.elapsed() < SLACK,
        "served without waiting for idle sockets to time out: {:?}",
        started.elapsed()
    );
    let open = gw
        .gateway
        .metrics
        .connections_open
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(open <= 50, "{open} connections held against a limit of 50");
    drop(idle);
}

/// When every slot is busy there is nothing to reclaim: a newcomer waits `accept_wait`,
/// then gets a short 503 with `Retry-After`, and is served again once a slot frees up.
#[tokio::test(flavor = "multi_thread")]
async fn when_every_slot_is_busy_a_newcomer_gets_503_then_is_served_later() {
    let held = HeldOrigin::start(2, 70, ("LABEL_GATEWAY_SERVER__MAX_CONNECTIONS", "2")).await;
    let (open, good, origin, gw) = (&held.open, &held.good, &held.origin, &held.gw);
    let busy: Vec<_> = (0..2)
        .map(|i| {
            let request = get_label(gw, &format!("BUSY{i}"))
                .cookie(ANY_SESSION)
                .timeout(HANG);
            tokio::spawn(async move {
                let r = request.send().await;
                (r.status().as_u16(), r.bytes().await.unwrap())
            })
        })
        .collect();
    // Both slots are busy once the origin holds both requests.
    let deadline = Instant::now() + SLACK;
    while origin.hits() < 2 {
        assert!(
            Instant::now() < deadline,
            "busy requests never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, text) = support::raw_get(gw.addr(), "/healthz").await;
    assert_eq!(status, 503, "{text}");
    // The configured `[server] retry_after` (default 2s), as every other 503 says it.
    assert!(text.contains("Retry-After: 2"), "{text}");
    open.send(true).unwrap();
    for b in busy {
        let (status, body) = b.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, good);
    }
    let (status, _) = support::raw_get(gw.addr(), "/healthz").await;
    assert_eq!(status, 200);
}

/// A connection that has just been accepted is not closed to make room, even though it
/// has sent nothing yet: its request may be on the wire. The newcomer waits until the
/// first connection has been idle long enough, and both are answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_just_accepted_connection_is_not_closed_to_make_room() {
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::origin_config(
        "http://127.0.0.1:9",
        &check.url(),
        &[
            ("LABEL_GATEWAY_SERVER__MAX_CONNECTIONS", "1"),
            ("LABEL_GATEWAY_SERVER__ACCEPT_WAIT", "2s"),
        ],
    ))
    .await;
    let addr = gw.addr();
    // The first client connects and takes a few milliseconds to send its request.
    let mut first = TcpStream::connect(addr).await.unwrap();
    // The second arrives meanwhile, over the limit, and asks at once.
    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let second = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(SLACK, second.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(SLACK, first.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        matches!(read, Ok(Ok(_))) && text.starts_with("HTTP/1.1 200"),
        "the first client was answered, not cut: {read:?} {text:?}"
    );
    let text = second.await.unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "the newcomer is served once a slot frees: {text:?}"
    );
}

/// A client that asks for a large label and then reads nothing is cut after
/// `send_timeout`, which frees its slot; a client that reads slowly but steadily is not.
#[tokio::test(flavor = "multi_thread")]
async fn client_that_stops_reading_is_cut_after_the_send_timeout_a_slow_reader_is_not() {
    let s3 = S3Server::start().await;
    // Far more than the loopback socket buffers hold, so the gateway must wait on the client.
    let data = pdf_bytes(8 * 1024 * 1024, 71);
    s3.put_label("STALL1", &data).await;
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[("LABEL_GATEWAY_SERVER__SEND_TIMEOUT", "1s")],
    ))
    .await;
    let open = || {
        gw.gateway
            .metrics
            .connections_open
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let request =
        format!("GET /shipping-label/STALL1/ HTTP/1.1\r\nHost: x\r\nCookie: {ANY_SESSION}\r\nConnection: close\r\n\r\n");
    let addr = gw.addr();
    let connect = |small_window: bool| {
        let request = request.clone();
        async move {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            if small_window {
                sock.set_recv_buffer_size(4096).unwrap();
            }
            let mut s = sock.connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            s
        }
    };

    // Reads 2 MiB, then pauses 700 ms with the gateway blocked on full socket buffers,
    // four times: the whole label arrives, never cut.
    let mut slow = connect(false).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let head_and_body = loop {
        let mut chunk = 0;
        while chunk < 2 * 1024 * 1024 {
            match slow.read(&mut buf).await.unwrap() {
                0 => break,
                n => chunk += n,
            }
        }
        got += chunk;
        if chunk == 0 || got >= data.len() {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    };
    assert!(
        head_and_body > data.len(),
        "the slow reader got all {} bytes and the head ({head_and_body})",
        data.len()
    );
    drop(slow);

    // Reads nothing: the gateway closes the connection after about a second.
    let mut stalled = connect(true).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    tokio::time::sleep(Duration::from_millis(200)).await;
    while open() > 0 {
        assert!(
            Instant::now() < deadline,
            "a client reading nothing still holds its connection"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What reached the client is a cut response, not the whole label.
    let mut total = 0usize;
    while let Ok(n) = stalled.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(total < data.len(), "{total} bytes: the response was cut");
}
