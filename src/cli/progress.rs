//! Progress of the long operator commands (`migrate`, `backup`, `prune`): a bar on a
//! terminal (indicatif: done/total, bytes, rate, ETA), a plain line every few seconds
//! otherwise (a log file, CI, `| tee`), and nothing in tests. Shared by the parallel
//! workers of one command: every method takes `&self`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often a plain progress line is written when stderr is not a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// The progress of one command: items done of a total, and the bytes they carried.
pub struct Progress {
    what: String,
    done: AtomicU64,
    total: AtomicU64,
    bytes: Arc<AtomicU64>,
    started: Instant,
    shown: Shown,
}

enum Shown {
    Hidden,
    Bar(ProgressBar),
    /// Plain lines on stderr, at most one per `every`; the time of the last one.
    Lines {
        every: Duration,
        last: Mutex<Instant>,
    },
}

impl Progress {
    /// Shows nothing (tests, and callers that print their own summary only).
    pub fn hidden() -> Progress {
        Self::with(String::new(), Shown::Hidden)
    }

    /// A bar when stderr is a terminal, plain lines every [`LINE_EVERY`] otherwise.
    /// `what` names the work, e.g. "migrate".
    pub fn for_stderr(what: &str) -> Progress {
        if std::io::stderr().is_terminal() {
            Self::bar(what)
        } else {
            Self::lines(what, LINE_EVERY)
        }
    }

    /// Plain lines on stderr, at most one per `every`, and one when finished.
    pub fn lines(what: &str, every: Duration) -> Progress {
        let now = Instant::now();
        Self::with(
            what.to_string(),
            Shown::Lines {
                every,
                last: Mutex::new(now),
            },
        )
    }

    fn bar(what: &str) -> Progress {
        let mut p = Self::with(what.to_string(), Shown::Hidden);
        let bytes = p.bytes.clone();
        let rate_bytes = p.bytes.clone();
        let style = ProgressStyle::with_template(
            "{prefix} {wide_bar} {pos}/{len} {bytes_done} {byte_rate} {label_rate} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "bytes_done",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", ByteSize(bytes.load(Ordering::Relaxed)));
            },
        )
        .with_key(
            "label_rate",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let secs = s.elapsed().as_secs_f64().max(0.001);
                let _ = write!(w, "{:.0}/s", s.pos() as f64 / secs);
            },
        )
        .with_key(
            "byte_rate",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let secs = s.elapsed().as_secs_f64().max(0.001);
                let rate = rate_bytes.load(Ordering::Relaxed) as f64 / secs;
                let _ = write!(w, "{}/s", ByteSize(rate as u64));
            },
        );
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(what.to_string());
        p.shown = Shown::Bar(bar);
        p
    }

    fn with(what: String, shown: Shown) -> Progress {
        Progress {
            what,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
            shown,
        }
    }

    /// Sets how many items there are to do.
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Shown::Bar(bar) = &self.shown {
            bar.set_length(total);
        }
    }

    /// Counts `items` more done, carrying `bytes`.
    pub fn advance(&self, items: u64, bytes: u64) {
        self.done.fetch_add(items, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        match &self.shown {
            Shown::Hidden => {}
            Shown::Bar(bar) => bar.inc(items),
            Shown::Lines { every, last } => {
                let now = Instant::now();
                let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                if now.duration_since(*last) >= *every {
                    *last = now;
                    eprintln!("{}", self.line());
                }
            }
        }
    }

    /// Ends the display: the bar is cleared (the command prints its summary), plain
    /// output gets a last line.
    pub fn finish(&self) {
        match &self.shown {
            Shown::Hidden => {}
            Shown::Bar(bar) => bar.finish_and_clear(),
            Shown::Lines { .. } => eprintln!("{}", self.line()),
        }
    }

    /// The plain line for the progress so far.
    pub fn line(&self) -> String {
        line(
            &self.what,
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.started.elapsed(),
        )
    }
}

/// `migrate: 1200/10000 (12%), 58.6 MiB, 240.0/s, 11.7 MiB/s, ETA 37s`.
fn line(what: &str, done: u64, total: u64, bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = done as f64 / secs;
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let eta = if done >= total || rate <= 0.0 {
        "0s".to_string()
    } else {
        let left = Duration::from_secs(((total - done) as f64 / rate).ceil() as u64);
        humantime::format_duration(left).to_string()
    };
    format!(
        "{what}: {done}/{total} ({pct}%), {}, {rate:.1}/s, {}/s, ETA {eta}",
        ByteSize(bytes),
        ByteSize((bytes as f64 / secs) as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_says_done_total_bytes_rate_and_eta() {
        let l = line(
            "migrate",
            1200,
            10_000,
            60 * 1024 * 1024,
            Duration::from_secs(5),
        );
        assert_eq!(
            l,
            "migrate: 1200/10000 (12%), 60.0 MiB, 240.0/s, 12.0 MiB/s, ETA 37s"
        );
        let done = line("backup", 3, 3, 1000, Duration::from_secs(1));
        assert!(done.starts_with("backup: 3/3 (100%)"), "{done}");
        assert!(done.ends_with("ETA 0s"), "{done}");
        let empty = line("prune", 0, 0, 0, Duration::ZERO);
        assert!(empty.starts_with("prune: 0/0 (100%)"), "{empty}");
    }

    #[test]
    fn shared_progress_counts_every_worker() {
        let p = Progress::hidden();
        p.set_total(10);
        std::thread::scope(|s| {
            for _ in 0..5 {
                s.spawn(|| {
                    p.advance(1, 100);
                    p.advance(1, 100);
                });
            }
        });
        assert!(
            p.line().starts_with(": 10/10 (100%), 1000 B"),
            "{}",
            p.line()
        );
    }
}
