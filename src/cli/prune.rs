//! `label-gateway prune`: deletes labels the shop no longer needs, chosen by age
//! (`--older-than 90d`, by the object's `LastModified`) and/or by a list of tracking
//! numbers (`--from-file`, e.g. the app's closed orders); with both, a label must match
//! both. A dry run unless `--yes`: it says what would go (count, bytes, oldest, newest).
//!
//! Only labels are ever deleted: the candidates come from the store's listing of
//! `{location}/`, only keys that are exactly `{location}/{tracking}.pdf` count, and the
//! keys deleted are built again from the tracking numbers. Deletion goes in batches of
//! S3 Multi-Object Delete (at most 1,000 keys a call); every label that could not be
//! deleted is reported with the store's reason.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytesize::ByteSize;

use super::progress::Progress;
use crate::config::Config;
use crate::storage::{Listed, Storage, MAX_DELETE_BATCH};
use crate::tracking::Tracking;

/// Keys asked for per listing request.
const PAGE_SIZE: u32 = 1000;

/// Which labels go, and whether they really do.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Labels last written longer ago than this (labels whose date the store does not
    /// give are kept).
    pub older_than: Option<Duration>,
    /// Labels whose tracking number is a line of this file.
    pub from_file: Option<PathBuf>,
    /// Delete; otherwise only report what would be deleted.
    pub yes: bool,
    /// Labels per delete call (at most [`MAX_DELETE_BATCH`]).
    pub batch: usize,
}

impl PruneOptions {
    pub fn new(older_than: Option<Duration>, from_file: Option<PathBuf>, yes: bool) -> Self {
        PruneOptions {
            older_than,
            from_file,
            yes,
            batch: MAX_DELETE_BATCH,
        }
    }
}

/// One label chosen for deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub tracking: Tracking,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
}

/// What a run chose and what became of it.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Nothing was deleted: the run only reports.
    pub dry_run: bool,
    /// The labels chosen, in tracking-number order.
    pub chosen: Vec<Chosen>,
    /// Tracking numbers deleted (empty on a dry run).
    pub deleted: Vec<String>,
    /// Tracking numbers the store did not delete, and why.
    pub failed: Vec<(String, String)>,
    /// Tracking numbers of `--from-file` the store has no label for.
    pub not_in_store: Vec<String>,
    /// Lines of `--from-file` that are not tracking numbers: (line number, text).
    pub bad_lines: Vec<(usize, String)>,
    /// Keys under the prefix that are not labels (never touched).
    pub not_labels: usize,
}

impl PruneReport {
    /// Bytes of the chosen labels.
    pub fn bytes(&self) -> u64 {
        self.chosen.iter().map(|c| c.size).sum()
    }

    /// The oldest and newest `LastModified` of the chosen labels.
    pub fn span(&self) -> Option<(SystemTime, SystemTime)> {
        let dates = self.chosen.iter().filter_map(|c| c.last_modified);
        let oldest = dates.clone().min()?;
        Some((oldest, dates.max()?))
    }

    /// One line: what would go (dry run) or what went.
    pub fn summary(&self) -> String {
        let span = match self.span() {
            Some((oldest, newest)) => format!(
                ", oldest {}, newest {}",
                humantime::format_rfc3339_seconds(oldest),
                humantime::format_rfc3339_seconds(newest)
            ),
            None => String::new(),
        };
        let what = format!(
            "{} labels, {}{span}",
            self.chosen.len(),
            ByteSize(self.bytes())
        );
        if self.dry_run {
            format!("would delete {what} (dry run: add --yes to delete)")
        } else {
            format!(
                "deleted {} of {what}; failed {}",
                self.deleted.len(),
                self.failed.len()
            )
        }
    }
}

/// Chooses the labels and, with `options.yes`, deletes them; deletion batches are
/// counted on `progress`.
pub async fn prune(
    config: &Config,
    options: &PruneOptions,
    progress: &Progress,
) -> anyhow::Result<PruneReport> {
    anyhow::ensure!(
        options.older_than.is_some() || options.from_file.is_some(),
        "say which labels go: --older-than, --from-file, or both"
    );
    let mut report = PruneReport {
        dry_run: !options.yes,
        ..PruneReport::default()
    };
    let wanted = match &options.from_file {
        Some(path) => Some(read_list(path, &mut report)?),
        None => None,
    };
    let cutoff = options.older_than.map(|age| {
        SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    });
    let storage = Storage::from_config(config)?;
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let (objects, next) = storage
            .list(token.as_deref(), PAGE_SIZE)
            .await
            .map_err(|e| anyhow::anyhow!("cannot list the store: {e}"))?;
        for Listed {
            tracking,
            size,
            last_modified,
            ..
        } in objects
        {
            let Some(tracking) = tracking else {
                report.not_labels += 1;
                continue;
            };
            seen.insert(tracking);
            let old = match cutoff {
                None => true,
                Some(cutoff) => last_modified.is_some_and(|t| t < cutoff),
            };
            let listed = wanted.as_ref().is_none_or(|w| w.contains(&tracking));
            if old && listed {
                report.chosen.push(Chosen {
                    tracking,
                    size,
                    last_modified,
                });
            }
        }
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    report.chosen.sort_by_key(|c| c.tracking);
    if let Some(wanted) = &wanted {
        report.not_in_store = wanted
            .iter()
            .filter(|t| !seen.contains(*t))
            .map(|t| t.to_string())
            .collect();
        report.not_in_store.sort();
    }
    if options.yes {
        delete(&storage, options.batch, &mut report, progress).await;
    }
    Ok(report)
}

/// Deletes the chosen labels batch by batch; a batch whose call failed as a whole
/// counts each of its labels as failed.
async fn delete(storage: &Storage, batch: usize, report: &mut PruneReport, progress: &Progress) {
    progress.set_total(report.chosen.len() as u64);
    for chunk in report.chosen.chunks(batch.clamp(1, MAX_DELETE_BATCH)) {
        let labels: Vec<Tracking> = chunk.iter().map(|c| c.tracking).collect();
        let failed = match storage.delete_many(&labels).await {
            Ok(failed) => failed,
            Err(e) => labels.iter().map(|t| (*t, e.to_string())).collect(),
        };
        let failed_set: HashSet<Tracking> = failed.iter().map(|(t, _)| *t).collect();
        let mut bytes = 0;
        for c in chunk {
            if !failed_set.contains(&c.tracking) {
                report.deleted.push(c.tracking.to_string());
                bytes += c.size;
            }
        }
        report
            .failed
            .extend(failed.into_iter().map(|(t, why)| (t.to_string(), why)));
        progress.advance(chunk.len() as u64, bytes);
    }
    progress.finish();
}

/// The tracking numbers of `path`, one a line; blank lines and `#` comments are
/// skipped, anything else that is not a tracking number is noted in the report.
fn read_list(path: &Path, report: &mut PruneReport) -> anyhow::Result<HashSet<Tracking>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut wanted = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match Tracking::parse(line) {
            Ok(t) => {
                wanted.insert(t);
            }
            Err(_) => report
                .bad_lines
                .push((n + 1, line.chars().take(80).collect())),
        }
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(t: &str, size: u64, secs: u64) -> Chosen {
        Chosen {
            tracking: Tracking::parse(t).unwrap(),
            size,
            last_modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        }
    }

    #[test]
    fn a_dry_run_summary_gives_count_bytes_oldest_and_newest() {
        let report = PruneReport {
            dry_run: true,
            chosen: vec![
                chosen("A1", 1024, 1_700_000_000),
                chosen("B2", 2048, 1_600_000_000),
            ],
            ..PruneReport::default()
        };
        assert_eq!(
            report.summary(),
            "would delete 2 labels, 3.0 KiB, oldest 2020-09-13T12:26:40Z, newest \
             2023-11-14T22:13:20Z (dry run: add --yes to delete)"
        );
    }

    #[test]
    fn the_list_file_skips_blanks_and_comments_and_notes_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("closed.txt");
        std::fs::write(&path, "# closed orders\nA1\n\n  B2 \n../etc/passwd\nA1\n").unwrap();
        let mut report = PruneReport::default();
        let wanted = read_list(&path, &mut report).unwrap();
        let mut got: Vec<String> = wanted.iter().map(|t| t.to_string()).collect();
        got.sort();
        assert_eq!(got, vec!["A1", "B2"]);
        assert_eq!(report.bad_lines, vec![(5, "../etc/passwd".to_string())]);
    }
}
