//! The HTTP load generator: `oha` (pinned in mk/bench.mk), or Debian's `wrk`
//! where oha is not installed (CI installs wrk in seconds; oha builds in
//! minutes). Both hold a fixed number of keep-alive connections, each sending
//! its next request as soon as the last one answered, for a fixed time. oha
//! prints its results as JSON; wrk runs a Lua `done` hook that prints the
//! same fields in oha's shape, so one reader serves both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// One measured run, as the load generator saw it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RunStats {
    /// Responses received (any status).
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx responses plus connection errors and timeouts.
    pub errors: u64,
}

/// The fields read from `oha --output-format json` (oha 1.16.0).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OhaJson {
    summary: Summary,
    metrics: Metrics,
    status_code_distribution: BTreeMap<String, u64>,
    error_distribution: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize)]
struct Summary {
    /// Seconds.
    total: f64,
}

#[derive(Debug, Deserialize)]
struct Metrics {
    latency_ms: BTreeMap<String, Option<f64>>,
}

/// oha's JSON (after any lines before it: wrk's own report). Requests still
/// running when `-z` ends are "aborted due to deadline": the tool's doing,
/// not the server's, so they are not errors.
pub fn read_oha_json(output: &str) -> anyhow::Result<RunStats> {
    let start = output.find("\n{").map_or(0, |i| i + 1);
    let json: OhaJson = serde_json::from_str(&output[start..])?;
    let latency = json.metrics.latency_ms;
    let percentile = |p: &str| latency.get(p).copied().flatten().unwrap_or(f64::NAN);
    let statuses = json.status_code_distribution;
    let requests: u64 = statuses.values().sum();
    let failed = statuses
        .iter()
        .filter(|(status, _)| !status.starts_with('2'));
    let errors = json.error_distribution;
    let broken = errors
        .iter()
        .filter(|(e, _)| !e.contains("aborted due to deadline"));
    Ok(RunStats {
        requests,
        requests_per_s: requests as f64 / json.summary.total,
        p50_ms: percentile("p50"),
        p99_ms: percentile("p99"),
        errors: failed.chain(broken).map(|(_, n)| n).sum(),
    })
}

/// wrk's `done` hook: oha's JSON fields from wrk's summary (µs latencies;
/// `errors.status` counts non-2xx/3xx responses).
const WRK_DONE: &str = r#"done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format('\n{"summary":{"total":%f},"metrics":{"latency_ms":{"p50":%f,"p99":%f}},' ..
    '"statusCodeDistribution":{"2xx":%d,"non-2xx":%d},"errorDistribution":{"socket":%d}}\n',
    s.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    s.requests - e.status, e.status, e.connect + e.read + e.write + e.timeout))
end
"#;

/// A load generator found on this machine, with its fixed arguments.
#[derive(Debug, Clone)]
pub struct Tool {
    program: PathBuf,
    args: Vec<String>,
    /// "oha 1.16.0" or "wrk debian/4.1.0-3+b2".
    pub version: String,
}

impl Tool {
    /// `name` (oha or wrk; default: oha, else wrk) on PATH, its runs on one
    /// runtime thread when `pinned` to one CPU; `dir` holds wrk's hook.
    pub fn find(name: Option<&str>, dir: &Path, pinned: bool) -> anyhow::Result<Self> {
        let names = name.map_or(vec!["oha", "wrk"], |name| vec![name]);
        let found = names.into_iter().find_map(|n| Some((n, crate::which(n)?)));
        let (name, program) =
            found.context("no load generator on PATH: `make bench` installs oha")?;
        let (mut args, version) = if name == "oha" {
            (
                vec!["--no-tui", "--output-format", "json", "-t", "30s"],
                "--version",
            )
        } else {
            (vec!["-t", "1", "--timeout", "30s", "-s"], "-v")
        };
        let mut args: Vec<String> = args.drain(..).map(str::to_owned).collect();
        if name == "wrk" {
            let hook = dir.join("wrk-done.lua");
            std::fs::write(&hook, WRK_DONE)?;
            args.push(hook.display().to_string());
        } else if pinned {
            // oha defaults to a runtime thread per core.
            args.extend(["--worker-threads", "1"].map(str::to_owned));
        }
        let said = std::process::Command::new(&program).arg(version).output()?;
        let said = String::from_utf8_lossy(&[said.stdout, said.stderr].concat()).into_owned();
        let version = said
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Self {
            program,
            args,
            version,
        })
    }

    /// `connections` keep-alive connections against `url` for `duration`.
    pub async fn run(
        &self,
        url: &str,
        connections: u32,
        duration: Duration,
    ) -> anyhow::Result<RunStats> {
        let length = if self.version.starts_with("oha") {
            "-z"
        } else {
            "-d"
        };
        let seconds = format!("{}s", duration.as_secs().max(1));
        let output = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .args(["-c", &connections.to_string(), length, &seconds, url])
            .stdin(std::process::Stdio::null())
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            bail!(
                "{} failed ({}): {stdout}{stderr}",
                self.version,
                output.status
            );
        }
        read_oha_json(&stdout)
            .with_context(|| format!("reading {}'s output:\n{stdout}", self.version))
    }
}
