//! Fuzzes everything the gateway parses from a client's request before any auth or
//! storage call: the path router, `Range`, the conditional headers and the session cookie.
//!
//! Input layout: fields separated by NUL bytes, in this order (missing fields are absent):
//! path, Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, If-Range,
//! Cookie, a second Cookie, the object's ETag, and 8 bytes of object size / mtime.
//! Besides "no panic", each call checks the invariants the gateway relies on.

#![no_main]

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use label_gateway::auth::session_cookie;
use label_gateway::gateway::{route, Route, LABEL_PREFIX};
use label_gateway::tracking::Tracking;
use label_gateway::http::{
    parse_range, Conditions, Precondition, RangeRequest, RangeSpec, Validators,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|b| *b == 0);
    let mut next = || fields.next().unwrap_or_default();

    check_route(next());

    let mut headers = HeaderMap::new();
    for name in [
        header::RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
        header::COOKIE,
        header::COOKIE,
    ] {
        add(&mut headers, name, next());
    }
    let etag_bytes = next();
    let tail = next();
    let mut n = [0u8; 8];
    for (d, s) in n.iter_mut().zip(tail) {
        *d = *s;
    }
    let size = u64::from(u32::from_le_bytes([n[0], n[1], n[2], n[3]]));
    let mtime = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::from(u32::from_le_bytes([n[4], n[5], n[6], n[7]])));

    check_range(headers.get(header::RANGE), size);

    let etag = std::str::from_utf8(etag_bytes).ok();
    let validators = Validators {
        etag,
        last_modified: Some(mtime),
    };
    let conditions = Conditions::from_headers(&headers);
    let outcome = conditions.evaluate(&validators);
    let _ = conditions.range_applies(&validators);
    // Only the four conditional headers are ever forwarded to storage.
    for (name, _) in conditions.forward() {
        assert!(
            [
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                header::IF_MODIFIED_SINCE,
                header::IF_UNMODIFIED_SINCE
            ]
            .contains(&name),
            "forwarded {name}"
        );
    }
    if conditions.is_empty() {
        assert_eq!(outcome, Precondition::Proceed);
    }
    assert_eq!(
        Conditions::default().evaluate(&validators),
        Precondition::Proceed
    );

    for name in ["sessionid", "shop_session"] {
        if let Some(v) = session_cookie(&headers, name) {
            assert!(!v.is_empty());
            assert!(v.bytes().all(|b| (0x21..0x7f).contains(&b)), "{v:?}");
            // It can always be sent on as a header value to the session check.
            assert!(HeaderValue::try_from(format!("{name}={v}")).is_ok());
        }
    }
});

fn add(headers: &mut HeaderMap, name: HeaderName, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.append(name, v);
    }
}

fn check_route(raw: &[u8]) {
    let path = String::from_utf8_lossy(raw);
    match route(&path) {
        Route::Label(t) => {
            assert!(path.starts_with(LABEL_PREFIX), "{path:?}");
            assert!(Tracking::is_valid(&t), "{t:?} from {path:?}");
            assert!((1..=64).contains(&t.len()));
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{t:?}"
            );
            // The storage key `{location}/{t}.pdf` stays inside the location.
            let key = format!("labels/{t}.pdf");
            assert!(
                !key.contains("..") && key.matches('/').count() == 1,
                "{key}"
            );
        }
        Route::BadTracking => assert!(path.starts_with("/shipping-label"), "{path:?}"),
        _ => {}
    }
}

fn check_range(value: Option<&HeaderValue>, size: u64) {
    let RangeRequest::Single(spec) = parse_range(value) else {
        return;
    };
    if let RangeSpec::FromTo(a, Some(b)) = spec {
        assert!(a <= b, "{spec:?}");
    }
    // The value forwarded to storage parses back to the same range.
    let forwarded = spec.header_value();
    assert_eq!(parse_range(Some(&forwarded)), RangeRequest::Single(spec));
    if let Some(r) = spec.resolve(size) {
        assert!(
            r.start <= r.end && r.end < size,
            "{spec:?} of {size}: {r:?}"
        );
        assert!(r.len() <= size);
    }
}
