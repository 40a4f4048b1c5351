//! The pages, rendered with askama templates from `templates/`. Every link
//! is relative, so the app works at `/` and behind a prefix such as
//! `/demo-app/` that a proxy strips; `root` leads from the page's own
//! address back to the app's top (`./`, or `../` per level for an address
//! such as `/a/b`).

use askama::Template;
use contract::{FastAnswer, SlowAnswer};

use crate::links::{Links, TraceLinks};

/// `root` of the pages at the top level.
pub const TOP: &str = "./";

/// The relative way from `path` (as the service sees it) back to the top:
/// `./` for `/x`, `../` for `/a/b`, `../../` for `/a/b/c`.
pub fn root_of(path: &str) -> String {
    let depth = path.matches('/').count().saturating_sub(1);
    if depth == 0 {
        TOP.to_owned()
    } else {
        "../".repeat(depth)
    }
}

/// The landing page; it promises only the links the result pages show.
#[derive(Debug, Template)]
#[template(path = "index.html")]
pub struct Landing<'a> {
    pub root: &'static str,
    pub links: &'a Links,
}

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

/// The fast page's result.
#[derive(Debug, Template)]
#[template(path = "fast.html")]
pub struct FastPage {
    pub root: &'static str,
    pub answer: FastAnswer,
    pub timing: Timing,
    pub trace: Option<TraceLinks>,
}

/// The slow page's result.
#[derive(Debug, Template)]
#[template(path = "slow.html")]
pub struct SlowPage {
    pub root: &'static str,
    pub answer: SlowAnswer,
    pub timing: Timing,
    pub trace: Option<TraceLinks>,
}

/// A friendly error page.
#[derive(Debug, Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub root: &'a str,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_leads_back_to_the_top() {
        assert_eq!(root_of("/"), "./");
        assert_eq!(root_of("/wp-login.php"), "./");
        assert_eq!(root_of("/a/b"), "../");
        assert_eq!(root_of("/a/b/"), "../../");
        assert_eq!(root_of("/static/x/y.css"), "../../");
    }
}
