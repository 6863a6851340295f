//! The real `label-gateway` binary as a child process, configured through a file and the
//! environment against the in-process S3 server: graceful drain on SIGTERM, a start-up
//! that cannot bind, and what it writes to its logs (never a cookie, a signature, a secret
//! or a token).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::process::{s3_toml, GatewayProcess};
use crate::support::{self, pdf_bytes, s3, Django, Responder, S3Server, ANY_SESSION};

/// One download over a raw socket with a small receive buffer, so the client controls
/// how fast the gateway can send: reads `hold_at` bytes of body, reports, waits for `go`,
/// then reads the rest. Returns whether the whole body arrived and matched.
async fn held_download(
    addr: SocketAddr,
    path: String,
    expected: Arc<Vec<u8>>,
    hold_at: usize,
    holding: tokio::sync::mpsc::Sender<()>,
    mut go: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    let _ = socket.set_recv_buffer_size(16 * 1024);
    let mut s = socket.connect(addr).await.map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {ANY_SESSION}\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut head = Vec::new();
    let body_start = loop {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the head".into());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..body_start]).to_string();
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("head: {text}"));
    }
    let mut body = head.split_off(body_start);
    let mut reported = false;
    while body.len() < expected.len() {
        if !reported && body.len() >= hold_at {
            reported = true;
            let _ = holding.send(()).await;
            let _ = go.wait_for(|g| *g).await;
        }
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "cut after {} of {} bytes",
                body.len(),
                expected.len()
            ));
        }
        body.extend_from_slice(&buf[..n]);
    }
    if body[..] != expected[..] {
        return Err("body differs".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_twenty_in_flight_downloads_finish_refuses_new_connections_and_exits_0() {
    let s3 = S3Server::start().await;
    let data = Arc::new(pdf_bytes(5 * 1024 * 1024, 71));
    s3.put_label("DRAIN5MB", &data).await;
    let check = Responder::allow_all().await;
    let toml = s3_toml(
        &s3,
        &check.url(),
        "shutdown_grace = \"60s\"\n",
        "[cache]\nenabled = false\n",
    );
    let mut gw = GatewayProcess::start(
        &toml,
        &[
            ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
            ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
        ],
    );
    let addr = gw.addr;

    let (holding_tx, mut holding_rx) = tokio::sync::mpsc::channel(20);
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let downloads: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(held_download(
                addr,
                "/shipping-label/DRAIN5MB/".into(),
                data.clone(),
                256 * 1024,
                holding_tx.clone(),
                go_rx.clone(),
            ))
        })
        .collect();
    for n in 0..20 {
        tokio::time::timeout(Duration::from_secs(30), holding_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {n} of 20 downloads started"));
    }

    // Every download is mid-body, held by its client: now the signal.
    gw.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => {
                drop(other);
                assert!(
                    Instant::now() < deadline,
                    "new connections still accepted after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(
        gw.running(),
        "exited with 20 downloads still held mid-body:\n{}",
        gw.logs()
    );

    go_tx.send(true).unwrap();
    for (i, d) in downloads.into_iter().enumerate() {
        let outcome = tokio::time::timeout(Duration::from_secs(60), d)
            .await
            .expect("download finishes")
            .expect("download task");
        assert_eq!(outcome, Ok(()), "download {i}");
    }
    let status = gw.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", gw.logs());
    let logs = gw.logs();
    assert!(logs.contains("drained, exiting"), "{logs}");
}

/// Readiness turns 503 the moment draining starts (in-process: after SIGTERM the
/// listener is closed, so no new connection could ask).
#[tokio::test(flavor = "multi_thread")]
async fn a_listen_address_in_use_stops_start_up_with_its_reason() {
    // The log writer thread and the start-up error share stderr: the error must get out
    // and the process must end, not wait on the writer.
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let toml = s3_toml(&s3, &check.url(), "", "").replace(
        "listen = \"127.0.0.1:0\"\ninternal",
        &format!("listen = \"{addr}\"\ninternal"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).expect("write config");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_label-gateway"));
    cmd.arg("--config")
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(support::process::S3_ENV)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    support::process::kill_with_parent(&mut cmd);
    let mut child = cmd.spawn().expect("start label-gateway");
    // Waited for here, and killed on the deadline: a hang must fail the test, not hold it.
    let deadline = Instant::now() + support::HANG;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("label-gateway did not exit after failing to bind {addr}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success(), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    drop(taken);
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_once_draining_starts() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), &[])).await;
    let readyz = format!("http://{}/readyz", gw.addr());
    let c = support::client();
    assert_eq!(c.get(&readyz).send().await.unwrap().status(), 200);
    gw.gateway.start_draining();
    let r = c.get(&readyz).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(gw.shutdown().await, "nothing in flight: drains at once");
}

/// Runs of at least 64 hex digits: what a SigV4 signature or a SHA-256 looks like.
fn long_hex_runs(text: &str) -> Vec<&str> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (c.is_ascii_hexdigit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s >= 64 {
                    runs.push(&text[s..i]);
                }
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// The binary logs at trace level through a normal download, a denied session, a forged
/// one, internal calls with a right and a wrong bearer token, and a storage 403 (wrong
/// secret): none of the secrets it handled appears in its output.
#[tokio::test(flavor = "multi_thread")]
async fn logs_never_contain_cookies_signatures_secrets_or_tokens() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let data = pdf_bytes(20_000, 72);
    s3.put_label("LOGS1", &data).await;
    let session = django.session("alice");
    let forged = "forgedsessionvalue0123456789abcdef";
    let token = "internal-token-never-logged-5f1c";
    let wrong_token = "wrong-token-never-logged-9d2e";
    let regen_token = "regenerate-token-never-logged-7a3b";
    let wrong_secret = "wrong-secret-never-logged-44e1";
    let toml = s3_toml(&s3, &django.check_url(), "", "");
    let env = |secret: &'static str| {
        vec![
            ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
            ("SPACES_SECRET_ACCESS_KEY", secret),
            ("LABEL_GATEWAY_INTERNAL__TOKEN", token),
            ("LABEL_GATEWAY_REGENERATE__TOKEN", regen_token),
            ("RUST_LOG", "trace"),
        ]
    };
    let c = support::client();

    let good = GatewayProcess::start(&toml, &env(s3::SECRET_KEY));
    let url = format!("http://{}/shipping-label/LOGS1/", good.addr);
    let r = c
        .get(&url)
        .header("cookie", format!("csrftoken=abc; sessionid={session}"))
        .header("authorization", format!("Bearer {wrong_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), data);
    let r = c
        .get(&url)
        .header("cookie", format!("sessionid={forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "denied");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 404, "no cookie");
    let purge = format!("http://{}/internal/cache/LOGS1", good.internal);
    let r = c
        .delete(&purge)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = c
        .delete(&purge)
        .header("authorization", format!("Bearer {wrong_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let bad = GatewayProcess::start(&toml, &env(wrong_secret));
    let r = c
        .get(format!("http://{}/shipping-label/LOGS1/", bad.addr))
        .header("cookie", format!("sessionid={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502, "a storage 403 is a bad gateway");

    // Let the non-blocking log writers flush, then stop both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for gw in [&good, &bad] {
        gw.signal(libc::SIGTERM);
    }
    let (mut good, mut bad) = (good, bad);
    good.wait(Duration::from_secs(20));
    bad.wait(Duration::from_secs(20));
    let logs = format!("{}\n{}", good.logs(), bad.logs());
    assert!(
        logs.contains("SignatureDoesNotMatch"),
        "the storage 403 is logged with its S3 code:\n{logs}"
    );
    for secret in [
        session.as_str(),
        forged,
        token,
        wrong_token,
        regen_token,
        s3::SECRET_KEY,
        wrong_secret,
        s3::ACCESS_KEY,
    ] {
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            panic!("{secret} leaked into the logs: {line}");
        }
    }
    let lower = logs.to_ascii_lowercase();
    for marker in ["signature=", "authorization:", "cookie:", "bearer "] {
        assert!(!lower.contains(marker), "{marker} appears in the logs");
    }
    let hex = long_hex_runs(&logs);
    assert!(hex.is_empty(), "signature-like hex in the logs: {hex:?}");
}

#[test]
fn hex_runs_are_found() {
    let sig = "a".repeat(64);
    assert_eq!(
        long_hex_runs(&format!("x Signature={sig}, y")),
        vec![sig.as_str()]
    );
    assert!(long_hex_runs(&"f".repeat(63)).is_empty());
}
