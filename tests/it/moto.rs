//! The storage contract against a second, independent S3 implementation: moto's server
//! (PyPI), its request authentication on. A behaviour the gateway relies on must hold on
//! both s3s-fs and moto. One moto server per test, each test running many checks.
//!
//! moto fails presigned requests while its authentication is on, and checks neither the
//! signing region nor the clock: presigned URLs, `AuthorizationHeaderMalformed` and
//! `RequestTimeTooSkewed` are covered against s3s-fs only (`cli.rs`, `doctor.rs`).

use std::path::Path;

use label_gateway::cli::backup::backup;
use label_gateway::cli::doctor::{doctor, Status, ROUND_TRIP, STORAGE};
use label_gateway::cli::migrate::migrate;
use label_gateway::http::full;
use label_gateway::storage::{Fetch, GetRequest, PutOutcome, Storage};
use label_gateway::tracking::Tracking;

use crate::support::moto::Moto;
use crate::support::{self, get_label, head_label, pdf_bytes, Responder, ANY_SESSION};

fn head(tracking: &str) -> GetRequest<'static> {
    static NONE: std::sync::OnceLock<label_gateway::http::Conditions> = std::sync::OnceLock::new();
    GetRequest {
        tracking: Tracking::parse(tracking).unwrap(),
        range: None,
        conditions: NONE.get_or_init(Default::default),
        head_only: true,
    }
}

async fn put(storage: &Storage, tracking: &str, data: &[u8]) -> PutOutcome {
    let t = Tracking::parse(tracking).unwrap();
    storage
        .put(&t, full(data.to_vec()), data.len() as u64, false)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_writes_listings_deletes_and_commands_hold_on_moto() {
    let moto = Moto::start();
    let check = Responder::allow_all().await;
    let config = moto.config(&check.url(), &[("LABEL_GATEWAY_CACHE__ENABLED", "false")]);
    let storage = Storage::from_config(&config).unwrap();
    let data = pdf_bytes(300_000, 101);

    // Store-back and ingest: a PUT that never overwrites.
    assert!(matches!(
        put(&storage, "MOTO1", &data).await,
        PutOutcome::Created { .. }
    ));
    assert_eq!(
        put(&storage, "MOTO1", &data).await,
        PutOutcome::AlreadyExists
    );

    // The read path: GET, HEAD, a Range, a precondition, a miss.
    let gw = support::start_gateway(config.clone()).await;
    let r = get_label(&gw, "MOTO1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(r.bytes().await.unwrap(), data);
    let r = head_label(&gw, "MOTO1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "300000");
    let r = get_label(&gw, "MOTO1")
        .cookie(ANY_SESSION)
        .header("range", "bytes=100-299")
        .send()
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), &data[100..300]);
    let r = get_label(&gw, "MOTO1")
        .cookie(ANY_SESSION)
        .header("if-none-match", &etag)
        .send()
        .await;
    assert_eq!(r.status(), 304);
    for resp in [
        get_label(&gw, "MOTO404").cookie(ANY_SESSION).send().await,
        head_label(&gw, "MOTO404").cookie(ANY_SESSION).send().await,
    ] {
        assert_eq!(resp.status(), 404);
    }

    // migrate: the dry run asks the store and says what the real run does.
    let old = tempfile::tempdir().unwrap();
    for name in ["MOTO1", "MOTO2"] {
        std::fs::write(old.path().join(format!("{name}.pdf")), &data).unwrap();
    }
    let dry = migrate(&config, old.path(), false, true).await.unwrap();
    let real = migrate(&config, old.path(), false, false).await.unwrap();
    assert_eq!(dry, real);
    assert_eq!(real.uploaded, vec!["MOTO2"]);
    assert_eq!(real.already_there, vec!["MOTO1"]);

    // backup pages through the listing.
    let to = tempfile::tempdir().unwrap();
    let copied = backup(&config, &to.path().join("b"), false, 1)
        .await
        .unwrap();
    assert_eq!(copied.downloaded, vec!["MOTO1", "MOTO2"]);

    // doctor, its write round trip included.
    let report = doctor(Ok(config.clone()), Path::new("config.toml"), true).await;
    for name in [STORAGE, ROUND_TRIP] {
        let c = report.check(name).unwrap();
        assert_eq!(c.status, Status::Ok, "{c}");
    }

    // prune's Multi-Object Delete (Content-MD5).
    let gone = [Tracking::parse("MOTO2").unwrap()];
    assert!(storage.delete_many(&gone).await.unwrap().is_empty());
    assert!(matches!(
        storage.get(head("MOTO2")).await,
        Ok(Fetch::NotFound)
    ));

    // A location needing percent-encoding names its own keys.
    let spaced = moto.config(
        &check.url(),
        &[("LABEL_GATEWAY_STORAGE__LOCATION", "shipping labels+é")],
    );
    let storage = Storage::from_config(&spaced).unwrap();
    put(&storage, "MOTO3", &data).await;
    let (listed, _) = storage.list(None, 10).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].key, "shipping labels+é/MOTO3.pdf");
    assert!(matches!(
        storage.get(head("MOTO3")).await,
        Ok(Fetch::Found { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_and_a_wrong_key_are_502s_with_their_diagnosis_on_moto() {
    let moto = Moto::start();
    let check = Responder::allow_all().await;
    // moto answers a HEAD in a missing bucket with a bare 404, as S3 does.
    let config = moto.config(
        &check.url(),
        &[("SPACES_BUCKET_NAME", "no-such-moto-bucket")],
    );
    let storage = Storage::from_config(&config).unwrap();
    for head_only in [true, false] {
        let e = match storage
            .get(GetRequest {
                head_only,
                ..head("MOTO1")
            })
            .await
        {
            Err(e) => e.to_string(),
            Ok(Fetch::NotFound) => panic!("a missing bucket read as a missing label"),
            Ok(_) => panic!("found in a missing bucket"),
        };
        assert!(e.contains("no-such-moto-bucket"), "{e}");
    }
    let gw = support::start_gateway(config).await;
    let r = head_label(&gw, "MOTO1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.status(), 502);

    let wrong = moto.config(
        &check.url(),
        &[("SPACES_SECRET_ACCESS_KEY", "not-the-secret-0123456789")],
    );
    let e = Storage::from_config(&wrong)
        .unwrap()
        .get(GetRequest {
            head_only: false,
            ..head("MOTO1")
        })
        .await
        .err()
        .expect("a wrong secret is refused")
        .to_string();
    assert!(e.contains("SignatureDoesNotMatch"), "{e}");
    assert!(e.contains("SPACES_SECRET_ACCESS_KEY"), "{e}");
}
