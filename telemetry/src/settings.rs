//! The telemetry part of each service's settings, read from the standard
//! OpenTelemetry variables (`OTEL_*`) plus `RUST_LOG`, `LOG_FORMAT`,
//! `METRICS_ENABLED` and `METRICS_EXEMPLARS`.

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};

/// Where spans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TracesExporter {
    /// Zipkin v2 JSON over HTTP (Jaeger's and Istio's Zipkin receiver).
    Zipkin,
    /// OTLP over HTTP/protobuf (`/v1/traces`).
    Otlp,
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
    /// `OTEL_TRACES_EXPORTER`: `zipkin`, `otlp` or `none`.
    pub otel_traces_exporter: TracesExporter,
    /// `OTEL_EXPORTER_ZIPKIN_ENDPOINT`: full http:// URL of the Zipkin v2 spans endpoint.
    pub otel_exporter_zipkin_endpoint: String,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: base URL of an OTLP/HTTP receiver (`/v1/traces` is appended).
    pub otel_exporter_otlp_endpoint: String,
    /// `RUST_LOG`: an `EnvFilter` directive list.
    pub rust_log: String,
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
            otel_traces_exporter: TracesExporter::Zipkin,
            otel_exporter_zipkin_endpoint: "http://localhost:9411/api/v2/spans".to_owned(),
            otel_exporter_otlp_endpoint: "http://localhost:4318".to_owned(),
            rust_log: "info".to_owned(),
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
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "RUST_LOG",
        "LOG_FORMAT",
        "METRICS_ENABLED",
        "METRICS_EXEMPLARS",
    ];

    /// Checks what serde cannot: endpoints must be http(s) URLs, the name non-empty.
    pub fn validate(&self) -> Result<(), String> {
        if self.otel_service_name.trim().is_empty() {
            return Err("OTEL_SERVICE_NAME is empty; allowed: a non-empty service name".into());
        }
        for (var, value) in [
            (
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                &self.otel_exporter_zipkin_endpoint,
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &self.otel_exporter_otlp_endpoint,
            ),
        ] {
            // Plain HTTP only: in the mesh the sidecar adds mTLS, so the
            // binaries carry no TLS stack.
            if !value.starts_with("http://") || value.parse::<reqwest::Url>().is_err() {
                return Err(format!(
                    "{var}={value:?} is not valid; allowed: an http:// URL"
                ));
            }
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
