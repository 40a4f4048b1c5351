//! The HTTP load generator the benchmark drives: `oha` (crates.io, JSON
//! output) or `wrk` (Debian, text output). Both hold a fixed number of
//! keep-alive connections and send the next request as soon as the last one
//! answered (closed loop).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::pinning::Pinning;

/// Which tool to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// `oha` if found, else `wrk`.
    Auto,
    Oha,
    Wrk,
}

/// A load generator found on this machine.
#[derive(Debug, Clone)]
pub enum LoadTool {
    Oha(PathBuf),
    Wrk(PathBuf),
}

/// One measured run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct RunStats {
    /// Responses received (any status).
    pub requests: u64,
    /// Responses per second over the run.
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx responses plus connection errors and timeouts.
    pub errors: u64,
    pub duration_s: f64,
}

/// Where to look for a tool besides PATH: `target/tools/bin`, where
/// `make bench` installs oha.
fn extra_dirs() -> Vec<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    vec![workspace.join("target/tools/bin")]
}

/// The path of `program` on PATH or in the extra directories.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

impl LoadTool {
    /// Finds the chosen tool, with an install hint when it is missing.
    pub fn find(choice: Choice) -> anyhow::Result<Self> {
        let oha = || which("oha").map(Self::Oha);
        let wrk = || which("wrk").map(Self::Wrk);
        let found = match choice {
            Choice::Auto => oha().or_else(wrk),
            Choice::Oha => oha(),
            Choice::Wrk => wrk(),
        };
        found.with_context(|| {
            "no load generator found: install oha (`make bench` does: cargo install --locked oha \
             --root target/tools) or wrk (apt-get install wrk)"
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Oha(_) => "oha",
            Self::Wrk(_) => "wrk",
        }
    }

    /// "oha 1.16.0" or "wrk 4.1.0".
    pub fn version(&self) -> String {
        let (path, args): (&Path, &[&str]) = match self {
            Self::Oha(p) => (p, &["--version"]),
            // wrk prints its version with -v (and exits 1).
            Self::Wrk(p) => (p, &["-v"]),
        };
        let line = crate::machine::command_output(&path.to_string_lossy(), args)
            .unwrap_or_else(|| self.name().to_owned());
        // "wrk 4.1.0 [epoll] Copyright (C) 2012 Will Glozer" -> "wrk 4.1.0"
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs `concurrency` connections against `url` for `duration` on the
    /// load generator's CPU.
    pub async fn run(
        &self,
        pinning: &Pinning,
        url: &str,
        concurrency: u32,
        duration: Duration,
    ) -> anyhow::Result<RunStats> {
        let seconds = duration.as_secs().max(1).to_string();
        let mut command = match self {
            Self::Oha(path) => {
                let mut c = pinning.load_command(path);
                c.args(["--no-tui", "--output-format", "json"])
                    .args(["-z", &format!("{seconds}s")])
                    .args(["-c", &concurrency.to_string()])
                    .args(["-t", "30s"]);
                if matches!(pinning, Pinning::Pinned { .. }) {
                    // One CPU: one runtime thread (oha defaults to the physical core count).
                    c.args(["--worker-threads", "1"]);
                }
                c.arg(url);
                c
            }
            Self::Wrk(path) => {
                let mut c = pinning.load_command(path);
                c.args(["-t", "1", "-c", &concurrency.to_string()])
                    .args(["-d", &format!("{seconds}s")])
                    .args(["--timeout", "30s", "--latency"])
                    .arg(url);
                c
            }
        };
        command.stdin(std::process::Stdio::null());
        let output = tokio::process::Command::from(command)
            .output()
            .await
            .with_context(|| format!("running {}", self.name()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "{} failed ({}): {}{}",
                self.name(),
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        match self {
            Self::Oha(_) => parse_oha(&stdout),
            Self::Wrk(_) => parse_wrk(&stdout),
        }
        .with_context(|| format!("reading {}'s output:\n{stdout}", self.name()))
    }
}

/// oha's `--output-format json`: seconds in `summary`, milliseconds in
/// `metrics.latency_ms`, responses by status, and errors by message.
/// Requests still running when `-z` ends are "aborted due to deadline":
/// the tool's doing, not the server's, so they are not errors.
pub fn parse_oha(json: &str) -> anyhow::Result<RunStats> {
    #[derive(Deserialize)]
    struct Output {
        summary: Summary,
        metrics: Metrics,
        #[serde(rename = "statusCodeDistribution")]
        statuses: BTreeMap<String, u64>,
        #[serde(rename = "errorDistribution")]
        errors: BTreeMap<String, u64>,
    }
    #[derive(Deserialize)]
    struct Summary {
        total: f64,
    }
    #[derive(Deserialize)]
    struct Metrics {
        latency_ms: Latency,
    }
    #[derive(Deserialize)]
    struct Latency {
        p50: Option<f64>,
        p99: Option<f64>,
    }
    let output: Output = serde_json::from_str(json)?;
    let requests: u64 = output.statuses.values().sum();
    let failed_statuses: u64 = output
        .statuses
        .iter()
        .filter(|(status, _)| !status.starts_with('2'))
        .map(|(_, n)| n)
        .sum();
    let transport_errors: u64 = output
        .errors
        .iter()
        .filter(|(message, _)| !message.contains("aborted due to deadline"))
        .map(|(_, n)| n)
        .sum();
    let duration_s = output.summary.total;
    Ok(RunStats {
        requests,
        requests_per_s: if duration_s > 0.0 {
            requests as f64 / duration_s
        } else {
            0.0
        },
        p50_ms: output.metrics.latency_ms.p50.unwrap_or(f64::NAN),
        p99_ms: output.metrics.latency_ms.p99.unwrap_or(f64::NAN),
        errors: failed_statuses + transport_errors,
        duration_s,
    })
}

/// wrk's text report with `--latency`.
pub fn parse_wrk(text: &str) -> anyhow::Result<RunStats> {
    let mut stats = RunStats {
        requests: 0,
        requests_per_s: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
        duration_s: f64::NAN,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => stats.p50_ms = wrk_duration_ms(value)?,
            ["99%", value] => stats.p99_ms = wrk_duration_ms(value)?,
            // "259876 requests in 10.00s, 30.00MB read"
            [n, "requests", "in", took, ..] => {
                stats.requests = n.parse()?;
                stats.duration_s = wrk_duration_ms(took.trim_end_matches(','))? / 1000.0;
            }
            ["Requests/sec:", value] => stats.requests_per_s = value.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => stats.errors += n.parse::<u64>()?,
            // "Socket errors: connect 0, read 0, write 0, timeout 12"
            ["Socket", "errors:", rest @ ..] => {
                for pair in rest.chunks(2) {
                    if let [_, n] = pair {
                        stats.errors += n.trim_end_matches(',').parse::<u64>()?;
                    }
                }
            }
            _ => {}
        }
    }
    if stats.requests == 0 && stats.requests_per_s.is_nan() {
        bail!("no summary found");
    }
    Ok(stats)
}

/// "812.00us", "1.23ms", "2.50s", "1.00m" in milliseconds.
fn wrk_duration_ms(value: &str) -> anyhow::Result<f64> {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {value:?}"))?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        "h" => number * 3_600_000.0,
        other => bail!("unknown unit {other:?} in {value:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oha_json_is_read_without_the_deadline_aborts() {
        let json = r#"{
          "summary": {"successRate": 1.0, "total": 2.0, "slowest": 0.01, "fastest": 0.001,
                      "average": 0.002, "requestsPerSec": 1016.0, "totalData": 1, "sizePerRequest": 1,
                      "sizePerSec": 1.0},
          "metrics": {"success_rate": 1.0, "requests_per_sec": 1016.0,
                      "latency_ms": {"min": 1.0, "mean": 2.0, "p50": 1.9, "p95": 3.0, "p99": 4.5, "max": 10.0}},
          "statusCodeDistribution": {"200": 1998, "502": 2},
          "errorDistribution": {"aborted due to deadline": 32, "connection closed": 1}
        }"#;
        let stats = parse_oha(json).unwrap();
        assert_eq!(stats.requests, 2000);
        assert_eq!(stats.requests_per_s, 1000.0);
        assert_eq!(stats.p50_ms, 1.9);
        assert_eq!(stats.p99_ms, 4.5);
        assert_eq!(stats.errors, 3);
    }

    #[test]
    fn wrk_text_is_read() {
        let text = "Running 10s test @ http://127.0.0.1:8080/fast-page
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  12.34ms   89.00%
    Req/Sec    26.12k     1.23k   28.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.30ms
     90%    1.60ms
     99%    3.20ms
  259876 requests in 10.00s, 30.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 12
  Non-2xx or 3xx responses: 5
Requests/sec:  25987.60
Transfer/sec:      3.00MB
";
        let stats = parse_wrk(text).unwrap();
        assert_eq!(stats.requests, 259_876);
        assert_eq!(stats.requests_per_s, 25_987.6);
        assert!((stats.p50_ms - 0.812).abs() < 1e-9);
        assert_eq!(stats.p99_ms, 3.2);
        assert_eq!(stats.errors, 18);
        assert_eq!(stats.duration_s, 10.0);
    }
}
