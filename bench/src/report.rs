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
            requests_per_s: pick(|r| r.requests_per_s),
            p50_ms: pick(|r| r.p50_ms),
            p99_ms: pick(|r| r.p99_ms),
            errors: runs.iter().map(|r| r.errors).sum(),
            requests: runs.iter().map(|r| r.requests).sum(),
            server_cpu_us: (!cpu.is_empty()).then(|| crate::median(cpu)),
            runs,
        }
    }

    /// The figure as its row states it.
    pub fn cell(&self) -> String {
        let cpu = self.server_cpu_us.map(|us| format!(" · {us:.0} µs CPU"));
        let [p50, p99] = [self.p50_ms, self.p99_ms].map(format_ms);
        let (rps, errors) = (thousands(self.requests_per_s), self.errors);
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
    /// The fewest slow pages, in any round, still unanswered when the measured run ended.
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
    /// The table, Markdown.
    pub fn table(&self) -> String {
        let figure = |label| self.figures.get(label);
        let cell = |label| figure(label).map_or(String::new(), Figure::cell);
        let rps = |label| figure(label).map_or(f64::NAN, |f| f.requests_per_s);
        let is = |title, label| row(title, cell(label), "");
        // The throughput of `a` over `b`'s, against `goal`.
        let ratio = |title, a, b, goal| {
            let ratio = rps(a) / rps(b);
            row(title, two(ratio), verdict(&[(goal, ratio)]))
        };
        #[rustfmt::skip]
        let mut rows = vec![
            is("1. fast page, full instrumentation (front-end → business-logic → SQLite)", FAST),
            is("2. ceiling: bare actix-web front → back, pooled client, no instrumentation, no database", CEILING),
            ratio("fast page / ceiling, throughput", FAST, CEILING, ">= 0.50"),
            is("3. database ceiling: the ceiling plus business-logic's query on SQLite", DB_CEILING),
            ratio("fast page / database ceiling, throughput", FAST, DB_CEILING, ">= 0.60"),
            is("4. fast page, tracing and metrics off", OFF),
            ratio("instrumented / uninstrumented, throughput", FAST, OFF, ">= 0.85"),
            is("5. fast page, tracing and metrics off, RUST_LOG=warn (no per-request log lines)", OFF_WARN),
        ];
        // Throughput at RUST_LOG=info over warn. A line costs (info − warn, per page) ÷ lines
        // per page; two runs' noise can make that zero or less: "too small to measure".
        let lines = self.log_lines_per_page;
        let cpu = |label| figure(label).and_then(|f| f.server_cpu_us);
        let mut costs = Vec::new();
        if let (Some(info), Some(warn)) = (cpu(OFF), cpu(OFF_WARN)) {
            costs.push(match (info - warn) / lines {
                us if us >= 0.05 => format!("≈ {us:.1} µs CPU"),
                _ => "CPU too small to measure (info and warn runs within noise)".to_owned(),
            });
        }
        let count = |label| self.instructions.iter().find(|c| c.setting == label);
        let n = |label| count(label).map_or(f64::NAN, |c| c.front + c.back);
        if !self.instructions.is_empty() {
            let warn = n("uninstrumented, RUST_LOG=warn");
            costs.push(match (n("uninstrumented") - warn) / lines {
                n if n >= 0.5 => format!("{} instructions", thousands(n)),
                _ => "instructions too small to measure".to_owned(),
            });
        }
        let costs = costs.join(", ");
        let costs = (!costs.is_empty()).then(|| format!("; per line {costs}"));
        let info_warn = rps(OFF) / rps(OFF_WARN);
        let (ratio_text, costs) = (two(info_warn), costs.unwrap_or_default());
        let result = format!("{ratio_text} ({lines:.1} lines per page{costs})");
        let title = "log lines: RUST_LOG=info / warn, throughput";
        let target = verdict(&[(">= 0.95 (≤ 3 µs per line)", info_warn)]);
        rows.push(row(title, result, target));
        if figure(PG_FAST).is_some() {
            #[rustfmt::skip]
            rows.extend([
                is("6. PostgreSQL: fast page, full instrumentation", PG_FAST),
                is("PostgreSQL: database ceiling", PG_DB_CEILING),
                ratio("PostgreSQL: fast page / database ceiling, throughput", PG_FAST, PG_DB_CEILING, ">= 0.60"),
                is("PostgreSQL: fast page, tracing and metrics off", PG_OFF),
            ]);
            // PostgreSQL's fast page over its uninstrumented twin and over the ceiling.
            let [off, ceiling] = [PG_OFF, CEILING].map(|b| two(rps(PG_FAST) / rps(b)));
            let title = "PostgreSQL: instrumented / uninstrumented · fast page / ceiling";
            rows.push(row(title, format!("{off} · {ceiling}"), ""));
        } else {
            let why = self.postgres_skipped.as_deref();
            let why = format!("not measured: {}", why.unwrap_or("no PostgreSQL server"));
            rows.push(row("6. PostgreSQL", why, ""));
        }
        let title = format!("7. fast page with {} slow pages in flight", self.slow_pages);
        rows.push(row(title, cell(WITH_SLOW), ""));
        // The fast page's p99 with the slow pages in flight over its p99 without.
        let p99 = |label| figure(label).map_or(f64::NAN, |f| f.p99_ms);
        let isolation = p99(WITH_SLOW) / p99(FAST);
        let title = "slow-path isolation: fast-page p99 with / without them";
        let target = verdict(&[("<= 1.5", isolation)]);
        rows.push(row(title, two(isolation), target));
        let mib = |kib: u64| kib as f64 / 1024.0;
        let title = "resident memory: idle (anonymous) · under load (max) · peak · after";
        for (service, m) in &self.memory {
            let [idle, anon, load] = [m.idle_kib, m.idle_anon_kib, m.load_max_kib].map(mib);
            let [peak, after] = [m.peak_kib, m.after_kib].map(mib);
            let result = format!("{idle:.1} ({anon:.1}) · {load:.1} · {peak:.1} · {after:.1} MiB");
            let target = verdict(&[("idle <= 10 MiB", idle), ("under load <= 40 MiB", peak)]);
            rows.push(row(format!("8. {service} {title}"), result, target));
        }
        let startup = |(k, &ms): (&String, &f64)| format!("{k} {}", format_ms(ms));
        let startup: Vec<_> = self.startup_ms.iter().map(startup).collect();
        let title = "9. start-up: spawn to first 200 on /readyz";
        rows.push(row(title, startup.join(" · "), ""));
        let size = |(k, &b): (&String, &u64)| format!("{k} {:.1} MiB", mib(b) / 1024.0);
        let sizes: Vec<_> = self.binary_size_bytes.iter().map(size).collect();
        rows.push(row("10. release binary size", sizes.join(" · "), ""));
        if self.instructions.is_empty() {
            let why = "not counted (--instructions; needs valgrind)";
            rows.push(row("11. CPU work per fast page (instructions)", why, ""));
            return render(&rows);
        }
        for (i, c) in self.instructions.iter().enumerate() {
            let number = if i == 0 { "11. " } else { "" };
            let setting = &c.setting;
            let title = format!(
                "{number}CPU work per fast page, {setting}: instructions, front + back = total"
            );
            let [front, back, total] = [c.front, c.back, c.front + c.back].map(thousands);
            rows.push(row(title, format!("{front} + {back} = {total}"), ""));
        }
        // Each setting's page over the instrumented fast page's.
        let [off, ceiling] =
            ["uninstrumented", "database ceiling"].map(|s| n(s) / n("instrumented"));
        let title = "instructions: uninstrumented / instrumented · database ceiling / fast page";
        let result = format!("{} · {}", two(off), two(ceiling));
        rows.push(row(title, result, verdict(&[(">= 0.85", off)])));
        // The default exporter's page over Zipkin's.
        let otlp = n("instrumented") / n("instrumented, Zipkin");
        let title = "instructions per page: OTLP (the default) / Zipkin";
        rows.push(row(title, two(otlp), verdict(&[("<= 1.00", otlp)])));
        // (A setting's page − the page whose spans are made but not exported) ÷ spans exported.
        let per_span = |label| {
            let spans = count(label).map_or(0.0, |c| c.spans);
            let per = (n(label) - n("instrumented, spans not exported")) / spans;
            format!("{} ({spans:.1} spans per page)", thousands(per))
        };
        let [otlp, zipkin] = ["instrumented", "instrumented, Zipkin"].map(per_span);
        let title = "instructions per exported span (page over spans not exported, ÷ spans): OTLP · Zipkin · none";
        let result = format!("{otlp} · {zipkin} · 0 (nothing sent)");
        rows.push(row(title, result, ""));
        render(&rows)
    }

    /// `results.md`: machine, conditions, table.
    pub fn markdown(&self, table: &str) -> String {
        let mode = match self.quick {
            true => "quick mode: figures are indicative only",
            false => "full run",
        };
        let (date, machine, rustc) = (&self.date, &self.machine, &self.rustc);
        let run = format!("Run {date} on {machine} ({rustc}, {mode}).");
        let conditions = &self.conditions;
        format!("# Benchmark results\n\n{run}\n\n{conditions}\n\n{table}")
    }
}

/// A table row: title, result, target (empty when there is none).
fn row(title: impl ToString, result: impl ToString, target: impl ToString) -> [String; 3] {
    [title.to_string(), result.to_string(), target.to_string()]
}

/// The rows as a Markdown table.
fn render(rows: &[[String; 3]]) -> String {
    let line = |[t, r, g]: &[String; 3]| format!("| {t} | {r} | {g} |\n");
    "| figure | result | target |\n|---|---|---|\n".to_owned()
        + &rows.iter().map(line).collect::<String>()
}

/// The target column of a row: each target as the table states it
/// (`>= 0.60`, `idle <= 10 MiB`; the threshold is read from that text, so
/// the two cannot disagree) and whether all were met.
fn verdict(checks: &[(&str, f64)]) -> String {
    let met = checks.iter().all(|&(goal, value)| {
        let mut words = goal.split(' ').skip_while(|w| !w.ends_with('='));
        match (words.next(), words.next().map(str::parse)) {
            (Some(">="), Some(Ok(threshold))) => value >= threshold,
            (Some("<="), Some(Ok(threshold))) => value <= threshold,
            _ => false,
        }
    });
    let goals: Vec<&str> = checks.iter().map(|&(goal, _)| goal).collect();
    let met = if met { "met" } else { "**missed**" };
    format!("{}: {met}", goals.join(", "))
}

/// A ratio as the table states it: two decimals, "n/a" when a side is missing.
fn two(value: f64) -> String {
    match value.is_finite() {
        true => format!("{value:.2}"),
        false => "n/a".to_owned(),
    }
}

/// 12345.6 -> "12,346".
fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let digits = format!("{:.0}", value.max(0.0)).into_bytes();
    let groups = digits.rchunks(3).rev().map(String::from_utf8_lossy);
    groups.collect::<Vec<_>>().join(",")
}

/// A duration in milliseconds for people: `0.42 ms`, `12.3 ms`, `250 ms`, `3.01 s`.
fn format_ms(ms: f64) -> String {
    match ms {
        ms if ms.is_nan() => "n/a".to_owned(),
        ms if ms >= 1000.0 => format!("{:.2} s", ms / 1000.0),
        ms if ms >= 100.0 => format!("{ms:.0} ms"),
        ms if ms >= 10.0 => format!("{ms:.1} ms"),
        ms => format!("{ms:.2} ms"),
    }
}
