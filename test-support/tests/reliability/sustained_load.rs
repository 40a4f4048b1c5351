use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use test_support::stack::Stack;

/// How long the sustained run lasts (`RELIABILITY_LOAD_SECS`, default 30 s).
fn duration() -> Duration {
    let secs = std::env::var("RELIABILITY_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

async fn drive(stack: &Stack, for_how_long: Duration) -> BTreeMap<u16, usize> {
    const CONCURRENCY: usize = 16;
    let deadline = Instant::now() + for_how_long;
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|i| {
            let client = stack.client.clone();
            // One worker in four asks for the slow page (200 ms delay).
            let url = if i % 4 == 0 {
                stack.front.url("/slow-page?delay_ms=200")
            } else {
                stack.front.url("/fast-page")
            };
            tokio::spawn(async move {
                let mut statuses = BTreeMap::new();
                while Instant::now() < deadline {
                    let status = match client.get(&url).send().await {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            s
                        }
                        Err(_) => 0,
                    };
                    *statuses.entry(status).or_insert(0) += 1;
                }
                statuses
            })
        })
        .collect();
    let mut total = BTreeMap::new();
    for worker in workers {
        for (status, n) in worker.await.unwrap() {
            *total.entry(status).or_insert(0) += n;
        }
    }
    total
}

/// Mixed slow and fast traffic at fixed concurrency: no failed request, and
/// each service's resident memory at the end within 25 % + 8 MiB of its
/// level after the warm-up.
#[tokio::test(flavor = "multi_thread")]
async fn sustained_mixed_load_fails_nothing_and_memory_stays_flat() {
    let stack = Stack::start(&[]).await;
    let backend = stack.backend.as_ref().unwrap();
    let warm = drive(&stack, Duration::from_secs(5)).await;
    assert_eq!(
        warm.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "warm-up: {warm:?}"
    );
    let front_warm = stack.front.memory().rss_kib;
    let back_warm = backend.memory().rss_kib;

    let run = drive(&stack, duration()).await;
    let (front, back) = (stack.front.memory(), backend.memory());
    let (front_end_rss, front_peak) = (front.rss_kib, front.hwm_kib);
    let (back_end_rss, back_peak) = (back.rss_kib, back.hwm_kib);
    println!(
        "sustained load: {run:?}; front-end RSS {front_warm} -> {front_end_rss} KiB (peak {front_peak}); \
         business-logic RSS {back_warm} -> {back_end_rss} KiB (peak {back_peak})"
    );
    assert_eq!(
        run.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "failed requests: {run:?}"
    );
    assert!(
        run[&200] > 100,
        "too little traffic to mean anything: {run:?}"
    );
    for (name, warm, end) in [
        ("front-end", front_warm, front_end_rss),
        ("business-logic", back_warm, back_end_rss),
    ] {
        let limit = warm + warm / 4 + 8 * 1024;
        assert!(
            end <= limit,
            "{name}: RSS {warm} KiB after warm-up, {end} KiB at the end (limit {limit})"
        );
    }
}
