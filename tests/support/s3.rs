//! The real S3 server for tests: `s3s` + `s3s-fs` with `SimpleAuth` (SigV4 verified) on
//! `127.0.0.1:0`, data in a temp dir, and counters of the requests it saw per method.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use label_gateway::config::Secret;
use label_gateway::storage::sigv4::{Payload, Signer};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

pub const ACCESS_KEY: &str = "AKIDLABELGATEWAYTEST";
pub const SECRET_KEY: &str = "label-gateway-test-secret-key-0123456789";
pub const BUCKET: &str = "shipping-labels-test";
pub const REGION: &str = "lon1";

#[derive(Default)]
pub struct Counters {
    pub get: AtomicUsize,
    pub head: AtomicUsize,
    pub put: AtomicUsize,
}

pub struct S3Server {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join(BUCKET)).expect("bucket dir");
        let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs");
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let c = c.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        // Count object requests only (the bucket probe has no key).
                        if req.uri().path().matches('/').count() >= 2 {
                            let counter = match *req.method() {
                                http::Method::GET => Some(&c.get),
                                http::Method::HEAD => Some(&c.head),
                                http::Method::PUT => Some(&c.put),
                                _ => None,
                            };
                            if let Some(counter) = counter {
                                counter.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Service::call(&service, req)
                    });
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        S3Server {
            addr,
            dir,
            counters,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn gets(&self) -> usize {
        self.counters.get.load(Ordering::SeqCst)
    }

    /// Writes `labels/{tracking}.pdf` with a signed PUT, as django-storages would.
    pub async fn put_label(&self, tracking: &str, data: &[u8]) {
        self.put_object(&format!("labels/{tracking}.pdf"), data, &[])
            .await;
    }

    /// A signed PUT of any key with extra headers (e.g. `Content-Encoding`, or a
    /// `Content-Type` other than the default `application/pdf`).
    pub async fn put_object(&self, key: &str, data: &[u8], headers: &[(&str, &str)]) {
        let url = format!("{}/{BUCKET}/{key}", self.endpoint());
        let mut req = http::Request::put(&url)
            .header("host", self.addr.to_string())
            .header("content-length", data.len());
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/pdf");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(()).expect("request");
        signer()
            .sign(&mut req, Payload::Bytes(data), SystemTime::now())
            .expect("sign");
        let mut out = super::client().put(&url).body(data.to_vec());
        for (k, v) in req.headers() {
            out = out.header(k, v);
        }
        let resp = out.send().await.expect("PUT reaches s3s");
        assert!(
            resp.status().is_success(),
            "PUT {key}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }

    /// Reads an object straight from the server's folder.
    pub fn stored(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.path().join(BUCKET).join(key)).ok()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn signer() -> Signer {
    Signer::new(&Secret::new(ACCESS_KEY), &Secret::new(SECRET_KEY), REGION)
}
