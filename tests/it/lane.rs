//! The connection lane against the real S3 server: a whole hit answered on the quick path
//! is the full path's answer; requests of both paths pipelined in one write come back in
//! order on one connection, which goes back to the quick path after hyper answered one; a
//! head sent in pieces; a client that stops reading a quick hit is cut at `send_timeout`;
//! a session the cached verdict does not allow is never answered from memory.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, get_label, pdf_bytes, Django, Responder, S3Server, ANY_SESSION};

/// One response read off a kept-alive connection: status, head lines after the status
/// line (in order), body.
struct Answer {
    status: u16,
    lines: Vec<String>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| {
            let (n, v) = l.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }

    /// The head lines but the request id and the date, which differ per request.
    fn fixed_lines(&self) -> Vec<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with("x-request-id:") && !l.starts_with("date:"))
            .collect()
    }
}

/// Reads one response from `s`, `pending` holding bytes already read past the last one.
async fn read_answer(s: &mut TcpStream, pending: &mut Vec<u8>, head_only: bool) -> Answer {
    let deadline = Duration::from_secs(10);
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(deadline, s.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a whole head: {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(pending[..head_end - 4].to_vec()).expect("ASCII head");
    let mut lines = head.split("\r\n").map(str::to_string);
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let lines: Vec<String> = lines.collect();
    pending.drain(..head_end);
    let mut answer = Answer {
        status,
        lines,
        body: Vec::new(),
    };
    let len: usize = if head_only {
        0
    } else {
        answer
            .header("content-length")
            .expect("every answer here has a length")
            .parse()
            .unwrap()
    };
    while pending.len() < len {
        let n = tokio::time::timeout(deadline, s.read(&mut chunk))
            .await
            .expect("a body in time")
            .expect("read");
        assert!(n > 0, "closed mid-body");
        pending.extend_from_slice(&chunk[..n]);
    }
    answer.body = pending.drain(..len).collect();
    answer
}

fn label_get(tracking: &str, extra: &str) -> String {
    format!(
        "GET /shipping-label/{tracking}/ HTTP/1.1\r\nHost: x\r\nCookie: {ANY_SESSION}\r\n{extra}\r\n"
    )
}

/// A gateway on the real S3 server holding `labels`, its session check allowing everyone,
/// with `env` set.
async fn setup(
    labels: &[(&str, &[u8])],
    env: &[(&str, &str)],
) -> (S3Server, Responder, label_gateway::server::Running) {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    for (tracking, data) in labels {
        s3.put_label(tracking, data).await;
    }
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), env)).await;
    (s3, check, gw)
}

/// Reads `tracking` once the full way, which fills the label cache and the verdict cache.
async fn warm(gw: &label_gateway::server::Running, tracking: &str, data: &[u8]) {
    let first = get_label(gw, tracking).cookie(ANY_SESSION).send().await;
    assert!(
        first.bytes().await.unwrap() == data,
        "{tracking} read whole"
    );
    assert!(support::is_cached(gw, tracking).await);
}

fn quick_hits(gw: &label_gateway::server::Running) -> u64 {
    gw.gateway.metrics.quick_hits.get()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quick_hit_is_the_full_paths_hit_but_for_its_id_and_date() {
    let data = pdf_bytes(50 * 1024, 91);
    let (s3, _check, gw) = setup(&[("LANE1", &data)], &[]).await;
    warm(&gw, "LANE1", &data).await;
    let before = quick_hits(&gw);

    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let mut pending = Vec::new();
    // Answered on the quick path.
    s.write_all(label_get("LANE1", "X-Request-Id: quick-1\r\n").as_bytes())
        .await
        .unwrap();
    let quick = read_answer(&mut s, &mut pending, false).await;
    assert_eq!(quick_hits(&gw), before + 1);
    // `TE` is a header the quick path leaves to hyper: the full path's hit.
    s.write_all(label_get("LANE1", "TE: trailers\r\nX-Request-Id: full-1\r\n").as_bytes())
        .await
        .unwrap();
    let full = read_answer(&mut s, &mut pending, false).await;
    assert_eq!(quick_hits(&gw), before + 1, "the full path answered");

    assert_eq!((quick.status, full.status), (200, 200));
    assert_eq!(quick.body, data);
    assert_eq!(full.body, data);
    assert_eq!(quick.header("x-cache"), Some("HIT"));
    assert_eq!(
        quick.fixed_lines(),
        full.fixed_lines(),
        "same headers, same order"
    );
    assert_eq!(quick.header("x-request-id"), Some("quick-1"));
    assert_eq!(full.header("x-request-id"), Some("full-1"));
    let date = quick.header("date").expect("a date");
    assert!(httpdate_ok(date), "{date}");
    // The order hyper writes: the label headers, the request id, the date.
    let names: Vec<&str> = quick
        .lines
        .iter()
        .map(|l| l.split_once(':').unwrap().0)
        .collect();
    assert_eq!(&names[names.len() - 2..], ["x-request-id", "date"]);

    // HEAD: the same head, no body; a fresh id when the client's is not a sane token.
    s.write_all(
        label_get("LANE1", "X-Request-Id: not sane!\r\n")
            .replacen("GET", "HEAD", 1)
            .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_answer(&mut s, &mut pending, true).await;
    assert_eq!(quick_hits(&gw), before + 2);
    assert_eq!(head.status, 200);
    assert_eq!(head.fixed_lines(), quick.fixed_lines());
    let id = head.header("x-request-id").unwrap();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(pending.is_empty(), "no body after a HEAD answer");

    // The access log and the metrics count quick hits like any other.
    let metrics = support::metrics(gw.internal_addr()).await;
    assert!(
        metrics.contains(&format!("label_gateway_quick_hits_total {}", before + 2)),
        "{metrics}"
    );
    assert_eq!(s3.gets(), 1);
}

fn httpdate_ok(text: &str) -> bool {
    text.ends_with(" GMT") && text.len() == 29
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_of_both_paths_come_back_in_order_on_one_connection() {
    let hot = pdf_bytes(40 * 1024, 92);
    let cold = pdf_bytes(30 * 1024, 93);
    let (s3, _check, gw) = setup(&[("HOT2", &hot), ("COLD2", &cold)], &[]).await;
    warm(&gw, "HOT2", &hot).await;
    let before = quick_hits(&gw);

    // Five requests in one write: a quick hit, health, a POST with a body (hyper reads the
    // body and refuses the method), a miss from storage, and the hot label again.
    let mut burst = String::new();
    burst += &label_get("HOT2", "");
    burst += "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    burst += &format!(
        "POST /shipping-label/HOT2/ HTTP/1.1\r\nHost: x\r\nCookie: {ANY_SESSION}\r\nContent-Length: 5\r\n\r\nhello"
    );
    burst += &label_get("COLD2", "");
    burst += &label_get("HOT2", "");
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(burst.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let a = read_answer(&mut s, &mut pending, false).await;
    let b = read_answer(&mut s, &mut pending, false).await;
    let c = read_answer(&mut s, &mut pending, false).await;
    let d = read_answer(&mut s, &mut pending, false).await;
    let e = read_answer(&mut s, &mut pending, false).await;
    assert_eq!((a.status, a.header("x-cache")), (200, Some("HIT")));
    assert_eq!(a.body, hot);
    assert_eq!((b.status, &b.body[..]), (200, &b"ok\n"[..]));
    assert_eq!(c.status, 405);
    assert_eq!((d.status, d.header("x-cache")), (200, Some("MISS")));
    assert_eq!(d.body, cold);
    assert_eq!((e.status, e.header("x-cache")), (200, Some("HIT")));
    assert_eq!(e.body, hot);
    assert_eq!(
        quick_hits(&gw),
        before + 2,
        "the first and the last on the quick path"
    );

    // The connection is still open and back on the quick path; the label filled by the
    // miss is a quick hit now.
    s.write_all(label_get("COLD2", "").as_bytes())
        .await
        .unwrap();
    let f = read_answer(&mut s, &mut pending, false).await;
    assert_eq!((f.status, f.header("x-cache")), (200, Some("HIT")));
    assert_eq!(f.body, cold);
    assert_eq!(quick_hits(&gw), before + 3);
    assert_eq!(s3.gets(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_sent_in_pieces_is_answered_on_the_quick_path() {
    let data = pdf_bytes(20 * 1024, 94);
    let (_s3, _check, gw) = setup(&[("PIECES1", &data)], &[]).await;
    warm(&gw, "PIECES1", &data).await;
    let before = quick_hits(&gw);

    let request = label_get("PIECES1", "");
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    for piece in request.as_bytes().chunks(7) {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut pending = Vec::new();
    let answer = read_answer(&mut s, &mut pending, false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, data);
    assert_eq!(quick_hits(&gw), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_not_allowed_by_a_cached_verdict_is_never_answered_from_memory() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let data = pdf_bytes(20 * 1024, 95);
    s3.put_label("DENY1", &data).await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &django.check_url(),
        &[("LABEL_GATEWAY_AUTH__ALLOW_TTL", "300ms")],
    ))
    .await;
    let cookie = format!("sessionid={}", django.session("packer"));
    let warm = get_label(&gw, "DENY1").cookie(&cookie).send().await;
    assert_eq!(warm.status(), 200);
    assert_eq!(warm.bytes().await.unwrap(), data);
    let before = quick_hits(&gw);

    let ask = |cookie: Option<String>| {
        let addr = gw.addr();
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let cookie = cookie
                .map(|c| format!("Cookie: {c}\r\n"))
                .unwrap_or_default();
            let req = format!("GET /shipping-label/DENY1/ HTTP/1.1\r\nHost: x\r\n{cookie}\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut pending = Vec::new();
            read_answer(&mut s, &mut pending, false).await
        }
    };
    // The label is hot and the session allowed: a quick hit.
    let hit = ask(Some(cookie.clone())).await;
    assert_eq!((hit.status, &hit.body), (200, &data));
    assert_eq!(quick_hits(&gw), before + 1);
    // No cookie, and a session Django does not know: the full path refuses both.
    assert_ne!(ask(None).await.status, 200);
    assert_ne!(
        ask(Some("sessionid=not-a-session".into())).await.status,
        200
    );
    // One connection, sessions changing between its requests (the connection remembers
    // its last session's hash): each request is judged by its own session.
    {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        let mut pending = Vec::new();
        let hits = quick_hits(&gw);
        for (cookie, status) in [
            (cookie.as_str(), 200),
            ("sessionid=not-a-session", 404),
            (cookie.as_str(), 200),
        ] {
            let req = format!(
                "GET /shipping-label/DENY1/ HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            assert_eq!(
                read_answer(&mut s, &mut pending, false).await.status,
                status
            );
        }
        assert_eq!(quick_hits(&gw), hits + 2);
    }
    let settled = quick_hits(&gw);
    // Logged out, its allowing verdict expired: the hot label is not served to it.
    django.logout(&cookie).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = ask(Some(cookie)).await;
    assert_eq!(after.status, 404);
    assert_eq!(quick_hits(&gw), settled, "none of these was a quick hit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_a_quick_hit_is_cut_at_the_send_timeout() {
    // Far more than the loopback socket buffers hold, so the write must wait on the client.
    let data = pdf_bytes(6 * 1024 * 1024, 96);
    let (_s3, _check, gw) = setup(
        &[("STALL2", &data)],
        &[
            ("LABEL_GATEWAY_SERVER__SEND_TIMEOUT", "1s"),
            ("LABEL_GATEWAY_CACHE__MAX_OBJECT_BYTES", "8MiB"),
        ],
    )
    .await;
    warm(&gw, "STALL2", &data).await;
    let before = quick_hits(&gw);
    let open = || {
        gw.gateway
            .metrics
            .connections_open
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // reqwest's kept-alive connection closes with the client.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stalled = sock.connect(gw.addr()).await.unwrap();
    stalled
        .write_all(label_get("STALL2", "").as_bytes())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(quick_hits(&gw), before + 1, "answered on the quick path");
    while open() > 0 {
        assert!(
            Instant::now() < deadline,
            "a client reading nothing still holds its connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the client gets is short of the label: the connection was cut, not finished.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut got)).await;
    assert!(got.len() < data.len(), "{} bytes", got.len());
}

/// A request hyper answers with a body far larger than the socket buffers, to a client
/// that reads nothing for a while: the connection comes back to the lane only once hyper's
/// last byte is written, so the quick hit pipelined after it follows it whole, never inside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_quick_hit_after_a_long_answer_from_hyper_waits_for_its_last_byte() {
    let big = pdf_bytes(3 * 1024 * 1024, 97);
    let hot = pdf_bytes(10 * 1024, 98);
    let (_s3, _check, gw) = setup(
        &[("BIG3", &big), ("HOT3", &hot)],
        // The big label streams from storage on every read.
        &[("LABEL_GATEWAY_CACHE__MAX_OBJECT_BYTES", "256KiB")],
    )
    .await;
    warm(&gw, "HOT3", &hot).await;
    let before = quick_hits(&gw);

    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(8192).unwrap();
    let mut s = sock.connect(gw.addr()).await.unwrap();
    let burst = label_get("BIG3", "") + &label_get("HOT3", "") + &label_get("BIG3", "");
    s.write_all(burst.as_bytes()).await.unwrap();
    // Nothing read while hyper's writes wait on the full socket.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut pending = Vec::new();
    let a = read_answer(&mut s, &mut pending, false).await;
    let b = read_answer(&mut s, &mut pending, false).await;
    let c = read_answer(&mut s, &mut pending, false).await;
    assert_eq!((a.status, a.header("x-cache")), (200, Some("MISS")));
    assert!(a.body == big, "the first long answer whole");
    assert_eq!((b.status, b.header("x-cache")), (200, Some("HIT")));
    assert_eq!(b.body, hot);
    assert_eq!((c.status, c.header("x-cache")), (200, Some("MISS")));
    assert!(c.body == big, "the second long answer whole");
    assert_eq!(quick_hits(&gw), before + 1);
}

/// HTTP/2 with prior knowledge on the public listener: the lane sees the preface and hands
/// the connection to hyper, which serves the miss and the hit on one connection.
#[tokio::test(flavor = "multi_thread")]
async fn http2_on_the_public_listener_is_hypers_from_the_preface_on() {
    use http_body_util::BodyExt;
    let data = pdf_bytes(30 * 1024, 99);
    let (_s3, _check, gw) = setup(&[("H2LANE", &data)], &[]).await;
    let before = quick_hits(&gw);

    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("an HTTP/2 handshake");
    tokio::spawn(conn);
    for expected in ["MISS", "HIT"] {
        let req = http::Request::get(format!("http://{}/shipping-label/H2LANE/", gw.addr()))
            .header("cookie", ANY_SESSION)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.expect("an answer");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.headers()["x-cache"], expected);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, data);
    }
    assert_eq!(quick_hits(&gw), before, "HTTP/2 is hyper's");
}

/// Shutdown closes kept-alive connections idle in the lane at once (nothing else would wake
/// a lane waiting for a head), whether their last request was a quick hit or one hyper
/// answered, and a head half sent. Answers in progress finishing is `shutdown.rs`'s test.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_connections_idle_in_the_lane_at_once() {
    let hot = pdf_bytes(10 * 1024, 100);
    let (_s3, _check, gw) = setup(
        &[("IDLE1", &hot)],
        // The idle connections would otherwise last until their header timeout, past the
        // grace.
        &[
            ("LABEL_GATEWAY_SERVER__SHUTDOWN_GRACE", "3s"),
            ("LABEL_GATEWAY_SERVER__HEADER_READ_TIMEOUT", "60s"),
        ],
    )
    .await;
    warm(&gw, "IDLE1", &hot).await;

    let mut after_quick = TcpStream::connect(gw.addr()).await.unwrap();
    after_quick
        .write_all(label_get("IDLE1", "").as_bytes())
        .await
        .unwrap();
    let mut p1 = Vec::new();
    assert_eq!(
        read_answer(&mut after_quick, &mut p1, false).await.status,
        200
    );
    let mut after_hyper = TcpStream::connect(gw.addr()).await.unwrap();
    after_hyper
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut p2 = Vec::new();
    assert_eq!(
        read_answer(&mut after_hyper, &mut p2, false).await.status,
        200
    );
    // A head half sent: not an answer in progress, closed as idle too.
    let mut half = TcpStream::connect(gw.addr()).await.unwrap();
    half.write_all(b"GET /shipping-label/IDLE1/ HTTP/1.1\r\nHo")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert!(gw.shutdown().await, "everything finished within the grace");
    for s in [&mut after_quick, &mut after_hyper, &mut half] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
        assert!(rest.is_empty());
    }
}

/// The verdict a connection keeps for its session lasts only as long as the cached
/// verdict: a revoked session and an expired verdict are asked of the app again on the
/// same connection, never answered from what the connection kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_connections_kept_verdict_ends_with_a_revoke_and_with_its_expiry() {
    async fn ask(s: &mut TcpStream, pending: &mut Vec<u8>, data: &[u8], cache: &str) {
        s.write_all(label_get("KEPT1", "").as_bytes())
            .await
            .unwrap();
        let a = read_answer(s, pending, false).await;
        assert_eq!((a.status, a.header("x-cache")), (200, Some(cache)));
        assert_eq!(a.body, data);
    }
    let data = pdf_bytes(10 * 1024, 101);
    let (_s3, check, gw) = setup(
        &[("KEPT1", &data)],
        &[
            ("LABEL_GATEWAY_INTERNAL__TOKEN", "tok-kept"),
            ("LABEL_GATEWAY_AUTH__ALLOW_TTL", "1s"),
        ],
    )
    .await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let mut pending = Vec::new();
    // A miss (the app asked once), then quick hits that ask nobody.
    ask(&mut s, &mut pending, &data, "MISS").await;
    assert_eq!(check.hits(), 1);
    let quick = quick_hits(&gw);
    ask(&mut s, &mut pending, &data, "HIT").await;
    ask(&mut s, &mut pending, &data, "HIT").await;
    assert_eq!((check.hits(), quick_hits(&gw)), (1, quick + 2));

    // Revoked: the next request on the same connection is checked with the app again.
    let revoked = support::client()
        .post(format!(
            "http://{}/internal/sessions/revoke",
            gw.internal_addr()
        ))
        .bearer_auth("tok-kept")
        .header("content-type", "application/json")
        .body(r#"{"session_key":"anything-the-stand-in-allows"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    ask(&mut s, &mut pending, &data, "HIT").await;
    assert_eq!(check.hits(), 2, "asked again after the revoke");
    assert_eq!(
        quick_hits(&gw),
        quick + 2,
        "not from what the connection kept"
    );
    ask(&mut s, &mut pending, &data, "HIT").await;
    assert_eq!((check.hits(), quick_hits(&gw)), (2, quick + 3));

    // Expired (allow_ttl 1 s): asked again too.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    ask(&mut s, &mut pending, &data, "HIT").await;
    assert_eq!(check.hits(), 3, "asked again after the verdict expired");
    assert_eq!(quick_hits(&gw), quick + 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_content_length_that_overflows_never_splits_one_request_in_two() {
    let data = pdf_bytes(20 * 1024, 93);
    let (_s3, _check, gw) = setup(&[("LANE9", &data)], &[]).await;
    warm(&gw, "LANE9", &data).await;
    // A label request written inside a header value: were the head's length added to the
    // `Content-Length` unchecked, it would wrap to where that value starts, and the rest
    // of the head would be read as a request of its own.
    let smuggled = format!("GET /shipping-label/LANE9/ HTTP/1.1\r\nCookie: {ANY_SESSION}\r\n\r\n");
    let wraps_there = u64::MAX - smuggled.len() as u64 + 1;
    for length in [wraps_there, 18_446_744_073_709_551_613] {
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nX-Note: {smuggled}"
        );
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        // Whatever comes back within a second (hyper waits for the body that never comes).
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), s.read(&mut chunk)).await
        {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(
            !got.windows(5).any(|w| w == b"%PDF-"),
            "{length}: only /healthz was asked, no label: {text}"
        );
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "{length}: one answer: {text}"
        );
    }
}

/// HTTP/2 only from a connection's first byte: its preface after an HTTP/1.1 exchange is
/// a bad HTTP/1 request, never the start of an HTTP/2 connection.
#[tokio::test(flavor = "multi_thread")]
async fn http2_never_starts_midway_through_a_connection() {
    let (_s3, _check, gw) = setup(&[], &[]).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let mut pending = Vec::new();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_answer(&mut s, &mut pending, false).await;
    assert_eq!(first.status, 200);
    // The preface and an empty SETTINGS frame, as an HTTP/2 client opens with.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut chunk = vec![0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&chunk[..n]);
    }
    assert!(
        pending.is_empty() || pending.starts_with(b"HTTP/1.1 "),
        "answered as HTTP/1.1 or closed, not over HTTP/2: {:?}",
        String::from_utf8_lossy(&pending)
    );
}
