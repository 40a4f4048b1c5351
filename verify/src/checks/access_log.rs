//! Check 7: the ingress gateway's Envoy access log line for the slow page, in
//! Loki: lines labelled `log_type="access"` and `gateway` by Alloy
//! (istio-add-ons/alloy-values.yaml), each a JSON object in the mesh's
//! format (istio-add-ons/istio-operator.yaml, provider `envoy-json`).

use std::fmt;

use serde::Deserialize;

use super::loki::{self, Stream};
use super::{Answer, Context, Names, Outcome};

/// The LogQL stream selector of the ingress gateway's access log lines.
pub const GATEWAY_ACCESS_LOG: &str = r#"{log_type="access", gateway!=""}"#;

/// The keys of an access log line this check reads.
#[derive(Debug, Deserialize)]
pub struct AccessLine {
    pub trace_id: Option<String>,
    pub method: Option<Field>,
    pub path: Option<Field>,
    pub response_code: Option<Field>,
    pub duration: Option<Field>,
}

/// Envoy writes numbers for some operators (`response_code`, `duration`)
/// and strings for the rest.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Field {
    Text(String),
    Number(serde_json::Number),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(s) => f.write_str(s),
            Self::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A field as printed: its value, `-` when absent.
fn shown(field: Option<&Field>) -> String {
    field.map_or_else(|| "-".to_owned(), Field::to_string)
}

/// The first access log line in `streams` that carries `trace_id` (any
/// line when `None`), with its stream's `gateway` label.
fn access_line<'a>(streams: &'a [Stream], trace_id: Option<&str>) -> Option<(&'a str, AccessLine)> {
    streams.iter().find_map(|stream| {
        stream
            .lines()
            .filter_map(|line| serde_json::from_str::<AccessLine>(line).ok())
            .find(|line| trace_id.is_none_or(|id| line.trace_id.as_deref() == Some(id)))
            .map(|line| (stream.label("gateway").unwrap_or(""), line))
    })
}

pub fn run(cx: &mut Context) -> Outcome {
    let trace_id = match cx.trace_id() {
        Ok(id) => id,
        Err(not_checked) => return not_checked,
    };
    let traced = format!("{GATEWAY_ACCESS_LOG} |= \"{trace_id}\"");
    cx.poll.until_ok(|| {
        let answer = loki::query(cx, &traced, "20");
        let found = matches!(&answer.body, Ok(b) if !b.data.result.is_empty());
        let recent =
            (answer.status == 200 && !found).then(|| loki::query(cx, GATEWAY_ACCESS_LOG, "5"));
        judge(&answer, recent.as_ref(), &trace_id, &cx.names)
    })
}

/// The gateway's line for the trace: `traced` is Loki's answer to
/// [`GATEWAY_ACCESS_LOG`] `|= "<trace id>"`, `recent` (asked only when
/// `traced` has none) its answer to the selector alone, which tells "no
/// access log at all" from "access log lines without this trace id".
pub fn judge(
    traced: &Answer<loki::Response>,
    recent: Option<&Answer<loki::Response>>,
    trace_id: &str,
    names: &Names,
) -> Outcome {
    let ns = &names.namespace;
    let streams = match loki::streams(traced) {
        Ok(streams) => streams,
        Err(failed) => return failed,
    };
    if let Some((gateway, line)) = access_line(streams, Some(trace_id)) {
        return Outcome::pass(format!(
            "gateway {gateway}: \"{} {}\" {} in {} ms, trace_id {trace_id}",
            shown(line.method.as_ref()),
            shown(line.path.as_ref()),
            shown(line.response_code.as_ref()),
            shown(line.duration.as_ref()),
        ));
    }
    let gateway_logs = [
        "kubectl -n istio-system get telemetry mesh-default -o yaml   # accessLogging: provider envoy-json",
        &format!(
            "kubectl -n {ns} logs -l gateway.networking.k8s.io/gateway-name -c istio-proxy --tail 3"
        ),
    ];
    let recent_line = recent
        .and_then(|answer| loki::streams(answer).ok())
        .and_then(|streams| access_line(streams, None));
    match recent_line {
        None => Outcome::fail(
            "Loki has no access log lines from the ingress gateway",
            "Envoy access logging is off (the Telemetry `mesh-default` selects no access log provider, \
             or the mesh config lacks it: make create-cluster), or Alloy does not label the lines \
             (log_type=\"access\", gateway)",
            &[
                gateway_logs[0],
                gateway_logs[1],
                "kubectl -n istio-system logs ds/alloy --tail 30",
            ],
        ),
        Some((gateway, line)) => match line.trace_id.as_deref() {
            Some(other) if other.len() == 32 && other.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Outcome::fail(
                    format!(
                        "gateway {gateway}'s access log has no line with trace id {trace_id} (a recent one has {other})"
                    ),
                    "the gateway's trace id is not the one the front-end reports: a hop between them starts a new trace \
                     (see 2. Jaeger), or the line has not reached Loki yet",
                    &gateway_logs,
                )
            }
            other => Outcome::fail(
                format!(
                    "gateway {gateway}'s access log lines carry no trace id (trace_id: {})",
                    other.unwrap_or("-")
                ),
                "the access log format lacks %TRACE_ID% (mesh config, extension provider envoy-json), \
                 or the gateway does not trace (the Telemetry's tracing)",
                &gateway_logs,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::MeshMode;
    use crate::checks::testdata::{TRACE_ID, answer, assert_outcome, names};

    #[test]
    fn the_line_of_the_trace_passes_and_recent_lines_tell_why_it_is_missing() {
        #[rustfmt::skip]
        let cases: [(&str, Option<&str>, bool, &[&str]); 6] = [
            ("access-log.json", None, true, &["gateway istio-ingressgateway: \"GET /demo-app/slow-page?delay_ms=500\" 200 in 512 ms, trace_id 4bf92f3577b34da6a3ce929d0e0e4736"]),
            ("access-log-gateway-api.json", None, true, &["gateway app-gateway: \"GET /demo-app/slow-page"]),
            // No line for the trace: the recent lines tell why.
            ("empty.json", Some("empty.json"), false, &["Loki has no access log lines from the ingress gateway", "kubectl -n istio-system get telemetry mesh-default -o yaml", "kubectl -n istio-system logs ds/alloy"]),
            ("empty.json", Some("access-log-without-trace-id.json"), false, &["gateway istio-ingressgateway's access log lines carry no trace id (trace_id: -)", "%TRACE_ID%"]),
            ("empty.json", Some("access-log-other-trace.json"), false, &["has no line with trace id 4bf92f3577b34da6a3ce929d0e0e4736 (a recent one has 0af7651916cd43dd8448eb211c80319c)", "starts a new trace"]),
            ("../grafana/datasource-not-found.json", None, false, &["no data source with uid `loki`"]),
        ];
        for (traced, recent, ok, needles) in cases {
            let status = if traced.starts_with("..") { 404 } else { 200 };
            let recent = recent.map(|file| answer(200, &format!("loki/{file}")));
            let outcome = judge(
                &answer(status, &format!("loki/{traced}")),
                recent.as_ref(),
                TRACE_ID,
                &names(MeshMode::Sidecar),
            );
            assert_outcome(traced, &outcome, ok, needles);
        }
    }
}
