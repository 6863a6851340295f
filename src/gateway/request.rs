//! What the label path's phases share, below all of them: one label request as they see
//! it, and the validators of a label's head (the range and precondition checks of both the
//! storage phase and the responses read them). A leaf: it imports none of its siblings, so
//! `label.rs` (the phases) and `respond.rs` (the answers) both depend on it and not on
//! each other.

use std::net::SocketAddr;

use http::header::HeaderValue;
use http::request::Parts;

use crate::http::{Conditions, RangeSpec, Validators};
use crate::storage::ObjectHead;
use crate::tracking::Tracking;

/// One label request, as the phases see it.
pub(super) struct LabelRequest<'a> {
    pub parts: &'a Parts,
    pub tracking: Tracking,
    pub peer: SocketAddr,
    pub request_id: &'a HeaderValue,
    pub head_only: bool,
    pub conditions: Conditions,
    /// A single range to serve (never for HEAD).
    pub range: Option<RangeSpec>,
}

impl LabelRequest<'_> {
    /// Only a plain GET may fill the cache; the rest go straight to storage.
    pub fn can_fill(&self) -> bool {
        self.range.is_none() && !self.head_only && self.conditions.is_empty()
    }
}

/// The validators `head` carries, for `If-Range` and the preconditions.
pub(super) fn validators(head: &ObjectHead) -> Validators<'_> {
    Validators {
        etag: head.etag.as_ref().and_then(|v| v.to_str().ok()),
        last_modified: head
            .last_modified
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok()),
    }
}
