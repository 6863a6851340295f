//! Label responses: 200 and 206 with their headers, 304 after the gateway's own
//! precondition check (some S3 servers ignore conditional GETs), for a label streamed from
//! storage or held in memory alike.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::request::{validators, LabelRequest};
use super::{Gateway, Reply};
use crate::cache::CachedLabel;
use crate::error::Refusal;
use crate::http::{
    empty, full, Body, CacheState, Conditions, LabelHeaders, Precondition, X_REQUEST_ID,
};
use crate::storage::ObjectHead;
use crate::tracking::Tracking;

impl Gateway {
    /// A label from storage: 200/206, or 304/412 after the gateway's own precondition
    /// check.
    pub(super) fn found(
        &self,
        req: &LabelRequest<'_>,
        head: &ObjectHead,
        body: Body,
        cache: CacheState,
    ) -> Reply {
        self.label_response(req.tracking, head, body, &req.conditions, cache)
    }

    /// A label from memory (a cache hit, a stale label storage failed to replace, or a
    /// regenerated label), with the same semantics and headers as from storage:
    /// preconditions, a single range, HEAD.
    pub(super) fn serve_from_memory(
        &self,
        req: &LabelRequest<'_>,
        label: &Arc<CachedLabel>,
        cache: CacheState,
    ) -> Reply {
        let hit = cache == CacheState::Hit;
        if hit && req.range.is_none() && req.conditions.is_empty() {
            // The common case first, without building (and reference-counting) an
            // `ObjectHead` it does not need.
            return self.whole_hit(req, label);
        }
        let mut head = memory_head(label);
        match precondition(&req.conditions, &head) {
            Precondition::NotModified => {
                return Reply::Response(self.not_modified(req.tracking, &head, cache))
            }
            Precondition::Failed => return Reply::Refused(Refusal::PreconditionFailed),
            Precondition::Proceed => {}
        }
        if let Some(spec) = req
            .range
            .filter(|_| req.conditions.range_applies(&validators(&head)))
        {
            let Some(r) = spec.resolve(label.len) else {
                return Reply::Refused(Refusal::RangeNotSatisfiable {
                    size: Some(label.len),
                });
            };
            head.range = Some((r.start, r.end));
            head.content_length = r.len();
        }
        if hit && head.range.is_none() {
            return self.whole_hit(req, label);
        }
        let body = if req.head_only {
            empty()
        } else {
            label.body(head.range)
        };
        self.label_response(req.tracking, &head, body, &Conditions::default(), cache)
    }

    /// A whole label from memory, past its preconditions: the same headers every time,
    /// built on the first hit and cloned after.
    fn whole_hit(&self, req: &LabelRequest<'_>, label: &Arc<CachedLabel>) -> Reply {
        let headers = self.hit_headers(req.tracking, label);
        let body = if req.head_only {
            empty()
        } else {
            label.body(None)
        };
        let mut resp = Response::new(body);
        *resp.headers_mut() = headers.clone();
        Reply::Response(resp)
    }

    /// The headers of a whole-label hit of `label`, built on its first hit.
    pub(super) fn hit_headers<'l>(
        &self,
        tracking: Tracking,
        label: &'l CachedLabel,
    ) -> &'l http::HeaderMap {
        label.hit_headers.get_or_init(|| {
            let mut h = http::HeaderMap::with_capacity(12);
            self.label_and_length_headers(&tracking, &memory_head(label), CacheState::Hit, &mut h);
            // Held for the request's own id, which `Gateway::handle` always sets: a clone
            // has room for exactly the headers it copies, so adding one more would grow
            // (reallocate and copy) it on every hit.
            h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("-"));
            h
        })
    }

    /// The label headers and `Content-Length` of `head`.
    fn label_and_length_headers(
        &self,
        tracking: &Tracking,
        head: &ObjectHead,
        cache: CacheState,
        h: &mut http::HeaderMap,
    ) {
        self.label_headers(tracking, head, cache).write(h);
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(head.content_length),
        );
    }

    /// Builds the 200/206 (or 304/412 after the precondition check).
    fn label_response(
        &self,
        tracking: Tracking,
        head: &ObjectHead,
        body: Body,
        conditions: &Conditions,
        cache: CacheState,
    ) -> Reply {
        match precondition(conditions, head) {
            Precondition::NotModified => {
                return Reply::Response(self.not_modified(tracking, head, cache))
            }
            Precondition::Failed => return Reply::Refused(Refusal::PreconditionFailed),
            Precondition::Proceed => {}
        }
        let mut resp = Response::new(body);
        let h = resp.headers_mut();
        // Label headers, Content-Length, Content-Range, X-Request-Id and hyper's Date: sized
        // once instead of growing (and rehashing) past the default eight.
        h.reserve(12);
        self.label_and_length_headers(&tracking, head, cache, h);
        if let Some((start, end)) = head.range {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::try_from(format!("bytes {start}-{end}/{}", head.total_size))
            {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        Reply::Response(resp)
    }

    pub(super) fn not_modified(
        &self,
        tracking: Tracking,
        head: &ObjectHead,
        cache: CacheState,
    ) -> Response<Body> {
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        self.label_headers(&tracking, head, cache)
            .write(resp.headers_mut());
        resp.headers_mut().remove(header::CONTENT_TYPE);
        resp
    }

    fn label_headers<'a>(
        &'a self,
        tracking: &'a Tracking,
        head: &'a ObjectHead,
        cache: CacheState,
    ) -> LabelHeaders<'a> {
        LabelHeaders {
            tracking: tracking.as_str(),
            etag: head.etag.as_ref(),
            last_modified: head.last_modified.as_ref(),
            cache_control: &self.cache_control,
            cache,
        }
    }
}

/// What a label in memory says about itself, as storage would.
fn memory_head(label: &CachedLabel) -> ObjectHead {
    ObjectHead {
        content_length: label.len,
        total_size: label.len,
        range: None,
        etag: label.etag.clone(),
        last_modified: label.last_modified.clone(),
    }
}

/// RFC 9110 preconditions against `head`; a request without any (the common case) skips
/// parsing the label's dates.
fn precondition(conditions: &Conditions, head: &ObjectHead) -> Precondition {
    if conditions.is_empty() {
        Precondition::Proceed
    } else {
        conditions.evaluate(&validators(head))
    }
}

/// A short plain-text answer that is never stored (health).
pub(super) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
