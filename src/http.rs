//! HTTP pieces shared by every path: the response body type and its helpers, `Range`
//! parsing, conditional-request evaluation (RFC 9110 §13) and the label response headers.
//!
//! All functions here are pure: they take header values and object metadata and return
//! decisions, so the fuzz target and unit tests drive them without a server.
// Numbers a peer sent are only ever used through checked or saturating arithmetic.
#![deny(clippy::arithmetic_side_effects)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Error type carried by response bodies: a storage stream that broke mid-way.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body the gateway sends.
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A single byte range, resolved against the object size: `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    #[allow(clippy::len_without_is_empty)] // a resolved range always holds a byte
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }
    /// `Content-Range` value for a 206.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, size)
    }
}

/// A syntactically valid single range, not yet resolved against a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=a-b` or `bytes=a-`
    FromTo(u64, Option<u64>),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// What a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No header, or one we ignore (malformed, multi-range, other unit): send 200 with
    /// the whole body, as RFC 9110 §14.2 allows.
    Whole,
    Single(RangeSpec),
}

/// Parses a `Range` header value. Anything we do not serve as a single range is `Whole`.
pub fn parse_range(value: Option<&HeaderValue>) -> RangeRequest {
    let Some(s) = value.and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Whole;
    };
    let Some(spec) = s.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let num = |t: &str| -> Option<u64> {
        if t.is_empty() || t.len() > 19 || !t.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            t.parse().ok()
        }
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (true, false) => match num(b) {
            Some(n) => RangeRequest::Single(RangeSpec::Suffix(n)),
            None => RangeRequest::Whole,
        },
        (false, true) => match num(a) {
            Some(n) => RangeRequest::Single(RangeSpec::FromTo(n, None)),
            None => RangeRequest::Whole,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(x), Some(y)) if x <= y => RangeRequest::Single(RangeSpec::FromTo(x, Some(y))),
            _ => RangeRequest::Whole,
        },
        (true, true) => RangeRequest::Whole,
    }
}

impl RangeSpec {
    /// Resolves against the object size; `None` means unsatisfiable (416).
    pub fn resolve(self, size: u64) -> Option<ByteRange> {
        match self {
            RangeSpec::FromTo(start, end) => {
                if start >= size {
                    return None;
                }
                let last = size.saturating_sub(1);
                let end = end.map_or(last, |e| e.min(last));
                Some(ByteRange { start, end })
            }
            RangeSpec::Suffix(n) => {
                if n == 0 || size == 0 {
                    return None;
                }
                Some(ByteRange {
                    start: size.saturating_sub(n),
                    end: size.saturating_sub(1),
                })
            }
        }
    }

    /// The canonical header value forwarded to storage.
    pub fn header_value(self) -> HeaderValue {
        let s = match self {
            RangeSpec::FromTo(a, Some(b)) => format!("bytes={a}-{b}"),
            RangeSpec::FromTo(a, None) => format!("bytes={a}-"),
            RangeSpec::Suffix(n) => format!("bytes=-{n}"),
        };
        HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("bytes=0-"))
    }
}

/// The validators of a stored object, what conditional requests are evaluated against.
#[derive(Debug, Clone, Default)]
pub struct Validators<'a> {
    pub etag: Option<&'a str>,
    pub last_modified: Option<SystemTime>,
}

/// The conditional headers of a request.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub if_match: Option<HeaderValue>,
    pub if_none_match: Option<HeaderValue>,
    pub if_modified_since: Option<HeaderValue>,
    pub if_unmodified_since: Option<HeaderValue>,
    pub if_range: Option<HeaderValue>,
}

impl Conditions {
    /// The first value of each precondition header, read in one pass over the header
    /// lines: most requests carry none, and five lookups by name would hash five names.
    pub fn from_headers(h: &HeaderMap) -> Self {
        let mut c = Conditions::default();
        for (name, value) in h {
            let slot = if name == header::IF_MATCH {
                &mut c.if_match
            } else if name == header::IF_NONE_MATCH {
                &mut c.if_none_match
            } else if name == header::IF_MODIFIED_SINCE {
                &mut c.if_modified_since
            } else if name == header::IF_UNMODIFIED_SINCE {
                &mut c.if_unmodified_since
            } else if name == header::IF_RANGE {
                &mut c.if_range
            } else {
                continue;
            };
            if slot.is_none() {
                *slot = Some(value.clone());
            }
        }
        c
    }

    /// Headers forwarded to storage (never anything else of the client's).
    pub fn forward(&self) -> impl Iterator<Item = (HeaderName, &HeaderValue)> {
        [
            (header::IF_MATCH, self.if_match.as_ref()),
            (header::IF_NONE_MATCH, self.if_none_match.as_ref()),
            (header::IF_MODIFIED_SINCE, self.if_modified_since.as_ref()),
            (
                header::IF_UNMODIFIED_SINCE,
                self.if_unmodified_since.as_ref(),
            ),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
    }

    pub fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// RFC 9110 §13.2.2 evaluation order for GET/HEAD.
    pub fn evaluate(&self, v: &Validators<'_>) -> Precondition {
        if let Some(im) = &self.if_match {
            if !etag_list_matches(im, v.etag, true) {
                return Precondition::Failed;
            }
        } else if let Some(ius) = &self.if_unmodified_since {
            if let (Some(date), Some(lm)) = (parse_date(ius), v.last_modified) {
                if truncate(lm) > date {
                    return Precondition::Failed;
                }
            }
        }
        if let Some(inm) = &self.if_none_match {
            if etag_list_matches(inm, v.etag, false) {
                return Precondition::NotModified;
            }
        } else if let Some(ims) = &self.if_modified_since {
            if let (Some(date), Some(lm)) = (parse_date(ims), v.last_modified) {
                if truncate(lm) <= date {
                    return Precondition::NotModified;
                }
            }
        }
        Precondition::Proceed
    }

    /// `If-Range`: a `Range` applies only while the validator still matches (strong ETag
    /// or exact date); otherwise the whole body is sent.
    pub fn range_applies(&self, v: &Validators<'_>) -> bool {
        let Some(ir) = self.if_range.as_ref().and_then(|h| h.to_str().ok()) else {
            return true;
        };
        let ir = ir.trim();
        if ir.starts_with('"') {
            return v.etag.is_some_and(|e| !e.starts_with("W/") && e == ir);
        }
        match (httpdate::parse_http_date(ir).ok(), v.last_modified) {
            (Some(d), Some(lm)) => truncate(lm) == d,
            _ => false,
        }
    }
}

/// Outcome of evaluating preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

fn parse_date(v: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(v.to_str().ok()?.trim()).ok()
}

/// HTTP dates have one-second resolution.
fn truncate(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(d.as_secs()))
            .unwrap_or(t),
        Err(_) => t,
    }
}

fn opaque(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/")
}

/// `*` or a comma-separated list of entity tags; `strong` demands strong comparison.
fn etag_list_matches(list: &HeaderValue, etag: Option<&str>, strong: bool) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    let list = list.trim();
    if list == "*" {
        return etag.is_some();
    }
    let Some(etag) = etag else {
        return false;
    };
    if strong && etag.starts_with("W/") {
        return false;
    }
    list.split(',').map(str::trim).any(|candidate| {
        if strong {
            !candidate.starts_with("W/") && candidate == etag
        } else {
            opaque(candidate) == opaque(etag)
        }
    })
}

/// Where a label answer came from, as its `X-Cache` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    /// A fresh label in memory.
    Hit,
    /// Storage (or a regeneration).
    Miss,
    /// A label in memory past its freshness, because storage failed (`[cache]
    /// stale_if_error`).
    Stale,
}

impl CacheState {
    /// The `X-Cache` value, also the access log's `cache` field (lowercase there).
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::Hit => "HIT",
            CacheState::Miss => "MISS",
            CacheState::Stale => "STALE",
        }
    }
}

/// Headers every label response carries (200, 206, 304 and HEAD alike).
pub struct LabelHeaders<'a> {
    pub tracking: &'a str,
    pub etag: Option<&'a HeaderValue>,
    pub last_modified: Option<&'a HeaderValue>,
    pub cache_control: &'a HeaderValue,
    pub cache: CacheState,
}

static PDF: HeaderValue = HeaderValue::from_static("application/pdf");

impl LabelHeaders<'_> {
    /// Writes the label response's own headers; storage-internal headers never get here
    /// because only these named values are copied.
    pub fn write(&self, h: &mut HeaderMap) {
        h.insert(
            header::CONTENT_TYPE,
            // Always: an object stored with another type (`text/html`) must never be
            // served `inline` on the shop's origin.
            PDF.clone(),
        );
        if let Some(e) = self.etag {
            h.insert(header::ETAG, e.clone());
        }
        if let Some(lm) = self.last_modified {
            h.insert(header::LAST_MODIFIED, lm.clone());
        }
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(header::CACHE_CONTROL, self.cache_control.clone());
        let mut disposition = Vec::with_capacity(self.tracking.len().saturating_add(23));
        disposition.extend_from_slice(b"inline; filename=\"");
        disposition.extend_from_slice(self.tracking.as_bytes());
        disposition.extend_from_slice(b".pdf\"");
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(disposition)) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            X_CACHE.clone(),
            HeaderValue::from_static(self.cache.as_str()),
        );
    }
}

/// `Cache-Control` for labels: private always (labels carry home addresses), and
/// revalidated on every use unless a `max_age` is configured.
pub fn cache_control(max_age: Option<Duration>) -> HeaderValue {
    match max_age {
        None => HeaderValue::from_static("private, no-cache"),
        Some(age) => HeaderValue::try_from(format!("private, max-age={}", age.as_secs()))
            .unwrap_or_else(|_| HeaderValue::from_static("private, no-cache")),
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn range(s: &str) -> RangeRequest {
        parse_range(Some(&hv(s)))
    }

    #[test]
    fn single_ranges_parse() {
        assert_eq!(
            range("bytes=0-99"),
            RangeRequest::Single(RangeSpec::FromTo(0, Some(99)))
        );
        assert_eq!(
            range("bytes=100-"),
            RangeRequest::Single(RangeSpec::FromTo(100, None))
        );
        assert_eq!(
            range("bytes=-100"),
            RangeRequest::Single(RangeSpec::Suffix(100))
        );
        assert_eq!(
            range(" bytes= 5 - 9 "),
            RangeRequest::Single(RangeSpec::FromTo(5, Some(9)))
        );
    }

    #[test]
    fn unusable_ranges_mean_whole_body() {
        for s in [
            "bytes=0-1,5-6",
            "bytes=9-1",
            "items=0-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
            "bytes=",
            "",
        ] {
            assert_eq!(range(s), RangeRequest::Whole, "{s:?}");
        }
        assert_eq!(parse_range(None), RangeRequest::Whole);
        let non_utf8 = HeaderValue::from_bytes(b"bytes=\xff-1").unwrap();
        assert_eq!(parse_range(Some(&non_utf8)), RangeRequest::Whole);
    }

    #[test]
    fn ranges_resolve_against_size() {
        let r = |s: RangeSpec| s.resolve(1000);
        assert_eq!(
            r(RangeSpec::FromTo(0, Some(99))),
            Some(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            r(RangeSpec::FromTo(900, Some(5000))),
            Some(ByteRange {
                start: 900,
                end: 999
            })
        );
        assert_eq!(
            r(RangeSpec::FromTo(100, None)),
            Some(ByteRange {
                start: 100,
                end: 999
            })
        );
        assert_eq!(
            r(RangeSpec::Suffix(100)),
            Some(ByteRange {
                start: 900,
                end: 999
            })
        );
        assert_eq!(
            r(RangeSpec::Suffix(5000)),
            Some(ByteRange { start: 0, end: 999 })
        );
        assert_eq!(r(RangeSpec::FromTo(1000, None)), None);
        assert_eq!(r(RangeSpec::Suffix(0)), None);
        assert_eq!(RangeSpec::FromTo(0, None).resolve(0), None);
        assert_eq!(
            ByteRange { start: 5, end: 9 }.content_range(10),
            "bytes 5-9/10"
        );
    }

    fn cond(pairs: &[(HeaderName, &str)]) -> Conditions {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(n.clone(), hv(v));
        }
        Conditions::from_headers(&h)
    }

    fn validators() -> Validators<'static> {
        Validators {
            etag: Some("\"abc\""),
            last_modified: httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").ok(),
        }
    }

    #[test]
    fn if_none_match_matching_is_not_modified() {
        let v = validators();
        for s in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert_eq!(
                cond(&[(header::IF_NONE_MATCH, s)]).evaluate(&v),
                Precondition::NotModified,
                "{s}"
            );
        }
        assert_eq!(
            cond(&[(header::IF_NONE_MATCH, "\"x\"")]).evaluate(&v),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_modified_since_compares_dates_and_yields_to_if_none_match() {
        let v = validators();
        let same = "Wed, 21 Oct 2026 07:28:00 GMT";
        let before = "Tue, 20 Oct 2026 07:28:00 GMT";
        assert_eq!(
            cond(&[(header::IF_MODIFIED_SINCE, same)]).evaluate(&v),
            Precondition::NotModified
        );
        assert_eq!(
            cond(&[(header::IF_MODIFIED_SINCE, before)]).evaluate(&v),
            Precondition::Proceed
        );
        assert_eq!(
            cond(&[(header::IF_MODIFIED_SINCE, "garbage")]).evaluate(&v),
            Precondition::Proceed
        );
        let both = cond(&[
            (header::IF_NONE_MATCH, "\"x\""),
            (header::IF_MODIFIED_SINCE, same),
        ]);
        assert_eq!(both.evaluate(&v), Precondition::Proceed);
    }

    #[test]
    fn if_match_and_if_unmodified_since_fail_with_412() {
        let v = validators();
        assert_eq!(
            cond(&[(header::IF_MATCH, "\"abc\"")]).evaluate(&v),
            Precondition::Proceed
        );
        assert_eq!(
            cond(&[(header::IF_MATCH, "\"zzz\"")]).evaluate(&v),
            Precondition::Failed
        );
        assert_eq!(
            cond(&[(header::IF_MATCH, "W/\"abc\"")]).evaluate(&v),
            Precondition::Failed
        );
        assert_eq!(
            cond(&[(header::IF_MATCH, "*")]).evaluate(&v),
            Precondition::Proceed
        );
        let old = "Tue, 20 Oct 2026 07:28:00 GMT";
        assert_eq!(
            cond(&[(header::IF_UNMODIFIED_SINCE, old)]).evaluate(&v),
            Precondition::Failed
        );
        let later = "Thu, 22 Oct 2026 07:28:00 GMT";
        assert_eq!(
            cond(&[(header::IF_UNMODIFIED_SINCE, later)]).evaluate(&v),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_range_gates_the_range() {
        let v = validators();
        assert!(cond(&[]).range_applies(&v));
        assert!(cond(&[(header::IF_RANGE, "\"abc\"")]).range_applies(&v));
        assert!(!cond(&[(header::IF_RANGE, "\"old\"")]).range_applies(&v));
        assert!(cond(&[(header::IF_RANGE, "Wed, 21 Oct 2026 07:28:00 GMT")]).range_applies(&v));
        assert!(!cond(&[(header::IF_RANGE, "nonsense")]).range_applies(&v));
    }

    #[test]
    fn label_headers_are_private_and_named() {
        let mut h = HeaderMap::new();
        let cc = cache_control(Some(Duration::from_secs(86400)));
        LabelHeaders {
            tracking: "1Z999",
            etag: Some(&hv("\"e\"")),
            last_modified: None,
            cache_control: &cc,
            cache: CacheState::Miss,
        }
        .write(&mut h);
        assert_eq!(h["content-type"], "application/pdf");
        assert_eq!(h["cache-control"], "private, max-age=86400");
        assert_eq!(cache_control(None), "private, no-cache");
        assert_eq!(h["content-disposition"], "inline; filename=\"1Z999.pdf\"");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-cache"], "MISS");
        assert_eq!(h["accept-ranges"], "bytes");
        assert_eq!(h["etag"], "\"e\"");
    }
}
