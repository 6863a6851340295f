//! `/internal/labels/...`: the app hands labels to the gateway (PUT of the bytes, or a
//! carrier URL to fetch), stored in the real S3 server; plus the shipped Python client
//! driving a running gateway.

use std::time::Duration;

use crate::support::{
    self, get_label, pdf_bytes, standins::Carrier, Responder, S3Server, ANY_SESSION,
};

const TOKEN: &str = "ingest-token-123";

async fn setup(extra: &[(&str, &str)]) -> (S3Server, Responder, label_gateway::server::Running) {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let mut env = vec![
        ("LABEL_GATEWAY_INTERNAL__TOKEN", TOKEN),
        ("LABEL_GATEWAY_INTERNAL__MAX_UPLOAD_BYTES", "1MiB"),
        ("LABEL_GATEWAY_REGENERATE__URL", ""),
    ];
    env.extend_from_slice(extra);
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), &env)).await;
    (s3, check, gw)
}

fn put_url(gw: &label_gateway::server::Running, tracking: &str) -> String {
    format!("http://{}/internal/labels/{tracking}", gw.internal_addr())
}

#[tokio::test(flavor = "multi_thread")]
async fn put_stores_a_label_that_the_gateway_then_serves() {
    let (s3, _check, gw) = setup(&[]).await;
    let data = pdf_bytes(60_000, 41);
    let r = support::client()
        .put(put_url(&gw, "ING1"))
        .bearer_auth(TOKEN)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["key"], "labels/ING1.pdf");
    assert_eq!(json["size"], 60_000);
    assert!(json["etag"].is_string());
    assert_eq!(s3.stored("labels/ING1.pdf").unwrap(), data);
    let r = get_label(&gw, "ING1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.bytes().await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn put_refuses_existing_non_pdf_oversized_and_unauthenticated() {
    let (s3, _check, gw) = setup(&[]).await;
    let c = support::client();
    let first = pdf_bytes(1000, 42);
    assert_eq!(
        c.put(put_url(&gw, "ING2"))
            .bearer_auth(TOKEN)
            .body(first.clone())
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    let r = c
        .put(put_url(&gw, "ING2"))
        .bearer_auth(TOKEN)
        .body(pdf_bytes(1000, 43))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("overwrite"));
    assert_eq!(s3.stored("labels/ING2.pdf").unwrap(), first, "nothing lost");

    let r = c
        .put(put_url(&gw, "ING3"))
        .bearer_auth(TOKEN)
        .body("<html>not a pdf</html>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = c
        .put(put_url(&gw, "ING4"))
        .bearer_auth(TOKEN)
        .body(pdf_bytes(2 * 1024 * 1024, 44))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = c
        .put(put_url(&gw, "ING5"))
        .body(pdf_bytes(100, 45))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .put(put_url(&gw, "ING5"))
        .bearer_auth("nope")
        .body(pdf_bytes(100, 45))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for t in ["ING3", "ING4", "ING5"] {
        assert!(s3.stored(&format!("labels/{t}.pdf")).is_none(), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn put_with_overwrite_replaces_and_evicts_the_cached_copy() {
    let (s3, _check, gw) = setup(&[]).await;
    let c = support::client();
    let (v1, v2) = (pdf_bytes(2000, 46), pdf_bytes(2100, 47));
    c.put(put_url(&gw, "ING6"))
        .bearer_auth(TOKEN)
        .body(v1.clone())
        .send()
        .await
        .unwrap();
    let get = || {
        get_label(&gw, "ING6")
            .cookie(ANY_SESSION)
            .with_client(&c)
            .send()
    };
    assert_eq!(get().await.bytes().await.unwrap(), v1);
    assert_eq!(get().await.headers()["x-cache"], "HIT");
    let r = c
        .put(format!("{}?overwrite=true", put_url(&gw, "ING6")))
        .bearer_auth(TOKEN)
        .body(v2.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(s3.stored("labels/ING6.pdf").unwrap(), v2);
    assert_eq!(get().await.bytes().await.unwrap(), v2);
}

#[tokio::test(flavor = "multi_thread")]
async fn put_without_content_length_is_buffered_and_stored() {
    let (s3, _check, gw) = setup(&[]).await;
    let data = pdf_bytes(100_000, 48);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(7000).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = support::client()
        .put(put_url(&gw, "ING7"))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(s3.stored("labels/ING7.pdf").unwrap(), data);
}

/// The refusal arrives while the client is still sending megabytes: it must read the
/// status, not a connection reset, whatever the body's framing.
#[tokio::test(flavor = "multi_thread")]
async fn refused_large_uploads_get_their_status_not_a_reset() {
    let (s3, _check, gw) = setup(&[]).await;
    let c = support::client();
    let big = pdf_bytes(8 * 1024 * 1024, 50);
    // Under the 1 MiB limit, so the content is what gets it refused.
    let mut not_pdf = pdf_bytes(1000 * 1024, 51);
    not_pdf[..5].copy_from_slice(b"<html");
    for round in 0..3 {
        let r = c
            .put(put_url(&gw, "BIG1"))
            .bearer_auth(TOKEN)
            .body(big.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("declared too large, round {round}: {e}"));
        assert_eq!(r.status(), 413);
        let r = c
            .put(put_url(&gw, "BIG2"))
            .bearer_auth(TOKEN)
            .body(not_pdf.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("not a PDF, round {round}: {e}"));
        assert_eq!(r.status(), 415);
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
        let r = c
            .put(put_url(&gw, "BIG3"))
            .bearer_auth(TOKEN)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .unwrap_or_else(|e| panic!("chunked too large, round {round}: {e}"));
        assert_eq!(r.status(), 413);
    }
    for key in ["labels/BIG1.pdf", "labels/BIG2.pdf", "labels/BIG3.pdf"] {
        assert!(
            s3.stored(key).is_none(),
            "{key} was refused, nothing stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_downloads_a_carrier_label_and_stores_it() {
    let data = pdf_bytes(45_000, 49);
    let carrier = Carrier::start(data.clone(), Duration::ZERO).await;
    let not_pdf = Carrier::start(b"<html>login</html>".to_vec(), Duration::ZERO).await;
    let (k, v) = support::allow_private(&[carrier.addr, not_pdf.addr]);
    let (s3, _check, gw) = setup(&[
        ("LABEL_GATEWAY_INTERNAL__FETCH_ALLOW_HTTP", "true"),
        (k, &v),
    ])
    .await;
    let r = support::client()
        .post(format!("{}/fetch", put_url(&gw, "FET1")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "url": carrier.url("/labels/FET1.pdf") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(s3.stored("labels/FET1.pdf").unwrap(), data);

    let r = support::client()
        .post(format!("{}/fetch", put_url(&gw, "FET2")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "url": not_pdf.url("/x") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let json: serde_json::Value = r.json().await.unwrap();
    assert!(
        json["error"].as_str().unwrap().contains("not a PDF"),
        "{json}"
    );
    assert!(s3.stored("labels/FET2.pdf").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_refuses_plain_http_unless_allowed() {
    let (_s3, _check, gw) = setup(&[]).await;
    let r = support::client()
        .post(format!("{}/fetch", put_url(&gw, "FET3")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "url": "http://127.0.0.1:9/label.pdf" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let json: serde_json::Value = r.json().await.unwrap();
    assert!(json["error"].as_str().unwrap().contains("https"), "{json}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_that_times_out_is_504_and_stores_nothing() {
    let slow = Carrier::start(pdf_bytes(1000, 50), Duration::from_secs(5)).await;
    let (k, v) = support::allow_private(&[slow.addr]);
    let (s3, _check, gw) = setup(&[
        ("LABEL_GATEWAY_INTERNAL__FETCH_ALLOW_HTTP", "true"),
        ("LABEL_GATEWAY_INTERNAL__FETCH_TIMEOUT", "500ms"),
        (k, &v),
    ])
    .await;
    let r = support::client()
        .post(format!("{}/fetch", put_url(&gw, "FET4")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "url": slow.url("/slow.pdf") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let json: serde_json::Value = r.json().await.unwrap();
    assert!(
        json["error"].as_str().unwrap().contains("carrier"),
        "{json}"
    );
    assert!(s3.stored("labels/FET4.pdf").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_drives_the_running_gateway() {
    let carrier = Carrier::start(pdf_bytes(3000, 51), Duration::ZERO).await;
    let (k, v) = support::allow_private(&[carrier.addr]);
    let (s3, _check, gw) = setup(&[
        ("LABEL_GATEWAY_INTERNAL__FETCH_ALLOW_HTTP", "true"),
        (k, &v),
    ])
    .await;
    let script = r#"
import os, sys
from label_gateway_django.client import LabelGatewayError, fetch_label, purge_label, upload_label
kw = dict(base_url=os.environ["GW"], token=os.environ["TOKEN"])
data = b"%PDF-1.4\n" + b"x" * 5000
r = upload_label("PYC1", data, **kw)
assert r["key"] == "labels/PYC1.pdf" and r["size"] == len(data), r
try:
    upload_label("PYC1", data, **kw)
    sys.exit("expected 409")
except LabelGatewayError as e:
    assert e.status == 409, e
r = upload_label("PYC1", data + b"y", overwrite=True, **kw)
assert r["size"] == len(data) + 1, r
r = fetch_label("PYC2", os.environ["CARRIER"], **kw)
assert r["key"] == "labels/PYC2.pdf", r
purge_label("PYC1", **kw)
try:
    upload_label("PYC3", data, base_url=os.environ["GW"], token="bogus-token-zzz")
    sys.exit("expected 401")
except LabelGatewayError as e:
    assert e.status == 401 and "bogus-token-zzz" not in str(e), e
print("ok")
"#;
    let gw_url = format!("http://{}", gw.internal_addr());
    let carrier_url = carrier.url("/PYC2.pdf");
    let out = tokio::process::Command::new(support::django::python())
        .args(["-c", script])
        .env("GW", &gw_url)
        .env("TOKEN", TOKEN)
        .env("CARRIER", &carrier_url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s3.stored("labels/PYC1.pdf").unwrap().len(), 5010);
    assert_eq!(s3.stored("labels/PYC2.pdf").unwrap().len(), 3000);
}
