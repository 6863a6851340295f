//! Operator commands against the real S3 server: presigned links that the server accepts,
//! the migration of an old local label folder, and backups (restored by migrating them);
//! both run `--jobs` at a time and show their progress.

use std::time::Duration;

use label_gateway::cli::migrate::{migrate_with, MigrateOptions};
use label_gateway::cli::progress::Progress;
use label_gateway::cli::{backup::backup, migrate::migrate, presign::presign};

use crate::support::{self, pdf_bytes, process, s3, Responder, S3Server};

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

#[tokio::test(flavor = "multi_thread")]
async fn migrate_dry_run_asks_the_store_and_says_what_the_real_run_does() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let old = tempfile::tempdir().unwrap();
    let data = pdf_bytes(3000, 64);
    for name in ["DRY1", "DRY2", "DRY3"] {
        std::fs::write(old.path().join(format!("{name}.pdf")), &data).unwrap();
    }
    s3.put_label("DRY2", &data).await;
    let config = support::s3_config(&s3, &check.url(), &[]);

    let dry = migrate(&config, old.path(), false, true).await.unwrap();
    assert_eq!(dry.uploaded, vec!["DRY1", "DRY3"]);
    assert_eq!(dry.already_there, vec!["DRY2"]);
    assert!(
        s3.stored("labels/DRY1.pdf").is_none(),
        "dry run writes nothing"
    );
    let real = migrate(&config, old.path(), false, false).await.unwrap();
    assert_eq!(dry, real, "{} / {}", dry.summary(), real.summary());
    // With --overwrite every label is written again, so every one counts as uploaded.
    let dry = migrate(&config, old.path(), true, true).await.unwrap();
    assert_eq!(dry.uploaded, vec!["DRY1", "DRY2", "DRY3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_copies_every_label_across_pages_then_only_what_is_new_or_cut() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let labels: Vec<(String, Vec<u8>)> = (0..5u8)
        .map(|i| {
            (
                format!("BAK{i}"),
                pdf_bytes(2000 + usize::from(i) * 700, 70 + i),
            )
        })
        .collect();
    for (t, data) in &labels {
        s3.put_label(t, data).await;
    }
    s3.put_object("labels/notes.txt", b"not a label", &[]).await;
    s3.put_object("elsewhere/OTHER.pdf", &labels[0].1, &[])
        .await;
    let config = support::s3_config(&s3, &check.url(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("backup");

    let dry = backup(&config, &to, true, 2).await.unwrap();
    assert_eq!(dry.downloaded.len(), 5);
    assert!(!to.exists(), "a dry run writes nothing");

    // Two keys per listing page: the five labels and the stray key span three pages.
    let report = backup(&config, &to, false, 2).await.unwrap();
    let names: Vec<&str> = labels.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(report.downloaded, names);
    assert_eq!(report.not_labels, vec!["labels/notes.txt"]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    for (t, data) in &labels {
        assert_eq!(&std::fs::read(to.join(format!("{t}.pdf"))).unwrap(), data);
    }
    let files = std::fs::read_dir(&to).unwrap().count();
    assert_eq!(
        files, 5,
        "only the labels, no temporary files, nothing from elsewhere/"
    );

    // Re-run: a new label and a file cut short are fetched; the rest is left alone.
    s3.put_label("BAK9", &pdf_bytes(1500, 79)).await;
    std::fs::write(to.join("BAK2.pdf"), &labels[2].1[..100]).unwrap();
    let again = backup(&config, &to, false, 2).await.unwrap();
    assert_eq!(again.downloaded, vec!["BAK2", "BAK9"]);
    assert_eq!(again.up_to_date.len(), 4);
    assert_eq!(std::fs::read(to.join("BAK2.pdf")).unwrap(), labels[2].1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_restores_into_an_empty_store_with_migrate() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let a = pdf_bytes(3300, 81);
    let b = pdf_bytes(64 * 1024 + 5, 82);
    s3.put_label("RST1", &a).await;
    s3.put_label("RST2", &b).await;
    let dir = tempfile::tempdir().unwrap();
    let original = support::s3_config(&s3, &check.url(), &[]);
    let report = backup(&original, dir.path(), false, 1000).await.unwrap();
    assert_eq!(report.downloaded, vec!["RST1", "RST2"]);

    // The same bucket under another location stands in for a new, empty bucket.
    let restored = support::s3_config(
        &s3,
        &check.url(),
        &[("LABEL_GATEWAY_STORAGE__LOCATION", "restored")],
    );
    let migrated = migrate(&restored, dir.path(), false, false).await.unwrap();
    assert_eq!(migrated.uploaded, vec!["RST1", "RST2"]);
    assert_eq!(s3.stored("restored/RST1.pdf").unwrap(), a);
    assert_eq!(s3.stored("restored/RST2.pdf").unwrap(), b);
}

#[tokio::test]
async fn backup_of_the_local_store_pages_through_its_folder() {
    let store = tempfile::tempdir().unwrap();
    let labels: Vec<(String, Vec<u8>)> = (0..3u8)
        .map(|i| (format!("LOC{i}"), pdf_bytes(1000 + usize::from(i), 90 + i)))
        .collect();
    for (t, data) in &labels {
        std::fs::write(store.path().join(format!("{t}.pdf")), data).unwrap();
    }
    std::fs::write(store.path().join("README"), b"x").unwrap();
    let root = store.path().display().to_string();
    let config = support::config(
        "[regenerate]\nurl = \"\"\n",
        &[("LABEL_GATEWAY_STORAGE__LOCAL_ROOT", root.as_str())],
    );
    let to = tempfile::tempdir().unwrap();
    let report = backup(&config, to.path(), false, 1).await.unwrap();
    assert_eq!(report.downloaded, vec!["LOC0", "LOC1", "LOC2"]);
    assert_eq!(report.not_labels, vec!["README"]);
    for (t, data) in &labels {
        assert_eq!(
            &std::fs::read(to.path().join(format!("{t}.pdf"))).unwrap(),
            data
        );
    }
}

/// A folder of `n` old labels `{prefix}{i}.pdf`.
fn old_folder(prefix: &str, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        let data = pdf_bytes(2000 + i, i as u8);
        std::fs::write(dir.path().join(format!("{prefix}{i:02}.pdf")), data).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_uploads_jobs_at_a_time_not_one_by_one() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let old = old_folder("PAR", 16);
    // Each upload is held until four are in flight together: only a parallel migrate
    // gets past the gate without waiting it out.
    s3.hold_puts_until_concurrent(4);
    let config = support::s3_config(&s3, &check.url(), &[]);
    let options = MigrateOptions {
        overwrite: false,
        dry_run: false,
        jobs: 8,
    };
    let report = migrate_with(&config, old.path(), options, &Progress::hidden())
        .await
        .unwrap();
    assert_eq!(report.uploaded.len(), 16);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.uploaded[0], "PAR00", "reported in name order");
    let most = s3.max_concurrent_puts();
    assert!(
        (4..=8).contains(&most),
        "{most} uploads at once with --jobs 8"
    );

    let s3 = S3Server::start().await;
    let config = support::s3_config(&s3, &check.url(), &[]);
    let one = MigrateOptions { jobs: 1, ..options };
    let report = migrate_with(
        &config,
        old_folder("SEQ", 4).path(),
        one,
        &Progress::hidden(),
    )
    .await
    .unwrap();
    assert_eq!(report.uploaded.len(), 4);
    assert_eq!(
        s3.max_concurrent_puts(),
        1,
        "--jobs 1 uploads one at a time"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_shows_migrate_and_backup_progress_as_plain_lines_off_a_terminal() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let toml = process::s3_toml(&s3, &check.url(), "", "");
    let env = [
        ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
    ];
    let old = old_folder("BIN", 5);
    let from = old.path().display().to_string();
    let out = process::run(&toml, &["migrate", "--from", &from, "--jobs", "3"], &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("migrate: 5/5 (100%), 9.8 KiB"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("uploaded 5,"),
        "the summary is on stdout"
    );

    let to = tempfile::tempdir().unwrap();
    let dest = to.path().join("backup").display().to_string();
    let out = process::run(&toml, &["backup", "--to", &dest, "--jobs", "2"], &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("backup: 5/5 (100%), 9.8 KiB"), "{stderr}");
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 5);

    let out = process::run(&toml, &["backup", "--to", &dest, "--jobs", "0"], &env).await;
    assert_eq!(out.status.code(), Some(2), "--jobs 0 is a usage error");
}
