//! One accepted connection's life: the accept loop, the slot it takes (or the 503 when
//! none frees up), and the watches around the lane that close it.
//!
//! A busy connection whose client reads nothing for `send_timeout` while its response has
//! bytes to give is closed (nginx's `send_timeout`), so a client that stops reading
//! mid-download frees its slot; a response waiting on storage is the idle-body timer's
//! business, not this one's.
//!
//! Idle connections are also closed on their own: a connection must complete a request head
//! within `header_read_timeout` of connecting or of its previous response ending (a slowloris
//! client, an idle keep-alive connection, the HTTP/1-or-2 detection read, an HTTP/2
//! connection with no stream). This is one timer per connection, re-armed only when it
//! fires, rather than hyper's own header timer, which allocates and registers a timer for
//! every request.
//!
//! On shutdown an idle connection is closed at once and a busy one once its request in
//! progress is answered. A connection accepted before the drain that has not sent its
//! first request yet gets [`DRAIN_FIRST_REQUEST_WAIT`] for it: its client wrote the request
//! right after connecting, and closing the connection with that request on its way would
//! lose it (a client retries a request on a kept-alive connection the server closed, not on
//! a fresh one).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// How long a drain waits for the first request of a connection accepted before it (at most
/// `header_read_timeout`).
pub const DRAIN_FIRST_REQUEST_WAIT: Duration = Duration::from_secs(1);

use super::builders::{builders, BoxError, Builders};
use super::lane;
use super::slots::{make_room, Slots};
use crate::error::GatewayError;
use crate::gateway::{Gateway, Listener};

pub(super) async fn accept_loop(
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
    // Set when a drain found the connection still waiting for its first request.
    let mut first_wait: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    if !finished {
        loop {
            let event = std::future::poll_fn(|cx| {
                use std::future::Future;
                // The connection first: it is what wakes the loop on every request.
                if let std::task::Poll::Ready(res) = conn.as_mut().poll(cx) {
                    return std::task::Poll::Ready(Event::Ended(res));
                }
                if let Some(wait) = first_wait.as_mut() {
                    if conn_state.requests.load(Ordering::Relaxed) > 0
                        || wait.as_mut().poll(cx).is_ready()
                    {
                        return std::task::Poll::Ready(Event::Stop);
                    }
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
                    let idle = conn_state.busy.load(Ordering::Acquire) == 0
                        && !conn_state.hyper_owned.load(Ordering::Relaxed);
                    if idle
                        && first_wait.is_none()
                        && conn_state.requests.load(Ordering::Relaxed) == 0
                    {
                        // Its first request may be on its way: wait for it (the check
                        // above ends the wait when it starts).
                        let wait = DRAIN_FIRST_REQUEST_WAIT.min(server.header_read_timeout);
                        first_wait = Some(Box::pin(tokio::time::sleep(wait)));
                        draining = true;
                        continue;
                    }
                    first_wait = None;
                    // Idle in the lane (this task polls it: it waits for a head now): close.
                    if idle {
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
