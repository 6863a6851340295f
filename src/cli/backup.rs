//! `label-gateway backup --to DIR`: copies every label of the configured store into a
//! local folder as `{tracking}.pdf`, the layout `migrate --from DIR` reads, so a backup is
//! restored with one command. Each label streams to a temporary file that is renamed into
//! place only once complete, so a cut download never looks like a label. Labels are never
//! rewritten by the app, so a file already there with the label's size is kept: re-running
//! fetches only what is new or was cut short. The store is listed whole first, then the
//! labels are copied `--jobs` at a time.

use std::path::{Path, PathBuf};

use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

pub use super::bulk::PAGE_SIZE;
use super::bulk::{list_all, open_label, run_jobs, summary};
use super::progress::Progress;
use super::DEFAULT_JOBS;
use crate::config::Config;
use crate::storage::{Listed, Storage};
use crate::tracking::Tracking;

/// What happened to the objects of one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Tracking numbers copied by this run (or, on a dry run, that would be).
    pub downloaded: Vec<String>,
    /// Tracking numbers whose file was already there with the label's size.
    pub up_to_date: Vec<String>,
    /// Keys in the store that are not `{location}/{tracking}.pdf`.
    pub not_labels: Vec<String>,
    pub failed: Vec<(String, String)>,
}

impl BackupReport {
    pub fn summary(&self) -> String {
        summary(&[
            ("downloaded", self.downloaded.len()),
            ("up to date", self.up_to_date.len()),
            ("not labels", self.not_labels.len()),
            ("failed", self.failed.len()),
        ])
    }
}

/// How a backup runs.
#[derive(Debug, Clone, Copy)]
pub struct BackupOptions {
    /// Report what would be downloaded; write nothing.
    pub dry_run: bool,
    /// Keys asked for per listing request (at most [`PAGE_SIZE`]).
    pub page_size: u32,
    /// Downloads at once (at least 1).
    pub jobs: usize,
}

/// Copies the store's labels into `to` (created when missing), `page_size` keys per
/// listing request, [`DEFAULT_JOBS`] downloads at once, no progress display.
pub async fn backup(
    config: &Config,
    to: &Path,
    dry_run: bool,
    page_size: u32,
) -> anyhow::Result<BackupReport> {
    let options = BackupOptions {
        dry_run,
        page_size,
        jobs: DEFAULT_JOBS,
    };
    backup_with(config, to, options, &Progress::hidden()).await
}

/// Lists the whole store first (so the progress has a total), then copies what is new,
/// `options.jobs` at a time.
pub async fn backup_with(
    config: &Config,
    to: &Path,
    options: BackupOptions,
    progress: &Progress,
) -> anyhow::Result<BackupReport> {
    let storage = Storage::from_config(config)?;
    if !options.dry_run {
        tokio::fs::create_dir_all(to)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", to.display()))?;
    }
    let mut report = BackupReport::default();
    let mut wanted = Vec::new();
    let mut listed = Vec::new();
    list_all(&storage, options.page_size, |object| listed.push(object))
        .await
        .map_err(|e| anyhow::anyhow!("cannot list the store: {e}"))?;
    for Listed {
        key,
        tracking,
        size,
        ..
    } in listed
    {
        let Some(tracking) = tracking else {
            report.not_labels.push(key);
            continue;
        };
        let dest = to.join(format!("{tracking}.pdf"));
        match tokio::fs::metadata(&dest).await {
            Ok(meta) if meta.is_file() && meta.len() == size => {
                report.up_to_date.push(tracking.to_string())
            }
            _ if options.dry_run => report.downloaded.push(tracking.to_string()),
            _ => wanted.push((tracking, size, dest)),
        }
    }
    let storage = &storage;
    let done = run_jobs(
        wanted,
        options.jobs,
        progress,
        |tracking, dest| async move { copy_label(storage, tracking, &dest).await },
    )
    .await;
    report.downloaded.extend(done.done);
    report.failed = done.failed;
    report.downloaded.sort();
    Ok(report)
}

/// Streams one label into `dest` through a temporary file beside it.
async fn copy_label(storage: &Storage, tracking: Tracking, dest: &Path) -> Result<(), String> {
    let (head, mut body) = open_label(storage, tracking).await?;
    let temp = temp_path(dest);
    let written = async {
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("download cut short: {e}"))?;
            if let Some(data) = frame.data_ref() {
                len += data.len() as u64;
                file.write_all(data)
                    .await
                    .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
            }
        }
        if len != head.content_length {
            return Err(format!(
                "download cut short: {len} of {} bytes",
                head.content_length
            ));
        }
        file.sync_all()
            .await
            .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
        tokio::fs::rename(&temp, dest)
            .await
            .map_err(|e| format!("cannot move the label into {}: {e}", dest.display()))
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    written
}

/// `.{name}.partial` beside `dest`: hidden, and never mistaken for a label by `migrate`.
fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.partial"))
}
