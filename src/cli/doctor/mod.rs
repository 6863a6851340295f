//! `label-gateway doctor`: checks a deployment end to end, in the order a request needs
//! it, and says what to fix. One [`Check`] per step: the configuration; the storage
//! credentials; the endpoint (DNS, TCP, TLS within `storage.connect_timeout`); a signed
//! `ListObjectsV2` under `{location}/`, each S3 refusal mapped to its cause; the clock
//! against the storage server's `Date`; with `--write`, a PUT → HEAD → GET → DELETE round
//! trip of a scratch object that can never be a label; the session check answering a
//! made-up session with a deny; the regeneration endpoint accepting the token. With a
//! fallback bucket, its own storage checks follow the primary's (`fallback …`).
//!
//! Nothing here prints a secret: findings name variables, hosts and S3 codes only.

mod app;
mod endpoint;
mod fallback;
mod report;
mod round_trip;
mod storage;

pub use endpoint::reach;
pub use fallback::{
    FALLBACK_CLOCK, FALLBACK_CREDENTIALS, FALLBACK_ENDPOINT, FALLBACK_ROUND_TRIP, FALLBACK_STORAGE,
};
pub use report::{Check, DoctorReport, Status};
pub use storage::clock_check;

use std::path::Path;
use std::time::Duration;

use crate::config::{Backend, Config, ConfigError};

/// The checks, by name, in the order they run.
pub const CONFIGURATION: &str = "configuration";
pub const CREDENTIALS: &str = "credentials";
pub const ENDPOINT: &str = "endpoint";
pub const STORAGE: &str = "storage access";
pub const CLOCK: &str = "clock";
pub const ROUND_TRIP: &str = "write round trip";
pub const SESSION_CHECK: &str = "session check";
pub const REGENERATION: &str = "regeneration";

/// Clock skew past which the clock check warns, and past which it fails (SigV4 itself
/// refuses requests 15 minutes off).
pub const SKEW_WARN: Duration = Duration::from_secs(60);
pub const SKEW_FAIL: Duration = Duration::from_secs(300);

/// Runs every check. `loaded` is the configuration as loading it came out (its failure
/// is the first finding); `write` adds the round trip.
pub async fn doctor(
    loaded: Result<Config, ConfigError>,
    config_path: &Path,
    write: bool,
) -> DoctorReport {
    let mut r = DoctorReport::default();
    let config = match loaded {
        Ok(c) => {
            r.ok(
                CONFIGURATION,
                format!("{} loads and validates", config_path.display()),
            );
            c
        }
        Err(e) => {
            r.fail(
                CONFIGURATION,
                e.to_string(),
                "correct the named setting in the file or the environment",
            );
            match &e {
                ConfigError::Invalid { key, reason }
                    if key == "storage.access_key_id" || key == "storage.secret_access_key" =>
                {
                    r.fail(
                        CREDENTIALS,
                        format!("{key}: {reason}"),
                        "set SPACES_ACCESS_KEY_ID and SPACES_SECRET_ACCESS_KEY (or their _FILE \
                         twins) in the gateway's environment",
                    )
                }
                _ => r.skip(CREDENTIALS, "the configuration is not valid"),
            }
            for name in [
                ENDPOINT,
                STORAGE,
                CLOCK,
                ROUND_TRIP,
                SESSION_CHECK,
                REGENERATION,
            ] {
                r.skip(name, "the configuration is not valid");
            }
            return r;
        }
    };
    match config.storage.backend {
        Backend::S3 => {
            storage::check_s3(&config, write, &mut r).await;
            fallback::check_fallback(&config, write, &mut r).await;
        }
        Backend::Local => storage::check_local(&config, write, &mut r).await,
    }
    r.add(app::check_session(&config).await);
    r.add(app::check_regeneration(&config).await);
    r
}
