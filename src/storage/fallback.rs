//! A second bucket that label reads fail over to (`[storage.fallback]`, another region
//! kept filled by `label-gateway mirror`), in front of the primary S3 store.
//!
//! A read that meets a fault on the primary (cannot connect, timeout, 5xx, a garbled
//! answer; not a 403 or 404, which are answers) is sent to the fallback. Both happen
//! before the answer's head is returned, so before a byte can have reached the client.
//! The [`Breaker`] decides which bucket goes first: after `after_failures` primary
//! faults in a row the fallback does, with one probe of the primary per `probe_every`.
//! When neither bucket serves the read, the primary's fault is returned (so that what
//! comes after, stale-if-error and the 502/504 mapping, sees a fault). The fallback's
//! 404 serves nothing: its copy may lag the primary, so only the primary can say that a
//! label is missing (and have it regenerated).
//!
//! Everything else (writes, listings, deletes, presigned URLs) is the primary's: the
//! fallback is filled by `mirror` only. Readiness holds while either bucket answers.

use std::sync::atomic::{AtomicU64, Ordering};

use super::breaker::Breaker;
use super::s3::S3Store;
use super::{Fetch, GetRequest, StorageError};
use crate::config::{FallbackConfig, StorageConfig};
use crate::metrics::Scrape;
use crate::secret::Secret;

pub struct FallbackStore {
    primary: S3Store,
    fallback: S3Store,
    breaker: Breaker,
    /// Label reads the fallback answered.
    answers: AtomicU64,
}

/// The fallback bucket as a store configuration of its own: its endpoint, bucket,
/// region, addressing and credentials; the primary's location, timeouts and retries.
/// `None` when no fallback is configured.
pub fn fallback_storage_config(cfg: &StorageConfig) -> Option<StorageConfig> {
    let fb = &cfg.fallback;
    fb.enabled().then(|| StorageConfig {
        endpoint: fb.endpoint.clone(),
        bucket: fb.bucket.clone(),
        region: fb.region.clone(),
        addressing: fb.addressing,
        access_key_id: fb.access_key_id.clone(),
        secret_access_key: fb.secret_access_key.clone(),
        cdn_domain: None,
        fallback: FallbackConfig::default(),
        ..cfg.clone()
    })
}

impl FallbackStore {
    /// Both stores of `cfg`, whose `[storage.fallback]` is set.
    pub fn new(cfg: &StorageConfig) -> Result<FallbackStore, StorageError> {
        let fallback_cfg = fallback_storage_config(cfg)
            .ok_or_else(|| StorageError::Protocol("storage.fallback.endpoint is not set".into()))?;
        let fallback = S3Store::new(&fallback_cfg).map_err(|e| match e {
            StorageError::Protocol(why) => StorageError::Protocol(format!(
                "storage.fallback: {}",
                why.replace("SPACES_", "SPACES_FALLBACK_")
            )),
            other => other,
        })?;
        Ok(FallbackStore {
            primary: S3Store::new(cfg)?,
            fallback,
            breaker: Breaker::new(cfg.fallback.after_failures, cfg.fallback.probe_every),
            answers: AtomicU64::new(0),
        })
    }

    /// The primary bucket's store: writes, listings, presigned URLs.
    pub fn primary(&self) -> &S3Store {
        &self.primary
    }

    /// The fallback bucket's store (`mirror`, `doctor`).
    pub fn fallback(&self) -> &S3Store {
        &self.fallback
    }

    /// Whether reads go to the fallback first now.
    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    pub async fn get(&self, req: GetRequest<'_>) -> Result<Fetch, StorageError> {
        if self.breaker.primary_first() {
            let fault = match self.read_primary(req).await {
                Err(fault) if fault.is_outage() => fault,
                answer => return answer,
            };
            tracing::debug!(tracking = %req.tracking, error = %fault, "primary bucket fault: reading the fallback");
            return match self.read_fallback(req).await {
                Some(fetch) => Ok(fetch),
                None => Err(fault),
            };
        }
        if let Some(fetch) = self.read_fallback(req).await {
            return Ok(fetch);
        }
        // The fallback could not serve it: the primary may (its answer would close the
        // breaker at once), and only it can say the label is missing.
        self.read_primary(req).await
    }

    /// The primary's answer, or its fault (told to the breaker); a refusal is an answer.
    async fn read_primary(&self, req: GetRequest<'_>) -> Result<Fetch, StorageError> {
        let result = self.primary.get(req).await;
        match &result {
            Err(e) if e.is_outage() => self.breaker.faulted(e),
            _ => self.breaker.answered(),
        }
        result
    }

    /// The fallback's answer; `None` when it has none to give. Its "no such label" is not
    /// one: the copy may lag the primary (a label written since the last `mirror`), and
    /// only the primary can say a label is missing (and so have it regenerated).
    async fn read_fallback(&self, req: GetRequest<'_>) -> Option<Fetch> {
        match self.fallback.get(req).await {
            Ok(Fetch::NotFound) => {
                tracing::warn!(
                    tracking = %req.tracking,
                    "the fallback bucket has no copy of the label (not mirrored yet?)"
                );
                None
            }
            Ok(fetch) => {
                self.answers.fetch_add(1, Ordering::Relaxed);
                Some(fetch)
            }
            Err(e) => {
                tracing::warn!(
                    tracking = %req.tracking,
                    error = %fallback_error(e),
                    "the fallback bucket could not serve the label either"
                );
                None
            }
        }
    }

    /// Readiness: the primary answers, or else the fallback does.
    pub async fn probe(&self) -> Result<(), StorageError> {
        match self.primary.probe().await {
            Err(e) if e.is_outage() => self.fallback.probe().await.map_err(|_| e),
            other => other,
        }
    }

    /// Signs the fallback's requests with this key from now on (`SIGHUP`).
    pub fn set_fallback_credentials(&self, access_key_id: &Secret, secret: &Secret) {
        self.fallback.set_credentials(access_key_id, secret);
    }

    pub fn scrape_metrics(&self, s: &mut Scrape) {
        s.gauge(
            "label_gateway_storage_breaker_open",
            "1 while label reads go to the fallback bucket first (the primary kept failing), else 0.",
            u64::from(self.breaker.is_open()),
        );
        s.counter(
            "label_gateway_storage_fallback_answers_total",
            "Label reads the fallback bucket answered.",
            self.answers.load(Ordering::Relaxed),
        );
    }
}

/// A refusal of the fallback names the fallback's settings, not the primary's.
pub fn fallback_error(e: StorageError) -> StorageError {
    match e {
        StorageError::Refused { status, code, .. } => StorageError::Refused {
            status,
            code,
            hint: "check SPACES_FALLBACK_* credentials, storage.fallback.region and \
                   storage.fallback.bucket, and the clock",
        },
        other => other,
    }
}
