//! Telemetry set-up shared by the demo services, once per process: log
//! lines carrying trace ids, OpenTelemetry spans exported over OTLP/HTTP
//! (or Zipkin v2, or not at all), and B3 + W3C context propagation.
//! Exporter and propagator choices live here and nowhere else. What needs
//! actix-web (the request's root span, `traceresponse`, request metrics) is
//! service-kit's.
//!
//! Layout:
//! - [`settings`](TelemetrySettings): the `OTEL_*` variables, `RUST_LOG`,
//!   `SPAN_EVENTS_LEVEL`, `LOG_FORMAT`, `METRICS_ENABLED`, `METRICS_EXEMPLARS`;
//! - `filter`: which events are logged, which spans are exported, and which
//!   log lines are also span events (warnings and errors by default);
//! - `logs`: the text and JSON line formats (service name, trace and span ids);
//! - [`BufferedStdout`]: log lines written off the request path;
//! - `traces`: the span exporters (opentelemetry-otlp's OTLP/HTTP, or
//!   opentelemetry-zipkin's), the SDK's batch span processor, the resource
//!   every span carries and the [`propagator`];
//! - [`ids`]: trace and span ids as hex text;
//! - here: [`init`]/[`init_stdout`], which install all of it, and the
//!   [`TelemetryGuard`] that flushes it at shutdown.
//!
//! ```no_run
//! let settings = telemetry::TelemetrySettings::with_service_name("my-service");
//! let guard = telemetry::init_stdout(&settings)?;
//! // ... run the service ...
//! guard.shutdown(); // flushes pending spans, then the buffered log lines
//! # Ok::<(), anyhow::Error>(())
//! ```

mod filter;
pub mod ids;
mod logs;
mod output;
mod settings;
mod traces;

use std::io::IsTerminal;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use output::BufferedStdout;
pub use settings::{LogFormat, TelemetrySettings, TracesExporter};
pub use traces::{SERVICE_NAMESPACE, propagator};

/// The request header Istio and most proxies use to correlate requests.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Log targets whose events are noise or would report every failed export
/// batch; the exporter wrapper reports export failures instead.
const QUIET_TARGETS: &str = "opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry_zipkin=off,opentelemetry_http=off,opentelemetry=off,hyper=warn,hyper_util=warn,reqwest=warn,h2=warn,sqlx::query=warn";

/// What the services call: [`init`] with log lines going to stdout through
/// a [`BufferedStdout`] (written by a background thread; flushed by the
/// guard at shutdown and by a panic hook on a panic).
pub fn init_stdout(settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    let output = BufferedStdout::start()?;
    output.flush_on_panic();
    let mut guard = init(settings, output.clone())?;
    guard.output = Some(output);
    Ok(guard)
}

/// Installs the global log subscriber, tracer provider and propagator.
/// Logs go to `writer` (a [`BufferedStdout`] in the services, see
/// [`init_stdout`]; a buffer in tests).
///
/// Call it once, outside any async runtime: the span exporters use a blocking
/// HTTP client on the batch processor's own thread.
pub fn init<W>(settings: &TelemetrySettings, writer: W) -> anyhow::Result<TelemetryGuard>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    settings.validate().map_err(anyhow::Error::msg)?;
    opentelemetry::global::set_text_map_propagator(traces::propagator());
    let provider = traces::tracer_provider(settings)?;
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(settings.otel_service_name.clone());

    // User directives first, then the quiet list for targets the user did not name.
    let mut directives = settings.rust_log.clone();
    for quiet in QUIET_TARGETS.split(',') {
        let target = quiet.split('=').next().unwrap_or_default();
        if !settings.rust_log.contains(target) {
            directives.push(',');
            directives.push_str(quiet);
        }
    }
    let filter = filter::log_filter(&directives)?;
    // Span export gets its own filter: the spans it exports (info and up,
    // libraries' internals excluded) and the logged events down to
    // SPAN_EVENTS_LEVEL (they become span events; INFO lines by default do
    // not), so library debug/trace spans and events are not built at all;
    // with no exporter, no events (see `filter::export_filter`).
    let span_events = match settings.otel_traces_exporter {
        TracesExporter::None => LevelFilter::OFF,
        _ => settings.span_events().map_err(anyhow::Error::msg)?,
    };
    let export_filter = filter::export_filter(&directives, span_events)?;

    let slot = logs::DispatchSlot::default();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        // Colours only for a person at a terminal; never in collected logs.
        .with_ansi(std::io::stdout().is_terminal())
        .event_format(logs::TraceLineFormat::new(
            settings.log_format,
            &settings.otel_service_name,
            slot.clone(),
        ))
        .with_filter(filter);
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // None of the layer's own attributes on every span: no view
                // reads them (Jaeger lists them as tags; its search, the
                // Monitor tab and Grafana's trace-to-logs links use the
                // service, the span name and kind, and the trace id), and
                // each costs the exporter on every span (docs/
                // instrumentation-cost.md, "Figures behind code comments"):
                // the thread a span was created on (an async span runs on
                // whichever worker polls it), the busy/idle split (a clock
                // read per poll), the code location and the target (the
                // span's name says where it is).
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_location(false)
                .with_target(false)
                .with_filter(export_filter),
        )
        .with(fmt);
    // The formatter finds spans' OpenTelemetry contexts through the
    // dispatch; a layer that only captured it would cost a filter check on
    // every span enter and exit (docs/instrumentation-cost.md, "Where the
    // instructions go, by crate").
    let dispatch = tracing::Dispatch::new(subscriber);
    slot.fill(&dispatch);
    dispatch.try_init()?;
    Ok(TelemetryGuard {
        provider,
        output: None,
    })
}

/// Keeps the tracer provider alive; [`TelemetryGuard::shutdown`] (or drop)
/// exports the spans still queued.
#[derive(Debug)]
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    /// Set by [`init_stdout`]: written out last, after the span export's own lines.
    output: Option<BufferedStdout>,
}

impl TelemetryGuard {
    /// Exports every span queued so far (bounded by the export timeout) and
    /// writes out the buffered log lines.
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "flushing spans failed");
        }
        if let Some(output) = &self.output {
            output.flush();
        }
    }

    /// Flushes and stops span export.
    pub fn shutdown(self) {
        // Drop does the work.
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "shutting down span export failed");
        }
        if let Some(output) = &self.output {
            output.close();
        }
    }
}

/// The trace id of the current span, as 32 lower-case hex digits.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| ids::trace_hex(sc.trace_id()).as_str().to_owned())
}
