//! `make verify`: after `make up`, checks every link of the chain on the
//! real cluster through the one gateway URL of the walkthrough, and for each
//! broken link says which part to look at.
//!
//! ```sh
//! verify --url http://localhost:8080 --namespace demo-app
//! ```
//!
//! It requests a slow page, reads its trace id from the `traceresponse`
//! header, then checks (polling each for a bounded time): the landing page,
//! the trace in Jaeger (one tree, every hop), its log lines in Loki, the
//! request metrics in Prometheus, Kiali's graph with mTLS, the services'
//! span metrics in Jaeger's Monitor tab, and the gateway's access log line
//! for the page in Loki. If nothing
//! answers at the URL it runs a temporary `kubectl port-forward` to the
//! gateway and stops it at the end. Exits 0 when every check holds, 1
//! otherwise, 2 on bad arguments.
#![allow(clippy::print_stdout)] // a command-line report

mod checks;
mod gateway;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use reqwest::blocking::Client;
use serde_json::Value;

use checks::{MeshMode, Names, Outcome, Postgres};
use gateway::{ForwardError, Kubectl, NoCluster};

/// Checks the app, its trace, logs, metrics and mesh graph on the cluster.
#[derive(Debug, Parser)]
#[command(name = "verify")]
struct Args {
    /// The gateway URL: the app under /demo-app/, and /jaeger, /grafana, /kiali.
    #[arg(long, env = "VERIFY_URL", default_value = "http://localhost:8080")]
    url: String,
    /// The app's namespace.
    #[arg(long, default_value = "demo-app")]
    namespace: String,
    /// kubectl, for the port-forward when nothing answers at the URL.
    #[arg(long, default_value = "kubectl")]
    kubectl: String,
    /// kubectl context (default: kubectl's current one).
    #[arg(long)]
    context: Option<String>,
    /// The gateway Service to port-forward to, as NAMESPACE/NAME; default:
    /// the app namespace's Gateway API gateway if there is one, else
    /// istio-system/istio-ingressgateway.
    #[arg(long)]
    gateway_service: Option<String>,
    /// `?delay_ms=` of the slow page requested (0 to 60000, the contract's limit).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=contract::MAX_DELAY_MS))]
    slow_delay_ms: u64,
    /// Whether the graph must reach PostgreSQL: auto (when Kiali shows a
    /// postgres node), on, off.
    #[arg(long, default_value = "auto", value_parser = postgres)]
    postgres: Postgres,
    /// The app namespace's data plane: sidecar, ambient, or auto (the
    /// namespace's `istio.io/dataplane-mode` label through kubectl; without
    /// kubectl, what the trace shows: waypoint spans or sidecar spans).
    #[arg(long, env = "MESH_MODE", default_value = "auto", value_parser = mesh_mode)]
    mesh_mode: ModeArg,
    /// In ambient mode, the waypoint business-logic is bound to (the chart's
    /// Gateway of class istio-waypoint).
    #[arg(long, default_value = "waypoint")]
    waypoint: String,
    /// How long one check keeps polling before it gives up: 45s, 500ms, 1m.
    #[arg(long, default_value = "45s", value_parser = duration)]
    poll_limit: Duration,
    /// Pause between two polls.
    #[arg(long, default_value = "2s", value_parser = duration)]
    poll_interval: Duration,
    /// The whole run's bound: checks stop polling when it is spent (a last
    /// request may still take up to 10 s, a port-forward its own wait).
    #[arg(long, default_value = "95s", value_parser = duration)]
    deadline: Duration,
    /// How long to wait for the port-forward to answer.
    #[arg(long, default_value = "20s", value_parser = duration)]
    port_forward_wait: Duration,
}

fn postgres(value: &str) -> Result<Postgres, String> {
    match value {
        "auto" => Ok(Postgres::Auto),
        "on" | "true" => Ok(Postgres::On),
        "off" | "false" => Ok(Postgres::Off),
        _ => Err(format!("{value:?}: expected auto, on or off")),
    }
}

/// `--mesh-mode`: a mode, or `None` for auto.
#[derive(Debug, Clone, Copy)]
struct ModeArg(Option<MeshMode>);

fn mesh_mode(value: &str) -> Result<ModeArg, String> {
    match value {
        "auto" => Ok(ModeArg(None)),
        "sidecar" => Ok(ModeArg(Some(MeshMode::Sidecar))),
        "ambient" => Ok(ModeArg(Some(MeshMode::Ambient))),
        _ => Err(format!("{value:?}: expected auto, sidecar or ambient")),
    }
}

/// A duration in the workspace's one syntax ([`contract::duration_within`]:
/// `45s`, `500ms`, `2m`, `1m 30s`; a bare number is refused); at most 10
/// minutes.
fn duration(value: &str) -> Result<Duration, String> {
    contract::duration_within(value, Duration::ZERO..=Duration::from_secs(600))
}

const CHECKS: [&str; 8] = [
    "gateway",
    "1. pages",
    "2. Jaeger",
    "3. Loki",
    "4. Prometheus",
    "5. Kiali",
    "6. Monitor",
    "7. Access log",
];

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            println!("verify: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Prints one check's line and, for a failure, its cause and commands.
fn report(name: &str, outcome: &Outcome) {
    let mark = if outcome.ok { '✔' } else { '✘' };
    println!("{mark} {name:<13} {}", outcome.summary);
    if let Some(cause) = &outcome.cause {
        println!("    likely cause: {cause}");
    }
    for command in &outcome.look {
        println!("    look closer:  {command}");
    }
}

/// Polls `check` until it holds, `limit` is spent or the run's deadline is
/// near; always at least once. Returns the last outcome.
fn poll(args: &Args, deadline: Instant, mut check: impl FnMut() -> Outcome) -> Outcome {
    let start = Instant::now();
    loop {
        let outcome = check();
        let now = Instant::now();
        if outcome.ok
            || now.duration_since(start) + args.poll_interval > args.poll_limit
            || now + args.poll_interval > deadline
        {
            return outcome;
        }
        std::thread::sleep(args.poll_interval);
    }
}

/// GET with query parameters: the status (0 when no answer) and the JSON
/// body (`{"error": ...}` when there was none).
fn get_json(client: &Client, url: &str, query: &[(&str, &str)]) -> (u16, Value) {
    match client.get(url).query(query).send() {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().unwrap_or_default();
            let body = serde_json::from_str(&text)
                .unwrap_or_else(|_| serde_json::json!({ "error": text.trim() }));
            (status, body)
        }
        Err(error) => (0, serde_json::json!({ "error": error.to_string() })),
    }
}

fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Loki's `query_range` through Grafana's data source proxy (uid `loki`):
/// the last 30 minutes, newest lines first.
fn loki_query(client: &Client, base: &str, query: &str, limit: &str) -> (u16, Value) {
    let url = format!("{base}/grafana/api/datasources/proxy/uid/loki/loki/api/v1/query_range");
    let now = unix_now();
    let start = now
        .saturating_sub(Duration::from_secs(30 * 60))
        .as_nanos()
        .to_string();
    let end = (now + Duration::from_secs(60)).as_nanos().to_string();
    get_json(
        client,
        &url,
        &[
            ("query", query),
            ("start", &start),
            ("end", &end),
            ("limit", limit),
            ("direction", "backward"),
        ],
    )
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let deadline = started + args.deadline;
    let base = args.url.trim_end_matches('/').to_owned();
    let kubectl = Kubectl {
        program: args.kubectl.clone(),
        context: args.context.clone(),
    };
    // The mesh mode: named, or the namespace's label; `None` until the trace
    // shows it (no kubectl, or no cluster to ask).
    let (mode, mode_source) = match args.mesh_mode.0 {
        Some(mode) => (Some(mode), "as asked"),
        None => match kubectl.dataplane_mode(&args.namespace).as_deref() {
            Some("ambient") => (Some(MeshMode::Ambient), "from the namespace's label"),
            Some(_) => (Some(MeshMode::Sidecar), "from the namespace's labels"),
            None => (None, "from the trace"),
        },
    };
    let mut names = Names {
        namespace: args.namespace.clone(),
        mode: mode.unwrap_or(MeshMode::Sidecar),
        waypoint: args.waypoint.clone(),
    };
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    match mode {
        Some(mode) => println!(
            "Checking the chain through {base} (namespace {}, {} mode {mode_source}); each check polls up to {} s.",
            args.namespace,
            mode.as_str(),
            args.poll_limit.as_secs_f64()
        ),
        None => println!(
            "Checking the chain through {base} (namespace {}, mesh mode from the trace); each check polls up to {} s.",
            args.namespace,
            args.poll_limit.as_secs_f64()
        ),
    }

    // The gateway itself; a port-forward when nothing answers.
    let (gateway, _forward) = reach_gateway(args, &client, &base)?;
    report(CHECKS[0], &gateway);
    if !gateway.ok {
        for name in &CHECKS[1..] {
            println!("· {name:<13} not checked: no gateway");
        }
        println!("\n✘ nothing to check without the gateway.");
        return Ok(false);
    }

    let app = format!("{base}/demo-app/");
    let mut results = vec![gateway];

    // 1. The landing page, then the slow page and its trace id.
    let mut pages = poll(args, deadline, || match client.get(&app).send() {
        Ok(r) => {
            let status = r.status().as_u16();
            checks::landing_page(status, &r.text().unwrap_or_default(), &names)
        }
        Err(e) => Outcome::fail(
            format!("landing page: no answer ({e})"),
            "the gateway accepts connections but does not answer",
            &["kubectl -n istio-system get pods"],
        ),
    });
    let mut trace_id = None;
    if pages.ok {
        match slow_page(args, &client, &app, &names) {
            Ok((id, summary)) => {
                pages.summary = format!("{}; {summary}", pages.summary);
                trace_id = Some(id);
            }
            Err(failure) => pages = failure,
        }
    }
    report(CHECKS[1], &pages);
    results.push(pages);

    match &trace_id {
        Some(trace_id) => {
            // 2. Jaeger.
            let jaeger = format!("{base}/jaeger/api/traces/{trace_id}");
            let outcome = poll(args, deadline, || {
                let (status, body) = get_json(&client, &jaeger, &[]);
                if mode.is_none()
                    && let Some(shown) = checks::mode_from_trace(&body, &names)
                {
                    names.mode = shown;
                }
                checks::jaeger_trace(status, &body, trace_id, &names)
            });
            if mode.is_none() {
                println!("  mesh mode {} (from the trace)", names.mode.as_str());
            }
            report(CHECKS[2], &outcome);
            results.push(outcome);

            // 3. Loki, through Grafana's data source proxy.
            // The services' own lines: the sidecars' access log lines carry
            // the trace id too, under the same app label (check 7 reads them).
            let query = format!(
                "{{namespace=\"{}\", container!=\"istio-proxy\"}} |= \"{trace_id}\"",
                args.namespace
            );
            let outcome = poll(args, deadline, || {
                let (status, body) = loki_query(&client, &base, &query, "200");
                checks::loki_lines(status, &body, trace_id, &names)
            });
            report(CHECKS[3], &outcome);
            results.push(outcome);
        }
        None => {
            for name in &CHECKS[2..4] {
                println!("✘ {name:<13} not checked: no trace id from the slow page (see 1.)");
                results.push(Outcome::fail("", "", &[]));
            }
        }
    }

    // 4. Prometheus, through Grafana's data source proxy.
    let prometheus = format!("{base}/grafana/api/datasources/proxy/uid/prometheus/api/v1/query");
    let (app_query, istio_query) = (
        checks::app_metrics_query(&names),
        checks::istio_metrics_query(&names),
    );
    let outcome = poll(args, deadline, || {
        let app = get_json(&client, &prometheus, &[("query", &app_query)]);
        let istio = get_json(&client, &prometheus, &[("query", &istio_query)]);
        checks::prometheus_metrics((app.0, &app.1), (istio.0, &istio.1), &names)
    });
    report(CHECKS[4], &outcome);
    results.push(outcome);

    // 5. Kiali's versioned app graph of the namespace: nodes by app and
    // version, so a canary or a promoted v2 is still business-logic.
    let kiali = format!("{base}/kiali/api/namespaces/graph");
    // In ambient mode the `ambient` appender folds the waypoint into the
    // edges it serves (`waypoints=false`, as Kiali's graph page shows them by
    // default): front-end → business-logic, not front-end → waypoint.
    let appenders = match names.mode {
        MeshMode::Sidecar => "deadNode,istio,securityPolicy",
        MeshMode::Ambient => "deadNode,istio,securityPolicy,ambient",
    };
    let outcome = poll(args, deadline, || {
        let (status, body) = get_json(
            &client,
            &kiali,
            &[
                ("namespaces", &args.namespace),
                ("graphType", "versionedApp"),
                ("injectServiceNodes", "false"),
                ("duration", "600s"),
                // istio marks the gateway, securityPolicy adds isMTLS; Kiali
                // answers 400 to a name it does not know, so only these.
                ("appenders", appenders),
                ("waypoints", "false"),
            ],
        );
        checks::kiali_graph(status, &body, &names, args.postgres)
    });
    report(CHECKS[5], &outcome);
    results.push(outcome);

    // 6. Jaeger's Monitor tab: call rates of both services' server spans over
    // the last ten minutes, from the span metrics Jaeger reads back from
    // Prometheus (the query its UI sends, one step a minute).
    let monitor = format!("{base}/jaeger/api/metrics/calls");
    let outcome = poll(args, deadline, || {
        let end = unix_now().as_millis().to_string();
        let (status, body) = get_json(
            &client,
            &monitor,
            &[
                ("service", checks::FRONT_END),
                ("service", checks::BUSINESS_LOGIC),
                ("groupByOperation", "true"),
                ("spanKind", "server"),
                ("endTs", &end),
                ("lookback", "600000"),
                ("step", "60000"),
                ("ratePer", "600000"),
            ],
        );
        checks::span_metrics(status, &body)
    });
    report(CHECKS[6], &outcome);
    results.push(outcome);

    // 7. The ingress gateway's access log line for the slow page, in Loki.
    match &trace_id {
        Some(trace_id) => {
            let traced = format!("{} |= \"{trace_id}\"", checks::GATEWAY_ACCESS_LOG);
            let outcome = poll(args, deadline, || {
                let (status, body) = loki_query(&client, &base, &traced, "20");
                let recent = (status == 200 && body.pointer("/data/result/0").is_none())
                    .then(|| loki_query(&client, &base, checks::GATEWAY_ACCESS_LOG, "5"));
                checks::gateway_access_log(
                    (status, &body),
                    recent.as_ref().map(|(s, b)| (*s, b)),
                    trace_id,
                    &names,
                )
            });
            report(CHECKS[7], &outcome);
            results.push(outcome);
        }
        None => {
            println!(
                "✘ {:<13} not checked: no trace id from the slow page (see 1.)",
                CHECKS[7]
            );
            results.push(Outcome::fail("", "", &[]));
        }
    }

    let failed = results.iter().filter(|o| !o.ok).count();
    let took = started.elapsed().as_secs_f64();
    if failed == 0 {
        println!("\n✔ all {} checks hold ({took:.1} s).", results.len());
        Ok(true)
    } else {
        println!(
            "\n✘ {failed} of {} checks failed ({took:.1} s): see the causes above.",
            results.len()
        );
        Ok(false)
    }
}

/// The gateway's outcome, and the port-forward to keep alive while checking.
fn reach_gateway(
    args: &Args,
    client: &Client,
    base: &str,
) -> anyhow::Result<(Outcome, Option<gateway::PortForward>)> {
    let root = format!("{base}/");
    if gateway::answers(client, &root) {
        return Ok((Outcome::pass(format!("answers at {base}")), None));
    }
    let url = reqwest::Url::parse(base).with_context(|| format!("VERIFY_URL {base:?}"))?;
    let local = matches!(
        url.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    );
    let Some(port) = url.port_or_known_default().filter(|_| local) else {
        return Ok((
            Outcome::fail(
                format!("nothing answers at {base}"),
                "the gateway URL is not reachable (and not on this machine, so no port-forward)",
                &[&format!("curl -v {base}/demo-app/")],
            ),
            None,
        ));
    };
    let kubectl = Kubectl {
        program: args.kubectl.clone(),
        context: args.context.clone(),
    };
    // No cluster, no gateway to look for: say that first.
    if let Err(no_cluster) = kubectl.cluster() {
        return Ok((no_cluster_outcome(&no_cluster, base), None));
    }
    let (namespace, service) = match args
        .gateway_service
        .as_deref()
        .and_then(|s| s.split_once('/'))
    {
        Some((ns, name)) => (ns.to_owned(), name.to_owned()),
        None => kubectl.gateway_service(&args.namespace),
    };
    println!("  nothing answers at {base}: starting a port-forward to {namespace}/{service}");
    let context = args
        .context
        .as_deref()
        .map(|c| format!(" --context {c}"))
        .unwrap_or_default();
    match gateway::port_forward(
        &kubectl,
        (&namespace, &service),
        port,
        client,
        &root,
        args.port_forward_wait,
    ) {
        Ok(forward) => Ok((
            Outcome::pass(format!(
                "answers at {base} through `{}` (stopped at the end)",
                forward.description
            )),
            Some(forward),
        )),
        Err(ForwardError::NoKubectl(program)) => Ok((
            no_cluster_outcome(&NoCluster::NoKubectl(program), base),
            None,
        )),
        Err(ForwardError::Failed(message)) => Ok((
            Outcome::fail(
                format!("nothing answers at {base}; the port-forward failed: {message}"),
                "the cluster or its gateway is not up (make up), or another process holds the port",
                &[
                    &format!("kubectl{context} -n {namespace} get svc,pods"),
                    "make up",
                ],
            ),
            None,
        )),
    }
}

/// The gateway's outcome when there is no cluster to forward to: what is
/// missing first, then what to run.
fn no_cluster_outcome(no_cluster: &NoCluster, base: &str) -> Outcome {
    let known = |known: &[String]| {
        if known.is_empty() {
            "kubectl knows no context at all".to_owned()
        } else {
            format!("kubectl knows {}", known.join(", "))
        }
    };
    match no_cluster {
        NoCluster::NoKubectl(program) => Outcome::fail(
            format!("nothing answers at {base}, and `{program}` is not installed"),
            "no gateway to check: nothing forwards to the cluster, and verify cannot start a port-forward without kubectl",
            &[
                "make port-forward   # in another terminal, then make verify again",
                "install kubectl: https://kubernetes.io/docs/tasks/tools/",
            ],
        ),
        NoCluster::NoContext {
            context,
            known: names,
        } => Outcome::fail(
            format!(
                "no cluster: kubectl context {context:?} does not exist ({}); nothing answers at {base}",
                known(names)
            ),
            "no cluster has been made on this machine yet: `make up` creates the kind cluster and deploys everything \
             (another cluster: make verify KUBE_CONTEXT=<its context>)",
            &["make up", "kubectl config get-contexts"],
        ),
        NoCluster::NoCurrentContext { known: names } => Outcome::fail(
            format!(
                "no cluster: kubectl has no current context ({}); nothing answers at {base}",
                known(names)
            ),
            "no cluster chosen: `make up` creates the kind cluster and deploys everything, or name one with --context",
            &["make up", "kubectl config get-contexts"],
        ),
        NoCluster::Unreachable { context, error } => Outcome::fail(
            format!(
                "no cluster: context {context:?} exists, but its API server does not answer ({error}); nothing answers at {base}"
            ),
            "the cluster is stopped or gone (a kind cluster stops with Docker): `make up` starts it again",
            &[
                "make up",
                &format!("kubectl --context {context} cluster-info"),
                "docker ps",
            ],
        ),
    }
}

/// Requests the slow page: its trace id (from `traceresponse`) and a note,
/// or the failed pages outcome.
fn slow_page(
    args: &Args,
    client: &Client,
    app: &str,
    names: &Names,
) -> Result<(String, String), Outcome> {
    let ns = &names.namespace;
    // The app's address ends in `/`; the page's path is relative to it.
    let page = contract::routes::front_end::SLOW_PAGE.trim_start_matches('/');
    let url = format!("{app}{page}?{}={}", contract::DELAY_MS, args.slow_delay_ms);
    let response = client
        .get(&url)
        .timeout(Duration::from_millis(args.slow_delay_ms) + Duration::from_secs(20))
        .send()
        .map_err(|e| {
            Outcome::fail(
                format!("slow page: no answer ({e})"),
                "the front-end or business-logic hangs",
                &[&format!("kubectl -n {ns} logs deploy/front-end --tail 20")],
            )
        })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(Outcome::fail(
            format!("slow page: {status}"),
            "the front-end cannot get an answer from business-logic (502: not reachable, 504: too slow) or fails itself",
            &[
                &format!("kubectl -n {ns} get pods"),
                &format!("kubectl -n {ns} logs deploy/business-logic --tail 20"),
            ],
        ));
    }
    let header = response
        .headers()
        .get("traceresponse")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match header.as_deref().map(checks::parse_traceresponse) {
        Some(Some(trace_id)) => Ok((
            trace_id.clone(),
            format!("slow page 200, trace {trace_id} (traceresponse)"),
        )),
        Some(None) => Err(Outcome::fail(
            format!("slow page: malformed traceresponse header {header:?}"),
            "the front-end sends a traceresponse header that is not 00-<trace id>-<span id>-<flags>",
            &[&format!("curl -si {url} | grep -i traceresponse")],
        )),
        None => Err(Outcome::fail(
            "slow page: no traceresponse header",
            "the front-end image predates the traceresponse header (rebuild: make up), or something on the way strips it",
            &[&format!(
                "kubectl -n {ns} get deploy front-end -o jsonpath='{{.spec.template.spec.containers[0].image}}'"
            )],
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_humantime_syntax_up_to_ten_minutes() {
        assert_eq!(duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(duration("45").unwrap_err().contains("like 45s"));
        assert!(duration("11m").unwrap_err().contains("allowed: 0s to 10m"));
    }
}
