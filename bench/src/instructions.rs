//! CPU work per fast page, in instructions: a figure a busy machine does not
//! move. Both processes of a setting's pair run under `valgrind
//! --tool=callgrind --vgdb=yes`; after a bounded warm-up `callgrind_control
//! -z` zeroes their counts, a fixed number of fast pages goes through one
//! keep-alive connection, and `callgrind_control --dump` writes what each
//! process executed meanwhile (every thread, user space only), divided here
//! by the pages. Spans go to the stand-in collector, so their export is in
//! the count, and the spans it received give the spans per page.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use test_support::collector::Collector;
use test_support::service::Service;

use crate::{Setting, Starter};

/// Instructions per fast page of one setting, by process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Count {
    pub setting: String,
    /// front-end (or the ceiling's front).
    pub front: f64,
    /// business-logic (or the ceiling's back with the database).
    pub back: f64,
    /// Spans the collector received per page, both services.
    pub spans: f64,
}

/// Instructions and spans per fast page of `setting`, on a fresh pair started
/// by `starter` (under callgrind) on a fresh SQLite file: `warmup` pages,
/// then `counted` pages counted.
pub async fn count(
    starter: &Starter<'_>,
    collector: &Collector,
    setting: &Setting,
    [warmup, counted]: [u32; 2],
) -> anyhow::Result<Count> {
    let tag = format!("instructions-{}", setting.name);
    let sqlite = starter.sqlite(&tag)?;
    let (pair, ..) = starter.start(&tag, setting.changes, Some(&sqlite)).await?;
    let url = pair.front.url(contract::routes::front_end::FAST_PAGE);
    pages(&url, warmup).await?;
    // Span batches leave every 500 ms (slower under callgrind): the warm-up's
    // are in before the count starts, the counted pages' before it ends.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spans_before = collector.span_count();
    for service in [&pair.front, &pair.back] {
        callgrind_control("-z", service.pid())?;
    }
    pages(&url, counted).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per_page = |n: u64| n as f64 / f64::from(counted);
    Ok(Count {
        setting: setting.label.to_owned(),
        front: per_page(dumped(&pair.front, starter.dir).await?),
        back: per_page(dumped(&pair.back, starter.dir).await?),
        spans: per_page(collector.span_count() - spans_before),
    })
}

/// `n` GETs of `url` one after another over one keep-alive connection, each
/// answered 200.
pub async fn pages(url: &str, n: u32) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?;
    for _ in 0..n {
        let response = client.get(url).send().await?;
        let status = response.status();
        response.bytes().await?;
        if status != reqwest::StatusCode::OK {
            bail!("{url} answered {status}");
        }
    }
    Ok(())
}

/// The instructions `service` executed since `callgrind_control -z`: the
/// `totals:` line of the dump it writes a moment after `--dump` (a fresh
/// process's first: `<name>.callgrind.<pid>.1` in `dir`).
async fn dumped(service: &Service, dir: &Path) -> anyhow::Result<u64> {
    callgrind_control("--dump", service.pid())?;
    let dump = dir.join(format!("{}.callgrind.{}.1", service.name(), service.pid()));
    for _ in 0..600 {
        let text = std::fs::read_to_string(&dump).unwrap_or_default();
        if let Some(totals) = text.lines().find_map(|l| l.strip_prefix("totals: ")) {
            return Ok(totals.trim().parse()?);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no callgrind dump at {} after 60 s", dump.display())
}

/// `callgrind_control FLAG PID`. vgdb finds a process through pipes named
/// after `$USER` and `$HOST`; the services run with a clean environment
/// (`HOST=127.0.0.1`, no `USER`), so this runs with the same.
fn callgrind_control(flag: &str, pid: u32) -> anyhow::Result<()> {
    let output = std::process::Command::new("callgrind_control")
        .args([flag, &pid.to_string()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .output()
        .context("running callgrind_control (apt-get install valgrind)")?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned();
        bail!("callgrind_control {flag} {pid} failed: {said}");
    }
    Ok(())
}
