//! `load` against the real services (business-logic and front-end as
//! processes, slow delay 150 ms): the summary's counts add up.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use serde_json::Value;
use test_support::stack::Stack;

fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_load"))
        .args(args)
        .output()
        .unwrap()
}

fn count(value: &Value) -> u64 {
    value
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn twenty_requests_at_twenty_per_second_are_all_counted() {
    let stack = Stack::start(&[]).await;
    let url = stack.front.url("/");
    let output = tokio::task::spawn_blocking(move || {
        load(&[
            "--url",
            &url,
            "--rate",
            "20",
            "--duration",
            "1s",
            "--slow-share",
            "0.2",
            "--json",
        ])
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(summary["planned"], 20);
    assert_eq!(summary["sent"], 20);
    assert_eq!(summary["completed"], 20);
    assert_eq!(count(&summary["by_status"]), 20, "{summary:#}");
    assert_eq!(summary["by_status"]["200"], 20, "{summary:#}");
    let fast = &summary["pages"]["fast-page"];
    let slow = &summary["pages"]["slow-page"];
    assert_eq!(fast["sent"], 16);
    assert_eq!(slow["sent"], 4);
    assert_eq!(count(&fast["by_status"]) + count(&slow["by_status"]), 20);
    // The slow page holds 150 ms in business-logic; the fast one does not.
    assert!(
        slow["latency_ms"]["p50"].as_f64().unwrap() >= 150.0,
        "{slow:#}"
    );
    for page in [fast, slow, &summary] {
        let latency = &page["latency_ms"];
        let [p50, p90, p99, max] =
            ["p50", "p90", "p99", "max"].map(|q| latency[q].as_f64().unwrap());
        assert!(p50 <= p90 && p90 <= p99 && p99 <= max, "{latency}");
    }
    // Sent over about a second (the 20th request is due at 0.95 s), and
    // answered within the slow page's hold after that.
    let sending = summary["sending_s"].as_f64().unwrap();
    assert!((0.9..5.0).contains(&sending), "{sending}");
    let elapsed = summary["elapsed_s"].as_f64().unwrap();
    assert!((sending..10.0).contains(&elapsed), "{elapsed}");
}

#[test]
fn nothing_answering_is_a_failure_with_a_summary() {
    let url = format!("http://127.0.0.1:{}/", test_support::net::closed_port());
    let output = load(&["--url", &url, "--rate", "10", "--duration", "300ms"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("connection refused or unreachable"),
        "{stdout}"
    );
    assert!(stdout.contains("p99"), "{stdout}");
}

#[test]
fn bad_arguments_are_refused() {
    for args in [
        &["--rate", "0"][..],
        &["--slow-share", "1.5"],
        &["--duration", "forever"],
        &["--slow-delay-ms", "60001"],
        &["--url", "ftp://example"],
    ] {
        let output = load(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
}
