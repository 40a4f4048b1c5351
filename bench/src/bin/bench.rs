//! `make bench`: starts the services (and the ceilings) as release processes
//! on loopback, drives each with the load generator in interleaved rounds,
//! counts instructions per page under callgrind, and prints one table, also
//! written to `target/bench/results.{json,md}`. Progress goes to stderr.
//! `--settings` counts instructions alone, for any settings.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use bench::instructions::{count, pages};
use bench::load::Tool;
use bench::report::*;
use bench::{BENCH_SETTINGS, Pair, SETTINGS, Starter, median, setting_named, which};
use clap::Parser;
use clap::builder::PossibleValuesParser;
use contract::DELAY_MS;
use contract::routes::front_end::{FAST_PAGE, SLOW_PAGE};
use procfs::{Current, CurrentSI};
use test_support::collector::Collector;
use test_support::database::TestDatabase;
use tokio::task::JoinSet;

/// Benchmarks the fast page against a ceiling, measures the cost of
/// instrumentation, slow-path isolation, memory, start-up and binary size.
#[derive(Debug, Parser)]
struct Args {
    /// A few seconds per figure, one round: proves the harness, not the figures.
    #[arg(long)]
    quick: bool,
    /// The HTTP load generator (default: oha if on PATH, else wrk).
    #[arg(long, value_parser = ["oha", "wrk"])]
    load_tool: Option<String>,
    /// Where results.json, results.md and the logs go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Connections the load generator holds open.
    #[arg(long, default_value_t = 32)]
    concurrency: u32,
    /// Each measured run, whole seconds: 10s, 1m, ...
    #[arg(long, value_parser = seconds, default_value = "10s", default_value_if("quick", "true", "2s"))]
    duration: Duration,
    /// Warm-up before each measured run.
    #[arg(long, value_parser = seconds, default_value = "3s", default_value_if("quick", "true", "1s"))]
    warmup: Duration,
    /// Rounds of interleaved runs.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100), default_value = "3", default_value_if("quick", "true", "1"))]
    rounds: u32,
    /// Slow pages held in flight for the isolation figure.
    #[arg(long, default_value = "300", default_value_if("quick", "true", "100"))]
    slow_requests: u32,
    /// Do not pin the servers and the load generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    /// The PostgreSQL server (a fresh database is made on it and dropped
    /// after); its figures are skipped with a note when it does not answer.
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres_url: String,
    #[arg(long)]
    no_postgres: bool,
    /// Count instructions per page under callgrind (default: in a full run
    /// when valgrind is installed).
    #[arg(long, conflicts_with = "no_instructions")]
    instructions: bool,
    #[arg(long)]
    no_instructions: bool,
    /// Pages counted per setting.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000), default_value = "2000", default_value_if("quick", "true", "200"))]
    instruction_requests: u32,
    /// Pages before counting starts.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=10_000), default_value = "200", default_value_if("quick", "true", "20"))]
    instruction_warmup: u32,
    /// Count only instructions, no load, for these settings (each on a fresh SQLite file).
    #[arg(long, num_args = 1.., value_parser = PossibleValuesParser::new(SETTINGS.map(|s| s.name)))]
    settings: Vec<String>,
}

/// Whole seconds from 1 s to 1 h, as the load generators take them.
fn seconds(value: &str) -> Result<Duration, String> {
    let d = contract::duration_within(value, Duration::from_secs(1)..=Duration::from_secs(3600))?;
    match d.subsec_nanos() {
        0 => Ok(d),
        _ => Err(format!("{value:?}: whole seconds only")),
    }
}

/// The stacks under load: their figure and their setting. The bare ceiling
/// has no database, `PG_*` run on PostgreSQL, the rest on SQLite.
#[rustfmt::skip]
const STACKS: [(&str, &str); 8] = [
    (CEILING, "database-ceiling"),
    (DB_CEILING, "database-ceiling"),
    (FAST, "instrumented"),
    (OFF, "uninstrumented"),
    (OFF_WARN, "uninstrumented-warn"),
    (PG_DB_CEILING, "database-ceiling"),
    (PG_FAST, "instrumented"),
    (PG_OFF, "uninstrumented"),
];

/// Progress, on stderr.
macro_rules! say {
    ($($arg:tt)*) => { eprintln!("bench: {}", format_args!($($arg)*)) };
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Before any thread exists: the runtime's threads and the load generator inherit it.
    let pid = std::process::id().to_string();
    let pin = || {
        Command::new("taskset")
            .args(["-a", "-p", "-c", "1", &pid])
            .output()
    };
    let pinned = !args.no_pin && cpus >= 2 && pin().is_ok_and(|o| o.status.success());
    let dir = args.out.join("logs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args, pinned.then_some(0), &dir))
}

async fn run(args: Args, cpu: Option<u32>, dir: &Path) -> anyhow::Result<()> {
    let quick = args.quick;
    let (warmup, duration, slow) = (args.warmup, args.duration, args.slow_requests);
    // The slow pages outlive warm-up plus run, with room to confirm they are held.
    let slow_delay_ms = (warmup + duration + Duration::from_secs(6)).as_millis() as u64;
    let slow_delay_ms = slow_delay_ms.min(contract::MAX_DELAY_MS);
    // front-end, business-logic and ceiling are built next to this binary.
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().context("no directory")?;
    let collector = Collector::counting()?;
    let front_env = [
        // The held slow pages must not time out in the front-end.
        ("SLOW_PAGE_TIMEOUT_MS", (slow_delay_ms + 30_000).to_string()),
        ("JAEGER_UI_URL", "http://localhost:8080/jaeger".to_owned()),
        ("GRAFANA_URL", "http://localhost:8080/grafana".to_owned()),
    ];
    let starter = Starter {
        bin_dir,
        cpu,
        dir,
        collector_url: collector.url(),
        front_env: front_env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
        callgrind: false,
    };
    let counting = counting(&args)?;
    if let (false, Some(pages)) = (args.settings.is_empty(), counting) {
        let starter = starter.under_callgrind();
        let mut counts = Vec::new();
        for name in &args.settings {
            counts.push(count(&starter, &collector, &setting_named(name)?, pages).await?);
        }
        println!("{}", serde_json::to_string_pretty(&counts)?);
        say!("instructions per fast page of each process, spans exported per page");
        return Ok(());
    }
    let (tool, connections) = (args.load_tool.as_deref(), args.concurrency);
    let tool = Tool::find(tool, connections, dir, cpu.is_some())?;
    let mut results = machine();
    (results.quick, results.slow_pages) = (quick, slow);
    let pinning = match cpu {
        Some(_) => "servers on CPU 0, load generator on CPU 1",
        None => "not pinned",
    };
    let (rounds, secs, warm) = (args.rounds, duration.as_secs(), warmup.as_secs());
    let plan = format!("{rounds} round(s) of {secs} s per figure after a {warm} s warm-up");
    say!("{}; {}; {pinning}; {plan}", results.machine, tool.version);
    let postgres = if args.no_postgres {
        Err("left out (--no-postgres)".to_owned())
    } else {
        let db = TestDatabase::create_postgres(&args.postgres_url).await;
        let redacted = service_kit::redact(&args.postgres_url);
        db.map_err(|e| format!("{redacted} unreachable: {e:#}"))
    };
    results.postgres_skipped = postgres.as_ref().err().cloned();
    let skipped = results.postgres_skipped.as_deref();
    say!("PostgreSQL: {}", skipped.unwrap_or("a fresh database"));

    // Start-up, each on a fresh database (migrations and seed included).
    let mut startups = Vec::new();
    for i in 0..if quick { 1 } else { 3 } {
        let tag = format!("startup-{i}");
        let sqlite = starter.sqlite(&tag)?;
        let (_, front, back) = starter.start(&tag, Some(""), Some(&sqlite)).await?;
        startups.push([front, back].map(|d| d.as_secs_f64() * 1e3));
    }
    for (i, service) in ["front-end", "business-logic"].into_iter().enumerate() {
        let ms = median(startups.iter().map(|s| s[i]));
        results.startup_ms.insert(service.to_owned(), ms);
    }

    say!("starting the stacks");
    let (mut stacks, mut order) = (BTreeMap::new(), Vec::new());
    for (label, setting) in STACKS {
        let database = match (label, &postgres) {
            (CEILING, _) => None,
            (PG_DB_CEILING | PG_FAST | PG_OFF, Ok(pg)) => Some(pg.url.clone()),
            (PG_DB_CEILING | PG_FAST | PG_OFF, Err(_)) => continue,
            _ => Some(starter.sqlite(label)?),
        };
        let changes = setting_named(setting)?.changes;
        let (pair, ..) = starter.start(label, changes, database.as_deref()).await?;
        let status = test_support::http::status(&pair.front.url(FAST_PAGE)).await;
        if status != Some(200) {
            let logs = [pair.front.log_tail(40), pair.back.log_tail(40)].join("\n");
            bail!("{label}: fast page answered {status:?}:\n{logs}");
        }
        stacks.insert(label, pair);
        order.push(label);
        if label == OFF_WARN {
            order.push(WITH_SLOW);
        }
    }

    // Idle: ready, one request served, a second to settle; then the kernel's
    // high-water mark is reset (clear_refs 5): after the rounds it is the peak under load.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let on = &stacks[FAST];
    let idle = [on.front.memory(), on.back.memory()];
    for pid in [on.front.pid(), on.back.pid()] {
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("resetting VmHWM")?;
    }

    let mut runs: BTreeMap<&'static str, Vec<Run>> = BTreeMap::new();
    let mut held_min = u64::MAX;
    for round in 0..args.rounds {
        // A B C ..., then ... C B A: a drift of the machine weighs on each alike.
        let mut this_round = order.clone();
        if round % 2 == 1 {
            this_round.reverse();
        }
        for label in this_round {
            let with_slow = label == WITH_SLOW;
            let pair = &stacks[if with_slow { FAST } else { label }];
            let held = match with_slow {
                true => Some(hold_slow_pages(pair, slow, slow_delay_ms).await?),
                false => None,
            };
            let url = pair.front.url(FAST_PAGE);
            tool.run(&url, warmup).await?;
            // A run without answers says nothing (a busy machine can starve a
            // short one): it is run again, at most twice.
            let mut attempts = 1;
            let (before, stats) = loop {
                let before = cpu_times();
                let stats = tool.run(&url, duration).await?;
                if stats.requests > 0 || attempts == 3 {
                    break (before, stats);
                }
                say!("{label}: no answers in a run, once more");
                attempts += 1;
            };
            let after = cpu_times();
            if let Some(set) = held {
                held_min = held_min.min(finish_slow_pages(set, slow_delay_ms).await?);
            }
            // The busy share of `/proc/stat` line `i` (0: the machine, 1: CPU 0, ...).
            let busy = |i: usize| {
                let ((b0, t0), (b1, t1)) = (before.get(i)?, after.get(i)?);
                let total = t1.checked_sub(*t0).filter(|t| *t > 0)?;
                Some(b1.saturating_sub(*b0) as f64 * 100.0 / total as f64)
            };
            let (server_cpu_pct, load_cpu_pct) = match cpu {
                Some(_) => (busy(1), busy(2)),
                None => (busy(0), None),
            };
            let pinned_rps = Some(stats.requests_per_s).filter(|rps| cpu.is_some() && *rps > 0.0);
            let server_cpu_us = server_cpu_pct
                .zip(pinned_rps)
                .map(|(pct, rps)| pct / 100.0 / rps * 1e6);
            let run = Run {
                server_cpu_pct,
                load_cpu_pct,
                server_cpu_us,
                ..stats
            };
            let [servers, load] = [server_cpu_pct, load_cpu_pct].map(|p| p.unwrap_or(f64::NAN));
            let (round, cell) = (round + 1, Figure::from_runs(vec![run]).cell());
            say!("round {round}: {label}: {cell} (CPU: servers {servers:.0} %, load {load:.0} %)");
            runs.entry(label).or_default().push(run);
        }
    }
    results.slow_pages_held_min = held_min;
    let figures = runs
        .into_iter()
        .map(|(label, runs)| (label.to_owned(), Figure::from_runs(runs)));
    results.figures = figures.collect();

    // After: a second to settle, then the last resident size and the peaks.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (service, idle) in [&on.front, &on.back].into_iter().zip(idle) {
        let after = service.memory();
        let memory = Memory {
            idle_kib: idle.rss_kib,
            idle_anon_kib: idle.anon_kib,
            load_max_kib: after.hwm_kib,
            peak_kib: after.hwm_kib.max(idle.hwm_kib),
            after_kib: after.rss_kib,
        };
        results.memory.insert(service.name().to_owned(), memory);
    }
    // Lines per page at RUST_LOG=info: 20 pages one after another (the log writers flush every 50 ms).
    let logging = &stacks[OFF];
    logging.front.clear_logs()?;
    logging.back.clear_logs()?;
    pages(&logging.front.url(FAST_PAGE), 20).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = logging.front.logs().len() + logging.back.logs().len();
    results.log_lines_per_page = lines as f64 / 20.0;
    // Spans leave in batches every 500 ms; give the last ones time to land.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    results.spans_received = collector.span_count();
    results.rejected_batches = collector.rejected();
    // The load is over: the counted runs start processes of their own.
    drop(stacks);
    if let Some(pages) = counting {
        let starter = starter.under_callgrind();
        for setting in BENCH_SETTINGS {
            let c = count(&starter, &collector, setting, pages).await?;
            say!("instructions and spans per fast page: {c:?}");
            results.instructions.push(c);
        }
    }
    drop(postgres);
    for name in ["front-end", "business-logic"] {
        let size = std::fs::metadata(bin_dir.join(name)).map_or(0, |m| m.len());
        results.binary_size_bytes.insert(name.to_owned(), size);
    }
    let postgres = match results.postgres_skipped {
        None => {
            "SQLite, and PostgreSQL (the machine's server, a fresh database; its processes are not pinned)"
        }
        Some(_) => "SQLite",
    };
    let instructions = counting.map_or_else(String::new, |[warmup, counted]| {
        format!(" Instructions: valgrind --tool=callgrind, both processes of a pair, {counted} fast pages one after another over one keep-alive connection after {warmup} uncounted, user space only.")
    });
    results.conditions = format!(
        "{} connections (closed loop, keep-alive), {plan}, order {}, reversed every other round; \
         medians over rounds, errors summed. Load generator {}; {pinning}. Services: release builds, {postgres}, \
         tracing at 100 % sampling exported over OTLP/HTTP (the default) to a stand-in collector ({} spans received), \
         metrics on, RUST_LOG=info, text logs appended to files. Slow requests: `{SLOW_PAGE}?{DELAY_MS}={slow_delay_ms}`. \
         µs CPU: the servers' CPU busy time per request (pinned runs).{instructions}",
        args.concurrency,
        order.join(" · "),
        tool.version,
        results.spans_received,
    );

    let table = results.table();
    let json = serde_json::to_string_pretty(&results)? + "\n";
    std::fs::write(args.out.join("results.json"), json)?;
    std::fs::write(args.out.join("results.md"), results.markdown(&table))?;
    println!("\n{}\n\n{table}", results.conditions);
    say!("written {}", args.out.join("results.{json,md}").display());
    Ok(())
}

/// The pages of warm-up and counted per setting, if instructions are
/// counted: `--instructions` and `--settings` insist, `--no-instructions`
/// and `--quick` leave them out, a full run counts them where valgrind is.
fn counting(args: &Args) -> anyhow::Result<Option<[u32; 2]>> {
    let installed = which("valgrind").is_some() && which("callgrind_control").is_some();
    let insist = args.instructions || !args.settings.is_empty();
    if insist && !installed {
        bail!("--instructions, --settings: no valgrind (Debian: apt-get install valgrind)");
    }
    if !insist && (args.no_instructions || args.quick || !installed) {
        say!("instructions per page: not counted (--instructions, with valgrind, counts them)");
        return Ok(None);
    }
    let (warmup, counted) = (args.instruction_warmup, args.instruction_requests);
    say!("instructions per page: callgrind, {counted} pages after {warmup}");
    Ok(Some([warmup, counted]))
}

/// Sends `n` slow pages, each held `delay_ms`, and waits (at most 5 s)
/// until business-logic holds a connection from the front-end for each
/// (HTTP/1.1 carries one request per connection at a time).
async fn hold_slow_pages(pair: &Pair, n: u32, delay_ms: u64) -> anyhow::Result<JoinSet<u16>> {
    let client = test_support::http::probe_client(Duration::from_millis(delay_ms + 60_000));
    let url = format!("{SLOW_PAGE}?{DELAY_MS}={delay_ms}");
    let mut set = JoinSet::new();
    for request in (0..n).map(|_| client.get(pair.front.url(&url))) {
        set.spawn(async move { request.send().await.map_or(0, |r| r.status().as_u16()) });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pair.back.connections() < n as usize && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(done) = set.try_join_next() {
        bail!("a slow page finished before the measurement: {done:?}");
    }
    let held = pair.back.connections();
    say!("{n} slow pages sent, business-logic holds {held} connections");
    Ok(set)
}

/// Right after a measured run: how many slow pages were still unanswered,
/// so held throughout (business-logic held them all when it began); then
/// waits (bounded) for their answers.
async fn finish_slow_pages(mut set: JoinSet<u16>, delay_ms: u64) -> anyhow::Result<u64> {
    while set.try_join_next().is_some() {}
    let held = set.len() as u64;
    let answered = tokio::time::timeout(Duration::from_millis(delay_ms + 30_000), set.join_all());
    let answered = answered.await.context("slow pages did not finish")?;
    let ok = answered.iter().filter(|status| **status == 200).count();
    say!("{held} slow pages held through the measured run, {ok} answered 200");
    Ok(held)
}

/// The machine, for the report: CPU model and count, memory, kernel, date, rustc.
fn machine() -> Results {
    let first_line = |program: &str, args: &[&str]| {
        let output = Command::new(program).args(args).output().ok()?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .map(str::to_owned)
    };
    let cpu = procfs::CpuInfo::current().ok();
    let model = cpu
        .as_ref()
        .and_then(|c| c.model_name(0))
        .unwrap_or("unknown")
        .trim();
    let cpus = cpu.as_ref().map_or(1, procfs::CpuInfo::num_cores);
    let gib = procfs::Meminfo::current().map_or(0.0, |m| m.mem_total as f64 / f64::from(1 << 30));
    let kernel = first_line("uname", &["-sr"]).unwrap_or_default();
    Results {
        machine: format!("{model}, {cpus} CPUs, {gib:.0} GiB RAM, {kernel}"),
        date: first_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default(),
        rustc: first_line("rustc", &["--version"]).unwrap_or_default(),
        ..Results::default()
    }
}

/// Jiffies (busy, total) from /proc/stat: the machine's, then CPU 0's, CPU 1's, ...
fn cpu_times() -> Vec<(u64, u64)> {
    let Ok(stats) = procfs::KernelStats::current() else {
        return Vec::new();
    };
    let jiffies = |t: &procfs::CpuTime| {
        let other = [t.irq, t.softirq, t.steal].map(|j| j.unwrap_or(0));
        let busy = t.user + t.nice + t.system + other.iter().sum::<u64>();
        (busy, busy + t.idle + t.iowait.unwrap_or(0))
    };
    let cpus = std::iter::once(&stats.total).chain(&stats.cpu_time);
    cpus.map(jiffies).collect()
}
