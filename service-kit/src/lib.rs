//! The skeleton both services share, so each keeps only its own settings
//! and routes:
//!
//! - [`settings`]: `HOST`, `PORT`, `SHUTDOWN_GRACE_PERIOD_SECS`, and the
//!   figment reader each service's own settings use;
//! - [`server`]: the HTTP server on its own listener (port 0 works, for
//!   tests), stopped gracefully by SIGTERM or SIGINT (a second one forces it);
//! - [`mod@header_limit`]: 431 for a request whose header block exceeds 60 KiB;
//! - [`run`]: `main`'s flow, settings → telemetry → build → serve → flush.

pub mod header_limit;
pub mod server;
pub mod settings;

use std::future::Future;

pub use header_limit::{HeadersTooLarge, MAX_HEADER_BYTES, header_limit};
pub use server::Running;
pub use settings::{ServerSettings, read_env};

/// A service's settings as the skeleton needs them.
pub trait ServiceSettings {
    /// `HOST`, `PORT`, `SHUTDOWN_GRACE_PERIOD_SECS`.
    fn server(&self) -> &ServerSettings;
    /// `OTEL_*`, `RUST_LOG`, `LOG_FORMAT`, `METRICS_ENABLED`.
    fn telemetry(&self) -> &telemetry::TelemetrySettings;
}

/// A service's `main`: reads its settings, sets up telemetry, builds the
/// service, serves until a signal stops it, then flushes the spans still
/// queued. Errors before serving (a bad setting, a port in use) end the
/// process with the message and exit status 1.
pub fn run<S, B, F>(settings: anyhow::Result<S>, build: B) -> anyhow::Result<()>
where
    S: ServiceSettings,
    B: FnOnce(S) -> F,
    F: Future<Output = anyhow::Result<Running>>,
{
    let settings = settings?;
    let telemetry = telemetry::init(settings.telemetry(), std::io::stdout)?;
    actix_web::rt::System::new().block_on(async {
        let running = build(settings).await?;
        running.run_until_stopped().await?;
        anyhow::Ok(())
    })?;
    telemetry.shutdown();
    Ok(())
}
