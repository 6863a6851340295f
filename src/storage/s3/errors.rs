//! S3 error answers: the `<Code>` of an error document, and each code's likely fix.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};

use super::transport::read_body;
use crate::http::Body;
use crate::storage::StorageError;

/// Largest S3 error document read to find its `<Code>`.
pub(super) const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// Reads the S3 error document (bounded) and returns its `<Code>`, or "" when none.
pub(super) async fn error_code(resp: Response<Body>) -> String {
    let read = read_body(resp.into_body(), ERROR_BODY_LIMIT);
    let bytes = match tokio::time::timeout(Duration::from_secs(2), read).await {
        Ok(Ok(b)) => b,
        _ => Bytes::new(),
    };
    code_in(&bytes)
}

/// The `<Code>` of an S3 error document (letters and digits only, at most 64), or "".
pub(super) fn code_in(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| {
            code.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(64)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn hint(code: &str) -> &'static str {
    match code {
        "SignatureDoesNotMatch" => "check SPACES_SECRET_ACCESS_KEY and SPACES_REGION",
        // s3s (and so the test server) says NotSignedUp for an unknown key id.
        "InvalidAccessKeyId" | "NotSignedUp" => "check SPACES_ACCESS_KEY_ID",
        "RequestTimeTooSkewed" => "the gateway's clock is off: sync it with NTP",
        "AccessDenied" => "the key may not read this bucket: check its permissions",
        "AuthorizationHeaderMalformed" => "check SPACES_REGION (Spaces wants its slug, e.g. lon1)",
        "NoSuchBucket" => "check SPACES_BUCKET_NAME and SPACES_ENDPOINT_URL",
        _ => "check SPACES_* credentials, the region and the clock",
    }
}

pub(super) fn refused(status: u16, code: String) -> StorageError {
    let hint = hint(&code);
    StorageError::Refused { status, code, hint }
}

pub(super) fn unexpected(status: StatusCode, code: String) -> StorageError {
    if status.is_server_error() {
        StorageError::Unavailable {
            status: status.as_u16(),
            code,
        }
    } else if status.is_client_error() {
        refused(status.as_u16(), code)
    } else {
        StorageError::Protocol(format!("HTTP {status} {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_fault_names_its_own_fix() {
        for (code, fix) in [
            (
                "SignatureDoesNotMatch",
                "check SPACES_SECRET_ACCESS_KEY and SPACES_REGION",
            ),
            ("InvalidAccessKeyId", "check SPACES_ACCESS_KEY_ID"),
            ("NotSignedUp", "check SPACES_ACCESS_KEY_ID"),
            (
                "RequestTimeTooSkewed",
                "the gateway's clock is off: sync it with NTP",
            ),
            (
                "AccessDenied",
                "the key may not read this bucket: check its permissions",
            ),
            (
                "AuthorizationHeaderMalformed",
                "check SPACES_REGION (Spaces wants its slug, e.g. lon1)",
            ),
            (
                "NoSuchBucket",
                "check SPACES_BUCKET_NAME and SPACES_ENDPOINT_URL",
            ),
        ] {
            let e = refused(403, code.into());
            assert!(
                matches!(&e, StorageError::Refused { hint, .. } if *hint == fix),
                "{code}: {e}"
            );
            assert!(e.to_string().contains(code), "{e}");
        }
        assert_eq!(
            hint("SomethingElse"),
            "check SPACES_* credentials, the region and the clock"
        );
    }
}
