//! Listeners and graceful drain: [`start`] binds the two listeners (or takes the sockets
//! systemd passed, see [`activation`]) and returns a [`Running`] handle (tests bind
//! `127.0.0.1:0` this way); [`Running::shutdown`] stops accepting, turns `/readyz` to 503,
//! lets in-flight requests finish within `shutdown_grace`, then returns.
//!
//! The rest, one concern a file: `connection` (one accepted connection's life: its slot,
//! its timers, its drain), `slots` (the connection limit and eviction of the longest-idle
//! connection), `builders` (hyper's builders and the service it calls) and `lane` (who reads a
//! connection's requests: the quick path for whole hits, hyper for the rest).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::StartupError;
use crate::gateway::{Gateway, Listener};

pub mod activation;
mod builders;
mod connection;
#[doc(hidden)]
pub mod differential;
mod lane;
mod lane_io;
mod slots;

use self::builders::{service, BoxError, Builders};
use self::connection::accept_loop;
pub use self::slots::EVICT_MIN_IDLE;
use self::slots::{BusyGuard, Conn, Slots};

/// A started gateway.
pub struct Running {
    pub gateway: Arc<Gateway>,
    addr: SocketAddr,
    internal_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: TaskTracker,
    grace: Duration,
}

impl Running {
    /// The public listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The internal listener's address (`/internal/...`, `/metrics`).
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    /// Drains: refuse new connections, finish in-flight requests within the grace period.
    /// Returns `true` when everything finished in time.
    pub async fn shutdown(self) -> bool {
        self.gateway.start_draining();
        self.gateway.save_hot_list();
        let _ = self.stop.send(true);
        self.tasks.close();
        tokio::time::timeout(self.grace, self.tasks.wait())
            .await
            .is_ok()
    }
}

/// Builds the gateway from `config`, binds its listeners and starts serving.
pub async fn start(config: Config) -> Result<Running, StartupError> {
    start_with(config, None).await
}

/// [`start`], serving on the sockets systemd passed when there are some (see
/// [`activation`]); a listener not passed is bound from the config.
pub async fn start_with(
    config: Config,
    passed: Option<activation::Passed>,
) -> Result<Running, StartupError> {
    let (passed_public, passed_internal) = match passed {
        Some(p) => (Some(p.public), p.internal),
        None => (None, None),
    };
    let public = listener("server.listen", config.server.listen, passed_public).await?;
    let internal = listener(
        "server.internal_listen",
        config.server.internal_listen,
        passed_internal,
    )
    .await?;
    let gateway = Arc::new(Gateway::new(config)?);
    Ok(serve(gateway, public, internal))
}

/// The listener of `setting`: the passed socket, else `addr` bound.
async fn listener(
    setting: &'static str,
    addr: SocketAddr,
    passed: Option<std::net::TcpListener>,
) -> Result<TcpListener, StartupError> {
    let Some(socket) = passed else {
        return TcpListener::bind(addr)
            .await
            .map_err(|reason| StartupError::Bind {
                setting,
                addr,
                reason,
            });
    };
    let taken = socket
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(socket))
        .map_err(|reason| StartupError::Passed { setting, reason })?;
    if let Ok(local) = taken.local_addr() {
        tracing::info!(
            setting,
            addr = %local,
            "serving on the socket systemd passed (LISTEN_FDS), not binding"
        );
    }
    Ok(taken)
}

/// Serves one connection of the public listener over any in-memory stream
/// (`tokio::io::duplex`): the lane, with `gateway` behind its quick path and hyper's
/// service, as [`serve`] does for each accepted `TcpStream`, without the connection's
/// slot, timers and drain. For tests and fuzzing.
#[doc(hidden)]
pub async fn serve_lane<S>(
    stream: S,
    gateway: Arc<Gateway>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    serve_lane_with(stream, gateway.clone(), gateway).await
}

/// [`serve_lane`] with `handler` behind hyper's service instead of the gateway.
pub(crate) async fn serve_lane_with<S, H>(
    stream: S,
    gateway: Arc<Gateway>,
    handler: Arc<H>,
) -> Result<(), BoxError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: builders::Handler,
{
    let slots = Arc::new(Slots::new(1));
    let registered = slots.register();
    let conn = registered.conn.clone();
    let builders = Arc::new(builders::builders(&gateway));
    let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
    let stream = lane_io::Polled::new(stream);
    lane::serve(
        stream,
        peer,
        Listener::Public,
        gateway,
        handler,
        conn,
        builders,
    )
    .await
}

/// Serves already-bound listeners.
pub fn serve(gateway: Arc<Gateway>, public: TcpListener, internal: TcpListener) -> Running {
    let (stop, stop_rx) = watch::channel(false);
    let tasks = TaskTracker::new();
    let slots = Arc::new(Slots::new(gateway.config.server.max_connections));
    let addr = public.local_addr().expect("bound listener has an address");
    let internal_addr = internal
        .local_addr()
        .expect("bound listener has an address");
    let kind = if gateway.config.server.internal_on_public {
        Listener::Combined
    } else {
        Listener::Public
    };
    tasks.spawn(accept_loop(
        public,
        kind,
        gateway.clone(),
        slots.clone(),
        stop_rx.clone(),
        tasks.clone(),
    ));
    tasks.spawn(accept_loop(
        internal,
        Listener::Internal,
        gateway.clone(),
        slots,
        stop_rx,
        tasks.clone(),
    ));
    gateway.warm_from_hot_list();
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
