//! What a connection remembers of its last session cookie: its hash and the allowing
//! verdict last read for it.

use std::sync::Arc;
use std::time::Instant;

use super::{session_hash, SessionHash};
use crate::tracking::Tracking;

/// What a connection remembers of the last session cookie it sent: its [`session_hash`]
/// (a pure function's memo), and the allowing verdict last read for it from the cache
/// while it lasts (see [`super::Authenticator::cached_allow`]). A connection whose requests carry
/// one session (a print burst, a warehouse PC) hashes the cookie once and reads the
/// verdict cache once per verdict.
#[derive(Default)]
pub struct SessionMemo {
    pub(super) cookie: String,
    pub(super) hash: Option<SessionHash>,
    pub(super) verdict: Option<MemoVerdict>,
}

/// An allowing verdict a connection holds, with what bounds it.
pub(super) struct MemoVerdict {
    pub(super) tracking: Option<Tracking>,
    pub(super) user: Option<Arc<str>>,
    /// When the cache lets the verdict go.
    pub(super) expires: Instant,
    /// [`super::Authenticator`]'s invalidation count when it was read.
    pub(super) generation: u64,
}

impl SessionMemo {
    /// The hash of `cookie`; a cookie other than the last one forgets the verdict too.
    pub fn hash(&mut self, cookie: &str) -> SessionHash {
        match self.hash {
            Some(hash) if self.cookie == cookie => hash,
            _ => {
                let hash = session_hash(cookie);
                self.cookie.clear();
                self.cookie.push_str(cookie);
                self.hash = Some(hash);
                self.verdict = None;
                hash
            }
        }
    }
}
