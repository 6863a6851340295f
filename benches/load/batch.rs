//! The batch rows and the batch memory run.
//!
//! Rows: 50-label batches (one merged PDF, and one ZIP) at a few connections, against the
//! same 50 labels fetched one by one, through one gateway with the cache on and the labels
//! hot, driven by one small client (reqwest, keep-alive, one connection per task; the same
//! client for all three, so its own cost weighs on each alike). Reported: labels/s, the
//! gateway's CPU per label and its peak RSS. Every response is checked: status, label
//! count, and a body of the probed length (the probe's PDF read by lopdf: 50 pages).
//!
//! Memory run: one batch of 500 labels of 50 KiB, then ten at once, as a merged PDF and as
//! a ZIP, through a gateway with the cache off (so the peak is the batches' own, not cached
//! labels) and `batch.max_concurrent` raised to 10. Judged against
//! `batch.max_labels × cache.max_object_bytes`, what a batch that held every label would
//! reach.
//!
//! The labels are real one-page PDFs (a font, a text, a barcode of rectangles) padded to
//! exactly 50 KiB, so the merge parses and rewrites each as it would a carrier's label.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::pdf_label::label_pdf;
use crate::peers::{put_label, GatewayChild};
use crate::procs::{self, PeakRss};
use crate::report::mib;
use crate::servers::Responder;
use crate::{Settings, ANY_SESSION, SMALL_LEN};

/// Labels written for the memory run; the rows use the first `PER_BATCH`.
const LABELS: usize = 500;
const PER_BATCH: usize = 50;
const CONNECTIONS: [usize; 3] = [1, 4, 8];
/// Batches at once in the memory run.
const CONCURRENT: usize = 10;

fn tracking(i: usize) -> String {
    format!("BATCH{i:04}")
}

/// What one row measured at one connection count.
struct RowRun {
    labels: u64,
    responses: u64,
    elapsed: Duration,
    cpu_per_label_us: f64,
    peak_rss: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Singles,
    Pdf,
    Zip,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Singles => "50 labels one by one",
            Mode::Pdf => "batch.pdf of 50",
            Mode::Zip => "batch.zip of 50",
        }
    }
}

/// Writes the labels, runs the rows and the memory run, prints both.
pub async fn run(
    s3: SocketAddr,
    responder: &Responder,
    dir: &std::path::Path,
    s: &Settings,
) -> anyhow::Result<()> {
    eprintln!("  writing the batch run's {LABELS} labels");
    let names: Vec<String> = (0..LABELS).map(tracking).collect();
    for chunk in names.chunks(32) {
        let mut puts = tokio::task::JoinSet::new();
        for name in chunk {
            let name = name.clone();
            puts.spawn(async move { put_label(s3, &name, &label_pdf(&name, SMALL_LEN)).await });
        }
        while let Some(done) = puts.join_next().await {
            done??;
        }
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(64)
        .build()?;

    let gw = GatewayChild::start(
        "gateway-batch",
        dir,
        s3,
        &responder.check_url(),
        true,
        &[("LABEL_GATEWAY_BATCH__MAX_CONCURRENT", "16".into())],
    )?;
    rows(&gw, &client, s).await?;
    drop(gw);

    memory(s3, responder, dir, &client).await
}

async fn rows(gw: &GatewayChild, client: &reqwest::Client, s: &Settings) -> anyhow::Result<()> {
    let first: Vec<String> = (0..PER_BATCH).map(tracking).collect();
    // Warm the labels, then learn (and check) the batch answers' lengths.
    for t in &first {
        single(client, gw.addr, t).await?;
    }
    let hot = client
        .get(format!("http://{}/shipping-label/{}/", gw.addr, first[0]))
        .header("cookie", format!("sessionid={ANY_SESSION}"))
        .send()
        .await?;
    if hot.headers().get("x-cache").and_then(|v| v.to_str().ok()) != Some("HIT") {
        bail!("batch rows: the labels did not become hot");
    }
    let pdf_url = batch_url(gw.addr, "pdf", &first);
    let zip_url = batch_url(gw.addr, "zip", &first);
    let pdf = fetch(client, &pdf_url, PER_BATCH).await?;
    let pages = lopdf::Document::load_mem(&pdf)
        .context("the merged probe is not a PDF lopdf reads")?
        .get_pages()
        .len();
    if pages != PER_BATCH {
        bail!("the merged probe has {pages} pages, not {PER_BATCH}");
    }
    let zip_len = fetch(client, &zip_url, PER_BATCH).await?.len();

    let mut results: Vec<(Mode, usize, RowRun)> = Vec::new();
    for conns in CONNECTIONS {
        for mode in [Mode::Singles, Mode::Pdf, Mode::Zip] {
            eprintln!(
                "  batch row: {:<22} {conns:>2} connections, {} s",
                mode.name(),
                s.secs
            );
            let run = drive(
                gw,
                client,
                mode,
                conns,
                s.secs,
                &first,
                (pdf.len(), zip_len),
            )
            .await?;
            results.push((mode, conns, run));
        }
    }

    println!();
    println!(
        "Batch rows: {PER_BATCH}-label batches against the same {PER_BATCH} labels fetched one by \
         one, all hot in the gateway's cache (shipped config, batch.max_concurrent 16); one \
         reqwest client, one connection per task, {} s per run, every response checked. CPU is \
         the gateway's own per label; RSS its peak during the run.",
        s.secs
    );
    println!();
    println!("| row                   | conns |   labels/s | responses/s | CPU/label | peak RSS |");
    println!("|-----------------------|------:|-----------:|------------:|----------:|---------:|");
    for (mode, conns, r) in &results {
        let secs = r.elapsed.as_secs_f64().max(1e-9);
        println!(
            "| {:<21} | {conns:>5} | {:>10.0} | {:>11.0} | {:>6.0} µs | {:>8} |",
            mode.name(),
            r.labels as f64 / secs,
            r.responses as f64 / secs,
            r.cpu_per_label_us,
            mib(r.peak_rss)
        );
    }
    Ok(())
}

/// `conns` tasks requesting for `secs` seconds; every response checked.
async fn drive(
    gw: &GatewayChild,
    client: &reqwest::Client,
    mode: Mode,
    conns: usize,
    secs: u64,
    labels: &[String],
    (pdf_len, zip_len): (usize, usize),
) -> anyhow::Result<RowRun> {
    let pid = gw.guard.pid();
    let cpu_before = procs::cpu_seconds(pid).unwrap_or(0.0);
    let peak = PeakRss::start(&[pid]);
    let began = Instant::now();
    let deadline = began + Duration::from_secs(secs);
    let done_labels = Arc::new(AtomicU64::new(0));
    let done_responses = Arc::new(AtomicU64::new(0));
    let pdf_url = batch_url(gw.addr, "pdf", labels);
    let zip_url = batch_url(gw.addr, "zip", labels);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..conns {
        let (client, labels) = (client.clone(), labels.to_vec());
        let (pdf_url, zip_url) = (pdf_url.clone(), zip_url.clone());
        let (done_labels, done_responses) = (done_labels.clone(), done_responses.clone());
        let addr = gw.addr;
        tasks.spawn(async move {
            let mut next = task * 7;
            while Instant::now() < deadline {
                let n = match mode {
                    Mode::Singles => {
                        single(&client, addr, &labels[next % labels.len()]).await?;
                        next += 1;
                        1
                    }
                    Mode::Pdf => check_len(fetch(&client, &pdf_url, labels.len()).await?, pdf_len)?,
                    Mode::Zip => check_len(fetch(&client, &zip_url, labels.len()).await?, zip_len)?,
                };
                done_labels.fetch_add(n as u64, Ordering::Relaxed);
                done_responses.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = began.elapsed();
    let peak_rss = peak.finish();
    let labels = done_labels.load(Ordering::Relaxed);
    let cpu = procs::cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    Ok(RowRun {
        labels,
        responses: done_responses.load(Ordering::Relaxed),
        elapsed,
        cpu_per_label_us: cpu * 1e6 / labels.max(1) as f64,
        peak_rss,
    })
}

fn check_len(body: Vec<u8>, want: usize) -> anyhow::Result<usize> {
    if body.len() != want {
        bail!("a batch answered {} bytes, the probe {want}", body.len());
    }
    Ok(PER_BATCH)
}

async fn single(client: &reqwest::Client, addr: SocketAddr, t: &str) -> anyhow::Result<()> {
    let r = client
        .get(format!("http://{addr}/shipping-label/{t}/"))
        .header("cookie", format!("sessionid={ANY_SESSION}"))
        .send()
        .await?;
    let status = r.status();
    let body = r.bytes().await?;
    if status != 200 || body.len() != SMALL_LEN {
        bail!("{t}: {status} with {} bytes", body.len());
    }
    Ok(())
}

fn batch_url(addr: SocketAddr, kind: &str, labels: &[String]) -> String {
    format!(
        "http://{addr}/shipping-label/batch.{kind}?t={}",
        labels.join(",")
    )
}

/// One batch, read whole; checks the status and `X-Labels-Count`.
async fn fetch(client: &reqwest::Client, url: &str, count: usize) -> anyhow::Result<Vec<u8>> {
    let r = client
        .get(url)
        .header("cookie", format!("sessionid={ANY_SESSION}"))
        .send()
        .await?;
    let status = r.status();
    let labels = r
        .headers()
        .get("x-labels-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let body = r.bytes().await.context("batch body")?;
    if status != 200 || labels != Some(count) {
        bail!("batch answered {status} with X-Labels-Count {labels:?}");
    }
    Ok(body.to_vec())
}

/// One 500-label batch, then ten at once, per format, each through a gateway of its own
/// started for it (so "idle" is a fresh process's, and nothing an earlier run left in the
/// allocator hides a peak); the gateway's peak RSS of each.
async fn memory(
    s3: SocketAddr,
    responder: &Responder,
    dir: &std::path::Path,
    client: &reqwest::Client,
) -> anyhow::Result<()> {
    let all: Vec<String> = (0..LABELS).map(tracking).collect();
    let start = || {
        GatewayChild::start(
            "gateway-batch-memory",
            dir,
            s3,
            &responder.check_url(),
            false,
            &[(
                "LABEL_GATEWAY_BATCH__MAX_CONCURRENT",
                CONCURRENT.to_string(),
            )],
        )
    };
    let config = start()?.config;
    let bound = config.batch.max_labels as u64 * config.cache.max_object_bytes.as_u64();
    println!();
    println!(
        "Batch memory run: {LABELS} labels of {} KiB per batch, cache off (every label read \
         from the S3 server; the peak is the batches' own), fetch_ahead {}, a fresh gateway \
         per line; bound batch.max_labels × cache.max_object_bytes = {}:",
        SMALL_LEN / 1024,
        config.batch.fetch_ahead,
        mib(bound)
    );
    println!();
    println!("| batches at once | format | gateway RSS idle |     peak | above idle |   time | verdict |");
    println!("|----------------:|--------|-----------------:|---------:|-----------:|-------:|---------|");
    for kind in ["pdf", "zip"] {
        for at_once in [1, CONCURRENT] {
            let gw = start()?;
            let pid = gw.guard.pid();
            let url = batch_url(gw.addr, kind, &all);
            let idle = procs::rss(pid).unwrap_or(0);
            let peak = PeakRss::start(&[pid]);
            let began = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..at_once {
                let (client, url) = (client.clone(), url.clone());
                tasks.spawn(async move { fetch(&client, &url, LABELS).await });
            }
            let mut lengths = Vec::new();
            let mut one = Vec::new();
            while let Some(done) = tasks.join_next().await {
                one = done??;
                lengths.push(one.len());
            }
            let elapsed = began.elapsed();
            let peak = peak.finish();
            if lengths.iter().any(|&len| len != one.len()) {
                bail!("batch memory run: the {kind} answers differ in length: {lengths:?}");
            }
            if kind == "pdf" {
                let pages = lopdf::Document::load_mem(&one)
                    .context("the 500-label PDF is not one lopdf reads")?
                    .get_pages()
                    .len();
                if pages != LABELS {
                    bail!("the 500-label PDF has {pages} pages");
                }
            }
            println!(
                "| {at_once:>15} | {kind:<6} | {:>16} | {:>8} | {:>10} | {:>4.1} s | {} |",
                mib(idle),
                mib(peak),
                mib(peak.saturating_sub(idle)),
                elapsed.as_secs_f64(),
                if peak < bound / 10 {
                    "under a tenth of the bound"
                } else {
                    "MISSES (over a tenth of the bound)"
                }
            );
        }
    }
    Ok(())
}
