//! Listeners, the connection limit, hyper's connection builders and graceful drain. Who
//! reads a connection's requests (the quick path for whole hits, hyper for the rest) is
//! `lane.rs`'s business.
//!
//! [`start`] binds and returns a [`Running`] handle (tests bind `127.0.0.1:0` this way);
//! [`Running::shutdown`] stops accepting, turns `/readyz` to 503, lets in-flight requests
//! finish within `shutdown_grace`, then returns.
//!
//! # Connection limit
//! At most `max_connections` connections are served at once. A connection is *busy* while
//! one of its requests is being answered (until the response body is finished) and *idle*
//! otherwise: before its first request head, between keep-alive requests, or while a slow
//! client is still sending a head. When the limit is reached, a newcomer closes the
//! connection that has been idle the longest and takes its slot, as nginx reuses idle
//! connections when it runs out: sockets that hold a slot without asking for anything never
//! lock a real client out. A connection idle for less than [`EVICT_MIN_IDLE`] is spared (it
//! may have just been accepted with its request still in flight, or just finished a response
//! not yet flushed): a newcomer that finds none old enough looks again until `accept_wait`
//! ends. In a burst over the limit, newcomers so wait and get a 503 instead of closing each
//! other mid-request. Only when nothing idle can be reclaimed within `accept_wait` does the
//! newcomer get a short 503.
//!
//! A busy connection whose client reads nothing for `send_timeout` while its response has
//! bytes to give is closed too (nginx's `send_timeout`), so a client that stops reading
//! mid-download frees its slot; a response waiting on storage is the idle-body timer's
//! business, not this one's.
//!
//! Idle connections are also closed on their own: a connection must complete a request head
//! within `header_read_timeout` of connecting or of its previous response ending (a slowloris
//! client, an idle keep-alive connection, the HTTP/1-or-2 detection read, an HTTP/2
//! connection with no stream). This is one timer per connection, re-armed only when it
//! fires, rather than hyper's own header timer, which allocates and registers a timer for
//! every request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use crate::body::{Progress, Served};
use crate::config::Config;
use crate::error::{GatewayError, StartupError};
use crate::gateway::{Gateway, Listener};

mod lane;

/// How long a connection must have been idle before a newcomer at the limit may close it
/// (capped at half of `accept_wait`, so a newcomer can outwait it).
pub const EVICT_MIN_IDLE: Duration = Duration::from_millis(50);

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
    let bind = |setting: &'static str, addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|reason| StartupError::Bind {
                setting,
                addr,
                reason,
            })
    };
    let public = bind("server.listen", config.server.listen).await?;
    let internal = bind("server.internal_listen", config.server.internal_listen).await?;
    let gateway = Arc::new(Gateway::new(config)?);
    Ok(serve(gateway, public, internal))
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

/// The errors a connection ends with.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper's connection builders, configured once per listener: `auto` for a connection
/// hyper serves from some point on (HTTP/1 or 2), `http1` for one request the lane hands
/// it (see `lane`).
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    http1: hyper::server::conn::http1::Builder,
    /// The longest request head read (`max_header_bytes`, at least 8 KiB as hyper's own
    /// buffer).
    max_head: usize,
}

fn builders(gateway: &Gateway) -> Builders {
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
type Answer = http::Response<Served<crate::http::Body, BusyGuard>>;

/// The service hyper calls for each request it reads: the gateway, with the connection
/// marked busy until the response body is finished.
fn service(
    gateway: Arc<Gateway>,
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
        let gateway = gateway.clone();
        // Created before the future so a request abandoned mid-way still ends "busy".
        let busy = conn_state.begin_request();
        async move {
            let resp = gateway.handle(req, peer, kind).await;
            Ok::<_, Infallible>(resp.map(|body| Served::new(body, busy)))
        }
    })
}

/// The clock of the slot table's timestamps: time since it was made, on the kernel's
/// coarse monotonic clock on Linux (a few milliseconds' resolution, read without the
/// time stamp counter). Every frame a response body passes records one (the
/// `send_timeout` watch); the precise clock's read showed in a streamed label's profile,
/// while the timeouts it serves are whole seconds.
#[derive(Clone, Copy)]
struct Epoch(Duration);

impl Epoch {
    fn now() -> Epoch {
        Epoch(coarse_monotonic())
    }

    fn elapsed(&self) -> Duration {
        coarse_monotonic().saturating_sub(self.0)
    }
}

#[cfg(target_os = "linux")]
fn coarse_monotonic() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` only writes the `timespec` it is given; the clock exists
    // on every Linux since 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn coarse_monotonic() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// The connection slots: the limit, and every open connection's busy/idle state so that
/// a newcomer at the limit can close the longest-idle one.
struct Slots {
    limit: Arc<Semaphore>,
    /// Clock origin for [`Conn::idle_since_ms`].
    epoch: Epoch,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

/// One open connection, as the slot table sees it.
struct Conn {
    epoch: Epoch,
    /// Requests started whose response is not finished (HTTP/2: open streams).
    busy: AtomicUsize,
    /// Requests started on this connection so far.
    requests: AtomicU64,
    /// When `busy` last fell to zero, in ms since `epoch`: the eviction order.
    idle_since_ms: AtomicU64,
    /// When hyper last asked a response body for more, in ms since `epoch`, and whether
    /// that body was then waiting on its own source: the `send_timeout` watch.
    progress_ms: AtomicU64,
    body_waiting: AtomicBool,
    /// Set once hyper has read what the client had sent on connecting: a connection whose
    /// first request is already waiting in its socket is not idle, whatever its counters say.
    read_once: AtomicBool,
    /// Set by the newcomer that chose this connection to close.
    evicted: AtomicBool,
    evict: Notify,
    /// Set when the connection should close once its request in progress is answered
    /// (shutdown, or chosen to close while busy); `drain` tells whoever reads it.
    draining: AtomicBool,
    drain: Notify,
    /// hyper reads the connection for good (HTTP/2, the internal listener, a head only
    /// hyper frames): a drain goes through hyper's graceful shutdown even when idle.
    hyper_owned: AtomicBool,
}

impl Slots {
    fn new(max_connections: usize) -> Slots {
        Slots {
            limit: Arc::new(Semaphore::new(max_connections)),
            epoch: Epoch::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            epoch: self.epoch,
            busy: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            progress_ms: AtomicU64::new(0),
            body_waiting: AtomicBool::new(false),
            read_once: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            draining: AtomicBool::new(false),
            drain: Notify::new(),
            hyper_owned: AtomicBool::new(false),
        });
        self.lock().insert(id, conn.clone());
        Registered {
            slots: self.clone(),
            id,
            conn,
        }
    }

    /// Asks the longest-idle connection to close, among those idle for at least
    /// `min_idle`; `false` when there is none.
    fn evict_idle(&self, min_idle: Duration) -> bool {
        let now = self.epoch.elapsed();
        let open = self.lock();
        let victim = open
            .values()
            .filter(|c| {
                c.read_once.load(Ordering::Acquire)
                    && !c.evicted.load(Ordering::Relaxed)
                    && c.idle_at(now).is_some_and(|idle| idle >= min_idle)
            })
            .min_by_key(|c| c.idle_since_ms.load(Ordering::Relaxed));
        match victim {
            Some(c) => {
                c.evicted.store(true, Ordering::Relaxed);
                // A stored permit: the victim sees it even if it is not waiting right now.
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a connection from the slot table when its task ends, however it ends.
struct Registered {
    slots: Arc<Slots>,
    id: u64,
    conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.slots.lock().remove(&self.id);
    }
}

impl Conn {
    /// Marks a request as started; the connection is busy until the guard drops, which
    /// happens when hyper has finished (or abandoned) the response body.
    fn begin_request(self: &Arc<Self>) -> BusyGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // Until the response is ready the gateway is the one working, not the client.
        self.body_waiting.store(true, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.clone())
    }

    /// Asks the connection to close once its request in progress is answered.
    fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
        // A stored permit: seen even if nothing waits on it right now.
        self.drain.notify_one();
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

struct BusyGuard(Arc<Conn>);

impl Progress for BusyGuard {
    fn progress(&self, waiting: bool) {
        let c = &self.0;
        c.progress_ms
            .store(c.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        c.body_waiting.store(waiting, Ordering::Relaxed);
    }
}

impl Conn {
    /// How long the connection has had no request in progress at `now` (time since
    /// `epoch`); `None` while busy. One clock read serves a whole scan of the slot table.
    fn idle_at(&self, now: Duration) -> Option<Duration> {
        if self.busy.load(Ordering::Acquire) != 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
        Some(now.saturating_sub(since))
    }

    /// How long a busy connection's client has read nothing while its response had bytes
    /// to give; `None` when idle or when the response itself is waiting (on storage).
    fn stalled_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::Acquire) == 0 || self.body_waiting.load(Ordering::Relaxed) {
            return None;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        Some(Duration::from_millis(
            now.saturating_sub(self.progress_ms.load(Ordering::Relaxed)),
        ))
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let c = &self.0;
        let now = c.epoch.elapsed().as_millis() as u64;
        c.idle_since_ms.store(now, Ordering::Relaxed);
        c.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn accept_loop(
    listener: TcpListener,
    kind: Listener,
    gateway: Arc<Gateway>,
    slots: Arc<Slots>,
    mut stop: watch::Receiver<bool>,
    tasks: TaskTracker,
) {
    let builders = Arc::new(builders(&gateway));
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
        tasks.spawn(connection(
            stream,
            peer,
            kind,
            gateway.clone(),
            slots.clone(),
            builders.clone(),
            stop.clone(),
        ));
    }
}

/// Serves one accepted connection: takes a slot, then runs hyper until the connection
/// ends, is evicted, misses its first header deadline, or drains on shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    kind: Listener,
    gateway: Arc<Gateway>,
    slots: Arc<Slots>,
    builders: Arc<Builders>,
    mut stop: watch::Receiver<bool>,
) {
    let server = &gateway.config.server;
    let permit = match slots.limit.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => match make_room(&slots, server.accept_wait).await {
            Some(p) => p,
            None => {
                tracing::debug!(%peer, "connection limit reached: refusing");
                gateway
                    .metrics
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                let answer = GatewayError::Overloaded.to_http1_bytes(gateway.audience("/"));
                refuse(stream, answer).await;
                return;
            }
        },
    };
    let registered = slots.register();
    let conn_state = registered.conn.clone();
    gateway
        .metrics
        .connections_open
        .fetch_add(1, Ordering::Relaxed);
    let conn = lane::serve(
        stream,
        peer,
        kind,
        gateway.clone(),
        conn_state.clone(),
        builders,
    );
    tokio::pin!(conn);
    // The head watchdog: wakes at the earliest moment the connection could have been idle
    // for `header_read_timeout`, and either closes it or moves on to the next such moment.
    let head_watch = tokio::time::sleep(server.header_read_timeout);
    tokio::pin!(head_watch);
    let mut draining = false;
    // Wakes once per `send_timeout` to see whether the client stopped reading.
    let stalled = tokio::time::sleep(server.send_timeout);
    tokio::pin!(stalled);
    // One poll first: a request already sent is parsed (and marks the connection busy)
    // before the connection can be chosen as idle. Choosing it earlier would close it with
    // the request unread, and the client would see a reset instead of an answer.
    let first = std::future::poll_fn(|cx| {
        use std::future::Future;
        std::task::Poll::Ready(conn.as_mut().poll(cx))
    })
    .await;
    let finished = match first {
        std::task::Poll::Ready(res) => {
            log_conn_end(peer, res);
            true
        }
        std::task::Poll::Pending => false,
    };
    conn_state.read_once.store(true, Ordering::Release);
    // Registered once, not on every wake of the loop: each of these takes a lock to
    // register and another to deregister, and the loop wakes several times per request.
    let evict = conn_state.evict.notified();
    tokio::pin!(evict);
    let stop_signal = stopped(&mut stop);
    tokio::pin!(stop_signal);
    // The watches are polled only after one of them was woken (the connection wakes this
    // task on every request; polling four idle watches each time showed in a hit's count).
    let watches = Arc::new(Watches::default());
    if !finished {
        loop {
            let event = std::future::poll_fn(|cx| {
                use std::future::Future;
                // The connection first: it is what wakes the loop on every request.
                if let std::task::Poll::Ready(res) = conn.as_mut().poll(cx) {
                    return std::task::Poll::Ready(Event::Ended(res));
                }
                watches.parent.register(cx.waker());
                if !watches.woken.swap(false, Ordering::AcqRel) {
                    return std::task::Poll::Pending;
                }
                let waker = std::task::Waker::from(watches.clone());
                let cx = &mut std::task::Context::from_waker(&waker);
                if head_watch.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(Event::HeadWatch);
                }
                if !draining && evict.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(Event::Evict);
                }
                if stalled.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(Event::Stalled);
                }
                if !draining && stop_signal.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(Event::Stop);
                }
                std::task::Poll::Pending
            })
            .await;
            // Whatever fired is handled (and a timer re-armed): every watch is polled again
            // on the next turn.
            watches.woken.store(true, Ordering::Release);
            match event {
                Event::Ended(res) => {
                    log_conn_end(peer, res);
                    break;
                }
                Event::HeadWatch => {
                    let timeout = server.header_read_timeout;
                    match conn_state.idle_at(conn_state.epoch.elapsed()) {
                        Some(idle) if idle >= timeout => {
                            if conn_state.requests.load(Ordering::Relaxed) == 0 {
                                tracing::info!(
                                    %peer,
                                    ?timeout,
                                    "closing a connection that sent no request head within server.header_read_timeout"
                                );
                            } else {
                                tracing::debug!(
                                    %peer,
                                    ?timeout,
                                    "closing a connection idle (or sending a head) for server.header_read_timeout"
                                );
                            }
                            break;
                        }
                        idle => {
                            let next = timeout - idle.unwrap_or_default();
                            head_watch
                                .as_mut()
                                .reset(tokio::time::Instant::now() + next);
                        }
                    }
                }
                Event::Evict => {
                    if conn_state.busy.load(Ordering::Acquire) == 0 {
                        tracing::debug!(%peer, "connection limit reached: closing the longest-idle connection");
                        break;
                    }
                    // A request started since it was chosen: let it finish, then close.
                    conn_state.begin_drain();
                    draining = true;
                }
                Event::Stalled => {
                    let quiet = conn_state.stalled_for().unwrap_or_default();
                    if quiet >= server.send_timeout {
                        tracing::warn!(
                            %peer,
                            timeout = ?server.send_timeout,
                            "client read nothing within server.send_timeout: closing the connection"
                        );
                        break;
                    }
                    stalled
                        .as_mut()
                        .reset(tokio::time::Instant::now() + (server.send_timeout - quiet));
                }
                Event::Stop => {
                    // Idle in the lane (this task polls it: it waits for a head now): close.
                    if conn_state.busy.load(Ordering::Acquire) == 0
                        && !conn_state.hyper_owned.load(Ordering::Relaxed)
                    {
                        break;
                    }
                    conn_state.begin_drain();
                    draining = true;
                }
            }
        }
    }
    gateway
        .metrics
        .connections_open
        .fetch_sub(1, Ordering::Relaxed);
    drop(registered);
    drop(permit);
}

/// What woke a connection's loop.
enum Event {
    Ended(Result<(), BoxError>),
    HeadWatch,
    Evict,
    Stalled,
    Stop,
}

/// The wake-up flag of a connection's watches (header and send timers, eviction,
/// shutdown): their wakes set it and wake the connection's task, which polls them only then.
struct Watches {
    woken: AtomicBool,
    parent: futures_util::task::AtomicWaker,
}

impl Default for Watches {
    fn default() -> Watches {
        Watches {
            // Polled once at the start, so that each registers its wake-up.
            woken: AtomicBool::new(true),
            parent: futures_util::task::AtomicWaker::new(),
        }
    }
}

impl std::task::Wake for Watches {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.parent.wake();
    }
}

/// At the limit: closes the longest-idle connection old enough to spare and waits for a
/// slot, looking again every few milliseconds while none is old enough, for at most `wait`.
async fn make_room(slots: &Arc<Slots>, wait: Duration) -> Option<OwnedSemaphorePermit> {
    let deadline = tokio::time::Instant::now() + wait;
    let min_idle = EVICT_MIN_IDLE.min(wait / 2);
    let tick = (min_idle / 4).max(Duration::from_millis(1));
    let acquire = slots.limit.clone().acquire_owned();
    tokio::pin!(acquire);
    let mut evicted = false;
    loop {
        if !evicted {
            evicted = slots.evict_idle(min_idle);
        }
        let next = if evicted {
            deadline
        } else {
            (tokio::time::Instant::now() + tick).min(deadline)
        };
        tokio::select! {
            permit = acquire.as_mut() => return permit.ok(),
            _ = tokio::time::sleep_until(next) => {
                if next >= deadline {
                    return None;
                }
            }
        }
    }
}

/// Resolves once shutdown starts.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

fn log_conn_end(peer: SocketAddr, res: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    let Err(e) = res else { return };
    match e.downcast_ref::<hyper::Error>() {
        Some(h) if h.is_timeout() => tracing::info!(
            %peer,
            "closed a connection whose HTTP/2 keep-alive ping went unanswered"
        ),
        // The response body failed (a storage stream cut mid-way, already logged where it
        // broke): hyper closed the connection so the client sees an error, not a short body.
        Some(h) if h.is_user() => tracing::debug!(%peer, error = %e, "response aborted"),
        _ => tracing::debug!(%peer, error = %e, "connection ended with an error"),
    }
}

/// Over the connection limit: the mapped 503 (with the configured `Retry-After`) and
/// close, rather than an accepted but starved connection. The client's request is read and
/// dropped for a moment before closing (a "lingering close"), so the close does not turn
/// into a reset that loses the 503.
async fn refuse(mut stream: TcpStream, answer: Vec<u8>) {
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_epoch_moves_forward_with_time() {
        let epoch = Epoch::now();
        let first = epoch.elapsed();
        std::thread::sleep(Duration::from_millis(60));
        let later = epoch.elapsed();
        assert!(later >= first);
        // The coarse clock lags by at most a tick (10 ms at the slowest kernel setting).
        assert!(later >= Duration::from_millis(50), "{later:?}");
    }
}
