//! A secret string (the Spaces secret, bearer tokens): never printed, compared in constant
//! time, zeroed when dropped.
//!
//! There is deliberately no `==`: a derived comparison would leak through timing, so the
//! only comparison is [`Secret::matches`].

use std::fmt;

use zeroize::Zeroize;

/// A secret value: redacted in `Debug`, compared in constant time, zeroed on drop.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the few places that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented value (a bearer token). An empty secret
    /// matches nothing.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        !self.0.is_empty() && self.0.as_bytes().ct_eq(presented).into()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
    }

    #[test]
    fn matches_only_the_exact_value() {
        let s = Secret::new("s3cret");
        assert!(s.matches(b"s3cret"));
        assert!(!s.matches(b"s3cre"));
        assert!(!s.matches(b"s3cret "));
        assert!(
            !Secret::new("").matches(b""),
            "an empty secret matches nothing"
        );
    }
}
