//! Check 3: Loki holds log lines with the slow page's trace id from both
//! services. Loki's answer types live here; the access log check reads them
//! too.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use super::{Answer, BUSINESS_LOGIC, Context, FRONT_END, Names, Outcome};

/// Loki's `GET /loki/api/v1/query_range` for a log query (grafana/loki
/// docs/sources/reference/loki-http-api.md): streams of `[ns, line]`.
#[derive(Debug, Deserialize)]
pub struct Response {
    pub status: String,
    pub data: Data,
}

#[derive(Debug, Deserialize)]
pub struct Data {
    pub result: Vec<Stream>,
}

#[derive(Debug, Deserialize)]
pub struct Stream {
    /// The stream's labels.
    pub stream: HashMap<String, String>,
    /// `[<unix ns>, <line>]`, newest first (`direction=backward`).
    pub values: Vec<(String, String)>,
}

impl Stream {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.stream.get(name).map(String::as_str)
    }

    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|(_, line)| line.as_str())
    }
}

/// Loki's `query_range` through Grafana's data source proxy (uid `loki`):
/// the last 30 minutes, newest lines first.
pub fn query(cx: &Context, logql: &str, limit: &str) -> Answer<Response> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let start = now.saturating_sub(Duration::from_secs(30 * 60));
    let end = now + Duration::from_secs(60);
    cx.get(
        "/grafana/api/datasources/proxy/uid/loki/loki/api/v1/query_range",
        &[
            ("query", logql),
            ("start", &start.as_nanos().to_string()),
            ("end", &end.as_nanos().to_string()),
            ("limit", limit),
            ("direction", "backward"),
        ],
    )
}

/// The answer's streams, or the outcome when it is not a successful query:
/// Grafana without the data source, or Loki not answering.
pub fn streams(answer: &Answer<Response>) -> Result<&[Stream], Outcome> {
    if let Some(missing) = super::grafana_datasource_missing("loki", answer) {
        return Err(missing);
    }
    match &answer.body {
        Ok(body) if body.status == "success" => Ok(&body.data.result),
        body => Err(Outcome::fail(
            format!(
                "Loki query failed: {} {}",
                answer.status,
                body.as_ref().err().map_or("", |p| p.text())
            ),
            "Loki (behind Grafana's data source `loki`) does not answer queries",
            &[
                "kubectl -n istio-system get pods -l app.kubernetes.io/name=loki",
                "kubectl -n istio-system logs statefulset/loki",
            ],
        )),
    }
}

pub fn run(cx: &mut Context) -> Outcome {
    let trace_id = match cx.trace_id() {
        Ok(id) => id,
        Err(not_checked) => return not_checked,
    };
    // The services' own lines: the sidecars' access log lines carry the
    // trace id too, under the same app label (7. Access log reads them).
    let logql = format!(
        "{{namespace=\"{}\", container!=\"istio-proxy\"}} |= \"{trace_id}\"",
        cx.names.namespace
    );
    cx.poll
        .until_ok(|| judge(&query(cx, &logql, "200"), &trace_id, &cx.names))
}

/// Lines with the trace id from both services.
pub fn judge(answer: &Answer<Response>, trace_id: &str, names: &Names) -> Outcome {
    let ns = &names.namespace;
    let streams = match streams(answer) {
        Ok(streams) => streams,
        Err(failed) => return failed,
    };
    let mut lines: BTreeMap<&str, usize> = BTreeMap::new();
    for stream in streams {
        let service = ["app", "container", "service_name"]
            .into_iter()
            .find_map(|l| stream.label(l))
            .unwrap_or_default();
        *lines.entry(service).or_default() +=
            stream.lines().filter(|l| l.contains(trace_id)).count();
    }
    let from = |s: &str| lines.get(s).copied().unwrap_or(0);
    let (fe, bl) = (from(FRONT_END), from(BUSINESS_LOGIC));
    match (fe, bl) {
        (0, 0) => Outcome::fail(
            format!("Loki has no log lines with trace id {trace_id}"),
            "Alloy is not shipping the pods' logs to Loki (or Loki rejects them)",
            &[
                "kubectl -n istio-system logs ds/alloy --tail 30",
                &format!("kubectl -n {ns} logs deploy/front-end | grep {trace_id}"),
            ],
        ),
        (_, 0) | (0, _) => {
            let missing = if fe == 0 { FRONT_END } else { BUSINESS_LOGIC };
            Outcome::fail(
                format!(
                    "Loki has log lines with trace id {trace_id} from one service only: none from {missing}"
                ),
                format!("{missing}'s lines lack the trace id, or Alloy does not read that pod"),
                &[
                    &format!("kubectl -n {ns} logs deploy/{missing} | grep {trace_id}"),
                    "kubectl -n istio-system logs ds/alloy --tail 30",
                ],
            )
        }
        _ => Outcome::pass(format!(
            "log lines with trace id {trace_id} from {FRONT_END} ({fe}) and {BUSINESS_LOGIC} ({bl})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::MeshMode;
    use crate::checks::testdata::{TRACE_ID, judge_each, names};

    #[test]
    fn lines_of_both_services_pass_and_each_gap_names_its_part() {
        #[rustfmt::skip]
        let cases: [(&str, u16, bool, &[&str]); 5] = [
            ("loki/service-lines.json", 200, true, &["from front-end (2) and business-logic (1)"]),
            ("loki/service-lines-front-end-only.json", 200, false, &["from one service only: none from business-logic", "kubectl -n demo-app logs deploy/business-logic | grep"]),
            ("loki/empty.json", 200, false, &["Alloy is not shipping", "kubectl -n istio-system logs ds/alloy"]),
            ("loki/parse-error.txt", 400, false, &["Loki query failed: 400 parse error", "kubectl -n istio-system logs statefulset/loki"]),
            ("grafana/datasource-not-found.json", 404, false, &["Grafana's data source proxy: 404 Unable to find datasource", "no data source with uid `loki`"]),
        ];
        judge_each(&cases, |answer| {
            judge(answer, TRACE_ID, &names(MeshMode::Sidecar))
        });
    }
}
