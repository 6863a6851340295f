//! `label-gateway presign TRACKING`: a time-limited GET link to one label in the bucket,
//! for support staff who must hand a label to someone without a shop login. The link
//! bypasses the session check by design, so keep its lifetime short.

use std::time::{Duration, SystemTime};

use crate::config::{Backend, Config};
use crate::storage::s3::S3Store;
use crate::tracking::Tracking;

/// Longest lifetime SigV4 allows for a presigned URL.
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

pub fn presign(config: &Config, tracking: &str, expires: Duration) -> anyhow::Result<String> {
    let tracking = Tracking::parse(tracking)?;
    anyhow::ensure!(
        config.storage.backend == Backend::S3,
        "presigned links need storage.backend = \"s3\""
    );
    anyhow::ensure!(
        !expires.is_zero() && expires <= MAX_EXPIRY,
        "expiry must be between 1s and 7d"
    );
    let store = S3Store::new(&config.storage)?;
    let url = store.signer().presign(
        &http::Method::GET,
        &store.object_url(&tracking),
        expires,
        SystemTime::now(),
    )?;
    Ok(url)
}
