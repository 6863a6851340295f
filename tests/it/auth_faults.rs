//! Session-check faults the real Django app will not produce on demand: an app slower
//! than the gateway's timeout, and one that flaps between allow, deny and failure under
//! concurrent load. Each test pins what the client sees, and that no label leaks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::standins::FlappingAuth;
use crate::support::{self, get_label, pdf_bytes, Responder, S3Server, ANY_SESSION, HANG, SLACK};

#[tokio::test(flavor = "multi_thread")]
async fn auth_app_slower_than_its_timeout_is_503_within_the_timeout() {
    let s3 = S3Server::start().await;
    s3.put_label("AUTHSLOW", &pdf_bytes(1000, 67)).await;
    let slow = Responder::start(204, Duration::from_secs(20)).await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &slow.url(),
        &[("LABEL_GATEWAY_AUTH__TIMEOUT", "300ms")],
    ))
    .await;
    let started = Instant::now();
    let r = get_label(&gw, "AUTHSLOW")
        .cookie(ANY_SESSION)
        .timeout(HANG)
        .send()
        .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_millis(300) + SLACK,
        "{:?}",
        started.elapsed()
    );
    assert!(!r.bytes().await.unwrap().starts_with(b"%PDF"));
    assert_eq!(s3.gets(), 0, "no storage request without an allow verdict");
}

/// Every response is held to the verdict the app gave that very request (matched by
/// `X-Request-Id`): 204 → 200 with the exact bytes, 500 → 503 without a PDF byte; and
/// sessions the app never allowed never see a byte, cached verdicts and coalesced
/// checks included.
#[tokio::test(flavor = "multi_thread")]
async fn flapping_auth_app_under_concurrent_load_never_leaks_a_label() {
    let s3 = S3Server::start().await;
    let data = pdf_bytes(20_000, 68);
    s3.put_label("FLAP1", &data).await;
    let app = FlappingAuth::start(0x5eed).await;
    let gw = support::start_gateway(support::s3_config(&s3, &app.url(), &[])).await;
    let client = support::client();
    let data = Arc::new(data);

    let outcomes = futures_util::future::join_all((0..240).map(|i| {
        // Three kinds of session, interleaved: a fresh one per request (its verdict is
        // exactly the app's answer to this request), a few shared ones the app may allow,
        // and a few it only ever denies or fails.
        let (kind, cookie) = match i % 3 {
            0 => ("fresh", format!("sessionid=fresh-{i}")),
            1 => ("shared", format!("sessionid=shared-{}", i % 4)),
            _ => ("deny", format!("sessionid=deny-{}", i % 4)),
        };
        let id = format!("flap-{i}");
        let request = get_label(&gw, "FLAP1")
            .cookie(&cookie)
            .header("x-request-id", &id)
            .with_client(&client)
            .timeout(HANG);
        async move {
            let r = request.send().await;
            let status = r.status().as_u16();
            let body = r.bytes().await.expect("body");
            (kind, id, status, body)
        }
    }))
    .await;

    let mut served = 0;
    let mut unavailable = 0;
    for (kind, id, status, body) in outcomes {
        let pdf = body.windows(5).any(|w| w == b"%PDF-");
        match (kind, status) {
            (_, 200) => {
                assert_ne!(
                    kind, "deny",
                    "{id}: a session the app never allowed got the label"
                );
                assert_eq!(&body[..], &data[..], "{id}: exact bytes");
                served += 1;
            }
            (_, 503) | ("deny", 404) => {
                assert!(!pdf, "{id}: {status} carried PDF bytes");
                unavailable += usize::from(status == 503);
            }
            _ => panic!("{id} ({kind}): unexpected status {status}"),
        }
        if kind == "fresh" {
            let verdict = app.verdict(&id).expect("a fresh session is always checked");
            let expected = if verdict == 204 { 200 } else { 503 };
            assert_eq!(status, expected, "{id}: the app said {verdict}");
        }
    }
    assert!(served > 0 && unavailable > 0, "the app really flapped");
}

/// A session check already in flight when `/internal/sessions/revoke` runs: its allowing
/// verdict answers that request, but is never cached after the revoke; the next request
/// with the cookie asks the app again.
#[tokio::test(flavor = "multi_thread")]
async fn a_check_in_flight_during_a_revoke_is_never_cached_after_it() {
    let s3 = S3Server::start().await;
    let data = pdf_bytes(1000, 68);
    s3.put_label("AUTHREVOKE", &data).await;
    let slow = Responder::start(204, Duration::from_millis(600)).await;
    let gw = Arc::new(
        support::start_gateway(support::s3_config(
            &s3,
            &slow.url(),
            &[("LABEL_GATEWAY_INTERNAL__TOKEN", "tok-25")],
        ))
        .await,
    );
    let first = {
        let gw = gw.clone();
        tokio::spawn(async move {
            get_label(&gw, "AUTHREVOKE")
                .cookie(ANY_SESSION)
                .timeout(HANG)
                .send()
                .await
                .status()
        })
    };
    // Revoke once the check is in flight (the app counts a call as it arrives).
    while slow.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let session_key = ANY_SESSION.split_once('=').unwrap().1;
    let revoked = support::client()
        .post(format!(
            "http://{}/internal/sessions/revoke",
            gw.internal_addr()
        ))
        .bearer_auth("tok-25")
        .header("content-type", "application/json")
        .body(format!(r#"{{"session_key":"{session_key}"}}"#))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    assert_eq!(
        first.await.unwrap(),
        200,
        "the check in flight still answers"
    );
    let again = get_label(&gw, "AUTHREVOKE")
        .cookie(ANY_SESSION)
        .timeout(HANG)
        .send()
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        slow.hits(),
        2,
        "asked again, not served the verdict from before"
    );
}
