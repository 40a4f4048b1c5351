//! Log lines off the request path: appended to a bounded buffer under a
//! short lock, written to stdout by a background thread every 50 ms or at
//! 64 KiB. None is lost: writers wait when the buffer is full, `close` (the
//! guard's last step) writes the rest, a panic hook writes it out before
//! `panic = "abort"` ends the process; one output lock keeps lines in order.
//! Why not tracing-appender: docs/instrumentation-cost.md, "Tried, measured,
//! not taken".

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Past this many buffered bytes the background thread is woken early.
const WAKE_AT: usize = 64 * 1024;
/// Past this many buffered bytes writers wait.
const CAPACITY: usize = 1024 * 1024;
/// A spare buffer larger than this (after a burst) is given back.
const SPARE_LIMIT: usize = 256 * 1024;

/// A `MakeWriter` for the log layers that buffers lines for stdout.
#[derive(Debug, Clone)]
pub struct BufferedStdout {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The buffer, and whether it is closed.
    state: Mutex<(Vec<u8>, bool)>,
    /// Signalled when there is data to write or the writer is closing.
    work: Condvar,
    /// Signalled when the buffer has been taken (room for writers).
    room: Condvar,
    /// The output lock; holds the spare buffer swapped in for the one taken.
    output: Mutex<Vec<u8>>,
    flush_interval: Duration,
}

/// A panic while holding these locks cannot leave them inconsistent (a
/// `Vec` append or a flag), so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BufferedStdout {
    /// Starts the background writer thread and installs a panic hook that
    /// runs the previous one (which prints the message), then writes the
    /// buffered lines out.
    pub fn start() -> io::Result<Self> {
        Self::with_interval(FLUSH_INTERVAL)
    }

    fn with_interval(flush_interval: Duration) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            flush_interval,
            ..Shared::default()
        });
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = shared.clone();
                move || shared.run()
            })?;
        let weak = Arc::downgrade(&shared);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if let Some(shared) = weak.upgrade() {
                shared.write_out();
            }
        }));
        Ok(Self { shared })
    }

    /// Writes what is left (after the background thread's write, if one is
    /// under way: the output lock) and sends later lines straight to stdout;
    /// the thread ends when it next wakes.
    pub fn close(&self) {
        lock(&self.shared.state).1 = true;
        self.shared.work.notify_one();
        self.shared.room.notify_all();
        self.shared.write_out();
    }
}

impl Shared {
    /// The background thread: wait for data (or the interval), write it.
    fn run(&self) {
        loop {
            let state = lock(&self.state);
            let (state, _) = self
                .work
                .wait_timeout_while(state, self.flush_interval, |(buffer, closed)| {
                    buffer.len() < WAKE_AT && !*closed
                })
                .unwrap_or_else(PoisonError::into_inner);
            let closed = state.1;
            drop(state);
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
            if state.0.is_empty() {
                return;
            }
            std::mem::swap(&mut state.0, &mut chunk);
        }
        self.room.notify_all();
        let mut stdout = io::stdout().lock();
        // Nowhere left to report a failed write to; the service keeps serving.
        let _ = stdout.write_all(&chunk).and_then(|()| stdout.flush());
        chunk.clear();
        if chunk.capacity() > SPARE_LIMIT {
            *chunk = Vec::new();
        }
    }

    fn append(&self, line: &[u8]) {
        let mut state = lock(&self.state);
        if state.1 {
            drop(state);
            let _output = lock(&self.output);
            let _ = io::stdout().lock().write_all(line);
            return;
        }
        // Wait for room rather than drop the line; a line larger than the
        // whole buffer still goes in when the buffer is empty.
        while !state.1 && !state.0.is_empty() && state.0.len() + line.len() > CAPACITY {
            self.work.notify_one();
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let before = state.0.len();
        state.0.extend_from_slice(line);
        if before < WAKE_AT && state.0.len() >= WAKE_AT {
            self.work.notify_one();
        }
    }
}

/// One event's writer: the log layers write a whole line at once.
#[derive(Debug)]
pub struct LineWriter<'a>(&'a Shared);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStdout {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(&self.shared)
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
