//! The real S3 server for tests: `s3s` + `s3s-fs` on `127.0.0.1:0` verifying SigV4 with
//! the keys it is told to accept (one test key to start with; tests add and revoke keys to
//! rotate them), data in a temp dir, and counters of the requests it saw per method.
//!
//! s3s-fs does not check `Content-MD5` on a Multi-Object Delete, which S3 requires; the
//! server does it in front of s3s as S3 does (400 `InvalidRequest` without it,
//! 400 `BadDigest` when it does not match the body).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use label_gateway::config::Secret;
use label_gateway::storage::sigv4::{Payload, Signer};
use s3s::auth::{S3Auth, SecretKey};
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

pub const ACCESS_KEY: &str = "AKIDLABELGATEWAYTEST";
pub const SECRET_KEY: &str = "label-gateway-test-secret-key-0123456789";
pub const BUCKET: &str = "shipping-labels-test";
pub const REGION: &str = "lon1";

#[derive(Default)]
pub struct Counters {
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    pub get: AtomicUsize,
    pub head: AtomicUsize,
    pub put: AtomicUsize,
    /// Object PUTs being answered right now, and the most seen at once.
    pub put_in_flight: AtomicUsize,
    pub put_max_in_flight: AtomicUsize,
    /// When set, each object PUT waits (at most [`PUT_GATE_WAIT`]) until this many have
    /// been in flight at once: a client that uploads one at a time never gets there.
    pub put_gate: Mutex<Option<usize>>,
    /// Keys named by each Multi-Object Delete that passed the `Content-MD5` check.
    pub delete_batches: Mutex<Vec<usize>>,
    /// While set, every request is answered 503 `ServiceUnavailable` (a region outage)
    /// and counted in `down_hits`.
    pub down: std::sync::atomic::AtomicBool,
    pub down_hits: AtomicUsize,
}

/// How long a gated PUT waits for company.
pub const PUT_GATE_WAIT: Duration = Duration::from_secs(2);

/// The access keys the server accepts, shared with the running service so tests can add
/// and revoke keys (key rotation) while it serves.
#[derive(Clone, Default)]
pub struct Keys(Arc<RwLock<HashMap<String, String>>>);

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<SecretKey> {
        let keys = self.0.read().expect("keys");
        match keys.get(access_key) {
            Some(secret) => Ok(SecretKey::from(secret.as_str())),
            // What s3s's own SimpleAuth answers for an unknown key id.
            None => Err(s3s::s3_error!(NotSignedUp, "Your account is not signed up")),
        }
    }
}

pub struct S3Server {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub counters: Arc<Counters>,
    keys: Keys,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join(BUCKET)).expect("bucket dir");
        let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs");
        let mut b = S3ServiceBuilder::new(fs);
        let keys = Keys::default();
        keys.0
            .write()
            .expect("keys")
            .insert(ACCESS_KEY.into(), SECRET_KEY.into());
        b.set_auth(keys.clone());
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
                c.connections.fetch_add(1, Ordering::SeqCst);
                let service = service.clone();
                let c = c.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let service = service.clone();
                        let c = c.clone();
                        async move {
                            if c.down.load(Ordering::SeqCst) {
                                c.down_hits.fetch_add(1, Ordering::SeqCst);
                                return Ok(unavailable());
                            }
                            let is_delete = req.method() == http::Method::POST
                                && req.uri().query().is_some_and(|q| {
                                    q.split('&').any(|p| p == "delete" || p == "delete=")
                                });
                            if is_delete {
                                return multi_delete(&service, &c, req).await;
                            }
                            // Count object requests only (the bucket probe has no key).
                            let object = req.uri().path().matches('/').count() >= 2;
                            if object && req.method() == http::Method::PUT {
                                c.put.fetch_add(1, Ordering::SeqCst);
                                let now = c.put_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                                c.put_max_in_flight.fetch_max(now, Ordering::SeqCst);
                                wait_for_company(&c).await;
                                let resp = service.call(req.map(s3s::Body::from)).await;
                                c.put_in_flight.fetch_sub(1, Ordering::SeqCst);
                                return resp;
                            }
                            if object {
                                let counter = match *req.method() {
                                    http::Method::GET => Some(&c.get),
                                    http::Method::HEAD => Some(&c.head),
                                    _ => None,
                                };
                                if let Some(counter) = counter {
                                    counter.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            service.call(req.map(s3s::Body::from)).await
                        }
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
            keys,
            task,
        }
    }

    /// Accepts one more key pair (the first step of a key rotation).
    pub fn accept_key(&self, access_key: &str, secret_key: &str) {
        self.keys
            .0
            .write()
            .expect("keys")
            .insert(access_key.into(), secret_key.into());
    }

    /// Stops accepting `access_key` (the last step of a key rotation).
    pub fn revoke_key(&self, access_key: &str) {
        self.keys.0.write().expect("keys").remove(access_key);
    }

    /// Answers every request 503 from now on (`true`), or serves again (`false`).
    pub fn set_down(&self, down: bool) {
        self.counters.down.store(down, Ordering::SeqCst);
    }

    /// Requests answered 503 because the server was down.
    pub fn down_hits(&self) -> usize {
        self.counters.down_hits.load(Ordering::SeqCst)
    }

    /// Holds each object PUT until `n` are in flight at once (see [`Counters::put_gate`]).
    pub fn hold_puts_until_concurrent(&self, n: usize) {
        *self.counters.put_gate.lock().expect("gate") = Some(n);
    }

    /// The most object PUTs answered at once so far.
    pub fn max_concurrent_puts(&self) -> usize {
        self.counters.put_max_in_flight.load(Ordering::SeqCst)
    }

    /// The number of keys named by each Multi-Object Delete so far.
    pub fn delete_batches(&self) -> Vec<usize> {
        self.counters
            .delete_batches
            .lock()
            .expect("batches")
            .clone()
    }

    /// The folder holding the bucket's objects (`{key}` is a file under it).
    pub fn bucket_dir(&self) -> std::path::PathBuf {
        self.dir.path().join(BUCKET)
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

/// What S3 answers while a region is out.
fn unavailable() -> s3s::HttpResponse {
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code>\
               <Message>Please reduce your request rate.</Message></Error>";
    let mut resp = http::Response::new(s3s::Body::from(xml.to_string()));
    *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    resp
}

/// A gated PUT waits until the gate's number of PUTs have been in flight at once, or
/// [`PUT_GATE_WAIT`] passes.
async fn wait_for_company(c: &Counters) {
    let Some(n) = *c.put_gate.lock().expect("gate") else {
        return;
    };
    let deadline = Instant::now() + PUT_GATE_WAIT;
    while c.put_max_in_flight.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `POST /{bucket}?delete`: the body read whole and its `Content-MD5` checked as S3 does,
/// then handed to s3s (which verifies the signature and the body's SHA-256).
async fn multi_delete(
    service: &s3s::service::S3Service,
    c: &Counters,
    req: http::Request<hyper::body::Incoming>,
) -> Result<s3s::HttpResponse, s3s::HttpError> {
    use base64::Engine;
    use md5::Digest;
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| s3s::HttpError::new(Box::new(e)))?
        .to_bytes();
    let refusal = |code: &str, message: &str| {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
             <Message>{message}</Message></Error>"
        );
        let mut resp = http::Response::new(s3s::Body::from(xml));
        *resp.status_mut() = http::StatusCode::BAD_REQUEST;
        Ok(resp)
    };
    let Some(sent) = parts.headers.get("content-md5") else {
        return refusal(
            "InvalidRequest",
            "Missing required header for this request: Content-MD5",
        );
    };
    let ours = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
    if sent.as_bytes() != ours.as_bytes() {
        return refusal(
            "BadDigest",
            "The Content-MD5 you specified did not match what we received.",
        );
    }
    let keys = String::from_utf8_lossy(&body).matches("<Key>").count();
    let resp = service
        .call(http::Request::from_parts(parts, s3s::Body::from(body)))
        .await;
    if resp.as_ref().is_ok_and(|r| r.status().is_success()) {
        c.delete_batches.lock().expect("batches").push(keys);
    }
    resp
}

pub fn signer() -> Signer {
    Signer::new(&Secret::new(ACCESS_KEY), &Secret::new(SECRET_KEY), REGION)
}
