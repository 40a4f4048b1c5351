//! Check 5: Kiali's versioned app graph of the namespace has gateway → front-end
//! → business-logic (→ postgres), every edge with mTLS.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{
    Answer, BUSINESS_LOGIC, Context, FRONT_END, MeshMode, Names, Outcome, POSTGRES, Postgres,
};

/// Kiali's `GET /api/namespaces/graph` in Cytoscape's form (kiali/kiali
/// graph/api/testdata/test_versioned_app_graph.expected; `isMTLS` from
/// the securityPolicy appender, `isGateway` from the istio appender).
#[derive(Debug, Deserialize)]
pub struct Graph {
    pub elements: Elements,
}

#[derive(Debug, Deserialize)]
pub struct Elements {
    #[serde(default)]
    pub nodes: Vec<Element<Node>>,
    #[serde(default)]
    pub edges: Vec<Element<Edge>>,
}

#[derive(Debug, Deserialize)]
pub struct Element<T> {
    pub data: T,
}

/// A node: an app and version (`nodeType: app`, from the pods' labels), or
/// a box around an app's versions (`nodeType: box`, `isBox: app`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub id: String,
    pub node_type: String,
    #[serde(default)]
    pub namespace: String,
    pub app: Option<String>,
    pub workload: Option<String>,
    pub service: Option<String>,
    #[serde(default)]
    pub version: String,
    pub is_gateway: Option<IgnoredAny>,
    pub is_box: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    pub source: String,
    pub target: String,
    /// The share of requests with mTLS, in percent.
    #[serde(rename = "isMTLS")]
    pub is_mtls: Option<String>,
}

impl Node {
    /// The app (what the versioned app graph groups by), else the workload.
    fn name(&self) -> &str {
        [&self.app, &self.workload, &self.service]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .map_or("", String::as_str)
    }

    fn is_gateway(&self) -> bool {
        self.is_gateway.is_some() || super::is_gateway_service(self.name())
    }

    /// `business-logic v2`: the name and, when known, the version.
    fn versioned(&self) -> String {
        if self.version.is_empty() {
            self.name().to_owned()
        } else {
            format!("{} {}", self.name(), self.version)
        }
    }
}

pub fn run(cx: &mut Context) -> Outcome {
    // In ambient mode the `ambient` appender folds the waypoint into the
    // edges it serves (`waypoints=false`, as Kiali's graph page shows them by
    // default): front-end → business-logic, not front-end → waypoint.
    // istio marks the gateway, securityPolicy adds isMTLS; Kiali answers
    // 400 to a name it does not know, so only these.
    let appenders = cx.names.mode.pick(
        "deadNode,istio,securityPolicy",
        "deadNode,istio,securityPolicy,ambient",
    );
    cx.poll.until_ok(|| {
        let answer = cx.get(
            "/kiali/api/namespaces/graph",
            &[
                ("namespaces", &cx.names.namespace),
                // Nodes by app and version, so a canary or a promoted v2 is
                // still business-logic.
                ("graphType", "versionedApp"),
                ("injectServiceNodes", "false"),
                ("duration", "600s"),
                ("appenders", appenders),
                ("waypoints", "false"),
            ],
        );
        judge(&answer, &cx.names, cx.postgres)
    })
}

/// The graph has gateway → front-end → business-logic (→ postgres), nodes
/// matched by app so that any version of business-logic counts (v1, the
/// canary v2, or v2 alone after `make promote`), and every edge of those,
/// each version's, with mTLS.
pub fn judge(answer: &Answer<Graph>, names: &Names, postgres: Postgres) -> Outcome {
    let ns = &names.namespace;
    let graph = match (&answer.body, answer.status) {
        (Ok(graph), 200) => graph,
        (body, status) => {
            return Outcome::fail(
                format!(
                    "Kiali's graph API: {status} {}",
                    body.as_ref().err().map_or("", |p| p.text())
                ),
                "Kiali (or the gateway's /kiali route) does not serve its API",
                &["kubectl -n istio-system logs deploy/kiali --tail 30"],
            );
        }
    };
    // An app box groups an app's versions and has no edges of its own.
    let nodes: HashMap<&str, &Node> = graph
        .elements
        .nodes
        .iter()
        .map(|n| &n.data)
        .filter(|n| n.node_type != "box" && n.is_box.as_deref().is_none_or(str::is_empty))
        .map(|n| (n.id.as_str(), n))
        .collect();
    // (source name, target name) -> for each versioned edge ("front-end
    // 0.1.0 → business-logic v2"), its mTLS share in percent (the best of
    // its protocols).
    let mut edges: HashMap<(&str, &str), BTreeMap<String, f64>> = HashMap::new();
    // The business-logic versions front-end calls: the canary's state.
    let mut called: BTreeSet<&str> = BTreeSet::new();
    // Which gateway sends to the front-end: Istio's own or a Gateway API one.
    let mut gateway_seen: Option<&str> = None;
    for edge in graph.elements.edges.iter().map(|e| &e.data) {
        let (Some(source), Some(target)) = (
            nodes.get(edge.source.as_str()),
            nodes.get(edge.target.as_str()),
        ) else {
            continue;
        };
        let mtls = edge
            .is_mtls
            .as_deref()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0.0);
        let versioned = format!("{} → {}", source.versioned(), target.versioned());
        let from = if source.is_gateway() {
            if target.name() == FRONT_END {
                gateway_seen.get_or_insert(source.name());
            }
            "gateway"
        } else if source.namespace == *ns {
            source.name()
        } else {
            continue;
        };
        if target.namespace != *ns {
            continue;
        }
        if from == FRONT_END && target.name() == BUSINESS_LOGIC {
            called.insert(&target.version);
        }
        let entry = edges
            .entry((from, target.name()))
            .or_default()
            .entry(versioned)
            .or_insert(0.0);
        *entry = entry.max(mtls);
    }
    let has_postgres = nodes
        .values()
        .any(|n| n.name() == POSTGRES && n.namespace == *ns);
    let mut wanted = vec![("gateway", FRONT_END), (FRONT_END, BUSINESS_LOGIC)];
    if postgres == Postgres::On || (postgres == Postgres::Auto && has_postgres) {
        wanted.push((BUSINESS_LOGIC, POSTGRES));
    }
    for (source, target) in &wanted {
        match edges.get(&(*source, *target)) {
            None => {
                return Outcome::fail(
                    format!("Kiali's graph of {ns} has no edge {source} → {target}"),
                    format!(
                        "Kiali sees no traffic {source} → {target} in Istio's metrics (last 10 min): the {}' metrics, or Kiali's Prometheus",
                        names.mode.pick("sidecars", "waypoint's and ztunnels")
                    ),
                    &[
                        &names.mode.pick(
                            format!("kubectl -n {ns} get pods   # READY 2/2 = app + sidecar"),
                            format!(
                                "istioctl ztunnel-config workloads | grep {ns}   # PROTOCOL HBONE"
                            ),
                        ),
                        "kubectl -n istio-system logs deploy/kiali --tail 30",
                    ],
                );
            }
            Some(versions) if versions.values().any(|mtls| *mtls <= 0.0) => {
                let plain: Vec<&str> = versions
                    .iter()
                    .filter(|(_, mtls)| **mtls <= 0.0)
                    .map(|(edge, _)| edge.as_str())
                    .collect();
                let look = match names.mode {
                    MeshMode::Sidecar => vec![
                        format!("kubectl -n {ns} get peerauthentication -o yaml"),
                        format!("kubectl -n {ns} get pods   # READY 2/2 = app + sidecar"),
                    ],
                    MeshMode::Ambient => vec![
                        format!(
                            "kubectl get ns {ns} --show-labels   # istio.io/dataplane-mode=ambient"
                        ),
                        "kubectl -n istio-system get daemonset ztunnel   # READY on every node"
                            .to_owned(),
                        format!("kubectl -n {ns} get peerauthentication -o yaml"),
                    ],
                };
                return Outcome::fail(
                    format!("Kiali: edge {source} → {target} without mTLS ({})", plain.join(", ")),
                    names.mode.pick(
                        "traffic on that edge is plain text: the PeerAuthentication (mode STRICT) or a pod without its sidecar",
                        "traffic on that edge is plain text: the namespace is not enrolled in ambient (istio.io/dataplane-mode=ambient), \
                         ztunnel is not ready on the node, or the PeerAuthentication (mode STRICT)",
                    ),
                    &look.iter().map(String::as_str).collect::<Vec<_>>(),
                );
            }
            Some(_) => {}
        }
    }
    let mut chain = vec![gateway_seen.unwrap_or("ingress gateway")];
    chain.extend(wanted.iter().map(|(_, t)| *t));
    let called = super::versions_note(&format!("{BUSINESS_LOGIC} "), called);
    Outcome::pass(format!(
        "{}, every edge with mTLS{called}",
        chain.join(" → ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::MeshMode::{Ambient, Sidecar};
    use crate::checks::testdata::{answer, assert_outcome, names};

    #[test]
    fn each_recorded_graph_is_judged_with_its_hint() {
        use Postgres::{Auto, On};
        #[rustfmt::skip]
        let cases: [(&str, MeshMode, Postgres, bool, &[&str]); 10] = [
            ("graph-sidecar.json", Sidecar, Auto, true, &["istio-ingressgateway → front-end → business-logic → postgres, every edge with mTLS (business-logic v1)"]),
            ("graph-canary.json", Sidecar, Auto, true, &["every edge with mTLS (business-logic v1 and v2)"]),
            ("graph-promoted.json", Sidecar, Auto, true, &["→ postgres, every edge with mTLS (business-logic v2)"]),
            ("graph-ambient.json", Ambient, Auto, true, &["app-gateway-istio → front-end → business-logic → postgres, every edge with mTLS"]),
            // Without PostgreSQL the graph ends at business-logic, unless it is said to be on.
            ("graph-no-postgres.json", Sidecar, Auto, true, &["istio-ingressgateway → front-end → business-logic, every edge with mTLS"]),
            ("graph-no-postgres.json", Sidecar, On, false, &["no edge business-logic → postgres"]),
            ("graph-canary-without-mtls.json", Sidecar, Auto, false, &["edge front-end → business-logic without mTLS (front-end 0.1.0 → business-logic v1, front-end 0.1.0 → business-logic v2)", "PeerAuthentication", "kubectl -n demo-app get peerauthentication -o yaml"]),
            ("graph-ambient-not-enrolled.json", Ambient, Auto, false, &["edge gateway → front-end without mTLS", "the namespace is not enrolled in ambient", "ztunnel is not ready on the node", "kubectl -n istio-system get daemonset ztunnel"]),
            ("graph-no-business-logic-edge.json", Sidecar, Auto, false, &["has no edge front-end → business-logic", "READY 2/2"]),
            // The waypoint drawn as a node of its own (no `ambient` appender).
            ("graph-ambient-waypoint-node.json", Sidecar, Auto, false, &["no edge front-end → business-logic"]),
        ];
        for (file, mode, postgres, ok, needles) in cases {
            let outcome = judge(
                &answer(200, &format!("kiali/{file}")),
                &names(mode),
                postgres,
            );
            assert_outcome(
                &format!("{file} {mode:?} {postgres:?}"),
                &outcome,
                ok,
                needles,
            );
        }
        let outcome = judge(
            &answer::<Graph>(400, "kiali/bad-request.json"),
            &names(Sidecar),
            Auto,
        );
        assert_outcome(
            "400",
            &outcome,
            false,
            &["Kiali's graph API: 400 Invalid graphType"],
        );
    }
}
