//! Faults, bad input and load: the real processes on loopback, every loop
//! bounded in count and time. Run alone with
//! `cargo nextest run -p test-support --test reliability`.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod backend_dies;
mod bad_input;
mod collector_faults;
mod database_faults;
mod keep_alive;
mod shutdown;
mod sustained_load;

use std::time::{Duration, Instant};

/// Median of some durations.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// `n` sequential GETs; returns each latency and asserts each status.
pub async fn timed_gets(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    status: u16,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), status, "{url}");
        response.bytes().await.unwrap();
        out.push(started.elapsed());
    }
    out
}
