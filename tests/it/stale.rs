//! `[cache] stale_if_error`: a label cached and past its freshness still prints while
//! storage fails with a fault, against the real S3 server behind a relay the test turns
//! into an outage (connections reset, or 503s). A 404 or a 403 from storage is an answer,
//! never masked; a purge removes the label at once; past `stale_if_error` a fault is a 502.

use crate::support::relay::{Mode, Relay};
use crate::support::{self, get_label, head_label, pdf_bytes, Responder, S3Server, ANY_SESSION};

/// The real S3 server holding `labels`, behind a relay, and a gateway on the relay whose
/// labels are fresh for `ttl` and then usable for `stale_if_error` while storage fails.
async fn gateway_behind_relay(
    labels: &[(&str, &[u8])],
    ttl: &str,
    stale_if_error: &str,
) -> (S3Server, Relay, Responder, label_gateway::server::Running) {
    let s3 = S3Server::start().await;
    for (tracking, data) in labels {
        s3.put_label(tracking, data).await;
    }
    let relay = Relay::start(s3.addr).await;
    let allow = Responder::allow_all().await;
    let endpoint = relay.endpoint();
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &allow.url(),
        &[
            ("SPACES_ENDPOINT_URL", endpoint.as_str()),
            ("LABEL_GATEWAY_CACHE__TTL", ttl),
            ("LABEL_GATEWAY_CACHE__STALE_IF_ERROR", stale_if_error),
            ("LABEL_GATEWAY_INTERNAL__TOKEN", TOKEN),
        ],
    ))
    .await;
    (s3, relay, allow, gw)
}

const TOKEN: &str = "stale-token-123";

/// Reads each label once (a miss that fills the cache), then waits `ms` (past `ttl`).
async fn cache_then_age(gw: &label_gateway::server::Running, labels: &[&str], ms: u64) {
    for tracking in labels {
        let r = get_label(gw, tracking).cookie(ANY_SESSION).send().await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-cache"], "MISS");
        r.bytes().await.expect("body");
        assert!(support::is_cached(gw, tracking).await, "filled");
    }
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    for tracking in labels {
        assert!(
            !support::is_cached(gw, tracking).await,
            "past its freshness"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_label_prints_whole_by_range_and_head_while_storage_resets() {
    let data = pdf_bytes(20_000, 7);
    let (s3, relay, _allow, gw) = gateway_behind_relay(&[("STALE1", &data)], "1s", "1h").await;
    cache_then_age(&gw, &["STALE1"], 1100).await;
    relay.set(Mode::Reset);
    let gets = s3.gets();

    let r = get_label(&gw, "STALE1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "STALE");
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(r.bytes().await.unwrap(), data);

    let r = get_label(&gw, "STALE1")
        .cookie(ANY_SESSION)
        .header("range", "bytes=100-199")
        .send()
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["x-cache"], "STALE");
    assert_eq!(r.headers()["content-range"], "bytes 100-199/20000");
    assert_eq!(r.bytes().await.unwrap(), &data[100..200]);

    let r = head_label(&gw, "STALE1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "STALE");
    assert_eq!(r.headers()["content-length"], "20000");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();

    let r = get_label(&gw, "STALE1")
        .cookie(ANY_SESSION)
        .header("if-none-match", &etag)
        .send()
        .await;
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["x-cache"], "STALE");

    assert!(relay.faulted() >= 4, "every answer asked storage first");
    assert_eq!(s3.gets(), gets, "storage saw none of them");
    let served = support::metric(gw.internal_addr(), "label_gateway_stale_served_total").await;
    assert_eq!(served, 4);

    // Storage back: the next request reads it again and the label is fresh.
    relay.set(Mode::Pass);
    let r = get_label(&gw, "STALE1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(r.bytes().await.unwrap(), data);
    assert_eq!(s3.gets(), gets + 1);
    assert!(support::is_cached(&gw, "STALE1").await, "filled again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_label_prints_through_5xx_but_a_purge_removes_it_at_once() {
    let data = pdf_bytes(8_000, 8);
    let other = pdf_bytes(9_000, 9);
    let (_s3, relay, _allow, gw) =
        gateway_behind_relay(&[("STALE2", &data), ("STALE3", &other)], "1s", "1h").await;
    cache_then_age(&gw, &["STALE2", "STALE3"], 1100).await;
    relay.set(Mode::Fail(503));

    let r = get_label(&gw, "STALE2").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "STALE");
    assert_eq!(r.bytes().await.unwrap(), data);

    let purge = support::client()
        .delete(format!(
            "http://{}/internal/cache/STALE3",
            gw.internal_addr()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("purge answered");
    assert_eq!(purge.status(), 204);
    let r = get_label(&gw, "STALE3").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 502, "purged: nothing to fall back on");
    assert!(relay.faulted() >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_stale_if_error_a_fault_is_a_502() {
    let data = pdf_bytes(5_000, 10);
    let (_s3, relay, _allow, gw) = gateway_behind_relay(&[("STALE4", &data)], "1s", "500ms").await;
    // Fresh for 1 s, then usable for 500 ms more: 1.6 s later, neither.
    cache_then_age(&gw, &["STALE4"], 1600).await;
    relay.set(Mode::Reset);
    let r = get_label(&gw, "STALE4").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 502);
    assert_ne!(
        r.headers().get("x-cache").map(|v| v.as_bytes()),
        Some(&b"STALE"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_404_from_storage_is_not_masked_by_a_stale_label() {
    let data = pdf_bytes(5_000, 11);
    let (s3, relay, _allow, gw) = gateway_behind_relay(&[("STALE5", &data)], "1s", "1h").await;
    cache_then_age(&gw, &["STALE5"], 1100).await;
    std::fs::remove_file(s3.bucket_dir().join("labels/STALE5.pdf")).expect("deleted");
    let r = get_label(&gw, "STALE5").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 404, "storage's answer stands");
    // And the copy storage disowned does not come back in a later outage.
    relay.set(Mode::Reset);
    let r = get_label(&gw, "STALE5").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_403_from_storage_is_not_masked_by_a_stale_label() {
    let data = pdf_bytes(5_000, 13);
    let (_s3, relay, _allow, gw) = gateway_behind_relay(&[("STALE7", &data)], "1s", "1h").await;
    cache_then_age(&gw, &["STALE7"], 1100).await;
    // A refusal (credentials, region, clock) is the gateway's own fault to fix: it shows.
    relay.set(Mode::Fail(403));
    let r = get_label(&gw, "STALE7").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 502);
    assert!(relay.faulted() >= 1);
    // The copy is kept: once storage is merely down, it serves again.
    relay.set(Mode::Fail(503));
    let r = get_label(&gw, "STALE7").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "STALE");
    assert_eq!(r.bytes().await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_stale_if_error_off_a_fault_is_a_502() {
    let data = pdf_bytes(5_000, 12);
    let (_s3, relay, _allow, gw) = gateway_behind_relay(&[("STALE6", &data)], "1s", "0s").await;
    cache_then_age(&gw, &["STALE6"], 1100).await;
    relay.set(Mode::Fail(500));
    let r = get_label(&gw, "STALE6").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_prints_its_stale_labels_while_storage_is_down() {
    let a = pdf_bytes(6_000, 14);
    let b = pdf_bytes(7_000, 15);
    let (_s3, relay, _allow, gw) =
        gateway_behind_relay(&[("STALE8", &a), ("STALE9", &b)], "1s", "1h").await;
    cache_then_age(&gw, &["STALE8", "STALE9"], 1100).await;
    relay.set(Mode::Reset);
    let r = support::client()
        .post(format!("http://{}/shipping-label/batch.zip", gw.addr()))
        .header("cookie", ANY_SESSION)
        .json(&serde_json::json!({"tracking": ["STALE8", "STALE9"]}))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-labels-count"], "2");
    let zip = r.bytes().await.unwrap();
    for data in [&a, &b] {
        assert!(
            zip.windows(data.len()).any(|w| w == &data[..]),
            "each label stored in the zip as it is"
        );
    }
    let served = support::metric(gw.internal_addr(), "label_gateway_stale_served_total").await;
    assert_eq!(served, 2, "counted once per label, when it is read");
}
