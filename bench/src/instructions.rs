//! CPU work per request, in instructions: a figure a busy machine does not
//! move. Each service runs under a counter; after a bounded warm-up the
//! counts are zeroed (callgrind) or a counter is attached (perf), a fixed
//! number of requests goes through one keep-alive connection, and the
//! instructions each process executed meanwhile are divided by the requests.
//!
//! `perf stat -e instructions:u` is preferred where the kernel lets it count
//! (it runs the services natively); otherwise `valgrind --tool=callgrind`,
//! which counts every instruction of every thread in user space (threads run
//! one at a time, about fifty times slower), read through
//! `callgrind_control -z` (zero) and `--dump`. Both count user-space
//! instructions only, so the two methods give comparable figures; the
//! kernel's share (sockets, futexes) is not in them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use test_support::service::{Launch, Service, Signal};

/// How instructions are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// `perf stat -e instructions:u -p PID`, attached to the native process.
    Perf,
    /// The process runs under `valgrind --tool=callgrind --vgdb=yes`.
    Callgrind,
}

impl Counter {
    /// perf when it counts instructions here, else callgrind when valgrind
    /// and `callgrind_control` are installed, else none.
    pub fn detect() -> Option<Self> {
        if perf_counts_instructions() {
            Some(Self::Perf)
        } else if runs("valgrind", &["--version"]) && runs("callgrind_control", &["--version"]) {
            Some(Self::Callgrind)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Perf => "perf stat -e instructions:u",
            Self::Callgrind => "valgrind --tool=callgrind",
        }
    }

    /// How to start `binary` so that this counter can count it.
    pub fn launch(self, name: &str, binary: &Path, dumps: &Path) -> Launch {
        match self {
            Self::Perf => Launch::program(name, binary),
            Self::Callgrind => {
                let out = dumps.join(format!("{name}.callgrind.%p"));
                // Launch wants a path; detect() found valgrind on PATH.
                let valgrind =
                    crate::load_tool::which("valgrind").unwrap_or_else(|| "valgrind".into());
                Launch::program(name, &valgrind).args(&[
                    "--tool=callgrind",
                    "--vgdb=yes",
                    &format!("--callgrind-out-file={}", out.display()),
                    &binary.display().to_string(),
                ])
            }
        }
    }

    /// Starts counting the service's instructions from now on.
    pub fn start(self, service: &Service, dumps: &Path) -> anyhow::Result<Counting> {
        match self {
            Self::Perf => {
                let child = Command::new("perf")
                    .args(["stat", "-x", ",", "-e", "instructions:u", "-p"])
                    .arg(service.pid().to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("starting perf stat")?;
                // perf attaches to every thread of the process before it
                // counts; give it that moment (it says nothing when ready).
                std::thread::sleep(Duration::from_millis(300));
                Ok(Counting::Perf(child))
            }
            Self::Callgrind => {
                callgrind_control("-z", service.pid())?;
                // Callgrind numbers a process's dumps 1, 2, ...: the next one is ours.
                let prefix = format!("{}.callgrind.{}.", service.name(), service.pid());
                let earlier = std::fs::read_dir(dumps)?
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .count();
                Ok(Counting::Callgrind {
                    pid: service.pid(),
                    dump: dumps.join(format!("{prefix}{}", earlier + 1)),
                })
            }
        }
    }
}

/// A count in progress for one process.
#[derive(Debug)]
pub enum Counting {
    Perf(Child),
    Callgrind { pid: u32, dump: PathBuf },
}

impl Counting {
    /// Stops counting and returns the instructions counted since `start`.
    pub fn finish(self) -> anyhow::Result<u64> {
        match self {
            Self::Perf(child) => {
                let pid = rustix::process::Pid::from_child(&child);
                rustix::process::kill_process(pid, Signal::INT)?;
                let output = child.wait_with_output()?;
                let text = String::from_utf8_lossy(&output.stderr);
                parse_perf_csv(&text)
                    .with_context(|| format!("perf stat printed no instruction count:\n{text}"))
            }
            Self::Callgrind { pid, dump } => {
                callgrind_control("--dump", pid)?;
                // The dump is written by the process itself, a moment later.
                for _ in 0..600 {
                    if let Ok(text) = std::fs::read_to_string(&dump)
                        && let Some(total) = parse_callgrind_totals(&text)
                    {
                        return Ok(total);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                bail!("no callgrind dump at {} after 60 s", dump.display())
            }
        }
    }
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `perf stat` counts user-space instructions here: not in most
/// containers and VMs, where it prints `<not supported>` or is not permitted.
fn perf_counts_instructions() -> bool {
    let Ok(output) = Command::new("perf")
        .args(["stat", "-x", ",", "-e", "instructions:u", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    else {
        return false;
    };
    output.status.success()
        && parse_perf_csv(&String::from_utf8_lossy(&output.stderr)).is_some_and(|n| n > 0)
}

/// The count from `perf stat -x ,` output: the line whose third field is
/// the event, `12345,,instructions:u,...`; none for `<not supported>` or
/// `<not counted>`.
pub fn parse_perf_csv(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut fields = line.split(',');
        let value = fields.next()?.trim();
        let _unit = fields.next()?;
        let event = fields.next()?.trim();
        event
            .starts_with("instructions")
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// `totals:` (or, in older dumps, `summary:`) of a callgrind dump: the
/// instructions (event `Ir`, the first) over the dumped interval.
pub fn parse_callgrind_totals(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with("totals:"))
        .or_else(|| text.lines().find(|l| l.starts_with("summary:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `callgrind_control FLAG PID`. vgdb finds a process through pipes named
/// after `$USER` and `$HOST`; the services run with a clean environment
/// (`HOST=127.0.0.1`, no `USER`), so this runs with the same.
fn callgrind_control(flag: &str, pid: u32) -> anyhow::Result<()> {
    let output = Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .context("running callgrind_control")?;
    if !output.status.success() {
        bail!(
            "callgrind_control {flag} {pid} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv_counts_and_refusals() {
        // perf 6.x: value, unit, event, run time, share, [metric, metric unit]
        let counted = "1234567,,instructions:u,1000000,100.00,,\n";
        assert_eq!(parse_perf_csv(counted), Some(1_234_567));
        assert_eq!(
            parse_perf_csv("<not supported>,,instructions:u,0,100.00,,\n"),
            None
        );
        assert_eq!(
            parse_perf_csv("<not counted>,,instructions:u,0,0.00,,\n"),
            None
        );
        assert_eq!(parse_perf_csv("Error:\nNo permission\n"), None);
    }

    #[test]
    fn callgrind_totals_from_a_dump() {
        let dump = "# callgrind format\nversion: 1\ncreator: callgrind-3.24.0\n\
                    cmd: business-logic\npart: 1\n\nevents: Ir\n\nfl=(1) x.rs\nfn=(1) f\n12 300\n\n\
                    totals: 987654321\n";
        assert_eq!(parse_callgrind_totals(dump), Some(987_654_321));
        assert_eq!(
            parse_callgrind_totals("events: Ir\nsummary: 42\n"),
            Some(42)
        );
        assert_eq!(parse_callgrind_totals("events: Ir\n"), None);
    }
}
