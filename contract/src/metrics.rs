//! What the services' `/metrics` serves: every metric name and label a
//! dashboard, an alert or a test reads. The request metrics are
//! `actix-web-prom`'s (service-kit names them as it does); the rest are the
//! services' own.

/// Requests answered, per `endpoint`, `method` and `status` (both services).
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
/// How long requests took, per `endpoint`, `method` and `status` (both
/// services); its buckets carry exemplars.
pub const HTTP_REQUESTS_DURATION_SECONDS: &str = "http_requests_duration_seconds";

/// How long business-logic's database queries took, per [`QUERY`]; its
/// buckets carry exemplars naming the query's span.
pub const DB_QUERY_DURATION_SECONDS: &str = "db_query_duration_seconds";
/// The label naming the query: one of a fixed set of names in
/// business-logic's repository, never the SQL text.
pub const QUERY: &str = "query";
