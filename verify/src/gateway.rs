//! Reaching the gateway URL: if nothing answers there, first whether there
//! is a cluster at all (the kubectl context exists and its API server
//! answers), then a temporary `kubectl port-forward` to the ingress gateway,
//! stopped when done.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::blocking::Client;

use crate::checks::Outcome;

/// Whether anything answers HTTP at `url` (any status counts).
pub fn answers(client: &Client, url: &str) -> bool {
    client.get(url).send().is_ok()
}

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct Kubectl {
    pub program: String,
    pub context: Option<String>,
}

/// Why there is no cluster to forward to.
#[derive(Debug, PartialEq, Eq)]
pub enum NoCluster {
    /// `kubectl` is not installed (or not at the given path).
    NoKubectl(String),
    /// The context asked for is not in kubectl's configuration; the ones
    /// that are.
    NoContext { context: String, known: Vec<String> },
    /// No context asked for, and kubectl has no current one.
    NoCurrentContext { known: Vec<String> },
    /// The context exists, but its API server does not answer.
    Unreachable { context: String, error: String },
}

/// How long kubectl may wait for the API server when asked whether it is up.
const API_SERVER_TIMEOUT: &str = "5s";

impl Kubectl {
    /// kubectl without `--context`, for its configuration.
    fn plain(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.stdin(Stdio::null());
        command
    }

    /// Runs `command`: its stdout when it succeeds, else its stderr's first
    /// line (or the exit status); `NoKubectl` when the program is missing.
    fn output(&self, mut command: Command) -> Result<Result<String, String>, NoCluster> {
        match command.output() {
            Ok(output) if output.status.success() => {
                Ok(Ok(String::from_utf8_lossy(&output.stdout).into_owned()))
            }
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let first = stderr.lines().map(str::trim).find(|l| !l.is_empty());
                Ok(Err(first.map_or_else(
                    || format!("exited with {}", output.status),
                    str::to_owned,
                )))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(NoCluster::NoKubectl(self.program.clone()))
            }
            Err(error) => Ok(Err(error.to_string())),
        }
    }

    /// The context in use, once it is known to exist and its API server
    /// answers: asked before anything names a gateway, so that a machine
    /// without a cluster hears that first.
    pub fn cluster(&self) -> Result<String, NoCluster> {
        let mut list = self.plain();
        list.args(["config", "get-contexts", "-o", "name"]);
        let known: Vec<String> = self
            .output(list)?
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let context = match &self.context {
            Some(context) if known.contains(context) => context.clone(),
            Some(context) => {
                return Err(NoCluster::NoContext {
                    context: context.clone(),
                    known,
                });
            }
            None => {
                let mut current = self.plain();
                current.args(["config", "current-context"]);
                match self.output(current)? {
                    Ok(name) if !name.trim().is_empty() => name.trim().to_owned(),
                    _ => return Err(NoCluster::NoCurrentContext { known }),
                }
            }
        };
        let mut ping = self.command();
        ping.args([
            "get",
            "--raw",
            "/readyz",
            &format!("--request-timeout={API_SERVER_TIMEOUT}"),
        ])
        .stdin(Stdio::null());
        match self.output(ping)? {
            Ok(_) => Ok(context),
            Err(error) => Err(NoCluster::Unreachable { context, error }),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        if let Some(context) = &self.context {
            command.args(["--context", context]);
        }
        command
    }

    /// The namespace's `istio.io/dataplane-mode` label: `Some("ambient")`
    /// when it is enrolled in ambient, `Some("")` when it has no such label,
    /// `None` when kubectl cannot tell (no kubectl, no cluster, no namespace).
    pub fn dataplane_mode(&self, namespace: &str) -> Option<String> {
        let output = self
            .command()
            .args([
                "get",
                "namespace",
                namespace,
                "-o",
                r"jsonpath={.metadata.labels.istio\.io/dataplane-mode}",
                &format!("--request-timeout={API_SERVER_TIMEOUT}"),
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The gateway's Service as `(namespace, service)`: the one Istio deploys
    /// for a Gateway API `Gateway` in the app namespace when there is one,
    /// else Istio's own `istio-system/istio-ingressgateway`.
    pub fn gateway_service(&self, namespace: &str) -> (String, String) {
        let output = self
            .command()
            .args([
                "-n",
                namespace,
                "get",
                "service",
                "-l",
                "gateway.networking.k8s.io/gateway-name",
                "-o",
                "name",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        if let Ok(output) = output
            && output.status.success()
            && let Some(name) = String::from_utf8_lossy(&output.stdout)
                .lines()
                .find_map(|l| l.trim().strip_prefix("service/").map(str::to_owned))
        {
            return (namespace.to_owned(), name);
        }
        ("istio-system".to_owned(), "istio-ingressgateway".to_owned())
    }
}

/// A running `kubectl port-forward`; stopped (and reaped) on drop.
#[derive(Debug)]
pub struct PortForward {
    child: Child,
    pub description: String,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why the port-forward could not be used.
#[derive(Debug)]
pub enum ForwardError {
    /// `kubectl` is not installed (or not at the given path).
    NoKubectl(String),
    /// It started but exited, or the URL never answered.
    Failed(String),
}

/// Starts `kubectl port-forward svc/<gateway> <port>:80` and waits up to
/// `wait` for `url` to answer through it.
pub fn port_forward(
    kubectl: &Kubectl,
    (namespace, service): (&str, &str),
    port: u16,
    client: &Client,
    url: &str,
    wait: Duration,
) -> Result<PortForward, ForwardError> {
    let context = kubectl
        .context
        .as_deref()
        .map(|c| format!(" --context {c}"))
        .unwrap_or_default();
    let description = format!(
        "{}{context} -n {namespace} port-forward svc/{service} {port}:80",
        kubectl.program
    );
    let child = kubectl
        .command()
        .args([
            "-n",
            namespace,
            "port-forward",
            &format!("svc/{service}"),
            &format!("{port}:80"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ForwardError::NoKubectl(kubectl.program.clone()));
        }
        Err(error) => {
            return Err(ForwardError::Failed(format!(
                "{description}: could not start: {error}"
            )));
        }
    };
    let mut forward = PortForward { child, description };
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = forward.child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = forward.child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return Err(ForwardError::Failed(format!(
                "`{}` exited ({status}): {}",
                forward.description,
                stderr.trim()
            )));
        }
        if answers(client, url) {
            return Ok(forward);
        }
        if start.elapsed() >= wait {
            return Err(ForwardError::Failed(format!(
                "`{}` runs, but nothing answered at {url} within {} s",
                forward.description,
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The gateway's outcome, and the port-forward to keep alive while checking.
/// `service` is the gateway Service as NAMESPACE/NAME when the user named
/// it; `wait` how long the forward may take to answer.
pub fn reach(
    kubectl: &Kubectl,
    client: &Client,
    base: &str,
    (namespace, service): (&str, Option<&str>),
    wait: Duration,
) -> anyhow::Result<(Outcome, Option<PortForward>)> {
    let root = format!("{base}/");
    if answers(client, &root) {
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
    // No cluster, no gateway to look for: say that first.
    if let Err(no_cluster) = kubectl.cluster() {
        return Ok((no_cluster_outcome(&no_cluster, base), None));
    }
    let (namespace, service) = match service.and_then(|s| s.split_once('/')) {
        Some((ns, name)) => (ns.to_owned(), name.to_owned()),
        None => kubectl.gateway_service(namespace),
    };
    println!("  nothing answers at {base}: starting a port-forward to {namespace}/{service}");
    let context = kubectl
        .context
        .as_deref()
        .map(|c| format!(" --context {c}"))
        .unwrap_or_default();
    match port_forward(kubectl, (&namespace, &service), port, client, &root, wait) {
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
