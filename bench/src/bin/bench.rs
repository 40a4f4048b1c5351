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
use bench::instructions::{self, Counter, Rig, Setting};
use bench::load_tool::{self, LoadTool};
use bench::machine::Machine;
use bench::pinning::Pinning;
use bench::report::{
    Figure, Instructions, LogLines, MemoryFigure, PostgresFigures, Ratios, Results, Run, Settings,
    SlowPages, Spans,
};
use bench::{Binaries, median, service_env};
use clap::Parser;
use contract::DELAY_MS;
use contract::routes::front_end::{FAST_PAGE, SLOW_PAGE};
use service_kit::redact;
use test_support::collector::{Collector, now_us};
use test_support::database::TestDatabase;
use test_support::os::Memory;
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
    /// Length of each measured run: 10s, 1m, ... (default 10s, quick 2s; whole seconds, 1s to 1h).
    #[arg(long, value_parser = run_length)]
    duration: Option<Duration>,
    /// Warm-up before each measured run (default 3s, quick 1s; whole seconds, 1s to 1h).
    #[arg(long, value_parser = run_length)]
    warmup: Option<Duration>,
    /// Rounds of interleaved runs (default 3, quick 1).
    #[arg(long)]
    rounds: Option<u32>,
    /// Slow pages held in flight for the isolation figure (default 300, quick 100).
    #[arg(long)]
    slow_requests: Option<u32>,
    /// Do not pin servers and load generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    /// The PostgreSQL server for the PostgreSQL figures (a fresh database is
    /// made on it and dropped after); skipped with a note when unreachable.
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres_url: String,
    /// Leave PostgreSQL out.
    #[arg(long)]
    no_postgres: bool,
    /// Count instructions per fast page under perf or callgrind (default: on
    /// in a full run when either works here, off with --quick).
    #[arg(long, conflicts_with = "no_instructions")]
    instructions: bool,
    /// Leave the instruction counts out.
    #[arg(long)]
    no_instructions: bool,
    /// Requests counted per setting for the instruction figures (default 2000, quick 200).
    #[arg(long)]
    instruction_requests: Option<u32>,
    /// Requests before counting starts (default 200, quick 20).
    #[arg(long)]
    instruction_warmup: Option<u32>,
}

/// `--duration` and `--warmup`: whole seconds from 1s to 1h, as the load
/// generators take them.
fn run_length(value: &str) -> Result<Duration, String> {
    let duration =
        contract::duration_within(value, Duration::from_secs(1)..=Duration::from_secs(3600))?;
    if duration.subsec_nanos() == 0 {
        Ok(duration)
    } else {
        Err(format!(
            "{value:?}: whole seconds only (the load generators count in seconds)"
        ))
    }
}

/// Which database a stack reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

/// What is under load in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Config {
    Ceiling,
    DatabaseCeiling(Db),
    Instrumented(Db),
    Uninstrumented(Db),
    /// Uninstrumented (SQLite) with `RUST_LOG=warn`: no per-request log lines.
    UninstrumentedWarn,
    InstrumentedWithSlow,
}

impl Config {
    fn label(self) -> &'static str {
        match self {
            Self::Ceiling => "ceiling",
            Self::DatabaseCeiling(Db::Sqlite) => "database ceiling, SQLite",
            Self::DatabaseCeiling(Db::Postgres) => "database ceiling, PostgreSQL",
            Self::Instrumented(Db::Sqlite) => "fast page, instrumented",
            Self::Instrumented(Db::Postgres) => "fast page, instrumented, PostgreSQL",
            Self::Uninstrumented(Db::Sqlite) => "fast page, uninstrumented",
            Self::Uninstrumented(Db::Postgres) => "fast page, uninstrumented, PostgreSQL",
            Self::UninstrumentedWarn => "fast page, uninstrumented, RUST_LOG=warn",
            Self::InstrumentedWithSlow => "fast page, instrumented, slow pages in flight",
        }
    }

    fn instrumented(self) -> bool {
        matches!(self, Self::Instrumented(_) | Self::InstrumentedWithSlow)
    }
}

/// Round order: A B C ..., then ... C B A, so a drift of the machine over
/// time weighs on every configuration alike. PostgreSQL's runs come last
/// in a round (first in the reversed one) when it is reachable.
fn order(postgres: bool) -> Vec<Config> {
    let mut order = vec![
        Config::Ceiling,
        Config::DatabaseCeiling(Db::Sqlite),
        Config::Instrumented(Db::Sqlite),
        Config::Uninstrumented(Db::Sqlite),
        Config::UninstrumentedWarn,
        Config::InstrumentedWithSlow,
    ];
    if postgres {
        order.extend([
            Config::DatabaseCeiling(Db::Postgres),
            Config::Instrumented(Db::Postgres),
            Config::Uninstrumented(Db::Postgres),
        ]);
    }
    order
}

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
    instruction_requests: u32,
    instruction_warmup: u32,
}

impl Plan {
    fn new(args: &Args) -> Self {
        let (warmup, duration, rounds, slow, samples, counted, counted_warmup) = if args.quick {
            (1, 2, 1, 100, 1, 200, 20)
        } else {
            (3, 10, 3, 300, 3, 2000, 200)
        };
        let warmup = args.warmup.unwrap_or(Duration::from_secs(warmup));
        let duration = args.duration.unwrap_or(Duration::from_secs(duration));
        // The slow pages must outlive warm-up plus run, with room for
        // confirming they are in flight, within the delay business-logic allows.
        let held = warmup + duration + Duration::from_secs(6);
        let slow_delay_ms = u64::try_from(held.as_millis())
            .unwrap_or(u64::MAX)
            .min(contract::MAX_DELAY_MS);
        Self {
            warmup,
            duration,
            rounds: args.rounds.unwrap_or(rounds).max(1),
            slow_requests: args.slow_requests.unwrap_or(slow),
            slow_delay_ms,
            startup_samples: samples,
            instruction_requests: args
                .instruction_requests
                .unwrap_or(counted)
                .clamp(1, 100_000),
            instruction_warmup: args
                .instruction_warmup
                .unwrap_or(counted_warmup)
                .min(10_000),
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

fn describe_env(env: &[(&str, String)]) -> Vec<String> {
    env.iter()
        .filter(|(k, _)| !k.starts_with("OTEL_EXPORTER_") && *k != "DATABASE_URL")
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

    /// business-logic on `database_url` (default: a fresh SQLite file in
    /// `scratch/<tag>`), then the front-end calling it; both ready. Returns
    /// the pair and both start-up times.
    async fn start_stack(
        &self,
        tag: &str,
        instrumented: bool,
        rust_log: &str,
        database_url: Option<&str>,
    ) -> anyhow::Result<(Pair, Duration, Duration)> {
        let mut env = service_env(instrumented, rust_log, &self.collector.url());
        let mut back_env = env.clone();
        back_env.push(("DATABASE_URL", self.database_url(tag, database_url)?));
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

    /// `database_url`, or a fresh SQLite file in `scratch/<tag>`.
    fn database_url(&self, tag: &str, database_url: Option<&str>) -> anyhow::Result<String> {
        if let Some(url) = database_url {
            return Ok(url.to_owned());
        }
        let dir = self.scratch.join(tag);
        std::fs::create_dir_all(&dir)?;
        Ok(format!("sqlite://{}/business-logic.db", dir.display()))
    }

    /// The ceiling pair: a bare back, or with `database` (`Some(None)`: a
    /// fresh SQLite file) the back that runs business-logic's query first.
    async fn start_ceiling(
        &self,
        tag: &str,
        database: Option<Option<&str>>,
    ) -> anyhow::Result<Pair> {
        let back_args = match database {
            None => vec!["back".to_owned()],
            Some(url) => vec![
                "back-database".to_owned(),
                "--database-url".to_owned(),
                self.database_url(tag, url)?,
            ],
        };
        let back_args: Vec<&str> = back_args.iter().map(String::as_str).collect();
        let mut back = self
            .launch("ceiling-back", &self.binaries.ceiling)
            .args(&back_args)
            .log_file(&self.logs.join(format!("{tag}-back.log")))
            .start(Duration::from_secs(30))?;
        back.wait_ready(Duration::from_secs(60)).await?;
        let backend_url = back.url("");
        let mut front = self
            .launch("ceiling-front", &self.binaries.ceiling)
            .args(&["front", "--backend-url", &backend_url])
            .log_file(&self.logs.join(format!("{tag}-front.log")))
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
    let url = stack
        .front
        .url(&format!("{SLOW_PAGE}?{DELAY_MS}={delay_ms}"));
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
    let counter = choose_counter(&args)?;
    let postgres = if args.no_postgres {
        Err("left out (--no-postgres)".to_owned())
    } else {
        TestDatabase::create_postgres(&args.postgres_url)
            .await
            .map_err(|e| format!("{} unreachable: {e:#}", redact(&args.postgres_url)))
    };
    match &postgres {
        Ok(_) => say(format!(
            "PostgreSQL: a fresh database on {}",
            redact(&args.postgres_url)
        )),
        Err(why) => say(format!("PostgreSQL figures skipped: {why}")),
    }
    let cx = Harness {
        pinning,
        binaries,
        logs,
        scratch: scratch.clone(),
        collector: Collector::counting(&[SLOW_HELD_SPAN])?,
        plan,
    };
    let postgres_url = postgres.as_ref().ok().map(|db| db.url.clone());
    let result = measure(
        &args,
        &cx,
        &tool,
        tool_version,
        machine,
        postgres_url.as_deref(),
        counter,
    )
    .await;
    let postgres_skipped = postgres.as_ref().err().cloned();
    drop(postgres);
    let _ = std::fs::remove_dir_all(&scratch);
    let mut results = result?;
    results.postgres_skipped = postgres_skipped;

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

/// The instruction counter this run uses, if any: `--instructions` insists
/// (an error without one), `--no-instructions` and `--quick` leave it out,
/// a full run takes what the machine has.
fn choose_counter(args: &Args) -> anyhow::Result<Option<Counter>> {
    if args.no_instructions || (args.quick && !args.instructions) {
        say("instructions per request: not counted (--instructions to count them)");
        return Ok(None);
    }
    let counter = Counter::detect();
    match counter {
        Some(counter) => say(format!(
            "instructions per request: counted with {}",
            counter.name()
        )),
        None if args.instructions => bail!(
            "--instructions: neither `perf stat` counts instructions here nor is valgrind \
             installed (Debian: apt-get install valgrind)"
        ),
        None => say(
            "instructions per request: not counted (perf cannot count here and valgrind is not installed)",
        ),
    }
    Ok(counter)
}

/// The stacks under load, by configuration.
struct Stacks {
    on: Pair,
    off: Pair,
    off_warn: Pair,
    ceiling: Pair,
    ceiling_db: Pair,
    postgres: Option<[Pair; 3]>,
}

impl Stacks {
    fn get(&self, config: Config) -> &Pair {
        let pg = |i: usize| &self.postgres.as_ref().expect("PostgreSQL stacks")[i];
        match config {
            Config::Ceiling => &self.ceiling,
            Config::DatabaseCeiling(Db::Sqlite) => &self.ceiling_db,
            Config::Instrumented(Db::Sqlite) | Config::InstrumentedWithSlow => &self.on,
            Config::Uninstrumented(Db::Sqlite) => &self.off,
            Config::UninstrumentedWarn => &self.off_warn,
            Config::DatabaseCeiling(Db::Postgres) => pg(0),
            Config::Instrumented(Db::Postgres) => pg(1),
            Config::Uninstrumented(Db::Postgres) => pg(2),
        }
    }
}

/// The whole measurement, one named step after another: start-up times,
/// the stacks, the interleaved rounds under load, memory after them, then,
/// with the load over, the instruction counts.
async fn measure(
    args: &Args,
    cx: &Harness,
    tool: &LoadTool,
    tool_version: String,
    machine: Machine,
    postgres_url: Option<&str>,
    counter: Option<Counter>,
) -> anyhow::Result<Results> {
    let plan = &cx.plan;
    let startup = measure_startup(cx).await?;
    let stacks = start_stacks(cx, postgres_url).await?;
    let order_of_round = order(stacks.postgres.is_some());
    check_fast_pages(&stacks, &order_of_round).await?;
    // Idle: ready, one request served, a second to settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let on = &stacks.on;
    let idle = [on.front.memory(), on.back.memory()];

    let mut rounds = Rounds::default();
    for round in 0..plan.rounds {
        // A B C ..., then ... C B A.
        let mut this_round = order_of_round.clone();
        if round % 2 == 1 {
            this_round.reverse();
        }
        for config in this_round {
            rounds
                .run(cx, tool, &stacks, config, round, args.concurrency)
                .await?;
        }
    }
    let slow_sent = plan.slow_requests as usize * plan.rounds as usize;
    if rounds.slow_ok != slow_sent {
        say(format!(
            "warning: {} of {slow_sent} slow pages answered 200",
            rounds.slow_ok
        ));
    }

    // After: a second to settle, then the last resident size and the peaks.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = [on.front.memory(), on.back.memory()];
    // Spans leave in batches every 500 ms; give the last ones time to land.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let memory = memory_figures(on, idle, &rounds.load_max, after);
    let has_postgres = stacks.postgres.is_some();
    // The load is over: the counted runs start processes of their own.
    drop(stacks);
    let instructions = match counter {
        Some(counter) => Some(count_instructions(cx, counter).await?),
        None => None,
    };
    let settings = describe_settings(args, cx, tool_version, &order_of_round);
    let mut results = rounds.results(
        cx,
        machine,
        settings,
        has_postgres,
        memory,
        startup,
        instructions,
    );
    results.log_lines.instructions_per_line = results.instructions_per_log_line();
    results.judge();
    Ok(results)
}

/// Start-up times (spawn to ready), each sample on a fresh database
/// (migrations and seed included): the medians by service.
async fn measure_startup(cx: &Harness) -> anyhow::Result<BTreeMap<String, f64>> {
    let samples = cx.plan.startup_samples;
    say(format!("start-up: {samples} sample(s) per service"));
    let mut front_startups = Vec::new();
    let mut back_startups = Vec::new();
    for i in 0..samples {
        let (_pair, front, back) = cx
            .start_stack(&format!("startup-{i}"), true, "info", None)
            .await?;
        front_startups.push(front.as_secs_f64() * 1e3);
        back_startups.push(back.as_secs_f64() * 1e3);
    }
    Ok(BTreeMap::from([
        ("front-end".to_owned(), median(&front_startups)),
        ("business-logic".to_owned(), median(&back_startups)),
    ]))
}

/// Every stack the rounds put under load, started and ready.
async fn start_stacks(cx: &Harness, postgres_url: Option<&str>) -> anyhow::Result<Stacks> {
    say("starting the stacks: instrumented, uninstrumented (info, warn), ceilings");
    let (on, ..) = cx.start_stack("instrumented", true, "info", None).await?;
    let (off, ..) = cx
        .start_stack("uninstrumented", false, "info", None)
        .await?;
    let (off_warn, ..) = cx
        .start_stack("uninstrumented-warn", false, "warn", None)
        .await?;
    let ceiling = cx.start_ceiling("ceiling", None).await?;
    let ceiling_db = cx.start_ceiling("ceiling-sqlite", Some(None)).await?;
    let postgres = match postgres_url {
        Some(url) => {
            say("starting the PostgreSQL stacks: database ceiling, instrumented, uninstrumented");
            Some([
                cx.start_ceiling("ceiling-postgres", Some(Some(url)))
                    .await?,
                cx.start_stack("postgres-instrumented", true, "info", Some(url))
                    .await?
                    .0,
                cx.start_stack("postgres-uninstrumented", false, "info", Some(url))
                    .await?
                    .0,
            ])
        }
        None => None,
    };
    Ok(Stacks {
        on,
        off,
        off_warn,
        ceiling,
        ceiling_db,
        postgres,
    })
}

/// Every configuration's fast page answers 200 before any load.
async fn check_fast_pages(stacks: &Stacks, configs: &[Config]) -> anyhow::Result<()> {
    for config in configs {
        let pair = stacks.get(*config);
        let status = test_support::http::status(&pair.front.url(FAST_PAGE)).await;
        if status != Some(200) {
            bail!(
                "{} fast page answered {status:?}:\n{}\n{}",
                config.label(),
                pair.front.log_tail(40),
                pair.back.log_tail(40)
            );
        }
    }
    Ok(())
}

/// What the rounds under load collect.
#[derive(Debug)]
struct Rounds {
    runs: BTreeMap<&'static str, Vec<Run>>,
    /// Requests the instrumented stack served: warm-ups, runs, slow pages,
    /// and the check before the rounds.
    instrumented_requests: u64,
    /// Per round, the slow pages held through the measured run.
    slow_held: Vec<u64>,
    slow_ok: usize,
    /// Log lines the uninstrumented stack printed at RUST_LOG=info, and its requests.
    log_lines: u64,
    logged_requests: u64,
    /// Highest resident size of the instrumented front and back under load.
    load_max: [Arc<AtomicU64>; 2],
}

impl Default for Rounds {
    fn default() -> Self {
        Self {
            runs: BTreeMap::new(),
            instrumented_requests: 1,
            slow_held: Vec::new(),
            slow_ok: 0,
            log_lines: 0,
            logged_requests: 0,
            load_max: [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))],
        }
    }
}

impl Rounds {
    /// One configuration's warm-up and measured run in `round`, with its
    /// slow pages held in flight where the configuration has them.
    async fn run(
        &mut self,
        cx: &Harness,
        tool: &LoadTool,
        stacks: &Stacks,
        config: Config,
        round: u32,
        concurrency: u32,
    ) -> anyhow::Result<()> {
        let plan = &cx.plan;
        let stack = stacks.get(config);
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
        let url = stack.front.url(FAST_PAGE);
        let warm = tool
            .run(&cx.pinning, &url, concurrency, plan.warmup)
            .await?;
        let sampled = matches!(
            config,
            Config::Instrumented(Db::Sqlite) | Config::InstrumentedWithSlow
        );
        let on = &stacks.on;
        let sampler = sampled
            .then(|| sample_memory(vec![on.front.pid(), on.back.pid()], self.load_max.to_vec()));
        let before = cpu_times();
        let measured_from = now_us();
        let stats = tool
            .run(&cx.pinning, &url, concurrency, plan.duration)
            .await?;
        let measured_to = now_us();
        let after = cpu_times();
        if let Some(sampler) = sampler {
            sampler.abort();
        }
        let run = cpu_share(&cx.pinning, &before, &after, stats);
        say(format!(
            "round {}: {:<46} {:>8.0} req/s  p50 {:>9}  p99 {:>9}  errors {}  (CPU servers {:.0} %, load {:.0} %)",
            round + 1,
            config.label(),
            run.stats.requests_per_s,
            bench::format_ms(run.stats.p50_ms),
            bench::format_ms(run.stats.p99_ms),
            run.stats.errors,
            run.server_cpu_busy_pct.unwrap_or(f64::NAN),
            run.load_cpu_busy_pct.unwrap_or(f64::NAN),
        ));
        if config.instrumented() {
            self.instrumented_requests += warm.requests + run.stats.requests;
        }
        if config == Config::Uninstrumented(Db::Sqlite) {
            // A buffered log writer may hold the last lines for a moment.
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.log_lines += (stack.front.logs().len() + stack.back.logs().len()) as u64;
            self.logged_requests += warm.requests + run.stats.requests;
        }
        if let Some(set) = slow {
            self.finish_slow_pages(cx, set, round, measured_from, measured_to)
                .await?;
        }
        self.runs.entry(config.label()).or_default().push(run);
        Ok(())
    }

    /// Waits (bounded) for the held slow pages to answer, and counts those
    /// business-logic held through the measured run `from_us..to_us`.
    async fn finish_slow_pages(
        &mut self,
        cx: &Harness,
        mut set: JoinSet<Option<u16>>,
        round: u32,
        from_us: u64,
        to_us: u64,
    ) -> anyhow::Result<()> {
        let plan = &cx.plan;
        let limit = Duration::from_millis(plan.slow_delay_ms + 30_000);
        let answered = tokio::time::timeout(limit, async {
            let mut ok = 0;
            while let Some(done) = set.join_next().await {
                ok += usize::from(matches!(done, Ok(Some(200))));
            }
            ok
        })
        .await
        .context("slow pages did not finish")?;
        self.slow_ok += answered;
        let n = plan.slow_requests as usize;
        let held = held_through(&cx.collector, from_us, to_us, n).await;
        say(format!(
            "round {}: {held} of {n} slow pages were held in business-logic through the measured run",
            round + 1,
        ));
        self.slow_held.push(held as u64);
        self.instrumented_requests += u64::from(plan.slow_requests);
        Ok(())
    }

    /// The figures, ratios and counts of all rounds, with what was measured
    /// around them.
    #[allow(clippy::too_many_arguments)] // the measurement's parts, each named
    fn results(
        mut self,
        cx: &Harness,
        machine: Machine,
        settings: Settings,
        has_postgres: bool,
        memory: BTreeMap<String, MemoryFigure>,
        startup_ms: BTreeMap<String, f64>,
        instructions: Option<Instructions>,
    ) -> Results {
        let plan = &cx.plan;
        let mut figure = |config: Config| {
            Figure::from_runs(self.runs.remove(config.label()).unwrap_or_default())
        };
        let fast_page = figure(Config::Instrumented(Db::Sqlite));
        let ceiling = figure(Config::Ceiling);
        let database_ceiling = figure(Config::DatabaseCeiling(Db::Sqlite));
        let uninstrumented = figure(Config::Uninstrumented(Db::Sqlite));
        let uninstrumented_warn = figure(Config::UninstrumentedWarn);
        let with_slow = figure(Config::InstrumentedWithSlow);
        let postgres = has_postgres.then(|| {
            PostgresFigures::new(
                figure(Config::Instrumented(Db::Postgres)),
                figure(Config::Uninstrumented(Db::Postgres)),
                figure(Config::DatabaseCeiling(Db::Postgres)),
                &ceiling,
            )
        });
        let log_lines_per_page = self.log_lines as f64 / self.logged_requests.max(1) as f64;
        let ratios = Ratios {
            fast_page_over_ceiling: fast_page.requests_per_s / ceiling.requests_per_s,
            fast_page_over_database_ceiling: fast_page.requests_per_s
                / database_ceiling.requests_per_s,
            instrumented_over_uninstrumented: fast_page.requests_per_s
                / uninstrumented.requests_per_s,
            log_info_over_warn: uninstrumented.requests_per_s / uninstrumented_warn.requests_per_s,
            slow_path_isolation: with_slow.p99_ms / fast_page.p99_ms,
        };
        let log_lines = LogLines {
            per_page: log_lines_per_page,
            cpu_us_per_line: match (
                uninstrumented.server_cpu_us_per_request,
                uninstrumented_warn.server_cpu_us_per_request,
            ) {
                (Some(info), Some(warn)) if log_lines_per_page > 0.0 => {
                    Some((info - warn) / log_lines_per_page)
                }
                _ => None,
            },
            instructions_per_line: None,
        };
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
            instrumented_requests: self.instrumented_requests,
            per_request: received as f64 / self.instrumented_requests.max(1) as f64,
        };
        Results {
            machine,
            settings,
            fast_page,
            ceiling,
            database_ceiling,
            fast_page_uninstrumented: uninstrumented,
            fast_page_uninstrumented_warn: uninstrumented_warn,
            fast_page_with_slow: with_slow,
            postgres,
            postgres_skipped: None,
            ratios,
            log_lines,
            instructions,
            memory,
            startup_ms,
            startup_samples: plan.startup_samples,
            binary_size_bytes,
            spans,
            slow_pages: SlowPages {
                sent: u64::from(plan.slow_requests) * u64::from(plan.rounds),
                held_min: self.slow_held.iter().copied().min().unwrap_or(0),
                answered_200: self.slow_ok as u64,
            },
            targets: Vec::new(),
        }
    }
}

/// A run with how busy the servers' and the load generator's CPUs were
/// between `before` and `after`, and the servers' CPU time per request
/// (only when the servers have a CPU of their own: unpinned, the load
/// generator's share would be in it).
fn cpu_share(
    pinning: &Pinning,
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
    stats: load_tool::RunStats,
) -> Run {
    let (server_cpu, load_cpu) = match pinning {
        Pinning::Pinned { servers, load } => (
            busy_pct(before, after, &format!("cpu{servers}")),
            busy_pct(before, after, &format!("cpu{load}")),
        ),
        Pinning::None => (busy_pct(before, after, "cpu"), None),
    };
    let server_cpu_us = match (pinning, server_cpu) {
        (Pinning::Pinned { .. }, Some(busy)) if stats.requests_per_s > 0.0 => {
            Some(busy / 100.0 / stats.requests_per_s * 1e6)
        }
        _ => None,
    };
    Run {
        stats,
        server_cpu_busy_pct: server_cpu,
        load_cpu_busy_pct: load_cpu,
        server_cpu_us_per_request: server_cpu_us,
    }
}

/// Resident memory of the instrumented pair: idle, the highest under load,
/// the kernel's peak, and after the rounds.
fn memory_figures(
    on: &Pair,
    idle: [Memory; 2],
    load_max: &[Arc<AtomicU64>; 2],
    after: [Memory; 2],
) -> BTreeMap<String, MemoryFigure> {
    [&on.front, &on.back]
        .into_iter()
        .enumerate()
        .map(|(i, server)| {
            let figure = MemoryFigure {
                idle_rss_kib: idle[i].rss_kib,
                idle_anon_kib: idle[i].anon_kib,
                load_rss_max_kib: load_max[i].load(Ordering::Relaxed),
                peak_kib: server.memory().hwm_kib,
                after_run_rss_kib: after[i].rss_kib,
            };
            (server.name().to_owned(), figure)
        })
        .collect()
}

/// How this run was set up, for the report.
fn describe_settings(
    args: &Args,
    cx: &Harness,
    load_tool: String,
    order_of_round: &[Config],
) -> Settings {
    let plan = &cx.plan;
    let collector = cx.collector.url();
    Settings {
        quick: args.quick,
        load_tool,
        concurrency: args.concurrency,
        warmup_s: plan.warmup.as_secs(),
        duration_s: plan.duration.as_secs(),
        rounds: plan.rounds,
        order: format!(
            "{}; reversed every other round",
            order_of_round
                .iter()
                .map(|c| c.label())
                .collect::<Vec<_>>()
                .join(" · ")
        ),
        pinning: cx.pinning.describe(),
        slow_requests: plan.slow_requests,
        slow_delay_ms: plan.slow_delay_ms,
        instrumented_env: describe_env(&service_env(true, "info", &collector)),
        uninstrumented_env: describe_env(&service_env(false, "info", &collector)),
    }
}

/// Instructions per fast page of the settings `make bench` counts
/// ([`instructions::BENCH_SETTINGS`]), on SQLite.
async fn count_instructions(cx: &Harness, counter: Counter) -> anyhow::Result<Instructions> {
    let plan = &cx.plan;
    let scratch = cx.scratch.join("instructions");
    std::fs::create_dir_all(&scratch)?;
    let rig = Rig {
        binaries: &cx.binaries,
        cpu: cx.pinning.servers_cpu(),
        logs: &cx.logs,
        scratch: &scratch,
        collector: &cx.collector,
        database_url: None,
        warmup: plan.instruction_warmup,
        requests: plan.instruction_requests,
    };
    let mut settings = Vec::new();
    for name in instructions::BENCH_SETTINGS {
        let setting = Setting::named(name).map_err(anyhow::Error::msg)?;
        let figure = rig.count(setting, counter).await?;
        say(format!(
            "instructions per fast page, {}: front {:.0}, back {:.0}",
            figure.setting, figure.front_per_request, figure.back_per_request
        ));
        settings.push(figure);
    }
    Ok(Instructions {
        counter: counter.name().to_owned(),
        requests: plan.instruction_requests,
        warmup: plan.instruction_warmup,
        settings,
    })
}
