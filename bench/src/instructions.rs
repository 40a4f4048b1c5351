//! CPU work per request, in instructions: a figure a busy machine does not
//! move. Each service runs under a counter; after a bounded warm-up the
//! counts are zeroed (callgrind) or a counter is attached (perf), a fixed
//! number of requests goes through one keep-alive connection, and the
//! instructions each process executed meanwhile are divided by the requests.
//!
//! `perf stat -e instructions:u` is preferred where the kernel lets it count
//! (it runs the services natively); otherwise `valgrind --tool=callgrind`,
//! which counts every instruction of every thread in user space (threads run
//! one at a time, about fifty times slower), read through
//! `callgrind_control -z` (zero) and `--dump`. Both count user-space
//! instructions only, so the two methods give comparable figures; the
//! kernel's share (sockets, futexes) is not in them.
//!
//! The settings that can be counted are data ([`SETTINGS`]); a [`Rig`]
//! runs one setting's pair of processes and counts it ([`Rig::count`]) or
//! reads its resident memory ([`Rig::resident`]). `make bench` counts four
//! of them; the `instructions` binary counts any.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use test_support::collector::Collector;
use test_support::service::{Launch, Service, Signal};

use crate::Binaries;
use crate::report::{
    INSTRUCTIONS_DATABASE_CEILING, INSTRUCTIONS_INSTRUMENTED, INSTRUCTIONS_NOT_EXPORTED,
    INSTRUCTIONS_UNINSTRUMENTED, INSTRUCTIONS_UNINSTRUMENTED_WARN, INSTRUCTIONS_ZIPKIN,
    InstructionFigure,
};

/// How instructions are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// `perf stat -e instructions:u -p PID`, attached to the native process.
    Perf,
    /// The process runs under `valgrind --tool=callgrind --vgdb=yes`.
    Callgrind,
}

impl Counter {
    /// perf when it counts instructions here, else callgrind when valgrind
    /// and `callgrind_control` are installed, else none.
    pub fn detect() -> Option<Self> {
        if perf_counts_instructions() {
            Some(Self::Perf)
        } else {
            Self::callgrind()
        }
    }

    /// callgrind when valgrind and `callgrind_control` are installed.
    pub fn callgrind() -> Option<Self> {
        (runs("valgrind", &["--version"]) && runs("callgrind_control", &["--version"]))
            .then_some(Self::Callgrind)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Perf => "perf stat -e instructions:u",
            Self::Callgrind => "valgrind --tool=callgrind",
        }
    }

    /// How to start `binary` so that this counter can count it.
    pub fn launch(self, name: &str, binary: &Path, dumps: &Path) -> Launch {
        match self {
            Self::Perf => Launch::program(name, binary),
            Self::Callgrind => {
                let out = dumps.join(format!("{name}.callgrind.%p"));
                // Launch wants a path; detect() found valgrind on PATH.
                let valgrind =
                    crate::load_tool::which("valgrind").unwrap_or_else(|| "valgrind".into());
                Launch::program(name, &valgrind).args(&[
                    "--tool=callgrind",
                    "--vgdb=yes",
                    &format!("--callgrind-out-file={}", out.display()),
                    &binary.display().to_string(),
                ])
            }
        }
    }

    /// Starts counting the service's instructions from now on.
    pub fn start(self, service: &Service, dumps: &Path) -> anyhow::Result<Counting> {
        match self {
            Self::Perf => {
                let child = Command::new("perf")
                    .args(["stat", "-x", ",", "-e", "instructions:u", "-p"])
                    .arg(service.pid().to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("starting perf stat")?;
                // perf attaches to every thread of the process before it
                // counts; give it that moment (it says nothing when ready).
                std::thread::sleep(Duration::from_millis(300));
                Ok(Counting::Perf(child))
            }
            Self::Callgrind => {
                callgrind_control("-z", service.pid())?;
                // Callgrind numbers a process's dumps 1, 2, ...: the next one is ours.
                let prefix = format!("{}.callgrind.{}.", service.name(), service.pid());
                let earlier = std::fs::read_dir(dumps)?
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .count();
                Ok(Counting::Callgrind {
                    pid: service.pid(),
                    dump: dumps.join(format!("{prefix}{}", earlier + 1)),
                })
            }
        }
    }
}

/// A count in progress for one process.
#[derive(Debug)]
pub enum Counting {
    Perf(Child),
    Callgrind { pid: u32, dump: PathBuf },
}

impl Counting {
    /// Stops counting and returns the instructions counted since `start`.
    pub fn finish(self) -> anyhow::Result<u64> {
        match self {
            Self::Perf(child) => {
                let pid = rustix::process::Pid::from_child(&child);
                rustix::process::kill_process(pid, Signal::INT)?;
                let output = child.wait_with_output()?;
                let text = String::from_utf8_lossy(&output.stderr);
                parse_perf_csv(&text)
                    .with_context(|| format!("perf stat printed no instruction count:\n{text}"))
            }
            Self::Callgrind { pid, dump } => {
                callgrind_control("--dump", pid)?;
                // The dump is written by the process itself, a moment later.
                for _ in 0..600 {
                    if let Ok(text) = std::fs::read_to_string(&dump)
                        && let Some(total) = parse_callgrind_totals(&text)
                    {
                        return Ok(total);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                bail!("no callgrind dump at {} after 60 s", dump.display())
            }
        }
    }
}

/// What runs for a setting.
#[derive(Debug, Clone, Copy)]
pub enum Pair {
    /// front-end and business-logic with the cluster's settings
    /// ([`crate::service_env`]: instrumented, `RUST_LOG=info`) and these
    /// variables changed.
    Services(&'static [(&'static str, &'static str)]),
    /// The ceiling's front and its back with business-logic's query.
    DatabaseCeiling,
}

/// One setting whose CPU work per fast page can be counted.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Its name on the command line (`instructions --settings NAME`).
    pub name: &'static str,
    /// Its label in `make bench`'s table and `results.json`.
    pub label: &'static str,
    pub pair: Pair,
}

const OFF: [(&str, &str); 2] = [
    ("OTEL_TRACES_EXPORTER", "none"),
    ("METRICS_ENABLED", "false"),
];

/// Every setting that can be counted.
pub const SETTINGS: [Setting; 9] = [
    // What `make bench` calls instrumented: spans over OTLP (the default),
    // metrics, info logs.
    Setting {
        name: "instrumented",
        label: INSTRUCTIONS_INSTRUMENTED,
        pair: Pair::Services(&[]),
    },
    Setting {
        name: "instrumented-warn",
        label: "instrumented, RUST_LOG=warn",
        pair: Pair::Services(&[("RUST_LOG", "warn")]),
    },
    // What the exemplars cost.
    Setting {
        name: "instrumented-no-exemplars",
        label: "instrumented, no exemplars",
        pair: Pair::Services(&[("METRICS_EXEMPLARS", "false")]),
    },
    // The same spans as Zipkin v2 JSON instead of OTLP protobuf.
    Setting {
        name: "instrumented-zipkin",
        label: INSTRUCTIONS_ZIPKIN,
        pair: Pair::Services(&[("OTEL_TRACES_EXPORTER", "zipkin")]),
    },
    Setting {
        name: "uninstrumented",
        label: INSTRUCTIONS_UNINSTRUMENTED,
        pair: Pair::Services(&OFF),
    },
    // One part at a time, to see what each costs.
    Setting {
        name: "traces-only",
        label: "traces only",
        pair: Pair::Services(&[("METRICS_ENABLED", "false")]),
    },
    // Instrumented but for span export: the spans are still made (their
    // ids are on pages and log lines), not exported.
    Setting {
        name: "metrics-only",
        label: INSTRUCTIONS_NOT_EXPORTED,
        pair: Pair::Services(&[("OTEL_TRACES_EXPORTER", "none")]),
    },
    Setting {
        name: "uninstrumented-warn",
        label: INSTRUCTIONS_UNINSTRUMENTED_WARN,
        pair: Pair::Services(&[OFF[0], OFF[1], ("RUST_LOG", "warn")]),
    },
    Setting {
        name: "database-ceiling",
        label: INSTRUCTIONS_DATABASE_CEILING,
        pair: Pair::DatabaseCeiling,
    },
];

/// The settings `make bench` counts, in its table's order.
pub const BENCH_SETTINGS: [&str; 6] = [
    "instrumented",
    "instrumented-zipkin",
    "metrics-only",
    "uninstrumented",
    "uninstrumented-warn",
    "database-ceiling",
];

impl Setting {
    /// The setting called `name`; the error lists the names there are.
    pub fn named(name: &str) -> Result<&'static Self, String> {
        SETTINGS.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
            format!("no setting {name:?}; there are: {}", names.join(", "))
        })
    }

    /// The services' environment: the cluster's, the stand-in collector at
    /// `collector_url` as every exporter's endpoint, and this setting's
    /// variables changed (none for the ceiling).
    pub fn env(&self, collector_url: &str) -> Vec<(&'static str, String)> {
        let Pair::Services(vars) = self.pair else {
            return Vec::new();
        };
        let mut env = crate::service_env(true, "info", collector_url);
        for (key, value) in vars {
            match env.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = (*value).to_owned(),
                None => env.push((key, (*value).to_owned())),
            }
        }
        env
    }
}

/// Resident memory of one setting's pair, KiB: ready and idle, then after
/// the requests.
#[derive(Debug, Clone, Copy)]
pub struct Resident {
    pub front_idle_kib: u64,
    pub front_loaded_kib: u64,
    pub back_idle_kib: u64,
    pub back_loaded_kib: u64,
}

/// Where and how a setting's pair runs, and how many fast pages it serves.
#[derive(Debug)]
pub struct Rig<'a> {
    pub binaries: &'a Binaries,
    /// The servers' CPU, if pinned.
    pub cpu: Option<u32>,
    /// The processes' output, `<setting>-<process>.log`.
    pub logs: &'a Path,
    /// SQLite files and callgrind dumps.
    pub scratch: &'a Path,
    /// The stand-in collector (counting): every exporter's endpoint, and
    /// the spans per page.
    pub collector: &'a Collector,
    /// business-logic's database (and the ceiling back's); default: a
    /// fresh SQLite file per setting.
    pub database_url: Option<String>,
    /// Fast pages before counting starts.
    pub warmup: u32,
    /// Fast pages counted.
    pub requests: u32,
}

impl Rig<'_> {
    /// Instructions per fast page of `setting`, each process under
    /// `counter`: a bounded warm-up, then [`Rig::requests`] fast pages one
    /// after another over one keep-alive connection.
    pub async fn count(
        &self,
        setting: &Setting,
        counter: Counter,
    ) -> anyhow::Result<InstructionFigure> {
        let spans_before = self.collector.span_count();
        let (front, back) = self.start_pair(setting, Some(counter)).await?;
        let client = one_connection()?;
        let url = front.url(contract::routes::front_end::FAST_PAGE);
        drive(&client, &url, self.warmup, &front, &back).await?;
        // The warm-up's last span batch leaves within 500 ms (longer under callgrind).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let counting = [
            counter.start(&back, self.scratch)?,
            counter.start(&front, self.scratch)?,
        ];
        drive(&client, &url, self.requests, &front, &back).await?;
        // The span batch of the counted requests belongs to them.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let [back_count, front_count] = counting;
        let n = f64::from(self.requests);
        let back_per_request =
            tokio::task::spawn_blocking(move || back_count.finish()).await?? as f64 / n;
        let front_per_request =
            tokio::task::spawn_blocking(move || front_count.finish()).await?? as f64 / n;
        // Spans per page: every page of the pair (warm-up and counted), once
        // a graceful stop has flushed the spans still queued.
        let (mut front, mut back) = (front, back);
        tokio::task::spawn_blocking(move || {
            for service in [&mut front, &mut back] {
                service.signal(Signal::TERM);
                service.wait_exit(Duration::from_secs(120));
            }
        })
        .await?;
        let spans = self.settled_span_count().await - spans_before;
        Ok(InstructionFigure {
            setting: setting.label.to_owned(),
            front_per_request,
            back_per_request,
            total_per_request: front_per_request + back_per_request,
            spans_per_request: spans as f64 / f64::from(self.warmup + self.requests),
        })
    }

    /// The collector's span count once it has stopped moving for a second
    /// (at most 30 s).
    async fn settled_span_count(&self) -> u64 {
        let mut last = self.collector.span_count();
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.collector.span_count();
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    /// Resident memory of `setting`'s pair, natively (no counter): a second
    /// after it is ready, and after the warm-up and the requests.
    pub async fn resident(&self, setting: &Setting) -> anyhow::Result<Resident> {
        let (front, back) = self.start_pair(setting, None).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = [front.memory().rss_kib, back.memory().rss_kib];
        let client = one_connection()?;
        let url = front.url(contract::routes::front_end::FAST_PAGE);
        drive(&client, &url, self.warmup, &front, &back).await?;
        drive(&client, &url, self.requests, &front, &back).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(Resident {
            front_idle_kib: idle[0],
            front_loaded_kib: front.memory().rss_kib,
            back_idle_kib: idle[1],
            back_loaded_kib: back.memory().rss_kib,
        })
    }

    /// Starts `setting`'s back, then its front, both ready; under `counter`
    /// when there is one. Returns (front, back).
    async fn start_pair(
        &self,
        setting: &Setting,
        counter: Option<Counter>,
    ) -> anyhow::Result<(Service, Service)> {
        let tag = format!("instructions-{}", setting.name);
        let database_url = match &self.database_url {
            Some(url) => url.clone(),
            None => {
                let dir = self.scratch.join(&tag);
                std::fs::create_dir_all(&dir)?;
                format!("sqlite://{}/business-logic.db", dir.display())
            }
        };
        let start = |name: &str, binary: &Path, args: &[&str], env: &[(&str, String)]| {
            let launch = match counter {
                Some(counter) => counter.launch(name, binary, self.scratch),
                None => Launch::program(name, binary),
            };
            launch
                .args(args)
                .envs(env)
                .cpu(self.cpu)
                .log_file(&self.logs.join(format!("{tag}-{name}.log")))
                .start(Duration::from_secs(120))
        };
        let env = setting.env(&self.collector.url());
        let ceiling = &self.binaries.ceiling;
        let mut back = match setting.pair {
            Pair::Services(_) => {
                let mut env = env.clone();
                env.push(("DATABASE_URL", database_url));
                start("business-logic", &self.binaries.business_logic, &[], &env)?
            }
            Pair::DatabaseCeiling => start(
                "ceiling-back",
                ceiling,
                &["back-database", "--database-url", &database_url],
                &[],
            )?,
        };
        back.wait_ready(Duration::from_secs(300)).await?;
        let back_url = back.url("");
        let mut front = match setting.pair {
            Pair::Services(_) => {
                let mut env = env;
                env.push(("BUSINESS_LOGIC_URL", back_url));
                // Under callgrind code runs about fifty times slower.
                env.push(("FAST_PAGE_TIMEOUT_MS", "60000".to_owned()));
                start("front-end", &self.binaries.front_end, &[], &env)?
            }
            Pair::DatabaseCeiling => start(
                "ceiling-front",
                ceiling,
                &["front", "--backend-url", &back_url],
                &[],
            )?,
        };
        front.wait_ready(Duration::from_secs(300)).await?;
        Ok((front, back))
    }
}

/// A client that keeps one connection open.
fn one_connection() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(1)
        .build()?)
}

/// `n` fast pages one after another, each answered 200.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    n: u32,
    front: &Service,
    back: &Service,
) -> anyhow::Result<()> {
    for _ in 0..n {
        let response = client.get(url).send().await?;
        let status = response.status();
        let _ = response.bytes().await?;
        if status != reqwest::StatusCode::OK {
            bail!(
                "{url} answered {status}:\n{}\n{}",
                front.log_tail(20),
                back.log_tail(20)
            );
        }
    }
    Ok(())
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `perf stat` counts user-space instructions here: not in most
/// containers and VMs, where it prints `<not supported>` or is not permitted.
fn perf_counts_instructions() -> bool {
    let Ok(output) = Command::new("perf")
        .args(["stat", "-x", ",", "-e", "instructions:u", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    else {
        return false;
    };
    output.status.success()
        && parse_perf_csv(&String::from_utf8_lossy(&output.stderr)).is_some_and(|n| n > 0)
}

/// The count from `perf stat -x ,` output: the line whose third field is
/// the event, `12345,,instructions:u,...`; none for `<not supported>` or
/// `<not counted>`.
pub fn parse_perf_csv(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut fields = line.split(',');
        let value = fields.next()?.trim();
        let _unit = fields.next()?;
        let event = fields.next()?.trim();
        event
            .starts_with("instructions")
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// `totals:` (or, in older dumps, `summary:`) of a callgrind dump: the
/// instructions (event `Ir`, the first) over the dumped interval.
pub fn parse_callgrind_totals(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with("totals:"))
        .or_else(|| text.lines().find(|l| l.starts_with("summary:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `callgrind_control FLAG PID`. vgdb finds a process through pipes named
/// after `$USER` and `$HOST`; the services run with a clean environment
/// (`HOST=127.0.0.1`, no `USER`), so this runs with the same.
fn callgrind_control(flag: &str, pid: u32) -> anyhow::Result<()> {
    let output = Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .context("running callgrind_control")?;
    if !output.status.success() {
        bail!(
            "callgrind_control {flag} {pid} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_change_only_their_own_variables() {
        let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        for name in BENCH_SETTINGS {
            assert!(names.contains(&name), "{name}");
        }
        // The cluster's settings, both collector endpoints the stand-in's.
        let base = |instrumented, rust_log| crate::service_env(instrumented, rust_log, "http://C");
        let named = |name| Setting::named(name).unwrap().env("http://C");
        assert_eq!(named("instrumented"), base(true, "info"));
        assert_eq!(named("uninstrumented"), base(false, "info"));
        assert_eq!(named("uninstrumented-warn"), base(false, "warn"));
        let instrumented = named("instrumented");
        assert!(instrumented.contains(&("OTEL_TRACES_EXPORTER", "otlp".to_owned())));
        assert!(instrumented.contains(&("OTEL_EXPORTER_OTLP_ENDPOINT", "http://C".to_owned())));
        let zipkin = named("instrumented-zipkin");
        assert!(zipkin.contains(&("OTEL_TRACES_EXPORTER", "zipkin".to_owned())));
        assert!(zipkin.contains(&(
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            "http://C/api/v2/spans".to_owned()
        )));
        assert!(named("database-ceiling").is_empty());
        let e = Setting::named("fast").unwrap_err();
        assert!(e.contains("traces-only"), "{e}");
    }

    #[test]
    fn perf_csv_counts_and_refusals() {
        // perf 6.x: value, unit, event, run time, share, [metric, metric unit]
        let counted = "1234567,,instructions:u,1000000,100.00,,\n";
        assert_eq!(parse_perf_csv(counted), Some(1_234_567));
        assert_eq!(
            parse_perf_csv("<not supported>,,instructions:u,0,100.00,,\n"),
            None
        );
        assert_eq!(
            parse_perf_csv("<not counted>,,instructions:u,0,0.00,,\n"),
            None
        );
        assert_eq!(parse_perf_csv("Error:\nNo permission\n"), None);
    }

    #[test]
    fn callgrind_totals_from_a_dump() {
        let dump = "# callgrind format\nversion: 1\ncreator: callgrind-3.24.0\n\
                    cmd: business-logic\npart: 1\n\nevents: Ir\n\nfl=(1) x.rs\nfn=(1) f\n12 300\n\n\
                    totals: 987654321\n";
        assert_eq!(parse_callgrind_totals(dump), Some(987_654_321));
        assert_eq!(
            parse_callgrind_totals("events: Ir\nsummary: 42\n"),
            Some(42)
        );
        assert_eq!(parse_callgrind_totals("events: Ir\n"), None);
    }
}
