//! Server settings, and the one way the services read their own settings
//! from the environment.

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest grace period a service accepts, in seconds.
pub const MAX_GRACE_PERIOD_SECS: u64 = 3600;

/// The most HTTP workers a service accepts.
pub const MAX_WORKERS: usize = 256;

/// Where a service listens and how long it lets requests finish when
/// stopped; field names are the environment variables, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ServerSettings {
    /// `HOST`: address to listen on.
    pub host: String,
    /// `PORT`: port to listen on (0 picks a free one).
    pub port: u16,
    /// `SHUTDOWN_GRACE_PERIOD_SECS`: how long in-flight requests may finish
    /// after SIGTERM or SIGINT.
    pub shutdown_grace_period_secs: u64,
    /// `WORKERS`: how many HTTP workers (threads, each with its own event
    /// loop and its own outbound connections) serve requests; 0 means one
    /// per CPU core, actix-web's default.
    pub workers: usize,
}

impl ServerSettings {
    /// The defaults: all interfaces, `default_port`, 20 s grace.
    pub fn with_port(default_port: u16) -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: default_port,
            shutdown_grace_period_secs: 20,
            workers: 0,
        }
    }

    /// Reads `HOST`, `PORT`, `SHUTDOWN_GRACE_PERIOD_SECS` and `WORKERS`
    /// over the defaults and validates them.
    pub fn from_env(default_port: u16) -> anyhow::Result<Self> {
        let settings = read_env(
            Self::with_port(default_port),
            &["HOST", "PORT", "SHUTDOWN_GRACE_PERIOD_SECS", "WORKERS"],
        )?;
        settings.validate().map_err(anyhow::Error::msg)?;
        Ok(settings)
    }

    /// Checks each value; the error names the variable, the value and what
    /// is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.is_empty() {
            return Err(
                "HOST=\"\" is not valid; allowed: an address such as 0.0.0.0 or 127.0.0.1".into(),
            );
        }
        if self.shutdown_grace_period_secs > MAX_GRACE_PERIOD_SECS {
            return Err(format!(
                "SHUTDOWN_GRACE_PERIOD_SECS={} is out of range; allowed: 0 to {MAX_GRACE_PERIOD_SECS}",
                self.shutdown_grace_period_secs
            ));
        }
        if self.workers > MAX_WORKERS {
            return Err(format!(
                "WORKERS={} is out of range; allowed: 0 (one per CPU core) to {MAX_WORKERS}",
                self.workers
            ));
        }
        Ok(())
    }
}

/// Reads the environment variables `vars` over `defaults` (field names are
/// the variables, lower-cased). A value of the wrong type is an error that
/// names the variable and the value.
pub fn read_env<T>(defaults: T, vars: &[&str]) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned,
{
    read_env_with_text(defaults, vars, &[])
}

/// Like [`read_env`], plus `text_vars` taken verbatim as strings. Figment
/// reads a value such as `{namespace="demo-app"}` as a map, which is right
/// for numbers and lists but wrong for text that only looks like them (a Loki
/// stream selector).
pub fn read_env_with_text<T>(defaults: T, vars: &[&str], text_vars: &[&str]) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned,
{
    let mut figment = Figment::from(Serialized::defaults(defaults)).merge(Env::raw().only(vars));
    for var in text_vars {
        if let Some(value) = std::env::var_os(var) {
            let value = value.into_string().map_err(|raw| {
                anyhow::anyhow!("invalid setting: {var}={raw:?} is not valid UTF-8")
            })?;
            figment = figment.merge(Serialized::default(&var.to_ascii_lowercase(), value));
        }
    }
    figment
        .extract()
        .map_err(|e| anyhow::anyhow!("invalid setting: {e}"))
}

/// A connection URL with its password replaced by `***`, fit for logs and
/// error messages (`postgres://app:***@db:5432/app`); a URL without a
/// password comes back as it is.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Runs `read` with exactly `vars` as the environment (figment's `Jail`:
/// serialised with other jailed tests, restored afterwards); the error as text.
#[cfg(any(test, feature = "testing"))]
#[allow(clippy::result_large_err)] // figment::Jail's signature, not ours
pub fn with_env<T>(
    vars: &[(&str, &str)],
    read: impl FnOnce() -> anyhow::Result<T>,
) -> Result<T, String> {
    let mut out = Err(String::new());
    let mut read = Some(read);
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        for (k, v) in vars {
            jail.set_env(k, v);
        }
        if let Some(read) = read.take() {
            out = read().map_err(|e| e.to_string());
        }
        Ok(())
    });
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Any service's default port: the services' own live in the contract.
    const A_DEFAULT_PORT: u16 = 7000;

    fn load(vars: &[(&str, &str)]) -> Result<ServerSettings, String> {
        with_env(vars, || ServerSettings::from_env(A_DEFAULT_PORT))
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            load(&[]).unwrap(),
            ServerSettings::with_port(A_DEFAULT_PORT)
        );
        let s = load(&[
            ("PORT", "0"),
            ("SHUTDOWN_GRACE_PERIOD_SECS", "3600"),
            ("WORKERS", "3"),
        ])
        .unwrap();
        assert_eq!(
            (s.port, s.shutdown_grace_period_secs, s.workers),
            (0, 3600, 3)
        );
    }

    #[test]
    fn a_bad_value_names_the_variable_the_value_and_what_is_allowed() {
        let e = load(&[("SHUTDOWN_GRACE_PERIOD_SECS", "3601")]).unwrap_err();
        assert!(
            e.contains("SHUTDOWN_GRACE_PERIOD_SECS=3601") && e.contains("allowed: 0 to 3600"),
            "{e}"
        );
        let e = load(&[("PORT", "70000")]).unwrap_err();
        assert!(e.contains("PORT") && e.contains("70000"), "{e}");
        let e = load(&[("SHUTDOWN_GRACE_PERIOD_SECS", "soon")]).unwrap_err();
        assert!(
            e.contains("SHUTDOWN_GRACE_PERIOD_SECS") && e.contains("soon"),
            "{e}"
        );
        let e = load(&[("WORKERS", "257")]).unwrap_err();
        assert!(
            e.contains("WORKERS=257") && e.contains("allowed: 0 (one per CPU core) to 256"),
            "{e}"
        );
        let e = load(&[("HOST", "")]).unwrap_err();
        assert!(e.contains("HOST"), "{e}");
    }

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(redact("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
