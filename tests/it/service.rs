//! What an operator expects of the packaged service: the configuration file named by
//! `LABEL_GATEWAY_CONFIG` or absent altogether (the environment alone configures it), a
//! named file that is missing stops it with the path, the `health` command a container's
//! HEALTHCHECK runs, and the build's version on `/metrics`.

use std::collections::BTreeMap;

use label_gateway::config::Config;

use crate::support::{self, pdf_bytes, process, s3, Responder, S3Server};

/// The environment that configures a gateway on the S3 server at `endpoint` with no file.
fn env_only<'a>(endpoint: &'a str, check_url: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("LABEL_GATEWAY_SERVER__LISTEN", "127.0.0.1:0"),
        ("LABEL_GATEWAY_SERVER__INTERNAL_LISTEN", "127.0.0.1:0"),
        ("LABEL_GATEWAY_STORAGE__BACKEND", "s3"),
        ("LABEL_GATEWAY_STORAGE__LOCATION", "labels"),
        ("LABEL_GATEWAY_AUTH__CHECK_URL", check_url),
        ("SPACES_ENDPOINT_URL", endpoint),
        ("SPACES_REGION", s3::REGION),
        ("SPACES_BUCKET_NAME", s3::BUCKET),
        ("SPACES_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("SPACES_SECRET_ACCESS_KEY", s3::SECRET_KEY),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn without_any_config_file_the_environment_alone_configures_the_gateway() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let data = pdf_bytes(4000, 71);
    s3.put_label("ENV1", &data).await;
    let endpoint = s3.endpoint();
    let check_url = check.url();
    let gw = process::GatewayProcess::start_without_config(&env_only(&endpoint, &check_url));
    let r = support::client()
        .get(format!("http://{}/shipping-label/ENV1/", gw.addr))
        .header("cookie", support::ANY_SESSION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), data);

    // An empty LABEL_GATEWAY_CONFIG counts as unset, as every empty variable does.
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_only(&endpoint, &check_url);
    env.push(("LABEL_GATEWAY_CONFIG", ""));
    let out = process::run_in(dir.path(), &["check-config"], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("configuration OK: the defaults and the environment (no config.toml)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn label_gateway_config_names_the_file_and_a_named_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:4567\"\n").unwrap();
    let file = file.display().to_string();
    let out = process::run_in(
        dir.path(),
        &["check-config"],
        &[("LABEL_GATEWAY_CONFIG", &file)],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("configuration OK: {file}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("127.0.0.1:4567"),
        "the named file was read:\n{stdout}"
    );

    // A file named by the variable or by --config must exist: only the default may be absent.
    let missing = dir.path().join("nowhere.toml").display().to_string();
    for (args, env) in [
        (
            vec!["check-config"],
            vec![("LABEL_GATEWAY_CONFIG", missing.as_str())],
        ),
        (vec!["--config", missing.as_str(), "check-config"], vec![]),
    ] {
        let out = process::run_in(dir.path(), &args, &env).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot read config file {missing}")),
            "{stderr}"
        );
    }
    // --config wins over the variable.
    let out = process::run_in(
        dir.path(),
        &["--config", &file, "check-config"],
        &[("LABEL_GATEWAY_CONFIG", &missing)],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_exits_0_against_a_running_gateway_and_1_against_nothing_listening() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let toml = process::s3_toml(&s3, &check.url(), "", "");
    let gw = process::GatewayProcess::start(&toml, &process::S3_ENV);
    let listen = gw.addr.to_string();
    let mut env = process::S3_ENV.to_vec();
    env.push(("LABEL_GATEWAY_SERVER__LISTEN", &listen));
    let out = process::run(&toml, &["health"], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("http://{listen}/healthz: 200")),
        "{stdout}"
    );

    drop(gw);
    let started = std::time::Instant::now();
    let out = process::run(&toml, &["health", "--timeout", "1s"], &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unhealthy"), "{stderr}");
    assert!(started.elapsed() < support::HANG, "health waited too long");

    // An invalid configuration is unhealthy too (1, not the usage error's 2, which a
    // container's health check reserves).
    let out = process::run(&toml, &["health"], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_name_the_running_build() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), &[])).await;
    let text = support::metrics(gw.internal_addr()).await;
    let line = format!(
        "label_gateway_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        text.lines().any(|l| l == line),
        "missing {line:?} in:\n{text}"
    );
}

#[test]
fn the_config_variable_is_not_read_as_a_config_key() {
    // LABEL_GATEWAY_CONFIG shares the prefix of the key overrides but has no `__`: the
    // overrides' scan leaves it alone, as it leaves every such variable.
    let env: BTreeMap<String, String> = [
        ("LABEL_GATEWAY_CONFIG", "/etc/label-gateway/config.toml"),
        ("LABEL_GATEWAY_AUTH__COOKIE_NAME", "fromenv"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let c = Config::from_toml_str("", &env).expect("loads");
    assert_eq!(c.auth.cookie_name, "fromenv");
}
