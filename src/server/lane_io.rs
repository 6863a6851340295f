//! The lane's side of a connection's socket: [`LaneIo`], what the lane asks of it (read
//! and write readiness, reads and writes that never wait, all through a shared borrow, as
//! `TcpStream` offers them), and the two views of it hyper gets: [`Shared`] (one handed
//! request's bytes, between the lane's turns) and [`Rewind`] (the rest of the connection,
//! for good). Production monomorphises all of it for `TcpStream`, whose own methods the
//! trait's calls are; [`Polled`] gives any in-memory `AsyncRead + AsyncWrite` stream the
//! same shape for the differential check (`server::differential`) and tests.
// Numbers a peer sent are only ever used through checked or saturating arithmetic.
#![deny(clippy::arithmetic_side_effects)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::lane::Handed;

/// What the lane needs of a connection's stream: `TcpStream`'s readiness and non-waiting
/// reads and writes, through `&self` (the lane and hyper share one borrow of it).
pub(crate) trait LaneIo: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize>;
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;
}

impl LaneIo for TcpStream {
    #[inline(always)]
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    #[inline(always)]
    fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }

    #[inline(always)]
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }

    #[inline(always)]
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }

    #[inline(always)]
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        TcpStream::writable(self)
    }
}

/// The connection as hyper sees it between the lane's turns: the handed request's bytes
/// (what the lane read first, then the socket, never past the request's end), and the
/// socket to write to. The lane reads and writes the same socket while hyper waits.
pub(super) struct Shared<'a, S> {
    pub(super) stream: &'a S,
    pub(super) handed: &'a Handed,
}

impl<S: LaneIo> AsyncRead for Shared<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let handed = self.handed;
        {
            let mut prefix = handed.lock();
            if !prefix.is_empty() {
                let n = prefix.len().min(out.remaining());
                out.put_slice(&prefix[..n]);
                prefix.advance(n);
                return Poll::Ready(Ok(()));
            }
        }
        let remaining = handed.remaining.load(Ordering::Relaxed);
        if remaining == 0 {
            // The next request is the lane's: hyper waits here until the lane hands it
            // another (nothing wakes it: the lane polls it then).
            handed.read_past.store(true, Ordering::Relaxed);
            return Poll::Pending;
        }
        let room = (out.remaining() as u64).min(remaining) as usize;
        loop {
            std::task::ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read_buf(&mut (&mut *out).limit(room)) {
                Ok(n) => {
                    handed
                        .remaining
                        .store(remaining.saturating_sub(n as u64), Ordering::Relaxed);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<S: LaneIo> AsyncWrite for Shared<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.handed.unflushed.store(true, Ordering::Relaxed);
        loop {
            std::task::ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the socket: once hyper flushes, all it wrote is there.
        self.handed.unflushed.store(false, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper is closing the connection: the lane ends it when hyper's future does.
        Poll::Ready(Ok(()))
    }
}

/// The connection hyper serves for good: `prefix` (what the lane already read), then the
/// socket.
pub(super) struct Rewind<S> {
    pub(super) prefix: Bytes,
    pub(super) stream: S,
}

impl<S: LaneIo> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(out.remaining());
            out.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, out)
    }
}

impl<S: LaneIo> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Any `AsyncRead + AsyncWrite` stream (`tokio::io::duplex`, a scripted stream) as a
/// [`LaneIo`]: readiness is a read made ahead into a small stash (or its end), and write
/// readiness is "the last write did not wait, or the stream woke us since". For tests and
/// the differential check only; production serves `TcpStream` itself.
pub(crate) struct Polled<S> {
    inner: Mutex<Inner<S>>,
    writable: Arc<WriteReady>,
}

struct Inner<S> {
    io: S,
    /// Read ahead by a readiness check, not yet taken.
    stash: BytesMut,
    eof: bool,
}

/// Write readiness: cleared when a write waits, set (and the task woken) by the stream.
struct WriteReady {
    ready: AtomicBool,
    task: AtomicWaker,
}

impl Wake for WriteReady {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<S> Polled<S> {
    pub(crate) fn new(io: S) -> Polled<S> {
        Polled {
            inner: Mutex::new(Inner {
                io,
                stash: BytesMut::new(),
                eof: false,
            }),
            writable: Arc::new(WriteReady {
                ready: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<S: AsyncRead + Unpin> Inner<S> {
    /// Something to read (or the end) is in the stash, or `Pending` with `cx` registered.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.stash.is_empty() || self.eof {
            return Poll::Ready(Ok(()));
        }
        let mut room = [0u8; 8192];
        let mut read = ReadBuf::new(&mut room);
        std::task::ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        if read.filled().is_empty() {
            self.eof = true;
        }
        self.stash.extend_from_slice(read.filled());
        Poll::Ready(Ok(()))
    }

    /// Takes what is stashed into `out` (or says the end: `Ok(0)`).
    fn take(&mut self, out: &mut impl BufMut) -> usize {
        let n = self.stash.len().min(out.remaining_mut());
        out.put_slice(&self.stash[..n]);
        self.stash.advance(n);
        n
    }
}

impl<S> LaneIo for Polled<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.lock().fill(cx)
    }

    fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        let mut inner = self.lock();
        match inner.fill(&mut Context::from_waker(Waker::noop())) {
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Ready(Ok(())) => Ok(inner.take(buf)),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writable.task.register(cx.waker());
        if self.writable.ready.load(Ordering::Acquire) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.writable.ready.store(false, Ordering::Release);
        let waker = Waker::from(self.writable.clone());
        let mut inner = self.lock();
        match Pin::new(&mut inner.io).poll_write_vectored(&mut Context::from_waker(&waker), bufs) {
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            Poll::Ready(done) => {
                self.writable.ready.store(true, Ordering::Release);
                done
            }
        }
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        std::future::poll_fn(|cx| self.poll_write_ready(cx))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Polled<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        std::task::ready!(inner.fill(cx))?;
        inner.take(out);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Polled<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.lock().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.lock().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.lock().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.lock().io).poll_shutdown(cx)
    }
}
