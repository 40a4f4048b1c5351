//! The instruction counter counts the requests it is meant to: the database
//! ceiling (front and back, the cheapest real pair) under the counter this
//! machine has, twice as many requests counting about twice the
//! instructions. Needs valgrind (or a perf that counts); in CI a missing
//! counter is a failure.
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
