//! The two shapes a batch of labels is answered in, written label by label so that a batch
//! streams and holds only what its end still needs:
//! - [`pdf`]: one merged PDF, each label's pages appended in order (lopdf parses each
//!   label; its objects are renumbered and written out at once);
//! - [`zip`]: one ZIP of `{tracking}.pdf` files, stored (PDFs are compressed already).
//!
//! Both are pure: bytes in, bytes out, no I/O. The gateway's batch handler feeds them.

pub mod pdf;
pub mod zip;
