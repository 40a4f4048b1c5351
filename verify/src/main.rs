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
//! for the page in Loki. If nothing answers at the URL it runs a temporary
//! `kubectl port-forward` to the gateway and stops it at the end (gateway.rs).
//! Exits 0 when every check holds, 1 otherwise, 2 on bad arguments.
//!
//! The checks, in order, are listed once: `checks::CHECKS`; each lives in
//! its own file under `checks/`, with the typed answer it reads.
#![allow(clippy::print_stdout)] // a command-line report

mod checks;
mod gateway;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use reqwest::blocking::Client;

use checks::{CHECKS, Context, MeshMode, Names, Outcome, Poll, Postgres};
use gateway::Kubectl;

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

fn run(args: &Args) -> anyhow::Result<bool> {
    let started = Instant::now();
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
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let mode_text = mode.map_or_else(
        || "mesh mode from the trace".to_owned(),
        |mode| format!("{} mode {mode_source}", mode.as_str()),
    );
    println!(
        "Checking the chain through {base} (namespace {}, {mode_text}); each check polls up to {} s.",
        args.namespace,
        args.poll_limit.as_secs_f64()
    );

    // The gateway itself; a port-forward when nothing answers.
    let (gateway, _forward) = gateway::reach(
        &kubectl,
        &client,
        &base,
        (&args.namespace, args.gateway_service.as_deref()),
        args.port_forward_wait,
    )?;
    report("gateway", &gateway);
    if !gateway.ok {
        for (name, _) in CHECKS {
            println!("· {name:<13} not checked: no gateway");
        }
        println!("\n✘ nothing to check without the gateway.");
        return Ok(false);
    }

    let mut cx = Context {
        client,
        base,
        names: Names {
            namespace: args.namespace.clone(),
            mode: mode.unwrap_or(MeshMode::Sidecar),
            waypoint: args.waypoint.clone(),
        },
        mode_known: mode.is_some(),
        postgres: args.postgres,
        slow_delay_ms: args.slow_delay_ms,
        poll: Poll {
            limit: args.poll_limit,
            interval: args.poll_interval,
            deadline: started + args.deadline,
        },
        trace_id: None,
    };
    let mut failed = 0;
    for (name, check) in CHECKS {
        let outcome = check(&mut cx);
        report(name, &outcome);
        failed += usize::from(!outcome.ok);
    }

    let total = CHECKS.len() + 1;
    let took = started.elapsed().as_secs_f64();
    if failed == 0 {
        println!("\n✔ all {total} checks hold ({took:.1} s).");
    } else {
        println!("\n✘ {failed} of {total} checks failed ({took:.1} s): see the causes above.");
    }
    Ok(failed == 0)
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
