//! The redirect-mode row: the gateway with `[redirect] enabled` answering each label
//! request with a 307 to a presigned URL (session check from the verdict cache, a signed
//! HEAD remembered for 10 s, one presigning per response). Its requests/s are those of the
//! 307s alone; a client that follows also pays one GET at the origin, whose own rate is the
//! matrix's origin row.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context};

use crate::peers::GatewayChild;
use crate::procs::cpu_seconds;
use crate::wrk::{Target, Wrk};

pub struct RedirectRow {
    pub rps: f64,
    pub p99_us: f64,
    pub cpu_us_per_response: f64,
}

/// Starts a redirect-mode gateway, checks that its 307 for `path` (with `session`) leads to
/// `label`, then measures it at `conns` connections for `secs`.
pub async fn run(
    dir: &Path,
    s3: SocketAddr,
    check: &str,
    wrk: &Wrk,
    (path, label, session): (&str, &[u8], &str),
    (conns, secs): (u32, u64),
) -> anyhow::Result<RedirectRow> {
    let gw = GatewayChild::start(
        "gateway-redirect",
        dir,
        s3,
        check,
        false,
        &[("LABEL_GATEWAY_REDIRECT__ENABLED", "true".into())],
    )?;
    let url = format!("http://{}{path}", gw.addr);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let r = client
        .get(&url)
        .header("cookie", format!("sessionid={session}"))
        .send()
        .await?;
    if r.status() != 307 {
        bail!("redirect row: expected 307, got {}", r.status());
    }
    let location = r.headers()["location"].to_str()?.to_string();
    let followed = client.get(&location).send().await?.bytes().await?;
    if followed != label {
        bail!("redirect row: the presigned URL did not return the label");
    }
    let target = Target {
        url,
        headers: vec![format!("Cookie: sessionid={session}")],
        body_len: 0,
        x_cache: None,
    };
    let pid = gw.guard.pid();
    let before = cpu_seconds(pid).context("gateway CPU")?;
    let r = wrk.run(&target, conns, secs, false).await?;
    let after = cpu_seconds(pid).context("gateway CPU")?;
    if r.errors > 0 {
        bail!("redirect row: {} errors", r.errors);
    }
    Ok(RedirectRow {
        rps: r.rps(),
        p99_us: r.p99_us,
        cpu_us_per_response: (after - before) * 1e6 / r.requests.max(1) as f64,
    })
}
