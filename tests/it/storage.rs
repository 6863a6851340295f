//! The S3 backend against the real S3 server: exact bytes, HEAD, ranges, conditionals
//! (which s3s-fs ignores, so the gateway's own logic answers), credential faults and
//! missing labels, and the header filter.

use crate::support::{
    self, get_label, head_label, label_request, pdf_bytes, Responder, S3Server, ANY_SESSION,
};

async fn setup(extra: &[(&str, &str)]) -> (S3Server, Responder, label_gateway::server::Running) {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let mut env = vec![("LABEL_GATEWAY_CACHE__ENABLED", "false")];
    env.extend_from_slice(extra);
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), &env)).await;
    (s3, check, gw)
}

#[tokio::test(flavor = "multi_thread")]
async fn small_label_round_trips_exactly_with_label_headers() {
    let (s3, _check, gw) = setup(&[]).await;
    let data = pdf_bytes(50 * 1024, 1);
    s3.put_label("1Z999AA10123456784", &data).await;
    let resp = get_label(&gw, "1Z999AA10123456784")
        .cookie(ANY_SESSION)
        .send()
        .await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["content-length"], (50 * 1024).to_string().as_str());
    assert_eq!(h["cache-control"], "private, no-cache");
    assert_eq!(
        h["content-disposition"],
        "inline; filename=\"1Z999AA10123456784.pdf\""
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["x-cache"], "MISS");
    assert!(
        h.contains_key("etag") && h.contains_key("last-modified") && h.contains_key("x-request-id")
    );
    assert!(h.keys().all(|k| !k.as_str().starts_with("x-amz-")), "{h:?}");
    assert!(!h.contains_key("server"));
    assert_eq!(resp.bytes().await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn label_reads_reuse_their_storage_connections() {
    use std::sync::atomic::Ordering;
    let (s3, _check, gw) = setup(&[]).await;
    let data = pdf_bytes(50 * 1024, 7);
    s3.put_label("POOLED1", &data).await;
    // Warm: the first read opens a connection.
    let first = get_label(&gw, "POOLED1").cookie(ANY_SESSION).send().await;
    assert_eq!(first.bytes().await.unwrap(), data);
    let before = s3.counters.connections.load(Ordering::SeqCst);
    // One after another: GETs, HEADs and a missing label, each read to its end.
    for i in 0..30 {
        let resp = match i % 3 {
            0 => get_label(&gw, "POOLED1").cookie(ANY_SESSION).send().await,
            1 => head_label(&gw, "POOLED1").cookie(ANY_SESSION).send().await,
            _ => get_label(&gw, "NOSUCH1").cookie(ANY_SESSION).send().await,
        };
        let status = resp.status();
        let body = resp.bytes().await.unwrap();
        match i % 3 {
            0 => assert!(status == 200 && body == data, "{i}: {status}"),
            1 => assert!(status == 200 && body.is_empty(), "{i}: {status}"),
            _ => assert_eq!(status, 404, "{i}"),
        }
    }
    let sequential = s3.counters.connections.load(Ordering::SeqCst) - before;
    assert_eq!(
        sequential, 0,
        "sequential label reads opened new storage connections"
    );

    // Eight at once, four times: at most eight connections, then reused.
    for round in 0..4 {
        let mut reads = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let req = get_label(&gw, "POOLED1").cookie(ANY_SESSION);
            reads.spawn(async move { req.send().await.bytes().await.unwrap() });
        }
        while let Some(body) = reads.join_next().await {
            assert!(body.unwrap() == data, "round {round}");
        }
    }
    let parallel = s3.counters.connections.load(Ordering::SeqCst) - before;
    assert!(
        parallel <= 8,
        "{parallel} storage connections for 8 readers at a time"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_megabyte_label_round_trips_exactly() {
    let (s3, _check, gw) = setup(&[]).await;
    let data = pdf_bytes(20 * 1024 * 1024, 2);
    s3.put_label("BIG20MB", &data).await;
    let resp = get_label(&gw, "BIG20MB").cookie(ANY_SESSION).send().await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), data.len());
    assert!(body == data, "20 MB body differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn head_sends_headers_and_no_body() {
    let (s3, _check, gw) = setup(&[]).await;
    s3.put_label("HEADME", &pdf_bytes(1234, 3)).await;
    let resp = head_label(&gw, "HEADME").cookie(ANY_SESSION).send().await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "1234");
    assert!(resp.headers().contains_key("etag"));
    assert!(resp.bytes().await.unwrap().is_empty());
}

async fn get_range(gw: &label_gateway::server::Running, range: &str) -> reqwest::Response {
    get_label(gw, "RANGED")
        .cookie(ANY_SESSION)
        .header("range", range)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_answer_206_with_exact_bytes_and_416_past_the_end() {
    let (s3, _check, gw) = setup(&[]).await;
    let data = pdf_bytes(1000, 4);
    s3.put_label("RANGED", &data).await;

    let r = get_range(&gw, "bytes=0-99").await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 0-99/1000");
    assert_eq!(r.bytes().await.unwrap(), &data[0..100]);

    let r = get_range(&gw, "bytes=-100").await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 900-999/1000");
    assert_eq!(r.bytes().await.unwrap(), &data[900..]);

    let r = get_range(&gw, "bytes=100-").await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-999/1000");
    assert_eq!(r.bytes().await.unwrap(), &data[100..]);

    let r = get_range(&gw, "bytes=5000-").await;
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */1000");

    // A malformed range is ignored: the whole label.
    let r = get_range(&gw, "bytes=oops").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_requests_are_answered_by_the_gateway() {
    let (s3, _check, gw) = setup(&[]).await;
    s3.put_label("COND", &pdf_bytes(4096, 5)).await;
    let c = support::client();
    let get = |headers: &[(&str, &str)]| {
        get_label(&gw, "COND")
            .cookie(ANY_SESSION)
            .headers(headers)
            .with_client(&c)
            .send()
    };
    let first = get(&[]).await;
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let last_modified = first.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_string();
    drop(first);

    let r = get(&[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.bytes().await.unwrap().is_empty());

    let r = get(&[("if-modified-since", &last_modified)]).await;
    assert_eq!(r.status(), 304);

    let r = get(&[("if-match", "\"not-the-etag\"")]).await;
    assert_eq!(r.status(), 412);

    let r = get(&[("if-unmodified-since", "Mon, 01 Jan 2001 00:00:00 GMT")]).await;
    assert_eq!(r.status(), 412);

    let r = get(&[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 4096);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_secret_is_bad_gateway_not_not_found() {
    let s3 = S3Server::start().await;
    s3.put_label("EXISTS", &pdf_bytes(100, 6)).await;
    let check = Responder::allow_all().await;
    let config = support::s3_config(
        &s3,
        &check.url(),
        &[
            ("SPACES_SECRET_ACCESS_KEY", "wrong-secret"),
            ("LABEL_GATEWAY_CACHE__ENABLED", "false"),
        ],
    );
    let gw = support::start_gateway(config).await;
    for tracking in ["EXISTS", "MISSING"] {
        let r = get_label(&gw, tracking).cookie(ANY_SESSION).send().await;
        assert_eq!(r.status(), 502, "{tracking}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("wrong-secret"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_label_is_a_404_page_naming_the_tracking_number() {
    let (_s3, _check, gw) = setup(&[
        ("LABEL_GATEWAY_REGENERATE__URL", ""),
        (
            "LABEL_GATEWAY_REGENERATE__TRACKING_URL_TEMPLATE",
            "https://track.example/?n={tracking}",
        ),
    ])
    .await;
    let r = get_label(&gw, "NOPE123").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let body = r.text().await.unwrap();
    assert!(body.contains("NOPE123"), "{body}");
    assert!(body.contains("https://track.example/?n=NOPE123"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_methods_get_405_with_allow_and_unknown_paths_404() {
    let (_s3, _check, gw) = setup(&[]).await;
    let c = support::client();
    let r = label_request(&gw, reqwest::Method::POST, "X1")
        .cookie(ANY_SESSION)
        .with_client(&c)
        .send()
        .await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = c
        .get(format!("http://{}/nowhere", gw.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .get(format!("http://{}/healthz", gw.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("http://{}/readyz", gw.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn object_written_with_aws_chunked_encoding_is_served_without_it() {
    let (s3, _check, gw) = setup(&[]).await;
    let data = pdf_bytes(2048, 7);
    s3.put_object(
        "labels/CHUNKED.pdf",
        &data,
        &[("content-encoding", "aws-chunked")],
    )
    .await;
    let r = get_label(&gw, "CHUNKED").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    assert!(
        !r.headers().contains_key("content-encoding"),
        "{:?}",
        r.headers()
    );
    assert_eq!(r.bytes().await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_needs_both_storage_and_the_check_endpoint() {
    let s3 = S3Server::start().await;
    let down = crate::support::standins::closed_port().await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &format!("http://{down}/check/"),
        &[],
    ))
    .await;
    let r = support::client()
        .get(format!("http://{}/readyz", gw.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));

    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[("SPACES_SECRET_ACCESS_KEY", "wrong-secret")],
    ))
    .await;
    let r = support::client()
        .get(format!("http://{}/readyz", gw.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        503,
        "a bucket that refuses our signature is not ready"
    );
    let r = support::client()
        .get(format!("http://{}/healthz", gw.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "but the process is alive");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hit_carries_the_same_headers_as_the_miss_before_it_get_and_head() {
    // Hits clone headers built once per cached label; they must be the miss's, with
    // `X-Cache` the only difference (and the per-response `Date` and `X-Request-Id`).
    let (s3, _check, gw) = setup(&[("LABEL_GATEWAY_CACHE__ENABLED", "true")]).await;
    let data = pdf_bytes(20 * 1024, 9);
    s3.put_label("SAMEHDR1", &data).await;
    let headers = |r: &reqwest::Response| -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = r
            .headers()
            .iter()
            .filter(|(k, _)| !["date", "x-request-id", "x-cache"].contains(&k.as_str()))
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        h.sort();
        h
    };
    let miss = get_label(&gw, "SAMEHDR1").cookie(ANY_SESSION).send().await;
    assert_eq!(miss.headers()["x-cache"], "MISS");
    let expected = headers(&miss);
    assert_eq!(miss.bytes().await.unwrap(), data);
    assert!(expected.iter().any(|(k, _)| k == "etag"), "{expected:?}");
    for round in 0..2 {
        let hit = get_label(&gw, "SAMEHDR1").cookie(ANY_SESSION).send().await;
        assert_eq!(hit.headers()["x-cache"], "HIT", "round {round}");
        assert_eq!(headers(&hit), expected, "round {round}");
        assert_eq!(hit.bytes().await.unwrap(), data);
        let head = head_label(&gw, "SAMEHDR1").cookie(ANY_SESSION).send().await;
        assert_eq!(head.headers()["x-cache"], "HIT", "round {round}");
        assert_eq!(headers(&head), expected, "HEAD, round {round}");
    }
}
