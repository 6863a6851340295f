//! Every body wrapper on the streaming path, each a thin `poll_frame` around an inner body:
//! - [`IdleTimeout`]: a stalled origin ends the client's response as an error instead of
//!   hanging it;
//! - [`Served`]: the body the server hands to hyper, which lives exactly as long as the
//!   response (so the server knows when a connection is idle) and makes a cut body reach
//!   the client the same way every time;
//! - [`Tee`]: passes frames through and keeps a copy, handed to a [`TeeSink`] (the hot
//!   cache) only when the body was complete;
//! - [`Prefixed`]: bytes already read (a sniffed `%PDF-`), then the rest of the body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use sync_wrapper::SyncWrapper;
use tokio::time::{Instant, Sleep};

use crate::http::{Body, BoxError};

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("storage body stalled for more than {0:?}")]
pub struct IdleTimeoutError(pub Duration);

/// Fails the body when the origin stays silent for `idle` while a frame is wanted.
///
/// The clock runs only while the body is waiting on the origin: a client that reads
/// slowly (so the body is not polled for a while) never counts as a stalled origin.
pub struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    /// Armed for this wait's deadline or an earlier one, never a later one: a timer that
    /// fires early is moved on once. Re-arming it at every wait would re-register it in
    /// tokio's timer wheel for each frame of every download.
    sleep: Pin<Box<Sleep>>,
    /// When the current wait on the origin began (`None`: not waiting).
    waiting_since: Option<Instant>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            waiting_since: None,
        }
    }
}

impl<B> HttpBody for IdleTimeout<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting_since = None;
                Poll::Ready(frame.map(|r| {
                    r.map_err(|e| {
                        let e: BoxError = e.into();
                        tracing::warn!(
                            error = %e,
                            "storage body failed mid-way: cutting the response so the client \
                             sees an error, not a short label"
                        );
                        e
                    })
                }))
            }
            Poll::Pending => {
                let deadline = *this.waiting_since.get_or_insert_with(Instant::now) + this.idle;
                loop {
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if this.sleep.deadline() < deadline {
                        // Armed for an earlier wait: move it to this one's deadline.
                        this.sleep.as_mut().reset(deadline);
                        continue;
                    }
                    this.waiting_since = None;
                    tracing::warn!(
                        idle = ?this.idle,
                        "storage body stalled past storage.idle_body_timeout: cutting the \
                         response so the client sees an error, not a short label"
                    );
                    return Poll::Ready(Some(Err(Box::new(IdleTimeoutError(this.idle)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a served body tells its connection: hyper asks a body for more only once it could
/// write what it had, so a long silence while the body is not itself waiting means the
/// client stopped reading (see `server.send_timeout`).
pub trait Progress {
    /// hyper asked for a frame; `waiting` when the body had none ready yet.
    fn progress(&self, waiting: bool);
}

impl Progress for () {
    fn progress(&self, _waiting: bool) {}
}

/// The body hyper serves on a connection. It carries `guard` until hyper drops it (the
/// last frame is sent, or the response is abandoned), and when the inner body fails it
/// first lets hyper flush what it already has: the client always gets the head and the
/// bytes that arrived, then the cut (a short body under its `Content-Length`), instead of
/// a connection that closes before the head or not depending on timing.
pub struct Served<B: HttpBody, G> {
    inner: B,
    /// An error held back for one poll, so hyper flushes before it aborts.
    failed: Option<B::Error>,
    guard: G,
}

impl<B: HttpBody, G: Progress> Served<B, G> {
    pub fn new(inner: B, guard: G) -> Self {
        // The response is ready: the client is expected to read from now on.
        guard.progress(false);
        Served {
            inner,
            failed: None,
            guard,
        }
    }
}

impl<B, G> HttpBody for Served<B, G>
where
    B: HttpBody + Unpin,
    B::Error: Unpin,
    G: Progress + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.guard.progress(polled.is_pending());
        match polled {
            Poll::Ready(Some(Err(e))) => {
                // hyper flushes its buffer when the body is pending; the error follows on
                // the next poll, which this wake asks for at once.
                this.failed = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The work a [`TeeSink`] does with the complete copy (keeping it), run to its end before
/// the [`Tee`] hands on the body's last frame.
pub type Keep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Receives the copy a [`Tee`] kept, once the body it watched ended complete.
pub trait TeeSink {
    /// `seen` bytes have passed so far (called as the body starts and after each frame).
    fn progress(&self, seen: u64);
    /// Takes the complete copy. The returned work finishes before the last frame goes on,
    /// so whoever has read the last byte finds the copy kept.
    fn complete(self, data: Bytes) -> Keep;
}

/// Passes the inner body's frames through unchanged and copies them into one buffer of
/// exactly `expected` bytes. The copy goes to the sink only once the inner body has
/// *ended* with exactly that many: seen at the last frame when the body's own framing
/// says it is complete (`is_end_stream`), else at its end of stream (a body framed
/// otherwise than `expected` says, chunks under a `Content-Length`, must not be kept for
/// having passed that many bytes). The last frame (or the end) is handed on only after
/// the sink's work with it is done (a request that follows the last byte finds the label
/// cached). A body that is cut, fails, or runs long delivers nothing.
pub struct Tee<S: TeeSink> {
    inner: Body,
    copy: BytesMut,
    seen: u64,
    expected: u64,
    sink: Option<S>,
    /// The sink's work, while it runs (`SyncWrapper`: the body must be `Sync`, and only
    /// `poll_frame`, through `&mut`, touches it).
    keeping: Option<SyncWrapper<Keep>>,
    /// The last frame, held until `keeping` is done.
    held: Option<Frame<Bytes>>,
    /// `expected` bytes passed but the inner body had not said it ended: the copy is
    /// kept at its end of stream, if nothing more comes.
    awaiting_end: bool,
    /// The end of stream, held until `keeping` is done.
    ended: bool,
}

impl<S: TeeSink> Tee<S> {
    /// `expected` must be admitted by the caller (it is allocated at once).
    pub fn new(inner: Body, expected: u64, sink: S) -> Tee<S> {
        let mut tee = Tee {
            inner,
            copy: BytesMut::with_capacity(expected as usize),
            seen: 0,
            expected,
            sink: Some(sink),
            keeping: None,
            held: None,
            awaiting_end: false,
            ended: false,
        };
        if let Some(sink) = &tee.sink {
            sink.progress(0);
        }
        if expected == 0 {
            tee.complete();
        }
        tee
    }

    fn complete(&mut self) {
        if let Some(sink) = self.sink.take() {
            let keep = sink.complete(std::mem::take(&mut self.copy).freeze());
            self.keeping = Some(SyncWrapper::new(keep));
        }
    }

    fn abandon(&mut self) {
        self.sink = None;
        self.copy = BytesMut::new();
    }

    /// Runs the sink's work on; `Ready` once there is none left.
    fn poll_keeping(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(keep) = self.keeping.as_mut() {
            std::task::ready!(keep.get_mut().as_mut().poll(cx));
            self.keeping = None;
        }
        Poll::Ready(())
    }
}

impl<S: TeeSink + Unpin> HttpBody for Tee<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        std::task::ready!(this.poll_keeping(cx));
        if let Some(frame) = this.held.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), true) = (frame.data_ref(), this.sink.is_some()) {
                    this.seen += data.len() as u64;
                    if this.seen > this.expected {
                        this.abandon();
                    } else {
                        this.copy.extend_from_slice(data);
                        if this.seen == this.expected && this.inner.is_end_stream() {
                            this.complete();
                            if this.poll_keeping(cx).is_pending() {
                                if let Poll::Ready(Some(Ok(frame))) = polled {
                                    this.held = Some(frame);
                                }
                                return Poll::Pending;
                            }
                        } else {
                            this.awaiting_end = this.seen == this.expected;
                            if let Some(sink) = &this.sink {
                                sink.progress(this.seen);
                            }
                        }
                    }
                }
            }
            Poll::Ready(None) if this.awaiting_end && this.sink.is_some() => {
                this.complete();
                if this.poll_keeping(cx).is_pending() {
                    this.ended = true;
                    return Poll::Pending;
                }
            }
            // Cut short or failed: nothing is kept; the error reaches the client.
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.abandon(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || (self.held.is_none() && self.keeping.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let held = self
            .held
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |d| d.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

impl<S: TeeSink> Drop for Tee<S> {
    /// A client gone while the copy was being kept: the keeping still finishes, on a task
    /// of its own (the copy was complete).
    fn drop(&mut self) {
        if let Some(keep) = self.keeping.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(keep.into_inner());
            }
        }
    }
}

/// Bytes already read, then the rest of the body.
pub struct Prefixed {
    prefix: Option<Bytes>,
    rest: Body,
}

impl Prefixed {
    pub fn new(prefix: Bytes, rest: Body) -> Prefixed {
        Prefixed {
            prefix: Some(prefix),
            rest,
        }
    }
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let p = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let r = self.rest.size_hint();
        let mut h = SizeHint::new();
        h.set_lower(r.lower() + p);
        if let Some(u) = r.upper() {
            h.set_upper(u + p);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn stalled_body_errors_after_idle_timeout() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = tokio_stream_from(rx);
        let mut body = IdleTimeout::new(StreamBody::new(stream), Duration::from_secs(5));
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .await
            .unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        // The frame's own wait ended; the stall is measured from the next one (paused clock).
        tokio::time::sleep(Duration::from_secs(4)).await;
        let waiting = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("stalled"), "{err}");
        assert_eq!(waiting.elapsed(), Duration::from_secs(5));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn origin_slower_in_total_than_the_idle_timeout_but_never_silent_that_long_is_not_cut() {
        let idle = Duration::from_secs(5);
        let mut body = IdleTimeout::new(on_demand_origin(8, idle * 4 / 5), idle);
        for _ in 0..8 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "chunk");
        }
        assert!(body.frame().await.is_none());
    }

    /// An origin like hyper's client body: the next chunk is read from the socket only
    /// once the body is polled, so it arrives a little after it is asked for.
    fn on_demand_origin(
        chunks: usize,
        delay: Duration,
    ) -> impl HttpBody<Data = Bytes, Error = BoxError> + Unpin {
        let mut left = chunks;
        let mut pending: Option<Pin<Box<Sleep>>> = None;
        let stream = futures_util::stream::poll_fn(move |cx| {
            if left == 0 {
                return Poll::Ready(None);
            }
            let sleep = pending.get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    pending = None;
                    left -= 1;
                    Poll::Ready(Some(Ok::<_, BoxError>(Frame::data(Bytes::from_static(
                        b"chunk",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            }
        });
        StreamBody::new(Box::pin(stream))
    }

    #[tokio::test(start_paused = true)]
    async fn slow_reader_is_not_mistaken_for_a_stalled_origin() {
        let idle = Duration::from_secs(5);
        let mut body = IdleTimeout::new(on_demand_origin(3, Duration::from_millis(10)), idle);
        for _ in 0..3 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "chunk");
            // The client pauses far longer than the idle timeout before reading on.
            tokio::time::sleep(idle * 4).await;
        }
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn guard_lives_until_the_body_is_dropped() {
        struct Flag(#[allow(dead_code)] std::sync::Arc<()>);
        impl Progress for Flag {
            fn progress(&self, _waiting: bool) {}
        }
        let flag = std::sync::Arc::new(());
        let body = Served::new(crate::http::full("x"), Flag(flag.clone()));
        assert_eq!(std::sync::Arc::strong_count(&flag), 2);
        assert_eq!(body.size_hint().exact(), Some(1));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "x");
        assert_eq!(std::sync::Arc::strong_count(&flag), 1);
    }

    #[tokio::test]
    async fn an_error_is_held_back_one_poll_then_passed_on() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err("origin reset".into()),
        ];
        let mut body = Served::new(StreamBody::new(futures_util::stream::iter(frames)), ());
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "part");
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(!body.is_end_stream());
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Err(e))) => assert_eq!(e.to_string(), "origin reset"),
            _ => panic!("the held error comes next"),
        }
    }

    /// Frames whose end the body knows (as a `Content-Length` body does): it says it
    /// ended as soon as its last frame was taken.
    struct Framed(std::collections::VecDeque<Bytes>);

    impl HttpBody for Framed {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    /// A body of `frames` that says nothing of its end until it is polled past its last
    /// frame (as a chunked body does).
    fn unframed(frames: &[&'static str]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = frames
            .iter()
            .map(|f| Ok(Frame::data(Bytes::from_static(f.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    #[tokio::test]
    async fn tee_keeps_a_body_whose_end_was_not_known_only_once_it_ended() {
        let (release, gate) = tokio::sync::oneshot::channel();
        let kept = Arc::new(AtomicBool::new(false));
        let sink = Gated {
            release: gate,
            kept: kept.clone(),
        };
        let mut tee = Tee::new(unframed(&["abc", "def"]), 6, sink);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for want in ["abc", "def"] {
            match Pin::new(&mut tee).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => assert_eq!(f.into_data().unwrap(), want),
                _ => panic!("{want} passes on"),
            }
        }
        // Its end came: the copy is being kept, and the end is held until it is.
        assert!(Pin::new(&mut tee).poll_frame(&mut cx).is_pending());
        assert!(!kept.load(Ordering::SeqCst));
        release.send(()).unwrap();
        assert!(matches!(
            Pin::new(&mut tee).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
        assert!(kept.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn tee_keeps_nothing_of_a_body_that_goes_on_past_the_expected_bytes() {
        // Chunks under a `Content-Length` of 6: six bytes passed, but the body's own
        // framing had not ended, and more came.
        let kept = Arc::new(AtomicBool::new(false));
        let (_release, gate) = tokio::sync::oneshot::channel();
        let sink = Gated {
            release: gate,
            kept: kept.clone(),
        };
        let tee = Tee::new(unframed(&["abc", "def", "ghi"]), 6, sink);
        assert_eq!(
            tee.collect().await.unwrap().to_bytes(),
            &b"abcdefghi"[..],
            "passed on unchanged"
        );
        tokio::task::yield_now().await;
        assert!(!kept.load(Ordering::SeqCst), "nothing kept");
    }

    /// A sink whose keeping waits for `release`, and tells `kept` when it ran to its end.
    struct Gated {
        release: tokio::sync::oneshot::Receiver<()>,
        kept: Arc<AtomicBool>,
    }

    impl TeeSink for Gated {
        fn progress(&self, _seen: u64) {}
        fn complete(self, data: Bytes) -> Keep {
            assert_eq!(data, "abcdef");
            Box::pin(async move {
                let _ = self.release.await;
                self.kept.store(true, Ordering::SeqCst);
            })
        }
    }

    /// A tee over "abc" + "def" whose first frame was read and whose last one is held
    /// while the copy is kept: the tee, the gate that lets the keeping end, its flag.
    async fn tee_held_at_its_last_frame() -> (
        Tee<Gated>,
        tokio::sync::oneshot::Sender<()>,
        Arc<AtomicBool>,
    ) {
        let body = Framed(
            [Bytes::from_static(b"abc"), Bytes::from_static(b"def")]
                .into_iter()
                .collect(),
        )
        .boxed();
        let (release, gate) = tokio::sync::oneshot::channel();
        let kept = Arc::new(AtomicBool::new(false));
        let sink = Gated {
            release: gate,
            kept: kept.clone(),
        };
        let mut tee = Tee::new(body, 6, sink);
        let first = tee.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut tee).poll_frame(&mut cx).is_pending());
        (tee, release, kept)
    }

    #[tokio::test]
    async fn tee_hands_on_the_last_frame_only_after_the_copy_is_kept() {
        let (mut tee, release, kept) = tee_held_at_its_last_frame().await;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // The last frame is read but held while the copy is being kept.
        assert!(!kept.load(Ordering::SeqCst));
        assert!(!tee.is_end_stream());
        assert_eq!(tee.size_hint().lower(), 3);
        assert!(Pin::new(&mut tee).poll_frame(&mut cx).is_pending());
        release.send(()).unwrap();
        match Pin::new(&mut tee).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => assert_eq!(frame.into_data().unwrap(), "def"),
            _ => panic!("the held frame comes once the copy is kept"),
        }
        assert!(kept.load(Ordering::SeqCst));
        assert!(tee.frame().await.is_none());
    }

    #[tokio::test]
    async fn tee_dropped_while_keeping_still_keeps_the_copy() {
        let (tee, release, kept) = tee_held_at_its_last_frame().await;
        // The client goes away with the last frame unread: the copy was complete.
        drop(tee);
        release.send(()).unwrap();
        for _ in 0..100 {
            if kept.load(Ordering::SeqCst) {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the keeping did not finish after the tee was dropped");
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
