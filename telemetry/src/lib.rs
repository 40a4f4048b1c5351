//! Telemetry shared by the demo services: log lines carrying trace ids,
//! OpenTelemetry spans exported in Zipkin (or OTLP) format, B3 + W3C context
//! propagation, and request metrics. Exporter and propagator choices live
//! here and nowhere else.
//!
//! ```no_run
//! let settings = telemetry::TelemetrySettings::with_service_name("my-service");
//! let guard = telemetry::init(&settings, std::io::stdout)?;
//! // ... run the service ...
//! guard.shutdown(); // flushes pending spans
//! # Ok::<(), anyhow::Error>(())
//! ```

mod http;
mod logs;
mod metrics;
mod settings;
mod traceresponse;
mod traces;

use std::io::IsTerminal;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use http::{DemoRootSpan, REQUEST_ID_HEADER, tracing_middleware};
pub use metrics::{RequestMetrics, metrics_middleware};
pub use settings::{LogFormat, TelemetrySettings, TracesExporter};
pub use traceresponse::{TRACERESPONSE_HEADER, TraceResponse};
pub use traces::propagator;

/// Log targets whose events are noise or would report every failed export
/// batch; the exporter wrapper reports export failures instead.
const QUIET_TARGETS: &str = "opentelemetry_sdk=off,opentelemetry_zipkin=off,opentelemetry_otlp=off,opentelemetry_http=off,opentelemetry=off,hyper=warn,hyper_util=warn,reqwest=warn,h2=warn,sqlx::query=warn";

/// Installs the global log subscriber, tracer provider and propagator.
/// Logs go to `writer` (stdout in the services, a buffer in tests).
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
    let filter = EnvFilter::try_new(&directives)?;

    let slot = logs::DispatchSlot::default();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        // Colours only for a person at a terminal; never in collected logs.
        .with_ansi(std::io::stdout().is_terminal())
        .event_format(logs::TraceLineFormat {
            format: settings.log_format,
            dispatch: slot.clone(),
        })
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(logs::CaptureDispatch(slot))
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(fmt)
        .try_init()?;
    Ok(TelemetryGuard { provider })
}

/// Keeps the tracer provider alive; [`TelemetryGuard::shutdown`] (or drop)
/// exports the spans still queued.
#[derive(Debug)]
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Exports every span queued so far (bounded by the export timeout).
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "flushing spans failed");
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
    }
}

/// The trace id of the current span, as 32 lower-case hex digits.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
