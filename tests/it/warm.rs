//! `PUT /internal/cache/{tracking}`: warming labels into the hot cache before a print
//! wave, against the real S3 server (and the real Django app, to show that warm-up never
//! regenerates), plus the shipped Python client's `warm_labels` driving it.

use crate::support::{self, get_label, pdf_bytes, Django, S3Server};

const TOKEN: &str = "warm-token-123";

fn cache_url(gw: &label_gateway::server::Running, tracking: &str) -> String {
    format!("http://{}/internal/cache/{tracking}", gw.internal_addr())
}

async fn call(
    gw: &label_gateway::server::Running,
    method: reqwest::Method,
    tracking: &str,
) -> reqwest::Response {
    support::client()
        .request(method, cache_url(gw, tracking))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answered")
}

#[tokio::test(flavor = "multi_thread")]
async fn warming_loads_a_label_that_the_next_print_serves_from_memory() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let data = pdf_bytes(40_000, 1);
    s3.put_label("WARM1", &data).await;
    s3.put_label("BIG1", &pdf_bytes(100_000, 2)).await;
    let regen = django.url("/internal/label-regenerate/{tracking}/");
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &django.check_url(),
        &[
            ("LABEL_GATEWAY_INTERNAL__TOKEN", TOKEN),
            ("LABEL_GATEWAY_CACHE__MAX_OBJECT_BYTES", "64KiB"),
            ("LABEL_GATEWAY_REGENERATE__URL", regen.as_str()),
            ("LABEL_GATEWAY_REGENERATE__TOKEN", "test-regenerate-token"),
        ],
    ))
    .await;
    let cookie = format!("sessionid={}", django.session("wanda"));

    let r = call(&gw, reqwest::Method::PUT, "WARM1").await;
    assert_eq!(r.status(), 204);
    assert_eq!(s3.gets(), 1);
    let r = call(&gw, reqwest::Method::PUT, "WARM1").await;
    assert_eq!(r.status(), 204, "already held");
    assert_eq!(s3.gets(), 1, "no second fetch");
    let r = get_label(&gw, "WARM1").cookie(&cookie).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.bytes().await.unwrap(), data);

    // Missing: 404, and no regeneration (REGEN* would be made by the app).
    django.reset_stats().await;
    let r = call(&gw, reqwest::Method::PUT, "REGEN42").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(django.regenerate_calls().await, 0);

    let r = call(&gw, reqwest::Method::PUT, "BIG1").await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("max_object_bytes"));

    // The same path still purges; other methods are refused naming both.
    let r = call(&gw, reqwest::Method::DELETE, "WARM1").await;
    assert_eq!(r.status(), 204);
    let r = get_label(&gw, "WARM1").cookie(&cookie).send().await;
    assert_eq!(r.headers()["x-cache"], "MISS");
    let r = call(&gw, reqwest::Method::GET, "WARM1").await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "DELETE, PUT");
    let r = support::client()
        .put(cache_url(&gw, "WARM1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the bearer token is required");
    let r = call(&gw, reqwest::Method::PUT, "bad.one").await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn warming_with_the_cache_off_is_409() {
    let s3 = S3Server::start().await;
    s3.put_label("OFF1", &pdf_bytes(1_000, 3)).await;
    let check = support::Responder::allow_all().await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[
            ("LABEL_GATEWAY_INTERNAL__TOKEN", TOKEN),
            ("LABEL_GATEWAY_CACHE__ENABLED", "false"),
        ],
    ))
    .await;
    let r = call(&gw, reqwest::Method::PUT, "OFF1").await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("cache"));
    assert_eq!(s3.gets(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_warms_a_wave_and_sorts_the_outcomes() {
    let s3 = S3Server::start().await;
    for (i, t) in ["PW1", "PW2", "PW3"].iter().enumerate() {
        s3.put_label(t, &pdf_bytes(5_000, i as u8)).await;
    }
    s3.put_label("PWBIG", &pdf_bytes(80_000, 9)).await;
    let check = support::Responder::allow_all().await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[
            ("LABEL_GATEWAY_INTERNAL__TOKEN", TOKEN),
            ("LABEL_GATEWAY_CACHE__MAX_OBJECT_BYTES", "64KiB"),
        ],
    ))
    .await;
    let script = r#"
import json, os
from label_gateway_django.client import warm_labels
r = warm_labels(["PW1", "NOPE1", "PW2", "PWBIG", "PW1", "bad/one", "PW3"], 2,
                base_url=os.environ["GW"], token=os.environ["TOKEN"])
print(json.dumps(r))
"#;
    let out = tokio::process::Command::new(support::django::python())
        .args(["-c", script])
        .env("GW", format!("http://{}", gw.internal_addr()))
        .env("TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r,
        serde_json::json!({
            "cached": ["PW1", "PW2", "PW3"],
            "missing": ["NOPE1"],
            "refused": ["PWBIG"],
            "failed": ["bad/one"],
        })
    );
    let r = get_label(&gw, "PW2")
        .cookie(support::ANY_SESSION)
        .send()
        .await;
    assert_eq!(r.headers()["x-cache"], "HIT");
}
