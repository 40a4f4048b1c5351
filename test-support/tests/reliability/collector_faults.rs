use std::time::Duration;

use test_support::net::{Blackhole, closed_port};
use test_support::stack::Stack;

use crate::{median, timed_gets};

const REQUESTS: usize = 150;

/// Page latency with a hanging or refused collector stays as with a healthy
/// one (a generous ratio: the same run, the same machine), memory stays
/// bounded (the export queue drops), and the log says so a bounded number
/// of times.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_or_refused_collector_neither_slows_pages_nor_grows_memory() {
    let blackhole = Blackhole::start();
    let refused = format!("http://127.0.0.1:{}", closed_port());
    let cases = [
        ("healthy", None),
        ("hanging", Some(blackhole.url())),
        ("refused", Some(refused)),
    ];
    let mut medians = Vec::new();
    for (name, endpoint) in cases {
        let stack = Stack::start_with(&[], &[], endpoint).await;
        let url = stack.front.url("/fast-page");
        timed_gets(&stack.client, &url, 20, 200).await; // warm-up
        let latencies = timed_gets(&stack.client, &url, REQUESTS, 200).await;
        let front_rss_mid = stack.front.memory().rss_kib;
        // Thousands more spans: past the 2048-span queue when export fails.
        for _ in 0..6 {
            futures::future::join_all((0..100).map(|_| stack.client.get(&url).send())).await;
        }
        let front_rss_end = stack.front.memory().rss_kib;
        let m = median(latencies);
        println!("{name}: median {m:?}, front-end RSS {front_rss_mid} -> {front_rss_end} KiB");
        assert!(
            front_rss_end < front_rss_mid + 24 * 1024,
            "{name}: front-end memory grew from {front_rss_mid} to {front_rss_end} KiB"
        );
        let warnings = |logs: Vec<String>| {
            logs.iter()
                .filter(|l| l.contains("span export failing"))
                .count()
        };
        if name == "healthy" {
            assert!(
                stack.collector.spans().len() > REQUESTS,
                "spans reached the healthy collector"
            );
        } else {
            // Export failures show up (the hanging one after its 5 s export timeout) ...
            let reported = test_support::wait_until(Duration::from_secs(15), || {
                (warnings(stack.front.logs()) > 0).then_some(())
            });
            assert!(
                reported.is_some(),
                "{name}: the failing export was never reported"
            );
            // ... at most once a minute, not per batch.
            assert!(warnings(stack.front.logs()) <= 2, "{name}: log flooded");
            assert!(
                warnings(stack.backend.as_ref().unwrap().logs()) <= 2,
                "{name}: log flooded"
            );
        }
        medians.push((name, m));
    }
    assert!(
        blackhole.connections() > 0,
        "the hanging collector was never reached"
    );
    let healthy = medians[0].1.as_secs_f64();
    for (name, m) in &medians[1..] {
        let ratio = m.as_secs_f64() / healthy;
        println!("{name} / healthy median latency: {ratio:.2}");
        assert!(ratio < 3.0, "{name} collector slowed pages by {ratio:.2}x");
    }
}
