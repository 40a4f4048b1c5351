//! The checks after the gateway, in the order they run and print: one file
//! each, holding the typed answer of the API it reads, the pure function
//! that judges that answer, and `run`, which asks the cluster.
//!
//! A new check: a file here with `run(&mut Context) -> Outcome`, a line in
//! [`CHECKS`], recorded answers under `verify/testdata/` (named in its
//! README) and a table of them in the file's tests.

pub mod access_log;
pub mod jaeger;
pub mod kiali;
pub mod loki;
pub mod monitor;
pub mod pages;
pub mod prometheus;

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A check: asks the cluster through the context, polling until it holds.
pub type Check = fn(&mut Context) -> Outcome;

/// Every check after the gateway, in order: its name as printed and what
/// runs it.
pub const CHECKS: [(&str, Check); 7] = [
    ("1. pages", pages::run),
    ("2. Jaeger", jaeger::run),
    ("3. Loki", loki::run),
    ("4. Prometheus", prometheus::run),
    ("5. Kiali", kiali::run),
    ("6. Monitor", monitor::run),
    ("7. Access log", access_log::run),
];

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// One line: what was found.
    pub summary: String,
    /// For a failure: the part that is most likely broken.
    pub cause: Option<String>,
    /// For a failure: commands that show more.
    pub look: Vec<String>,
}

impl Outcome {
    pub fn pass(summary: impl Into<String>) -> Self {
        Self {
            ok: true,
            summary: summary.into(),
            cause: None,
            look: Vec::new(),
        }
    }

    pub fn fail(summary: impl Into<String>, cause: impl Into<String>, look: &[&str]) -> Self {
        Self {
            ok: false,
            summary: summary.into(),
            cause: Some(cause.into()),
            look: look.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// A check that could not run because an earlier one failed.
    pub fn not_checked(why: &str) -> Self {
        Self {
            ok: false,
            summary: format!("not checked: {why}"),
            cause: None,
            look: Vec::new(),
        }
    }
}

/// The data plane the app namespace runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshMode {
    /// An Envoy sidecar in every pod (label `istio-injection=enabled`).
    Sidecar,
    /// ztunnel on every node for L4 and mTLS, a waypoint proxy for L7
    /// (label `istio.io/dataplane-mode=ambient`).
    Ambient,
}

impl MeshMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sidecar => "sidecar",
            Self::Ambient => "ambient",
        }
    }

    /// `sidecar` in sidecar mode, `ambient` in ambient mode.
    pub fn pick<T>(self, sidecar: T, ambient: T) -> T {
        match self {
            Self::Sidecar => sidecar,
            Self::Ambient => ambient,
        }
    }
}

/// Whether PostgreSQL must appear in Kiali's graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postgres {
    /// Required when the graph has a postgres node.
    Auto,
    On,
    Off,
}

pub const FRONT_END: &str = contract::routes::front_end::SERVICE_NAME;
pub const BUSINESS_LOGIC: &str = contract::routes::business_logic::SERVICE_NAME;
pub const POSTGRES: &str = "postgres";

/// Names the checks need: the app namespace, its mesh mode and, in ambient
/// mode, the waypoint's name.
#[derive(Debug, Clone)]
pub struct Names {
    pub namespace: String,
    pub mode: MeshMode,
    /// The waypoint (a Gateway of class `istio-waypoint`) business-logic is
    /// bound to; Istio deploys it as Deployment `<name>`.
    pub waypoint: String,
}

impl Names {
    /// Istio names a sidecar's spans `<app label>.<namespace>` (the proxy
    /// config's default `tracingServiceName: APP_LABEL_AND_NAMESPACE`).
    pub fn sidecar(&self, app: &str) -> String {
        format!("{app}.{}", self.namespace)
    }

    /// The waypoint's spans: its pods carry no `app` label, so Istio names
    /// them after the Deployment (`<workload>.<namespace>`, istio/istio
    /// pkg/bootstrap/config.go, `serviceClusterOrDefault`).
    pub fn waypoint_service(&self) -> String {
        format!("{}.{}", self.waypoint, self.namespace)
    }
}

/// Istio's own ingress gateway (`istio-ingressgateway.istio-system`), or
/// the one Istio deploys for a Gateway API `Gateway` (`<name>-istio`).
pub fn is_gateway_service(service: &str) -> bool {
    let app = service.split('.').next().unwrap_or(service);
    app.starts_with("istio-ingressgateway") || app.ends_with("-istio")
}

/// How long each check polls.
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    pub limit: Duration,
    pub interval: Duration,
    /// The whole run's end: no poll starts a wait past it.
    pub deadline: Instant,
}

impl Poll {
    /// Runs `check` until it holds, `limit` is spent or the run's deadline
    /// is near; always at least once. Returns the last outcome.
    pub fn until_ok(self, mut check: impl FnMut() -> Outcome) -> Outcome {
        let start = Instant::now();
        loop {
            let outcome = check();
            let now = Instant::now();
            if outcome.ok
                || now.duration_since(start) + self.interval > self.limit
                || now + self.interval > self.deadline
            {
                return outcome;
            }
            std::thread::sleep(self.interval);
        }
    }
}

/// What the checks share: the gateway URL, the names, the settings, and
/// what an earlier check found (the slow page's trace id).
#[derive(Debug)]
pub struct Context {
    pub client: Client,
    /// The gateway URL without a trailing `/`.
    pub base: String,
    pub names: Names,
    /// Whether the mode was named or read from the namespace; when not, the
    /// Jaeger check reads it from the trace.
    pub mode_known: bool,
    pub postgres: Postgres,
    pub slow_delay_ms: u64,
    pub poll: Poll,
    /// Set by the pages check.
    pub trace_id: Option<String>,
}

/// An API's answer: its HTTP status (0 when there was none) and its body,
/// typed, or the error it carried.
#[derive(Debug)]
pub struct Answer<T> {
    pub status: u16,
    pub body: Result<T, Problem>,
}

impl<T: DeserializeOwned> Answer<T> {
    /// Reads a 200's body as `T`; any other status, or a body that is not a
    /// `T`, as a [`Problem`].
    pub fn parse(status: u16, text: &str) -> Self {
        let body = match serde_json::from_str::<T>(text) {
            Ok(body) if status == 200 => Ok(body),
            _ => Err(serde_json::from_str(text).unwrap_or_else(|_| Problem {
                error: Some(text.trim().to_owned()),
                ..Problem::default()
            })),
        };
        Self { status, body }
    }
}

/// The error bodies of the APIs behind the gateway: Prometheus' and Kiali's
/// `{"error"}`, Grafana's `{"message"}`, Jaeger's `{"errors": [{"msg"}]}`;
/// anything else (Loki answers plain text) as `error`.
#[derive(Debug, Default, Deserialize)]
pub struct Problem {
    pub error: Option<String>,
    /// Grafana's own error (its data source proxy, not the API behind it).
    pub message: Option<String>,
    pub errors: Option<Vec<JaegerError>>,
}

#[derive(Debug, Deserialize)]
pub struct JaegerError {
    pub msg: String,
}

impl Problem {
    pub fn text(&self) -> &str {
        self.errors
            .as_ref()
            .and_then(|e| e.first())
            .map(|e| e.msg.as_str())
            .or(self.error.as_deref())
            .or(self.message.as_deref())
            .unwrap_or("")
    }
}

impl Context {
    /// GETs `path` (under the gateway URL) with `query`, typed.
    pub fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Answer<T> {
        let url = format!("{}{path}", self.base);
        match self.client.get(&url).query(query).send() {
            Ok(response) => {
                let status = response.status().as_u16();
                Answer::parse(status, &response.text().unwrap_or_default())
            }
            Err(error) => Answer {
                status: 0,
                body: Err(Problem {
                    error: Some(error.to_string()),
                    ..Problem::default()
                }),
            },
        }
    }

    /// The slow page's trace id, or the outcome of a check that needs it.
    pub fn trace_id(&self) -> Result<String, Outcome> {
        self.trace_id
            .clone()
            .ok_or_else(|| Outcome::not_checked("no trace id from the slow page (see 1.)"))
    }
}

/// The outcome when Grafana's data source proxy itself answers 404 with its
/// own `message`: no data source `uid`.
pub fn grafana_datasource_missing<T>(uid: &str, answer: &Answer<T>) -> Option<Outcome> {
    let problem = answer.body.as_ref().err()?;
    (answer.status == 404 && problem.message.is_some()).then(|| {
        Outcome::fail(
            format!(
                "Grafana's data source proxy: {} {} for uid `{uid}`",
                answer.status,
                problem.text()
            ),
            format!(
                "Grafana has no data source with uid `{uid}` (istio-add-ons/grafana/datasources.yaml)"
            ),
            &[
                "kubectl -n istio-system get cm grafana-datasources -o yaml",
                "kubectl -n istio-system logs deploy/grafana --tail 30",
            ],
        )
    })
}

/// ` (v1)`, ` (business-logic v1 and v2)`: the versions named after
/// `prefix`, in parentheses, or `""` when none is.
pub fn versions_note<'a>(prefix: &str, versions: impl IntoIterator<Item = &'a str>) -> String {
    let versions: Vec<&str> = versions.into_iter().filter(|v| !v.is_empty()).collect();
    match versions.as_slice() {
        [] => String::new(),
        [one] => format!(" ({prefix}{one})"),
        [rest @ .., last] => format!(" ({prefix}{} and {last})", rest.join(", ")),
    }
}

/// Recorded answers (verify/testdata, sources in its README) for the
/// checks' tests.
#[cfg(test)]
pub mod testdata {
    use super::{Answer, MeshMode, Names, Outcome};

    /// The trace id the recorded answers carry.
    pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    pub fn names(mode: MeshMode) -> Names {
        Names {
            namespace: "demo-app".to_owned(),
            mode,
            waypoint: "waypoint".to_owned(),
        }
    }

    /// A recorded answer: `verify/testdata/<file>` served with `status`.
    pub fn answer<T: serde::de::DeserializeOwned>(status: u16, file: &str) -> Answer<T> {
        let path = format!("{}/testdata/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Answer::parse(status, &text)
    }

    /// Judges each `(file, status, ok, needles)` with `judge` and asserts
    /// its outcome with [`assert_outcome`].
    #[track_caller]
    pub fn judge_each<T: serde::de::DeserializeOwned>(
        cases: &[(&str, u16, bool, &[&str])],
        judge: impl Fn(&Answer<T>) -> Outcome,
    ) {
        for (file, status, ok, needles) in cases {
            let outcome = judge(&answer(*status, file));
            assert_outcome(&format!("{file} {status}"), &outcome, *ok, needles);
        }
    }

    /// Asserts `outcome` passes or fails as `ok` says and prints every one
    /// of `needles` (in its summary, cause or commands).
    #[track_caller]
    pub fn assert_outcome(case: &str, outcome: &Outcome, ok: bool, needles: &[&str]) {
        assert_eq!(outcome.ok, ok, "{case}: {outcome:#?}");
        let text = format!(
            "{}\n{}\n{}",
            outcome.summary,
            outcome.cause.as_deref().unwrap_or(""),
            outcome.look.join("\n")
        );
        for needle in needles {
            assert!(
                text.contains(needle),
                "{case}: {needle:?} missing in\n{text}"
            );
        }
    }
}
