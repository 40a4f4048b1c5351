//! The benchmark's results and its one table (Markdown, readable in a
//! terminal), with the ratios the targets are set on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::instructions::Count;
pub use crate::load::Run;

/// The load figures, by the name of the configuration under load.
pub const FAST: &str = "fast page, instrumented";
pub const CEILING: &str = "ceiling";
pub const DB_CEILING: &str = "database ceiling, SQLite";
pub const OFF: &str = "fast page, uninstrumented";
pub const OFF_WARN: &str = "fast page, uninstrumented, RUST_LOG=warn";
pub const WITH_SLOW: &str = "fast page, instrumented, slow pages in flight";
pub const PG_FAST: &str = "fast page, instrumented, PostgreSQL";
pub const PG_OFF: &str = "fast page, uninstrumented, PostgreSQL";
pub const PG_DB_CEILING: &str = "database ceiling, PostgreSQL";

/// A load figure: medians over the rounds, errors and requests summed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub requests: u64,
    pub server_cpu_us: Option<f64>,
    #[serde(default)]
    pub runs: Vec<Run>,
}

impl Figure {
    pub fn from_runs(runs: Vec<Run>) -> Self {
        let pick = |f: fn(&Run) -> f64| crate::median(runs.iter().map(f));
        let cpu: Vec<f64> = runs.iter().filter_map(|r| r.server_cpu_us).collect();
        Self {
            requests_per_s: pick(|s| s.requests_per_s),
            p50_ms: pick(|s| s.p50_ms),
            p99_ms: pick(|s| s.p99_ms),
            errors: runs.iter().map(|r| r.errors).sum(),
            requests: runs.iter().map(|r| r.requests).sum(),
            server_cpu_us: (!cpu.is_empty()).then(|| crate::median(cpu)),
            runs,
        }
    }

    fn cell(&self) -> String {
        let cpu = self.server_cpu_us.map(|us| format!(" · {us:.0} µs CPU"));
        let (rps, errors) = (thousands(self.requests_per_s), self.errors);
        let (p50, p99) = (format_ms(self.p50_ms), format_ms(self.p99_ms));
        let cpu = cpu.unwrap_or_default();
        format!("{rps} req/s · p50 {p50} · p99 {p99} · {errors} errors{cpu}")
    }
}

/// Resident memory of one service, KiB.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Ready, one request served, a second to settle.
    pub idle_kib: u64,
    /// Its anonymous part (heap, stacks; the rest is mostly the binary's code).
    pub idle_anon_kib: u64,
    /// The kernel's high-water mark since the load began (`VmHWM`, reset at idle).
    pub load_max_kib: u64,
    /// The high-water mark over the whole benchmark.
    pub peak_kib: u64,
    /// A second after the last run.
    pub after_kib: u64,
}

/// The target column of a row: each target as the table states it
/// (`>= 0.60`, `idle <= 10 MiB`; the threshold is read from that text, so
/// the two cannot disagree) and whether all were met.
fn verdict(checks: &[(&str, f64)]) -> String {
    let met = checks.iter().all(|(goal, value)| {
        let (relation, rest) = goal.split_at(goal.find("= ").map_or(0, |i| i + 2));
        let threshold = rest.split(' ').next().and_then(|t| t.parse().ok());
        let threshold: f64 = threshold.unwrap_or(f64::NAN);
        match relation.ends_with(">= ") {
            true => *value >= threshold,
            false => *value <= threshold,
        }
    });
    let texts: Vec<&str> = checks.iter().map(|(goal, _)| *goal).collect();
    let met = if met { "met" } else { "**missed**" };
    format!("{}: {met}", texts.join(", "))
}

/// What a load row of the table shows: a figure, or a throughput ratio
/// (the first figure's over the second's) and its target, if any.
#[derive(Debug, Clone, Copy)]
enum Shows {
    Figure(&'static str),
    Ratio(&'static str, &'static str, &'static str),
}
use Shows::{Figure as Is, Ratio};

#[rustfmt::skip]
const SQLITE_ROWS: [(&str, Shows); 8] = [
    ("1. fast page, full instrumentation (front-end → business-logic → SQLite)", Is(FAST)),
    ("2. ceiling: bare actix-web front → back, pooled client, no instrumentation, no database", Is(CEILING)),
    ("fast page / ceiling, throughput", Ratio(FAST, CEILING, ">= 0.50")),
    ("3. database ceiling: the ceiling plus business-logic's query on SQLite", Is(DB_CEILING)),
    ("fast page / database ceiling, throughput", Ratio(FAST, DB_CEILING, ">= 0.60")),
    ("4. fast page, tracing and metrics off", Is(OFF)),
    ("instrumented / uninstrumented, throughput", Ratio(FAST, OFF, ">= 0.85")),
    ("5. fast page, tracing and metrics off, RUST_LOG=warn (no per-request log lines)", Is(OFF_WARN)),
];

#[rustfmt::skip]
const POSTGRES_ROWS: [(&str, Shows); 4] = [
    ("6. PostgreSQL: fast page, full instrumentation", Is(PG_FAST)),
    ("PostgreSQL: database ceiling", Is(PG_DB_CEILING)),
    ("PostgreSQL: fast page / database ceiling, throughput", Ratio(PG_FAST, PG_DB_CEILING, ">= 0.60")),
    ("PostgreSQL: fast page, tracing and metrics off", Is(PG_OFF)),
];

/// Everything the benchmark measured (`results.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Results {
    /// "AMD EPYC, 2 CPUs, 24 GiB RAM, Linux 6.18"
    pub machine: String,
    pub date: String,
    pub rustc: String,
    pub quick: bool,
    /// How the figures were taken, one paragraph.
    pub conditions: String,
    pub figures: BTreeMap<String, Figure>,
    /// Why the PostgreSQL figures are missing, when they are.
    pub postgres_skipped: Option<String>,
    /// Lines both services print per fast page at `RUST_LOG=info`.
    pub log_lines_per_page: f64,
    pub slow_pages: u32,
    /// The fewest slow pages, in any round, held in business-logic through the measured run.
    pub slow_pages_held_min: u64,
    pub memory: BTreeMap<String, Memory>,
    /// Median time from spawn to the first 200 on `/readyz`.
    pub startup_ms: BTreeMap<String, f64>,
    pub binary_size_bytes: BTreeMap<String, u64>,
    pub spans_received: u64,
    pub rejected_batches: u64,
    /// Instructions per fast page, by setting (empty when not counted).
    pub instructions: Vec<Count>,
}

impl Results {
    fn rps(&self, label: &str) -> f64 {
        self.figures
            .get(label)
            .map_or(f64::NAN, |f| f.requests_per_s)
    }

    /// Instructions per page of the setting labelled `label`: front + back, and spans.
    fn instructions(&self, label: &str) -> (f64, f64) {
        let count = self.instructions.iter().find(|c| c.setting == label);
        count.map_or((f64::NAN, 0.0), |c| (c.front + c.back, c.spans))
    }

    /// A load row's result and target.
    fn shown(&self, shows: Shows) -> [String; 2] {
        match shows {
            Is(label) => untargeted(self.figures.get(label).map(Figure::cell)),
            Ratio(a, b, goal) => {
                let ratio = self.rps(a) / self.rps(b);
                let met = (!goal.is_empty()).then(|| verdict(&[(goal, ratio)]));
                [two(ratio), met.unwrap_or_default()]
            }
        }
    }

    /// The table, Markdown.
    pub fn table(&self) -> String {
        let load = |&(title, shows): &(&str, Shows)| row(title, self.shown(shows));
        let mut rows: Vec<[String; 3]> = SQLITE_ROWS.iter().map(load).collect();
        let title = "log lines: RUST_LOG=info / warn, throughput";
        rows.push(row(title, self.log_lines()));
        if self.figures.contains_key(PG_FAST) {
            rows.extend(POSTGRES_ROWS.iter().map(load));
            let [off, ceiling] = [PG_OFF, CEILING].map(|b| two(self.rps(PG_FAST) / self.rps(b)));
            let title = "PostgreSQL: instrumented / uninstrumented · fast page / ceiling";
            rows.push(row(title, untargeted(Some(format!("{off} · {ceiling}")))));
        } else {
            let why = self.postgres_skipped.as_deref();
            let why = format!("not measured: {}", why.unwrap_or("no PostgreSQL server"));
            rows.push(row("6. PostgreSQL", untargeted(Some(why))));
        }
        let title = format!("7. fast page with {} slow pages in flight", self.slow_pages);
        rows.push(row(title, self.shown(Is(WITH_SLOW))));
        let p99 = |label| self.figures.get(label).map_or(f64::NAN, |f| f.p99_ms);
        let isolation = p99(WITH_SLOW) / p99(FAST);
        let title = "slow-path isolation: fast-page p99 with / without them";
        rows.push(row(
            title,
            [two(isolation), verdict(&[("<= 1.5", isolation)])],
        ));
        for (service, m) in &self.memory {
            let kib = [
                m.idle_kib,
                m.idle_anon_kib,
                m.load_max_kib,
                m.peak_kib,
                m.after_kib,
            ];
            let [idle, anon, load, peak, after] = kib.map(|kib| kib as f64 / 1024.0);
            let mib = format!("{idle:.1} ({anon:.1}) · {load:.1} · {peak:.1} · {after:.1} MiB");
            let goals = [("idle <= 10 MiB", idle), ("under load <= 40 MiB", peak)];
            let title = "resident memory: idle (anonymous) · under load (max) · peak · after";
            rows.push(row(format!("8. {service} {title}"), [mib, verdict(&goals)]));
        }
        let joined = |items: Vec<String>| untargeted(Some(items.join(" · ")));
        let startup = self.startup_ms.iter();
        let startup = startup.map(|(k, ms)| format!("{k} {}", format_ms(*ms)));
        let title = "9. start-up: spawn to first 200 on /readyz";
        rows.push(row(title, joined(startup.collect())));
        let sizes = self.binary_size_bytes.iter();
        let sizes = sizes.map(|(k, b)| format!("{k} {:.1} MiB", *b as f64 / 1024.0 / 1024.0));
        rows.push(row("10. release binary size", joined(sizes.collect())));
        rows.extend(self.instruction_rows());
        let lines = rows
            .iter()
            .map(|[t, r, g]| format!("| {t} | {r} | {g} |\n"));
        "| figure | result | target |\n|---|---|---|\n".to_owned() + &lines.collect::<String>()
    }

    /// Throughput at `RUST_LOG=info` over `warn`, and one line's cost:
    /// (per page at info − at warn) ÷ lines per page, in the servers' CPU
    /// time and in instructions. A difference of two runs: within their
    /// noise it can come out at zero or below, which no line costs; the
    /// table then says it was too small to measure.
    fn log_lines(&self) -> [String; 2] {
        let lines = self.log_lines_per_page;
        let cpu = |label| self.figures.get(label).and_then(|f| f.server_cpu_us);
        let mut per_line = Vec::new();
        if let (Some(info), Some(warn)) = (cpu(OFF), cpu(OFF_WARN)) {
            per_line.push(match (info - warn) / lines {
                us if us >= 0.05 => format!("≈ {us:.1} µs CPU"),
                _ => "CPU too small to measure (info and warn runs within noise)".to_owned(),
            });
        }
        if !self.instructions.is_empty() {
            let n = |label| self.instructions(label).0;
            per_line.push(
                match (n("uninstrumented") - n("uninstrumented, RUST_LOG=warn")) / lines {
                    n if n >= 0.5 => format!("{} instructions", thousands(n)),
                    _ => "instructions too small to measure".to_owned(),
                },
            );
        }
        let per_line =
            (!per_line.is_empty()).then(|| format!("; per line {}", per_line.join(", ")));
        let ratio = self.rps(OFF) / self.rps(OFF_WARN);
        let (ratio_text, per_line) = (two(ratio), per_line.unwrap_or_default());
        let result = format!("{ratio_text} ({lines:.1} lines per page{per_line})");
        [result, verdict(&[(">= 0.95 (≤ 3 µs per line)", ratio)])]
    }

    /// Figure 11: instructions per page by setting, and what follows from them.
    fn instruction_rows(&self) -> Vec<[String; 3]> {
        if self.instructions.is_empty() {
            let why = Some("not counted (--instructions; needs valgrind)".to_owned());
            return vec![row(
                "11. CPU work per fast page (instructions)",
                untargeted(why),
            )];
        }
        let counted = self.instructions.iter().enumerate().map(|(i, c)| {
            let number = if i == 0 { "11. " } else { "" };
            let setting = &c.setting;
            let title = format!(
                "{number}CPU work per fast page, {setting}: instructions, front + back = total"
            );
            let [front, back, total] = [c.front, c.back, c.front + c.back].map(thousands);
            row(
                title,
                untargeted(Some(format!("{front} + {back} = {total}"))),
            )
        });
        let mut rows: Vec<[String; 3]> = counted.collect();
        let n = |label| self.instructions(label).0;
        let off = n("uninstrumented") / n("instrumented");
        let ceiling = two(n("database ceiling") / n("instrumented"));
        let title = "instructions: uninstrumented / instrumented · database ceiling / fast page";
        let result = format!("{} · {ceiling}", two(off));
        rows.push(row(title, [result, verdict(&[(">= 0.85", off)])]));
        let otlp_over_zipkin = n("instrumented") / n("instrumented, Zipkin");
        let title = "instructions per page: OTLP (the default) / Zipkin";
        let met = verdict(&[("<= 1.00", otlp_over_zipkin)]);
        rows.push(row(title, [two(otlp_over_zipkin), met]));
        // A setting's page over the page whose spans are made but not exported, ÷ the spans it exported.
        let per_span = |label| {
            let (page, spans) = self.instructions(label);
            let per = (page - n("instrumented, spans not exported")) / spans;
            format!("{} ({spans:.1} spans per page)", thousands(per))
        };
        let [otlp, zipkin] = ["instrumented", "instrumented, Zipkin"].map(per_span);
        let title = "instructions per exported span (page over spans not exported, ÷ spans): OTLP · Zipkin · none";
        rows.push(row(
            title,
            untargeted(Some(format!("{otlp} · {zipkin} · 0 (nothing sent)"))),
        ));
        rows
    }

    /// `results.md`: machine, conditions, table.
    pub fn markdown(&self, table: &str) -> String {
        let mode = match self.quick {
            true => "quick mode: figures are indicative only",
            false => "full run",
        };
        let (date, machine, rustc) = (&self.date, &self.machine, &self.rustc);
        let conditions = &self.conditions;
        format!(
            "# Benchmark results\n\nRun {date} on {machine} ({rustc}, {mode}).\n\n{conditions}\n\n{table}"
        )
    }
}

/// A table row: title, result, target.
fn row(title: impl Into<String>, [result, target]: [String; 2]) -> [String; 3] {
    [title.into(), result, target]
}

/// A result without a target (empty when there is none).
fn untargeted(result: Option<String>) -> [String; 2] {
    [result.unwrap_or_default(), String::new()]
}

/// A ratio as the table states it: two decimals, "n/a" when a side is missing.
fn two(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}")
    } else {
        "n/a".to_owned()
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

/// A duration in milliseconds for people: `0.42 ms`, `12.3 ms`, `250 ms`, `3.01 s`.
pub fn format_ms(ms: f64) -> String {
    match ms {
        ms if ms.is_nan() => "n/a".to_owned(),
        ms if ms >= 1000.0 => format!("{:.2} s", ms / 1000.0),
        ms if ms >= 100.0 => format!("{ms:.0} ms"),
        ms if ms >= 10.0 => format!("{ms:.1} ms"),
        ms => format!("{ms:.2} ms"),
    }
}
