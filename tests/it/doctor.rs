//! `label-gateway doctor` against real peers: the S3 server (SigV4 verified) with a good
//! key, a wrong secret, an unknown key id, a wrong bucket, a dead endpoint and a plain
//! port named https; the real Django app for the session check and the regeneration
//! token; a check URL that is down. Then the binary's lines and exit codes.

use std::collections::BTreeMap;
use std::path::Path;

use label_gateway::cli::doctor::{
    doctor, DoctorReport, Status, CLOCK, CONFIGURATION, CREDENTIALS, ENDPOINT, REGENERATION,
    ROUND_TRIP, SESSION_CHECK, STORAGE,
};
use label_gateway::config::Config;

use crate::support::standins::closed_port;
use crate::support::{self, process, s3, Django, Responder, S3Server};

/// A session check that denies every session: what the real app does with a made-up one.
async fn denying_check() -> Responder {
    Responder::start(403, std::time::Duration::ZERO).await
}

async fn run(config: Config, write: bool) -> DoctorReport {
    doctor(Ok(config), Path::new("config.toml"), write).await
}

fn status(report: &DoctorReport, name: &str) -> Status {
    report
        .check(name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#?}"))
        .status
}

/// The finding and fix of the check `name`, as one string.
fn said(report: &DoctorReport, name: &str) -> String {
    report
        .check(name)
        .map(|c| c.to_string())
        .unwrap_or_default()
}

/// The check `name` failed, and its line (finding and fix) says each of `parts`.
fn failed_saying(report: &DoctorReport, name: &str, parts: &[&str]) {
    assert_eq!(status(report, name), Status::Fail, "{name}");
    let line = said(report, name);
    for part in parts {
        assert!(line.contains(part), "{name}: {part:?} not in {line}");
    }
}

/// Objects left under `labels/` in the server's folder.
fn leftovers(s3: &S3Server) -> Vec<String> {
    std::fs::read_dir(s3.bucket_dir().join("labels"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_deployment_passes_every_check_and_the_round_trip_leaves_nothing() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    s3.put_label("DOC1", b"%PDF-1.4 a label").await;
    let regen = django.url("/internal/label-regenerate/{tracking}/");
    let config = support::s3_config(
        &s3,
        &django.check_url(),
        &[
            ("LABEL_GATEWAY_REGENERATE__URL", &regen),
            ("LABEL_GATEWAY_REGENERATE__TOKEN", "test-regenerate-token"),
        ],
    );
    let report = run(config, true).await;
    for name in [
        CONFIGURATION,
        CREDENTIALS,
        ENDPOINT,
        STORAGE,
        CLOCK,
        ROUND_TRIP,
        SESSION_CHECK,
        REGENERATION,
    ] {
        assert_eq!(status(&report, name), Status::Ok, "{}", said(&report, name));
    }
    assert!(report.passed());
    assert_eq!(
        report.checks.iter().map(|c| c.name).collect::<Vec<_>>(),
        vec![
            CONFIGURATION,
            CREDENTIALS,
            ENDPOINT,
            STORAGE,
            CLOCK,
            ROUND_TRIP,
            SESSION_CHECK,
            REGENERATION
        ],
        "the checks run in the order a request needs them"
    );
    assert!(said(&report, ROUND_TRIP).contains("bytes compared"));
    assert_eq!(
        leftovers(&s3),
        vec!["DOC1.pdf"],
        "the scratch object is gone, the label untouched"
    );
    assert!(said(&report, SESSION_CHECK).contains("denies a made-up session (403)"));
    assert!(said(&report, REGENERATION).contains("(404)"));

    // The app's regeneration token and the gateway's differ: named, with the variable.
    let config = support::s3_config(
        &s3,
        &django.check_url(),
        &[
            ("LABEL_GATEWAY_REGENERATE__URL", &regen),
            ("LABEL_GATEWAY_REGENERATE__TOKEN", "not-the-apps-token"),
        ],
    );
    let report = run(config, false).await;
    failed_saying(
        &report,
        REGENERATION,
        &["refuses the token (401)", "LABEL_GATEWAY_REGENERATE__TOKEN"],
    );
    assert!(!said(&report, REGENERATION).contains("not-the-apps-token"));
    assert_eq!(status(&report, ROUND_TRIP), Status::Skip, "no --write");
    assert!(!report.passed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_named_as_the_secret() {
    let s3 = S3Server::start().await;
    let check = denying_check().await;
    let config = support::s3_config_with_env(
        &s3,
        &check.url(),
        &[
            ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
            ("SPACES_SECRET_ACCESS_KEY", "wrong-secret-for-the-doctor"),
        ],
    );
    let report = run(config, true).await;
    assert_eq!(status(&report, ENDPOINT), Status::Ok);
    failed_saying(
        &report,
        STORAGE,
        &[
            "403 SignatureDoesNotMatch",
            "fix: check SPACES_SECRET_ACCESS_KEY",
        ],
    );
    assert!(!said(&report, STORAGE).contains("wrong-secret-for-the-doctor"));
    assert_eq!(
        status(&report, CLOCK),
        Status::Ok,
        "a refusal still carries the server's Date"
    );
    assert_eq!(status(&report, ROUND_TRIP), Status::Skip);
    assert_eq!(status(&report, SESSION_CHECK), Status::Ok);
    assert!(!report.passed());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_key_id_is_named_as_the_key_id() {
    let s3 = S3Server::start().await;
    let check = denying_check().await;
    let config = support::s3_config_with_env(
        &s3,
        &check.url(),
        &[
            ("SPACES_ACCESS_KEY_ID", "AKIDNOBODYKNOWS"),
            ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
        ],
    );
    let report = run(config, false).await;
    // s3s answers an unknown key id with NotSignedUp; S3 says InvalidAccessKeyId.
    failed_saying(
        &report,
        STORAGE,
        &[
            "NotSignedUp",
            "does not know this key id",
            "fix: check SPACES_ACCESS_KEY_ID",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_bucket_is_named_as_the_bucket() {
    let s3 = S3Server::start().await;
    let check = denying_check().await;
    let config = support::s3_config(
        &s3,
        &check.url(),
        &[("SPACES_BUCKET_NAME", "no-such-bucket-here")],
    );
    let report = run(config, false).await;
    failed_saying(
        &report,
        STORAGE,
        &[
            "404 NoSuchBucket",
            "no bucket no-such-bucket-here",
            "fix: check SPACES_BUCKET_NAME",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_endpoint_fails_the_endpoint_and_skips_what_needs_it() {
    let dead = closed_port().await;
    let check = denying_check().await;
    let config = support::origin_config(&format!("http://{dead}"), &check.url(), &[]);
    let report = run(config, true).await;
    failed_saying(
        &report,
        ENDPOINT,
        &["refused the connection", "fix: nothing listens there"],
    );
    for name in [STORAGE, CLOCK, ROUND_TRIP] {
        assert_eq!(status(&report, name), Status::Skip, "{name}");
    }
    assert_eq!(
        status(&report, SESSION_CHECK),
        Status::Ok,
        "the app is still checked"
    );
    assert!(!report.passed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_port_named_https_fails_the_tls_handshake() {
    let s3 = S3Server::start().await;
    let check = denying_check().await;
    let https = s3.endpoint().replace("http://", "https://");
    let config = support::s3_config(&s3, &check.url(), &[("SPACES_ENDPOINT_URL", &https)]);
    let report = run(config, false).await;
    failed_saying(&report, ENDPOINT, &["TLS with 127.0.0.1"]);
    assert_eq!(status(&report, STORAGE), Status::Skip);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_url_that_is_down_is_named_with_what_it_costs() {
    let s3 = S3Server::start().await;
    let down = closed_port().await;
    let config = support::s3_config(&s3, &format!("http://{down}/check/{{tracking}}/"), &[]);
    let report = run(config, false).await;
    assert_eq!(status(&report, STORAGE), Status::Ok);
    assert_eq!(status(&report, SESSION_CHECK), Status::Fail);
    let line = said(&report, SESSION_CHECK);
    assert!(
        line.contains(&format!(
            "http://{down} cannot be reached: connection refused"
        )),
        "{line}"
    );
    assert!(line.contains("every label request gets 503"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_url_that_allows_anyone_fails() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let report = run(support::s3_config(&s3, &check.url(), &[]), false).await;
    assert_eq!(status(&report, SESSION_CHECK), Status::Fail);
    assert!(said(&report, SESSION_CHECK).contains("allows a made-up session (204)"));
}

#[tokio::test]
async fn an_invalid_configuration_is_the_first_finding_and_the_rest_is_skipped() {
    let env: BTreeMap<String, String> = [("LABEL_GATEWAY_STORAGE__BACKEND", "s3")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let loaded = Config::from_toml_str("", &env);
    let report = doctor(loaded, Path::new("config.toml"), false).await;
    assert_eq!(status(&report, CONFIGURATION), Status::Fail);
    assert_eq!(status(&report, CREDENTIALS), Status::Fail);
    assert!(said(&report, CREDENTIALS).contains("SPACES_ACCESS_KEY_ID"));
    for name in [
        ENDPOINT,
        STORAGE,
        CLOCK,
        ROUND_TRIP,
        SESSION_CHECK,
        REGENERATION,
    ] {
        assert_eq!(status(&report, name), Status::Skip, "{name}");
    }
}

#[tokio::test]
async fn the_local_store_round_trips_a_hidden_scratch_file() {
    let store = tempfile::tempdir().unwrap();
    std::fs::write(store.path().join("LOC1.pdf"), b"%PDF-1.4").unwrap();
    let root = store.path().display().to_string();
    let check = denying_check().await;
    let config = support::config(
        "[regenerate]\nurl = \"\"\n",
        &[
            ("LABEL_GATEWAY_STORAGE__LOCAL_ROOT", &root),
            ("LABEL_GATEWAY_AUTH__CHECK_URL", &check.url()),
        ],
    );
    let report = run(config, true).await;
    assert!(report.passed(), "{report:#?}");
    assert_eq!(status(&report, STORAGE), Status::Ok);
    assert_eq!(status(&report, ROUND_TRIP), Status::Ok);
    assert_eq!(status(&report, CREDENTIALS), Status::Skip);
    let files: Vec<_> = std::fs::read_dir(store.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "only the label is left");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_prints_one_line_per_check_and_exits_1_on_a_failure() {
    let s3 = S3Server::start().await;
    let check = denying_check().await;
    let toml = process::s3_toml(&s3, &check.url(), "", "[regenerate]\nurl = \"\"\n");
    let good = [
        ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
    ];
    let out = process::run(&toml, &["doctor", "--write"], &good).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{stdout}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("ok ") || l.starts_with("skip ")),
        "{stdout}"
    );
    assert!(lines[5].starts_with("ok    write round trip"), "{stdout}");

    let bad = [
        ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("SPACES_SECRET_ACCESS_KEY", "not-the-secret"),
    ];
    let out = process::run(&toml, &["doctor"], &bad).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  storage access    ListObjectsV2 under labels/: 403"),
        "{stdout}"
    );

    // An invalid configuration is a finding too (exit 1), not check-config's exit 2.
    let out = process::run(&toml, &["doctor"], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("FAIL  configuration"), "{stdout}");
}
