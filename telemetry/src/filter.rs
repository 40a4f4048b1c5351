//! What each layer sees, built from tracing-subscriber's filters and their
//! combinators: the log layer the events that are logged, the
//! OpenTelemetry layer only what is exported.
//!
//! Without its own filter the OpenTelemetry layer saw every span and event of
//! every library at every level (the log filter applies to the log layer
//! only), so each request built, and exported as span events, the debug and
//! trace records of hyper-util's connection pool, reqwest, and sqlx's query
//! logger (which also pretty-printed the SQL each time to do so).

use tracing::{Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt as _, FilterFn, LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::registry::LookupSpan;

/// A filter as boxed by tracing-subscriber's `FilterExt::boxed`.
pub(crate) type BoxedFilter<S> = Box<dyn Filter<S> + Send + Sync + 'static>;

/// The log filter (`RUST_LOG` plus the quiet list). Plain `target=level`
/// directives, the usual case, become a [`Targets`], decided once per
/// callsite, that passes events only: the log layer prints no span fields,
/// so it need not see spans (it would format and store every span's fields
/// otherwise). Directives that filter on span fields need an [`EnvFilter`]
/// that sees spans (and tracks each: a lock and a map look-up on its
/// creation, entry, exit and close), so that is used only then.
pub(crate) fn log_filter<S>(directives: &str) -> anyhow::Result<BoxedFilter<S>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    Ok(match directives.parse::<Targets>() {
        Ok(targets) => only(|meta| meta.is_event()).and(targets).boxed(),
        Err(_) => EnvFilter::try_new(directives)?.boxed(),
    })
}

/// Spans that are exported: `info` and up, except the internals of the HTTP
/// and database libraries and of the exporter itself. (`reqwest` is not
/// named: that prefix would also match `reqwest_tracing`, whose client span
/// is exported.)
const EXPORTED_SPANS: &str = "info,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry_http=off,opentelemetry_zipkin=off,hyper=off,hyper_util=off,h2=off,sqlx=off,tower=off";

/// What reaches the OpenTelemetry layer: spans as [`EXPORTED_SPANS`] says,
/// and events as the log filter says down to `span_events` only (`warn` by
/// default, `SPAN_EVENTS_LEVEL`), so a span event is a warning or error
/// logged in that span and INFO lines stay log lines. `LevelFilter::OFF`
/// (no exporter) records no events: spans are still made (they carry the
/// trace ids that are logged and propagated) but nothing records what would
/// never be sent.
pub(crate) fn export_filter<S>(
    directives: &str,
    span_events: LevelFilter,
) -> anyhow::Result<BoxedFilter<S>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let spans = only(|meta| meta.is_span()).and(EXPORTED_SPANS.parse::<Targets>()?);
    let events = only(|meta| meta.is_event())
        .and(span_events)
        .and(log_filter(directives)?);
    Ok(spans.or(events).boxed())
}

/// Spans only or events only, decided once per callsite; no level limit of
/// its own (so combined with `and`, the other filter's level hint holds).
fn only(kind: fn(&Metadata<'_>) -> bool) -> FilterFn<fn(&Metadata<'_>) -> bool> {
    filter_fn(kind).with_max_level_hint(LevelFilter::TRACE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tracing::Level;

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
    }

    #[test]
    fn the_exported_spans_are_ours_and_the_client_libraries_not_their_internals() {
        let spans: Targets = EXPORTED_SPANS.parse().unwrap();
        for (target, level) in [
            ("telemetry::http", Level::INFO),
            ("business_logic::db", Level::INFO),
            ("business_logic::routes", Level::INFO),
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
