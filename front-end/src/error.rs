//! Everything a page can answer besides success, as a friendly HTML page
//! with the trace id and its links. A handler returns a [`PageError`]; the
//! shared middleware's error mapping renders it with what it needs from the
//! request (the links in the application state, the way back to the top).
//! Rendering has no side effects; the request middleware logs the error and
//! its cause once.

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use askama::Template;

use crate::backend::BackendError;
use crate::links::Links;
use crate::pages::{ErrorPage, TOP, root_of};

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
    #[error("the request's header block is {0} bytes; allowed: up to {max} bytes", max = service_kit::MAX_HEADER_BYTES)]
    HeadersTooLarge(usize),
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
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The page without links, at the top level; the middleware renders
    /// it in full (`response_for`).
    fn error_response(&self) -> HttpResponse {
        self.page(&Links::default(), TOP)
    }
}

impl PageError {
    /// The error page, with `links` for the current trace and `root` as the
    /// way back to the top.
    pub fn page(&self, links: &Links, root: &str) -> HttpResponse {
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
            Self::HeadersTooLarge(_) => (
                self.to_string(),
                "Clear this site's cookies or shorten the request, then try again.",
            ),
            Self::Render(_) => (
                "Something went wrong while building the page.".to_owned(),
                "The trace id finds the details in the logs.",
            ),
        };
        let page = ErrorPage {
            root,
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message: &message,
            hint,
            trace: links.for_current_trace(),
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

impl From<contract::QueryError> for PageError {
    fn from(error: contract::QueryError) -> Self {
        Self::BadRequest(error.to_string())
    }
}

impl service_kit::HeadersTooLarge for PageError {
    fn headers_too_large(bytes: usize) -> Self {
        Self::HeadersTooLarge(bytes)
    }
}

impl service_kit::ServiceError for PageError {
    /// The full error page: with the trace links from the application
    /// state, and with asset links that work from the request's address
    /// (`/a/b` too).
    fn response_for(&self, request: &HttpRequest) -> Option<HttpResponse> {
        let links = request.app_data::<web::Data<Links>>();
        Some(self.page(
            links.map_or(&Links::default(), |l| l.get_ref()),
            &root_of(request.path()),
        ))
    }
}
