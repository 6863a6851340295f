//! End-to-end load bench: the gateway next to the limit, the origin and nginx, all on
//! 127.0.0.1 and all in one run. The one command is `bash benches/load.sh` (it installs wrk
//! and nginx when missing and the Django test app's virtualenv, then runs
//! `cargo bench --bench load`, which builds the release gateway and this driver).
//!
//! What the driver starts (each process is ended when the bench ends or panics, and by the
//! kernel if the bench is killed):
//! - the real S3 server, s3s + s3s-fs with SigV4 verified, as a child process, holding a
//!   50 KiB and a 5 MiB label written by signed PUTs;
//! - the session check: an in-process 204 responder (so a row measures the gateway's own
//!   cost), and the real Django test app under `runserver`;
//! - the rows:
//!   - **limit**: a bare hyper server answering the 50 KiB label from memory (child process);
//!   - **origin**: the S3 server itself, GET of a presigned URL;
//!   - **bare proxy**: a plain hyper server whose pooled hyper-util client GETs the label's
//!     presigned URL (signed once) and streams the answer back untouched: the floor a miss
//!     is judged against (child process; `servers::serve_proxy`);
//!   - **gateway miss**: the release binary, shipped `config.toml` (access log on),
//!     `cache.enabled=false`;
//!   - **bare proxy over TLS** and **gateway miss over TLS**: the same two against a second
//!     S3 child over the same labels behind TLS, its certificate from a CA the bench makes
//!     (the proxy through hyper-rustls with the built-in roots plus that CA, the gateway with
//!     an `https://` endpoint and `storage.ca_file`): what a miss costs as production runs
//!     it, judged against the TLS proxy as the plain miss is against the plain one;
//!   - **gateway hit**: the same with the cache on and warm ("not yet" when a repeated
//!     request does not answer `X-Cache: HIT`);
//!   - **gateway miss, Django check**: as gateway miss, with the real Django app deciding;
//!   - **nginx**: `auth_request` to the 204 responder, cached 30 s per session cookie, and
//!     `proxy_cache` of the label (hot), in front of the S3 server.
//!   - **bare proxy, 5 MiB** and **gateway miss, 5 MiB**: the large label (above
//!     `max_object_bytes`, streamed), at 16 and 64 connections only.
//!
//! Each row is probed (status, exact body, `X-Cache`) and validated by a short wrk pass
//! that checks every response; then wrk drives it at 1, 16, 64 and 256 connections. Rows
//! are interleaved (every row at one connection count before the next), the 64-connection
//! column is repeated and medians are reported. A run with any error or a byte count that
//! does not add up is refused, never reported. Then the memory run: concurrent downloads
//! of the 5 MiB label (above `cache.max_object_bytes`, so streamed) while the gateway's
//! peak RSS is recorded. Last the soak (`soak.rs`): 256 connections mixing hits, misses,
//! denied sessions and missing labels, every response checked, RSS judged over a minute
//! after a 40 s warm-up. Between the two, the batch rows and the batch memory run
//! (`batch.rs`): 50-label batches against the same labels one by one, and the peak RSS of a
//! 500-label batch alone and ten at once.
//!
//! Knobs (environment): `LOAD_QUICK=1` (2 s runs, no repeats), `LOAD_SECONDS` (per run,
//! default 8), `LOAD_REPEATS` (runs of the 64-connection column, default 3),
//! `LOAD_MEMORY_CLIENTS` (default 1000), `LOAD_MEMORY_ONLY=1` (only the memory run),
//! `LOAD_SOAK_SECONDS` (the judged window after a 40 s warm-up, default 60; quick: 20 s
//! with no warm-up, the RSS trend printed, not judged),
//! `LOAD_SOAK_ONLY=1` (only the soak), `LOAD_SOAK_FAULTS=1` (only the faulted soak: the
//! primary store failing in turns and one restart through the sockets, `faults.rs`;
//! `LOAD_SOAK_SECONDS` is then its whole length, default 330), `LOAD_BATCH_ONLY=1` (only the batch rows and the
//! batch memory run), `LOAD_TABLE_ONLY=1` (only the rows table and its verdicts),
//! `LOAD_MISS_ONLY=1` (only the 50 KiB miss rows, plain and over TLS, and their verdicts),
//! `LOAD_PERF=1` (only `perf record` profiles of the same four rows on the real CPU: see
//! `perf.rs`; `LOAD_PERF_LABEL=5mib` samples the 5 MiB label, `LOAD_PERF_CONNS=16` at 16 connections), `LOAD_CALLGRIND=1` (only instructions per response of the gateway's
//! hit and miss, of bare hyper and of the bare proxy, under callgrind: see `callgrind.rs`;
//! `LOAD_CALLGRIND_DIR` keeps the dumps, `LOAD_CALLGRIND_FLOORS=0` skips the two floors),
//! `LOAD_GATEWAY_BIN` (another gateway binary, e.g. to compare a change) and
//! `LOAD_GATEWAY_CONFIG` (the config file it runs with, when its release needs another),
//! `LOAD_BASELINE_BIN` (adds that build's hit and misses as "baseline" rows of the same run, for a before/after; `LOAD_BASELINE_CONFIG` its config).
//!
//! Under `cargo test --all-targets` this binary does nothing: only `cargo bench` (which
//! passes `--bench`) runs it.

mod batch;
mod callgrind;
mod faults;
mod memory;
mod pdf_label;
mod peers;
mod perf;
mod procs;
mod redirect;
mod report;
mod servers;
mod soak;
// The integration tests' private CA (rcgen), for the S3 child behind TLS.
#[allow(dead_code)]
#[path = "../../tests/support/tls.rs"]
mod test_ca;
mod wrk;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};

use peers::{put_label, Django, GatewayChild, Nginx, SelfChild};
use procs::{find_program, CpuSnapshot, PeakRss};
use report::{Cell, Check, Kind, Measured, RowReport, RowState};
use servers::Responder;
use wrk::{Target, Wrk};

/// The label every row serves: 50 KiB, the size the performance targets name.
const SMALL: &str = "BENCH50K";
const SMALL_LEN: usize = 50 * 1024;
/// The memory run's label: 5 MiB, above the default `max_object_bytes` (4 MiB).
const BIG: &str = "BENCH5M";
const BIG_LEN: usize = 5 * 1024 * 1024;
/// A session cookie for the rows whose check endpoint allows everyone.
const ANY_SESSION: &str = "k2p9x7w3q8r5t1y6u4i0o2a7s9d3f5g8";
/// The connection count the performance targets quote, repeated for medians.
const HEADLINE: u32 = 64;
const CONNECTIONS: [u32; 4] = [1, 16, 64, 256];
/// The 5 MiB rows' connection counts (their target is at 16).
const BIG_CONNECTIONS: [u32; 2] = [16, 64];
/// Connections of each row's validation pass.
const VALIDATE_CONNS: u32 = 16;
/// Names of the rows the verdicts compare.
const HIT: &str = "gateway hit";
const LIMIT: &str = "limit (bare hyper)";
const MISS: &str = "gateway miss";
const PROXY: &str = "bare proxy (hyper client)";
const MISS_TLS: &str = "gateway miss over TLS";
const PROXY_TLS: &str = "bare proxy over TLS";

struct Settings {
    quick: bool,
    secs: u64,
    validate_secs: u64,
    headline_repeats: usize,
    memory_clients: usize,
    memory_only: bool,
    soak_secs: u64,
    soak_only: bool,
    /// The faulted soak alone (`faults.rs`).
    soak_faults: bool,
    callgrind_only: bool,
    perf_only: bool,
    batch_only: bool,
    table_only: bool,
    miss_only: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let num = |k: &str| var(k).and_then(|v| v.parse::<u64>().ok());
        let quick = var("LOAD_QUICK").is_some_and(|v| v != "0");
        Settings {
            quick,
            secs: num("LOAD_SECONDS")
                .unwrap_or(if quick { 2 } else { 8 })
                .max(1),
            validate_secs: if quick { 1 } else { 2 },
            headline_repeats: num("LOAD_REPEATS")
                .unwrap_or(if quick { 1 } else { 3 })
                .max(1) as usize,
            memory_clients: num("LOAD_MEMORY_CLIENTS").unwrap_or(1000).max(1) as usize,
            memory_only: var("LOAD_MEMORY_ONLY").is_some_and(|v| v != "0"),
            soak_secs: num("LOAD_SOAK_SECONDS")
                .unwrap_or(if quick { 20 } else { 60 })
                .max(3),
            soak_only: var("LOAD_SOAK_ONLY").is_some_and(|v| v != "0"),
            soak_faults: var("LOAD_SOAK_FAULTS").is_some_and(|v| v != "0"),
            callgrind_only: var("LOAD_CALLGRIND").is_some_and(|v| v != "0"),
            perf_only: var("LOAD_PERF").is_some_and(|v| v != "0"),
            batch_only: var("LOAD_BATCH_ONLY").is_some_and(|v| v != "0"),
            table_only: var("LOAD_TABLE_ONLY").is_some_and(|v| v != "0"),
            miss_only: var("LOAD_MISS_ONLY").is_some_and(|v| v != "0"),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let child_mode = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("serve-s3"), Some(dir)) => Some(servers::serve_s3(
            Path::new(dir),
            args.get(3).map(Path::new),
        )),
        (Some("serve-limit"), Some(file)) => Some(servers::serve_limit(Path::new(file))),
        (Some("serve-proxy"), Some(file)) => Some(servers::serve_proxy(
            Path::new(file),
            args.get(3).map(Path::new),
        )),
        _ => None,
    };
    if let Some(result) = child_mode {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("load bench: not run under `cargo test`; run `bash benches/load.sh`");
        return ExitCode::SUCCESS;
    }
    procs::raise_nofile_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(drive(Settings::from_env())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One row of the table.
struct Row {
    name: &'static str,
    target: Target,
    /// Processes whose memory is the row's.
    pids: Vec<u32>,
    state: RowState,
    /// Bytes of one whole response (head and body), from the probe.
    response_bytes: u64,
    /// The label every response must carry.
    label: Arc<Vec<u8>>,
    /// The connection counts this row runs at (every one unless narrowed).
    conns: &'static [u32],
    cells: BTreeMap<u32, Cell>,
}

impl Row {
    fn new(
        name: &'static str,
        url: String,
        session: &str,
        pids: Vec<u32>,
        label: &Arc<Vec<u8>>,
    ) -> Row {
        Row {
            label: label.clone(),
            conns: &CONNECTIONS,
            name,
            target: Target {
                url,
                headers: vec![format!("Cookie: sessionid={session}")],
                body_len: label.len() as u64,
                x_cache: None,
            },
            pids,
            state: RowState::Ready,
            response_bytes: 0,
            cells: BTreeMap::new(),
        }
    }

    /// Runs this row only at `conns` (the 5 MiB rows: their targets are at 16).
    fn only_at(mut self, conns: &'static [u32]) -> Row {
        self.conns = conns;
        self
    }

    fn expect_cache(mut self, value: &'static str) -> Row {
        self.target.x_cache = Some(value);
        self
    }

    fn skipped(name: &'static str, why: String) -> Row {
        let mut row = Row::new(name, String::new(), "", Vec::new(), &Arc::new(Vec::new()));
        row.state = RowState::Skipped(why);
        row
    }

    fn ready(&self) -> bool {
        matches!(self.state, RowState::Ready)
    }
}

async fn drive(s: Settings) -> anyhow::Result<()> {
    let wrk_bin = find_program("wrk", &[])
        .context("wrk is not installed: run `bash benches/load.sh`, which installs it")?;
    let nginx_bin = find_program("nginx", &["/usr/sbin/nginx"])
        .context("nginx is not installed: run `bash benches/load.sh`, which installs it")?;
    let tmp = tempfile::Builder::new()
        .prefix("label-gateway-load-")
        .tempdir()?;
    let dir = tmp.path();
    let wrk = Wrk::new(wrk_bin.clone(), dir)?;
    print_header(&s, &wrk_bin, &nginx_bin);

    // Peers: storage with both labels, the check endpoints.
    let small = Arc::new(label_bytes(SMALL_LEN, 1));
    let big = Arc::new(label_bytes(BIG_LEN, 2));
    let s3 = peers::start_s3(dir, false)?;
    put_label(s3.addr, SMALL, &small).await?;
    put_label(s3.addr, BIG, &big).await?;
    let responder = Responder::start().await?;
    if s.memory_only {
        let check = responder.check_url();
        let gw = GatewayChild::start("gateway-hit", dir, s3.addr, &check, true, &[])?;
        return memory_run(&gw, &big, &s).await;
    }
    // The limit's label file, and the 50 KiB label as every row asks for it (URL per row).
    let limit_file = dir.join("limit.pdf");
    std::fs::write(&limit_file, &*small)?;
    let target = Target {
        url: String::new(),
        headers: vec![format!("Cookie: sessionid={ANY_SESSION}")],
        body_len: SMALL_LEN as u64,
        x_cache: None,
    };
    if s.perf_only {
        let check = responder.check_url();
        if std::env::var("LOAD_PERF_LABEL").is_ok_and(|v| v == "5mib") {
            let big_file = dir.join("limit-5mib.pdf");
            std::fs::write(&big_file, &*big)?;
            let target = Target {
                body_len: BIG_LEN as u64,
                ..target
            };
            return perf::run(dir, s3.addr, &check, &wrk, target, BIG, &big_file).await;
        }
        return perf::run(dir, s3.addr, &check, &wrk, target, SMALL, &limit_file).await;
    }
    if s.callgrind_only {
        let counts = callgrind::run_rows(
            dir,
            s3.addr,
            &responder.check_url(),
            &wrk,
            target,
            SMALL,
            &format!("/shipping-label/{SMALL}/"),
            &limit_file,
        )
        .await?;
        println!();
        println!("Instructions per response under callgrind (wrk -t1 -c4, one worker thread):");
        println!("| row | responses | instructions per response |");
        println!("|---|---:|---:|");
        for c in &counts {
            println!("| {} | {} | {} |", c.row, c.responses, c.per_response());
        }
        return Ok(());
    }
    if s.soak_faults {
        let labels = Arc::new(soak::Labels::new(label_bytes(SMALL_LEN, 3)));
        write_soak_labels(s3.addr, &labels).await?;
        return faults::soak(&s3, &responder, soak_env(&responder), labels, dir, &s).await;
    }
    if s.soak_only {
        return soak_run(s3.addr, &responder, dir, &s).await;
    }
    if s.batch_only {
        return batch::run(s3.addr, &responder, dir, &s).await;
    }
    let django = match Django::python() {
        _ if s.miss_only => Err("LOAD_MISS_ONLY".to_string()),
        None => Err("no Python with Django: run `bash benches/load.sh`".to_string()),
        Some(py) => Django::start(&py, dir).map_err(|e| format!("{e:#}")),
    };

    // The servers under test.
    let limit = SelfChild::start("serve-limit", &limit_file, dir.join("limit.log"))?;
    let presigned = peers::presigned(s3.addr, false, SMALL)?;
    // The bare proxy: presigned once, no per-request work beyond the proxying itself.
    let big_path = format!("/shipping-label/{BIG}/");
    let label_path = format!("/shipping-label/{SMALL}/");
    let proxy = peers::start_proxy(
        &std::env::current_exe()?,
        dir,
        s3.addr,
        &[(&label_path, SMALL), (&big_path, BIG)],
        None,
    )?;
    let check = responder.check_url();
    let gw_miss = GatewayChild::start("gateway-miss", dir, s3.addr, &check, false, &[])?;
    // The miss as production pays it: storage behind TLS, a private CA trusted besides the
    // built-in roots by the bare proxy and the gateway alike.
    let s3_tls = peers::start_s3(dir, true)?;
    let storage_ca = peers::storage_ca(dir);
    let proxy_tls = peers::start_proxy(
        &std::env::current_exe()?,
        dir,
        s3_tls.addr,
        &[(&label_path, SMALL)],
        Some(&storage_ca),
    )?;
    let gw_miss_tls = GatewayChild::start(
        "gateway-miss-tls",
        dir,
        s3_tls.addr,
        &check,
        false,
        &peers::tls_storage_env(s3_tls.addr, &storage_ca),
    )?;
    let gw_hit = GatewayChild::start("gateway-hit", dir, s3.addr, &check, true, &[])?;
    let gw_django = match &django {
        Ok(d) => Some(GatewayChild::start(
            "gateway-django",
            dir,
            s3.addr,
            &d.check_url(),
            false,
            &[],
        )?),
        Err(_) => None,
    };
    let nginx = Nginx::start(&nginx_bin, dir, responder.addr, SMALL, &presigned)?;
    // `LOAD_BASELINE_BIN`: an older build's hit and miss as rows of the same run.
    let baseline = match std::env::var_os("LOAD_BASELINE_BIN") {
        None => None,
        Some(bin) => {
            let bin = std::path::PathBuf::from(bin);
            let config = std::env::var_os("LOAD_BASELINE_CONFIG").map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml"),
                std::path::PathBuf::from,
            );
            let start = |name: &str, cache: bool| {
                GatewayChild::start_bin(&bin, &config, name, dir, s3.addr, &check, cache, &[])
            };
            Some((start("baseline-miss", false)?, start("baseline-hit", true)?))
        }
    };

    let mut rows = vec![
        Row::new(
            "limit (bare hyper)",
            format!("http://{}{label_path}", limit.addr),
            ANY_SESSION,
            vec![limit.guard.pid()],
            &small,
        ),
        Row::new(
            "origin (s3s presigned)",
            presigned.clone(),
            ANY_SESSION,
            vec![s3.guard.pid()],
            &small,
        ),
        Row::new(
            "bare proxy (hyper client)",
            format!("http://{}{label_path}", proxy.addr),
            ANY_SESSION,
            vec![proxy.guard.pid()],
            &small,
        ),
        Row::new(
            "gateway miss",
            format!("http://{}{label_path}", gw_miss.addr),
            ANY_SESSION,
            vec![gw_miss.guard.pid()],
            &small,
        )
        .expect_cache("MISS"),
        Row::new(
            PROXY_TLS,
            format!("http://{}{label_path}", proxy_tls.addr),
            ANY_SESSION,
            vec![proxy_tls.guard.pid()],
            &small,
        ),
        Row::new(
            MISS_TLS,
            format!("http://{}{label_path}", gw_miss_tls.addr),
            ANY_SESSION,
            vec![gw_miss_tls.guard.pid()],
            &small,
        )
        .expect_cache("MISS"),
        Row::new(
            "gateway hit",
            format!("http://{}{label_path}", gw_hit.addr),
            ANY_SESSION,
            vec![gw_hit.guard.pid()],
            &small,
        )
        .expect_cache("HIT"),
        match (&django, &gw_django) {
            (Ok(d), Some(gw)) => Row::new(
                "gateway miss, Django check",
                format!("http://{}{label_path}", gw.addr),
                &d.session,
                vec![gw.guard.pid()],
                &small,
            )
            .expect_cache("MISS"),
            (Err(why), _) => Row::skipped("gateway miss, Django check", why.clone()),
            _ => Row::skipped("gateway miss, Django check", "no gateway".into()),
        },
        Row::new(
            "nginx (auth_request+cache)",
            format!("http://{}{label_path}", nginx.addr),
            ANY_SESSION,
            nginx.pids.clone(),
            &small,
        )
        .expect_cache("HIT"),
        Row::new(
            "bare proxy, 5 MiB",
            format!("http://{}{big_path}", proxy.addr),
            ANY_SESSION,
            vec![proxy.guard.pid()],
            &big,
        )
        .only_at(&BIG_CONNECTIONS),
        Row::new(
            "gateway miss, 5 MiB",
            format!("http://{}{big_path}", gw_miss.addr),
            ANY_SESSION,
            vec![gw_miss.guard.pid()],
            &big,
        )
        .expect_cache("MISS")
        .only_at(&BIG_CONNECTIONS),
    ];
    if let Some((miss, hit)) = &baseline {
        rows.push(
            Row::new(
                "baseline miss",
                format!("http://{}{label_path}", miss.addr),
                ANY_SESSION,
                vec![miss.guard.pid()],
                &small,
            )
            .expect_cache("MISS"),
        );
        rows.push(
            Row::new(
                "baseline hit",
                format!("http://{}{label_path}", hit.addr),
                ANY_SESSION,
                vec![hit.guard.pid()],
                &small,
            )
            .expect_cache("HIT"),
        );
        rows.push(
            Row::new(
                "baseline miss, 5 MiB",
                format!("http://{}{big_path}", miss.addr),
                ANY_SESSION,
                vec![miss.guard.pid()],
                &big,
            )
            .expect_cache("MISS")
            .only_at(&BIG_CONNECTIONS),
        );
    }

    if s.miss_only {
        rows.retain(|r| [PROXY, MISS, PROXY_TLS, MISS_TLS].contains(&r.name));
    }
    measure(&mut rows, &wrk, &s).await;

    // Every server must still be up: a crash mid-run would make its numbers meaningless.
    let mut alive = vec![
        ("limit", limit.guard.pid()),
        ("bare proxy", proxy.guard.pid()),
        ("s3", s3.guard.pid()),
        ("gateway miss", gw_miss.guard.pid()),
        ("s3 over TLS", s3_tls.guard.pid()),
        ("bare proxy over TLS", proxy_tls.guard.pid()),
        ("gateway miss over TLS", gw_miss_tls.guard.pid()),
        ("gateway hit", gw_hit.guard.pid()),
        ("nginx", nginx.guard.pid()),
    ];
    if let Some(gw) = &gw_django {
        alive.push(("gateway Django", gw.guard.pid()));
    }
    for (name, pid) in alive {
        if procs::rss(pid).is_none() {
            bail!("{name} (pid {pid}) died during the run");
        }
    }

    print_table(&rows, &s);
    println!();
    let django_calls = match &django {
        Ok(d) => d
            .access_calls()
            .await
            .map_or("unknown".into(), |n| n.to_string()),
        Err(_) => "-".into(),
    };
    println!(
        "Session checks that reached a check endpoint during the whole run: 204 responder {}, \
         Django {django_calls} (verdicts are cached, by the gateway and by nginx alike).",
        responder.calls()
    );
    if s.table_only || s.miss_only {
        return Ok(());
    }

    let redirect = redirect::run(
        dir,
        s3.addr,
        &responder.check_url(),
        &wrk,
        (&label_path, &small, ANY_SESSION),
        (HEADLINE, s.secs),
    )
    .await?;
    println!();
    println!(
        "Redirect mode ({HEADLINE} connections): {:.0} 307s/s, p99 {:.2} ms, {:.1} µs CPU per \
         307 at the gateway; the client's following GET is the origin row's.",
        redirect.rps,
        redirect.p99_us / 1000.0,
        redirect.cpu_us_per_response
    );

    memory_run(&gw_hit, &big, &s).await?;
    drop((gw_miss, gw_hit, gw_django, nginx, limit, proxy, baseline));
    drop((gw_miss_tls, proxy_tls, s3_tls));
    batch::run(s3.addr, &responder, dir, &s).await?;
    soak_run(s3.addr, &responder, dir, &s).await
}

/// Writes the soak's labels, starts a gateway of its own (shipped settings, a smaller
/// cache, the responder as the app) and runs the soak.
async fn soak_run(
    s3: std::net::SocketAddr,
    responder: &Responder,
    dir: &Path,
    s: &Settings,
) -> anyhow::Result<()> {
    let labels = Arc::new(soak::Labels::new(label_bytes(SMALL_LEN, 3)));
    write_soak_labels(s3, &labels).await?;
    let gw = GatewayChild::start(
        "gateway-soak",
        dir,
        s3,
        &responder.check_url(),
        true,
        &soak_env(responder),
    )?;
    let settings = soak::Settings {
        warmup_secs: if s.quick { 0 } else { soak::WARMUP_SECS },
        secs: s.soak_secs,
        allowed_cookie: ANY_SESSION,
        faults: None,
    };
    soak::run(gw.addr, gw.internal, gw.guard.pid(), labels, &settings).await
}

/// Writes the soak's labels (hot and cold) into the S3 server at `s3`.
async fn write_soak_labels(
    s3: std::net::SocketAddr,
    labels: &Arc<soak::Labels>,
) -> anyhow::Result<()> {
    eprintln!("  writing the soak's {} labels", soak::HOT + soak::COLD);
    let names: Vec<String> = (0..soak::HOT)
        .map(soak::Labels::hot)
        .chain((0..soak::COLD).map(soak::Labels::cold))
        .collect();
    for batch in names.chunks(32) {
        let mut puts = tokio::task::JoinSet::new();
        for name in batch {
            let (name, labels) = (name.clone(), labels.clone());
            puts.spawn(async move { put_label(s3, &name, &labels.body(&name)).await });
        }
        while let Some(done) = puts.join_next().await {
            done??;
        }
    }
    Ok(())
}

/// The soak gateway's settings beside the shipped ones: a smaller cache, the responder as
/// the app.
fn soak_env(responder: &Responder) -> Vec<(&'static str, String)> {
    vec![
        ("LABEL_GATEWAY_CACHE__MAX_BYTES", soak::CACHE_BYTES.into()),
        ("LABEL_GATEWAY_REGENERATE__URL", responder.regenerate_url()),
        // The soak's one session asks for thousands of missing labels: exactly what the
        // per-session regeneration limit refuses (429). Lifted here so the soak keeps
        // driving the regeneration path and its remembered outcomes.
        (
            "LABEL_GATEWAY_REGENERATE__PER_SESSION_BURST",
            "1000000000".into(),
        ),
        (
            "LABEL_GATEWAY_REGENERATE__PER_SESSION_PER_MINUTE",
            "1000000000".into(),
        ),
    ]
}

/// Probes and validates every row, then runs the matrix: rows interleaved within each
/// connection count, the headline column repeated. Refused runs are recorded, not reported.
async fn measure(rows: &mut [Row], wrk: &Wrk, s: &Settings) {
    for row in rows.iter_mut() {
        if row.ready() {
            prepare(row, wrk, s).await;
        }
    }

    // The matrix: rows interleaved within each connection count, the headline repeated.
    let rounds = s.headline_repeats;
    for round in 0..rounds {
        for &conns in &CONNECTIONS {
            if round > 0 && conns != HEADLINE {
                continue;
            }
            for row in rows
                .iter_mut()
                .filter(|r| r.ready() && r.conns.contains(&conns))
            {
                if matches!(row.cells.get(&conns), Some(Cell::Refused(_))) {
                    continue;
                }
                eprintln!(
                    "  run {}/{rounds}: {:<28} {conns:>3} connections, {} s",
                    round + 1,
                    row.name,
                    s.secs
                );
                let cpu_before = row_cpu(&row.pids);
                let machine_before = CpuSnapshot::take();
                let peak = PeakRss::start(&row.pids);
                let result = wrk.run(&row.target, conns, s.secs, false).await;
                let peak_rss = peak.finish();
                let foreign = CpuSnapshot::take().foreign_share_since(&machine_before);
                let cpu = row_cpu(&row.pids) - cpu_before;
                let outcome =
                    result.map_err(|e| format!("{e:#}")).and_then(|r| {
                        match wrk::refusal(&r, conns, row.response_bytes) {
                            Some(why) => Err(why),
                            None => Ok(Measured {
                                cpu_per_request_us: cpu * 1e6 / r.requests.max(1) as f64,
                                wrk: r,
                                peak_rss,
                                foreign_cpu: foreign,
                            }),
                        }
                    });
                let cell = row
                    .cells
                    .entry(conns)
                    .or_insert_with(|| Cell::Runs(Vec::new()));
                match (outcome, cell) {
                    (Ok(m), Cell::Runs(runs)) => runs.push(m),
                    (Err(why), cell) => {
                        eprintln!("    refused: {why}");
                        *cell = Cell::Refused(why);
                    }
                    (Ok(_), Cell::Refused(_)) => {}
                }
            }
        }
    }
}

/// CPU seconds used so far by a row's processes.
fn row_cpu(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| procs::cpu_seconds(p)).sum()
}

/// The table and the comparisons with the performance targets (docs/performance.md).
fn print_table(rows: &[Row], s: &Settings) {
    let reports: Vec<RowReport<'_>> = rows
        .iter()
        .map(|r| RowReport {
            name: r.name,
            state: &r.state,
            cells: &r.cells,
        })
        .collect();
    println!();
    println!(
        "Requests/s and wrk latency percentiles (medians of {} run(s) at {HEADLINE} connections, \
         1 run elsewhere; {} s each); peak RSS and CPU time per request of the row's own \
         processes (for gateway rows the gateway alone, not the S3 server behind it):",
        s.headline_repeats, s.secs
    );
    println!();
    print!("{}", report::table(&reports, &CONNECTIONS));
    if let Some((mean, max)) = report::foreign_cpu(&reports) {
        println!();
        println!(
            "CPU taken by anything but this bench during the runs (other work, kernel threads): \
             {:.1}% of the machine on average, {:.1}% at most in one run.",
            mean * 100.0,
            max * 100.0
        );
    }
    println!();
    println!(
        "Against the performance targets of docs/performance.md (each verdict at the \
         connection counts its target names):"
    );
    println!();
    let check = |label, num, den, kind, at| Check {
        label,
        num,
        den,
        kind,
        at,
    };
    let checks = [
        check(
            "gateway hit / limit (req/s)",
            HIT,
            LIMIT,
            Kind::Rate(0.9),
            &[64],
        ),
        check(
            "gateway hit / limit (CPU/resp)",
            HIT,
            LIMIT,
            Kind::Cpu(1.15),
            &[64],
        ),
        check(
            "gateway miss / bare proxy (req/s)",
            MISS,
            PROXY,
            Kind::Rate(0.95),
            &[16, 64],
        ),
        check(
            "gateway miss / bare proxy (CPU/resp)",
            MISS,
            PROXY,
            Kind::Cpu(1.0),
            &[16, 64],
        ),
        check(
            "gateway miss p99 - bare proxy p99",
            MISS,
            PROXY,
            Kind::AddedP99(1000.0),
            &[16, 64],
        ),
        check(
            "TLS: gateway miss / bare proxy (req/s)",
            MISS_TLS,
            PROXY_TLS,
            Kind::Rate(0.95),
            &[16, 64],
        ),
        check(
            "TLS: gateway miss / bare proxy (CPU/resp)",
            MISS_TLS,
            PROXY_TLS,
            Kind::Cpu(1.0),
            &[16, 64],
        ),
        check(
            "TLS: gateway miss p99 - bare proxy p99",
            MISS_TLS,
            PROXY_TLS,
            Kind::AddedP99(1000.0),
            &[16, 64],
        ),
        check(
            "5 MiB: gateway miss / bare proxy (MiB/s)",
            "gateway miss, 5 MiB",
            "bare proxy, 5 MiB",
            Kind::Rate(0.95),
            &[16],
        ),
    ];
    print!("{}", report::ratios(&reports, &CONNECTIONS, &checks));
}

/// Probes a row (exact body, `X-Cache`), learns its response size, then validates it with
/// a short wrk pass that checks every response. Sets the row's state.
async fn prepare(row: &mut Row, wrk: &Wrk, s: &Settings) {
    eprintln!("  probing {}", row.name);
    let label = row.label.clone();
    // A cache fills on the first request: allow a few before demanding `HIT`.
    let mut last = None;
    for _ in 0..3 {
        match wrk::probe(&row.target).await {
            Err(e) => {
                row.state = RowState::Refused(format!("probe: {e:#}"));
                return;
            }
            Ok(p) => {
                if p.status != 200 || p.body != *label {
                    row.state = RowState::Refused(format!(
                        "probe answered {} with {} bytes, not the {}-byte label",
                        p.status,
                        p.body.len(),
                        label.len()
                    ));
                    return;
                }
                let done =
                    row.target.x_cache.is_none() || p.x_cache.as_deref() == row.target.x_cache;
                row.response_bytes = p.head_len + p.body.len() as u64;
                last = Some(p.x_cache);
                if done {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let (Some(want), Some(seen)) = (row.target.x_cache, &last) {
        if seen.as_deref() != Some(want) {
            let msg = format!(
                "a repeated request answers X-Cache: {}, not {want}",
                seen.as_deref().unwrap_or("(none)")
            );
            row.state = if row.name == "gateway hit" {
                RowState::NotYet(msg)
            } else {
                RowState::Refused(msg)
            };
            return;
        }
    }
    eprintln!(
        "  validating {} ({VALIDATE_CONNS} connections, every response checked)",
        row.name
    );
    match wrk
        .run(&row.target, VALIDATE_CONNS, s.validate_secs, true)
        .await
    {
        Err(e) => row.state = RowState::Refused(format!("validation: {e:#}")),
        Ok(r) => {
            if let Some(why) = wrk::refusal(&r, VALIDATE_CONNS, row.response_bytes) {
                row.state = RowState::Refused(format!("validation: {why}"));
            }
        }
    }
}

/// Concurrent downloads of the large label through the cache-enabled gateway (shipped
/// settings): the label is above `max_object_bytes`, so every byte streams from storage.
async fn memory_run(gw: &GatewayChild, big: &Arc<Vec<u8>>, s: &Settings) -> anyhow::Result<()> {
    let cache = &gw.config.cache;
    let bound = cache.max_bytes.as_u64() + 64 * 1024 * 1024;
    println!();
    println!(
        "Memory run: {} concurrent downloads of the {} label through the gateway \
         (cache on, max_object_bytes {}, so the label streams from storage):",
        s.memory_clients,
        report::mib(big.len() as u64),
        report::mib(cache.max_object_bytes.as_u64()),
    );
    let pid = gw.guard.pid();
    let idle = procs::rss(pid).unwrap_or(0);
    let peak = PeakRss::start(&[pid]);
    let run = memory::run(
        gw.addr,
        &format!("/shipping-label/{BIG}/"),
        ANY_SESSION,
        s.memory_clients,
        big.clone(),
        Duration::from_secs(300),
    )
    .await;
    let peak_rss = peak.finish();
    let expected = big.len() as u64 * s.memory_clients as u64;
    println!(
        "  {}/{} downloads complete and byte-exact; {:.2} GiB delivered of {:.2} GiB expected, \
         in {:.1} s",
        run.complete,
        run.clients,
        run.bytes as f64 / f64::from(1u32 << 30),
        expected as f64 / f64::from(1u32 << 30),
        run.elapsed.as_secs_f64()
    );
    println!(
        "  gateway RSS: {} idle before, {} peak during; bound (cache.max_bytes + 64 MiB) {}: {}",
        report::mib(idle),
        report::mib(peak_rss),
        report::mib(bound),
        if peak_rss < bound { "meets" } else { "MISSES" }
    );
    for f in &run.failures {
        println!("  failure: {f}");
    }
    if run.complete != run.clients || run.bytes != expected {
        bail!("memory run: not every download was complete and exact");
    }
    Ok(())
}

fn print_header(s: &Settings, wrk: &Path, nginx: &Path) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let version = |bin: &Path, arg: &str| {
        std::process::Command::new(bin)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                let text = [o.stdout, o.stderr].concat();
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    };
    println!("label-gateway load bench");
    println!("  date     {}", httpdate::fmt_http_date(SystemTime::now()));
    println!(
        "  load     {} (1/5/15-minute load average before the run)",
        load_average()
    );
    println!("  cpu      {cpu}, {cores} cores (wrk, the servers and this driver share them)");
    println!("  wrk      {}", version(wrk, "-v"));
    println!("  nginx    {}", version(nginx, "-v"));
    println!(
        "  mode     {}{} s per run, {} run(s) at {HEADLINE} connections",
        if s.quick { "quick, " } else { "" },
        s.secs,
        s.headline_repeats
    );
    println!();
}

/// `/proc/loadavg`'s first three fields: other work on the machine lowers every row.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Deterministic bytes that start like a PDF, `len` long.
fn label_bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut v = b"%PDF-1.4\n".to_vec();
    let mut x: u32 = 0x9E37_79B9 ^ seed;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}
