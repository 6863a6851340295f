//! Calls the gateway makes to other HTTP services than storage: the carrier download
//! client, and the small helpers every such call shares (a bounded body read, an error
//! description that never echoes a URL's query or a header).
//!
//! The app's session check and regeneration endpoint use reqwest clients of their own
//! (their timeouts and redirect rules differ); they share these helpers.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError};

use crate::config::InternalConfig;
use crate::netguard::{HostRules, NotAllowed, PublicResolver};

/// The carrier download client and the rules each hop's URL is held to.
pub struct Carrier {
    pub client: reqwest::Client,
    pub rules: Arc<HostRules>,
}

/// Builds the client for carrier downloads: connect and total timeouts; only public
/// addresses (checked on every hop's URL, and on every resolved address at connect
/// time); at most `fetch_max_redirects` redirects, each held to the same rules; no proxy
/// from the environment.
pub fn carrier_client(cfg: &InternalConfig) -> Result<Carrier, reqwest::Error> {
    let rules = Arc::new(HostRules {
        allow_hosts: cfg.fetch_allow_hosts.clone(),
        allow_http: cfg.fetch_allow_http,
        allow_private: cfg.fetch_allow_private.clone(),
    });
    let max_redirects = cfg.fetch_max_redirects;
    let hop_rules = rules.clone();
    let mut b = reqwest::Client::builder()
        .connect_timeout(cfg.fetch_connect_timeout)
        .timeout(cfg.fetch_timeout)
        .dns_resolver(PublicResolver::shared())
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            // `previous` holds every URL requested so far, the first one included.
            if attempt.previous().len() > max_redirects {
                attempt.error("too many redirects")
            } else if hop_rules.check_url(attempt.url()).is_err() {
                attempt.error(NotAllowed)
            } else {
                attempt.follow()
            }
        }))
        .no_proxy()
        .user_agent(USER_AGENT);
    if !cfg.fetch_proxy.is_empty() {
        b = b.proxy(reqwest::Proxy::all(&cfg.fetch_proxy)?);
    }
    Ok(Carrier {
        client: b.build()?,
        rules,
    })
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

/// Reads a body of at most `max` bytes (http-body-util's `Limited` counts them); a
/// `Content-Length` over `max` is refused before anything is read.
pub async fn read_limited(resp: reqwest::Response, max: u64) -> Result<Limited, String> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Ok(Limited::TooLarge);
    }
    let body = http::Response::from(resp).into_body();
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(Limited::Body(collected.to_bytes())),
        Err(e) if e.is::<LengthLimitError>() => Ok(Limited::TooLarge),
        Err(e) => Err(match e.downcast_ref::<reqwest::Error>() {
            Some(e) => describe(e),
            None => "connection broke while reading the body".into(),
        }),
    }
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
