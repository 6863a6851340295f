//! The soak: 256 keep-alive connections against one gateway, each request drawn at random
//! from a mix of cache hits, cache misses, denied sessions and missing labels. Every
//! response is checked against what its kind must get; one unexpected status (or a label
//! byte sent to a denied session) fails the bench.
//!
//! The load runs a warm-up (40 s: the cache fills in seconds, but session verdicts live
//! 30 s and connection pools grow to the peak concurrency seen), then the judged minute.
//! The gateway's RSS is sampled every second; across the judged minute it must be flat. A
//! leak lifts the whole curve, its highs and its lows; a process at steady state has
//! bumps of a few MiB (the allocator's arenas under the cache's churn) that come back
//! down. So the run is called growing when the second half's peak *and* its floor both
//! exceed the first half's by more than allocator noise; a bump lifts only the peak.
//!
//! The mix (per request): 50% a hot label (16 labels, always cached after their first
//! request), 25% a cold label (4,000 labels, 195 MiB, against a cache held at 64 MiB for
//! this run so that most of them miss and the cache keeps evicting), 15% a hot label with a
//! session the check endpoint denies (404, never a byte of the label), 10% a tracking
//! number storage does not have, whose regeneration the app refuses (404).
//!
//! The faulted variant (`LOAD_SOAK_FAULTS=1`, driven by `faults.rs`) runs the same mix while
//! the primary store resets connections, stalls and answers 503 in turns, and restarts the
//! gateway once through its sockets. A stale answer (`X-Cache: STALE`) or a fallback
//! answer is expected; so is a 5xx for a label that was neither cached nor mirrored, and a
//! body cut within a few seconds of the proxy resetting every open storage connection. A
//! 5xx for a label that was cached (a hot label this process served) or mirrored (every
//! label, when a fallback bucket holds them all) is not. A request on a kept-alive
//! connection the draining gateway closed before any byte of its answer is sent again on
//! a new connection (counted), as nginx does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::faults::{FaultProxy, Mode};
use crate::procs::{self, PeakRss};
use crate::report;

pub const CONNECTIONS: usize = 256;
pub const HOT: usize = 16;
pub const COLD: usize = 4000;
/// The cache size of the soak's gateway: well below the cold set, so it keeps evicting.
pub const CACHE_BYTES: &str = "64MiB";
/// How far the second half's RSS peak and floor may exceed the first half's and still be
/// called flat: the larger of this and 1.5% (allocator noise). At some 300,000 requests per
/// half, that bounds a leak to under 10 bytes per request.
const FLAT_SLACK: u64 = 2 * 1024 * 1024;

/// The shortest judged window: each half must hold enough samples to have a peak.
const MIN_JUDGED_SECS: u64 = 20;
/// The warm-up a judged soak needs: longer than the 30 s session verdicts live.
pub const WARMUP_SECS: u64 = 40;

/// A soak label: a PDF head naming its tracking number, then a tail shared by all, so a
/// body is checked without holding 4,000 copies.
pub struct Labels {
    tail: Vec<u8>,
}

impl Labels {
    pub fn new(tail: Vec<u8>) -> Labels {
        Labels { tail }
    }

    pub fn hot(i: usize) -> String {
        format!("SOAKHOT{i:03}")
    }

    pub fn cold(i: usize) -> String {
        format!("SOAKCOLD{i:05}")
    }

    fn head(tracking: &str) -> String {
        format!("%PDF-1.4\n%{tracking}\n")
    }

    /// The bytes stored for `tracking`.
    pub fn body(&self, tracking: &str) -> Vec<u8> {
        let head = Self::head(tracking);
        let mut v = head.as_bytes().to_vec();
        v.extend_from_slice(&self.tail[head.len()..]);
        v
    }

    fn matches(&self, tracking: &str, body: &[u8]) -> bool {
        let head = Self::head(tracking);
        body.len() == self.tail.len()
            && body.starts_with(head.as_bytes())
            && body[head.len()..] == self.tail[head.len()..]
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Hot,
    Cold,
    Denied,
    Missing,
}

/// Counters shared by all connections.
#[derive(Default)]
struct Tally {
    hot_hit: AtomicU64,
    hot_miss: AtomicU64,
    cold_hit: AtomicU64,
    cold_miss: AtomicU64,
    denied: AtomicU64,
    missing: AtomicU64,
    unexpected: AtomicU64,
    reconnects: AtomicU64,
    /// Faulted runs: answers by the proxy's mode when they came (pass, reset, stall, 5xx)
    /// and kind (label served, of which stale, expected 5xx, unexpected).
    by_mode: [[AtomicU64; 4]; 4],
    /// Requests sent again after a kept-alive connection closed before their answer.
    resent: AtomicU64,
    /// Bodies cut just after the proxy reset every storage connection.
    cut: AtomicU64,
    /// For each hot label, the gateway generation (+1) that last served it: served by the
    /// running process means cached there.
    hot_served: [AtomicU64; HOT],
    /// The first few unexpected responses, for the report.
    examples: Mutex<Vec<String>>,
}

impl Tally {
    fn unexpected(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut v) = self.examples.lock() {
            if v.len() < 5 {
                v.push(what);
            }
        }
    }
}

pub struct Settings {
    /// Load before the judged window; its samples are printed, not judged.
    pub warmup_secs: u64,
    /// The judged window.
    pub secs: u64,
    pub allowed_cookie: &'static str,
    /// The faulted variant.
    pub faults: Option<Faulted>,
}

/// What the faulted soak shares with the load: the proxy (its mode), which gateway process
/// runs, and whether every label is mirrored.
pub struct Faulted {
    pub proxy: Arc<FaultProxy>,
    /// The running gateway's pid (it changes at the restart).
    pub pid: Arc<AtomicU32>,
    /// How many restarts so far.
    pub generation: Arc<AtomicU64>,
    /// When the proxy last changed mode, in ms since the soak began.
    pub changed_ms: Arc<AtomicU64>,
    /// Every label is also in a fallback bucket the gateway reads.
    pub mirrored: bool,
}

fn mode_slot(m: Mode) -> usize {
    match m {
        Mode::Pass => 0,
        Mode::Reset => 1,
        Mode::Stall => 2,
        Mode::Error5xx => 3,
    }
}

/// Runs the soak against the gateway at `addr` (process `pid`, metrics on `internal`) and
/// prints its report. Fails on any unexpected response or an RSS that grew across the run.
pub async fn run(
    addr: SocketAddr,
    internal: SocketAddr,
    pid: u32,
    labels: Arc<Labels>,
    s: &Settings,
) -> anyhow::Result<()> {
    println!();
    println!(
        "Soak: {CONNECTIONS} connections for {} s of warm-up then {} s judged, every request \
         drawn at random: 50% one of {HOT} hot labels, 25% one of {COLD} cold labels \
         (cache.max_bytes {CACHE_BYTES} for this run, so most miss), 15% a denied session, 10% \
         a missing label that the app will not regenerate. Every response checked.",
        s.warmup_secs, s.secs
    );
    let tally = Arc::new(Tally::default());
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let began = Instant::now();
    let until = began + Duration::from_secs(s.warmup_secs + s.secs);

    let samples = Arc::new(Mutex::new(Vec::<(f64, u64)>::new()));
    // The faulted soak's gateway changes process at its restart.
    let current = s
        .faults
        .as_ref()
        .map_or_else(|| Arc::new(AtomicU32::new(pid)), |f| f.pid.clone());
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(rss) = procs::rss(current.load(Ordering::SeqCst)) else {
                    continue;
                };
                if let Ok(mut v) = samples.lock() {
                    v.push((began.elapsed().as_secs_f64(), rss));
                }
            }
        })
    };
    let peak = PeakRss::start(&[pid]);

    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let (labels, tally, latencies) = (labels.clone(), tally.clone(), latencies.clone());
            let cookie = s.allowed_cookie;
            let faults = s.faults.as_ref().map(|f| FaultView {
                proxy: f.proxy.clone(),
                generation: f.generation.clone(),
                changed_ms: f.changed_ms.clone(),
                mirrored: f.mirrored,
                began,
            });
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let result = connection(
                    addr,
                    i,
                    cookie,
                    &labels,
                    until,
                    &tally,
                    &mut mine,
                    faults.as_ref(),
                )
                .await;
                if let Ok(mut all) = latencies.lock() {
                    all.extend_from_slice(&mine);
                }
                result
            })
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tally.unexpected(format!("connection failed: {e:#}")),
            Err(e) => tally.unexpected(format!("connection task: {e}")),
        }
    }
    let elapsed = began.elapsed();
    let peak_rss = peak.finish();
    sampler.abort();
    let cache_line = cache_metrics(internal)
        .await
        .unwrap_or_else(|e| format!("unknown ({e:#})"));

    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let kinds = [
        n(&tally.hot_hit) + n(&tally.hot_miss),
        n(&tally.cold_hit) + n(&tally.cold_miss),
        n(&tally.denied),
        n(&tally.missing),
    ];
    let total: u64 = kinds.iter().sum::<u64>() + n(&tally.unexpected);
    let mut lat = latencies.lock().map(|v| v.clone()).unwrap_or_default();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(f64::NAN, |&us| f64::from(us))
    };
    println!(
        "  {total} requests in {:.1} s ({:.0} req/s); latency p50 {}, p99 {}, p99.9 {}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        report::latency(pct(0.50)),
        report::latency(pct(0.99)),
        report::latency(pct(0.999)),
    );
    println!(
        "  hot labels  {:>8} (200: {} HIT, {} MISS)",
        kinds[0],
        n(&tally.hot_hit),
        n(&tally.hot_miss)
    );
    println!(
        "  cold labels {:>8} (200: {} HIT, {} MISS)",
        kinds[1],
        n(&tally.cold_hit),
        n(&tally.cold_miss)
    );
    println!("  denied      {:>8} (404, no label byte)", n(&tally.denied));
    println!("  missing     {:>8} (404)", n(&tally.missing));
    println!(
        "  unexpected  {:>8} (reconnects: {})",
        n(&tally.unexpected),
        n(&tally.reconnects)
    );
    if s.faults.is_some() {
        println!(
            "  resent after a keep-alive close {}, bodies cut at a storage reset {}",
            n(&tally.resent),
            n(&tally.cut)
        );
        println!("  | storage mode | labels served | of which STALE | expected 5xx | unexpected |");
        println!("  |---|---:|---:|---:|---:|");
        for (m, name) in ["passing", "resetting", "stalling", "answering 503"]
            .iter()
            .enumerate()
        {
            let row = &tally.by_mode[m];
            println!(
                "  | {name} | {} | {} | {} | {} |",
                n(&row[0]),
                n(&row[1]),
                n(&row[2]),
                n(&row[3])
            );
        }
    }
    if let Ok(examples) = tally.examples.lock() {
        for e in examples.iter() {
            println!("    {e}");
        }
    }

    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    let warm = s.warmup_secs as f64;
    let judged_samples: Vec<(f64, u64)> = samples
        .iter()
        .copied()
        .filter(|&(t, _)| t >= warm)
        .collect();
    let trend = Trend::of(&judged_samples);
    print!("  gateway RSS, every 5 s:");
    for (t, rss) in samples.iter().step_by(5) {
        print!(" {:.0}s {:.1}", t, *rss as f64 / f64::from(1u32 << 20));
    }
    println!(" (MiB); peak {}", report::mib(peak_rss));
    println!("  label cache at the end (from /metrics): {cache_line}");
    // Without the warm-up the gateway is not at steady state yet: the trend is printed,
    // not judged.
    let judged = s.warmup_secs >= WARMUP_SECS && s.secs >= MIN_JUDGED_SECS;
    let flat = match &trend {
        Some(t) => {
            println!(
                "  RSS over the judged {} s (from {:.0} s): first half {}-{}, second half \
                 {}-{} (peak {:+.1} MiB, floor {:+.1} MiB); slope {:+.2} MiB/min: {}",
                s.secs,
                warm,
                report::mib(t.first_floor),
                report::mib(t.first_peak),
                report::mib(t.second_floor),
                report::mib(t.second_peak),
                (t.second_peak as f64 - t.first_peak as f64) / f64::from(1u32 << 20),
                (t.second_floor as f64 - t.first_floor as f64) / f64::from(1u32 << 20),
                t.slope_mib_per_min,
                match (judged, t.flat()) {
                    (false, _) => "not judged (needs the 40 s warm-up and 20 s judged)",
                    (true, true) => "flat",
                    (true, false) => "GROWING",
                }
            );
            !judged || t.flat()
        }
        None if !judged => true,
        None => {
            println!("  RSS trend: too few samples");
            false
        }
    };
    if n(&tally.unexpected) > 0 {
        bail!("soak: {} unexpected responses", n(&tally.unexpected));
    }
    if n(&tally.cold_miss) == 0 || n(&tally.hot_hit) == 0 || kinds.contains(&0) {
        bail!(
            "soak: the mix did not include every kind of request (hits, misses, denied, missing)"
        );
    }
    if !flat {
        bail!("soak: gateway RSS grew across the run");
    }
    Ok(())
}

/// How RSS moved across the judged window.
struct Trend {
    first_peak: u64,
    second_peak: u64,
    first_floor: u64,
    second_floor: u64,
    slope_mib_per_min: f64,
}

impl Trend {
    fn of(samples: &[(f64, u64)]) -> Option<Trend> {
        let half = samples.len() / 2;
        if half < 2 {
            return None;
        }
        let peak = |s: &[(f64, u64)]| s.iter().map(|&(_, r)| r).max().unwrap_or(0);
        let floor = |s: &[(f64, u64)]| s.iter().map(|&(_, r)| r).min().unwrap_or(0);
        // Least-squares slope of RSS over time, for the report.
        let k = samples.len() as f64;
        let (mt, mr) = samples
            .iter()
            .fold((0.0, 0.0), |(a, b), &(t, r)| (a + t / k, b + r as f64 / k));
        let (num, den) = samples.iter().fold((0.0, 0.0), |(n, d), &(t, r)| {
            (n + (t - mt) * (r as f64 - mr), d + (t - mt) * (t - mt))
        });
        let slope = if den > 0.0 { num / den } else { 0.0 };
        Some(Trend {
            first_peak: peak(&samples[..half]),
            second_peak: peak(&samples[half..]),
            first_floor: floor(&samples[..half]),
            second_floor: floor(&samples[half..]),
            slope_mib_per_min: slope * 60.0 / f64::from(1u32 << 20),
        })
    }

    fn flat(&self) -> bool {
        let slack = FLAT_SLACK.max(self.first_peak * 3 / 200);
        let peak_rose = self.second_peak > self.first_peak + slack;
        let floor_rose = self.second_floor > self.first_floor + slack;
        !(peak_rose && floor_rose)
    }
}

/// A connection's view of the faulted soak.
struct FaultView {
    proxy: Arc<FaultProxy>,
    generation: Arc<AtomicU64>,
    changed_ms: Arc<AtomicU64>,
    mirrored: bool,
    began: Instant,
}

/// How long after the proxy reset every storage connection a cut body is its doing.
const CUT_WINDOW: Duration = Duration::from_secs(5);

/// One client connection: requests until `until`, reconnecting only if the gateway closed
/// the connection (counted).
#[allow(clippy::too_many_arguments)]
async fn connection(
    addr: SocketAddr,
    index: usize,
    allowed: &str,
    labels: &Labels,
    until: Instant,
    tally: &Tally,
    latencies: &mut Vec<u32>,
    faults: Option<&FaultView>,
) -> anyhow::Result<()> {
    let mut rng =
        0x2545_F491_4F6C_DD1D_u64 ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let denied = format!("sessionid=denied-{index}");
    let allowed = format!("sessionid={allowed}");
    let host = addr.to_string();
    let mut sender = connect(addr).await?;
    while Instant::now() < until {
        let r = next();
        let (kind, tracking) = match r % 100 {
            0..=49 => (Kind::Hot, Labels::hot((r >> 8) as usize % HOT)),
            50..=74 => (Kind::Cold, Labels::cold((r >> 8) as usize % COLD)),
            75..=89 => (Kind::Denied, Labels::hot((r >> 8) as usize % HOT)),
            _ => (Kind::Missing, format!("SOAKGONE{}", (r >> 8) % 1_000_000)),
        };
        let cookie = if matches!(kind, Kind::Denied) {
            &denied
        } else {
            &allowed
        };
        let req = || {
            http::Request::get(format!("/shipping-label/{tracking}/"))
                .header(http::header::HOST, &host)
                .header(http::header::COOKIE, cookie)
                .body(Empty::<Bytes>::new())
        };
        if sender.ready().await.is_err() {
            tally.reconnects.fetch_add(1, Ordering::Relaxed);
            sender = connect(addr).await?;
        }
        let started = Instant::now();
        let mut sent = sender.send_request(req()?).await;
        if let (Some(_), Err(e)) = (faults, &sent) {
            // Closed by a draining gateway before any byte of the answer: sent again on a
            // new connection, once (nginx does so for a GET).
            if e.is_incomplete_message() || e.is_canceled() {
                tally.resent.fetch_add(1, Ordering::Relaxed);
                sender = connect(addr).await?;
                sent = sender.send_request(req()?).await;
            }
        }
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => {
                tally.unexpected(format!("{tracking}: request failed: {e}"));
                sender = connect(addr).await?;
                continue;
            }
        };
        let status = resp.status();
        let x_cache = resp
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mode = faults.map(|f| f.proxy.mode());
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let at_reset = faults.is_some_and(|f| {
                    let since = f.began.elapsed().as_millis() as u64;
                    since.saturating_sub(f.changed_ms.load(Ordering::Relaxed))
                        < CUT_WINDOW.as_millis() as u64
                });
                if at_reset {
                    tally.cut.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.unexpected(format!(
                        "{tracking}: body failed after status {status}: {e}"
                    ));
                }
                sender = connect(addr).await?;
                continue;
            }
        };
        latencies.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        let hot = match kind {
            Kind::Hot | Kind::Denied => Some((r >> 8) as usize % HOT),
            _ => None,
        };
        if let (Some(f), Some(mode)) = (faults, mode) {
            let row = &tally.by_mode[mode_slot(mode)];
            let generation = f.generation.load(Ordering::SeqCst) + 1;
            if status.is_server_error() {
                let cached = matches!(kind, Kind::Hot)
                    && hot
                        .is_some_and(|h| tally.hot_served[h].load(Ordering::SeqCst) == generation);
                let expected = match kind {
                    Kind::Missing => true,
                    Kind::Denied => false,
                    Kind::Hot | Kind::Cold => !f.mirrored && !cached,
                };
                if expected {
                    row[2].fetch_add(1, Ordering::Relaxed);
                } else {
                    row[3].fetch_add(1, Ordering::Relaxed);
                    let why = if f.mirrored { "mirrored" } else { "cached" };
                    tally.unexpected(format!("{tracking}: {status} for a {why} label ({mode:?})"));
                }
                continue;
            }
            if status == http::StatusCode::OK && matches!(kind, Kind::Hot | Kind::Cold) {
                row[0].fetch_add(1, Ordering::Relaxed);
                if x_cache.as_deref() == Some("STALE") {
                    row[1].fetch_add(1, Ordering::Relaxed);
                }
                if let (Kind::Hot, Some(h)) = (kind, hot) {
                    tally.hot_served[h].store(generation, Ordering::SeqCst);
                }
            }
        }
        let verdict = match kind {
            Kind::Hot | Kind::Cold => {
                if status != http::StatusCode::OK || !labels.matches(&tracking, &body) {
                    Err(format!("{status} with {} bytes", body.len()))
                } else {
                    let (hit, miss) = match kind {
                        Kind::Hot => (&tally.hot_hit, &tally.hot_miss),
                        _ => (&tally.cold_hit, &tally.cold_miss),
                    };
                    match x_cache.as_deref() {
                        Some("HIT") | Some("STALE") => Ok(hit),
                        Some("MISS") => Ok(miss),
                        other => Err(format!("X-Cache {other:?}")),
                    }
                }
            }
            Kind::Denied if body.windows(5).any(|w| w == b"%PDF-") => {
                Err(format!("{status}: a denied session received label bytes"))
            }
            Kind::Denied if status == http::StatusCode::NOT_FOUND => Ok(&tally.denied),
            Kind::Missing if status == http::StatusCode::NOT_FOUND => Ok(&tally.missing),
            Kind::Denied | Kind::Missing => Err(format!("{status}, wanted 404")),
        };
        match verdict {
            Ok(counter) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(why) => tally.unexpected(format!("{tracking}: {why}")),
        }
    }
    Ok(())
}

/// The cache's size from the gateway's `/metrics`.
async fn cache_metrics(addr: SocketAddr) -> anyhow::Result<String> {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .context(format!("no {name} in /metrics"))
    };
    Ok(format!(
        "{} in {} labels",
        report::mib(value("label_gateway_cache_bytes")? as u64),
        value("label_gateway_cache_entries")?
    ))
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .context("connect to the gateway")?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}
