//! `LOAD_PERF=1`: where each row's CPU goes on the real CPU, sampled by `perf record`
//! (`cpu-clock`, so it works where hardware counters are not exposed, as in most VMs).
//!
//! For the gateway's hit and miss, bare hyper and the bare proxy in turn: the server is
//! warmed up, then `perf record -g -p PID` samples it while wrk drives 64 connections
//! (`LOAD_PERF_CONNS` to change) for a
//! few seconds (`LOAD_PERF_CALLGRAPH=dwarf` for whole call stacks). Printed per row: the share of samples in the kernel, and the hottest
//! symbols (self time), and per response while sampled: CPU time, context switches and
//! minor page faults of all the process's threads (the hand-offs between threads that docs/performance.md names; perf's
//! own sampling is included, alike for every row). The `perf.data` files stay in `LOAD_PERF_DIR` when it is set, for
//! `perf report -i FILE`; otherwise they go with the bench's temporary folder.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::peers::{start_proxy, GatewayChild, SelfChild};
use crate::procs::{context_switches, cpu_seconds, find_program, minor_faults};
use crate::wrk::{Target, Wrk};

/// Seconds sampled per row.
const SECONDS: u64 = 6;
/// Connections wrk drives while sampling: the targets' headline 64, or `LOAD_PERF_CONNS`
/// (the 5 MiB target is judged at 16).
fn conns() -> u32 {
    std::env::var("LOAD_PERF_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(64)
}
/// Symbols printed per row.
const TOP: usize = 25;

/// Samples every row and prints each one's profile.
pub async fn run(
    dir: &Path,
    s3: SocketAddr,
    check: &str,
    wrk: &Wrk,
    label: Target,
    tracking: &str,
    limit_file: &Path,
) -> anyhow::Result<()> {
    let perf =
        find_program("perf", &[]).context("perf is not installed (apt-get install linux-perf)")?;
    let out_dir = std::env::var_os("LOAD_PERF_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.join("perf"));
    std::fs::create_dir_all(&out_dir)?;
    let path = format!("/shipping-label/{tracking}/");

    // A label the cache takes gets a hit row; the 5 MiB one streams every time.
    let rows: &[(&str, bool)] = if label.body_len <= 4 * 1024 * 1024 {
        &[("gateway-hit", true), ("gateway-miss", false)]
    } else {
        &[("gateway-miss", false)]
    };
    for &(row, cache) in rows {
        let gw = GatewayChild::start(row, dir, s3, check, cache, &[])?;
        let target = Target {
            url: format!("http://{}{path}", gw.addr),
            x_cache: Some(if cache { "HIT" } else { "MISS" }),
            ..label.clone()
        };
        sample(&perf, &out_dir, row, gw.guard.pid(), wrk, &target).await?;
    }
    let limit = SelfChild::start("serve-limit", limit_file, dir.join("perf-limit.log"))?;
    let target = Target {
        url: format!("http://{}/", limit.addr),
        headers: Vec::new(),
        x_cache: None,
        ..label.clone()
    };
    sample(&perf, &out_dir, "limit", limit.guard.pid(), wrk, &target).await?;
    drop(limit);
    let proxy = start_proxy(
        &std::env::current_exe()?,
        &out_dir,
        s3,
        &[(&path, tracking)],
        None,
    )?;
    let target = Target {
        url: format!("http://{}{path}", proxy.addr),
        headers: Vec::new(),
        x_cache: None,
        ..label
    };
    sample(
        &perf,
        &out_dir,
        "bare-proxy",
        proxy.guard.pid(),
        wrk,
        &target,
    )
    .await?;
    println!();
    println!("perf.data files: {}", out_dir.display());
    Ok(())
}

/// Warms `pid` up, samples it under load, prints its profile.
async fn sample(
    perf: &Path,
    out_dir: &Path,
    row: &str,
    pid: u32,
    wrk: &Wrk,
    target: &Target,
) -> anyhow::Result<()> {
    wrk.run(target, conns(), 2, true).await?;
    let data = out_dir.join(format!("{row}.data"));
    // Frame pointers are cheap to record but Rust's release code keeps none, so callers
    // are mostly lost; `LOAD_PERF_CALLGRAPH=dwarf` unwinds properly (larger files, and
    // sampled less often to keep them manageable).
    let graph = std::env::var("LOAD_PERF_CALLGRAPH").unwrap_or_else(|_| "fp".into());
    let freq = if graph.starts_with("dwarf") {
        "499"
    } else {
        "4000"
    };
    let mut rec = tokio::process::Command::new(perf)
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            freq,
            "--call-graph",
            &graph,
            "-p",
        ])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep"])
        .arg((SECONDS + 1).to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("perf record")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cpu_before, switches_before, faults_before) =
        (cpu_seconds(pid), context_switches(pid), minor_faults(pid));
    let r = wrk.run(target, conns(), SECONDS, false).await?;
    let (cpu_after, switches_after, faults_after) =
        (cpu_seconds(pid), context_switches(pid), minor_faults(pid));
    let status = rec.wait().await?;
    if !status.success() {
        bail!("perf record for {row}: {status}");
    }
    if r.errors > 0 {
        bail!("{row}: {} errors while sampled", r.errors);
    }
    let report = |args: &[&str]| -> anyhow::Result<String> {
        let out = std::process::Command::new(perf)
            .arg("report")
            .arg("-i")
            .arg(&data)
            .args([
                "--stdio",
                "--no-children",
                "-g",
                "none",
                "--percent-limit",
                "0.5",
            ])
            .args(args)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let by_dso = report(&["--sort", "dso"])?;
    let kernel: f64 = by_dso
        .lines()
        .filter(|l| l.contains("[kernel"))
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .trim_end_matches('%')
                .parse::<f64>()
                .ok()
        })
        .sum();
    println!();
    println!(
        "## {row}: {:.0} req/s at {} connections while sampled; {kernel:.1}% of samples \
         in the kernel",
        r.rps(),
        conns()
    );
    let per = |a: f64, b: f64| (b - a) / r.requests.max(1) as f64;
    if let (Some(a), Some(b), Some(sa), Some(sb)) =
        (cpu_before, cpu_after, switches_before, switches_after)
    {
        let faults = match (faults_before, faults_after) {
            (Some(fa), Some(fb)) => format!(", {:.3} minor page faults", per(fa as f64, fb as f64)),
            _ => String::new(),
        };
        println!(
            "   per response: {:.1} µs of CPU, {:.2} context switches{faults}",
            per(a, b) * 1e6,
            per(sa as f64, sb as f64)
        );
    }
    println!();
    let by_sym = report(&["--sort", "sym"])?;
    for line in by_sym
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(TOP)
    {
        println!("    {}", line.trim_end());
    }
    Ok(())
}
