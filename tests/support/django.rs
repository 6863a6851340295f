//! The real Django test app (`tests/django_project`) as a child process: its own copy of a
//! migrated sqlite database, `runserver --noreload` on a free port, real users and real
//! sessions made by `manage.py make_session`. Killed when dropped.
//!
//! Python comes from `LABEL_GATEWAY_TEST_PYTHON` or `target/pyenv/bin/python`, which
//! `tests/run.sh` creates. A missing Python is a test failure, never a skip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub fn python() -> PathBuf {
    let p = std::env::var_os("LABEL_GATEWAY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join("target/pyenv/bin/python"));
    assert!(
        p.exists(),
        "no Python with Django at {}: run `bash tests/run.sh` (it installs Django into \
         target/pyenv) or set LABEL_GATEWAY_TEST_PYTHON",
        p.display()
    );
    p
}

fn manage() -> PathBuf {
    Path::new(REPO).join("tests/django_project/manage.py")
}

/// A migrated database, made once per test process and copied for each app instance.
fn template_db() -> &'static Path {
    static DB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("template.sqlite3");
        let status = Command::new(python())
            .arg(manage())
            .arg("gateway_setup")
            .env("LABEL_GATEWAY_TEST_DB", &db)
            .status()
            .expect("run manage.py gateway_setup");
        assert!(status.success(), "manage.py gateway_setup failed");
        (dir, db)
    });
    path
}

pub struct Django {
    pub addr: SocketAddr,
    child: Child,
    db: PathBuf,
    _dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Django {
    /// Starts the app; `env` is passed to it (e.g. `DJANGO_SESSION_COOKIE_NAME`).
    pub fn start_with(env: &[(&str, &str)]) -> Django {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db.sqlite3");
        std::fs::copy(template_db(), &db).expect("copy template db");
        // runserver binds it a moment later: a port no other test's `:0` listener takes.
        let port = super::port_to_bind_later();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cmd = Command::new(python());
        cmd.arg(manage())
            .args(["runserver", &format!("127.0.0.1:{port}"), "--noreload"])
            .env("LABEL_GATEWAY_TEST_DB", &db)
            .env("PYTHONUNBUFFERED", "1")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        kill_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start runserver");
        let mut django = Django {
            addr,
            child,
            db,
            _dir: dir,
            env,
        };
        django.wait_ready();
        django
    }

    pub fn start() -> Django {
        Self::start_with(&[])
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Django exited during start-up: {status}");
            }
            if let Ok(mut s) =
                std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
            {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req =
                    "GET /test/health/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                if s.write_all(req.as_bytes()).is_ok() {
                    let mut buf = String::new();
                    let _ = s.read_to_string(&mut buf);
                    if buf.starts_with("HTTP/1.1 200") {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "Django did not come up within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The access-check URL of this app, with `{tracking}`.
    pub fn check_url(&self) -> String {
        format!("http://{}/internal/label-access/{{tracking}}/", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Logs `username` in for real and returns the session key.
    pub fn session(&self, username: &str) -> String {
        let out = Command::new(python())
            .arg(manage())
            .args(["make_session", "--username", username])
            .env("LABEL_GATEWAY_TEST_DB", &self.db)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run make_session");
        assert!(
            out.status.success(),
            "make_session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string();
        assert!(!key.is_empty(), "make_session printed no key");
        key
    }

    /// Logs the session out through the app (the session row is deleted).
    pub async fn logout(&self, cookie: &str) {
        let resp = super::client()
            .post(self.url("/test/logout/"))
            .header("cookie", cookie)
            .send()
            .await
            .expect("logout");
        assert!(resp.status().is_success(), "logout: {}", resp.status());
    }

    /// Calls seen by the app: `{"label-access": {"total": N, "by_tracking": {..}}, ...}`.
    pub async fn stats(&self) -> serde_json::Value {
        super::client()
            .get(self.url("/test/stats/"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json")
    }

    pub async fn access_calls(&self) -> u64 {
        self.stats().await["label-access"]["total"]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn regenerate_calls(&self) -> u64 {
        self.stats().await["label-regenerate"]["total"]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn reset_stats(&self) {
        super::client()
            .post(self.url("/test/stats/reset/"))
            .send()
            .await
            .expect("reset stats");
    }

    /// Stops the app (for "app down" tests).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Django {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The child dies with the thread that started it, so a failed test leaves no server.
pub fn kill_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}
