use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use test_support::stack::Stack;

/// Front-end pages answer 502 within their timeout while business-logic is
/// gone (nothing hangs), and work again within a second of its return.
#[tokio::test(flavor = "multi_thread")]
async fn when_the_backend_dies_under_load_pages_fail_fast_and_recover_within_a_second() {
    const TIMEOUT_MS: u64 = 1500;
    let mut stack = Stack::start(&[("FAST_PAGE_TIMEOUT_MS", "1500")]).await;
    let stack_front = stack.front.url("/fast-page");
    let stop = Arc::new(AtomicBool::new(false));
    let client = stack.client.clone();

    // Eight clients loop over the fast page until told to stop (bounded: 60 s).
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, stop) = (client.clone(), stack_front.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let started = Instant::now();
                    let status = client
                        .get(&url)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    seen.push((status, started.elapsed()));
                }
                seen
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.stop_backend(); // SIGKILL
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, page) = stack.page("/fast-page").await;
    assert_eq!(status, 502, "{page}");

    stack.restart_backend().await; // returns once /readyz answers 200
    let back = Instant::now();
    let mut recovered = None;
    while back.elapsed() < Duration::from_secs(5) {
        if stack.page("/fast-page").await.0 == 200 {
            recovered = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);

    let mut statuses = std::collections::BTreeMap::new();
    for worker in workers {
        for (status, took) in worker.await.unwrap() {
            *statuses.entry(status).or_insert(0) += 1;
            assert!(
                took < Duration::from_millis(TIMEOUT_MS + 1000),
                "a request took {took:?} with status {status}"
            );
            assert!([200, 502].contains(&status), "status {status}");
        }
    }
    println!("statuses under the outage: {statuses:?}");
    assert!(statuses.get(&502).is_some_and(|n| *n > 0), "{statuses:?}");
    let recovered = recovered.expect("pages did not work again within 5 s of the backend's return");
    assert!(
        recovered < Duration::from_secs(1),
        "recovery took {recovered:?}"
    );
    assert!(
        !stack.front.logs().iter().any(|l| l.contains("panicked")),
        "the front-end panicked"
    );
}
