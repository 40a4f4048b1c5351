//! The pages, rendered with askama templates from `templates/`. Every link
//! is relative, so the app works at `/` and behind a prefix such as
//! `/demo-app/` that a proxy strips.

use askama::Template;

use crate::backend::{FastAnswer, SlowAnswer};

/// The landing page.
#[derive(Debug, Template)]
#[template(path = "index.html")]
pub struct Landing;

/// What the fast and slow pages show around the backend's answer.
#[derive(Debug)]
pub struct Timing {
    /// Front-end request start to page rendered.
    pub total_ms: f64,
    /// Front-end to business-logic round trip.
    pub backend_round_trip_ms: f64,
    /// Time business-logic reports for its own work.
    pub backend_ms: f64,
}

/// The trace of this request and where to look at it.
#[derive(Debug)]
pub struct TraceLinks {
    pub trace_id: String,
    pub jaeger_url: String,
    pub logs_url: String,
}

/// The fast page's result.
#[derive(Debug, Template)]
#[template(path = "fast.html")]
pub struct FastPage {
    pub answer: FastAnswer,
    pub timing: Timing,
    pub trace: Option<TraceLinks>,
}

/// The slow page's result.
#[derive(Debug, Template)]
#[template(path = "slow.html")]
pub struct SlowPage {
    pub answer: SlowAnswer,
    pub timing: Timing,
    pub trace: Option<TraceLinks>,
}

/// A friendly error page.
#[derive(Debug, Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub status: u16,
    pub title: &'a str,
    pub message: &'a str,
    pub hint: &'a str,
    pub trace: Option<TraceLinks>,
}

/// Cents as `123.45`.
pub fn money(cents: &i64) -> String {
    format!("{}.{:02}", cents / 100, (cents % 100).abs())
}
