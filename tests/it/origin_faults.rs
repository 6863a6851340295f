//! Storage faults, played by a scripted origin stand-in: a body reset or stalled mid-way,
//! 500s and `SlowDown` before a 200, a label that trickles in (never silent for the
//! idle timeout), a hang-up before the head, a slow first byte, a whole
//! request over its timeout, an origin that is down or never answers a connect. Each test
//! pins what the client sees. Time only appears as generous "does not hang" bounds.

use std::time::{Duration, Instant};

use crate::support::standins::{self, Act, ScriptedOrigin};
use crate::support::{self, get_label, pdf_bytes, Responder, ANY_SESSION, HANG, SLACK};

#[tokio::test(flavor = "multi_thread")]
async fn origin_reset_mid_body_fails_the_download_caches_nothing_and_serving_goes_on() {
    let good = pdf_bytes(50_000, 61);
    let cut = Act::Cut {
        total: 50_000,
        sent: 10_000,
        stall: None,
    };
    let origin = ScriptedOrigin::start(vec![cut.clone(), cut], Act::ok(&good)).await;
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::origin_config(
        &origin.endpoint(),
        &check.url(),
        &[],
    ))
    .await;
    let get = || {
        get_label(&gw, "RESET1")
            .cookie(ANY_SESSION)
            .timeout(HANG)
            .send()
    };

    for attempt in 1..=2 {
        let r = get().await;
        assert_eq!(r.status(), 200, "the head went out before the cut");
        assert_eq!(r.headers()["content-length"], "50000");
        assert_eq!(
            r.headers()["x-cache"],
            "MISS",
            "attempt {attempt}: nothing cached"
        );
        assert!(
            r.bytes().await.is_err(),
            "a cut body must end as an error, never as a short body that looks complete"
        );
        assert_eq!(origin.hits(), attempt, "no retry once bytes were sent");
    }
    // The origin recovers: the same gateway serves the label whole, then from memory.
    let r = get().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(r.bytes().await.unwrap(), good);
    let r = get().await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.bytes().await.unwrap(), good);
    assert_eq!(origin.hits(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_stalling_mid_body_is_cut_at_the_idle_timeout() {
    let good = pdf_bytes(40_000, 62);
    let stall = Act::Cut {
        total: 40_000,
        sent: 8_000,
        stall: Some(Duration::from_secs(20)),
    };
    let origin = ScriptedOrigin::start(vec![stall], Act::ok(&good)).await;
    let check = Responder::allow_all().await;
    let idle = Duration::from_millis(300);
    let gw = support::start_gateway(support::origin_config(
        &origin.endpoint(),
        &check.url(),
        &[("LABEL_GATEWAY_STORAGE__IDLE_BODY_TIMEOUT", "300ms")],
    ))
    .await;

    let get = || {
        get_label(&gw, "STALL1")
            .cookie(ANY_SESSION)
            .timeout(HANG)
            .send()
    };
    let started = Instant::now();
    let r = get().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert!(
        r.bytes().await.is_err(),
        "a stalled body must end as an error"
    );
    assert!(
        started.elapsed() < idle + SLACK,
        "cut by the idle timeout, not by the origin's 20 s stall: {:?}",
        started.elapsed()
    );
    // Nothing was cached: the next request goes to the origin again and gets the label.
    let r = get().await;
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(r.bytes().await.unwrap(), good);
    assert_eq!(origin.hits(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_label_arriving_slowly_but_never_silent_is_served_whole() {
    // Bodies over one read are read under a receive watermark (128 KiB or the rest). The
    // last 20 KiB of each come in 1 KiB pieces every 100 ms: never silent for the 1 s idle
    // timeout, 2 s in all. A reader that kept waiting for the watermark would see a stall
    // and cut the label.
    for (size, tracking) in [(50 * 1024, "TRICKLE1"), (400 * 1024, "TRICKLE2")] {
        let good = pdf_bytes(size, 63);
        let trickle = Act::Trickle {
            body: good.clone(),
            fast: size - 20 * 1024,
            piece: 1024,
            every: Duration::from_millis(100),
        };
        let (origin, _check, gw) = scripted_with(
            vec![trickle],
            Act::ok(&good),
            &[("LABEL_GATEWAY_STORAGE__IDLE_BODY_TIMEOUT", "1s")],
        )
        .await;
        let r = read(&gw, tracking).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), good, "{size} bytes");
        assert_eq!(origin.hits(), 1);
    }
}

/// A gateway in front of a scripted origin, with `attempts` storage attempts.
async fn scripted(
    script: Vec<Act>,
    then: Act,
    attempts: &str,
) -> (ScriptedOrigin, Responder, label_gateway::server::Running) {
    scripted_with(
        script,
        then,
        &[("LABEL_GATEWAY_STORAGE__ATTEMPTS", attempts)],
    )
    .await
}

/// A gateway in front of a scripted origin, with `extra` settings.
async fn scripted_with(
    script: Vec<Act>,
    then: Act,
    extra: &[(&str, &str)],
) -> (ScriptedOrigin, Responder, label_gateway::server::Running) {
    let origin = ScriptedOrigin::start(script, then).await;
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::origin_config(
        &origin.endpoint(),
        &check.url(),
        extra,
    ))
    .await;
    (origin, check, gw)
}

/// One label read, bounded by [`HANG`].
async fn read(gw: &label_gateway::server::Running, tracking: &str) -> reqwest::Response {
    get_label(gw, tracking)
        .cookie(ANY_SESSION)
        .timeout(HANG)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_500_twice_then_200_is_retried_to_the_right_bytes() {
    let good = pdf_bytes(30_000, 63);
    let (origin, _check, gw) = scripted(
        vec![
            Act::error(500, "InternalError"),
            Act::error(500, "InternalError"),
        ],
        Act::ok(&good),
        "3",
    )
    .await;
    let r = read(&gw, "RETRY1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), good);
    assert_eq!(origin.hits(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_down_and_a_hangup_before_the_head_are_retried() {
    let good = pdf_bytes(10_000, 64);
    let (origin, _check, gw) = scripted(
        vec![Act::error(503, "SlowDown"), Act::Hangup],
        Act::ok(&good),
        "3",
    )
    .await;
    let r = read(&gw, "RETRY2").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), good);
    assert_eq!(origin.hits(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_connection_the_origin_closed_meanwhile_is_not_an_error() {
    // Each answer keeps the connection by HTTP's rules, and the origin closes it anyway:
    // the next label read finds its pooled connection dead and must still succeed.
    let good = pdf_bytes(20_000, 65);
    let (origin, _check, gw) = scripted(vec![], Act::QuietClose { body: good.clone() }, "3").await;
    for i in 0..6 {
        let r = read(&gw, &format!("QUIET{i}")).await;
        assert_eq!(r.status(), 200, "read {i}");
        assert!(r.bytes().await.unwrap() == good, "read {i}");
        // Let the close arrive before the next read, as it would between prints.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(origin.hits(), 6, "every read answered once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_answer_is_read_through_the_client() {
    // Bodiless requests are read by the gateway's own HTTP/1.1 reader, which takes only
    // `Content-Length` bodies; a chunked answer (here S3's "no such key" document) is
    // asked again through hyper's client, and still understood.
    let missing = Act::Chunked {
        status: 404,
        body: b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>".to_vec(),
    };
    let (origin, _check, gw) =
        scripted_with(vec![], missing, &[("LABEL_GATEWAY_REGENERATE__URL", "")]).await;
    let r = read(&gw, "CHUNKED1").await;
    let status = r.status();
    assert_eq!(
        status,
        404,
        "a missing label, not a storage fault: {:?}",
        r.text().await
    );
    assert_eq!(origin.hits(), 2, "asked once by each reader");
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_failing_every_attempt_is_502_after_exactly_the_configured_attempts() {
    let (origin, _check, gw) = scripted(vec![], Act::error(500, "InternalError"), "2").await;
    let r = read(&gw, "RETRY3").await;
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("InternalError"),
        "upstream details stay in the log: {body}"
    );
    assert_eq!(origin.hits(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_slow_first_byte_is_504_without_a_retry() {
    let (origin, _check, gw) = scripted_with(
        vec![],
        Act::Delayed {
            delay: Duration::from_secs(20),
            status: 200,
            body: pdf_bytes(1000, 65),
        },
        &[("LABEL_GATEWAY_STORAGE__FIRST_BYTE_TIMEOUT", "300ms")],
    )
    .await;
    let started = Instant::now();
    let r = get_label(&gw, "SLOW1")
        .cookie(ANY_SESSION)
        .timeout(HANG)
        .send()
        .await;
    assert_eq!(r.status(), 504);
    assert!(
        started.elapsed() < Duration::from_millis(300) + SLACK,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(origin.hits(), 1, "a timeout spent the budget: no retry");
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_request_timeout_is_504() {
    let origin = ScriptedOrigin::start(
        vec![],
        Act::Delayed {
            delay: Duration::from_secs(20),
            status: 200,
            body: pdf_bytes(1000, 66),
        },
    )
    .await;
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::origin_config(
        &origin.endpoint(),
        &check.url(),
        &[("LABEL_GATEWAY_SERVER__REQUEST_TIMEOUT", "300ms")],
    ))
    .await;
    let started = Instant::now();
    let r = get_label(&gw, "SLOW2")
        .cookie(ANY_SESSION)
        .timeout(HANG)
        .send()
        .await;
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(300) + SLACK);
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_down_is_502() {
    let down = standins::closed_port().await;
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::origin_config(
        &format!("http://{down}"),
        &check.url(),
        &[("LABEL_GATEWAY_STORAGE__ATTEMPTS", "2")],
    ))
    .await;
    let r = get_label(&gw, "DOWN1")
        .cookie(ANY_SESSION)
        .timeout(HANG)
        .send()
        .await;
    assert_eq!(r.status(), 502);
    assert!(!r.bytes().await.unwrap().starts_with(b"%PDF"));
}

/// A loopback listener whose accept queue is full, so the kernel drops further SYNs and a
/// connect to it hangs: a storage host that does not answer, without leaving loopback.
fn unanswering_listener() -> (tokio::net::TcpListener, Vec<std::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => return (listener, fillers),
        }
    }
    panic!("the accept queue never filled up");
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_connect_timeout_is_504() {
    let (listener, _fillers) = unanswering_listener();
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::origin_config(
        &format!("http://{}", listener.local_addr().unwrap()),
        &check.url(),
        &[
            ("LABEL_GATEWAY_STORAGE__CONNECT_TIMEOUT", "200ms"),
            ("LABEL_GATEWAY_STORAGE__ATTEMPTS", "2"),
        ],
    ))
    .await;
    let started = Instant::now();
    let r = get_label(&gw, "NOCONN1")
        .cookie(ANY_SESSION)
        .timeout(HANG)
        .send()
        .await;
    assert_eq!(
        r.status(),
        504,
        "a connect that times out is a gateway timeout"
    );
    assert!(started.elapsed() < Duration::from_millis(400) + SLACK);
}
