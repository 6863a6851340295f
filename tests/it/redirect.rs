//! Redirect mode against the real S3 server: after the session check, a 307 to a
//! presigned URL that a plain client (no cookie, no credentials) follows to the exact
//! label, with the headers the gateway would have sent; the URL expires; denied sessions
//! and missing labels never get a `Location`.

use std::time::Duration;

use crate::support::{self, get_label, head_label, pdf_bytes, Responder, S3Server, ANY_SESSION};

async fn setup(
    check: &Responder,
    extra: &[(&str, &str)],
) -> (S3Server, label_gateway::server::Running) {
    let s3 = S3Server::start().await;
    let mut env = vec![("LABEL_GATEWAY_REDIRECT__ENABLED", "true")];
    env.extend_from_slice(extra);
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), &env)).await;
    (s3, gw)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_label_redirects_to_a_presigned_url_that_serves_it_with_the_gateways_headers() {
    let check = Responder::allow_all().await;
    let (s3, gw) = setup(&check, &[("LABEL_GATEWAY_CACHE__ENABLED", "false")]).await;
    let data = pdf_bytes(60_000, 101);
    s3.put_object("labels/RED1.pdf", &data, &[("content-type", "text/html")])
        .await;
    let r = get_label(&gw, "RED1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    assert_eq!(r.headers()["content-length"], "0");
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(r.bytes().await.unwrap().is_empty());

    // A plain client: no cookie, no credentials, straight to the S3 server.
    let followed = support::client().get(&location).send().await.unwrap();
    assert_eq!(followed.status(), 200);
    let h = followed.headers().clone();
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["content-disposition"], "inline; filename=\"RED1.pdf\"");
    assert_eq!(h["cache-control"], "private, no-cache");
    assert_eq!(followed.bytes().await.unwrap(), data);

    // HEAD gets a URL signed for HEAD.
    let r = head_label(&gw, "RED1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let followed = support::client().head(&location).send().await.unwrap();
    assert_eq!(followed.status(), 200);
    assert_eq!(followed.headers()["content-length"], "60000");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_presigned_url_stops_working_after_it_expires() {
    let check = Responder::allow_all().await;
    let (s3, gw) = setup(&check, &[("LABEL_GATEWAY_REDIRECT__EXPIRES", "1s")]).await;
    s3.put_label("RED2", &pdf_bytes(2_000, 102)).await;
    let r = get_label(&gw, "RED2").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    // SigV4 counts whole seconds from X-Amz-Date: wait well past the one second.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let late = support::client().get(&location).send().await.unwrap();
    assert_eq!(
        late.status(),
        403,
        "an expired URL is refused by the server"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_and_missing_labels_never_get_a_location() {
    let deny = Responder::start(403, Duration::ZERO).await;
    let (s3, gw) = setup(&deny, &[]).await;
    s3.put_label("RED3", &pdf_bytes(2_000, 103)).await;
    let r = get_label(&gw, "RED3")
        .cookie("sessionid=refused")
        .send()
        .await;
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("location").is_none());
    let r = get_label(&gw, "RED3").send().await;
    assert_eq!(r.status(), 404, "no cookie");
    assert!(r.headers().get("location").is_none());

    let allow = Responder::allow_all().await;
    let (_s3, gw) = setup(&allow, &[("LABEL_GATEWAY_REGENERATE__URL", "")]).await;
    let r = get_label(&gw, "NOTHERE1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("location").is_none());
    assert!(
        r.text().await.unwrap().contains("NOTHERE1"),
        "the missing-label page"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_label_is_regenerated_in_redirect_mode_too() {
    let django = support::Django::start();
    let s3 = S3Server::start().await;
    let regen = django.url("/internal/label-regenerate/{tracking}/");
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &django.check_url(),
        &[
            ("LABEL_GATEWAY_REDIRECT__ENABLED", "true"),
            ("LABEL_GATEWAY_REGENERATE__URL", regen.as_str()),
            ("LABEL_GATEWAY_REGENERATE__TOKEN", "test-regenerate-token"),
        ],
    ))
    .await;
    let cookie = format!("sessionid={}", django.session("redirector"));
    let r = get_label(&gw, "REGEN7").cookie(&cookie).send().await;
    assert_eq!(r.status(), 200, "the regenerated label, from memory");
    assert!(r.bytes().await.unwrap().starts_with(b"%PDF-"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_label_is_served_from_memory_even_in_redirect_mode() {
    let check = Responder::allow_all().await;
    let (s3, gw) = setup(&check, &[]).await;
    let data = pdf_bytes(3_000, 104);
    s3.put_label("RED4", &data).await;
    // Redirect mode never fills the cache itself; an ingest (or a warm-up) does.
    let cache = gw.gateway.cache.as_ref().unwrap();
    cache
        .insert(
            cache.key(label_gateway::tracking::Tracking::parse("RED4").unwrap()),
            label_gateway::cache::CachedLabel::new(bytes::Bytes::from(data.clone()), None, None),
        )
        .await;
    let r = get_label(&gw, "RED4").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.bytes().await.unwrap(), data);
}
