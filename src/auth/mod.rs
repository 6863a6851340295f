//! The session check against the Django app, and the verdict cache in front of it.
//!
//! Contract: only the session cookie goes to `check_url`, with the forwarding
//! headers and the request id. 2xx allows; 401, 403, 404 and any 3xx deny; anything else,
//! a timeout or a refused connection is "unavailable" and is never cached, so the gateway
//! fails closed. Verdicts are cached under a keyed hash of the cookie (plus the tracking
//! number when the URL names it), never the cookie itself; concurrent checks of one key
//! make one call.
//!
//! An allowing answer may name the session's user in `X-Label-User`: kept with the cached
//! verdict (sanitized, see [`audit_user`]) so that every access-log line of the session
//! says who printed the label, hit or miss.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use moka::future::Cache;
use moka::Expiry;

use crate::config::AuthConfig;
use crate::metrics::{Histogram, Scrape};
use crate::tracking::Tracking;

/// The check's answer header naming the session's user (the shipped Django view sets it).
pub const X_LABEL_USER: &str = "x-label-user";

/// Longest user name kept from `X-Label-User`, in bytes as logged.
pub const MAX_AUDIT_USER_BYTES: usize = 128;

/// The app's answer about one session (and label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// What the session check decided about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub source: Source,
    /// Who the app said the session belongs to (`X-Label-User` of its allowing answer, as
    /// [`audit_user`] keeps it). `None` when denied, without a cookie, or not named.
    pub user: Option<Arc<str>>,
}

/// A cached verdict: cloning it on a hit costs at most one reference count.
#[derive(Debug, Clone)]
struct Cached {
    verdict: Verdict,
    user: Option<Arc<str>>,
    /// When the cache lets the verdict go: its TTL counted from when the app was asked.
    expires: Instant,
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

/// Why a verdict the app was asked for is not cached.
enum NotKept {
    Unavailable(AuthUnavailable),
    /// Sessions were revoked while the app was asked: the verdict answers its request only.
    Revoked(Cached),
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
    /// Peers whose `X-Forwarded-*` headers are believed (`[server] trusted_proxies`).
    pub trusted_proxies: &'a [ipnet::IpNet],
}

impl ClientInfo<'_> {
    /// `X-Forwarded-For`, `-Proto` and `-Host` for the app: extended from the client's
    /// own when the peer is a trusted proxy, else built from the connection alone (a
    /// client reaching the gateway directly cannot claim another address).
    fn forwarded(&self) -> (String, HeaderValue, Option<HeaderValue>) {
        let h = self.headers;
        let trusted = self.trusted_proxies.iter().any(|n| n.contains(&self.peer));
        let prev = |name: &str| h.get(name).filter(|_| trusted);
        let xff = match prev("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {}", self.peer),
            _ => self.peer.to_string(),
        };
        let proto = prev("x-forwarded-proto")
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("http"));
        let host = prev("x-forwarded-host")
            .or_else(|| h.get(header::HOST))
            .cloned();
        (xff, proto, host)
    }
}

/// A cached verdict's key: the session (a keyed hash of the value Django reads, never the
/// value) and, when the check URL names it, the label. Keeping the session part apart
/// lets a logout drop every verdict of that session at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    session: SessionHash,
    tracking: Option<Tracking>,
}

/// Each verdict leaves the cache when it says ([`Cached::expires`], set from `allow_ttl` or
/// `deny_ttl` when it was asked for), the bound a connection's [`SessionMemo`] keeps too.
struct VerdictExpiry;

impl Expiry<Key, Cached> for VerdictExpiry {
    fn expire_after_create(&self, _key: &Key, value: &Cached, now: Instant) -> Option<Duration> {
        Some(value.expires.saturating_duration_since(now))
    }
}

/// Counters and the check's latency, for `/metrics`.
#[derive(Debug, Default)]
pub struct AuthStats {
    pub app_calls: AtomicU64,
    pub unavailable: AtomicU64,
    pub revoked: AtomicU64,
    /// Calls to the app, sent until answered (or failed).
    pub check_duration: Histogram,
}

impl AuthStats {
    /// Reads the session check's counters and latency into a `/metrics` scrape.
    pub fn scrape(&self, s: &mut Scrape) {
        s.counter(
            "label_gateway_auth_app_calls_total",
            "Session checks sent to the app.",
            self.app_calls.load(Ordering::Relaxed),
        );
        s.counter(
            "label_gateway_auth_unavailable_total",
            "Session checks that failed (answered 503).",
            self.unavailable.load(Ordering::Relaxed),
        );
        s.counter(
            "label_gateway_auth_revocations_total",
            "Session revokes received (the app sends two per logout: before and after its session flush commits).",
            self.revoked.load(Ordering::Relaxed),
        );
        s.histogram(
            "label_gateway_auth_check_duration_seconds",
            "Session checks sent to the app, until its answer or the failure.",
            &self.check_duration,
        );
    }
}

pub struct Authenticator {
    client: reqwest::Client,
    check_url: String,
    per_tracking: bool,
    cookie_name: String,
    /// foldhash, seeded per process: the key is already a keyed hash of the session, so
    /// hashing it once more through SipHash would buy nothing.
    cache: Cache<Key, Cached, foldhash::fast::RandomState>,
    allow_ttl: Duration,
    deny_ttl: Duration,
    /// Moved on every invalidation of cached verdicts (a revoked session, all forgotten): a
    /// connection's [`SessionMemo`] holds a verdict only while it has not moved.
    generation: AtomicU64,
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
            .expire_after(VerdictExpiry)
            .support_invalidation_closures()
            .build_with_hasher(foldhash::fast::RandomState::default());
        Ok(Authenticator {
            client,
            check_url: cfg.check_url.clone(),
            per_tracking: cfg.check_url.contains("{tracking}"),
            cookie_name: cfg.cookie_name.clone(),
            cache,
            allow_ttl: cfg.allow_ttl,
            deny_ttl: cfg.deny_ttl,
            generation: AtomicU64::new(0),
            stats: Arc::default(),
        })
    }

    /// The session cookie's value, if the request carries a non-empty one. Other cookies
    /// are never looked at again.
    pub fn session_cookie<'h>(
        &self,
        headers: &'h HeaderMap,
        version: http::Version,
    ) -> Option<Cow<'h, str>> {
        if version == http::Version::HTTP_2 {
            session_cookie_h2(headers, &self.cookie_name)
        } else {
            session_cookie(headers, &self.cookie_name)
        }
    }

    /// The session's own key (a keyed hash of the session key Django reads, never the
    /// value): what per-session limits and cached verdicts are kept under.
    pub fn session_key(&self, headers: &HeaderMap, version: http::Version) -> Option<SessionHash> {
        let cookie = self.session_cookie(headers, version)?;
        Some(session_hash(&cookie))
    }

    /// Drops every cached verdict of the session whose key Django knows as `session_key`
    /// (its logout signal sends it): the next request with that cookie asks the app again.
    pub fn revoke(&self, session_key: &str) {
        let session = session_hash(session_key);
        self.stats.revoked.fetch_add(1, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::AcqRel);
        // Entries matching are never returned by a lookup from now on; moka removes them
        // in the background.
        if self
            .cache
            .invalidate_entries_if(move |k, _| k.session == session)
            .is_err()
        {
            // Only when closures are not enabled, which `new` always does; fall back to
            // dropping every verdict rather than keeping a revoked one.
            self.cache.invalidate_all();
        }
    }

    /// The session cookie's value in a request's one `Cookie` line (visible ASCII, as
    /// [`HeaderValue::to_str`] reads it), as [`Authenticator::session_cookie`] finds it.
    pub fn session_cookie_in_line<'l>(&self, line: &'l str) -> Option<&'l str> {
        session_value(line, &self.cookie_name)
    }

    /// The user of a cached *allowing* verdict for `cookie` and `tracking` (as `Some`, its
    /// user when named); `None` when no verdict is cached or the cached one denies (the
    /// full check then answers). The connection's `memo` keeps the last allowing verdict
    /// it read, and answers alone while the verdict's time in the cache has not run out
    /// at `now` and no verdict was invalidated since (a revoked session, all forgotten).
    pub async fn cached_allow<'m>(
        &self,
        cookie: &str,
        tracking: Tracking,
        now: Instant,
        memo: &'m mut SessionMemo,
    ) -> Option<Option<&'m str>> {
        let session = memo.hash(cookie);
        let tracking = self.per_tracking.then_some(tracking);
        // Read before the cache: an invalidation after it moves it past what is kept.
        let generation = self.generation.load(Ordering::Acquire);
        let fresh = memo.verdict.as_ref().is_some_and(|v| {
            v.tracking == tracking && v.generation == generation && now < v.expires
        });
        if !fresh {
            memo.verdict = None;
            let c = self.cache.get(&Key { session, tracking }).await?;
            if c.verdict != Verdict::Allow {
                return None;
            }
            memo.verdict = Some(MemoVerdict {
                tracking,
                user: c.user,
                expires: c.expires,
                generation,
            });
        }
        memo.verdict.as_ref().map(|v| v.user.as_deref())
    }

    /// Decides whether `cookie` may read `tracking` (for callers that log no user).
    pub async fn check(
        &self,
        cookie: Option<&str>,
        tracking: Tracking,
        client: ClientInfo<'_>,
    ) -> Result<(Verdict, Source), AuthUnavailable> {
        let d = self.decide(cookie, tracking, client).await?;
        Ok((d.verdict, d.source))
    }

    /// Decides whether `cookie` may read `tracking`, and who the session's user is.
    pub async fn decide(
        &self,
        cookie: Option<&str>,
        tracking: Tracking,
        client: ClientInfo<'_>,
    ) -> Result<Decision, AuthUnavailable> {
        let Some(cookie) = cookie else {
            return Ok(Decision {
                verdict: Verdict::Deny,
                source: Source::NoCookie,
                user: None,
            });
        };
        let key = self.key(cookie, tracking);
        if let Some(c) = self.cache.get(&key).await {
            return Ok(Decision {
                verdict: c.verdict,
                source: Source::Cache,
                user: c.user,
            });
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
    ) -> Result<Decision, AuthUnavailable> {
        // A verdict asked before a revoke is never cached after it: the generation taken
        // before asking must still be current when the verdict is inserted (moka's
        // `invalidate_entries_if` does not see entries inserted after it ran).
        let generation = self.generation.load(Ordering::Acquire);
        let ask = async {
            let c = self
                .ask_app(cookie, tracking, client)
                .await
                .map_err(NotKept::Unavailable)?;
            if self.generation.load(Ordering::Acquire) != generation {
                return Err(NotKept::Revoked(c));
            }
            Ok(c)
        };
        let entry = match self.cache.entry(key).or_try_insert_with(ask).await {
            Ok(entry) => entry,
            Err(e) => {
                return match &*e {
                    NotKept::Unavailable(why) => Err(why.clone()),
                    // This request (and any that waited on the same call) gets the
                    // answer; the next one asks again.
                    NotKept::Revoked(c) => Ok(Decision {
                        verdict: c.verdict,
                        source: Source::App,
                        user: c.user.clone(),
                    }),
                };
            }
        };
        if entry.is_fresh() && self.generation.load(Ordering::Acquire) != generation {
            // A revoke ran between the check above and the insertion.
            self.cache.invalidate(&key).await;
        }
        let source = if entry.is_fresh() {
            Source::App
        } else {
            Source::Cache
        };
        let c = entry.into_value();
        Ok(Decision {
            verdict: c.verdict,
            source,
            user: c.user,
        })
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
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
    }

    fn key(&self, cookie: &str, tracking: Tracking) -> Key {
        self.key_of(session_hash(cookie), tracking)
    }

    fn key_of(&self, session: SessionHash, tracking: Tracking) -> Key {
        Key {
            session,
            tracking: self.per_tracking.then_some(tracking),
        }
    }

    async fn ask_app(
        &self,
        cookie: &str,
        tracking: Tracking,
        client: ClientInfo<'_>,
    ) -> Result<Cached, AuthUnavailable> {
        self.stats.app_calls.fetch_add(1, Ordering::Relaxed);
        let url = if self.per_tracking {
            self.check_url.replace("{tracking}", tracking.as_str())
        } else {
            self.check_url.clone()
        };
        let cookie_header = HeaderValue::try_from(format!("{}={cookie}", self.cookie_name))
            .map_err(|_| AuthUnavailable("session cookie is not a valid header value".into()))?;
        let (xff, proto, host) = client.forwarded();
        let mut req = self
            .client
            .get(url)
            .header(header::COOKIE, cookie_header)
            .header("x-forwarded-proto", proto)
            .header("x-request-id", client.request_id.clone());
        if let Ok(v) = HeaderValue::try_from(xff) {
            req = req.header("x-forwarded-for", v);
        }
        if let Some(host) = host {
            req = req.header("x-forwarded-host", host);
        }
        let asked = Instant::now();
        let answer = req.send().await;
        self.stats.check_duration.observe(asked.elapsed());
        let outcome = match answer {
            Err(e) => Err(AuthUnavailable(describe(&e))),
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    Ok(Cached {
                        verdict: Verdict::Allow,
                        user: resp.headers().get(X_LABEL_USER).and_then(audit_user),
                        expires: asked + self.allow_ttl,
                    })
                } else if status.is_redirection() || matches!(status.as_u16(), 401 | 403 | 404) {
                    Ok(Cached {
                        verdict: Verdict::Deny,
                        user: None,
                        expires: asked + self.deny_ttl,
                    })
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

mod cookie;
mod memo;

use cookie::session_value;
pub use cookie::{
    audit_user, session_cookie, session_cookie_h2, session_hash, unquote, SessionHash,
};
use memo::MemoVerdict;
pub use memo::SessionMemo;

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
    use super::cookie::*;
    use super::*;

    fn headers(cookies: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, HeaderValue::from_bytes(c).unwrap());
        }
        h
    }

    #[test]
    fn a_session_is_known_by_its_key_quoted_or_not_and_keys_differ() {
        assert_eq!(session_hash("abc"), session_hash("\"abc\""));
        assert_eq!(
            session_hash("abc"),
            session_hash("abc"),
            "stable within the process"
        );
        assert_ne!(session_hash("abc"), session_hash("abd"));
        assert_ne!(
            session_hash("abc")[..8],
            session_hash("abc")[8..],
            "two keys"
        );
    }

    /// The reference [`last_value`] is checked against: `split_once` and `str::trim`.
    fn last_value_reference<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.rsplit(';').find_map(|piece| {
            let (key, value) = piece.split_once('=').unwrap_or(("", piece));
            (key.trim() == name).then(|| value.trim())
        })
    }

    proptest::proptest! {
        #[test]
        fn last_value_reads_as_split_once_and_trim_do(
            pieces in proptest::collection::vec(
                "[ \t\x0b\x0c\u{a0}\u{3000}]{0,2}(sessionid|other|sess|)[ \t\u{a0}]{0,2}(=?)[ \t\x0b\u{85}]{0,2}[a-z0-9\"\\\\é ]{0,6}[ \t\r\u{2003}]{0,2}",
                0..5,
            )
        ) {
            let text = pieces.join(";");
            proptest::prop_assert_eq!(
                last_value(&text, "sessionid"),
                last_value_reference(&text, "sessionid"),
                "{:?}", text
            );
        }
    }

    #[test]
    fn the_session_memo_hashes_as_session_hash_whatever_came_before() {
        let mut memo = SessionMemo::default();
        for cookie in ["abc", "abc", "\"abc\"", "abd", "abc", ""] {
            assert_eq!(memo.hash(cookie), session_hash(cookie), "{cookie}");
        }
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let h = headers(&[b"csrftoken=abc; sessionid=s3ss10n; theme=dark"]);
        assert_eq!(session_cookie(&h, "sessionid").as_deref(), Some("s3ss10n"));
    }

    #[test]
    fn cookie_lines_join_as_django_joins_them() {
        // HTTP/1: Django joins the lines with ",", so a session after the first line is
        // glued to the previous cookie's value and never read.
        let h = headers(&[b"a=1", b"sessionid=xyz"]);
        assert_eq!(session_cookie(&h, "sessionid"), None);
        // ... and a session before a second line takes that line into its value, as in
        // Django, which then finds no such session.
        let h = headers(&[b"sessionid=xyz", b"csrftoken=abc"]);
        assert_eq!(
            session_cookie(&h, "sessionid").as_deref(),
            Some("xyz,csrftoken=abc")
        );
        let h = headers(&[b"theme=dark", b"csrftoken=abc; sessionid=xyz"]);
        assert_eq!(session_cookie(&h, "sessionid").as_deref(), Some("xyz"));
        // HTTP/2 splits the header on purpose: "; " joins it back.
        let h = headers(&[b"a=1", b"sessionid=xyz"]);
        assert_eq!(session_cookie_h2(&h, "sessionid").as_deref(), Some("xyz"));
    }

    #[test]
    fn the_last_session_cookie_wins_as_in_django() {
        let h = headers(&[b"sessionid=first; sessionid=second"]);
        assert_eq!(session_cookie(&h, "sessionid").as_deref(), Some("second"));
        let h = headers(&[b"sessionid=good; sessionid="]);
        assert_eq!(session_cookie(&h, "sessionid"), None);
        let h = headers(&[b"sessionid=good; sessionid"]);
        assert_eq!(session_cookie(&h, "sessionid").as_deref(), Some("good"));
    }

    #[test]
    fn quotes_and_whitespace_follow_pythons_rules() {
        // What Django reads from the forwarded value.
        let one = |raw: &[u8]| session_cookie(&headers(&[raw]), "sessionid").map(|v| unquote(&v));
        assert_eq!(one(b"sessionid=\"abc\"").as_deref(), Some("abc"));
        assert_eq!(
            session_cookie(&headers(&[b"sessionid=\"\"abc\"\""]), "sessionid").as_deref(),
            Some("\"\"abc\"\""),
            "forwarded as written, so Django unquotes it once, as it would have"
        );
        assert_eq!(one(b"sessionid=\"\"abc\"\"").as_deref(), Some("\"abc\""));
        assert_eq!(one(b"sessionid=\"abc").as_deref(), Some("\"abc"));
        assert_eq!(one(b"sessionid=\"a\\\"b\"").as_deref(), Some("a\"b"));
        assert_eq!(one(b"sessionid=\"\\141bc\"").as_deref(), Some("abc"));
        assert_eq!(
            one(b"  sessionid  =  abc  ; other = x ").as_deref(),
            Some("abc")
        );
        assert_eq!(one(b"sessionid=\tabc\t").as_deref(), Some("abc"));
        assert_eq!(one(b"sessionid=\"\""), None);
        assert_eq!(one(b"\"sessionid\"=abc"), None);
        assert_eq!(one(b"session id=abc"), None);
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
    fn audit_user_is_kept_printable_and_bounded() {
        let user =
            |raw: &[u8]| audit_user(&HeaderValue::from_bytes(raw).unwrap()).map(|u| u.to_string());
        assert_eq!(user(b"alice").as_deref(), Some("alice"));
        assert_eq!(
            user(b"j%C3%B6rg@shop.example").as_deref(),
            Some("j%C3%B6rg@shop.example"),
            "the Django view's encoding passes unchanged"
        );
        assert_eq!(user(b"a b\tc").as_deref(), Some("a%20b%09c"));
        assert_eq!(user(b"j\xc3\xb6rg").as_deref(), Some("j%C3%B6rg"));
        assert_eq!(user(b"\"quoted\"").as_deref(), Some("\"quoted\""));
        assert_eq!(user(b""), None);
        let long = user(&[b'x'; 500]).unwrap();
        assert_eq!(long.len(), MAX_AUDIT_USER_BYTES);
        // An escape that would cross the bound is left out whole.
        let mut raw = vec![b'x'; MAX_AUDIT_USER_BYTES - 2];
        raw.push(0xff);
        assert_eq!(user(&raw).unwrap().len(), MAX_AUDIT_USER_BYTES - 2);
    }

    #[test]
    fn custom_cookie_name_is_used() {
        let h = headers(&[b"sessionid=a; shop_session=b"]);
        assert_eq!(session_cookie(&h, "shop_session").as_deref(), Some("b"));
    }
}
