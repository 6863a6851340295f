//! Storage over TLS end to end, as production runs it: the S3 server behind TLS with a
//! certificate from a CA the test makes, trusted through `storage.ca_file`. Label reads
//! (miss, hit, Range, several MiB), ingest, regeneration's store-back, `doctor` and
//! `backup` all go over it; a
//! certificate from an unknown CA, or for another name, is refused with a diagnosis.

use std::path::Path;

use label_gateway::cli::backup::backup;
use label_gateway::cli::doctor::{doctor, Status, ENDPOINT, ROUND_TRIP, STORAGE};
use label_gateway::config::Config;

use crate::support::tls::{path_str, TestCa};
use crate::support::{self, get_label, pdf_bytes, Django, Responder, S3Server, ANY_SESSION};

const TOKEN: &str = "ingest-token-tls";

/// A gateway config for `s3`, trusting `ca_file` when given.
fn tls_config(s3: &S3Server, check: &Responder, ca_file: Option<&Path>) -> Config {
    let ca = ca_file.map(path_str);
    let mut env = vec![
        ("LABEL_GATEWAY_INTERNAL__TOKEN", TOKEN),
        ("LABEL_GATEWAY_INTERNAL__MAX_UPLOAD_BYTES", "8MiB"),
        ("LABEL_GATEWAY_REGENERATE__URL", ""),
    ];
    if let Some(ca) = &ca {
        env.push(("LABEL_GATEWAY_STORAGE__CA_FILE", ca));
    }
    support::s3_config(s3, &check.url(), &env)
}

#[tokio::test(flavor = "multi_thread")]
async fn labels_ingest_doctor_and_backup_run_over_tls_with_a_private_ca() {
    let ca = TestCa::new();
    let s3 = S3Server::start_tls(&ca, "127.0.0.1").await;
    assert!(s3.endpoint().starts_with("https://"));
    let check = Responder::allow_all().await;
    let config = tls_config(&s3, &check, Some(&ca.pem_file()));
    let gw = support::start_gateway(config.clone()).await;

    // Ingest (a PUT through the pooled client), a small label and one of 5 MiB.
    let small = pdf_bytes(40_000, 81);
    let big = pdf_bytes(5 * 1024 * 1024, 82);
    for (tracking, data) in [("TLS1", &small), ("TLS2", &big)] {
        let r = support::client()
            .put(format!(
                "http://{}/internal/labels/{tracking}",
                gw.internal_addr()
            ))
            .bearer_auth(TOKEN)
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "ingest {tracking}");
        assert_eq!(&s3.stored(&format!("labels/{tracking}.pdf")).unwrap(), data);
    }

    // Miss, then hit, a Range, the big label whole, a missing label.
    let r = get_label(&gw, "TLS1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), small);
    let r = get_label(&gw, "TLS1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.bytes().await.unwrap(), small);
    let r = get_label(&gw, "TLS2")
        .cookie(ANY_SESSION)
        .header("range", "bytes=1000-1999")
        .send()
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), &big[1000..2000]);
    let r = get_label(&gw, "TLS2").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), big);
    let r = get_label(&gw, "NOTLS9").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 404);

    // doctor verifies the certificate against the CA and writes over TLS.
    let report = doctor(Ok(config.clone()), Path::new("config.toml"), true).await;
    for name in [ENDPOINT, STORAGE, ROUND_TRIP] {
        let c = report.check(name).unwrap();
        assert_eq!(c.status, Status::Ok, "{c}");
    }
    assert!(report.check(ENDPOINT).unwrap().finding.contains("TLS"));

    let to = tempfile::tempdir().unwrap();
    let copied = backup(&config, &to.path().join("b"), false, 1)
        .await
        .unwrap();
    assert_eq!(copied.downloaded, vec!["TLS1", "TLS2"]);
    assert_eq!(std::fs::read(to.path().join("b/TLS2.pdf")).unwrap(), big);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_ca_or_a_certificate_for_another_name_is_refused_with_a_diagnosis() {
    let ca = TestCa::new();
    let check = Responder::allow_all().await;
    let cases = [
        // Trusted CA, certificate for another name.
        ("other.example", true, "another name"),
        // Right name, CA not trusted.
        ("127.0.0.1", false, "storage.ca_file"),
    ];
    for (name, trust, fix) in cases {
        let s3 = S3Server::start_tls(&ca, name).await;
        let pem = ca.pem_file();
        let config = tls_config(&s3, &check, trust.then_some(pem.as_path()));
        let report = doctor(Ok(config.clone()), Path::new("config.toml"), false).await;
        let endpoint = report.check(ENDPOINT).unwrap();
        assert_eq!(endpoint.status, Status::Fail, "{endpoint}");
        assert!(endpoint.to_string().contains(fix), "{name}: {endpoint}");
        let gw = support::start_gateway(config).await;
        let r = get_label(&gw, "TLS1").cookie(ANY_SESSION).send().await;
        assert_eq!(r.status(), 502, "{name}");
        let storage = label_gateway::storage::Storage::from_config(&tls_config(
            &s3,
            &check,
            trust.then_some(pem.as_path()),
        ))
        .unwrap();
        let e = storage.probe().await.unwrap_err().to_string();
        assert!(e.contains(fix), "{name}: {e}");
    }
}

#[test]
fn an_unreadable_or_empty_ca_file_is_a_start_up_error_naming_the_key() {
    let ca = TestCa::new();
    let toml = "[storage]\nbackend = \"s3\"\n";
    let env = |path: &Path| {
        [
            ("SPACES_ACCESS_KEY_ID", "AKID".to_string()),
            ("SPACES_SECRET_ACCESS_KEY", "secret".to_string()),
            ("LABEL_GATEWAY_STORAGE__CA_FILE", path_str(path)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<std::collections::BTreeMap<String, String>>()
    };
    let missing = ca.pem_file().with_file_name("absent.pem");
    let empty = ca.file("empty.pem", b"not a certificate\n");
    for path in [missing, empty] {
        let e = Config::from_toml_str(toml, &env(&path))
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.ca_file"), "{e}");
    }
    assert!(Config::from_toml_str(toml, &env(&ca.pem_file())).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_regenerated_label_is_stored_back_over_tls() {
    let ca = TestCa::new();
    let s3 = S3Server::start_tls(&ca, "127.0.0.1").await;
    let django = Django::start();
    let url = django.url("/internal/label-regenerate/{tracking}/");
    let ca_file = path_str(&ca.pem_file());
    let config = support::s3_config(
        &s3,
        &django.check_url(),
        &[
            ("LABEL_GATEWAY_REGENERATE__URL", url.as_str()),
            ("LABEL_GATEWAY_REGENERATE__TOKEN", "test-regenerate-token"),
            ("LABEL_GATEWAY_STORAGE__CA_FILE", ca_file.as_str()),
        ],
    );
    let gw = support::start_gateway(config).await;
    let cookie = format!("sessionid={}", django.session("gina"));
    let r = get_label(&gw, "REGEN771").cookie(&cookie).send().await;
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert!(body.starts_with(b"%PDF-"));
    let mut stored = None;
    for _ in 0..100 {
        stored = s3.stored("labels/REGEN771.pdf");
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stored.expect("stored back over TLS"), body.to_vec());
}
