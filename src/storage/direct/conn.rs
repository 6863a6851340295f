//! One storage connection's socket: its receive watermark, whether an idle one is still
//! open, and reads and writes over plain TCP or TLS.
// Numbers a peer sent are only ever used through checked or saturating arithmetic.
#![deny(clippy::arithmetic_side_effects)]
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{Conn, Stream};

/// `SO_RCVLOWAT` on a TCP socket (Linux: honoured by `epoll` since 4.x).
#[cfg(target_os = "linux")]
fn set_rcvlowat(tcp: &TcpStream, bytes: u64) -> bool {
    use std::os::fd::AsRawFd;
    let value = bytes.min(i32::MAX as u64) as libc::c_int;
    // SAFETY: a plain integer option on a socket this connection owns.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn set_rcvlowat(_tcp: &TcpStream, bytes: u64) -> bool {
    bytes <= 1
}

impl Conn {
    /// Sets the socket's receive watermark (`SO_RCVLOWAT`) unless it is already `bytes`;
    /// `false` if the system refused.
    pub(super) fn set_lowat(&mut self, bytes: u64) -> bool {
        if self.lowat == bytes {
            return true;
        }
        let tcp = match &self.io {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        };
        if !set_rcvlowat(tcp, bytes) {
            return false;
        }
        self.lowat = bytes;
        true
    }

    /// Whether an idle connection is still usable: nothing to read and no end of stream
    /// (a server that closed it, or sent anything unasked, makes it unusable).
    pub(super) fn still_open(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut rb = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut rb),
            Poll::Pending
        )
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
