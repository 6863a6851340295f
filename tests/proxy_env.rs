//! The carrier fetch never uses a proxy from the process environment (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`): with them pointing at a trap, a fetch still goes straight
//! to the carrier. A test binary of its own, because it sets process-wide variables that
//! would leak into other tests' clients and child processes.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::{pdf_bytes, standins::Carrier, standins::Trap, Responder, S3Server};

const TOKEN: &str = "proxy-token-123";

#[tokio::test(flavor = "multi_thread")]
async fn the_environment_proxy_is_never_used() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let trap = Trap::start().await;
    let data = pdf_bytes(1_500, 79);
    let carrier = Carrier::start(data.clone(), Duration::ZERO).await;
    let proxy = format!("http://{}", trap.addr);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        std::env::set_var(var, &proxy);
    }
    let (k, v) = support::allow_private(&[carrier.addr]);
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[
            ("LABEL_GATEWAY_INTERNAL__TOKEN", TOKEN),
            ("LABEL_GATEWAY_INTERNAL__FETCH_ALLOW_HTTP", "true"),
            (k, v.as_str()),
        ],
    ))
    .await;
    let r = support::client()
        .post(format!(
            "http://{}/internal/labels/PROXY1/fetch",
            gw.internal_addr()
        ))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "url": carrier.url("/label.pdf") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(s3.stored("labels/PROXY1.pdf").unwrap(), data);
    assert_eq!(trap.connections(), 0, "the environment's proxy was used");
}
