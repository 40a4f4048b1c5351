//! API errors as `application/problem+json` responses, with the contract's
//! [`Problem`] body (RFC 9457). Turning an error into a response has no side
//! effects; the request middleware logs it (with its cause) once. Bodies
//! never carry internal error text.

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use contract::{PROBLEM_JSON, Problem};

/// Everything an endpoint can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter is malformed, out of range, repeated or unknown.
    #[error("{0}")]
    InvalidQuery(String),
    /// The request's header block is over the mesh's limit.
    #[error("the request's header block is {0} bytes; allowed: up to {max} bytes", max = service_kit::MAX_HEADER_BYTES)]
    HeadersTooLarge(usize),
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// No route has this path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// The route exists but not for this method.
    #[error("method {method} not allowed; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: &'static str },
    /// The database did not answer (not up yet, restarting, pool exhausted).
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    /// Migrations have not been applied yet (start-up, or waiting for the
    /// migration lock another replica holds).
    #[error("database not migrated yet")]
    NotReady,
    /// Anything else; details go to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// The canary regression's deliberate failure (`crate::canary`); the
    /// message, which says so, goes to the log and the span.
    #[error("{0}")]
    InjectedFailure(String),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::DatabaseUnavailable(error),
            other => Self::Internal(other.into()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NotFound(_) | Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::DatabaseUnavailable(_) | Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) | Self::InjectedFailure(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let detail = match self {
            Self::DatabaseUnavailable(_) | Self::NotReady => {
                "The database is not answering; try again shortly.".to_owned()
            }
            Self::Internal(_) | Self::InjectedFailure(_) => {
                "Something went wrong; the trace id finds the details.".to_owned()
            }
            other => other.to_string(),
        };
        let body = Problem::new(
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            detail,
        )
        .with_trace_id(telemetry::current_trace_id());
        let mut response = HttpResponse::build(status);
        response.insert_header((CONTENT_TYPE, PROBLEM_JSON));
        if let Self::MethodNotAllowed { allow, .. } = self {
            response.insert_header((ALLOW, *allow));
        }
        response.json(body)
    }
}

impl From<contract::QueryError> for ApiError {
    fn from(error: contract::QueryError) -> Self {
        Self::InvalidQuery(error.to_string())
    }
}

impl service_kit::HeadersTooLarge for ApiError {
    fn headers_too_large(bytes: usize) -> Self {
        Self::HeadersTooLarge(bytes)
    }
}

/// Default service for unknown paths.
pub async fn no_route(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NoRoute(request.path().to_owned()))
}

/// Default service of a GET-only resource.
pub async fn get_only(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        allow: "GET",
    })
}

/// Errors need nothing from the request: problem+json as
/// [`ApiError`]'s `ResponseError` writes it.
impl service_kit::ServiceError for ApiError {}
