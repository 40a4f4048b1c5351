//! Settings, read once from the environment and validated. Nothing else in
//! the service reads environment variables. Plain data: this module uses no
//! other module of the service (the lib's module-graph test keeps it so).

use std::time::Duration;

use contract::MAX_DELAY_MS;
use serde::{Deserialize, Serialize};
use service_kit::{ServerSettings, ServiceSettings, redact};
use telemetry::TelemetrySettings;

/// The default `OTEL_SERVICE_NAME`.
pub const SERVICE_NAME: &str = contract::routes::business_logic::SERVICE_NAME;

/// The default `SERVICE_VERSION`.
pub const DEFAULT_VERSION: &str = "v1";

/// The default `PORT`.
pub const DEFAULT_PORT: u16 = contract::routes::business_logic::DEFAULT_PORT;

/// Everything the service can be told; field names are the environment
/// variables, lower-cased.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// `DATABASE_URL`: `sqlite://FILE` (created if missing) or `postgres://…`.
    pub database_url: String,
    /// `DATABASE_MAX_CONNECTIONS`: connection pool size.
    pub database_max_connections: u32,
    /// `SLOW_ENDPOINT_DELAY_MS`: default delay of `/slow-endpoint`.
    pub slow_endpoint_delay_ms: u64,
    /// `SERVICE_VERSION`: this deployment's version (`v1`, `v2`): in the
    /// answers, on the spans (`service.version`) and on the metrics (`version`).
    pub service_version: String,
    /// `REGRESSION_EXTRA_QUERY`: the canary regression's extra unindexed lookup (`crate::canary`).
    pub regression_extra_query: bool,
    /// `REGRESSION_ERROR_RATE`: the canary regression's share of 500s, 0 to 1 (`crate::canary`).
    pub regression_error_rate: f64,
    /// `HOST`, `PORT`, `SHUTDOWN_GRACE_PERIOD_SECS` (read by the service kit).
    #[serde(skip, default = "default_server")]
    pub server: ServerSettings,
    /// `OTEL_*`, `RUST_LOG`, `LOG_FORMAT`, `METRICS_ENABLED`, read by the
    /// telemetry crate (serde's `flatten` would lose the variable names in
    /// error messages).
    #[serde(skip)]
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://business-logic.db".into(),
            database_max_connections: 10,
            slow_endpoint_delay_ms: 3000,
            service_version: DEFAULT_VERSION.into(),
            regression_extra_query: false,
            regression_error_rate: 0.0,
            server: default_server(),
            telemetry: TelemetrySettings::with_service_name(SERVICE_NAME),
        }
    }
}

fn default_server() -> ServerSettings {
    ServerSettings::with_port(DEFAULT_PORT)
}

const ENV_VARS: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "SLOW_ENDPOINT_DELAY_MS",
    "SERVICE_VERSION",
    "REGRESSION_EXTRA_QUERY",
    "REGRESSION_ERROR_RATE",
];

impl Settings {
    /// Reads the environment over the defaults and validates the result. The
    /// error names the variable, the value and what is allowed.
    pub fn from_env() -> anyhow::Result<Self> {
        service_kit::load_settings()
    }

    fn check(&self) -> Result<(), String> {
        if self.slow_endpoint_delay_ms > MAX_DELAY_MS {
            return Err(format!(
                "SLOW_ENDPOINT_DELAY_MS={} is out of range; allowed: 0 to {MAX_DELAY_MS}",
                self.slow_endpoint_delay_ms
            ));
        }
        if !(1..=100).contains(&self.database_max_connections) {
            return Err(format!(
                "DATABASE_MAX_CONNECTIONS={} is out of range; allowed: 1 to 100",
                self.database_max_connections
            ));
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(format!(
                "DATABASE_URL={:?} is not supported; allowed: sqlite://FILE or postgres://USER:PASSWORD@HOST:PORT/DB",
                redact(&self.database_url)
            ));
        }
        let version = &self.service_version;
        if version.is_empty()
            || version.len() > 63
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(format!(
                "SERVICE_VERSION={version:?} is not valid; allowed: 1 to 63 letters, digits, '.', '_' or '-', like v2"
            ));
        }
        self.regression().validate()
    }

    /// The canary regression's knobs (`crate::canary`).
    pub fn regression(&self) -> Regression {
        Regression {
            extra_query: self.regression_extra_query,
            error_rate: self.regression_error_rate,
        }
    }

    /// The default delay of the slow endpoint.
    pub fn slow_delay(&self) -> Duration {
        Duration::from_millis(self.slow_endpoint_delay_ms)
    }
}

impl ServiceSettings for Settings {
    const SERVICE_NAME: &'static str = SERVICE_NAME;
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    const ENV_VARS: &'static [&'static str] = ENV_VARS;

    fn server(&self) -> &ServerSettings {
        &self.server
    }

    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }

    fn set_common(&mut self, server: ServerSettings, mut telemetry: TelemetrySettings) {
        telemetry.service_version = Some(self.service_version.clone());
        self.server = server;
        self.telemetry = telemetry;
    }

    fn validate(&self) -> Result<(), String> {
        self.check()
    }
}

/// The canary regression's knobs, as read (what they do: `crate::canary`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Regression {
    /// `REGRESSION_EXTRA_QUERY`: the unindexed extra lookup on every fast request.
    pub extra_query: bool,
    /// `REGRESSION_ERROR_RATE`: share (0 to 1) of fast requests answered with a 500.
    pub error_rate: f64,
}

impl Regression {
    /// Whether any knob is on.
    pub fn is_active(&self) -> bool {
        self.extra_query || self.error_rate > 0.0
    }

    /// Checks the error rate; the message names the variable, the value and
    /// what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "REGRESSION_ERROR_RATE={} is out of range; allowed: 0 to 1 (0.05 fails one request in twenty)",
                self.error_rate
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, String> {
        service_kit::settings::with_env(vars, Settings::from_env)
    }

    #[test]
    fn defaults_need_no_configuration() {
        let s = load(&[]).expect("defaults are valid");
        assert_eq!(s.server.port, 8081);
        assert_eq!(s.slow_endpoint_delay_ms, 3000);
        assert_eq!(s.database_url, "sqlite://business-logic.db");
        assert_eq!(s.telemetry.otel_service_name, "business-logic");
        assert_eq!(s.service_version, "v1");
        assert_eq!(s.telemetry.service_version.as_deref(), Some("v1"));
        assert!(!s.regression().is_active());
    }

    #[test]
    fn the_canary_settings_are_read_and_checked() {
        let s = load(&[
            ("SERVICE_VERSION", "v2"),
            ("REGRESSION_EXTRA_QUERY", "true"),
            ("REGRESSION_ERROR_RATE", "0.05"),
        ])
        .expect("valid");
        assert_eq!(s.telemetry.service_version.as_deref(), Some("v2"));
        assert_eq!(
            s.regression(),
            Regression {
                extra_query: true,
                error_rate: 0.05
            }
        );

        let e = load(&[("REGRESSION_ERROR_RATE", "5")]).unwrap_err();
        assert!(e.contains("REGRESSION_ERROR_RATE=5"), "{e}");
        let e = load(&[("REGRESSION_EXTRA_QUERY", "sometimes")]).unwrap_err();
        assert!(e.contains("REGRESSION_EXTRA_QUERY"), "{e}");
        let e = load(&[("SERVICE_VERSION", "v2 beta")]).unwrap_err();
        assert!(e.contains("SERVICE_VERSION=\"v2 beta\""), "{e}");
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = load(&[
            ("PORT", "9000"),
            ("SLOW_ENDPOINT_DELAY_MS", "250"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://jaeger:4318/v1/traces",
            ),
            ("LOG_FORMAT", "json"),
            ("METRICS_ENABLED", "false"),
        ])
        .expect("valid");
        assert_eq!(s.server.port, 9000);
        assert_eq!(s.slow_endpoint_delay_ms, 250);
        assert_eq!(
            s.telemetry.otel_traces_exporter,
            telemetry::TracesExporter::Zipkin
        );
        assert_eq!(s.telemetry.log_format, telemetry::LogFormat::Json);
        assert!(!s.telemetry.metrics_enabled);
    }

    #[test]
    fn a_bad_value_names_the_variable_the_value_and_what_is_allowed() {
        let e = load(&[("SLOW_ENDPOINT_DELAY_MS", "999999")]).unwrap_err();
        assert!(e.contains("SLOW_ENDPOINT_DELAY_MS=999999"), "{e}");
        assert!(e.contains("allowed: 0 to 60000"), "{e}");

        let e = load(&[("SLOW_ENDPOINT_DELAY_MS", "soon")]).unwrap_err();
        assert!(e.contains("SLOW_ENDPOINT_DELAY_MS"), "{e}");
        assert!(e.contains("soon"), "{e}");

        let e = load(&[("OTEL_TRACES_EXPORTER", "jaeger")]).unwrap_err();
        assert!(e.contains("OTEL_TRACES_EXPORTER"), "{e}");
        assert!(e.contains("zipkin"), "{e}");

        let e = load(&[("DATABASE_URL", "mysql://root:hunter2@db/x")]).unwrap_err();
        assert!(e.contains("DATABASE_URL"), "{e}");
        assert!(!e.contains("hunter2"), "password leaked: {e}");

        let e = load(&[("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "zipkin:9411")]).unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_ZIPKIN_ENDPOINT"), "{e}");

        // The batch processor alone would ignore these and use its defaults.
        let e = load(&[("OTEL_BSP_MAX_QUEUE_SIZE", "lots")]).unwrap_err();
        assert!(e.contains("OTEL_BSP_MAX_QUEUE_SIZE"), "{e}");
        let e = load(&[("SPAN_EVENTS_LEVEL", "loud")]).unwrap_err();
        assert!(e.contains("SPAN_EVENTS_LEVEL"), "{e}");
    }

    #[test]
    fn the_regression_is_off_by_default() {
        assert!(!Regression::default().is_active());
        assert!(Regression::default().validate().is_ok());
    }

    #[test]
    fn an_error_rate_outside_zero_to_one_is_refused() {
        for rate in [-0.1, 1.5, f64::NAN] {
            let e = Regression {
                error_rate: rate,
                ..Regression::default()
            }
            .validate()
            .unwrap_err();
            assert!(e.contains("REGRESSION_ERROR_RATE"), "{e}");
            assert!(e.contains("allowed: 0 to 1"), "{e}");
        }
    }
}
