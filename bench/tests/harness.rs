//! The benchmark harness end to end in quick mode, on whatever binaries the
//! test run built: every figure is in results.json with the right type. The
//! figures themselves are not asserted (debug builds, a busy machine).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Whether oha or wrk is installed; in CI a missing tool is a failure.
fn load_tool_present() -> bool {
    if bench::load_tool::which("oha").is_some() || bench::load_tool::which("wrk").is_some() {
        return true;
    }
    assert!(
        !test_support::in_ci(),
        "no load generator in CI: install wrk (apt-get install wrk) or oha (cargo install oha)"
    );
    eprintln!("neither oha nor wrk found: the harness test did not run");
    false
}

fn number(value: &Value, path: &str) -> f64 {
    let found = path
        .split('.')
        .fold(value, |v, key| v.get(key).unwrap_or(&Value::Null));
    found
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {found}"))
}

#[test]
fn a_quick_bench_reports_every_figure() {
    if !load_tool_present() {
        return;
    }
    // The services are this test run's builds, next to the ceiling.
    let front_end = test_support::service::binary("front-end");
    test_support::service::binary("business-logic");
    let bin_dir = front_end.parent().unwrap();
    let ceiling = Path::new(env!("CARGO_BIN_EXE_ceiling"));
    assert_eq!(
        ceiling.parent().unwrap(),
        bin_dir,
        "ceiling and services apart"
    );

    let out = std::env::temp_dir().join(format!("bench-test-{}", std::process::id()));
    // PostgreSQL where the tests have one (CI always), else left out.
    let postgres = std::env::var("TEST_DATABASE_URL").ok();
    let mut bench = Command::new(env!("CARGO_BIN_EXE_bench"));
    match &postgres {
        Some(url) => bench.args(["--postgres-url", url]),
        None => bench.arg("--no-postgres"),
    };
    let started = Instant::now();
    let output = bench
        .arg("--quick")
        .args([
            "--duration",
            "1s",
            "--warmup",
            "1s",
            "--slow-requests",
            "50",
        ])
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "bench failed:\n{stderr}\n{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "quick bench took {:?}",
        started.elapsed()
    );

    // The table on stdout names every figure.
    for figure in [
        "1. fast page",
        "2. ceiling",
        "fast page / ceiling",
        "3. database ceiling",
        "fast page / database ceiling",
        "4. fast page, tracing and metrics off",
        "instrumented / uninstrumented",
        "5. fast page, tracing and metrics off, RUST_LOG=warn",
        "log lines: RUST_LOG=info / warn",
        "6. PostgreSQL",
        "7. fast page with 50 slow pages in flight",
        "slow-path isolation",
        "8. front-end resident memory",
        "8. business-logic resident memory",
        "9. start-up",
        "10. release binary size",
        // --quick counts no instructions unless asked; the row says so.
        "11. CPU work per fast page (instructions) | not counted",
    ] {
        assert!(
            stdout.contains(figure),
            "{figure:?} missing from:\n{stdout}"
        );
    }

    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    for figure in [
        "fast_page",
        "ceiling",
        "database_ceiling",
        "fast_page_uninstrumented",
        "fast_page_uninstrumented_warn",
        "fast_page_with_slow",
    ] {
        for field in ["requests_per_s", "p50_ms", "p99_ms", "errors", "requests"] {
            number(&json, &format!("{figure}.{field}"));
        }
        assert!(
            number(&json, &format!("{figure}.requests")) > 0.0,
            "{figure} got no answers"
        );
        assert_eq!(json[figure]["runs"].as_array().unwrap().len(), 1);
    }
    for ratio in [
        "fast_page_over_ceiling",
        "fast_page_over_database_ceiling",
        "instrumented_over_uninstrumented",
        "log_info_over_warn",
        "slow_path_isolation",
    ] {
        assert!(number(&json, &format!("ratios.{ratio}")) > 0.0, "{ratio}");
    }
    // Each uninstrumented page logs at info: at least the "request completed"
    // line with the trace id in each service (today also one line of each
    // service's own). Lines of requests still in flight when the load
    // generator stopped are in the count, so it can be a little over.
    let lines = number(&json, "log_lines.per_page");
    assert!((1.9..5.0).contains(&lines), "log lines per page {lines}");
    if postgres.is_some() {
        for figure in ["fast_page", "fast_page_uninstrumented", "database_ceiling"] {
            assert!(
                number(&json["postgres"], &format!("{figure}.requests")) > 0.0,
                "PostgreSQL {figure} got no answers"
            );
        }
        for ratio in [
            "fast_page_over_ceiling",
            "fast_page_over_database_ceiling",
            "instrumented_over_uninstrumented",
        ] {
            assert!(number(&json["postgres"], ratio) > 0.0, "PostgreSQL {ratio}");
        }
        assert!(json["postgres_skipped"].is_null());
    } else {
        assert!(json["postgres"].is_null());
        assert!(stdout.contains("6. PostgreSQL | not measured: left out (--no-postgres)"));
    }
    assert!(json["instructions"].is_null());
    for service in ["front-end", "business-logic"] {
        for field in [
            "idle_rss_kib",
            "idle_anon_kib",
            "load_rss_max_kib",
            "peak_kib",
            "after_run_rss_kib",
        ] {
            assert!(
                number(&json["memory"][service], field) > 0.0,
                "{service} {field}"
            );
        }
        assert!(number(&json["startup_ms"], service) > 0.0);
        assert!(number(&json["binary_size_bytes"], service) > 0.0);
    }
    // Tracing really ran: the instrumented stack exported spans, all well-formed JSON.
    assert!(number(&json, "spans.received") > 0.0);
    assert_eq!(number(&json, "spans.rejected_batches"), 0.0);
    assert_eq!(
        number(&json, "slow_pages.held_min"),
        50.0,
        "slow pages not held"
    );
    // 3 throughput ratios + log lines + isolation + 4 memory, + PostgreSQL's ratio.
    let targets = if postgres.is_some() { 10 } else { 9 };
    assert_eq!(json["targets"].as_array().unwrap().len(), targets);
    for key in ["cpu_model", "cpus", "kernel", "date"] {
        assert!(!json["machine"][key].is_null(), "machine.{key}");
    }
    let markdown = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(markdown.contains("| figure | result | target |"));
    let _ = std::fs::remove_dir_all(&out);
}
