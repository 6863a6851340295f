//! Process-wide counters, rendered as Prometheus text at `/metrics`. Plain atomics: the
//! request path pays one relaxed increment per counter it touches.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub responses_2xx: AtomicU64,
    pub responses_3xx: AtomicU64,
    pub responses_4xx: AtomicU64,
    pub responses_5xx: AtomicU64,
    pub denied: AtomicU64,
    pub storage_errors: AtomicU64,
    pub storage_fetches: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_refused: AtomicU64,
}

impl Metrics {
    pub fn record_status(&self, status: u16) {
        let c = match status {
            200..=299 => &self.responses_2xx,
            300..=399 => &self.responses_3xx,
            400..=499 => &self.responses_4xx,
            _ => &self.responses_5xx,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Appends one counter or gauge in the text exposition format.
pub fn write_metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

impl Metrics {
    pub fn render(&self, out: &mut String) {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        write_metric(
            out,
            "label_gateway_requests_total",
            "counter",
            "Requests received.",
            g(&self.requests),
        );
        for (class, c) in [
            ("2xx", &self.responses_2xx),
            ("3xx", &self.responses_3xx),
            ("4xx", &self.responses_4xx),
            ("5xx", &self.responses_5xx),
        ] {
            let _ = writeln!(
                out,
                "label_gateway_responses_total{{class=\"{class}\"}} {}",
                g(c)
            );
        }
        write_metric(
            out,
            "label_gateway_denied_total",
            "counter",
            "Requests refused by the session check.",
            g(&self.denied),
        );
        write_metric(
            out,
            "label_gateway_storage_fetches_total",
            "counter",
            "Requests sent to storage for a label.",
            g(&self.storage_fetches),
        );
        write_metric(
            out,
            "label_gateway_storage_errors_total",
            "counter",
            "Storage faults answered 502/504.",
            g(&self.storage_errors),
        );
        write_metric(
            out,
            "label_gateway_connections_open",
            "gauge",
            "Client connections open now.",
            g(&self.connections_open),
        );
        write_metric(
            out,
            "label_gateway_connections_refused_total",
            "counter",
            "Connections refused over server.max_connections.",
            g(&self.connections_refused),
        );
    }
}
