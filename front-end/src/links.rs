//! Links from a page to its trace in Jaeger and its log lines in Grafana.

use serde_json::json;

/// Builds the observability links of a trace.
#[derive(Debug, Clone)]
pub struct Links {
    jaeger_ui_url: String,
    grafana_url: String,
}

/// The Loki query that finds a trace's log lines: every line of the app's
/// namespace that mentions the trace id (both services log it on each line).
pub const LOKI_SELECTOR: &str = r#"{namespace="demo-app"}"#;

/// The Grafana data source uid of Loki, as provisioned in `istio-add-ons/`.
pub const LOKI_DATASOURCE_UID: &str = "loki";

impl Links {
    pub fn new(jaeger_ui_url: &str, grafana_url: &str) -> Self {
        Self {
            jaeger_ui_url: jaeger_ui_url.trim_end_matches('/').to_owned(),
            grafana_url: grafana_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Jaeger's trace view.
    pub fn trace(&self, trace_id: &str) -> String {
        format!("{}/trace/{trace_id}", self.jaeger_ui_url)
    }

    /// Grafana Explore on Loki, filtered to the trace's log lines.
    pub fn logs(&self, trace_id: &str) -> String {
        let panes = json!({
            "logs": {
                "datasource": LOKI_DATASOURCE_UID,
                "queries": [{
                    "refId": "A",
                    "datasource": {"type": "loki", "uid": LOKI_DATASOURCE_UID},
                    "expr": format!("{LOKI_SELECTOR} |= \"{trace_id}\""),
                }],
                "range": {"from": "now-1h", "to": "now"},
            }
        });
        let mut url = match reqwest::Url::parse(&format!("{}/explore", self.grafana_url)) {
            Ok(url) => url,
            // Validated at start-up; unreachable in practice.
            Err(_) => return format!("{}/explore", self.grafana_url),
        };
        url.query_pairs_mut()
            .append_pair("schemaVersion", "1")
            .append_pair("orgId", "1")
            .append_pair("panes", &panes.to_string());
        url.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    #[test]
    fn the_trace_link_opens_jaeger_under_its_sub_path() {
        let links = Links::new(
            "http://localhost:8080/jaeger/",
            "http://localhost:8080/grafana",
        );
        assert_eq!(
            links.trace(TRACE),
            format!("http://localhost:8080/jaeger/trace/{TRACE}")
        );
    }

    #[test]
    fn the_logs_link_queries_loki_for_the_trace_id() {
        let links = Links::new("http://j", "http://localhost:8080/grafana");
        let url = reqwest::Url::parse(&links.logs(TRACE)).unwrap();
        assert_eq!(url.path(), "/grafana/explore");
        let panes = url.query_pairs().find(|(k, _)| k == "panes").unwrap().1;
        let panes: serde_json::Value = serde_json::from_str(&panes).unwrap();
        let query = &panes["logs"]["queries"][0];
        assert_eq!(query["datasource"]["uid"], "loki");
        assert_eq!(
            query["expr"],
            format!("{{namespace=\"demo-app\"}} |= \"{TRACE}\"")
        );
    }
}
