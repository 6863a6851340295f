//! label-gateway serves Django shipping-label PDFs from a private S3-compatible bucket to
//! logged-in users: it checks the session against the app, signs its own SigV4 requests,
//! streams bodies through without holding them, and keeps hot labels in memory.
//!
//! # Layout
//! From the top down; a module only uses the ones below it.
//! - [`server`]: listeners (bound, or passed by systemd), connection limit, hyper builder,
//!   graceful drain.
//! - [`gateway`]: one request from route to access log: the route table, the label path
//!   as named phases (session → cache → storage → respond), label responses, `/internal/`
//!   calls, readiness and metrics; secrets re-read on SIGHUP.
//! - [`error`]: every refusal and fault, and the one mapping to a status; start-up errors.
//! - [`regenerate`]: asking the app for a missing label and storing it back.
//! - [`auth`]: the Django session check and its verdict cache.
//! - [`cache`]: the hot-label cache (moka, weighed in bytes) and its fill lock.
//! - [`storage`]: the label store: `s3` (SigV4 with a daily signing key; label reads over
//!   its own HTTP/1.1 connections, read in the request's task) and `local` backends.
//! - [`outbound`]: the carrier client and helpers shared by calls to other services.
//! - [`body`]: every body wrapper on the streaming path.
//! - [`http`]: body type, `Range` and conditional logic, label response headers.
//! - [`cli`]: operator commands (`check-config`, `doctor`, `health`, `presign`, `migrate`,
//!   `backup`, `prune`) and the progress display of long ones.
//! - [`batch`]: the shapes of a batch answer, written label by label: one merged PDF
//!   (`pdf`) or one ZIP (`zip`).
//! - Leaves: [`tracking`] (the validated tracking number), [`netguard`] (which
//!   addresses an outbound fetch may reach), [`secret`], [`config`],
//!   [`metrics`], [`telemetry`] (batched log writer, the access line).

pub mod auth;
pub mod batch;
pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod netguard;
pub mod outbound;
pub mod regenerate;
pub mod secret;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod tracking;
