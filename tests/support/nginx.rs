//! Real nginx in front of gateway copies, running the shipped `deploy/nginx/` config: the
//! files are copied into a temp dir with only the deployment's addresses (the copies, the
//! app, the two listeners) and its state folder replaced, each replacement checked, so the
//! test runs what operators run. nginx is a child of the test (`daemon off`, pid, logs and
//! temp files in the temp dir). A missing nginx fails the test: `tests/run.sh` installs it.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shipped config folder.
pub const DEPLOY_NGINX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx");

/// One gateway copy as nginx sees it.
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    /// `[server] listen`
    pub public: SocketAddr,
    /// `[server] internal_listen`
    pub internal: SocketAddr,
}

/// A running nginx; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Nginx {
    child: Child,
    /// The public server: labels to the copies, everything else to the app.
    pub public: SocketAddr,
    /// The private server: the app's `/internal/` calls to the copies.
    pub internal: SocketAddr,
    dir: tempfile::TempDir,
}

/// The nginx binary: `$NGINX`, else `nginx` on PATH, else `/usr/sbin/nginx`. Panics when
/// there is none: a fleet test that cannot run nginx fails, it does not skip.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NGINX") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("nginx"))
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "nginx not found (set NGINX, or run `bash tests/run.sh`, which installs the \
             Debian package nginx-light)"
        )
    })
}

impl Nginx {
    /// Starts nginx with the shipped config in front of `copies` (in the order the
    /// shipped upstreams list `gateway-1`, `gateway-2`, ...), the app at `app`.
    pub fn start(copies: &[Upstream], app: SocketAddr) -> Nginx {
        let bin = binary();
        let mut last_log = String::new();
        // A port picked free may be taken by the time nginx binds it: try again.
        for _ in 0..3 {
            let public = free_addr();
            let internal = free_addr();
            let dir = tempfile::tempdir().expect("tempdir");
            // Workers run as an unprivileged user when the test runs as root: they must
            // reach the temp folders nginx creates in here.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            render(dir.path(), copies, app, public, internal);
            let log = dir.path().join("error.log");
            let mut cmd = Command::new(&bin);
            cmd.arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(&log)
                .arg("-g")
                .arg(format!(
                    "pid {}; daemon off;",
                    dir.path().join("nginx.pid").display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.path().join("stderr.log")).expect("log file"),
                ));
            stop_with_parent(&mut cmd);
            let child = cmd.spawn().unwrap_or_else(|e| panic!("start {bin:?}: {e}"));
            let mut nginx = Nginx {
                child,
                public,
                internal,
                dir,
            };
            if nginx.wait_listening(Duration::from_secs(20)) {
                return nginx;
            }
            last_log = nginx.logs();
        }
        panic!("nginx did not start:\n{last_log}");
    }

    /// Both listeners accept connections; false if nginx exited first.
    fn wait_listening(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return false;
            }
            let up = |a: SocketAddr| {
                std::net::TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok()
            };
            if up(self.public) && up(self.internal) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// nginx's error log and stderr so far.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        format!(
            "{}{}",
            read("error.log").unwrap_or_default(),
            read("stderr.log").unwrap_or_default()
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the shipped config into `dir`, the deployment's addresses replaced by the test's.
fn render(
    dir: &Path,
    copies: &[Upstream],
    app: SocketAddr,
    public: SocketAddr,
    internal: SocketAddr,
) {
    // The folder nginx makes its temp folders in (the image's /var/cache/nginx).
    let state = dir.join("state");
    std::fs::create_dir(&state).expect("state dir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let state = state.to_str().expect("utf-8 temp path");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(DEPLOY_NGINX).expect("deploy/nginx") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "conf") {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("read shipped config");
            files.push((name, text));
        }
    }
    let mut replace = |file: &str, from: &str, to: &str, times: usize| {
        let (_, text) = files
            .iter_mut()
            .find(|(n, _)| n == file)
            .unwrap_or_else(|| panic!("deploy/nginx/{file} is missing"));
        let found = text.matches(from).count();
        assert_eq!(
            found, times,
            "deploy/nginx/{file}: expected {from:?} {times} times, found {found}: \
             the fleet test's rendering no longer matches the shipped config"
        );
        *text = text.replace(from, to);
    };
    replace("nginx.conf", "listen 80;", &format!("listen {public};"), 1);
    replace(
        "nginx.conf",
        "listen 8081;",
        &format!("listen {internal};"),
        1,
    );
    replace(
        "nginx.conf",
        "server django:8000;",
        &format!("server {app};"),
        1,
    );
    replace("nginx.conf", "/var/cache/nginx/", &format!("{state}/"), 5);
    for (i, copy) in copies.iter().enumerate() {
        let n = i + 1;
        let file = "label-gateway-upstreams.conf";
        replace(
            file,
            &format!("server gateway-{n}:8080 "),
            &format!("server {} ", copy.public),
            1,
        );
        replace(
            file,
            &format!("server gateway-{n}:9090 "),
            &format!("server {} ", copy.internal),
            1,
        );
    }
    for (name, text) in &files {
        assert!(
            !text.contains("server gateway-"),
            "deploy/nginx/{name} lists more copies than the test started"
        );
        std::fs::write(dir.join(name), text).expect("write config");
    }
}

/// An address on 127.0.0.1 that was free a moment ago.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// nginx gets SIGTERM when the thread that started it dies, so its master stops the
/// workers too (SIGKILL would leave them listening).
fn stop_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}
