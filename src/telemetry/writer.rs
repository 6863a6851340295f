//! The log batch: whole lines appended in memory by any thread, and the writer thread
//! that empties them to stderr with one `write` per batch.
//!
//! Lines reach stderr at most [`FLUSH_EVERY`] after they were logged, in order. Past
//! [`MAX_BUFFERED`] bytes waiting (stderr blocked), lines are dropped and counted, and the
//! count is written once stderr takes lines again. The [`LogGuard`] writes what is left
//! when dropped (waiting at most a second for a stderr that does not move).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

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
pub(super) struct Batch {
    pending: Mutex<Pending>,
    /// Signalled when the first line of a batch arrives, and on close.
    wake: Condvar,
}

impl Batch {
    pub(super) fn new() -> Arc<Batch> {
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
    pub(super) fn append(&self, write: impl FnOnce(&mut Vec<u8>)) {
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
    pub(super) fn run(&self, out: &mut dyn std::io::Write) {
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
pub(super) struct BatchWriter(pub(super) Arc<Batch>);

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

/// Keeps the writer thread; dropping it writes what is left and stops the thread.
pub struct LogGuard {
    batch: Arc<Batch>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogGuard {
    pub(super) fn new(batch: Arc<Batch>, thread: Option<std::thread::JoinHandle<()>>) -> Self {
        LogGuard { batch, thread }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
