//! Starting the processes each row measures: the S3 children (plain and behind TLS), the
//! limit and bare-proxy children (this binary in a server mode), the gateway from the release binary with the shipped `config.toml`, nginx
//! with a generated config, and the real Django test app. All on 127.0.0.1.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use label_gateway::config::{Config, Secret};
use label_gateway::storage::sigv4::{Payload, Signer};

use crate::procs::{free_port, with_children, ChildGuard};
use crate::servers::{ACCESS_KEY, BUCKET, REGION, SECRET_KEY};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// How long a server may take to come up.
const START_WITHIN: Duration = Duration::from_secs(30);

/// This bench binary run in one of its server modes (`serve-s3`, `serve-limit`,
/// `serve-proxy`).
pub struct SelfChild {
    pub addr: SocketAddr,
    pub guard: ChildGuard,
    /// Held open: the child exits when it closes.
    _stdin: ChildStdin,
}

impl SelfChild {
    pub fn start(mode: &str, arg: &Path, log: PathBuf) -> anyhow::Result<SelfChild> {
        let exe = std::env::current_exe().context("path of the bench binary")?;
        Self::start_with(&exe, mode, &[arg], log)
    }

    /// As [`SelfChild::start`] with the mode's arguments `args`, through `program` (the
    /// bench binary, or a wrapper that runs it, e.g. under callgrind).
    pub fn start_with(
        program: &Path,
        mode: &str,
        args: &[&Path],
        log: PathBuf,
    ) -> anyhow::Result<SelfChild> {
        let mut cmd = Command::new(program);
        cmd.arg(mode)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log)?));
        let mut guard = ChildGuard::spawn(mode, &mut cmd, libc::SIGKILL, false, Some(log))?;
        let stdin = guard.stdin().context("child stdin")?;
        let stdout = guard.stdout().context("child stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening ") else {
            guard.ensure_running()?;
            bail!("{mode} printed {line:?} instead of its address");
        };
        Ok(SelfChild {
            addr: addr.parse().context("child address")?,
            guard,
            _stdin: stdin,
        })
    }
}

/// The S3 child over `dir/s3`: over plain HTTP, or with `tls` behind TLS (a second child
/// over the same folder, so it serves the same labels), its CA's certificate then in
/// [`storage_ca`]`(dir)`.
pub fn start_s3(dir: &Path, tls: bool) -> anyhow::Result<SelfChild> {
    let exe = std::env::current_exe().context("path of the bench binary")?;
    let data = dir.join("s3");
    let ca = storage_ca(dir);
    let (args, log): (&[&Path], _) = if tls {
        (&[&data, &ca], "s3-tls.log")
    } else {
        (&[&data], "s3.log")
    };
    SelfChild::start_with(&exe, "serve-s3", args, dir.join(log))
}

/// Where the TLS S3 child writes its CA's certificate (PEM, for `storage.ca_file`).
pub fn storage_ca(dir: &Path) -> PathBuf {
    dir.join("storage-ca.pem")
}

/// The environment that points a gateway at the TLS S3 child `s3`: an `https://` endpoint
/// and `storage.ca_file` (for [`GatewayChild::start`]'s `extra_env`).
pub fn tls_storage_env(s3: SocketAddr, ca_file: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("SPACES_ENDPOINT_URL", format!("https://{s3}")),
        (
            "LABEL_GATEWAY_STORAGE__CA_FILE",
            ca_file.display().to_string(),
        ),
    ]
}

/// A presigned GET of the S3 child's `labels/{tracking}.pdf`, valid for a day (an
/// `https://` URL with `tls`).
pub fn presigned(s3: SocketAddr, tls: bool, tracking: &str) -> anyhow::Result<String> {
    Ok(signer().presign(
        &http::Method::GET,
        &object_url(s3, tls, tracking),
        Duration::from_secs(24 * 3600),
        SystemTime::now(),
    )?)
}

/// The bare proxy (`serve-proxy`, through `program`: the bench binary or a wrapper of it)
/// serving each `(path, tracking)` from the S3 child by a URL presigned once, its route
/// file and log in `dir`. With `ca_file`, `s3` is the TLS S3 child: https URLs, and the
/// proxy trusts `ca_file` besides the built-in roots.
pub fn start_proxy(
    program: &Path,
    dir: &Path,
    s3: SocketAddr,
    routes: &[(&str, &str)],
    ca_file: Option<&Path>,
) -> anyhow::Result<SelfChild> {
    let mut text = String::new();
    for (path, tracking) in routes {
        let url = presigned(s3, ca_file.is_some(), tracking)?;
        text.push_str(&format!("{path} {url}\n"));
    }
    let name = if ca_file.is_some() {
        "proxy-tls"
    } else {
        "proxy"
    };
    let file = dir.join(format!("{name}-routes.txt"));
    std::fs::write(&file, text)?;
    let args: Vec<&Path> = std::iter::once(file.as_path()).chain(ca_file).collect();
    SelfChild::start_with(
        program,
        "serve-proxy",
        &args,
        dir.join(format!("{name}.log")),
    )
}

/// The signer for the bench bucket's credentials.
pub fn signer() -> Signer {
    Signer::new(&Secret::new(ACCESS_KEY), &Secret::new(SECRET_KEY), REGION)
}

/// The S3 child's URL of `labels/{tracking}.pdf` (https with `tls`).
pub fn object_url(s3: SocketAddr, tls: bool, tracking: &str) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{s3}/{BUCKET}/labels/{tracking}.pdf")
}

/// Writes a label with a signed PUT, with the headers django-storages sets.
pub async fn put_label(s3: SocketAddr, tracking: &str, data: &[u8]) -> anyhow::Result<()> {
    let url = object_url(s3, false, tracking);
    let mut req = http::Request::put(&url)
        .header("host", s3.to_string())
        .header("content-type", "application/pdf")
        .header("cache-control", "max-age=86400")
        .header("content-length", data.len())
        .body(())?;
    signer().sign(&mut req, Payload::Bytes(data), SystemTime::now())?;
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = match CLIENT.get() {
        Some(c) => c,
        None => {
            let c = reqwest::Client::builder().no_proxy().build()?;
            CLIENT.get_or_init(|| c)
        }
    };
    let mut out = client.put(&url).body(data.to_vec());
    for (k, v) in req.headers() {
        out = out.header(k, v);
    }
    let resp = out.send().await.context("PUT to the S3 server")?;
    if !resp.status().is_success() {
        bail!("PUT {tracking}: {} {}", resp.status(), resp.text().await?);
    }
    Ok(())
}

/// The gateway from the release binary, with the shipped `config.toml` and the environment
/// overrides an operator would set.
pub struct GatewayChild {
    pub addr: SocketAddr,
    /// The internal listener (`/internal/...`, `/metrics`).
    pub internal: SocketAddr,
    pub guard: ChildGuard,
    pub config: Config,
}

impl GatewayChild {
    pub fn start(
        name: &str,
        dir: &Path,
        s3: SocketAddr,
        check_url: &str,
        cache_enabled: bool,
        extra_env: &[(&str, String)],
    ) -> anyhow::Result<GatewayChild> {
        let (bin, config_path) = gateway_bin();
        Self::start_bin(
            &bin,
            &config_path,
            name,
            dir,
            s3,
            check_url,
            cache_enabled,
            extra_env,
        )
    }

    /// [`GatewayChild::start`] of the binary `bin` with the config file `config_path`
    /// (the baseline rows: an older build in the same run).
    #[allow(clippy::too_many_arguments)]
    pub fn start_bin(
        bin: &Path,
        config_path: &Path,
        name: &str,
        dir: &Path,
        s3: SocketAddr,
        check_url: &str,
        cache_enabled: bool,
        extra_env: &[(&str, String)],
    ) -> anyhow::Result<GatewayChild> {
        let port = free_port()?;
        let internal_port = free_port()?;
        let (mut cmd, config, log) = gateway_command(
            bin,
            config_path,
            name,
            dir,
            GatewayEnv {
                listen: ([127, 0, 0, 1], port).into(),
                internal: ([127, 0, 0, 1], internal_port).into(),
                s3,
                check_url,
                cache_enabled,
            },
            extra_env,
        )?;
        let mut guard = ChildGuard::spawn(name, &mut cmd, libc::SIGKILL, true, Some(log))
            .with_context(|| format!("start {}", bin.display()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        guard.wait_http(addr, "/healthz", START_WITHIN)?;
        Ok(GatewayChild {
            addr,
            internal: ([127, 0, 0, 1], internal_port).into(),
            guard,
            config,
        })
    }
}

/// The gateway binary (`LOAD_GATEWAY_BIN`, else this build's) and its config file
/// (`LOAD_GATEWAY_CONFIG`: another binary may need its own release's; else the shipped one).
pub fn gateway_bin() -> (PathBuf, PathBuf) {
    let bin = std::env::var_os("LOAD_GATEWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_label-gateway")));
    let config_path = std::env::var_os("LOAD_GATEWAY_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join("config.toml"));
    (bin, config_path)
}

/// The addresses and peers a gateway child is configured with.
pub struct GatewayEnv<'a> {
    pub listen: SocketAddr,
    pub internal: SocketAddr,
    pub s3: SocketAddr,
    pub check_url: &'a str,
    pub cache_enabled: bool,
}

/// The command that runs the gateway `bin` with `config_path` and the environment an
/// operator would set (nothing of the caller's own gateway settings), its stderr into
/// `{dir}/{name}.log`; with the config as the binary will load it (a bad setting fails
/// here with its reason) and the log's path.
pub fn gateway_command(
    bin: &Path,
    config_path: &Path,
    name: &str,
    dir: &Path,
    g: GatewayEnv<'_>,
    extra_env: &[(&str, String)],
) -> anyhow::Result<(Command, Config, PathBuf)> {
    let env: BTreeMap<String, String> = [
        ("LABEL_GATEWAY_SERVER__LISTEN", g.listen.to_string()),
        (
            "LABEL_GATEWAY_SERVER__INTERNAL_LISTEN",
            g.internal.to_string(),
        ),
        ("LABEL_GATEWAY_STORAGE__BACKEND", "s3".into()),
        ("LABEL_GATEWAY_AUTH__CHECK_URL", g.check_url.into()),
        ("LABEL_GATEWAY_CACHE__ENABLED", g.cache_enabled.to_string()),
        ("SPACES_ENDPOINT_URL", format!("http://{}", g.s3)),
        ("SPACES_REGION", REGION.into()),
        ("SPACES_BUCKET_NAME", BUCKET.into()),
        ("SPACES_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("SPACES_SECRET_ACCESS_KEY", SECRET_KEY.into()),
    ]
    .into_iter()
    .chain(extra_env.iter().cloned())
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("read {}", config_path.display()))?;
    let config = Config::from_toml_str(&text, &env)
        .map_err(|e| anyhow::anyhow!("gateway config for {name}: {e}"))?;
    let log = dir.join(format!("{}.log", name.replace(' ', "-")));
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(config_path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log)?));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("LABEL_GATEWAY_") || k.starts_with("SPACES_") || k == "RUST_LOG" {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd.envs(&env);
    Ok((cmd, config, log))
}

/// nginx as an operator would put it in front of the bucket instead of the gateway:
/// `auth_request` to the same check endpoint, its answer cached 30 s per session cookie,
/// and the label in `proxy_cache`. nginx cannot sign SigV4 itself, so it proxies to a
/// long-lived presigned URL of the one label it serves.
pub struct Nginx {
    pub addr: SocketAddr,
    pub guard: ChildGuard,
    pub pids: Vec<u32>,
}

impl Nginx {
    pub fn start(
        bin: &Path,
        dir: &Path,
        check: SocketAddr,
        tracking: &str,
        presigned: &str,
    ) -> anyhow::Result<Nginx> {
        let root = dir.join("nginx");
        // Workers drop root privileges: they must reach and write their cache folders.
        for sub in ["", "auth_cache", "label_cache", "temp"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d)?;
            let mode = if sub.is_empty() { 0o755 } else { 0o777 };
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let port = free_port()?;
        let conf = nginx_conf(&root, port, check, tracking, presigned);
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let log = root.join("error.log");
        let mut cmd = Command::new(bin);
        cmd.arg("-p")
            .arg(&root)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(&log)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(root.join("stderr.log"))?));
        // SIGTERM on our death: the master then stops its workers.
        let mut guard = ChildGuard::spawn("nginx", &mut cmd, libc::SIGTERM, true, Some(log))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        guard.wait_http(addr, "/nginx-health", START_WITHIN)?;
        let pids = with_children(guard.pid());
        Ok(Nginx { addr, guard, pids })
    }
}

fn nginx_conf(
    root: &Path,
    port: u16,
    check: SocketAddr,
    tracking: &str,
    presigned: &str,
) -> String {
    let root = root.display();
    format!(
        r#"# Generated by the label-gateway load bench.
worker_processes auto;
pid {root}/nginx.pid;
events {{
    worker_connections 8192;
}}
http {{
    # Logging on, as shipped, like the gateway rows (nginx writes each line at once).
    access_log {root}/access.log;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_body_temp_path {root}/temp/body;
    proxy_temp_path {root}/temp/proxy;
    fastcgi_temp_path {root}/temp/fastcgi;
    uwsgi_temp_path {root}/temp/uwsgi;
    scgi_temp_path {root}/temp/scgi;

    proxy_cache_path {root}/auth_cache keys_zone=auth:10m max_size=64m inactive=10m use_temp_path=off;
    proxy_cache_path {root}/label_cache keys_zone=labels:10m max_size=256m inactive=1h use_temp_path=off;

    upstream session_check {{
        server {check};
        keepalive 16;
    }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;

        location = /nginx-health {{
            return 200 "ok\n";
        }}

        # The session check, its verdict cached 30 s per session cookie (and label).
        location = /_label_auth {{
            internal;
            proxy_pass http://session_check/check/$label_tracking/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Cookie "sessionid=$cookie_sessionid";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_cache auth;
            proxy_cache_key "$cookie_sessionid $label_tracking";
            proxy_cache_valid 200 204 30s;
            proxy_cache_valid 401 403 404 5s;
        }}

        location = /shipping-label/{tracking}/ {{
            set $label_tracking {tracking};
            auth_request /_label_auth;
            proxy_pass "{presigned}";
            proxy_set_header Cookie "";
            proxy_set_header Authorization "";
            proxy_cache labels;
            proxy_cache_key $uri;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            proxy_hide_header x-amz-request-id;
            proxy_hide_header x-amz-id-2;
            proxy_hide_header Cache-Control;
            add_header Cache-Control "private, max-age=86400";
            add_header Content-Disposition 'inline; filename="{tracking}.pdf"';
            add_header X-Content-Type-Options nosniff;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"#
    )
}

/// The real Django test app (`tests/django_project`) under `runserver`, on its own sqlite
/// database in the bench's temp dir, with one logged-in user.
pub struct Django {
    pub addr: SocketAddr,
    _guard: ChildGuard,
    pub session: String,
}

impl Django {
    /// Python comes from `LABEL_GATEWAY_TEST_PYTHON` (set by `benches/load.sh`) or the
    /// virtualenv `tests/setup_python.sh` makes.
    pub fn python() -> Option<PathBuf> {
        std::env::var_os("LABEL_GATEWAY_TEST_PYTHON")
            .map(PathBuf::from)
            .or_else(|| Some(Path::new(REPO).join("target/pyenv/bin/python")))
            .filter(|p| p.exists())
    }

    pub fn start(python: &Path, dir: &Path) -> anyhow::Result<Django> {
        let manage = Path::new(REPO).join("tests/django_project/manage.py");
        let db = dir.join("django.sqlite3");
        let run = |args: &[&str]| -> anyhow::Result<String> {
            let out = Command::new(python)
                .arg(&manage)
                .args(args)
                .env("LABEL_GATEWAY_TEST_DB", &db)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("manage.py {}", args[0]))?;
            if !out.status.success() {
                bail!(
                    "manage.py {} failed: {}",
                    args[0],
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        run(&["gateway_setup"])?;
        let session = run(&["make_session", "--username", "bench"])?;
        if session.is_empty() {
            bail!("make_session printed no session key");
        }
        let port = free_port()?;
        let log = dir.join("django.log");
        let mut cmd = Command::new(python);
        cmd.arg(&manage)
            .args(["runserver", &format!("127.0.0.1:{port}"), "--noreload"])
            .env("LABEL_GATEWAY_TEST_DB", &db)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log)?));
        let mut guard = ChildGuard::spawn("django", &mut cmd, libc::SIGKILL, false, Some(log))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        guard.wait_http(addr, "/test/health/", START_WITHIN)?;
        Ok(Django {
            addr,
            _guard: guard,
            session,
        })
    }

    pub fn check_url(&self) -> String {
        format!("http://{}/internal/label-access/{{tracking}}/", self.addr)
    }

    /// Session checks the app has answered so far (its test-stats endpoint).
    pub async fn access_calls(&self) -> Option<u64> {
        let v: serde_json::Value = reqwest::Client::builder()
            .no_proxy()
            .build()
            .ok()?
            .get(format!("http://{}/test/stats/", self.addr))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["label-access"]["total"].as_u64()
    }
}
