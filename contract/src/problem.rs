//! The body of every business-logic error: a problem document as RFC 9457
//! (which replaced RFC 7807) defines it, sent as [`PROBLEM_JSON`].
//! business-logic writes it and the front-end reads it with this one type.

use serde::{Deserialize, Serialize};

/// The content type of a [`Problem`].
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The problem type of every problem business-logic sends: no type of its
/// own, the status says what kind of problem it is (RFC 9457 §4.2.1).
pub const ABOUT_BLANK: &str = "about:blank";

/// A problem document (RFC 9457 §3.1), plus the trace id to look it up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI reference naming the problem type; absent means `about:blank`.
    #[serde(rename = "type", default = "about_blank")]
    #[cfg_attr(feature = "openapi", schema(example = "about:blank"))]
    pub kind: String,
    /// The status' reason phrase, e.g. `Bad Request`.
    pub title: String,
    /// The HTTP status code, the same as the response's.
    #[cfg_attr(feature = "openapi", schema(minimum = 400, maximum = 599))]
    pub status: u16,
    /// What went wrong with this request, fit to show to its caller: for a
    /// bad query parameter it names the parameter, what is allowed and what
    /// came. Never internal error text.
    pub detail: String,
    /// A URI reference for this occurrence of the problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension member: the trace id of the request (32 lowercase hex
    /// digits), which finds its spans and log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{32}$"))]
    pub trace_id: Option<String>,
}

fn about_blank() -> String {
    ABOUT_BLANK.to_owned()
}

impl Problem {
    /// A problem of type `about:blank` with this status, its reason phrase
    /// as the title, and `detail`.
    pub fn new(status: u16, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: about_blank(),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            instance: None,
            trace_id: None,
        }
    }

    pub fn with_trace_id(mut self, trace_id: Option<String>) -> Self {
        self.trace_id = trace_id;
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_problem_is_written_with_the_rfc_member_names() {
        let problem = Problem::new(400, "Bad Request", "sku must be …")
            .with_trace_id(Some("0af7651916cd43dd8448eb211c80319c".into()));
        assert_eq!(
            serde_json::to_value(&problem).unwrap(),
            serde_json::json!({"type": "about:blank", "title": "Bad Request", "status": 400,
                               "detail": "sku must be …",
                               "trace_id": "0af7651916cd43dd8448eb211c80319c"})
        );
    }

    #[test]
    fn a_problem_without_type_or_extensions_still_parses() {
        let problem: Problem = serde_json::from_str(
            r#"{"title":"Not Found","status":404,"detail":"no route for /x","other":1}"#,
        )
        .unwrap();
        assert_eq!(problem, Problem::new(404, "Not Found", "no route for /x"));
    }
}
