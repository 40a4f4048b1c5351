//! The instruction counter counts the requests it is meant to: the database
//! ceiling (front and back, the cheapest real pair) under the counter this
//! machine has, twice as many requests counting about twice the
//! instructions; and the `instructions` tool counts a setting of its own
//! (Zipkin export) and reads resident memory. Needs valgrind (or a perf that
//! counts); in CI a missing counter is a failure.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::time::Duration;

use bench::instructions::Counter;
use test_support::database::{Backend, TestDatabase};
use test_support::service::Service;

async fn get(client: &reqwest::Client, url: &str, n: u32) {
    for _ in 0..n {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
}

/// Instructions (front, back) over `n` fast pages.
async fn count(
    counter: Counter,
    front: &Service,
    back: &Service,
    dumps: &Path,
    n: u32,
) -> [u64; 2] {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let counting = [
        counter.start(front, dumps).unwrap(),
        counter.start(back, dumps).unwrap(),
    ];
    get(&client, &front.url("/fast-page"), n).await;
    let [a, b] = counting;
    [a.finish().unwrap(), b.finish().unwrap()]
}

#[tokio::test]
async fn counted_instructions_grow_with_the_requests() {
    let Some(counter) = Counter::detect() else {
        assert!(
            !test_support::in_ci(),
            "no instruction counter in CI: install valgrind (apt-get install valgrind)"
        );
        eprintln!("neither perf nor valgrind counts instructions here: not run");
        return;
    };
    let db = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let dumps = std::env::temp_dir().join(format!("instructions-test-{}", std::process::id()));
    std::fs::create_dir_all(&dumps).unwrap();
    let ceiling = Path::new(env!("CARGO_BIN_EXE_ceiling"));
    let mut back = counter
        .launch("ceiling-back", ceiling, &dumps)
        .args(&["back-database", "--database-url", &db.url])
        .start(Duration::from_secs(120))
        .unwrap();
    back.wait_ready(Duration::from_secs(300)).await.unwrap();
    let mut front = counter
        .launch("ceiling-front", ceiling, &dumps)
        .args(&["front", "--backend-url", &back.url("")])
        .start(Duration::from_secs(120))
        .unwrap();
    front.wait_ready(Duration::from_secs(300)).await.unwrap();
    let client = reqwest::Client::new();
    get(&client, &front.url("/fast-page"), 10).await;

    let ten = count(counter, &front, &back, &dumps, 10).await;
    let forty = count(counter, &front, &back, &dumps, 40).await;
    eprintln!("{}: 10 pages {ten:?}, 40 pages {forty:?}", counter.name());
    for i in 0..2 {
        assert!(ten[i] > 10_000, "10 pages counted {} instructions", ten[i]);
        let ratio = forty[i] as f64 / ten[i] as f64;
        assert!(
            (2.5..6.0).contains(&ratio),
            "4x the pages counted {ratio:.2}x the instructions ({ten:?} vs {forty:?})"
        );
    }
    drop((front, back));
    let _ = std::fs::remove_dir_all(&dumps);
}

/// The `instructions` binary, on this test run's builds of the services.
fn instructions(args: &[&str]) -> std::process::Output {
    test_support::service::binary("business-logic");
    let bin_dir = test_support::service::binary("front-end")
        .parent()
        .unwrap()
        .to_owned();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_instructions"))
        .args(args)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The figures of `setting`'s row: the numbers after its name.
fn row(stdout: &str, setting: &str) -> Vec<f64> {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(setting))
        .unwrap_or_else(|| panic!("no {setting} row in:\n{stdout}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|field| field.replace(',', "").parse().ok())
        .collect()
}

#[test]
fn the_instructions_tool_counts_a_setting_over_zipkin() {
    if Counter::detect().is_none() {
        assert!(
            !test_support::in_ci(),
            "no instruction counter in CI: install valgrind (apt-get install valgrind)"
        );
        eprintln!("neither perf nor valgrind counts instructions here: not run");
        return;
    }
    let output = instructions(&[
        "--settings",
        "instrumented-zipkin",
        "--requests",
        "20",
        "--warmup",
        "5",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    // business-logic and front-end instructions, then spans exported per
    // page (the fast page's spans in both services).
    let figures = row(&stdout, "instrumented-zipkin");
    assert_eq!(figures.len(), 3, "{stdout}");
    assert!(figures[..2].iter().all(|n| *n > 1_000.0), "{stdout}");
    assert!((3.0..=12.0).contains(&figures[2]), "{stdout}");
}

#[test]
fn the_instructions_tool_reads_resident_memory_natively() {
    let output = instructions(&[
        "--rss",
        "--settings",
        "uninstrumented",
        "database-ceiling",
        "--requests",
        "50",
        "--warmup",
        "5",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for setting in ["uninstrumented", "database-ceiling"] {
        let figures = row(&stdout, setting);
        assert_eq!(figures.len(), 4, "{stdout}");
        assert!(figures.iter().all(|kib| *kib > 100.0), "{stdout}");
    }
}

#[test]
fn the_instructions_tool_refuses_an_unknown_setting() {
    let output = instructions(&["--settings", "fastest"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("traces-only"), "{stderr}");
}
