//! The label store behind one small interface, with two backends: `s3` (a SigV4-signed,
//! pooled client for Spaces or any S3-compatible server) and `local` (a folder of
//! `{tracking}.pdf`, the app's old layout).
//!
//! A fetch answers with an outcome value ([`Fetch`]); a missing label is an outcome, not
//! an error. [`StorageError`] is kept for faults: credentials, outages, timeouts.
//!
//! With `[storage.fallback]` set, the S3 store is wrapped in `fallback` (label reads fail
//! over to a second bucket, `breaker` says which goes first); everything else is the
//! primary's.

mod breaker;
#[doc(hidden)]
pub mod differential;
mod direct;
pub mod fallback;
pub mod local;
pub mod s3;
pub mod sigv4;

use http::HeaderValue;

use crate::config::{Backend, Config};
use crate::http::{Body, Conditions, RangeSpec};
use crate::tracking::Tracking;

/// What the gateway asks the store for.
#[derive(Debug, Clone, Copy)]
pub struct GetRequest<'a> {
    pub tracking: Tracking,
    /// A single range to ask for, already parsed.
    pub range: Option<RangeSpec>,
    /// Conditional headers, forwarded as they came.
    pub conditions: &'a Conditions,
    /// HEAD: the answer's body is empty.
    pub head_only: bool,
}

/// The response head of a found object.
#[derive(Debug, Clone)]
pub struct ObjectHead {
    /// Bytes in this response's body (the range length on a partial answer).
    pub content_length: u64,
    /// Size of the whole object.
    pub total_size: u64,
    /// `Some` when the body is a byte range: `(start, end)` inclusive.
    pub range: Option<(u64, u64)>,
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<HeaderValue>,
}

/// The outcome of a fetch.
pub enum Fetch {
    /// 200 or 206; `body` streams the bytes (empty for HEAD).
    Found { head: ObjectHead, body: Body },
    /// The store evaluated `If-None-Match`/`If-Modified-Since` itself.
    NotModified {
        etag: Option<HeaderValue>,
        last_modified: Option<HeaderValue>,
    },
    /// The store evaluated `If-Match`/`If-Unmodified-Since` itself.
    PreconditionFailed,
    /// The range starts past the end; `size` when the store told it.
    RangeNotSatisfiable { size: Option<u64> },
    /// No such label.
    NotFound,
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Created {
        etag: Option<String>,
    },
    /// `overwrite` was false and the label already existed.
    AlreadyExists,
}

/// One object of a store listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The object key (the file name in the local backend).
    pub key: String,
    /// The object's `ETag` as listed (quotes kept), when known.
    pub etag: Option<String>,
    /// The label's tracking number when the key is `{location}/{tracking}.pdf` with a
    /// valid one; anything else in the bucket is not a label.
    pub tracking: Option<Tracking>,
    pub size: u64,
    /// When the object was written (`LastModified`, or the file's mtime), when known.
    pub last_modified: Option<std::time::SystemTime>,
}

/// Labels one [`Storage::delete_many`] call deletes at most (S3's Multi-Object Delete limit).
pub const MAX_DELETE_BATCH: usize = 1000;

/// A storage fault. Messages name the S3 error code and the likely fix, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// 400/403 from the bucket: a credential, region or clock problem.
    #[error("storage refused the request: HTTP {status} {code}; {hint}")]
    Refused {
        status: u16,
        code: String,
        hint: &'static str,
    },
    /// The endpoint has no such bucket (told apart from a missing label, which S3 answers
    /// a HEAD with the same bare 404).
    #[error(
        "storage has no bucket {bucket:?} at {endpoint}: HTTP 404 NoSuchBucket; check \
         SPACES_BUCKET_NAME and SPACES_ENDPOINT_URL"
    )]
    NoSuchBucket { bucket: String, endpoint: String },
    /// 5xx or `SlowDown` after every attempt.
    #[error("storage unavailable: HTTP {status} {code}")]
    Unavailable { status: u16, code: String },
    #[error("cannot connect to storage: {0}")]
    Connect(String),
    #[error("storage did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("unexpected storage answer: {0}")]
    Protocol(String),
    #[error("local storage: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, StorageError::Timeout(_))
    }

    /// Whether the store failed rather than answered: no connection, no answer in time, a
    /// 5xx, a broken answer, a local read error. A refusal (400/403: credentials, region,
    /// clock) is an answer about the gateway's own setup, not an outage.
    pub fn is_outage(&self) -> bool {
        !matches!(self, StorageError::Refused { .. })
    }
}

/// The configured store.
pub enum Storage {
    Local(local::LocalStore),
    S3(Box<s3::S3Store>),
    /// S3 with a fallback bucket that reads fail over to.
    Fallback(Box<fallback::FallbackStore>),
}

impl Storage {
    /// Builds the configured backend (the local one creates its folder when missing).
    pub fn from_config(config: &Config) -> Result<Storage, StorageError> {
        Ok(match config.storage.backend {
            Backend::Local => Storage::Local(local::LocalStore::new(&config.storage)?),
            Backend::S3 if config.storage.fallback.enabled() => {
                Storage::Fallback(Box::new(fallback::FallbackStore::new(&config.storage)?))
            }
            Backend::S3 => Storage::S3(Box::new(s3::S3Store::new(&config.storage)?)),
        })
    }

    pub async fn get(&self, req: GetRequest<'_>) -> Result<Fetch, StorageError> {
        match self {
            Storage::Local(s) => s.get(req).await,
            Storage::S3(s) => s.get(req).await,
            Storage::Fallback(s) => s.get(req).await,
        }
    }

    /// Streams a label of `len` bytes into the store; never overwrites unless asked.
    pub async fn put(
        &self,
        tracking: &Tracking,
        body: Body,
        len: u64,
        overwrite: bool,
    ) -> Result<PutOutcome, StorageError> {
        match self {
            Storage::Local(s) => s.put(tracking, body, len, overwrite).await,
            Storage::S3(s) => s.put(tracking, body, len, overwrite).await,
            Storage::Fallback(s) => s.primary().put(tracking, body, len, overwrite).await,
        }
    }

    /// One page of the store's objects (at most `page_size`), and the token of the next
    /// page, if any. Pass `None` for the first page.
    pub async fn list(
        &self,
        after: Option<&str>,
        page_size: u32,
    ) -> Result<(Vec<Listed>, Option<String>), StorageError> {
        match self {
            Storage::Local(s) => s.list(after, page_size).await,
            Storage::S3(s) => s.list(after, page_size).await,
            Storage::Fallback(s) => s.primary().list(after, page_size).await,
        }
    }

    /// Deletes up to [`MAX_DELETE_BATCH`] labels at once. Only labels can be named (the
    /// keys are built from their tracking numbers); a label already gone counts as
    /// deleted. Returns the labels that could not be deleted and why; an error means the
    /// whole call failed.
    pub async fn delete_many(
        &self,
        labels: &[Tracking],
    ) -> Result<Vec<(Tracking, String)>, StorageError> {
        match self {
            Storage::Local(s) => s.delete_many(labels).await,
            Storage::S3(s) => s.delete_many(labels).await,
            Storage::Fallback(s) => s.primary().delete_many(labels).await,
        }
    }

    /// Signs every storage request from now on with this key (`SIGHUP` key rotation). The
    /// local backend has no key.
    pub fn set_credentials(
        &self,
        access_key_id: &crate::secret::Secret,
        secret: &crate::secret::Secret,
    ) {
        if let Some(s) = self.s3() {
            s.set_credentials(access_key_id, secret);
        }
    }

    /// Signs every request to the fallback bucket from now on with this key.
    pub fn set_fallback_credentials(
        &self,
        access_key_id: &crate::secret::Secret,
        secret: &crate::secret::Secret,
    ) {
        if let Storage::Fallback(s) = self {
            s.set_fallback_credentials(access_key_id, secret);
        }
    }

    /// The (primary) S3 store, when the backend is S3: presigned URLs are its.
    pub fn s3(&self) -> Option<&s3::S3Store> {
        match self {
            Storage::Local(_) => None,
            Storage::S3(s) => Some(s),
            Storage::Fallback(s) => Some(s.primary()),
        }
    }

    /// The store's own metrics (the fallback's breaker), if it has any.
    pub fn scrape_metrics(&self, scrape: &mut crate::metrics::Scrape) {
        if let Storage::Fallback(s) = self {
            s.scrape_metrics(scrape);
        }
    }

    /// Readiness: the store answers (signed HEAD of the bucket, or the folder exists).
    pub async fn probe(&self) -> Result<(), StorageError> {
        match self {
            Storage::Local(s) => s.probe().await,
            Storage::S3(s) => s.probe().await,
            Storage::Fallback(s) => s.probe().await,
        }
    }

    /// The object key of a label: `{location}/{tracking}.pdf` (or the file name locally).
    pub fn key(&self, tracking: &Tracking) -> String {
        match self {
            Storage::Local(_) => format!("{tracking}.pdf"),
            Storage::S3(s) => s.key(tracking),
            Storage::Fallback(s) => s.primary().key(tracking),
        }
    }
}
