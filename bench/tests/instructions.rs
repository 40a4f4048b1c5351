//! The instruction counter counts the pages it is meant to: on the database
//! ceiling (the cheapest real pair) under callgrind, four times the pages
//! count about four times the instructions, so the zeroing and the dumps
//! work. Needs valgrind; in CI a missing one is a failure.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;

use bench::instructions::{Counting, pages};
use bench::{Binaries, Pair, Starter};

/// Instructions (front, back) over `n` fast pages.
async fn count(pair: &Pair, dumps: &Path, n: u32) -> [u64; 2] {
    let front = Counting::start(&pair.front, dumps).unwrap();
    let back = Counting::start(&pair.back, dumps).unwrap();
    pages(&pair.front.url("/fast-page"), n).await.unwrap();
    [front.finish().await.unwrap(), back.finish().await.unwrap()]
}

#[tokio::test]
async fn counted_instructions_grow_with_the_pages() {
    if bench::which("callgrind_control").is_none() {
        assert!(
            !test_support::in_ci(),
            "no valgrind in CI: apt-get install valgrind"
        );
        eprintln!("valgrind is not installed: not run");
        return;
    }
    let ceiling = Path::new(env!("CARGO_BIN_EXE_ceiling")).to_owned();
    let bin = ceiling.parent().unwrap();
    let (front_end, business_logic) = (bin.join("front-end"), bin.join("business-logic"));
    let binaries = Binaries {
        front_end,
        business_logic,
        ceiling,
    };
    let dir = std::env::temp_dir().join(format!("instructions-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let starter = Starter {
        binaries: &binaries,
        cpu: None,
        dir: &dir,
        collector_url: String::new(),
        front_env: Vec::new(),
        callgrind: true,
    };
    let database_url = starter.sqlite("ceiling").unwrap();
    let (pair, ..) = starter
        .start("ceiling", None, Some(&database_url))
        .await
        .unwrap();
    pages(&pair.front.url("/fast-page"), 10).await.unwrap();

    let ten = count(&pair, &dir, 10).await;
    let forty = count(&pair, &dir, 40).await;
    eprintln!("10 pages {ten:?}, 40 pages {forty:?}");
    for i in 0..2 {
        assert!(ten[i] > 10_000, "10 pages counted {} instructions", ten[i]);
        let ratio = forty[i] as f64 / ten[i] as f64;
        assert!(
            (2.5..6.0).contains(&ratio),
            "4x the pages counted {ratio:.2}x the instructions"
        );
    }
    drop(pair);
    let _ = std::fs::remove_dir_all(&dir);
}
