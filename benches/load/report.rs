//! The printed results: one table of rows × connection counts (medians of repeats), the
//! ratios the performance targets (docs/performance.md) are set for, and the memory run.

use std::collections::BTreeMap;

use crate::wrk::WrkResult;

/// One measured run, with what the row's own processes used during it.
#[derive(Debug, Clone)]
pub struct Measured {
    pub wrk: WrkResult,
    pub peak_rss: u64,
    /// CPU time of the row's processes per completed request: the cost of serving one
    /// label, steadier than requests/s on a shared machine.
    pub cpu_per_request_us: f64,
    /// Share of the machine's CPU used by anything but this bench during the run.
    pub foreign_cpu: f64,
}

/// A table cell: the runs of one row at one connection count.
#[derive(Debug, Clone)]
pub enum Cell {
    Runs(Vec<Measured>),
    /// A run broke a rule (an error, a wrong response): nothing of this cell is reported.
    Refused(String),
}

/// What a whole row is.
#[derive(Debug, Clone)]
pub enum RowState {
    Ready,
    /// The feature the row measures is not there yet (the label cache).
    NotYet(String),
    /// A peer the row needs could not be started.
    Skipped(String),
    /// The row failed its probe or validation pass.
    Refused(String),
}

/// Medians of a cell's runs, each metric taken separately.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub peak_rss: u64,
    pub cpu_per_request_us: f64,
    pub runs: usize,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl Cell {
    pub fn summary(&self) -> Option<Summary> {
        let Cell::Runs(runs) = self else { return None };
        if runs.is_empty() {
            return None;
        }
        let m = |f: fn(&Measured) -> f64| median(runs.iter().map(f).collect());
        Some(Summary {
            rps: m(|r| r.wrk.rps()),
            p50_us: m(|r| r.wrk.p50_us),
            p99_us: m(|r| r.wrk.p99_us),
            p999_us: m(|r| r.wrk.p999_us),
            peak_rss: m(|r| r.peak_rss as f64) as u64,
            cpu_per_request_us: m(|r| r.cpu_per_request_us),
            runs: runs.len(),
        })
    }
}

/// A row as the report sees it.
pub struct RowReport<'a> {
    pub name: &'a str,
    pub state: &'a RowState,
    pub cells: &'a BTreeMap<u32, Cell>,
}

pub fn latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The main table: one line per row and connection count.
pub fn table(rows: &[RowReport<'_>], conns: &[u32]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "| {:<28} | {:>5} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>8} | {:>4} |\n",
        "row", "conns", "req/s", "p50", "p99", "p99.9", "peak RSS", "CPU/req", "runs"
    ));
    out.push_str(&format!(
        "|{:-<30}|{:->7}|{:->11}|{:->11}|{:->11}|{:->11}|{:->11}|{:->10}|{:->6}|\n",
        "", ":", ":", ":", ":", ":", ":", ":", ":"
    ));
    for row in rows {
        let whole_row = match row.state {
            RowState::Ready => None,
            RowState::NotYet(why) => Some(format!("not yet: {why}")),
            RowState::Skipped(why) => Some(format!("skipped: {why}")),
            RowState::Refused(why) => Some(format!("REFUSED: {why}")),
        };
        if let Some(msg) = whole_row {
            out.push_str(&format!("| {:<28} | {:>5} | {msg} |\n", row.name, "all"));
            continue;
        }
        for c in conns {
            let line = match row.cells.get(c) {
                // A row narrowed to some connection counts has no line at the others.
                None => continue,
                Some(Cell::Refused(why)) => format!("REFUSED: {why}"),
                Some(cell) => match cell.summary() {
                    None => "not run".to_string(),
                    Some(s) => format!(
                        "{:>9.0} | {:>9} | {:>9} | {:>9} | {:>9} | {:>8} | {:>4}",
                        s.rps,
                        latency(s.p50_us),
                        latency(s.p99_us),
                        latency(s.p999_us),
                        mib(s.peak_rss),
                        format!("{:.0} µs", s.cpu_per_request_us),
                        s.runs
                    ),
                },
            };
            out.push_str(&format!("| {:<28} | {c:>5} | {line} |\n", row.name));
        }
    }
    out
}

/// A comparison of two rows against a performance target, judged at the connection counts in `at` (met only
/// when met at every one of them).
pub struct Check {
    pub label: &'static str,
    pub num: &'static str,
    pub den: &'static str,
    pub kind: Kind,
    pub at: &'static [u32],
}

/// What a [`Check`] compares.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `num / den` of requests/s (of MiB/s, for rows serving the same label) at least this.
    Rate(f64),
    /// `num / den` of CPU time per response at most this.
    Cpu(f64),
    /// `num`'s p99 minus `den`'s under this many µs.
    AddedP99(f64),
}

/// The comparison lines at every connection count, each with its target and verdict.
pub fn ratios(rows: &[RowReport<'_>], conns: &[u32], checks: &[Check]) -> String {
    let summary = |name: &str, c: u32| {
        rows.iter()
            .find(|r| r.name == name && matches!(r.state, RowState::Ready))
            .and_then(|r| r.cells.get(&c))
            .and_then(Cell::summary)
    };
    let mut out = String::new();
    out.push_str(&format!("| {:<42} |", "comparison (medians)"));
    for c in conns {
        out.push_str(&format!(" {:>9} |", format!("{c} conns")));
    }
    out.push_str(&format!(" {:<18} | {:<8} |\n", "target", "verdict"));
    out.push_str(&format!("|{:-<44}|", ""));
    for _ in conns {
        out.push_str(&format!("{:->11}|", ":"));
    }
    out.push_str(&format!("{:-<20}|{:-<10}|\n", "", ""));
    for check in checks {
        let value = |c: u32| -> Option<f64> {
            let (a, b) = (summary(check.num, c)?, summary(check.den, c)?);
            Some(match check.kind {
                Kind::Rate(_) => a.rps / b.rps,
                Kind::Cpu(_) => a.cpu_per_request_us / b.cpu_per_request_us,
                Kind::AddedP99(_) => a.p99_us - b.p99_us,
            })
        };
        let show = |v: f64| match check.kind {
            Kind::Rate(_) | Kind::Cpu(_) => format!("{v:.2}x"),
            Kind::AddedP99(_) => latency(v),
        };
        out.push_str(&format!("| {:<42} |", check.label));
        for &c in conns {
            let cell = value(c).map_or_else(|| "-".to_string(), show);
            out.push_str(&format!(" {cell:>9} |"));
        }
        let met = |v: f64| match check.kind {
            Kind::Rate(min) => v >= min,
            Kind::Cpu(max) => v <= max,
            Kind::AddedP99(max) => v < max,
        };
        let at = check
            .at
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join("+");
        let target = match check.kind {
            Kind::Rate(min) => format!(">= {min:.2}x at {at}"),
            Kind::Cpu(max) => format!("<= {max:.2}x at {at}"),
            Kind::AddedP99(max) => format!("< {} at {at}", latency(max)),
        };
        let values: Option<Vec<f64>> = check.at.iter().map(|&c| value(c)).collect();
        let verdict = match values {
            None => "n/a",
            Some(v) if v.iter().all(|&x| met(x)) => "meets",
            Some(_) => "MISSES",
        };
        out.push_str(&format!(" {target:<18} | {verdict:<8} |\n"));
    }
    out
}

/// Mean and largest share of the machine's CPU that other work took during the runs.
pub fn foreign_cpu(rows: &[RowReport<'_>]) -> Option<(f64, f64)> {
    let shares: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.cells.values())
        .filter_map(|c| match c {
            Cell::Runs(runs) => Some(runs.iter().map(|m| m.foreign_cpu)),
            Cell::Refused(_) => None,
        })
        .flatten()
        .collect();
    if shares.is_empty() {
        return None;
    }
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    Some((mean, shares.iter().copied().fold(0.0, f64::max)))
}
