//! What the commands that copy labels in bulk (`backup`, `mirror`) share: a store listed
//! whole, page by page; the copies run `--jobs` at a time, the progress advancing as each
//! ends; and the one-line summary they print.

use std::future::Future;

use futures_util::StreamExt;

use super::progress::Progress;
use crate::http::{Body, Conditions};
use crate::storage::{Fetch, GetRequest, Listed, ObjectHead, Storage, StorageError};
use crate::tracking::Tracking;

/// Objects asked for per listing page (S3's own maximum).
pub const PAGE_SIZE: u32 = 1000;

/// Lists every object of `storage` (every key under `{location}/` for S3),
/// `page_size` per request, handing each to `each`.
pub async fn list_all(
    storage: &Storage,
    page_size: u32,
    mut each: impl FnMut(Listed),
) -> Result<(), StorageError> {
    let mut token: Option<String> = None;
    loop {
        let (objects, next) = storage
            .list(token.as_deref(), page_size.clamp(1, PAGE_SIZE))
            .await?;
        objects.into_iter().for_each(&mut each);
        match next {
            Some(t) => token = Some(t),
            None => return Ok(()),
        }
    }
}

/// A label's head and streaming body, to be copied; why not as a message.
pub async fn open_label(
    storage: &Storage,
    tracking: Tracking,
) -> Result<(ObjectHead, Body), String> {
    let conditions = Conditions::default();
    let fetch = storage
        .get(GetRequest {
            tracking,
            range: None,
            conditions: &conditions,
            head_only: false,
        })
        .await
        .map_err(|e| e.to_string())?;
    match fetch {
        Fetch::Found { head, body } => Ok((head, body)),
        Fetch::NotFound => Err("deleted from the store meanwhile".into()),
        _ => Err("the store did not return the label".into()),
    }
}

/// The labels a bulk run did, and those that failed with why; both sorted.
#[derive(Debug, Default)]
pub struct Done {
    pub done: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// Runs `work` on each `(tracking, bytes, item)`, `jobs` at a time, with `progress`
/// showing the items (its total set first) and the bytes of those that succeeded.
pub async fn run_jobs<T, F, Fut>(
    items: Vec<(Tracking, u64, T)>,
    jobs: usize,
    progress: &Progress,
    work: F,
) -> Done
where
    F: Fn(Tracking, T) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    progress.set_total(items.len() as u64);
    let work = &work;
    let mut runs = futures_util::stream::iter(items)
        .map(|(tracking, bytes, item)| async move {
            let outcome = work(tracking, item).await;
            progress.advance(1, if outcome.is_ok() { bytes } else { 0 });
            (tracking, outcome)
        })
        .buffer_unordered(jobs.max(1));
    let mut out = Done::default();
    while let Some((tracking, outcome)) = runs.next().await {
        match outcome {
            Ok(()) => out.done.push(tracking.to_string()),
            Err(why) => out.failed.push((tracking.to_string(), why)),
        }
    }
    progress.finish();
    out.done.sort();
    out.failed.sort();
    out
}

/// `downloaded 3, up to date 1, not labels 0, failed 0`: each count with its name.
pub fn summary(counts: &[(&str, usize)]) -> String {
    counts
        .iter()
        .map(|(what, n)| format!("{what} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
