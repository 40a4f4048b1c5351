//! Everything a page can answer besides success, as a friendly HTML page
//! with the trace id. Rendering has no side effects; the request middleware
//! logs the error and its cause once.

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, CONTENT_TYPE};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::backend::BackendError;
use crate::pages::ErrorPage;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{0}")]
    BadRequest(String),
    #[error("no page at {0}")]
    NotFound(String),
    #[error("method {0} not allowed")]
    MethodNotAllowed(String),
    #[error("rendering the page failed")]
    Render(#[from] askama::Error),
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Backend(BackendError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            Self::Backend(_) => StatusCode::BAD_GATEWAY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (message, hint) = match self {
            Self::Backend(BackendError::Timeout(_)) => (
                self.to_string(),
                "The business-logic service is too slow right now. The trace shows where the time went.",
            ),
            Self::Backend(BackendError::Status { .. }) => (
                self.to_string(),
                "The business-logic service answered with an error. Its logs carry the same trace id.",
            ),
            Self::Backend(_) => (
                self.to_string(),
                "The business-logic service is down or restarting. This page works again as soon as it is back.",
            ),
            Self::BadRequest(_) => (self.to_string(), "Check the address and try again."),
            Self::NotFound(_) => (
                "There is no page at this address.".to_owned(),
                "Start again from the landing page.",
            ),
            Self::MethodNotAllowed(_) => (self.to_string(), "Pages here are read with GET."),
            Self::Render(_) => (
                "Something went wrong while building the page.".to_owned(),
                "The trace id finds the details in the logs.",
            ),
        };
        let page = ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message: &message,
            hint,
            trace: crate::routes::trace_links(),
        };
        let mut response = HttpResponse::build(status);
        if let Self::MethodNotAllowed(_) = self {
            response.insert_header((ALLOW, "GET"));
        }
        match page.render() {
            Ok(html) => response
                .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
                .body(html),
            Err(_) => response
                .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
                .body(message),
        }
    }
}
