//! The real `label-gateway` binary as a child process: [`GatewayProcess`] serves until
//! signalled (its logs kept for the test to read), [`run`] runs one operator command to
//! its exit. Configured through a file and exactly the environment the test gives.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{s3, S3Server};

/// A running `label-gateway` child; killed when dropped.
pub struct GatewayProcess {
    child: Child,
    pub addr: SocketAddr,
    /// The internal listener (`/internal/...`, `/metrics`).
    pub internal: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Starts the binary with `toml` as its config file and exactly `env` (plus PATH), and
    /// waits for its "listening" line on stderr.
    pub fn start(toml: &str, env: &[(&str, &str)]) -> GatewayProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, toml).expect("write config");
        let mut cmd = command(&config, env);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start label-gateway");
        let stderr = child.stderr.take().expect("stderr");
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("label-gateway listening") {
                    let field = |name: &str| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix(name))
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                    };
                    let _ = tx.send(field("addr=").zip(field("internal=")));
                }
                sink.lock().expect("logs").push(line);
            }
        });
        let (addr, internal) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(addrs)) => addrs,
            _ => {
                let _ = child.kill();
                panic!(
                    "label-gateway did not start:\n{}",
                    logs.lock().expect("logs").join("\n")
                );
            }
        };
        GatewayProcess {
            child,
            addr,
            internal,
            logs,
            _dir: dir,
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "label-gateway did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything logged so far (the reader thread may lag a moment behind).
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child dies with the thread that started it, so a failed test leaves no server.
fn kill_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A config file for the in-process S3 server; `server` adds `[server]` keys, `extra`
/// whole sections.
pub fn s3_toml(s3: &S3Server, check_url: &str, server: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\nworker_threads = 2\n{server}\
         [storage]\nbackend = \"s3\"\nendpoint = \"{}\"\nregion = \"{}\"\nbucket = \"{}\"\n\
         location = \"labels\"\n[auth]\ncheck_url = \"{check_url}\"\n{extra}",
        s3.endpoint(),
        s3::REGION,
        s3::BUCKET,
    )
}

/// The binary with `--config config` and exactly `env` (plus PATH); it dies with the
/// thread that started it.
fn command(config: &std::path::Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_label-gateway"));
    cmd.arg("--config")
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied());
    kill_with_parent(&mut cmd);
    cmd
}

/// Runs `label-gateway --config <toml> ARGS...` with exactly `env` to its exit (stdout and
/// stderr piped, so progress shows as plain lines), on a blocking thread.
pub async fn run(toml: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).expect("write config");
    let mut cmd = command(&config, env);
    cmd.args(args).stdin(Stdio::null());
    tokio::task::spawn_blocking(move || {
        let out = cmd.output().expect("run label-gateway");
        drop(dir);
        out
    })
    .await
    .expect("command thread")
}
