//! The one harness for the integration tests, the reliability suite and the
//! bench: the real service binaries started as processes on port 0
//! (`service`), what the kernel says about them (`os`: memory, sockets),
//! HTTP probes (`http`), a stand-in trace collector that checks what arrives
//! against the published formats or, for the bench, only counts it
//! (`collector`), a stand-in Istio proxy propagating B3 (`b3_proxy`),
//! network stand-ins for fault tests (`net`), throw-away
//! SQLite/PostgreSQL databases (`database`) and both services wired together
//! (`stack`).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

pub mod b3_proxy;
pub mod collector;
pub mod database;
pub mod http;
pub mod net;
pub mod os;
pub mod service;
pub mod stack;

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`.
pub fn wait_until<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when running in CI (`CI=true`), where optional parts must not be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}
