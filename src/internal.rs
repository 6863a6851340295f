//! `/internal/...`: calls from the Django app to the gateway, behind the bearer token of
//! `[internal]` (compared in constant time). Without a configured token every call is
//! refused, so a forgotten variable fails closed.

use http::header::{self, HeaderMap};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::Secret;
use crate::error::GatewayError;
use crate::gateway::{valid_tracking, Gateway};
use crate::http::{empty, Body};

/// An `/internal/` route, from the path after `/internal/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalRoute<'a> {
    /// `DELETE /internal/cache/{tracking}`
    Purge(&'a str),
    NotFound,
    BadTracking,
}

pub fn route(rest: &str) -> InternalRoute<'_> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(t) = rest.strip_prefix("cache/") {
        return if valid_tracking(t) {
            InternalRoute::Purge(t)
        } else {
            InternalRoute::BadTracking
        };
    }
    InternalRoute::NotFound
}

/// Checks `Authorization: Bearer <token>` against the configured token.
pub fn authorized(token: Option<&Secret>, headers: &HeaderMap) -> bool {
    let Some(token) = token else { return false };
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    token.matches(presented)
}

impl Gateway {
    pub(crate) async fn internal(
        &self,
        parts: &Parts,
        _body: Incoming,
        rest: &str,
    ) -> Result<Response<Body>, GatewayError> {
        let route = route(rest);
        if route == InternalRoute::NotFound {
            return Err(GatewayError::RouteNotFound);
        }
        if !authorized(self.config.internal.token.as_ref(), &parts.headers) {
            return Err(GatewayError::Unauthorized);
        }
        match route {
            InternalRoute::Purge(tracking) => {
                if parts.method != Method::DELETE {
                    return Err(GatewayError::MethodNotAllowed { allow: "DELETE" });
                }
                if let Some(cache) = &self.cache {
                    let purged = cache.purge(&cache.key(tracking)).await;
                    tracing::info!(tracking, purged, "cache purge");
                }
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                Ok(r)
            }
            InternalRoute::BadTracking => Err(GatewayError::BadTracking),
            InternalRoute::NotFound => Err(GatewayError::RouteNotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn internal_routes_parse() {
        assert_eq!(route("cache/ABC"), InternalRoute::Purge("ABC"));
        assert_eq!(route("cache/ABC/"), InternalRoute::Purge("ABC"));
        assert_eq!(route("cache/../x"), InternalRoute::BadTracking);
        assert_eq!(route("nothing"), InternalRoute::NotFound);
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        let token = Secret::new("s3cret");
        let mut h = HeaderMap::new();
        assert!(!authorized(Some(&token), &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorized(Some(&token), &h));
        assert!(
            !authorized(None, &h),
            "no configured token refuses everything"
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cre"),
        );
        assert!(!authorized(Some(&token), &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(!authorized(Some(&token), &h));
    }
}
