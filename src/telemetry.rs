//! Logging set-up: `tracing` to stderr through a non-blocking writer, so a slow terminal
//! or log shipper never stalls a request. `RUST_LOG` overrides `[log] level`.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber; keep the guard alive until exit so the buffer flushes.
pub fn init(cfg: &LogConfig) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .with_target(true)
        .try_init();
    guard
}
