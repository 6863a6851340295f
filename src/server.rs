//! Listeners, the connection limit, the hyper connection builder and graceful drain.
//!
//! [`start`] binds and returns a [`Running`] handle (tests bind `127.0.0.1:0` this way);
//! [`Running::shutdown`] stops accepting, turns `/readyz` to 503, lets in-flight requests
//! finish within `shutdown_grace`, then returns.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::gateway::{Gateway, Listener};

/// A started gateway.
pub struct Running {
    pub gateway: Arc<Gateway>,
    addr: SocketAddr,
    internal_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: TaskTracker,
    grace: Duration,
}

impl Running {
    /// The public listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The internal listener's address, when `internal_listen` is set.
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal_addr
    }

    /// Drains: refuse new connections, finish in-flight requests within the grace period.
    /// Returns `true` when everything finished in time.
    pub async fn shutdown(self) -> bool {
        self.gateway.start_draining();
        let _ = self.stop.send(true);
        self.tasks.close();
        tokio::time::timeout(self.grace, self.tasks.wait())
            .await
            .is_ok()
    }
}

/// Builds the gateway from `config`, binds its listeners and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let listen = config.server.listen;
    let internal = config.server.internal_listen;
    let public = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("server.listen: cannot bind {listen}: {e}"))?;
    let internal = match internal {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|e| anyhow::anyhow!("server.internal_listen: cannot bind {a}: {e}"))?,
        ),
        None => None,
    };
    let gateway = Arc::new(Gateway::new(config).map_err(|e| anyhow::anyhow!("{e}"))?);
    Ok(serve(gateway, public, internal))
}

/// Serves already-bound listeners.
pub fn serve(gateway: Arc<Gateway>, public: TcpListener, internal: Option<TcpListener>) -> Running {
    let (stop, stop_rx) = watch::channel(false);
    let tasks = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(gateway.config.server.max_connections));
    let addr = public.local_addr().expect("bound listener has an address");
    let internal_addr = internal.as_ref().and_then(|l| l.local_addr().ok());
    let kind = if internal.is_some() {
        Listener::Public
    } else {
        Listener::Combined
    };
    tasks.spawn(accept_loop(
        public,
        kind,
        gateway.clone(),
        limit.clone(),
        stop_rx.clone(),
        tasks.clone(),
    ));
    if let Some(l) = internal {
        tasks.spawn(accept_loop(
            l,
            Listener::Internal,
            gateway.clone(),
            limit,
            stop_rx,
            tasks.clone(),
        ));
    }
    let grace = gateway.config.server.shutdown_grace;
    Running {
        gateway,
        addr,
        internal_addr,
        stop,
        tasks,
        grace,
    }
}

fn builder(gateway: &Gateway) -> auto::Builder<TokioExecutor> {
    let s = &gateway.config.server;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size((s.max_header_bytes.as_u64() as usize).max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(s.max_header_bytes.as_u64().min(u32::MAX as u64) as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

async fn accept_loop(
    listener: TcpListener,
    kind: Listener,
    gateway: Arc<Gateway>,
    limit: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    tasks: TaskTracker,
) {
    let builder = Arc::new(builder(&gateway));
    let accept_wait = gateway.config.server.accept_wait;
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let limit = limit.clone();
        let builder = builder.clone();
        let mut stop = stop.clone();
        tasks.spawn(async move {
            let permit = match limit.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => match tokio::time::timeout(accept_wait, limit.acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => {
                        gateway
                            .metrics
                            .connections_refused
                            .fetch_add(1, Ordering::Relaxed);
                        refuse(stream).await;
                        return;
                    }
                },
            };
            gateway
                .metrics
                .connections_open
                .fetch_add(1, Ordering::Relaxed);
            let service = {
                let gateway = gateway.clone();
                service_fn(move |req| {
                    let gateway = gateway.clone();
                    async move { Ok::<_, Infallible>(gateway.handle(req, peer, kind).await) }
                })
            };
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => log_conn_end(res),
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    log_conn_end(conn.await);
                }
            }
            gateway
                .metrics
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// Resolves once shutdown starts.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

fn log_conn_end(res: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = res {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Over the connection limit: a short 503 and close, rather than an accepted but starved
/// connection.
async fn refuse(mut stream: TcpStream) {
    let body = "503 Service Unavailable: too many connections\n";
    let msg = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(msg.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
