//! `verify`, the binary, against a replay server that answers each request
//! with a recorded answer of the real API (verify/testdata, sources in its
//! README), chosen by path and query: a healthy cluster in each mesh mode,
//! one broken link per API, the automatic port-forward against a stand-in
//! `kubectl`, and `make verify`'s wiring. What each check makes of every
//! recorded answer is tested next to the check (verify/src/checks/).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// Short polls: a broken link fails in about a second.
const FAST: [&str; 6] = [
    "--poll-limit",
    "1s",
    "--poll-interval",
    "100ms",
    "--deadline",
    "30s",
];

/// The trace id of the slow page and of the recorded answers.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const LOKI: &str = "/grafana/api/datasources/proxy/uid/loki/loki/api/v1/query_range";
const PROMETHEUS: &str = "/grafana/api/datasources/proxy/uid/prometheus/api/v1/query";
const KIALI: &str = "/kiali/api/namespaces/graph";

/// A recorded answer and the requests it answers: path `path` with a query
/// whose decoded values contain `query_has`.
#[derive(Debug, Clone, Copy)]
struct Recorded {
    path: &'static str,
    query_has: &'static str,
    status: u16,
    /// Under verify/testdata.
    file: &'static str,
}

const fn recorded(path: &'static str, query_has: &'static str, file: &'static str) -> Recorded {
    Recorded {
        path,
        query_has,
        status: 200,
        file,
    }
}

/// A healthy cluster in sidecar mode with Istio's ingress gateway.
#[rustfmt::skip]
fn sidecar() -> Vec<Recorded> {
    vec![
        recorded("/jaeger/api/traces/4bf92f3577b34da6a3ce929d0e0e4736", "", "jaeger/trace-sidecar.json"),
        recorded(LOKI, r#"{namespace="demo-app", container!="istio-proxy"} |= "4bf92f3577b34da6a3ce929d0e0e4736""#, "loki/service-lines.json"),
        recorded(LOKI, r#"{log_type="access", gateway!=""} |= "4bf92f3577b34da6a3ce929d0e0e4736""#, "loki/access-log.json"),
        recorded(PROMETHEUS, r#"sum by (service) (http_requests_total{namespace="demo-app""#, "prometheus/app-requests.json"),
        recorded(PROMETHEUS, r#"istio_requests_total{source_app="front-end", destination_app="business-logic""#, "prometheus/istio-requests-v1.json"),
        recorded(KIALI, "versionedApp", "kiali/graph-sidecar.json"),
        recorded("/jaeger/api/metrics/calls", "server", "jaeger-metrics/calls.json"),
    ]
}

/// A healthy cluster in ambient mode behind a Gateway API gateway: Kiali
/// answers only when asked with the `ambient` appender.
fn ambient() -> Vec<Recorded> {
    let mut answers = sidecar();
    replace(
        &mut answers,
        "jaeger/trace-sidecar.json",
        200,
        "jaeger/trace-ambient.json",
    );
    replace(
        &mut answers,
        "loki/access-log.json",
        200,
        "loki/access-log-gateway-api.json",
    );
    replace(
        &mut answers,
        "kiali/graph-sidecar.json",
        200,
        "kiali/graph-ambient.json",
    );
    for answer in &mut answers {
        if answer.path == KIALI {
            answer.query_has = "deadNode,istio,securityPolicy,ambient";
        }
    }
    answers
}

/// Serves `file` with `status` where `answers` served `old`.
fn replace(answers: &mut [Recorded], old: &str, status: u16, file: &'static str) {
    let answer = answers.iter_mut().find(|a| a.file == old).unwrap();
    answer.status = status;
    answer.file = file;
}

/// The replay server: the app's two pages, then the recorded answers.
#[derive(Debug, Clone)]
struct Replay {
    port: u16,
    requests: Requests,
}

impl Replay {
    /// Serves `answers` on 127.0.0.1:`port` (0: any free port).
    fn start(answers: Vec<Recorded>, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new((answers, requests.clone()));
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .default_service(web::to(answer))
                })
                .workers(1)
                .listen(listener)
                .unwrap()
                .run()
                .await
                .unwrap();
            });
        });
        Self { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests' paths and queries, as sent.
    fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// The `query` parameters sent to `path`, decoded.
    fn queries(&self, path: &str) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(r, _)| r.split('?').next() == Some(path))
            .flat_map(|(_, q)| {
                q.iter()
                    .filter(|(k, _)| k == "query")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }
}

/// Every request's path and query, and its decoded query parameters.
type Requests = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;
type State = web::Data<(Vec<Recorded>, Requests)>;

async fn answer(state: State, request: HttpRequest) -> HttpResponse {
    let (answers, requests) = &**state;
    let query = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    requests
        .lock()
        .unwrap()
        .push((request.uri().to_string(), query.clone()));
    let html = |body: &str| {
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(body.to_owned())
    };
    match request.path() {
        "/demo-app/" => {
            return html(
                r#"<a class="button" id="fast-page" href="fast-page">Fast page</a>
<a class="button slow" id="slow-page" href="slow-page">Slow page</a>"#,
            );
        }
        "/demo-app/slow-page" => {
            let mut page = html(&format!("<code id=\"trace-id\">{TRACE_ID}</code>"));
            page.headers_mut().insert(
                "traceresponse".parse().unwrap(),
                format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
                    .parse()
                    .unwrap(),
            );
            return page;
        }
        _ => {}
    }
    let values: Vec<&str> = query.iter().map(|(_, v)| v.as_str()).collect();
    let values = values.join("\n");
    match answers
        .iter()
        .find(|a| a.path == request.path() && values.contains(a.query_has))
    {
        Some(answer) => {
            let file = format!("{}/testdata/{}", env!("CARGO_MANIFEST_DIR"), answer.file);
            HttpResponse::build(actix_web::http::StatusCode::from_u16(answer.status).unwrap())
                .content_type("application/json")
                .body(std::fs::read_to_string(file).unwrap())
        }
        None => HttpResponse::NotFound().body("404 page not found"),
    }
}

/// Runs the checker; `path` replaces PATH (None: inherited).
fn verify(args: &[&str], path: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verify"));
    command
        .args(args)
        .args(FAST)
        .env_remove("VERIFY_URL")
        .env_remove("MESH_MODE");
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

#[test]
fn a_healthy_sidecar_cluster_passes_every_check_in_order_and_exits_0() {
    let replay = Replay::start(sidecar(), 0);
    let output = verify(&["--url", &replay.url(), "--mesh-mode", "sidecar"], None);
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
    assert!(out.contains("all 8 checks hold"), "{out}");
    assert!(out.contains(&format!("slow page 200, trace {TRACE_ID} (traceresponse)")));
    // Each answer was asked for as its API wants it (a request the replay
    // does not know gets 404 and fails its check).
    let requests = replay.requests();
    assert!(
        requests
            .iter()
            .any(|r| r == "/demo-app/slow-page?delay_ms=500"),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.starts_with(
            "/jaeger/api/metrics/calls?service=front-end&service=business-logic&groupByOperation=true&spanKind=server&endTs="
        )),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r
            .starts_with("/kiali/api/namespaces/graph?namespaces=demo-app&graphType=versionedApp")),
        "{requests:?}"
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
    let replay = Replay::start(sidecar(), 0);
    assert_eq!(
        verify(&["--url", &replay.url(), "--mesh-mode", "sidecar"], None)
            .status
            .code(),
        Some(0)
    );
    let mut expressions = replay.queries(PROMETHEUS);
    expressions.sort();
    expressions.dedup();
    assert_eq!(expressions.len(), 2, "{expressions:?}");
    let check = |rules: serde_json::Value| {
        let file = temp_dir("promql").join("rules.yml");
        std::fs::write(&file, rules.to_string()).unwrap();
        let output = Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(&file)
            .output()
            .unwrap();
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        output.status.success()
    };
    let rules = |exprs: &[&str]| {
        serde_json::json!({"groups": [{"name": "verify", "rules": exprs
            .iter()
            .enumerate()
            .map(|(i, expr)| serde_json::json!({"record": format!("verify:query{i}"), "expr": expr}))
            .collect::<Vec<_>>()}]})
    };
    let sent: Vec<&str> = expressions.iter().map(String::as_str).collect();
    assert!(check(rules(&sent)), "{expressions:?}");
    // And a broken expression does fail there (the check can fail).
    assert!(!check(rules(&["sum by (service (x)"])));
}

#[test]
fn a_broken_link_fails_its_check_alone_names_the_cause_and_exits_1() {
    #[rustfmt::skip]
    let cases: [(&str, u16, &str, &str, &[&str]); 3] = [
        ("jaeger/trace-sidecar.json", 200, "jaeger/trace-split.json", "2. Jaeger", &["falls apart in 2 pieces", "    look closer:  kubectl -n demo-app logs deploy/front-end | grep 'span export'"]),
        ("loki/service-lines.json", 200, "loki/empty.json", "3. Loki", &["    likely cause: Alloy is not shipping the pods' logs to Loki"]),
        ("jaeger-metrics/calls.json", 501, "jaeger-metrics/disabled.json", "6. Monitor", &["Jaeger's metrics API: 501 metrics querying is currently disabled"]),
    ];
    for (old, status, file, check, hints) in cases {
        let mut answers = sidecar();
        replace(&mut answers, old, status, file);
        let replay = Replay::start(answers, 0);
        let output = verify(&["--url", &replay.url(), "--mesh-mode", "sidecar"], None);
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
            "{check}: {out}"
        );
        assert!(failed[1].contains("1 of 8 checks failed"), "{out}");
        for hint in hints {
            assert!(out.contains(hint), "hint {hint:?} missing: {out}");
        }
    }
}

#[test]
fn the_mode_is_named_or_read_from_the_namespace_or_else_from_the_trace() {
    let replay = Replay::start(ambient(), 0);
    let output = verify(&["--url", &replay.url(), "--mesh-mode", "ambient"], None);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("(namespace demo-app, ambient mode as asked)"),
        "{out}"
    );

    // kubectl answers: the namespace is enrolled in ambient, or (sidecar)
    // has no such label. A live URL needs nothing else from kubectl: no
    // gateway lookup, no port-forward.
    for (answers, label, says) in [
        (
            ambient(),
            "ambient",
            "ambient mode from the namespace's label",
        ),
        (sidecar(), "", "sidecar mode from the namespace's labels"),
    ] {
        let dir = temp_dir("label");
        standin_kubectl(&dir);
        std::fs::write(dir.join("dataplane-mode"), label).unwrap();
        let replay = Replay::start(answers, 0);
        let output = verify(&["--url", &replay.url()], Some(&path_with(&dir)));
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(0), "{out}");
        assert!(out.contains(says), "{out}");
        let calls = std::fs::read_to_string(dir.join("calls")).unwrap();
        assert!(
            calls
                .lines()
                .all(|c| c.starts_with("get namespace demo-app -o jsonpath=")),
            "{calls}"
        );
    }

    // No kubectl: the waypoint's spans say ambient, sidecar spans sidecar.
    let empty = temp_dir("no-kubectl");
    for (answers, mode) in [(ambient(), "ambient"), (sidecar(), "sidecar")] {
        let replay = Replay::start(answers, 0);
        let output = verify(&["--url", &replay.url()], Some(&empty));
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
fn nothing_at_the_url_and_no_kubectl_says_so_and_exits_1() {
    let empty = temp_dir("no-kubectl");
    let url = format!("http://127.0.0.1:{}", free_port());
    let output = verify(&["--url", &url], Some(&empty));
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let failed = marked(&out, "✘ ");
    assert!(failed[0].starts_with("✘ gateway"), "{out}");
    assert!(failed[0].contains("`kubectl` is not installed"), "{out}");
    assert_eq!(failed.len(), 2, "the gateway and the closing line: {out}");
    assert!(out.contains("make port-forward"), "{out}");
    assert_eq!(marked(&out, "· ").len(), 7, "the rest not checked: {out}");
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
        Replay::start(sidecar(), port)
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
    let replay = waiter.join().unwrap();
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
    assert!(
        replay
            .requests()
            .iter()
            .any(|r| r.starts_with("/demo-app/slow-page")),
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
    let replay = Replay::start(sidecar(), 0);
    let output = make_verify(&replay.url(), &[]);
    let out = stdout(&output);
    eprintln!("{out}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{out}");
    assert!(out.contains("all 8 checks hold"), "{out}");
    let args = std::fs::read_to_string(dir.join("cargo-args")).unwrap();
    assert!(args.starts_with("run --release -p verify -- "), "{args}");
    assert!(args.contains(&format!("--url {}", replay.url())), "{args}");
    assert!(args.contains("--namespace demo-app"), "{args}");
    assert!(args.contains("--context kind-demo"), "{args}");
    // No MESH_MODE given: verify reads the namespace's label (auto), not
    // MESH_MODE's default.
    assert!(args.contains("--mesh-mode auto"), "{args}");

    // MESH_MODE given: verify expects that mode.
    let ambient = Replay::start(ambient(), 0);
    let output = make_verify(&ambient.url(), &["MESH_MODE=ambient"]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("ambient mode as asked"), "{out}");
    let args = std::fs::read_to_string(dir.join("cargo-args")).unwrap();
    assert!(args.contains("--mesh-mode ambient"), "{args}");

    // A broken world fails make too.
    let mut answers = sidecar();
    replace(
        &mut answers,
        "loki/service-lines.json",
        200,
        "loki/empty.json",
    );
    let broken = Replay::start(answers, 0);
    assert!(!make_verify(&broken.url(), &[]).status.success());
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
