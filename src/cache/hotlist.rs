//! Coming back warm: the hot list (`[cache] hot_list`), a file of the tracking numbers the
//! cache held when the gateway drained, hottest first, and the warm-up that reads them
//! back into the next process's cache in the background.
//!
//! The file is plain text, one tracking number a line after a `#` comment line, written
//! through a temporary file beside it and a rename, so a reader (or the next start) sees
//! the old list or the new one, never half of one. It names at most what fits
//! `cache.max_bytes`. "Hottest" is what the cache can tell without bookkeeping on the hit
//! path: labels that were served from memory at least once come first, then the rest, each
//! group newest first.
//!
//! The warm-up loads each label through the same fill lock a request takes (a request for
//! a label being warmed waits for that read instead of making its own), a few at a time
//! ([`WARM_CONCURRENCY`]), stops at `cache.max_bytes` or when the gateway drains, and
//! skips a label storage no longer has (nothing is regenerated).

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::StreamExt;

use super::{LabelCache, ENTRY_OVERHEAD_BYTES};
use crate::tracking::Tracking;

/// Labels read from storage at once while warming: enough to fill a cache of small labels
/// in seconds, few enough to leave the storage connections to the first requests.
pub const WARM_CONCURRENCY: usize = 8;

/// The first line of the file.
const HEADER: &str = "# label-gateway hot list: one tracking number a line, hottest first";

/// What loading one label found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmed {
    /// Held in the cache now (or already was): this many bytes.
    Held(u64),
    /// Storage no longer has it (skipped, not regenerated).
    Gone,
    /// Larger than `cache.max_object_bytes`: not cached.
    TooLarge,
}

/// What a warm-up did, for its log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WarmReport {
    pub listed: usize,
    pub warmed: usize,
    pub bytes: u64,
    pub gone: usize,
    pub failed: usize,
}

/// What the hot list knows of one held label.
#[derive(Debug, Clone, Copy)]
struct Held {
    tracking: Tracking,
    len: u64,
    /// Served from memory at least once (its hit headers were built).
    served: bool,
    inserted: tokio::time::Instant,
}

impl LabelCache {
    /// The labels held now, hottest first (see the module docs), as many as fit
    /// `max_bytes` with their per-entry overhead.
    pub fn hot_labels(&self) -> Vec<Tracking> {
        let held = self
            .cache
            .iter()
            .map(|(key, label)| Held {
                tracking: key.tracking,
                len: label.len,
                served: label.hit_headers.get().is_some() || label.hit_head.get().is_some(),
                inserted: label.inserted,
            })
            .collect();
        hottest_first(held, self.max_bytes)
    }
}

/// Served labels first, then the rest, each newest first; cut where `max_bytes` is full.
fn hottest_first(mut held: Vec<Held>, max_bytes: u64) -> Vec<Tracking> {
    held.sort_by(|a, b| b.served.cmp(&a.served).then(b.inserted.cmp(&a.inserted)));
    let mut room = max_bytes;
    held.into_iter()
        .take_while(|h| {
            let weight = h.len.saturating_add(ENTRY_OVERHEAD_BYTES);
            let fits = weight <= room;
            room = room.saturating_sub(weight);
            fits
        })
        .map(|h| h.tracking)
        .collect()
}

/// Writes `labels` to `path` atomically: a temporary file beside it, flushed to disk,
/// then renamed over it.
pub fn write(path: &Path, labels: &[Tracking]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        let mut text = String::with_capacity(HEADER.len() + 1 + labels.len() * 16);
        text.push_str(HEADER);
        text.push('\n');
        for t in labels {
            text.push_str(t.as_str());
            text.push('\n');
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `{path}.tmp`, in the same folder (a rename across file systems is not atomic).
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The tracking numbers of the list at `path`, in order, each once; comment and blank lines
/// skipped, and lines that are no tracking number too (counted in the second value). A
/// missing file is an empty list.
pub fn read(path: &Path) -> std::io::Result<(Vec<Tracking>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut seen = std::collections::HashSet::new();
    let mut labels = Vec::new();
    let mut bad = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match Tracking::parse(line) {
            Ok(t) if seen.insert(t) => labels.push(t),
            Ok(_) => {}
            Err(_) => bad += 1,
        }
    }
    Ok((labels, bad))
}

/// Loads `labels` into `cache` with `load` (the gateway's whole-label read through the
/// fill lock), [`WARM_CONCURRENCY`] at a time, until the list ends, the cache's
/// `max_bytes` is reached or `stop` says the gateway drains.
pub async fn warm<F, Fut, E>(
    cache: &LabelCache,
    labels: Vec<Tracking>,
    load: F,
    stop: impl Fn() -> bool,
) -> WarmReport
where
    F: Fn(Tracking) -> Fut,
    Fut: Future<Output = Result<Warmed, E>>,
    E: std::fmt::Display,
{
    let mut report = WarmReport {
        listed: labels.len(),
        ..WarmReport::default()
    };
    let mut loads = futures_util::stream::iter(labels)
        .map(|t| {
            let fut = load(t);
            async move { (t, fut.await) }
        })
        .buffer_unordered(WARM_CONCURRENCY);
    while let Some((tracking, outcome)) = loads.next().await {
        match outcome {
            Ok(Warmed::Held(bytes)) => {
                report.warmed += 1;
                report.bytes += bytes.saturating_add(ENTRY_OVERHEAD_BYTES);
                cache.stats.warmed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Warmed::Gone) => report.gone += 1,
            Ok(Warmed::TooLarge) => report.failed += 1,
            Err(e) => {
                report.failed += 1;
                tracing::debug!(%tracking, error = %e, "hot list: label not warmed");
            }
        }
        if report.bytes >= cache.max_bytes || stop() {
            break;
        }
    }
    report
}

/// Reads the list at `path` and warms it (see [`warm`]), logging what it did.
pub async fn warm_from<F, Fut, E>(cache: &LabelCache, path: &Path, load: F, stop: impl Fn() -> bool)
where
    F: Fn(Tracking) -> Fut,
    Fut: Future<Output = Result<Warmed, E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let shown = path.display();
    let labels = match read(path) {
        Ok((labels, bad)) => {
            if bad > 0 {
                tracing::warn!(
                    path = %shown,
                    lines = bad,
                    "hot list: lines that are no tracking number, ignored"
                );
            }
            labels
        }
        Err(e) => {
            tracing::warn!(path = %shown, error = %e, "hot list: cannot read it, starting cold");
            return;
        }
    };
    if labels.is_empty() {
        return;
    }
    tracing::info!(
        path = %shown,
        labels = labels.len(),
        "hot list: warming the cache in the background"
    );
    let r = warm(cache, labels, load, stop).await;
    tracing::info!(
        listed = r.listed,
        warmed = r.warmed,
        bytes = r.bytes,
        gone = r.gone,
        failed = r.failed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "hot list: warm-up done"
    );
}

/// Writes the cache's hot labels to `path`, logging the outcome (a drain goes on either
/// way).
pub fn save(cache: &LabelCache, path: &Path) {
    let labels = cache.hot_labels();
    let shown = path.display();
    match write(path, &labels) {
        Ok(()) => tracing::info!(path = %shown, labels = labels.len(), "hot list written"),
        Err(e) => tracing::warn!(
            path = %shown,
            error = %e,
            "hot list: cannot write it; the next start is cold"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: &str) -> Tracking {
        Tracking::parse(s).unwrap()
    }

    #[test]
    fn served_labels_come_first_then_the_newest_until_max_bytes_is_full() {
        let start = tokio::time::Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let held = |tracking: &str, served: bool, secs: u64| Held {
            tracking: t(tracking),
            len: 1000 - ENTRY_OVERHEAD_BYTES,
            served,
            inserted: at(secs),
        };
        let labels = vec![
            held("OLD1", false, 1),
            held("SERVED1", true, 2),
            held("NEW1", false, 5),
            held("SERVED2", true, 3),
            held("MID1", false, 4),
        ];
        assert_eq!(
            hottest_first(labels.clone(), 10_000),
            [t("SERVED2"), t("SERVED1"), t("NEW1"), t("MID1"), t("OLD1")]
        );
        // Each weighs 1000 bytes with its overhead: three fit 3500.
        assert_eq!(
            hottest_first(labels, 3500),
            [t("SERVED2"), t("SERVED1"), t("NEW1")]
        );
    }

    #[test]
    fn the_list_is_replaced_whole_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hot.txt");
        assert_eq!(
            read(&path).unwrap(),
            (Vec::new(), 0),
            "no file: an empty list"
        );
        write(&path, &[t("A1"), t("B2")]).unwrap();
        write(&path, &[t("C3"), t("A1")]).unwrap();
        assert_eq!(read(&path).unwrap(), (vec![t("C3"), t("A1")], 0));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["hot.txt"], "no temporary file left behind");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# "), "{text}");
    }

    #[test]
    fn lines_that_are_no_tracking_number_are_counted_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hot.txt");
        std::fs::write(
            &path,
            "# list\nA1\n\n../etc/passwd\nA1\n  B2  \nnot a number\n",
        )
        .unwrap();
        assert_eq!(read(&path).unwrap(), (vec![t("A1"), t("B2")], 2));
    }
}
