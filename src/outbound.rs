//! Calls the gateway makes to other HTTP services than storage: the carrier download
//! client, and the small helpers every such call shares (a bounded body read, an error
//! description that never echoes a URL's query or a header).
//!
//! The app's session check and regeneration endpoint use reqwest clients of their own
//! (their timeouts and redirect rules differ); they share these helpers.

use bytes::{Bytes, BytesMut};

use crate::config::InternalConfig;

/// The client for carrier downloads: connect and total timeouts, a few redirects.
pub fn carrier_client(cfg: &InternalConfig) -> Result<reqwest::Client, reqwest::Error> {
    let allow_http = cfg.fetch_allow_http;
    reqwest::Client::builder()
        .connect_timeout(cfg.fetch_connect_timeout)
        .timeout(cfg.fetch_timeout)
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            let https = attempt.url().scheme() == "https";
            if attempt.previous().len() >= 5 || !(https || allow_http) {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .user_agent(USER_AGENT)
        .build()
}

/// `label-gateway/{version}`, on every outbound call.
pub const USER_AGENT: &str = concat!("label-gateway/", env!("CARGO_PKG_VERSION"));

/// What a bounded read found.
#[derive(Debug)]
pub enum Limited {
    /// The whole body.
    Body(Bytes),
    /// The body is larger than allowed (by its `Content-Length`, or as it arrived).
    TooLarge,
}

/// Reads a body of at most `max` bytes.
pub async fn read_limited(mut resp: reqwest::Response, max: u64) -> Result<Limited, String> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Ok(Limited::TooLarge);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
        if (buf.len() + chunk.len()) as u64 > max {
            return Ok(Limited::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Limited::Body(buf.freeze()))
}

/// Names the failure without the URL's query or any header.
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the body".into()
    } else {
        "request failed".into()
    }
}
