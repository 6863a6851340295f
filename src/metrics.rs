//! Process-wide counters and latency histograms, and their rendering at `/metrics` in the
//! OpenMetrics text format by the official `prometheus-client` crate.
//!
//! Recording is lock-free: a counter is one relaxed atomic increment, a histogram
//! observation two (its bucket and its sum). What every request records ([`Counter`],
//! [`Histogram`]) is split into per-thread shards on cache lines of their own, summed at a
//! scrape: one shared line written by every request on every core would move between the
//! cores' caches on each of them. `prometheus-client`'s own `Histogram` takes a
//! mutex for every observation, so [`Histogram`] here is a small atomic one that the crate
//! encodes. A scrape reads every value into a [`Scrape`], which the crate then renders, so
//! the exposition format (names, `_total`/`_bucket`/`_sum`/`_count` suffixes, escaping,
//! `# EOF`) is the crate's, not hand-written.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// `Content-Type` of [`Scrape::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How many shards a [`Counter`] or [`Histogram`] has: threads take them in turn.
const SHARDS: usize = 8;

/// Which shard this thread records into.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// One shard's value, alone on its cache line (two lines: adjacent-line prefetch).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// A counter recorded on the request path, sharded per thread.
#[derive(Debug, Default)]
pub struct Counter {
    shards: [Padded; SHARDS],
}

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.shards[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The sum over the shards.
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: Counter,
    /// Whole-label hits the connection lane answered without hyper (`gateway::quick`).
    pub quick_hits: Counter,
    pub responses_2xx: Counter,
    pub responses_3xx: Counter,
    pub responses_4xx: Counter,
    pub responses_5xx: Counter,
    pub denied: AtomicU64,
    pub storage_errors: AtomicU64,
    pub storage_fetches: Counter,
    pub connections_open: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Arrival to response head, by route and outcome.
    pub request_duration: RequestDurations,
    /// A label fetch sent to storage until its response head (retries included).
    pub storage_first_byte: Histogram,
}

impl Metrics {
    pub fn record_status(&self, status: u16) {
        let c = match status {
            200..=299 => &self.responses_2xx,
            300..=399 => &self.responses_3xx,
            400..=499 => &self.responses_4xx,
            _ => &self.responses_5xx,
        };
        c.inc();
    }

    /// Reads every value into `s`.
    pub fn scrape(&self, s: &mut Scrape) {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.info(
            "label_gateway_build_info",
            "The running build: its version (always 1).",
            vec![("version", env!("CARGO_PKG_VERSION"))],
        );
        s.counter(
            "label_gateway_requests_total",
            "Requests received.",
            self.requests.get(),
        );
        s.counter(
            "label_gateway_quick_hits_total",
            "Whole-label cache hits answered on the connection's quick path (also counted in requests).",
            self.quick_hits.get(),
        );
        s.counters(
            "label_gateway_responses_total",
            "Responses sent, by status class.",
            [
                ("2xx", &self.responses_2xx),
                ("3xx", &self.responses_3xx),
                ("4xx", &self.responses_4xx),
                ("5xx", &self.responses_5xx),
            ]
            .map(|(class, c)| (vec![("class", class)], c.get())),
        );
        s.counter(
            "label_gateway_denied_total",
            "Requests refused by the session check.",
            g(&self.denied),
        );
        s.counter(
            "label_gateway_storage_fetches_total",
            "Requests sent to storage for a label.",
            self.storage_fetches.get(),
        );
        s.counter(
            "label_gateway_storage_errors_total",
            "Storage faults answered 502/504.",
            g(&self.storage_errors),
        );
        s.gauge(
            "label_gateway_connections_open",
            "Client connections open now.",
            g(&self.connections_open),
        );
        s.counter(
            "label_gateway_connections_refused_total",
            "Connections refused over server.max_connections.",
            g(&self.connections_refused),
        );
        s.histograms(
            "label_gateway_request_duration_seconds",
            "Requests, arrival to response head, by route and outcome.",
            self.request_duration.series(),
        );
        s.histogram(
            "label_gateway_storage_first_byte_seconds",
            "Label fetches from storage, request sent to response head (retries included).",
            &self.storage_first_byte,
        );
    }
}

/// What a request was, for the `route` label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RouteKind {
    /// `/shipping-label/...`, bad tracking numbers and wrong methods included.
    Label,
    /// `/internal/...`: the app's calls.
    Internal,
    /// `/healthz`, `/readyz`.
    Health,
    Metrics,
    /// Anything else (404), and routes the listener does not serve.
    #[default]
    Other,
}

/// How a request ended, for the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A label served from the hot cache (a 304, 206 or 416 on it included).
    Hit,
    /// A label served from storage, or regenerated.
    Miss,
    /// The session check refused.
    Denied,
    /// No such label, in storage or from regeneration.
    Missing,
    /// A fault or bad input: every answer `error.rs` makes of a `GatewayError`.
    Error,
    /// A route other than the label's, answered without error.
    Ok,
}

impl RouteKind {
    const ALL: [RouteKind; 5] = [
        RouteKind::Label,
        RouteKind::Internal,
        RouteKind::Health,
        RouteKind::Metrics,
        RouteKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Label => "label",
            RouteKind::Internal => "internal",
            RouteKind::Health => "health",
            RouteKind::Metrics => "metrics",
            RouteKind::Other => "other",
        }
    }

    /// The outcomes a request of this kind can have (the series exported from start-up).
    fn outcomes(self) -> &'static [Outcome] {
        match self {
            RouteKind::Label => &[
                Outcome::Hit,
                Outcome::Miss,
                Outcome::Denied,
                Outcome::Missing,
                Outcome::Error,
            ],
            _ => &[Outcome::Ok, Outcome::Error],
        }
    }
}

impl Outcome {
    const COUNT: usize = 6;

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Denied => "denied",
            Outcome::Missing => "missing",
            Outcome::Error => "error",
            Outcome::Ok => "ok",
        }
    }
}

/// One histogram per route kind and outcome, made at start-up: observing indexes an array,
/// never a map or a lock.
#[derive(Debug, Default)]
pub struct RequestDurations {
    by: [[Histogram; Outcome::COUNT]; RouteKind::ALL.len()],
}

impl RequestDurations {
    pub fn observe(&self, route: RouteKind, outcome: Outcome, elapsed: Duration) {
        self.by[route as usize][outcome as usize].observe(elapsed);
    }

    fn series(&self) -> Vec<(Labels, &Histogram)> {
        RouteKind::ALL
            .iter()
            .flat_map(|&route| {
                route.outcomes().iter().map(move |&outcome| {
                    (
                        vec![("route", route.as_str()), ("outcome", outcome.as_str())],
                        &self.by[route as usize][outcome as usize],
                    )
                })
            })
            .collect()
    }
}

/// Upper bounds of the latency buckets, in seconds: from a hit on a quiet machine (tens of
/// microseconds) to a storage or session-check timeout (seconds).
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// [`LATENCY_BUCKETS`] in nanoseconds, compared against without floating point.
const BUCKET_NANOS: [u64; 18] = {
    let mut out = [0u64; 18];
    let mut i = 0;
    while i < out.len() {
        out[i] = (LATENCY_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// A latency histogram with [`LATENCY_BUCKETS`], recorded with atomics only, sharded per
/// thread as [`Counter`] is.
///
/// A scrape reads the buckets one by one while requests keep observing, so the count and
/// the sum of one scrape may be one observation apart; Prometheus' rates over scrapes do
/// not notice.
#[derive(Debug, Default)]
pub struct Histogram {
    shards: [HistogramShard; SHARDS],
}

/// One thread's part of a [`Histogram`], on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct HistogramShard {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKET_NANOS.partition_point(|&bound| bound < nanos);
        let shard = &self.shards[shard()];
        shard.buckets[i].fetch_add(1, Ordering::Relaxed);
        shard.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations in bucket `i`, over the shards.
    fn bucket(&self, i: usize) -> u64 {
        self.shards
            .iter()
            .map(|s| s.buckets[i].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        (0..=LATENCY_BUCKETS.len()).map(|i| self.bucket(i)).sum()
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .enumerate()
            .map(|(i, bound)| (bound, self.bucket(i)))
            .collect();
        let sum_nanos = self
            .shards
            .iter()
            .map(|s| s.sum_nanos.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add);
        HistogramSnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            sum: sum_nanos as f64 / 1e9,
            buckets,
        }
    }
}

/// One histogram's values at a scrape, as the encoder takes them.
#[derive(Debug)]
struct HistogramSnapshot {
    sum: f64,
    count: u64,
    /// `(upper bound, observations in this bucket)`; the encoder accumulates them.
    buckets: Vec<(f64, u64)>,
}

type Labels = Vec<(&'static str, &'static str)>;

/// One metric family's values at a scrape.
#[derive(Debug)]
enum Values {
    Counter(Vec<(Labels, u64)>),
    Gauge(u64),
    Histogram(Vec<(Labels, HistogramSnapshot)>),
    /// An info metric: its labels, value always 1.
    Info(Labels),
}

#[derive(Debug)]
struct Family {
    /// Without the `_total` or unit suffix the encoder adds.
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    values: Values,
}

/// Every value of one `/metrics` answer, read at once; [`Scrape::render`] encodes them.
/// Names are given whole, as they appear in the output (`..._total`, `..._seconds`).
#[derive(Debug, Default)]
pub struct Scrape {
    families: Vec<Family>,
}

impl Scrape {
    /// A counter; `name` ends in `_total`.
    pub fn counter(&mut self, name: &'static str, help: &'static str, value: u64) {
        self.counters(name, help, [(Vec::new(), value)]);
    }

    /// A counter family with one value per label set; `name` ends in `_total`.
    pub fn counters(
        &mut self,
        name: &'static str,
        help: &'static str,
        values: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        debug_assert!(name.ends_with("_total"), "{name}");
        self.families.push(Family {
            name: name.strip_suffix("_total").unwrap_or(name),
            help,
            unit: None,
            values: Values::Counter(values.into_iter().collect()),
        });
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, value: u64) {
        self.families.push(Family {
            name,
            help,
            unit: None,
            values: Values::Gauge(value),
        });
    }

    /// An info metric (constant 1, what it says in its labels); `name` ends in `_info`.
    pub fn info(&mut self, name: &'static str, help: &'static str, labels: Labels) {
        debug_assert!(name.ends_with("_info"), "{name}");
        self.families.push(Family {
            name: name.strip_suffix("_info").unwrap_or(name),
            help,
            unit: None,
            values: Values::Info(labels),
        });
    }

    /// A latency histogram; `name` ends in `_seconds`.
    pub fn histogram(&mut self, name: &'static str, help: &'static str, h: &Histogram) {
        self.histograms(name, help, [(Vec::new(), h)]);
    }

    /// A latency histogram family; `name` ends in `_seconds`.
    pub fn histograms<'h>(
        &mut self,
        name: &'static str,
        help: &'static str,
        series: impl IntoIterator<Item = (Labels, &'h Histogram)>,
    ) {
        debug_assert!(name.ends_with("_seconds"), "{name}");
        self.families.push(Family {
            name: name.strip_suffix("_seconds").unwrap_or(name),
            help,
            unit: Some(Unit::Seconds),
            values: Values::Histogram(
                series
                    .into_iter()
                    .map(|(labels, h)| (labels, h.snapshot()))
                    .collect(),
            ),
        });
    }

    /// The OpenMetrics text of every value, as [`CONTENT_TYPE`].
    pub fn render(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; an encoder error would be a bug in a name.
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            tracing::error!("metrics could not be encoded");
        }
        out
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let kind = match f.values {
                Values::Counter(_) => MetricType::Counter,
                Values::Gauge(_) => MetricType::Gauge,
                Values::Histogram(_) => MetricType::Histogram,
                Values::Info(_) => MetricType::Info,
            };
            let mut metric = encoder.encode_descriptor(f.name, f.help, f.unit.as_ref(), kind)?;
            match &f.values {
                Values::Counter(series) => {
                    for (labels, value) in series {
                        if labels.is_empty() {
                            metric.encode_counter::<NoLabelSet, _, u64>(value, None)?;
                        } else {
                            metric
                                .encode_family(labels)?
                                .encode_counter::<NoLabelSet, _, u64>(value, None)?;
                        }
                    }
                }
                Values::Gauge(value) => metric.encode_gauge(value)?,
                Values::Info(labels) => metric.encode_info(labels)?,
                Values::Histogram(series) => {
                    for (labels, h) in series {
                        let (sum, count, buckets) = (h.sum, h.count, &h.buckets);
                        if labels.is_empty() {
                            metric.encode_histogram::<NoLabelSet>(sum, count, buckets, None)?;
                        } else {
                            metric
                                .encode_family(labels)?
                                .encode_histogram::<NoLabelSet>(sum, count, buckets, None)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_at_or_above_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(25)); // exactly a bound: le="0.000025"
        h.observe(Duration::from_micros(26));
        h.observe(Duration::from_secs(60)); // past every bound: +Inf only
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.000_025, 1));
        assert_eq!(s.buckets[1], (0.000_05, 1));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((s.sum - 60.000_051).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn counters_and_histograms_sum_what_every_thread_recorded() {
        let counter = std::sync::Arc::new(Counter::default());
        let histogram = std::sync::Arc::new(Histogram::default());
        // More threads than shards: some share one.
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|_| {
                let (c, h) = (counter.clone(), histogram.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc();
                        h.observe(Duration::from_micros(40));
                    }
                    c.add(5);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let threads = (SHARDS + 3) as u64;
        assert_eq!(counter.get(), threads * 1005);
        assert_eq!(histogram.count(), threads * 1000);
        let snap = histogram.snapshot();
        assert_eq!(snap.count, threads * 1000);
        // All in the 50 µs bucket, none elsewhere.
        for (bound, n) in &snap.buckets {
            let expected = if *bound == 0.000_05 {
                threads * 1000
            } else {
                0
            };
            assert_eq!(*n, expected, "bucket {bound}");
        }
        assert!((snap.sum - threads as f64 * 1000.0 * 40e-6).abs() < 1e-9);
    }

    #[test]
    fn bucket_bounds_increase() {
        assert!(BUCKET_NANOS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(BUCKET_NANOS[0], 25_000);
        assert_eq!(BUCKET_NANOS[BUCKET_NANOS.len() - 1], 10_000_000_000);
    }

    #[test]
    fn scrape_renders_prometheus_conventions() {
        let m = Metrics::default();
        m.requests.add(3);
        m.record_status(404);
        m.request_duration
            .observe(RouteKind::Label, Outcome::Hit, Duration::from_micros(40));
        let mut s = Scrape::default();
        m.scrape(&mut s);
        let text = s.render();
        for line in [
            "# TYPE label_gateway_requests counter",
            "label_gateway_requests_total 3",
            "label_gateway_responses_total{class=\"4xx\"} 1",
            "# TYPE label_gateway_connections_open gauge",
            "# TYPE label_gateway_request_duration_seconds histogram",
            "# UNIT label_gateway_request_duration_seconds seconds",
            "label_gateway_request_duration_seconds_bucket{le=\"0.000025\",route=\"label\",outcome=\"hit\"} 0",
            "label_gateway_request_duration_seconds_bucket{le=\"0.00005\",route=\"label\",outcome=\"hit\"} 1",
            "label_gateway_request_duration_seconds_bucket{le=\"+Inf\",route=\"label\",outcome=\"hit\"} 1",
            "label_gateway_request_duration_seconds_count{route=\"label\",outcome=\"hit\"} 1",
            "label_gateway_request_duration_seconds_count{route=\"internal\",outcome=\"ok\"} 0",
            "label_gateway_storage_first_byte_seconds_count 0",
            "# TYPE label_gateway_build info",
            concat!("label_gateway_build_info{version=\"", env!("CARGO_PKG_VERSION"), "\"} 1"),
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(
            !text.contains("route=\"internal\",outcome=\"hit\""),
            "only the outcomes a route can have are exported"
        );
    }
}
