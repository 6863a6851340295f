//! Where S3 dialects differ and the gateway must not be fooled: a missing bucket (a HEAD's
//! bare 404 is the same as a missing key's; the test server answers as S3 does) is a 502
//! naming the bucket, never a missing label (no regeneration, no redirect-mode 404); a
//! location with spaces, non-ASCII or `+` is percent-encoded on every request and names
//! the keys it should.

use std::time::Duration;

use label_gateway::http::full;
use label_gateway::storage::{s3::S3Store, Fetch, GetRequest, Storage};
use label_gateway::tracking::Tracking;

use crate::support::{self, get_label, head_label, pdf_bytes, Responder, S3Server, ANY_SESSION};

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_is_a_502_naming_it_never_a_missing_label() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    // Any answer from it would do: it must never be asked.
    let regenerate = Responder::start(500, Duration::ZERO).await;
    let regenerate_url = format!("{}/{{tracking}}/", regenerate.url());
    let config = support::s3_config(
        &s3,
        &check.url(),
        &[
            ("SPACES_BUCKET_NAME", "no-such-bucket-here"),
            ("LABEL_GATEWAY_CACHE__ENABLED", "false"),
            ("LABEL_GATEWAY_REGENERATE__URL", regenerate_url.as_str()),
            ("LABEL_GATEWAY_REGENERATE__TOKEN", "regenerate-token"),
        ],
    );
    let storage = Storage::from_config(&config).unwrap();
    let head = GetRequest {
        tracking: Tracking::parse("NOBUCKET1").unwrap(),
        range: None,
        conditions: &Default::default(),
        head_only: true,
    };
    // HEAD (a bare 404) and GET (`NoSuchBucket`) alike.
    for head_only in [true, false] {
        let e = match storage.get(GetRequest { head_only, ..head }).await {
            Err(e) => e.to_string(),
            Ok(Fetch::NotFound) => panic!("a missing bucket read as a missing label"),
            Ok(_) => panic!("found in a missing bucket"),
        };
        assert!(e.contains("no-such-bucket-here"), "{e}");
        assert!(e.contains("SPACES_BUCKET_NAME"), "{e}");
    }
    // Readiness names the bucket too.
    let e = storage.probe().await.unwrap_err().to_string();
    assert!(e.contains("no bucket \"no-such-bucket-here\""), "{e}");

    let mut redirect = config.clone();
    redirect.redirect.enabled = true;
    let gw = support::start_gateway(config).await;
    for resp in [
        head_label(&gw, "NOBUCKET1")
            .cookie(ANY_SESSION)
            .send()
            .await,
        get_label(&gw, "NOBUCKET1").cookie(ANY_SESSION).send().await,
    ] {
        assert_eq!(resp.status(), 502);
    }
    // Redirect mode checks that the label exists before it redirects: not its 404 page.
    assert!(redirect.redirect.check_exists);
    let gw = support::start_gateway(redirect).await;
    let resp = get_label(&gw, "NOBUCKET1").cookie(ANY_SESSION).send().await;
    assert_eq!(resp.status(), 502);
    assert_eq!(
        regenerate.hits(),
        0,
        "a label in a missing bucket was regenerated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bare_404_in_a_bucket_that_is_there_is_a_missing_label() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let config = support::s3_config(&s3, &check.url(), &[]);
    let storage = Storage::from_config(&config).unwrap();
    let head = GetRequest {
        tracking: Tracking::parse("ABSENT1").unwrap(),
        range: None,
        conditions: &Default::default(),
        head_only: true,
    };
    for _ in 0..2 {
        assert!(matches!(storage.get(head).await, Ok(Fetch::NotFound)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_location_with_spaces_non_ascii_or_plus_names_its_own_keys() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let data = pdf_bytes(20_000, 91);
    for location in ["shipping labels", "étiquettes", "lab+els", "a b/ç+d"] {
        let config = support::s3_config(
            &s3,
            &check.url(),
            &[("LABEL_GATEWAY_STORAGE__LOCATION", location)],
        );
        let storage = Storage::from_config(&config).unwrap();
        let tracking = Tracking::parse("ENC1").unwrap();
        // The PUT (fast signing path) writes the key the location names.
        storage
            .put(&tracking, full(data.clone()), data.len() as u64, true)
            .await
            .unwrap();
        assert_eq!(
            s3.stored(&format!("{location}/ENC1.pdf")).as_deref(),
            Some(&data[..]),
            "{location}"
        );
        // The listing (aws-sigv4, a query string) finds it as a label.
        let (listed, _) = storage.list(None, 10).await.unwrap();
        assert_eq!(listed.len(), 1, "{location}: {listed:?}");
        assert_eq!(listed[0].key, format!("{location}/ENC1.pdf"));
        assert_eq!(listed[0].tracking, Some(tracking));
        // A presigned URL reads it.
        let store = S3Store::new(&config.storage).unwrap();
        let url = store
            .presign_label(
                &tracking,
                &http::Method::GET,
                Duration::from_secs(60),
                None,
                &[],
            )
            .unwrap();
        let r = support::client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{location}: {url}");
        // And the gateway serves it.
        let gw = support::start_gateway(config).await;
        let r = get_label(&gw, "ENC1").cookie(ANY_SESSION).send().await;
        assert_eq!(r.status(), 200, "{location}");
        assert_eq!(r.bytes().await.unwrap(), data);
        std::fs::remove_file(s3.bucket_dir().join(location).join("ENC1.pdf")).unwrap();
    }
}
