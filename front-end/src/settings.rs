//! Settings, read once from the environment and validated. Nothing else in
//! the service reads environment variables.

use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};
use telemetry::TelemetrySettings;

/// The default `OTEL_SERVICE_NAME`.
pub const SERVICE_NAME: &str = "front-end";

/// Everything the service can be told; field names are the environment
/// variables, lower-cased.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// `HOST`: address to listen on.
    pub host: String,
    /// `PORT`: port to listen on (0 picks a free one).
    pub port: u16,
    /// `BUSINESS_LOGIC_URL`: base URL of the business-logic service.
    pub business_logic_url: String,
    /// `FAST_PAGE_TIMEOUT_MS`: how long the fast page waits for business-logic.
    pub fast_page_timeout_ms: u64,
    /// `SLOW_PAGE_TIMEOUT_MS`: how long the slow page waits (longer than the slow delay).
    pub slow_page_timeout_ms: u64,
    /// `JAEGER_UI_URL`: where the trace links point.
    pub jaeger_ui_url: String,
    /// `GRAFANA_URL`: where the log links point (Grafana Explore, Loki data source `loki`).
    pub grafana_url: String,
    /// `SHUTDOWN_GRACE_PERIOD_SECS`: how long in-flight requests may finish after SIGTERM.
    pub shutdown_grace_period_secs: u64,
    /// `OTEL_*`, `RUST_LOG`, `LOG_FORMAT`, `METRICS_ENABLED` (read by the telemetry crate).
    #[serde(skip)]
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            business_logic_url: "http://127.0.0.1:8081".into(),
            fast_page_timeout_ms: 2_000,
            slow_page_timeout_ms: 10_000,
            jaeger_ui_url: "http://localhost:16686".into(),
            grafana_url: "http://localhost:3000".into(),
            shutdown_grace_period_secs: 20,
            telemetry: TelemetrySettings::with_service_name(SERVICE_NAME),
        }
    }
}

const ENV_VARS: &[&str] = &[
    "HOST",
    "PORT",
    "BUSINESS_LOGIC_URL",
    "FAST_PAGE_TIMEOUT_MS",
    "SLOW_PAGE_TIMEOUT_MS",
    "JAEGER_UI_URL",
    "GRAFANA_URL",
    "SHUTDOWN_GRACE_PERIOD_SECS",
];

impl Settings {
    /// Reads the environment over the defaults and validates the result. The
    /// error names the variable, the value and what is allowed.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut settings: Self = Figment::from(Serialized::defaults(Self::default()))
            .merge(Env::raw().only(ENV_VARS))
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid setting: {e}"))?;
        settings.telemetry = TelemetrySettings::from_env(SERVICE_NAME)?;
        settings.validate().map_err(anyhow::Error::msg)?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), String> {
        let business_logic_ok = self.business_logic_url.starts_with("http://")
            && reqwest::Url::parse(&self.business_logic_url).is_ok();
        if !business_logic_ok {
            return Err(format!(
                "BUSINESS_LOGIC_URL={:?} is not valid; allowed: an http:// URL such as http://business-logic:8080",
                self.business_logic_url
            ));
        }
        for (var, value) in [
            ("JAEGER_UI_URL", &self.jaeger_ui_url),
            ("GRAFANA_URL", &self.grafana_url),
        ] {
            let ok = (value.starts_with("http://") || value.starts_with("https://"))
                && reqwest::Url::parse(value).is_ok();
            if !ok {
                return Err(format!(
                    "{var}={value:?} is not valid; allowed: an http:// or https:// URL"
                ));
            }
        }
        for (var, value) in [
            ("FAST_PAGE_TIMEOUT_MS", self.fast_page_timeout_ms),
            ("SLOW_PAGE_TIMEOUT_MS", self.slow_page_timeout_ms),
        ] {
            if !(1..=300_000).contains(&value) {
                return Err(format!(
                    "{var}={value} is out of range; allowed: 1 to 300000"
                ));
            }
        }
        if self.shutdown_grace_period_secs > 3600 {
            return Err(format!(
                "SHUTDOWN_GRACE_PERIOD_SECS={} is out of range; allowed: 0 to 3600",
                self.shutdown_grace_period_secs
            ));
        }
        Ok(())
    }

    pub fn fast_timeout(&self) -> Duration {
        Duration::from_millis(self.fast_page_timeout_ms)
    }

    pub fn slow_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_page_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    #[allow(clippy::result_large_err)] // figment::Jail's signature, not ours
    fn load(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let mut out = Err(String::new());
        Jail::expect_with(|jail| {
            jail.clear_env();
            for (k, v) in vars {
                jail.set_env(k, v);
            }
            out = Settings::from_env().map_err(|e| e.to_string());
            Ok(())
        });
        out
    }

    #[test]
    fn defaults_need_no_configuration() {
        let s = load(&[]).expect("defaults are valid");
        assert_eq!(s.port, 8080);
        assert_eq!(s.business_logic_url, "http://127.0.0.1:8081");
        assert_eq!(s.telemetry.otel_service_name, "front-end");
    }

    #[test]
    fn a_bad_value_names_the_variable_the_value_and_what_is_allowed() {
        let e = load(&[("BUSINESS_LOGIC_URL", "business-logic:8080")]).unwrap_err();
        assert!(
            e.contains("BUSINESS_LOGIC_URL=\"business-logic:8080\""),
            "{e}"
        );
        let e = load(&[("SLOW_PAGE_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(
            e.contains("SLOW_PAGE_TIMEOUT_MS=0") && e.contains("1 to 300000"),
            "{e}"
        );
        let e = load(&[("FAST_PAGE_TIMEOUT_MS", "fast")]).unwrap_err();
        assert!(
            e.contains("FAST_PAGE_TIMEOUT_MS") && e.contains("fast"),
            "{e}"
        );
        let e = load(&[("JAEGER_UI_URL", "jaeger")]).unwrap_err();
        assert!(e.contains("JAEGER_UI_URL"), "{e}");
    }
}
