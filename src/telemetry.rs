//! Logging set-up: `tracing` to stderr through a non-blocking writer, so a slow terminal
//! or log shipper never stalls a request. `RUST_LOG` overrides `[log] level`.
//!
//! `[log] format = "json"` writes each event as one JSON object per line with the same
//! fields as the text format, at the top level (tracing-subscriber's JSON formatter,
//! flattened): `{"timestamp":..,"level":"INFO","method":"GET",..,"target":"access"}`.
//!
//! Whatever the level, the SigV4 signer's own trace output (canonical requests, the
//! access key id) stays off unless the filter names `aws_sigv4` explicitly: a blanket
//! `RUST_LOG=trace` must not put signing material in the logs.

use tracing::Subscriber;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; keep the guard alive until exit so the buffer flushes.
pub fn init(cfg: &LogConfig) -> WorkerGuard {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(cfg, rust_log.as_deref());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let _ = subscriber(cfg.format, filter, writer).try_init();
    guard
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

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// One access-log-shaped event written in `format`.
    fn one_line(format: LogFormat) -> String {
        let out = Capture::default();
        let writer = out.clone();
        let sub = subscriber(format, EnvFilter::new("info"), move || writer.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::info!(
                target: "access",
                method = "GET",
                path = "/shipping-label/DEMO123/",
                status = 200u16,
                user = "j%C3%B6rg",
            );
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.trim_end().to_string()
    }

    #[test]
    fn json_lines_carry_the_text_lines_fields_at_the_top_level() {
        let text = one_line(LogFormat::Text);
        let json = one_line(LogFormat::Json);
        assert_eq!(json.lines().count(), 1, "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).expect("a JSON object");
        assert_eq!(v["target"], "access");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["status"], 200, "numbers stay numbers");
        assert_eq!(v["user"], "j%C3%B6rg");
        for field in ["method", "path", "status", "user"] {
            assert!(text.contains(&format!("{field}=")), "{text}");
            assert!(v.get(field).is_some(), "{field} missing in {json}");
        }
        assert!(v.get("timestamp").is_some(), "{json}");
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
