//! SigV4 signing of storage requests (no AWS SDK): header signatures for the gateway's own
//! calls and query-string presigned URLs for operators.
//!
//! S3 wants its paths encoded once and never normalised, and `x-amz-content-sha256` on
//! every request; those settings live here and nowhere else.
//!
//! The gateway's own requests (a label's GET or HEAD, a PUT, a DELETE: no query string,
//! one value per header) take a fast path: the canonical request is written straight into
//! one buffer and the signing key, which changes only with the date, is derived once a day
//! and kept (aws-sigv4 derives it again for every request, four HMACs). Anything else
//! (query strings, repeated or excluded headers, values needing whitespace folding, a body
//! hashed here) goes through `aws-sigv4` as before. The unit tests pin the fast path to
//! aws-sigv4's output byte for byte.

use std::sync::Mutex;
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
    access_key_id: Secret,
    /// `"AWS4" + secret`, the first HMAC key of the daily derivation.
    key_seed: Secret,
    /// The day (`YYYYMMDD`) and its signing key, derived on the first request of the day.
    daily_key: Mutex<Option<([u8; 8], ring::hmac::Key)>>,
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
            access_key_id: Secret::new(access_key_id.expose()),
            key_seed: Secret::new(format!("AWS4{}", secret_access_key.expose())),
            daily_key: Mutex::new(None),
        }
    }

    /// The signing key of `date` (`YYYYMMDD`): kept, derived again when the date changes.
    fn signing_key(&self, date: &[u8; 8]) -> ring::hmac::Key {
        let mut kept = self.daily_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((day, key)) = kept.as_ref() {
            if day == date {
                return key.clone();
            }
        }
        let hmac = |key: &[u8], data: &[u8]| {
            ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data)
        };
        let k_date = hmac(self.key_seed.expose().as_bytes(), date);
        let k_region = hmac(k_date.as_ref(), self.region.as_bytes());
        let k_service = hmac(k_region.as_ref(), b"s3");
        let k_signing = hmac(k_service.as_ref(), b"aws4_request");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k_signing.as_ref());
        *kept = Some((*date, key.clone()));
        key
    }

    /// The fast path of [`Signer::sign`]: `None` when the request is not of the simple
    /// shape it handles (then aws-sigv4 signs it).
    fn sign_fast<B>(
        &self,
        req: &mut http::Request<B>,
        payload_hash: &str,
        time: SystemTime,
    ) -> Option<Result<(), SignError>> {
        let uri = req.uri();
        if uri.query().is_some() {
            return None;
        }
        let stamp = AmzDate::of(time)?;
        // The headers signed: the request's own, plus host (when absent), the payload hash
        // and the date, sorted by name. aws-sigv4 would leave some out, fold whitespace or
        // join repeats: those requests take the slow path.
        let mut signed: Vec<(&str, &str)> = Vec::with_capacity(req.headers().len() + 3);
        for (name, value) in req.headers() {
            let name = name.as_str();
            if matches!(
                name,
                "authorization"
                    | "user-agent"
                    | "x-amzn-trace-id"
                    | "transfer-encoding"
                    | "x-amz-date"
                    | "x-amz-content-sha256"
                    | "x-amz-security-token"
            ) {
                return None;
            }
            let value = value.to_str().ok()?;
            if value.starts_with(' ') || value.ends_with(' ') || value.contains("  ") {
                return None;
            }
            signed.push((name, value));
        }
        let host_from_uri;
        if !req.headers().contains_key(http::header::HOST) {
            let authority = uri.authority()?;
            let default_port = matches!(
                (uri.scheme_str(), uri.port_u16()),
                (Some("http"), Some(80)) | (Some("https"), Some(443))
            );
            host_from_uri = if default_port {
                authority.host().to_string()
            } else {
                authority.as_str().to_string()
            };
            signed.push(("host", &host_from_uri));
        }
        signed.push(("x-amz-content-sha256", payload_hash));
        signed.push(("x-amz-date", stamp.date_time()));
        signed.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if signed.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }

        let mut creq = String::with_capacity(512);
        creq.push_str(req.method().as_str());
        creq.push('\n');
        creq.push_str(uri.path());
        creq.push_str("\n\n");
        for (name, value) in &signed {
            creq.push_str(name);
            creq.push(':');
            creq.push_str(value);
            creq.push('\n');
        }
        creq.push('\n');
        let names_at = creq.len();
        for (i, (name, _)) in signed.iter().enumerate() {
            if i > 0 {
                creq.push(';');
            }
            creq.push_str(name);
        }
        let names_end = creq.len();
        creq.push('\n');
        creq.push_str(payload_hash);
        let signed_names = &creq[names_at..names_end];

        let date = stamp.date();
        let mut sts = String::with_capacity(160);
        sts.push_str("AWS4-HMAC-SHA256\n");
        sts.push_str(stamp.date_time());
        sts.push('\n');
        // Pieces pushed one by one, not `write!`: this runs on every storage request.
        for piece in [date, "/", &self.region, "/s3/aws4_request\n"] {
            sts.push_str(piece);
        }
        push_hex(
            &mut sts,
            ring::digest::digest(&ring::digest::SHA256, creq.as_bytes()).as_ref(),
        );
        let key = self.signing_key(&stamp.day());
        let signature = ring::hmac::sign(&key, sts.as_bytes());

        let mut auth = String::with_capacity(256);
        for piece in [
            "AWS4-HMAC-SHA256 Credential=",
            self.access_key_id.expose(),
            "/",
            date,
            "/",
            &self.region,
            "/s3/aws4_request, SignedHeaders=",
            signed_names,
            ", Signature=",
        ] {
            auth.push_str(piece);
        }
        push_hex(&mut auth, signature.as_ref());
        let date_value = HeaderValue::from_str(stamp.date_time());
        let hash_value = HeaderValue::from_str(payload_hash);
        let auth_value = HeaderValue::from_str(&auth);
        Some(match (date_value, hash_value, auth_value) {
            (Ok(d), Ok(h), Ok(a)) => {
                let headers = req.headers_mut();
                headers.insert(http::header::AUTHORIZATION, a);
                headers.insert(X_AMZ_DATE, d);
                headers.insert(X_AMZ_CONTENT_SHA256, h);
                Ok(())
            }
            _ => Err(SignError("a signed header is not visible ASCII".into())),
        })
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
        let fast_hash = match payload {
            Payload::Empty => Some(EMPTY_SHA256),
            Payload::Unsigned => Some("UNSIGNED-PAYLOAD"),
            Payload::Bytes(_) => None,
        };
        if let Some(hash) = fast_hash {
            if let Some(done) = self.sign_fast(req, hash, time) {
                return done;
            }
        }
        self.sign_slow(req, payload, time)
    }

    /// [`Signer::sign`] through aws-sigv4: every request shape.
    fn sign_slow<B>(
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

const X_AMZ_DATE: http::HeaderName = http::HeaderName::from_static("x-amz-date");
const X_AMZ_CONTENT_SHA256: http::HeaderName =
    http::HeaderName::from_static("x-amz-content-sha256");

/// Lower-case hex of `bytes`, appended to `out`.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

/// `YYYYMMDDTHHMMSSZ` of a UTC time, SigV4's `x-amz-date`.
struct AmzDate([u8; 16]);

impl AmzDate {
    /// `None` before 1970 or after 9999 (never for a clock in use).
    fn of(time: SystemTime) -> Option<AmzDate> {
        use std::fmt::Write as _;
        let secs = time.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
        thread_local! {
            /// The last second stamped on this thread and its stamp, shared by every
            /// request of that second.
            static LAST: std::cell::Cell<(u64, [u8; 16])> =
                const { std::cell::Cell::new((u64::MAX, [0; 16])) };
        }
        let (last, stamp) = LAST.get();
        if last == secs {
            return Some(AmzDate(stamp));
        }
        // humantime's `YYYY-MM-DDTHH:MM:SSZ` without its separators. Written through
        // `fmt::Write`, which returns its refusal of years past 9999 (`io::Write` panics).
        let mut text = String::with_capacity(20);
        write!(text, "{}", humantime::format_rfc3339_seconds(time)).ok()?;
        let text = text.as_bytes().get(..19)?;
        let mut out = *b"00000000T000000Z";
        for (to, from) in [
            (0, 0..4),
            (4, 5..7),
            (6, 8..10),
            (9, 11..13),
            (11, 14..16),
            (13, 17..19),
        ] {
            out[to..to + from.len()].copy_from_slice(&text[from]);
        }
        LAST.set((secs, out));
        Some(AmzDate(out))
    }

    /// The day, `YYYYMMDD`: what the daily signing key is derived for.
    fn day(&self) -> [u8; 8] {
        let mut day = [0u8; 8];
        day.copy_from_slice(&self.0[..8]);
        day
    }

    fn date_time(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    fn date(&self) -> &str {
        std::str::from_utf8(&self.0[..8]).unwrap_or("")
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

    /// Signs a copy of `req` both ways and returns (fast path taken?, fast, aws-sigv4).
    fn both_ways(
        signer: &Signer,
        req: &http::Request<()>,
        payload: Payload<'_>,
        time: SystemTime,
    ) -> (bool, http::HeaderMap, http::HeaderMap) {
        let copy = || {
            let mut r = http::Request::new(());
            *r.method_mut() = req.method().clone();
            *r.uri_mut() = req.uri().clone();
            *r.headers_mut() = req.headers().clone();
            r
        };
        let hash = match payload {
            Payload::Empty => EMPTY_SHA256,
            _ => "UNSIGNED-PAYLOAD",
        };
        let mut fast = copy();
        let took = signer.sign_fast(&mut fast, hash, time).is_some();
        if !took {
            signer.sign(&mut fast, payload, time).unwrap();
        }
        let mut slow = copy();
        signer.sign_slow(&mut slow, payload, time).unwrap();
        (took, fast.headers().clone(), slow.headers().clone())
    }

    #[test]
    fn fast_path_signs_exactly_as_aws_sigv4_across_days() {
        let signer = Signer::new(&Secret::new(AK), &Secret::new(SK), "lon1");
        // Around midnight (the daily key changes), a leap day, and far dates.
        let times = [
            1_369_353_600 - 1,
            1_369_353_600,
            1_709_164_800 + 3_599, // 2024-02-29
            1_767_225_599,         // 2025-12-31T23:59:59Z
            1_767_225_600,
            4_102_444_800, // 2100-01-01
        ];
        for secs in times {
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            for (method, payload) in [
                ("GET", Payload::Empty),
                ("HEAD", Payload::Empty),
                ("DELETE", Payload::Empty),
                ("PUT", Payload::Unsigned),
            ] {
                let req = http::Request::builder()
                    .method(method)
                    .uri("https://lon1.digitaloceanspaces.com/bucket/labels/1Z999AA1%2B2.pdf")
                    .header("host", "lon1.digitaloceanspaces.com")
                    .header("range", "bytes=0-1023")
                    .header("if-none-match", "\"abc\"")
                    .body(())
                    .unwrap();
                let (took, fast, slow) = both_ways(&signer, &req, payload, time);
                assert!(took, "{method} at {secs}: fast path not taken");
                assert_eq!(fast, slow, "{method} at {secs}");
            }
        }
    }

    #[test]
    fn fast_path_leaves_other_shapes_to_aws_sigv4() {
        let signer = Signer::new(&Secret::new(AK), &Secret::new(SK), "lon1");
        let time = example_time();
        let shapes = [
            http::Request::get("http://127.0.0.1:9000/b?list-type=2&prefix=labels%2F")
                .header("host", "127.0.0.1:9000")
                .body(())
                .unwrap(),
            http::Request::get("http://127.0.0.1:9000/b/labels/X.pdf")
                .header("host", "127.0.0.1:9000")
                .header("if-none-match", "\"a\"")
                .header("if-none-match", "\"b\"")
                .body(())
                .unwrap(),
            http::Request::get("http://127.0.0.1:9000/b/labels/X.pdf")
                .header("host", "127.0.0.1:9000")
                .header("if-match", "  \"a\"   ")
                .body(())
                .unwrap(),
            http::Request::get("http://127.0.0.1:9000/b/labels/X.pdf")
                .header("host", "127.0.0.1:9000")
                .header("user-agent", "label-gateway")
                .body(())
                .unwrap(),
        ];
        for req in &shapes {
            let (took, fast, slow) = both_ways(&signer, req, Payload::Empty, time);
            assert!(!took, "{:?} {:?}", req.uri(), req.headers());
            assert_eq!(fast, slow);
        }
        // No Host header: taken from the URI, a default port left out as aws-sigv4 does.
        for uri in [
            "http://127.0.0.1:9000/b/labels/X.pdf",
            "https://fra1.digitaloceanspaces.com:443/b/labels/X.pdf",
            "http://example.com:80/b/labels/X.pdf",
        ] {
            let req = http::Request::get(uri).body(()).unwrap();
            let (took, fast, slow) = both_ways(&signer, &req, Payload::Empty, time);
            assert!(took, "{uri}");
            assert_eq!(fast, slow, "{uri}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_path_matches_aws_sigv4_for_any_label_request(
            tracking in "[A-Za-z0-9]{1,30}",
            secs in 0u64..4_000_000_000,
            range in proptest::option::of((0u64..1_000_000, 0u64..1_000_000)),
            etag in proptest::option::of("[!#-~]{1,40}"),
            secret in "[A-Za-z0-9/+]{40}",
            region in "[a-z]{2,4}[0-9]",
        ) {
            let signer = Signer::new(&Secret::new("DO00EXAMPLEKEY"), &Secret::new(secret), &region);
            let mut b = http::Request::get(format!("https://{region}.example.test/bucket/labels/{tracking}.pdf"))
                .header("host", format!("{region}.example.test"));
            if let Some((from, len)) = range {
                b = b.header("range", format!("bytes={from}-{}", from + len));
            }
            if let Some(tag) = etag {
                b = b.header("if-none-match", format!("\"{tag}\""));
            }
            let req = b.body(()).unwrap();
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            let (took, fast, slow) = both_ways(&signer, &req, Payload::Empty, time);
            proptest::prop_assert!(took);
            proptest::prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn amz_date_matches_the_calendar() {
        let d = AmzDate::of(example_time()).unwrap();
        assert_eq!(d.date_time(), "20130524T000000Z");
        let d = AmzDate::of(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399))
            .unwrap();
        assert_eq!(d.date_time(), "20000229T235959Z");
        assert_eq!(d.date(), "20000229");
        let again = AmzDate::of(example_time()).unwrap();
        assert_eq!(
            again.date_time(),
            "20130524T000000Z",
            "a stamp kept per second"
        );
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert!(AmzDate::of(far).is_none(), "past 9999: none, no panic");
    }

    #[test]
    fn debug_never_shows_credentials() {
        let signer = Signer::new(&Secret::new(AK), &Secret::new(SK), "lon1");
        let dbg = format!("{signer:?}");
        assert!(!dbg.contains(SK) && !dbg.contains(AK), "{dbg}");
    }
}
