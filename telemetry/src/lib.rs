//! Telemetry set-up shared by the demo services: log lines carrying trace
//! ids, spans exported over OTLP/HTTP (or Zipkin v2, or not at all), B3 +
//! W3C propagation. [`settings`](TelemetrySettings) reads the variables;
//! [`init`] composes the subscriber from library layers and returns the
//! guard; `logs` formats the lines, `output` writes them; `traces` builds
//! the exporter, batch processor, resource and [`propagator`]. What needs
//! actix-web (root span, `traceresponse`, metrics) is service-kit's.
//!
//! ```no_run
//! let settings = telemetry::TelemetrySettings::with_service_name("my-service");
//! let guard = telemetry::init(&settings)?;
//! // ... run the service ...
//! guard.shutdown(); // exports the spans still queued, then the log lines
//! # Ok::<(), anyhow::Error>(())
//! ```

mod logs;
mod output;
mod settings;
mod traces;

use std::io::IsTerminal;

use opentelemetry::trace::{SpanId, TraceContextExt, TraceFlags, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Metadata;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{FilterExt, FilterFn, LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use output::BufferedStdout;
pub use settings::{LogFormat, TelemetrySettings, TracesExporter};
pub use traces::{SERVICE_NAMESPACE, propagator};

/// The request header Istio and most proxies use to correlate requests.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Kept out of the log unless `RUST_LOG` says otherwise: noise, and the
/// exporters' error per failed batch (`traces::Reporting` says it instead).
const QUIET_TARGETS: &str = "opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry_zipkin=off,opentelemetry_http=off,opentelemetry=off,hyper=warn,hyper_util=warn,reqwest=warn,h2=warn,sqlx::query=warn";

/// Exported spans: `info` and up, not the HTTP, database and exporter
/// libraries' own (`reqwest` would also match `reqwest_tracing`'s, kept).
const EXPORTED_SPANS: &str = "info,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry_http=off,opentelemetry_zipkin=off,hyper=off,hyper_util=off,h2=off,sqlx=off,tower=off";

/// Installs the global subscriber, tracer provider and propagator, log
/// lines going to stdout through a [`BufferedStdout`]. Call it once, outside
/// any async runtime (the exporters' HTTP client blocks, on the batch
/// processor's thread).
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    settings.validate().map_err(anyhow::Error::msg)?;
    opentelemetry::global::set_text_map_propagator(propagator());
    let provider = traces::tracer_provider(settings)?;
    opentelemetry::global::set_tracer_provider(provider.clone());

    // A later directive for the same target replaces an earlier one.
    let directives = format!("{QUIET_TARGETS},{}", settings.rust_log);
    // The OpenTelemetry layer gets the exported spans and, as span events,
    // the logged events down to SPAN_EVENTS_LEVEL (none without an
    // exporter), so nothing else is built for it (docs/instrumentation-cost.md,
    // "What changed and why").
    let span_events = match settings.otel_traces_exporter {
        TracesExporter::None => LevelFilter::OFF,
        _ => settings.span_events().map_err(anyhow::Error::msg)?,
    };
    let spans = only(|m| m.is_span()).and(EXPORTED_SPANS.parse::<Targets>()?);
    let events = only(|m| m.is_event())
        .and(span_events)
        .and(log_filter(&directives)?);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(settings.otel_service_name.clone()))
        // No per-span attributes of its own: nothing reads them, each costs
        // every span (docs/instrumentation-cost.md, "December 2026").
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_target(false)
        .with_filter(spans.or(events));

    let service = settings.otel_service_name.as_str();
    let output = BufferedStdout::start()?;
    let log = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(output.clone())
            .with_ansi(std::io::stdout().is_terminal())
            .event_format(logs::TextFormat(service.into()))
            .boxed(),
        LogFormat::Json => logs::json(service, output.clone()).boxed(),
    };
    tracing_subscriber::registry()
        .with(otel)
        .with(log.with_filter(log_filter(&directives)?))
        .try_init()?;
    Ok(TelemetryGuard { provider, output })
}

/// Plain `target=level` directives (the usual case) become a [`Targets`]
/// passing events only: the lines print no span fields, so the log layer
/// need not store them. Directives on span fields need an [`EnvFilter`].
fn log_filter<S>(directives: &str) -> anyhow::Result<Box<dyn Filter<S> + Send + Sync>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    Ok(match directives.parse::<Targets>() {
        Ok(targets) => only(|m| m.is_event()).and(targets).boxed(),
        Err(_) => FilterExt::boxed(EnvFilter::try_new(directives)?),
    })
}

/// Spans only or events only, decided once per callsite; no level limit of
/// its own, so combined with `and` the other filter's level hint holds.
fn only(kind: fn(&Metadata<'_>) -> bool) -> FilterFn<fn(&Metadata<'_>) -> bool> {
    filter_fn(kind).with_max_level_hint(LevelFilter::TRACE)
}

/// On drop (or [`TelemetryGuard::shutdown`]) exports the spans still
/// queued (bounded by the export timeout), then writes the log lines.
#[derive(Debug)]
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    output: BufferedStdout,
}

impl TelemetryGuard {
    pub fn shutdown(self) {}
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "shutting down span export failed");
        }
        self.output.close();
    }
}

/// The trace id of the current span, as 32 lower-case hex digits.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| trace_hex(sc.trace_id()).as_str().into())
}

/// An id as `N` lower-case hex digits, on the stack: through `core::fmt`
/// (`{:032x}`) it costs far more, and a request writes ids several times
/// (docs/instrumentation-cost.md, "Ids as hex without `core::fmt`").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HexId<const N: usize>([u8; N]);

impl<const N: usize> HexId<N> {
    fn encode(bytes: &[u8]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0; N];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&[
                DIGITS[usize::from(byte >> 4)],
                DIGITS[usize::from(byte & 15)],
            ]);
        }
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default() // ASCII only
    }
}

pub fn trace_hex(id: TraceId) -> HexId<32> {
    HexId::encode(&id.to_bytes())
}

pub fn span_hex(id: SpanId) -> HexId<16> {
    HexId::encode(&id.to_bytes())
}

pub fn flags_hex(flags: TraceFlags) -> HexId<2> {
    HexId::encode(&[flags.to_u8()])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tracing::Level;

    use super::*;

    #[test]
    fn ids_read_as_the_opentelemetry_types_format_them() {
        for trace in [
            0u128,
            1,
            0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
            u128::MAX,
        ] {
            let id = TraceId::from(trace);
            assert_eq!(trace_hex(id).as_str(), format!("{id}"));
            assert_eq!(trace_hex(id).as_str(), format!("{trace:032x}"));
        }
        for span in [0u64, 1, 0xb7ad_6b71_6920_3331, u64::MAX, 0x0f00] {
            let id = SpanId::from(span);
            assert_eq!(span_hex(id).as_str(), format!("{span:016x}"));
        }
        for flags in [0u8, 1, 0xff] {
            assert_eq!(
                flags_hex(TraceFlags::new(flags)).as_str(),
                format!("{flags:02x}")
            );
        }
    }

    #[test]
    fn plain_and_span_field_directives_are_taken_and_bad_ones_refused() {
        type S = tracing_subscriber::Registry;
        for directives in [
            "info,business_logic=debug,sqlx::query=warn",
            "info,[db.query{db.system.name=sqlite}]=debug",
        ] {
            assert!(log_filter::<S>(directives).is_ok(), "{directives}");
        }
        assert!(log_filter::<S>("info,business_logic=loud").is_err());
        // The user's directive after a quiet one for the same target wins.
        let targets: Targets = format!("{QUIET_TARGETS},info,hyper=debug").parse().unwrap();
        assert!(targets.would_enable("hyper::proto", &Level::DEBUG));
        assert!(!targets.would_enable("h2", &Level::INFO));
    }

    #[test]
    fn the_exported_spans_are_ours_and_the_client_libraries_not_their_internals() {
        let spans: Targets = EXPORTED_SPANS.parse().unwrap();
        for (target, level) in [
            ("business_logic::db", Level::INFO),
            ("reqwest_tracing::reqwest_otel_span_builder", Level::INFO),
        ] {
            assert!(spans.would_enable(target, &level), "{target} {level}");
        }
        for (target, level) in [
            ("h2::proto::connection", Level::INFO),
            ("hyper_util::client::legacy::pool", Level::INFO),
            ("sqlx::query", Level::INFO),
            ("opentelemetry_sdk::trace", Level::ERROR),
            ("business_logic::db", Level::DEBUG),
        ] {
            assert!(!spans.would_enable(target, &level), "{target} {level}");
        }
    }
}
