//! Where the benchmark's processes run: the servers on one CPU, the load
//! generator and the harness on another, through `taskset`.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use test_support::service::on_cpu;

/// CPU placement of the servers and the load generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinning {
    /// Servers on `servers`, load generator (and the harness) on `load`.
    Pinned { servers: u32, load: u32 },
    /// One CPU, or no `taskset`: everything shares the machine.
    None,
}

impl Pinning {
    /// Servers on CPU 0 and the load on CPU 1 when there are two CPUs and
    /// `taskset` exists; otherwise none.
    pub fn detect(disabled: bool) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let taskset = Command::new("taskset")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if disabled || cpus < 2 || !taskset {
            Self::None
        } else {
            Self::Pinned {
                servers: 0,
                load: 1,
            }
        }
    }

    /// The servers' CPU, if pinned.
    pub fn servers_cpu(&self) -> Option<u32> {
        match self {
            Self::Pinned { servers, .. } => Some(*servers),
            Self::None => None,
        }
    }

    /// A command that runs `program` on the load generator's CPU.
    pub fn load_command(&self, program: &Path) -> Command {
        match self {
            Self::Pinned { load, .. } => on_cpu(Some(*load), program),
            Self::None => Command::new(program),
        }
    }

    /// Moves this process (every thread it has now, and so the threads it
    /// starts later) to the load generator's CPU.
    pub fn pin_self(&self) -> anyhow::Result<()> {
        if let Self::Pinned { load, .. } = self {
            let status = Command::new("taskset")
                .args(["-a", "-p", "-c", &load.to_string()])
                .arg(std::process::id().to_string())
                .stdout(Stdio::null())
                .status()
                .context("running taskset")?;
            if !status.success() {
                bail!("taskset could not pin the harness to CPU {load}");
            }
        }
        Ok(())
    }

    /// For the report: "servers on CPU 0, load generator on CPU 1" or "not pinned".
    pub fn describe(&self) -> String {
        match self {
            Self::Pinned { servers, load } => {
                format!("servers on CPU {servers}, load generator on CPU {load} (taskset)")
            }
            Self::None => "not pinned (fewer than 2 CPUs or no taskset)".to_owned(),
        }
    }
}
