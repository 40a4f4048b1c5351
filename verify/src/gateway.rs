//! Reaching the gateway URL: if nothing answers there, first whether there
//! is a cluster at all (the kubectl context exists and its API server
//! answers), then a temporary `kubectl port-forward` to the ingress gateway,
//! stopped when done.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;

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
