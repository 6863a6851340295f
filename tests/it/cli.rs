//! Operator commands against the real S3 server: presigned links that the server accepts,
//! and the migration of an old local label folder.

use std::time::Duration;

use label_gateway::cli::{migrate::migrate, presign::presign};

use crate::support::{self, pdf_bytes, Responder, S3Server};

#[tokio::test(flavor = "multi_thread")]
async fn presigned_link_fetches_the_label_from_the_bucket() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let data = pdf_bytes(5000, 61);
    s3.put_label("PRE1", &data).await;
    let config = support::s3_config(&s3, &check.url(), &[]);
    let url = presign(&config, "PRE1", Duration::from_secs(600)).unwrap();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let r = support::client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), data);
    let tampered = url.replace("PRE1", "PRE2");
    assert_eq!(
        support::client()
            .get(&tampered)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert!(presign(&config, "../x", Duration::from_secs(60)).is_err());
    assert!(presign(&config, "PRE1", Duration::from_secs(8 * 24 * 3600)).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_copies_old_local_labels_once_and_reports_the_rest() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let old = tempfile::tempdir().unwrap();
    let a = pdf_bytes(3000, 62);
    let b = pdf_bytes(4000, 63);
    std::fs::write(old.path().join("OLD1.pdf"), &a).unwrap();
    std::fs::write(old.path().join("OLD2.pdf"), &b).unwrap();
    std::fs::write(old.path().join("notes.txt"), b"hello").unwrap();
    std::fs::write(old.path().join("BROKEN.pdf"), b"<html>").unwrap();
    std::fs::write(old.path().join("bad name.pdf"), &a).unwrap();
    let config = support::s3_config(&s3, &check.url(), &[]);

    let dry = migrate(&config, old.path(), false, true).await.unwrap();
    assert_eq!(dry.uploaded, vec!["OLD1", "OLD2"]);
    assert!(
        s3.stored("labels/OLD1.pdf").is_none(),
        "dry run writes nothing"
    );

    let report = migrate(&config, old.path(), false, false).await.unwrap();
    assert_eq!(report.uploaded, vec!["OLD1", "OLD2"]);
    assert_eq!(report.not_pdf.len(), 1);
    assert_eq!(report.skipped_names.len(), 2);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(s3.stored("labels/OLD1.pdf").unwrap(), a);
    assert_eq!(s3.stored("labels/OLD2.pdf").unwrap(), b);

    let again = migrate(&config, old.path(), false, false).await.unwrap();
    assert!(again.uploaded.is_empty());
    assert_eq!(again.already_there, vec!["OLD1", "OLD2"]);
}
