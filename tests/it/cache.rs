//! The hot-label cache against the real S3 server: hits, coalesced misses, admission and
//! size limits, semantics on hits, auth before cache, purge. A scripted origin stand-in for
//! the body cut short mid-way.

use std::time::Duration;

use crate::support::standins::{Act, ScriptedOrigin};
use crate::support::{
    self, get_label, head_label, pdf_bytes, Django, Responder, S3Server, ANY_SESSION,
};

#[tokio::test(flavor = "multi_thread")]
async fn second_get_is_a_hit_with_identical_bytes_and_headers() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let data = pdf_bytes(50 * 1024, 31);
    s3.put_label("HOT1", &data).await;
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), &[])).await;

    let first = get_label(&gw, "HOT1").cookie(ANY_SESSION).send().await;
    assert_eq!(first.headers()["x-cache"], "MISS");
    let h1 = first.headers().clone();
    assert_eq!(first.bytes().await.unwrap(), data);
    let second = get_label(&gw, "HOT1").cookie(ANY_SESSION).send().await;
    assert_eq!(second.headers()["x-cache"], "HIT");
    let h2 = second.headers().clone();
    assert_eq!(second.bytes().await.unwrap(), data);
    for name in [
        "content-type",
        "content-length",
        "etag",
        "last-modified",
        "cache-control",
        "content-disposition",
        "accept-ranges",
        "x-content-type-options",
    ] {
        assert_eq!(h1.get(name), h2.get(name), "{name}");
    }
    assert_eq!(s3.gets(), 1, "the S3 server saw one GET");
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_concurrent_gets_of_a_cold_label_make_one_origin_get() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let data = pdf_bytes(200 * 1024, 32);
    s3.put_label("COLD1", &data).await;
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), &[])).await;
    let client = support::client();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let request = get_label(&gw, "COLD1")
                .cookie(ANY_SESSION)
                .with_client(&client);
            tokio::spawn(async move {
                let r = request.send().await;
                (r.status().as_u16(), r.bytes().await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        assert!(body == data);
    }
    assert_eq!(s3.gets(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_reset_mid_body_errors_the_client_and_caches_nothing() {
    let cut = Act::Cut {
        total: 50_000,
        sent: 10_000,
        stall: None,
    };
    let origin = ScriptedOrigin::start(vec![], cut).await;
    let check = Responder::allow_all().await;
    let config = support::origin_config(
        &origin.endpoint(),
        &check.url(),
        &[("LABEL_GATEWAY_STORAGE__ATTEMPTS", "1")],
    );
    let gw = support::start_gateway(config).await;
    for attempt in 0..2 {
        let r = get_label(&gw, "BROKEN").cookie(ANY_SESSION).send().await;
        assert_eq!(r.status(), 200, "the head was already sent");
        assert_eq!(r.headers()["x-cache"], "MISS", "attempt {attempt}");
        assert!(
            r.bytes().await.is_err(),
            "a cut body must fail, not look complete"
        );
    }
    assert_eq!(origin.hits(), 2, "the broken body was not cached");
    // The gateway keeps serving.
    let r = support::client()
        .get(format!("http://{}/healthz", gw.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_above_the_object_limit_are_streamed_and_never_cached() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let data = pdf_bytes(300 * 1024, 33);
    s3.put_label("LARGE", &data).await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[("LABEL_GATEWAY_CACHE__MAX_OBJECT_BYTES", "256KiB")],
    ))
    .await;
    for _ in 0..3 {
        let r = get_label(&gw, "LARGE").cookie(ANY_SESSION).send().await;
        assert_eq!(r.headers()["x-cache"], "MISS");
        assert!(r.bytes().await.unwrap() == data);
    }
    assert_eq!(s3.gets(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn held_bytes_never_exceed_max_bytes() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    for i in 0..40u8 {
        s3.put_label(&format!("MANY{i}"), &pdf_bytes(64 * 1024, i))
            .await;
    }
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[
            ("LABEL_GATEWAY_CACHE__MAX_BYTES", "512KiB"),
            ("LABEL_GATEWAY_CACHE__MAX_OBJECT_BYTES", "128KiB"),
        ],
    ))
    .await;
    let cache = gw.gateway.cache.as_ref().unwrap();
    for i in 0..40u8 {
        let label = format!("MANY{i}");
        let r = get_label(&gw, &label).cookie(ANY_SESSION).send().await;
        assert_eq!(r.bytes().await.unwrap().len(), 64 * 1024);
        cache.settle().await;
        assert!(
            cache.bytes_held() <= 512 * 1024,
            "held {} after {i}",
            cache.bytes_held()
        );
    }
    assert!(cache.entries() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn range_and_conditional_requests_on_hits() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let data = pdf_bytes(10_000, 34);
    s3.put_label("HOTR", &data).await;
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), &[])).await;
    let get = |headers: &[(&str, &str)]| {
        get_label(&gw, "HOTR")
            .cookie(ANY_SESSION)
            .headers(headers)
            .send()
    };
    let warm = get(&[]).await;
    let etag = warm.headers()["etag"].to_str().unwrap().to_string();
    let lm = warm.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_string();
    warm.bytes().await.unwrap();
    // The label is kept before its last byte goes out: whoever read it finds it cached.
    assert!(support::is_cached(&gw, "HOTR").await);

    let r = get(&[("range", "bytes=100-199")]).await;
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["x-cache"].to_str().unwrap()
        ),
        (206, "HIT")
    );
    assert_eq!(r.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(r.bytes().await.unwrap(), &data[100..200]);

    let r = get(&[("range", "bytes=-10")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), &data[9_990..]);

    let r = get(&[("range", "bytes=10000-")]).await;
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10000");

    let r = get(&[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(r.status(), 200, "multi-range gets the whole label");
    assert_eq!(r.bytes().await.unwrap(), data);

    let r = get(&[("if-none-match", &etag)]).await;
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["x-cache"].to_str().unwrap()
        ),
        (304, "HIT")
    );
    let r = get(&[("if-modified-since", &lm)]).await;
    assert_eq!(r.status(), 304);
    let r = get(&[("if-match", "\"other\"")]).await;
    assert_eq!(r.status(), 412);

    let r = head_label(&gw, "HOTR").cookie(ANY_SESSION).send().await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.headers()["content-length"], "10000");
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(s3.gets(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hit_with_a_logged_out_session_is_refused() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    s3.put_label("PRIV1", &pdf_bytes(5000, 35)).await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &django.check_url(),
        &[("LABEL_GATEWAY_AUTH__ALLOW_TTL", "200ms")],
    ))
    .await;
    let cookie = format!("sessionid={}", django.session("frank"));
    let r = get_label(&gw, "PRIV1").cookie(&cookie).send().await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = get_label(&gw, "PRIV1").cookie(&cookie).send().await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    django.logout(&cookie).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = get_label(&gw, "PRIV1").cookie(&cookie).send().await;
    assert_eq!(r.status(), 404);
    assert!(!r.bytes().await.unwrap().starts_with(b"%PDF"));
    let r = get_label(&gw, "PRIV1").send().await;
    assert_eq!(r.status(), 404, "no cookie, no cached bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_with_the_token_evicts_a_label_and_without_it_is_refused() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    s3.put_label("PURGE1", &pdf_bytes(3000, 36)).await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[("LABEL_GATEWAY_INTERNAL__TOKEN", "purge-token")],
    ))
    .await;
    let get = || get_label(&gw, "PURGE1").cookie(ANY_SESSION).send();
    get().await.bytes().await.unwrap();
    assert_eq!(get().await.headers()["x-cache"], "HIT");
    let url = format!("http://{}/internal/cache/PURGE1", gw.internal_addr());
    let r = support::client().delete(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = support::client()
        .delete(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(get().await.headers()["x-cache"], "HIT");
    let r = support::client()
        .delete(&url)
        .bearer_auth("purge-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get().await.headers()["x-cache"], "MISS");
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_cache_always_streams_from_storage() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    s3.put_label("NOCACHE", &pdf_bytes(3000, 37)).await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[("LABEL_GATEWAY_CACHE__ENABLED", "false")],
    ))
    .await;
    for _ in 0..3 {
        let r = get_label(&gw, "NOCACHE").cookie(ANY_SESSION).send().await;
        assert_eq!(r.headers()["x-cache"], "MISS");
        r.bytes().await.unwrap();
    }
    assert_eq!(s3.gets(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_expose_cache_counters() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    s3.put_label("MET1", &pdf_bytes(3000, 38)).await;
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), &[])).await;
    let get = || get_label(&gw, "MET1").cookie(ANY_SESSION).send();
    get().await.bytes().await.unwrap();
    get().await.bytes().await.unwrap();
    let text = support::metrics(gw.internal_addr()).await;
    assert!(text.contains("label_gateway_cache_hits_total 1"), "{text}");
    assert!(
        text.contains("label_gateway_cache_inserts_total 1"),
        "{text}"
    );
    // One 3,000-byte label plus the per-entry overhead the cache weighs it with.
    let held = 3000 + label_gateway::cache::ENTRY_OVERHEAD_BYTES;
    assert!(
        text.contains(&format!("label_gateway_cache_bytes {held}\n")),
        "{text}"
    );
}
