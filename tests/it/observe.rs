//! What operators watch: the audit trail (`user=` in the access log, from the app's
//! `X-Label-User`, with the real binary and the real Django app), JSON log lines, the
//! latency histograms at `/metrics`, and the shipped Grafana dashboard's queries checked
//! against a real `/metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::process::GatewayProcess;
use crate::support::{self, get_label, pdf_bytes, Django, Responder, S3Server};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A config file for the binary: the local store at `root`, the session check at
/// `check_url`, and `log` as the `[log]` section's keys.
fn local_toml(root: &Path, check_url: &str, log: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n\
         worker_threads = 2\n[storage]\nbackend = \"local\"\nlocal_root = \"{}\"\n\
         [auth]\ncheck_url = \"{check_url}\"\ntimeout = \"10s\"\n[regenerate]\nurl = \"\"\n\
         [log]\n{log}\n",
        root.display()
    )
}

/// `GET /shipping-label/{tracking}/` on the binary with request id `id` and, if given, the
/// whole `Cookie` header; the status.
async fn get(gw: &GatewayProcess, tracking: &str, id: &str, cookie: Option<&str>) -> u16 {
    let mut req = support::client()
        .get(format!("http://{}/shipping-label/{tracking}/", gw.addr))
        .header("x-request-id", id);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.expect("response");
    let status = resp.status().as_u16();
    // The whole body: a label is cached only once its last byte has passed.
    resp.bytes().await.expect("body");
    status
}

/// Waits until the copy's cache holds `n` labels (a fill lands just after its response).
async fn cached(gw: &GatewayProcess, n: u64) {
    let want = format!("label_gateway_cache_entries {n}\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = support::metrics(gw.internal).await;
        if text.contains(&want) {
            return;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The access-log line of the request with id `id` (the log reader may lag a moment).
async fn access_line(gw: &GatewayProcess, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = gw.logs();
        if let Some(line) = logs
            .lines()
            .find(|l| l.contains("access") && l.contains(&format!("\"{id}\"")))
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no access line for {id}:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `key=value` fields of a text log line, values as written (strings quoted).
fn text_fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn access_log_names_the_apps_user_on_every_label_request_never_the_cookie() {
    let django = Django::start();
    let store = tempfile::tempdir().expect("tempdir");
    std::fs::write(store.path().join("AUDIT1.pdf"), pdf_bytes(4096, 1)).expect("label");
    let alice = format!("sessionid={}", django.session("alice"));
    // A name that is not ASCII: the Django view percent-encodes it.
    let jorg = format!("sessionid={}", django.session("jörg"));
    let gw = GatewayProcess::start(&local_toml(store.path(), &django.check_url(), ""), &[]);

    assert_eq!(get(&gw, "AUDIT1", "alice-miss", Some(&alice)).await, 200);
    cached(&gw, 1).await;
    assert_eq!(get(&gw, "AUDIT1", "alice-hit", Some(&alice)).await, 200);
    assert_eq!(get(&gw, "AUDIT1", "jorg", Some(&jorg)).await, 200);
    assert_eq!(get(&gw, "AUDIT1", "anonymous", None).await, 404);
    let bogus = "sessionid=not-a-session-the-app-knows";
    assert_eq!(get(&gw, "AUDIT1", "bogus", Some(bogus)).await, 404);

    let line = text_fields(&access_line(&gw, "alice-miss").await);
    assert_eq!(line["user"], "\"alice\"", "{line:?}");
    assert_eq!(line["auth"], "\"app\"");
    assert_eq!(line["cache"], "\"miss\"");
    // The second request asked neither the app nor storage, and still names the user.
    let line = text_fields(&access_line(&gw, "alice-hit").await);
    assert_eq!(line["user"], "\"alice\"", "{line:?}");
    assert_eq!(line["auth"], "\"cache\"");
    assert_eq!(line["cache"], "\"hit\"");
    let line = text_fields(&access_line(&gw, "jorg").await);
    assert_eq!(line["user"], "\"j%C3%B6rg\"", "{line:?}");
    let line = text_fields(&access_line(&gw, "anonymous").await);
    assert_eq!(line["user"], "\"-\"", "{line:?}");
    assert_eq!(line["auth"], "\"no-cookie\"");
    let line = text_fields(&access_line(&gw, "bogus").await);
    assert_eq!(
        line["user"], "\"-\"",
        "a denied session names no one: {line:?}"
    );
    assert_eq!(line["status"], "404");

    let logs = gw.logs();
    for cookie in [&alice, &jorg, &bogus.to_string()] {
        let value = cookie.trim_start_matches("sessionid=");
        assert!(
            !logs.contains(value),
            "a session cookie was logged:\n{logs}"
        );
    }
}

#[tokio::test]
async fn json_log_lines_parse_and_carry_the_text_lines_fields() {
    let django = Django::start();
    let store = tempfile::tempdir().expect("tempdir");
    std::fs::write(store.path().join("JSON1.pdf"), pdf_bytes(4096, 2)).expect("label");
    let alice = format!("sessionid={}", django.session("alice"));
    let text = GatewayProcess::start(&local_toml(store.path(), &django.check_url(), ""), &[]);
    // Through the environment override, as a container would set it; the start-up line
    // is JSON too (GatewayProcess reads the addresses from it).
    let json = GatewayProcess::start(
        &local_toml(store.path(), &django.check_url(), ""),
        &[("LABEL_GATEWAY_LOG__FORMAT", "json")],
    );
    assert_eq!(get(&text, "JSON1", "text-1", Some(&alice)).await, 200);
    assert_eq!(get(&json, "JSON1", "json-1", Some(&alice)).await, 200);

    let text_line = access_line(&text, "text-1").await;
    let json_line = access_line(&json, "json-1").await;
    let v: serde_json::Value = serde_json::from_str(&json_line)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {json_line}"));
    assert_eq!(v["target"], "access");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/shipping-label/JSON1/");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], 4096);
    assert_eq!(v["user"], "alice");
    assert_eq!(v["auth"], "app");
    assert_eq!(v["request_id"], "json-1");
    assert!(v["duration_us"].is_u64(), "{json_line}");
    let json_keys: BTreeSet<String> = v
        .as_object()
        .expect("object")
        .keys()
        .filter(|k| !["timestamp", "level", "target"].contains(&k.as_str()))
        .cloned()
        .collect();
    let text_keys: BTreeSet<String> = text_fields(&text_line).into_keys().collect();
    assert_eq!(json_keys, text_keys, "{json_line}\n{text_line}");
    for line in json.logs().lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "every line is JSON: {line}"
        );
    }
}

/// The value of the sample `series` (name and labels exactly as exported).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

async fn metrics_text(internal: std::net::SocketAddr) -> (String, String) {
    let resp = support::client()
        .get(format!("http://{internal}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    (content_type, resp.text().await.expect("text"))
}

#[tokio::test]
async fn metrics_histograms_count_each_outcome_and_keep_the_counters() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    s3.put_label("METRIC1", &pdf_bytes(8192, 3)).await;
    let alice = format!("sessionid={}", django.session("alice"));
    let gw = support::start_gateway(support::s3_config(&s3, &django.check_url(), &[])).await;

    let miss = get_label(&gw, "METRIC1").cookie(&alice).send().await;
    assert_eq!(miss.headers()["x-cache"], "MISS");
    let hit = get_label(&gw, "METRIC1").cookie(&alice).send().await;
    assert_eq!(hit.headers()["x-cache"], "HIT");
    assert_eq!(get_label(&gw, "METRIC1").send().await.status(), 404);
    let missing = get_label(&gw, "NOSUCH1").cookie(&alice).send().await;
    assert_eq!(missing.status(), 404);
    assert_eq!(get_label(&gw, "bad.tracking").send().await.status(), 400);
    let health = support::client()
        .get(format!("http://{}/healthz", gw.addr()))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);

    let (content_type, text) = metrics_text(gw.internal_addr()).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"));
    let count = |route: &str, outcome: &str| {
        sample(
            &text,
            &format!(
                "label_gateway_request_duration_seconds_count{{route=\"{route}\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    for outcome in ["hit", "miss", "denied", "missing", "error"] {
        assert_eq!(count("label", outcome), 1.0, "{outcome}:\n{text}");
    }
    assert_eq!(count("health", "ok"), 1.0);
    assert_eq!(count("internal", "ok"), 0.0);
    // Buckets are cumulative and end at the count.
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.starts_with("label_gateway_request_duration_seconds_bucket{")
                && l.contains("route=\"label\",outcome=\"hit\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 19);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&1.0));
    // The app was asked about METRIC1 and NOSUCH1 (verdicts are per label); storage for
    // the miss and the missing label, never for the hit.
    assert_eq!(
        sample(&text, "label_gateway_auth_check_duration_seconds_count"),
        2.0
    );
    assert_eq!(
        sample(&text, "label_gateway_storage_first_byte_seconds_count"),
        2.0
    );
    assert!(sample(&text, "label_gateway_storage_first_byte_seconds_sum") > 0.0);
    // Today's counters, same names and values.
    assert_eq!(
        sample(&text, "label_gateway_requests_total"),
        7.0,
        "the scrape counts itself"
    );
    assert_eq!(
        sample(&text, "label_gateway_responses_total{class=\"2xx\"}"),
        3.0
    );
    assert_eq!(
        sample(&text, "label_gateway_responses_total{class=\"4xx\"}"),
        3.0
    );
    assert_eq!(sample(&text, "label_gateway_denied_total"), 1.0);
    assert_eq!(sample(&text, "label_gateway_storage_fetches_total"), 2.0);
    assert_eq!(sample(&text, "label_gateway_auth_app_calls_total"), 2.0);
    assert_eq!(sample(&text, "label_gateway_cache_hits_total"), 1.0);
    assert_eq!(sample(&text, "label_gateway_cache_entries"), 1.0);
}

/// Every metric name a string mentions (`label_gateway_...`).
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(at) = rest.find("label_gateway_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.insert(name);
    }
}

/// Walks the dashboard, collecting every query and every datasource reference.
fn walk(v: &serde_json::Value, queries: &mut Vec<String>, datasources: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => {
                        queries.push(s.clone())
                    }
                    ("datasource", serde_json::Value::Object(d)) => {
                        datasources.push(d["uid"].as_str().unwrap_or("").to_string())
                    }
                    _ => walk(v, queries, datasources),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, queries, datasources)),
        _ => {}
    }
}

#[tokio::test]
async fn grafana_dashboard_queries_only_metrics_the_gateway_exports() {
    let path = Path::new(REPO).join("deploy/grafana/label-gateway.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard file"))
            .expect("the dashboard is valid JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["query"] == "prometheus"
            && v["name"] == "datasource"),
        "a Prometheus datasource variable, so the import asks which one"
    );
    let (mut queries, mut datasources) = (Vec::new(), Vec::new());
    walk(&dashboard, &mut queries, &mut datasources);
    assert!(queries.len() >= 10, "{queries:?}");
    assert!(
        datasources.iter().all(|uid| uid == "${datasource}"),
        "every panel uses the variable: {datasources:?}"
    );
    let mut wanted = BTreeSet::new();
    for q in &queries {
        metric_names(q, &mut wanted);
    }

    let store = tempfile::tempdir().expect("tempdir");
    let check = Responder::allow_all().await;
    let mut config = support::config(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n\
             [storage]\nlocal_root = \"{}\"\n[auth]\ncheck_url = \"{}\"\n[regenerate]\nurl = \"\"\n",
            store.path().display(),
            check.url()
        ),
        &[],
    );
    config.log.access_log = false;
    let gw = support::start_gateway(config).await;
    let (_, text) = metrics_text(gw.internal_addr()).await;
    let exported: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let unknown: Vec<&String> = wanted.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries {unknown:?}, which /metrics does not export:\n{text}"
    );
    for name in [
        "label_gateway_request_duration_seconds_bucket",
        "label_gateway_storage_first_byte_seconds_bucket",
        "label_gateway_auth_check_duration_seconds_bucket",
        "label_gateway_cache_bytes",
        "label_gateway_storage_errors_total",
    ] {
        assert!(wanted.contains(name), "the dashboard shows {name}");
    }
}
