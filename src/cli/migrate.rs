//! `label-gateway migrate --from DIR`: copies the app's old local labels
//! (`media/shipping_labels/{tracking}.pdf`) into the configured store, as
//! `{location}/{tracking}.pdf`. Never overwrites unless asked, skips what is not a label,
//! and reports every file's fate; re-running it is safe.

use crate::tracking::Tracking;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::http::full;
use crate::storage::{PutOutcome, Storage};

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

pub async fn migrate(
    config: &Config,
    from: &Path,
    overwrite: bool,
    dry_run: bool,
) -> anyhow::Result<MigrateReport> {
    let storage = Storage::from_config(config)?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(from)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", from.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let mut report = MigrateReport::default();
    for path in entries {
        let tracking = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pdf"))
            .and_then(|t| Tracking::parse(t).ok());
        let Some(tracking) = tracking else {
            report.skipped_names.push(path);
            continue;
        };
        let data = match tokio::fs::read(&path).await {
            Ok(d) => d,
            Err(e) => {
                report.failed.push((path, e.to_string()));
                continue;
            }
        };
        if !data.starts_with(b"%PDF-") {
            report.not_pdf.push(path);
            continue;
        }
        if dry_run {
            report.uploaded.push(tracking.to_string());
            continue;
        }
        let len = data.len() as u64;
        match storage.put(&tracking, full(data), len, overwrite).await {
            Ok(PutOutcome::Created { .. }) => report.uploaded.push(tracking.to_string()),
            Ok(PutOutcome::AlreadyExists) => report.already_there.push(tracking.to_string()),
            Err(e) => report.failed.push((path, e.to_string())),
        }
    }
    Ok(report)
}
