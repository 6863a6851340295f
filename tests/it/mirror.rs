//! `label-gateway mirror`: the fallback bucket (a second real S3 server, its own key)
//! filled from the primary. What the fallback lacks or holds at another size is copied
//! (s3s-fs lists no ETags, so the ETag comparison at the same size is the unit test's in
//! `cli/mirror.rs`), a dry run reports the same plan and changes nothing, a
//! second run copies nothing, `--delete` removes only the fallback's labels the primary
//! no longer has, and nothing outside `{location}/{tracking}.pdf` is read or written.
//! The binary shows the plan and exits 1 when a copy fails.

use label_gateway::cli::mirror::{mirror, MirrorOptions, MirrorReport};
use label_gateway::cli::progress::Progress;

use crate::fallback::{config, env, fallback_server, toml, FB_SECRET_KEY};
use crate::support::process;
use crate::support::{pdf_bytes, S3Server};

const CHECK: &str = "http://127.0.0.1:9/check/{tracking}/";

async fn run(primary: &S3Server, fallback: &S3Server, options: MirrorOptions) -> MirrorReport {
    let config = config(&primary.endpoint(), fallback, CHECK, &[]);
    mirror(&config, options, &Progress::hidden())
        .await
        .expect("mirror runs")
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_copies_what_lacks_or_differs_plans_the_same_deletes_only_stale_labels_and_reruns_idle(
) {
    let (a, b, c_new, c_old) = (
        pdf_bytes(3_000, 81),
        pdf_bytes(4_000, 82),
        pdf_bytes(5_000, 83),
        pdf_bytes(4_500, 84),
    );
    let primary = S3Server::start().await;
    for (t, data) in [("MA", &a), ("MB", &b), ("MC", &c_new)] {
        primary.put_label(t, data).await;
    }
    primary
        .put_object("labels/notes.txt", b"not a label", &[])
        .await;
    primary
        .put_object("other/MZ.pdf", b"%PDF-outside", &[])
        .await;
    let stale = pdf_bytes(1_000, 87);
    let fallback = fallback_server(&[("MA", &a), ("MC", &c_old), ("MD", &stale)]).await;
    // Written before the primary's key is refused there: keys that are not labels.
    for key in ["labels/readme.txt", "other/MY.pdf"] {
        std::fs::create_dir_all(fallback.bucket_dir().join(key).parent().unwrap()).unwrap();
        std::fs::write(fallback.bucket_dir().join(key), b"keep me").unwrap();
    }
    let options = MirrorOptions {
        page_size: 2,
        ..MirrorOptions::default()
    };
    let deleting = MirrorOptions {
        delete: true,
        ..options
    };

    let plan = run(
        &primary,
        &fallback,
        MirrorOptions {
            dry_run: true,
            ..deleting
        },
    )
    .await;
    assert_eq!(plan.copied, names(&["MB", "MC"]));
    assert_eq!(plan.deleted, names(&["MD"]));
    assert_eq!(plan.up_to_date, names(&["MA"]));
    assert_eq!(plan.not_labels, names(&["labels/notes.txt"]));
    assert!(plan.failed.is_empty());
    let keeping = run(
        &primary,
        &fallback,
        MirrorOptions {
            dry_run: true,
            ..options
        },
    )
    .await;
    assert_eq!(keeping.copied, plan.copied);
    assert!(keeping.deleted.is_empty());
    assert_eq!(keeping.extra, names(&["MD"]));
    // A dry run writes nothing.
    assert_eq!(fallback.stored("labels/MB.pdf"), None);
    assert_eq!(fallback.stored("labels/MC.pdf").unwrap(), c_old);
    assert_eq!(fallback.stored("labels/MD.pdf").unwrap(), stale);

    let done = run(&primary, &fallback, deleting).await;
    assert_eq!(done.copied, plan.copied);
    assert_eq!(done.deleted, plan.deleted);
    assert!(done.failed.is_empty(), "{:?}", done.failed);
    assert_eq!(
        done.summary(),
        "copied 2, up to date 1, deleted 1, only in the fallback 0, not labels 1, failed 0"
    );
    for (t, data) in [("MA", &a), ("MB", &b), ("MC", &c_new)] {
        assert_eq!(
            &fallback.stored(&format!("labels/{t}.pdf")).unwrap(),
            data,
            "{t}"
        );
    }
    assert_eq!(fallback.stored("labels/MD.pdf"), None);
    // Nothing that is not a label was copied, and the fallback's own such keys stay.
    assert_eq!(fallback.stored("labels/notes.txt"), None);
    assert_eq!(fallback.stored("other/MZ.pdf"), None);
    assert_eq!(fallback.stored("labels/readme.txt").unwrap(), b"keep me");
    assert_eq!(fallback.stored("other/MY.pdf").unwrap(), b"keep me");

    let again = run(&primary, &fallback, deleting).await;
    assert!(again.copied.is_empty() && again.deleted.is_empty());
    assert_eq!(again.up_to_date, names(&["MA", "MB", "MC"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_prints_the_plan_and_exits_1_when_a_copy_fails() {
    let primary = S3Server::start().await;
    primary.put_label("MOK", &pdf_bytes(1_500, 88)).await;
    primary.put_label("MBAD", &pdf_bytes(1_500, 89)).await;
    let fallback = fallback_server(&[]).await;
    // A folder where the label's file would go: the fallback cannot store that one.
    std::fs::create_dir_all(fallback.bucket_dir().join("labels/MBAD.pdf")).unwrap();
    std::fs::write(fallback.bucket_dir().join("labels/MBAD.pdf/x"), b"x").unwrap();
    let toml = toml(&fallback, CHECK);
    let endpoint = primary.endpoint();
    let env = env(&endpoint, true);

    let out = process::run(&toml, &["mirror", "--dry-run"], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("would copy: MBAD\nwould copy: MOK\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("would copy 2, up to date 0, would delete 0"),
        "{stdout}"
    );

    let out = process::run(&toml, &["mirror", "--jobs", "2"], &env).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("failed: MBAD: into the fallback"),
        "{stderr}"
    );
    assert!(stderr.contains("mirror: 2/2 (100%)"), "{stderr}");
    assert!(stdout.contains("copied 1,"), "{stdout}");
    assert!(fallback.stored("labels/MOK.pdf").is_some());
    assert!(!stderr.contains(FB_SECRET_KEY) && !stdout.contains(FB_SECRET_KEY));
}
