//! Restarts through systemd socket activation, done the way systemd does them: the test
//! holds the two listening sockets, starts the real binary with them as fds 3 and 4
//! (`LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`), then under continuous label requests
//! sends SIGTERM and at once starts a new process on the same sockets. No request fails.
//! A bad environment is a clear start-up error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::process::{run, s3_toml, GatewayProcess, S3_ENV};
use crate::support::{pdf_bytes, Responder, S3Server, ANY_SESSION};

const LABELS: usize = 20;

/// One answer read off a connection.
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// The server said `Connection: close`.
    close: bool,
}

/// Why a request got no answer; `answered` when some byte of a response had come.
struct Failed {
    answered: bool,
    error: String,
}

/// Writes one GET for `tracking` and reads its answer on `conn`.
fn exchange(
    conn: &mut BufReader<TcpStream>,
    tracking: &str,
    close: bool,
) -> Result<Answer, Failed> {
    let request = format!(
        "GET /shipping-label/{tracking}/ HTTP/1.1\r\nHost: labels\r\nCookie: {ANY_SESSION}\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    );
    let unanswered = |e: std::io::Error| Failed {
        answered: false,
        error: e.to_string(),
    };
    let answered = |e: String| Failed {
        answered: true,
        error: e,
    };
    conn.get_mut()
        .write_all(request.as_bytes())
        .map_err(unanswered)?;
    let mut line = String::new();
    match conn.read_line(&mut line) {
        Ok(0) => return Err(unanswered(std::io::ErrorKind::UnexpectedEof.into())),
        Ok(_) => {}
        Err(e) if line.is_empty() => return Err(unanswered(e)),
        Err(e) => return Err(answered(e.to_string())),
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| answered(format!("bad status line {line:?}")))?;
    let (mut length, mut close) = (0usize, false);
    loop {
        let mut header = String::new();
        conn.read_line(&mut header)
            .map_err(|e| answered(format!("head: {e}")))?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| answered(format!("bad length {value:?}")))?
            }
            "connection" => close = value.trim().eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body)
        .map_err(|e| answered(format!("body cut short: {e}")))?;
    Ok(Answer {
        status,
        body,
        close,
    })
}

fn connect(addr: SocketAddr) -> std::io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(BufReader::new(stream))
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    ok: usize,
    /// Requests sent again on a fresh connection because a kept-alive one was closed
    /// before any byte of their answer (what nginx and browsers do for a GET).
    retried: usize,
    failed: Vec<String>,
}

/// A client printing labels until `stop`: each request on a new connection, or on one
/// kept alive. Only a request on a reused connection that got no byte of an answer is
/// sent again (once, on a new connection); everything else that is not the label's 200
/// with its bytes is a failure.
fn client(
    addr: SocketAddr,
    labels: Arc<Vec<(String, Vec<u8>)>>,
    keep_alive: bool,
    seed: usize,
    ok_total: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut kept: Option<BufReader<TcpStream>> = None;
    let mut n = seed;
    while !stop.load(Ordering::SeqCst) {
        n += 7;
        let (tracking, data) = &labels[n % labels.len()];
        let reused = kept.is_some();
        let mut outcome = match kept.take().map(Ok).unwrap_or_else(|| connect(addr)) {
            Ok(mut conn) => exchange(&mut conn, tracking, !keep_alive).map(|a| (a, conn)),
            Err(e) => Err(Failed {
                answered: false,
                error: format!("connect: {e}"),
            }),
        };
        if reused && matches!(&outcome, Err(f) if !f.answered) {
            tally.retried += 1;
            outcome = match connect(addr) {
                Ok(mut conn) => exchange(&mut conn, tracking, false).map(|a| (a, conn)),
                Err(e) => Err(Failed {
                    answered: false,
                    error: format!("connect: {e}"),
                }),
            };
        }
        match outcome {
            Ok((a, conn)) if a.status == 200 && a.body == *data => {
                tally.ok += 1;
                ok_total.fetch_add(1, Ordering::SeqCst);
                if keep_alive && !a.close {
                    kept = Some(conn);
                }
            }
            Ok((a, _)) => {
                tally
                    .failed
                    .push(format!("{tracking}: {} ({} bytes)", a.status, a.body.len()))
            }
            Err(f) => tally.failed.push(format!(
                "{tracking}: {} (reused connection: {reused})",
                f.error
            )),
        }
    }
    tally
}

/// Waits until `total` reaches `at_least`, at most 20 s.
async fn until(total: &AtomicUsize, at_least: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while total.load(Ordering::SeqCst) < at_least {
        assert!(Instant::now() < deadline, "clients stalled {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Six clients print labels without pause (four on a new connection each time, two on
/// kept-alive connections) while the gateway is replaced: SIGTERM, and at once a new
/// process on the same sockets. The old one drains and exits; the new one serves; no
/// request fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_on_passed_sockets_fails_no_request() {
    let s3 = S3Server::start().await;
    let mut labels = Vec::new();
    for i in 0..LABELS {
        let tracking = format!("RESTART{i:02}");
        let data = pdf_bytes(5_000 + i * 997, i as u8);
        s3.put_label(&tracking, &data).await;
        labels.push((tracking, data));
    }
    let labels = Arc::new(labels);
    let check = Responder::allow_all().await;
    let toml = s3_toml(
        &s3,
        &check.url(),
        "",
        "[regenerate]\nurl = \"\"\n[log]\naccess_log = false\n",
    );
    // The sockets systemd would hold (the config's own addresses are never bound).
    let public = TcpListener::bind("127.0.0.1:0").expect("bind");
    let internal = TcpListener::bind("127.0.0.1:0").expect("bind");
    let sockets = [(&public, "public"), (&internal, "internal")];
    let mut old = GatewayProcess::start_activated(&toml, &S3_ENV, &sockets);
    let addr = public.local_addr().expect("addr");
    assert_eq!(old.addr, addr, "serves on the passed public socket");
    assert_eq!(old.internal, internal.local_addr().expect("addr"));

    let ok_total = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|k| {
            let (labels, ok_total, stop) = (labels.clone(), ok_total.clone(), stop.clone());
            std::thread::spawn(move || client(addr, labels, k >= 4, k * 3, ok_total, stop))
        })
        .collect();
    until(&ok_total, 300, "before the restart").await;

    old.signal(libc::SIGTERM);
    let new = GatewayProcess::start_activated(&toml, &S3_ENV, &sockets);
    let status = old.wait(Duration::from_secs(20));
    assert!(status.success(), "the old process: {status}");
    // Everything from here on is the new process's work.
    let at_exit = ok_total.load(Ordering::SeqCst);
    until(&ok_total, at_exit + 300, "after the old process exited").await;
    stop.store(true, Ordering::SeqCst);
    let tallies: Vec<Tally> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();

    let failed: Vec<&String> = tallies.iter().flat_map(|t| &t.failed).collect();
    let ok: usize = tallies.iter().map(|t| t.ok).sum();
    let retried: usize = tallies.iter().map(|t| t.retried).sum();
    eprintln!("{ok} labels printed across the restart, {retried} resent after a keep-alive close");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}\nold process:\n{}\nnew process:\n{}",
        failed.len(),
        ok + failed.len(),
        old.logs(),
        new.logs()
    );
    assert!(
        tallies.iter().all(|t| t.ok > 0),
        "every client printed labels"
    );
    assert!(old.logs().contains("drained, exiting"), "{}", old.logs());
    assert!(
        new.logs().contains("serving on the socket systemd passed"),
        "{}",
        new.logs()
    );
}

/// A passed fd that is not a listening TCP socket stops the start, naming the fd; sockets
/// passed to another process (an inherited LISTEN_PID) are ignored and the config's
/// addresses bound instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_passed_fd_that_is_not_a_listening_socket_is_a_clear_start_up_error() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let toml = s3_toml(&s3, &check.url(), "", "");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &toml).expect("write config");
    let bin = env!("CARGO_BIN_EXE_label-gateway");
    // fd 3 is /dev/null, as a unit with a broken socket could pass.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"exec 3</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --config "$1" serve"#)
            .arg(bin)
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(S3_ENV)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run label-gateway")
    })
    .await
    .expect("thread");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway:\n{stderr}");
    assert!(
        stderr.contains("socket activation: passed fd 3 (public) is not a socket"),
        "{stderr}"
    );

    let malformed = run(
        &toml,
        &["serve"],
        &[
            S3_ENV[0],
            S3_ENV[1],
            ("LISTEN_PID", "abc"),
            ("LISTEN_FDS", "2"),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert!(!malformed.status.success(), "started anyway:\n{stderr}");
    assert!(
        stderr.contains(r#"LISTEN_PID="abc" is not a process id"#),
        "{stderr}"
    );

    // Meant for another process (pid 1): ignored, and the config's addresses are bound.
    let env = [
        S3_ENV[0],
        S3_ENV[1],
        ("LISTEN_PID", "1"),
        ("LISTEN_FDS", "2"),
    ];
    let gw = GatewayProcess::start(&toml, &env);
    let (status, _) = crate::support::raw_get(gw.addr, "/healthz").await;
    assert_eq!(status, 200, "{}", gw.logs());
    assert!(
        !gw.logs().contains("systemd passed"),
        "took sockets passed to another process:\n{}",
        gw.logs()
    );
}

/// The shipped systemd units and compose file fit the shipped config: the sockets are the
/// config's two addresses, named as the gateway reads them; every secret comes as a
/// credential through its `_FILE` variable; and both systemd and compose wait longer than
/// `shutdown_grace` before killing a drain.
#[test]
fn the_shipped_units_and_compose_fit_the_config_and_give_the_drain_its_time() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(repo.join(p)).expect(p);
    let shipped = label_gateway::config::Config::from_toml_str(
        &read("config.toml"),
        &std::collections::BTreeMap::new(),
    )
    .expect("shipped config");
    let grace = shipped.server.shutdown_grace;
    let values = |text: &str, key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().to_string())
            .collect()
    };

    let socket = read("deploy/systemd/label-gateway.socket");
    assert_eq!(
        values(&socket, "ListenStream"),
        [
            shipped.server.listen.to_string(),
            shipped.server.internal_listen.to_string()
        ]
    );
    assert_eq!(
        values(&socket, "FileDescriptorName"),
        ["public", "internal"]
    );

    let service = read("deploy/systemd/label-gateway.service");
    let stop = values(&service, "TimeoutStopSec");
    let stop = humantime::parse_duration(&stop[0]).expect("TimeoutStopSec");
    assert!(
        stop > grace,
        "TimeoutStopSec {stop:?} <= shutdown_grace {grace:?}"
    );
    for key in ["DynamicUser", "NoNewPrivileges"] {
        assert_eq!(values(&service, key), ["yes"], "{key}");
    }
    assert_eq!(values(&service, "ProtectSystem"), ["strict"]);
    // The fallback bucket's keys are there to uncomment: a credential whose file is
    // missing stops the start, and most deployments have no fallback.
    let optional: String = service
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for (var, _) in label_gateway::config::SECRET_VARS {
        let text = if var.contains("FALLBACK") {
            &optional
        } else {
            &service
        };
        let credentials: Vec<String> = values(text, "LoadCredential")
            .iter()
            .map(|c| c.split(':').next().unwrap_or_default().to_string())
            .collect();
        let set = values(text, "Environment")
            .iter()
            .find_map(|e| Some(e.strip_prefix(&format!("{var}_FILE=%d/"))?.to_string()))
            .unwrap_or_else(|| panic!("{var}_FILE is not a credential"));
        assert!(
            credentials.contains(&set),
            "{var}_FILE names credential {set}, which is not loaded"
        );
    }

    let compose = read("deploy/docker-compose.yml");
    let period = compose
        .lines()
        .find_map(|l| l.trim().strip_prefix("stop_grace_period:"))
        .expect("stop_grace_period");
    let period = humantime::parse_duration(period.trim()).expect("stop_grace_period");
    assert!(
        period > grace,
        "stop_grace_period {period:?} <= shutdown_grace {grace:?}"
    );
}

/// A connection the gateway accepted just before a drain, whose request had not arrived
/// yet, gets that request answered: its client wrote it right after connecting, and a
/// client does not send a request again on a new connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_accepted_before_the_drain_gets_its_first_request_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s3 = S3Server::start().await;
    let data = pdf_bytes(4_000, 7);
    s3.put_label("DRAINFIRST1", &data).await;
    let check = Responder::allow_all().await;
    let gw = crate::support::start_gateway(crate::support::s3_config(&s3, &check.url(), &[])).await;
    let mut conn = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    // Accepted: the gateway counts it open.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.gateway.metrics.connections_open.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the connection was not accepted");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut drain = Box::pin(gw.shutdown());
    // Its first poll starts the drain (the rest is waiting for the connections to end).
    tokio::select! {
        biased;
        _ = &mut drain => panic!("drained with a connection open"),
        _ = std::future::ready(()) => {}
    }
    // Time for the connection's task to see the drain before the request arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let request = format!(
        "GET /shipping-label/DRAINFIRST1/ HTTP/1.1\r\nHost: labels\r\nCookie: {ANY_SESSION}\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(crate::support::HANG, conn.read_to_end(&mut answer))
        .await
        .expect("the gateway closes after answering")
        .expect("read");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..answer.len().min(200)])
    );
    assert!(answer.ends_with(&data), "the label's bytes");
    assert!(drain.await, "drained within the grace period");
}
