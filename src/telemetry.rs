//! Logging: `tracing` events and the access log, both into one in-memory buffer that a
//! writer thread empties to stderr in batches, so a slow terminal or log shipper never
//! stalls a request and a busy gateway does not wake a thread or make a `write` per line
//! (nginx's `access_log ... buffer= flush=`). `RUST_LOG` overrides `[log] level`.
//!
//! Lines reach stderr at most [`FLUSH_EVERY`] after they were logged, in order. Past
//! [`MAX_BUFFERED`] bytes waiting (stderr blocked), lines are dropped and counted, and the
//! count is written once stderr takes lines again. The guard [`init`] returns writes what
//! is left when dropped (waiting at most a second for a stderr that does not move).
//!
//! The access log's line is written here directly ([`access`]), in exactly the shape the
//! `tracing` formatter gives an event with target `access` (a unit test holds the two
//! side by side), without the formatter's per-field dynamic dispatch.
//!
//! `[log] format = "json"` writes each event as one JSON object per line with the same
//! fields as the text format, at the top level (tracing-subscriber's JSON formatter,
//! flattened): `{"timestamp":..,"level":"INFO","method":"GET",..,"target":"access"}`.
//!
//! Whatever the level, the SigV4 signer's own trace output (canonical requests, the
//! access key id) stays off unless the filter names `aws_sigv4` explicitly: a blanket
//! `RUST_LOG=trace` must not put signing material in the logs.

use std::io::Write as _;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The longest a line waits in memory before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Bytes of lines held while stderr does not take them; more are dropped and counted.
pub const MAX_BUFFERED: usize = 16 * 1024 * 1024;

/// The batch of lines waiting for the writer thread.
struct Pending {
    buf: Vec<u8>,
    dropped: u64,
    closing: bool,
}

/// What the loggers share with the writer thread.
struct Batch {
    pending: Mutex<Pending>,
    /// Signalled when the first line of a batch arrives, and on close.
    wake: Condvar,
}

impl Batch {
    fn new() -> Arc<Batch> {
        Arc::new(Batch {
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(64 * 1024),
                dropped: 0,
                closing: false,
            }),
            wake: Condvar::new(),
        })
    }

    /// Runs `write` on the pending buffer (one whole line), waking the writer thread when
    /// the line starts a batch. Drops the line past [`MAX_BUFFERED`].
    fn append(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.buf.len() >= MAX_BUFFERED {
            p.dropped += 1;
            return;
        }
        let was_empty = p.buf.is_empty();
        write(&mut p.buf);
        drop(p);
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// The writer thread: waits for a batch to start, lets it gather for [`FLUSH_EVERY`]
    /// (or until close), then writes it out with one `write`; returns once closed with
    /// nothing left to write.
    fn run(&self, out: &mut dyn std::io::Write) {
        let mut spare = Vec::with_capacity(64 * 1024);
        loop {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            while p.buf.is_empty() && p.dropped == 0 {
                if p.closing {
                    return;
                }
                p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            if !p.closing {
                p = self
                    .wake
                    .wait_timeout_while(p, FLUSH_EVERY, |p| !p.closing)
                    .map(|(p, _)| p)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            std::mem::swap(&mut p.buf, &mut spare);
            let dropped = std::mem::take(&mut p.dropped);
            drop(p);
            let _ = out.write_all(&spare);
            if dropped > 0 {
                let _ = writeln!(out, "{dropped} log lines dropped: stderr did not keep up");
            }
            let _ = out.flush();
            recycle(&mut spare);
        }
    }
}

/// Empties a written batch's buffer for the next batch. It keeps the room its batches
/// need: one that grew by reallocation on every batch (a busy gateway writes a megabyte or
/// more per batch) copied the lines again and touched fresh pages each time, page faults
/// included. Only a buffer far larger than the batch it held gives memory back.
fn recycle(buf: &mut Vec<u8>) {
    let used = buf.len();
    buf.clear();
    if buf.capacity() > 1024 * 1024 && used < buf.capacity() / 4 {
        buf.shrink_to(used.max(64 * 1024));
    }
}

/// `tracing`'s writer into the batch: each event is formatted whole, then appended.
#[derive(Clone)]
struct BatchWriter(Arc<Batch>);

impl std::io::Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.append(|buf| buf.extend_from_slice(line));
        Ok(line.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;
    fn make_writer(&'a self) -> BatchWriter {
        self.clone()
    }
}

/// The installed logger, for [`access`].
struct Installed {
    batch: Arc<Batch>,
    format: LogFormat,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Keeps the writer thread; dropping it writes what is left and stops the thread.
pub struct LogGuard {
    batch: Arc<Batch>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.batch
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closing = true;
        self.batch.wake.notify_all();
        // At most a second, as tracing-appender's guard: a stderr nobody reads any more
        // must not keep the process from exiting.
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Installs the global subscriber; keep the guard alive until exit so the buffer flushes.
pub fn init(cfg: &LogConfig) -> LogGuard {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(cfg, rust_log.as_deref());
    let batch = Batch::new();
    let worker = batch.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        // Not `stderr().lock()`: held for the thread's life, it would block every other
        // writer to stderr (a start-up error's `eprintln!`) for good.
        .spawn(move || worker.run(&mut std::io::stderr()))
        .ok();
    if subscriber(cfg.format, filter, BatchWriter(batch.clone()))
        .try_init()
        .is_ok()
    {
        let _ = INSTALLED.set(Installed {
            batch: batch.clone(),
            format: cfg.format,
        });
    }
    LogGuard { batch, thread }
}

/// The subscriber for `format`, writing to `writer`.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    match format {
        LogFormat::Text => Box::new(fmt.with_ansi(false).finish()),
        LogFormat::Json => Box::new(
            fmt.json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
    }
}

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
    use crate::timefmt::put_digits;
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
        let t = crate::timefmt::Utc::of_unix(secs);
        put_digits(&mut out[0..4], t.year.clamp(0, 9999) as u64);
        put_digits(&mut out[5..7], t.month.into());
        put_digits(&mut out[8..10], t.day.into());
        put_digits(&mut out[11..13], t.hour.into());
        put_digits(&mut out[14..16], t.minute.into());
        put_digits(&mut out[17..19], t.second.into());
        let mut date_time = [0; 19];
        date_time.copy_from_slice(&out[..19]);
        SECOND.set((secs, date_time));
    }
    put_digits(&mut out[20..26], since.subsec_micros().into());
    buf.extend_from_slice(&out);
}

/// The filter in force: `rust_log` when set and valid, else `[log] level`.
pub fn filter(cfg: &LogConfig, rust_log: Option<&str>) -> EnvFilter {
    rust_log
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| EnvFilter::try_new(quiet_signer(s)).ok())
        .unwrap_or_else(|| {
            EnvFilter::try_new(quiet_signer(&cfg.level)).unwrap_or_else(|_| EnvFilter::new("info"))
        })
}

/// Appends `aws_sigv4=warn` unless the spec already says something about that target.
fn quiet_signer(spec: &str) -> String {
    if spec.contains("aws_sigv4") {
        spec.to_string()
    } else if spec.trim().is_empty() {
        "aws_sigv4=warn".to_string()
    } else {
        format!("{spec},aws_sigv4=warn")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_traces_stay_off_unless_named() {
        assert_eq!(quiet_signer("trace"), "trace,aws_sigv4=warn");
        assert_eq!(
            quiet_signer("debug,hyper=info"),
            "debug,hyper=info,aws_sigv4=warn"
        );
        assert_eq!(quiet_signer("info,aws_sigv4=trace"), "info,aws_sigv4=trace");
    }

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

    #[test]
    fn a_batch_buffer_keeps_the_room_its_batches_need() {
        let mut buf = Vec::with_capacity(2 * 1024 * 1024);
        buf.resize(1500 * 1024, b'x');
        recycle(&mut buf);
        assert!(buf.is_empty());
        assert!(
            buf.capacity() >= 2 * 1024 * 1024,
            "a busy batch's room is kept"
        );
        // A burst's room is given back once batches are small again.
        buf.resize(10 * 1024, b'x');
        recycle(&mut buf);
        assert!(buf.is_empty());
        assert!(buf.capacity() < 1024 * 1024, "{}", buf.capacity());
    }

    /// A writer that records each `write` call.
    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Vec<u8>>>>);

    impl std::io::Write for Calls {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_in_few_writes_and_all_on_close() {
        let batch = Batch::new();
        let calls = Calls::default();
        let mut out = calls.clone();
        let worker = batch.clone();
        let thread = std::thread::spawn(move || worker.run(&mut out));
        for i in 0..1000 {
            batch.append(|b| b.extend_from_slice(format!("line {i}\n").as_bytes()));
        }
        let guard = LogGuard {
            batch: batch.clone(),
            thread: Some(thread),
        };
        drop(guard);
        let writes = calls.0.lock().unwrap().clone();
        let text = String::from_utf8(writes.concat()).unwrap();
        let want: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, want);
        assert!(writes.len() <= 3, "{} writes for 1000 lines", writes.len());
    }

    #[test]
    fn a_line_is_written_without_a_close() {
        let batch = Batch::new();
        let calls = Calls::default();
        let mut out = calls.clone();
        let worker = batch.clone();
        let _thread = std::thread::spawn(move || worker.run(&mut out));
        batch.append(|b| b.extend_from_slice(b"one\n"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while calls.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(calls.0.lock().unwrap().concat(), b"one\n");
    }

    /// A writer whose `write` blocks until released.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Calls);

    impl std::io::Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.0;
            let mut go = lock.lock().unwrap();
            while !*go {
                go = cv.wait(go).unwrap();
            }
            self.1.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_stderr_drops_lines_past_the_bound_and_says_how_many() {
        let batch = Batch::new();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let calls = Calls::default();
        let mut out = Stuck(gate.clone(), calls.clone());
        let worker = batch.clone();
        let thread = std::thread::spawn(move || worker.run(&mut out));
        // The first batch goes to the stuck writer; then the buffer fills to the bound.
        batch.append(|b| b.extend_from_slice(b"first\n"));
        while !batch.pending.lock().unwrap().buf.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let line = vec![b'x'; 1023];
        let lines = MAX_BUFFERED / 1024 + 10;
        for _ in 0..lines {
            batch.append(|b| {
                b.extend_from_slice(&line);
                b.push(b'\n');
            });
        }
        assert_eq!(batch.pending.lock().unwrap().dropped, 10);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(LogGuard {
            batch,
            thread: Some(thread),
        });
        let text = calls.0.lock().unwrap().concat();
        assert!(text.starts_with(b"first\n"));
        let tail = String::from_utf8_lossy(&text[text.len() - 100..]).into_owned();
        assert!(tail.contains("10 log lines dropped"), "{tail}");
        assert_eq!(
            text.iter().filter(|&&c| c == b'\n').count(),
            1 + (lines - 10) + 1
        );
    }

    #[test]
    fn closing_does_not_wait_long_for_a_stderr_that_does_not_move() {
        let batch = Batch::new();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let mut out = Stuck(gate.clone(), Calls::default());
        let worker = batch.clone();
        let thread = std::thread::spawn(move || worker.run(&mut out));
        batch.append(|b| b.extend_from_slice(b"never written\n"));
        // Closed on a thread of its own, so a close that waits on stderr fails the test
        // instead of hanging it.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(LogGuard {
                batch,
                thread: Some(thread),
            });
            let _ = done_tx.send(());
        });
        let closed = done_rx.recv_timeout(Duration::from_secs(10));
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        assert!(
            closed.is_ok(),
            "closing waited on a stderr that does not move"
        );
    }

    #[test]
    fn bad_rust_log_falls_back_to_the_configured_level() {
        let cfg = LogConfig {
            level: "debug".into(),
            ..LogConfig::default()
        };
        let f = filter(&cfg, Some("=[not a filter"));
        assert!(f.to_string().contains("debug"), "{f}");
        let f = filter(&cfg, Some("trace"));
        assert!(f.to_string().contains("aws_sigv4=warn"), "{f}");
    }
}
