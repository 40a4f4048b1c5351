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
    /// pinned runs only. A difference of two runs: within their noise it
    /// can be zero or negative (the table then says "too small to measure").
    pub cpu_us_per_line: Option<f64>,
    /// The same from the instruction counts, when they were taken.
    pub instructions_per_line: Option<f64>,
}

/// The settings the instructions are counted for, as labelled.
pub const INSTRUCTIONS_INSTRUMENTED: &str = "instrumented";
pub const INSTRUCTIONS_UNINSTRUMENTED: &str = "uninstrumented";
pub const INSTRUCTIONS_UNINSTRUMENTED_WARN: &str = "uninstrumented, RUST_LOG=warn";
pub const INSTRUCTIONS_DATABASE_CEILING: &str = "database ceiling";
pub const INSTRUCTIONS_ZIPKIN: &str = "instrumented, Zipkin";
pub const INSTRUCTIONS_NOT_EXPORTED: &str = "instrumented, spans not exported";

/// Instructions per fast page of one setting (SQLite), by process.
#[derive(Debug, Clone, Serialize)]
pub struct InstructionFigure {
    pub setting: String,
    /// front-end (or the ceiling's front).
    pub front_per_request: f64,
    /// business-logic (or the ceiling's back with the database).
    pub back_per_request: f64,
    pub total_per_request: f64,
    /// Spans the stand-in collector received per page, both services
    /// (0 where spans are not exported).
    pub spans_per_request: f64,
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
        self.figure(setting).map(|s| s.total_per_request)
    }

    fn figure(&self, setting: &str) -> Option<&InstructionFigure> {
        self.settings.iter().find(|s| s.setting == setting)
    }

    /// What exporting costs per span with `setting`'s exporter: its page
    /// over the same page with spans made but not exported
    /// ([`INSTRUCTIONS_NOT_EXPORTED`]), divided by the spans it exported per
    /// page. `None` when either was not counted or nothing was exported.
    pub fn per_exported_span(&self, setting: &str) -> Option<f64> {
        let figure = self.figure(setting)?;
        let not_exported = self.total(INSTRUCTIONS_NOT_EXPORTED)?;
        (figure.spans_per_request > 0.0)
            .then(|| (figure.total_per_request - not_exported) / figure.spans_per_request)
    }

    /// `numerator`'s instructions per page ÷ `denominator`'s.
    pub fn ratio(&self, numerator: &str, denominator: &str) -> Option<f64> {
        let (n, d) = (self.total(numerator)?, self.total(denominator)?);
        (d > 0.0).then(|| n / d)
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

/// How a figure is held against its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    AtLeast,
    AtMost,
}

/// A target of the benchmark: which figure, compared how with what, and
/// how the table states it. The targets are data ([`GOALS`]); the table
/// finds a row's targets by their figure.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    /// The figure's name (for a per-service goal, after the service's name).
    pub figure: &'static str,
    pub comparison: Comparison,
    pub threshold: f64,
    /// The target as the table and `results.json` state it.
    pub text: &'static str,
}

impl Goal {
    /// Judges `value` of this goal's figure.
    pub fn judge(&self, value: f64) -> Target {
        self.judge_as(self.figure.to_owned(), value)
    }

    /// Judges `value` of `service`'s figure (a per-service goal).
    pub fn judge_for(&self, service: &str, value: f64) -> Target {
        self.judge_as(self.figure_for(service), value)
    }

    /// The figure's name for `service`.
    pub fn figure_for(&self, service: &str) -> String {
        format!("{service} {}", self.figure)
    }

    fn judge_as(&self, figure: String, value: f64) -> Target {
        let met = match self.comparison {
            Comparison::AtLeast => value >= self.threshold,
            Comparison::AtMost => value <= self.threshold,
        };
        Target {
            figure,
            value,
            target: self.text.to_owned(),
            met,
        }
    }
}

pub const FAST_PAGE_OVER_CEILING: Goal = Goal {
    figure: "fast page / ceiling (throughput)",
    comparison: Comparison::AtLeast,
    threshold: 0.5,
    text: ">= 0.50",
};
pub const FAST_PAGE_OVER_DATABASE_CEILING: Goal = Goal {
    figure: "fast page / database ceiling, SQLite (throughput)",
    comparison: Comparison::AtLeast,
    threshold: 0.6,
    text: ">= 0.60",
};
pub const POSTGRES_FAST_PAGE_OVER_DATABASE_CEILING: Goal = Goal {
    figure: "fast page / database ceiling, PostgreSQL (throughput)",
    comparison: Comparison::AtLeast,
    threshold: 0.6,
    text: ">= 0.60",
};
pub const INSTRUMENTED_OVER_UNINSTRUMENTED: Goal = Goal {
    figure: "instrumented / uninstrumented (throughput)",
    comparison: Comparison::AtLeast,
    threshold: 0.85,
    text: ">= 0.85",
};
pub const LOG_INFO_OVER_WARN: Goal = Goal {
    figure: "log lines: RUST_LOG=info / warn (uninstrumented throughput)",
    comparison: Comparison::AtLeast,
    threshold: 0.95,
    text: ">= 0.95 (≤ 3 µs per line)",
};
pub const SLOW_PATH_ISOLATION: Goal = Goal {
    figure: "slow-path isolation (p99 with / without)",
    comparison: Comparison::AtMost,
    threshold: 1.5,
    text: "<= 1.5",
};
/// Per service.
pub const IDLE_MEMORY: Goal = Goal {
    figure: "idle resident memory (MiB)",
    comparison: Comparison::AtMost,
    threshold: 10.0,
    text: "idle <= 10 MiB",
};
/// Per service.
pub const PEAK_MEMORY: Goal = Goal {
    figure: "peak resident memory under load (MiB)",
    comparison: Comparison::AtMost,
    threshold: 40.0,
    text: "under load <= 40 MiB",
};

/// Uninstrumented ÷ instrumented instructions per page: the throughput
/// goal's counterpart that a busy machine does not move.
pub const INSTRUMENTED_OVER_UNINSTRUMENTED_INSTRUCTIONS: Goal = Goal {
    figure: "instrumented / uninstrumented (instructions)",
    comparison: Comparison::AtLeast,
    threshold: 0.85,
    text: ">= 0.85",
};
/// The default exporter costs no more per page than the Zipkin choice.
pub const OTLP_OVER_ZIPKIN_INSTRUCTIONS: Goal = Goal {
    figure: "OTLP / Zipkin (instructions per page)",
    comparison: Comparison::AtMost,
    threshold: 1.0,
    text: "<= 1.00",
};

/// Every target, in the order `results.json` lists them.
pub const GOALS: [Goal; 10] = [
    FAST_PAGE_OVER_CEILING,
    FAST_PAGE_OVER_DATABASE_CEILING,
    POSTGRES_FAST_PAGE_OVER_DATABASE_CEILING,
    INSTRUMENTED_OVER_UNINSTRUMENTED,
    INSTRUMENTED_OVER_UNINSTRUMENTED_INSTRUCTIONS,
    OTLP_OVER_ZIPKIN_INSTRUCTIONS,
    LOG_INFO_OVER_WARN,
    SLOW_PATH_ISOLATION,
    IDLE_MEMORY,
    PEAK_MEMORY,
];

/// One target and whether this run met it.
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
    /// Judges the figures against [`GOALS`].
    pub fn judge(&mut self) {
        let mut targets = vec![
            FAST_PAGE_OVER_CEILING.judge(self.ratios.fast_page_over_ceiling),
            FAST_PAGE_OVER_DATABASE_CEILING.judge(self.ratios.fast_page_over_database_ceiling),
        ];
        if let Some(pg) = &self.postgres {
            targets.push(
                POSTGRES_FAST_PAGE_OVER_DATABASE_CEILING.judge(pg.fast_page_over_database_ceiling),
            );
        }
        targets.extend([
            INSTRUMENTED_OVER_UNINSTRUMENTED.judge(self.ratios.instrumented_over_uninstrumented),
            LOG_INFO_OVER_WARN.judge(self.ratios.log_info_over_warn),
            SLOW_PATH_ISOLATION.judge(self.ratios.slow_path_isolation),
        ]);
        if let Some(counted) = &self.instructions {
            if let Some(r) = counted.ratio(INSTRUCTIONS_UNINSTRUMENTED, INSTRUCTIONS_INSTRUMENTED) {
                targets.push(INSTRUMENTED_OVER_UNINSTRUMENTED_INSTRUCTIONS.judge(r));
            }
            if let Some(r) = counted.ratio(INSTRUCTIONS_INSTRUMENTED, INSTRUCTIONS_ZIPKIN) {
                targets.push(OTLP_OVER_ZIPKIN_INSTRUCTIONS.judge(r));
            }
        }
        for (service, memory) in &self.memory {
            targets.push(IDLE_MEMORY.judge_for(service, memory.idle_rss_kib as f64 / MIB));
            targets.push(PEAK_MEMORY.judge_for(service, memory.peak_kib as f64 / MIB));
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

    /// The target column of a row that shows `figures`: their targets and
    /// whether all were met; empty when none was judged.
    fn verdict(&self, figures: &[&str]) -> String {
        let matching: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| figures.contains(&t.figure.as_str()))
            .collect();
        if matching.is_empty() {
            return String::new();
        }
        let targets = matching
            .iter()
            .map(|t| t.target.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if matching.iter().all(|t| t.met) {
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
            self.verdict(&[FAST_PAGE_OVER_CEILING.figure]),
        );
        row(
            "3. database ceiling: the ceiling plus business-logic's query on SQLite",
            self.database_ceiling.cell(),
            String::new(),
        );
        row(
            "   fast page / database ceiling, throughput",
            format!("{:.2}", self.ratios.fast_page_over_database_ceiling),
            self.verdict(&[FAST_PAGE_OVER_DATABASE_CEILING.figure]),
        );
        row(
            "4. fast page, tracing and metrics off",
            self.fast_page_uninstrumented.cell(),
            String::new(),
        );
        row(
            "   instrumented / uninstrumented, throughput",
            format!("{:.2}", self.ratios.instrumented_over_uninstrumented),
            self.verdict(&[INSTRUMENTED_OVER_UNINSTRUMENTED.figure]),
        );
        row(
            "5. fast page, tracing and metrics off, RUST_LOG=warn (no per-request log lines)",
            self.fast_page_uninstrumented_warn.cell(),
            String::new(),
        );
        let per_line = [
            self.log_lines.cpu_us_per_line.map(per_line_cpu),
            self.log_lines
                .instructions_per_line
                .map(per_line_instructions),
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
            self.verdict(&[LOG_INFO_OVER_WARN.figure]),
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
                    self.verdict(&[POSTGRES_FAST_PAGE_OVER_DATABASE_CEILING.figure]),
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
            self.verdict(&[SLOW_PATH_ISOLATION.figure]),
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
                self.verdict(&[
                    &IDLE_MEMORY.figure_for(service),
                    &PEAK_MEMORY.figure_for(service),
                ]),
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
                let ratio = |a: &str, b: &str| {
                    counted
                        .ratio(a, b)
                        .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}"))
                };
                row(
                    "   instructions: uninstrumented / instrumented · database ceiling / fast page",
                    format!(
                        "{} · {}",
                        ratio(INSTRUCTIONS_UNINSTRUMENTED, INSTRUCTIONS_INSTRUMENTED),
                        ratio(INSTRUCTIONS_DATABASE_CEILING, INSTRUCTIONS_INSTRUMENTED)
                    ),
                    self.verdict(&[INSTRUMENTED_OVER_UNINSTRUMENTED_INSTRUCTIONS.figure]),
                );
                row(
                    "   instructions per page: OTLP (the default) / Zipkin",
                    ratio(INSTRUCTIONS_INSTRUMENTED, INSTRUCTIONS_ZIPKIN),
                    self.verdict(&[OTLP_OVER_ZIPKIN_INSTRUCTIONS.figure]),
                );
                let per_span = |setting: &str| {
                    let spans = counted.figure(setting).map_or(0.0, |f| f.spans_per_request);
                    counted.per_exported_span(setting).map_or_else(
                        || "n/a".to_owned(),
                        |i| format!("{} ({spans:.1} spans per page)", thousands(i)),
                    )
                };
                row(
                    "   instructions per exported span (page over spans not exported, ÷ spans): OTLP · Zipkin · none",
                    format!(
                        "{} · {} · 0 (nothing sent)",
                        per_span(INSTRUCTIONS_INSTRUMENTED),
                        per_span(INSTRUCTIONS_ZIPKIN)
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
             Services: release builds, {postgres}, tracing at 100 % sampling exported over OTLP/HTTP (the default) to a \
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

/// One log line's CPU time as the table states it: `≈ 1.2 µs CPU`. The
/// figure is a difference of two runs (info − warn), so noise can make it
/// zero or negative, which no line costs: then it says the cost was too
/// small to measure, rather than print a figure that cannot be.
pub fn per_line_cpu(us: f64) -> String {
    if us.is_finite() && us >= 0.05 {
        format!("≈ {us:.1} µs CPU")
    } else {
        "CPU too small to measure (info and warn runs within noise)".to_owned()
    }
}

/// One log line's instructions, as [`per_line_cpu`] states its CPU time.
pub fn per_line_instructions(instructions: f64) -> String {
    if instructions.is_finite() && instructions >= 0.5 {
        format!("{} instructions", thousands(instructions))
    } else {
        "instructions too small to measure".to_owned()
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
    fn a_log_line_never_costs_less_than_nothing() {
        assert_eq!(per_line_cpu(1.04), "≈ 1.0 µs CPU");
        assert_eq!(per_line_cpu(0.05), "≈ 0.1 µs CPU");
        for noise in [-1.0, 0.0, 0.04, f64::NAN] {
            assert_eq!(
                per_line_cpu(noise),
                "CPU too small to measure (info and warn runs within noise)",
                "{noise}"
            );
        }
        assert_eq!(per_line_instructions(6_100.4), "6,100 instructions");
        assert_eq!(
            per_line_instructions(-250.0),
            "instructions too small to measure"
        );
    }

    #[test]
    fn every_goal_states_its_threshold() {
        for goal in GOALS {
            let sign = match goal.comparison {
                Comparison::AtLeast => ">=",
                Comparison::AtMost => "<=",
            };
            let (_, stated) = goal.text.split_once(sign).unwrap();
            let stated: f64 = stated.split_whitespace().next().unwrap().parse().unwrap();
            assert_eq!(stated, goal.threshold, "{goal:?}");
        }
    }

    #[test]
    fn goals_judge_at_their_threshold() {
        assert!(FAST_PAGE_OVER_CEILING.judge(0.5).met);
        assert!(!FAST_PAGE_OVER_CEILING.judge(0.49).met);
        assert!(SLOW_PATH_ISOLATION.judge(1.5).met);
        assert!(!SLOW_PATH_ISOLATION.judge(1.51).met);
        let idle = IDLE_MEMORY.judge_for("front-end", 9.5);
        assert_eq!(idle.figure, "front-end idle resident memory (MiB)");
        assert_eq!(idle.target, "idle <= 10 MiB");
        assert!(idle.met);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(12_345.6), "12,346");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
        assert_eq!(thousands(f64::NAN), "n/a");
    }
}
