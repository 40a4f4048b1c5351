//! The skeleton both services share, so each keeps only its own settings
//! and routes:
//!
//! - [`settings`]: `HOST`, `PORT`, `SHUTDOWN_GRACE_PERIOD_SECS`, the
//!   figment reader each service's own settings use, and [`redact`] for
//!   URLs that carry a password;
//! - [`server`]: the HTTP server on its own listener (port 0 works, for
//!   tests), stopped gracefully by SIGTERM or SIGINT (a second one forces it);
//! - [`mod@header_limit`]: 431 for a request whose header block exceeds 60 KiB;
//! - [`run`]: `main`'s flow, settings → telemetry → build → serve → flush.

pub mod header_limit;
pub mod server;
pub mod settings;

use std::future::Future;

pub use header_limit::{HeadersTooLarge, MAX_HEADER_BYTES, header_limit};
pub use server::{KEEP_ALIVE, Running};
pub use settings::{ServerSettings, read_env, read_env_with_text, redact};

/// A service's settings as the skeleton needs them: its own variables,
/// plus the server and telemetry parts the kit and the telemetry crate read.
pub trait ServiceSettings: Default + serde::Serialize + serde::de::DeserializeOwned {
    /// The default `OTEL_SERVICE_NAME`.
    const SERVICE_NAME: &'static str;
    /// The default `PORT`.
    const DEFAULT_PORT: u16;
    /// The service's own variables (field names lower-cased), read with figment.
    const ENV_VARS: &'static [&'static str];
    /// Variables taken verbatim as text (see [`read_env_with_text`]).
    const TEXT_VARS: &'static [&'static str] = &[];

    /// `HOST`, `PORT`, `SHUTDOWN_GRACE_PERIOD_SECS`.
    fn server(&self) -> &ServerSettings;
    /// `OTEL_*`, `RUST_LOG`, `LOG_FORMAT`, `METRICS_ENABLED`.
    fn telemetry(&self) -> &telemetry::TelemetrySettings;
    /// Keeps the server and telemetry settings the kit has read.
    fn set_common(&mut self, server: ServerSettings, telemetry: telemetry::TelemetrySettings);
    /// Checks the service's own values; the error names the variable, the
    /// value and what is allowed.
    fn validate(&self) -> Result<(), String>;
}

/// Reads a service's settings once from the environment over its defaults
/// (its own variables, then the server's and telemetry's) and validates them.
pub fn load_settings<S: ServiceSettings>() -> anyhow::Result<S> {
    let mut settings: S = read_env_with_text(S::default(), S::ENV_VARS, S::TEXT_VARS)?;
    settings.set_common(
        ServerSettings::from_env(S::DEFAULT_PORT)?,
        telemetry::TelemetrySettings::from_env(S::SERVICE_NAME)?,
    );
    settings.validate().map_err(anyhow::Error::msg)?;
    Ok(settings)
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
    let telemetry = telemetry::init_stdout(settings.telemetry())?;
    actix_web::rt::System::new().block_on(async {
        let running = build(settings).await?;
        running.run_until_stopped().await?;
        anyhow::Ok(())
    })?;
    telemetry.shutdown();
    Ok(())
}
