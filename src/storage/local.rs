//! The local folder backend: `{local_root}/{tracking}.pdf`, the Django app's old
//! `media/shipping_labels/` layout. Streamed from disk in 64 KiB frames with the same
//! semantics as the S3 backend; writes go to a temp file then are linked into place, so a
//! reader never sees half a label and an existing label is never replaced unless asked.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::HeaderValue;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::{Fetch, GetRequest, Listed, ObjectHead, PutOutcome, StorageError, MAX_DELETE_BATCH};
use crate::config::StorageConfig;
use crate::http::{empty, Body, BoxError};
use crate::tracking::Tracking;

const CHUNK: usize = 64 * 1024;

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(cfg: &StorageConfig) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&cfg.local_root)?;
        Ok(LocalStore {
            root: cfg.local_root.clone(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, tracking: &Tracking) -> PathBuf {
        self.root.join(format!("{tracking}.pdf"))
    }

    pub async fn get(&self, req: GetRequest<'_>) -> Result<Fetch, StorageError> {
        let path = self.path(&req.tracking);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Fetch::NotFound),
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata().await?;
        if !meta.is_file() {
            return Ok(Fetch::NotFound);
        }
        let size = meta.len();
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let secs = mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // nginx's shape of ETag: mtime and size, so it changes whenever the file does.
        let etag = HeaderValue::try_from(format!("\"{secs:x}-{size:x}\"")).ok();
        let last_modified = HeaderValue::try_from(httpdate::fmt_http_date(mtime)).ok();
        let range = match req.range {
            None => None,
            Some(spec) => match spec.resolve(size) {
                Some(r) => Some((r.start, r.end)),
                None => return Ok(Fetch::RangeNotSatisfiable { size: Some(size) }),
            },
        };
        let (start, len) = match range {
            Some((a, b)) => (a, b - a + 1),
            None => (0, size),
        };
        let head = ObjectHead {
            content_length: len,
            total_size: size,
            range,
            etag,
            last_modified,
        };
        if req.head_only {
            return Ok(Fetch::Found {
                head,
                body: empty(),
            });
        }
        if start > 0 {
            file.seek(SeekFrom::Start(start)).await?;
        }
        let stream = ReaderStream::with_capacity(file.take(len), CHUNK)
            .map_ok(Frame::data)
            .map_err(|e| -> BoxError { Box::new(e) });
        Ok(Fetch::Found {
            head,
            body: FileBody {
                inner: StreamBody::new(stream),
                remaining: len,
            }
            .boxed(),
        })
    }

    pub async fn put(
        &self,
        tracking: &Tracking,
        mut body: Body,
        len: u64,
        overwrite: bool,
    ) -> Result<PutOutcome, StorageError> {
        let dest = self.path(tracking);
        if !overwrite && tokio::fs::try_exists(&dest).await? {
            return Ok(PutOutcome::AlreadyExists);
        }
        let tmp = self.root.join(format!(
            ".{tracking}.pdf.{}.{}.tmp",
            std::process::id(),
            rand::random::<u32>()
        ));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut written: u64 = 0;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| std::io::Error::other(e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    written += data.len() as u64;
                    if written > len {
                        return Err(std::io::Error::other("body longer than its Content-Length"));
                    }
                    file.write_all(&data).await?;
                }
            }
            if written != len {
                return Err(std::io::Error::other(
                    "body shorter than its Content-Length",
                ));
            }
            file.sync_all().await?;
            Ok::<_, std::io::Error>(())
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        let outcome = if overwrite {
            tokio::fs::rename(&tmp, &dest).await.map(|_| true)
        } else {
            // A hard link fails when the name exists: no window in which two writers both win.
            match tokio::fs::hard_link(&tmp, &dest).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        };
        let _ = tokio::fs::remove_file(&tmp).await;
        match outcome? {
            true => {
                let meta = tokio::fs::metadata(&dest).await?;
                let secs = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                Ok(PutOutcome::Created {
                    etag: Some(format!("\"{secs:x}-{:x}\"", meta.len())),
                })
            }
            false => Ok(PutOutcome::AlreadyExists),
        }
    }

    /// One page of the folder's files in name order: at most `max` after the name `after`.
    pub async fn list(
        &self,
        after: Option<&str>,
        max: u32,
    ) -> Result<(Vec<Listed>, Option<String>), StorageError> {
        let mut dir = tokio::fs::read_dir(&self.root).await?;
        let mut files = Vec::new();
        while let Some(entry) = dir.next_entry().await? {
            let meta = entry.metadata().await?;
            // Names that are not UTF-8 cannot be labels; temp files of writes in flight
            // start with a dot.
            match entry.file_name().into_string() {
                Ok(name)
                    if meta.is_file()
                        && !name.starts_with('.')
                        && after.is_none_or(|a| name.as_str() > a) =>
                {
                    files.push((name, meta.len(), meta.modified().ok()));
                }
                _ => {}
            }
        }
        files.sort_unstable();
        let more = files.len() > max as usize;
        files.truncate(max as usize);
        let next = more
            .then(|| files.last().map(|(n, ..)| n.clone()))
            .flatten();
        let listed = files
            .into_iter()
            .map(|(key, size, last_modified)| Listed {
                tracking: key
                    .strip_suffix(".pdf")
                    .and_then(|t| Tracking::parse(t).ok()),
                key,
                etag: None,
                size,
                last_modified,
            })
            .collect();
        Ok((listed, next))
    }

    /// Removes `{root}/{tracking}.pdf` for each label; one already gone counts as removed.
    pub async fn delete_many(
        &self,
        labels: &[Tracking],
    ) -> Result<Vec<(Tracking, String)>, StorageError> {
        if labels.len() > MAX_DELETE_BATCH {
            return Err(StorageError::Protocol(format!(
                "at most {MAX_DELETE_BATCH} labels per delete, not {}",
                labels.len()
            )));
        }
        let mut failed = Vec::new();
        for tracking in labels {
            match tokio::fs::remove_file(self.path(tracking)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => failed.push((*tracking, e.to_string())),
            }
        }
        Ok(failed)
    }

    pub async fn probe(&self) -> Result<(), StorageError> {
        let meta = tokio::fs::metadata(&self.root).await?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(StorageError::Protocol(format!(
                "{} is not a folder",
                self.root.display()
            )))
        }
    }
}

/// A file's bytes, which say they ended once `remaining` reached 0: the file's length is
/// this body's framing, so a reader that stops at the length (hyper under a
/// `Content-Length`) still sees a complete body, and the cache tee keeps the label.
struct FileBody<S> {
    inner: StreamBody<S>,
    remaining: u64,
}

impl<S> http_body::Body for FileBody<S>
where
    S: futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
                self.remaining = self.remaining.saturating_sub(n);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
}
