//! `verify` against a stand-in gateway URL serving the real APIs' formats:
//! a healthy world, one broken world per check, the automatic port-forward
//! against a stand-in `kubectl`, and `make verify`'s wiring.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod standin;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use standin::{StandIn, Versions, World};

/// Short polls: a broken world fails in about a second per check.
const FAST: [&str; 6] = [
    "--poll-limit",
    "1s",
    "--poll-interval",
    "100ms",
    "--deadline",
    "30s",
];

/// Runs the checker; `path` replaces PATH (None: inherited).
fn verify(args: &[&str], path: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verify"));
    command.args(args).args(FAST).env_remove("VERIFY_URL");
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let output = command.output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn marked<'a>(out: &'a str, mark: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.starts_with(mark)).collect()
}

/// A fresh empty directory under the system's temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "verify-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(path, permissions).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `world` and asserts exactly one ✘, on `check`, with `hints` printed.
fn broken(world: World, check: &str, hints: &[&str]) {
    let standin = StandIn::start(world, 0);
    let output = verify(&["--url", &standin.url()], None);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let failed = marked(&out, "✘ ");
    assert_eq!(
        failed.len(),
        2,
        "one broken check and the closing line: {out}"
    );
    assert!(
        failed[0].starts_with(&format!("✘ {check}")),
        "{check} is the broken one: {out}"
    );
    assert!(failed[1].contains("1 of 8 checks failed"), "{out}");
    assert_eq!(marked(&out, "✔ ").len(), 7, "{out}");
    for hint in hints {
        assert!(out.contains(hint), "hint {hint:?} missing: {out}");
    }
}

/// Runs `world` and asserts it passes (exit 0); the output.
fn passes(world: World) -> String {
    let standin = StandIn::start(world, 0);
    let output = verify(&["--url", &standin.url()], None);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    out
}

#[test]
fn a_healthy_world_passes_every_check_and_exits_0() {
    let standin = StandIn::start(World::default(), 0);
    let output = verify(&["--url", &standin.url()], None);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    let passed = marked(&out, "✔ ");
    assert_eq!(passed.len(), 9, "eight checks and the closing line: {out}");
    for (line, check) in passed.iter().zip([
        "gateway",
        "1. pages",
        "2. Jaeger",
        "3. Loki",
        "4. Prometheus",
        "5. Kiali",
        "6. Monitor",
        "7. Access log",
    ]) {
        assert!(line.starts_with(&format!("✔ {check}")), "{line}");
    }
    assert!(marked(&out, "✘").is_empty(), "{out}");
    assert!(out.contains("all 8 checks hold"), "{out}");

    // It asked about the trace the slow page named, through the one URL.
    let traces = standin.traces();
    assert_eq!(traces.len(), 1, "one slow page request");
    let trace = &traces[0];
    assert!(
        out.contains(&format!("trace {trace} is one tree of 9 spans")),
        "{out}"
    );
    assert!(out.contains("istio-ingressgateway.istio-system → front-end.demo-app → front-end → business-logic.demo-app → business-logic → data_transformation"));
    assert!(out.contains(
        "istio-ingressgateway → front-end → business-logic → postgres, every edge with mTLS"
    ));
    let requests = standin.requests();
    assert!(
        requests
            .iter()
            .any(|r| r == "/demo-app/slow-page?delay_ms=500"),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r == &format!("/jaeger/api/traces/{trace}"))
    );
    assert!(requests.iter().any(|r| {
        r.starts_with("/grafana/api/datasources/proxy/uid/loki/loki/api/v1/query_range?")
    }));
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/grafana/api/datasources/proxy/uid/prometheus/api/v1/query?"))
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/kiali/api/namespaces/graph?namespaces=demo-app"))
    );

    // Jaeger's Monitor tab: both services' server spans, by operation.
    assert!(
        out.contains("span metrics in Jaeger's Monitor tab: front-end (2 operations, 0.10 req/s) and business-logic (1 operation, 0.05 req/s)"),
        "{out}"
    );
    assert!(
        requests.iter().any(|r| r.starts_with(
            "/jaeger/api/metrics/calls?service=front-end&service=business-logic&groupByOperation=true&spanKind=server&endTs="
        )),
        "{requests:?}"
    );
    // The gateway's access log line of the slow page (not of the landing
    // page, which the gateway logged too, with its own trace id).
    assert!(
        out.contains(&format!(
            "✔ 7. Access log gateway istio-ingressgateway: \"GET /demo-app/slow-page?delay_ms=500\" 200 in 512 ms, trace_id {trace}"
        )),
        "{out}"
    );
}

#[test]
fn jaeger_without_a_metrics_backend_points_at_its_query_configuration() {
    broken(
        World {
            no_metrics_backend: true,
            ..World::default()
        },
        "6. Monitor",
        &[
            "Jaeger's metrics API: 501 trace metrics are currently disabled",
            "jaeger_query.storage.metrics",
            "kubectl -n istio-system get configmap jaeger -o yaml",
        ],
    );
}

#[test]
fn no_span_metrics_point_at_the_connector_and_the_scrape() {
    broken(
        World {
            no_span_metrics: true,
            ..World::default()
        },
        "6. Monitor",
        &[
            "Jaeger's Monitor tab has no call rates for front-end and business-logic (it has: none)",
            "spanmetrics connector",
            "/prometheus/targets",
        ],
    );
}

#[test]
fn no_access_log_points_at_the_telemetry_and_alloy() {
    for gateway_api in [false, true] {
        broken(
            World {
                no_access_log: true,
                gateway_api,
                ..World::default()
            },
            "7. Access log",
            &[
                "Loki has no access log lines from the ingress gateway",
                "kubectl -n istio-system get telemetry mesh-default -o yaml",
                "kubectl -n istio-system logs ds/alloy",
            ],
        );
    }
}

#[test]
fn an_access_log_without_trace_ids_points_at_the_format() {
    broken(
        World {
            access_log_without_trace_id: true,
            ..World::default()
        },
        "7. Access log",
        &[
            "gateway istio-ingressgateway's access log lines carry no trace id (trace_id: -)",
            "%TRACE_ID%",
        ],
    );
}

#[test]
fn the_promql_it_sends_parses_in_prometheus_own_parser() {
    // promtool (Debian: prometheus) checks rule files with Prometheus' parser.
    let Ok(promtool) = Command::new("promtool").arg("--version").output() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool missing in CI"
        );
        eprintln!("skipped: promtool not installed (apt-get install prometheus)");
        return;
    };
    assert!(promtool.status.success());
    let standin = StandIn::start(World::default(), 0);
    assert_eq!(
        verify(&["--url", &standin.url()], None).status.code(),
        Some(0)
    );
    let mut expressions = standin.promql();
    expressions.sort();
    expressions.dedup();
    assert_eq!(expressions.len(), 2, "{expressions:?}");
    let rules = serde_json::json!({"groups": [{"name": "verify", "rules": expressions
        .iter()
        .enumerate()
        .map(|(i, expr)| serde_json::json!({"record": format!("verify:query{i}"), "expr": expr}))
        .collect::<Vec<_>>()}]});
    let file = temp_dir("promql").join("rules.yml");
    std::fs::write(&file, rules.to_string()).unwrap();
    let check = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // And a broken expression does fail there (the check can fail).
    std::fs::write(
        &file,
        r#"{"groups":[{"name":"x","rules":[{"record":"x:y","expr":"sum by (service (x)"}]}]}"#,
    )
    .unwrap();
    let check = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!check.status.success());
}

#[test]
fn without_postgresql_the_graph_ends_at_business_logic() {
    let world = World {
        no_postgres: true,
        ..World::default()
    };
    let out = passes(world);
    assert!(
        out.contains("istio-ingressgateway → front-end → business-logic, every edge with mTLS"),
        "{out}"
    );
    // Unless the user says PostgreSQL is on.
    let standin = StandIn::start(world, 0);
    let output = verify(&["--url", &standin.url(), "--postgres", "on"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("no edge business-logic → postgres"));
}

#[test]
fn a_gateway_api_gateway_is_accepted_and_named() {
    let out = passes(World {
        gateway_api: true,
        ..World::default()
    });
    assert!(
        out.contains(": app-gateway-istio.demo-app → front-end.demo-app → front-end"),
        "{out}"
    );
    assert!(
        out.contains(
            "app-gateway-istio → front-end → business-logic → postgres, every edge with mTLS"
        ),
        "{out}"
    );
}

#[test]
fn a_trace_without_sidecar_spans_points_at_sidecar_injection() {
    broken(
        World {
            no_sidecars: true,
            ..World::default()
        },
        "2. Jaeger",
        &[
            "has no sidecar spans",
            "kubectl get ns demo-app --show-labels",
        ],
    );
}

#[test]
fn a_trace_split_in_two_points_at_a_hop_that_drops_the_context() {
    broken(
        World {
            split_trace: true,
            ..World::default()
        },
        "2. Jaeger",
        &[
            "falls apart in 2 pieces: spans of business-logic.demo-app refer to parent spans that are not in the trace",
            "drops or rewrites the span context",
        ],
    );
}

#[test]
fn a_trace_without_business_logic_spans_points_at_propagation_between_the_two() {
    broken(
        World {
            no_business_logic_spans: true,
            ..World::default()
        },
        "2. Jaeger",
        &[
            "front-end spans but none from business-logic",
            "propagation between front-end and business-logic",
        ],
    );
}

#[test]
fn no_log_lines_point_at_alloy() {
    broken(
        World {
            no_log_lines: true,
            ..World::default()
        },
        "3. Loki",
        &[
            "Alloy is not shipping",
            "kubectl -n istio-system logs ds/alloy",
        ],
    );
}

#[test]
fn no_istio_metrics_point_at_the_sidecars() {
    broken(
        World {
            no_istio_metrics: true,
            ..World::default()
        },
        "4. Prometheus",
        &["no istio_requests_total for front-end → business-logic"],
    );
}

#[test]
fn an_edge_without_mtls_points_at_the_peer_authentication() {
    broken(
        World {
            edge_without_mtls: true,
            ..World::default()
        },
        "5. Kiali",
        &[
            "edge front-end → business-logic without mTLS",
            "PeerAuthentication",
            "kubectl -n demo-app get peerauthentication -o yaml",
        ],
    );
}

#[test]
fn nothing_at_the_url_and_no_kubectl_says_so_and_exits_1() {
    let empty = temp_dir("no-kubectl");
    let url = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let output = verify(&["--url", &url], Some(&empty));
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let failed = marked(&out, "✘ ");
    assert!(failed[0].starts_with("✘ gateway"), "{out}");
    assert!(failed[0].contains("`kubectl` is not installed"), "{out}");
    assert_eq!(failed.len(), 2, "the gateway and the closing line: {out}");
    assert!(out.contains("make port-forward"), "{out}");
    assert_eq!(marked(&out, "· ").len(), 7, "the rest not checked: {out}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The `case` arms of a stand-in `kubectl` for a cluster that is up: the
/// context `kind-demo` exists and its API server answers.
const CLUSTER_UP: &str = r#"  "config get-contexts -o name") echo kind-demo; exit 0 ;;
  "config current-context") echo kind-demo; exit 0 ;;
  *"get --raw /readyz"*) echo ok; exit 0 ;;"#;

/// A stand-in `kubectl` that records its calls; `port-forward` records its
/// pid and stays up (as the real one does) until it is stopped.
fn standin_kubectl(dir: &Path) {
    write_script(
        &dir.join("kubectl"),
        &format!(
            r#"#!/bin/sh
echo "$*" >> "{dir}/calls"
case "$*" in
{CLUSTER_UP}
  *port-forward*) echo $$ > "{dir}/pid"; exec sleep 60 ;;
  *"get service"*) exit 0 ;;
  *"get namespace demo-app -o jsonpath={{.metadata.labels.istio\.io/dataplane-mode}}"*)
    cat "{dir}/dataplane-mode" 2>/dev/null; exit 0 ;;
esac
exit 1
"#,
            dir = dir.display()
        ),
    );
}

/// `dir` first, then the usual PATH (the stand-in needs `sleep`).
fn path_with(dir: &Path) -> PathBuf {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    PathBuf::from(std::env::join_paths(paths).unwrap())
}

fn alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_dead_url_gets_a_port_forward_that_is_stopped_at_the_end() {
    let dir = temp_dir("port-forward");
    standin_kubectl(&dir);
    let port = free_port();
    // The "port-forward": once kubectl was asked for it, the gateway
    // answers on the forwarded port.
    let pid_file = dir.join("pid");
    let waiter = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !pid_file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        StandIn::start(World::default(), port)
    });
    let output = verify(
        &[
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--context",
            "kind-demo",
            "--port-forward-wait",
            "10s",
        ],
        Some(&path_with(&dir)),
    );
    let out = stdout(&output);
    let standin = waiter.join().unwrap();
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("through `kubectl --context kind-demo -n istio-system port-forward svc/istio-ingressgateway"), "{out}");
    let calls = std::fs::read_to_string(dir.join("calls")).unwrap();
    assert!(
        calls.contains("--context kind-demo -n demo-app get service -l gateway.networking.k8s.io/gateway-name -o name"),
        "{calls}"
    );
    assert!(
        calls.contains(&format!(
            "--context kind-demo -n istio-system port-forward svc/istio-ingressgateway {port}:80"
        )),
        "{calls}"
    );
    assert_eq!(
        standin.traces().len(),
        1,
        "the checks ran through the forward"
    );
    let pid = std::fs::read_to_string(dir.join("pid")).unwrap();
    assert!(
        !alive(pid.trim()),
        "the port-forward is stopped when verify ends"
    );
}

#[test]
fn a_gateway_api_gateway_is_preferred_when_the_namespace_has_one() {
    let dir = temp_dir("gateway-api");
    write_script(
        &dir.join("kubectl"),
        &format!(
            r#"#!/bin/sh
echo "$*" >> "{dir}/calls"
case "$*" in
{CLUSTER_UP}
  *"get service"*) echo service/app-gateway-istio; exit 0 ;;
  *port-forward*) echo 'error: unable to forward port because pod is not running' >&2; exit 1 ;;
esac
exit 1
"#,
            dir = dir.display()
        ),
    );
    let url = format!("http://127.0.0.1:{}", free_port());
    let output = verify(&["--url", &url], Some(&path_with(&dir)));
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let calls = std::fs::read_to_string(dir.join("calls")).unwrap();
    assert!(
        calls.contains("-n demo-app port-forward svc/app-gateway-istio"),
        "{calls}"
    );
    // kubectl's own complaint reaches the user.
    assert!(out.contains("pod is not running"), "{out}");
    assert!(marked(&out, "✘ ")[0].starts_with("✘ gateway"), "{out}");
}

/// A stand-in `kubectl` whose `case` arms are `arms` (anything else fails),
/// recording its calls in `dir/calls`.
fn kubectl_answering(dir: &Path, arms: &str) {
    write_script(
        &dir.join("kubectl"),
        &format!(
            "#!/bin/sh\necho \"$*\" >> \"{dir}/calls\"\ncase \"$*\" in\n{arms}\nesac\nexit 1\n",
            dir = dir.display()
        ),
    );
}

/// Without a cluster, verify says so first (before naming any gateway) and
/// what to run; it looks for no gateway and starts no port-forward.
fn says_there_is_no_cluster(arms: &str, args: &[&str], first: &str, look: &str) {
    let dir = temp_dir("no-cluster");
    kubectl_answering(&dir, arms);
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut all = vec!["--url", url.as_str()];
    all.extend(args);
    let output = verify(&all, Some(&path_with(&dir)));
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    // The first line after the heading is the verdict, and it starts with it.
    let verdict = out.lines().nth(1).unwrap_or_default();
    assert!(
        verdict.starts_with(&format!("✘ gateway       no cluster: {first}")),
        "{out}"
    );
    let hints: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("look closer:"))
        .map(str::trim)
        .collect();
    assert_eq!(hints.first(), Some(&"make up"), "{out}");
    assert!(hints.contains(&look), "{out}");
    assert!(
        out.contains("`make up`"),
        "the likely cause names it: {out}"
    );
    for fallback in [
        "istio-ingressgateway",
        "port-forward to",
        "starting a port-forward",
    ] {
        assert!(!out.contains(fallback), "{fallback:?}: {out}");
    }
    let calls = std::fs::read_to_string(dir.join("calls")).unwrap_or_default();
    assert!(
        !calls.contains("port-forward") && !calls.contains("get service"),
        "{calls}"
    );
    assert_eq!(marked(&out, "· ").len(), 7, "the rest not checked: {out}");
}

#[test]
fn without_the_context_verify_says_first_there_is_no_cluster_and_to_run_make_up() {
    says_there_is_no_cluster(
        r#"  "config get-contexts -o name") echo other; exit 0 ;;"#,
        &["--context", "kind-demo"],
        r#"kubectl context "kind-demo" does not exist (kubectl knows other)"#,
        "kubectl config get-contexts",
    );
    says_there_is_no_cluster(
        r#"  "config get-contexts -o name") exit 0 ;;"#,
        &["--context", "kind-demo"],
        r#"kubectl context "kind-demo" does not exist (kubectl knows no context at all)"#,
        "kubectl config get-contexts",
    );
}

#[test]
fn without_a_current_context_verify_says_first_there_is_no_cluster() {
    says_there_is_no_cluster(
        r#"  "config get-contexts -o name") exit 0 ;;
  "config current-context") echo 'error: current-context is not set' >&2; exit 1 ;;"#,
        &[],
        "kubectl has no current context (kubectl knows no context at all)",
        "kubectl config get-contexts",
    );
}

#[test]
fn a_cluster_that_does_not_answer_is_named_before_any_gateway() {
    says_there_is_no_cluster(
        r#"  "config get-contexts -o name") echo kind-demo; exit 0 ;;
  *"get --raw /readyz"*) echo 'The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?' >&2; exit 1 ;;"#,
        &["--context", "kind-demo"],
        r#"context "kind-demo" exists, but its API server does not answer (The connection to the server 127.0.0.1:6443 was refused"#,
        "kubectl --context kind-demo cluster-info",
    );
}

#[test]
fn a_live_url_starts_no_port_forward() {
    let dir = temp_dir("live");
    standin_kubectl(&dir);
    let standin = StandIn::start(World::default(), 0);
    let output = verify(&["--url", &standin.url()], Some(&path_with(&dir)));
    assert_eq!(output.status.code(), Some(0));
    // kubectl is asked for the namespace's mesh mode only: no port-forward,
    // no gateway lookup.
    let calls = std::fs::read_to_string(dir.join("calls")).unwrap();
    assert!(
        calls
            .lines()
            .all(|c| c.starts_with("get namespace demo-app -o jsonpath=")),
        "{calls}"
    );
    assert!(
        stdout(&output).contains("(namespace demo-app, sidecar mode from the namespace's labels)")
    );
}

#[test]
fn make_verify_runs_the_checker_with_the_makefiles_settings() {
    // A stand-in `cargo` that records how make calls it, then runs the
    // binary this test was built with (no release build in a test).
    let dir = temp_dir("make");
    write_script(
        &dir.join("cargo"),
        &format!(
            "#!/bin/sh\necho \"$*\" > \"{dir}/cargo-args\"\nwhile [ \"$1\" != -- ]; do shift; done; shift\nexec \"{bin}\" \"$@\"\n",
            dir = dir.display(),
            bin = env!("CARGO_BIN_EXE_verify")
        ),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let make_verify = |url: &str, extra: &[&str]| {
        Command::new("make")
            .arg("-C")
            .arg(root)
            .arg("verify")
            .args(extra)
            .arg(format!("VERIFY_URL={url}"))
            .arg(format!("CARGO={}", dir.join("cargo").display()))
            .arg(format!("VERIFY_ARGS={}", FAST.join(" ")))
            .output()
            .unwrap()
    };
    let standin = StandIn::start(World::default(), 0);
    let output = make_verify(&standin.url(), &[]);
    let out = stdout(&output);
    eprintln!("{out}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{out}");
    assert!(out.contains("all 8 checks hold"), "{out}");
    let args = std::fs::read_to_string(dir.join("cargo-args")).unwrap();
    assert!(args.starts_with("run --release -p verify -- "), "{args}");
    assert!(args.contains(&format!("--url {}", standin.url())), "{args}");
    assert!(args.contains("--namespace demo-app"), "{args}");
    assert!(args.contains("--context kind-demo"), "{args}");
    // No MESH_MODE given: verify reads the namespace's label (auto), not
    // MESH_MODE's default.
    assert!(args.contains("--mesh-mode auto"), "{args}");

    // MESH_MODE given: verify expects that mode.
    let ambient = StandIn::start(
        World {
            ambient: true,
            ..World::default()
        },
        0,
    );
    let output = make_verify(&ambient.url(), &["MESH_MODE=ambient"]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("ambient mode as asked"), "{out}");
    let args = std::fs::read_to_string(dir.join("cargo-args")).unwrap();
    assert!(args.contains("--mesh-mode ambient"), "{args}");

    // A broken world fails make too.
    let broken = StandIn::start(
        World {
            no_log_lines: true,
            ..World::default()
        },
        0,
    );
    assert!(!make_verify(&broken.url(), &[]).status.success());
}

#[test]
fn a_promoted_canary_passes() {
    // `make promote`, ten minutes on: every call goes to Deployment
    // business-logic-v2 (app business-logic, version v2), none to v1.
    let out = passes(World {
        business_logic: Versions::Promoted,
        ..World::default()
    });
    assert!(
        out.contains("istio-ingressgateway → front-end → business-logic → postgres, every edge with mTLS (business-logic v2)"),
        "{out}"
    );
    assert!(
        out.contains("istio_requests_total front-end → business-logic (v2)"),
        "{out}"
    );
}

#[test]
fn a_canary_in_progress_passes() {
    // `make canary`: calls split between v1 and v2; Kiali boxes the two.
    let out = passes(World {
        business_logic: Versions::Split,
        ..World::default()
    });
    assert!(
        out.contains("every edge with mTLS (business-logic v1 and v2)"),
        "{out}"
    );
    assert!(
        out.contains("istio_requests_total front-end → business-logic (v1 and v2)"),
        "{out}"
    );
}

#[test]
fn a_canary_edge_without_mtls_is_named_with_its_version() {
    broken(
        World {
            business_logic: Versions::Split,
            edge_without_mtls: true,
            ..World::default()
        },
        "5. Kiali",
        &[
            "edge front-end → business-logic without mTLS (front-end 0.1.0 → business-logic v1, front-end 0.1.0 → business-logic v2)",
            "PeerAuthentication",
        ],
    );
}

#[test]
fn kiali_is_asked_for_its_versioned_app_graph_and_prometheus_by_app() {
    let standin = StandIn::start(World::default(), 0);
    assert_eq!(
        verify(&["--url", &standin.url()], None).status.code(),
        Some(0)
    );
    let requests = standin.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/kiali/api/namespaces/graph?")
                && r.contains("graphType=versionedApp")),
        "{requests:?}"
    );
    let promql = standin.promql();
    assert!(
        promql.iter().any(|q| q.contains("source_app=\"front-end\"")
            && q.contains("destination_app=\"business-logic\"")),
        "{promql:?}"
    );
}

#[test]
fn no_traffic_to_business_logic_in_the_graph_points_at_the_sidecars_metrics() {
    for business_logic in [Versions::V1, Versions::Promoted] {
        broken(
            World {
                business_logic,
                no_business_logic_edge: true,
                ..World::default()
            },
            "5. Kiali",
            &["has no edge front-end → business-logic"],
        );
    }
}

#[test]
fn no_istio_metrics_after_promotion_fail_too() {
    broken(
        World {
            business_logic: Versions::Promoted,
            no_istio_metrics: true,
            ..World::default()
        },
        "4. Prometheus",
        &["no istio_requests_total for front-end → business-logic"],
    );
}

// ---------------------------------------------------------------- ambient mode

/// Runs `world` with `args` and asserts that exactly the checks `failing`
/// fail, each with its hints printed; the output.
fn fails_with(world: World, args: &[&str], failing: &[(&str, &[&str])]) -> String {
    let standin = StandIn::start(world, 0);
    let mut all = vec!["--url", standin.url().leak()];
    all.extend_from_slice(args);
    let output = verify(&all, None);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let failed = marked(&out, "✘ ");
    assert_eq!(
        failed.len(),
        failing.len() + 1,
        "the failing checks and the closing line: {out}"
    );
    for ((check, hints), line) in failing.iter().zip(&failed) {
        assert!(line.starts_with(&format!("✘ {check}")), "{check}: {out}");
        for hint in *hints {
            assert!(out.contains(hint), "hint {hint:?} missing: {out}");
        }
    }
    out
}

fn ambient() -> World {
    World {
        ambient: true,
        gateway_api: true,
        ..World::default()
    }
}

#[test]
fn an_ambient_world_passes_with_the_waypoint_in_the_trace() {
    let standin = StandIn::start(ambient(), 0);
    let output = verify(&["--url", &standin.url(), "--mesh-mode", "ambient"], None);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("(namespace demo-app, ambient mode as asked)"),
        "{out}"
    );
    assert!(
        out.contains("app-gateway-istio.demo-app → front-end → waypoint.demo-app → business-logic → data_transformation"),
        "{out}"
    );
    assert!(
        out.contains(
            "app-gateway-istio → front-end → business-logic → postgres, every edge with mTLS"
        ),
        "{out}"
    );
    assert!(
        out.contains("istio_requests_total front-end → business-logic (v1)"),
        "{out}"
    );
    // Kiali folds the waypoint into the edge it serves, as its graph page does.
    let requests = standin.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/kiali/api/namespaces/graph?")
                && r.contains("appenders=deadNode%2Cistio%2CsecurityPolicy%2Cambient")
                && r.contains("waypoints=false")),
        "{requests:?}"
    );
}

#[test]
fn the_mode_comes_from_the_namespace_label_or_else_from_the_trace() {
    // kubectl answers: the namespace is enrolled in ambient.
    let dir = temp_dir("ambient-label");
    standin_kubectl(&dir);
    std::fs::write(dir.join("dataplane-mode"), "ambient").unwrap();
    let standin = StandIn::start(ambient(), 0);
    let output = verify(&["--url", &standin.url()], Some(&path_with(&dir)));
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("ambient mode from the namespace's label"),
        "{out}"
    );

    // No kubectl: the waypoint's spans say ambient, sidecar spans sidecar.
    let empty = temp_dir("ambient-no-kubectl");
    for (world, mode) in [(ambient(), "ambient"), (World::default(), "sidecar")] {
        let standin = StandIn::start(world, 0);
        let output = verify(&["--url", &standin.url()], Some(&empty));
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(0), "{out}");
        assert!(out.contains("mesh mode from the trace"), "{out}");
        assert!(
            out.contains(&format!("  mesh mode {mode} (from the trace)")),
            "{out}"
        );
    }
}

#[test]
fn ambient_without_a_waypoint_points_at_the_waypoint_and_its_binding() {
    fails_with(
        World {
            no_waypoint: true,
            ..ambient()
        },
        &["--mesh-mode", "ambient"],
        &[
            (
                "2. Jaeger",
                &[
                    "has no span from the waypoint waypoint.demo-app",
                    "kubectl -n demo-app get gateway waypoint",
                    "kubectl -n demo-app get svc business-logic --show-labels   # istio.io/use-waypoint",
                ],
            ),
            (
                "4. Prometheus",
                &["the waypoint reports HTTP metrics (ztunnel only TCP ones)"],
            ),
        ],
    );
}

#[test]
fn ambient_without_enrolment_points_at_the_namespace_label_and_ztunnel() {
    fails_with(
        World {
            not_enrolled: true,
            ..ambient()
        },
        &["--mesh-mode", "ambient"],
        &[
            ("2. Jaeger", &["(istio.io/dataplane-mode=ambient)"]),
            ("4. Prometheus", &["no istio_requests_total"]),
            (
                "5. Kiali",
                &[
                    "edge gateway → front-end without mTLS",
                    "the namespace is not enrolled in ambient",
                    "kubectl -n istio-system get daemonset ztunnel",
                ],
            ),
        ],
    );
}

#[test]
fn an_ambient_edge_without_mtls_points_at_ztunnel() {
    fails_with(
        World {
            edge_without_mtls: true,
            ..ambient()
        },
        &["--mesh-mode", "ambient"],
        &[(
            "5. Kiali",
            &[
                "edge front-end → business-logic without mTLS",
                "ztunnel is not ready on the node",
                "kubectl get ns demo-app --show-labels   # istio.io/dataplane-mode=ambient",
            ],
        )],
    );
}

#[test]
fn the_wrong_mode_asked_is_named() {
    // Sidecar asked on an ambient namespace, and the other way round.
    fails_with(
        ambient(),
        &["--mesh-mode", "sidecar"],
        &[
            (
                "2. Jaeger",
                &[
                    "waypoint spans and no sidecar spans",
                    "make verify MESH_MODE=ambient",
                ],
            ),
            // Without the `ambient` appender Kiali draws the waypoint as a
            // node of its own: front-end → waypoint → business-logic.
            ("5. Kiali", &["no edge front-end → business-logic"]),
        ],
    );
    fails_with(
        World::default(),
        &["--mesh-mode", "ambient"],
        &[(
            "2. Jaeger",
            &[
                "has sidecar spans in ambient mode",
                "kubectl -n demo-app rollout restart deployment",
            ],
        )],
    );
}

#[test]
fn a_mode_it_does_not_know_is_refused() {
    let output = verify(
        &["--url", "http://127.0.0.1:1", "--mesh-mode", "ambiant"],
        None,
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected auto, sidecar or ambient"));
}
