//! Client garbage: path traversal in every spelling, malformed `Range` and `If-*` headers,
//! huge and malformed cookies, bytes that are not UTF-8. Property tests on the pure
//! parsers (proptest), then fixed lists and generated requests against the live gateway
//! over raw sockets (so nothing is normalised on the way). The rules: no panic (every
//! request gets a status), never a 5xx for client garbage, and never a storage request
//! for an invalid tracking number (counted at the S3 server).

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderValue};
use label_gateway::auth::session_cookie;
use label_gateway::gateway::{route, Route, LABEL_PREFIX};
use label_gateway::http::{
    parse_range, Conditions, Precondition, RangeRequest, RangeSpec, Validators,
};
use label_gateway::server::Running;
use label_gateway::tracking::Tracking;
use proptest::prelude::*;

use crate::support::{self, pdf_bytes, Responder, S3Server, ANY_SESSION};

// --- the pure parsers

/// Spellings of "dot", "slash" and "nothing" that must never reach a storage key.
const HOSTILE: &[&str] = &[
    "..",
    ".",
    "/",
    "\\",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "%252e",
    "%252f",
    "%00",
    "%c0%ae",
    "%C0%AE",
    "%c0%af",
    "%e0%80%ae",
    "%EF%BC%8E",
    "%ef%bc%8f",
    "\u{ff0e}",
    "\u{2024}",
    "\u{2215}",
    "%u002e",
    ";",
    "?",
    "#",
    " ",
    "\t",
    "\0",
    "é",
    "%",
    "+",
    ":",
    "~",
];

fn tracking_char() -> impl Strategy<Value = String> {
    prop::sample::select(
        "ABCXYZabcxyz0189_-"
            .chars()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
    )
}

/// Tracking-number-like text with at least one hostile piece spliced in.
fn hostile_tracking() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(tracking_char(), 0..8),
        prop::collection::vec(prop::sample::select(HOSTILE), 1..4),
        prop::collection::vec(tracking_char(), 0..8),
    )
        .prop_map(|(a, h, b)| format!("{}{}{}", a.concat(), h.concat(), b.concat()))
}

/// Whether `{LABEL_PREFIX}{t}` plus an optional `/` is really not a label path: a
/// generated `/` at the very end is just the route's optional trailing slash.
fn really_hostile(t: &str, slash: bool) -> bool {
    slash || !t.strip_suffix('/').is_some_and(Tracking::is_valid)
}

proptest! {
    #[test]
    fn any_path_routes_without_panicking_and_labels_are_always_clean(path in ".{0,100}") {
        let p = format!("{LABEL_PREFIX}{path}");
        for candidate in [path.as_str(), p.as_str()] {
            if let Route::Label(t) = route(candidate) {
                prop_assert!(Tracking::is_valid(&t));
                prop_assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            }
        }
    }

    #[test]
    fn hostile_spellings_never_route_to_a_label(t in hostile_tracking(), slash in any::<bool>()) {
        prop_assume!(really_hostile(&t, slash));
        let path = format!("{LABEL_PREFIX}{t}{}", if slash { "/" } else { "" });
        prop_assert_eq!(route(&path), Route::BadTracking, "{:?}", path);
    }

    #[test]
    fn clean_tracking_numbers_always_route(t in "[A-Za-z0-9_-]{1,64}", slash in any::<bool>()) {
        let path = format!("{LABEL_PREFIX}{t}{}", if slash { "/" } else { "" });
        prop_assert_eq!(route(&path), Route::Label(Tracking::parse(&t).unwrap()));
    }

    #[test]
    fn any_range_header_parses_to_a_sane_range(raw in prop::collection::vec(any::<u8>(), 0..40),
                                               text in "(bytes|items|BYTES)?=?[ 0-9,-]{0,24}",
                                               size in 0u64..100_000) {
        for bytes in [raw.as_slice(), text.as_bytes()] {
            let Ok(v) = HeaderValue::from_bytes(bytes) else { continue };
            if let RangeRequest::Single(spec) = parse_range(Some(&v)) {
                if let RangeSpec::FromTo(a, Some(b)) = spec {
                    prop_assert!(a <= b);
                }
                // What goes to storage parses back to the same range.
                prop_assert_eq!(parse_range(Some(&spec.header_value())), RangeRequest::Single(spec));
                if let Some(r) = spec.resolve(size) {
                    prop_assert!(r.start <= r.end && r.end < size);
                }
            }
        }
    }

    #[test]
    fn any_conditional_headers_evaluate_without_panicking(
        values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 5),
        etag in prop::option::of("(W/)?\"[a-z0-9]{0,8}\""),
        mtime in 0u64..4_000_000_000,
    ) {
        let mut h = HeaderMap::new();
        let names = [header::IF_MATCH, header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE,
                     header::IF_UNMODIFIED_SINCE, header::IF_RANGE];
        for (name, v) in names.into_iter().zip(&values) {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                h.insert(name, v);
            }
        }
        let c = Conditions::from_headers(&h);
        let v = Validators {
            etag: etag.as_deref(),
            last_modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime)),
        };
        let outcome = c.evaluate(&v);
        let _ = c.range_applies(&v);
        if c.is_empty() {
            prop_assert_eq!(outcome, Precondition::Proceed);
        }
        prop_assert!(c.forward().count() <= 4);
    }

    #[test]
    fn any_cookie_header_yields_a_printable_session_or_none(
        headers in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..4),
        text in "(sessionid|SESSIONID|session)?[=; \"a-z0-9]{0,40}",
    ) {
        let mut h = HeaderMap::new();
        for bytes in headers.iter().map(Vec::as_slice).chain([text.as_bytes()]) {
            if let Ok(v) = HeaderValue::from_bytes(bytes) {
                h.append(header::COOKIE, v);
            }
        }
        if let Some(v) = session_cookie(&h, "sessionid") {
            prop_assert!(!v.is_empty());
            prop_assert!(v.bytes().all(|b| (0x21..0x7f).contains(&b)), "{:?}", v);
            let forwarded = format!("sessionid={v}");
            prop_assert!(HeaderValue::try_from(forwarded).is_ok());
        }
    }
}

// --- the live gateway

const LABEL: &str = "GOOD1";

struct Live {
    s3: S3Server,
    check: Responder,
    gw: Running,
    data: Vec<u8>,
}

async fn live() -> Live {
    let s3 = S3Server::start().await;
    let data = pdf_bytes(3000, 81);
    s3.put_label(LABEL, &data).await;
    let check = Responder::allow_all().await;
    // No regeneration: a missing label is a plain 404 here.
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[("LABEL_GATEWAY_REGENERATE__URL", "")],
    ))
    .await;
    Live {
        s3,
        check,
        gw,
        data,
    }
}

/// How long a raw request waits for the gateway to answer and close.
const RAW_LIMIT: Duration = Duration::from_secs(10);

/// `GET {target}` with `headers` (raw bytes, `\r\n`-terminated each).
fn request(target: &[u8], headers: &[u8]) -> Vec<u8> {
    let mut r = b"GET ".to_vec();
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    r.extend_from_slice(headers);
    r.extend_from_slice(b"\r\n");
    r
}

fn has_pdf(body: &[u8]) -> bool {
    body.windows(5).any(|w| w == b"%PDF-")
}

#[tokio::test(flavor = "multi_thread")]
async fn traversal_attempts_are_rejected_before_auth_and_storage() {
    let l = live().await;
    let long = format!("/shipping-label/{}/", "A".repeat(65));
    let targets: Vec<&[u8]> = vec![
        b"/shipping-label/../labels/GOOD1/",
        b"/shipping-label/../labels/x/",
        b"/shipping-label/..%2flabels%2fGOOD1/",
        b"/shipping-label/..%2flabels%2fx/",
        b"/shipping-label/%2e%2e%2fGOOD1/",
        b"/shipping-label/%2e%2e%2fsecret/",
        b"/shipping-label/%2E%2E/GOOD1/",
        b"/shipping-label/%252e%252e%252fGOOD1/",
        b"/shipping-label/%252e/",
        b"/shipping-label/GOOD1%00/",
        b"/shipping-label/GOOD1%00.pdf/",
        b"/shipping-label/a%00/",
        b"/shipping-label/..\\GOOD1/",
        b"/shipping-label/GOOD1\\/",
        b"/shipping-label/a\\b/",
        b"/shipping-label/%5c..%5cGOOD1/",
        b"/shipping-label/%c0%ae%c0%ae%c0%afGOOD1/",
        b"/shipping-label/%C0%AE%C0%AE/",
        b"/shipping-label/%e0%80%ae%e0%80%ae/",
        b"/shipping-label/%EF%BC%8E%EF%BC%8E%EF%BC%8FGOOD1/",
        b"/shipping-label/%EF%BC%8E/",
        b"/shipping-label/GOOD1.pdf/",
        b"/shipping-label/a.pdf/",
        b"/shipping-label/GOOD1/../GOOD1/",
        b"/shipping-label/./GOOD1/",
        b"/shipping-label/GOOD1;.pdf/",
        b"/shipping-label/%u002e%u002e/",
        b"/shipping-label/GOOD%31/",
        b"/shipping-label//",
        b"/shipping-label/",
        b"/shipping-label",
        long.as_bytes(),
        // Raw bytes no URI may carry: hyper answers 400 itself.
        b"/shipping-label/caf\xc3\xa9/",
        b"/shipping-label/GOOD1\xff/",
        b"/shipping-label/\xef\xbc\x8e\xef\xbc\x8e/",
    ];
    for t in &targets {
        let (status, resp) = support::raw_request(
            l.gw.addr(),
            &request(t, format!("Cookie: {ANY_SESSION}\r\n").as_bytes()),
            RAW_LIMIT,
        )
        .await;
        let shown = String::from_utf8_lossy(t);
        assert_eq!(status, 400, "{shown}: {}", String::from_utf8_lossy(&resp));
        assert!(!has_pdf(&resp), "{shown}");
    }
    // Elsewhere than the label route: plain 404s, still nothing fetched.
    for t in [
        &b"//shipping-label/GOOD1/"[..],
        b"/shipping-label%2fGOOD1/",
        b"/SHIPPING-LABEL/GOOD1/",
        b"/%73hipping-label/GOOD1/",
        b"/labels/GOOD1.pdf",
        b"/internal/../shipping-label/GOOD1/",
    ] {
        let (status, resp) = support::raw_request(
            l.gw.addr(),
            &request(t, format!("Cookie: {ANY_SESSION}\r\n").as_bytes()),
            RAW_LIMIT,
        )
        .await;
        assert!(
            matches!(status, 400 | 401 | 404),
            "{}: {status}",
            String::from_utf8_lossy(t)
        );
        assert!(!has_pdf(&resp));
    }
    assert_eq!(
        l.check.hits(),
        0,
        "no session check for an invalid tracking number"
    );
    assert_eq!(
        l.s3.gets(),
        0,
        "no storage request for an invalid tracking number"
    );
}

/// proptest drives the live gateway: generated hostile paths, each sent raw.
#[test]
fn generated_hostile_paths_are_never_fetched_and_never_5xx() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let l = rt.block_on(live());
    let addr = l.gw.addr();
    let config = ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(t in hostile_tracking(), slash in any::<bool>())| {
        // `?` and `#` end the path: what precedes them may be a fine tracking number.
        prop_assume!(!t.contains(['?', '#']) && really_hostile(&t, slash));
        let target = format!("{LABEL_PREFIX}{t}{}", if slash { "/" } else { "" });
        let (status, resp) = rt.block_on(support::raw_request(addr, &request(target.as_bytes(), format!("Cookie: {ANY_SESSION}\r\n").as_bytes()), RAW_LIMIT));
        prop_assert!((400..500).contains(&status), "{:?}: {}", target, status);
        prop_assert!(!has_pdf(&resp));
    });
    assert_eq!(l.check.hits(), 0);
    assert_eq!(l.s3.gets(), 0);
}

/// The statuses a label request may answer when the client's headers are odd.
fn label_status_ok(status: u16) -> bool {
    matches!(status, 200 | 206 | 304 | 412 | 416 | 400 | 431)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_range_and_conditional_headers_are_never_5xx() {
    let l = live().await;
    let headers: &[&[u8]] = &[
        b"Range: bytes=",
        b"Range: bytes=-",
        b"Range: bytes=--1",
        b"Range: bytes=5-1",
        b"Range: bytes=0-0,0-0,0-0,0-0,0-0,0-0",
        b"Range: bytes=99999999999999999999999-",
        b"Range: bytes=-99999999999999999999999",
        b"Range: bytes=18446744073709551615-",
        b"Range: bytes=0-18446744073709551615",
        b"Range: bytes=-0",
        b"Range: bytes=3000-",
        b"Range: bytes=2999-",
        b"Range: bytes=\xff-\xfe",
        b"Range: items=0-1",
        b"Range: bytes = 1 - 2",
        b"Range: bytes=0x10-0x20",
        b"Range: bytes=1-2\r\nRange: bytes=3-4",
        b"If-None-Match: ",
        b"If-None-Match: *, \"a\"",
        b"If-None-Match: \"unterminated",
        b"If-None-Match: W/",
        b"If-None-Match: \xc0\xae",
        b"If-Match: ,,,,",
        b"If-Match: *",
        b"If-Match: W/\"x\"",
        b"If-Modified-Since: yesterday",
        b"If-Modified-Since: Sun, 31 Dec 9999 23:59:59 GMT",
        b"If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT",
        b"If-Unmodified-Since: \xff\xff",
        b"If-Unmodified-Since: Mon, 32 Foo 2024 99:99:99 GMT",
        b"If-Range: \"nope\"\r\nRange: bytes=0-9",
        b"If-Range: \xff\r\nRange: bytes=0-9",
        b"If-Range: Sun, 06 Nov 1994 08:49:37 GMT\r\nRange: bytes=0-9",
    ];
    let target = format!("/shipping-label/{LABEL}/");
    for h in headers {
        let mut hs = h.to_vec();
        hs.extend_from_slice(format!("\r\nCookie: {ANY_SESSION}\r\n").as_bytes());
        let (status, resp) =
            support::raw_request(l.gw.addr(), &request(target.as_bytes(), &hs), RAW_LIMIT).await;
        assert!(
            label_status_ok(status),
            "{}: {status} {}",
            String::from_utf8_lossy(h),
            String::from_utf8_lossy(&resp)
        );
        if status == 200 {
            assert!(
                resp.ends_with(&l.data),
                "{}: whole label",
                String::from_utf8_lossy(h)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_and_malformed_cookies_are_never_5xx() {
    let l = live().await;
    let target = format!("/shipping-label/{LABEL}/");
    let big_session = format!("Cookie: sessionid={}\r\n", "a".repeat(9 * 1024));
    let many_pairs = format!(
        "Cookie: {}sessionid=ok\r\n",
        (0..500).map(|i| format!("c{i}=v; ")).collect::<String>()
    );
    let many_headers: String = (0..120).map(|i| format!("Cookie: c{i}=v\r\n")).collect();
    let over_head = format!("Cookie: sessionid={}\r\n", "b".repeat(40 * 1024));
    let cases: Vec<(&[u8], &[u16])> = vec![
        (big_session.as_bytes(), &[431]),
        (over_head.as_bytes(), &[431]),
        (many_headers.as_bytes(), &[431]),
        (many_pairs.as_bytes(), &[200]),
        (b"Cookie: sessionid\r\n", &[404]),
        (b"Cookie: sessionid=\r\n", &[404]),
        (b"Cookie: sessionid=\"\"\r\n", &[404]),
        (b"Cookie: =;=;;;=\r\n", &[404]),
        (b"Cookie: sessionid=\"unterminated\r\n", &[200, 404]),
        (b"Cookie: sessionid=caf\xc3\xa9\r\n", &[404]),
        (b"Cookie: sessionid=\xff\xfe\r\n", &[404]),
        (b"Cookie: sessionid=a b\r\n", &[404]),
        (b"Cookie: sessionid=a\x01b\r\n", &[400]),
        (b"Cookie: sessionid=a\x00b\r\n", &[400]),
        // Two lines join as Django joins them, with ",": the session is glued to
        // `other`'s value, so Django would read no session, and neither does the gateway.
        (
            b"Cookie: other=1\r\nCookie: sessionid=second-header\r\n",
            &[404],
        ),
        (b"Cookie: sessionid=a;sessionid=b\r\n", &[200]),
    ];
    for (h, expected) in cases {
        let (status, resp) =
            support::raw_request(l.gw.addr(), &request(target.as_bytes(), h), RAW_LIMIT).await;
        let shown = String::from_utf8_lossy(&h[..h.len().min(60)]).to_string();
        assert!(
            expected.contains(&status),
            "{shown}: {status}, expected {expected:?}"
        );
        if status != 200 {
            assert!(!has_pdf(&resp), "{shown}: {status} carried the label");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn non_utf8_and_broken_headers_get_a_status_never_5xx() {
    let l = live().await;
    let target = format!("/shipping-label/{LABEL}/");
    let cookie = format!("Cookie: {ANY_SESSION}\r\n");
    let cases: Vec<Vec<u8>> = [
        &b"X-Request-Id: \xff\xfe\r\n"[..],
        b"X-Request-Id: ../../etc\r\n",
        b"X-Forwarded-For: \xff, \xfe\r\n",
        b"X-Forwarded-Host: \xc0\xae\r\n",
        b"X-Forwarded-Proto: \xff\r\n",
        b"User-Agent: \xf0\x28\x8c\x28\r\n",
        b"Accept: \x80\x81\x82\r\n",
        b"X-\xff: 1\r\n",
        b"X Bad: 1\r\n",
        b": empty-name\r\n",
        b"X-Folded: a\r\n b\r\n",
        b"X-Nul: a\x00b\r\n",
        b"Content-Length: -1\r\n",
        b"Content-Length: 1\r\nContent-Length: 2\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Expect: 100-continue\r\n",
        b"Host: \xff\r\n",
    ]
    .iter()
    .map(|h| {
        let mut v = h.to_vec();
        v.extend_from_slice(cookie.as_bytes());
        v
    })
    .collect();
    for h in &cases {
        let (status, resp) =
            support::raw_request(l.gw.addr(), &request(target.as_bytes(), h), RAW_LIMIT).await;
        assert!(
            (200..500).contains(&status),
            "{}: {status} {}",
            String::from_utf8_lossy(h),
            String::from_utf8_lossy(&resp)
        );
    }
    // Broken request lines.
    for line in [
        &b"GET\r\n\r\n"[..],
        b"GET /shipping-label/GOOD1/\r\n\r\n",
        b"GET /shipping-label/GOOD1/ HTTP/9.9\r\n\r\n",
        b"\xff\xfe\xfd /shipping-label/GOOD1/ HTTP/1.1\r\n\r\n",
        b"GET http://evil.example/shipping-label/../x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"CONNECT localhost:80 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ] {
        let (status, _) = support::raw_request(l.gw.addr(), line, RAW_LIMIT).await;
        assert!(
            status == 0 || (400..500).contains(&status),
            "{}: {status}",
            String::from_utf8_lossy(line)
        );
    }
    // Still serving.
    let (status, _) = support::raw_get(l.gw.addr(), &target).await;
    assert_eq!(status, 200);
}
