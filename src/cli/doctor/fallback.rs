//! The fallback bucket (`[storage.fallback]`) checked as the primary is: its credentials,
//! its endpoint, a signed listing under `{location}/` (each refusal named by its cause),
//! the clock against its server, and with `--write` the round trip (`mirror` writes
//! there). Each check is named `fallback …`, and each fix names the fallback's settings
//! (`SPACES_FALLBACK_*`, `storage.fallback.*`) instead of the primary's.

use super::storage::check_s3;
use super::*;
use crate::storage::fallback::fallback_storage_config;

/// The fallback's checks, by name, in the order they run.
pub const FALLBACK_CREDENTIALS: &str = "fallback keys";
pub const FALLBACK_ENDPOINT: &str = "fallback endpoint";
pub const FALLBACK_STORAGE: &str = "fallback access";
pub const FALLBACK_CLOCK: &str = "fallback clock";
pub const FALLBACK_ROUND_TRIP: &str = "fallback write";

/// Each primary check's name, and the fallback's.
const NAMES: [(&str, &str); 5] = [
    (CREDENTIALS, FALLBACK_CREDENTIALS),
    (ENDPOINT, FALLBACK_ENDPOINT),
    (STORAGE, FALLBACK_STORAGE),
    (CLOCK, FALLBACK_CLOCK),
    (ROUND_TRIP, FALLBACK_ROUND_TRIP),
];

/// The primary's setting names in findings and fixes, and the fallback's. The key
/// variables come first: `SPACES_ACCESS_KEY_ID` is not a prefix of the others.
const SETTINGS: [(&str, &str); 6] = [
    ("SPACES_ACCESS_KEY_ID", "SPACES_FALLBACK_ACCESS_KEY_ID"),
    (
        "SPACES_SECRET_ACCESS_KEY",
        "SPACES_FALLBACK_SECRET_ACCESS_KEY",
    ),
    ("SPACES_ENDPOINT_URL", "storage.fallback.endpoint"),
    ("SPACES_REGION", "storage.fallback.region"),
    ("SPACES_BUCKET_NAME", "storage.fallback.bucket"),
    ("SPACES_*", "SPACES_FALLBACK_*"),
];

/// Adds the fallback's checks to `r`; nothing when no fallback is configured.
pub(super) async fn check_fallback(config: &Config, write: bool, r: &mut DoctorReport) {
    let Some(storage) = fallback_storage_config(&config.storage) else {
        return;
    };
    // The fallback's key files under the primary's names, as `check_s3` looks them up.
    let secret_files = SETTINGS[..2]
        .iter()
        .filter_map(|(primary, fallback)| {
            Some((*primary, config.secret_files.get(fallback)?.clone()))
        })
        .collect();
    let fallback = Config {
        storage,
        secret_files,
        ..config.clone()
    };
    let mut found = DoctorReport::default();
    check_s3(&fallback, write, &mut found).await;
    for mut check in found.checks {
        check.name = NAMES
            .iter()
            .find(|(primary, _)| *primary == check.name)
            .map_or(check.name, |(_, fallback)| fallback);
        check.finding = renamed(&check.finding);
        check.fix = check.fix.as_deref().map(renamed);
        r.add(check);
    }
}

/// `text` with each primary setting named as the fallback's.
fn renamed(text: &str) -> String {
    SETTINGS
        .iter()
        .fold(text.to_string(), |t, (primary, fallback)| {
            t.replace(primary, fallback)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_fix_is_told_with_the_fallback_settings() {
        assert_eq!(
            renamed("check SPACES_SECRET_ACCESS_KEY and SPACES_REGION"),
            "check SPACES_FALLBACK_SECRET_ACCESS_KEY and storage.fallback.region"
        );
        assert_eq!(
            renamed("SPACES_ACCESS_KEY_ID from /run/k and SPACES_SECRET_ACCESS_KEY from the environment"),
            "SPACES_FALLBACK_ACCESS_KEY_ID from /run/k and SPACES_FALLBACK_SECRET_ACCESS_KEY from the environment"
        );
        assert_eq!(
            renamed("check SPACES_BUCKET_NAME, SPACES_ENDPOINT_URL"),
            "check storage.fallback.bucket, storage.fallback.endpoint"
        );
    }
}
