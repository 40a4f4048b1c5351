//! Log lines that carry the OpenTelemetry trace and span ids.
//!
//! Each event becomes one line on stdout. Text lines end with
//! `trace_id=<32 hex> span_id=<16 hex>`; JSON lines have top-level `trace_id`
//! and `span_id` keys. Both forms match the Grafana derived-field regex
//! `trace_id\W+([0-9a-f]{32})`, which is how a Loki log line links to its
//! Jaeger trace.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, dispatcher::WeakDispatch};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::settings::LogFormat;

/// The dispatch the formatter asks for OpenTelemetry contexts, captured when
/// the subscriber is registered (the formatter itself is not told).
#[derive(Debug, Clone, Default)]
pub(crate) struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

/// A layer that does nothing but fill the [`DispatchSlot`].
#[derive(Debug)]
pub(crate) struct CaptureDispatch(pub(crate) DispatchSlot);

impl<S: Subscriber> Layer<S> for CaptureDispatch {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.0.0.set(subscriber.downgrade());
    }
}

/// Formats events as text or JSON lines with trace ids.
#[derive(Debug)]
pub(crate) struct TraceLineFormat {
    pub(crate) format: LogFormat,
    pub(crate) dispatch: DispatchSlot,
}

impl TraceLineFormat {
    /// Trace and span id of the span the event belongs to, if it is sampled
    /// into a valid OpenTelemetry context.
    fn ids<S, N>(&self, ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let span = ctx.event_scope()?.next()?;
        let dispatch = self.dispatch.0.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    }
}

impl<S, N> FormatEvent<S, N> for TraceLineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let ids = self.ids(ctx);
        match self.format {
            LogFormat::Text => {
                SystemTime.format_time(&mut writer)?;
                write!(writer, " {:>5} {}: ", meta.level(), meta.target())?;
                ctx.field_format().format_fields(writer.by_ref(), event)?;
                if let Some((trace_id, span_id)) = ids {
                    write!(writer, " trace_id={trace_id} span_id={span_id}")?;
                }
                writeln!(writer)
            }
            LogFormat::Json => {
                let mut timestamp = String::new();
                SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
                let mut fields = JsonFields(Map::new());
                event.record(&mut fields);
                let mut line = Map::new();
                line.insert("timestamp".into(), Value::String(timestamp));
                line.insert("level".into(), Value::String(meta.level().to_string()));
                line.insert("target".into(), Value::String(meta.target().to_owned()));
                line.insert("fields".into(), Value::Object(fields.0));
                if let Some((trace_id, span_id)) = ids {
                    line.insert("trace_id".into(), Value::String(trace_id));
                    line.insert("span_id".into(), Value::String(span_id));
                }
                let json = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
                writeln!(writer, "{json}")
            }
        }
    }
}

/// Collects an event's fields as JSON values.
struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}
