//! Driving one row with `wrk` and checking what came back.
//!
//! Two Lua scripts ride along. `report.lua` has only a `done()` hook (called once, so it
//! costs nothing per request): it prints wrk's counters and the 50/99/99.9th latency
//! percentiles on one `LOADBENCH` line. `check.lua` adds a `response()` hook that counts
//! every response that is not a 200 with the expected body length (and `X-Cache`, where
//! the row has one); wrk copies each body into Lua for it, which would slow the load
//! generator, so it runs only in each row's short validation pass. Measured runs are
//! checked by accounting instead: no error of any kind, and the bytes read must equal the
//! completed requests times the probed response size, give or take the responses still in
//! flight when wrk stopped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PRELUDE: &str = r#"
function loadbench_report(summary, latency, extra)
  local e = summary.errors
  io.write(string.format(
    "LOADBENCH requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d p50=%.1f p99=%.1f p999=%.1f %s\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), extra))
end
"#;

const REPORT: &str = r#"
function done(summary, latency, requests)
  loadbench_report(summary, latency, "")
end
"#;

const CHECK: &str = r#"
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  want_len = tonumber(args[1])
  want_cache = args[2]
  good = 0
  bad = 0
end
function response(status, headers, body)
  local ok = status == 200 and #body == want_len
  if ok and want_cache ~= nil and want_cache ~= "-" then
    local seen = nil
    for k, v in pairs(headers) do
      if string.lower(k) == "x-cache" then seen = v end
    end
    ok = seen == want_cache
  end
  if ok then good = good + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local g, b = 0, 0
  for _, t in ipairs(threads) do
    g = g + t:get("good")
    b = b + t:get("bad")
  end
  loadbench_report(summary, latency, string.format("good=%d bad=%d", g, b))
end
"#;

/// Where a row is reached and what every response must be.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    /// Extra request headers, `Name: value`.
    pub headers: Vec<String>,
    pub body_len: u64,
    /// The `X-Cache` value every response must carry, where the row sets one.
    pub x_cache: Option<&'static str>,
}

/// What one wrk run measured.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub duration_us: u64,
    pub bytes: u64,
    /// Connect, read, write, status (>= 400) and timeout errors, summed.
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// From `check.lua` only: responses that were, and were not, as expected.
    pub good: Option<u64>,
    pub bad: Option<u64>,
}

impl WrkResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }
}

pub struct Wrk {
    bin: PathBuf,
    report: PathBuf,
    check: PathBuf,
}

impl Wrk {
    pub fn new(bin: PathBuf, dir: &Path) -> anyhow::Result<Wrk> {
        let report = dir.join("report.lua");
        let check = dir.join("check.lua");
        std::fs::write(&report, format!("{PRELUDE}{REPORT}"))?;
        std::fs::write(&check, format!("{PRELUDE}{CHECK}"))?;
        Ok(Wrk { bin, report, check })
    }

    /// One run of `secs` seconds at `conns` connections. With `validate`, every response is
    /// checked in Lua (slower: for validation passes only).
    pub async fn run(
        &self,
        target: &Target,
        conns: u32,
        secs: u64,
        validate: bool,
    ) -> anyhow::Result<WrkResult> {
        let threads = conns.min(2);
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg(format!("-t{threads}"))
            .arg(format!("-c{conns}"))
            .arg(format!("-d{secs}s"))
            .args(["--timeout", "10s", "--latency", "-s"])
            .arg(if validate { &self.check } else { &self.report });
        for h in &target.headers {
            cmd.arg("-H").arg(h);
        }
        cmd.arg(&target.url);
        if validate {
            cmd.arg("--")
                .arg(target.body_len.to_string())
                .arg(target.x_cache.unwrap_or("-"));
        }
        cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
        let out = tokio::time::timeout(Duration::from_secs(secs + 60), cmd.output())
            .await
            .context("wrk did not finish in time")?
            .context("run wrk")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "wrk failed ({}): {}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parse(&stdout).with_context(|| format!("wrk output had no LOADBENCH line:\n{stdout}"))
    }
}

fn parse(stdout: &str) -> Option<WrkResult> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("LOADBENCH "))?;
    let mut r = WrkResult::default();
    for pair in line.split_whitespace() {
        let (k, v) = pair.split_once('=')?;
        let n: f64 = v.parse().ok()?;
        match k {
            "requests" => r.requests = n as u64,
            "duration_us" => r.duration_us = n as u64,
            "bytes" => r.bytes = n as u64,
            "connect" | "read" | "write" | "status" | "timeout" => r.errors += n as u64,
            "p50" => r.p50_us = n,
            "p99" => r.p99_us = n,
            "p999" => r.p999_us = n,
            "good" => r.good = Some(n as u64),
            "bad" => r.bad = Some(n as u64),
            _ => {}
        }
    }
    Some(r)
}

/// Why a run must not be reported, if it must not: any error, a response that failed
/// `check.lua`, or a byte count that does not add up to `response_bytes` per request.
pub fn refusal(r: &WrkResult, conns: u32, response_bytes: u64) -> Option<String> {
    if r.requests == 0 {
        return Some("no request completed".into());
    }
    if r.errors > 0 {
        return Some(format!(
            "{} errors (connect/read/write/timeout or status >= 400)",
            r.errors
        ));
    }
    if let Some(bad) = r.bad.filter(|&b| b > 0) {
        return Some(format!(
            "{bad} of {} responses were not 200 with the expected body",
            r.requests
        ));
    }
    // Header lengths may differ by a few bytes (e.g. a request id); responses cut off by
    // the end of the run are counted in bytes but not in requests.
    const SLACK: u64 = 16;
    let low = r.requests * response_bytes.saturating_sub(SLACK);
    let high = (r.requests + u64::from(conns)) * (response_bytes + SLACK);
    if r.bytes < low || r.bytes > high {
        return Some(format!(
            "{} bytes read for {} responses of {response_bytes} bytes: sizes do not add up",
            r.bytes, r.requests
        ));
    }
    None
}

/// One response to the exact request wrk sends (same headers, kept alive).
pub struct Probe {
    pub status: u16,
    /// Status line and headers, with the blank line.
    pub head_len: u64,
    pub x_cache: Option<String>,
    pub body: Vec<u8>,
}

pub async fn probe(target: &Target) -> anyhow::Result<Probe> {
    let uri: http::Uri = target.url.parse().context("target URL")?;
    let authority = uri.authority().context("URL has a host")?.as_str();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for h in &target.headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(authority).await?;
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(64 * 1024);
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 * 1024 || s.read_buf(&mut buf).await? == 0 {
                bail!("no complete response head");
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .context("response has no Content-Length")?;
        let mut body = buf.split_off(head_end);
        while body.len() < len {
            if s.read_buf(&mut body).await? == 0 {
                bail!("body ended after {} of {len} bytes", body.len());
            }
        }
        Ok(Probe {
            status,
            head_len: head_end as u64,
            x_cache: header("x-cache"),
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .context("probe timed out")?
}
