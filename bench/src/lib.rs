//! The benchmark behind `make bench` (binary `bench`) and the ceiling it
//! compares against (binary `ceiling`). Load, latency percentiles and errors
//! come from `oha`'s JSON ([`load`]), instructions from callgrind
//! ([`instructions`]), processes, memory and the stand-in collector from the
//! shared harness `test-support`; what is left here is which pairs run with
//! which settings ([`SETTINGS`], [`Starter`]), and the table ([`report`]).

pub mod instructions;
pub mod load;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use test_support::service::{Launch, Service};

/// A pair whose instructions can be counted: the services with the
/// cluster's settings and `changes` (`VAR=value`, space-separated), or
/// (`None`) the database ceiling.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Its name on the command line (`bench --settings NAME`).
    pub name: &'static str,
    /// Its label in the table.
    pub label: &'static str,
    pub changes: Option<&'static str>,
}

/// Every setting; `make bench` counts the first six ([`BENCH_SETTINGS`]),
/// in its table's order. `instrumented` is the cluster's: spans over OTLP
/// (the default), metrics, info logs; `metrics-only` still makes spans
/// (their ids are on pages and log lines) but exports none;
/// `instrumented-all-events` copies every log line into its span as an
/// event, as before December 2026.
#[rustfmt::skip]
pub const SETTINGS: [Setting; 10] = [
    Setting { name: "instrumented", label: "instrumented", changes: Some("") },
    Setting { name: "instrumented-zipkin", label: "instrumented, Zipkin", changes: Some("OTEL_TRACES_EXPORTER=zipkin") },
    Setting { name: "metrics-only", label: "instrumented, spans not exported", changes: Some("OTEL_TRACES_EXPORTER=none") },
    Setting { name: "uninstrumented", label: "uninstrumented", changes: Some("OTEL_TRACES_EXPORTER=none METRICS_ENABLED=false") },
    Setting { name: "uninstrumented-warn", label: "uninstrumented, RUST_LOG=warn", changes: Some("OTEL_TRACES_EXPORTER=none METRICS_ENABLED=false RUST_LOG=warn") },
    Setting { name: "database-ceiling", label: "database ceiling", changes: None },
    Setting { name: "instrumented-all-events", label: "instrumented, all log lines as span events", changes: Some("SPAN_EVENTS_LEVEL=trace") },
    Setting { name: "instrumented-warn", label: "instrumented, RUST_LOG=warn", changes: Some("RUST_LOG=warn") },
    Setting { name: "instrumented-no-exemplars", label: "instrumented, no exemplars", changes: Some("METRICS_EXEMPLARS=false") },
    Setting { name: "traces-only", label: "traces only", changes: Some("METRICS_ENABLED=false") },
];

/// The settings `make bench` counts instructions of.
pub const BENCH_SETTINGS: &[Setting] = SETTINGS.split_at(6).0;

/// The setting called `name`.
pub fn setting_named(name: &str) -> anyhow::Result<Setting> {
    let found = SETTINGS.iter().find(|s| s.name == name).copied();
    found.with_context(|| format!("no setting {name:?}"))
}

/// The cluster's settings for both services (see helm/app), spans over OTLP
/// (the default exporter) to the stand-in collector at `collector_url` (the
/// Zipkin endpoint points there too), with `changes` on top (the last
/// value of a variable wins).
fn service_env(collector_url: &str, changes: &str) -> Vec<(String, String)> {
    let cluster = "RUST_LOG=info LOG_FORMAT=text OTEL_TRACES_EXPORTER=otlp METRICS_ENABLED=true";
    let vars = format!("{cluster} {changes}");
    let vars = vars.split_whitespace().filter_map(|kv| kv.split_once('='));
    let vars = vars.map(|(k, v)| (k.to_owned(), v.to_owned()));
    let exporters = test_support::collector::exporter_env(collector_url);
    vars.chain(exporters.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .collect()
}

/// A front and a back, started together.
#[derive(Debug)]
pub struct Pair {
    pub front: Service,
    pub back: Service,
}

/// How pairs are started: where, with which extra settings, under callgrind or not.
#[derive(Debug)]
pub struct Starter<'a> {
    /// Where front-end, business-logic and ceiling are.
    pub bin_dir: &'a Path,
    /// The servers' CPU, if pinned.
    pub cpu: Option<u32>,
    /// The processes' output (`<tag>-<name>.log`), SQLite files, callgrind dumps.
    pub dir: &'a Path,
    pub collector_url: String,
    /// Variables the fronts get besides the cluster's settings (the ceiling reads none).
    pub front_env: Vec<(String, String)>,
    /// Every process under `valgrind --tool=callgrind`.
    pub callgrind: bool,
}

impl Starter<'_> {
    /// The same, every process under callgrind (a page then takes up to a minute).
    pub fn under_callgrind(&self) -> Self {
        let front_env = vec![("FAST_PAGE_TIMEOUT_MS".into(), "60000".into())];
        let collector_url = self.collector_url.clone();
        Self {
            callgrind: true,
            front_env,
            collector_url,
            ..*self
        }
    }

    /// A fresh SQLite file for `tag`.
    pub fn sqlite(&self, tag: &str) -> anyhow::Result<String> {
        let dir = self.dir.join(tag);
        std::fs::create_dir_all(&dir)?;
        Ok(format!("sqlite://{}/business-logic.db", dir.display()))
    }

    /// `program` (in `bin_dir`) with `args`, named `name` in `<tag>-<name>.log`.
    fn launch(
        &self,
        tag: &str,
        name: &str,
        program: &str,
        args: &[&str],
    ) -> anyhow::Result<Launch> {
        let program = self.bin_dir.join(program);
        let launch = if self.callgrind {
            let valgrind = which("valgrind").context("no valgrind: apt-get install valgrind")?;
            let dumps = format!(
                "--callgrind-out-file={}/{name}.callgrind.%p",
                self.dir.display()
            );
            let program = program.display().to_string();
            let options = ["--tool=callgrind", "--vgdb=yes", &dumps, &program];
            Launch::program(name, &valgrind).args(&options)
        } else {
            Launch::program(name, &program)
        };
        let log = self.dir.join(format!("{tag}-{name}.log"));
        Ok(launch.args(args).cpu(self.cpu).log_file(&log))
    }

    /// The services with the cluster's settings and `changes`, or (`None`)
    /// the ceiling, on `database_url` (the bare ceiling has none): back, then
    /// front, both ready. Returns them and their start-up times (front, back).
    pub async fn start(
        &self,
        tag: &str,
        changes: Option<&str>,
        database_url: Option<&str>,
    ) -> anyhow::Result<(Pair, Duration, Duration)> {
        // Under callgrind code runs about fifty times slower.
        let limit = Duration::from_secs(if self.callgrind { 300 } else { 60 });
        let env = changes.map_or_else(Vec::new, |c| service_env(&self.collector_url, c));
        let back = match changes {
            Some(_) => self.launch(tag, "business-logic", "business-logic", &[])?,
            None => self.launch(tag, "ceiling-back", "ceiling", &["back"])?,
        };
        let database = Vec::from_iter(database_url.map(|url| ("DATABASE_URL", url)));
        let mut back = back.envs(&env).envs(&database).start(limit)?;
        let back_startup = back.wait_ready(limit).await?;
        let front = match changes {
            Some(_) => self.launch(tag, "front-end", "front-end", &[])?,
            None => self.launch(tag, "ceiling-front", "ceiling", &["front"])?,
        };
        let front = front.envs(&env).envs(&self.front_env);
        let front = front.envs(&[("BUSINESS_LOGIC_URL", back.url(""))]);
        let mut front = front.start(limit)?;
        let front_startup = front.wait_ready(limit).await?;
        Ok((Pair { front, back }, front_startup, back_startup))
    }
}

/// `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The median of `values` (the mean of the middle two for an even count);
/// `NaN` when empty.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
