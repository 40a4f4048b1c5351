//! The HTTP server on its own listener, run until SIGTERM or SIGINT.
//!
//! actix-web's own signal handling treats SIGINT (a terminal's Ctrl-C) as a
//! forced shutdown, cutting off requests in flight. It is turned off here;
//! both signals drain instead: the first stops accepting and lets in-flight
//! requests finish within the grace period, a second one stops at once.

use std::fmt;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::Duration;

use actix_http::Request;
use actix_service::{IntoServiceFactory, Service, ServiceFactory};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Response, Server};
use actix_web::{Error, HttpServer};
use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::settings::ServerSettings;

/// How long an idle keep-alive connection stays open. It must outlast the
/// idle timeout of every client that pools connections to the service, so
/// that the client, never the server, closes an idle connection: when the
/// server closes one just as the client sends on it, that request fails
/// (an `IncompleteMessage` in hyper, a 503 UC in Envoy) although nothing is
/// wrong. actix-web's default of 5 s is below them all: the front-end's
/// pool (30 s, `front-end/src/backend.rs`) and the sidecars' pools, which
/// the chart's DestinationRules set to 30 s (Envoy's own default is 1 h).
/// A graceful stop closes idle connections at once, whatever this is.
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// A service, bound and ready to serve.
pub struct Running {
    name: &'static str,
    port: u16,
    grace_secs: u64,
    server: Server,
    signals: Signals,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("name", &self.name)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Binds `HOST:PORT` and builds the server from `factory` (an `App` per
/// worker). Call it inside the runtime; the caller logs its own
/// "`name` listening" line with `port()` once it is done.
pub fn start<F, I, S, B>(
    name: &'static str,
    settings: &ServerSettings,
    factory: F,
) -> anyhow::Result<Running>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    // Before anything can be in flight: a signal from now on drains.
    let signals = Signals::install().context("installing the SIGTERM/SIGINT handlers")?;
    let listener = TcpListener::bind((settings.host.as_str(), settings.port))
        .map_err(|error| anyhow::Error::msg(bind_failure(settings, &error)))?;
    let port = listener.local_addr()?.port();
    let mut server = HttpServer::new(factory);
    if settings.workers > 0 {
        server = server.workers(settings.workers);
    }
    let server = server
        .disable_signals()
        .keep_alive(KEEP_ALIVE)
        .shutdown_timeout(settings.shutdown_grace_period_secs)
        .listen(listener)?
        .run();
    Ok(Running {
        name,
        port,
        grace_secs: settings.shutdown_grace_period_secs,
        server,
        signals,
    })
}

/// Why the listener could not be opened, in one line that names the
/// variables to change: `PORT` (and `HOST` where the address is the problem).
fn bind_failure(settings: &ServerSettings, error: &std::io::Error) -> String {
    let (host, port) = (&settings.host, settings.port);
    let hint = match error.kind() {
        ErrorKind::AddrInUse => format!(
            "another program holds port {port}: stop it, or set PORT to a free port (PORT=0 picks one)"
        ),
        ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges: set PORT to 1024 or above".to_owned()
        }
        ErrorKind::AddrNotAvailable => {
            format!("{host} is not an address of this machine: set HOST to 0.0.0.0 or 127.0.0.1")
        }
        _ => "check HOST and PORT".to_owned(),
    };
    format!("cannot listen on {host}:{port} (HOST={host}, PORT={port}): {error}; {hint}")
}

impl Running {
    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until stopped. The first SIGTERM or SIGINT stops accepting
    /// and waits up to the grace period for in-flight requests; a second
    /// one stops at once.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            name,
            grace_secs,
            server,
            mut signals,
            ..
        } = self;
        let handle = server.handle();
        let (forced_tx, forced_rx) = tokio::sync::oneshot::channel::<&'static str>();
        tokio::spawn(async move {
            let first = signals.next().await;
            tracing::info!(
                signal = first,
                grace_period_s = grace_secs,
                "stopping: waiting up to {grace_secs} s for in-flight requests"
            );
            let graceful = handle.stop(true);
            tokio::select! {
                () = graceful => {}
                second = signals.next() => {
                    let _ = forced_tx.send(second);
                }
            }
        });
        let forced = async {
            match forced_rx.await {
                Ok(signal) => signal,
                // The graceful stop finished first; the server ends by itself.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            result = server => {
                result?;
                tracing::info!("{name} stopped");
            }
            signal = forced => {
                tracing::warn!(signal, "{name} stopped at once: second signal; requests still in flight are cut off");
            }
        }
        Ok(())
    }
}

/// SIGTERM and SIGINT, installed once.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next of either, by name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
