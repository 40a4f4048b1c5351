//! What one log line costs with each stdout writer, in instructions: the
//! services' [`telemetry::BufferedStdout`] and tracing-appender's
//! non-blocking writer (lossless, like ours). Count a run of N lines and a
//! run of none under callgrind, with stdout to /dev/null, and divide the
//! difference by N (`docs/instrumentation-cost.md`, "Tried, measured, not
//! taken"):
//!
//! ```text
//! cargo build --release -p telemetry --example log_line_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/log_line_cost buffered 20000 >/dev/null
//! ```

use std::io::{BufWriter, stdout};

use telemetry::{TelemetrySettings, TracesExporter};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: log_line_cost buffered|appender LINES";
    let writer = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let lines: usize = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let mut settings = TelemetrySettings::with_service_name("log-line-cost");
    // Ids are still made, so each line carries them, as a request's does.
    settings.otel_traces_exporter = TracesExporter::None;
    match writer.as_str() {
        "buffered" => {
            let guard = telemetry::init_stdout(&settings)?;
            log(lines);
            guard.shutdown();
        }
        "appender" => {
            let (writer, flushed) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .finish(BufWriter::new(stdout()));
            let guard = telemetry::init(&settings, writer)?;
            log(lines);
            guard.shutdown();
            drop(flushed);
        }
        other => anyhow::bail!("{other:?}: {usage}"),
    }
    Ok(())
}

/// `lines` request-sized lines, inside a span as a request's are.
fn log(lines: usize) {
    let span = tracing::info_span!("HTTP request");
    let _entered = span.enter();
    for i in 0..lines {
        tracing::info!(
            method = "GET",
            path = "/fast-endpoint",
            status = 200,
            i,
            "request completed"
        );
    }
}
