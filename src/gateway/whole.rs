//! Whole labels in memory, through the same hot cache and storage as single labels: for a
//! batch, which must read each label whole to merge it, and for warm-up, which loads one
//! into the cache. The cache's fill lock is the one single requests take, so a batch, a
//! warm-up and a single print of one label make one storage fetch between them; a label
//! read here and small enough is kept in the cache for the prints that follow.
//!
//! [`Labels`] holds its own handles (no borrow of the gateway), so a batch's producer task
//! can own one. A batch's copy ([`Labels::for_prints`]) prints a label held past its
//! freshness when storage fails, as a single print does (`[cache] stale_if_error`); a
//! warm-up's never takes a stale copy for a loaded one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::cache::{CachedLabel, Fill, FillGuard, LabelCache};
use crate::error::GatewayError;
use crate::http::Conditions;
use crate::storage::{Fetch, GetRequest, ObjectHead, Storage};
use crate::tracking::Tracking;

/// Whether a label exists, found without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// In the hot cache.
    Hot,
    /// In storage, this many bytes.
    Stored { size: u64 },
    /// Storage has no such label.
    Absent,
}

/// A label read whole.
#[derive(Debug)]
pub enum Whole {
    Bytes(Bytes),
    /// Storage has no such label.
    Absent,
    /// Larger than the caller's limit: not read.
    TooLarge {
        size: u64,
    },
}

/// The cache and the store, for whole-label reads.
#[derive(Clone)]
pub struct Labels {
    storage: Arc<Storage>,
    cache: Option<Arc<LabelCache>>,
    /// Storage requests made here (HEADs and GETs), for `/metrics`.
    pub storage_requests: Arc<AtomicU64>,
    /// A storage fault falls back on the label held past its freshness (prints only).
    stale_ok: bool,
}

impl Labels {
    pub fn new(storage: Arc<Storage>, cache: Option<Arc<LabelCache>>) -> Labels {
        Labels {
            storage,
            cache,
            storage_requests: Arc::default(),
            stale_ok: false,
        }
    }

    /// The same reads for printing: a storage fault falls back on a label held past its
    /// freshness (see the module docs).
    pub fn for_prints(&self) -> Labels {
        Labels {
            stale_ok: true,
            ..self.clone()
        }
    }

    pub fn cache(&self) -> Option<&LabelCache> {
        self.cache.as_deref()
    }

    /// Whether the label exists: the hot cache, else a storage HEAD (with the store's
    /// usual retries).
    pub async fn presence(&self, tracking: Tracking) -> Result<Presence, GatewayError> {
        if let Some(cache) = &self.cache {
            if cache.holds(&cache.key(tracking)).await {
                return Ok(Presence::Hot);
            }
        }
        let fetch = match self.get(tracking, true).await {
            Ok(fetch) => fetch,
            Err(GatewayError::Storage(fault)) if self.stale_ok && fault.is_outage() => {
                // Counted and logged when it is read (`load`), not here.
                return match &self.cache {
                    Some(cache) if cache.get_stale(&cache.key(tracking)).await.is_some() => {
                        Ok(Presence::Hot)
                    }
                    _ => Err(GatewayError::Storage(fault)),
                };
            }
            Err(e) => return Err(e),
        };
        match fetch {
            Fetch::Found { head, .. } => Ok(Presence::Stored {
                size: head.total_size,
            }),
            Fetch::NotFound => Ok(Presence::Absent),
            _ => Err(unexpected(tracking)),
        }
    }

    /// The label's bytes: from the hot cache, else from storage. A label read from storage
    /// is kept in the cache when it fits, under the fill lock when this read took it (a
    /// concurrent single request for the label waits for this read instead of fetching it
    /// again). A label over `limit` bytes is not read.
    pub async fn load(&self, tracking: Tracking, limit: u64) -> Result<Whole, GatewayError> {
        let Some(cache) = &self.cache else {
            return self.read(tracking, limit, None).await;
        };
        let key = cache.key(tracking);
        if let Some(label) = cache.get(&key).await {
            return Ok(held(&label, limit));
        }
        let read = match cache.begin_fill(&key) {
            Fill::Leader(guard) => self.read(tracking, limit, Some(guard)).await,
            Fill::Wait(waiters) => {
                cache.wait(waiters).await;
                match cache.get(&key).await {
                    Some(label) => return Ok(held(&label, limit)),
                    None => self.read(tracking, limit, None).await,
                }
            }
        };
        match read {
            Err(GatewayError::Storage(fault)) if self.stale_ok => {
                match cache.fallback(tracking, &fault).await {
                    Some(fallback) => Ok(held(fallback.label(), limit)),
                    None => Err(GatewayError::Storage(fault)),
                }
            }
            read => read,
        }
    }

    /// One storage GET, read whole and checked against its `Content-Length`.
    async fn read(
        &self,
        tracking: Tracking,
        limit: u64,
        guard: Option<FillGuard>,
    ) -> Result<Whole, GatewayError> {
        let (head, body) = match self.get(tracking, false).await? {
            Fetch::Found { head, body } => (head, body),
            Fetch::NotFound => return Ok(Whole::Absent),
            _ => return Err(unexpected(tracking)),
        };
        if head.content_length > limit {
            return Ok(Whole::TooLarge {
                size: head.content_length,
            });
        }
        let expected = head.content_length as usize;
        let mut data = BytesMut::with_capacity(expected);
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                GatewayError::BadGateway(format!("label {tracking}: storage body failed: {e}"))
            })?;
            if let Ok(chunk) = frame.into_data() {
                if data.len() + chunk.len() > expected {
                    break;
                }
                data.extend_from_slice(&chunk);
            }
        }
        if data.len() != expected {
            return Err(GatewayError::BadGateway(format!(
                "label {tracking}: storage sent {} bytes of {expected} (or more than declared)",
                data.len()
            )));
        }
        let data = data.freeze();
        self.keep(tracking, &head, &data).await;
        drop(guard);
        Ok(Whole::Bytes(data))
    }

    /// Keeps a label just read in the hot cache, if it is on and the label fits; waiters on
    /// the fill lock are released after (they then find it).
    async fn keep(&self, tracking: Tracking, head: &ObjectHead, data: &Bytes) {
        if let Some(cache) = &self.cache {
            if cache.admits(data.len() as u64) {
                let label =
                    CachedLabel::new(data.clone(), head.etag.clone(), head.last_modified.clone());
                cache.insert(cache.key(tracking), label).await;
            }
        }
    }

    async fn get(&self, tracking: Tracking, head_only: bool) -> Result<Fetch, GatewayError> {
        self.storage_requests.fetch_add(1, Ordering::Relaxed);
        let conditions = Conditions::default();
        Ok(self
            .storage
            .get(GetRequest {
                tracking,
                range: None,
                conditions: &conditions,
                head_only,
            })
            .await?)
    }
}

/// A label from the cache, held to the same limit as one read from storage.
fn held(label: &CachedLabel, limit: u64) -> Whole {
    if label.len > limit {
        Whole::TooLarge { size: label.len }
    } else {
        Whole::Bytes(label.data.clone())
    }
}

/// Storage answered a plain GET or HEAD with a conditional or range status.
fn unexpected(tracking: Tracking) -> GatewayError {
    GatewayError::BadGateway(format!(
        "label {tracking}: storage answered a plain request with a conditional status"
    ))
}
