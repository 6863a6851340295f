//! Logging: `tracing` events and the access log, both into one in-memory buffer that a
//! writer thread empties to stderr in batches, so a slow terminal or log shipper never
//! stalls a request and a busy gateway does not wake a thread or make a `write` per line
//! (nginx's `access_log ... buffer= flush=`). `RUST_LOG` overrides `[log] level`.
//!
//! This module installs the subscriber and chooses the filter; `writer` holds the batch
//! and its writer thread, `access_log` writes the access log's line.
//!
//! `[log] format = "json"` writes each event as one JSON object per line with the same
//! fields as the text format, at the top level (tracing-subscriber's JSON formatter,
//! flattened): `{"timestamp":..,"level":"INFO","method":"GET",..,"target":"access"}`.
//!
//! Whatever the level, the SigV4 signer's own trace output (canonical requests, the
//! access key id) stays off unless the filter names `aws_sigv4` explicitly: a blanket
//! `RUST_LOG=trace` must not put signing material in the logs.

mod access_log;
mod writer;

use std::sync::{Arc, OnceLock};

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub use access_log::{access, access_at, Access};
use writer::{Batch, BatchWriter};
pub use writer::{LogGuard, FLUSH_EVERY, MAX_BUFFERED};

/// The installed logger, for [`access`].
struct Installed {
    batch: Arc<Batch>,
    format: LogFormat,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the global subscriber; keep the guard alive until exit so the buffer flushes.
pub fn init(cfg: &LogConfig) -> LogGuard {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(cfg, rust_log.as_deref());
    let batch = Batch::new();
    let worker = batch.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        // Not `stderr().lock()`: held for the thread's life, it would block every other
        // writer to stderr (a start-up error's `eprintln!`) for good.
        .spawn(move || worker.run(&mut std::io::stderr()))
        .ok();
    if subscriber(cfg.format, filter, BatchWriter(batch.clone()))
        .try_init()
        .is_ok()
    {
        let _ = INSTALLED.set(Installed {
            batch: batch.clone(),
            format: cfg.format,
        });
    }
    LogGuard::new(batch, thread)
}

/// The subscriber for `format`, writing to `writer`.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    match format {
        LogFormat::Text => Box::new(fmt.with_ansi(false).finish()),
        LogFormat::Json => Box::new(
            fmt.json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// The filter in force: `rust_log` when set and valid, else `[log] level`.
pub fn filter(cfg: &LogConfig, rust_log: Option<&str>) -> EnvFilter {
    rust_log
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| EnvFilter::try_new(quiet_signer(s)).ok())
        .unwrap_or_else(|| {
            EnvFilter::try_new(quiet_signer(&cfg.level)).unwrap_or_else(|_| EnvFilter::new("info"))
        })
}

/// Appends `aws_sigv4=warn` unless the spec already says something about that target.
fn quiet_signer(spec: &str) -> String {
    if spec.contains("aws_sigv4") {
        spec.to_string()
    } else if spec.trim().is_empty() {
        "aws_sigv4=warn".to_string()
    } else {
        format!("{spec},aws_sigv4=warn")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_traces_stay_off_unless_named() {
        assert_eq!(quiet_signer("trace"), "trace,aws_sigv4=warn");
        assert_eq!(
            quiet_signer("debug,hyper=info"),
            "debug,hyper=info,aws_sigv4=warn"
        );
        assert_eq!(quiet_signer("info,aws_sigv4=trace"), "info,aws_sigv4=trace");
    }

    #[test]
    fn bad_rust_log_falls_back_to_the_configured_level() {
        let cfg = LogConfig {
            level: "debug".into(),
            ..LogConfig::default()
        };
        let f = filter(&cfg, Some("=[not a filter"));
        assert!(f.to_string().contains("debug"), "{f}");
        let f = filter(&cfg, Some("trace"));
        assert!(f.to_string().contains("aws_sigv4=warn"), "{f}");
    }
}
