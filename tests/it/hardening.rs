//! What an attacker's review found and what now holds: every label goes out as a PDF
//! whatever type it was stored with; a client that stops reading does not hold back other
//! downloads of the same label; regeneration is bounded per session; the session cookie
//! is the one Django itself would read; forwarding headers are believed only from trusted
//! proxies.

use std::time::Duration;

use crate::support::{self, get_label, pdf_bytes, Responder, S3Server, ANY_SESSION};

async fn setup(extra: &[(&str, &str)]) -> (S3Server, Responder, label_gateway::server::Running) {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), extra)).await;
    (s3, check, gw)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_stored_as_html_is_still_served_as_a_pdf_hit_or_miss() {
    let (s3, _check, gw) = setup(&[]).await;
    let body = b"%PDF-1.4\n<html><script>alert(document.cookie)</script></html>";
    s3.put_object(
        "labels/HTML1.pdf",
        body,
        &[("content-type", "text/html; charset=utf-8")],
    )
    .await;
    for expected_cache in ["MISS", "HIT"] {
        let r = get_label(&gw, "HTML1").cookie(ANY_SESSION).send().await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-cache"], expected_cache);
        assert_eq!(r.headers()["content-type"], "application/pdf");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.bytes().await.unwrap(), &body[..]);
    }
    let r = support::head_label(&gw, "HTML1")
        .cookie(ANY_SESSION)
        .send()
        .await;
    assert_eq!(r.headers()["content-type"], "application/pdf");
}

/// A client with a tiny receive buffer asks for a large uncached label and then reads
/// nothing: it leads the cache fill, and its download stalls. A second client asking for
/// the same label must get it without waiting for the first (storage's first-byte timeout,
/// which the old fill lock waited out, is a minute here).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_reads_nothing_does_not_hold_back_others_of_the_same_label() {
    use tokio::io::AsyncWriteExt;
    let (s3, _check, gw) = setup(&[("LABEL_GATEWAY_STORAGE__FIRST_BYTE_TIMEOUT", "60s")]).await;
    let data = pdf_bytes(3 * 1024 * 1024, 81);
    s3.put_label("STALL1", &data).await;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let mut stalled = socket.connect(gw.addr()).await.unwrap();
    stalled
        .write_all(
            format!(
                "GET /shipping-label/STALL1/ HTTP/1.1\r\nHost: t\r\nCookie: {ANY_SESSION}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // The stalled request reached storage: it holds the fill lock now.
    let deadline = tokio::time::Instant::now() + support::SLACK;
    while s3.gets() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "no storage fetch");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let r = get_label(&gw, "STALL1")
        .cookie(ANY_SESSION)
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), data);
    let metrics = support::metrics(gw.internal_addr()).await;
    assert!(
        metrics.contains("label_gateway_cache_fill_stalls_total 1\n"),
        "{metrics}"
    );
    drop(stalled);
}

/// Each session may start a burst of regenerations, then is refused with 429 and a
/// `Retry-After` (the app, and the carrier behind it, are not a logged-in user's to
/// hammer); another session has a burst of its own, and a remembered answer costs nothing.
#[tokio::test(flavor = "multi_thread")]
async fn regenerations_are_bounded_per_session_with_a_clear_429() {
    let app = Responder::start(404, Duration::ZERO).await;
    let regen_url = format!("http://{}/regenerate/{{tracking}}/", app.addr);
    let (_s3, _check, gw) = setup(&[
        ("LABEL_GATEWAY_REGENERATE__URL", regen_url.as_str()),
        ("LABEL_GATEWAY_REGENERATE__PER_SESSION_BURST", "3"),
        ("LABEL_GATEWAY_REGENERATE__PER_SESSION_PER_MINUTE", "1"),
    ])
    .await;
    let ask = |tracking: &'static str, cookie: &'static str| {
        let gw = &gw;
        async move { get_label(gw, tracking).cookie(cookie).send().await }
    };
    for t in ["GONE1", "GONE2", "GONE3"] {
        assert_eq!(ask(t, "sessionid=picker-a").await.status(), 404, "{t}");
    }
    assert_eq!(app.hits(), 3);
    let r = ask("GONE4", "sessionid=picker-a").await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "retry-after {wait}");
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("too many labels regenerated"));
    assert_eq!(
        app.hits(),
        3,
        "a refused regeneration never reaches the app"
    );
    // A remembered "cannot regenerate" costs no token.
    assert_eq!(ask("GONE1", "sessionid=picker-a").await.status(), 404);
    // Another session has its own burst.
    assert_eq!(ask("GONE5", "sessionid=picker-b").await.status(), 404);
    assert_eq!(app.hits(), 4);
}

/// For every tricky `Cookie` header (duplicates in one line and across lines, quotes,
/// whitespace, empty values), the gateway reads the session Django itself reads: the
/// same headers sent to the app's own check URL and to the gateway get the same verdict.
#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_reads_the_same_session_cookie_as_django() {
    let django = support::Django::start();
    let s3 = S3Server::start().await;
    s3.put_label("PARITY1", &pdf_bytes(2_000, 82)).await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &django.check_url(),
        &[
            ("LABEL_GATEWAY_AUTH__ALLOW_TTL", "1ms"),
            ("LABEL_GATEWAY_AUTH__DENY_TTL", "1ms"),
        ],
    ))
    .await;
    let good = django.session("parity");
    let bad = "forgedforgedforgedforgedforged12";
    let cases: Vec<Vec<String>> = vec![
        vec![format!("sessionid={bad}; sessionid={good}")],
        vec![format!("sessionid={good}; sessionid={bad}")],
        vec![format!("sessionid={good}; sessionid=")],
        vec![format!("sessionid={good}; sessionid")],
        vec![format!("sessionid={good}"), "csrftoken=abc".to_string()],
        vec!["csrftoken=abc".to_string(), format!("sessionid={good}")],
        vec!["theme=dark".to_string(), format!("a=1; sessionid={good}")],
        vec![format!("sessionid=\"{good}\"")],
        vec![format!("sessionid=\"\"{good}\"\"")],
        vec![format!("sessionid=\"{good}")],
        vec![format!("  sessionid  =   {good}  ;  theme = dark ")],
        vec![format!("sessionid=\t{good}\t")],
        vec![format!("\"sessionid\"={good}")],
        vec![format!("SESSIONID={good}")],
        vec![format!("sessionid={good},theme=dark")],
    ];
    let c = support::client();
    let mut allowed = 0;
    for lines in &cases {
        let mut to_django = c.get(django.url("/internal/label-access/PARITY1/"));
        let mut to_gateway = c.get(support::label_url(&gw, "PARITY1"));
        for line in lines {
            to_django = to_django.header("cookie", line);
            to_gateway = to_gateway.header("cookie", line);
        }
        let django_allows = to_django.send().await.unwrap().status().is_success();
        let gateway_status = to_gateway.send().await.unwrap().status().as_u16();
        assert_eq!(
            gateway_status,
            if django_allows { 200 } else { 404 },
            "cookie lines {lines:?}: Django allows = {django_allows}"
        );
        allowed += usize::from(django_allows);
    }
    // Both outcomes are exercised, not only denials.
    assert!(allowed >= 4 && allowed < cases.len(), "allowed {allowed}");
}

/// A client that dies in the middle of a `PUT` is the client's fault: logged at info and
/// answered (to nobody) as a 400, never a 502 counted as a storage error.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_abandoned_mid_body_is_not_a_storage_error() {
    use tokio::io::AsyncWriteExt;
    let token = "abandon-token-1";
    let (s3, _check, gw) = setup(&[("LABEL_GATEWAY_INTERNAL__TOKEN", token)]).await;
    let mut s = tokio::net::TcpStream::connect(gw.internal_addr())
        .await
        .unwrap();
    let head = format!(
        "PUT /internal/labels/HALF1 HTTP/1.1\r\nHost: t\r\nAuthorization: bearer {token}\r\n\
         Content-Type: application/pdf\r\nContent-Length: 200000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&pdf_bytes(20_000, 83)).await.unwrap();
    s.flush().await.unwrap();
    // Let the upload reach storage, then vanish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    let deadline = tokio::time::Instant::now() + support::SLACK;
    let text = loop {
        let text = support::metrics(gw.internal_addr()).await;
        if text.contains("label_gateway_responses_total{class=\"4xx\"} 1") {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        text.contains("label_gateway_storage_errors_total 0"),
        "{text}"
    );
    assert!(
        text.contains("label_gateway_responses_total{class=\"5xx\"} 0"),
        "{text}"
    );
    assert!(s3.stored("labels/HALF1.pdf").is_none());
}

/// `X-Forwarded-*` from a client that reached the gateway directly are not passed to the
/// app as its own: they are rebuilt from the connection; a trusted proxy's are extended.
#[tokio::test(flavor = "multi_thread")]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let django = support::Django::start();
    let s3 = S3Server::start().await;
    s3.put_label("FWD1", &pdf_bytes(1_000, 84)).await;
    s3.put_label("FWD2", &pdf_bytes(1_000, 85)).await;
    let cookie = format!("sessionid={}", django.session("fwd"));
    let spoofed = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "shop.example"),
    ];

    // Loopback is not trusted here: the test client stands for anyone on the network.
    let untrusting = support::start_gateway(support::s3_config(
        &s3,
        &django.check_url(),
        &[("LABEL_GATEWAY_SERVER__TRUSTED_PROXIES", r#"["10.0.0.0/8"]"#)],
    ))
    .await;
    let r = get_label(&untrusting, "FWD1")
        .cookie(&cookie)
        .headers(&spoofed)
        .header("host", "gateway.internal")
        .send()
        .await;
    assert_eq!(r.status(), 200);

    // The default trusts loopback, where nginx runs.
    let trusting = support::start_gateway(support::s3_config(&s3, &django.check_url(), &[])).await;
    let r = get_label(&trusting, "FWD2")
        .cookie(&cookie)
        .headers(&spoofed)
        .send()
        .await;
    assert_eq!(r.status(), 200);

    let forwarded = &django.stats().await["forwarded"];
    assert_eq!(
        forwarded["FWD1"],
        serde_json::json!({"for": "127.0.0.1", "proto": "http", "host": "gateway.internal"})
    );
    assert_eq!(
        forwarded["FWD2"],
        serde_json::json!({"for": "203.0.113.9, 127.0.0.1", "proto": "https", "host": "shop.example"})
    );
}

/// `/internal/...` and `/metrics` are answered on the internal listener only: the public
/// port (the one nginx, or a Docker port mapping, exposes) never serves them, unless
/// `internal_on_public` says so explicitly.
#[tokio::test(flavor = "multi_thread")]
async fn internal_routes_and_metrics_stay_off_the_public_listener() {
    let token = "listener-token-1";
    let (_s3, _check, gw) = setup(&[("LABEL_GATEWAY_INTERNAL__TOKEN", token)]).await;
    let c = support::client();
    let on = |addr: std::net::SocketAddr, path: &str| format!("http://{addr}{path}");
    for (method, path) in [
        (reqwest::Method::GET, "/metrics"),
        (reqwest::Method::DELETE, "/internal/cache/LSN1"),
        (reqwest::Method::PUT, "/internal/labels/LSN1"),
    ] {
        let public = c
            .request(method.clone(), on(gw.addr(), path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            public.status(),
            404,
            "{method} {path} on the public listener"
        );
        let internal = c
            .request(method.clone(), on(gw.internal_addr(), path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_ne!(
            internal.status(),
            404,
            "{method} {path} on the internal one"
        );
    }
    // Labels are not served on the internal listener either.
    let r = c
        .get(on(gw.internal_addr(), "/shipping-label/LSN1/"))
        .header("cookie", ANY_SESSION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let (_s3, _check, gw) = setup(&[("LABEL_GATEWAY_SERVER__INTERNAL_ON_PUBLIC", "true")]).await;
    let r = c.get(on(gw.addr(), "/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
