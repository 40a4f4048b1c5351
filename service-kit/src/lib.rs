//! The skeleton both services share, so each keeps only its own settings
//! and routes:
//!
//! - [`settings`]: `HOST`, `PORT`, `SHUTDOWN_GRACE_PERIOD_SECS`, `WORKERS`,
//!   the figment reader each service's own settings use, and [`redact`] for
//!   URLs that carry a password;
//! - [`server`]: the HTTP server on its own listener (port 0 works, for
//!   tests), stopped gracefully by SIGTERM or SIGINT (a second one forces it);
//! - [`middleware`]: the request middleware both services wrap their `App`
//!   in, in one order: the request's root span and log line
//!   ([`middleware::root_span`]), the `traceresponse` header
//!   ([`middleware::traceresponse`]), request metrics with exemplars
//!   ([`middleware::metrics`]; a service adds its own histograms with
//!   [`Stack::histogram`]), the service's response headers, its error
//!   mapping, and 431 for a header block over 60 KiB
//!   ([`middleware::header_limit`]);
//! - [`run`]: `main`'s flow, settings → telemetry → build → serve → flush.
//!
//! Process-wide set-up (log lines, span export, propagation) is the
//! `telemetry` crate's; what needs actix-web is here.

pub mod middleware;
pub mod server;
pub mod settings;

use std::future::Future;
use std::process::ExitCode;

pub use middleware::header_limit::{HeadersTooLarge, MAX_HEADER_BYTES};
pub use middleware::metrics::{Histogram, HistogramSpec};
pub use middleware::{ServiceError, Stack};
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

    /// `HOST`, `PORT`, `SHUTDOWN_GRACE_PERIOD_SECS`, `WORKERS`.
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
/// queued. An error before or while serving (a bad setting, a port in use)
/// ends the process with exit status 1 and one line on stderr, the service's
/// name and the error with its causes, never a backtrace (whatever
/// `RUST_BACKTRACE` says): the message names the variable to change.
pub fn run<S, B, F>(settings: anyhow::Result<S>, build: B) -> ExitCode
where
    S: ServiceSettings,
    B: FnOnce(S) -> F,
    F: Future<Output = anyhow::Result<Running>>,
{
    match serve(settings, build) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr)] // the process's last word, telemetry or not
            {
                eprintln!("{}: {error:#}", S::SERVICE_NAME);
            }
            ExitCode::FAILURE
        }
    }
}

fn serve<S, B, F>(settings: anyhow::Result<S>, build: B) -> anyhow::Result<()>
where
    S: ServiceSettings,
    B: FnOnce(S) -> F,
    F: Future<Output = anyhow::Result<Running>>,
{
    let settings = settings?;
    let telemetry = telemetry::init(settings.telemetry())?;
    actix_web::rt::System::new().block_on(async {
        let running = build(settings).await?;
        running.run_until_stopped().await?;
        anyhow::Ok(())
    })?;
    telemetry.shutdown();
    Ok(())
}
