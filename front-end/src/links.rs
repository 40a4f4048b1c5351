//! Links from a page to its trace in Jaeger and its log lines in Grafana.
//! A link is shown only where it can work: the trace link while spans are
//! exported and `JAEGER_UI_URL` is set, the logs link when `GRAFANA_URL` is.
//! When the trace link leads to a Jaeger on this machine (`make jaeger`'s
//! port 16686, as under `make run`), the pages say how to start it, since
//! nothing listens there until one does.

use serde_json::json;
use telemetry::TracesExporter;

use crate::settings::Settings;

/// The Grafana data source uid of Loki, as provisioned in `istio-add-ons/`.
pub const LOKI_DATASOURCE_UID: &str = "loki";

/// The port of Jaeger's UI as `make jaeger` publishes it.
pub const JAEGER_UI_PORT: u16 = 16686;

/// Builds the observability links of a trace; kept in the application state.
#[derive(Debug, Clone, Default)]
pub struct Links {
    jaeger_ui_url: Option<String>,
    jaeger_on_this_machine: bool,
    grafana_url: Option<String>,
    loki_selector: String,
}

/// The trace of a request and where to look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLinks {
    pub trace_id: String,
    /// Jaeger's trace view, if spans go somewhere Jaeger reads.
    pub jaeger_url: Option<String>,
    /// The trace view is on this machine's Jaeger (`make jaeger`): the page
    /// says how to start it.
    pub jaeger_on_this_machine: bool,
    /// Grafana Explore on the trace's log lines, if Grafana is configured.
    pub logs_url: Option<String>,
}

fn non_empty(url: &str) -> Option<String> {
    let url = url.trim_end_matches('/');
    (!url.is_empty()).then(|| url.to_owned())
}

/// Whether `url` is Jaeger's UI on this machine, where `make jaeger` puts it.
fn on_this_machine(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|url| {
        matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
            && url.port_or_known_default() == Some(JAEGER_UI_PORT)
    })
}

impl Links {
    pub fn new(settings: &Settings) -> Self {
        let exported = settings.telemetry.otel_traces_exporter != TracesExporter::None;
        let jaeger_ui_url = non_empty(&settings.jaeger_ui_url).filter(|_| exported);
        Self {
            jaeger_on_this_machine: jaeger_ui_url.as_deref().is_some_and(on_this_machine),
            jaeger_ui_url,
            grafana_url: non_empty(&settings.grafana_url),
            loki_selector: settings.loki_selector.trim().to_owned(),
        }
    }

    /// Whether pages link to their trace in Jaeger.
    pub fn has_traces(&self) -> bool {
        self.jaeger_ui_url.is_some()
    }

    /// Whether pages link to their log lines in Grafana.
    pub fn has_logs(&self) -> bool {
        self.grafana_url.is_some()
    }

    /// Whether the trace links lead to a Jaeger on this machine, which
    /// `make jaeger` starts.
    pub fn jaeger_on_this_machine(&self) -> bool {
        self.jaeger_on_this_machine
    }

    /// The current request's trace id with its links, if it has a valid trace.
    pub fn for_current_trace(&self) -> Option<TraceLinks> {
        let trace_id = telemetry::current_trace_id()?;
        Some(TraceLinks {
            jaeger_url: self.trace(&trace_id),
            jaeger_on_this_machine: self.jaeger_on_this_machine,
            logs_url: self.logs(&trace_id),
            trace_id,
        })
    }

    /// Jaeger's trace view.
    pub fn trace(&self, trace_id: &str) -> Option<String> {
        let base = self.jaeger_ui_url.as_ref()?;
        Some(format!("{base}/trace/{trace_id}"))
    }

    /// Grafana Explore on Loki, filtered to the trace's log lines: every
    /// line the selector finds that mentions the trace id (both services
    /// log it on each line).
    pub fn logs(&self, trace_id: &str) -> Option<String> {
        let base = self.grafana_url.as_ref()?;
        let panes = json!({
            "logs": {
                "datasource": LOKI_DATASOURCE_UID,
                "queries": [{
                    "refId": "A",
                    "datasource": {"type": "loki", "uid": LOKI_DATASOURCE_UID},
                    "expr": format!("{} |= \"{trace_id}\"", self.loki_selector),
                }],
                "range": {"from": "now-1h", "to": "now"},
            }
        });
        // Validated at start-up, so the URL parses.
        let mut url = reqwest::Url::parse(&format!("{base}/explore")).ok()?;
        url.query_pairs_mut()
            .append_pair("schemaVersion", "1")
            .append_pair("orgId", "1")
            .append_pair("panes", &panes.to_string());
        Some(url.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    fn links(vars: &[(&str, &str)], exporter: TracesExporter) -> Links {
        let mut settings = Settings::default();
        settings.telemetry.otel_traces_exporter = exporter;
        for (var, value) in vars {
            match *var {
                "JAEGER_UI_URL" => settings.jaeger_ui_url = (*value).into(),
                "GRAFANA_URL" => settings.grafana_url = (*value).into(),
                "LOKI_SELECTOR" => settings.loki_selector = (*value).into(),
                other => panic!("{other}"),
            }
        }
        Links::new(&settings)
    }

    #[test]
    fn the_trace_link_opens_jaeger_under_its_sub_path() {
        let links = links(
            &[("JAEGER_UI_URL", "http://localhost:8080/jaeger/")],
            TracesExporter::Zipkin,
        );
        assert_eq!(
            links.trace(TRACE).as_deref(),
            Some(format!("http://localhost:8080/jaeger/trace/{TRACE}").as_str())
        );
    }

    #[test]
    fn no_trace_link_without_export_or_without_a_jaeger_url() {
        assert_eq!(links(&[], TracesExporter::None).trace(TRACE), None);
        assert_eq!(
            links(&[("JAEGER_UI_URL", "")], TracesExporter::Zipkin).trace(TRACE),
            None
        );
        assert!(links(&[], TracesExporter::Otlp).trace(TRACE).is_some());
    }

    #[test]
    fn only_a_jaeger_on_this_machine_gets_the_make_jaeger_hint() {
        for (url, local) in [
            ("http://localhost:16686", true),
            ("http://127.0.0.1:16686/", true),
            ("http://[::1]:16686", true),
            ("http://localhost:8080/jaeger", false),
            ("http://jaeger.example:16686", false),
        ] {
            let links = links(&[("JAEGER_UI_URL", url)], TracesExporter::Zipkin);
            assert_eq!(links.jaeger_on_this_machine(), local, "{url}");
        }
        // The defaults are make run's: Jaeger on this machine, no Grafana.
        let defaults = Links::new(&Settings::default());
        assert!(defaults.jaeger_on_this_machine() && !defaults.has_logs());
        // No trace link, no hint.
        let links = links(
            &[("JAEGER_UI_URL", "http://localhost:16686")],
            TracesExporter::None,
        );
        assert!(!links.has_traces() && !links.jaeger_on_this_machine());
    }

    #[test]
    fn no_logs_link_without_a_grafana_url() {
        assert_eq!(links(&[], TracesExporter::Zipkin).logs(TRACE), None);
    }

    #[test]
    fn the_logs_link_queries_loki_for_the_trace_id_with_the_configured_selector() {
        let links = links(
            &[
                ("GRAFANA_URL", "http://localhost:8080/grafana"),
                ("LOKI_SELECTOR", r#"{namespace="shop"}"#),
            ],
            TracesExporter::Zipkin,
        );
        let url = reqwest::Url::parse(&links.logs(TRACE).unwrap()).unwrap();
        assert_eq!(url.path(), "/grafana/explore");
        let panes = url.query_pairs().find(|(k, _)| k == "panes").unwrap().1;
        let panes: serde_json::Value = serde_json::from_str(&panes).unwrap();
        let query = &panes["logs"]["queries"][0];
        assert_eq!(query["datasource"]["uid"], "loki");
        assert_eq!(
            query["expr"],
            format!("{{namespace=\"shop\"}} |= \"{TRACE}\"")
        );
    }
}
