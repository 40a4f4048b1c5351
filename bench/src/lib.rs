//! The benchmark harness behind `make bench` (binary `bench`), the ceiling
//! it compares against (binary `ceiling`), and the walkthrough's traffic
//! generator behind `make load` (binary `load`). Processes, probes, memory
//! and the stand-in collector come from the shared harness, `test-support`.

pub mod instructions;
pub mod load_tool;
pub mod machine;
pub mod pinning;
pub mod report;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The binaries under test: the services and the ceiling, side by side.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub front_end: PathBuf,
    pub business_logic: PathBuf,
    pub ceiling: PathBuf,
}

impl Binaries {
    /// In `bin_dir`, or next to the running binary.
    pub fn locate(bin_dir: Option<&Path>) -> anyhow::Result<Self> {
        let dir = match bin_dir {
            Some(dir) => dir.to_owned(),
            None => std::env::current_exe()?
                .parent()
                .context("the harness binary has no directory")?
                .to_owned(),
        };
        let found = Self {
            front_end: dir.join("front-end"),
            business_logic: dir.join("business-logic"),
            ceiling: dir.join("ceiling"),
        };
        for path in [&found.front_end, &found.business_logic, &found.ceiling] {
            if !path.is_file() {
                bail!(
                    "{} not found; build it first: cargo build --release -p front-end -p business-logic -p bench",
                    path.display()
                );
            }
        }
        Ok(found)
    }
}

/// The cluster's settings for both services (see helm/app), with spans
/// going over OTLP (the default exporter) to the stand-in collector at
/// `collector_url` (`http://host:port`; the Zipkin endpoint points there
/// too, for settings that choose it). `instrumented: false` turns span
/// export and metrics off and nothing else; `rust_log` is `info` but for
/// the log-line pair.
pub fn service_env(
    instrumented: bool,
    rust_log: &str,
    collector_url: &str,
) -> Vec<(&'static str, String)> {
    let (exporter, metrics) = if instrumented {
        ("otlp", "true")
    } else {
        ("none", "false")
    };
    let mut env = vec![
        ("RUST_LOG", rust_log.to_owned()),
        ("LOG_FORMAT", "text".to_owned()),
        ("OTEL_TRACES_EXPORTER", exporter.to_owned()),
        ("METRICS_ENABLED", metrics.to_owned()),
    ];
    env.extend(test_support::collector::exporter_env(collector_url));
    env
}

/// The median of `values` (the mean of the middle two for an even count);
/// `NaN` when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// A duration in milliseconds for people: `0.42 ms`, `12.3 ms`, `3.01 s`.
pub fn format_ms(ms: f64) -> String {
    if ms.is_nan() {
        "n/a".to_owned()
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn milliseconds_read_well() {
        assert_eq!(format_ms(0.4234), "0.42 ms");
        assert_eq!(format_ms(12.34), "12.3 ms");
        assert_eq!(format_ms(250.4), "250 ms");
        assert_eq!(format_ms(3012.0), "3.01 s");
    }
}
