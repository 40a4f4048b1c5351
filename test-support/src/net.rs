//! Network stand-ins the fault tests control: a TCP proxy that can stop
//! forwarding and cut its connections, a server that accepts and never
//! answers, and a raw HTTP/1.1 exchange for requests a client library
//! refuses to send.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A TCP proxy on a loopback port in front of `target`. While not
/// forwarding it accepts and immediately closes connections (the client sees
/// the peer hang up, as with a database that is not up yet).
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    forwarding: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl TcpProxy {
    pub fn start(target: SocketAddr, forwarding: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = Self {
            addr,
            forwarding: Arc::new(AtomicBool::new(forwarding)),
            open: Arc::default(),
            stop: Arc::default(),
        };
        let (fwd, open, stop) = (
            proxy.forwarding.clone(),
            proxy.open.clone(),
            proxy.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                if !fwd.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut open = open.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        proxy
    }

    /// The proxy's address, to put in a URL.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts forwarding new connections.
    pub fn forward(&self) {
        self.forwarding.store(true, Ordering::SeqCst);
    }

    /// Stops forwarding and cuts every open connection.
    pub fn cut(&self) {
        self.forwarding.store(false, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Accepts connections and reads requests but never answers: a collector
/// that hangs.
#[derive(Debug)]
pub struct Blackhole {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Blackhole {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let keep = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let mut reader = stream.try_clone().unwrap();
                keep.lock().unwrap().push(stream);
                // Drain what is sent so the sender is not blocked on a full buffer.
                std::thread::spawn(move || {
                    let mut sink = [0u8; 16 * 1024];
                    while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        });
        Self { addr, held }
    }

    /// Its base URL, for [`crate::collector::exporter_env`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections it has swallowed.
    pub fn connections(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

/// A port on which nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `request` as-is (it should say `Connection: close`) and returns the
/// status code and the lower-cased response head (`None` if the server
/// closed the connection without a status line).
pub fn raw_http(port: u16, request: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    // The server may answer and close before reading everything (a header
    // block too large); what it answered still counts.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") && response.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&response).to_lowercase();
    let head = text.split("\r\n\r\n").next()?.to_owned();
    let status = head.strip_prefix("http/1.1 ")?.get(..3)?.parse().ok()?;
    Some((status, head))
}

/// Runs an actix-web app (one worker, no signal handling) on `listener` on
/// a thread and runtime of its own, named `name`: the stand-ins that speak
/// HTTP (the collector, the B3 proxy) run so, beside any test runtime.
/// Returns once the server listens; the handle stops it.
pub(crate) fn serve_on_own_thread<F>(
    name: &str,
    listener: TcpListener,
    configure: F,
) -> anyhow::Result<actix_web::dev::ServerHandle>
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
{
    use anyhow::Context;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = actix_web::HttpServer::new(move || {
                    actix_web::App::new().configure(configure.clone())
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .map(|server| server.run());
                match server {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.handle()));
                        let _ = server.await;
                    }
                    Err(error) => {
                        let _ = tx.send(Err(error));
                    }
                }
            });
        })?;
    rx.recv_timeout(Duration::from_secs(10))
        .with_context(|| format!("the {name} did not start"))?
        .with_context(|| format!("starting the {name}"))
}
