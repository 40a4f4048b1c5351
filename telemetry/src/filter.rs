//! What reaches the OpenTelemetry layer: only what is exported.
//!
//! Without its own filter the OpenTelemetry layer saw every span and event of
//! every library at every level (the log filter applies to the log layer
//! only), so each request built, and exported as span events, the debug and
//! trace records of hyper-util's connection pool, reqwest, and sqlx's query
//! logger (which also pretty-printed the SQL each time to do so).

use tracing::subscriber::Interest;
use tracing::{Metadata, span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Filter};

/// The log filter (`RUST_LOG` plus the quiet list). Plain `target=level`
/// directives, the usual case, become a [`Targets`], decided once per
/// callsite, that passes events only: the log layer prints no span fields,
/// so it need not see spans (it would format and store every span's fields
/// otherwise). Directives that filter on span fields need an [`EnvFilter`]
/// that sees spans (and tracks each: a lock and a map look-up on its
/// creation, entry, exit and close), so that is used only then.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one of each, built once at start-up
pub(crate) enum LogFilter {
    Static(Targets),
    Dynamic(EnvFilter),
}

impl LogFilter {
    pub(crate) fn new(directives: &str) -> anyhow::Result<Self> {
        Ok(match directives.parse::<Targets>() {
            Ok(targets) => Self::Static(targets),
            Err(_) => Self::Dynamic(EnvFilter::try_new(directives)?),
        })
    }
}

impl<S> Filter<S> for LogFilter {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        match self {
            Self::Static(t) => meta.is_event() && t.would_enable(meta.target(), meta.level()),
            Self::Dynamic(e) => Filter::<S>::enabled(e, meta, cx),
        }
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        match self {
            Self::Static(_) if meta.is_span() => Interest::never(),
            Self::Static(t) => Filter::<S>::callsite_enabled(t, meta),
            Self::Dynamic(e) => Filter::<S>::callsite_enabled(e, meta),
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        match self {
            Self::Static(t) => Filter::<S>::max_level_hint(t),
            Self::Dynamic(e) => Filter::<S>::max_level_hint(e),
        }
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        if let Self::Dynamic(e) = self {
            Filter::<S>::on_new_span(e, attrs, id, cx);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        if let Self::Dynamic(e) = self {
            Filter::<S>::on_record(e, id, values, cx);
        }
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        if let Self::Dynamic(e) = self {
            Filter::<S>::on_enter(e, id, cx);
        }
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        if let Self::Dynamic(e) = self {
            Filter::<S>::on_exit(e, id, cx);
        }
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        if let Self::Dynamic(e) = self {
            Filter::<S>::on_close(e, id, cx);
        }
    }
}

/// Spans that are exported: `info` and up, except the internals of the HTTP
/// and database libraries and of the exporter itself. (`reqwest` is not
/// named: that prefix would also match `reqwest_tracing`, whose client span
/// is exported.)
const EXPORTED_SPANS: &str = "info,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_http=off,opentelemetry_zipkin=off,hyper=off,hyper_util=off,h2=off,sqlx=off,tower=off";

/// Spans as [`EXPORTED_SPANS`] says; events as the log filter says, so a
/// span event is exactly a log line of that span. With no exporter, no
/// events: spans are still made (they carry the trace ids that are logged
/// and propagated) but nothing records what would never be sent.
#[derive(Debug)]
pub(crate) struct ExportFilter {
    spans: Targets,
    events: Option<LogFilter>,
}

impl ExportFilter {
    /// `events` is the log filter (a second instance of it), or `None` when
    /// spans are not exported.
    pub(crate) fn new(events: Option<LogFilter>) -> anyhow::Result<Self> {
        Ok(Self {
            spans: EXPORTED_SPANS.parse()?,
            events,
        })
    }
}

impl<S> Filter<S> for ExportFilter {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        match &self.events {
            _ if meta.is_span() => self.spans.would_enable(meta.target(), meta.level()),
            Some(events) => Filter::<S>::enabled(events, meta, cx),
            None => false,
        }
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        match &self.events {
            _ if meta.is_span() => {
                if self.spans.would_enable(meta.target(), meta.level()) {
                    Interest::always()
                } else {
                    Interest::never()
                }
            }
            Some(events) => Filter::<S>::callsite_enabled(events, meta),
            None => Interest::never(),
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        match &self.events {
            Some(events) => Some(Filter::<S>::max_level_hint(events)?.max(LevelFilter::INFO)),
            None => Some(LevelFilter::INFO),
        }
    }

    // Span tracking of a dynamic log filter (events inside matching spans).
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        if let Some(events) = &self.events {
            Filter::<S>::on_new_span(events, attrs, id, cx);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        if let Some(events) = &self.events {
            Filter::<S>::on_record(events, id, values, cx);
        }
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        if let Some(events) = &self.events {
            Filter::<S>::on_enter(events, id, cx);
        }
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        if let Some(events) = &self.events {
            Filter::<S>::on_exit(events, id, cx);
        }
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        if let Some(events) = &self.events {
            Filter::<S>::on_close(events, id, cx);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tracing::Level;

    #[test]
    fn plain_directives_give_a_static_filter_and_span_field_ones_an_env_filter() {
        assert!(matches!(
            LogFilter::new("info,business_logic=debug,sqlx::query=warn").unwrap(),
            LogFilter::Static(_)
        ));
        assert!(matches!(
            LogFilter::new("info,[db.query{db.system.name=sqlite}]=debug").unwrap(),
            LogFilter::Dynamic(_)
        ));
        assert!(LogFilter::new("info,business_logic=loud").is_err());
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
