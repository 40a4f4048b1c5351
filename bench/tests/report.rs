//! The report writer on recorded output. Fixtures, recorded on loopback
//! against `ceiling front` whose back was stopped half-way (200s, 502s and
//! deadline aborts): `oha-1.16.0.json` (oha 1.16.0 from crates.io, `oha
//! --no-tui --output-format json -z 3s -c 4 -t 30s URL`), `wrk-4.1.0-hook.txt`
//! (Debian's wrk 4.1.0-3+b2, `wrk -t 1 -c 4 -d 3s --timeout 30s -s <the hook
//! in bench/src/load.rs> URL`). `results.json` holds set figures, `table.md`
//! the table printed for them before the writer was made smaller; among them
//! per log line (190 − 180) µs ÷ 4 lines = 2.5 µs, and per exported span
//! (503,718 − 348,146) ÷ 4 = 38,893 instructions.
#![allow(clippy::unwrap_used)]

use bench::load::read_oha_json;
use bench::report::Results;

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

#[test]
fn the_table_states_every_figure_and_ratio_against_its_target() {
    let results = include_str!("fixtures/results.json");
    let mut results: Results = serde_json::from_str(results).unwrap();
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
