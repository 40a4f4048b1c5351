//! A stand-in Zipkin receiver that accepts span batches and counts them,
//! cheaply: the benchmark wants the services to pay the full cost of
//! exporting every span, not the receiver's cost of checking them (the
//! integration tests' collector in `test-support` does that).

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use serde::de::IgnoredAny;

#[derive(Debug, Default)]
struct Counts {
    spans: AtomicU64,
    batches: AtomicU64,
    rejected: AtomicU64,
}

/// The receiver, on its own thread with one worker; stops when dropped.
#[derive(Debug)]
pub struct SpanCounter {
    port: u16,
    counts: Arc<Counts>,
    handle: actix_web::dev::ServerHandle,
}

impl SpanCounter {
    /// Starts on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the span counter")?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let server_counts = counts.clone();
        std::thread::Builder::new()
            .name("span-counter".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let data = web::Data::from(server_counts);
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .app_data(web::PayloadConfig::new(32 * 1024 * 1024))
                            .route("/api/v2/spans", web::post().to(zipkin))
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
        let handle = rx
            .recv_timeout(Duration::from_secs(10))
            .context("the span counter did not start")??;
        Ok(Self {
            port,
            counts,
            handle,
        })
    }

    /// The URL for `OTEL_EXPORTER_ZIPKIN_ENDPOINT`.
    pub fn zipkin_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/api/v2/spans", self.port)
    }

    /// Spans received so far.
    pub fn spans(&self) -> u64 {
        self.counts.spans.load(Ordering::Relaxed)
    }

    /// Export requests received so far.
    pub fn batches(&self) -> u64 {
        self.counts.batches.load(Ordering::Relaxed)
    }

    /// Batches that were not a JSON array (answered 400).
    pub fn rejected(&self) -> u64 {
        self.counts.rejected.load(Ordering::Relaxed)
    }
}

impl Drop for SpanCounter {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn zipkin(counts: web::Data<Counts>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Vec<IgnoredAny>>(&body) {
        Ok(spans) => {
            counts
                .spans
                .fetch_add(spans.len() as u64, Ordering::Relaxed);
            counts.batches.fetch_add(1, Ordering::Relaxed);
            HttpResponse::Accepted().finish()
        }
        Err(_) => {
            counts.rejected.fetch_add(1, Ordering::Relaxed);
            HttpResponse::BadRequest().finish()
        }
    }
}
