//! The query strings of every request, parsed once for both services so
//! that every bad value gets the same message: it names the parameter, what
//! is allowed, and what came. One rule for all routes of both services: a
//! parameter the route does not take is a 400, never ignored.

use std::fmt;

use crate::{MAX_DELAY_MS, MAX_SKU_LEN};

/// A query string that does not fit; its text is fit to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(String);

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryError {}

/// The name of the slow endpoint's (and the slow page's) one parameter.
pub const DELAY_MS: &str = "delay_ms";

/// The name of the fast endpoint's one parameter.
pub const SKU: &str = "sku";

/// The query of every route that takes no parameter: it must be empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoQuery;

impl NoQuery {
    /// Parses a raw query string: any parameter is unknown.
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        match form_urlencoded::parse(query.as_bytes()).next() {
            None => Ok(Self),
            Some((key, _)) => Err(QueryError(format!(
                "unknown query parameter {}; this address takes none",
                echo(&key)
            ))),
        }
    }
}

/// `?delay_ms=` of the slow endpoint and the slow page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlowQuery {
    /// The deliberate delay, 0 to [`MAX_DELAY_MS`]; `None`: the configured default.
    pub delay_ms: Option<u64>,
}

impl SlowQuery {
    /// Parses a raw (still percent-encoded) query string.
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let Some(raw) = only_param(query, DELAY_MS, &delay_rule())? else {
            return Ok(Self::default());
        };
        let delay_ms = raw
            .parse::<u64>()
            .ok()
            // `+1` parses as a u64; keep to plain digits.
            .filter(|ms| *ms <= MAX_DELAY_MS && raw.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| QueryError(format!("{}; got {}", delay_rule(), echo(&raw))))?;
        Ok(Self {
            delay_ms: Some(delay_ms),
        })
    }

    /// The query string that asks for this, `?delay_ms=…` or empty.
    pub fn to_query_string(&self) -> String {
        self.delay_ms
            .map_or_else(String::new, |ms| format!("?delay_ms={ms}"))
    }
}

/// `?sku=` of the fast endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastQuery {
    /// The item to read, 1 to [`MAX_SKU_LEN`] characters; `None`: a random one.
    pub sku: Option<String>,
}

impl FastQuery {
    /// Parses a raw (still percent-encoded) query string.
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let sku = only_param(query, SKU, &sku_rule())?;
        match sku {
            Some(sku) if sku.is_empty() || sku.chars().count() > MAX_SKU_LEN => {
                Err(QueryError(format!("{}; got {}", sku_rule(), echo(&sku))))
            }
            sku => Ok(Self { sku }),
        }
    }
}

/// A value quoted for a message, cut at 40 characters.
fn echo(value: &str) -> String {
    let cut: String = value.chars().take(40).collect();
    if cut.len() < value.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// What `delay_ms` must be, in every message about it.
fn delay_rule() -> String {
    format!("delay_ms must be a whole number of milliseconds from 0 to {MAX_DELAY_MS}")
}

/// What `sku` must be, in every message about it.
fn sku_rule() -> String {
    format!("sku must be 1 to {MAX_SKU_LEN} characters, like SKU-00042")
}

/// The value of `name`, the only parameter allowed, given at most once.
fn only_param(query: &str, name: &str, rule: &str) -> Result<Option<String>, QueryError> {
    let mut found: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != name {
            return Err(QueryError(format!(
                "unknown query parameter {}; allowed: {name}",
                echo(&key)
            )));
        }
        found.push(value.into_owned());
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(QueryError(format!(
            "{rule}, given once; got {} values: {}",
            found.len(),
            found.iter().map(|v| echo(v)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn delay_error(query: &str) -> String {
        SlowQuery::parse(query).unwrap_err().to_string()
    }

    #[test]
    fn delay_ms_in_range_is_accepted() {
        assert_eq!(SlowQuery::parse("").unwrap().delay_ms, None);
        assert_eq!(SlowQuery::parse("delay_ms=0").unwrap().delay_ms, Some(0));
        assert_eq!(
            SlowQuery::parse("delay_ms=60000").unwrap().delay_ms,
            Some(60_000)
        );
        assert_eq!(
            SlowQuery::parse("delay_ms=150").unwrap().to_query_string(),
            "?delay_ms=150"
        );
    }

    #[test]
    fn every_bad_delay_ms_names_the_parameter_the_range_and_the_value() {
        let rule = "delay_ms must be a whole number of milliseconds from 0 to 60000";
        for (query, got) in [
            ("delay_ms=-1", r#""-1""#),
            ("delay_ms=soon", r#""soon""#),
            ("delay_ms=60001", r#""60001""#),
            ("delay_ms=99999999999999999999", r#""99999999999999999999""#),
            ("delay_ms=", r#""""#),
            ("delay_ms=%2B5", r#""+5""#),
            ("delay_ms=1.5", r#""1.5""#),
        ] {
            assert_eq!(delay_error(query), format!("{rule}; got {got}"), "{query}");
        }
        assert_eq!(
            delay_error("delay_ms=1&delay_ms=2"),
            format!(r#"{rule}, given once; got 2 values: "1", "2""#)
        );
        assert_eq!(
            delay_error("delay=5"),
            r#"unknown query parameter "delay"; allowed: delay_ms"#
        );
    }

    #[test]
    fn sku_rules() {
        assert_eq!(FastQuery::parse("").unwrap().sku, None);
        assert_eq!(
            FastQuery::parse("sku=SKU-00042").unwrap().sku.as_deref(),
            Some("SKU-00042")
        );
        let e = FastQuery::parse("sku=").unwrap_err().to_string();
        assert_eq!(
            e,
            r#"sku must be 1 to 32 characters, like SKU-00042; got """#
        );
        let e = FastQuery::parse(&format!("sku={}", "S".repeat(1000)))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("sku must be 1 to 32 characters"), "{e}");
        assert!(e.len() < 120, "the echo is bounded: {e}");
        let e = FastQuery::parse("sku=a&sku=b").unwrap_err().to_string();
        assert!(e.contains("given once"), "{e}");
        assert_eq!(
            FastQuery::parse("foo=1").unwrap_err().to_string(),
            r#"unknown query parameter "foo"; allowed: sku"#
        );
    }

    #[test]
    fn a_route_without_parameters_refuses_every_one() {
        assert_eq!(NoQuery::parse(""), Ok(NoQuery));
        assert_eq!(NoQuery::parse("&"), Ok(NoQuery));
        for (query, name) in [
            ("foo=1", "foo"),
            ("foo", "foo"),
            ("=1", ""),
            ("a=1&b=2", "a"),
        ] {
            assert_eq!(
                NoQuery::parse(query).unwrap_err().to_string(),
                format!("unknown query parameter {name:?}; this address takes none"),
                "{query}"
            );
        }
    }
}
