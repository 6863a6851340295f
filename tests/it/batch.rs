//! `/shipping-label/batch.pdf` and `batch.zip` against the real S3 server and the real
//! Django test app (its access hook denies `NOTYOURS*` labels to everyone; its
//! regeneration makes `REGEN*` labels). Labels are real PDFs from real writers (reportlab
//! with an embedded font, a barcode and an image; the same rewritten by qpdf with object
//! streams; img2pdf scans), and every merged file is read by lopdf and by independent
//! readers: `qpdf --check`, poppler's `pdfinfo` and `pdftotext`, and pypdf. A missing
//! reader fails the test (`tests/run.sh` installs them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::process::{s3_toml, GatewayProcess};
use crate::support::{self, django::python, get_label, pdf_bytes, s3, Django, S3Server};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const REGEN_TOKEN: &str = "test-regenerate-token";

/// Real labels made by `tests/support/make_labels.py` (specs `TRACKING:KIND:PAGES`).
struct Labels {
    dir: tempfile::TempDir,
    bytes: HashMap<String, Vec<u8>>,
}

impl Labels {
    fn make(specs: &[&str]) -> Labels {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new(python())
            .arg(Path::new(REPO).join("tests/support/make_labels.py"))
            .arg(dir.path())
            .args(specs)
            .status()
            .expect("run make_labels.py");
        assert!(status.success(), "make_labels.py failed");
        let bytes = specs
            .iter()
            .map(|spec| {
                let t = spec.split(':').next().unwrap().to_string();
                let b = std::fs::read(dir.path().join(format!("{t}.pdf"))).expect("label made");
                (t, b)
            })
            .collect();
        Labels { dir, bytes }
    }

    fn path(&self, t: &str) -> PathBuf {
        self.dir.path().join(format!("{t}.pdf"))
    }

    async fn store(&self, s3: &S3Server) {
        for (t, b) in &self.bytes {
            s3.put_label(t, b).await;
        }
    }
}

async fn gateway(
    s3: &S3Server,
    django: &Django,
    extra: &[(&str, &str)],
) -> label_gateway::server::Running {
    support::start_gateway(support::s3_config(s3, &django.check_url(), extra)).await
}

fn batch_url(gw: &label_gateway::server::Running, kind: &str, query: &str) -> String {
    format!("http://{}/shipping-label/batch.{kind}?{query}", gw.addr())
}

async fn get_batch(
    gw: &label_gateway::server::Running,
    kind: &str,
    query: &str,
    cookie: &str,
) -> reqwest::Response {
    support::client()
        .get(batch_url(gw, kind, query))
        .header("cookie", cookie)
        .send()
        .await
        .expect("batch answered")
}

/// Runs a tool the test suite installs; a missing tool fails the test.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is not installed (tests/run.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads `merged` with qpdf and poppler: valid, `page_tokens.len()` pages, page `i`
/// showing `page_tokens[i]` (when `Some`). With `sources`, pypdf also finds every page the
/// same as its source's page, sources in order.
fn check_with_real_readers(
    merged: &[u8],
    sources: Option<&[PathBuf]>,
    page_tokens: &[Option<&str>],
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("merged.pdf");
    std::fs::write(&path, merged).unwrap();
    let file = path.to_str().unwrap();
    let check = run("qpdf", &["--check", file]);
    assert!(
        check.contains("No syntax or stream encoding errors"),
        "{check}"
    );
    let pages = page_tokens.len().to_string();
    let info = run("pdfinfo", &[file]);
    assert!(
        info.lines()
            .any(|l| l.split_whitespace().eq(["Pages:", pages.as_str()])),
        "{info}"
    );
    for (i, token) in page_tokens.iter().enumerate() {
        let n = (i + 1).to_string();
        let text = run("pdftotext", &["-f", &n, "-l", &n, file, "-"]);
        if let Some(token) = token {
            assert!(
                text.contains(token),
                "page {n} should show {token}: {text:?}"
            );
        }
    }
    if let Some(sources) = sources {
        let script = Path::new(REPO).join("tests/support/check_merged_pdf.py");
        let mut args = vec![script.to_str().unwrap(), file];
        args.extend(sources.iter().map(|s| s.to_str().unwrap()));
        let out = run(python().to_str().unwrap(), &args);
        assert_eq!(out.trim(), format!("pages={pages}"));
    }
}

fn lopdf_pages(pdf: &[u8]) -> usize {
    lopdf::Document::load_mem(pdf)
        .expect("lopdf reads the merged file")
        .get_pages()
        .len()
}

async fn metric(gw: &label_gateway::server::Running, name: &str) -> u64 {
    let text = support::metrics(gw.internal_addr()).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn merged_pdf_has_every_page_in_the_order_given_and_real_readers_agree() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let labels = Labels::make(&[
        "RL1:reportlab:3",
        "IMG1:img2pdf:2",
        "OBJ1:objstm:2",
        "RL2:reportlab:1",
    ]);
    labels.store(&s3).await;
    let gw = gateway(&s3, &django, &[]).await;
    let cookie = format!("sessionid={}", django.session("alice"));

    // A repeated number counts once, at its first place.
    let r = get_batch(&gw, "pdf", "t=RL1,IMG1&t=OBJ1&t=RL2&t=RL1", &cookie).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(
        h["content-disposition"],
        "inline; filename=\"labels-4.pdf\""
    );
    assert_eq!(h["cache-control"], "private, no-store");
    assert_eq!(h["x-labels-count"], "4");
    assert!(h.get("x-labels-missing").is_none());
    let merged = r.bytes().await.unwrap();

    assert_eq!(lopdf_pages(&merged), 3 + 2 + 2 + 1);
    let sources: Vec<PathBuf> = ["RL1", "IMG1", "OBJ1", "RL2"]
        .iter()
        .map(|t| labels.path(t))
        .collect();
    check_with_real_readers(
        &merged,
        Some(&sources),
        &[
            Some("RL1-P1"),
            Some("RL1-P2"),
            Some("RL1-P3"),
            None, // scans: no text; pypdf compares their content and images
            None,
            Some("OBJ1-P1"),
            Some("OBJ1-P2"),
            Some("RL2-P1"),
        ],
    );

    // The labels are hot now: the same batch again is the same document.
    let gets = s3.gets();
    let again = get_batch(&gw, "pdf", "t=RL1,IMG1,OBJ1,RL2", &cookie)
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(s3.gets(), gets, "served from the hot cache");
    assert_eq!(lopdf_pages(&again), 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn zip_holds_each_label_stored_as_it_is_from_a_json_post() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let labels = Labels::make(&["ZA1:reportlab:2", "ZB2:img2pdf:1"]);
    labels.store(&s3).await;
    let gw = gateway(&s3, &django, &[]).await;
    let cookie = format!("sessionid={}", django.session("bob"));

    let r = support::client()
        .post(format!("http://{}/shipping-label/batch.zip", gw.addr()))
        .header("cookie", &cookie)
        .json(&serde_json::json!({"tracking": ["ZB2", "ZA1", "ZB2"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"labels-2.zip\""
    );
    assert_eq!(r.headers()["x-labels-count"], "2");
    let zip = r.bytes().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("labels.zip");
    std::fs::write(&file, &zip).unwrap();
    let script = r#"
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
infos = z.infolist()
assert [i.filename for i in infos] == ["ZB2.pdf", "ZA1.pdf"], [i.filename for i in infos]
assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
for i, src in zip(infos, sys.argv[2:]):
    assert z.read(i) == open(src, "rb").read(), i.filename
print("ok")
"#;
    let out = Command::new(python())
        .args(["-c", script])
        .arg(&file)
        .arg(labels.path("ZB2"))
        .arg(labels.path("ZA1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipped Django helper: a short list redirects to a GET URL, a long one is a page
/// whose form POSTs the list. Both lead to a batch the gateway serves.
#[tokio::test(flavor = "multi_thread")]
async fn the_django_print_selected_helper_builds_batches_the_gateway_serves() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let tracking: Vec<String> = (0..60).map(|i| format!("PS{i:03}")).collect();
    for (i, t) in tracking.iter().enumerate() {
        s3.put_label(t, &pdf_bytes(2_000, i as u8)).await;
    }
    let gw = gateway(&s3, &django, &[]).await;
    let cookie = format!("sessionid={}", django.session("carol"));
    let script = r#"
import json, sys
import django
from django.conf import settings
settings.configure()
from label_gateway_django.printing import print_selected_response
labels = sys.argv[1].split(",")
short = print_selected_response(labels[:3], "zip", partial=True)
long = print_selected_response(labels, "zip")
print(json.dumps({"location": short["Location"], "page": long.content.decode()}))
"#;
    let out = Command::new(python())
        .args(["-c", script, &tracking.join(",")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let location = made["location"].as_str().unwrap();
    assert!(
        location.starts_with("/shipping-label/batch.zip?"),
        "{location}"
    );
    let r = support::client()
        .get(format!("http://{}{location}", gw.addr()))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-labels-count"], "3");

    // The page's form, posted as a browser would.
    let page = made["page"].as_str().unwrap();
    assert!(
        page.contains("action=\"/shipping-label/batch.zip\""),
        "{page}"
    );
    let fields: Vec<(&str, &str)> = page
        .split("name=\"t\" value=\"")
        .skip(1)
        .map(|rest| ("t", rest.split('"').next().unwrap()))
        .collect();
    assert_eq!(fields.len(), 60);
    let r = support::client()
        .post(format!("http://{}/shipping-label/batch.zip", gw.addr()))
        .header("cookie", &cookie)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-labels-count"], "60");
    let zip = r.bytes().await.unwrap();
    // 60 entries of 2,000 bytes, each with a header and a directory record.
    assert!(zip.len() > 60 * 2_000 && zip.ends_with(&[0, 0]));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_denied_label_denies_the_whole_batch_before_storage_is_asked() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let labels = Labels::make(&["MINE1:reportlab:1", "NOTYOURS2:reportlab:1"]);
    labels.store(&s3).await;
    let gw = gateway(&s3, &django, &[]).await;
    let cookie = format!("sessionid={}", django.session("dave"));
    let object_requests = || {
        s3.counters.get.load(std::sync::atomic::Ordering::SeqCst)
            + s3.counters.head.load(std::sync::atomic::Ordering::SeqCst)
    };

    let r = get_label(&gw, "MINE1").cookie(&cookie).send().await;
    assert_eq!(r.status(), 200, "the user may read their own label");
    let before = object_requests();
    for kind in ["pdf", "zip"] {
        let r = get_batch(&gw, kind, "t=MINE1&t=NOTYOURS2", &cookie).await;
        assert_eq!(r.status(), 404);
        assert!(r.headers().get("x-labels-count").is_none());
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("MINE1") && !body.contains("NOTYOURS2"),
            "a denied batch names no label: {body}"
        );
    }
    let r = get_batch(&gw, "pdf", "t=MINE1", "sessionid=forged-session-0123456789").await;
    assert_eq!(r.status(), 404);
    let r = get_batch(&gw, "pdf", "t=MINE1", "").await;
    assert_eq!(r.status(), 404, "no session");
    assert_eq!(object_requests(), before, "storage was never asked");

    let redirecting = gateway(&s3, &django, &[("LABEL_GATEWAY_AUTH__ON_DENY", "redirect")]).await;
    let r = get_batch(&redirecting, "pdf", "t=MINE1&t=NOTYOURS2", &cookie).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "/accounts/login/?next=/shipping-label/batch.pdf%3Ft%3DMINE1%26t%3DNOTYOURS2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_after_single_prints_makes_no_extra_app_calls() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let labels = Labels::make(&["SP1:reportlab:1", "SP2:reportlab:2"]);
    labels.store(&s3).await;
    let gw = gateway(&s3, &django, &[]).await;
    let cookie = format!("sessionid={}", django.session("erin"));
    for t in ["SP1", "SP2"] {
        assert_eq!(get_label(&gw, t).cookie(&cookie).send().await.status(), 200);
    }
    django.reset_stats().await;
    let r = get_batch(&gw, "pdf", "t=SP1,SP2", &cookie).await;
    assert_eq!(r.status(), 200);
    assert_eq!(lopdf_pages(&r.bytes().await.unwrap()), 3);
    assert_eq!(
        django.access_calls().await,
        0,
        "every verdict came from the cache"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_labels_fail_the_batch_with_their_list_unless_partial() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let labels = Labels::make(&["HAVE1:reportlab:2"]);
    labels.store(&s3).await;
    let url = django.url("/internal/label-regenerate/{tracking}/");
    let gw = gateway(
        &s3,
        &django,
        &[
            ("LABEL_GATEWAY_REGENERATE__URL", url.as_str()),
            ("LABEL_GATEWAY_REGENERATE__TOKEN", REGEN_TOKEN),
        ],
    )
    .await;
    let cookie = format!("sessionid={}", django.session("fay"));
    // HAVE1 is stored, REGEN7 is made by the app, GONE1 and GONE2 exist nowhere.
    let query = "t=HAVE1,GONE1,REGEN7,GONE2";

    let r = get_batch(&gw, "pdf", query, &cookie).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let page = r.text().await.unwrap();
    let (g1, g2) = (page.find("GONE1").unwrap(), page.find("GONE2").unwrap());
    assert!(g1 < g2, "listed in the order asked: {page}");
    assert!(
        !page.contains("HAVE1") && !page.contains("REGEN7"),
        "{page}"
    );

    let r = support::client()
        .get(batch_url(&gw, "pdf", query))
        .header("cookie", &cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["missing"], serde_json::json!(["GONE1", "GONE2"]));

    let r = get_batch(&gw, "pdf", &format!("{query}&partial=1"), &cookie).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-labels-missing"], "GONE1, GONE2");
    assert_eq!(r.headers()["x-labels-missing-count"], "2");
    assert_eq!(r.headers()["x-labels-count"], "2");
    let merged = r.bytes().await.unwrap();
    assert_eq!(lopdf_pages(&merged), 3);
    check_with_real_readers(
        &merged,
        None,
        &[Some("HAVE1-P1"), Some("HAVE1-P2"), Some("REGEN7")],
    );
    assert_eq!(
        django.regenerate_calls().await,
        3,
        "REGEN7 once, GONE1 and GONE2 once each"
    );

    let r = get_batch(&gw, "pdf", "t=GONE1&partial=1", &cookie).await;
    assert_eq!(r.status(), 404, "nothing to serve");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_stored_label_fails_the_batch_never_a_broken_file() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let labels = Labels::make(&["GOOD1:reportlab:1"]);
    labels.store(&s3).await;
    // Starts like a PDF, is not one.
    s3.put_label("CORRUPT1", &pdf_bytes(30_000, 9)).await;
    let gw = gateway(&s3, &django, &[]).await;
    let cookie = format!("sessionid={}", django.session("gus"));

    // First in the list: the answer has not started, so it is a 502 naming the label.
    let r = get_batch(&gw, "pdf", "t=CORRUPT1,GOOD1", &cookie).await;
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("CORRUPT1") && body.contains("not a readable PDF"),
        "{body}"
    );

    // Later in the list: the download breaks off; the client never holds a file that
    // looks complete.
    let r = get_batch(&gw, "pdf", "t=GOOD1,CORRUPT1", &cookie).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the body must end in an error");
    assert_eq!(metric(&gw, "label_gateway_batches_cut_total").await, 1);

    // The ZIP reads no PDF, but a stored object that is not one at all fails it too.
    s3.put_label("HTML1", b"<html>oops</html>").await;
    let r = get_batch(&gw, "zip", "t=HTML1", &cookie).await;
    assert_eq!(r.status(), 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tracking_number_is_checked_before_auth_and_the_limit_is_413() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let gw = gateway(&s3, &django, &[("LABEL_GATEWAY_BATCH__MAX_LABELS", "3")]).await;
    let cookie = format!("sessionid={}", django.session("hal"));
    django.reset_stats().await;

    let r = get_batch(&gw, "pdf", "t=OK1&t=bad.one&t=x%2F..", &cookie).await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("\"bad.one\""),
        "names the first bad one: {body}"
    );
    let r = get_batch(&gw, "pdf", "t=A,B,C,A&t=D", &cookie).await;
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("more than 3 labels"));
    let r = get_batch(&gw, "zip", "", &cookie).await;
    assert_eq!(r.status(), 400, "no tracking numbers");
    assert_eq!(
        django.access_calls().await,
        0,
        "none of these reached the app"
    );
    assert_eq!(s3.gets(), 0);

    let c = support::client();
    let url = format!("http://{}/shipping-label/batch.pdf", gw.addr());
    let r = c.put(&url).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");
    let r = c
        .post(&url)
        .header("cookie", &cookie)
        .header("content-type", "text/plain")
        .body("t=A")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = c
        .post(&url)
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("t=".to_string() + &"A".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "a body over the list's bound");
}

/// `GET` of a batch on a raw connection that reads the response head and then nothing.
async fn stalled_batch(
    addr: std::net::SocketAddr,
    path: &str,
    cookie: &str,
) -> (tokio::net::TcpStream, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small receive buffer, so the gateway is held back soon.
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(support::HANG, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the head");
        head.extend_from_slice(&buf[..n]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// Waits until `count()` stays the same for a while (bounded).
async fn settled(count: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + support::HANG;
    let mut last = count();
    let mut same = 0;
    while same < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count();
        if now == last {
            same += 1;
        } else {
            same = 0;
            last = now;
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_mid_batch_stops_the_fetching_and_frees_its_slot() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let n = 120;
    let tracking: Vec<String> = (0..n).map(|i| format!("DC{i:03}")).collect();
    for (i, t) in tracking.iter().enumerate() {
        s3.put_label(t, &pdf_bytes(256 * 1024, i as u8)).await;
    }
    let gw = gateway(
        &s3,
        &django,
        &[
            ("LABEL_GATEWAY_CACHE__ENABLED", "false"),
            ("LABEL_GATEWAY_BATCH__MAX_CONCURRENT", "1"),
            ("LABEL_GATEWAY_BATCH__FETCH_AHEAD", "2"),
        ],
    )
    .await;
    let cookie = format!("sessionid={}", django.session("ivy"));
    let path = format!("/shipping-label/batch.zip?t={}", tracking.join(","));

    let (conn, head) = stalled_batch(gw.addr(), &path, &cookie).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Held back by its client, the producer stops well short of the end.
    let held = settled(|| s3.gets()).await;
    assert!(
        held < n,
        "fetched {held} of {n} for a client that reads nothing"
    );

    // Its slot is taken: another batch is told to come back.
    let r = get_batch(&gw, "zip", "t=DC000", &cookie).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));

    drop(conn);
    let deadline = Instant::now() + support::HANG;
    while metric(&gw, "label_gateway_batches_abandoned_total").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the producer never noticed the client left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = settled(|| s3.gets()).await;
    assert_eq!(after, held, "no fetch after the client left");

    let r = get_batch(&gw, "zip", "t=DC000", &cookie).await;
    assert_eq!(r.status(), 200, "the slot is free again");
}

/// The binary's own log: one access line per batch with its label count, and a batch cut
/// by a corrupt label names it.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_logs_one_access_line_with_its_count_and_names_a_corrupt_label() {
    let s3 = S3Server::start().await;
    let check = support::Responder::allow_all().await;
    let labels = Labels::make(&["LOG1:reportlab:1", "LOG2:img2pdf:1"]);
    labels.store(&s3).await;
    s3.put_label("LOGBAD", &pdf_bytes(10_000, 3)).await;
    let toml = s3_toml(&s3, &check.url(), "", "[regenerate]\nurl = \"\"\n");
    let gw = GatewayProcess::start(
        &toml,
        &[
            ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
            ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
        ],
    );
    let c = support::client();
    let get = |q: &str| {
        c.get(format!("http://{}/shipping-label/batch.pdf?{q}", gw.addr))
            .header("cookie", support::ANY_SESSION)
            .send()
    };
    let r = get("t=LOG1,LOG2,LOG1").await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = get("t=LOG1,LOGBAD").await.unwrap();
    assert!(r.bytes().await.is_err());

    let deadline = Instant::now() + support::HANG;
    loop {
        let logs = gw.logs();
        let access: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("path=\"/shipping-label/batch.pdf\""))
            .collect();
        let cut = logs.lines().find(|l| l.contains("batch cut short"));
        if let (2, Some(cut)) = (access.len(), cut) {
            assert!(
                access[0].contains("status=200") && access[0].contains("labels=2"),
                "{}",
                access[0]
            );
            assert!(access[1].contains("labels=2"), "{}", access[1]);
            assert!(
                cut.contains("LOGBAD") && cut.contains("not a readable PDF"),
                "{cut}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "log lines missing:\n{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The batch's one access line names the user the app's session check gave, as a single
/// print's line does (the audit trail covers waves too).
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_access_line_names_the_audit_user() {
    let django = support::Django::start();
    let s3 = S3Server::start().await;
    s3.put_label("AUDB1", &pdf_bytes(3_000, 31)).await;
    s3.put_label("AUDB2", &pdf_bytes(3_000, 32)).await;
    let cookie = format!("sessionid={}", django.session("waveprinter"));
    let toml = s3_toml(&s3, &django.check_url(), "", "[regenerate]\nurl = \"\"\n");
    let gw = GatewayProcess::start(
        &toml,
        &[
            ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
            ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
        ],
    );
    let r = support::client()
        .get(format!(
            "http://{}/shipping-label/batch.zip?t=AUDB1,AUDB2",
            gw.addr
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let deadline = Instant::now() + support::HANG;
    loop {
        let logs = gw.logs();
        if let Some(line) = logs
            .lines()
            .find(|l| l.contains("path=\"/shipping-label/batch.zip\""))
        {
            assert!(line.contains("user=\"waveprinter\""), "{line}");
            assert!(line.contains("labels=2"), "{line}");
            assert!(!line.contains(&cookie[10..]), "never the cookie: {line}");
            break;
        }
        assert!(Instant::now() < deadline, "no access line:\n{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
