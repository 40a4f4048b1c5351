//! The front-end binary's start-up as a user meets it from a terminal.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A port another program holds: the front-end exits 1 at once with one line
/// on stderr that names `PORT` and what to do, and no backtrace, even with
/// `RUST_BACKTRACE=1` set, as many Rust developers have it.
#[test]
fn a_taken_port_ends_start_up_with_one_line_naming_port_and_no_backtrace() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut child = Command::new(test_support::service::binary("front-end"))
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("RUST_BACKTRACE", "1")
        .env("OTEL_TRACES_EXPORTER", "none")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a front-end that did bind would serve until stopped.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    let line = lines[0];
    assert!(
        line.starts_with(&format!("front-end: cannot listen on 127.0.0.1:{port}")),
        "{line}"
    );
    assert!(line.contains(&format!("PORT={port}")), "{line}");
    assert!(
        line.contains(&format!(
            "another program holds port {port}: stop it, or set PORT to a free port"
        )),
        "{line}"
    );
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    drop(taken);
}
