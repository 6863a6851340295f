//! `LOAD_CALLGRIND=1`: instructions per response, counted by callgrind. Instructions do not
//! depend on what else the machine is doing, so this compares two builds (or the gateway
//! with its floors) even on a busy machine where requests/s would be noise.
//!
//! Each row's server runs under `valgrind --tool=callgrind` (the gateway with one worker
//! thread), is warmed up, has its counters zeroed, then serves `wrk -t1 -c4` for a few
//! seconds; the whole process's instructions are divided by the responses wrk counted. The
//! CPU's SHA instructions and the kernel's cost are not in these counts (see
//! benches/RESULTS.md): they rank user-space work, they are not CPU time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::peers::{GatewayChild, SelfChild};
use crate::procs::find_program;
use crate::wrk::{Target, Wrk};

/// Seconds of measured load per row (callgrind runs code about 50x slower).
const SECONDS: u64 = 8;

/// One row's count.
pub struct Count {
    pub row: &'static str,
    pub responses: u64,
    pub instructions: u64,
}

impl Count {
    pub fn per_response(&self) -> u64 {
        self.instructions / self.responses.max(1)
    }
}

/// A shell wrapper that runs `real` under callgrind, writing its counts into `dir`.
fn wrapper(dir: &Path, name: &str, real: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let valgrind = find_program("valgrind", &[]).context("valgrind is not installed")?;
    let path = dir.join(format!("{name}.sh"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec {} --tool=callgrind --callgrind-out-file={}/{name}.%p.out -- {} \"$@\"\n",
            valgrind.display(),
            dir.display(),
            real.display()
        ),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Zeroes `pid`'s counters, runs `wrk`, dumps, and reads the instructions since the zero.
async fn measure(
    row: &'static str,
    pid: u32,
    dir: &Path,
    wrk: &Wrk,
    target: &Target,
) -> anyhow::Result<Count> {
    let control = find_program("callgrind_control", &[]).context("callgrind_control")?;
    // Warm-up: connections, caches, the verdict cache, lazy statics.
    wrk.run(target, 4, 2, true).await?;
    run(&control, &["-z", &pid.to_string()])?;
    let r = wrk.run(target, 4, SECONDS, false).await?;
    if r.errors > 0 {
        bail!("{row}: {} errors under callgrind", r.errors);
    }
    run(&control, &["-d", &pid.to_string()])?;
    // The dump after the zero is the newest file of this process.
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.contains(&format!(".{pid}.out")) {
            let modified = std::fs::metadata(&path)?.modified()?;
            if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
                newest = Some((modified, path));
            }
        }
    }
    let (_, path) = newest.context("no callgrind dump")?;
    let text = std::fs::read_to_string(&path)?;
    let instructions = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .with_context(|| format!("no totals in {}", path.display()))?;
    Ok(Count {
        row,
        responses: r.requests,
        instructions,
    })
}

fn run(program: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(program).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{} {args:?}: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // callgrind_control returns before the dump is written out.
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// The rows: the gateway's hit and miss of `label` (stored as `tracking`, asked for at
/// `path`; S3 store, the allow-all check), the bare hyper limit serving `limit_file`, and
/// the bare proxy streaming the label from the S3 server.
#[allow(clippy::too_many_arguments)]
pub async fn run_rows(
    dir: &Path,
    s3: SocketAddr,
    check: &str,
    wrk: &Wrk,
    label: Target,
    tracking: &str,
    path: &str,
    limit_file: &Path,
) -> anyhow::Result<Vec<Count>> {
    // `LOAD_CALLGRIND_DIR` keeps the dumps, for `callgrind_annotate --inclusive=yes`.
    let cg = std::env::var_os("LOAD_CALLGRIND_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("callgrind"));
    std::fs::create_dir_all(&cg)?;
    let gateway = std::env::var_os("LOAD_GATEWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_label-gateway")));
    let wrapped = wrapper(&cg, "gateway", &gateway)?;
    let one_thread = [("LABEL_GATEWAY_SERVER__WORKER_THREADS", "1".to_string())];
    let mut counts = Vec::new();
    // The gateway children read the binary from this variable.
    std::env::set_var("LOAD_GATEWAY_BIN", &wrapped);
    for (row, cache) in [("gateway hit", true), ("gateway miss", false)] {
        let gw = GatewayChild::start(row, dir, s3, check, cache, &one_thread)?;
        let target = Target {
            url: format!("http://{}{}", gw.addr, path),
            x_cache: Some(if cache { "HIT" } else { "MISS" }),
            ..label.clone()
        };
        counts.push(measure(row, gw.guard.pid(), &cg, wrk, &target).await?);
    }
    std::env::set_var("LOAD_GATEWAY_BIN", &gateway);
    // `LOAD_CALLGRIND_FLOORS=0`: the gateway's rows only (comparing builds: the floors do
    // not change between them).
    if std::env::var("LOAD_CALLGRIND_FLOORS").is_ok_and(|v| v == "0") {
        return Ok(counts);
    }
    let exe = std::env::current_exe()?;
    let limit_wrapped = wrapper(&cg, "limit", &exe)?;
    let limit = SelfChild::start_with(
        &limit_wrapped,
        "serve-limit",
        &[limit_file],
        cg.join("limit.log"),
    )?;
    let target = Target {
        url: format!("http://{}/", limit.addr),
        headers: Vec::new(),
        body_len: label.body_len,
        x_cache: None,
    };
    counts.push(measure("limit (bare hyper)", limit.guard.pid(), &cg, wrk, &target).await?);
    drop(limit);
    // The bare proxy, the miss's floor: the same label through a presigned GET.
    let proxy_wrapped = wrapper(&cg, "proxy", &exe)?;
    let proxy = crate::peers::start_proxy(&proxy_wrapped, &cg, s3, &[(path, tracking)], None)?;
    let target = Target {
        url: format!("http://{}{path}", proxy.addr),
        headers: Vec::new(),
        body_len: label.body_len,
        x_cache: None,
    };
    counts.push(
        measure(
            "bare proxy (hyper client)",
            proxy.guard.pid(),
            &cg,
            wrk,
            &target,
        )
        .await?,
    );
    Ok(counts)
}
