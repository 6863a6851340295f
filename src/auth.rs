//! The session check against the Django app, and the verdict cache in front of it.
//!
//! Contract: only the session cookie goes to `check_url`, with the forwarding
//! headers and the request id. 2xx allows; 401, 403, 404 and any 3xx deny; anything else,
//! a timeout or a refused connection is "unavailable" and is never cached, so the gateway
//! fails closed. Verdicts are cached under a SHA-256 of the cookie (plus the tracking
//! number when the URL names it), never the cookie itself; concurrent checks of one key
//! make one call.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use moka::future::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};

use crate::config::AuthConfig;
use crate::tracking::Tracking;

/// The app's answer about one session (and label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// Where a verdict came from, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// No session cookie: denied without asking.
    NoCookie,
    /// Asked the app.
    App,
    /// Reused a cached verdict.
    Cache,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::NoCookie => "no-cookie",
            Source::App => "app",
            Source::Cache => "cache",
        }
    }
}

/// The check could not be made: fail closed (503), cache nothing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AuthUnavailable(pub String);

/// The client facts forwarded to the app.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    pub peer: IpAddr,
    pub headers: &'a HeaderMap,
    pub request_id: &'a HeaderValue,
}

type Key = [u8; 32];

struct VerdictExpiry {
    allow: Duration,
    deny: Duration,
}

impl Expiry<Key, Verdict> for VerdictExpiry {
    fn expire_after_create(&self, _key: &Key, value: &Verdict, _now: Instant) -> Option<Duration> {
        Some(match value {
            Verdict::Allow => self.allow,
            Verdict::Deny => self.deny,
        })
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct AuthStats {
    pub app_calls: AtomicU64,
    pub unavailable: AtomicU64,
}

pub struct Authenticator {
    client: reqwest::Client,
    check_url: String,
    per_tracking: bool,
    cookie_name: String,
    cache: Cache<Key, Verdict>,
    pub stats: Arc<AuthStats>,
}

impl Authenticator {
    pub fn new(cfg: &AuthConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(cfg.timeout)
            .timeout(cfg.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .user_agent(concat!("label-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let cache = Cache::builder()
            .max_capacity(cfg.max_verdicts)
            .expire_after(VerdictExpiry {
                allow: cfg.allow_ttl,
                deny: cfg.deny_ttl,
            })
            .build();
        Ok(Authenticator {
            client,
            check_url: cfg.check_url.clone(),
            per_tracking: cfg.check_url.contains("{tracking}"),
            cookie_name: cfg.cookie_name.clone(),
            cache,
            stats: Arc::default(),
        })
    }

    /// The session cookie's value, if the request carries a non-empty one. Other cookies
    /// are never looked at again.
    pub fn session_cookie(&self, headers: &HeaderMap) -> Option<String> {
        session_cookie(headers, &self.cookie_name)
    }

    /// The session's own key (a SHA-256 of the cookie value, never the value): what
    /// per-session limits are kept under.
    pub fn session_key(&self, headers: &HeaderMap) -> Option<[u8; 32]> {
        let cookie = self.session_cookie(headers)?;
        Some(Sha256::digest(cookie.as_bytes()).into())
    }

    /// Decides whether `cookie` may read `tracking`.
    pub async fn check(
        &self,
        cookie: Option<&str>,
        tracking: Tracking,
        client: ClientInfo<'_>,
    ) -> Result<(Verdict, Source), AuthUnavailable> {
        let Some(cookie) = cookie else {
            return Ok((Verdict::Deny, Source::NoCookie));
        };
        let key = self.key(cookie, tracking);
        if let Some(v) = self.cache.get(&key).await {
            return Ok((v, Source::Cache));
        }
        // Boxed: the app call's state is large, and every request's future would carry it.
        Box::pin(self.check_app(key, cookie, tracking, client)).await
    }

    /// The verdict cache missed: ask the app (one call per key however many wait).
    async fn check_app(
        &self,
        key: Key,
        cookie: &str,
        tracking: Tracking,
        client: ClientInfo<'_>,
    ) -> Result<(Verdict, Source), AuthUnavailable> {
        let entry = self
            .cache
            .entry(key)
            .or_try_insert_with(self.ask_app(cookie, tracking, client))
            .await
            .map_err(|e| AuthUnavailable(e.0.clone()))?;
        let source = if entry.is_fresh() {
            Source::App
        } else {
            Source::Cache
        };
        Ok((entry.into_value(), source))
    }

    /// Readiness: the check endpoint answers at all (a 403 to a request without a
    /// session is an answer). No cookie is sent.
    pub async fn probe(&self) -> Result<(), String> {
        let url = self.check_url.replace("{tracking}", "readyz");
        match self.client.get(url).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(describe(&e)),
        }
    }

    /// Drops every cached verdict (tests, and operators via a future purge).
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }

    fn key(&self, cookie: &str, tracking: Tracking) -> Key {
        let mut h = Sha256::new();
        h.update(cookie.as_bytes());
        if self.per_tracking {
            h.update([0u8]);
            h.update(tracking.as_bytes());
        }
        h.finalize().into()
    }

    async fn ask_app(
        &self,
        cookie: &str,
        tracking: Tracking,
        client: ClientInfo<'_>,
    ) -> Result<Verdict, AuthUnavailable> {
        self.stats.app_calls.fetch_add(1, Ordering::Relaxed);
        let url = if self.per_tracking {
            self.check_url.replace("{tracking}", tracking.as_str())
        } else {
            self.check_url.clone()
        };
        let cookie_header = HeaderValue::try_from(format!("{}={cookie}", self.cookie_name))
            .map_err(|_| AuthUnavailable("session cookie is not a valid header value".into()))?;
        let h = client.headers;
        let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {}", client.peer),
            _ => client.peer.to_string(),
        };
        let proto = h
            .get("x-forwarded-proto")
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("http"));
        let mut req = self
            .client
            .get(url)
            .header(header::COOKIE, cookie_header)
            .header("x-forwarded-proto", proto)
            .header("x-request-id", client.request_id.clone());
        if let Ok(v) = HeaderValue::try_from(xff) {
            req = req.header("x-forwarded-for", v);
        }
        if let Some(host) = h.get("x-forwarded-host").or_else(|| h.get(header::HOST)) {
            req = req.header("x-forwarded-host", host.clone());
        }
        let outcome = match req.send().await {
            Err(e) => Err(AuthUnavailable(describe(&e))),
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    Ok(Verdict::Allow)
                } else if status.is_redirection() || matches!(status.as_u16(), 401 | 403 | 404) {
                    Ok(Verdict::Deny)
                } else {
                    Err(AuthUnavailable(format!("check endpoint answered {status}")))
                }
            }
        };
        if outcome.is_err() {
            self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }
}

/// Finds `name` among the request's `Cookie` headers (all of them, as HTTP/2 splits them).
/// Non-UTF-8 headers and malformed pairs are skipped; an empty value counts as absent.
pub fn session_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(s) = value.to_str() else { continue };
        for c in cookie::Cookie::split_parse(s).flatten() {
            if c.name() == name {
                let v = c.value().trim_matches('"');
                if v.is_empty() || v.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
                    return None;
                }
                return Some(v.to_string());
            }
        }
    }
    None
}

/// Says what failed without echoing the URL's query or any header.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "session check timed out".into()
    } else if e.is_connect() {
        "cannot connect to the session check endpoint".into()
    } else {
        "session check failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, HeaderValue::from_bytes(c).unwrap());
        }
        h
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let h = headers(&[b"csrftoken=abc; sessionid=s3ss10n; theme=dark"]);
        assert_eq!(session_cookie(&h, "sessionid").as_deref(), Some("s3ss10n"));
    }

    #[test]
    fn session_cookie_in_a_second_header_is_found() {
        let h = headers(&[b"a=1", b"sessionid=xyz"]);
        assert_eq!(session_cookie(&h, "sessionid").as_deref(), Some("xyz"));
    }

    #[test]
    fn missing_or_empty_session_cookie_is_none() {
        assert_eq!(session_cookie(&headers(&[]), "sessionid"), None);
        assert_eq!(
            session_cookie(&headers(&[b"sessionid="]), "sessionid"),
            None
        );
        assert_eq!(session_cookie(&headers(&[b"other=1"]), "sessionid"), None);
        assert_eq!(session_cookie(&headers(&[b"sessionid"]), "sessionid"), None);
    }

    #[test]
    fn garbage_cookie_headers_do_not_panic() {
        let h = headers(&[
            b"\xff\xfe=1; sessionid=\xc3\xa9",
            b";;;==;",
            b"sessionid=a b",
        ]);
        assert_eq!(session_cookie(&h, "sessionid"), None);
    }

    #[test]
    fn custom_cookie_name_is_used() {
        let h = headers(&[b"sessionid=a; shop_session=b"]);
        assert_eq!(session_cookie(&h, "shop_session").as_deref(), Some("b"));
    }
}
