//! moto's S3 server (from PyPI, installed into the test virtualenv by
//! `tests/setup_python.sh`) as a second, independent S3 implementation, with its request
//! authentication on: the first three requests (the set-up in `moto_setup.py`: an IAM user
//! allowed everything and its access key) go unchecked, every later one must be
//! signed with that key (`INITIAL_NO_AUTH_ACTION_COUNT`).
//!
//! moto does not check the signing region or the request's clock, and fails presigned
//! requests while its authentication is on; tests say so where it matters.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use label_gateway::config::Config;

use super::django::{kill_with_parent, python};

/// The bucket the set-up makes.
pub const BUCKET: &str = "moto-labels";
/// Requests moto answers before it checks signatures: the set-up's three IAM calls.
const SETUP_REQUESTS: &str = "3";

pub struct Moto {
    pub addr: SocketAddr,
    pub access_key: String,
    pub secret_key: String,
    child: Child,
}

impl Moto {
    /// Starts `moto.server` on a free loopback port and prepares it; blocks until then.
    pub fn start() -> Moto {
        let port = super::port_to_bind_later();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(python());
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_REQUESTS)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        kill_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .expect("start moto.server (tests/setup_python.sh installs it)");
        let mut moto = Moto {
            addr,
            access_key: String::new(),
            secret_key: String::new(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto.server exited during start-up: {status}");
            }
            assert!(Instant::now() < deadline, "moto.server did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/moto_setup.py");
        let out = Command::new(python())
            .arg(setup)
            .args([&moto.endpoint(), BUCKET])
            .output()
            .expect("run moto_setup.py");
        assert!(
            out.status.success(),
            "moto set-up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (id, secret) = line.split_once(' ').expect("key id and secret");
        moto.access_key = id.to_string();
        moto.secret_key = secret.to_string();
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A gateway config on this server with its key, the session check at `check_url`,
    /// plus `extra` overrides.
    pub fn config(&self, check_url: &str, extra: &[(&str, &str)]) -> Config {
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"
[storage]
backend = "s3"
endpoint = "{endpoint}"
region = "us-east-1"
bucket = "{BUCKET}"
location = "labels"
retry_backoff = "5ms"
[regenerate]
url = ""
[auth]
check_url = "{check_url}"
timeout = "10s"
[log]
access_log = false
"#,
            endpoint = self.endpoint(),
        );
        let mut env = vec![
            ("SPACES_ACCESS_KEY_ID", self.access_key.as_str()),
            ("SPACES_SECRET_ACCESS_KEY", self.secret_key.as_str()),
        ];
        env.extend_from_slice(extra);
        super::config(&toml, &env)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
