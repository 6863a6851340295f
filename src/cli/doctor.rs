//! `label-gateway doctor`: checks a deployment end to end, in the order a request needs
//! it, and says what to fix. One [`Check`] per step: the configuration; the storage
//! credentials; the endpoint (DNS, TCP, TLS within `storage.connect_timeout`); a signed
//! `ListObjectsV2` under `{location}/`, each S3 refusal mapped to its cause; the clock
//! against the storage server's `Date`; with `--write`, a PUT → HEAD → GET → DELETE round
//! trip of a scratch object that can never be a label; the session check answering a
//! made-up session with a deny; the regeneration endpoint accepting the token.
//!
//! Nothing here prints a secret: findings name variables, hosts and S3 codes only.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use crate::config::{Backend, Config, ConfigError};
use crate::storage::s3::{RawAnswer, S3Store};
use crate::storage::StorageError;

/// The checks, by name, in the order they run.
pub const CONFIGURATION: &str = "configuration";
pub const CREDENTIALS: &str = "credentials";
pub const ENDPOINT: &str = "endpoint";
pub const STORAGE: &str = "storage access";
pub const CLOCK: &str = "clock";
pub const ROUND_TRIP: &str = "write round trip";
pub const SESSION_CHECK: &str = "session check";
pub const REGENERATION: &str = "regeneration";

/// Clock skew past which the clock check warns, and past which it fails (SigV4 itself
/// refuses requests 15 minutes off).
pub const SKEW_WARN: Duration = Duration::from_secs(60);
pub const SKEW_FAIL: Duration = Duration::from_secs(300);

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but will not for long (a drifting clock): does not fail the run.
    Warn,
    Fail,
    /// Not applicable, or not reachable because an earlier check failed.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One check's outcome: what was found and, when it failed, the likely fix.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub finding: String,
    pub fix: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4}  {:<16}  {}",
            self.status.label(),
            self.name,
            self.finding
        )?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

/// Every check of one run, in order.
#[derive(Debug, Clone, Default)]
pub struct DoctorReport {
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// No check failed (warnings and skips pass).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    fn push(&mut self, name: &'static str, status: Status, finding: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            finding: finding.into(),
            fix: None,
        });
    }

    fn ok(&mut self, name: &'static str, finding: impl Into<String>) {
        self.push(name, Status::Ok, finding);
    }

    fn skip(&mut self, name: &'static str, why: impl Into<String>) {
        self.push(name, Status::Skip, why);
    }

    fn fail(&mut self, name: &'static str, finding: impl Into<String>, fix: impl Into<String>) {
        self.checks.push(Check {
            name,
            status: Status::Fail,
            finding: finding.into(),
            fix: Some(fix.into()),
        });
    }

    fn add(&mut self, check: Check) {
        self.checks.push(check);
    }
}

/// Runs every check. `loaded` is the configuration as loading it came out (its failure
/// is the first finding); `write` adds the round trip.
pub async fn doctor(
    loaded: Result<Config, ConfigError>,
    config_path: &Path,
    write: bool,
) -> DoctorReport {
    let mut r = DoctorReport::default();
    let config = match loaded {
        Ok(c) => {
            r.ok(
                CONFIGURATION,
                format!("{} loads and validates", config_path.display()),
            );
            c
        }
        Err(e) => {
            r.fail(
                CONFIGURATION,
                e.to_string(),
                "correct the named setting in the file or the environment",
            );
            match &e {
                ConfigError::Invalid { key, reason }
                    if key == "storage.access_key_id" || key == "storage.secret_access_key" =>
                {
                    r.fail(
                        CREDENTIALS,
                        format!("{key}: {reason}"),
                        "set SPACES_ACCESS_KEY_ID and SPACES_SECRET_ACCESS_KEY (or their _FILE \
                         twins) in the gateway's environment",
                    )
                }
                _ => r.skip(CREDENTIALS, "the configuration is not valid"),
            }
            for name in [
                ENDPOINT,
                STORAGE,
                CLOCK,
                ROUND_TRIP,
                SESSION_CHECK,
                REGENERATION,
            ] {
                r.skip(name, "the configuration is not valid");
            }
            return r;
        }
    };
    match config.storage.backend {
        Backend::S3 => check_s3(&config, write, &mut r).await,
        Backend::Local => check_local(&config, write, &mut r).await,
    }
    r.add(check_session(&config).await);
    r.add(check_regeneration(&config).await);
    r
}

async fn check_s3(config: &Config, write: bool, r: &mut DoctorReport) {
    let source = |var: &str| match config.secret_files.get(var) {
        Some(path) => format!("{var} from {}", path.display()),
        None => format!("{var} from the environment"),
    };
    r.ok(
        CREDENTIALS,
        format!(
            "{} and {}",
            source("SPACES_ACCESS_KEY_ID"),
            source("SPACES_SECRET_ACCESS_KEY")
        ),
    );
    let store = match S3Store::new(&config.storage) {
        Ok(s) => s,
        Err(e) => {
            r.fail(ENDPOINT, e.to_string(), "check SPACES_ENDPOINT_URL");
            for name in [STORAGE, CLOCK, ROUND_TRIP] {
                r.skip(name, "no storage client");
            }
            return;
        }
    };
    let endpoint = reach(store.bucket_url(), config.storage.connect_timeout).await;
    let reached = endpoint.status == Status::Ok;
    r.add(endpoint);
    if !reached {
        for name in [STORAGE, CLOCK, ROUND_TRIP] {
            r.skip(name, "the endpoint cannot be reached");
        }
        return;
    }
    let listed = store
        .raw(Method::GET, &store.listing_url(1, None), Bytes::new(), &[])
        .await;
    let now = SystemTime::now();
    let prefix = store.prefix();
    let (access, date) = match listed {
        Ok(answer) => (
            access_check(&answer, config, &prefix),
            answer.date().map(|d| (d, now)),
        ),
        Err(e) => (
            storage_fault(&format!("ListObjectsV2 under {prefix}"), &e),
            None,
        ),
    };
    let access_ok = access.status == Status::Ok;
    r.add(access);
    r.add(match date {
        Some((server, local)) => clock_check(local, server),
        None => Check {
            name: CLOCK,
            status: Status::Skip,
            finding: "the storage server sent no Date to compare with".into(),
            fix: None,
        },
    });
    if !write {
        r.skip(
            ROUND_TRIP,
            "pass --write to PUT, HEAD, GET and DELETE a scratch object",
        );
    } else if !access_ok {
        r.skip(ROUND_TRIP, "the signed request failed");
    } else {
        r.add(round_trip_s3(&store).await);
    }
}

async fn check_local(config: &Config, write: bool, r: &mut DoctorReport) {
    r.skip(CREDENTIALS, "local backend: no credentials");
    r.skip(ENDPOINT, "local backend");
    let root = &config.storage.local_root;
    let fix = "check storage.local_root and the folder's permissions";
    let readable = match count_entries(root).await {
        Ok(n) => {
            r.ok(
                STORAGE,
                format!("{} is readable ({n} entries)", root.display()),
            );
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.push(
                STORAGE,
                Status::Warn,
                format!(
                    "{} does not exist yet (the gateway creates it at start-up)",
                    root.display()
                ),
            );
            false
        }
        Err(e) => {
            r.fail(STORAGE, format!("cannot list {}: {e}", root.display()), fix);
            false
        }
    };
    r.skip(CLOCK, "local backend");
    if !write {
        r.skip(
            ROUND_TRIP,
            "pass --write to write, read and delete a scratch file",
        );
        return;
    }
    if !readable {
        r.skip(ROUND_TRIP, "the folder cannot be read");
        return;
    }
    // Hidden, and not `{tracking}.pdf`: never listed, backed up or pruned as a label.
    let path = root.join(format!(".{}", scratch_name()));
    let body = scratch_body();
    let steps = async {
        tokio::fs::write(&path, &body).await?;
        let back = tokio::fs::read(&path).await?;
        tokio::fs::remove_file(&path).await?;
        Ok::<bool, std::io::Error>(back == body)
    }
    .await;
    r.add(match steps {
        Ok(true) => Check {
            name: ROUND_TRIP,
            status: Status::Ok,
            finding: format!(
                "wrote, read back ({} bytes compared) and deleted {}",
                body.len(),
                path.display()
            ),
            fix: None,
        },
        other => {
            let _ = tokio::fs::remove_file(&path).await;
            Check {
                name: ROUND_TRIP,
                status: Status::Fail,
                finding: match other {
                    Err(e) => format!("{}: {e}", path.display()),
                    _ => format!("{} read back different bytes", path.display()),
                },
                fix: Some(
                    "the gateway's user must be able to write storage.local_root (ingest and \
                     regeneration store labels there)"
                        .into(),
                ),
            }
        }
    });
}

async fn count_entries(root: &Path) -> std::io::Result<usize> {
    let mut dir = tokio::fs::read_dir(root).await?;
    let mut n = 0;
    while dir.next_entry().await?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// DNS, TCP and (for https) TLS to the host of `url`, each within `timeout`.
pub async fn reach(url: &str, timeout: Duration) -> Check {
    let fail = |finding: String, fix: &str| Check {
        name: ENDPOINT,
        status: Status::Fail,
        finding,
        fix: Some(fix.to_string()),
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return fail(format!("{url} is not a URL"), "check SPACES_ENDPOINT_URL");
    };
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                return fail(
                    format!("{host} does not resolve: {e}"),
                    "check SPACES_ENDPOINT_URL (storage.endpoint) and this machine's DNS",
                )
            }
            Err(_) => {
                return fail(
                    format!("{host} did not resolve within {timeout:?}"),
                    "check this machine's DNS resolver",
                )
            }
        };
    let Some(addr) = addrs.first().copied() else {
        return fail(
            format!("{host} resolves to no address"),
            "check SPACES_ENDPOINT_URL (storage.endpoint) and this machine's DNS",
        );
    };
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return fail(
                format!("{host}:{port} ({}) refused the connection: {e}", addr.ip()),
                "nothing listens there: check SPACES_ENDPOINT_URL (host and port) and that \
                 the service is up",
            )
        }
        Err(_) => {
            return fail(
                format!(
                    "no TCP connection to {host}:{port} ({}) within storage.connect_timeout \
                     ({timeout:?})",
                    addr.ip()
                ),
                "a firewall or egress rule may drop the traffic; check SPACES_ENDPOINT_URL \
                 and the network path",
            )
        }
    };
    let mut finding = format!("{host}:{port} resolves to {}; TCP connected", addr.ip());
    if https {
        match tokio::time::timeout(timeout, tls_handshake(tcp, &host)).await {
            Ok(Ok(version)) => finding.push_str(&format!("; TLS ({version}) verified")),
            Ok(Err(e)) => {
                return fail(
                    format!("TLS with {host}:{port} failed: {e}"),
                    "check that SPACES_ENDPOINT_URL is the https endpoint of the service \
                     and that nothing on the way intercepts TLS",
                )
            }
            Err(_) => {
                return fail(
                    format!("no TLS handshake with {host}:{port} within {timeout:?}"),
                    "check that the port speaks TLS (https://) or use http:// for a plain \
                     endpoint",
                )
            }
        }
    }
    Check {
        name: ENDPOINT,
        status: Status::Ok,
        finding,
        fix: None,
    }
}

/// A TLS handshake on `tcp`, the certificate checked against the web PKI for `host`.
async fn tls_handshake(tcp: tokio::net::TcpStream, host: &str) -> Result<String, String> {
    // The configuration the gateway's own storage connections use.
    let tls = crate::storage::s3::tls_config()?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let version = stream
        .get_ref()
        .1
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| "unknown version".into());
    Ok(version)
}

/// The signed listing's answer: 2xx, or the S3 refusal mapped to its cause.
fn access_check(answer: &RawAnswer, config: &Config, prefix: &str) -> Check {
    let what = format!("ListObjectsV2 under {prefix}");
    if answer.status.is_success() {
        return Check {
            name: STORAGE,
            status: Status::Ok,
            finding: format!(
                "{what} in bucket {} answered {}",
                config.storage.bucket,
                answer.status.as_u16()
            ),
            fix: None,
        };
    }
    let code = answer.code();
    let (finding, fix) = refusal_cause(answer.status, &code, answer, config);
    Check {
        name: STORAGE,
        status: Status::Fail,
        finding: format!("{what}: {} {code}: {finding}", answer.status.as_u16()),
        fix: Some(fix),
    }
}

/// What an S3 refusal means, and what to change.
fn refusal_cause(
    status: StatusCode,
    code: &str,
    answer: &RawAnswer,
    config: &Config,
) -> (String, String) {
    let st = &config.storage;
    let region_hint = answer
        .headers
        .get("x-amz-bucket-region")
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" (the bucket is in {r})"))
        .unwrap_or_default();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    match code {
        // s3s answers an unknown key id with NotSignedUp: the same cause.
        "InvalidAccessKeyId" | "NotSignedUp" => s(
            "the store does not know this key id",
            "check SPACES_ACCESS_KEY_ID: the key may be revoked, mistyped or from another \
             account",
        ),
        "SignatureDoesNotMatch" => s(
            "the key id is known but the signature does not match its secret",
            "check SPACES_SECRET_ACCESS_KEY (a stray character or newline, or the secret of \
             another key)",
        ),
        "RequestTimeTooSkewed" => s(
            "the store refuses this machine's clock",
            "sync this machine's clock (NTP): SigV4 refuses requests 15 minutes off",
        ),
        "AccessDenied" => s(
            "the key is valid but may not list this bucket",
            "give the key access to the bucket (read and write: the gateway also stores \
             labels), or use a key that has it",
        ),
        "NoSuchBucket" => (
            format!("there is no bucket {} at {}", st.bucket, st.endpoint),
            "check SPACES_BUCKET_NAME, and that SPACES_ENDPOINT_URL is the bucket's region".into(),
        ),
        "PermanentRedirect" | "TemporaryRedirect" => (
            format!("the bucket is served by another endpoint{region_hint}"),
            "set SPACES_ENDPOINT_URL and SPACES_REGION to the bucket's region".into(),
        ),
        "AuthorizationHeaderMalformed" | "InvalidRegion" | "IllegalLocationConstraintException" => {
            (
                format!(
                    "the store expects another region than {}{region_hint}",
                    st.region
                ),
                "check SPACES_REGION (Spaces wants its slug, e.g. lon1) and SPACES_ENDPOINT_URL"
                    .into(),
            )
        }
        _ if status.is_redirection() => (
            format!("the store redirects the bucket elsewhere{region_hint}"),
            "set SPACES_ENDPOINT_URL and SPACES_REGION to the bucket's region".into(),
        ),
        _ if status.is_server_error() => s(
            "the store failed",
            "the storage service may be down: try again later, see its status page",
        ),
        _ if status == StatusCode::NOT_FOUND => (
            format!("nothing answers for bucket {} there", st.bucket),
            "check SPACES_BUCKET_NAME, SPACES_ENDPOINT_URL and storage.addressing".into(),
        ),
        _ => s(
            "the store refused the request",
            "check the SPACES_* credentials, the region, the endpoint and the clock",
        ),
    }
}

/// A storage call that got no answer.
fn storage_fault(what: &str, e: &StorageError) -> Check {
    let fix = match e {
        StorageError::Timeout(_) => {
            "the store accepts connections but does not answer: check the endpoint, or raise \
             storage.first_byte_timeout"
        }
        _ => "check SPACES_ENDPOINT_URL and the network path to it",
    };
    Check {
        name: STORAGE,
        status: Status::Fail,
        finding: format!("{what}: {e}"),
        fix: Some(fix.into()),
    }
}

/// This machine's clock (`local`, read when the answer came) against the server's `Date`.
pub fn clock_check(local: SystemTime, server: SystemTime) -> Check {
    let (skew, side) = match local.duration_since(server) {
        Ok(d) => (d, "ahead of"),
        Err(e) => (e.duration(), "behind"),
    };
    // `Date` has whole seconds: less than 2 s apart is the same clock.
    let secs = skew.as_secs();
    let finding = if secs < 2 {
        "in step with the storage server's clock".to_string()
    } else {
        format!("{secs} s {side} the storage server's clock")
    };
    let (status, fix) = if skew > SKEW_FAIL {
        (
            Status::Fail,
            Some("sync this machine's clock (NTP); SigV4 refuses requests 15 minutes off".into()),
        )
    } else if skew > SKEW_WARN {
        (
            Status::Warn,
            Some("sync this machine's clock (NTP) before it drifts further".into()),
        )
    } else {
        (Status::Ok, None)
    };
    Check {
        name: CLOCK,
        status,
        finding,
        fix,
    }
}

/// A name under `{location}/` that can never be a label: labels are `{tracking}.pdf`.
fn scratch_name() -> String {
    format!("label-gateway-doctor-{:016x}.probe", rand::random::<u64>())
}

fn scratch_body() -> Bytes {
    let mut body = b"label-gateway doctor round trip\n".to_vec();
    body.extend((0..224).map(|_| rand::random::<u8>()));
    Bytes::from(body)
}

/// PUT → HEAD → GET (bytes compared) → DELETE of a scratch object; the object is
/// deleted even when a step in between fails.
async fn round_trip_s3(store: &S3Store) -> Check {
    let name = scratch_name();
    let key = format!("{}{name}", store.prefix());
    let url = store.scratch_url(&name);
    let body = scratch_body();
    let steps = async {
        let octets = HeaderValue::from_static("application/octet-stream");
        let put = store
            .raw(
                Method::PUT,
                &url,
                body.clone(),
                &[(header::CONTENT_TYPE, octets)],
            )
            .await;
        expect("PUT", put, |a| a.status.is_success())?;
        let head = store.raw(Method::HEAD, &url, Bytes::new(), &[]).await;
        expect("HEAD", head, |a| {
            a.status == StatusCode::OK
                && a.headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    == Some(body.len().to_string().as_str())
        })?;
        let get = store.raw(Method::GET, &url, Bytes::new(), &[]).await;
        expect("GET", get, |a| a.status == StatusCode::OK && a.body == body)?;
        Ok::<(), String>(())
    }
    .await;
    let delete = store.raw(Method::DELETE, &url, Bytes::new(), &[]).await;
    let deleted = expect("DELETE", delete, |a| a.status.is_success());
    match (steps, deleted) {
        (Ok(()), Ok(())) => Check {
            name: ROUND_TRIP,
            status: Status::Ok,
            finding: format!(
                "PUT, HEAD, GET ({} bytes compared) and DELETE of {key}",
                body.len()
            ),
            fix: None,
        },
        (Err(e), Ok(())) => Check {
            name: ROUND_TRIP,
            status: Status::Fail,
            finding: format!("{key}: {e} (the scratch object was deleted)"),
            fix: Some(round_trip_fix(&e)),
        },
        (steps, Err(e)) => {
            let first = steps.err().unwrap_or_default();
            Check {
                name: ROUND_TRIP,
                status: Status::Fail,
                finding: format!(
                    "{key}: {}{e}; delete {key} by hand if it is there",
                    if first.is_empty() {
                        String::new()
                    } else {
                        format!("{first}; ")
                    }
                ),
                fix: Some(round_trip_fix(&e)),
            }
        }
    }
}

/// One round-trip step's answer: `Ok` when `good` holds, else what came instead.
fn expect(
    step: &str,
    answer: Result<RawAnswer, StorageError>,
    good: impl Fn(&RawAnswer) -> bool,
) -> Result<(), String> {
    match answer {
        Ok(a) if good(&a) => Ok(()),
        Ok(a) if a.status.is_success() => Err(format!(
            "{step} answered {} but the object came back different",
            a.status.as_u16()
        )),
        Ok(a) => Err(format!(
            "{step} answered {} {}",
            a.status.as_u16(),
            a.code()
        )),
        Err(e) => Err(format!("{step}: {e}")),
    }
}

fn round_trip_fix(why: &str) -> String {
    if why.contains("AccessDenied") {
        "the key may read but not write or delete: the gateway stores ingested and regenerated \
         labels, so give it write access"
            .into()
    } else if why.contains("came back different") {
        "the store returned other bytes than were written: check for a proxy or a \
         transforming CDN between the gateway and the endpoint"
            .into()
    } else {
        "see the step that failed; the credentials, bucket and endpoint passed the listing".into()
    }
}

/// A tracking number no shop has: made up for each run.
fn made_up_tracking() -> String {
    format!("doctor-{:016x}", rand::random::<u64>())
}

fn app_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(crate::outbound::USER_AGENT)
        .build()
        .map_err(|e| crate::outbound::describe(&e))
}

/// `scheme://host:port` of `url`, for findings (never its path or query).
fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| "the URL".into())
}

/// Why a call to the app got no answer: refused, timed out, or otherwise.
fn unreachable_why(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".into();
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                kind => format!("{kind}"),
            };
        }
        src = s.source();
    }
    crate::outbound::describe(e)
}

/// The session check with a made-up session: it must deny (401, 403, 404 or a redirect
/// to the login page), not allow, fail or be unreachable.
async fn check_session(config: &Config) -> Check {
    let a = &config.auth;
    let mut c = Check {
        name: SESSION_CHECK,
        status: Status::Fail,
        finding: String::new(),
        fix: None,
    };
    let client = match app_client(a.timeout) {
        Ok(client) => client,
        Err(e) => {
            c.finding = format!("no HTTP client: {e}");
            return c;
        }
    };
    let url = a.check_url.replace("{tracking}", &made_up_tracking());
    let cookie = format!(
        "{}=label-gateway-doctor-{:032x}",
        a.cookie_name,
        rand::random::<u128>()
    );
    let origin = origin_of(&url);
    let sent = client
        .get(&url)
        .header(header::COOKIE, cookie)
        .header("x-request-id", "label-gateway-doctor")
        .send()
        .await;
    match sent {
        Err(e) => {
            c.finding = format!("{origin} cannot be reached: {}", unreachable_why(&e));
            c.fix = Some(
                "start the app, or correct auth.check_url (LABEL_GATEWAY_AUTH__CHECK_URL): \
                 until it answers, every label request gets 503"
                    .into(),
            );
        }
        Ok(resp) => {
            let status = resp.status();
            let code = status.as_u16();
            if matches!(code, 401 | 403 | 404) || status.is_redirection() {
                c.status = Status::Ok;
                c.finding = format!("{origin} denies a made-up session ({code})");
            } else if status.is_success() {
                c.finding = format!("{origin} allows a made-up session ({code})");
                c.fix = Some(
                    "auth.check_url must answer 2xx only for a logged-in session: point it at \
                     the shipped label-access view or a login-required page"
                        .into(),
                );
            } else {
                c.finding = format!("{origin} answers {code} to a made-up session");
                c.fix = Some(
                    "the app fails on the check: see its log; until it denies or allows, \
                     every label request gets 503"
                        .into(),
                );
            }
        }
    }
    c
}

/// The regeneration endpoint with a made-up tracking number and the configured token:
/// it must accept the token and say "no such label" (404/410).
async fn check_regeneration(config: &Config) -> Check {
    let g = &config.regenerate;
    let mut c = Check {
        name: REGENERATION,
        status: Status::Fail,
        finding: String::new(),
        fix: None,
    };
    if g.url.is_empty() {
        c.status = Status::Skip;
        c.finding = "regenerate.url is empty: missing labels are not regenerated".into();
        return c;
    }
    let client = match app_client(g.timeout) {
        Ok(client) => client,
        Err(e) => {
            c.finding = format!("no HTTP client: {e}");
            return c;
        }
    };
    let url = g.url.replace("{tracking}", &made_up_tracking());
    let origin = origin_of(&url);
    let mut req = client
        .post(&url)
        .header("x-request-id", "label-gateway-doctor");
    if let Some(token) = &g.token {
        req = req.bearer_auth(token.expose());
    }
    let token_var = if config
        .secret_files
        .contains_key("LABEL_GATEWAY_REGENERATE__TOKEN")
    {
        "LABEL_GATEWAY_REGENERATE__TOKEN_FILE"
    } else {
        "LABEL_GATEWAY_REGENERATE__TOKEN"
    };
    match req.send().await {
        Err(e) => {
            c.finding = format!("{origin} cannot be reached: {}", unreachable_why(&e));
            c.fix = Some(
                "start the app, or correct regenerate.url (LABEL_GATEWAY_REGENERATE__URL)".into(),
            );
        }
        Ok(resp) => {
            let code = resp.status().as_u16();
            match code {
                404 | 410 => {
                    c.status = Status::Ok;
                    c.finding = format!(
                        "{origin} accepts the token and has no label for a made-up tracking \
                         number ({code})"
                    );
                }
                401 | 403 if g.token.is_none() => {
                    c.finding = format!("{origin} wants a token ({code}) and none is set");
                    c.fix = Some(format!(
                        "set {token_var} to the app's LABEL_GATEWAY_REGENERATE_TOKEN"
                    ));
                }
                401 | 403 => {
                    c.finding = format!("{origin} refuses the token ({code})");
                    c.fix = Some(format!(
                        "{token_var} must equal the app's LABEL_GATEWAY_REGENERATE_TOKEN"
                    ));
                }
                200..=299 => {
                    c.status = Status::Warn;
                    c.finding =
                        format!("{origin} produced a label for a made-up tracking number ({code})");
                    c.fix = Some(
                        "the app's regeneration function should return None for unknown \
                         tracking numbers"
                            .into(),
                    );
                }
                _ => {
                    c.finding = format!("{origin} answers {code}");
                    c.fix = Some(
                        "see the app's log (the shipped view answers 503 when \
                         LABEL_GATEWAY_REGENERATE or its token is not set)"
                            .into(),
                    );
                }
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn clock_skew_passes_to_a_minute_warns_to_five_and_fails_past() {
        let server = at(1_800_000_000);
        let c = clock_check(server + Duration::from_millis(900), server);
        assert_eq!(c.status, Status::Ok);
        assert!(c.finding.contains("in step"), "{}", c.finding);
        let c = clock_check(at(1_800_000_000 - 59), server);
        assert_eq!(c.status, Status::Ok);
        assert!(c.finding.contains("59 s behind"), "{}", c.finding);
        let c = clock_check(at(1_800_000_000 + 120), server);
        assert_eq!(c.status, Status::Warn);
        assert!(c.finding.contains("120 s ahead of"), "{}", c.finding);
        let c = clock_check(at(1_800_000_000 - 301), server);
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.unwrap().contains("NTP"));
    }

    #[test]
    fn a_check_line_has_status_name_finding_and_fix() {
        let c = Check {
            name: STORAGE,
            status: Status::Fail,
            finding: "403 SignatureDoesNotMatch".into(),
            fix: Some("check SPACES_SECRET_ACCESS_KEY".into()),
        };
        assert_eq!(
            c.to_string(),
            "FAIL  storage access    403 SignatureDoesNotMatch; fix: check SPACES_SECRET_ACCESS_KEY"
        );
    }

    #[test]
    fn the_scratch_object_can_never_be_a_label() {
        let name = scratch_name();
        assert!(!name.ends_with(".pdf"), "{name}");
        assert!(crate::tracking::Tracking::parse(&name).is_err());
    }

    #[test]
    fn each_s3_refusal_names_its_cause() {
        let config = Config::default();
        let answer = |status: u16, code: &str| RawAnswer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: http::HeaderMap::new(),
            body: Bytes::from(format!("<Error><Code>{code}</Code></Error>")),
        };
        for (status, code, fix) in [
            (403, "InvalidAccessKeyId", "SPACES_ACCESS_KEY_ID"),
            (403, "NotSignedUp", "SPACES_ACCESS_KEY_ID"),
            (403, "SignatureDoesNotMatch", "SPACES_SECRET_ACCESS_KEY"),
            (403, "RequestTimeTooSkewed", "clock"),
            (403, "AccessDenied", "access to the bucket"),
            (404, "NoSuchBucket", "SPACES_BUCKET_NAME"),
            (301, "PermanentRedirect", "the bucket's region"),
            (400, "AuthorizationHeaderMalformed", "SPACES_REGION"),
            (503, "SlowDown", "down"),
        ] {
            let c = access_check(&answer(status, code), &config, "labels/");
            assert_eq!(c.status, Status::Fail, "{code}");
            assert!(c.finding.contains(code), "{code}: {}", c.finding);
            let got = c.fix.unwrap();
            assert!(got.contains(fix), "{code}: {got}");
        }
    }
}
