//! Micro-benchmarks of the per-request work the gateway does itself, each named for what
//! it measures. Run with `cargo bench --bench micro`; `cargo test --all-targets` runs each
//! once as a smoke test.
//!
//! - `sign_get`: SigV4 header signing of one storage GET, as `storage::s3` builds it.
//! - `session_hash`: the key a session cookie is known by (`auth::session_hash`, keyed
//!   SipHash), next to `session_sha256`, ring's SHA-256 of the same value (what it was):
//!   on the real CPU, which may have SHA instructions that callgrind does not show.
//! - `auth_verdict_hit`: session-cookie parse and a verdict-cache hit through
//!   `Authenticator::check` (one warm-up call reaches a tiny local 204 responder first).
//! - `route_validate`: routing one label path, tracking-number validation included.
//! - `range_conditional_eval`: `Range` parsing and resolution, and evaluation of
//!   `If-None-Match`, `If-Modified-Since` and `If-Range` against an object's validators.
//! - `label_headers_build`: writing a label response's headers into a fresh `HeaderMap`.
//! - `latency_observe`: what every request adds for `/metrics`' latency histogram: a
//!   timestamp at arrival, the elapsed time at the response head, one lock-free
//!   observation (with the access log on, the timestamp was taken before anyway).
//! - `label_hit`: one whole cache hit through the real server over a keep-alive loopback
//!   connection (50 KiB label, verdict cached, access log off): request head to last body
//!   byte, the client's share included.
//! - `batch_merge_label`: one 50 KiB one-page label parsed and written into a merged PDF
//!   (`batch::pdf::Merger::add`), the per-label work of `batch.pdf`.
//! - `batch_zip_entry`: one 50 KiB label's ZIP entry (its CRC-32 and local header).
//!
//! The end-to-end load bench is `benches/load/` (`bash benches/load.sh`).

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{self, HeaderMap, HeaderValue};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use label_gateway::auth::{Authenticator, ClientInfo, Verdict};
use label_gateway::batch::pdf::Merger;
use label_gateway::batch::zip::ZipWriter;
use label_gateway::config::{AuthConfig, Secret};
use label_gateway::gateway::{route, Route};
use label_gateway::http::{cache_control, parse_range, Conditions, LabelHeaders, Validators};
use label_gateway::metrics::{Outcome, RequestDurations, RouteKind};
use label_gateway::storage::sigv4::{Payload, Signer};
use label_gateway::tracking::Tracking;

/// A tracking number of the usual carrier shape.
const TRACKING: &str = "1Z999AA10123456784";
const LABEL_BYTES: u64 = 50 * 1024;
const ETAG: &str = "\"5d41402abc4b2a76b9719d911017c592\"";
const LAST_MODIFIED: &str = "Tue, 14 May 2024 09:30:00 GMT";

fn sign_get(c: &mut Criterion) {
    let signer = Signer::new(
        &Secret::new("AKIDLABELGATEWAYBENCH"),
        &Secret::new("label-gateway-bench-secret-key-0123456789"),
        "lon1",
    );
    let url = format!(
        "https://lon1.digitaloceanspaces.com/sensational-shipping-labels/labels/{TRACKING}.pdf"
    );
    let host = HeaderValue::from_static("lon1.digitaloceanspaces.com");
    let now = SystemTime::now();
    c.bench_function("sign_get", |b| {
        b.iter(|| {
            let mut req = http::Request::get(&url)
                .header(header::HOST, host.clone())
                .body(())
                .expect("request");
            signer
                .sign(&mut req, Payload::Empty, black_box(now))
                .expect("sign");
            req
        })
    });
}

fn session_hash(c: &mut Criterion) {
    let cookie = "k3v9q2w8x7c6v5b4n3m2l1k0j9h8g7f6";
    c.bench_function("session_hash", |b| {
        b.iter(|| label_gateway::auth::session_hash(black_box(cookie)))
    });
    c.bench_function("session_sha256", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(cookie).as_bytes()))
    });
}

/// Answers every request with 204, like the Django check view for a logged-in session.
async fn start_204_responder() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind responder");
    let addr = listener.local_addr().expect("responder addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    let mut r = http::Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = http::StatusCode::NO_CONTENT;
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn auth_verdict_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = rt.block_on(start_204_responder());
    let cfg = AuthConfig {
        check_url: format!("http://{addr}/internal/label-access/{{tracking}}/"),
        ..AuthConfig::default()
    };
    let auth = Authenticator::new(&cfg).expect("authenticator");
    // What a browser sends: the CSRF cookie, the session, and something else of the site's.
    let mut headers = HeaderMap::new();
    headers.insert(
        header::COOKIE,
        HeaderValue::from_static(
            "csrftoken=Qx3nL0bN6bC1V9yq4tYv2WkR8sZp5mHj; \
             sessionid=k2p9x7w3q8r5t1y6u4i0o2a7s9d3f5g8; theme=dark",
        ),
    );
    headers.insert(header::HOST, HeaderValue::from_static("labels.example.com"));
    let request_id = HeaderValue::from_static("0123456789abcdef");
    let client = ClientInfo {
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        headers: &headers,
        request_id: &request_id,
        trusted_proxies: &[],
    };
    let tracking = Tracking::parse(TRACKING).expect("valid tracking number");
    let check = || async {
        let cookie = auth.session_cookie(&headers, http::Version::HTTP_11);
        auth.check(cookie.as_deref(), black_box(tracking), client)
            .await
            .expect("check endpoint answers")
    };
    let (verdict, _) = rt.block_on(check());
    assert_eq!(verdict, Verdict::Allow, "the warm-up call is allowed");
    c.bench_function("auth_verdict_hit", |b| b.to_async(&rt).iter(check));
}

fn route_validate(c: &mut Criterion) {
    let path = format!("/shipping-label/{TRACKING}/");
    c.bench_function("route_validate", |b| {
        b.iter(|| {
            let r = route(black_box(&path));
            assert!(matches!(r, Route::Label(_)));
            r
        })
    });
}

fn range_conditional_eval(c: &mut Criterion) {
    // A printer resuming a download: a range, guarded by If-Range, plus a stale
    // If-None-Match and an If-Modified-Since; the object's Last-Modified is parsed per
    // request, as it arrives from storage as text.
    let mut h = HeaderMap::new();
    h.insert(header::RANGE, HeaderValue::from_static("bytes=1024-"));
    h.insert(header::IF_RANGE, HeaderValue::from_static(ETAG));
    h.insert(
        header::IF_NONE_MATCH,
        HeaderValue::from_static("\"0000000000000000000000000000dead\""),
    );
    h.insert(
        header::IF_MODIFIED_SINCE,
        HeaderValue::from_static("Mon, 13 May 2024 09:30:00 GMT"),
    );
    c.bench_function("range_conditional_eval", |b| {
        b.iter(|| {
            let h = black_box(&h);
            let conditions = Conditions::from_headers(h);
            let validators = Validators {
                etag: Some(ETAG),
                last_modified: httpdate::parse_http_date(LAST_MODIFIED).ok(),
            };
            let outcome = conditions.evaluate(&validators);
            let range = match parse_range(h.get(header::RANGE)) {
                label_gateway::http::RangeRequest::Single(spec)
                    if conditions.range_applies(&validators) =>
                {
                    spec.resolve(LABEL_BYTES)
                }
                _ => None,
            };
            (outcome, range)
        })
    });
}

fn label_headers_build(c: &mut Criterion) {
    let cache_control = cache_control(None);
    let etag = HeaderValue::from_static(ETAG);
    let last_modified = HeaderValue::from_static(LAST_MODIFIED);
    c.bench_function("label_headers_build", |b| {
        b.iter(|| {
            let mut h = HeaderMap::new();
            LabelHeaders {
                tracking: black_box(TRACKING),
                etag: Some(&etag),
                last_modified: Some(&last_modified),
                cache_control: &cache_control,
                cache: label_gateway::http::CacheState::Hit,
            }
            .write(&mut h);
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(LABEL_BYTES));
            h
        })
    });
}

fn latency_observe(c: &mut Criterion) {
    let durations = RequestDurations::default();
    c.bench_function("latency_observe", |b| {
        b.iter(|| {
            let started = Instant::now();
            durations.observe(
                black_box(RouteKind::Label),
                black_box(Outcome::Hit),
                black_box(started).elapsed(),
            );
        })
    });
}

fn label_hit(c: &mut Criterion) {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = tempfile::tempdir().expect("tempdir");
    let label = vec![b'%'; LABEL_BYTES as usize];
    std::fs::write(store.path().join(format!("{TRACKING}.pdf")), &label).expect("label");
    let (sender, addr) = rt.block_on(async {
        let check = start_204_responder().await;
        let mut config = label_gateway::config::Config::default();
        config.server.listen = "127.0.0.1:0".parse().expect("addr");
        config.server.internal_listen = "127.0.0.1:0".parse().expect("addr");
        config.storage.local_root = store.path().to_path_buf();
        config.auth.check_url = format!("http://{check}/internal/label-access/{{tracking}}/");
        config.regenerate.url = String::new();
        // Off, as the fastest deployments run: whatever the request path times is then new.
        config.log.access_log = false;
        let running = label_gateway::server::start(config)
            .await
            .expect("gateway starts");
        let addr = running.addr();
        std::mem::forget(running);
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        (tokio::sync::Mutex::new(sender), addr)
    });
    let get = || {
        http::Request::get(format!("http://{addr}/shipping-label/{TRACKING}/"))
            .header(header::HOST, "labels.example.com")
            .header(header::COOKIE, "sessionid=k2p9x7w3q8r5t1y6u4i0o2a7s9d3f5g8")
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("request")
    };
    let one = || async {
        let mut sender = sender.lock().await;
        sender.ready().await.expect("connection open");
        let resp = sender.send_request(get()).await.expect("response");
        assert_eq!(resp.status(), http::StatusCode::OK);
        let hit = resp.headers().get("x-cache").is_some_and(|v| v == "HIT");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body.len() as u64, LABEL_BYTES);
        hit
    };
    // The first request fills the cache; every measured one must be a hit.
    rt.block_on(one());
    assert!(rt.block_on(one()), "the label is served from memory");
    c.bench_function("label_hit", |b| b.to_async(&rt).iter(one));
}

#[path = "load/pdf_label.rs"]
mod pdf_label;

fn batch_merge_label(c: &mut Criterion) {
    let label = pdf_label::label_pdf(TRACKING, LABEL_BYTES as usize);
    c.bench_function("batch_merge_label", |b| {
        b.iter(|| Merger::new().add(black_box(&label)).expect("label merges"))
    });
}

fn batch_zip_entry(c: &mut Criterion) {
    let label = Bytes::from(pdf_label::label_pdf(TRACKING, LABEL_BYTES as usize));
    c.bench_function("batch_zip_entry", |b| {
        b.iter(|| {
            ZipWriter::new(SystemTime::UNIX_EPOCH)
                .add("1Z999AA10123456784.pdf", black_box(&label))
                .expect("entry fits")
        })
    });
}

criterion_group!(
    benches,
    sign_get,
    session_hash,
    auth_verdict_hit,
    route_validate,
    range_conditional_eval,
    label_headers_build,
    latency_observe,
    label_hit,
    batch_merge_label,
    batch_zip_entry
);
criterion_main!(benches);
