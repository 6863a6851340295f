//! Child processes and their memory: every process the bench starts is held by a
//! [`ChildGuard`] that ends it on drop (unwinding from a panic included) and that the kernel
//! ends if the bench itself dies. Peak RSS comes from `/proc/PID/status`.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A started child process, ended when dropped.
pub struct ChildGuard {
    name: String,
    child: Child,
    /// SIGTERM first (nginx stops its workers on it), SIGKILL only after a grace period.
    graceful: bool,
    log: Option<PathBuf>,
}

impl ChildGuard {
    /// Spawns `cmd`. The child gets `death_signal` if the thread that started it dies, so a
    /// killed bench leaves nothing behind. Call from the main thread.
    pub fn spawn(
        name: &str,
        cmd: &mut Command,
        death_signal: libc::c_int,
        graceful: bool,
        log: Option<PathBuf>,
    ) -> anyhow::Result<ChildGuard> {
        // SAFETY: prctl only changes the calling (child) process's own state and is
        // async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("start {name}"))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child,
            graceful,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub fn stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// An error naming the process (and the end of its log) if it has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited: {status}{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// The last lines of the child's log, for error messages.
    pub fn log_tail(&self) -> String {
        let Some(text) = self.log.as_ref().and_then(|p| fs::read_to_string(p).ok()) else {
            return String::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("\n--- end of {} log ---\n{tail}", self.name)
    }

    /// Waits until `GET path` on `addr` answers 2xx, or fails when the child exits or the
    /// deadline passes.
    pub fn wait_http(
        &mut self,
        addr: SocketAddr,
        path: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            self.ensure_running()?;
            if let Some(status) = http_status(addr, path) {
                if (200..300).contains(&status) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer GET {path} on {addr} within {within:?}{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if self.graceful {
            // SAFETY: plain kill(2) on our own child's pid, which has not been reaped.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status code of `GET path` (connection closed after), or `None` if there is no answer.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A port free right now on 127.0.0.1, for children that take their address as a setting.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Raises this process's open-file limit to the hard limit (children inherit it): the
/// memory run holds thousands of sockets.
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A `kB` field of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix(field))?;
    let kb: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// Current resident set size of `pid`, in bytes.
pub fn rss(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// `pid` and its direct children (nginx: the master and its workers).
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    pids.extend(
        parents()
            .into_iter()
            .filter(|(_, pp)| *pp == pid)
            .map(|(c, _)| c),
    );
    pids
}

/// Peak resident memory of a set of processes over one measurement.
///
/// Each process's high-water mark (`VmHWM`) is reset through `clear_refs` at the start and
/// read at the end; their sum bounds the peak of the total from above. Where the kernel
/// refuses the reset, the largest total `VmRSS` sampled every 20 ms is used instead.
pub struct PeakRss {
    pids: Vec<u32>,
    reset_ok: bool,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<u64>>,
}

impl PeakRss {
    pub fn start(pids: &[u32]) -> PeakRss {
        let reset_ok = pids
            .iter()
            .all(|pid| fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok());
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (pids.to_vec(), stop.clone());
        let sampler = std::thread::spawn(move || {
            let mut max = 0;
            while !s.load(Ordering::Relaxed) {
                let total: u64 = p.iter().filter_map(|&pid| rss(pid)).sum();
                max = max.max(total);
                std::thread::sleep(Duration::from_millis(20));
            }
            max
        });
        PeakRss {
            pids: pids.to_vec(),
            reset_ok,
            stop,
            sampler: Some(sampler),
        }
    }

    /// The peak in bytes.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let sampled = self.sampler.take().and_then(|h| h.join().ok()).unwrap_or(0);
        if self.reset_ok {
            let hwm: Option<u64> = self.pids.iter().map(|&p| status_bytes(p, "VmHWM:")).sum();
            if let Some(hwm) = hwm {
                return hwm.max(sampled);
            }
        }
        sampled
    }
}

/// CPU time of one process (all its threads, plus its reaped children), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: state is field 3, utime..cstime are fields 14..17.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = rest
        .get(11..15)?
        .iter()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Some(ticks as f64 / clock_ticks())
}

/// Context switches (voluntary and not) of every thread of `pid` so far.
pub fn context_switches(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = 0;
    for task in tasks.flatten() {
        let Ok(text) = fs::read_to_string(task.path().join("status")) else {
            continue; // a thread that ended meanwhile
        };
        sum += text
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Some(sum)
}

/// Minor page faults of `pid` so far, all its threads (field 10 of `/proc/PID/stat`).
pub fn minor_faults(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name's closing parenthesis: state is field 3, minflt field 10.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(7)?.parse().ok()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Parent of every process, from `/proc/*/stat`.
fn parents() -> Vec<(u32, u32)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// How busy the machine was, and how much of that was this bench (the driver and every
/// process below it, wrk included once reaped).
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    /// Busy and total CPU seconds of the whole machine (`/proc/stat`).
    busy: f64,
    total: f64,
    ours: f64,
}

impl CpuSnapshot {
    pub fn take() -> CpuSnapshot {
        let (busy, total) = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| {
                let line = t.lines().next()?.strip_prefix("cpu ")?.to_string();
                let v: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal (guest is inside user).
                let total: u64 = v.iter().take(8).sum();
                let idle = v.get(3)? + v.get(4)?;
                Some(((total - idle) as f64, total as f64))
            })
            .unwrap_or((0.0, 0.0));
        let me = std::process::id();
        let tree = descendants(me, &parents());
        let ours = tree.iter().filter_map(|&p| cpu_seconds(p)).sum();
        let hz = clock_ticks();
        CpuSnapshot {
            busy: busy / hz,
            total: total / hz,
            ours,
        }
    }

    /// Share of the machine's CPU used by anything but this bench since `earlier`.
    pub fn foreign_share_since(&self, earlier: &CpuSnapshot) -> f64 {
        let total = self.total - earlier.total;
        if total <= 0.0 {
            return 0.0;
        }
        let foreign = (self.busy - earlier.busy) - (self.ours - earlier.ours);
        (foreign / total).clamp(0.0, 1.0)
    }
}

fn descendants(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// A program on `PATH`, or at one of `fallbacks` (Debian puts nginx in /usr/sbin).
pub fn find_program(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .chain(fallbacks.iter().map(PathBuf::from))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
