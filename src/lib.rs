//! label-gateway serves Django shipping-label PDFs from a private S3-compatible bucket to
//! logged-in users: it checks the session against the app, signs its own SigV4 requests,
//! streams bodies through without holding them, and keeps hot labels in memory.
//!
//! # Layout
//! - [`config`]: the configuration tree, file + environment loading, `validate()`.
//! - [`server`]: listeners, connection limit, hyper builder, graceful drain.
//! - [`gateway`]: routing and the ordered request phases (route → auth → cache →
//!   storage → respond).
//! - [`auth`]: the Django session check and its verdict cache.
//! - [`storage`]: the label store: `s3` (SigV4, pooled client) and `local` backends.
//! - [`cache`]: the hot-label cache (moka, weighed in bytes) and its fill lock.
//! - [`internal`]: `/internal/...` calls from the app (bearer token): label ingest,
//!   carrier fetch, cache purge.
//! - [`http`]: body type, `Range` and conditional logic, label response headers.
//! - [`body`]: body wrappers on the streaming path (idle timeout).
//! - [`error`]: the request-path error and its single status mapping.
//! - [`regenerate`]: asking the app to regenerate a missing label.
//! - [`metrics`]: counters rendered at `/metrics`.
//! - [`telemetry`]: log set-up.
//! - [`cli`]: operator commands (`presign`, `migrate`, `backup`).

pub mod auth;
pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http;
pub mod internal;
pub mod metrics;
pub mod regenerate;
pub mod secret;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod tracking;
