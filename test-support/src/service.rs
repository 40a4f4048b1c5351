//! A service binary run as a real process on a free port, its stdout
//! collected line by line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// A running service; killed when dropped.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts binary `name` on 127.0.0.1 port 0 with `env` (over a clean
    /// environment plus PATH) and waits until it logs the port it listens on.
    pub fn start(name: &str, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary(name));
        // Services started with PORT set keep it (a restart on the same port).
        let port = env
            .iter()
            .find(|(k, _)| *k == "PORT")
            .map_or("0".to_owned(), |(_, v)| v.clone());
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", &port)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env.iter().filter(|(k, _)| *k != "PORT") {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut service = Self {
            name: name.to_owned(),
            child,
            port: 0,
            lines,
        };
        let port = crate::wait_until(Duration::from_secs(30), || {
            service.logs().iter().find_map(|line| listening_port(line))
        });
        service.port = port.unwrap_or_else(|| {
            panic!(
                "{name} did not report a port; exit: {:?}; output:\n{}",
                service.child.try_wait(),
                service.logs().join("\n")
            )
        });
        service
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every line printed so far (stdout and stderr).
    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (bounded) for a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> Option<String> {
        crate::wait_until(limit, || {
            self.logs().into_iter().find(|line| line.contains(needle))
        })
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub async fn wait_ready(&self, limit: Duration) {
        let client = reqwest_free_get;
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if client(&self.url("/readyz")).await == Some(200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{} not ready after {limit:?}:\n{}",
            self.name,
            self.logs().join("\n")
        );
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        crate::wait_until(limit, || child.try_wait().ok().flatten())
    }

    /// Process id, for reading /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now and at its peak, in KiB (Linux `/proc`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in a service's "listening" log line, text or JSON.
fn listening_port(line: &str) -> Option<u16> {
    if !line.contains(" listening") {
        return None;
    }
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["fields"]["port"].as_u64()?.try_into().ok();
    }
    line.split_once(" port=")?.1.split(' ').next()?.parse().ok()
}

/// A dependency-free HTTP GET returning the status code, for readiness polls.
async fn reqwest_free_get(url: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 64];
    let n = stream.read(&mut buf).await.ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split(' ').nth(1)?.parse().ok()
}
