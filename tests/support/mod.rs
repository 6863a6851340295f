//! Shared test peers: the real S3 server (s3s-fs with SigV4 verification, in-process), the
//! real Django test app (a child process on its own sqlite copy), a tiny allow-all check
//! endpoint for storage-focused tests, and helpers to start the gateway on `127.0.0.1:0`.
//! One way each to configure a gateway ([`s3_config`], [`origin_config`]), to ask it for a
//! label ([`get_label`]) and to talk to it over a raw socket ([`raw_request`]). The real
//! binary as a child process ([`process`]) and real nginx running the shipped
//! `deploy/nginx/` config in front of several copies ([`nginx`]).
#![allow(dead_code)]

pub mod crafted;
pub mod django;
pub mod moto;
pub mod nginx;
pub mod process;
pub mod relay;
pub mod s3;
pub mod seeds;
pub mod standins;
pub mod tls;

use std::collections::BTreeMap;
use std::time::Duration;

use label_gateway::config::Config;
use label_gateway::server::Running;

#[allow(unused_imports)]
pub use django::Django;
pub use s3::S3Server;
pub use standins::Responder;

/// Loads a config through the real loader: TOML text plus environment overrides.
pub fn config(toml: &str, env: &[(&str, &str)]) -> Config {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_toml_str(toml, &env).expect("test config is valid")
}

/// A config serving `s3` with the session check at `check_url`, plus `extra` overrides.
pub fn s3_config(s3: &S3Server, check_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut env = vec![
        ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
    ];
    env.extend_from_slice(extra);
    s3_config_with_env(s3, check_url, &env)
}

/// [`s3_config`] with exactly `env`: no credentials unless `env` gives them (as plain
/// variables or through `_FILE` twins).
pub fn s3_config_with_env(s3: &S3Server, check_url: &str, env: &[(&str, &str)]) -> Config {
    config(&s3_config_toml(s3, check_url), env)
}

/// The TOML of [`s3_config`].
pub fn s3_config_toml(s3: &S3Server, check_url: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"
[storage]
backend = "s3"
endpoint = "{endpoint}"
region = "{region}"
bucket = "{bucket}"
location = "labels"
retry_backoff = "5ms"
[regenerate]
url = ""
[auth]
check_url = "{check_url}"
# Generous: a Django app answering its first checks while other tests start theirs on the
# same two cores can take seconds. The test of a slow app sets its own.
timeout = "10s"
[log]
access_log = false
"#,
        endpoint = s3.endpoint(),
        region = s3::REGION,
        bucket = s3::BUCKET,
    )
}

/// A config whose storage is a hand-written stand-in origin at `endpoint` (a
/// [`standins::ScriptedOrigin`], or an address that does not answer), with the session
/// check at `check_url`, plus `extra` overrides. A stand-in checks no signature, so the
/// credentials are dummies; retries back off 5 ms so retry tests stay quick.
pub fn origin_config(endpoint: &str, check_url: &str, extra: &[(&str, &str)]) -> Config {
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"
[storage]
backend = "s3"
endpoint = "{endpoint}"
bucket = "labels-test"
retry_backoff = "5ms"
[auth]
check_url = "{check_url}"
[log]
access_log = false
"#
    );
    let mut env = vec![
        ("SPACES_ACCESS_KEY_ID", "AK"),
        ("SPACES_SECRET_ACCESS_KEY", "SK"),
    ];
    env.extend_from_slice(extra);
    config(&toml, &env)
}

/// The `[internal] fetch_allow_private` override that lets carrier fetches reach these
/// loopback stand-ins (the test-only allowance; nothing else on loopback is reachable).
pub fn allow_private(addrs: &[std::net::SocketAddr]) -> (&'static str, String) {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    (
        "LABEL_GATEWAY_INTERNAL__FETCH_ALLOW_PRIVATE",
        format!("[{}]", list.join(", ")),
    )
}

/// The `/metrics` text of a gateway's internal listener at `internal`.
pub async fn metrics(internal: std::net::SocketAddr) -> String {
    client()
        .get(format!("http://{internal}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

/// One counter or gauge without labels from the `/metrics` of the gateway at `internal`.
pub async fn metric(internal: std::net::SocketAddr, name: &str) -> u64 {
    metrics(internal)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// A free loopback port for a listener that must be known before the peer that calls it
/// starts (it is bound a moment later). Taken below the kernel's ephemeral range (32768 and
/// up), where the other tests' `127.0.0.1:0` listeners never land, so none of them can take
/// it in between.
pub fn port_to_bind_later() -> u16 {
    loop {
        let port = rand::random_range(20_000..30_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts the gateway in-process.
pub async fn start_gateway(config: Config) -> Running {
    label_gateway::server::start(config)
        .await
        .expect("gateway starts")
}

/// A plain HTTP client that keeps the redirect and never adds cookies of its own.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client")
}

/// `http://addr/shipping-label/{tracking}/`
pub fn label_url(gw: &Running, tracking: &str) -> String {
    format!("http://{}/shipping-label/{tracking}/", gw.addr())
}

/// A session cookie for a gateway whose check is an allow-all stand-in: any value passes.
pub const ANY_SESSION: &str = "sessionid=anything-the-stand-in-allows";

/// How long a test waits for an answer before calling it a hang: well past any timeout a
/// test configures, so only a hang hits it.
pub const HANG: Duration = Duration::from_secs(15);

/// Slack on top of a configured timeout before a test calls it a hang.
pub const SLACK: Duration = Duration::from_secs(3);

/// `GET /shipping-label/{tracking}/`, built up then sent: how tests ask an in-process
/// gateway for a label (shutdown.rs talks to the binary by address instead).
pub fn get_label(gw: &Running, tracking: &str) -> LabelRequest {
    label_request(gw, reqwest::Method::GET, tracking)
}

/// `HEAD /shipping-label/{tracking}/`.
pub fn head_label(gw: &Running, tracking: &str) -> LabelRequest {
    label_request(gw, reqwest::Method::HEAD, tracking)
}

/// Any method on `/shipping-label/{tracking}/`.
pub fn label_request(gw: &Running, method: reqwest::Method, tracking: &str) -> LabelRequest {
    LabelRequest {
        method,
        url: label_url(gw, tracking),
        headers: Vec::new(),
        client: None,
        timeout: None,
    }
}

/// A label request: no cookie and no timeout unless added, sent on a fresh [`client`]
/// unless given a shared one. Owns everything, so it can be built and then moved into a
/// spawned task.
#[must_use]
pub struct LabelRequest {
    method: reqwest::Method,
    url: String,
    headers: Vec<(String, String)>,
    client: Option<reqwest::Client>,
    timeout: Option<Duration>,
}

impl LabelRequest {
    /// The whole `Cookie` header, e.g. `sessionid=...; theme=dark`.
    pub fn cookie(self, cookie: &str) -> Self {
        self.header("cookie", cookie)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn headers(self, headers: &[(&str, &str)]) -> Self {
        headers.iter().fold(self, |r, (k, v)| r.header(k, v))
    }

    /// Appends `?{query}` to the label URL.
    pub fn query(mut self, query: &str) -> Self {
        self.url = format!("{}?{query}", self.url);
        self
    }

    /// Sends on `client` (its pool, its settings) instead of a fresh one.
    pub fn with_client(mut self, client: &reqwest::Client) -> Self {
        self.client = Some(client.clone());
        self
    }

    /// Gives up after `limit`, the body included (e.g. [`HANG`]).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Sends it; the error, if the gateway gave no response head.
    pub async fn try_send(self) -> reqwest::Result<reqwest::Response> {
        let client = self.client.unwrap_or_else(client);
        let mut r = client.request(self.method, &self.url);
        for (k, v) in &self.headers {
            r = r.header(k, v);
        }
        if let Some(limit) = self.timeout {
            r = r.timeout(limit);
        }
        r.send().await
    }

    /// Sends it; panics if the gateway gave no response head.
    pub async fn send(self) -> reqwest::Response {
        let what = format!("{} {}", self.method, self.url);
        self.try_send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no response: {e}"))
    }
}

/// Deterministic bytes that look like a PDF: `%PDF-` then a pattern, `len` long.
pub fn pdf_bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut v = b"%PDF-1.4\n".to_vec();
    let mut x: u32 = 0x9E37_79B9 ^ u32::from(seed);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push((x & 0xff) as u8);
    }
    v.truncate(len);
    v
}

/// Current resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Sends `request` as raw bytes on a fresh connection (nothing normalised on the way) and
/// reads until the gateway closes or `limit` passes. Returns the status (0: no answer at
/// all) and every byte that came back. A failed write is not an error: the gateway may
/// answer and close before reading all of a bad request.
pub async fn raw_request(
    addr: std::net::SocketAddr,
    request: &[u8],
    limit: Duration,
) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut buf)).await;
    let status = buf
        .split(|b| *b == b' ')
        .nth(1)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, buf)
}

/// `GET {path}` as raw bytes with a session cookie, connection closed after; the status
/// and the response as text.
pub async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {ANY_SESSION}\r\nConnection: close\r\n\r\n"
    );
    let (status, bytes) = raw_request(addr, req.as_bytes(), Duration::from_secs(5)).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether the gateway's cache holds `tracking` now (without counting a hit).
pub async fn is_cached(gw: &Running, tracking: &str) -> bool {
    let cache = gw.gateway.cache.as_ref().expect("the cache is on");
    let key = cache.key(label_gateway::tracking::Tracking::parse(tracking).expect("valid"));
    cache.holds(&key).await
}
