//! The benchmark's results: one table (Markdown, readable in a terminal),
//! also written as `results.json` and `results.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::load_tool::RunStats;
use crate::machine::Machine;
use crate::{format_ms, median};

/// One measured run plus how busy the CPUs were meanwhile.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    #[serde(flatten)]
    pub stats: RunStats,
    /// Busy share of the servers' CPU (or of the whole machine, unpinned).
    pub server_cpu_busy_pct: Option<f64>,
    /// Busy share of the load generator's CPU (unpinned: none).
    pub load_cpu_busy_pct: Option<f64>,
    /// CPU time the servers' CPU spent per request, µs (pinned runs only:
    /// busy share ÷ throughput; whatever else ran on that CPU is in it).
    pub server_cpu_us_per_request: Option<f64>,
}

/// A load figure: medians over the rounds, errors and requests summed.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub requests: u64,
    /// Median over the runs of [`Run::server_cpu_us_per_request`].
    pub server_cpu_us_per_request: Option<f64>,
    pub runs: Vec<Run>,
}

impl Figure {
    pub fn from_runs(runs: Vec<Run>) -> Self {
        let pick =
            |f: fn(&RunStats) -> f64| median(&runs.iter().map(|r| f(&r.stats)).collect::<Vec<_>>());
        Self {
            requests_per_s: pick(|s| s.requests_per_s),
            p50_ms: pick(|s| s.p50_ms),
            p99_ms: pick(|s| s.p99_ms),
            errors: runs.iter().map(|r| r.stats.errors).sum(),
            requests: runs.iter().map(|r| r.stats.requests).sum(),
            server_cpu_us_per_request: {
                let cpu: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.server_cpu_us_per_request)
                    .collect();
                (!cpu.is_empty()).then(|| median(&cpu))
            },
            runs,
        }
    }

    fn cell(&self) -> String {
        let cpu = self
            .server_cpu_us_per_request
            .map_or_else(String::new, |us| format!(" · {us:.0} µs CPU"));
        format!(
            "{} req/s · p50 {} · p99 {} · {} errors{cpu}",
            thousands(self.requests_per_s),
            format_ms(self.p50_ms),
            format_ms(self.p99_ms),
            self.errors
        )
    }
}

/// Resident memory of one service, KiB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MemoryFigure {
    /// Ready, before any load.
    pub idle_rss_kib: u64,
    /// The anonymous part of the idle resident size (heap and stacks, not
    /// the binary's code mapped from disk).
    pub idle_anon_kib: u64,
    /// Highest resident size sampled while load ran.
    pub load_rss_max_kib: u64,
    /// The kernel's high-water mark over the whole benchmark (VmHWM).
    pub peak_kib: u64,
    /// A second after the last run.
    pub after_run_rss_kib: u64,
}

/// The ratios the targets are set on (SQLite).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratios {
    /// Fast-page throughput over the bare ceiling's.
    pub fast_page_over_ceiling: f64,
    /// Fast-page throughput over the database ceiling's.
    pub fast_page_over_database_ceiling: f64,
    /// Instrumented over uninstrumented fast-page throughput.
    pub instrumented_over_uninstrumented: f64,
    /// Uninstrumented fast-page throughput at `RUST_LOG=info` over `warn`:
    /// what the per-request log lines cost.
    pub log_info_over_warn: f64,
    /// Fast-page p99 with slow requests in flight over without.
    pub slow_path_isolation: f64,
}

/// The fast page on PostgreSQL (the cluster's database, here the machine's
/// server), with its own database ceiling.
#[derive(Debug, Clone, Serialize)]
pub struct PostgresFigures {
    pub fast_page: Figure,
    pub fast_page_uninstrumented: Figure,
    pub database_ceiling: Figure,
    /// Over the bare ceiling (no database), the same as SQLite's.
    pub fast_page_over_ceiling: f64,
    pub fast_page_over_database_ceiling: f64,
    pub instrumented_over_uninstrumented: f64,
}

impl PostgresFigures {
    pub fn new(
        fast_page: Figure,
        fast_page_uninstrumented: Figure,
        database_ceiling: Figure,
        ceiling: &Figure,
    ) -> Self {
        Self {
            fast_page_over_ceiling: fast_page.requests_per_s / ceiling.requests_per_s,
            fast_page_over_database_ceiling: fast_page.requests_per_s
                / database_ceiling.requests_per_s,
            instrumented_over_uninstrumented: fast_page.requests_per_s
                / fast_page_uninstrumented.requests_per_s,
            fast_page,
            fast_page_uninstrumented,
            database_ceiling,
        }
    }
}

/// What the per-request log lines cost (uninstrumented stack, SQLite).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LogLines {
    /// Lines both services printed per fast page at `RUST_LOG=info`.
    pub per_page: f64,
    /// (servers' CPU µs per page at info − at warn) ÷ lines per page;
    /// pinned runs only.
    pub cpu_us_per_line: Option<f64>,
    /// The same from the instruction counts, when they were taken.
    pub instructions_per_line: Option<f64>,
}

/// The settings the instructions are counted for, as labelled.
pub const INSTRUCTIONS_INSTRUMENTED: &str = "instrumented";
pub const INSTRUCTIONS_UNINSTRUMENTED: &str = "uninstrumented";
pub const INSTRUCTIONS_UNINSTRUMENTED_WARN: &str = "uninstrumented, RUST_LOG=warn";
pub const INSTRUCTIONS_DATABASE_CEILING: &str = "database ceiling";

/// Instructions per fast page of one setting (SQLite), by process.
#[derive(Debug, Clone, Serialize)]
pub struct InstructionFigure {
    pub setting: String,
    /// front-end (or the ceiling's front).
    pub front_per_request: f64,
    /// business-logic (or the ceiling's back with the database).
    pub back_per_request: f64,
    pub total_per_request: f64,
}

/// CPU work per fast page, counted rather than timed.
#[derive(Debug, Clone, Serialize)]
pub struct Instructions {
    /// `perf stat -e instructions:u` or `valgrind --tool=callgrind`.
    pub counter: String,
    /// Requests counted per setting, after `warmup` uncounted ones.
    pub requests: u32,
    pub warmup: u32,
    pub settings: Vec<InstructionFigure>,
}

impl Instructions {
    pub fn total(&self, setting: &str) -> Option<f64> {
        self.settings
            .iter()
            .find(|s| s.setting == setting)
            .map(|s| s.total_per_request)
    }
}

/// Spans the stand-in collector received from the instrumented stack.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spans {
    pub received: u64,
    pub batches: u64,
    pub rejected_batches: u64,
    /// Requests the instrumented stack served (warm-ups, runs, slow requests).
    pub instrumented_requests: u64,
    pub per_request: f64,
}

/// The slow pages held in flight for the isolation figure.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SlowPages {
    /// Sent over all rounds.
    pub sent: u64,
    /// The fewest, in any round, whose `data_transformation` span in
    /// business-logic started before the measured run and ended after it.
    pub held_min: u64,
    /// How many finished with 200 (after the measurement).
    pub answered_200: u64,
}

/// How the benchmark was run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub quick: bool,
    pub load_tool: String,
    pub concurrency: u32,
    pub warmup_s: u64,
    pub duration_s: u64,
    pub rounds: u32,
    pub order: String,
    pub pinning: String,
    pub slow_requests: u32,
    pub slow_delay_ms: u64,
    /// The instrumented stack's settings (besides ports and paths).
    pub instrumented_env: Vec<String>,
    pub uninstrumented_env: Vec<String>,
}

/// One target from the issue and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub figure: String,
    pub value: f64,
    pub target: String,
    pub met: bool,
}

/// Everything the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub settings: Settings,
    pub fast_page: Figure,
    pub ceiling: Figure,
    /// The ceiling plus business-logic's query on SQLite.
    pub database_ceiling: Figure,
    pub fast_page_uninstrumented: Figure,
    pub fast_page_uninstrumented_warn: Figure,
    pub fast_page_with_slow: Figure,
    /// None when PostgreSQL was left out or unreachable (see `postgres_skipped`).
    pub postgres: Option<PostgresFigures>,
    pub postgres_skipped: Option<String>,
    pub ratios: Ratios,
    pub log_lines: LogLines,
    /// None when not counted (`--quick`, `--no-instructions`, no counter).
    pub instructions: Option<Instructions>,
    /// By service: `front-end`, `business-logic`.
    pub memory: BTreeMap<String, MemoryFigure>,
    /// Median time from spawn to the first 200 on `/readyz`, by service.
    pub startup_ms: BTreeMap<String, f64>,
    pub startup_samples: u32,
    /// Release binary sizes, by service.
    pub binary_size_bytes: BTreeMap<String, u64>,
    pub spans: Spans,
    pub slow_pages: SlowPages,
    pub targets: Vec<Target>,
}

const MIB: f64 = 1024.0;

impl Results {
    /// The targets of issues #6 and #15, judged on these figures.
    pub fn judge(&mut self) {
        let at_least = |figure: &str, value: f64, min: f64| Target {
            figure: figure.to_owned(),
            value,
            target: format!(">= {min:.2}"),
            met: value >= min,
        };
        let mut targets = vec![
            at_least(
                "fast page / ceiling (throughput)",
                self.ratios.fast_page_over_ceiling,
                0.5,
            ),
            at_least(
                "fast page / database ceiling, SQLite (throughput)",
                self.ratios.fast_page_over_database_ceiling,
                0.6,
            ),
        ];
        if let Some(pg) = &self.postgres {
            targets.push(at_least(
                "fast page / database ceiling, PostgreSQL (throughput)",
                pg.fast_page_over_database_ceiling,
                0.6,
            ));
        }
        targets.extend([
            at_least(
                "instrumented / uninstrumented (throughput)",
                self.ratios.instrumented_over_uninstrumented,
                0.85,
            ),
            at_least(
                "log lines: RUST_LOG=info / warn (uninstrumented throughput)",
                self.ratios.log_info_over_warn,
                0.95,
            ),
            Target {
                figure: "slow-path isolation (p99 with / without)".into(),
                value: self.ratios.slow_path_isolation,
                target: "<= 1.5".into(),
                met: self.ratios.slow_path_isolation <= 1.5,
            },
        ]);
        for (service, memory) in &self.memory {
            let idle = memory.idle_rss_kib as f64 / MIB;
            let peak = memory.peak_kib as f64 / MIB;
            targets.push(Target {
                figure: format!("{service} idle resident memory (MiB)"),
                value: idle,
                target: "idle <= 10 MiB".into(),
                met: idle <= 10.0,
            });
            targets.push(Target {
                figure: format!("{service} peak resident memory under load (MiB)"),
                value: peak,
                target: "under load <= 40 MiB".into(),
                met: peak <= 40.0,
            });
        }
        self.targets = targets;
    }

    /// Instructions one log line costs: (uninstrumented at info − at warn)
    /// per page ÷ lines per page.
    pub fn instructions_per_log_line(&self) -> Option<f64> {
        let counted = self.instructions.as_ref()?;
        let info = counted.total(INSTRUCTIONS_UNINSTRUMENTED)?;
        let warn = counted.total(INSTRUCTIONS_UNINSTRUMENTED_WARN)?;
        (self.log_lines.per_page > 0.0).then(|| (info - warn) / self.log_lines.per_page)
    }

    fn verdict(&self, figure_prefix: &str) -> String {
        let matching: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| t.figure.starts_with(figure_prefix))
            .collect();
        let targets = matching
            .iter()
            .map(|t| t.target.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let met = matching.iter().all(|t| t.met);
        if matching.is_empty() {
            String::new()
        } else if met {
            format!("{targets}: met")
        } else {
            format!("{targets}: **missed**")
        }
    }

    /// The results table, Markdown.
    #[allow(clippy::too_many_lines)] // one row after another
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String, String)> = Vec::new();
        let mut row = |a: &str, b: String, c: String| rows.push((a.to_owned(), b, c));
        row(
            "1. fast page, full instrumentation (front-end → business-logic → SQLite)",
            self.fast_page.cell(),
            String::new(),
        );
        row(
            "2. ceiling: bare actix-web front → back, pooled client, no instrumentation, no database",
            self.ceiling.cell(),
            String::new(),
        );
        row(
            "   fast page / ceiling, throughput",
            format!("{:.2}", self.ratios.fast_page_over_ceiling),
            self.verdict("fast page / ceiling"),
        );
        row(
            "3. database ceiling: the ceiling plus business-logic's query on SQLite",
            self.database_ceiling.cell(),
            String::new(),
        );
        row(
            "   fast page / database ceiling, throughput",
            format!("{:.2}", self.ratios.fast_page_over_database_ceiling),
            self.verdict("fast page / database ceiling, SQLite"),
        );
        row(
            "4. fast page, tracing and metrics off",
            self.fast_page_uninstrumented.cell(),
            String::new(),
        );
        row(
            "   instrumented / uninstrumented, throughput",
            format!("{:.2}", self.ratios.instrumented_over_uninstrumented),
            self.verdict("instrumented"),
        );
        row(
            "5. fast page, tracing and metrics off, RUST_LOG=warn (no per-request log lines)",
            self.fast_page_uninstrumented_warn.cell(),
            String::new(),
        );
        let per_line = [
            self.log_lines
                .cpu_us_per_line
                .map(|us| format!("≈ {us:.1} µs CPU")),
            self.log_lines
                .instructions_per_line
                .map(|i| format!("{} instructions", thousands(i))),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        row(
            "   log lines: RUST_LOG=info / warn, throughput",
            format!(
                "{:.2} ({:.1} lines per page{})",
                self.ratios.log_info_over_warn,
                self.log_lines.per_page,
                if per_line.is_empty() {
                    String::new()
                } else {
                    format!("; per line {}", per_line.join(", "))
                }
            ),
            self.verdict("log lines")
                .replace(">= 0.95", ">= 0.95 (≤ 3 µs per line)"),
        );
        match (&self.postgres, &self.postgres_skipped) {
            (Some(pg), _) => {
                row(
                    "6. PostgreSQL: fast page, full instrumentation",
                    pg.fast_page.cell(),
                    String::new(),
                );
                row(
                    "   PostgreSQL: database ceiling",
                    pg.database_ceiling.cell(),
                    String::new(),
                );
                row(
                    "   PostgreSQL: fast page / database ceiling, throughput",
                    format!("{:.2}", pg.fast_page_over_database_ceiling),
                    self.verdict("fast page / database ceiling, PostgreSQL"),
                );
                row(
                    "   PostgreSQL: fast page, tracing and metrics off",
                    pg.fast_page_uninstrumented.cell(),
                    String::new(),
                );
                row(
                    "   PostgreSQL: instrumented / uninstrumented · fast page / ceiling",
                    format!(
                        "{:.2} · {:.2}",
                        pg.instrumented_over_uninstrumented, pg.fast_page_over_ceiling
                    ),
                    String::new(),
                );
            }
            (None, why) => row(
                "6. PostgreSQL",
                format!(
                    "not measured: {}",
                    why.as_deref().unwrap_or("no PostgreSQL server")
                ),
                String::new(),
            ),
        }
        row(
            &format!(
                "7. fast page with {} slow pages in flight",
                self.settings.slow_requests
            ),
            self.fast_page_with_slow.cell(),
            String::new(),
        );
        row(
            "   slow-path isolation: fast-page p99 with / without them",
            format!("{:.2}", self.ratios.slow_path_isolation),
            self.verdict("slow-path"),
        );
        for (service, m) in &self.memory {
            row(
                &format!(
                    "8. {service} resident memory: idle (anonymous) · under load (max) · peak · after"
                ),
                format!(
                    "{:.1} ({:.1}) · {:.1} · {:.1} · {:.1} MiB",
                    m.idle_rss_kib as f64 / MIB,
                    m.idle_anon_kib as f64 / MIB,
                    m.load_rss_max_kib as f64 / MIB,
                    m.peak_kib as f64 / MIB,
                    m.after_run_rss_kib as f64 / MIB
                ),
                self.verdict(service),
            );
        }
        let per_service = |map: &BTreeMap<String, f64>, f: &dyn Fn(f64) -> String| {
            map.iter()
                .map(|(k, v)| format!("{k} {}", f(*v)))
                .collect::<Vec<_>>()
                .join(" · ")
        };
        row(
            "9. start-up: spawn to first 200 on /readyz",
            per_service(&self.startup_ms, &|ms| format_ms(ms)),
            String::new(),
        );
        let sizes: BTreeMap<String, f64> = self
            .binary_size_bytes
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64))
            .collect();
        row(
            "10. release binary size",
            per_service(&sizes, &|b| format!("{:.1} MiB", b / MIB / MIB)),
            String::new(),
        );
        match &self.instructions {
            Some(counted) => {
                for (i, setting) in counted.settings.iter().enumerate() {
                    row(
                        &format!(
                            "{}CPU work per fast page, {}: instructions, front + back = total",
                            if i == 0 { "11. " } else { "   " },
                            setting.setting
                        ),
                        format!(
                            "{} + {} = {}",
                            thousands(setting.front_per_request),
                            thousands(setting.back_per_request),
                            thousands(setting.total_per_request)
                        ),
                        String::new(),
                    );
                }
                let ratio = |a: &str, b: &str| match (counted.total(a), counted.total(b)) {
                    (Some(a), Some(b)) if a > 0.0 => format!("{:.2}", b / a),
                    _ => "n/a".to_owned(),
                };
                row(
                    "   instructions: uninstrumented / instrumented · database ceiling / fast page",
                    format!(
                        "{} · {}",
                        ratio(INSTRUCTIONS_INSTRUMENTED, INSTRUCTIONS_UNINSTRUMENTED),
                        ratio(INSTRUCTIONS_INSTRUMENTED, INSTRUCTIONS_DATABASE_CEILING)
                    ),
                    String::new(),
                );
            }
            None => row(
                "11. CPU work per fast page (instructions)",
                "not counted (--instructions; needs perf or valgrind)".to_owned(),
                String::new(),
            ),
        }
        let mut out = String::from("| figure | result | target |\n|---|---|---|\n");
        for (a, b, c) in rows {
            let _ = writeln!(out, "| {} | {b} | {c} |", a.trim_start());
        }
        out
    }

    /// How the figures were taken, one paragraph.
    pub fn conditions(&self) -> String {
        let s = &self.settings;
        let postgres = if self.postgres.is_some() {
            "SQLite, and PostgreSQL (the machine's server, a fresh database; its processes are not pinned)"
        } else {
            "SQLite"
        };
        let instructions = self.instructions.as_ref().map_or_else(String::new, |i| {
            format!(
                " Instructions: {}, both processes of a pair, {} fast pages one after another \
                 over one keep-alive connection after {} uncounted, user space only.",
                i.counter, i.requests, i.warmup
            )
        });
        format!(
            "{} connections (closed loop, keep-alive), {} round{} of {} s per figure after a {} s warm-up, \
             order {}; medians over rounds, errors summed. Load generator {}; {}. \
             Services: release builds, {postgres}, tracing at 100 % sampling exported as Zipkin to a \
             stand-in collector ({} spans received, {:.1} per request), metrics on, RUST_LOG=info, \
             text logs appended to files. Slow requests: `/slow-page?delay_ms={}`. \
             µs CPU: the servers' CPU busy time per request (pinned runs).{instructions}",
            s.concurrency,
            s.rounds,
            if s.rounds == 1 { "" } else { "s" },
            s.duration_s,
            s.warmup_s,
            s.order,
            s.load_tool,
            s.pinning,
            self.spans.received,
            self.spans.per_request,
            s.slow_delay_ms,
        )
    }

    /// `results.md`: machine, conditions, table.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        format!(
            "# Benchmark results\n\n\
             Run {} on {} ({}, {}).\n\n{}\n\n{}",
            m.date,
            m.summary(),
            m.rustc,
            if self.settings.quick {
                "quick mode: figures are indicative only"
            } else {
                "full run"
            },
            self.conditions(),
            self.table()
        )
    }
}

/// 12345.6 -> "12,346".
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(12_345.6), "12,346");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
        assert_eq!(thousands(f64::NAN), "n/a");
    }
}
