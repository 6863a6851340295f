//! The request-path error and its single mapping to an HTTP status and a short body.
//!
//! Variants are grouped by where the fault came from: the client, the auth backend, the
//! storage backend, or the gateway itself. Nothing else in the code picks an error status.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::http::{empty, full, Body};
use crate::storage::StorageError;

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

    // --- the session check
    /// Denied session, answered as the Django view did: a plain 404 that does not reveal
    /// whether the label exists.
    #[error("not found")]
    Denied,
    /// Denied session with `on_deny = "redirect"`.
    #[error("login required")]
    LoginRedirect { location: HeaderValue },
    #[error("session check unavailable: {0}")]
    AuthUnavailable(String),

    // --- storage
    #[error("no label for tracking number {tracking}")]
    LabelMissing {
        tracking: String,
        tracking_url: Option<String>,
    },
    #[error("label cannot be regenerated right now: {0}")]
    RegenerateUnavailable(String),
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: Option<u64> },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("upstream {what} timed out")]
    UpstreamTimeout { what: &'static str },
    #[error("bad gateway: {0}")]
    BadGateway(String),

    // --- the gateway itself
    #[error("not ready")]
    NotReady,
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// The one place where a fault becomes a status.
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            BadTracking | BadRequest(_) => StatusCode::BAD_REQUEST,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RouteNotFound | Denied | LabelMissing { .. } => StatusCode::NOT_FOUND,
            HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Unauthorized => StatusCode::UNAUTHORIZED,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            LengthRequired => StatusCode::LENGTH_REQUIRED,
            Conflict(_) => StatusCode::CONFLICT,
            LoginRedirect { .. } => StatusCode::FOUND,
            AuthUnavailable(_) | RegenerateUnavailable(_) | NotReady => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Storage(e) if e.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Storage(_) | BadGateway(_) => StatusCode::BAD_GATEWAY,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client may read: upstream details stay in the log.
    fn public_reason(&self) -> String {
        use GatewayError::*;
        match self {
            Storage(_) => "storage is not answering correctly".into(),
            AuthUnavailable(_) => "session check unavailable, retry shortly".into(),
            RegenerateUnavailable(_) => "label is being fetched, retry shortly".into(),
            Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// Builds the response: a short text reason, or JSON for `/internal/` callers.
    pub fn into_response(self, retry_after_secs: u64, json: bool) -> Response<Body> {
        let status = self.status();
        let mut resp = match &self {
            GatewayError::LabelMissing {
                tracking,
                tracking_url,
            } if !json => missing_page(tracking, tracking_url.as_deref()),
            GatewayError::LoginRedirect { .. }
            | GatewayError::RangeNotSatisfiable { .. }
            | GatewayError::PreconditionFailed => Response::new(empty()),
            _ if json => {
                let body = serde_json::json!({ "error": self.public_reason() }).to_string();
                let mut r = Response::new(full(body));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
            _ => {
                let text = format!(
                    "{} {}: {}\n",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or(""),
                    self.public_reason()
                );
                let mut r = Response::new(full(text));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                r
            }
        };
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        match self {
            GatewayError::MethodNotAllowed { allow } => {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            GatewayError::LoginRedirect { location } => {
                h.insert(header::LOCATION, location);
            }
            GatewayError::RangeNotSatisfiable { size: Some(size) } => {
                if let Ok(v) = HeaderValue::try_from(format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            GatewayError::AuthUnavailable(_)
            | GatewayError::RegenerateUnavailable(_)
            | GatewayError::NotReady => {
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
}

/// The "label missing" page, as the Django view showed it: the tracking number and, when
/// known, a link to the carrier's tracking page.
fn missing_page(tracking: &str, tracking_url: Option<&str>) -> Response<Body> {
    let mut r = Response::new(full(missing_html(tracking, tracking_url)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn missing_html(tracking: &str, tracking_url: Option<&str>) -> String {
    let link = match tracking_url {
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
            let url = html_escape(url);
            format!("<p><a href=\"{url}\">Track this shipment with the carrier</a></p>\n")
        }
        _ => String::new(),
    };
    // `tracking` is validated to [A-Za-z0-9_-]: nothing to escape.
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Label not available</title></head>\n\
         <body><h1>Label not available</h1>\n<p>No shipping label is available for tracking number \
         <strong>{tracking}</strong>.</p>\n{link}</body></html>\n"
    )
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_refusal_is_bad_gateway_never_not_found() {
        let e = GatewayError::Storage(StorageError::Refused {
            status: 403,
            code: "SignatureDoesNotMatch".into(),
            hint: "check",
        });
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        let resp = e.into_response(2, false);
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn storage_timeout_is_gateway_timeout() {
        let e = GatewayError::Storage(StorageError::Timeout(std::time::Duration::from_secs(1)));
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn auth_unavailable_carries_retry_after() {
        let r = GatewayError::AuthUnavailable("refused".into()).into_response(3, false);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "3");
    }

    #[test]
    fn method_not_allowed_names_allowed_methods() {
        let r = GatewayError::MethodNotAllowed { allow: "GET, HEAD" }.into_response(1, false);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "GET, HEAD");
    }

    #[test]
    fn missing_page_escapes_the_tracking_link() {
        let html = missing_html("1Z", Some("https://x.test/?a=1&b=\"<script>"));
        assert!(html.contains("1Z"));
        assert!(
            html.contains("https://x.test/?a=1&amp;b=&quot;&lt;script&gt;"),
            "{html}"
        );
        assert!(!missing_html("1Z", Some("javascript:alert(1)")).contains("javascript"));
    }
}
