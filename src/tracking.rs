//! The tracking number: the one type every storage key, cache key and log field is built
//! from. Its only constructor validates (`[A-Za-z0-9_-]{1,64}`), so an unchecked string can
//! never reach a key: no `/`, no `.`, no `%`, nothing outside ASCII.
//!
//! It is held inline (65 bytes, `Copy`), so a request's tracking number costs no
//! allocation on the hit path.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// A validated tracking number.
#[derive(Clone, Copy)]
pub struct Tracking {
    len: u8,
    bytes: [u8; Tracking::MAX_LEN],
}

/// Why a string is not a tracking number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tracking number must be 1-64 characters of A-Z a-z 0-9 _ -")]
pub struct InvalidTracking;

impl Tracking {
    /// The longest tracking number accepted.
    pub const MAX_LEN: usize = 64;

    /// Validates `s`; the only way to make a `Tracking`.
    pub fn parse(s: &str) -> Result<Tracking, InvalidTracking> {
        let b = s.as_bytes();
        if !(1..=Self::MAX_LEN).contains(&b.len())
            || !b
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        {
            return Err(InvalidTracking);
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Tracking {
            len: b.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Validated ASCII: the conversion cannot fail; the fallback is never taken.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The number's bytes (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether `s` is a valid tracking number.
    pub fn is_valid(s: &str) -> bool {
        Tracking::parse(s).is_ok()
    }
}

impl AsRef<str> for Tracking {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::ops::Deref for Tracking {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Tracking {
    fn eq(&self, other: &Self) -> bool {
        // The bytes, not `as_str`: no UTF-8 check on the cache-key path.
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Tracking {}

impl PartialEq<str> for Tracking {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Tracking {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Hash for Tracking {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes (bytes, then 0xff), without the UTF-8 check.
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

impl PartialOrd for Tracking {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Tracking {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for Tracking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Tracking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl FromStr for Tracking {
    type Err = InvalidTracking;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tracking::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Tracking {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Tracking::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_numbers_parse_and_read_back() {
        for s in ["a", "Z-9_x", "1Z999AA10123456784", &"A".repeat(64)] {
            let t = Tracking::parse(s).unwrap();
            assert_eq!(t.as_str(), s);
            assert_eq!(t.to_string(), s);
        }
    }

    #[test]
    fn anything_that_could_leave_the_location_is_refused() {
        for s in [
            "",
            "a b",
            "a+b",
            "a.pdf",
            "..",
            "a/b",
            "a\\b",
            "%2e",
            "caf\u{e9}",
            "a\0",
            &"x".repeat(65),
        ] {
            assert_eq!(Tracking::parse(s), Err(InvalidTracking), "{s:?}");
        }
    }

    #[test]
    fn equality_and_hash_follow_the_text() {
        use std::collections::HashSet;
        let a = Tracking::parse("AB").unwrap();
        let b: Tracking = "AB".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "AB");
        let set: HashSet<Tracking> = [a, b].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn deserializes_only_valid_numbers() {
        let ok: Vec<Tracking> = serde_json::from_str(r#"["A1","B-2"]"#).unwrap();
        assert_eq!(ok[1], "B-2");
        assert!(serde_json::from_str::<Vec<Tracking>>(r#"["A1","../x"]"#).is_err());
    }
}
