//! Zero-buffer streaming: a 50 MB label goes through the gateway while the process's
//! resident memory (gateway, S3 server and client together) grows by far less. A test
//! binary of its own, so no other test's allocations blur the measurement.

#[path = "support/mod.rs"]
mod support;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use support::{get_label, pdf_bytes, rss_bytes, Responder, S3Server, ANY_SESSION};

#[tokio::test(flavor = "multi_thread")]
async fn fifty_megabyte_download_streams_without_buffering() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let data = pdf_bytes(50 * 1024 * 1024, 11);
    let expected: [u8; 32] = Sha256::digest(&data).into();
    s3.put_label("FIFTYMB", &data).await;
    drop(data);
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), &[])).await;

    let before = rss_bytes();
    let resp = get_label(&gw, "FIFTYMB").cookie(ANY_SESSION).send().await;
    assert_eq!(resp.status(), 200);
    let mut hasher = Sha256::new();
    let mut total = 0usize;
    let mut peak = before;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len();
        hasher.update(&chunk);
        peak = peak.max(rss_bytes());
    }
    let growth = peak.saturating_sub(before);
    eprintln!(
        "50 MB download: RSS before {} KiB, peak {} KiB, growth {} KiB",
        before / 1024,
        peak / 1024,
        growth / 1024
    );
    assert_eq!(total, 50 * 1024 * 1024);
    assert_eq!(<[u8; 32]>::from(hasher.finalize()), expected);
    assert!(growth < 16 * 1024 * 1024, "RSS grew by {growth} bytes");
}
