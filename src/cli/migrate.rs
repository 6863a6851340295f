//! `label-gateway migrate --from DIR`: copies the app's old local labels
//! (`media/shipping_labels/{tracking}.pdf`) into the configured store, as
//! `{location}/{tracking}.pdf`. Never overwrites unless asked, skips what is not a label,
//! and reports every file's fate; re-running it is safe. Uploads run `--jobs` at a time.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;

use super::progress::Progress;
use super::DEFAULT_JOBS;
use crate::config::Config;
use crate::http::full;
use crate::storage::{Fetch, GetRequest, PutOutcome, Storage};
use crate::tracking::Tracking;

/// What happened to the files of one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    pub uploaded: Vec<String>,
    pub already_there: Vec<String>,
    /// File names that are not `{tracking}.pdf` with a valid tracking number.
    pub skipped_names: Vec<PathBuf>,
    /// Files that do not start with `%PDF-`.
    pub not_pdf: Vec<PathBuf>,
    pub failed: Vec<(PathBuf, String)>,
}

impl MigrateReport {
    pub fn summary(&self) -> String {
        format!(
            "uploaded {}, already in storage {}, skipped names {}, not PDF {}, failed {}",
            self.uploaded.len(),
            self.already_there.len(),
            self.skipped_names.len(),
            self.not_pdf.len(),
            self.failed.len()
        )
    }
}

/// How a migration runs.
#[derive(Debug, Clone, Copy)]
pub struct MigrateOptions {
    /// Replace labels that already exist in the store.
    pub overwrite: bool,
    /// Report what would be uploaded; write nothing.
    pub dry_run: bool,
    /// Uploads at once (at least 1).
    pub jobs: usize,
}

/// [`migrate_with`] with [`DEFAULT_JOBS`] uploads at once and no progress display.
pub async fn migrate(
    config: &Config,
    from: &Path,
    overwrite: bool,
    dry_run: bool,
) -> anyhow::Result<MigrateReport> {
    let options = MigrateOptions {
        overwrite,
        dry_run,
        jobs: DEFAULT_JOBS,
    };
    migrate_with(config, from, options, &Progress::hidden()).await
}

/// What became of one file.
enum Fate {
    Uploaded(Tracking),
    AlreadyThere(Tracking),
    NotPdf(PathBuf),
    Failed(PathBuf, String),
}

/// Copies every `{tracking}.pdf` of `from` into the store, `options.jobs` at a time,
/// counting each file on `progress`.
pub async fn migrate_with(
    config: &Config,
    from: &Path,
    options: MigrateOptions,
    progress: &Progress,
) -> anyhow::Result<MigrateReport> {
    let storage = Storage::from_config(config)?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(from)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", from.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let mut report = MigrateReport::default();
    let mut labels = Vec::with_capacity(entries.len());
    for path in entries {
        let tracking = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pdf"))
            .and_then(|t| Tracking::parse(t).ok());
        match tracking {
            Some(tracking) => labels.push((path, tracking)),
            None => report.skipped_names.push(path),
        }
    }
    progress.set_total(labels.len() as u64);
    let storage = &storage;
    let mut fates = futures_util::stream::iter(labels)
        .map(|(path, tracking)| async move {
            let (fate, bytes) = migrate_one(storage, path, tracking, options).await;
            progress.advance(1, bytes);
            fate
        })
        .buffer_unordered(options.jobs.max(1));
    while let Some(fate) = fates.next().await {
        match fate {
            Fate::Uploaded(t) => report.uploaded.push(t.to_string()),
            Fate::AlreadyThere(t) => report.already_there.push(t.to_string()),
            Fate::NotPdf(path) => report.not_pdf.push(path),
            Fate::Failed(path, why) => report.failed.push((path, why)),
        }
    }
    progress.finish();
    report.uploaded.sort();
    report.already_there.sort();
    report.not_pdf.sort();
    report.failed.sort();
    Ok(report)
}

/// Reads, checks and uploads one label; the fate and the bytes read.
async fn migrate_one(
    storage: &Storage,
    path: PathBuf,
    tracking: Tracking,
    options: MigrateOptions,
) -> (Fate, u64) {
    let data = match tokio::fs::read(&path).await {
        Ok(d) => d,
        Err(e) => return (Fate::Failed(path, e.to_string()), 0),
    };
    let len = data.len() as u64;
    if !data.starts_with(b"%PDF-") {
        return (Fate::NotPdf(path), len);
    }
    if options.dry_run {
        return (
            would_upload(storage, path, tracking, options.overwrite).await,
            len,
        );
    }
    let fate = match storage
        .put(&tracking, full(data), len, options.overwrite)
        .await
    {
        Ok(PutOutcome::Created { .. }) => Fate::Uploaded(tracking),
        Ok(PutOutcome::AlreadyExists) => Fate::AlreadyThere(tracking),
        Err(e) => Fate::Failed(path, e.to_string()),
    };
    (fate, len)
}

/// The fate a real run would give a label: the store is asked (a HEAD) whether it is
/// already there, so the dry run's summary is the real run's.
async fn would_upload(
    storage: &Storage,
    path: PathBuf,
    tracking: Tracking,
    overwrite: bool,
) -> Fate {
    if overwrite {
        return Fate::Uploaded(tracking);
    }
    let head = GetRequest {
        tracking,
        range: None,
        conditions: &Default::default(),
        head_only: true,
    };
    match storage.get(head).await {
        Ok(Fetch::NotFound) => Fate::Uploaded(tracking),
        Ok(_) => Fate::AlreadyThere(tracking),
        Err(e) => Fate::Failed(path, e.to_string()),
    }
}
