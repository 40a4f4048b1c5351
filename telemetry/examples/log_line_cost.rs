//! What one log line costs, in instructions, formatted (text or JSON) and
//! written through the services' buffered stdout writer. Count a run
//! of N lines and a run of none under callgrind, with stdout to /dev/null,
//! and divide the difference by N (`docs/instrumentation-cost.md`):
//!
//! ```text
//! cargo build --release -p telemetry --example log_line_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/log_line_cost 20000 json >/dev/null
//! ```

use telemetry::{LogFormat, TelemetrySettings, TracesExporter};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: log_line_cost LINES [text|json]";
    let lines: usize = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let mut settings = TelemetrySettings::with_service_name("log-line-cost");
    // Ids are still made, so each line carries them, as a request's does.
    settings.otel_traces_exporter = TracesExporter::None;
    settings.log_format = match args.next().as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => anyhow::bail!("{other:?}: {usage}"),
    };
    let guard = telemetry::init(&settings)?;
    log(lines);
    guard.shutdown();
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
