//! The business-logic client: a pooled `reqwest` client per worker, wrapped with
//! `reqwest-tracing`, so every call is a CLIENT span and carries the trace
//! context (B3 and W3C headers, through the global propagator) plus the
//! caller's `x-request-id`.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use contract::routes::business_logic::{FAST_ENDPOINT, SLOW_ENDPOINT};
use contract::{FastAnswer, Problem, SlowAnswer, SlowQuery};
use reqwest::{IntoUrl, Url};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Extension, Next};
use reqwest_tracing::{OtelPathNames, TracingMiddleware};
use serde::de::DeserializeOwned;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::settings::Settings;

/// Writes the current span's context (reqwest-tracing's CLIENT span: this
/// runs inside it) into the request's headers through the global
/// propagator. reqwest-tracing does this itself with an OpenTelemetry
/// feature, which it has only up to 0.32 (see Cargo.toml): drop this for
/// its `opentelemetry_0_33` feature once published.
fn inject_context<'a>(
    mut request: reqwest::Request,
    extensions: &'a mut http::Extensions,
    next: Next<'a>,
) -> Pin<Box<dyn Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send + 'a>> {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        let mut headers = opentelemetry_http::HeaderInjector(request.headers_mut());
        propagator.inject_context(&cx, &mut headers);
    });
    Box::pin(next.run(request, extensions))
}

/// Why a call to business-logic gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("business-logic did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("business-logic is unreachable")]
    Unreachable(#[source] reqwest_middleware::Error),
    #[error("business-logic answered {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("business-logic sent an answer the front-end cannot read")]
    Malformed(#[source] serde_json::Error),
}

/// How long the client keeps an idle connection to business-logic: below
/// business-logic's keep-alive, so the client closes it first.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const _: () = assert!(POOL_IDLE_TIMEOUT.as_secs() < service_kit::KEEP_ALIVE.as_secs());

/// The client: one per worker (see `crate::startup::build`), never shared
/// between workers.
#[derive(Debug, Clone)]
pub struct Backend {
    client: ClientWithMiddleware,
    base_url: String,
    /// The fast endpoint's URL, parsed once: parsing it per request was a
    /// measurable share of each fast page (`docs/instrumentation-cost.md, "Figures behind code comments"`).
    fast_url: Url,
    fast_timeout: Duration,
    slow_timeout: Duration,
}

impl Backend {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .build()?;
        let span_names = OtelPathNames::known_paths([FAST_ENDPOINT, SLOW_ENDPOINT])?;
        let client = ClientBuilder::new(client)
            .with_init(Extension(span_names))
            .with(TracingMiddleware::default())
            .with(inject_context)
            .build();
        let base_url = settings.business_logic_url.trim_end_matches('/').to_owned();
        let fast_url = Url::parse(&format!("{base_url}{FAST_ENDPOINT}"))
            .with_context(|| format!("BUSINESS_LOGIC_URL={base_url:?} is not a URL"))?;
        Ok(Self {
            client,
            base_url,
            fast_url,
            fast_timeout: settings.fast_timeout(),
            slow_timeout: settings.slow_timeout(),
        })
    }

    /// The fast endpoint's answer and the round-trip time.
    pub async fn fast(&self, request_id: &str) -> Result<(FastAnswer, Duration), BackendError> {
        self.get(self.fast_url.clone(), self.fast_timeout, request_id)
            .await
    }

    /// The slow endpoint's answer (with `delay_ms` if given) and the round-trip time.
    pub async fn slow(
        &self,
        query: SlowQuery,
        request_id: &str,
    ) -> Result<(SlowAnswer, Duration), BackendError> {
        let url = format!(
            "{}{SLOW_ENDPOINT}{}",
            self.base_url,
            query.to_query_string()
        );
        self.get(url, self.slow_timeout, request_id).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        url: impl IntoUrl,
        timeout: Duration,
        request_id: &str,
    ) -> Result<(T, Duration), BackendError> {
        let started = Instant::now();
        let classify = |error: reqwest_middleware::Error| match &error {
            reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => {
                BackendError::Timeout(timeout)
            }
            _ => BackendError::Unreachable(error),
        };
        let response = self
            .client
            .get(url)
            .header(telemetry::REQUEST_ID_HEADER, request_id)
            .timeout(timeout)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| classify(reqwest_middleware::Error::Reqwest(e)))?;
        let elapsed = started.elapsed();
        if !status.is_success() {
            // business-logic answers with the contract's problem body, whose
            // detail is fit to show; anything else (a proxy's page) is named
            // by its status alone.
            let detail = serde_json::from_slice::<Problem>(&body)
                .map(|problem| problem.detail)
                .unwrap_or_else(|_| status.canonical_reason().unwrap_or("error").to_owned());
            return Err(BackendError::Status {
                status: status.as_u16(),
                detail,
            });
        }
        let answer = serde_json::from_slice(&body).map_err(BackendError::Malformed)?;
        Ok((answer, elapsed))
    }
}
