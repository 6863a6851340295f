//! hyper's side of a connection: the connection builders (configured once per listener)
//! and the service hyper calls for each request it reads, which marks the connection busy
//! until the response body is finished.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use super::slots::{BusyGuard, Conn};
use crate::body::Served;
use crate::gateway::{Gateway, Listener};

/// The errors a connection ends with.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper's connection builders, configured once per listener: `auto` for a connection
/// hyper serves from some point on (HTTP/1 or 2), `http1` for one request the lane hands
/// it (see `lane`).
pub(super) struct Builders {
    pub(super) auto: auto::Builder<TokioExecutor>,
    pub(super) http1: hyper::server::conn::http1::Builder,
    /// The longest request head read (`max_header_bytes`, at least 8 KiB as hyper's own
    /// buffer).
    pub(super) max_head: usize,
}

pub(super) fn builders(gateway: &Gateway) -> Builders {
    let s = &gateway.config.server;
    let max_head = (s.max_header_bytes.as_u64() as usize).max(8192);
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // Timed by the connection's own watchdog instead (see the module docs).
        .header_read_timeout(None)
        .max_buf_size(max_head)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(s.max_header_bytes.as_u64().min(u32::MAX as u64) as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(max_head)
        .keep_alive(true);
    Builders {
        auto: b,
        http1,
        max_head,
    }
}

/// What the service answers hyper with.
pub(super) type Answer = http::Response<Served<crate::http::Body, BusyGuard>>;

/// What hyper's service calls for each request: the gateway in production
/// ([`Gateway::handle`]); the differential check puts a recording stand-in behind the
/// same service and lane.
pub(crate) trait Handler: Send + Sync + 'static {
    fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
        kind: Listener,
    ) -> impl std::future::Future<Output = http::Response<crate::http::Body>> + Send;
}

impl Handler for Gateway {
    #[inline(always)]
    fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
        kind: Listener,
    ) -> impl std::future::Future<Output = http::Response<crate::http::Body>> + Send {
        self.handle(req, peer, kind)
    }
}

/// The service hyper calls for each request it reads: the gateway (`handler`), with the
/// connection marked busy until the response body is finished.
pub(super) fn service<H: Handler>(
    handler: Arc<H>,
    conn_state: Arc<Conn>,
    peer: SocketAddr,
    kind: Listener,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = Answer,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Answer, Infallible>> + Send + 'static,
> + Send
       + 'static {
    service_fn(move |req| {
        let handler = handler.clone();
        // Created before the future so a request abandoned mid-way still ends "busy".
        let busy = conn_state.begin_request();
        async move {
            let resp = handler.answer(req, peer, kind).await;
            Ok::<_, Infallible>(resp.map(|body| Served::new(body, busy)))
        }
    })
}
