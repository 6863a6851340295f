//! The route table: a raw (still percent-encoded) path becomes a [`Route`], with any
//! tracking number already validated into a [`Tracking`]. Tracking numbers are checked on
//! the raw bytes, so `%2e`, `..`, `/` and anything non-ASCII never pass. The batch routes
//! (`batch.pdf`, `batch.zip`) are matched first: they hold a `.`, which no tracking number
//! does, so they cannot shadow a label.

use crate::tracking::Tracking;

/// Path prefix of the label route.
pub const LABEL_PREFIX: &str = "/shipping-label/";

/// Which routes a listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public listener with `internal_on_public`: every route.
    Combined,
    /// The public listener: labels and health only.
    Public,
    /// `internal_listen`: `/internal/...`, `/metrics` and health.
    Internal,
}

impl Listener {
    /// Labels (and their bad-request answers) are served here.
    pub fn public(self) -> bool {
        self != Listener::Internal
    }

    /// `/internal/...` and `/metrics` are served here.
    pub fn internal(self) -> bool {
        self != Listener::Public
    }
}

/// Where a path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A label.
    Label(Tracking),
    /// The label route with a tracking number that is not one.
    BadTracking,
    /// `/shipping-label/batch.pdf` or `/shipping-label/batch.zip`.
    Batch(BatchFormat),
    Healthz,
    Readyz,
    Metrics,
    /// `/internal/...`.
    Internal(InternalRoute),
    NotFound,
}

/// What a batch is answered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    /// One merged PDF.
    Pdf,
    /// One ZIP of `{tracking}.pdf` files.
    Zip,
}

/// An `/internal/` route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalRoute {
    /// `PUT /internal/labels/{tracking}`
    Label(Tracking),
    /// `POST /internal/labels/{tracking}/fetch`
    Fetch(Tracking),
    /// `DELETE /internal/cache/{tracking}` (purge) and `PUT` (warm up)
    Cache(Tracking),
    /// `POST /internal/sessions/revoke`: drop a logged-out session's cached verdicts.
    RevokeSession,
    /// A known internal route with a tracking number that is not one.
    BadTracking,
    NotFound,
}

/// Maps a raw path to a route.
pub fn route(path: &str) -> Route {
    if let Some(rest) = path.strip_prefix(LABEL_PREFIX) {
        let tracking = rest.strip_suffix('/').unwrap_or(rest);
        match tracking {
            "batch.pdf" => return Route::Batch(BatchFormat::Pdf),
            "batch.zip" => return Route::Batch(BatchFormat::Zip),
            _ => {}
        }
        return match Tracking::parse(tracking) {
            Ok(t) => Route::Label(t),
            Err(_) => Route::BadTracking,
        };
    }
    if path == "/shipping-label" {
        return Route::BadTracking;
    }
    match path {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        _ => match path.strip_prefix("/internal/") {
            Some(rest) => Route::Internal(internal_route(rest)),
            None => Route::NotFound,
        },
    }
}

/// Maps the path after `/internal/` to an internal route.
fn internal_route(rest: &str) -> InternalRoute {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let with = |t: &str, make: fn(Tracking) -> InternalRoute| match Tracking::parse(t) {
        Ok(t) => make(t),
        Err(_) => InternalRoute::BadTracking,
    };
    if let Some(t) = rest.strip_prefix("labels/") {
        return match t.strip_suffix("/fetch") {
            Some(t) => with(t, InternalRoute::Fetch),
            None => with(t, InternalRoute::Label),
        };
    }
    if let Some(t) = rest.strip_prefix("cache/") {
        return with(t, InternalRoute::Cache);
    }
    if rest == "sessions/revoke" {
        return InternalRoute::RevokeSession;
    }
    InternalRoute::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Tracking {
        Tracking::parse(s).unwrap()
    }

    #[test]
    fn label_paths_route_with_or_without_trailing_slash() {
        assert_eq!(
            route("/shipping-label/1Z999AA10123456784/"),
            Route::Label(t("1Z999AA10123456784"))
        );
        assert_eq!(
            route("/shipping-label/abc_DEF-9"),
            Route::Label(t("abc_DEF-9"))
        );
    }

    #[test]
    fn bad_tracking_numbers_are_rejected() {
        let long = format!("/shipping-label/{}/", "A".repeat(65));
        for p in [
            "/shipping-label/",
            "/shipping-label//",
            "/shipping-label/../etc/passwd",
            "/shipping-label/%2e%2e%2f/",
            "/shipping-label/a.pdf/",
            "/shipping-label/a/b/",
            "/shipping-label/a%00/",
            "/shipping-label/caf\u{e9}/",
            "/shipping-label/a\\b/",
            "/shipping-label",
            long.as_str(),
        ] {
            assert_eq!(route(p), Route::BadTracking, "{p}");
        }
        assert_eq!(
            route(&format!("/shipping-label/{}/", "A".repeat(64))),
            Route::Label(t(&"A".repeat(64)))
        );
    }

    #[test]
    fn batch_routes_come_before_tracking_validation() {
        assert_eq!(
            route("/shipping-label/batch.pdf"),
            Route::Batch(BatchFormat::Pdf)
        );
        assert_eq!(
            route("/shipping-label/batch.zip/"),
            Route::Batch(BatchFormat::Zip)
        );
        for p in [
            "/shipping-label/batch.PDF",
            "/shipping-label/batch.pdf.zip",
            "/shipping-label/batch%2epdf",
            "/shipping-label/x/batch.pdf",
        ] {
            assert_eq!(route(p), Route::BadTracking, "{p}");
        }
        assert_eq!(route("/shipping-label/batch/"), Route::Label(t("batch")));
    }

    #[test]
    fn operator_routes_and_unknown_paths() {
        assert_eq!(route("/healthz"), Route::Healthz);
        assert_eq!(route("/readyz"), Route::Readyz);
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(
            route("/internal/cache/X"),
            Route::Internal(InternalRoute::Cache(t("X")))
        );
        assert_eq!(route("/"), Route::NotFound);
        assert_eq!(route("/shipping-labels/X/"), Route::NotFound);
    }

    #[test]
    fn internal_routes_parse() {
        assert_eq!(internal_route("labels/ABC"), InternalRoute::Label(t("ABC")));
        assert_eq!(
            internal_route("labels/ABC/fetch"),
            InternalRoute::Fetch(t("ABC"))
        );
        assert_eq!(internal_route("labels/A.B"), InternalRoute::BadTracking);
        assert_eq!(internal_route("cache/ABC"), InternalRoute::Cache(t("ABC")));
        assert_eq!(internal_route("cache/ABC/"), InternalRoute::Cache(t("ABC")));
        assert_eq!(internal_route("cache/../x"), InternalRoute::BadTracking);
        assert_eq!(internal_route("nothing"), InternalRoute::NotFound);
        assert_eq!(
            internal_route("sessions/revoke"),
            InternalRoute::RevokeSession
        );
    }

    #[test]
    fn listeners_split_the_routes() {
        assert!(Listener::Combined.public() && Listener::Combined.internal());
        assert!(Listener::Public.public() && !Listener::Public.internal());
        assert!(!Listener::Internal.public() && Listener::Internal.internal());
    }
}
