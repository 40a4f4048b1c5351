//! Log output off the request path: lines are appended to an in-memory
//! buffer under a short lock, and one background thread writes the buffer to
//! stdout in large chunks, so a request pays for a `memcpy`, not for a
//! `write(2)` per line.
//!
//! Nothing is lost on the way out:
//! - **busy**: the buffer is bounded; a writer that finds it full waits for
//!   the background thread to drain it (back-pressure, never a dropped line);
//! - **shutdown**: [`BufferedStdout::close`] (called by the telemetry guard
//!   after the last span export) writes what is left and stops the thread;
//!   lines logged after that go straight to stdout;
//! - **panic**: the services are built with `panic = "abort"`, so no guard
//!   is dropped on a panic; [`BufferedStdout::flush_on_panic`] installs a
//!   panic hook that writes the buffer out before the process goes.
//!
//! Order is kept: whoever writes to stdout (the background thread, a flush,
//! the panic hook) holds the same output lock from taking the buffer to the
//! end of the write.
//!
//! tracing-appender's non-blocking writer does a similar job; measured
//! against this one it costs more per line and more memory, and bounds its
//! wait at shutdown (`docs/instrumentation-cost.md`, "Tried, measured, not
//! taken").

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Past this many buffered bytes the background thread is woken early.
const WAKE_AT: usize = 64 * 1024;
/// Past this many buffered bytes writers wait (back-pressure).
const CAPACITY: usize = 1024 * 1024;
/// A spare buffer larger than this (after a burst) is given back.
const SPARE_LIMIT: usize = 256 * 1024;

/// A `MakeWriter` for the `fmt` layer that buffers lines for stdout.
#[derive(Debug, Clone)]
pub struct BufferedStdout {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when there is data to write or the writer is closing.
    work: Condvar,
    /// Signalled when the buffer has been taken (room for writers).
    room: Condvar,
    /// Held from taking a buffer to the end of its write, which keeps lines
    /// in order; holds the spare buffer swapped in for the one taken.
    output: Mutex<Vec<u8>>,
    flush_interval: Duration,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct State {
    buffer: Vec<u8>,
    closed: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent (a
    // Vec append or a flag), so a poisoned lock is used as it is.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BufferedStdout {
    /// Starts the background writer thread.
    pub fn start() -> io::Result<Self> {
        Self::with_interval(FLUSH_INTERVAL)
    }

    pub(crate) fn with_interval(flush_interval: Duration) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            work: Condvar::new(),
            room: Condvar::new(),
            output: Mutex::default(),
            flush_interval,
            thread: Mutex::new(None),
        });
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = shared.clone();
                move || shared.run()
            })?;
        *lock(&shared.thread) = Some(thread);
        Ok(Self { shared })
    }

    /// Writes everything buffered so far to stdout, from the calling thread.
    pub fn flush(&self) {
        self.shared.write_out();
    }

    /// Installs a panic hook that runs the previous hook (which prints the
    /// panic message) and then writes the buffered lines out.
    pub fn flush_on_panic(&self) {
        let shared = Arc::downgrade(&self.shared);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if let Some(shared) = shared.upgrade() {
                shared.write_out();
            }
        }));
    }

    /// Writes what is left, stops the background thread, and makes later
    /// lines go straight to stdout.
    pub fn close(&self) {
        lock(&self.shared.state).closed = true;
        self.shared.work.notify_one();
        self.shared.room.notify_all();
        if let Some(thread) = lock(&self.shared.thread).take() {
            let _ = thread.join();
        }
        self.shared.write_out();
    }
}

impl Shared {
    /// The background thread: wait for data (or the interval), write it.
    fn run(&self) {
        loop {
            let closed = {
                let state = lock(&self.state);
                let (state, _) = self
                    .work
                    .wait_timeout_while(state, self.flush_interval, |s| {
                        s.buffer.len() < WAKE_AT && !s.closed
                    })
                    .unwrap_or_else(PoisonError::into_inner);
                state.closed
            };
            self.write_out();
            if closed {
                return;
            }
        }
    }

    /// Takes the buffer and writes it, under the output lock.
    fn write_out(&self) {
        let mut chunk = lock(&self.output);
        {
            let mut state = lock(&self.state);
            if state.buffer.is_empty() {
                return;
            }
            std::mem::swap(&mut state.buffer, &mut chunk);
        }
        self.room.notify_all();
        let mut stdout = io::stdout().lock();
        // Nowhere left to report a failed write to; the lines are gone
        // either way, and the service must keep serving.
        let _ = stdout.write_all(&chunk).and_then(|()| stdout.flush());
        chunk.clear();
        if chunk.capacity() > SPARE_LIMIT {
            *chunk = Vec::new();
        }
    }

    fn append(&self, line: &[u8]) {
        let mut state = lock(&self.state);
        if state.closed {
            drop(state);
            let _output = lock(&self.output);
            let _ = io::stdout().lock().write_all(line);
            return;
        }
        // Back-pressure: wait for room rather than drop the line. A line
        // larger than the whole buffer still goes in when the buffer is empty.
        while !state.closed
            && !state.buffer.is_empty()
            && state.buffer.len() + line.len() > CAPACITY
        {
            self.work.notify_one();
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let before = state.buffer.len();
        state.buffer.extend_from_slice(line);
        if before < WAKE_AT && state.buffer.len() >= WAKE_AT {
            self.work.notify_one();
        }
    }
}

/// One event's writer: the fmt layer writes a whole formatted line at once.
#[derive(Debug)]
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStdout {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The writer writes to the real stdout, so each check runs in a child
    //! process: this test binary again, with one ignored `child_*` test
    //! selected; the parent test counts the lines the child printed. The
    //! children are ignored so that a plain run does not count them as
    //! passes: run alone, they fail.
    #![allow(clippy::unwrap_used)]

    use std::process::{Command, Output};

    use super::*;

    const CHILD: &str = "TELEMETRY_OUTPUT_CHILD";

    fn run_child(test: &str) -> Output {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                test,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        // The harness names what it ran: the child test itself, not nothing.
        assert!(
            String::from_utf8_lossy(&output.stdout).contains(&format!("test {test} ...")),
            "the child test did not run: {output:?}"
        );
        output
    }

    /// Children run only through their parent, which sets [`CHILD`].
    fn assert_in_child() {
        assert!(
            std::env::var_os(CHILD).is_some(),
            "a child process of its parent test; run that one instead"
        );
    }

    /// The lines with `needle`, each from the needle's tag on (the test
    /// harness may print a test's name just before the first one).
    fn lines_with(output: &Output, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.find(TAG).map(|at| l[at + TAG.len()..].to_owned()))
            .filter(|l| l.contains(needle))
            .collect()
    }

    /// Marks the lines the children write.
    const TAG: &str = "<<child>> ";

    const PANIC_LINES: usize = 500;

    #[test]
    fn a_panic_writes_out_every_line_logged_before_it() {
        let output = run_child("output::tests::child_logs_then_panics_like_panic_abort");
        assert!(!output.status.success(), "the child aborts");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("deliberate panic"),
            "the panic message is printed"
        );
        let lines = lines_with(&output, "before the panic");
        assert_eq!(
            lines.len(),
            PANIC_LINES,
            "every line logged before the panic"
        );
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(
                line,
                &format!("line {i} before the panic"),
                "in order, whole"
            );
        }
    }

    #[test]
    #[ignore = "run by a_panic_writes_out_every_line_logged_before_it, in a child process"]
    fn child_logs_then_panics_like_panic_abort() {
        assert_in_child();
        // An interval far beyond the test: only the panic hook can write.
        let out = BufferedStdout::with_interval(Duration::from_secs(3600)).unwrap();
        out.flush_on_panic();
        // `panic = "abort"` in the services' release profile: the hooks
        // run, then the process ends; nothing is unwound or dropped.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            hook(info);
            std::process::abort();
        }));
        for i in 0..PANIC_LINES {
            writeln!(out.make_writer(), "{TAG}line {i} before the panic").unwrap();
        }
        panic!("deliberate panic");
    }

    const THREADS: usize = 4;
    const PER_THREAD: usize = 20_000;

    #[test]
    fn a_burst_larger_than_the_buffer_waits_and_loses_nothing() {
        let output = run_child("output::tests::child_writes_a_burst_then_closes");
        assert!(output.status.success(), "{output:?}");
        assert_eq!(lines_with(&output, "written after close").len(), 1);
        let lines = lines_with(&output, "burst line");
        // About 3 MB: more than the buffer holds, so writers had to wait.
        assert_eq!(lines.len(), THREADS * PER_THREAD);
        for thread in 0..THREADS {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("thread {thread} burst line ")))
                .map(|n| n.trim_end_matches('.').parse().unwrap())
                .collect();
            assert_eq!(
                mine,
                (0..PER_THREAD).collect::<Vec<_>>(),
                "thread {thread}: all, in order"
            );
        }
    }

    #[test]
    #[ignore = "run by a_burst_larger_than_the_buffer_waits_and_loses_nothing, in a child process"]
    fn child_writes_a_burst_then_closes() {
        assert_in_child();
        // No timed writes: the buffer goes out only when it fills up, and
        // the rest only through `close`.
        let out = BufferedStdout::with_interval(Duration::from_secs(3600)).unwrap();
        let padding = ".".repeat(8);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (out, padding) = (&out, &padding);
                scope.spawn(move || {
                    for i in 0..PER_THREAD {
                        // One write per line, as the fmt layer does.
                        let line = format!("{TAG}thread {thread} burst line {i}{padding}\n");
                        out.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        out.close();
        // After close, lines go straight out.
        writeln!(out.make_writer(), "{TAG}written after close").unwrap();
    }
}
