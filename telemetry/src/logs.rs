//! Log lines that carry the service's name and the OpenTelemetry trace and
//! span ids. Text lines name the service after the level (so the lines of
//! two services in one terminal can be told apart) and end with
//! `trace_id=<32 hex> span_id=<16 hex>`; JSON lines (json-subscriber) have
//! top-level `service`, `trace_id` and `span_id` keys. Both match Grafana's
//! derived-field regex `trace_id\W+([0-9a-f]{32})`, which links a Loki line
//! to its Jaeger trace.

use std::fmt;

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::{span_hex, trace_hex};

/// Trace and span id of the span the event belongs to (its explicit parent
/// or the current span), if sampled into a valid OpenTelemetry context.
/// Asked of the global dispatch, not of the log layer's context: that
/// layer's filter leaves spans out (it prints no span fields, so it need
/// not store them), which hides them from it. `get_default` is an atomic
/// load while no scoped dispatch is set (in tests under `with_default` it
/// finds none, so no ids).
fn ids(event: &Event<'_>) -> Option<(TraceId, SpanId)> {
    tracing::dispatcher::get_default(|dispatch| {
        let id = match event.parent() {
            Some(parent) => parent.clone(),
            None if event.is_contextual() => dispatch.current_span().id()?.clone(),
            None => return None,
        };
        let cx = tracing_opentelemetry::get_otel_context(&id, dispatch)?;
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
    })
}

/// The line's time: RFC 3339 in UTC with microseconds, as
/// tracing-subscriber's `SystemTime` writes it, but by humantime into a
/// fixed buffer (docs/instrumentation-cost.md, "Log timestamps by humantime").
#[derive(Debug)]
pub(crate) struct Timestamp;

impl FormatTime for Timestamp {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = std::time::SystemTime::now();
        if now < std::time::UNIX_EPOCH {
            return SystemTime.format_time(w); // humantime starts at 1970
        }
        write!(w, "{}", humantime::format_rfc3339_micros(now))
    }
}

/// `<timestamp> <level> <service> <target>: <fields> trace_id=… span_id=…`
#[derive(Debug)]
pub(crate) struct TextFormat(pub(crate) Box<str>);

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        Timestamp.format_time(&mut w)?;
        // `{:>5}` of the level without core::fmt's padding (the same figures).
        let level = match *meta.level() {
            tracing::Level::TRACE => "TRACE",
            tracing::Level::DEBUG => "DEBUG",
            tracing::Level::INFO => " INFO",
            tracing::Level::WARN => " WARN",
            tracing::Level::ERROR => "ERROR",
        };
        for part in [" ", level, " ", &self.0, " ", meta.target(), ": "] {
            w.write_str(part)?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        if let Some((trace_id, span_id)) = ids(event) {
            w.write_str(" trace_id=")?;
            w.write_str(trace_hex(trace_id).as_str())?;
            w.write_str(" span_id=")?;
            w.write_str(span_hex(span_id).as_str())?;
        }
        w.write_char('\n')
    }
}

/// One JSON object per line: `fields`, `level`, `service`, `target`,
/// `timestamp`, and `trace_id`, `span_id` inside a sampled span.
pub(crate) fn json<S, W>(service: &str, writer: W) -> json_subscriber::JsonLayer<S, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    let mut layer = json_subscriber::JsonLayer::new(writer);
    layer
        .with_event("fields")
        .with_level("level")
        .with_target("target")
        .with_timer("timestamp", Timestamp);
    layer.add_static_field("service", service.into());
    layer.add_multiple_dynamic_fields(|event, _, fields| {
        if let Some((trace_id, span_id)) = ids(event) {
            let _ = fields.write_field("trace_id", trace_hex(trace_id).as_str());
            let _ = fields.write_field("span_id", span_hex(span_id).as_str());
        }
    });
    layer
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::settings::LogFormat;

    /// The lines `log` writes in `format` for a service called `service` (no
    /// OpenTelemetry layer, so no ids).
    fn lines(format: LogFormat, service: &str, log: impl FnOnce()) -> Vec<String> {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = {
            let out = out.clone();
            move || WriteInto(out.clone())
        };
        let text = (format == LogFormat::Text).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(writer.clone())
                .with_ansi(false)
                .event_format(TextFormat(service.into()))
        });
        let json = (format == LogFormat::Json).then(|| json(service, writer));
        let subscriber = tracing_subscriber::registry().with(text).with(json);
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    struct WriteInto(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for WriteInto {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_timestamp_reads_as_tracing_subscribers_own() {
        let write = |timer: &dyn FormatTime| {
            let mut text = String::new();
            timer.format_time(&mut Writer::new(&mut text)).unwrap();
            text
        };
        let (ours, theirs) = (write(&Timestamp), write(&SystemTime));
        let shape = |t: &str| {
            t.bytes()
                .map(|b| if b.is_ascii_digit() { b'0' } else { b })
                .collect::<Vec<u8>>()
        };
        assert_eq!(shape(&ours), b"0000-00-00T00:00:00.000000Z", "{ours}");
        assert_eq!(shape(&ours), shape(&theirs), "{ours} {theirs}");
        let (a, b) = (
            humantime::parse_rfc3339(&ours).unwrap(),
            humantime::parse_rfc3339(&theirs).unwrap(),
        );
        assert!(b.duration_since(a).unwrap() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn json_lines_are_valid_json_whatever_the_field_values_hold() {
        let error = std::io::Error::other("disk \"full\"\n");
        let lines = lines(LogFormat::Json, "front-end", || {
            tracing::warn!(
                text = "quote \" backslash \\ newline \n tab \t bell \u{7} é ✓",
                count = 42u64,
                delta = -7i64,
                ratio = 0.25f64,
                nan = f64::NAN,
                ok = true,
                error = &error as &(dyn std::error::Error + 'static),
                debug = ?("tuple", '\''),
                "a \"message\" with {}", "arguments"
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let fields = &line["fields"];
        assert_eq!(fields["message"], "a \"message\" with arguments");
        assert_eq!(
            fields["text"],
            "quote \" backslash \\ newline \n tab \t bell \u{7} é ✓"
        );
        assert_eq!(fields["count"], 42);
        assert_eq!(fields["delta"], -7);
        assert_eq!(fields["ratio"], 0.25);
        assert!(fields["nan"].is_null());
        assert_eq!(fields["ok"], true);
        assert_eq!(fields["error"], "disk \"full\"\n");
        assert_eq!(fields["debug"], r#"("tuple", '\'')"#);
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["service"], "front-end");
        assert_eq!(line["target"], "telemetry::logs::tests");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        // No span, so no ids.
        assert!(line.get("trace_id").is_none());
        let mut keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["fields", "level", "service", "target", "timestamp"]);
    }

    #[test]
    fn every_line_names_its_service_in_both_formats() {
        let log = || {
            tracing::info!(port = 8080, "listening");
            tracing::error!("failed");
        };
        let text = lines(LogFormat::Text, "business-logic", log);
        assert_eq!(text.len(), 2, "{text:?}");
        for (line, level) in text.iter().zip([" INFO", "ERROR"]) {
            let (_, rest) = line.split_once(' ').unwrap();
            assert!(
                rest.starts_with(&format!("{level} business-logic telemetry::logs::tests: ")),
                "{line}"
            );
        }
        // A name JSON must escape stays one valid string.
        let json = lines(LogFormat::Json, "odd \"name\"", log);
        assert_eq!(json.len(), 2, "{json:?}");
        for line in json {
            let line: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(line["service"], "odd \"name\"");
        }
    }
}
