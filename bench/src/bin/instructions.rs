//! CPU work per fast page, in instructions, for any of the settings in
//! [`bench::instructions::SETTINGS`]: a figure a busy machine does not move,
//! for comparing one change or one setting with another
//! (`docs/instrumentation-cost.md`). Each setting is a fresh pair of
//! processes (release builds) on a fresh SQLite file, or on
//! `--database-url`; spans go to the stand-in collector on loopback, so the
//! export thread's work is counted too. `--rss` reads resident memory of
//! native runs instead.
//!
//! ```sh
//! cargo build --release -p business-logic -p front-end -p bench
//! target/release/instructions                       # four settings, SQLite
//! target/release/instructions --settings traces-only metrics-only --requests 600
//! target/release/instructions --rss                 # resident memory, native runs
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line report

use std::path::PathBuf;

use anyhow::Context;
use bench::Binaries;
use bench::instructions::{Counter, Rig, Setting};
use bench::report::thousands;
use clap::Parser;
use test_support::collector::Collector;

/// Instructions (or resident memory) per fast page, setting by setting.
#[derive(Debug, Parser)]
#[command(name = "instructions")]
struct Args {
    /// The settings to measure, by name: instrumented, instrumented-warn,
    /// instrumented-no-exemplars, instrumented-zipkin, uninstrumented,
    /// traces-only, metrics-only, uninstrumented-warn, database-ceiling.
    #[arg(
        long,
        num_args = 1..,
        value_parser = Setting::named,
        default_values = ["instrumented", "instrumented-warn", "uninstrumented", "uninstrumented-warn"]
    )]
    settings: Vec<&'static Setting>,
    /// Fast pages counted per setting.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    requests: u32,
    /// Fast pages before counting starts.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    warmup: u32,
    /// business-logic's database (default: a fresh SQLite file per setting).
    #[arg(long)]
    database_url: Option<String>,
    /// Resident memory instead (native runs, no counter).
    #[arg(long, conflicts_with = "callgrind")]
    rss: bool,
    /// Count under callgrind even where perf could count (its dumps, kept
    /// with --keep, feed `callgrind_annotate`).
    #[arg(long)]
    callgrind: bool,
    /// Keep the logs, databases and callgrind dumps.
    #[arg(long)]
    keep: bool,
    /// Where front-end, business-logic and ceiling are (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let binaries = Binaries::locate(args.bin_dir.as_deref())?;
    let counter = if args.rss {
        None
    } else {
        let counter = if args.callgrind {
            Counter::callgrind()
        } else {
            Counter::detect()
        };
        Some(counter.context(
            "no instruction counter: perf cannot count here and valgrind is not installed \
             (Debian: apt-get install valgrind)",
        )?)
    };
    let work = std::env::temp_dir().join(format!("instructions-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let collector = Collector::counting(&[])?;
    let rig = Rig {
        binaries: &binaries,
        cpu: None,
        logs: &work,
        scratch: &work,
        collector: &collector,
        database_url: args.database_url.clone(),
        warmup: args.warmup,
        requests: args.requests,
    };
    let result = measure(&args, &rig, counter).await;
    if args.keep || result.is_err() {
        eprintln!("logs, databases and dumps in {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

async fn measure(args: &Args, rig: &Rig<'_>, counter: Option<Counter>) -> anyhow::Result<()> {
    match counter {
        Some(counter) => {
            eprintln!(
                "counting with {}, {} fast pages after {} uncounted",
                counter.name(),
                args.requests,
                args.warmup
            );
            println!(
                "{:<26} {:>16} {:>16} {:>16}   (instructions / fast page; spans exported / fast page)",
                "setting", "business-logic", "front-end", "spans"
            );
            for setting in &args.settings {
                let figure = rig.count(setting, counter).await?;
                println!(
                    "{:<26} {:>16} {:>16} {:>16.1}",
                    setting.name,
                    thousands(figure.back_per_request),
                    thousands(figure.front_per_request),
                    figure.spans_per_request
                );
            }
        }
        None => {
            println!(
                "{:<26} {:>30} {:>30}   (KiB)",
                "setting", "business-logic idle · loaded", "front-end idle · loaded"
            );
            for setting in &args.settings {
                let r = rig.resident(setting).await?;
                println!(
                    "{:<26} {:>30} {:>30}",
                    setting.name,
                    format!("{} · {}", r.back_idle_kib, r.back_loaded_kib),
                    format!("{} · {}", r.front_idle_kib, r.front_loaded_kib)
                );
            }
        }
    }
    Ok(())
}
