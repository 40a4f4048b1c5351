//! A server binary run as a real process on loopback: started with a clean
//! environment on port 0 (or a given port), optionally pinned to a CPU, its
//! output kept in memory (tests) or appended to a file (the bench, the way a
//! container runtime collects it). The port comes from the kernel's socket
//! table, readiness from `/readyz`, memory from `/proc`, signals from
//! `kill(2)`: nothing depends on the wording of a log line.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
pub use rustix::process::Signal;

use crate::os::{self, Memory};

/// Path of a workspace binary, built with cargo if it is not there yet
/// (`cargo nextest run --workspace` builds them all first).
pub fn binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<test binary> -> target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", name, "--bin", name])
            .status()
            .unwrap();
        assert!(status.success(), "building {name} failed");
    }
    path
}

/// `program` as a command, run on `cpu` through `taskset` when one is given
/// (taskset execs the program, so the child's pid is the program's).
pub fn on_cpu(cpu: Option<u32>, program: &Path) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// How a service is to be started; [`Launch::start`] starts it.
#[derive(Debug, Clone)]
pub struct Launch {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    port: u16,
    cpu: Option<u32>,
    log_file: Option<PathBuf>,
}

impl Launch {
    /// The workspace binary `name` (see [`binary`]).
    pub fn workspace(name: &str) -> Self {
        Self::program(name, &binary(name))
    }

    /// Any program, called `name` in messages.
    pub fn program(name: &str, program: &Path) -> Self {
        Self {
            name: name.to_owned(),
            program: program.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            port: 0,
            cpu: None,
            log_file: None,
        }
    }

    /// Adds environment variables (over a clean environment plus `PATH`,
    /// `HOST=127.0.0.1` and `PORT`); a `PORT` here sets the port.
    pub fn envs<K: AsRef<str>, V: AsRef<str>>(mut self, vars: &[(K, V)]) -> Self {
        for (key, value) in vars {
            let (key, value) = (key.as_ref(), value.as_ref());
            if key == "PORT" {
                self.port = value.parse().unwrap_or(0);
            } else {
                self.env.push((key.to_owned(), value.to_owned()));
            }
        }
        self
    }

    /// Command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Runs it on this CPU (`taskset -c`), or anywhere for `None`.
    pub fn cpu(mut self, cpu: Option<u32>) -> Self {
        self.cpu = cpu;
        self
    }

    /// Appends stdout and stderr to this file (emptied first) instead of
    /// keeping them in memory: for long runs that log a lot.
    pub fn log_file(mut self, path: &Path) -> Self {
        self.log_file = Some(path.to_owned());
        self
    }

    /// Spawns the process and waits (at most `limit`) until it listens;
    /// fails with its output if it exits or does not listen in time.
    pub fn start(self, limit: Duration) -> anyhow::Result<Service> {
        if !self.program.is_file() {
            bail!("{} not found; build it first", self.program.display());
        }
        let mut command = on_cpu(self.cpu, &self.program);
        command
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", self.port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        let output = match &self.log_file {
            Some(path) => {
                // Append mode, so the file can be emptied between runs while
                // the server goes on writing at the (new) end.
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .read(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                file.set_len(0)?;
                command.stdout(file.try_clone()?).stderr(file.try_clone()?);
                Output::File {
                    path: path.clone(),
                    file,
                }
            }
            None => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
                Output::Memory(Arc::default())
            }
        };
        // Built before the spawn, so that start-up timing does not include it.
        let probe = crate::http::probe_client(Duration::from_secs(2));
        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        if let Output::Memory(lines) = &output {
            let streams = [
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            ];
            for stream in streams.into_iter().flatten() {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        lines.lock().unwrap().push(line);
                    }
                });
            }
        }
        let mut service = Service {
            name: self.name,
            child,
            port: 0,
            output,
            probe,
            spawned,
        };
        service.port = service.wait_listening(self.port, limit)?;
        Ok(service)
    }
}

/// Where a service's output goes.
#[derive(Debug)]
enum Output {
    /// Lines collected by a reader thread per stream.
    Memory(Arc<Mutex<Vec<String>>>),
    /// A file the process appends to directly.
    File { path: PathBuf, file: File },
}

/// A running service; killed when dropped.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Child,
    port: u16,
    output: Output,
    probe: reqwest::Client,
    spawned: Instant,
}

impl Service {
    /// Starts workspace binary `name` on 127.0.0.1 port 0 (or `PORT` from
    /// `env`) with `env`, and waits until it listens; panics with its output
    /// otherwise. For tests.
    pub fn start(name: &str, env: &[(&str, String)]) -> Self {
        Launch::workspace(name)
            .envs(env)
            .start(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Polls the process's sockets every 2 ms until it listens (on `port`
    /// when not 0), for at most `limit`.
    fn wait_listening(&mut self, port: u16, limit: Duration) -> anyhow::Result<u16> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = os::listening_port(self.pid()) {
                if port != 0 && found != port {
                    bail!("{} listens on {found}, not on {port}", self.name);
                }
                return Ok(found);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{} exited ({status}):\n{}", self.name, self.log_tail(40));
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} not listening after {limit:?}:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/readyz` every 2 ms, each time over a fresh connection, until
    /// it answers 200, and returns the time since the process was spawned;
    /// fails after `limit` (counted from the spawn) or if the process exits,
    /// with the end of its output.
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        let url = self.url("/readyz");
        let deadline = self.spawned + limit;
        while Instant::now() < deadline {
            if crate::http::status_with(&self.probe, &url).await == Some(200) {
                return Ok(self.spawned.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{} exited ({status}):\n{}", self.name, self.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        bail!(
            "{} not ready after {limit:?}:\n{}",
            self.name,
            self.log_tail(40)
        )
    }

    /// Every line printed so far (stdout and stderr).
    pub fn logs(&self) -> Vec<String> {
        match &self.output {
            Output::Memory(lines) => lines.lock().unwrap().clone(),
            Output::File { path, .. } => std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect(),
        }
    }

    /// The last `n` lines printed, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let logs = self.logs();
        logs[logs.len().saturating_sub(n)..].join("\n")
    }

    /// Forgets the output so far (the process goes on printing).
    pub fn clear_logs(&self) -> anyhow::Result<()> {
        match &self.output {
            Output::Memory(lines) => lines.lock().unwrap().clear(),
            Output::File { file, .. } => file.set_len(0)?,
        }
        Ok(())
    }

    /// Waits (bounded) for a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> Option<String> {
        crate::wait_until(limit, || {
            self.logs().into_iter().find(|line| line.contains(needle))
        })
    }

    /// Sends `signal` (`Signal::TERM`, `Signal::INT`, `Signal::KILL`).
    pub fn signal(&self, signal: Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("signalling {}: {e}", self.name));
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        crate::wait_until(limit, || child.try_wait().ok().flatten())
    }

    /// Resident memory now (zeros once the process is gone).
    pub fn memory(&self) -> Memory {
        os::memory_of(self.pid()).unwrap_or_default()
    }

    /// Established connections it has accepted on its port (see
    /// [`os::connections_on`]).
    pub fn connections(&self) -> usize {
        os::connections_on(self.pid(), self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
