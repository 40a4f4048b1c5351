//! Request metrics with exemplars: from a latency spike to its trace.
//!
//! `actix-web-prom` counts every request and serves `/metrics` in the
//! Prometheus text format. Exemplars (a trace id attached to a histogram
//! bucket) exist only in OpenMetrics, which the `prometheus` crate under
//! `actix-web-prom` cannot write. So [`RequestMetrics`] wraps
//! `actix-web-prom`'s middleware with a small one of ours that
//!
//! - remembers, for each request series (`endpoint`, `method`, `status`) and
//!   histogram bucket, the trace and span id of the latest *sampled* request
//!   that fell in it ([`ExemplarStore`]; unsampled requests leave nothing), and
//! - answers a `/metrics` scrape that asks for `application/openmetrics-text`
//!   with OpenMetrics 1.0: `actix-web-prom`'s own counts (its registry stays
//!   the only source of numbers), plus those exemplars. Any other `Accept`
//!   gets `actix-web-prom`'s plain text, byte for byte as before: the
//!   Prometheus text format has no exemplars.
//!
//! A service's own histogram ([`Histogram`], made by
//! [`crate::Stack::histogram`]) goes in the same registry, with the same
//! constant labels, and gets exemplars the same way: the store keeps them
//! for every histogram registered with it, per series and bucket.
//!
//! The OpenMetrics text is written here, not by `prometheus-client`: its
//! encoder needs `Exemplar` values, and `Exemplar` has no public constructor
//! (its fields are `pub(crate)`, 0.26), so a `Collector` cannot hand it
//! exemplars for counts it did not record itself. Recording every request a
//! second time into `prometheus-client` would give two sets of numbers for
//! one histogram. The writer is small, follows the OpenMetrics 1.0 ABNF, and
//! the tests feed its output to two real parsers (the `prometheus_client`
//! Python parser and Prometheus itself).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::{Ready, ready};
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, Accept, Header as _, HeaderValue, Quality};
use actix_web::http::{Method, StatusCode};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use prometheus::proto::{MetricFamily, MetricType};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use contract::metrics::{HTTP_REQUESTS_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};
use telemetry::TelemetrySettings;

/// Where metrics are served.
const METRICS_PATH: &str = contract::routes::METRICS;
/// The `endpoint` label of requests no route matched (`actix-web-prom`'s mask).
const UNMATCHED: &str = "UNKNOWN";
/// Upper bounds of the request-duration histogram's buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// The labels of `actix-web-prom`'s request series, in its order.
const REQUEST_LABELS: [&str; 3] = ["endpoint", "method", "status"];
/// The OpenMetrics content type this module writes.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request metrics: `actix-web-prom` plus exemplars; wrap the app with it.
#[derive(Clone)]
pub struct RequestMetrics {
    prometheus: actix_web_prom::PrometheusMetrics,
    /// `service` and `version`, on every series of the registry.
    const_labels: HashMap<String, String>,
    exemplars: Option<Arc<Exemplars>>,
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics")
            .field("exemplars", &self.exemplars.is_some())
            .finish_non_exhaustive()
    }
}

/// Prometheus middleware serving `/metrics`, with request counters and
/// latency histograms labelled by `endpoint` (the route pattern; unmatched
/// paths become `UNKNOWN` so scanners cannot blow up the label set),
/// `method`, `status`, and constant `service` and (when the settings carry a
/// `service_version`) `version` labels; with `METRICS_EXEMPLARS` on,
/// exemplars in OpenMetrics as the module says.
pub fn metrics_middleware(settings: &TelemetrySettings) -> anyhow::Result<RequestMetrics> {
    let mut const_labels =
        HashMap::from([("service".to_owned(), settings.otel_service_name.clone())]);
    if let Some(version) = &settings.service_version {
        const_labels.insert("version".to_owned(), version.clone());
    }
    let prometheus = actix_web_prom::PrometheusMetricsBuilder::new("")
        .endpoint(METRICS_PATH)
        .const_labels(const_labels.clone())
        .mask_unmatched_patterns(UNMATCHED)
        .buckets(&BUCKETS)
        .build()
        .map_err(|e| anyhow::anyhow!("building the Prometheus metrics middleware: {e}"))?;
    let exemplars = settings.metrics_exemplars.then(|| {
        let (store, requests) = request_store();
        Arc::new(Exemplars {
            registry: prometheus.registry.clone(),
            store,
            requests,
        })
    });
    Ok(RequestMetrics {
        prometheus,
        const_labels,
        exemplars,
    })
}

impl RequestMetrics {
    /// Registers `spec` in the registry `/metrics` serves, with the request
    /// metrics' constant labels and, while exemplars are on, in the store.
    pub(super) fn histogram(&self, spec: &HistogramSpec) -> anyhow::Result<Histogram> {
        let opts = prometheus::HistogramOpts::new(spec.name, spec.help)
            .const_labels(self.const_labels.clone())
            .buckets(spec.buckets.to_vec());
        let histogram = prometheus::HistogramVec::new(opts, spec.labels)
            .and_then(|h| {
                self.prometheus.registry.register(Box::new(h.clone()))?;
                Ok(h)
            })
            .map_err(|e| anyhow::anyhow!("registering the histogram {}: {e}", spec.name))?;
        let exemplars = self
            .exemplars
            .as_ref()
            .map(|e| e.store.register(spec.name, spec.labels, spec.buckets, None));
        Ok(Histogram {
            inner: Some(HistogramInner {
                histogram,
                exemplars,
            }),
        })
    }
}

/// A histogram of a service's own: its name, help, variable labels (each
/// with a bounded set of values) and bucket upper bounds, increasing.
#[derive(Debug, Clone, Copy)]
pub struct HistogramSpec {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    pub buckets: &'static [f64],
}

/// A service's own histogram, served at `/metrics` beside the request
/// metrics, with their constant labels. An observation made inside a sampled
/// span leaves that span's trace and span id as the exemplar of its bucket.
/// The default one (metrics off) records nothing.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    inner: Option<HistogramInner>,
}

#[derive(Debug, Clone)]
struct HistogramInner {
    histogram: prometheus::HistogramVec,
    exemplars: Option<Arc<HistogramExemplars>>,
}

impl Histogram {
    /// Records `value` in the series of these label values (in the spec's
    /// order), with the current span as its exemplar if it is sampled.
    pub fn observe(&self, label_values: &[&str], value: f64) {
        let Some(inner) = &self.inner else {
            return;
        };
        match inner.histogram.get_metric_with_label_values(label_values) {
            Ok(series) => series.observe(value),
            Err(error) => {
                tracing::warn!(%error, ?label_values, "histogram observation dropped");
                return;
            }
        }
        if let (Some(exemplars), Some((trace_id, span_id))) = (&inner.exemplars, sampled_trace()) {
            exemplars.record(
                label_values,
                Exemplar {
                    trace_id,
                    span_id,
                    value,
                    timestamp: SystemTime::now(),
                },
            );
        }
    }
}

#[derive(Debug)]
struct Exemplars {
    /// `actix-web-prom`'s registry: the counts.
    registry: prometheus::Registry,
    store: ExemplarStore,
    /// The request histogram's exemplars, in `store`.
    requests: Arc<HistogramExemplars>,
}

/// One request's trace, as an exemplar.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Exemplar {
    trace_id: TraceId,
    span_id: SpanId,
    /// The request's duration in seconds.
    value: f64,
    timestamp: SystemTime,
}

/// Latest exemplar per histogram bucket (the last slot is `+Inf`), and the
/// latest of the series, for the counter of the same series.
#[derive(Debug, Clone)]
struct SeriesExemplars {
    buckets: Box<[Option<Exemplar>]>,
    latest: Option<Exemplar>,
}

/// The exemplars of every histogram registered with it: the request
/// histogram and the service's own. Registered at start-up, read by scrapes.
#[derive(Debug, Default)]
struct ExemplarStore {
    histograms: RwLock<Vec<Arc<HistogramExemplars>>>,
}

/// A store with the request histogram registered (its counter carries
/// exemplars too).
fn request_store() -> (ExemplarStore, Arc<HistogramExemplars>) {
    let store = ExemplarStore::default();
    let requests = store.register(
        HTTP_REQUESTS_DURATION_SECONDS,
        &REQUEST_LABELS,
        &BUCKETS,
        Some(HTTP_REQUESTS_TOTAL),
    );
    (store, requests)
}

impl ExemplarStore {
    /// Keeps exemplars for histogram `name`, whose series are told apart by
    /// the values of `labels` and whose buckets have these upper bounds;
    /// `counter`, a counter family with the same series, gets each series'
    /// latest exemplar.
    fn register(
        &self,
        name: &str,
        labels: &[&str],
        bounds: &[f64],
        counter: Option<&str>,
    ) -> Arc<HistogramExemplars> {
        let histogram = Arc::new(HistogramExemplars {
            name: name.to_owned(),
            counter: counter.map(str::to_owned),
            labels: labels.iter().map(|&l| l.to_owned()).collect(),
            bounds: bounds.to_vec(),
            series: RwLock::default(),
        });
        self.histograms
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(histogram.clone());
        histogram
    }

    /// The histogram registered as metric family `family`, or whose
    /// counter it is.
    fn family(&self, family: &str) -> Option<Arc<HistogramExemplars>> {
        self.histograms
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|h| h.name == family || h.counter.as_deref() == Some(family))
            .cloned()
    }
}

/// One histogram's exemplars, per series. The map is read-locked on each
/// observation (written only the first time a series is seen; series are
/// bounded like the histogram's labels); each series has its own short
/// mutex.
#[derive(Debug)]
struct HistogramExemplars {
    name: String,
    counter: Option<String>,
    /// The labels that tell its series apart, in the order `record` takes
    /// their values.
    labels: Vec<String>,
    bounds: Vec<f64>,
    /// Keyed by [`series_hash`] of the label values, as the `prometheus`
    /// crate keys a vector's children: no allocation per observation.
    series: RwLock<HashMap<u64, Arc<Mutex<SeriesExemplars>>>>,
}

impl HistogramExemplars {
    fn record(&self, label_values: &[&str], exemplar: Exemplar) {
        let key = series_hash(label_values.iter().copied());
        let known = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let series = match known {
            Some(series) => series,
            None => self
                .series
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(Mutex::new(SeriesExemplars {
                        buckets: vec![None; self.bounds.len() + 1].into(),
                        latest: None,
                    }))
                })
                .clone(),
        };
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| exemplar.value <= bound)
            .unwrap_or(self.bounds.len());
        let mut series = series.lock().unwrap_or_else(|e| e.into_inner());
        series.buckets[bucket] = Some(exemplar);
        series.latest = Some(exemplar);
    }

    /// The exemplars of the series with these labels (all of a gathered
    /// sample's labels, constant ones included).
    fn get(&self, labels: &[(&str, &str)]) -> Option<SeriesExemplars> {
        let value = |name: &String| {
            labels
                .iter()
                .find(|(n, _)| *n == name.as_str())
                .map(|(_, v)| *v)
        };
        let values: Vec<&str> = self.labels.iter().map(value).collect::<Option<_>>()?;
        let series = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&series_hash(values.into_iter()))
            .cloned()?;
        let series = series.lock().unwrap_or_else(|e| e.into_inner());
        Some(series.clone())
    }
}

/// A series' key: the hash of its label values, in the registered order.
fn series_hash<'a>(label_values: impl Iterator<Item = &'a str>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for value in label_values {
        // `str`'s hash ends each value, so ("a", "bc") is not ("ab", "c").
        value.hash(&mut hasher);
    }
    hasher.finish()
}

impl<S, B> Transform<S, ServiceRequest> for RequestMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<PromBody<B>, String>>;
    type Error = actix_web::Error;
    type InitError = ();
    type Transform = ExemplarMiddleware<actix_web_prom::PrometheusMetricsMiddleware<S>>;
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let inner = match Transform::new_transform(&self.prometheus, service).into_inner() {
            Ok(inner) => inner,
            Err(_) => return ready(Err(())),
        };
        ready(Ok(ExemplarMiddleware {
            inner,
            exemplars: self.exemplars.clone(),
        }))
    }
}

/// The body `actix-web-prom`'s middleware answers with.
type PromBody<B> = EitherBody<actix_web_prom::StreamLog<B>, actix_web_prom::StreamLog<String>>;

#[doc(hidden)]
pub struct ExemplarMiddleware<M> {
    inner: M,
    exemplars: Option<Arc<Exemplars>>,
}

impl<M> std::fmt::Debug for ExemplarMiddleware<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExemplarMiddleware").finish_non_exhaustive()
    }
}

impl<M, B> Service<ServiceRequest> for ExemplarMiddleware<M>
where
    M: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    M::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B, String>>;
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let Some(exemplars) = self.exemplars.clone() else {
            let fut = self.inner.call(req);
            return Box::pin(async move { Ok(fut.await?.map_into_left_body()) });
        };
        let start = Instant::now();
        // The request's root span is current here (the tracing middleware
        // calls us inside it); unsampled spans give no exemplar.
        let trace = sampled_trace();
        let is_scrape = req.method() == Method::GET && req.path() == METRICS_PATH;
        let openmetrics = is_scrape && wants_openmetrics(&req);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            if let Some((trace_id, span_id)) = trace {
                let request = res.request();
                // Labelled as actix-web-prom labels it (0.10, no
                // cardinality-keeping parameters): the route pattern, the
                // metrics path it serves itself, or the mask.
                let endpoint = if is_scrape {
                    METRICS_PATH.to_owned()
                } else {
                    request
                        .match_pattern()
                        .unwrap_or_else(|| UNMATCHED.to_owned())
                };
                let status = res.status();
                exemplars.requests.record(
                    &[
                        endpoint.as_str(),
                        request.method().as_str(),
                        status.as_str(),
                    ],
                    Exemplar {
                        trace_id,
                        span_id,
                        value: start.elapsed().as_secs_f64(),
                        timestamp: SystemTime::now(),
                    },
                );
            }
            if !(openmetrics && res.status() == StatusCode::OK) {
                return Ok(res.map_into_left_body());
            }
            let text = encode_openmetrics(&exemplars.registry.gather(), &exemplars.store);
            // Dropping actix-web-prom's text body records this scrape.
            Ok(res.map_body(|head, _plain| {
                head.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
                );
                EitherBody::right(text)
            }))
        })
    }
}

/// The current span's trace and span id, if it is sampled.
fn sampled_trace() -> Option<(TraceId, SpanId)> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| (sc.trace_id(), sc.span_id()))
}

/// Whether the client prefers OpenMetrics to the plain text format: the
/// highest-quality acceptable entry among `application/openmetrics-text`
/// (any version), `text/plain`, `text/*` and `*/*` is OpenMetrics. No or a
/// malformed `Accept` header means plain text.
fn wants_openmetrics(req: &ServiceRequest) -> bool {
    let Ok(accept) = Accept::parse(req) else {
        return false;
    };
    let mut best: Option<(Quality, bool)> = None;
    for entry in accept.iter() {
        let (kind, sub) = (entry.item.type_().as_str(), entry.item.subtype().as_str());
        let openmetrics = kind == "application" && sub == "openmetrics-text";
        let plain = (kind == "text" && (sub == "plain" || sub == "*")) || kind == "*";
        if entry.quality == Quality::ZERO || !(openmetrics || plain) {
            continue;
        }
        if best.is_none_or(|(quality, _)| entry.quality > quality) {
            best = Some((entry.quality, openmetrics));
        }
    }
    best.is_some_and(|(_, openmetrics)| openmetrics)
}

/// Writes gathered metric families as OpenMetrics 1.0 text, with the stored
/// exemplars on the buckets of the histograms registered in `store` and on
/// the request counter.
fn encode_openmetrics(families: &[MetricFamily], store: &ExemplarStore) -> String {
    let mut out = String::with_capacity(8192);
    for family in families {
        // Writing to a String cannot fail.
        let _ = encode_family(&mut out, family, store);
    }
    out.push_str("# EOF\n");
    out
}

fn encode_family(
    out: &mut String,
    family: &MetricFamily,
    store: &ExemplarStore,
) -> std::fmt::Result {
    let name = family.name();
    let (om_name, om_type) = match family.get_field_type() {
        // OpenMetrics names a counter without `_total`; its sample keeps it,
        // so Prometheus stores the same series name as from the text format.
        MetricType::COUNTER => match name.strip_suffix("_total") {
            Some(base) => (base, "counter"),
            None => (name, "unknown"),
        },
        MetricType::GAUGE => (name, "gauge"),
        MetricType::HISTOGRAM => (name, "histogram"),
        MetricType::SUMMARY => (name, "summary"),
        // Untyped metrics: none are registered; skipped rather than guessed.
        _ => return Ok(()),
    };
    let registered = store.family(name);
    writeln!(out, "# TYPE {om_name} {om_type}")?;
    if !family.help().is_empty() {
        // HELP text escapes the same three characters as label values.
        writeln!(
            out,
            "# HELP {om_name} {}",
            escape_label_value(family.help())
        )?;
    }
    for metric in family.get_metric() {
        let labels: Vec<(&str, &str)> = metric
            .get_label()
            .iter()
            .map(|l| (l.name(), l.value()))
            .collect();
        let exemplars = registered.as_ref().and_then(|h| h.get(&labels));
        match family.get_field_type() {
            MetricType::COUNTER => {
                let value = metric.get_counter().get_value();
                sample(out, name, &labels, None, value)?;
                if let Some(e) = exemplars.as_ref().and_then(|e| e.latest) {
                    // A counter's exemplar value is the increment: one request.
                    write_exemplar(out, &Exemplar { value: 1.0, ..e })?;
                }
                out.push('\n');
            }
            MetricType::GAUGE => {
                sample(out, name, &labels, None, metric.get_gauge().get_value())?;
                out.push('\n');
            }
            MetricType::HISTOGRAM => {
                let h = metric.get_histogram();
                let bucket_name = format!("{name}_bucket");
                let mut infinity_written = false;
                for (i, bucket) in h.get_bucket().iter().enumerate() {
                    let bound = bucket.upper_bound();
                    infinity_written |= bound == f64::INFINITY;
                    let le = canonical(bound);
                    sample(
                        out,
                        &bucket_name,
                        &labels,
                        Some(("le", &le)),
                        bucket.cumulative_count() as f64,
                    )?;
                    if let Some(e) = exemplars.as_ref().and_then(|e| {
                        let slot = if bound == f64::INFINITY {
                            e.buckets.len() - 1
                        } else {
                            i
                        };
                        e.buckets.get(slot)?.as_ref()
                    }) {
                        write_exemplar(out, e)?;
                    }
                    out.push('\n');
                }
                if !infinity_written {
                    sample(
                        out,
                        &bucket_name,
                        &labels,
                        Some(("le", "+Inf")),
                        h.get_sample_count() as f64,
                    )?;
                    if let Some(e) = exemplars.as_ref().and_then(|e| e.buckets.last()?.as_ref()) {
                        write_exemplar(out, e)?;
                    }
                    out.push('\n');
                }
                sample(
                    out,
                    &format!("{name}_sum"),
                    &labels,
                    None,
                    h.get_sample_sum(),
                )?;
                out.push('\n');
                sample(
                    out,
                    &format!("{name}_count"),
                    &labels,
                    None,
                    h.get_sample_count() as f64,
                )?;
                out.push('\n');
            }
            MetricType::SUMMARY => {
                let s = metric.get_summary();
                for q in s.get_quantile() {
                    let quantile = canonical(q.quantile());
                    sample(out, name, &labels, Some(("quantile", &quantile)), q.value())?;
                    out.push('\n');
                }
                sample(out, &format!("{name}_sum"), &labels, None, s.sample_sum())?;
                out.push('\n');
                sample(
                    out,
                    &format!("{name}_count"),
                    &labels,
                    None,
                    s.sample_count() as f64,
                )?;
                out.push('\n');
            }
            _ => {}
        }
    }
    Ok(())
}

/// `name{labels,extra} value`, without the line end.
fn sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    extra: Option<(&str, &str)>,
    value: f64,
) -> std::fmt::Result {
    out.push_str(name);
    let all = labels.iter().copied().chain(extra);
    write_labels(out, all)?;
    write!(out, " {}", number(value))
}

fn write_labels<'a>(
    out: &mut String,
    labels: impl Iterator<Item = (&'a str, &'a str)>,
) -> std::fmt::Result {
    let mut first = true;
    for (name, value) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        write!(out, "{name}=\"{}\"", escape_label_value(value))?;
    }
    if !first {
        out.push('}');
    }
    Ok(())
}

/// ` # {trace_id="…",span_id="…"} value timestamp`
fn write_exemplar(out: &mut String, e: &Exemplar) -> std::fmt::Result {
    let seconds = e
        .timestamp
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    write!(
        out,
        " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {:.3}",
        e.trace_id,
        e.span_id,
        number(e.value),
        seconds
    )
}

/// A sample value: integers without a fraction, others in shortest form.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// `le` and `quantile` values in OpenMetrics' canonical form (`1.0`, `0.25`,
/// `5e-06` as Go writes it, `+Inf`).
fn canonical(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let debug = format!("{value:?}");
    match debug.split_once('e') {
        // Rust writes `5e-6`; Go and the Prometheus clients, `5e-06`.
        Some((mantissa, exponent)) => {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(digits) => ('-', digits),
                None => ('+', exponent),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => debug,
    }
}

fn escape_label_value(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn accepts_openmetrics(accept: Option<&str>) -> bool {
        let mut req = TestRequest::get().uri(METRICS_PATH);
        if let Some(accept) = accept {
            req = req.insert_header((header::ACCEPT, accept));
        }
        wants_openmetrics(&req.to_srv_request())
    }

    #[test]
    fn scrapers_that_prefer_openmetrics_get_it_and_everyone_else_plain_text() {
        // Prometheus 2.x's default scrape header.
        assert!(accepts_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        // Prometheus 3 with scrape_protocols [OpenMetricsText1.0.0, PrometheusText0.0.4].
        assert!(accepts_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.3"
        )));
        assert!(!accepts_openmetrics(None));
        assert!(!accepts_openmetrics(Some("*/*")));
        assert!(!accepts_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!accepts_openmetrics(Some(
            "text/plain;q=0.9,application/openmetrics-text;q=0.5"
        )));
        assert!(!accepts_openmetrics(Some(
            "application/openmetrics-text;q=0,text/plain;q=0.1"
        )));
        assert!(!accepts_openmetrics(Some("not a media type")));
    }

    fn request_metrics() -> (prometheus::Registry, prometheus::HistogramVec) {
        let registry = prometheus::Registry::new();
        let labels = ["endpoint", "method", "status"];
        let const_labels = HashMap::from([("service".to_owned(), "front-end".to_owned())]);
        let histogram = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(HTTP_REQUESTS_DURATION_SECONDS, "HTTP request duration")
                .const_labels(const_labels.clone())
                .buckets(BUCKETS.to_vec()),
            &labels,
        )
        .unwrap();
        let counter = prometheus::IntCounterVec::new(
            prometheus::Opts::new(HTTP_REQUESTS_TOTAL, "Total number of HTTP requests")
                .const_labels(const_labels),
            &labels,
        )
        .unwrap();
        registry.register(Box::new(histogram.clone())).unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        for (endpoint, seconds) in [("/slow-page", 0.7), ("/slow-page", 0.002), ("/", 0.0004)] {
            histogram
                .with_label_values(&[endpoint, "GET", "200"])
                .observe(seconds);
            counter.with_label_values(&[endpoint, "GET", "200"]).inc();
        }
        (registry, histogram)
    }

    const SLOW_PAGE: [&str; 3] = ["/slow-page", "GET", "200"];

    fn exemplar(trace: u128, value: f64) -> Exemplar {
        Exemplar {
            trace_id: TraceId::from(trace),
            span_id: SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            value,
            timestamp: UNIX_EPOCH + std::time::Duration::from_millis(1_764_000_000_250),
        }
    }

    #[test]
    fn openmetrics_carries_the_latest_exemplar_of_each_bucket() {
        let (registry, _) = request_metrics();
        let (store, requests) = request_store();
        requests.record(&SLOW_PAGE, exemplar(1, 0.7));
        requests.record(&SLOW_PAGE, exemplar(2, 0.71)); // same bucket: replaces 1
        requests.record(&SLOW_PAGE, exemplar(3, 0.002));
        let text = encode_openmetrics(&registry.gather(), &store);

        let series = r#"endpoint="/slow-page",method="GET",service="front-end",status="200""#;
        let span = "span_id=\"00f067aa0ba902b7\"";
        assert!(text.contains(&format!(
            "http_requests_duration_seconds_bucket{{{series},le=\"1.0\"}} 2 # {{trace_id=\"00000000000000000000000000000002\",{span}}} 0.71 1764000000.250\n"
        )), "{text}");
        assert!(text.contains(&format!(
            "http_requests_duration_seconds_bucket{{{series},le=\"0.0025\"}} 1 # {{trace_id=\"00000000000000000000000000000003\",{span}}} 0.002 1764000000.250\n"
        )), "{text}");
        assert!(!text.contains("trace_id=\"00000000000000000000000000000001\""));
        assert!(text.contains(&format!(
            "http_requests_duration_seconds_bucket{{{series},le=\"+Inf\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "http_requests_duration_seconds_count{{{series}}} 2\n"
        )));
        // The counter family drops `_total`, its samples keep it; its
        // exemplar is the series' latest request, worth one.
        assert!(text.contains("# TYPE http_requests counter\n"));
        assert!(text.contains(&format!(
            "http_requests_total{{{series}}} 2 # {{trace_id=\"00000000000000000000000000000003\",{span}}} 1 1764000000.250\n"
        )), "{text}");
        // A series without sampled requests has no exemplars.
        let root = r#"endpoint="/",method="GET",service="front-end",status="200""#;
        assert!(
            text.lines()
                .filter(|l| l.contains(root))
                .all(|l| !l.contains('#'))
        );
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }

    #[test]
    fn an_exemplar_slower_than_every_bound_sits_on_the_infinite_bucket() {
        let (registry, histogram) = request_metrics();
        histogram
            .with_label_values(&["/slow-page", "GET", "200"])
            .observe(45.0);
        let (store, requests) = request_store();
        requests.record(&SLOW_PAGE, exemplar(9, 45.0));
        let text = encode_openmetrics(&registry.gather(), &store);
        let line = text
            .lines()
            .find(|l| l.contains(r#"endpoint="/slow-page""#) && l.contains(r#"le="+Inf""#))
            .unwrap();
        assert!(line.ends_with(" 3 # {trace_id=\"00000000000000000000000000000009\",span_id=\"00f067aa0ba902b7\"} 45 1764000000.250"), "{line}");
    }

    #[test]
    fn each_registered_histogram_keeps_its_own_exemplars_on_its_own_buckets() {
        let (registry, _) = request_metrics();
        let (store, requests) = request_store();
        let const_labels = HashMap::from([("service".to_owned(), "front-end".to_owned())]);
        let queries = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("db_query_duration_seconds", "Query duration")
                .const_labels(const_labels)
                .buckets(vec![0.00001, 0.0001, 0.001]),
            &["query"],
        )
        .unwrap();
        registry.register(Box::new(queries.clone())).unwrap();
        for (query, seconds) in [("by_sku", 0.00004), ("by_sku", 0.000003), ("scan", 0.002)] {
            queries.with_label_values(&[query]).observe(seconds);
        }
        let query_exemplars = store.register(
            "db_query_duration_seconds",
            &["query"],
            &[0.00001, 0.0001, 0.001],
            None,
        );
        query_exemplars.record(&["by_sku"], exemplar(4, 0.00004));
        query_exemplars.record(&["scan"], exemplar(5, 0.002));
        requests.record(&SLOW_PAGE, exemplar(6, 0.7));
        let text = encode_openmetrics(&registry.gather(), &store);

        let with_trace = |trace: u128| -> Vec<&str> {
            let id = format!("trace_id=\"{:032x}\"", trace);
            text.lines().filter(|l| l.contains(&id)).collect()
        };
        let by_sku = r#"query="by_sku",service="front-end""#;
        assert_eq!(
            with_trace(4),
            [format!(
                "db_query_duration_seconds_bucket{{{by_sku},le=\"0.0001\"}} 2 # {{trace_id=\"00000000000000000000000000000004\",span_id=\"00f067aa0ba902b7\"}} 0.00004 1764000000.250"
            )],
            "{text}"
        );
        // Slower than every bound of its own histogram (not of the request one).
        let scan = with_trace(5);
        assert!(
            scan.len() == 1 && scan[0].starts_with(r#"db_query_duration_seconds_bucket{query="scan",service="front-end",le="+Inf"} 1 # "#),
            "{text}"
        );
        // The request series keep theirs; no counter exemplar for a
        // histogram registered without one; bounds below 1e-4 written as Go does.
        assert_eq!(with_trace(6).len(), 2, "{text}");
        assert!(text.contains(r#"le="1e-05"} 1"#), "{text}");
    }

    #[test]
    fn label_values_and_numbers_are_written_as_openmetrics_wants() {
        assert_eq!(
            escape_label_value(
                r#"a"b\c
d"#
            ),
            r#"a\"b\\c\nd"#
        );
        assert_eq!(canonical(1.0), "1.0");
        assert_eq!(canonical(0.0025), "0.0025");
        assert_eq!(canonical(0.000005), "5e-06");
        assert_eq!(canonical(2.5e-5), "2.5e-05");
        assert_eq!(canonical(f64::INFINITY), "+Inf");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.125), "0.125");
        assert_eq!(number(f64::NAN), "NaN");
    }
}
