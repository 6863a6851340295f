//! Every answer that is not a label, and the one place where its status is chosen.
//!
//! - [`Refusal`]: normal outcomes of a label request that are not the label (the session is
//!   denied, the label is missing, a precondition or a range does not hold). They travel as
//!   values, not errors.
//! - [`GatewayError`]: faults, grouped by where they came from: the client's request, the
//!   session check, storage and the other upstreams, or the gateway itself.
//! - [`StartupError`]: what stops the gateway from starting, naming the setting to fix.
//!
//! [`Refusal::status`] and [`GatewayError::status`] are the only status mappings in the code;
//! `into_response` builds the matching short body. Nothing upstream (an S3 error code, a
//! URL, a header) reaches the client: details stay in the log.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::http::{empty, full, Body};
use crate::regenerate::RegenerateError;
use crate::storage::StorageError;
use crate::tracking::Tracking;

/// How the client wants a refusal or a fault told.
#[derive(Debug, Clone, Copy)]
pub struct Audience {
    /// `/internal/` callers (the app's client) read JSON.
    pub json: bool,
    /// `Retry-After` on every 503, in seconds (`[server] retry_after`).
    pub retry_after_secs: u64,
}

/// A normal outcome of a label request that is not the label.
#[derive(Debug)]
pub enum Refusal {
    /// Denied session, answered as the Django view did: a 404 that does not reveal whether
    /// the label exists. For a browser (`Accept: text/html`), `login` is the login page
    /// with `next=` back to the label, shown on a small HTML page.
    Denied { login: Option<String> },
    /// Denied session with `on_deny = "redirect"`.
    LoginRedirect { location: HeaderValue },
    /// Storage has no such label and regeneration did not produce one.
    LabelMissing {
        tracking: Tracking,
        tracking_url: Option<String>,
    },
    /// `If-Match` / `If-Unmodified-Since` did not hold.
    PreconditionFailed,
    /// The range starts past the end; `size` when known.
    RangeNotSatisfiable { size: Option<u64> },
    /// Labels of a batch that storage lacks and regeneration did not produce, in the order
    /// asked (they are the caller's own, having passed the session check). `json`: the
    /// client asked for JSON, else an HTML page.
    LabelsMissing { missing: Vec<Tracking>, json: bool },
}

impl Refusal {
    /// The status of each normal refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Denied { .. }
            | Refusal::LabelMissing { .. }
            | Refusal::LabelsMissing { .. } => StatusCode::NOT_FOUND,
            Refusal::LoginRedirect { .. } => StatusCode::FOUND,
            Refusal::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Refusal::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }

    pub fn into_response(self, to: Audience) -> Response<Body> {
        let status = self.status();
        let mut resp = match &self {
            Refusal::LabelMissing {
                tracking,
                tracking_url,
            } if !to.json => missing_page(tracking, tracking_url.as_deref()),
            Refusal::Denied { login: Some(login) } if !to.json => html(denied_html(login)),
            Refusal::LabelsMissing { missing, json } => labels_missing(missing, *json || to.json),
            Refusal::Denied { .. } | Refusal::LabelMissing { .. } => {
                let reason = match &self {
                    Refusal::Denied { .. } => "not found".to_string(),
                    Refusal::LabelMissing { tracking, .. } => {
                        format!("no label for tracking number {tracking}")
                    }
                    _ => unreachable!("matched above"),
                };
                reason_body(status, &reason, to.json)
            }
            Refusal::LoginRedirect { .. }
            | Refusal::PreconditionFailed
            | Refusal::RangeNotSatisfiable { .. } => Response::new(empty()),
        };
        *resp.status_mut() = status;
        common_headers(resp.headers_mut());
        let h = resp.headers_mut();
        match self {
            Refusal::LoginRedirect { location } => {
                h.insert(header::LOCATION, location);
            }
            Refusal::RangeNotSatisfiable { size: Some(size) } => {
                if let Ok(v) = HeaderValue::try_from(format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        resp
    }
}

/// A fault on the request path.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    // --- the client's request
    #[error("tracking number must be 1-64 characters of A-Z a-z 0-9 _ -")]
    BadTracking,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("not found")]
    RouteNotFound,
    #[error("request header fields too large")]
    HeaderTooLarge,
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Content-Length required")]
    LengthRequired,
    #[error("{0}")]
    Conflict(String),
    #[error("too many labels regenerated for this session; retry in {retry_after_secs}s")]
    TooManyRegenerations { retry_after_secs: u64 },
    #[error("too many batches at once, retry shortly")]
    BatchesBusy,

    // --- the session check
    #[error("session check unavailable: {0}")]
    AuthUnavailable(String),

    // --- storage and the other upstreams (the app's regeneration, carriers)
    #[error("label cannot be regenerated right now: {0}")]
    RegenerateUnavailable(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("upstream {what} timed out")]
    UpstreamTimeout { what: &'static str },
    #[error("bad gateway: {0}")]
    BadGateway(String),
    /// A carrier download failed; the detail is for the log only.
    #[error("carrier download failed: {0}")]
    Carrier(String),
    /// A stored label cannot go into a batch (not a readable PDF, too large); the reason
    /// is for the log only.
    #[error("label {tracking} cannot be added to the batch: {reason}")]
    UnreadableLabel { tracking: Tracking, reason: String },

    // --- the gateway itself
    #[error("not ready")]
    NotReady,
    #[error("too many connections")]
    Overloaded,
}

impl GatewayError {
    /// The status of each fault.
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            BadTracking | BadRequest(_) => StatusCode::BAD_REQUEST,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RouteNotFound => StatusCode::NOT_FOUND,
            HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Unauthorized => StatusCode::UNAUTHORIZED,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            LengthRequired => StatusCode::LENGTH_REQUIRED,
            Conflict(_) => StatusCode::CONFLICT,
            TooManyRegenerations { .. } => StatusCode::TOO_MANY_REQUESTS,
            AuthUnavailable(_) | RegenerateUnavailable(_) | NotReady | Overloaded | BatchesBusy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Storage(e) if e.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Storage(_) | BadGateway(_) | Carrier(_) | UnreadableLabel { .. } => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// What the client may read: upstream details stay in the log.
    fn public_reason(&self) -> String {
        use GatewayError::*;
        match self {
            Storage(_) => "storage is not answering correctly".into(),
            AuthUnavailable(_) => "session check unavailable, retry shortly".into(),
            RegenerateUnavailable(_) => "label is being fetched, retry shortly".into(),
            Carrier(_) => "the carrier URL could not be fetched".into(),
            UnreadableLabel { tracking, .. } => {
                format!("label {tracking} is not a readable PDF and cannot be added to the batch")
            }
            other => other.to_string(),
        }
    }

    /// Whether the client is told when to come back.
    fn retry_later(&self) -> bool {
        self.status() == StatusCode::SERVICE_UNAVAILABLE
    }

    /// Builds the response: a short text reason, or JSON for `/internal/` callers.
    pub fn into_response(self, to: Audience) -> Response<Body> {
        let status = self.status();
        let mut resp = reason_body(status, &self.public_reason(), to.json);
        *resp.status_mut() = status;
        common_headers(resp.headers_mut());
        let h = resp.headers_mut();
        if self.retry_later() {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(to.retry_after_secs.max(1)),
            );
        }
        match self {
            GatewayError::MethodNotAllowed { allow } => {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            GatewayError::TooManyRegenerations { retry_after_secs } => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
            }
            GatewayError::Unauthorized => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }

    /// The same answer as raw HTTP/1.1 bytes with `Connection: close`, for the accept loop,
    /// which refuses a connection before any HTTP machinery runs on it.
    pub fn to_http1_bytes(self, to: Audience) -> Vec<u8> {
        let status = self.status();
        let text = reason_text(status, &self.public_reason());
        let mut out = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        if self.retry_later() {
            out.push_str(&format!("Retry-After: {}\r\n", to.retry_after_secs.max(1)));
        }
        out.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n\
             X-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            text.len()
        ));
        out.push_str(&text);
        out.into_bytes()
    }
}

impl From<RegenerateError> for GatewayError {
    fn from(e: RegenerateError) -> GatewayError {
        match e {
            RegenerateError::Unavailable(why) => GatewayError::RegenerateUnavailable(why),
            RegenerateError::Throttled { retry_after } => GatewayError::TooManyRegenerations {
                retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
            },
        }
    }
}

/// What stops the gateway from starting; each names the setting to look at.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{setting}: cannot bind {addr}: {reason}")]
    Bind {
        setting: &'static str,
        addr: std::net::SocketAddr,
        reason: std::io::Error,
    },
    #[error("{setting}: the socket passed by systemd (LISTEN_FDS) cannot be served: {reason}")]
    Passed {
        setting: &'static str,
        reason: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{setting}: cannot build its HTTP client: {reason}")]
    HttpClient {
        setting: &'static str,
        reason: reqwest::Error,
    },
}

fn reason_text(status: StatusCode, reason: &str) -> String {
    format!(
        "{} {}: {reason}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

fn reason_body(status: StatusCode, reason: &str, json: bool) -> Response<Body> {
    let (body, content_type) = if json {
        (
            serde_json::json!({ "error": reason }).to_string(),
            "application/json",
        )
    } else {
        (reason_text(status, reason), "text/plain; charset=utf-8")
    };
    let mut r = Response::new(full(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Never stored, never sniffed.
fn common_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// The "label missing" page, as the Django view showed it: the tracking number and, when
/// known, a link to the carrier's tracking page.
fn missing_page(tracking: &Tracking, tracking_url: Option<&str>) -> Response<Body> {
    html(missing_html(tracking, tracking_url))
}

fn html(page: String) -> Response<Body> {
    let mut r = Response::new(full(page));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// The denial a browser sees, in the look of the missing-label page: the label cannot be
/// shown, and the way to log in. It depends only on the request, never on whether the
/// label exists.
fn denied_html(login: &str) -> String {
    let login = html_escape(login);
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Label not available</title></head>\n\
     <body><h1>Label not available</h1>\n<p>This label cannot be shown to you. Your session may \
     have ended, or this account may not print it.</p>\n"
        .to_string()
        + &format!("<p><a href=\"{login}\">Log in to print it</a></p>\n</body></html>\n")
}

fn missing_html(tracking: &Tracking, tracking_url: Option<&str>) -> String {
    let link = match tracking_url {
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
            let url = html_escape(url);
            format!("<p><a href=\"{url}\">Track this shipment with the carrier</a></p>\n")
        }
        _ => String::new(),
    };
    // Carriers print tracking numbers in capitals, and they are case-sensitive here.
    let case = if tracking.bytes().any(|b| b.is_ascii_lowercase()) {
        format!(
            "<p>Tracking numbers are case-sensitive: did you mean <strong>{}</strong>?</p>\n",
            tracking.to_ascii_uppercase()
        )
    } else {
        String::new()
    };
    // A `Tracking` is [A-Za-z0-9_-]: nothing to escape.
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Label not available</title></head>\n\
         <body><h1>Label not available</h1>\n<p>No shipping label is available for tracking number \
         <strong>{tracking}</strong>.</p>\n{case}{link}</body></html>\n"
    )
}

/// The batch's "labels missing" answer: a page listing them, or JSON
/// `{"error": ..., "missing": [...]}`.
fn labels_missing(missing: &[Tracking], json: bool) -> Response<Body> {
    let (body, content_type) = if json {
        let list: Vec<&str> = missing.iter().map(Tracking::as_str).collect();
        let error = format!("{} of the batch's labels are not available", missing.len());
        (
            serde_json::json!({ "error": error, "missing": list }).to_string(),
            "application/json",
        )
    } else {
        // A `Tracking` is [A-Za-z0-9_-]: nothing to escape.
        let items: String = missing
            .iter()
            .map(|t| format!("<li><strong>{t}</strong></li>\n"))
            .collect();
        let html = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Labels not available</title></head>\n\
             <body><h1>Labels not available</h1>\n<p>No shipping label is available for {} of \
             the tracking numbers asked for, so nothing was printed:</p>\n<ul>\n{items}</ul>\n\
             <p>Print the others by asking again without these, or with <code>partial=1</code>.</p>\n\
             </body></html>\n",
            missing.len()
        );
        (html, "text/html; charset=utf-8")
    };
    let mut r = Response::new(full(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `s` escaped for an HTML attribute or text (`<`, `>`, `&`, `'`, `"`): quick-xml's
/// escaper, whose five replacements are HTML5 character references too.
fn html_escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: Audience = Audience {
        json: false,
        retry_after_secs: 3,
    };

    fn t(s: &str) -> Tracking {
        Tracking::parse(s).unwrap()
    }

    #[test]
    fn storage_refusal_is_bad_gateway_never_not_found() {
        let e = GatewayError::Storage(StorageError::Refused {
            status: 403,
            code: "SignatureDoesNotMatch".into(),
            hint: "check",
        });
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        let resp = e.into_response(TEXT);
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn storage_timeout_is_gateway_timeout() {
        let e = GatewayError::Storage(StorageError::Timeout(std::time::Duration::from_secs(1)));
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn every_503_carries_the_configured_retry_after() {
        for e in [
            GatewayError::AuthUnavailable("refused".into()),
            GatewayError::RegenerateUnavailable("down".into()),
            GatewayError::NotReady,
            GatewayError::Overloaded,
        ] {
            let r = e.into_response(TEXT);
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(r.headers()["retry-after"], "3");
        }
    }

    #[test]
    fn the_raw_over_limit_answer_is_the_mapped_one() {
        let raw = String::from_utf8(GatewayError::Overloaded.to_http1_bytes(TEXT)).unwrap();
        assert!(
            raw.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{raw}"
        );
        assert!(raw.contains("\r\nRetry-After: 3\r\n"), "{raw}");
        assert!(raw.contains("\r\nConnection: close\r\n"), "{raw}");
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, "503 Service Unavailable: too many connections\n");
    }

    #[test]
    fn method_not_allowed_names_allowed_methods() {
        let r = GatewayError::MethodNotAllowed { allow: "GET, HEAD" }.into_response(TEXT);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "GET, HEAD");
    }

    #[test]
    fn refusals_map_to_their_statuses() {
        assert_eq!(
            Refusal::Denied { login: None }.status(),
            StatusCode::NOT_FOUND
        );
        let missing = Refusal::LabelMissing {
            tracking: t("1Z"),
            tracking_url: None,
        };
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let r = Refusal::RangeNotSatisfiable { size: Some(10) }.into_response(TEXT);
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()["content-range"], "bytes */10");
        let r = Refusal::LoginRedirect {
            location: HeaderValue::from_static("/accounts/login/?next=/x"),
        }
        .into_response(TEXT);
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers()["location"], "/accounts/login/?next=/x");
        assert_eq!(r.headers()["cache-control"], "no-store");
    }

    #[test]
    fn missing_labels_are_listed_as_html_or_json() {
        let missing = || vec![t("M1"), t("M2")];
        let r = Refusal::LabelsMissing {
            missing: missing(),
            json: false,
        }
        .into_response(TEXT);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        let r = Refusal::LabelsMissing {
            missing: missing(),
            json: true,
        }
        .into_response(TEXT);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["cache-control"], "no-store");
    }

    #[test]
    fn an_unreadable_label_is_named_to_the_client_but_not_why() {
        let e = GatewayError::UnreadableLabel {
            tracking: t("BAD1"),
            reason: "xref at offset 99 is garbage".into(),
        };
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert!(e.to_string().contains("garbage"), "the log has the reason");
        let reason = e.public_reason();
        assert!(
            reason.contains("BAD1") && !reason.contains("garbage"),
            "{reason}"
        );
    }

    #[test]
    fn missing_page_escapes_the_tracking_link() {
        let html = missing_html(&t("1Z"), Some("https://x.test/?a=1&b=\"<script>"));
        assert!(html.contains("1Z"));
        assert!(
            html.contains("https://x.test/?a=1&amp;b=&quot;&lt;script&gt;"),
            "{html}"
        );
        assert!(!missing_html(&t("1Z"), Some("javascript:alert(1)")).contains("javascript"));
    }

    #[test]
    fn a_lower_case_tracking_number_is_told_that_case_matters() {
        let html = missing_html(&t("1z999aa1"), None);
        assert!(html.contains("case-sensitive"), "{html}");
        assert!(html.contains("1Z999AA1"), "{html}");
        assert!(!missing_html(&t("1Z999AA1"), None).contains("case-sensitive"));
    }

    #[test]
    fn a_browser_denial_links_to_the_login_page_and_is_never_stored() {
        let r = Refusal::Denied {
            login: Some("/accounts/login/?next=/shipping-label/A%26B/".into()),
        }
        .into_response(TEXT);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let page = denied_html("/accounts/login/?next=/x&y");
        assert!(
            page.contains("href=\"/accounts/login/?next=/x&amp;y\""),
            "{page}"
        );
    }
}
