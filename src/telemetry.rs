//! Logging set-up: `tracing` to stderr through a non-blocking writer, so a slow terminal
//! or log shipper never stalls a request. `RUST_LOG` overrides `[log] level`.
//!
//! Whatever the level, the SigV4 signer's own trace output (canonical requests, the
//! access key id) stays off unless the filter names `aws_sigv4` explicitly: a blanket
//! `RUST_LOG=trace` must not put signing material in the logs.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber; keep the guard alive until exit so the buffer flushes.
pub fn init(cfg: &LogConfig) -> WorkerGuard {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(cfg, rust_log.as_deref());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .with_target(true)
        .try_init();
    guard
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
            access_log: true,
        };
        let f = filter(&cfg, Some("=[not a filter"));
        assert!(f.to_string().contains("debug"), "{f}");
        let f = filter(&cfg, Some("trace"));
        assert!(f.to_string().contains("aws_sigv4=warn"), "{f}");
    }
}
