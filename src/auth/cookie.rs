//! The session cookie as Django reads it (the last `sessionid` of the `Cookie` lines,
//! unquoted), its keyed hash, and the user name an allowing answer may carry.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};

use super::MAX_AUDIT_USER_BYTES;

/// The session cookie's value exactly as Django would read it from the same request, so
/// the gateway never checks a different session than the app's own pages see:
/// - several `Cookie` lines are joined the way Django's WSGI and ASGI handlers join them,
///   with `,` (over HTTP/2, where splitting the header is normal, with `; ` as RFC 9113
///   §8.2.3 asks);
/// - then Django's `parse_cookie`: pieces split on `;`, each at its first `=` (a piece
///   without one is a value under the empty name), names and values stripped of
///   whitespace, one pair of surrounding double quotes removed (and their `\"`/`\ooo`
///   escapes decoded), **the last `name` wins**.
///
/// Returned is the value to forward as `{name}={value}`: as written (trimmed), quotes
/// and all, so that Django, unquoting it on arrival, reads exactly what it would read from
/// the client's own request (unquoting here and forwarding the result would let
/// `""key""` pass as `key`). A value that reads as empty, or as anything but printable
/// ASCII, counts as no session (Django finds no session for it either).
pub fn session_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<Cow<'h, str>> {
    django_cookie(headers, name, ",")
}

/// What a session is known by: 128 bits of a keyed hash of the session key as Django
/// reads it (the forwarded cookie value, unquoted when it came in quotes), so the cookie a
/// browser sent and the key Django's logout names hash alike.
pub type SessionHash = [u8; 16];

/// [`SessionHash`] of a session key: two SipHash-1-3 values under keys drawn at random
/// when the process starts (std's `RandomState`). Nothing outside the process sees it, so
/// it need not be a published function; keyed, its values cannot be aimed at by a client,
/// and at 128 bits two sessions never share one. It runs on every label request, hits
/// included: 37 ns against 112 ns for ring's SHA-256 of a session key on a CPU with SHA
/// instructions (`cargo bench --bench micro -- session`).
pub fn session_hash(value: &str) -> SessionHash {
    use std::hash::BuildHasher;
    static KEYS: std::sync::OnceLock<[std::hash::RandomState; 2]> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| [std::hash::RandomState::new(), std::hash::RandomState::new()]);
    let hash = |bytes: &[u8]| {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&keys[0].hash_one(bytes).to_le_bytes());
        out[8..].copy_from_slice(&keys[1].hash_one(bytes).to_le_bytes());
        out
    };
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        hash(unquote(value).as_bytes())
    } else {
        hash(value.as_bytes())
    }
}

/// [`session_cookie`] for an HTTP/2 request, whose `Cookie` lines join with `; `.
pub fn session_cookie_h2<'h>(headers: &'h HeaderMap, name: &str) -> Option<Cow<'h, str>> {
    django_cookie(headers, name, "; ")
}

pub(super) fn django_cookie<'h>(
    headers: &'h HeaderMap,
    name: &str,
    join: &str,
) -> Option<Cow<'h, str>> {
    let mut lines = headers.get_all(header::COOKIE).iter();
    // One line (the normal case) is read in place and its value borrowed; only several
    // lines are joined. Visible ASCII (the normal case) is checked faster than UTF-8 and
    // reads the same.
    let first = lines.next()?;
    let mut joined = match first.to_str() {
        Ok(ascii) => Cow::Borrowed(ascii),
        Err(_) => String::from_utf8_lossy(first.as_bytes()),
    };
    for more in lines {
        let text = joined.to_mut();
        text.push_str(join);
        text.push_str(&String::from_utf8_lossy(more.as_bytes()));
    }
    match joined {
        Cow::Borrowed(line) => session_value(line, name).map(Cow::Borrowed),
        Cow::Owned(text) => session_value(&text, name).map(|v| Cow::Owned(v.to_string())),
    }
}

/// The value of the last `name=` pair in a joined cookie header, as Django reads it: the
/// last pair of that name wins, and a value that is empty or not printable ASCII (after
/// unquoting) is no session.
pub(super) fn session_value<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let raw = last_value(text, name)?;
    let printable = |v: &str| !v.is_empty() && v.bytes().all(|b| (0x21..0x7f).contains(&b));
    let quoted = raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"');
    let ok = if quoted {
        printable(&unquote(raw))
    } else {
        printable(raw)
    };
    ok.then_some(raw)
}

/// The trimmed value of the last `name=` piece of `text`, as Django splits it.
pub(super) fn last_value<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.rsplit(';').find_map(|piece| {
        // `=` is ASCII: its byte position is a char boundary.
        let (key, value) = match piece.bytes().position(|b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => ("", piece),
        };
        (trim(key) == name).then(|| trim(value))
    })
}

/// `str::trim`, read byte by byte when `s` is ASCII (whose whitespace is tab to carriage
/// return and space): every label request trims its cookie's pieces.
pub(super) fn trim(s: &str) -> &str {
    if !s.is_ascii() {
        return s.trim();
    }
    let space = |b: &u8| *b == b' ' || (b'\t'..=b'\r').contains(b);
    let bytes = s.as_bytes();
    let start = bytes.iter().position(|b| !space(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// Python's `http.cookies._unquote`: a value in double quotes loses them, and `\"`,
/// `\\` and octal `\ooo` escapes inside are decoded; anything else is left as it is.
pub fn unquote(v: &str) -> String {
    let Some(inner) = v
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .filter(|_| v.len() >= 2)
    else {
        return v.to_string();
    };
    let b = inner.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let octal = b.get(i + 1..i + 4).filter(|d| {
                (b'0'..=b'3').contains(&d[0]) && d[1..].iter().all(|c| (b'0'..=b'7').contains(c))
            });
            if let Some(d) = octal {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            } else {
                out.push(b[i + 1]);
                i += 2;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The user an `X-Label-User` value names, as the access log may show it: printable ASCII
/// (`!` to `~`) kept, every other byte (space, tab, anything non-ASCII) percent-escaped as
/// `%XX`, at most [`MAX_AUDIT_USER_BYTES`] (cut before an escape, never inside one).
/// Empty: none. The shipped Django view already sends percent-encoded UTF-8, which passes
/// unchanged; this bounds what any other check endpoint could put into a log line.
pub fn audit_user(value: &HeaderValue) -> Option<Arc<str>> {
    use std::fmt::Write;
    let mut out = String::with_capacity(value.len().min(MAX_AUDIT_USER_BYTES));
    for &b in value.as_bytes() {
        let printable = (0x21..0x7f).contains(&b);
        if out.len() + if printable { 1 } else { 3 } > MAX_AUDIT_USER_BYTES {
            break;
        }
        if printable {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    (!out.is_empty()).then(|| Arc::from(out))
}
