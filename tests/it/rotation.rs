//! Key rotation without a restart: secrets read from `_FILE` twins, re-read on `SIGHUP`.
//! The S3 server is rotated the way an operator rotates a Spaces key: it accepts the new
//! key alongside the old, the gateway's files are rewritten and it is told to reload,
//! then the old key is revoked. Downloads run all the while (cache off, so each one is a
//! signed storage request) and never see a 5xx; one held mid-body across the rotation
//! finishes. In-process through `Gateway::reload_secrets`, then the real binary with a
//! real `SIGHUP`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::support::process::{s3_toml, GatewayProcess};
use crate::support::{self, pdf_bytes, s3, Django, Responder, S3Server, ANY_SESSION};

const NEW_ACCESS_KEY: &str = "AKIDROTATEDKEY0000002";
const NEW_SECRET_KEY: &str = "rotated-secret-key-never-logged-8c1d";

/// Writes `value` to `path` the way secret mounts change: a new file renamed over the old.
fn write_secret(path: &Path, value: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{value}\n")).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A folder with the access key id and secret files, holding the test key.
struct KeyFiles {
    _dir: tempfile::TempDir,
    id: PathBuf,
    secret: PathBuf,
}

impl KeyFiles {
    fn new() -> KeyFiles {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("spaces-key-id");
        let secret = dir.path().join("spaces-secret");
        write_secret(&id, s3::ACCESS_KEY);
        write_secret(&secret, s3::SECRET_KEY);
        KeyFiles {
            _dir: dir,
            id,
            secret,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SPACES_ACCESS_KEY_ID_FILE", self.id.display().to_string()),
            (
                "SPACES_SECRET_ACCESS_KEY_FILE",
                self.secret.display().to_string(),
            ),
        ]
    }

    fn rotate(&self) {
        write_secret(&self.id, NEW_ACCESS_KEY);
        write_secret(&self.secret, NEW_SECRET_KEY);
    }
}

/// Downloads `url` over and over until told to stop; returns every status that was not a
/// 200 with the whole label, and how many downloads ran.
fn keep_downloading(
    url: String,
    expected: Arc<Vec<u8>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<(Vec<String>, usize)> {
    tokio::spawn(async move {
        let client = support::client();
        let mut bad = Vec::new();
        let mut runs = 0;
        while !*stop.borrow() {
            runs += 1;
            match client.get(&url).header("cookie", ANY_SESSION).send().await {
                Ok(r) => {
                    let status = r.status();
                    match r.bytes().await {
                        Ok(b) if status == 200 && b[..] == expected[..] => {}
                        Ok(_) => bad.push(format!("status {status}")),
                        Err(e) => bad.push(format!("body cut: {e}")),
                    }
                }
                Err(e) => bad.push(format!("no answer: {e}")),
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
        (bad, runs)
    })
}

/// A download read to `hold_at` bytes, then held until `go`: a download in flight across
/// the rotation. Returns the whole body.
async fn held_download(
    url: String,
    hold_at: usize,
    holding: tokio::sync::oneshot::Sender<()>,
    go: watch::Receiver<bool>,
) -> Result<Vec<u8>, String> {
    let mut go = go;
    let mut r = support::client()
        .get(&url)
        .header("cookie", ANY_SESSION)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("status {}", r.status()));
    }
    let mut body = Vec::new();
    let mut holding = Some(holding);
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() >= hold_at {
            if let Some(h) = holding.take() {
                let _ = h.send(());
                let _ = go.wait_for(|g| *g).await;
            }
        }
    }
    Ok(body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_signs_every_later_request_with_no_restart_and_no_5xx() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let small = Arc::new(pdf_bytes(20_000, 31));
    let big = pdf_bytes(4 * 1024 * 1024, 32);
    s3.put_label("ROT1", &small).await;
    s3.put_label("ROTBIG", &big).await;
    let keys = KeyFiles::new();
    let env = keys.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("LABEL_GATEWAY_CACHE__ENABLED", "false"));
    let gw = support::start_gateway(support::s3_config_with_env(&s3, &check.url(), &env)).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let downloads = keep_downloading(support::label_url(&gw, "ROT1"), small.clone(), stop_rx);
    let (holding_tx, holding_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = watch::channel(false);
    let in_flight = tokio::spawn(held_download(
        support::label_url(&gw, "ROTBIG"),
        256 * 1024,
        holding_tx,
        go_rx,
    ));
    tokio::time::timeout(Duration::from_secs(30), holding_rx)
        .await
        .expect("the big download starts")
        .expect("held");

    // The operator's rotation: new key accepted, files rewritten, reload, old key revoked.
    s3.accept_key(NEW_ACCESS_KEY, NEW_SECRET_KEY);
    keys.rotate();
    let changed = gw.gateway.reload_secrets().expect("reload");
    assert_eq!(
        changed,
        vec!["SPACES_ACCESS_KEY_ID", "SPACES_SECRET_ACCESS_KEY"]
    );
    s3.revoke_key(s3::ACCESS_KEY);

    // Only the new key can be behind these: the old one is refused now.
    for _ in 0..5 {
        let r = support::get_label(&gw, "ROT1")
            .cookie(ANY_SESSION)
            .send()
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap()[..], small[..]);
    }
    go_tx.send(true).unwrap();
    let body = in_flight
        .await
        .unwrap()
        .expect("the held download finishes");
    assert!(
        body == big,
        "the download in flight across the rotation is whole"
    );

    // A reload that cannot read a file keeps every secret in force and says why.
    std::fs::remove_file(&keys.secret).unwrap();
    let why = gw.gateway.reload_secrets().expect_err("a missing file");
    assert!(why.contains("SPACES_SECRET_ACCESS_KEY_FILE"), "{why}");
    write_secret(&keys.secret, "");
    let why = gw.gateway.reload_secrets().expect_err("an empty file");
    assert!(why.contains("is empty"), "{why}");
    let r = support::get_label(&gw, "ROT1")
        .cookie(ANY_SESSION)
        .send()
        .await;
    assert_eq!(r.status(), 200, "the rotated key is still in force");
    write_secret(&keys.secret, NEW_SECRET_KEY);
    assert_eq!(
        gw.gateway.reload_secrets(),
        Ok(vec![]),
        "the same key again changes nothing"
    );

    stop_tx.send(true).unwrap();
    let (bad, runs) = downloads.await.unwrap();
    assert!(
        bad.is_empty(),
        "{} of {runs} downloads failed: {bad:?}",
        bad.len()
    );
    assert!(runs > 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_internal_token_replaces_the_old_one_and_plain_variables_stay() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("internal-token");
    write_secret(&token_file, "internal-token-before");
    let path = token_file.display().to_string();
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[
            ("LABEL_GATEWAY_INTERNAL__TOKEN_FILE", &path),
            ("LABEL_GATEWAY_REGENERATE__TOKEN", "plain-regenerate-token"),
        ],
    ))
    .await;
    let purge = format!("http://{}/internal/cache/ROT2", gw.internal_addr());
    let c = support::client();
    let status = |token: &'static str| {
        let c = c.clone();
        let purge = purge.clone();
        async move {
            c.delete(&purge)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status("internal-token-before").await, 204);

    write_secret(&token_file, "internal-token-after");
    assert_eq!(
        gw.gateway.reload_secrets(),
        Ok(vec!["LABEL_GATEWAY_INTERNAL__TOKEN"]),
        "only the file-backed secret is re-read"
    );
    assert_eq!(status("internal-token-before").await, 401);
    assert_eq!(status("internal-token-after").await, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_regeneration_token_is_sent_to_the_app_from_then_on() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("regenerate-token");
    write_secret(&token_file, "a-token-the-app-no-longer-takes");
    let path = token_file.display().to_string();
    let url = django.url("/internal/label-regenerate/{tracking}/");
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &django.check_url(),
        &[
            ("LABEL_GATEWAY_REGENERATE__URL", &url),
            ("LABEL_GATEWAY_REGENERATE__TOKEN_FILE", &path),
        ],
    ))
    .await;
    let cookie = format!("sessionid={}", django.session("rita"));
    let r = support::get_label(&gw, "REGENROT1")
        .cookie(&cookie)
        .send()
        .await;
    assert!(
        r.status().is_server_error(),
        "the app refuses the stale token: {}",
        r.status()
    );

    // The app's token (the test app's default); a failure is not remembered.
    write_secret(&token_file, "test-regenerate-token");
    assert_eq!(
        gw.gateway.reload_secrets(),
        Ok(vec!["LABEL_GATEWAY_REGENERATE__TOKEN"])
    );
    let r = support::get_label(&gw, "REGENROT1")
        .cookie(&cookie)
        .send()
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().starts_with(b"%PDF-"));
}

/// Waits until the binary's logs contain `text`.
async fn wait_for_log(gw: &GatewayProcess, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gw.logs().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the logs:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rotates_the_binarys_key_and_a_failed_reload_keeps_the_old_one() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let small = Arc::new(pdf_bytes(30_000, 33));
    s3.put_label("HUP1", &small).await;
    let keys = KeyFiles::new();
    let toml = s3_toml(&s3, &check.url(), "", "[cache]\nenabled = false\n");
    let env = keys.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut gw = GatewayProcess::start(&toml, &env);
    let url = format!("http://{}/shipping-label/HUP1/", gw.addr);

    let (stop_tx, stop_rx) = watch::channel(false);
    let downloads = keep_downloading(url.clone(), small.clone(), stop_rx);

    s3.accept_key(NEW_ACCESS_KEY, NEW_SECRET_KEY);
    keys.rotate();
    gw.signal(libc::SIGHUP);
    wait_for_log(&gw, "secrets reloaded").await;
    s3.revoke_key(s3::ACCESS_KEY);
    let c = support::client();
    for _ in 0..5 {
        let r = c
            .get(&url)
            .header("cookie", ANY_SESSION)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "signed with the new key:\n{}", gw.logs());
    }

    std::fs::remove_file(&keys.id).unwrap();
    gw.signal(libc::SIGHUP);
    wait_for_log(&gw, "secrets not reloaded").await;
    let r = c
        .get(&url)
        .header("cookie", ANY_SESSION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the rotated key stays in force");
    assert!(gw.running(), "SIGHUP never ends the process");

    stop_tx.send(true).unwrap();
    let (bad, runs) = downloads.await.unwrap();
    assert!(
        bad.is_empty(),
        "{} of {runs} downloads failed: {bad:?}",
        bad.len()
    );

    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait(Duration::from_secs(20)).code(), Some(0));
    let logs = gw.logs();
    assert!(
        logs.contains("changed=SPACES_ACCESS_KEY_ID, SPACES_SECRET_ACCESS_KEY"),
        "the log names what changed:\n{logs}"
    );
    assert!(
        logs.contains("SPACES_ACCESS_KEY_ID_FILE: cannot read"),
        "the log says why a reload failed:\n{logs}"
    );
    for secret in [
        s3::SECRET_KEY,
        NEW_SECRET_KEY,
        s3::ACCESS_KEY,
        NEW_ACCESS_KEY,
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}

#[tokio::test]
async fn a_secret_and_its_file_twin_both_set_stop_the_binary_naming_both() {
    let s3 = S3Server::start().await;
    let keys = KeyFiles::new();
    let toml = s3_toml(&s3, "http://127.0.0.1:1/check/{tracking}/", "", "");
    let id = keys.id.display().to_string();
    let out = crate::support::process::run(
        &toml,
        &["serve"],
        &[
            ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
            ("SPACES_ACCESS_KEY_ID_FILE", &id),
            ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("both SPACES_ACCESS_KEY_ID and SPACES_ACCESS_KEY_ID_FILE are set"),
        "{stderr}"
    );
}
