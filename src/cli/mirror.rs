//! `label-gateway mirror [--dry-run] [--jobs N] [--delete]`: keeps the fallback bucket
//! (`[storage.fallback]`) filled from the primary, since Spaces replicates nothing across
//! regions by itself.
//!
//! Both buckets are listed whole under `{location}/`, then every label the fallback lacks
//! or holds differently (another size, or another ETag) is streamed from the primary into
//! it, `--jobs` at a time, with `backup`'s progress and summary. Re-running copies only
//! what changed. Only labels (`{location}/{tracking}.pdf`) are ever read, written or
//! deleted: other keys of either bucket are left alone. `--delete` also removes the
//! fallback's labels the primary no longer has (pruned ones), unless the primary lists
//! no label at all (a wrong bucket or location must not empty the fallback).

use std::collections::HashMap;

use super::bulk::{list_all, open_label, run_jobs, summary, PAGE_SIZE};
use super::progress::Progress;
use crate::config::Config;
use crate::storage::fallback::{fallback_error, fallback_storage_config};
use crate::storage::s3::S3Store;
use crate::storage::{Listed, Storage, MAX_DELETE_BATCH};
use crate::tracking::Tracking;

/// How a mirror runs.
#[derive(Debug, Clone, Copy)]
pub struct MirrorOptions {
    /// Report the plan (what would be copied and deleted); write nothing.
    pub dry_run: bool,
    /// Also delete the fallback's labels that the primary no longer has.
    pub delete: bool,
    /// Copies at once (at least 1).
    pub jobs: usize,
    /// Keys asked for per listing request (at most [`PAGE_SIZE`]).
    pub page_size: u32,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            dry_run: false,
            delete: false,
            jobs: super::DEFAULT_JOBS,
            page_size: PAGE_SIZE,
        }
    }
}

/// What happened to the labels of one run (on a dry run: what would).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MirrorReport {
    /// Labels copied into the fallback: missing there, or held differently.
    pub copied: Vec<String>,
    /// Labels the fallback already holds with the primary's size and ETag.
    pub up_to_date: Vec<String>,
    /// The fallback's labels the primary no longer has, deleted (`--delete`).
    pub deleted: Vec<String>,
    /// The fallback's labels the primary no longer has, kept (no `--delete`).
    pub extra: Vec<String>,
    /// Keys of the primary under `{location}/` that are not labels (never copied).
    pub not_labels: Vec<String>,
    pub failed: Vec<(String, String)>,
}

impl MirrorReport {
    pub fn summary(&self) -> String {
        summary(&[
            ("copied", self.copied.len()),
            ("up to date", self.up_to_date.len()),
            ("deleted", self.deleted.len()),
            ("only in the fallback", self.extra.len()),
            ("not labels", self.not_labels.len()),
            ("failed", self.failed.len()),
        ])
    }
}

/// Lists both buckets, then copies (and with `delete`, deletes) what differs.
pub async fn mirror(
    config: &Config,
    options: MirrorOptions,
    progress: &Progress,
) -> anyhow::Result<MirrorReport> {
    let Some(fallback_config) = fallback_storage_config(&config.storage) else {
        anyhow::bail!("no fallback bucket: set [storage.fallback] endpoint (and its bucket)");
    };
    let primary = Storage::S3(Box::new(S3Store::new(&config.storage)?));
    let fallback = Storage::S3(Box::new(S3Store::new(&fallback_config)?));
    let mut report = MirrorReport::default();
    let mut source = Vec::new();
    list_all(&primary, options.page_size, |o| match o.tracking {
        Some(tracking) => source.push((tracking, o)),
        None => report.not_labels.push(o.key),
    })
    .await
    .map_err(|e| anyhow::anyhow!("cannot list the primary bucket: {e}"))?;
    let mut held: HashMap<Tracking, Listed> = HashMap::new();
    list_all(&fallback, options.page_size, |o| {
        if let Some(tracking) = o.tracking {
            held.insert(tracking, o);
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("cannot list the fallback bucket: {}", fallback_error(e)))?;
    let mut wanted = Vec::new();
    for (tracking, object) in source.iter() {
        match held.remove(tracking) {
            Some(copy) if same(object, &copy) => report.up_to_date.push(tracking.to_string()),
            _ => wanted.push((*tracking, object.size, ())),
        }
    }
    let mut stale: Vec<Tracking> = held.into_keys().collect();
    stale.sort();
    if options.delete && source.is_empty() && !stale.is_empty() {
        anyhow::bail!(
            "the primary bucket lists no label under its location: refusing to delete the \
             fallback's {} labels (check storage.bucket and storage.location)",
            stale.len()
        );
    }
    let (stale, extra) = if options.delete {
        (stale, Vec::new())
    } else {
        (Vec::new(), stale)
    };
    report.extra = extra.iter().map(Tracking::to_string).collect();
    report.up_to_date.sort();
    if options.dry_run {
        report.copied = wanted.iter().map(|(t, ..)| t.to_string()).collect();
        report.copied.sort();
        report.deleted = stale.iter().map(Tracking::to_string).collect();
        return Ok(report);
    }
    let (from, to) = (&primary, &fallback);
    let done = run_jobs(wanted, options.jobs, progress, |tracking, ()| async move {
        let (head, body) = open_label(from, tracking).await?;
        let Some(to) = to.s3() else {
            return Err("the fallback is not an S3 store".to_string());
        };
        to.put(&tracking, body, head.content_length, true)
            .await
            .map(drop)
            .map_err(|e| format!("into the fallback: {}", fallback_error(e)))
    })
    .await;
    report.copied = done.done;
    report.failed = done.failed;
    for batch in stale.chunks(MAX_DELETE_BATCH) {
        let failed = match fallback.delete_many(batch).await {
            Ok(failed) => failed,
            Err(e) => {
                let why = fallback_error(e).to_string();
                batch.iter().map(|t| (*t, why.clone())).collect()
            }
        };
        for tracking in batch {
            match failed.iter().find(|(t, _)| t == tracking) {
                Some((_, why)) => report
                    .failed
                    .push((tracking.to_string(), format!("not deleted: {why}"))),
                None => report.deleted.push(tracking.to_string()),
            }
        }
    }
    report.failed.sort();
    Ok(report)
}

/// Whether the fallback's copy is the primary's label: the same size and, when both are
/// listed, the same ETag. A multipart upload's ETag (`"…-N"`) is not the MD5 a copy gets,
/// so for those the size alone decides.
fn same(primary: &Listed, copy: &Listed) -> bool {
    let etag = |l: &Listed| l.etag.as_deref().map(|e| e.trim_matches('"').to_string());
    primary.size == copy.size
        && match (etag(primary), etag(copy)) {
            (Some(p), Some(c)) if !p.contains('-') => p == c,
            _ => true,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(size: u64, etag: Option<&str>) -> Listed {
        Listed {
            key: "labels/A1.pdf".into(),
            etag: etag.map(str::to_string),
            tracking: Tracking::parse("A1").ok(),
            size,
            last_modified: None,
        }
    }

    #[test]
    fn a_copy_is_the_same_with_the_same_size_and_etag() {
        let a = listed(10, Some("\"abc\""));
        assert!(same(&a, &listed(10, Some("abc"))));
        assert!(!same(&a, &listed(11, Some("\"abc\""))));
        assert!(!same(&a, &listed(10, Some("\"abd\""))));
        assert!(same(&a, &listed(10, None)));
        // A multipart ETag never equals a copy's MD5: the size decides.
        assert!(same(
            &listed(10, Some("\"abc-2\"")),
            &listed(10, Some("\"def\""))
        ));
        assert!(!same(
            &listed(10, Some("\"abc-2\"")),
            &listed(9, Some("\"def\""))
        ));
    }
}
