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

/// One measured run: what the load generator saw, and (filled in by the
/// harness) how busy the servers' and the load generator's CPUs were.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Run {
    /// Responses received (any status).
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx responses plus connection errors and timeouts.
    pub errors: u64,
    /// Busy share of the servers' CPU (unpinned: of the whole machine).
    pub server_cpu_pct: Option<f64>,
    pub load_cpu_pct: Option<f64>,
    /// The servers' CPU time per request, µs: busy share ÷ throughput
    /// (pinned runs only; whatever else ran on that CPU is in it).
    pub server_cpu_us: Option<f64>,
}

/// oha's JSON (oha 1.16.0's `--output-format json`; after any lines before
/// it: wrk's own report): `summary.total` seconds, `metrics.latency_ms`,
/// `statusCodeDistribution`, `errorDistribution`. Requests still running
/// when `-z` ends are "aborted due to deadline": the tool's doing, not the
/// server's, so they are not errors.
pub fn read_oha_json(output: &str) -> anyhow::Result<Run> {
    let start = output.find("\n{").map_or(0, |i| i + 1);
    let json: serde_json::Value = serde_json::from_str(&output[start..])?;
    let field = |pointer: &str| json.pointer(pointer).context(format!("no {pointer}"));
    let counts = |pointer| -> anyhow::Result<BTreeMap<String, u64>> {
        Ok(serde_json::from_value(field(pointer)?.clone())?)
    };
    let total = field("/summary/total")?.as_f64().context("summary.total")?;
    let percentile = |p| field(p).ok().and_then(serde_json::Value::as_f64);
    let statuses = counts("/statusCodeDistribution")?;
    let requests: u64 = statuses.values().sum();
    let failed = statuses.iter().filter(|(code, _)| !code.starts_with('2'));
    let errors = counts("/errorDistribution")?;
    let broken = errors
        .iter()
        .filter(|(e, _)| !e.contains("aborted due to deadline"));
    Ok(Run {
        requests,
        requests_per_s: requests as f64 / total,
        p50_ms: percentile("/metrics/latency_ms/p50").unwrap_or(f64::NAN),
        p99_ms: percentile("/metrics/latency_ms/p99").unwrap_or(f64::NAN),
        errors: failed.chain(broken).map(|(_, n)| n).sum(),
        ..Run::default()
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
    /// `name` (oha or wrk; default: oha, else wrk) on PATH, holding
    /// `connections`, its runs on one runtime thread when `pinned` to one
    /// CPU; `dir` holds wrk's hook.
    pub fn find(
        name: Option<&str>,
        connections: u32,
        dir: &Path,
        pinned: bool,
    ) -> anyhow::Result<Self> {
        let names = name.map_or(vec!["oha", "wrk"], |name| vec![name]);
        let found = names.into_iter().find_map(|n| Some((n, crate::which(n)?)));
        let (name, program) =
            found.context("no load generator on PATH: `make bench` installs oha")?;
        // oha defaults to a runtime thread per core.
        let threads = if pinned { " --worker-threads 1" } else { "" };
        let (flags, version) = match name {
            "oha" => (
                format!("--no-tui --output-format json -t 30s{threads}"),
                "--version",
            ),
            _ => ("-t 1 --timeout 30s -s".to_owned(), "-v"),
        };
        let flags = format!("-c {connections} {flags}");
        let mut args: Vec<String> = flags.split(' ').map(str::to_owned).collect();
        if name == "wrk" {
            let hook = dir.join("wrk-done.lua");
            std::fs::write(&hook, WRK_DONE)?;
            args.push(hook.display().to_string());
        }
        args.push(if name == "oha" { "-z" } else { "-d" }.to_owned());
        let said = std::process::Command::new(&program).arg(version).output()?;
        let said = String::from_utf8_lossy(&[said.stdout, said.stderr].concat()).into_owned();
        let version = said.split_whitespace().take(2).collect::<Vec<_>>();
        Ok(Self {
            program,
            args,
            version: version.join(" "),
        })
    }

    /// A run against `url` for `duration`.
    pub async fn run(&self, url: &str, duration: Duration) -> anyhow::Result<Run> {
        let seconds = format!("{}s", duration.as_secs().max(1));
        let output = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .args([&seconds, url])
            .stdin(std::process::Stdio::null())
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let (version, status) = (&self.version, output.status);
            bail!("{version} failed ({status}): {stdout}{stderr}");
        }
        read_oha_json(&stdout)
            .with_context(|| format!("reading {}'s output:\n{stdout}", self.version))
    }
}
