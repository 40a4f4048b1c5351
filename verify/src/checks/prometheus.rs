//! Check 4: Prometheus has both services' request counters and Istio's metric of
//! the front-end → business-logic hop.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;

use super::{Answer, BUSINESS_LOGIC, Context, FRONT_END, Names, Outcome};

/// Prometheus' `GET /api/v1/query` (prometheus/prometheus
/// docs/querying/api.md, "Instant queries", "Instant vectors").
#[derive(Debug, Deserialize)]
pub struct Response {
    pub status: String,
    pub data: Data,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Data {
    pub result_type: String,
    pub result: Vec<Sample>,
}

#[derive(Debug, Deserialize)]
pub struct Sample {
    pub metric: HashMap<String, String>,
    /// `[<unix seconds>, "<value>"]`.
    pub value: (f64, String),
}

impl Response {
    /// Each sample above zero: the value of its label `label`.
    fn nonzero(&self, label: &str) -> Vec<&str> {
        self.data
            .result
            .iter()
            .filter(|s| s.value.1.parse::<f64>().is_ok_and(|v| v > 0.0))
            .map(|s| s.metric.get(label).map_or("", String::as_str))
            .collect()
    }
}

/// The query for the services' own request counters.
pub fn app_query(names: &Names) -> String {
    format!(
        "sum by (service) (http_requests_total{{namespace=\"{}\", service=~\"{FRONT_END}|{BUSINESS_LOGIC}\"}})",
        names.namespace
    )
}

/// The query for Istio's metric of the front-end → business-logic hop, by
/// app (the pods' `app` label), so every version counts: after `make
/// promote` the calls go to Deployment business-logic-v2, still app
/// business-logic.
pub fn istio_query(names: &Names) -> String {
    format!(
        "sum by (destination_version) (istio_requests_total{{source_app=\"{FRONT_END}\", destination_app=\"{BUSINESS_LOGIC}\", destination_workload_namespace=\"{}\"}})",
        names.namespace
    )
}

pub fn run(cx: &mut Context) -> Outcome {
    let path = "/grafana/api/datasources/proxy/uid/prometheus/api/v1/query";
    let (app, istio) = (app_query(&cx.names), istio_query(&cx.names));
    cx.poll.until_ok(|| {
        judge(
            &cx.get(path, &[("query", &app)]),
            &cx.get(path, &[("query", &istio)]),
            &cx.names,
        )
    })
}

/// Request metrics of both services, and Istio's front-end → business-logic.
pub fn judge(app: &Answer<Response>, istio: &Answer<Response>, names: &Names) -> Outcome {
    let ns = &names.namespace;
    let mut vectors = Vec::new();
    for answer in [app, istio] {
        if let Some(missing) = super::grafana_datasource_missing("prometheus", answer) {
            return missing;
        }
        match &answer.body {
            Ok(body) if body.status == "success" && body.data.result_type == "vector" => {
                vectors.push(body);
            }
            body => {
                return Outcome::fail(
                    format!(
                        "Prometheus query failed: {} {}",
                        answer.status,
                        body.as_ref().err().map_or("", |p| p.text())
                    ),
                    "Prometheus (behind Grafana's data source `prometheus`) does not answer queries",
                    &["kubectl -n istio-system logs deploy/prometheus --tail 30"],
                );
            }
        }
    }
    let services: BTreeSet<&str> = vectors[0].nonzero("service").into_iter().collect();
    let missing: Vec<&str> = [FRONT_END, BUSINESS_LOGIC]
        .into_iter()
        .filter(|s| !services.contains(s))
        .collect();
    if !missing.is_empty() {
        return Outcome::fail(
            format!("Prometheus has no http_requests_total from {}", missing.join(" and ")),
            names.mode.pick(
                "Prometheus does not scrape the services' /metrics (the pods' prometheus.io annotations, merged by the sidecar on port 15020)",
                "Prometheus does not scrape the services' /metrics (the pods' prometheus.io annotations; with STRICT mTLS ztunnel refuses plain-text scrapes, so Prometheus must be enrolled in ambient itself)",
            ),
            &[
                &format!("kubectl -n {ns} get pods -o yaml | grep prometheus.io"),
                "kubectl -n istio-system logs deploy/prometheus --tail 30",
            ],
        );
    }
    let hop: BTreeSet<&str> = vectors[1]
        .nonzero("destination_version")
        .into_iter()
        .collect();
    if hop.is_empty() {
        let summary =
            format!("Prometheus has no istio_requests_total for {FRONT_END} → {BUSINESS_LOGIC}");
        return names.mode.pick(
            Outcome::fail(
                summary.clone(),
                "the sidecars report no Istio metrics: pods without sidecars, or Prometheus does not scrape the proxies (port 15020)",
                &[
                    &format!("kubectl -n {ns} get pods   # READY 2/2 = app + sidecar"),
                    &format!("kubectl get ns {ns} --show-labels"),
                ],
            ),
            Outcome::fail(
                summary,
                format!(
                    "in ambient mode the waypoint reports HTTP metrics (ztunnel only TCP ones): no waypoint `{}`, \
                     {BUSINESS_LOGIC} not bound to it, or Prometheus does not scrape it (port 15020)",
                    names.waypoint
                ),
                &[
                    &format!("kubectl -n {ns} get gateway {} -o wide", names.waypoint),
                    &format!(
                        "kubectl -n {ns} get svc {BUSINESS_LOGIC} --show-labels   # istio.io/use-waypoint"
                    ),
                ],
            ),
        );
    }
    let versions = super::versions_note("", hop);
    Outcome::pass(format!(
        "http_requests_total from {FRONT_END} and {BUSINESS_LOGIC}, istio_requests_total {FRONT_END} → {BUSINESS_LOGIC}{versions}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::MeshMode::{self, Ambient, Sidecar};
    use crate::checks::testdata::{answer, assert_outcome, names};

    #[test]
    fn each_pair_of_recorded_answers_is_judged_with_its_hint() {
        #[rustfmt::skip]
        let cases: [(&str, &str, MeshMode, bool, &[&str]); 8] = [
            ("app-requests.json", "istio-requests-v1.json", Sidecar, true, &["istio_requests_total front-end → business-logic (v1)"]),
            // A canary in progress, then promoted.
            ("app-requests.json", "istio-requests-v1-v2.json", Sidecar, true, &["istio_requests_total front-end → business-logic (v1 and v2)"]),
            ("app-requests.json", "istio-requests-v2.json", Sidecar, true, &["istio_requests_total front-end → business-logic (v2)"]),
            ("app-requests.json", "empty-vector.json", Sidecar, false, &["no istio_requests_total for front-end → business-logic", "READY 2/2"]),
            ("app-requests.json", "empty-vector.json", Ambient, false, &["the waypoint reports HTTP metrics (ztunnel only TCP ones)"]),
            ("app-requests-front-end-only.json", "istio-requests-v1.json", Sidecar, false, &["no http_requests_total from business-logic", "grep prometheus.io"]),
            ("bad-data.json", "istio-requests-v1.json", Sidecar, false, &["Prometheus query failed: 400 invalid parameter"]),
            ("../grafana/datasource-not-found.json", "istio-requests-v1.json", Sidecar, false, &["no data source with uid `prometheus`"]),
        ];
        for (app, istio, mode, ok, needles) in cases {
            let status = |file: &str| match file {
                "bad-data.json" => 400,
                "../grafana/datasource-not-found.json" => 404,
                _ => 200,
            };
            let outcome = judge(
                &answer(status(app), &format!("prometheus/{app}")),
                &answer(status(istio), &format!("prometheus/{istio}")),
                &names(mode),
            );
            assert_outcome(&format!("{app} {istio} {mode:?}"), &outcome, ok, needles);
        }
    }
}
