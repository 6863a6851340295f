//! The faulted soak's parts: a fault-injecting TCP proxy in front of the S3 server, which
//! passes bytes through, resets connections, stalls them, or answers 503 in turns; and the
//! gateway started on listening sockets the bench holds (systemd socket activation), so it
//! can be restarted the way systemd restarts it: SIGTERM, and at once a new process on the
//! same sockets.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::peers::{gateway_bin, gateway_command, GatewayEnv};
use crate::procs::ChildGuard;

/// What the proxy does to the storage connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bytes pass both ways.
    Pass,
    /// Every connection is reset at once (RST), as a region's load balancer that drops.
    Reset,
    /// Connections are accepted and never answered.
    Stall,
    /// Every request is answered `503 Service Unavailable` (an S3 error body).
    Error5xx,
}

/// The turns the proxy takes, each for one period: a fault between two clean spells.
pub const TURNS: [Mode; 6] = [
    Mode::Pass,
    Mode::Reset,
    Mode::Pass,
    Mode::Stall,
    Mode::Pass,
    Mode::Error5xx,
];

/// The running proxy.
pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Connections by the mode they met: pass, reset, stall, 5xx.
    pub met: Arc<[AtomicU64; 4]>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, rx) = watch::channel(Mode::Pass);
        let met: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        let counts = met.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                let (rx, counts) = (rx.clone(), counts.clone());
                tokio::spawn(async move { handle(client, upstream, rx, &counts).await });
            }
        });
        Ok(FaultProxy { addr, mode, met })
    }

    pub fn set(&self, mode: Mode) {
        // Every open connection is cut at a change (see `handle`).
        let _ = self.mode.send(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }
}

/// One storage connection, treated as the mode at its start says; any change of mode
/// resets it, so pooled connections meet the new mode too.
async fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut rx: watch::Receiver<Mode>,
    met: &[AtomicU64; 4],
) {
    let mode = *rx.borrow_and_update();
    let slot = match mode {
        Mode::Pass => 0,
        Mode::Reset => 1,
        Mode::Stall => 2,
        Mode::Error5xx => 3,
    };
    met[slot].fetch_add(1, Ordering::Relaxed);
    match mode {
        Mode::Reset => {}
        Mode::Pass => {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return reset(client);
            };
            let _ = server.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                _ = rx.changed() => {}
            }
            reset_stream(server);
        }
        Mode::Stall => {
            let mut sink = [0u8; 4096];
            loop {
                tokio::select! {
                    read = client.read(&mut sink) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    _ = rx.changed() => break,
                }
            }
        }
        Mode::Error5xx => {
            const BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ServiceUnavailable</Code><Message>Please reduce your request rate.</Message></Error>";
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                BODY.len()
            );
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            let read_head = async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            };
            let got = tokio::time::timeout(Duration::from_secs(10), read_head).await;
            if matches!(got, Ok(true)) {
                let _ = client.write_all(answer.as_bytes()).await;
                let _ = client.shutdown().await;
                return;
            }
        }
    }
    reset(client);
}

/// Closes with a reset (SO_LINGER 0), as a dropped connection looks to the gateway.
fn reset(stream: TcpStream) {
    reset_stream(stream);
}

fn reset_stream(stream: TcpStream) {
    // A zero linger: the close sends RST at once and never blocks.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `linger` (its size given) for the stream's own open fd.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

/// The gateway on sockets the bench holds, as systemd holds them for a socket unit.
pub struct ActivatedGateway {
    pub addr: SocketAddr,
    pub internal: SocketAddr,
    public: std::net::TcpListener,
    internal_socket: std::net::TcpListener,
    name: String,
    dir: std::path::PathBuf,
    s3: SocketAddr,
    check_url: String,
    extra_env: Vec<(&'static str, String)>,
    pub guard: ChildGuard,
    /// Processes started so far (for the log names).
    started: usize,
}

impl ActivatedGateway {
    pub fn start(
        name: &str,
        dir: &Path,
        s3: SocketAddr,
        check_url: &str,
        extra_env: &[(&'static str, String)],
    ) -> anyhow::Result<ActivatedGateway> {
        let public = std::net::TcpListener::bind("127.0.0.1:0")?;
        let internal_socket = std::net::TcpListener::bind("127.0.0.1:0")?;
        let (addr, internal) = (public.local_addr()?, internal_socket.local_addr()?);
        let guard = spawn(
            name,
            dir,
            s3,
            check_url,
            extra_env,
            [public.as_raw_fd(), internal_socket.as_raw_fd()],
            (addr, internal),
        )?;
        Ok(ActivatedGateway {
            addr,
            internal,
            public,
            internal_socket,
            name: name.into(),
            dir: dir.into(),
            s3,
            check_url: check_url.into(),
            extra_env: extra_env.to_vec(),
            guard,
            started: 1,
        })
    }

    /// SIGTERM to the running process and at once a new one on the same sockets; returns
    /// the old one (draining), ended when dropped.
    pub fn restart(&mut self) -> anyhow::Result<ChildGuard> {
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        unsafe { libc::kill(self.guard.pid() as libc::pid_t, libc::SIGTERM) };
        self.started += 1;
        let guard = spawn(
            &format!("{}-{}", self.name, self.started),
            &self.dir,
            self.s3,
            &self.check_url,
            &self.extra_env,
            [self.public.as_raw_fd(), self.internal_socket.as_raw_fd()],
            (self.addr, self.internal),
        )?;
        Ok(std::mem::replace(&mut self.guard, guard))
    }
}

/// Starts the gateway with `fds` as its fds 3 and 4 (`LISTEN_FDS=2`,
/// `LISTEN_FDNAMES=public:internal`, `LISTEN_PID` its own pid, set by a shell that execs
/// it), and waits for its health check.
fn spawn(
    name: &str,
    dir: &Path,
    s3: SocketAddr,
    check_url: &str,
    extra_env: &[(&'static str, String)],
    fds: [RawFd; 2],
    (addr, internal): (SocketAddr, SocketAddr),
) -> anyhow::Result<ChildGuard> {
    use std::os::unix::process::CommandExt;
    let (bin, config_path) = gateway_bin();
    // The config's own addresses are never bound: the sockets are passed.
    let (gateway, _, log) = gateway_command(
        &bin,
        &config_path,
        name,
        dir,
        GatewayEnv {
            listen: addr,
            internal,
            s3,
            check_url,
            cache_enabled: true,
        },
        extra_env,
    )?;
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(gateway.get_program())
        .args(gateway.get_args())
        .current_dir(dir)
        .env("LISTEN_FDS", "2")
        .env("LISTEN_FDNAMES", "public:internal")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    for (k, v) in gateway.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    // SAFETY: fcntl, dup2 and close only (async-signal-safe), on fds this process holds.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [-1; 2];
            for (h, &fd) in high.iter_mut().zip(fds.iter()) {
                *h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64);
                if *h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, &fd) in high.iter().enumerate() {
                if libc::dup2(fd, 3 + i as libc::c_int) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
            Ok(())
        });
    }
    let mut guard = ChildGuard::spawn(name, &mut cmd, libc::SIGKILL, true, Some(log))
        .with_context(|| format!("start {}", bin.display()))?;
    guard.wait_http(addr, "/healthz", Duration::from_secs(30))?;
    Ok(guard)
}

/// The faulted soak: the soak's labels in the primary store behind the fault proxy (and in
/// a fallback bucket, when this build has `[storage.fallback]`), the gateway on held
/// sockets with `cache.ttl` 30 s (so hot labels go past their freshness during every
/// fault) and `cache.stale_if_error` when this build has it; the proxy takes its turns
/// every `LOAD_SOAK_FAULT_PERIOD` seconds (default 20) and the gateway is restarted once
/// at `LOAD_SOAK_RESTART_AT` seconds (default 110, in a 503 turn).
pub async fn soak(
    s3: &crate::peers::SelfChild,
    responder: &crate::servers::Responder,
    base_env: Vec<(&'static str, String)>,
    labels: Arc<crate::soak::Labels>,
    dir: &Path,
    s: &crate::Settings,
) -> anyhow::Result<()> {
    use crate::soak::{self, Faulted};
    let secs = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let total = secs("LOAD_SOAK_SECONDS", if s.quick { 90 } else { 330 });
    let period = secs("LOAD_SOAK_FAULT_PERIOD", 20).max(1);
    let restart_at = secs("LOAD_SOAK_RESTART_AT", 110).min(total / 2);

    let proxy = Arc::new(FaultProxy::start(s3.addr).await?);
    let mut env = base_env;
    env.push(("LABEL_GATEWAY_CACHE__TTL", "30s".into()));
    let stale = [("LABEL_GATEWAY_CACHE__STALE_IF_ERROR", "1h".to_string())];
    let has_stale = knows(dir, &stale);
    if has_stale {
        env.extend(stale);
    }
    // The hot labels written on drain and warmed by the next process, when this build can.
    let hot_list = [(
        "LABEL_GATEWAY_CACHE__HOT_LIST",
        dir.join("hot-list.txt").display().to_string(),
    )];
    let has_hot_list = knows(dir, &hot_list);
    if has_hot_list {
        env.extend(hot_list);
    }
    // The fallback bucket: a second S3 server holding every label (as `mirror` keeps it).
    let fallback = crate::peers::SelfChild::start(
        "serve-s3",
        &dir.join("s3-fallback"),
        dir.join("s3-fallback.log"),
    )?;
    let fallback_env = vec![
        (
            "LABEL_GATEWAY_STORAGE__FALLBACK__ENDPOINT",
            format!("http://{}", fallback.addr),
        ),
        (
            "LABEL_GATEWAY_STORAGE__FALLBACK__BUCKET",
            crate::servers::BUCKET.to_string(),
        ),
        (
            "LABEL_GATEWAY_STORAGE__FALLBACK__REGION",
            crate::servers::REGION.to_string(),
        ),
        (
            "SPACES_FALLBACK_ACCESS_KEY_ID",
            crate::servers::ACCESS_KEY.to_string(),
        ),
        (
            "SPACES_FALLBACK_SECRET_ACCESS_KEY",
            crate::servers::SECRET_KEY.to_string(),
        ),
    ];
    let mirrored = knows(dir, &fallback_env);
    if mirrored {
        crate::write_soak_labels(fallback.addr, &labels).await?;
        env.extend(fallback_env);
    }
    println!();
    println!(
        "Faulted soak: {total} s; the primary store passes, resets every connection, passes, \
         stalls, passes, answers 503, in turns of {period} s; the gateway restarted through \
         its sockets at {restart_at} s; cache.ttl 30 s; stale_if_error {}; hot_list {}; \
         fallback bucket {}.",
        if has_stale { "1h" } else { "not in this build" },
        if has_hot_list {
            "on"
        } else {
            "not in this build"
        },
        if mirrored {
            "holding every label"
        } else {
            "not in this build"
        },
    );

    let gw = ActivatedGateway::start(
        "gateway-faulted",
        dir,
        proxy.addr,
        &responder.check_url(),
        &env,
    )?;
    let (addr, internal) = (gw.addr, gw.internal);
    let faulted = Faulted {
        proxy: proxy.clone(),
        pid: Arc::new(std::sync::atomic::AtomicU32::new(gw.guard.pid())),
        generation: Arc::new(AtomicU64::new(0)),
        changed_ms: Arc::new(AtomicU64::new(0)),
        mirrored,
    };
    let began = std::time::Instant::now();
    let turns = {
        let (proxy, changed) = (proxy.clone(), faulted.changed_ms.clone());
        tokio::spawn(async move {
            for (i, mode) in TURNS.iter().cycle().enumerate() {
                let at = began + Duration::from_secs(period * i as u64);
                tokio::time::sleep_until(at.into()).await;
                proxy.set(*mode);
                changed.store(began.elapsed().as_millis() as u64, Ordering::Relaxed);
                eprintln!("  {:>4} s: storage {mode:?}", began.elapsed().as_secs());
            }
        })
    };
    // The restart, from a thread that lives as long as the new process (each process dies
    // with the thread that started it).
    let (end, ended) = std::sync::mpsc::channel::<()>();
    let restarter = {
        let (pid, generation) = (faulted.pid.clone(), faulted.generation.clone());
        std::thread::spawn(move || -> anyhow::Result<(f64, Duration, Duration)> {
            let mut gw = gw;
            std::thread::sleep(
                (began + Duration::from_secs(restart_at))
                    .saturating_duration_since(std::time::Instant::now()),
            );
            let at = began.elapsed().as_secs_f64();
            let signalled = std::time::Instant::now();
            let mut old = gw.restart()?;
            let up = signalled.elapsed();
            pid.store(gw.guard.pid(), Ordering::SeqCst);
            generation.fetch_add(1, Ordering::SeqCst);
            eprintln!("  {at:>4.0} s: gateway restarted (new process serving after {up:?})");
            while old.ensure_running().is_ok() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let drained = signalled.elapsed();
            let _ = ended.recv();
            drop(gw);
            Ok((at, up, drained))
        })
    };
    let settings = soak::Settings {
        // RSS is judged from 40 s after the restart: the new process at steady state.
        warmup_secs: restart_at + soak::WARMUP_SECS,
        secs: total.saturating_sub(restart_at + soak::WARMUP_SECS).max(1),
        allowed_cookie: crate::ANY_SESSION,
        faults: Some(faulted),
    };
    let pid = settings
        .faults
        .as_ref()
        .map_or(0, |f| f.pid.load(Ordering::SeqCst));
    let result = soak::run(addr, internal, pid, labels, &settings).await;
    turns.abort();
    let _ = end.send(());
    let restart = restarter
        .join()
        .map_err(|_| anyhow::anyhow!("the restart thread panicked"))?;
    match &restart {
        Ok((at, up, drained)) => println!(
            "  restart at {at:.0} s: the new process served {} ms after SIGTERM; the old one \
             drained and exited after {} ms",
            up.as_millis(),
            drained.as_millis()
        ),
        Err(e) => println!("  restart failed: {e:#}"),
    }
    let met: Vec<u64> = proxy
        .met
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    println!(
        "  storage connections: {} passed, {} reset, {} stalled, {} answered 503",
        met[0], met[1], met[2], met[3]
    );
    drop(fallback);
    restart?;
    result
}

/// Whether this build's config accepts `env` beside the gateway's usual settings (a
/// setting it does not know is refused).
fn knows(dir: &Path, env: &[(&'static str, String)]) -> bool {
    let (bin, config_path) = gateway_bin();
    let any = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
    let g = GatewayEnv {
        listen: any(9),
        internal: any(10),
        s3: any(11),
        check_url: "http://127.0.0.1:9/check",
        cache_enabled: true,
    };
    gateway_command(&bin, &config_path, "config-probe", dir, g, env).is_ok()
}
