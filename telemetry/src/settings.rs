//! The telemetry part of each service's settings, read from the standard
//! OpenTelemetry variables (`OTEL_*`) plus `RUST_LOG`, `SPAN_EVENTS_LEVEL`,
//! `LOG_FORMAT`, `METRICS_ENABLED` and `METRICS_EXEMPLARS`.

use std::collections::HashMap;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::LevelFilter;

/// Where spans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TracesExporter {
    /// OTLP over HTTP/protobuf (`/v1/traces`): the default, what Jaeger v2
    /// and every OpenTelemetry collector take natively.
    Otlp,
    /// Zipkin v2 JSON over HTTP, for a Zipkin server (the exporter crate is
    /// deprecated upstream; see `traces::zipkin`).
    Zipkin,
    /// No export; trace ids are still created and propagated.
    None,
}

/// How log lines look on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-11-24T09:00:00.123456Z  INFO front-end target: message k=v trace_id=… span_id=…`
    Text,
    /// One JSON object per line with top-level `service`, `trace_id` and `span_id`.
    Json,
}

/// Telemetry settings; field names are the environment variables, lower-cased.
/// The default is OpenTelemetry's `unknown_service`; use
/// [`TelemetrySettings::from_env`] or [`TelemetrySettings::with_service_name`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetrySettings {
    /// `OTEL_SERVICE_NAME`: the service name on spans, metrics and log lines.
    pub otel_service_name: String,
    /// `OTEL_TRACES_EXPORTER`: `otlp` (default), `zipkin` or `none`.
    pub otel_traces_exporter: TracesExporter,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: base URL of an OTLP/HTTP receiver
    /// (`/v1/traces` is appended, as the specification says).
    pub otel_exporter_otlp_endpoint: String,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the full URL spans are posted
    /// to, used as it is; when set it wins over the base URL above.
    #[serde(default)]
    pub otel_exporter_otlp_traces_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,...` (percent-encoded)
    /// added to every OTLP export request, e.g. a receiver's API key.
    #[serde(default)]
    pub otel_exporter_otlp_headers: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`: the same for traces alone;
    /// when set it is used instead of `OTEL_EXPORTER_OTLP_HEADERS`.
    #[serde(default)]
    pub otel_exporter_otlp_traces_headers: Option<String>,
    /// `OTEL_EXPORTER_ZIPKIN_ENDPOINT`: full http:// URL of the Zipkin v2
    /// spans endpoint, used with `OTEL_TRACES_EXPORTER=zipkin`.
    pub otel_exporter_zipkin_endpoint: String,
    /// `OTEL_BSP_SCHEDULE_DELAY`: milliseconds between two exports of the
    /// batch span processor (sooner when a full batch is waiting).
    pub otel_bsp_schedule_delay: u64,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: spans waiting for export; past this, new
    /// spans are dropped, so an unreachable collector costs bounded memory.
    pub otel_bsp_max_queue_size: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans in one export request.
    pub otel_bsp_max_export_batch_size: usize,
    /// `RUST_LOG`: an `EnvFilter` directive list.
    pub rust_log: String,
    /// `SPAN_EVENTS_LEVEL`: the least severe log line that is also recorded
    /// on its span as a span event (`warn` by default: warnings and errors,
    /// so a failing span shows why in Jaeger). Every log line reaches stdout
    /// whatever this says (`RUST_LOG` decides); `trace` copies every logged
    /// line into its span as well, `off` none.
    pub span_events_level: String,
    /// `LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `METRICS_ENABLED`: serve `/metrics` and count requests.
    pub metrics_enabled: bool,
    /// The service's version (`v1`, `v2`, ...), set by the service from its own
    /// settings (business-logic's `SERVICE_VERSION`), not read here: the
    /// `service.version` resource attribute and a `version` label on the
    /// metrics. `None` adds neither.
    #[serde(default)]
    pub service_version: Option<String>,
    /// `METRICS_EXEMPLARS`: attach the trace id of a recent sampled request
    /// to each request-duration bucket, served as OpenMetrics to scrapers
    /// that ask for it; `false` serves plain Prometheus text only.
    pub metrics_exemplars: bool,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self::with_service_name("unknown_service")
    }
}

impl TelemetrySettings {
    /// Defaults for a service called `service_name`.
    pub fn with_service_name(service_name: &str) -> Self {
        Self {
            otel_service_name: service_name.to_owned(),
            otel_traces_exporter: TracesExporter::Otlp,
            // The specification's defaults for OTLP/HTTP and for Zipkin.
            otel_exporter_otlp_endpoint: "http://localhost:4318".to_owned(),
            otel_exporter_otlp_traces_endpoint: None,
            otel_exporter_otlp_headers: None,
            otel_exporter_otlp_traces_headers: None,
            otel_exporter_zipkin_endpoint: "http://localhost:9411/api/v2/spans".to_owned(),
            // Exports every half second, in requests of up to 1,024 spans,
            // queueing at most 2,048 (the SDK's default queue; about 0.7 MiB
            // when full): docs/instrumentation-cost.md, "Batch settings".
            otel_bsp_schedule_delay: 500,
            otel_bsp_max_queue_size: 2048,
            otel_bsp_max_export_batch_size: 1024,
            rust_log: "info".to_owned(),
            span_events_level: "warn".to_owned(),
            log_format: LogFormat::Text,
            metrics_enabled: true,
            service_version: None,
            metrics_exemplars: true,
        }
    }

    /// Reads the variables over the defaults for `service_name` and validates
    /// them; the error names the variable, the value and what is allowed.
    pub fn from_env(service_name: &str) -> anyhow::Result<Self> {
        let settings: Self =
            Figment::from(Serialized::defaults(Self::with_service_name(service_name)))
                .merge(Env::raw().only(Self::ENV_VARS))
                .extract()
                .map_err(|e| anyhow::anyhow!("invalid setting: {e}"))?;
        settings.validate().map_err(anyhow::Error::msg)?;
        Ok(settings)
    }

    /// The environment variables these settings are read from.
    pub const ENV_VARS: &'static [&'static str] = &[
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "RUST_LOG",
        "SPAN_EVENTS_LEVEL",
        "LOG_FORMAT",
        "METRICS_ENABLED",
        "METRICS_EXEMPLARS",
    ];

    /// Where OTLP spans are posted: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as
    /// it is, or else `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces`.
    pub fn otlp_traces_url(&self) -> String {
        match self.otlp_traces_endpoint() {
            Some(url) => url.to_owned(),
            None => format!(
                "{}/v1/traces",
                self.otel_exporter_otlp_endpoint.trim_end_matches('/')
            ),
        }
    }

    /// The headers OTLP export requests carry: `OTEL_EXPORTER_OTLP_TRACES_HEADERS`
    /// if set, else `OTEL_EXPORTER_OTLP_HEADERS` (the error names the variable).
    pub fn otlp_headers(&self) -> Result<HashMap<String, String>, String> {
        let (var, value) = match &self.otel_exporter_otlp_traces_headers {
            Some(value) => ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", value),
            None => match &self.otel_exporter_otlp_headers {
                Some(value) => ("OTEL_EXPORTER_OTLP_HEADERS", value),
                None => return Ok(HashMap::new()),
            },
        };
        // The value may hold a secret: the error names the variable, not it.
        parse_headers(value).map_err(|e| {
            format!("{var} is not valid ({e}); allowed: key=value pairs separated by commas, percent-encoded")
        })
    }

    /// `SPAN_EVENTS_LEVEL` as a level filter.
    pub fn span_events(&self) -> Result<LevelFilter, String> {
        self.span_events_level.parse().map_err(|_| {
            format!(
                "SPAN_EVENTS_LEVEL={:?} is not valid; allowed: off, error, warn, info, debug, trace",
                self.span_events_level
            )
        })
    }

    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, an empty value being unset (as
    /// the specification treats empty variables).
    fn otlp_traces_endpoint(&self) -> Option<&str> {
        self.otel_exporter_otlp_traces_endpoint
            .as_deref()
            .filter(|url| !url.is_empty())
    }

    /// Checks what serde cannot: endpoints must be http:// URLs, the name non-empty.
    pub fn validate(&self) -> Result<(), String> {
        if self.otel_service_name.trim().is_empty() {
            return Err("OTEL_SERVICE_NAME is empty; allowed: a non-empty service name".into());
        }
        let endpoints = [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                Some(self.otel_exporter_otlp_endpoint.as_str()),
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                self.otlp_traces_endpoint(),
            ),
            (
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                Some(self.otel_exporter_zipkin_endpoint.as_str()),
            ),
        ];
        for (var, value) in endpoints {
            let Some(value) = value else { continue };
            // Plain HTTP only: in the mesh the sidecar adds mTLS, so the
            // binaries carry no TLS stack.
            if !value.starts_with("http://") || value.parse::<reqwest::Url>().is_err() {
                return Err(format!(
                    "{var}={value:?} is not valid; allowed: an http:// URL"
                ));
            }
        }
        self.otlp_headers()?;
        self.span_events()?;
        if self.otel_bsp_max_queue_size == 0 || self.otel_bsp_max_export_batch_size == 0 {
            return Err(
                "OTEL_BSP_MAX_QUEUE_SIZE and OTEL_BSP_MAX_EXPORT_BATCH_SIZE must be above 0".into(),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.rust_log) {
            return Err(format!(
                "RUST_LOG={:?} is not valid ({e}); allowed: EnvFilter directives such as `info` or `info,business_logic=debug`",
                self.rust_log
            ));
        }
        Ok(())
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs separated by commas,
/// each part percent-decoded and trimmed (the specification's format, W3C
/// Baggage without properties). opentelemetry-otlp reads it too, but skips
/// a malformed pair without a word; here it stops start-up. The error names
/// a pair by its place and a header by its key, never a value: a value is
/// often a secret.
fn parse_headers(text: &str) -> Result<HashMap<String, String>, String> {
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part.trim())
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| "a part is not percent-encoded UTF-8".to_owned())
    };
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .enumerate()
        .map(|(i, pair)| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("pair {} is not key=value", i + 1))?;
            let (key, value) = (decode(key)?, decode(value)?);
            reqwest::header::HeaderName::try_from(key.as_str())
                .map_err(|_| format!("{key:?} is not a header name"))?;
            reqwest::header::HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("the value of {key:?} is not a header value"))?;
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn otlp_over_http_to_localhost_is_the_default() {
        let s = TelemetrySettings::with_service_name("svc");
        assert_eq!(s.otel_traces_exporter, TracesExporter::Otlp);
        assert_eq!(s.otlp_traces_url(), "http://localhost:4318/v1/traces");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn the_traces_endpoint_is_used_as_it_is_and_wins_over_the_base() {
        let mut s = TelemetrySettings::with_service_name("svc");
        s.otel_exporter_otlp_endpoint = "http://collector:4318/".into();
        assert_eq!(s.otlp_traces_url(), "http://collector:4318/v1/traces");
        s.otel_exporter_otlp_traces_endpoint = Some("http://jaeger:4318/custom/path".into());
        assert_eq!(s.otlp_traces_url(), "http://jaeger:4318/custom/path");
        // Empty is unset, as the specification treats empty variables.
        s.otel_exporter_otlp_traces_endpoint = Some(String::new());
        assert_eq!(s.otlp_traces_url(), "http://collector:4318/v1/traces");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn a_traces_endpoint_that_is_not_an_http_url_is_refused_by_name() {
        let mut s = TelemetrySettings::with_service_name("svc");
        s.otel_exporter_otlp_traces_endpoint = Some("jaeger:4318".into());
        let e = s.validate().unwrap_err();
        assert!(
            e.starts_with("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=\"jaeger:4318\""),
            "{e}"
        );
    }

    #[test]
    fn headers_are_key_value_pairs_percent_decoded() {
        assert_eq!(
            parse_headers("api-key=secret%20value, x-tenant = demo ,").unwrap(),
            HashMap::from([
                ("api-key".to_owned(), "secret value".to_owned()),
                ("x-tenant".to_owned(), "demo".to_owned())
            ])
        );
        assert!(parse_headers("").unwrap().is_empty());
        assert!(parse_headers("novalue").unwrap_err().contains("key=value"));
        assert!(
            parse_headers("bad header=1")
                .unwrap_err()
                .contains("header name")
        );
        assert!(parse_headers("k=%0A").unwrap_err().contains("header value"));
    }
}
