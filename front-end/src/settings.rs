//! Settings, read once from the environment and validated. Nothing else in
//! the service reads environment variables.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::{ServerSettings, ServiceSettings};
use telemetry::TelemetrySettings;

/// The default `OTEL_SERVICE_NAME`.
pub const SERVICE_NAME: &str = contract::routes::front_end::SERVICE_NAME;

/// The default `PORT`.
pub const DEFAULT_PORT: u16 = contract::routes::front_end::DEFAULT_PORT;

/// The longest page timeout, in milliseconds.
pub const MAX_PAGE_TIMEOUT_MS: u64 = 300_000;

/// The default `LOKI_SELECTOR`: the namespace the chart installs into.
pub const DEFAULT_LOKI_SELECTOR: &str = r#"{namespace="demo-app"}"#;

/// Everything the service can be told; field names are the environment
/// variables, lower-cased.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// `BUSINESS_LOGIC_URL`: base URL of the business-logic service.
    pub business_logic_url: String,
    /// `FAST_PAGE_TIMEOUT_MS`: how long the fast page waits for business-logic.
    pub fast_page_timeout_ms: u64,
    /// `SLOW_PAGE_TIMEOUT_MS`: how long the slow page waits (longer than the slow delay).
    pub slow_page_timeout_ms: u64,
    /// `JAEGER_UI_URL`: where the trace links point; empty: no trace link.
    /// Shown only while spans are exported (`OTEL_TRACES_EXPORTER` not `none`).
    pub jaeger_ui_url: String,
    /// `GRAFANA_URL`: where the log links point (Grafana Explore, Loki data
    /// source `loki`); unset or empty: no log link.
    pub grafana_url: String,
    /// `LOKI_SELECTOR`: the Loki stream selector of the services' log lines.
    pub loki_selector: String,
    /// `HOST`, `PORT`, `SHUTDOWN_GRACE_PERIOD_SECS` (read by the service kit).
    #[serde(skip, default = "default_server")]
    pub server: ServerSettings,
    /// `OTEL_*`, `RUST_LOG`, `LOG_FORMAT`, `METRICS_ENABLED` (read by the telemetry crate).
    #[serde(skip)]
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            business_logic_url: format!(
                "http://127.0.0.1:{}",
                contract::routes::business_logic::DEFAULT_PORT
            ),
            fast_page_timeout_ms: 2_000,
            slow_page_timeout_ms: 10_000,
            jaeger_ui_url: "http://localhost:16686".into(),
            grafana_url: String::new(),
            loki_selector: DEFAULT_LOKI_SELECTOR.into(),
            server: default_server(),
            telemetry: TelemetrySettings::with_service_name(SERVICE_NAME),
        }
    }
}

fn default_server() -> ServerSettings {
    ServerSettings::with_port(DEFAULT_PORT)
}

const ENV_VARS: &[&str] = &[
    "BUSINESS_LOGIC_URL",
    "FAST_PAGE_TIMEOUT_MS",
    "SLOW_PAGE_TIMEOUT_MS",
    "JAEGER_UI_URL",
    "GRAFANA_URL",
];

/// Read verbatim: a Loki selector looks like a map to figment.
const TEXT_VARS: &[&str] = &["LOKI_SELECTOR"];

impl Settings {
    /// Reads the environment over the defaults and validates the result. The
    /// error names the variable, the value and what is allowed.
    pub fn from_env() -> anyhow::Result<Self> {
        service_kit::load_settings()
    }

    fn check(&self) -> Result<(), String> {
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
            let ok = value.is_empty()
                || ((value.starts_with("http://") || value.starts_with("https://"))
                    && reqwest::Url::parse(value).is_ok());
            if !ok {
                return Err(format!(
                    "{var}={value:?} is not valid; allowed: an http:// or https:// URL, or empty for no link"
                ));
            }
        }
        let selector = self.loki_selector.trim();
        if !(selector.starts_with('{') && selector.ends_with('}') && selector.len() > 2) {
            return Err(format!(
                "LOKI_SELECTOR={:?} is not valid; allowed: a Loki stream selector such as {DEFAULT_LOKI_SELECTOR}",
                self.loki_selector
            ));
        }
        for (var, value) in [
            ("FAST_PAGE_TIMEOUT_MS", self.fast_page_timeout_ms),
            ("SLOW_PAGE_TIMEOUT_MS", self.slow_page_timeout_ms),
        ] {
            if !(1..=MAX_PAGE_TIMEOUT_MS).contains(&value) {
                return Err(format!(
                    "{var}={value} is out of range; allowed: 1 to {MAX_PAGE_TIMEOUT_MS}"
                ));
            }
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

impl ServiceSettings for Settings {
    const SERVICE_NAME: &'static str = SERVICE_NAME;
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    const ENV_VARS: &'static [&'static str] = ENV_VARS;
    const TEXT_VARS: &'static [&'static str] = TEXT_VARS;

    fn server(&self) -> &ServerSettings {
        &self.server
    }

    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }

    fn set_common(&mut self, server: ServerSettings, telemetry: TelemetrySettings) {
        self.server = server;
        self.telemetry = telemetry;
    }

    fn validate(&self) -> Result<(), String> {
        self.check()
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
        assert_eq!(s.server.port, 8080);
        assert_eq!(
            s.grafana_url, "",
            "no Grafana link unless GRAFANA_URL is set"
        );
        assert_eq!(s.loki_selector, r#"{namespace="demo-app"}"#);
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
        let s = load(&[(
            "LOKI_SELECTOR",
            r#"{namespace="shop", app=~"front-end|business-logic"}"#,
        )])
        .expect("a selector is text, not a map");
        assert_eq!(
            s.loki_selector,
            r#"{namespace="shop", app=~"front-end|business-logic"}"#
        );
        let e = load(&[("LOKI_SELECTOR", "namespace=demo")]).unwrap_err();
        assert!(e.contains("LOKI_SELECTOR=\"namespace=demo\""), "{e}");
        assert!(load(&[("JAEGER_UI_URL", ""), ("GRAFANA_URL", "")]).is_ok());
    }
}
