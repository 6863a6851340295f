//! The real `label-gateway` binary as a child process of the test: [`GatewayProcess`]
//! serves until signalled (configured through a file, or with none through the environment
//! alone, and exactly the environment the test gives, its stderr captured, its addresses
//! read from its "listening" log line, killed with the test; restartable on the same
//! ports, as an orchestrator restarts a crashed copy behind nginx), and [`run`] runs one
//! operator command to its exit.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{s3, S3Server};

/// A running `label-gateway` child; killed when dropped.
pub struct GatewayProcess {
    child: Child,
    /// The public listener (labels, health).
    pub addr: SocketAddr,
    /// The internal listener (`/internal/...`, `/metrics`).
    pub internal: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// `None`: started without `--config`, in `dir` (which holds no `config.toml`).
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Starts the binary with `toml` as its config file and exactly `env` (plus PATH), and
    /// waits for its "listening" line on stderr.
    pub fn start(toml: &str, env: &[(&str, &str)]) -> GatewayProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, toml).expect("write config");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (child, addr, internal) = spawn(Some(&config), dir.path(), &env, &logs);
        GatewayProcess {
            child,
            addr,
            internal,
            logs,
            config: Some(config),
            env,
            dir,
        }
    }

    /// Starts the binary without `--config`, in an empty folder (so without a
    /// `config.toml` either), with exactly `env` (plus PATH): the environment alone
    /// configures it.
    pub fn start_without_config(env: &[(&str, &str)]) -> GatewayProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (child, addr, internal) = spawn(None, dir.path(), &env, &logs);
        GatewayProcess {
            child,
            addr,
            internal,
            logs,
            config: None,
            env,
            dir,
        }
    }

    /// Starts the binary as systemd starts a socket-activated service: `sockets` (listening,
    /// held by the test as systemd holds them) become its fds 3, 4, ... named by
    /// `LISTEN_FDNAMES`, and `LISTEN_FDS` and `LISTEN_PID` (its own pid, set by a shell
    /// that then execs the binary) say so.
    pub fn start_activated(
        toml: &str,
        env: &[(&str, &str)],
        sockets: &[(&std::net::TcpListener, &str)],
    ) -> GatewayProcess {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        assert!(sockets.len() <= 2, "at most two sockets");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, toml).expect("write config");
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("LISTEN_FDS".into(), sockets.len().to_string()));
        let names: Vec<&str> = sockets.iter().map(|(_, name)| *name).collect();
        env.push(("LISTEN_FDNAMES".into(), names.join(":")));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
            .arg(env!("CARGO_BIN_EXE_label-gateway"))
            .arg("--config")
            .arg(&config);
        let mut fds = [-1; 2];
        for (slot, (socket, _)) in fds.iter_mut().zip(sockets) {
            *slot = socket.as_raw_fd();
        }
        let n = sockets.len();
        // SAFETY: only fcntl, dup2 and close, all async-signal-safe, on fds the parent
        // holds open; no allocation.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way first, so that placing one cannot overwrite another.
                let mut high = [-1; 2];
                for (h, &fd) in high.iter_mut().zip(fds.iter()).take(n) {
                    *h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64);
                    if *h < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (i, &fd) in high.iter().enumerate().take(n) {
                    // dup2 leaves the new fd open across exec.
                    if libc::dup2(fd, 3 + i as libc::c_int) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (child, addr, internal) = spawn_command(cmd, &env, &logs);
        GatewayProcess {
            child,
            addr,
            internal,
            logs,
            config: Some(config),
            env,
            dir,
        }
    }

    /// Kills the process (if still running) and starts it again with the same config and
    /// environment on the same two addresses. Its logs go on in the same record.
    pub fn restart(&mut self) {
        self.kill();
        let mut env = self.env.clone();
        env.push(("LABEL_GATEWAY_SERVER__LISTEN".into(), self.addr.to_string()));
        env.push((
            "LABEL_GATEWAY_SERVER__INTERNAL_LISTEN".into(),
            self.internal.to_string(),
        ));
        let (child, addr, internal) =
            spawn(self.config.as_deref(), self.dir.path(), &env, &self.logs);
        assert_eq!(
            (addr, internal),
            (self.addr, self.internal),
            "restarted on other addresses"
        );
        self.child = child;
    }

    /// A graceful restart on the same two addresses, as an orchestrator restarts a copy
    /// without socket activation: SIGTERM (the copy drains), and a new process as soon as
    /// the old one has closed its listeners, while it may still be finishing requests.
    /// Returns the old process, to wait for.
    pub fn replace(&mut self) -> Child {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let listening =
            |a: &SocketAddr| std::net::TcpStream::connect_timeout(a, Duration::from_millis(200));
        while listening(&self.addr).is_ok() || listening(&self.internal).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the copy kept listening after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut env = self.env.clone();
        env.push(("LABEL_GATEWAY_SERVER__LISTEN".into(), self.addr.to_string()));
        env.push((
            "LABEL_GATEWAY_SERVER__INTERNAL_LISTEN".into(),
            self.internal.to_string(),
        ));
        let (child, addr, internal) =
            spawn(self.config.as_deref(), self.dir.path(), &env, &self.logs);
        assert_eq!((addr, internal), (self.addr, self.internal));
        std::mem::replace(&mut self.child, child)
    }

    /// SIGKILL, then reaps it: the copy is gone at once, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        self.kill();
    }
}

/// Starts the binary and waits for its "listening" line; its stderr lines are appended
/// to `logs` by a reader thread. Without a `config` it runs in `dir`.
fn spawn(
    config: Option<&std::path::Path>,
    dir: &std::path::Path,
    env: &[(String, String)],
    logs: &Arc<Mutex<Vec<String>>>,
) -> (Child, SocketAddr, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_label-gateway"));
    match config {
        Some(config) => cmd.arg("--config").arg(config),
        None => cmd.current_dir(dir),
    };
    spawn_command(cmd, env, logs)
}

/// Runs `cmd` (the binary, or a wrapper that execs it) with exactly `env` (plus PATH) and
/// waits for the gateway's "listening" line.
fn spawn_command(
    mut cmd: Command,
    env: &[(String, String)],
    logs: &Arc<Mutex<Vec<String>>>,
) -> (Child, SocketAddr, SocketAddr) {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    kill_with_parent(&mut cmd);
    let mut child = cmd.spawn().expect("start label-gateway");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("label-gateway listening") {
                // Text (`addr=...`) or JSON (`"addr": "..."`) log lines alike.
                let json = serde_json::from_str::<serde_json::Value>(&line).ok();
                let field = |name: &str| {
                    match &json {
                        Some(v) => v[name].as_str().map(str::to_string),
                        None => line
                            .split_whitespace()
                            .find_map(|w| w.strip_prefix(&format!("{name}=")))
                            .map(str::to_string),
                    }
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                };
                let _ = tx.send(field("addr").zip(field("internal")));
            }
            sink.lock().expect("logs").push(line);
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Some((addr, internal))) => (child, addr, internal),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "label-gateway did not start:\n{}",
                logs.lock().expect("logs").join("\n")
            );
        }
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

/// The credentials of the in-process S3 server, as the environment a copy runs with.
pub const S3_ENV: [(&str, &str); 2] = [
    ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
    ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
];

/// Runs `label-gateway --config <toml> ARGS...` with exactly `env` to its exit (stdout and
/// stderr piped, so progress shows as plain lines), on a blocking thread.
pub async fn run(toml: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_label-gateway"));
    cmd.arg("--config")
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null());
    kill_with_parent(&mut cmd);
    tokio::task::spawn_blocking(move || {
        let out = cmd.output().expect("run label-gateway");
        drop(dir);
        out
    })
    .await
    .expect("command thread")
}

/// Runs `label-gateway ARGS...` without `--config`, in `dir`, with exactly `env` to its
/// exit, on a blocking thread.
pub async fn run_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_label-gateway"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null());
    kill_with_parent(&mut cmd);
    tokio::task::spawn_blocking(move || cmd.output().expect("run label-gateway"))
        .await
        .expect("command thread")
}
