//! The configuration tree: defaults, loading (`config.toml`, then environment overrides),
//! and `validate()`, which names the bad key and the reason.
//!
//! Precedence, lowest first: built-in defaults, the TOML file, the Django deployment's
//! `SPACES_*` variables, then `LABEL_GATEWAY_SECTION__KEY` variables. Secrets (Spaces
//! credentials, bearer tokens) come from the environment only and are held in [`Secret`],
//! which never prints. The environment is read through [`Env`] so tests pass a map.
//!
//! Each secret may instead come from a file named by its variable with `_FILE` appended
//! (the container convention: `SPACES_SECRET_ACCESS_KEY_FILE=/run/secrets/spaces`).
//! Those files are remembered in [`Config::secret_files`] so that `SIGHUP` can read them
//! again ([`read_secret_file`]): key rotation without a restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use figment::providers::{Format, Toml};
use figment::Figment;
use serde::Deserialize;

/// Prefix of the environment overrides: `LABEL_GATEWAY_AUTH__CHECK_URL` sets `[auth] check_url`.
pub const ENV_PREFIX: &str = "LABEL_GATEWAY_";

/// The Django deployment's own variable names, read for `[storage]` so one `.env` serves both.
const SPACES_VARS: &[(&str, &str)] = &[
    ("SPACES_BUCKET_NAME", "storage.bucket"),
    ("SPACES_REGION", "storage.region"),
    ("SPACES_ENDPOINT_URL", "storage.endpoint"),
    ("SPACES_CDN_DOMAIN", "storage.cdn_domain"),
];

/// Keys that hold secrets: only the environment (or a `{VAR}_FILE` it names) may set them.
pub const SECRET_VARS: &[(&str, &str)] = &[
    ("SPACES_ACCESS_KEY_ID", "storage.access_key_id"),
    ("SPACES_SECRET_ACCESS_KEY", "storage.secret_access_key"),
    (
        "SPACES_FALLBACK_ACCESS_KEY_ID",
        "storage.fallback.access_key_id",
    ),
    (
        "SPACES_FALLBACK_SECRET_ACCESS_KEY",
        "storage.fallback.secret_access_key",
    ),
    ("LABEL_GATEWAY_INTERNAL__TOKEN", "internal.token"),
    ("LABEL_GATEWAY_REGENERATE__TOKEN", "regenerate.token"),
];

/// Where configuration variables come from. The process environment in production,
/// a map in tests.
pub trait Env {
    /// All variables, for the prefix scan.
    fn vars(&self) -> Vec<(String, String)>;
    /// One variable; empty values count as unset.
    fn var(&self, key: &str) -> Option<String> {
        self.vars()
            .into_iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v)
    }
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn vars(&self) -> Vec<(String, String)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

pub use crate::secret::Secret;

/// The whole configuration. Every section and key has a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub cache: CacheConfig,
    pub internal: InternalConfig,
    pub regenerate: RegenerateConfig,
    pub log: LogConfig,
    pub batch: BatchConfig,
    /// The secrets read from a file (`{VAR}_FILE`): variable name → path. `SIGHUP` reads
    /// these again; secrets given as plain variables keep their start-up value.
    #[serde(skip)]
    pub secret_files: BTreeMap<&'static str, PathBuf>,
    pub redirect: RedirectConfig,
}

/// `[redirect]`: deliver labels by a 307 to a short-lived presigned URL instead of
/// streaming them (after the same session check), so the bytes go from the bucket to the
/// client directly.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedirectConfig {
    pub enabled: bool,
    /// Lifetime of each URL (at most 7 days, SigV4's limit). Each URL is a bearer token
    /// for this long: keep it short.
    #[serde(with = "humantime_serde")]
    pub expires: Duration,
    /// Host named (and signed for) in the URL, e.g. a custom domain in front of the
    /// bucket; empty: the storage endpoint.
    pub host: String,
    /// A signed HEAD first, so a missing label regenerates or gets the 404 page instead of
    /// a redirect to an S3 error.
    pub check_exists: bool,
}

impl Default for RedirectConfig {
    fn default() -> Self {
        RedirectConfig {
            enabled: false,
            expires: Duration::from_secs(300),
            host: String::new(),
            check_exists: true,
        }
    }
}

/// `[server]`: listeners, client-facing timeouts and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Public listener (nginx proxies `/shipping-label/` here).
    pub listen: SocketAddr,
    /// The listener for `/internal/...` (the app's calls) and `/metrics`, which the
    /// public listener never answers: keep it off the public network.
    pub internal_listen: SocketAddr,
    /// Also answer `/internal/...` and `/metrics` on the public listener. Only for a
    /// public listener that nothing but the app can reach; `check-config` warns otherwise.
    pub internal_on_public: bool,
    /// A client must complete each request head within this time of connecting or of its
    /// previous response ending (slowloris guard, keep-alive idle limit).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time from the request's arrival to the response head.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A response whose client has read nothing for this long is cut (nginx's
    /// `send_timeout`): a client that stops reading does not hold its slot forever.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Open connections at most; more wait `accept_wait` for a slot, then get 503.
    pub max_connections: usize,
    /// How long a connection over `max_connections` waits for a free slot.
    #[serde(with = "humantime_serde")]
    pub accept_wait: Duration,
    /// Largest request head accepted (431 above it).
    pub max_header_bytes: ByteSize,
    /// Largest `Cookie` header accepted (431 above it).
    pub max_cookie_bytes: ByteSize,
    /// In-flight downloads get this long to finish on SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Unset (the default): labels go out `Cache-Control: private, no-cache`, so a
    /// browser asks every time (a cheap 304 after the session check) and a logged-out
    /// browser is refused. Set: `private, max-age=` this long, and a browser shows a label
    /// from its own cache without asking, even after logout (on a shared packing-station
    /// PC the next person sees the previous user's labels).
    #[serde(with = "humantime_serde")]
    pub response_max_age: Option<Duration>,
    /// `Retry-After` sent with 503 answers.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Tokio worker threads; 0 means one per core.
    pub worker_threads: usize,
    /// Peers whose `X-Forwarded-For`/`-Proto`/`-Host` are believed (addresses or CIDRs,
    /// e.g. the nginx in front). From anyone else they are rebuilt from the connection.
    pub trusted_proxies: Vec<String>,
}

impl ServerConfig {
    /// `trusted_proxies` parsed: a bare address means just that address.
    pub fn trusted_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|t| {
                t.parse::<ipnet::IpNet>()
                    .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "server.trusted_proxies",
                            format!("{t:?} is not an address or CIDR (e.g. 10.0.0.0/8)"),
                        )
                    })
            })
            .collect()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            internal_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            internal_on_public: false,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            accept_wait: Duration::from_millis(100),
            max_header_bytes: ByteSize::kib(32),
            max_cookie_bytes: ByteSize::kib(8),
            shutdown_grace: Duration::from_secs(30),
            response_max_age: None,
            retry_after: Duration::from_secs(2),
            worker_threads: 0,
            trusted_proxies: vec!["127.0.0.1/32".into(), "::1/128".into()],
        }
    }
}

/// Which store holds the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A folder of `{tracking}.pdf` files (the app's old `media/shipping_labels/`).
    Local,
    /// An S3-compatible bucket (DigitalOcean Spaces) holding `{location}/{tracking}.pdf`.
    S3,
}

/// S3 addressing style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// `https://endpoint/bucket/key`
    Path,
    /// `https://bucket.endpoint/key`
    Virtual,
}

/// `[storage]`: where labels live and how to reach them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: Backend,
    /// Local backend: `{local_root}/{tracking}.pdf`. Created at start-up when missing.
    pub local_root: PathBuf,
    /// S3 endpoint URL (`SPACES_ENDPOINT_URL`).
    pub endpoint: String,
    /// Signing region (`SPACES_REGION`); Spaces takes its region slug, e.g. `lon1`.
    pub region: String,
    /// Bucket name (`SPACES_BUCKET_NAME`).
    pub bucket: String,
    /// Key prefix: `{location}/{tracking}.pdf`.
    pub location: String,
    pub addressing: Addressing,
    /// CDN domain of the bucket (`SPACES_CDN_DOMAIN`); informational, labels are private.
    pub cdn_domain: Option<String>,
    /// `SPACES_ACCESS_KEY_ID` (environment only).
    #[serde(skip)]
    pub access_key_id: Option<Secret>,
    /// `SPACES_SECRET_ACCESS_KEY` (environment only).
    #[serde(skip)]
    pub secret_access_key: Option<Secret>,
    /// TCP + TLS connect timeout to the storage endpoint.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// From sending a storage request to its response head.
    #[serde(with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// Longest silence between two body chunks from storage before the download is cut.
    #[serde(with = "humantime_serde")]
    pub idle_body_timeout: Duration,
    /// Attempts for a storage request that failed before any byte was sent (5xx,
    /// `SlowDown`, connection errors); 1 means no retry.
    pub attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// `[storage.fallback]`: a second bucket reads fail over to.
    pub fallback: FallbackConfig,
}

/// `[storage.fallback]`: a second bucket (another region, kept filled by `mirror`) that
/// label reads fail over to when the primary faults. Same `location` as the primary;
/// the connection settings (timeouts, attempts) are the primary's.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackConfig {
    /// Endpoint URL; empty: no fallback.
    pub endpoint: String,
    pub bucket: String,
    /// Signing region, e.g. `ams3`.
    pub region: String,
    pub addressing: Addressing,
    /// Consecutive primary faults after which reads go to the fallback first.
    pub after_failures: u32,
    /// While reads go to the fallback first, one read this often tries the primary.
    #[serde(with = "humantime_serde")]
    pub probe_every: Duration,
    /// `SPACES_FALLBACK_ACCESS_KEY_ID` (environment only).
    #[serde(skip)]
    pub access_key_id: Option<Secret>,
    /// `SPACES_FALLBACK_SECRET_ACCESS_KEY` (environment only).
    #[serde(skip)]
    pub secret_access_key: Option<Secret>,
}

impl FallbackConfig {
    /// Whether a fallback bucket is configured.
    pub fn enabled(&self) -> bool {
        !self.endpoint.is_empty()
    }
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            endpoint: String::new(),
            bucket: String::new(),
            region: String::new(),
            addressing: Addressing::Path,
            after_failures: 5,
            probe_every: Duration::from_secs(10),
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Local,
            local_root: PathBuf::from("./media/shipping_labels"),
            endpoint: "https://lon1.digitaloceanspaces.com".into(),
            region: "lon1".into(),
            bucket: "sensational-shipping-labels".into(),
            location: "labels".into(),
            addressing: Addressing::Path,
            cdn_domain: None,
            access_key_id: None,
            secret_access_key: None,
            connect_timeout: Duration::from_secs(3),
            first_byte_timeout: Duration::from_secs(10),
            idle_body_timeout: Duration::from_secs(20),
            attempts: 3,
            retry_backoff: Duration::from_millis(50),
            fallback: FallbackConfig::default(),
        }
    }
}

/// What a denied session gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDeny {
    /// 404, as the Django view does: it does not reveal that a label exists.
    NotFound,
    /// 302 to `login_url?next={path}`.
    Redirect,
}

/// `[auth]`: the session check against the Django app.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `GET` here with the session cookie; may contain `{tracking}`.
    pub check_url: String,
    /// Django's `SESSION_COOKIE_NAME`.
    pub cookie_name: String,
    /// How long an allow verdict is reused; at most [`MAX_ALLOW_TTL`] (5 minutes).
    #[serde(with = "humantime_serde")]
    pub allow_ttl: Duration,
    /// How long a deny verdict is reused.
    #[serde(with = "humantime_serde")]
    pub deny_ttl: Duration,
    pub on_deny: OnDeny,
    /// Login page for `on_deny = "redirect"`.
    pub login_url: String,
    /// Whole check call, connect included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Cached verdicts at most.
    pub max_verdicts: u64,
}

/// The longest `auth.allow_ttl`: how long a session Django has ended without telling the
/// gateway (expiry, a missed revoke) may still read labels.
pub const MAX_ALLOW_TTL: Duration = Duration::from_secs(5 * 60);

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            check_url: "http://127.0.0.1:8000/internal/label-access/{tracking}/".into(),
            cookie_name: "sessionid".into(),
            allow_ttl: Duration::from_secs(30),
            deny_ttl: Duration::from_secs(5),
            on_deny: OnDeny::NotFound,
            login_url: "/accounts/login/".into(),
            timeout: Duration::from_secs(3),
            max_verdicts: 100_000,
        }
    }
}

/// `[cache]`: the in-process hot-label cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `false`: every request streams from storage.
    pub enabled: bool,
    /// Total bytes of label bodies held.
    pub max_bytes: ByteSize,
    /// Larger objects are streamed and never cached.
    pub max_object_bytes: ByteSize,
    /// Time to live from insertion.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Time to idle: evicted when not read for this long.
    #[serde(with = "humantime_serde")]
    pub tti: Option<Duration>,
    /// A request waiting for another request's fetch of the same label fetches on its
    /// own once that fetch has streamed nothing for this long (its client stopped
    /// reading, say): no client can hold another's download back.
    #[serde(with = "humantime_serde")]
    pub fill_stall: Duration,
    /// How long past `ttl` a cached label is still served (`X-Cache: STALE`) while storage
    /// fails with a fault (no connection, a timeout, a 5xx); `0s` turns it off. Such labels
    /// stay in memory for `ttl + stale_if_error`, within `max_bytes`.
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// A file the hot labels' tracking numbers are written to on drain and warmed from on
    /// start; empty: off.
    pub hot_list: PathBuf,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_bytes: ByteSize::mib(256),
            max_object_bytes: ByteSize::mib(4),
            ttl: Duration::from_secs(3600),
            tti: None,
            fill_stall: Duration::from_millis(250),
            stale_if_error: Duration::from_secs(24 * 3600),
            hot_list: PathBuf::new(),
        }
    }
}

impl CacheConfig {
    /// The longest `stale_if_error`: a label a month past its freshness is no fallback.
    pub const MAX_STALE_IF_ERROR: Duration = Duration::from_secs(30 * 24 * 3600);

    /// The hot list's path, when it is on.
    pub fn hot_list(&self) -> Option<&Path> {
        (!self.hot_list.as_os_str().is_empty()).then_some(self.hot_list.as_path())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.stale_if_error > Self::MAX_STALE_IF_ERROR {
            return Err(invalid(
                "cache.stale_if_error",
                "must be at most 30d (0s turns it off)",
            ));
        }
        let Some(path) = self.hot_list() else {
            return Ok(());
        };
        if !self.enabled {
            return Err(invalid(
                "cache.hot_list",
                "needs cache.enabled = true (there is nothing to write or warm)",
            ));
        }
        if path.file_name().is_none() || path.is_dir() {
            return Err(invalid(
                "cache.hot_list",
                format!("{} is a folder; name a file in it", path.display()),
            ));
        }
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !folder.is_dir() {
            return Err(invalid(
                "cache.hot_list",
                format!("its folder {} does not exist", folder.display()),
            ));
        }
        Ok(())
    }
}

/// `[internal]`: calls from the app to the gateway (`/internal/...`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InternalConfig {
    /// `LABEL_GATEWAY_INTERNAL__TOKEN` (environment only); `/internal/...` is refused
    /// without it.
    #[serde(skip)]
    pub token: Option<Secret>,
    /// Largest label accepted by the ingest endpoints.
    pub max_upload_bytes: ByteSize,
    /// Carrier label downloads (`/internal/labels/{tracking}/fetch`): allow plain http.
    pub fetch_allow_http: bool,
    /// Carrier hosts a fetch (and each of its redirects) may reach: exact names or
    /// `*.suffix`. Empty: any host whose addresses are public. Private, loopback,
    /// link-local and metadata addresses are refused either way.
    pub fetch_allow_hosts: Vec<String>,
    /// Exact `ip:port` pairs a fetch may reach although they are not public. For the test
    /// suite's stand-in carrier (or an on-premises mirror); never set in production.
    pub fetch_allow_private: Vec<SocketAddr>,
    /// Redirects a carrier fetch follows at most (each held to the same rules).
    pub fetch_max_redirects: usize,
    /// An egress proxy for carrier fetches (`http://proxy:3128`); empty: none. The
    /// process environment's `HTTPS_PROXY` is never used.
    pub fetch_proxy: String,
    #[serde(with = "humantime_serde")]
    pub fetch_connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
}

impl Default for InternalConfig {
    fn default() -> Self {
        InternalConfig {
            token: None,
            max_upload_bytes: ByteSize::mib(20),
            fetch_allow_http: false,
            fetch_allow_hosts: Vec::new(),
            fetch_allow_private: Vec::new(),
            fetch_max_redirects: 5,
            fetch_proxy: String::new(),
            fetch_connect_timeout: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(30),
        }
    }
}

/// `[regenerate]`: calls from the gateway to the app when a label is missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegenerateConfig {
    /// `POST` here when storage has no label; may contain `{tracking}`. Empty: off.
    pub url: String,
    /// `LABEL_GATEWAY_REGENERATE__TOKEN` (environment only), sent as a bearer token.
    #[serde(skip)]
    pub token: Option<Secret>,
    /// Whole regeneration call, up to the response head.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Tracking link on the "label missing" page when the app gives none; `{tracking}`.
    pub tracking_url_template: String,
    /// How long "cannot regenerate" is remembered per tracking number.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Regenerations one session may start in a burst (each asks the app, which may ask
    /// a carrier); past it, 429 with `Retry-After`.
    pub per_session_burst: u32,
    /// Regenerations per minute one session may start once its burst is spent.
    pub per_session_per_minute: u32,
    /// Memory for remembered outcomes (fresh labels shared with late requests, and
    /// "cannot regenerate" answers): their bytes at most this, and at most 10,000 of them.
    pub remember_bytes: ByteSize,
}

impl Default for RegenerateConfig {
    fn default() -> Self {
        RegenerateConfig {
            url: "http://127.0.0.1:8000/internal/label-regenerate/{tracking}/".into(),
            token: None,
            timeout: Duration::from_secs(20),
            tracking_url_template: String::new(),
            negative_ttl: Duration::from_secs(60),
            per_session_burst: 10,
            per_session_per_minute: 10,
            remember_bytes: ByteSize::mib(64),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `label_gateway=debug`; `RUST_LOG` wins.
    pub level: String,
    /// One line per request at `info`.
    pub access_log: bool,
    /// `text` (one `key=value` line per event) or `json` (one JSON object per line, the
    /// same fields), for a log shipper.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            access_log: true,
            format: LogFormat::Text,
        }
    }
}

/// `[batch]`: many labels in one answer (`/shipping-label/batch.pdf`, `batch.zip`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Distinct labels one batch may ask for (more: 413).
    pub max_labels: usize,
    /// Batches answered at once; past it, 503 with `Retry-After`.
    pub max_concurrent: usize,
    /// Labels fetched ahead of the one being written (and storage look-ups in flight
    /// while a batch is planned). What a batch holds in memory is about this many labels.
    pub fetch_ahead: usize,
    /// Session checks of one batch in flight at once.
    pub check_concurrency: usize,
    /// A label larger than this fails its batch (502): it is read whole to be merged.
    pub max_label_bytes: ByteSize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_labels: 500,
            max_concurrent: 4,
            fetch_ahead: 8,
            check_concurrency: 8,
            max_label_bytes: ByteSize::mib(20),
        }
    }
}

/// A configuration error: the key at fault and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl Config {
    /// Loads `path` (missing file: an error), applies `env`, validates.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml_str(&text, env)
    }

    /// Parses TOML text, applies `env`, validates.
    pub fn from_toml_str(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let file = Figment::from(Toml::string(text));
        for (_, key) in SECRET_VARS {
            if file.find_value(key).is_ok() {
                return Err(invalid(
                    key,
                    "secrets are read from the environment only; remove it from the file",
                ));
            }
        }
        let mut fig = file;
        for (var, key) in SPACES_VARS {
            if let Some(value) = env.var(var) {
                fig = fig.merge((*key, value));
            }
        }
        for (var, value) in env.vars() {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if !rest.contains("__") || is_secret_var(&var) {
                continue;
            }
            let key = rest.to_ascii_lowercase().replace("__", ".");
            let parsed: figment::value::Value = value
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
            fig = fig.merge((key, parsed));
        }
        let mut config: Config = fig.extract().map_err(|e| {
            let mut msgs = Vec::new();
            for err in e {
                let path = err.path.join(".");
                let what = err.kind.to_string();
                msgs.push(if path.is_empty() {
                    what
                } else {
                    format!("{path}: {what}")
                });
            }
            ConfigError::Parse(msgs.join("; "))
        })?;
        for (var, key) in SECRET_VARS {
            let value = env_secret(env, var, key, &mut config.secret_files)?;
            if let Some(slot) = config.secret_slot(var) {
                *slot = value;
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// The secret of variable `var` (one of [`SECRET_VARS`]), when set.
    pub fn secret(&self, var: &str) -> Option<&Secret> {
        match var {
            "SPACES_ACCESS_KEY_ID" => self.storage.access_key_id.as_ref(),
            "SPACES_SECRET_ACCESS_KEY" => self.storage.secret_access_key.as_ref(),
            "SPACES_FALLBACK_ACCESS_KEY_ID" => self.storage.fallback.access_key_id.as_ref(),
            "SPACES_FALLBACK_SECRET_ACCESS_KEY" => self.storage.fallback.secret_access_key.as_ref(),
            "LABEL_GATEWAY_INTERNAL__TOKEN" => self.internal.token.as_ref(),
            "LABEL_GATEWAY_REGENERATE__TOKEN" => self.regenerate.token.as_ref(),
            _ => None,
        }
    }

    /// Where the secret of variable `var` (one of [`SECRET_VARS`]) is held.
    pub fn secret_slot(&mut self, var: &str) -> Option<&mut Option<Secret>> {
        Some(match var {
            "SPACES_ACCESS_KEY_ID" => &mut self.storage.access_key_id,
            "SPACES_SECRET_ACCESS_KEY" => &mut self.storage.secret_access_key,
            "SPACES_FALLBACK_ACCESS_KEY_ID" => &mut self.storage.fallback.access_key_id,
            "SPACES_FALLBACK_SECRET_ACCESS_KEY" => &mut self.storage.fallback.secret_access_key,
            "LABEL_GATEWAY_INTERNAL__TOKEN" => &mut self.internal.token,
            "LABEL_GATEWAY_REGENERATE__TOKEN" => &mut self.regenerate.token,
            _ => return None,
        })
    }

    /// Checks every value a start-up or a request could trip on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        for (key, d) in [
            ("server.header_read_timeout", s.header_read_timeout),
            ("server.request_timeout", s.request_timeout),
            ("server.send_timeout", s.send_timeout),
            ("storage.connect_timeout", self.storage.connect_timeout),
            (
                "storage.first_byte_timeout",
                self.storage.first_byte_timeout,
            ),
            ("storage.idle_body_timeout", self.storage.idle_body_timeout),
            ("auth.timeout", self.auth.timeout),
            ("cache.ttl", self.cache.ttl),
            ("cache.fill_stall", self.cache.fill_stall),
            ("regenerate.timeout", self.regenerate.timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if s.max_header_bytes.as_u64() < 1024 {
            return Err(invalid("server.max_header_bytes", "must be at least 1KiB"));
        }
        s.trusted_nets()?;
        if s.internal_listen == s.listen && s.listen.port() != 0 {
            return Err(invalid(
                "server.internal_listen",
                "must differ from server.listen",
            ));
        }
        self.validate_storage()?;
        self.validate_auth()?;
        let c = &self.cache;
        if c.enabled && c.max_object_bytes > c.max_bytes {
            return Err(invalid(
                "cache.max_object_bytes",
                format!(
                    "{} is larger than cache.max_bytes ({})",
                    c.max_object_bytes, c.max_bytes
                ),
            ));
        }
        self.cache.validate()?;
        if !self.regenerate.url.is_empty() {
            check_http_url("regenerate.url", &self.regenerate.url)?;
        }
        self.validate_internal()?;
        let rd = &self.redirect;
        if rd.enabled {
            if self.storage.backend != Backend::S3 {
                return Err(invalid(
                    "redirect.enabled",
                    "needs storage.backend = \"s3\" (a local folder has no URLs to sign)",
                ));
            }
            if rd.expires.is_zero() || rd.expires > Duration::from_secs(7 * 24 * 3600) {
                return Err(invalid("redirect.expires", "must be between 1s and 7d"));
            }
        }
        if !rd.host.is_empty()
            && (rd.host.contains('/')
                || rd.host.contains(char::is_whitespace)
                || rd.host.parse::<http::uri::Authority>().is_err())
        {
            return Err(invalid(
                "redirect.host",
                "a host name (and optional :port), without scheme or path",
            ));
        }
        let r = &self.regenerate;
        if r.per_session_burst == 0 || r.per_session_per_minute == 0 {
            return Err(invalid(
                "regenerate.per_session_burst",
                "per_session_burst and per_session_per_minute must be at least 1",
            ));
        }
        let tmpl = &self.regenerate.tracking_url_template;
        if !(tmpl.is_empty() || tmpl.starts_with("https://") || tmpl.starts_with("http://")) {
            return Err(invalid(
                "regenerate.tracking_url_template",
                "must be an http(s) URL",
            ));
        }
        if self
            .log
            .level
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            return Err(invalid("log.level", "not a valid tracing filter"));
        }
        self.validate_batch()?;
        Ok(())
    }

    fn validate_batch(&self) -> Result<(), ConfigError> {
        let b = &self.batch;
        for (key, n, max) in [
            // A ZIP without ZIP64 holds at most 65,535 entries.
            ("batch.max_labels", b.max_labels, 10_000),
            ("batch.max_concurrent", b.max_concurrent, 1_000),
            ("batch.fetch_ahead", b.fetch_ahead, 64),
            ("batch.check_concurrency", b.check_concurrency, 64),
        ] {
            if n == 0 || n > max {
                return Err(invalid(key, format!("must be between 1 and {max}")));
            }
        }
        if b.max_label_bytes.as_u64() < 1024 {
            return Err(invalid("batch.max_label_bytes", "must be at least 1KiB"));
        }
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        let st = &self.storage;
        if st.attempts == 0 {
            return Err(invalid("storage.attempts", "must be at least 1"));
        }
        match st.backend {
            Backend::Local => {
                if st.local_root.as_os_str().is_empty() {
                    return Err(invalid("storage.local_root", "must not be empty"));
                }
                if st.local_root.exists() && !st.local_root.is_dir() {
                    return Err(invalid(
                        "storage.local_root",
                        format!("{} exists but is not a folder", st.local_root.display()),
                    ));
                }
            }
            Backend::S3 => {
                check_http_url("storage.endpoint", &st.endpoint)?;
                if st.region.is_empty() {
                    return Err(invalid(
                        "storage.region",
                        "must be set (SPACES_REGION), e.g. lon1",
                    ));
                }
                if !valid_bucket(&st.bucket) {
                    return Err(invalid(
                        "storage.bucket",
                        "3-63 characters of a-z 0-9 . - (SPACES_BUCKET_NAME)",
                    ));
                }
                if st.access_key_id.is_none() {
                    return Err(invalid(
                        "storage.access_key_id",
                        "missing: set SPACES_ACCESS_KEY_ID (or SPACES_ACCESS_KEY_ID_FILE) in \
                         the environment",
                    ));
                }
                if st.secret_access_key.is_none() {
                    return Err(invalid(
                        "storage.secret_access_key",
                        "missing: set SPACES_SECRET_ACCESS_KEY (or \
                         SPACES_SECRET_ACCESS_KEY_FILE) in the environment",
                    ));
                }
            }
        }
        let loc = &st.location;
        if loc.starts_with('/')
            || loc.ends_with('/')
            || loc.split('/').any(|seg| seg == ".." || seg == ".")
            || loc.contains("//")
            || loc.chars().any(|c| c.is_control() || c == '\\')
        {
            return Err(invalid(
                "storage.location",
                "a key prefix such as \"labels\": no leading or trailing '/', no '..'",
            ));
        }
        self.validate_fallback()
    }

    fn validate_fallback(&self) -> Result<(), ConfigError> {
        let (st, fb) = (&self.storage, &self.storage.fallback);
        if !fb.enabled() {
            return Ok(());
        }
        if st.backend != Backend::S3 {
            return Err(invalid(
                "storage.fallback.endpoint",
                "a fallback bucket needs storage.backend = \"s3\"",
            ));
        }
        check_http_url("storage.fallback.endpoint", &fb.endpoint)?;
        if fb.region.is_empty() {
            return Err(invalid("storage.fallback.region", "must be set, e.g. ams3"));
        }
        if !valid_bucket(&fb.bucket) {
            return Err(invalid(
                "storage.fallback.bucket",
                "3-63 characters of a-z 0-9 . -",
            ));
        }
        if fb.endpoint == st.endpoint && fb.bucket == st.bucket {
            return Err(invalid(
                "storage.fallback.bucket",
                "is the primary bucket itself: name a bucket in another region",
            ));
        }
        if fb.after_failures == 0 {
            return Err(invalid(
                "storage.fallback.after_failures",
                "must be at least 1",
            ));
        }
        if fb.probe_every.is_zero() {
            return Err(invalid(
                "storage.fallback.probe_every",
                "must be longer than zero",
            ));
        }
        for (key, var, value) in [
            (
                "storage.fallback.access_key_id",
                "SPACES_FALLBACK_ACCESS_KEY_ID",
                &fb.access_key_id,
            ),
            (
                "storage.fallback.secret_access_key",
                "SPACES_FALLBACK_SECRET_ACCESS_KEY",
                &fb.secret_access_key,
            ),
        ] {
            if value.is_none() {
                return Err(invalid(
                    key,
                    format!("missing: set {var} (or {var}_FILE) in the environment"),
                ));
            }
        }
        Ok(())
    }

    fn validate_internal(&self) -> Result<(), ConfigError> {
        let i = &self.internal;
        for h in &i.fetch_allow_hosts {
            let name = h.strip_prefix("*.").unwrap_or(h);
            if name.is_empty()
                || name.contains('*')
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            {
                return Err(invalid(
                    "internal.fetch_allow_hosts",
                    format!("{h:?} is not a host name or *.suffix pattern"),
                ));
            }
        }
        if !i.fetch_proxy.is_empty() {
            check_http_url("internal.fetch_proxy", &i.fetch_proxy)?;
        }
        if i.fetch_max_redirects > 20 {
            return Err(invalid("internal.fetch_max_redirects", "at most 20"));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        check_http_url("auth.check_url", &a.check_url)?;
        if a.allow_ttl > MAX_ALLOW_TTL {
            return Err(invalid(
                "auth.allow_ttl",
                "at most 5m: a session Django has ended (expired, or a revoke that did not \
                 arrive) keeps reading labels for up to this long",
            ));
        }
        if a.cookie_name.is_empty()
            || !a
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(invalid(
                "auth.cookie_name",
                "must be a cookie name (Django's SESSION_COOKIE_NAME), e.g. sessionid",
            ));
        }
        if a.on_deny == OnDeny::Redirect
            && !(a.login_url.starts_with('/')
                || a.login_url.starts_with("https://")
                || a.login_url.starts_with("http://"))
        {
            return Err(invalid(
                "auth.login_url",
                "must be a path (/accounts/login/) or an http(s) URL",
            ));
        }
        if a.login_url.chars().any(|c| c.is_control() || c == ' ') {
            return Err(invalid("auth.login_url", "must not contain spaces"));
        }
        Ok(())
    }
}

/// A secret variable or its `_FILE` twin.
fn is_secret_var(var: &str) -> bool {
    let var = var.strip_suffix("_FILE").unwrap_or(var);
    SECRET_VARS.iter().any(|(v, _)| *v == var)
}

/// The secret of `var` (config key `key`): from the variable itself or from the file its
/// `_FILE` twin names (remembered in `files`), never both.
fn env_secret(
    env: &dyn Env,
    var: &'static str,
    key: &str,
    files: &mut BTreeMap<&'static str, PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    let file_var = format!("{var}_FILE");
    match (env.var(var), env.var(&file_var)) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            format!("both {var} and {file_var} are set: set only one"),
        )),
        (Some(value), None) => Ok(Some(Secret::new(value))),
        (None, Some(path)) => {
            let path = PathBuf::from(path);
            let secret = read_secret_file(var, &path).map_err(|reason| invalid(key, reason))?;
            files.insert(var, path);
            Ok(Some(secret))
        }
        (None, None) => Ok(None),
    }
}

/// Reads the secret of `var` from `path` (its `{var}_FILE`): surrounding whitespace and
/// the trailing newline trimmed. A missing, unreadable or empty file is an error naming
/// the variable and the path, never the content.
pub fn read_secret_file(var: &str, path: &Path) -> Result<Secret, String> {
    let mut text = std::fs::read_to_string(path)
        .map_err(|e| format!("{var}_FILE: cannot read {}: {e}", path.display()))?;
    let secret = Secret::new(text.trim());
    zeroize::Zeroize::zeroize(&mut text);
    if secret.is_empty() {
        return Err(format!("{var}_FILE: {} is empty", path.display()));
    }
    Ok(secret)
}

fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let probe = url.replace("{tracking}", "X");
    let uri: http::Uri = probe
        .parse()
        .map_err(|_| invalid(key, format!("{url:?} is not a URL")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(invalid(
                key,
                format!("{url:?} must start with http:// or https://"),
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid(key, format!("{url:?} has no host")));
    }
    Ok(())
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && !b.starts_with(['.', '-'])
        && !b.ends_with(['.', '-'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(text: &str, vars: &[(&str, &str)]) -> String {
        Config::from_toml_str(text, &env(vars))
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = Config::from_toml_str("", &env(&[])).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.storage.backend, Backend::Local);
        assert_eq!(c.auth.cookie_name, "sessionid");
        assert_eq!(c.auth.allow_ttl, Duration::from_secs(30));
        assert_eq!(c.auth.deny_ttl, Duration::from_secs(5));
        assert_eq!(c.cache.max_bytes, ByteSize::mib(256));
        assert_eq!(c.cache.max_object_bytes, ByteSize::mib(4));
        assert_eq!(c.cache.stale_if_error, Duration::from_secs(24 * 3600));
        assert_eq!(c.cache.hot_list(), None);
    }

    #[test]
    fn stale_if_error_and_hot_list_are_checked_naming_the_key() {
        let e = err("[cache]\nstale_if_error = \"31d\"\n", &[]);
        assert!(e.starts_with("cache.stale_if_error"), "{e}");
        let e = err("[cache]\nstale_if_error = \"soon\"\n", &[]);
        assert!(e.contains("cache.stale_if_error"), "{e}");
        let ok = Config::from_toml_str("[cache]\nstale_if_error = \"0s\"\n", &env(&[])).unwrap();
        assert!(ok.cache.stale_if_error.is_zero());

        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().display();
        let e = err(&format!("[cache]\nhot_list = \"{folder}\"\n"), &[]);
        assert!(
            e.starts_with("cache.hot_list") && e.contains("folder"),
            "{e}"
        );
        let e = err(
            &format!("[cache]\nhot_list = \"{folder}/none/hot.txt\"\n"),
            &[],
        );
        assert!(
            e.starts_with("cache.hot_list") && e.contains("does not exist"),
            "{e}"
        );
        let e = err(
            &format!("[cache]\nenabled = false\nhot_list = \"{folder}/hot.txt\"\n"),
            &[],
        );
        assert!(e.starts_with("cache.hot_list"), "{e}");
        let ok = format!("[cache]\nhot_list = \"{folder}/hot.txt\"\n");
        let c = Config::from_toml_str(&ok, &env(&[])).unwrap();
        assert_eq!(
            c.cache.hot_list(),
            Some(dir.path().join("hot.txt").as_path())
        );
    }

    #[test]
    fn shipped_config_toml_is_valid() {
        let text = include_str!("../config.toml");
        let c = Config::from_toml_str(text, &env(&[])).unwrap();
        assert_eq!(c.storage.backend, Backend::Local);
    }

    #[test]
    fn human_durations_and_sizes_parse() {
        let c = Config::from_toml_str(
            "[auth]\nallow_ttl = \"2m\"\n[cache]\nmax_bytes = \"1GiB\"\nmax_object_bytes = \"512KiB\"\n",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.auth.allow_ttl, Duration::from_secs(120));
        assert_eq!(c.cache.max_bytes, ByteSize::gib(1));
        assert_eq!(c.cache.max_object_bytes, ByteSize::kib(512));
    }

    #[test]
    fn prefixed_env_overrides_file() {
        let c = Config::from_toml_str(
            "[auth]\ncookie_name = \"fromfile\"\n",
            &env(&[
                ("LABEL_GATEWAY_AUTH__COOKIE_NAME", "fromenv"),
                ("LABEL_GATEWAY_SERVER__LISTEN", "0.0.0.0:9000"),
                ("LABEL_GATEWAY_CACHE__ENABLED", "false"),
                ("LABEL_GATEWAY_TEST_DB", "ignored: no double underscore"),
            ]),
        )
        .unwrap();
        assert_eq!(c.auth.cookie_name, "fromenv");
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:9000");
        assert!(!c.cache.enabled);
    }

    #[test]
    fn spaces_variables_configure_s3_storage() {
        let c = Config::from_toml_str(
            "[storage]\nbackend = \"s3\"\n",
            &env(&[
                ("SPACES_BUCKET_NAME", "my-labels"),
                ("SPACES_REGION", "ams3"),
                ("SPACES_ENDPOINT_URL", "https://ams3.digitaloceanspaces.com"),
                ("SPACES_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("SPACES_SECRET_ACCESS_KEY", "very-secret"),
            ]),
        )
        .unwrap();
        assert_eq!(c.storage.bucket, "my-labels");
        assert_eq!(c.storage.region, "ams3");
        assert_eq!(c.storage.endpoint, "https://ams3.digitaloceanspaces.com");
        assert_eq!(
            c.storage.secret_access_key.as_ref().unwrap().expose(),
            "very-secret"
        );
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn s3_backend_without_credentials_names_the_variable() {
        let e = err("[storage]\nbackend = \"s3\"\n", &[]);
        assert!(e.contains("storage.access_key_id"), "{e}");
        assert!(e.contains("SPACES_ACCESS_KEY_ID"), "{e}");
    }

    #[test]
    fn secret_in_file_is_refused() {
        let e = err("[storage]\nsecret_access_key = \"x\"\n", &[]);
        assert!(e.contains("storage.secret_access_key"), "{e}");
        assert!(e.contains("environment"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[auth]\ncheckurl = \"x\"\n", &[]);
        assert!(e.contains("checkurl"), "{e}");
    }

    #[test]
    fn allow_ttl_is_at_most_five_minutes() {
        let c = Config::from_toml_str("[auth]\nallow_ttl = \"5m\"\n", &env(&[])).unwrap();
        assert_eq!(c.auth.allow_ttl, MAX_ALLOW_TTL);
        let e = err("[auth]\nallow_ttl = \"301s\"\n", &[]);
        assert!(
            e.contains("auth.allow_ttl") && e.contains("at most 5m"),
            "{e}"
        );
        let e = err("", &[("LABEL_GATEWAY_AUTH__ALLOW_TTL", "1h")]);
        assert!(e.contains("auth.allow_ttl"), "{e}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let e = err("[auth]\nallow_ttl = \"soon\"\n", &[]);
        assert!(e.contains("auth.allow_ttl"), "{e}");
    }

    #[test]
    fn bad_env_value_names_the_key() {
        let e = err("", &[("LABEL_GATEWAY_SERVER__LISTEN", "not-an-address")]);
        assert!(e.contains("server.listen"), "{e}");
    }

    #[test]
    fn bad_check_url_is_refused() {
        let e = err("[auth]\ncheck_url = \"ftp://x/\"\n", &[]);
        assert!(e.starts_with("auth.check_url"), "{e}");
    }

    #[test]
    fn bad_cookie_name_is_refused() {
        let e = err("[auth]\ncookie_name = \"a b\"\n", &[]);
        assert!(e.starts_with("auth.cookie_name"), "{e}");
    }

    #[test]
    fn traversing_location_is_refused() {
        let e = err("[storage]\nlocation = \"labels/../secrets\"\n", &[]);
        assert!(e.starts_with("storage.location"), "{e}");
    }

    #[test]
    fn object_limit_above_cache_size_is_refused() {
        let e = err(
            "[cache]\nmax_bytes = \"1MiB\"\nmax_object_bytes = \"2MiB\"\n",
            &[],
        );
        assert!(e.starts_with("cache.max_object_bytes"), "{e}");
    }

    #[test]
    fn redirect_mode_needs_s3_and_a_sane_lifetime() {
        let e = err("[redirect]\nenabled = true\n", &[]);
        assert!(e.starts_with("redirect.enabled"), "{e}");
        let keys = [
            ("SPACES_ACCESS_KEY_ID", "k"),
            ("SPACES_SECRET_ACCESS_KEY", "s"),
        ];
        let e = err(
            "[storage]\nbackend = \"s3\"\n[redirect]\nenabled = true\nexpires = \"8d\"\n",
            &keys,
        );
        assert!(e.starts_with("redirect.expires"), "{e}");
        let e = err("[redirect]\nhost = \"https://cdn.example/x\"\n", &[]);
        assert!(e.starts_with("redirect.host"), "{e}");
    }

    #[test]
    fn zero_timeout_is_refused() {
        let e = err("[storage]\nfirst_byte_timeout = \"0s\"\n", &[]);
        assert!(e.starts_with("storage.first_byte_timeout"), "{e}");
    }

    #[test]
    fn secrets_come_from_the_files_their_file_variables_name() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key-id");
        let secret = dir.path().join("secret");
        let token = dir.path().join("token");
        std::fs::write(&key, "AKIDFROMFILE\n").unwrap();
        std::fs::write(&secret, "  secret-from-file\r\n").unwrap();
        std::fs::write(&token, "internal-from-file").unwrap();
        let (k, s, t) = (
            key.display().to_string(),
            secret.display().to_string(),
            token.display().to_string(),
        );
        let c = Config::from_toml_str(
            "[storage]\nbackend = \"s3\"\n",
            &env(&[
                ("SPACES_ACCESS_KEY_ID_FILE", &k),
                ("SPACES_SECRET_ACCESS_KEY_FILE", &s),
                ("LABEL_GATEWAY_INTERNAL__TOKEN_FILE", &t),
                ("LABEL_GATEWAY_REGENERATE__TOKEN", "plain-regenerate-token"),
            ]),
        )
        .unwrap();
        assert_eq!(c.storage.access_key_id.unwrap().expose(), "AKIDFROMFILE");
        assert_eq!(
            c.storage.secret_access_key.unwrap().expose(),
            "secret-from-file"
        );
        assert_eq!(c.internal.token.unwrap().expose(), "internal-from-file");
        assert_eq!(
            c.regenerate.token.unwrap().expose(),
            "plain-regenerate-token"
        );
        assert_eq!(
            c.secret_files.keys().copied().collect::<Vec<_>>(),
            vec![
                "LABEL_GATEWAY_INTERNAL__TOKEN",
                "SPACES_ACCESS_KEY_ID",
                "SPACES_SECRET_ACCESS_KEY"
            ],
            "only the file-backed secrets are re-read on SIGHUP"
        );
    }

    #[test]
    fn a_secret_and_its_file_twin_both_set_is_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "x").unwrap();
        let path = path.display().to_string();
        let e = err(
            "",
            &[
                ("SPACES_SECRET_ACCESS_KEY", "plain"),
                ("SPACES_SECRET_ACCESS_KEY_FILE", &path),
            ],
        );
        assert!(
            e.contains("SPACES_SECRET_ACCESS_KEY and SPACES_SECRET_ACCESS_KEY_FILE"),
            "{e}"
        );
        let e = err(
            "",
            &[
                ("LABEL_GATEWAY_INTERNAL__TOKEN", "plain"),
                ("LABEL_GATEWAY_INTERNAL__TOKEN_FILE", &path),
            ],
        );
        assert!(
            e.contains("LABEL_GATEWAY_INTERNAL__TOKEN and LABEL_GATEWAY_INTERNAL__TOKEN_FILE"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_or_empty_secret_file_names_the_variable_never_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope").display().to_string();
        let e = err("", &[("LABEL_GATEWAY_REGENERATE__TOKEN_FILE", &missing)]);
        assert!(e.starts_with("regenerate.token"), "{e}");
        assert!(e.contains("LABEL_GATEWAY_REGENERATE__TOKEN_FILE"), "{e}");
        assert!(e.contains(&missing), "{e}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n  \n").unwrap();
        let empty = empty.display().to_string();
        let e = err("", &[("SPACES_ACCESS_KEY_ID_FILE", &empty)]);
        assert!(e.contains("SPACES_ACCESS_KEY_ID_FILE"), "{e}");
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn batch_limits_default_and_are_checked() {
        let c = Config::from_toml_str("", &env(&[])).unwrap();
        assert_eq!(c.batch.max_labels, 500);
        assert_eq!(c.batch.max_concurrent, 4);
        let e = err("[batch]\nmax_labels = 0\n", &[]);
        assert!(e.starts_with("batch.max_labels"), "{e}");
        let e = err("", &[("LABEL_GATEWAY_BATCH__FETCH_AHEAD", "1000")]);
        assert!(e.starts_with("batch.fetch_ahead"), "{e}");
    }

    #[test]
    fn secret_compares_only_equal_values() {
        let s = Secret::new("token-123");
        assert!(s.matches(b"token-123"));
        assert!(!s.matches(b"token-124"));
        assert!(!s.matches(b"token-12"));
        assert!(!Secret::new("").matches(b""));
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn log_format_is_text_unless_json_is_asked() {
        let c = Config::from_toml_str("", &env(&[])).unwrap();
        assert_eq!(c.log.format, LogFormat::Text);
        let c = Config::from_toml_str("[log]\nformat = \"json\"\n", &env(&[])).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        let c = Config::from_toml_str("", &env(&[("LABEL_GATEWAY_LOG__FORMAT", "json")])).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_log_format_names_the_key_and_the_choices() {
        let e = err("[log]\nformat = \"xml\"\n", &[]);
        assert!(e.contains("log.format"), "{e}");
        assert!(e.contains("text") && e.contains("json"), "{e}");
    }

    const PRIMARY: &[(&str, &str)] = &[
        ("SPACES_ACCESS_KEY_ID", "AK"),
        ("SPACES_SECRET_ACCESS_KEY", "SK"),
    ];

    #[test]
    fn fallback_is_off_unless_an_endpoint_is_set_and_has_documented_defaults() {
        let c = Config::from_toml_str(
            "[storage]
backend = \"s3\"\n",
            &env(PRIMARY),
        )
        .unwrap();
        let fb = &c.storage.fallback;
        assert!(!fb.enabled());
        assert_eq!(fb.after_failures, 5);
        assert_eq!(fb.probe_every, Duration::from_secs(10));
        assert_eq!(fb.addressing, Addressing::Path);
    }

    #[test]
    fn fallback_reads_its_keys_its_environment_overrides_and_its_own_credentials() {
        let mut vars = PRIMARY.to_vec();
        vars.extend([
            (
                "LABEL_GATEWAY_STORAGE__FALLBACK__ENDPOINT",
                "https://ams3.digitaloceanspaces.com",
            ),
            ("LABEL_GATEWAY_STORAGE__FALLBACK__AFTER_FAILURES", "3"),
            ("LABEL_GATEWAY_STORAGE__FALLBACK__PROBE_EVERY", "2s"),
            ("SPACES_FALLBACK_ACCESS_KEY_ID", "AKFALLBACK"),
            ("SPACES_FALLBACK_SECRET_ACCESS_KEY", "fallback-secret"),
        ]);
        let c = Config::from_toml_str(
            "[storage]\nbackend = \"s3\"\n[storage.fallback]\nbucket = \"labels-ams3\"\n\
             region = \"ams3\"\naddressing = \"virtual\"\n",
            &env(&vars),
        )
        .unwrap();
        let fb = &c.storage.fallback;
        assert!(fb.enabled());
        assert_eq!(fb.endpoint, "https://ams3.digitaloceanspaces.com");
        assert_eq!(fb.bucket, "labels-ams3");
        assert_eq!(fb.addressing, Addressing::Virtual);
        assert_eq!(fb.after_failures, 3);
        assert_eq!(fb.probe_every, Duration::from_secs(2));
        assert_eq!(fb.access_key_id.as_ref().unwrap().expose(), "AKFALLBACK");
        assert_eq!(c.storage.access_key_id.as_ref().unwrap().expose(), "AK");
        assert!(!format!("{c:?}").contains("fallback-secret"));
    }

    #[test]
    fn a_bad_fallback_setting_names_its_key() {
        let base = "[storage]\nbackend = \"s3\"\n[storage.fallback]\n\
                    endpoint = \"https://ams3.digitaloceanspaces.com\"\n";
        let mut keys = PRIMARY.to_vec();
        keys.extend([
            ("SPACES_FALLBACK_ACCESS_KEY_ID", "AKF"),
            ("SPACES_FALLBACK_SECRET_ACCESS_KEY", "SKF"),
        ]);
        let ok = "bucket = \"labels-ams3\"\nregion = \"ams3\"\n";
        for (extra, vars, key) in [
            (
                "bucket = \"labels-ams3\"\n",
                &keys[..],
                "storage.fallback.region",
            ),
            (
                "region = \"ams3\"\nbucket = \"A\"\n",
                &keys,
                "storage.fallback.bucket",
            ),
            (ok, PRIMARY, "storage.fallback.access_key_id"),
            (
                &format!("{ok}after_failures = 0\n"),
                &keys,
                "storage.fallback.after_failures",
            ),
            (
                &format!("{ok}probe_every = \"0s\"\n"),
                &keys,
                "storage.fallback.probe_every",
            ),
            (
                &format!("{ok}access_key_id = \"x\"\n"),
                &keys,
                "storage.fallback.access_key_id",
            ),
        ] {
            let e = err(&format!("{base}{extra}"), vars);
            assert!(e.starts_with(key), "{extra}: {e}");
        }
        let e = err(
            "[storage.fallback]\nendpoint = \"https://ams3.digitaloceanspaces.com\"\n",
            &[],
        );
        assert!(e.starts_with("storage.fallback.endpoint"), "{e}");
        assert!(e.contains("s3"), "{e}");
        let e = err(
            &format!(
                "[storage]\nbackend = \"s3\"\n[storage.fallback]\nendpoint = \"ftp://x\"\n{ok}"
            ),
            &keys,
        );
        assert!(e.starts_with("storage.fallback.endpoint"), "{e}");
    }
}
