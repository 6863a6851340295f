//! The servers this bench binary runs itself: the real S3 server (s3s + s3s-fs, SigV4
//! verified; plain HTTP, or behind TLS with a CA it makes), the bare hyper "limit" server
//! and the bare hyper proxy (the floor a miss is judged against; to storage over plain HTTP
//! or TLS), each in a child process of its own (so each has its own runtime and a
//! measurable RSS and CPU time), and the in-process session-check responder.
//!
//! A child mode prints `listening ADDR` on stdout once bound, then serves until its stdin
//! closes (the bench ended) or the kernel's parent-death signal arrives.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

pub const ACCESS_KEY: &str = "AKIDLABELGATEWAYBENCH";
pub const SECRET_KEY: &str = "label-gateway-bench-secret-key-0123456789";
pub const BUCKET: &str = "shipping-labels-bench";
pub const REGION: &str = "lon1";

/// `serve-s3 DIR [CA_PEM]`: s3s-fs over `DIR` (the bucket is a folder in it), SigV4 on.
/// With `CA_PEM`, behind TLS: a certificate for 127.0.0.1 issued by a CA made here (the
/// integration tests' `TestCa`), whose certificate is written to `CA_PEM` before the
/// address is announced (what the gateway's `storage.ca_file` and the TLS proxy trust).
pub fn serve_s3(dir: &Path, ca_pem: Option<&Path>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join(BUCKET))?;
    let fs = s3s_fs::FileSystem::new(dir).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?;
    let mut b = S3ServiceBuilder::new(fs);
    b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = b.build();
    let tls = match ca_pem {
        None => None,
        Some(out) => {
            let ca = crate::test_ca::TestCa::new();
            std::fs::copy(ca.pem_file(), out)?;
            Some(ca.acceptor("127.0.0.1"))
        }
    };
    run_child(|listener| async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Like a real origin: no Nagle delay on responses written in pieces.
            let _ = stream.set_nodelay(true);
            let (service, tls) = (service.clone(), tls.clone());
            tokio::spawn(async move {
                let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    None => http.serve_connection(TokioIo::new(stream), service).await,
                    Some(tls) => match tls.accept(stream).await {
                        Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                        Err(_) => return,
                    },
                };
            });
        }
    })
}

/// `serve-limit FILE`: a bare hyper HTTP/1.1 server answering every request with `FILE`'s
/// bytes from memory, the ceiling for any server on this machine.
pub fn serve_limit(file: &Path) -> anyhow::Result<()> {
    let body = Bytes::from(std::fs::read(file)?);
    run_child(|listener| async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let mut r = http::Response::new(Full::new(body.clone()));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/pdf"),
                    );
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// `serve-proxy FILE [CA_PEM]`: the bare proxy, the floor of a miss. `FILE` has one
/// `PATH URL` line per label: a request for `PATH` becomes a GET of the presigned `URL`
/// through a pooled hyper-util client, and the origin's answer goes back as it came (status,
/// headers and the streamed body untouched): no session check, no per-request signing, no
/// header work. With `CA_PEM` the URLs are https and the client goes through hyper-rustls
/// with the TLS configuration the gateway's storage client has for `storage.ca_file`
/// (built-in roots plus `CA_PEM`'s, HTTP/1.1): the floor of a miss over TLS.
pub fn serve_proxy(file: &Path, ca_pem: Option<&Path>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)?;
    let mut routes = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (path, url) = line
            .split_once(' ')
            .ok_or_else(|| anyhow::anyhow!("serve-proxy: {line:?} is not `PATH URL`"))?;
        routes.insert(path.to_string(), url.parse::<http::Uri>()?);
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    match ca_pem {
        None => proxy(routes, connector),
        Some(ca) => {
            connector.enforce_http(false);
            let tls = label_gateway::storage::s3::tls_config(Some(ca))
                .map_err(|why| anyhow::anyhow!("serve-proxy: {why}"))?;
            // hyper-rustls sets the ALPN itself (HTTP/1.1 only, as the config had it).
            let mut tls = Arc::unwrap_or_clone(tls);
            tls.alpn_protocols.clear();
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_only()
                .enable_http1()
                .wrap_connector(connector);
            proxy(routes, https)
        }
    }
}

/// [`serve_proxy`]'s server, its client connecting through `connector`.
fn proxy<C>(routes: HashMap<String, http::Uri>, connector: C) -> anyhow::Result<()>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let routes = Arc::new(routes);
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(512)
        .build::<_, http_body_util::Empty<Bytes>>(connector);
    run_child(|listener| async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (routes, client) = (routes.clone(), client.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let uri = routes.get(req.uri().path()).cloned();
                    let client = client.clone();
                    async move {
                        let Some(uri) = uri else {
                            let mut r = http::Response::new(http_body_util::Either::Right(
                                Full::new(Bytes::new()),
                            ));
                            *r.status_mut() = http::StatusCode::NOT_FOUND;
                            return Ok(r);
                        };
                        let req = http::Request::get(uri)
                            .body(http_body_util::Empty::new())
                            .map_err(|e| e.to_string())?;
                        match client.request(req).await {
                            Ok(resp) => Ok(resp.map(http_body_util::Either::Left)),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// Binds, announces the address, serves with `serve` until stdin closes.
fn run_child<F, Fut>(serve: F) -> anyhow::Result<()>
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(serve(listener));
        let mut out = std::io::stdout();
        writeln!(out, "listening {addr}")?;
        out.flush()?;
        // The bench holds our stdin open; EOF means it is gone.
        tokio::task::spawn_blocking(|| {
            let mut sink = [0u8; 64];
            while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        })
        .await?;
        Ok(())
    })
}

/// The trivial app: the session check answers 204 (403 for a session cookie whose value
/// starts with `denied`), so a row measures the gateway's own cost, not the app's; the
/// regenerate endpoint answers 404 (no such order). Counts the calls it saw.
pub struct Responder {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Responder {
    pub async fn start() -> anyhow::Result<Responder> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let c = c.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        c.fetch_add(1, Ordering::Relaxed);
                        let denied = req
                            .headers()
                            .get(http::header::COOKIE)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.contains("=denied"));
                        let status = if req.uri().path().starts_with("/regenerate/") {
                            http::StatusCode::NOT_FOUND
                        } else if denied {
                            http::StatusCode::FORBIDDEN
                        } else {
                            http::StatusCode::NO_CONTENT
                        };
                        let mut r = http::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = status;
                        async move { Ok::<_, Infallible>(r) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Responder { addr, calls, task })
    }

    /// The check URL in the gateway's form, with `{tracking}`.
    pub fn check_url(&self) -> String {
        format!("http://{}/check/{{tracking}}/", self.addr)
    }

    /// The regenerate URL in the gateway's form: always "no such order".
    pub fn regenerate_url(&self) -> String {
        format!("http://{}/regenerate/{{tracking}}/", self.addr)
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
