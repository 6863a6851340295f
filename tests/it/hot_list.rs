//! `[cache] hot_list`: coming back warm. A gateway drains and writes its hot labels; the
//! next one, on the same real S3 server, loads them in the background before any request
//! asks, each with one storage read, and skips a label the store no longer has without
//! regenerating it.

use std::time::{Duration, Instant};

use crate::support::{self, get_label, pdf_bytes, Responder, S3Server, ANY_SESSION};

#[tokio::test(flavor = "multi_thread")]
async fn after_a_restart_the_hot_labels_are_hits_without_a_request_each_read_once() {
    let s3 = S3Server::start().await;
    let labels: Vec<(String, Vec<u8>)> = (0..5u8)
        .map(|i| (format!("HOTL{i}"), pdf_bytes(10_000 + 1000 * i as usize, i)))
        .collect();
    for (tracking, data) in &labels {
        s3.put_label(tracking, data).await;
    }
    s3.put_label("GONE1", &pdf_bytes(3_000, 50)).await;
    let allow = Responder::allow_all().await;
    let regenerate = Responder::start(500, Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("hot.txt");
    let list_text = list.display().to_string();
    let regenerate_url = regenerate.url();
    let config = || {
        support::s3_config(
            &s3,
            &allow.url(),
            &[
                ("LABEL_GATEWAY_CACHE__HOT_LIST", list_text.as_str()),
                ("LABEL_GATEWAY_REGENERATE__URL", regenerate_url.as_str()),
                ("LABEL_GATEWAY_REGENERATE__TOKEN", "test-regenerate-token"),
            ],
        )
    };

    let first = support::start_gateway(config()).await;
    for tracking in labels.iter().map(|(t, _)| t.as_str()).chain(["GONE1"]) {
        let r = get_label(&first, tracking).cookie(ANY_SESSION).send().await;
        assert_eq!(r.headers()["x-cache"], "MISS");
        r.bytes().await.expect("body");
    }
    // Served from memory once: the hottest.
    let r = get_label(&first, "HOTL3").cookie(ANY_SESSION).send().await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    r.bytes().await.expect("body");
    assert!(first.shutdown().await, "drained");

    let written = std::fs::read_to_string(&list).expect("written on drain");
    let names: Vec<&str> = written.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        names,
        ["HOTL3", "GONE1", "HOTL4", "HOTL2", "HOTL1", "HOTL0"],
        "served first, then the newest"
    );

    // Gone from the store while the gateway was down.
    std::fs::remove_file(s3.bucket_dir().join("labels/GONE1.pdf")).expect("deleted");
    let gets = s3.gets();
    let second = support::start_gateway(config()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for (tracking, _) in &labels {
        while !support::is_cached(&second, tracking).await {
            assert!(Instant::now() < deadline, "{tracking} not warmed in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let warmed = support::metric(
        second.internal_addr(),
        "label_gateway_hot_list_warmed_total",
    );
    assert_eq!(warmed.await, 5);
    assert_eq!(
        s3.gets(),
        gets + 6,
        "each listed label read once (GONE1: a 404)"
    );
    assert!(!support::is_cached(&second, "GONE1").await);
    assert_eq!(regenerate.hits(), 0, "a label the store lost is skipped");

    for (tracking, data) in &labels {
        let r = get_label(&second, tracking)
            .cookie(ANY_SESSION)
            .send()
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-cache"], "HIT");
        assert_eq!(r.bytes().await.unwrap(), *data);
    }
    assert_eq!(s3.gets(), gets + 6, "every print from memory");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_unreadable_hot_list_starts_cold_and_serves() {
    let s3 = S3Server::start().await;
    let data = pdf_bytes(4_000, 60);
    s3.put_label("COLD1", &data).await;
    let allow = Responder::allow_all().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hot.txt"), "# list\n../../etc\nCOLD1\n").expect("list");
    let list = dir.path().join("hot.txt").display().to_string();
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &allow.url(),
        &[("LABEL_GATEWAY_CACHE__HOT_LIST", list.as_str())],
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !support::is_cached(&gw, "COLD1").await {
        assert!(Instant::now() < deadline, "COLD1 not warmed in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A bad line is skipped; the file is replaced on drain even if the cache is empty.
    std::fs::remove_file(dir.path().join("hot.txt")).expect("removed");
    let r = get_label(&gw, "COLD1").cookie(ANY_SESSION).send().await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.bytes().await.unwrap(), data);
    assert!(gw.shutdown().await);
    let written = std::fs::read_to_string(dir.path().join("hot.txt")).expect("written");
    assert!(written.lines().any(|l| l == "COLD1"), "{written}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_writes_its_hot_list_on_sigterm_and_warms_it_when_started_again() {
    use crate::support::process::{s3_toml, GatewayProcess, S3_ENV};
    let s3 = S3Server::start().await;
    let labels: Vec<(String, Vec<u8>)> = (0..3u8)
        .map(|i| (format!("PROC{i}"), pdf_bytes(6_000, 70 + i)))
        .collect();
    for (tracking, data) in &labels {
        s3.put_label(tracking, data).await;
    }
    let allow = Responder::allow_all().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("hot.txt");
    let extra = format!("[cache]\nhot_list = \"{}\"\n", list.display());
    let mut gw = GatewayProcess::start(&s3_toml(&s3, &allow.url(), "", &extra), &S3_ENV);
    // The same addresses after the restart.
    let addr = gw.addr;
    let url = |tracking: &str| format!("http://{addr}/shipping-label/{tracking}/");
    for (tracking, _) in &labels {
        let r = support::client()
            .get(url(tracking))
            .header("cookie", ANY_SESSION)
            .send()
            .await
            .expect("answered");
        assert_eq!(r.headers()["x-cache"], "MISS");
        r.bytes().await.expect("body");
    }

    gw.signal(libc::SIGTERM);
    let status = tokio::task::block_in_place(|| gw.wait(Duration::from_secs(15)));
    assert!(status.success(), "drained and exited: {status}");
    assert!(gw.logs().contains("hot list written"), "{}", gw.logs());
    let gets = s3.gets();
    tokio::task::block_in_place(|| gw.restart());

    let deadline = Instant::now() + Duration::from_secs(10);
    while support::metric(gw.internal, "label_gateway_hot_list_warmed_total").await < 3 {
        assert!(
            Instant::now() < deadline,
            "not warmed in time: {}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s3.gets(), gets + 3, "each label read once");
    for (tracking, data) in &labels {
        let r = support::client()
            .get(url(tracking))
            .header("cookie", ANY_SESSION)
            .send()
            .await
            .expect("answered");
        assert_eq!(r.headers()["x-cache"], "HIT");
        assert_eq!(r.bytes().await.unwrap(), *data);
    }
    assert_eq!(s3.gets(), gets + 3);
}
