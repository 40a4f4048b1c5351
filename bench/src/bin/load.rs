//! `make load`: a bounded mix of fast and slow page requests at a fixed
//! rate, for the walkthrough's dashboards and traces. Shows a progress bar
//! (on a terminal) and ends with counts by status and latency percentiles.
//!
//! ```sh
//! load --url http://localhost:8080/demo-app/ --rate 10 --duration 60s --slow-share 0.2
//! ```
//!
//! Exits 0 when it ran (whatever the statuses), 2 on bad arguments, 1 when
//! not a single request got an answer.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line report

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use contract::routes::front_end;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Sends fast and slow page requests at a fixed rate for a bounded time.
#[derive(Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// The front-end's base URL; `fast-page` and `slow-page` are appended.
    #[arg(long, default_value = "http://localhost:8080/demo-app/")]
    url: String,
    /// Requests per second (0.1 to 10000).
    #[arg(long, default_value_t = 10.0, value_parser = rate)]
    rate: f64,
    /// How long to send for: 60s, 2m, 1m 30s, 500ms (at most 1h).
    #[arg(long, default_value = "60s", value_parser = duration)]
    duration: Duration,
    /// Share of requests that go to the slow page (0 to 1).
    #[arg(long, default_value_t = 0.2, value_parser = share)]
    slow_share: f64,
    /// `?delay_ms=` for the slow page (0 to 60000); default: the service's own delay.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=contract::MAX_DELAY_MS))]
    slow_delay_ms: Option<u64>,
    /// Most requests in flight at once; past it, sending waits.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// Per-request timeout: 30s, 1m, ...
    #[arg(long, default_value = "30s", value_parser = duration)]
    timeout: Duration,
    /// Print the summary as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// A number within `range`, for clap's `value_parser`.
fn number_in(value: &str, range: std::ops::RangeInclusive<f64>) -> Result<f64, String> {
    let number: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if range.contains(&number) {
        Ok(number)
    } else {
        Err(format!(
            "{number} is out of range; allowed: {} to {}",
            range.start(),
            range.end()
        ))
    }
}

fn rate(value: &str) -> Result<f64, String> {
    number_in(value, 0.1..=10_000.0)
}

fn share(value: &str) -> Result<f64, String> {
    number_in(value, 0.0..=1.0)
}

/// Between 1 ms and 1 h ([`contract::duration_within`]'s syntax).
fn duration(value: &str) -> Result<Duration, String> {
    contract::duration_within(value, Duration::from_millis(1)..=Duration::from_secs(3600))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Page {
    Fast,
    Slow,
}

impl Page {
    /// The page's path relative to the app's address, e.g. `fast-page`.
    fn name(self) -> &'static str {
        match self {
            Self::Fast => front_end::FAST_PAGE,
            Self::Slow => front_end::SLOW_PAGE,
        }
        .trim_start_matches('/')
    }
}

/// Whether request `i` goes to the slow page: spread evenly, so any
/// stretch of requests holds about `share` slow ones (20 at 0.2: exactly 4).
fn is_slow(i: u64, share: f64) -> bool {
    ((i + 1) as f64 * share).floor() > (i as f64 * share).floor()
}

/// Results of one page.
#[derive(Debug)]
struct Tally {
    /// "200", "504", "timeout", "connection error", ...
    outcomes: BTreeMap<String, u64>,
    /// Microseconds, responses only (any status).
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            outcomes: BTreeMap::new(),
            // 1 µs to 1 h, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("1 µs to 1 h at 3 digits is a valid histogram"),
        }
    }

    fn total(&self) -> u64 {
        self.outcomes.values().sum()
    }

    fn percentiles_ms(&self) -> Option<[f64; 4]> {
        if self.latency.is_empty() {
            return None;
        }
        let at = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        Some([
            at(0.5),
            at(0.9),
            at(0.99),
            self.latency.max() as f64 / 1000.0,
        ])
    }
}

#[derive(Debug)]
struct Totals {
    pages: BTreeMap<Page, Tally>,
}

impl Totals {
    fn record(&mut self, page: Page, outcome: String, latency: Option<Duration>) {
        let tally = self.pages.entry(page).or_insert_with(Tally::new);
        *tally.outcomes.entry(outcome).or_default() += 1;
        if let Some(latency) = latency {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            let _ = tally.latency.record(micros.clamp(1, 3_600_000_000));
        }
    }

    fn responses(&self) -> u64 {
        self.pages
            .values()
            .flat_map(|t| &t.outcomes)
            .filter(|(k, _)| k.parse::<u16>().is_ok())
            .map(|(_, n)| n)
            .sum()
    }

    fn errors(&self) -> u64 {
        self.pages
            .values()
            .flat_map(|t| &t.outcomes)
            .filter(|(k, _)| !k.starts_with('2'))
            .map(|(_, n)| n)
            .sum()
    }

    fn all(&self) -> Tally {
        let mut all = Tally::new();
        for tally in self.pages.values() {
            for (k, n) in &tally.outcomes {
                *all.outcomes.entry(k.clone()).or_default() += n;
            }
            let _ = all.latency.add(&tally.latency);
        }
        all
    }
}

fn classify(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        "connection refused or unreachable".into()
    } else {
        "transport error".into()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("load: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut base = reqwest::Url::parse(&args.url)
        .map_err(|e| anyhow::anyhow!("--url {:?} is not a URL: {e}", args.url))?;
    if base.scheme() != "http" {
        anyhow::bail!("--url {:?}: only http:// URLs are supported", args.url);
    }
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let fast_url = base.join(Page::Fast.name())?;
    let mut slow_url = base.join(Page::Slow.name())?;
    if let Some(ms) = args.slow_delay_ms {
        slow_url.set_query(Some(&format!("{}={ms}", contract::DELAY_MS)));
    }

    let planned = ((args.rate * args.duration.as_secs_f64()).ceil() as u64).max(1);
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .connect_timeout(Duration::from_secs(5).min(args.timeout))
        .user_agent(concat!("demo-load/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let totals = Arc::new(Mutex::new(Totals {
        pages: BTreeMap::new(),
    }));
    let bar = ProgressBar::new(planned);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} answered  {msg}",
        )?
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    if !args.json {
        eprintln!(
            "load: {planned} requests to {base} over {:.1} s ({} req/s, {:.0} % slow), at most {} in flight",
            args.duration.as_secs_f64(),
            args.rate,
            args.slow_share * 100.0,
            args.concurrency
        );
    }

    let permits = Arc::new(Semaphore::new(args.concurrency as usize));
    let started = Instant::now();
    let stop_sending = started + args.duration;
    let mut tasks = JoinSet::new();
    let mut sent: u64 = 0;
    for i in 0..planned {
        let due = started + Duration::from_secs_f64(i as f64 / args.rate);
        tokio::time::sleep_until(due).await;
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit?,
            () = tokio::time::sleep_until(stop_sending) => break,
        };
        if Instant::now() >= stop_sending {
            break;
        }
        let page = if is_slow(i, args.slow_share) {
            Page::Slow
        } else {
            Page::Fast
        };
        let url = match page {
            Page::Fast => fast_url.clone(),
            Page::Slow => slow_url.clone(),
        };
        let request = client.get(url);
        let totals = totals.clone();
        let bar = bar.clone();
        sent += 1;
        tasks.spawn(async move {
            let begun = Instant::now();
            let (outcome, latency) = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.bytes().await {
                        Ok(_) => (status.to_string(), Some(begun.elapsed())),
                        Err(error) => (classify(&error), None),
                    }
                }
                Err(error) => (classify(&error), None),
            };
            let mut totals = totals.lock().unwrap_or_else(|p| p.into_inner());
            totals.record(page, outcome, latency);
            let errors = totals.errors();
            drop(totals);
            drop(permit);
            bar.inc(1);
            bar.set_message(format!("{errors} not 2xx or failed"));
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let sending = started.elapsed();
    bar.set_length(sent);
    while tasks.join_next().await.is_some() {}
    bar.finish_and_clear();
    let elapsed = started.elapsed();

    let totals = totals.lock().unwrap_or_else(|p| p.into_inner());
    let summary = Summary {
        base: &base,
        planned,
        sent,
        sending,
        elapsed,
        totals: &totals,
    };
    if args.json {
        println!("{}", summary.json(args.rate));
    } else {
        println!("{}", summary.text());
    }
    Ok(if totals.responses() == 0 {
        eprintln!("load: no request got an answer from {base}");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn latency_json(tally: &Tally) -> serde_json::Value {
    match tally.percentiles_ms() {
        Some([p50, p90, p99, max]) => json!({"p50": p50, "p90": p90, "p99": p99, "max": max}),
        None => json!(null),
    }
}

/// What a run did, for the closing report.
struct Summary<'a> {
    base: &'a reqwest::Url,
    planned: u64,
    sent: u64,
    /// From the first request sent to the last.
    sending: Duration,
    /// From the first request sent to the last answer.
    elapsed: Duration,
    totals: &'a Totals,
}

impl Summary<'_> {
    fn json(&self, rate: f64) -> serde_json::Value {
        let all = self.totals.all();
        let pages: serde_json::Map<String, serde_json::Value> = self
            .totals
            .pages
            .iter()
            .map(|(page, tally)| {
                (
                    page.name().to_owned(),
                    json!({
                        "sent": tally.total(),
                        "by_status": tally.outcomes,
                        "latency_ms": latency_json(tally),
                    }),
                )
            })
            .collect();
        json!({
            "url": self.base.as_str(),
            "rate": rate,
            "planned": self.planned,
            "sent": self.sent,
            "completed": all.total(),
            "sending_s": self.sending.as_secs_f64(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "by_status": all.outcomes,
            "latency_ms": latency_json(&all),
            "pages": pages,
        })
    }

    fn text(&self) -> String {
        use std::fmt::Write as _;
        let all = self.totals.all();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{} of {} planned requests sent to {} over {:.1} s ({:.1} req/s); \
         the last answer came {:.1} s after the start\n",
            self.sent,
            self.planned,
            self.base,
            self.sending.as_secs_f64(),
            self.sent as f64 / self.sending.as_secs_f64().max(1e-9),
            self.elapsed.as_secs_f64(),
        );
        let pages: Vec<(&str, &Tally)> = self
            .totals
            .pages
            .iter()
            .map(|(p, t)| (p.name(), t))
            .chain([("total", &all)])
            .collect();
        let _ = write!(out, "{:<36}", "status");
        for (name, _) in &pages {
            let _ = write!(out, "{name:>11}");
        }
        out.push('\n');
        for outcome in all.outcomes.keys() {
            let _ = write!(out, "{outcome:<36}");
            for (_, tally) in &pages {
                let _ = write!(out, "{:>11}", tally.outcomes.get(outcome).unwrap_or(&0));
            }
            out.push('\n');
        }
        let _ = write!(out, "{:<36}", "all");
        for (_, tally) in &pages {
            let _ = write!(out, "{:>11}", tally.total());
        }
        let _ = writeln!(
            out,
            "\n\n{:<12}{:>11}{:>11}{:>11}{:>11}",
            "latency", "p50", "p90", "p99", "max"
        );
        for (name, tally) in &pages {
            let _ = write!(out, "{name:<12}");
            match tally.percentiles_ms() {
                Some(values) => {
                    for ms in values {
                        let _ = write!(out, "{:>11}", bench::format_ms(ms));
                    }
                }
                None => {
                    let _ = write!(out, "{:>11}", "no answers");
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_requests_are_spread_evenly() {
        let slow = (0..20).filter(|i| is_slow(*i, 0.2)).count();
        assert_eq!(slow, 4);
        assert_eq!((0..10).filter(|i| is_slow(*i, 0.0)).count(), 0);
        assert_eq!((0..10).filter(|i| is_slow(*i, 1.0)).count(), 10);
    }

    #[test]
    fn durations_are_bounded_to_one_hour() {
        assert_eq!(duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(duration("0s").is_err());
        assert!(duration("2h").is_err());
    }

    #[test]
    fn rate_and_share_are_bounded() {
        assert!(rate("0").is_err());
        assert!(rate("ten").is_err());
        assert_eq!(rate("10"), Ok(10.0));
        assert!(share("1.5").is_err());
        assert_eq!(share("0.25"), Ok(0.25));
    }
}
