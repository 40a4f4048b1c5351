//! The telemetry part of each service's settings: the standard `OTEL_*`
//! variables plus `RUST_LOG`, `SPAN_EVENTS_LEVEL`, `LOG_FORMAT`,
//! `METRICS_ENABLED` and `METRICS_EXEMPLARS`.

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::LevelFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TracesExporter {
    Otlp,
    Zipkin,
    /// No export; trace ids are still made and propagated.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-11-24T09:00:00.123456Z  INFO front-end target: message k=v trace_id=… span_id=…`
    Text,
    /// One JSON object per line with top-level `service`, `trace_id` and `span_id`.
    Json,
}

/// Telemetry settings; a field's name is its variable's, lower-cased
/// (docs/configuration.md says what each means and its default).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetrySettings {
    pub otel_service_name: String,
    pub otel_traces_exporter: TracesExporter,
    /// Milliseconds between two exports of the batch span processor.
    pub otel_bsp_schedule_delay: u64,
    pub otel_bsp_max_queue_size: usize,
    pub otel_bsp_max_export_batch_size: usize,
    pub rust_log: String,
    /// The least severe log line also recorded on its span as an event.
    pub span_events_level: String,
    pub log_format: LogFormat,
    pub metrics_enabled: bool,
    pub metrics_exemplars: bool,
    /// Set by the service from its own settings (business-logic's
    /// `SERVICE_VERSION`), not read here: `service.version` on spans and a
    /// `version` label on metrics.
    #[serde(default)]
    pub service_version: Option<String>,
}

/// Read by the exporters themselves, which would take a malformed value
/// without a word: only checked here. Unset, opentelemetry-otlp posts to
/// `http://localhost:4318/v1/traces`, opentelemetry-zipkin to
/// `http://127.0.0.1:9411/api/v2/spans`.
const CHECKED: [(&str, Check, &str); 5] = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", http_url, HTTP_URL),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", http_url, HTTP_URL),
    ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", http_url, HTTP_URL),
    ("OTEL_EXPORTER_OTLP_HEADERS", headers, HEADERS),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", headers, HEADERS),
];
type Check = fn(&str) -> bool;
const HTTP_URL: &str = "an http:// URL";
const HEADERS: &str = "key=value pairs separated by commas, percent-encoded";

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
            // Not the SDK's 5 s and 512: docs/instrumentation-cost.md, "Batch settings".
            otel_bsp_schedule_delay: 500,
            otel_bsp_max_queue_size: 2048,
            otel_bsp_max_export_batch_size: 1024,
            rust_log: "info".to_owned(),
            span_events_level: "warn".to_owned(),
            log_format: LogFormat::Text,
            metrics_enabled: true,
            metrics_exemplars: true,
            service_version: None,
        }
    }

    /// Reads the variables over the defaults for `service_name` and validates
    /// them (and those the exporters read); the error names the variable.
    pub fn from_env(service_name: &str) -> anyhow::Result<Self> {
        let settings: Self =
            Figment::from(Serialized::defaults(Self::with_service_name(service_name)))
                .merge(Env::raw().only(Self::ENV_VARS))
                .extract()
                .map_err(|e| anyhow::anyhow!("invalid setting: {e}"))?;
        settings.validate().map_err(anyhow::Error::msg)?;
        for (var, valid, allowed) in CHECKED {
            // Empty is unset, as the specification says.
            let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) else {
                continue;
            };
            if !value.to_str().is_some_and(valid) {
                // A header list may hold a secret: its value is never shown.
                let shown = match var.ends_with("_HEADERS") {
                    true => String::new(),
                    false => format!("={value:?}"),
                };
                anyhow::bail!("invalid setting: {var}{shown} is not valid; allowed: {allowed}");
            }
        }
        Ok(settings)
    }

    /// The environment variables these settings are read from.
    pub const ENV_VARS: &'static [&'static str] = &[
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_EXPORTER",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "RUST_LOG",
        "SPAN_EVENTS_LEVEL",
        "LOG_FORMAT",
        "METRICS_ENABLED",
        "METRICS_EXEMPLARS",
    ];

    /// `SPAN_EVENTS_LEVEL` as a level filter.
    pub fn span_events(&self) -> Result<LevelFilter, String> {
        self.span_events_level.parse().map_err(|_| {
            format!(
                "SPAN_EVENTS_LEVEL={:?} is not valid; allowed: off, error, warn, info, debug, trace",
                self.span_events_level
            )
        })
    }

    /// Checks what serde cannot; the error names the variable and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if self.otel_service_name.trim().is_empty() {
            return Err("OTEL_SERVICE_NAME is empty; allowed: a non-empty service name".into());
        }
        self.span_events()?;
        if self.otel_bsp_max_queue_size == 0 || self.otel_bsp_max_export_batch_size == 0 {
            return Err(
                "OTEL_BSP_MAX_QUEUE_SIZE and OTEL_BSP_MAX_EXPORT_BATCH_SIZE must be above 0".into(),
            );
        }
        tracing_subscriber::EnvFilter::try_new(&self.rust_log).map_err(|e| {
            format!(
                "RUST_LOG={:?} is not valid ({e}); allowed: EnvFilter directives such as `info` or `info,business_logic=debug`",
                self.rust_log
            )
        })?;
        Ok(())
    }
}

/// Plain HTTP only: in the mesh the sidecar adds mTLS, so the binaries
/// carry no TLS stack.
fn http_url(value: &str) -> bool {
    value.starts_with("http://") && value.parse::<reqwest::Url>().is_ok()
}

/// The specification's format (W3C Baggage without properties);
/// opentelemetry-otlp skips a malformed pair silently.
fn headers(value: &str) -> bool {
    let valid = |pair: &str| {
        let decode = percent_encoding::percent_decode_str;
        let Some((key, value)) = pair.split_once('=') else {
            return false;
        };
        let (Ok(key), Ok(value)) = (
            decode(key.trim()).decode_utf8(),
            decode(value.trim()).decode_utf8(),
        ) else {
            return false;
        };
        reqwest::header::HeaderName::try_from(key.as_ref()).is_ok()
            && reqwest::header::HeaderValue::try_from(value.as_ref()).is_ok()
    };
    value.split(',').filter(|p| !p.trim().is_empty()).all(valid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::result_large_err)] // figment::Jail's
    use super::*;

    #[test]
    fn endpoints_must_be_http_urls() {
        assert!(http_url("http://jaeger:4318/custom/path"));
        for bad in ["jaeger:4318", "https://jaeger:4318", "http://"] {
            assert!(!http_url(bad), "{bad}");
        }
    }

    #[test]
    fn headers_are_key_value_pairs_percent_encoded() {
        assert!(headers("api-key=secret%20value, x-tenant = demo ,"));
        for bad in ["novalue", "bad header=1", "k=%0A", "k=%FF"] {
            assert!(!headers(bad), "{bad}");
        }
    }

    #[test]
    fn a_malformed_exporter_variable_is_named_and_a_header_value_never_shown() {
        let load = |var: &str, value: &str| {
            let mut out = String::new();
            figment::Jail::expect_with(|jail| {
                jail.clear_env();
                jail.set_env(var, value);
                out = TelemetrySettings::from_env("svc").unwrap_err().to_string();
                Ok(())
            });
            out
        };
        let e = load("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "jaeger:4318");
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=\"jaeger:4318\""),
            "{e}"
        );
        let e = load("OTEL_EXPORTER_OTLP_HEADERS", "api-key secret");
        assert!(e.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
