//! `label-gateway prune` against the real S3 server (which checks the signature, the
//! body's SHA-256 and, in front of s3s, the `Content-MD5` S3 requires on Multi-Object
//! Delete): a dry run unless `--yes`, labels chosen by age (objects made old by setting
//! their files' mtimes in the server's folder) and/or by a list, batches of at most 1,000,
//! nothing that is not a label touched. Per-key failures come from a scripted stand-in
//! (a real server will not fail one key of a batch on demand). Then the local backend and
//! the binary.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use label_gateway::cli::progress::Progress;
use label_gateway::cli::prune::{prune, PruneOptions, PruneReport};
use label_gateway::config::Config;

use crate::support::standins::{Act, ScriptedOrigin};
use crate::support::{self, pdf_bytes, process, s3, Responder, S3Server};

const DAY: u64 = 86_400;

/// A time `days` ago, in whole seconds (what listings carry).
fn days_ago(days: u64) -> SystemTime {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(now - days * DAY)
}

/// Makes the file at `path` look written `days` ago.
fn age(path: &Path, days: u64) -> SystemTime {
    let when = days_ago(days);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .set_modified(when)
        .unwrap();
    when
}

async fn run(config: &Config, options: PruneOptions) -> PruneReport {
    prune(config, &options, &Progress::hidden())
        .await
        .expect("prune runs")
}

fn older_than(days: u64, yes: bool) -> PruneOptions {
    PruneOptions::new(Some(Duration::from_secs(days * DAY)), None, yes)
}

fn names(report: &PruneReport) -> Vec<String> {
    report
        .chosen
        .iter()
        .map(|c| c.tracking.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn old_labels_are_listed_on_a_dry_run_and_deleted_with_yes_and_nothing_else_is_touched() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let dir = s3.bucket_dir();
    for (t, len) in [("OLD1", 3000), ("OLD2", 5000), ("NEW1", 4000)] {
        s3.put_label(t, &pdf_bytes(len, 1)).await;
    }
    // Old things that are not labels: never chosen, whatever their age.
    s3.put_object("labels/notes.txt", b"not a label", &[]).await;
    s3.put_object("labels/nested/OLD3.pdf", b"%PDF-1.4", &[])
        .await;
    s3.put_object("elsewhere/OLD4.pdf", b"%PDF-1.4", &[]).await;
    let oldest = age(&dir.join("labels/OLD1.pdf"), 400);
    let newest = age(&dir.join("labels/OLD2.pdf"), 120);
    age(&dir.join("labels/NEW1.pdf"), 30);
    for other in [
        "labels/notes.txt",
        "labels/nested/OLD3.pdf",
        "elsewhere/OLD4.pdf",
    ] {
        age(&dir.join(other), 500);
    }
    let config = support::s3_config(&s3, &check.url(), &[]);

    let dry = run(&config, older_than(90, false)).await;
    assert!(dry.dry_run);
    assert_eq!(names(&dry), vec!["OLD1", "OLD2"]);
    assert_eq!(dry.bytes(), 8000);
    assert_eq!(dry.span(), Some((oldest, newest)));
    assert_eq!(
        dry.not_labels, 2,
        "labels/notes.txt and labels/nested/OLD3.pdf"
    );
    assert!(dry.deleted.is_empty());
    let summary = dry.summary();
    assert!(
        summary.starts_with("would delete 2 labels, 7.8 KiB, oldest "),
        "{summary}"
    );
    assert!(summary.contains("add --yes"), "{summary}");
    assert!(
        s3.stored("labels/OLD1.pdf").is_some(),
        "a dry run deletes nothing"
    );
    assert!(s3.delete_batches().is_empty());

    let done = run(&config, older_than(90, true)).await;
    assert_eq!(done.deleted, vec!["OLD1", "OLD2"]);
    assert!(done.failed.is_empty(), "{:?}", done.failed);
    assert_eq!(s3.delete_batches(), vec![2], "one Multi-Object Delete");
    assert!(s3.stored("labels/OLD1.pdf").is_none());
    assert!(s3.stored("labels/OLD2.pdf").is_none());
    for kept in [
        "labels/NEW1.pdf",
        "labels/notes.txt",
        "labels/nested/OLD3.pdf",
        "elsewhere/OLD4.pdf",
    ] {
        assert!(s3.stored(kept).is_some(), "{kept} must stay");
    }

    let again = run(&config, older_than(90, true)).await;
    assert!(again.chosen.is_empty(), "nothing old is left");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_chooses_labels_and_with_an_age_a_label_must_match_both() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    for t in ["A1", "B2", "C3", "D4"] {
        s3.put_label(t, &pdf_bytes(1000, 2)).await;
    }
    age(&s3.bucket_dir().join("labels/A1.pdf"), 200);
    age(&s3.bucket_dir().join("labels/B2.pdf"), 200);
    let list_dir = tempfile::tempdir().unwrap();
    let list = list_dir.path().join("closed-orders.txt");
    std::fs::write(&list, "# closed orders\nA1\nC3\n\n../labels/B2\nZZ99\n").unwrap();
    let config = support::s3_config(&s3, &check.url(), &[]);

    let by_list = run(&config, PruneOptions::new(None, Some(list.clone()), false)).await;
    assert_eq!(names(&by_list), vec!["A1", "C3"]);
    assert_eq!(by_list.bad_lines, vec![(5, "../labels/B2".to_string())]);
    assert_eq!(by_list.not_in_store, vec!["ZZ99"]);

    let both = PruneOptions::new(Some(Duration::from_secs(90 * DAY)), Some(list), true);
    let done = run(&config, both).await;
    assert_eq!(done.deleted, vec!["A1"], "old and listed");
    for kept in ["B2", "C3", "D4"] {
        assert!(s3.stored(&format!("labels/{kept}.pdf")).is_some(), "{kept}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_and_five_labels_go_in_two_batches_of_at_most_a_thousand() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let labels = s3.bucket_dir().join("labels");
    std::fs::create_dir_all(&labels).unwrap();
    let names: Vec<String> = (0..1005).map(|i| format!("BULK{i:04}")).collect();
    for n in &names {
        std::fs::write(labels.join(format!("{n}.pdf")), b"%PDF-1.4 bulk").unwrap();
    }
    let list_dir = tempfile::tempdir().unwrap();
    let list = list_dir.path().join("all.txt");
    std::fs::write(&list, names.join("\n")).unwrap();
    let config = support::s3_config(&s3, &check.url(), &[]);

    let done = run(&config, PruneOptions::new(None, Some(list), true)).await;
    assert_eq!(done.deleted.len(), 1005);
    assert!(done.failed.is_empty(), "{:?}", done.failed);
    assert_eq!(s3.delete_batches(), vec![1000, 5]);
    assert_eq!(std::fs::read_dir(&labels).unwrap().count(), 0);
}

/// A listing of `labels/A1.pdf` and `labels/B2.pdf`, both old.
fn listing() -> Act {
    Act::ok(
        br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult><IsTruncated>false</IsTruncated>
<Contents><Key>labels/A1.pdf</Key><LastModified>2020-01-01T00:00:00.000Z</LastModified><Size>10</Size></Contents>
<Contents><Key>labels/B2.pdf</Key><LastModified>2020-01-02T00:00:00.000Z</LastModified><Size>20</Size></Contents>
</ListBucketResult>"#,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_the_store_would_not_delete_is_reported_with_its_reason() {
    let origin = ScriptedOrigin::start(
        vec![
            listing(),
            Act::ok(
                br#"<DeleteResult><Error><Key>labels/B2.pdf</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>"#,
            ),
        ],
        Act::error(500, "InternalError"),
    )
    .await;
    let check = Responder::allow_all().await;
    let config = support::origin_config(&origin.endpoint(), &check.url(), &[]);
    let done = run(&config, older_than(90, true)).await;
    assert_eq!(done.deleted, vec!["A1"]);
    assert_eq!(
        done.failed,
        vec![("B2".to_string(), "AccessDenied: Access Denied".to_string())]
    );
    assert!(done.summary().contains("failed 1"), "{}", done.summary());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_call_that_fails_whole_fails_each_of_its_labels() {
    let origin = ScriptedOrigin::start(vec![listing()], Act::error(500, "InternalError")).await;
    let check = Responder::allow_all().await;
    let config = support::origin_config(&origin.endpoint(), &check.url(), &[]);
    let done = run(&config, older_than(90, true)).await;
    assert!(done.deleted.is_empty());
    assert_eq!(done.failed.len(), 2);
    for (_, why) in &done.failed {
        assert!(why.contains("500 InternalError"), "{why}");
    }
    assert_eq!(
        origin.hits(),
        1 + 3,
        "the listing, then the delete tried 3 times"
    );
}

#[tokio::test]
async fn the_local_store_prunes_its_old_files_only() {
    let store = tempfile::tempdir().unwrap();
    let file = |n: &str| -> PathBuf { store.path().join(n) };
    for n in ["OLD1.pdf", "NEW1.pdf", "README", ".OLD2.pdf"] {
        std::fs::write(file(n), b"%PDF-1.4").unwrap();
        age(&file(n), 365);
    }
    age(&file("NEW1.pdf"), 1);
    let root = store.path().display().to_string();
    let config = support::config(
        "[regenerate]\nurl = \"\"\n",
        &[("LABEL_GATEWAY_STORAGE__LOCAL_ROOT", root.as_str())],
    );
    let dry = run(&config, older_than(90, false)).await;
    assert_eq!(names(&dry), vec!["OLD1"]);
    assert!(file("OLD1.pdf").exists());
    let done = run(&config, older_than(90, true)).await;
    assert_eq!(done.deleted, vec!["OLD1"]);
    assert!(!file("OLD1.pdf").exists());
    for kept in ["NEW1.pdf", "README", ".OLD2.pdf"] {
        assert!(file(kept).exists(), "{kept}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_prunes_only_with_yes_and_shows_progress_as_plain_lines() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    s3.put_label("BIN1", &pdf_bytes(2048, 3)).await;
    s3.put_label("BIN2", &pdf_bytes(2048, 4)).await;
    age(&s3.bucket_dir().join("labels/BIN1.pdf"), 100);
    let toml = process::s3_toml(&s3, &check.url(), "", "");
    let env = [
        ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
    ];

    let out = process::run(&toml, &["prune", "--older-than", "90d"], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("would delete: BIN1 (2048 bytes, "),
        "{stdout}"
    );
    assert!(
        stdout.contains("would delete 1 labels, 2.0 KiB"),
        "{stdout}"
    );
    assert!(s3.stored("labels/BIN1.pdf").is_some());

    let out = process::run(&toml, &["prune", "--older-than", "90d", "--yes"], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("deleted 1 of 1 labels"), "{stdout}");
    assert!(
        stderr.contains("prune: 1/1 (100%), 2.0 KiB"),
        "stderr is not a terminal: plain progress lines\n{stderr}"
    );
    assert!(s3.stored("labels/BIN1.pdf").is_none());
    assert!(s3.stored("labels/BIN2.pdf").is_some());

    let out = process::run(&toml, &["prune", "--yes"], &env).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "no --older-than or --from-file: a usage error"
    );
}
