//! The benchmark behind `make bench` (binary `bench`), the ceiling it
//! compares against (binary `ceiling`) and the per-setting instruction
//! counter (binary `instructions`). Load, latency percentiles and errors come
//! from `oha`'s JSON ([`load`]), instructions from callgrind
//! ([`instructions`]), processes, memory and the stand-in collector from the
//! shared harness `test-support`; what is left here is which pairs run with
//! which settings ([`Starter`]), and the table ([`report`]).

pub mod instructions;
pub mod load;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use test_support::service::{Launch, Service};

/// Changes to the cluster's settings of both services: variables and values.
pub type Changes = &'static [(&'static str, &'static str)];

/// Tracing and metrics off, nothing else changed.
pub const UNINSTRUMENTED: Changes = &[
    ("OTEL_TRACES_EXPORTER", "none"),
    ("METRICS_ENABLED", "false"),
];
/// Uninstrumented, and no per-request log lines.
pub const UNINSTRUMENTED_WARN: Changes = &[
    ("OTEL_TRACES_EXPORTER", "none"),
    ("METRICS_ENABLED", "false"),
    ("RUST_LOG", "warn"),
];

/// The cluster's settings for both services (see helm/app), spans over OTLP
/// (the default exporter) to the stand-in collector at `collector_url` (the
/// Zipkin endpoint points there too), with `changes` on top.
pub fn service_env(collector_url: &str, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = BTreeMap::from([
        ("RUST_LOG", "info"),
        ("LOG_FORMAT", "text"),
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("METRICS_ENABLED", "true"),
    ]);
    env.extend(changes.iter().copied());
    let exporters = test_support::collector::exporter_env(collector_url);
    let exporters = exporters.into_iter().map(|(k, v)| (k.to_owned(), v));
    env.into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain(exporters)
        .collect()
}

/// The binaries under test: the services and the ceiling, side by side.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub front_end: PathBuf,
    pub business_logic: PathBuf,
    pub ceiling: PathBuf,
}

impl Binaries {
    /// In `dir` (default: next to the running binary).
    pub fn locate(dir: Option<&Path>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let dir = dir.or(exe.parent()).context("no directory")?;
        let found = Self {
            front_end: dir.join("front-end"),
            business_logic: dir.join("business-logic"),
            ceiling: dir.join("ceiling"),
        };
        for path in [&found.front_end, &found.business_logic, &found.ceiling] {
            if !path.is_file() {
                bail!(
                    "{} not found; cargo build --release -p front-end -p business-logic -p bench",
                    path.display()
                );
            }
        }
        Ok(found)
    }
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
    pub binaries: &'a Binaries,
    /// The servers' CPU, if pinned.
    pub cpu: Option<u32>,
    /// The processes' output (`<tag>-<name>.log`), SQLite files, callgrind dumps.
    pub dir: &'a Path,
    pub collector_url: String,
    /// Variables the front-end gets besides the cluster's settings.
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

    fn launch(&self, tag: &str, name: &str, binary: &Path) -> anyhow::Result<Launch> {
        let launch = if self.callgrind {
            let valgrind = which("valgrind").context("no valgrind: apt-get install valgrind")?;
            let dumps = format!(
                "--callgrind-out-file={}/{name}.callgrind.%p",
                self.dir.display()
            );
            let binary = binary.display().to_string();
            Launch::program(name, &valgrind).args(&[
                "--tool=callgrind",
                "--vgdb=yes",
                &dumps,
                &binary,
            ])
        } else {
            Launch::program(name, binary)
        };
        Ok(launch
            .cpu(self.cpu)
            .log_file(&self.dir.join(format!("{tag}-{name}.log"))))
    }

    /// The services with the cluster's settings and `changes`, or (`None`)
    /// the ceiling, on `database_url` (the bare ceiling has none): back, then
    /// front, both ready. Returns them and their start-up times (front, back).
    pub async fn start(
        &self,
        tag: &str,
        changes: Option<&[(&str, &str)]>,
        database_url: Option<&str>,
    ) -> anyhow::Result<(Pair, Duration, Duration)> {
        // Under callgrind code runs about fifty times slower.
        let limit = Duration::from_secs(if self.callgrind { 300 } else { 60 });
        let env = changes.map(|c| service_env(&self.collector_url, c));
        let ceiling = &self.binaries.ceiling;
        let back = match (&env, database_url) {
            (Some(env), Some(url)) => {
                let launch = self.launch(tag, "business-logic", &self.binaries.business_logic)?;
                launch.envs(env).envs(&[("DATABASE_URL", url)])
            }
            (None, Some(url)) => {
                let launch = self.launch(tag, "ceiling-back", ceiling)?;
                launch.args(&["back-database", "--database-url", url])
            }
            (None, None) => self.launch(tag, "ceiling-back", ceiling)?.args(&["back"]),
            (Some(_), None) => bail!("the services need a database"),
        };
        let mut back = back.start(limit)?;
        let back_startup = back.wait_ready(limit).await?;
        let back_url = back.url("");
        let front = match env {
            Some(env) => {
                let launch = self.launch(tag, "front-end", &self.binaries.front_end)?;
                let launch = launch.envs(&env).envs(&self.front_env);
                launch.envs(&[("BUSINESS_LOGIC_URL", &back_url)])
            }
            None => {
                let launch = self.launch(tag, "ceiling-front", ceiling)?;
                launch.args(&["front", "--backend-url", &back_url])
            }
        };
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
