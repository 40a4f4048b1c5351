//! The report writer on recorded load-generator output: oha's JSON and wrk's
//! report with the bench's `done` hook are read into the same figures, and
//! the table states every figure, ratio and target from them.
//!
//! Fixtures, recorded on loopback against `ceiling front` (debug build)
//! whose back was stopped half-way, so they hold 200s, 502s and deadline
//! aborts: `fixtures/oha-1.16.0.json` (oha 1.16.0 from crates.io, `oha
//! --no-tui --output-format json -z 3s -c 4 -t 30s URL`) and
//! `fixtures/wrk-4.1.0-hook.txt` (Debian's wrk 4.1.0-3+b2, `wrk -t 1 -c 4 -d
//! 3s --timeout 30s -s <the hook in bench/src/load.rs> URL`).
#![allow(clippy::unwrap_used)]

use bench::instructions::Count;
use bench::load::read_oha_json;
use bench::report::*;

#[test]
fn oha_json_is_read_without_the_deadline_aborts() {
    let stats = read_oha_json(include_str!("fixtures/oha-1.16.0.json")).unwrap();
    // 2004 answered 200 and 4007 502 (the back stopped); 4 "aborted due to
    // deadline" are the end of the run, not the server's doing.
    assert_eq!((stats.requests, stats.errors), (2004 + 4007, 4007));
    assert_eq!((stats.p50_ms, stats.p99_ms), (0.856, 17.009));
    assert!((stats.requests_per_s - 6011.0 / 3.00902372).abs() < 1e-9);
}

#[test]
fn wrk_with_the_hook_reads_like_oha() {
    let stats = read_oha_json(include_str!("fixtures/wrk-4.1.0-hook.txt")).unwrap();
    assert_eq!((stats.requests, stats.errors), (3496, 1765));
    assert_eq!((stats.p50_ms, stats.p99_ms), (2.307, 44.599));
    assert!((stats.requests_per_s - 3496.0 / 3.107122).abs() < 1e-9);
}

/// A run of `rps` pages a second, p99 `p99_ms`, `cpu_us` of the servers' CPU a page.
fn figure(rps: f64, p99_ms: f64, cpu_us: f64) -> Figure {
    Figure::from_runs(vec![Run {
        requests: 10 * rps as u64,
        requests_per_s: rps,
        p50_ms: p99_ms / 2.0,
        p99_ms,
        errors: 0,
        server_cpu_pct: Some(90.0),
        load_cpu_pct: Some(30.0),
        server_cpu_us: Some(cpu_us),
    }])
}

fn count(setting: &str, front: f64, back: f64, spans: f64) -> Count {
    let setting = setting.to_owned();
    Count {
        setting,
        front,
        back,
        spans,
    }
}

fn memory([idle_kib, idle_anon_kib, load_max_kib, peak_kib, after_kib]: [u64; 5]) -> Memory {
    Memory {
        idle_kib,
        idle_anon_kib,
        load_max_kib,
        peak_kib,
        after_kib,
    }
}

/// The whole table from set figures (`fixtures/table.md`, as the report
/// writer printed it before it was made smaller). Among its figures: fast
/// page / database ceiling 1,000 / 1,500 = 0.67, met; per log line
/// (190 − 180) µs ÷ 4 lines = 2.5 µs and (337,475 − 311,912) ÷ 4 = 6,391
/// instructions; per exported span (503,718 − 348,146) ÷ 4 = 38,893.
#[test]
fn the_table_states_every_figure_and_ratio_against_its_target() {
    let mut results = Results {
        figures: [
            (FAST, figure(1_000.0, 10.0, 250.0)),
            (CEILING, figure(4_000.0, 2.0, 50.0)),
            (DB_CEILING, figure(1_500.0, 4.0, 70.0)),
            (OFF, figure(1_250.0, 8.0, 190.0)),
            (OFF_WARN, figure(1_300.0, 7.0, 180.0)),
            (WITH_SLOW, figure(900.0, 12.0, 260.0)),
            (PG_FAST, figure(800.0, 12.0, 300.0)),
            (PG_DB_CEILING, figure(1_600.0, 5.0, 120.0)),
            (PG_OFF, figure(1_000.0, 9.0, 240.0)),
        ]
        .into(),
        log_lines_per_page: 4.0,
        slow_pages: 300,
        memory: [
            (
                "business-logic".to_owned(),
                memory([10_752, 2_048, 30_000, 30_720, 29_000]),
            ),
            (
                "front-end".to_owned(),
                memory([7_475, 1_638, 35_000, 35_430, 35_000]),
            ),
        ]
        .into(),
        startup_ms: [
            ("business-logic".to_owned(), 21.6),
            ("front-end".to_owned(), 12.62),
        ]
        .into(),
        binary_size_bytes: [
            ("business-logic".to_owned(), 7_444_889),
            ("front-end".to_owned(), 5_242_880),
        ]
        .into(),
        instructions: vec![
            count("instrumented", 294_510.0, 209_208.0, 4.0),
            count("instrumented, Zipkin", 308_844.0, 222_701.0, 4.0),
            count(
                "instrumented, spans not exported",
                213_802.0,
                134_344.0,
                0.0,
            ),
            count("uninstrumented", 207_468.0, 130_007.0, 0.0),
            count("uninstrumented, RUST_LOG=warn", 192_786.0, 119_126.0, 0.0),
            count("database ceiling", 89_249.0, 55_882.0, 0.0),
        ],
        ..Results::default()
    };
    assert_eq!(results.table(), include_str!("fixtures/table.md"));
    // Without PostgreSQL's figures or instruction counts, their rows say why.
    results
        .figures
        .retain(|label, _| !label.contains("PostgreSQL"));
    results.postgres_skipped = Some("left out (--no-postgres)".to_owned());
    results.instructions.clear();
    let table = results.table();
    for row in [
        "| 6. PostgreSQL | not measured: left out (--no-postgres) |  |\n| 7. fast page",
        "| log lines: RUST_LOG=info / warn, throughput | 0.96 (4.0 lines per page; per line ≈ 2.5 µs CPU) | >= 0.95 (≤ 3 µs per line): met |",
        "| 11. CPU work per fast page (instructions) | not counted (--instructions; needs valgrind) |  |\n",
    ] {
        assert!(table.contains(row), "{row:?} missing from:\n{table}");
    }
    assert_eq!(table.lines().count(), 2 + 9 + 1 + 2 + 2 + 2 + 1, "{table}");
}
