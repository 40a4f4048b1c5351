//! The benchmark end to end on the test build's binaries (built side by
//! side, where `bench` looks for them); the figures themselves are not
//! asserted (debug builds, a busy machine). In CI a missing tool fails.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bench::instructions::Count;
use bench::report::Results;

/// `bench ARGS --out <a fresh directory>` on the test build's binaries: its
/// stdout, and the directory.
fn bench(args: &str, tag: &str) -> (String, PathBuf) {
    let front_end = test_support::service::binary("front-end");
    test_support::service::binary("business-logic");
    let exe = Path::new(env!("CARGO_BIN_EXE_bench"));
    assert_eq!(exe.parent(), front_end.parent());
    let out = std::env::temp_dir().join(format!("bench-test-{tag}-{}", std::process::id()));
    let output = Command::new(exe)
        .args(args.split(' '))
        .arg("--out")
        .arg(&out)
        .output();
    let output = output.unwrap();
    let [stdout, stderr] = [output.stdout, output.stderr].map(|s| String::from_utf8(s).unwrap());
    assert!(output.status.success(), "bench failed:\n{stderr}\n{stdout}");
    (stdout, out)
}

/// Whether one of `programs` is installed; in CI one must be.
fn installed(programs: &[&str], install: &str) -> bool {
    let found = programs.iter().any(|p| bench::which(p).is_some());
    assert!(
        found || !test_support::in_ci(),
        "none of {programs:?} in CI: {install}"
    );
    if !found {
        eprintln!("none of {programs:?} installed: not run");
    }
    found
}

/// In quick mode with one-second runs, every figure is in the table and in
/// results.json, the slow pages were held through the measured run, spans
/// arrived.
#[test]
fn a_quick_bench_reports_every_figure() {
    if !installed(&["oha", "wrk"], "apt-get install wrk") {
        return;
    }
    // PostgreSQL where the tests have one (CI always), else left out.
    let postgres = std::env::var("TEST_DATABASE_URL").map(|url| format!("--postgres-url {url}"));
    let postgres = postgres.unwrap_or_else(|_| "--no-postgres".to_owned());
    let args = format!("--quick --duration 1s --warmup 1s --slow-requests 50 {postgres}");
    let (stdout, out) = bench(&args, "quick");

    // Every row has a figure (bench/tests/report.rs checks the rows and their
    // wording); a run that got no answers is run again, so no ratio is "n/a".
    assert!(stdout.contains("| 7. fast page with 50 slow pages in flight | "));
    let figures_missing = stdout.contains("n/a") || stdout.contains("|  |  |");
    assert!(!figures_missing, "{stdout}");

    // results.json, read back as the report writer's own type.
    let json = std::fs::read_to_string(out.join("results.json")).unwrap();
    let results: Results = serde_json::from_str(&json).unwrap();
    let expected = if postgres.contains("://") { 9 } else { 6 };
    assert_eq!(results.figures.len(), expected, "{:?}", results.figures);
    for (name, figure) in &results.figures {
        assert!(figure.requests > 0, "{name} got no answers");
        assert_eq!(figure.runs.len(), 1);
    }
    // Each page logs at info: at least "request completed" in each service.
    let lines = results.log_lines_per_page;
    assert!((2.0..=6.0).contains(&lines), "log lines per page {lines}");
    assert_eq!(results.slow_pages_held_min, 50, "slow pages not held");
    assert!(results.spans_received > 0);
    assert_eq!(results.rejected_batches, 0);
    for service in ["front-end", "business-logic"] {
        let m = &results.memory[service];
        assert!(m.idle_anon_kib > 0 && m.idle_anon_kib < m.idle_kib, "{m:?}");
        // The high-water mark since idle, within the whole run's.
        let (load, peak) = (m.load_max_kib, m.peak_kib);
        assert!(load > 0 && load <= peak && m.idle_kib <= peak, "{m:?}");
        assert!(results.startup_ms[service] > 0.0);
    }
    let markdown = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(markdown.contains(stdout.trim()), "not in results.md");
    let _ = std::fs::remove_dir_all(&out);
}

/// `--settings` counts the pages it is meant to: on the database ceiling (the
/// cheapest real pair) under callgrind, 10 and 40 counted pages give about
/// the same instructions per page, so the zeroing and the dumps work.
#[test]
fn counted_instructions_per_page_do_not_depend_on_the_pages() {
    if !installed(&["callgrind_control"], "apt-get install valgrind") {
        return;
    }
    // Instructions per page (front-end's part, business-logic's part).
    let count = |pages: &str| {
        let settings = "--settings database-ceiling --instruction-warmup 10";
        let (stdout, out) = bench(&format!("{settings} --instruction-requests {pages}"), pages);
        let _ = std::fs::remove_dir_all(&out);
        let [c]: [Count; 1] = serde_json::from_str(&stdout).unwrap();
        assert_eq!(c.spans, 0.0, "the ceiling makes no spans: {c:?}");
        [c.front, c.back]
    };
    let (ten, forty) = (count("10"), count("40"));
    eprintln!("per page: 10 pages {ten:?}, 40 pages {forty:?}");
    for (ten, forty) in ten.into_iter().zip(forty) {
        assert!(ten > 1_000.0, "10 pages counted {ten} instructions a page");
        let ratio = forty / ten;
        assert!(
            (0.625..1.5).contains(&ratio),
            "40 pages: {ratio:.2}x a page's"
        );
    }
}
