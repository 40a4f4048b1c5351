//! The benchmark end to end in quick mode (one-second runs) on the test
//! build's binaries: every figure is in the table and in results.json, the
//! slow pages were held through the measured run, spans arrived. The figures
//! themselves are not asserted (debug builds, a busy machine). Needs oha or
//! wrk; in CI a missing one is a failure.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn a_quick_bench_reports_every_figure() {
    if bench::which("oha").is_none() && bench::which("wrk").is_none() {
        assert!(
            !test_support::in_ci(),
            "no load generator in CI: apt-get install wrk"
        );
        eprintln!("neither oha nor wrk found: not run");
        return;
    }
    let bin_dir = test_support::service::binary("front-end")
        .parent()
        .unwrap()
        .to_owned();
    test_support::service::binary("business-logic");
    assert_eq!(
        Path::new(env!("CARGO_BIN_EXE_ceiling")).parent().unwrap(),
        bin_dir
    );
    let out = std::env::temp_dir().join(format!("bench-test-{}", std::process::id()));
    // PostgreSQL where the tests have one (CI always), else left out.
    let postgres = std::env::var("TEST_DATABASE_URL").ok();
    let mut bench = Command::new(env!("CARGO_BIN_EXE_bench"));
    match &postgres {
        Some(url) => bench.args(["--postgres-url", url]),
        None => bench.arg("--no-postgres"),
    };
    let output = bench
        .args([
            "--quick",
            "--duration",
            "1s",
            "--warmup",
            "1s",
            "--slow-requests",
            "50",
            "--bin-dir",
        ])
        .arg(&bin_dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "bench failed:\n{stderr}\n{stdout}");

    let mut rows = vec![
        "| 1. fast page, full instrumentation",
        "| 2. ceiling",
        "| fast page / ceiling, throughput | ",
        "| 3. database ceiling",
        "| fast page / database ceiling, throughput | ",
        "| 4. fast page, tracing and metrics off",
        "| instrumented / uninstrumented, throughput | ",
        "| 5. fast page, tracing and metrics off, RUST_LOG=warn",
        "| log lines: RUST_LOG=info / warn, throughput | ",
        "| 7. fast page with 50 slow pages in flight | ",
        "| slow-path isolation: fast-page p99 with / without them | ",
        "| 8. front-end resident memory",
        "| 8. business-logic resident memory",
        "| 9. start-up: spawn to first 200 on /readyz | business-logic ",
        "| 10. release binary size | business-logic ",
        // --quick counts no instructions unless asked; the row says so.
        "| 11. CPU work per fast page (instructions) | not counted",
    ];
    rows.push(match postgres {
        Some(_) => "| PostgreSQL: instrumented / uninstrumented · fast page / ceiling | ",
        None => "| 6. PostgreSQL | not measured: left out (--no-postgres)",
    });
    for row in rows {
        assert!(stdout.contains(row), "{row:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("n/a"), "{stdout}");

    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let figures = json["figures"].as_object().unwrap();
    assert_eq!(
        figures.len(),
        if postgres.is_some() { 9 } else { 6 },
        "{figures:?}"
    );
    for (name, figure) in figures {
        assert!(
            figure["requests"].as_u64().unwrap() > 0,
            "{name} got no answers"
        );
        assert_eq!(figure["runs"].as_array().unwrap().len(), 1);
    }
    // Each page logs at info: at least "request completed" in each service.
    let lines = json["log_lines_per_page"].as_f64().unwrap();
    assert!((2.0..=6.0).contains(&lines), "log lines per page {lines}");
    assert_eq!(json["slow_pages_held_min"], 50, "slow pages not held");
    assert!(json["spans_received"].as_u64().unwrap() > 0);
    assert_eq!(json["rejected_batches"], 0);
    for service in ["front-end", "business-logic"] {
        let memory = &json["memory"][service];
        let kib = |field: &str| memory[field].as_u64().unwrap();
        assert!(
            kib("idle_anon_kib") > 0 && kib("idle_anon_kib") < kib("idle_kib"),
            "{memory}"
        );
        // The high-water mark since idle, within the whole run's.
        assert!(
            kib("load_max_kib") > 0 && kib("load_max_kib") <= kib("peak_kib"),
            "{memory}"
        );
        assert!(kib("idle_kib") <= kib("peak_kib"), "{memory}");
        assert!(json["startup_ms"][service].as_f64().unwrap() > 0.0);
    }
    let markdown = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(markdown.contains("| figure | result | target |"));
    let _ = std::fs::remove_dir_all(&out);
}
