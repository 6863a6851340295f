//! The carrier fetch (`POST /internal/labels/{t}/fetch`) cannot be turned against the
//! gateway's own network: a listener on loopback sees no connection for any spelling of an
//! internal address, given directly or reached through a redirect from an allowed carrier.
//! The allowed stand-in carriers live on loopback too, reachable only through the
//! test-only `[internal] fetch_allow_private` (exact `ip:port` pairs).

use crate::support::{self, pdf_bytes, standins::Carrier, standins::Trap, Responder, S3Server};

const TOKEN: &str = "ssrf-token-123";

async fn gateway(
    s3: &S3Server,
    check: &Responder,
    allowed: &[std::net::SocketAddr],
    extra: &[(&str, &str)],
) -> label_gateway::server::Running {
    let (k, v) = support::allow_private(allowed);
    let mut env = vec![
        ("LABEL_GATEWAY_INTERNAL__TOKEN", TOKEN),
        ("LABEL_GATEWAY_INTERNAL__FETCH_ALLOW_HTTP", "true"),
        ("LABEL_GATEWAY_REGENERATE__URL", ""),
        (k, v.as_str()),
    ];
    env.extend_from_slice(extra);
    support::start_gateway(support::s3_config(s3, &check.url(), &env)).await
}

async fn fetch(gw: &label_gateway::server::Running, tracking: &str, url: &str) -> (u16, String) {
    let r = support::client()
        .post(format!(
            "http://{}/internal/labels/{tracking}/fetch",
            gw.internal_addr()
        ))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "url": url }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Every way of writing "this machine" that a URL parser, a resolver or an IPv6 stack
/// accepts, aimed at the trap's port.
fn internal_spellings(port: u16) -> Vec<String> {
    [
        "127.0.0.1",
        "127.1",
        "0x7f.1",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "017700000001",
        "127.000.000.001",
        "localhost",
        "localhost.",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "0.0.0.0",
        "[::]",
    ]
    .iter()
    .map(|h| format!("http://{h}:{port}/label.pdf"))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_an_internal_address_is_ever_connected() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let trap = Trap::start().await;
    let gw = gateway(&s3, &check, &[], &[]).await;
    let mut answers = Vec::new();
    for url in internal_spellings(trap.addr.port()) {
        let (status, body) = fetch(&gw, "SSRF1", &url).await;
        assert!(status == 400 || status == 502, "{url}: {status} {body}");
        answers.push((status, body));
    }
    for url in [
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://10.0.0.1:{}/x", trap.addr.port()),
        format!("http://192.168.0.1:{}/x", trap.addr.port()),
    ] {
        let (status, body) = fetch(&gw, "SSRF1", &url).await;
        assert_eq!(status, 400, "{url}: {body}");
    }
    assert_eq!(trap.connections(), 0, "the gateway connected to loopback");
    assert!(s3.stored("labels/SSRF1.pdf").is_none());
    // Refused literals and names that resolve only to internal addresses say the same
    // thing whatever listens there: nothing to scan with.
    let literal = &answers[0].1;
    assert!(
        literal.contains("not an allowed carrier address"),
        "{literal}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_from_an_allowed_carrier_to_an_internal_address_is_not_followed() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let trap = Trap::start().await;
    let mut redirectors = Vec::new();
    for url in internal_spellings(trap.addr.port()) {
        redirectors.push(Carrier::redirecting(&url).await);
    }
    let allowed: Vec<_> = redirectors.iter().map(|c| c.addr).collect();
    let gw = gateway(&s3, &check, &allowed, &[]).await;
    for (i, carrier) in redirectors.iter().enumerate() {
        let (status, body) = fetch(&gw, "SSRF2", &carrier.url("/label.pdf")).await;
        assert_eq!(status, 502, "redirect {i}: {body}");
        assert!(body.contains("could not be fetched"), "{body}");
        assert_eq!(carrier.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
    assert_eq!(trap.connections(), 0, "a redirect reached loopback");
    assert!(s3.stored("labels/SSRF2.pdf").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_between_allowed_carriers_are_followed_up_to_the_limit() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let data = pdf_bytes(2_000, 77);
    let end = Carrier::start(data.clone(), std::time::Duration::ZERO).await;
    let hop = Carrier::redirecting(&end.url("/label.pdf")).await;
    let gw = gateway(
        &s3,
        &check,
        &[end.addr, hop.addr],
        &[("LABEL_GATEWAY_INTERNAL__FETCH_MAX_REDIRECTS", "1")],
    )
    .await;
    let (status, body) = fetch(&gw, "SSRF3", &hop.url("/label.pdf")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(s3.stored("labels/SSRF3.pdf").unwrap(), data);

    let gw = gateway(
        &s3,
        &check,
        &[end.addr, hop.addr],
        &[("LABEL_GATEWAY_INTERNAL__FETCH_MAX_REDIRECTS", "0")],
    )
    .await;
    let (status, body) = fetch(&gw, "SSRF4", &hop.url("/label.pdf")).await;
    assert_eq!(status, 502, "{body}");
    assert!(s3.stored("labels/SSRF4.pdf").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_an_allow_list_only_the_listed_hosts_are_fetched() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let carrier = Carrier::start(pdf_bytes(1_000, 78), std::time::Duration::ZERO).await;
    let gw = gateway(
        &s3,
        &check,
        &[carrier.addr],
        &[(
            "LABEL_GATEWAY_INTERNAL__FETCH_ALLOW_HOSTS",
            r#"["labels.carrier.test", "*.ups.test"]"#,
        )],
    )
    .await;
    let (status, body) = fetch(&gw, "SSRF5", &carrier.url("/label.pdf")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(carrier.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}
