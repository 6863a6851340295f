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
