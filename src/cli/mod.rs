//! Operator commands around the gateway: `check-config` (the config as it will run,
//! risky settings warned about), `doctor` (the deployment checked end to end), `health`
//! (a container's health check) and the storage commands (`presign`, `migrate`, `backup`,
//! `prune`, `mirror`). Each returns a report value so tests can check it and `main` prints
//! it; `progress` shows long work as it goes, `bulk` holds what the bulk copies share.

pub mod backup;
pub mod bulk;
pub mod check;
pub mod doctor;
pub mod health;
pub mod migrate;
pub mod mirror;
pub mod presign;
pub mod progress;
pub mod prune;

/// Labels copied at once by `migrate`, `backup` and `mirror` unless `--jobs` says otherwise.
pub const DEFAULT_JOBS: usize = 8;
