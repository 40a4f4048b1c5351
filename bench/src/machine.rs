//! What the benchmark ran on: CPU model, CPU count, memory, kernel, date.

use std::process::Command;

use procfs::Current;
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
        let cpuinfo = procfs::CpuInfo::current().ok();
        let cpu_model = cpuinfo
            .as_ref()
            .and_then(|c| c.model_name(0))
            .map_or_else(|| "unknown".to_owned(), |m| m.trim().to_owned());
        let memory_mib = procfs::Meminfo::current().map_or(0, |m| m.mem_total / (1024 * 1024));
        let kernel = procfs::sys::kernel::Version::current().map_or_else(
            |_| "unknown".to_owned(),
            |v| format!("Linux {}.{}.{}", v.major, v.minor, v.patch),
        );
        Self {
            cpu_model,
            cpus: cpuinfo.map_or(1, |c| c.num_cores().max(1)),
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
