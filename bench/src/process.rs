//! Server processes for the benchmark: started on a chosen loopback port,
//! optionally pinned to a CPU with `taskset`, their stdout and stderr
//! appended to a log file (the way a container runtime collects them), and
//! measured through `/proc`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

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

    /// A command that runs `program` on the servers' CPU.
    pub fn server_command(&self, program: &Path) -> Command {
        match self {
            Self::Pinned { servers, .. } => on_cpu(*servers, program),
            Self::None => Command::new(program),
        }
    }

    /// A command that runs `program` on the load generator's CPU.
    pub fn load_command(&self, program: &Path) -> Command {
        match self {
            Self::Pinned { load, .. } => on_cpu(*load, program),
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

/// `taskset -c CPU PROGRAM`: taskset execs the program, so the child's pid is the program's.
fn on_cpu(cpu: u32, program: &Path) -> Command {
    let mut command = Command::new("taskset");
    command.arg("-c").arg(cpu.to_string()).arg(program);
    command
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident size so far.
    pub hwm_kib: u64,
    /// `RssAnon`: the part of `VmRSS` that is the process's own memory
    /// (heap, stacks); the rest is files mapped in, mostly the binary's code.
    pub anon_kib: u64,
}

/// Reads `VmRSS`, `VmHWM` and `RssAnon` of `pid` from `/proc/<pid>/status`.
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:")?,
    })
}

/// One server process; killed when dropped.
#[derive(Debug)]
pub struct Server {
    name: String,
    child: Child,
    port: u16,
    log_path: PathBuf,
    log: File,
    spawned: Instant,
}

impl Server {
    /// Starts `binary` with `args` and a clean environment (PATH plus
    /// `env`), `HOST` 127.0.0.1 and a free `PORT`, its output appended to
    /// `log_path`.
    pub fn start(
        name: &str,
        binary: &Path,
        pinning: &Pinning,
        env: &[(&str, String)],
        args: &[&str],
        log_path: &Path,
    ) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!("{} not found; build it first", binary.display());
        }
        let port = free_port()?;
        // Append mode, so the harness can truncate the file between runs
        // while the server keeps writing at the (new) end.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        log.set_len(0)?;
        let mut command = pinning.server_command(binary);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?);
        let spawned = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            port,
            log_path: log_path.to_owned(),
            log,
            spawned,
        })
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now (zeros if the process is gone).
    pub fn memory(&self) -> Memory {
        memory_of(self.pid()).unwrap_or_default()
    }

    /// Polls `/readyz` every 2 ms until it answers 200 and returns the time
    /// since the process was spawned; fails after `limit` or if the process
    /// exits, with the end of its log.
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        let url = self.url("/readyz");
        let deadline = self.spawned + limit;
        while Instant::now() < deadline {
            if http_status(&url).await == Some(200) {
                return Ok(self.spawned.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{} exited ({status}):\n{}", self.name, self.log_tail(2000));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        bail!(
            "{} not ready after {limit:?}:\n{}",
            self.name,
            self.log_tail(2000)
        )
    }

    /// Empties the log file (the server goes on appending to it).
    pub fn truncate_log(&self) -> anyhow::Result<()> {
        self.log.set_len(0)?;
        Ok(())
    }

    /// How many lines logged since the last truncation contain `needle`.
    pub fn count_log_lines(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log_path).map_or(0, |text| {
            text.lines().filter(|l| l.contains(needle)).count()
        })
    }

    /// The last `bytes` of the log, for error messages.
    pub fn log_tail(&self, bytes: u64) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let len = file.metadata().map_or(0, |m| m.len());
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-shot `GET` over a fresh connection, returning the status code
/// (`None` when nothing answers). No client library: a refused connection
/// costs microseconds, which keeps start-up timing honest.
pub async fn http_status(url: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(authority),
    )
    .await
    .ok()?
    .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split(' ').nth(1)?.parse().ok()
}
