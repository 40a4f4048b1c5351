//! Check 6: Jaeger's Monitor tab has call rates, from its span metrics, for both
//! services' server spans.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Answer, BUSINESS_LOGIC, Context, FRONT_END, Outcome};

/// Jaeger's metrics API `GET /api/metrics/calls`: a `MetricFamily` as
/// gogo/jsonpb writes it (jaegertracing/jaeger
/// internal/proto/metrics/openmetrics.proto; the answers jaeger-ui's
/// packages/jaeger-ui/src/reducers/metrics.mock.js records). A point's
/// `doubleValue` is a number, a string (`"NaN"`) or null.
#[derive(Debug, Deserialize)]
pub struct MetricFamily {
    #[expect(
        dead_code,
        reason = "required: an answer without it is not a MetricFamily"
    )]
    pub name: String,
    #[serde(default)]
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub labels: Vec<Label>,
    #[serde(default)]
    pub metric_points: Vec<MetricPoint>,
}

#[derive(Debug, Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricPoint {
    pub gauge_value: Option<GaugeValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GaugeValue {
    pub double_value: Option<Double>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Double {
    Number(f64),
    Text(String),
}

impl Metric {
    fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map_or("", |l| l.value.as_str())
    }

    /// The latest finite rate (0 when every point is NaN or missing).
    fn latest(&self) -> f64 {
        self.metric_points
            .iter()
            .filter_map(|p| match p.gauge_value.as_ref()?.double_value.as_ref()? {
                Double::Number(v) => Some(*v),
                Double::Text(t) => t.parse().ok(),
            })
            .rfind(|v| v.is_finite())
            .unwrap_or(0.0)
    }
}

pub fn run(cx: &mut Context) -> Outcome {
    // The query Jaeger's UI sends: the last ten minutes, one step a minute.
    cx.poll.until_ok(|| {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string();
        let answer = cx.get(
            "/jaeger/api/metrics/calls",
            &[
                ("service", FRONT_END),
                ("service", BUSINESS_LOGIC),
                ("groupByOperation", "true"),
                ("spanKind", "server"),
                ("endTs", &end),
                ("lookback", "600000"),
                ("step", "60000"),
                ("ratePer", "600000"),
            ],
        );
        judge(&answer)
    })
}

/// Call rates for both services' server spans.
pub fn judge(answer: &Answer<MetricFamily>) -> Outcome {
    let jaeger_logs = "kubectl -n istio-system logs deploy/jaeger --tail 30";
    let family = match (&answer.body, answer.status) {
        (Ok(family), 200) => family,
        (body, status) => {
            let message = body.as_ref().err().map_or("", |p| p.text());
            return match status {
                501 => Outcome::fail(
                    format!("Jaeger's metrics API: 501 {message}"),
                    "Jaeger has no metrics backend: jaeger_query.storage.metrics and jaeger_storage.metric_backends \
                     (istio-add-ons/jaeger.yaml) are not in the running configuration",
                    &[
                        "kubectl -n istio-system get configmap jaeger -o yaml | grep -n -A4 metric",
                        "make create-cluster",
                    ],
                ),
                404 => Outcome::fail(
                    format!("Jaeger's metrics API: 404 at /jaeger/api/metrics/calls {message}"),
                    "the Jaeger at /jaeger has no metrics API (another version or base path than istio-add-ons/jaeger.yaml)",
                    &["kubectl -n istio-system get deploy jaeger -o wide"],
                ),
                _ => Outcome::fail(
                    format!("Jaeger's metrics API: {status} {message}"),
                    "Jaeger cannot read its span metrics back from Prometheus (metric_backends' endpoint)",
                    &[jaeger_logs, "kubectl -n istio-system get svc prometheus"],
                ),
            };
        }
    };
    // Per service: each operation's latest rate.
    let mut services: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for metric in &family.metrics {
        services
            .entry(metric.label("service_name"))
            .or_default()
            .insert(metric.label("operation"), metric.latest());
    }
    let missing: Vec<&str> = [FRONT_END, BUSINESS_LOGIC]
        .into_iter()
        .filter(|s| services.get(s).is_none_or(BTreeMap::is_empty))
        .collect();
    if !missing.is_empty() {
        let (cause, look): (&str, &[&str]) = if services.is_empty() {
            (
                "no span metrics at all: Jaeger's traces pipeline does not feed the spanmetrics connector, \
                 or Prometheus does not scrape its exporter (job jaeger-span-metrics); \
                 they appear within a minute of the first pages",
                &[
                    "open http://localhost:8080/prometheus/targets   # the Jaeger span metrics target is up",
                    jaeger_logs,
                ],
            )
        } else {
            (
                "span metrics exist, but not for these services: their server spans do not reach Jaeger \
                 (see 2. Jaeger), or their service.name differs",
                &[jaeger_logs],
            )
        };
        let has = if services.is_empty() {
            "none".to_owned()
        } else {
            services.keys().copied().collect::<Vec<_>>().join(", ")
        };
        return Outcome::fail(
            format!(
                "Jaeger's Monitor tab has no call rates for {} (it has: {has})",
                missing.join(" and ")
            ),
            cause,
            look,
        );
    }
    let describe = |service: &str| {
        let operations = &services[service];
        let rate: f64 = operations.values().sum();
        format!(
            "{service} ({} operation{}, {rate:.2} req/s)",
            operations.len(),
            if operations.len() == 1 { "" } else { "s" }
        )
    };
    Outcome::pass(format!(
        "span metrics in Jaeger's Monitor tab: {} and {}",
        describe(FRONT_END),
        describe(BUSINESS_LOGIC)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testdata::judge_each;

    #[test]
    fn call_rates_of_both_services_pass_and_each_gap_names_its_part() {
        #[rustfmt::skip]
        let cases: [(&str, u16, bool, &[&str]); 5] = [
            ("jaeger-metrics/calls.json", 200, true, &["span metrics in Jaeger's Monitor tab: front-end (2 operations, 0.10 req/s) and business-logic (1 operation, 0.05 req/s)"]),
            ("jaeger-metrics/calls-empty.json", 200, false, &["no call rates for front-end and business-logic (it has: none)", "spanmetrics connector", "/prometheus/targets"]),
            ("jaeger-metrics/calls-other-services.json", 200, false, &["no call rates for front-end and business-logic (it has: checkoutservice)", "their service.name differs"]),
            ("jaeger-metrics/disabled.json", 501, false, &["Jaeger's metrics API: 501 metrics querying is currently disabled", "jaeger_query.storage.metrics", "kubectl -n istio-system get configmap jaeger -o yaml"]),
            ("jaeger-metrics/disabled.json", 500, false, &["metric_backends' endpoint"]),
        ];
        judge_each(&cases, judge);
    }
}
