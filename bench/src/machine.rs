//! What the benchmark ran on: CPU model, CPU count, memory, kernel, date.

use std::process::Command;

use serde::Serialize;

/// The machine, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    /// CPUs the machine has online (the harness pins itself to one of
    /// them, so not what this process may run on).
    pub cpus: usize,
    pub memory_mib: u64,
    pub kernel: String,
    /// UTC, ISO 8601.
    pub date: String,
    pub rustc: String,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib / 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |k| format!("Linux {}", k.trim()));
        Self {
            cpu_model,
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count()
                .max(1),
            memory_mib,
            kernel,
            date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
                .unwrap_or_else(|| "unknown".to_owned()),
            rustc: command_output("rustc", &["--version"]).unwrap_or_else(|| "unknown".to_owned()),
        }
    }

    /// One line: "AMD EPYC, 2 CPUs, 24 GiB, Linux 6.18".
    pub fn summary(&self) -> String {
        format!(
            "{}, {} CPUs, {:.0} GiB RAM, {}",
            self.cpu_model,
            self.cpus,
            self.memory_mib as f64 / 1024.0,
            self.kernel
        )
    }
}

/// The first line a command prints (stdout, else stderr), if it runs.
pub fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}
