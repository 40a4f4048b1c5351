//! Log lines that carry the service's name and the OpenTelemetry trace and
//! span ids.
//!
//! Each event becomes one line on stdout. Text lines name the service after
//! the level (`… INFO front-end front_end::pages: …`, so the lines of two
//! services in one terminal can be told apart) and end with
//! `trace_id=<32 hex> span_id=<16 hex>`; JSON lines have top-level
//! `service`, `trace_id` and `span_id` keys. Both forms match the Grafana
//! derived-field regex `trace_id\W+([0-9a-f]{32})`, which is how a Loki log
//! line links to its Jaeger trace.

use std::fmt::{self, Write as _};
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, dispatcher::WeakDispatch};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::ids::{span_hex, trace_hex};
use crate::settings::LogFormat;

/// The dispatch the formatter asks for OpenTelemetry contexts, filled once
/// the subscriber is built (the formatter itself is not told). Weak: the
/// formatter lives inside that dispatch.
#[derive(Debug, Clone, Default)]
pub(crate) struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

impl DispatchSlot {
    pub(crate) fn fill(&self, dispatch: &tracing::Dispatch) {
        let _ = self.0.set(dispatch.downgrade());
    }
}

/// Formats events as text or JSON lines with the service name and trace ids.
#[derive(Debug)]
pub(crate) struct TraceLineFormat {
    format: LogFormat,
    dispatch: DispatchSlot,
    /// `OTEL_SERVICE_NAME`, as the format writes it: as is in text, as a
    /// JSON string (quoted, escaped) in JSON.
    service: Box<str>,
}

impl TraceLineFormat {
    pub(crate) fn new(format: LogFormat, service: &str, dispatch: DispatchSlot) -> Self {
        let service = match format {
            LogFormat::Text => service.into(),
            LogFormat::Json => {
                let mut quoted = String::with_capacity(service.len() + 2);
                // Writing to a String cannot fail.
                let _ = write_json_str(&mut quoted, service);
                quoted.into()
            }
        };
        Self {
            format,
            dispatch,
            service,
        }
    }

    /// Trace and span id of the span the event belongs to, if it is sampled
    /// into a valid OpenTelemetry context.
    ///
    /// The span is the event's explicit parent or the current span, asked
    /// of the subscriber itself: the log layer's filter leaves spans out (it
    /// never prints their fields, so it need not format and store them for
    /// every span), which hides them from its own context.
    fn ids(&self, event: &Event<'_>) -> Option<(TraceId, SpanId)> {
        let dispatch = self.dispatch.0.get()?.upgrade()?;
        let id = match event.parent() {
            Some(parent) => parent.clone(),
            None if event.is_contextual() => dispatch.current_span().id()?.clone(),
            None => return None,
        };
        let cx = tracing_opentelemetry::get_otel_context(&id, &dispatch)?;
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
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
        let ids = self.ids(event);
        match self.format {
            LogFormat::Text => {
                write_timestamp(&mut writer)?;
                // ` {:>5} {}: ` of level and target, without the padding machinery.
                writer.write_char(' ')?;
                writer.write_str(padded_level(meta.level()))?;
                writer.write_char(' ')?;
                writer.write_str(&self.service)?;
                writer.write_char(' ')?;
                writer.write_str(meta.target())?;
                writer.write_str(": ")?;
                ctx.field_format().format_fields(writer.by_ref(), event)?;
                if let Some((trace_id, span_id)) = ids {
                    writer.write_str(" trace_id=")?;
                    writer.write_str(trace_hex(trace_id).as_str())?;
                    writer.write_str(" span_id=")?;
                    writer.write_str(span_hex(span_id).as_str())?;
                }
                writeln!(writer)
            }
            LogFormat::Json => {
                // Written straight into the line buffer (no map, no
                // strings per field); top-level keys sorted, as before.
                writer.write_str("{\"fields\":{")?;
                let mut fields = JsonFields {
                    writer: writer.by_ref(),
                    first: true,
                    result: Ok(()),
                };
                event.record(&mut fields);
                fields.result?;
                write!(writer, "}},\"level\":\"{}\"", meta.level())?;
                writer.write_str(",\"service\":")?;
                writer.write_str(&self.service)?;
                if let Some((_, span_id)) = ids {
                    writer.write_str(",\"span_id\":\"")?;
                    writer.write_str(span_hex(span_id).as_str())?;
                    writer.write_char('"')?;
                }
                writer.write_str(",\"target\":")?;
                write_json_str(&mut writer, meta.target())?;
                writer.write_str(",\"timestamp\":\"")?;
                write_timestamp(&mut writer)?;
                writer.write_char('"')?;
                if let Some((trace_id, _)) = ids {
                    writer.write_str(",\"trace_id\":\"")?;
                    writer.write_str(trace_hex(trace_id).as_str())?;
                    writer.write_char('"')?;
                }
                writer.write_str("}\n")
            }
        }
    }
}

/// The level right-aligned in five characters, as `{:>5}` writes it.
fn padded_level(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::TRACE => "TRACE",
        tracing::Level::DEBUG => "DEBUG",
        tracing::Level::INFO => " INFO",
        tracing::Level::WARN => " WARN",
        tracing::Level::ERROR => "ERROR",
    }
}

/// The line's time: RFC 3339 in UTC with microseconds
/// (`2026-11-26T14:57:13.123456Z`), as tracing-subscriber's `SystemTime`
/// writes it, but written by humantime into a fixed buffer: `core::fmt`'s
/// padded integers made it a large share of each line (measured:
/// `docs/instrumentation-cost.md, "Figures behind code comments"`).
fn write_timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    let now = std::time::SystemTime::now();
    if now < std::time::UNIX_EPOCH {
        // humantime formats only times after 1970; a clock set before it
        // still gets a line.
        return SystemTime.format_time(writer);
    }
    write!(writer, "{}", humantime::format_rfc3339_micros(now))
}

/// Writes `s` as a JSON string, quotes included.
fn write_json_str(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    JsonEscape(w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what passes through it for the inside of a JSON string.
struct JsonEscape<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for JsonEscape<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escaped = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escaped)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// Writes an event's fields as JSON members, in the order they were recorded.
struct JsonFields<'a> {
    writer: Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl JsonFields<'_> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let w = &mut self.writer;
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                w.write_char(',')?;
            }
            write_json_str(w, field.name())?;
            w.write_char(':')?;
            value(w)
        })();
    }
}

impl Visit for JsonFields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's rule: a number that JSON cannot hold is null.
        self.member(field, |w| match value.is_finite() {
            true => write!(w, "{value}"),
            false => w.write_str("null"),
        });
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| write!(w, "{value}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| write_json_str(w, value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(JsonEscape(w), "{value}")?;
            w.write_char('"')
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(JsonEscape(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Formats `log` in `format` for a service called `service` (no
    /// OpenTelemetry layer, so no ids) and returns the lines.
    fn lines(format: LogFormat, service: &str, log: impl FnOnce()) -> Vec<String> {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = {
            let out = out.clone();
            move || WriteInto(out.clone())
        };
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .event_format(TraceLineFormat::new(
                format,
                service,
                DispatchSlot::default(),
            ));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(fmt), log);
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
    fn levels_are_padded_as_the_format_string_pads_them() {
        use tracing::Level;
        for level in [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ] {
            assert_eq!(padded_level(&level), format!("{level:>5}"));
        }
    }

    #[test]
    fn the_timestamp_reads_as_tracing_subscribers_own() {
        let ours = {
            let mut text = String::new();
            write_timestamp(&mut Writer::new(&mut text)).unwrap();
            text
        };
        let theirs = {
            let mut text = String::new();
            SystemTime.format_time(&mut Writer::new(&mut text)).unwrap();
            text
        };
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
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
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
            // `<timestamp> <level> <service> <target>: <fields>`
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
