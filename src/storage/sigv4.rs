//! SigV4 signing of storage requests with `aws-sigv4` (no AWS SDK): header signatures for
//! the gateway's own calls and query-string presigned URLs for operators.
//!
//! S3 wants its paths encoded once and never normalised, and `x-amz-content-sha256` on
//! every request; those settings live here and nowhere else.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::HeaderValue;

use crate::secret::Secret;

/// SHA-256 of the empty string: the payload hash of a GET or HEAD.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What the signature says about the body.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// No body (GET, HEAD, DELETE).
    Empty,
    /// A streamed body: `UNSIGNED-PAYLOAD`.
    Unsigned,
    /// A body whose bytes are at hand.
    Bytes(&'a [u8]),
}

/// A signing failure: a header that is not visible ASCII, or a malformed URI. Carries no
/// secret material.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign storage request: {0}")]
pub struct SignError(String);

/// Holds the credentials and region; cheap to share.
pub struct Signer {
    identity: Identity,
    region: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(access_key_id: &Secret, secret_access_key: &Secret, region: &str) -> Self {
        let creds = Credentials::new(
            access_key_id.expose(),
            secret_access_key.expose(),
            None,
            None,
            "label-gateway",
        );
        Signer {
            identity: creds.into(),
            region: region.to_string(),
        }
    }

    fn settings(location: SignatureLocation, expires_in: Option<Duration>) -> SigningSettings {
        let mut s = SigningSettings::default();
        s.percent_encoding_mode = PercentEncodingMode::Single;
        s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        s.payload_checksum_kind = match location {
            SignatureLocation::Headers => PayloadChecksumKind::XAmzSha256,
            _ => PayloadChecksumKind::NoHeader,
        };
        s.signature_location = location;
        s.expires_in = expires_in;
        s
    }

    /// Adds `Authorization`, `x-amz-date` and `x-amz-content-sha256` to `req`. Every header
    /// already on the request is signed, so set them all first.
    pub fn sign<B>(
        &self,
        req: &mut http::Request<B>,
        payload: Payload<'_>,
        time: SystemTime,
    ) -> Result<(), SignError> {
        let body = match payload {
            Payload::Empty => SignableBody::Precomputed(EMPTY_SHA256.to_string()),
            Payload::Unsigned => SignableBody::UnsignedPayload,
            Payload::Bytes(b) => SignableBody::Bytes(b),
        };
        let settings = Self::settings(SignatureLocation::Headers, None);
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| SignError(e.to_string()))?
            .into();
        let mut headers = Vec::with_capacity(req.headers().len());
        for (name, value) in req.headers() {
            let value = value
                .to_str()
                .map_err(|_| SignError(format!("header {name} is not visible ASCII")))?;
            headers.push((name.as_str(), value));
        }
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(req.method().as_str(), uri, headers.into_iter(), body)
            .map_err(|e| SignError(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| SignError(e.to_string()))?
            .into_parts();
        for (name, value) in instructions.headers() {
            let value =
                HeaderValue::from_str(value).map_err(|_| SignError(format!("bad {name} value")))?;
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SignError(format!("bad header name {name}")))?;
            req.headers_mut().insert(name, value);
        }
        Ok(())
    }

    /// A presigned URL (query-string signature) valid for `expires_in` from `time`.
    pub fn presign(
        &self,
        method: &http::Method,
        url: &str,
        expires_in: Duration,
        time: SystemTime,
    ) -> Result<String, SignError> {
        let settings = Self::settings(SignatureLocation::QueryParams, Some(expires_in));
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| SignError(e.to_string()))?
            .into();
        let uri: http::Uri = url.parse().map_err(|_| SignError("bad URL".into()))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| SignError("URL has no host".into()))?;
        let signable = SignableRequest::new(
            method.as_str(),
            url,
            [("host", host.as_str())].into_iter(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| SignError(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| SignError(e.to_string()))?
            .into_parts();
        let mut out = url.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (name, value) in instructions.params() {
            out.push(sep);
            sep = '&';
            out.push_str(name);
            out.push('=');
            out.push_str(&percent_encoding::utf8_percent_encode(value, QUERY).to_string());
        }
        Ok(out)
    }
}

/// RFC 3986 unreserved characters stay, everything else is escaped (SigV4 query encoding).
pub(crate) const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    // The worked examples of the AWS S3 documentation, "Signature Calculations for the
    // Authorization Header" and "Authenticating Requests: Using Query Parameters".
    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn example_time() -> SystemTime {
        // 20130524T000000Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    #[test]
    fn published_get_object_example_produces_published_signature() {
        let signer = Signer::new(&Secret::new(AK), &Secret::new(SK), "us-east-1");
        let mut req = http::Request::get("https://examplebucket.s3.amazonaws.com/test.txt")
            .header("host", "examplebucket.s3.amazonaws.com")
            .header("range", "bytes=0-9")
            .body(())
            .unwrap();
        signer
            .sign(&mut req, Payload::Empty, example_time())
            .unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(req.headers()["x-amz-content-sha256"], EMPTY_SHA256);
        assert_eq!(req.headers()["x-amz-date"], "20130524T000000Z");
    }

    #[test]
    fn published_presigned_url_example_produces_published_signature() {
        let signer = Signer::new(&Secret::new(AK), &Secret::new(SK), "us-east-1");
        let url = signer
            .presign(
                &http::Method::GET,
                "https://examplebucket.s3.amazonaws.com/test.txt",
                Duration::from_secs(86_400),
                example_time(),
            )
            .unwrap();
        assert!(
            url.ends_with(
                "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{url}"
        );
        assert!(url.contains(
            "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        ));
    }

    #[test]
    fn unsigned_payload_is_declared() {
        let signer = Signer::new(&Secret::new(AK), &Secret::new(SK), "lon1");
        let mut req = http::Request::put("http://127.0.0.1:9000/b/labels/X.pdf")
            .header("host", "127.0.0.1:9000")
            .body(())
            .unwrap();
        signer
            .sign(&mut req, Payload::Unsigned, SystemTime::now())
            .unwrap();
        assert_eq!(req.headers()["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(auth.contains("/lon1/s3/aws4_request"));
        assert!(!auth.contains(SK));
    }

    #[test]
    fn debug_never_shows_credentials() {
        let signer = Signer::new(&Secret::new(AK), &Secret::new(SK), "lon1");
        let dbg = format!("{signer:?}");
        assert!(!dbg.contains(SK) && !dbg.contains(AK), "{dbg}");
    }
}
