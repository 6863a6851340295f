//! A batch's answer as it streams: the producer task that fetches labels ahead and writes
//! each into the merged PDF or the ZIP, and the response body that hands on what it sends
//! (ending in an error unless the producer finished).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::HeaderValue;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::task::AbortOnDropHandle;

use super::super::whole::{Labels, Whole};
use super::super::BatchFormat;
use super::{too_large, BatchStats};
use crate::batch::pdf::Merger;
use crate::batch::zip::ZipWriter;
use crate::error::GatewayError;
use crate::http::{Body, BoxError};
use crate::tracking::Tracking;

/// Labels' worth of output waiting between the producer and the response: the producer
/// runs at most this far ahead of what the client has taken.
pub(super) const CHANNEL_LABELS: usize = 2;

/// Labels up to this size are merged on the producer's own task (about 65 µs of parsing
/// at most); larger ones on the blocking pool, off the async workers.
const INLINE_MERGE_BYTES: usize = 256 * 1024;

/// What the producer hands the response: one label's chunks, or the last ones. A channel
/// that closes before `Last` (the producer failed or died) ends the body in an error, so
/// the client never takes a cut answer for a complete one.
pub(super) enum Message {
    Label(Vec<Bytes>),
    Last(Vec<Bytes>),
}

/// Where a planned label's bytes come from.
pub(super) enum Origin {
    /// The hot cache or storage: read when its turn comes.
    Stored,
    /// Regenerated while planning (storage gets it in the background).
    Regenerated(Bytes),
}

/// A label's bytes on their way to the writer.
enum Pending {
    Ready(Bytes),
    Fetching(AbortOnDropHandle<Result<Whole, GatewayError>>),
}

/// The response body: `first`, then what the producer sends, ending in an error unless
/// the producer's `Last` arrived.
pub(super) fn body_from(
    first: Message,
    mut rx: mpsc::Receiver<Result<Message, GatewayError>>,
) -> Body {
    let mut ended = false;
    let rest = futures_util::stream::poll_fn(move |cx| match rx.poll_recv(cx) {
        std::task::Poll::Ready(None) if !ended => {
            ended = true;
            std::task::Poll::Ready(Some(Err(GatewayError::BadGateway(
                "the batch stopped before its end".into(),
            ))))
        }
        other => other,
    });
    let frames = futures_util::stream::once(async move { Ok(first) })
        .chain(rest)
        .scan(false, |done, message| {
            let frames: Vec<Result<Frame<Bytes>, BoxError>> = match message {
                _ if *done => Vec::new(),
                Ok(Message::Label(chunks)) => {
                    chunks.into_iter().map(|c| Ok(Frame::data(c))).collect()
                }
                Ok(Message::Last(chunks)) => {
                    *done = true;
                    chunks.into_iter().map(|c| Ok(Frame::data(c))).collect()
                }
                Err(e) => vec![Err(BoxError::from(e))],
            };
            std::future::ready(Some(futures_util::stream::iter(frames)))
        })
        .flatten();
    BodyExt::boxed(StreamBody::new(frames))
}

/// The task that writes a batch: fetches ahead, writes each label as its turn comes,
/// and stops as soon as the client is gone. It holds the batch's slot until it ends.
pub(super) struct Producer {
    pub(super) labels: Labels,
    pub(super) stats: Arc<BatchStats>,
    pub(super) fetch_ahead: usize,
    pub(super) max_label_bytes: u64,
    pub(super) request_id: HeaderValue,
    pub(super) tx: mpsc::Sender<Result<Message, GatewayError>>,
    pub(super) _slot: OwnedSemaphorePermit,
}

/// The answer being written.
enum Output {
    Pdf(Merger),
    Zip(ZipWriter),
}

impl Producer {
    pub(super) async fn run(self, items: Vec<(Tracking, Origin)>, format: BatchFormat) {
        let mut output = match format {
            BatchFormat::Pdf => Output::Pdf(Merger::new()),
            BatchFormat::Zip => Output::Zip(ZipWriter::new(std::time::SystemTime::now())),
        };
        let mut items = items.into_iter();
        let mut ahead: VecDeque<(Tracking, Pending)> = VecDeque::with_capacity(self.fetch_ahead);
        let mut written = 0usize;
        loop {
            while ahead.len() < self.fetch_ahead {
                let Some((t, origin)) = items.next() else {
                    break;
                };
                ahead.push_back((t, self.fetch(t, origin)));
            }
            let Some((tracking, pending)) = ahead.pop_front() else {
                break;
            };
            let chunks = match self.bytes_of(tracking, pending).await {
                Ok(bytes) => output.add(tracking, bytes).await,
                Err(e) => Err(e),
            };
            let chunks = match chunks {
                Ok(chunks) => chunks,
                Err(e) => return self.fail(tracking, written, e).await,
            };
            if self.tx.send(Ok(Message::Label(chunks))).await.is_err() {
                return self.abandoned(written);
            }
            written += 1;
            self.stats.labels.fetch_add(1, Ordering::Relaxed);
        }
        let tail = match output {
            Output::Pdf(m) => m.finish(),
            Output::Zip(z) => z.finish(),
        };
        let last = Message::Last(vec![Bytes::from(tail)]);
        if self.tx.send(Ok(last)).await.is_err() {
            self.abandoned(written);
        }
    }

    /// Starts reading a stored label in its own task (so it keeps moving, and a single
    /// request waiting on the same fill lock is never held up by this batch's client).
    fn fetch(&self, tracking: Tracking, origin: Origin) -> Pending {
        match origin {
            Origin::Regenerated(bytes) => Pending::Ready(bytes),
            Origin::Stored => {
                let labels = self.labels.clone();
                let max = self.max_label_bytes;
                Pending::Fetching(AbortOnDropHandle::new(tokio::spawn(async move {
                    labels.load(tracking, max).await
                })))
            }
        }
    }

    async fn bytes_of(&self, tracking: Tracking, pending: Pending) -> Result<Bytes, GatewayError> {
        let whole = match pending {
            Pending::Ready(bytes) => return Ok(bytes),
            Pending::Fetching(task) => task.await.map_err(|e| {
                GatewayError::BadGateway(format!("label {tracking}: reading it failed: {e}"))
            })??,
        };
        match whole {
            Whole::Bytes(bytes) => Ok(bytes),
            Whole::TooLarge { size } => Err(too_large(tracking, size, self.max_label_bytes)),
            // It was there when the batch was planned.
            Whole::Absent => Err(GatewayError::BadGateway(format!(
                "label {tracking} disappeared from storage during the batch"
            ))),
        }
    }

    /// A label failed: before the answer started, the error is the answer; after, the
    /// response is cut and the log says why.
    async fn fail(&self, tracking: Tracking, written: usize, e: GatewayError) {
        if written > 0 {
            self.stats.cut.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                request_id = self.request_id.to_str().unwrap_or("-"),
                %tracking,
                written,
                error = %e,
                "batch cut short: the client gets a broken download, not a short file"
            );
        }
        let _ = self.tx.send(Err(e)).await;
    }

    fn abandoned(&self, written: usize) {
        self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            request_id = self.request_id.to_str().unwrap_or("-"),
            written,
            "batch abandoned by its client: fetching stopped"
        );
    }
}

impl Output {
    /// The chunks that carry `bytes` into the answer.
    async fn add(&mut self, tracking: Tracking, bytes: Bytes) -> Result<Vec<Bytes>, GatewayError> {
        let unreadable = |reason: String| GatewayError::UnreadableLabel { tracking, reason };
        match self {
            Output::Pdf(merger) => {
                // A parser panic on a hostile file fails this label (and its batch) only.
                let added = if bytes.len() <= INLINE_MERGE_BYTES {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| merger.add(&bytes)))
                        .map_err(|_| unreadable("the PDF parser failed on it".into()))?
                } else {
                    // A large label takes milliseconds to parse: off the async workers.
                    let mut taken = std::mem::take(merger);
                    let (taken, added) = tokio::task::spawn_blocking(move || {
                        let added = taken.add(&bytes);
                        (taken, added)
                    })
                    .await
                    .map_err(|_| unreadable("the PDF parser failed on it".into()))?;
                    *merger = taken;
                    added
                };
                let chunk = added.map_err(|e| unreadable(e.0))?;
                Ok(vec![Bytes::from(chunk)])
            }
            Output::Zip(zip) => {
                if !bytes.starts_with(b"%PDF-") {
                    return Err(unreadable("it does not start with %PDF-".into()));
                }
                let header = zip
                    .add(&format!("{tracking}.pdf"), &bytes)
                    .map_err(|e| unreadable(e.to_string()))?;
                Ok(vec![Bytes::from(header), bytes])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_whose_producer_stops_before_the_last_chunk_ends_in_an_error() {
        let chunk = |s: &'static str| vec![Bytes::from_static(s.as_bytes())];
        let (tx, rx) = mpsc::channel(2);
        tx.send(Ok(Message::Label(chunk("b")))).await.unwrap();
        tx.send(Ok(Message::Last(chunk("c")))).await.unwrap();
        drop(tx);
        let whole = body_from(Message::Label(chunk("a")), rx).collect().await;
        assert_eq!(whole.unwrap().to_bytes(), "abc");

        let (tx, rx) = mpsc::channel(2);
        tx.send(Ok(Message::Label(chunk("b")))).await.unwrap();
        drop(tx);
        let cut = body_from(Message::Label(chunk("a")), rx).collect().await;
        assert!(
            cut.is_err(),
            "a producer gone before Last must not look complete"
        );
    }
}
