//! Export failures, said in the log without flooding it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// How often a failing exporter repeats its warning.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Wraps an exporter so that a failing collector is reported in the log
/// without flooding it: the first failure, then at most once a minute with a
/// count, and once when exports succeed again. (The SDK's own per-batch error
/// events are filtered out in [`crate::init`].)
#[derive(Debug)]
pub(super) struct Reporting<E> {
    inner: E,
    protocol: &'static str,
    endpoint: String,
    state: Mutex<FailureState>,
}

#[derive(Debug, Default)]
struct FailureState {
    failed_batches: u64,
    failed_spans: u64,
    last_report: Option<Instant>,
}

impl<E> Reporting<E> {
    pub(super) fn new(inner: E, protocol: &'static str, endpoint: &str) -> Self {
        Self {
            inner,
            protocol,
            endpoint: endpoint.to_owned(),
            state: Mutex::default(),
        }
    }

    fn record(&self, result: &OTelSdkResult, spans: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) if state.failed_batches > 0 => {
                tracing::info!(
                    protocol = self.protocol,
                    endpoint = %self.endpoint,
                    dropped_spans = state.failed_spans,
                    "span export recovered"
                );
                *state = FailureState::default();
            }
            Ok(()) => {}
            Err(error) => {
                state.failed_batches += 1;
                state.failed_spans += spans as u64;
                let due = state
                    .last_report
                    .is_none_or(|at| at.elapsed() >= REPORT_EVERY);
                if due {
                    tracing::warn!(
                        protocol = self.protocol,
                        endpoint = %self.endpoint,
                        %error,
                        dropped_spans = state.failed_spans,
                        "span export failing; spans are dropped, requests are not affected (repeated at most once a minute)"
                    );
                    state.last_report = Some(Instant::now());
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.record(&result, spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
