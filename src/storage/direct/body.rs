//! An answer's body, read from its storage connection by the task that passes it on,
//! under a receive watermark when it is large.
// Numbers a peer sent are only ever used through checked or saturating arithmetic.
#![deny(clippy::arithmetic_side_effects)]
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::{Conn, Direct, Stream, READ_SIZE, TLS_RECORD, WATERMARK, WATERMARK_CHECK};
use crate::http::BoxError;

/// A response body read from its storage connection; the connection goes back to the
/// pool once the body has been read to its end.
pub struct DirectBody {
    pub(super) conn: Option<Conn>,
    /// Bytes still to come; `None`: until the connection ends.
    pub(super) remaining: Option<u64>,
    pub(super) keep_alive: bool,
    pub(super) pool: Arc<Direct>,
    /// For a body larger than one read: how its socket is woken.
    pub(super) watermark: Option<Watermark>,
}

/// A body larger than one read waits for a receive watermark (`SO_RCVLOWAT`): the socket
/// reports readable once 128 KiB (or the body's rest) have arrived instead of at every
/// segment the origin writes, so a label wakes its task, and crosses into hyper and out to
/// the client, in fewer and larger steps: a 50 KiB label usually in one. An origin that
/// sends slowly (no byte for a check's 50 ms while waiting) drops the watermark for the
/// rest of the body: it must never look stalled to the idle-body timeout.
#[derive(Default)]
pub(super) struct Watermark {
    /// Checks the wait while the watermark is up; armed at the first wait.
    check: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether bytes arrived since the last check.
    moved: bool,
    /// The origin was slow: no watermark for this body.
    off: bool,
}

impl DirectBody {
    /// The body is complete: its connection is reusable (or closed).
    pub(super) fn finish(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if self.keep_alive && conn.buf.is_empty() && conn.set_lowat(1) {
                self.pool.checkin(conn);
            }
        }
    }

    /// A read would wait: sets the watermark this wait asks for (only now, so reads of
    /// bytes already there cost no system call), and checks, every 50 ms of waiting, that
    /// bytes still arrive under it; drops it for the body's rest when none did. Lowering it
    /// makes the kernel signal what already arrived.
    fn wait_under_watermark(&mut self, cx: &mut Context<'_>) {
        let (Some(w), Some(conn), Some(rest)) =
            (self.watermark.as_mut(), self.conn.as_mut(), self.remaining)
        else {
            return;
        };
        if w.off {
            return;
        }
        // Over TLS the rest counts plaintext, and part of it may already sit in rustls as
        // an undecrypted partial record: ask for a record less, so the watermark is never
        // more than what is still to come on the wire.
        let rest = match conn.io {
            Stream::Plain(_) => rest,
            Stream::Tls(_) => rest.saturating_sub(TLS_RECORD),
        };
        if !conn.set_lowat(rest.clamp(1, WATERMARK)) {
            w.off = true;
            return;
        }
        if conn.lowat <= 1 {
            return;
        }
        let check = w.check.get_or_insert_with(|| {
            w.moved = false;
            Box::pin(tokio::time::sleep(WATERMARK_CHECK))
        });
        while check.as_mut().poll(cx).is_ready() {
            if !w.moved {
                // Lowering it makes the kernel signal what already arrived.
                w.off = true;
                conn.set_lowat(1);
                return;
            }
            w.moved = false;
            check.as_mut().reset(
                tokio::time::Instant::now()
                    .checked_add(WATERMARK_CHECK)
                    .unwrap_or_else(tokio::time::Instant::now),
            );
        }
    }
}

/// A body that ended early.
#[derive(Debug, thiserror::Error)]
#[error("storage closed the connection with {0} bytes of the body still to come")]
pub struct CutShort(pub u64);

impl http_body::Body for DirectBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if this.remaining == Some(0) {
                this.finish();
                return Poll::Ready(None);
            }
            if !conn.buf.is_empty() {
                let take = match this.remaining {
                    Some(r) => r.min(conn.buf.len() as u64) as usize,
                    None => conn.buf.len(),
                };
                let chunk = conn.buf.split_to(take).freeze();
                if let Some(r) = this.remaining.as_mut() {
                    *r = r.saturating_sub(take as u64);
                    if *r == 0 {
                        this.finish();
                    }
                }
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            conn.buf.reserve(READ_SIZE);
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf) {
                Poll::Pending => {
                    this.wait_under_watermark(cx);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => {
                    this.conn = None;
                    return match this.remaining {
                        None => Poll::Ready(None),
                        Some(left) => Poll::Ready(Some(Err(Box::new(CutShort(left))))),
                    };
                }
                Poll::Ready(Ok(_)) => {
                    if let Some(w) = this.watermark.as_mut() {
                        w.moved = true;
                    }
                }
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
