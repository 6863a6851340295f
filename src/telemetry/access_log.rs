//! The access log's line, written directly into the log batch in exactly the shape the
//! `tracing` formatter gives an event with target `access` (a unit test holds the two
//! side by side), without the formatter's per-field dynamic dispatch.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use super::INSTALLED;
use crate::config::LogFormat;

/// One access-log line's fields. Strings are written as `tracing` records a `&str`
/// (quoted, escaped); `method` as a `Display` value.
pub struct Access<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub duration_us: u64,
    pub auth: &'a str,
    pub user: &'a str,
    pub cache: &'a str,
    /// A batch's distinct labels; absent otherwise.
    pub labels: Option<usize>,
    pub request_id: &'a str,
}

/// Writes one access-log line, when the filter lets INFO events of target `access`
/// through. Without an installed logger (library use, tests) it goes through `tracing`.
pub fn access(a: &Access<'_>) {
    access_at(a, SystemTime::now());
}

/// [`access`] with the line's time already read (the quick path reads it once for the
/// line and the answer's `Date`).
pub fn access_at(a: &Access<'_>, now: SystemTime) {
    if !tracing::enabled!(target: "access", tracing::Level::INFO) {
        return;
    }
    match INSTALLED.get() {
        Some(logger) => {
            thread_local! {
                /// The line being written, formatted before the batch is locked so the
                /// other threads wait only for its copy.
                static LINE: std::cell::RefCell<Vec<u8>> =
                    std::cell::RefCell::new(Vec::with_capacity(512));
            }
            LINE.with_borrow_mut(|line| {
                line.clear();
                write_access(line, logger.format, now, a);
                logger.batch.append(|buf| buf.extend_from_slice(line));
            });
        }
        None => tracing::info!(
            target: "access",
            method = %a.method,
            path = a.path,
            status = a.status,
            bytes = a.bytes,
            duration_us = a.duration_us,
            auth = a.auth,
            user = a.user,
            cache = a.cache,
            labels = a.labels,
            request_id = a.request_id,
        ),
    }
}

/// An access-log field's value, as `tracing` records it.
enum Field<'a> {
    /// A `Display` value (`%`): bare in text, a string in JSON.
    Shown(&'a str),
    /// A `&str`: quoted and escaped in text, a string in JSON.
    Str(&'a str),
    Num(u64),
}

/// The line of `a` at `now` in `format`, as tracing-subscriber would write it.
fn write_access(buf: &mut Vec<u8>, format: LogFormat, now: SystemTime, a: &Access<'_>) {
    // One copy of the code per format: what each field writes is decided when compiling.
    if format == LogFormat::Json {
        write_access_as::<true>(buf, now, a);
    } else {
        write_access_as::<false>(buf, now, a);
    }
}

fn write_access_as<const JSON: bool>(buf: &mut Vec<u8>, now: SystemTime, a: &Access<'_>) {
    // Each field's name with what goes around it, text then JSON: one copy per field
    // instead of three (this runs for every request).
    let fields = [
        ((" method=", ",\"method\":"), Some(Field::Shown(a.method))),
        ((" path=", ",\"path\":"), Some(Field::Str(a.path))),
        (
            (" status=", ",\"status\":"),
            Some(Field::Num(u64::from(a.status))),
        ),
        ((" bytes=", ",\"bytes\":"), Some(Field::Num(a.bytes))),
        (
            (" duration_us=", ",\"duration_us\":"),
            Some(Field::Num(a.duration_us)),
        ),
        ((" auth=", ",\"auth\":"), Some(Field::Str(a.auth))),
        ((" user=", ",\"user\":"), Some(Field::Str(a.user))),
        ((" cache=", ",\"cache\":"), Some(Field::Str(a.cache))),
        (
            (" labels=", ",\"labels\":"),
            a.labels.map(|n| Field::Num(n as u64)),
        ),
        (
            (" request_id=", ",\"request_id\":"),
            Some(Field::Str(a.request_id)),
        ),
    ];
    let mut num = itoa::Buffer::new();
    let json = JSON;
    if json {
        buf.extend_from_slice(b"{\"timestamp\":\"");
        write_timestamp(buf, now);
        buf.extend_from_slice(b"\",\"level\":\"INFO\"");
    } else {
        write_timestamp(buf, now);
        buf.extend_from_slice(b"  INFO access:");
    }
    for ((text_name, json_name), value) in fields {
        let Some(value) = value else { continue };
        buf.extend_from_slice(if json { json_name } else { text_name }.as_bytes());
        match value {
            Field::Num(n) => buf.extend_from_slice(num.format(n).as_bytes()),
            Field::Shown(s) | Field::Str(s) if json => {
                let _ = serde_json::to_writer(&mut *buf, s);
            }
            Field::Shown(s) => buf.extend_from_slice(s.as_bytes()),
            Field::Str(s) => push_debug_str(buf, s),
        }
    }
    buf.extend_from_slice(if json {
        b",\"target\":\"access\"}\n"
    } else {
        b"\n"
    });
}

/// `s` as `{:?}` writes it: quoted, with quotes, backslashes and anything not printable
/// ASCII escaped. Plain printable ASCII (every gateway path and request id) is copied.
fn push_debug_str(buf: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' && b != b'\'')
    {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        let _ = write!(buf, "{s:?}");
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, tracing-subscriber's UTC timestamp.
fn write_timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    thread_local! {
        /// The last second written and its `YYYY-MM-DDTHH:MM:SS` (the same for every line
        /// of that second).
        static SECOND: std::cell::Cell<(u64, [u8; 19])> =
            const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let secs = since.as_secs();
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let (cached, date_time) = SECOND.get();
    if cached == secs {
        out[..19].copy_from_slice(&date_time);
    } else {
        // humantime's `YYYY-MM-DDTHH:MM:SSZ`, once per second. Through `fmt::Write`, which
        // returns its refusal of years past 9999 (zeros then); `io::Write` would panic.
        let second = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let mut text = String::with_capacity(20);
        let formatted = std::fmt::Write::write_fmt(
            &mut text,
            format_args!("{}", humantime::format_rfc3339_seconds(second)),
        );
        if let (Ok(()), Some(date_time)) = (formatted, text.as_bytes().get(..19)) {
            out[..19].copy_from_slice(date_time);
        }
        let mut date_time = [0; 19];
        date_time.copy_from_slice(&out[..19]);
        SECOND.set((secs, date_time));
    }
    let mut micros = since.subsec_micros();
    for d in out[20..26].iter_mut().rev() {
        *d = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    buf.extend_from_slice(&out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::subscriber;
    use tracing_subscriber::EnvFilter;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// One access-log-shaped event written in `format`.
    fn one_line(format: LogFormat) -> String {
        let out = Capture::default();
        let writer = out.clone();
        let sub = subscriber(format, EnvFilter::new("info"), move || writer.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::info!(
                target: "access",
                method = "GET",
                path = "/shipping-label/DEMO123/",
                status = 200u16,
                user = "j%C3%B6rg",
            );
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.trim_end().to_string()
    }

    #[test]
    fn json_lines_carry_the_text_lines_fields_at_the_top_level() {
        let text = one_line(LogFormat::Text);
        let json = one_line(LogFormat::Json);
        assert_eq!(json.lines().count(), 1, "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).expect("a JSON object");
        assert_eq!(v["target"], "access");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["status"], 200, "numbers stay numbers");
        assert_eq!(v["user"], "j%C3%B6rg");
        for field in ["method", "path", "status", "user"] {
            assert!(text.contains(&format!("{field}=")), "{text}");
            assert!(v.get(field).is_some(), "{field} missing in {json}");
        }
        assert!(v.get("timestamp").is_some(), "{json}");
    }

    /// The access line through `tracing`'s formatter, and written directly.
    fn both_access_lines(format: LogFormat, a: &Access<'_>) -> (String, String) {
        let out = Capture::default();
        let writer = out.clone();
        let sub = subscriber(format, EnvFilter::new("info"), move || writer.clone());
        tracing::subscriber::with_default(sub, || access(a));
        let via_tracing = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let mut direct = Vec::new();
        write_access(&mut direct, format, SystemTime::now(), a);
        (via_tracing, String::from_utf8(direct).unwrap())
    }

    #[test]
    fn direct_access_lines_are_the_tracing_formatters_lines() {
        let lines = [
            Access {
                method: "GET",
                path: "/shipping-label/DEMO123/",
                status: 200,
                bytes: 51_200,
                duration_us: 96,
                auth: "cache",
                user: "demo",
                cache: "hit",
                labels: None,
                request_id: "7537ea5731486468",
            },
            Access {
                method: "POST",
                path: "/shipping-label/batch.pdf",
                status: 502,
                bytes: 0,
                duration_us: 1_234_567,
                auth: "app",
                user: "w\"ave\\printer j\u{f6}rg\u{1}",
                cache: "-",
                labels: Some(2),
                request_id: "-",
            },
        ];
        for a in &lines {
            let (t, d) = both_access_lines(LogFormat::Text, a);
            // The timestamps differ by the time between the two; the shape and the rest
            // must not. `YYYY-MM-DDTHH:MM:SS.ffffffZ` is 27 bytes.
            assert_eq!(t.len(), d.len(), "{t}{d}");
            assert_eq!(t[27..], d[27..], "text");
            assert_eq!(t.as_bytes()[26], b'Z');
            assert_eq!(d.as_bytes()[26], b'Z');
            assert!(d.ends_with('\n') && d.lines().count() == 1);

            let (t, d) = both_access_lines(LogFormat::Json, a);
            let mut tv: serde_json::Value = serde_json::from_str(&t).expect(&t);
            let mut dv: serde_json::Value = serde_json::from_str(&d).expect(&d);
            let ts = |v: &mut serde_json::Value| v.as_object_mut().unwrap().remove("timestamp");
            let (tt, dt) = (ts(&mut tv).unwrap(), ts(&mut dv).unwrap());
            assert_eq!(tv, dv, "json");
            assert_eq!(tt.as_str().unwrap().len(), dt.as_str().unwrap().len());
            // Same keys in the same order, as a log reader scanning text would see them.
            let keys = |s: &str| {
                let v: serde_json::Value = serde_json::from_str(s).unwrap();
                v.as_object().unwrap().keys().cloned().collect::<Vec<_>>()
            };
            assert_eq!(keys(&t), keys(&d));
        }
    }

    #[test]
    fn strings_are_quoted_exactly_as_debug_quotes_them() {
        for s in [
            "",
            "demo",
            "/shipping-label/X1/",
            "a\"b",
            "back\\slash",
            "it's",
            "j\u{f6}rg",
            "\u{7f}",
            "tab\t",
            "\u{1b}[31m",
        ] {
            let mut buf = Vec::new();
            push_debug_str(&mut buf, s);
            assert_eq!(String::from_utf8(buf).unwrap(), format!("{s:?}"), "{s:?}");
        }
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let mut buf = Vec::new();
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_369_353_600_000_042);
        write_timestamp(&mut buf, t);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "2013-05-24T00:00:00.000042Z"
        );
        let mut buf = Vec::new();
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        write_timestamp(&mut buf, far);
        assert_eq!(buf.len(), 27, "past 9999: the shape stays, no panic");
    }

    #[test]
    fn timestamps_of_one_second_share_its_date_and_time_and_the_next_second_does_not() {
        let at = |micros: u64| {
            let mut buf = Vec::new();
            write_timestamp(
                &mut buf,
                SystemTime::UNIX_EPOCH + Duration::from_micros(micros),
            );
            String::from_utf8(buf).unwrap()
        };
        // 2013-05-24T23:59:59 and the next second, a new day: the second's text is kept
        // per thread, and must not outlive its second.
        let last = 1_369_439_999_000_000;
        assert_eq!(at(last + 1), "2013-05-24T23:59:59.000001Z");
        assert_eq!(at(last + 999_999), "2013-05-24T23:59:59.999999Z");
        assert_eq!(at(last + 1_000_000), "2013-05-25T00:00:00.000000Z");
        assert_eq!(at(last + 7), "2013-05-24T23:59:59.000007Z");
    }
}
