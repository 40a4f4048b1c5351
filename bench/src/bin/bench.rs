//! `make bench`: starts the services (and the ceiling) as release processes
//! on loopback, drives them with oha or wrk, and prints one table, also
//! written to `target/bench/results.{json,md}`. Progress goes to stderr,
//! the table to stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bench::load_tool::{self, LoadTool};
use bench::machine::Machine;
use bench::median;
use bench::pinning::Pinning;
use bench::report::{Figure, MemoryFigure, Ratios, Results, Run, Settings, SlowPages, Spans};
use clap::Parser;
use test_support::collector::{Collector, now_us};
use test_support::service::{Launch, Service};
use tokio::task::JoinSet;

/// Benchmarks the fast page against a ceiling, measures the cost of
/// instrumentation, slow-path isolation, memory, start-up and binary size.
#[derive(Debug, Parser)]
struct Args {
    /// A few seconds per figure, one round: proves the harness, not the figures.
    #[arg(long)]
    quick: bool,
    /// The HTTP load generator.
    #[arg(long, value_enum, default_value = "auto")]
    load_tool: load_tool::Choice,
    /// Where front-end, business-logic and ceiling are (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where results.json, results.md and the services' logs go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Connections the load generator holds open.
    #[arg(long, default_value_t = 32)]
    concurrency: u32,
    /// Seconds per measured run (default 10, quick 2).
    #[arg(long)]
    duration: Option<u64>,
    /// Seconds of warm-up before each measured run (default 3, quick 1).
    #[arg(long)]
    warmup: Option<u64>,
    /// Rounds of interleaved runs (default 3, quick 1).
    #[arg(long)]
    rounds: Option<u32>,
    /// Slow pages held in flight for the isolation figure (default 300, quick 100).
    #[arg(long)]
    slow_requests: Option<u32>,
    /// Do not pin servers and load generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
}

/// What is under load in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Config {
    Ceiling,
    Instrumented,
    Uninstrumented,
    InstrumentedWithSlow,
}

impl Config {
    fn label(self) -> &'static str {
        match self {
            Self::Ceiling => "ceiling",
            Self::Instrumented => "fast page, instrumented",
            Self::Uninstrumented => "fast page, uninstrumented",
            Self::InstrumentedWithSlow => "fast page, instrumented, slow pages in flight",
        }
    }
}

/// Round order: A B C D, then D C B A, so a drift of the machine over
/// time weighs on every configuration alike.
const ORDER: [Config; 4] = [
    Config::Ceiling,
    Config::Instrumented,
    Config::Uninstrumented,
    Config::InstrumentedWithSlow,
];

/// The span in which business-logic holds a slow request (the trace's
/// documented shape, which the tests check): one that started before a
/// measured run and ended after it proves a slow page was held throughout.
const SLOW_HELD_SPAN: &str = "data_transformation";

#[derive(Debug)]
struct Plan {
    warmup: Duration,
    duration: Duration,
    rounds: u32,
    slow_requests: u32,
    slow_delay_ms: u64,
    startup_samples: u32,
}

impl Plan {
    fn new(args: &Args) -> Self {
        let (warmup, duration, rounds, slow, samples) = if args.quick {
            (1, 2, 1, 100, 1)
        } else {
            (3, 10, 3, 300, 3)
        };
        let warmup = args.warmup.unwrap_or(warmup);
        let duration = args.duration.unwrap_or(duration).max(1);
        // The slow pages must outlive warm-up plus run, with room for
        // confirming they are in flight, within the delay business-logic allows.
        let slow_delay_ms = ((warmup + duration + 6) * 1000).min(contract::MAX_DELAY_MS);
        Self {
            warmup: Duration::from_secs(warmup),
            duration: Duration::from_secs(duration),
            rounds: args.rounds.unwrap_or(rounds).max(1),
            slow_requests: args.slow_requests.unwrap_or(slow),
            slow_delay_ms,
            startup_samples: samples,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pinning = Pinning::detect(args.no_pin);
    // Before any thread exists: every thread started later inherits it.
    pinning.pin_self()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args, pinning))
}

fn say(message: impl AsRef<str>) {
    eprintln!("bench: {}", message.as_ref());
}

/// The binaries under test.
#[derive(Debug)]
struct Binaries {
    front_end: PathBuf,
    business_logic: PathBuf,
    ceiling: PathBuf,
}

impl Binaries {
    fn locate(bin_dir: Option<&Path>) -> anyhow::Result<Self> {
        let dir = match bin_dir {
            Some(dir) => dir.to_owned(),
            None => std::env::current_exe()?
                .parent()
                .context("the harness binary has no directory")?
                .to_owned(),
        };
        let found = Self {
            front_end: dir.join("front-end"),
            business_logic: dir.join("business-logic"),
            ceiling: dir.join("ceiling"),
        };
        for path in [&found.front_end, &found.business_logic, &found.ceiling] {
            if !path.is_file() {
                bail!(
                    "{} not found; build it first: cargo build --release -p front-end -p business-logic -p bench",
                    path.display()
                );
            }
        }
        Ok(found)
    }
}

/// The cluster's settings for both services (see helm/app), with spans
/// going to the stand-in collector. `instrumented: false` turns span export
/// and metrics off and nothing else.
fn service_env(instrumented: bool, zipkin: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("RUST_LOG", "info".to_owned()),
        ("LOG_FORMAT", "text".to_owned()),
        ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", zipkin.to_owned()),
    ];
    if instrumented {
        env.push(("OTEL_TRACES_EXPORTER", "zipkin".to_owned()));
        env.push(("METRICS_ENABLED", "true".to_owned()));
    } else {
        env.push(("OTEL_TRACES_EXPORTER", "none".to_owned()));
        env.push(("METRICS_ENABLED", "false".to_owned()));
    }
    env
}

fn describe_env(env: &[(&str, String)]) -> Vec<String> {
    env.iter()
        .filter(|(k, _)| *k != "OTEL_EXPORTER_ZIPKIN_ENDPOINT" && *k != "DATABASE_URL")
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// A front and a back, started together.
#[derive(Debug)]
struct Pair {
    front: Service,
    back: Service,
}

struct Harness {
    pinning: Pinning,
    binaries: Binaries,
    logs: PathBuf,
    scratch: PathBuf,
    collector: Collector,
    plan: Plan,
}

impl Harness {
    /// A server process on the servers' CPU.
    fn launch(&self, name: &str, binary: &Path) -> Launch {
        Launch::program(name, binary).cpu(self.pinning.servers_cpu())
    }

    /// business-logic on a fresh SQLite file in `scratch/<tag>`, then the
    /// front-end calling it; both ready. Returns the pair and both start-up times.
    async fn start_stack(
        &self,
        tag: &str,
        instrumented: bool,
    ) -> anyhow::Result<(Pair, Duration, Duration)> {
        let dir = self.scratch.join(tag);
        std::fs::create_dir_all(&dir)?;
        let mut env = service_env(instrumented, &self.collector.zipkin_endpoint());
        let mut back_env = env.clone();
        back_env.push((
            "DATABASE_URL",
            format!("sqlite://{}/business-logic.db", dir.display()),
        ));
        let mut back = self
            .launch("business-logic", &self.binaries.business_logic)
            .envs(&back_env)
            .log_file(&self.logs.join(format!("{tag}-business-logic.log")))
            .start(Duration::from_secs(60))?;
        let back_startup = back.wait_ready(Duration::from_secs(60)).await?;
        env.push(("BUSINESS_LOGIC_URL", back.url("")));
        // The held slow pages must not time out in the front-end.
        env.push((
            "SLOW_PAGE_TIMEOUT_MS",
            (self.plan.slow_delay_ms + 30_000).to_string(),
        ));
        env.push(("JAEGER_UI_URL", "http://localhost:8080/jaeger".to_owned()));
        env.push(("GRAFANA_URL", "http://localhost:8080/grafana".to_owned()));
        let mut front = self
            .launch("front-end", &self.binaries.front_end)
            .envs(&env)
            .log_file(&self.logs.join(format!("{tag}-front-end.log")))
            .start(Duration::from_secs(60))?;
        let front_startup = front.wait_ready(Duration::from_secs(60)).await?;
        Ok((Pair { front, back }, front_startup, back_startup))
    }

    async fn start_ceiling(&self) -> anyhow::Result<Pair> {
        let mut back = self
            .launch("ceiling-back", &self.binaries.ceiling)
            .args(&["back"])
            .log_file(&self.logs.join("ceiling-back.log"))
            .start(Duration::from_secs(30))?;
        back.wait_ready(Duration::from_secs(30)).await?;
        let backend_url = back.url("");
        let mut front = self
            .launch("ceiling-front", &self.binaries.ceiling)
            .args(&["front", "--backend-url", &backend_url])
            .log_file(&self.logs.join("ceiling-front.log"))
            .start(Duration::from_secs(30))?;
        front.wait_ready(Duration::from_secs(30)).await?;
        Ok(Pair { front, back })
    }
}

/// Per-CPU jiffies (busy, total) from /proc/stat: `cpu` for the whole
/// machine, `cpu0`, `cpu1`, ... for each CPU.
fn cpu_times() -> BTreeMap<String, (u64, u64)> {
    use procfs::CurrentSI;
    let Ok(stats) = procfs::KernelStats::current() else {
        return BTreeMap::new();
    };
    let jiffies = |t: &procfs::CpuTime| {
        let idle = t.idle + t.iowait.unwrap_or(0);
        let busy = t.user
            + t.nice
            + t.system
            + t.irq.unwrap_or(0)
            + t.softirq.unwrap_or(0)
            + t.steal.unwrap_or(0);
        (busy, busy + idle)
    };
    std::iter::once(("cpu".to_owned(), jiffies(&stats.total)))
        .chain(
            stats
                .cpu_time
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("cpu{i}"), jiffies(t))),
        )
        .collect()
}

fn busy_pct(
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
    cpu: &str,
) -> Option<f64> {
    let (b0, t0) = before.get(cpu)?;
    let (b1, t1) = after.get(cpu)?;
    let total = t1.checked_sub(*t0)?;
    (total > 0).then(|| (b1.saturating_sub(*b0)) as f64 * 100.0 / total as f64)
}

/// Samples the resident size of `pids` every 100 ms, keeping the maximum
/// of each, until aborted.
fn sample_memory(pids: Vec<u32>, maxima: Vec<Arc<AtomicU64>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for (pid, max) in pids.iter().zip(&maxima) {
                if let Some(m) = test_support::os::memory_of(*pid) {
                    max.fetch_max(m.rss_kib, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Sends `n` slow-page requests that each hold for `delay_ms` and waits
/// (bounded) until business-logic holds `n` connections from the front-end:
/// HTTP/1.1 carries one request per connection at a time, so fewer would
/// mean not all have reached it. Returns the requests and that count.
async fn hold_slow_pages(
    stack: &Pair,
    n: u32,
    delay_ms: u64,
) -> anyhow::Result<(JoinSet<Option<u16>>, usize)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(delay_ms + 60_000))
        .build()?;
    let url = stack.front.url(&format!("/slow-page?delay_ms={delay_ms}"));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let request = client.get(&url);
        set.spawn(async move {
            let response = request.send().await.ok()?;
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            Some(status)
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut connections = 0;
    while tokio::time::Instant::now() < deadline {
        connections = stack.back.connections();
        if connections >= n as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(done) = set.try_join_next() {
        bail!("a slow page finished before the measurement: {done:?}");
    }
    Ok((set, connections))
}

/// How many `data_transformation` spans ran through the whole window
/// `from_us..to_us`, waiting (bounded) for `n` of them: their batches leave
/// business-logic within a second of the slow pages' end.
async fn held_through(collector: &Collector, from_us: u64, to_us: u64, n: usize) -> usize {
    let count = || {
        collector
            .timings(SLOW_HELD_SPAN)
            .iter()
            .filter(|t| t.covers(from_us, to_us))
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while count() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    count()
}

async fn run(args: Args, pinning: Pinning) -> anyhow::Result<()> {
    let plan = Plan::new(&args);
    let binaries = Binaries::locate(args.bin_dir.as_deref())?;
    let tool = LoadTool::find(args.load_tool)?;
    let tool_version = tool.version();
    let machine = Machine::describe();
    let logs = args.out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let scratch = std::env::temp_dir().join(format!("demo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    say(format!(
        "{}; {tool_version}; {}; {} round(s) of {} s after {} s warm-up",
        machine.summary(),
        pinning.describe(),
        plan.rounds,
        plan.duration.as_secs(),
        plan.warmup.as_secs()
    ));
    let cx = Harness {
        pinning,
        binaries,
        logs,
        scratch: scratch.clone(),
        collector: Collector::counting(&[SLOW_HELD_SPAN])?,
        plan,
    };
    let result = measure(&args, &cx, &tool, tool_version, machine).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let results = result?;

    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(args.out.join("results.json"), json + "\n")?;
    std::fs::write(args.out.join("results.md"), results.markdown())?;
    println!("\n{}\n\n{}", results.conditions(), results.table());
    say(format!(
        "written {} and {}",
        args.out.join("results.json").display(),
        args.out.join("results.md").display()
    ));
    Ok(())
}

async fn measure(
    args: &Args,
    cx: &Harness,
    tool: &LoadTool,
    tool_version: String,
    machine: Machine,
) -> anyhow::Result<Results> {
    let plan = &cx.plan;

    // 6. Start-up, each sample on a fresh database (migrations and seed included).
    say(format!(
        "start-up: {} sample(s) per service",
        plan.startup_samples
    ));
    let mut front_startups = Vec::new();
    let mut back_startups = Vec::new();
    for i in 0..plan.startup_samples {
        let (_pair, front, back) = cx.start_stack(&format!("startup-{i}"), true).await?;
        front_startups.push(front.as_secs_f64() * 1e3);
        back_startups.push(back.as_secs_f64() * 1e3);
    }

    say("starting the instrumented, uninstrumented and ceiling stacks");
    let (on, ..) = cx.start_stack("instrumented", true).await?;
    let (off, ..) = cx.start_stack("uninstrumented", false).await?;
    let ceiling = cx.start_ceiling().await?;
    for (name, pair) in [
        ("instrumented", &on),
        ("uninstrumented", &off),
        ("ceiling", &ceiling),
    ] {
        let status = test_support::http::status(&pair.front.url("/fast-page")).await;
        if status != Some(200) {
            bail!(
                "{name} fast page answered {status:?}:\n{}\n{}",
                pair.front.log_tail(40),
                pair.back.log_tail(40)
            );
        }
    }
    // Idle: ready, one request served, a second to settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = [on.front.memory(), on.back.memory()];
    let load_max = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];

    let mut runs: BTreeMap<&'static str, Vec<Run>> = BTreeMap::new();
    let mut instrumented_requests: u64 = 1;
    let mut slow_held = Vec::new();
    let mut slow_ok = 0usize;
    for round in 0..plan.rounds {
        let order: Vec<Config> = if round % 2 == 0 {
            ORDER.to_vec()
        } else {
            ORDER.iter().rev().copied().collect()
        };
        for config in order {
            let stack = match config {
                Config::Ceiling => &ceiling,
                Config::Instrumented | Config::InstrumentedWithSlow => &on,
                Config::Uninstrumented => &off,
            };
            stack.front.clear_logs()?;
            stack.back.clear_logs()?;
            let slow = if config == Config::InstrumentedWithSlow {
                let (set, connections) =
                    hold_slow_pages(stack, plan.slow_requests, plan.slow_delay_ms).await?;
                say(format!(
                    "round {}: {} slow pages sent, business-logic holds {connections} connections",
                    round + 1,
                    plan.slow_requests
                ));
                Some(set)
            } else {
                None
            };
            let url = stack.front.url("/fast-page");
            let warm = tool
                .run(&cx.pinning, &url, args.concurrency, plan.warmup)
                .await?;
            let instrumented =
                matches!(config, Config::Instrumented | Config::InstrumentedWithSlow);
            let sampler = instrumented
                .then(|| sample_memory(vec![on.front.pid(), on.back.pid()], load_max.to_vec()));
            let before = cpu_times();
            let measured_from = now_us();
            let stats = tool
                .run(&cx.pinning, &url, args.concurrency, plan.duration)
                .await?;
            let measured_to = now_us();
            let after = cpu_times();
            if let Some(sampler) = sampler {
                sampler.abort();
            }
            let (server_cpu, load_cpu) = match &cx.pinning {
                Pinning::Pinned { servers, load } => (
                    busy_pct(&before, &after, &format!("cpu{servers}")),
                    busy_pct(&before, &after, &format!("cpu{load}")),
                ),
                Pinning::None => (busy_pct(&before, &after, "cpu"), None),
            };
            say(format!(
                "round {}: {:<46} {:>8.0} req/s  p50 {:>9}  p99 {:>9}  errors {}  (CPU servers {:.0} %, load {:.0} %)",
                round + 1,
                config.label(),
                stats.requests_per_s,
                bench::format_ms(stats.p50_ms),
                bench::format_ms(stats.p99_ms),
                stats.errors,
                server_cpu.unwrap_or(f64::NAN),
                load_cpu.unwrap_or(f64::NAN),
            ));
            if instrumented {
                instrumented_requests += warm.requests + stats.requests;
            }
            if let Some(mut set) = slow {
                let limit = Duration::from_millis(plan.slow_delay_ms + 30_000);
                let joined = tokio::time::timeout(limit, async {
                    let mut ok = 0;
                    while let Some(done) = set.join_next().await {
                        ok += usize::from(matches!(done, Ok(Some(200))));
                    }
                    ok
                })
                .await
                .context("slow pages did not finish")?;
                slow_ok += joined;
                let n = plan.slow_requests as usize;
                let held = held_through(&cx.collector, measured_from, measured_to, n).await;
                say(format!(
                    "round {}: {held} of {n} slow pages were held in business-logic through the measured run",
                    round + 1,
                ));
                slow_held.push(held as u64);
                instrumented_requests += u64::from(plan.slow_requests);
            }
            runs.entry(config.label()).or_default().push(Run {
                stats,
                server_cpu_busy_pct: server_cpu,
                load_cpu_busy_pct: load_cpu,
            });
        }
    }
    let slow_sent = plan.slow_requests as usize * plan.rounds as usize;
    if slow_ok != slow_sent {
        say(format!(
            "warning: {slow_ok} of {slow_sent} slow pages answered 200"
        ));
    }

    // After: a second to settle, then the last resident size and the peaks.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = [on.front.memory(), on.back.memory()];
    // Spans leave in batches every 500 ms; give the last ones time to land.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut figure =
        |config: Config| Figure::from_runs(runs.remove(config.label()).unwrap_or_default());
    let fast_page = figure(Config::Instrumented);
    let ceiling_figure = figure(Config::Ceiling);
    let uninstrumented = figure(Config::Uninstrumented);
    let with_slow = figure(Config::InstrumentedWithSlow);
    let ratios = Ratios {
        fast_page_over_ceiling: fast_page.requests_per_s / ceiling_figure.requests_per_s,
        instrumented_over_uninstrumented: fast_page.requests_per_s / uninstrumented.requests_per_s,
        slow_path_isolation: with_slow.p99_ms / fast_page.p99_ms,
    };
    let mut memory = BTreeMap::new();
    for (i, server) in [&on.front, &on.back].into_iter().enumerate() {
        memory.insert(
            server.name().to_owned(),
            MemoryFigure {
                idle_rss_kib: idle[i].rss_kib,
                idle_anon_kib: idle[i].anon_kib,
                load_rss_max_kib: load_max[i].load(Ordering::Relaxed),
                peak_kib: server.memory().hwm_kib,
                after_run_rss_kib: after[i].rss_kib,
            },
        );
    }
    let startup_ms = BTreeMap::from([
        ("front-end".to_owned(), median(&front_startups)),
        ("business-logic".to_owned(), median(&back_startups)),
    ]);
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let binary_size_bytes = BTreeMap::from([
        ("front-end".to_owned(), size(&cx.binaries.front_end)),
        (
            "business-logic".to_owned(),
            size(&cx.binaries.business_logic),
        ),
    ]);
    let received = cx.collector.span_count();
    let spans = Spans {
        received,
        batches: cx.collector.batches(),
        rejected_batches: cx.collector.rejected(),
        instrumented_requests,
        per_request: received as f64 / instrumented_requests.max(1) as f64,
    };
    let zipkin = cx.collector.zipkin_endpoint();
    let mut results = Results {
        machine,
        settings: Settings {
            quick: args.quick,
            load_tool: tool_version,
            concurrency: args.concurrency,
            warmup_s: plan.warmup.as_secs(),
            duration_s: plan.duration.as_secs(),
            rounds: plan.rounds,
            order: "ceiling, instrumented, uninstrumented, instrumented + slow; reversed every other round".into(),
            pinning: cx.pinning.describe(),
            slow_requests: plan.slow_requests,
            slow_delay_ms: plan.slow_delay_ms,
            instrumented_env: describe_env(&service_env(true, &zipkin)),
            uninstrumented_env: describe_env(&service_env(false, &zipkin)),
        },
        fast_page,
        ceiling: ceiling_figure,
        fast_page_uninstrumented: uninstrumented,
        fast_page_with_slow: with_slow,
        ratios,
        memory,
        startup_ms,
        startup_samples: plan.startup_samples,
        binary_size_bytes,
        spans,
        slow_pages: SlowPages {
            sent: slow_sent as u64,
            held_min: slow_held.iter().copied().min().unwrap_or(0),
            answered_200: slow_ok as u64,
        },
        targets: Vec::new(),
    };
    results.judge();
    drop((on, off, ceiling));
    Ok(results)
}
