//! `[storage.fallback]`: label reads fail over to a second real S3 server (its own key
//! pair, the primary's key refused there) when the primary faults: a refused connection,
//! a 500, a reset, a stall, a region outage (the real server answering 503). The breaker
//! opens after the faults in a row, its state shows in `/metrics`, and it closes once the
//! primary answers again. Answers (404, 403) are not faults. Writes stay on the primary;
//! a regenerated label is served even when the primary cannot store it. The fallback's
//! credential files are read again on reload, and `doctor` checks the fallback too.

use std::time::{Duration, Instant};

use label_gateway::config::Config;

use crate::support::standins::{closed_port, Act, ScriptedOrigin};
use crate::support::{
    self, get_label, head_label, pdf_bytes, s3, Django, Responder, S3Server, ANY_SESSION,
};

pub(crate) const FB_ACCESS_KEY: &str = "AKIDFALLBACKBUCKET01";
pub(crate) const FB_SECRET_KEY: &str = "fallback-secret-key-never-logged-7f3a";

/// A real S3 server holding `labels`, then accepting only the fallback's key.
pub(crate) async fn fallback_server(labels: &[(&str, &[u8])]) -> S3Server {
    let s3 = S3Server::start().await;
    for (tracking, data) in labels {
        s3.put_label(tracking, data).await;
    }
    s3.accept_key(FB_ACCESS_KEY, FB_SECRET_KEY);
    s3.revoke_key(s3::ACCESS_KEY);
    s3
}

/// The TOML of a gateway on the S3 server `fallback` with `[storage.fallback]` naming it
/// too: [`env`] then points `[storage]` at the primary.
pub(crate) fn toml(fallback: &S3Server, check_url: &str) -> String {
    format!(
        "{}\n[storage.fallback]\nendpoint = \"{}\"\nregion = \"{}\"\nbucket = \"{}\"\n\
         after_failures = 2\nprobe_every = \"2s\"\n",
        support::s3_config_toml(fallback, check_url),
        fallback.endpoint(),
        s3::REGION,
        s3::BUCKET,
    )
}

/// The environment of a [`toml`] gateway whose primary is at `primary`: one attempt per
/// bucket, a 2 s first-byte timeout, the cache off (every read goes to storage), the
/// primary's credentials and, unless `fallback_keys` is false, the fallback's.
pub(crate) fn env(primary: &str, fallback_keys: bool) -> Vec<(&'static str, &str)> {
    let mut env = vec![
        ("SPACES_ENDPOINT_URL", primary),
        ("LABEL_GATEWAY_STORAGE__ATTEMPTS", "1"),
        ("LABEL_GATEWAY_STORAGE__FIRST_BYTE_TIMEOUT", "2s"),
        ("LABEL_GATEWAY_CACHE__ENABLED", "false"),
        ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
    ];
    if fallback_keys {
        env.extend([
            ("SPACES_FALLBACK_ACCESS_KEY_ID", FB_ACCESS_KEY),
            ("SPACES_FALLBACK_SECRET_ACCESS_KEY", FB_SECRET_KEY),
        ]);
    }
    env
}

pub(crate) fn config(
    primary: &str,
    fallback: &S3Server,
    check_url: &str,
    extra: &[(&str, &str)],
) -> Config {
    let mut env = env(primary, true);
    env.extend_from_slice(extra);
    support::config(&toml(fallback, check_url), &env)
}

/// Reads `tracking` and checks that the whole label came.
async fn read_whole(gw: &label_gateway::server::Running, tracking: &str, label: &[u8]) {
    let r = get_label(gw, tracking).cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), label);
}

/// The value of the metric line starting with `name ` (0 when absent).
async fn metric(gw: &label_gateway::server::Running, name: &str) -> u64 {
    let text = support::metrics(gw.internal_addr()).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_that_meets_a_primary_fault_is_served_whole_by_the_fallback() {
    let label = pdf_bytes(40_000, 71);
    let fallback = fallback_server(&[("FB1", &label)]).await;
    let check = Responder::allow_all().await;
    let dead = format!("http://{}", closed_port().await);
    let failing = ScriptedOrigin::start(vec![], Act::error(500, "InternalError")).await;
    let resetting = ScriptedOrigin::start(vec![], Act::Hangup).await;
    let stalled = ScriptedOrigin::start(
        vec![],
        Act::Delayed {
            delay: Duration::from_secs(30),
            status: 200,
            body: b"%PDF-never".to_vec(),
        },
    )
    .await;
    for (fault, primary) in [
        ("refused connection", dead),
        ("500", failing.endpoint()),
        ("reset", resetting.endpoint()),
        ("stall", stalled.endpoint()),
    ] {
        let gw = support::start_gateway(config(&primary, &fallback, &check.url(), &[])).await;
        let r = get_label(&gw, "FB1").cookie(ANY_SESSION).send().await;
        assert_eq!(r.status(), 200, "{fault}");
        assert_eq!(r.bytes().await.unwrap(), label, "{fault}");
        let r = get_label(&gw, "FB1")
            .cookie(ANY_SESSION)
            .header("range", "bytes=100-199")
            .send()
            .await;
        assert_eq!(r.status(), 206, "{fault}");
        assert_eq!(r.bytes().await.unwrap(), label[100..200], "{fault}");
        let r = head_label(&gw, "FB1").cookie(ANY_SESSION).send().await;
        assert_eq!(r.status(), 200, "{fault}");
        assert_eq!(r.headers()["content-length"], "40000", "{fault}");
        assert_eq!(
            metric(&gw, "label_gateway_storage_fallback_answers_total").await,
            3,
            "{fault}"
        );
    }
    assert!(failing.hits() >= 1 && resetting.hits() >= 1 && stalled.hits() >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_404_or_a_403_from_the_primary_is_an_answer_not_a_fault() {
    let label = pdf_bytes(5_000, 72);
    let fallback = fallback_server(&[("FB404", &label), ("FB403", &label)]).await;
    let primary = S3Server::start().await;
    let check = Responder::allow_all().await;
    let gw =
        support::start_gateway(config(&primary.endpoint(), &fallback, &check.url(), &[])).await;
    let r = get_label(&gw, "FB404").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 404);
    primary.revoke_key(s3::ACCESS_KEY);
    let r = get_label(&gw, "FB403").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 502);
    assert_eq!(
        metric(&gw, "label_gateway_storage_fallback_answers_total").await,
        0
    );
    assert_eq!(fallback.gets(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_breaker_opens_on_an_outage_shows_in_metrics_and_closes_when_the_primary_is_back() {
    let label = pdf_bytes(20_000, 73);
    let primary = S3Server::start().await;
    primary.put_label("BRK1", &label).await;
    let fallback = fallback_server(&[("BRK1", &label)]).await;
    let check = Responder::allow_all().await;
    let gw =
        support::start_gateway(config(&primary.endpoint(), &fallback, &check.url(), &[])).await;
    let read = || read_whole(&gw, "BRK1", &label);
    const OPEN: &str = "label_gateway_storage_breaker_open";

    read().await;
    assert_eq!((primary.gets(), fallback.gets()), (1, 0));
    assert_eq!(metric(&gw, OPEN).await, 0);

    // The region goes down: each read meets the fault, then the fallback serves it.
    primary.set_down(true);
    read().await;
    assert_eq!(metric(&gw, OPEN).await, 0, "one fault does not open it");
    read().await;
    assert_eq!(metric(&gw, OPEN).await, 1, "two in a row do");
    assert_eq!(primary.down_hits(), 2);
    // Open: the fallback first; the primary is not asked again before the probe is due.
    read().await;
    assert_eq!(primary.down_hits(), 2);
    assert_eq!(fallback.gets(), 3);

    // The region is back: a probe finds it, the breaker closes, reads go to it first.
    primary.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&gw, OPEN).await == 1 {
        assert!(Instant::now() < deadline, "the breaker never closed");
        read().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (from_primary, from_fallback) = (primary.gets(), fallback.gets());
    read().await;
    read().await;
    assert_eq!(primary.gets(), from_primary + 2);
    assert_eq!(fallback.gets(), from_fallback);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_go_to_the_primary_only_it_says_a_label_is_missing_and_a_regenerated_label_is_served_when_it_cannot_be_stored(
) {
    let django = Django::start();
    let primary = S3Server::start().await;
    let fallback = fallback_server(&[]).await;
    let regenerate = django.url("/internal/label-regenerate/{tracking}/");
    let app = [
        ("LABEL_GATEWAY_INTERNAL__TOKEN", "ingest-token"),
        ("LABEL_GATEWAY_REGENERATE__URL", regenerate.as_str()),
        ("LABEL_GATEWAY_REGENERATE__TOKEN", "test-regenerate-token"),
    ];
    let gw = support::start_gateway(config(
        &primary.endpoint(),
        &fallback,
        &django.check_url(),
        &app,
    ))
    .await;
    let cookie = format!("sessionid={}", django.session("gina"));

    // Ingest: into the primary only.
    let data = pdf_bytes(9_000, 74);
    let r = support::client()
        .put(format!("http://{}/internal/labels/WR1", gw.internal_addr()))
        .bearer_auth("ingest-token")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(primary.stored("labels/WR1.pdf").unwrap(), data);
    assert_eq!(fallback.stored("labels/WR1.pdf"), None);

    // The primary is down and the fallback has no copy (not mirrored yet): that is no
    // proof the label is missing, so nothing is regenerated and the answer is a 502.
    django.reset_stats().await;
    primary.set_down(true);
    let r = get_label(&gw, "REGENFB0").cookie(&cookie).send().await;
    assert_eq!(r.status(), 502);
    assert_eq!(django.regenerate_calls().await, 0);

    // A primary that says the label is missing but cannot store (a stand-in: reads
    // answer, writes fail): the app regenerates it and the printer gets it all the same.
    let primary = ScriptedOrigin::start(
        vec![Act::error(404, "NoSuchKey")],
        Act::error(500, "InternalError"),
    )
    .await;
    let gw = support::start_gateway(config(
        &primary.endpoint(),
        &fallback,
        &django.check_url(),
        &app,
    ))
    .await;
    let r = get_label(&gw, "REGENFB1").cookie(&cookie).send().await;
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert!(body.starts_with(b"%PDF-"));
    assert!(body.windows(8).any(|w| w == b"REGENFB1"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while primary.hits() < 2 {
        assert!(Instant::now() < deadline, "the store-back was never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fallback.stored("labels/REGENFB1.pdf"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_reads_the_fallback_key_files_again() {
    let label = pdf_bytes(8_000, 75);
    let fallback = fallback_server(&[("ROTFB", &label)]).await;
    let check = Responder::allow_all().await;
    let dir = tempfile::tempdir().unwrap();
    let (id, secret) = (dir.path().join("fb-id"), dir.path().join("fb-secret"));
    std::fs::write(&id, FB_ACCESS_KEY).unwrap();
    std::fs::write(&secret, FB_SECRET_KEY).unwrap();
    let (id_path, secret_path) = (id.display().to_string(), secret.display().to_string());
    let dead = format!("http://{}", closed_port().await);
    let mut env = env(&dead, false);
    env.extend([
        ("SPACES_FALLBACK_ACCESS_KEY_ID_FILE", id_path.as_str()),
        (
            "SPACES_FALLBACK_SECRET_ACCESS_KEY_FILE",
            secret_path.as_str(),
        ),
    ]);
    let gw = support::start_gateway(support::config(&toml(&fallback, &check.url()), &env)).await;
    read_whole(&gw, "ROTFB", &label).await;

    const NEW_ID: &str = "AKIDFALLBACKROTATED2";
    const NEW_SECRET: &str = "rotated-fallback-secret-never-logged";
    fallback.accept_key(NEW_ID, NEW_SECRET);
    std::fs::write(&id, NEW_ID).unwrap();
    std::fs::write(&secret, NEW_SECRET).unwrap();
    let changed = gw.gateway.reload_secrets().unwrap();
    assert_eq!(
        changed,
        vec![
            "SPACES_FALLBACK_ACCESS_KEY_ID",
            "SPACES_FALLBACK_SECRET_ACCESS_KEY"
        ]
    );
    fallback.revoke_key(FB_ACCESS_KEY);
    // Signed with the new key: the old one is refused now.
    read_whole(&gw, "ROTFB", &label).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_the_fallback_as_it_checks_the_primary() {
    use label_gateway::cli::doctor::*;
    let primary = S3Server::start().await;
    let fallback = fallback_server(&[]).await;
    let check = Responder::start(403, Duration::ZERO).await;
    let doctor = |config| doctor(Ok(config), std::path::Path::new("config.toml"), true);

    let report = doctor(config(&primary.endpoint(), &fallback, &check.url(), &[])).await;
    let names: Vec<_> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names[..11],
        [
            CONFIGURATION,
            CREDENTIALS,
            ENDPOINT,
            STORAGE,
            CLOCK,
            ROUND_TRIP,
            FALLBACK_CREDENTIALS,
            FALLBACK_ENDPOINT,
            FALLBACK_STORAGE,
            FALLBACK_CLOCK,
            FALLBACK_ROUND_TRIP,
        ]
    );
    for c in &report.checks[..11] {
        assert_eq!(c.status, Status::Ok, "{c}");
    }
    let keys = report.check(FALLBACK_CREDENTIALS).unwrap().to_string();
    assert!(
        keys.contains("SPACES_FALLBACK_ACCESS_KEY_ID from the environment"),
        "{keys}"
    );

    // A wrong fallback secret: the primary still passes, the fallback's line names the
    // fallback's variable, and no secret is printed.
    let report = doctor(config(
        &primary.endpoint(),
        &fallback,
        &check.url(),
        &[(
            "SPACES_FALLBACK_SECRET_ACCESS_KEY",
            "not-the-fallback-secret",
        )],
    ))
    .await;
    assert_eq!(report.check(STORAGE).unwrap().status, Status::Ok);
    let line = report.check(FALLBACK_STORAGE).unwrap();
    assert_eq!(line.status, Status::Fail, "{line}");
    let line = line.to_string();
    assert!(line.contains("SignatureDoesNotMatch"), "{line}");
    assert!(line.contains("SPACES_FALLBACK_SECRET_ACCESS_KEY"), "{line}");
    assert!(!line.contains("not-the-fallback-secret"), "{line}");
    assert!(!report.passed());
}
