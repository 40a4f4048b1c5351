//! The contract between the two services: every fact on the wire. A change
//! of the wire format is an edit here, and the compiler finds every user.
//!
//! - [`routes`]: the services' names, default ports and paths;
//! - [`metrics`]: the names of the metrics they serve at `/metrics`;
//! - `query`: the query parameters of every route, their limits and the one
//!   rule for unknown ones ([`FastQuery`], [`SlowQuery`], [`NoQuery`]);
//! - the answers ([`FastAnswer`], [`SlowAnswer`]) and the error body
//!   ([`Problem`]);
//! - `openapi` (feature `openapi`): business-logic's OpenAPI document, built
//!   from all of the above.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod duration;
mod elapsed;
pub mod metrics;
#[cfg(feature = "openapi")]
pub mod openapi;
mod problem;
mod query;
pub mod routes;

pub use duration::duration_within;
pub use elapsed::millis;
pub use problem::{ABOUT_BLANK, PROBLEM_JSON, Problem};
pub use query::{DELAY_MS, FastQuery, NoQuery, QueryError, SKU, SlowQuery};

/// The largest `delay_ms` the slow endpoint (and the slow page) accepts, and
/// the upper bound of `SLOW_ENDPOINT_DELAY_MS`.
pub const MAX_DELAY_MS: u64 = 60_000;

/// The longest `sku` the fast endpoint accepts.
pub const MAX_SKU_LEN: usize = 32;

/// One catalog item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Item {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price_cents: i64,
    pub stock: i64,
}

/// `GET /fast-endpoint`: one item, read by its SKU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FastAnswer {
    /// Always `fast`.
    pub endpoint: String,
    /// The business-logic version that answered (`SERVICE_VERSION`, `v1`,
    /// `v2`); absent in answers from before versions were reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub item: Item,
    /// business-logic's own time for the request.
    pub elapsed_ms: f64,
    pub trace_id: Option<String>,
}

/// One category of `GET /slow-endpoint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CategorySummary {
    pub items: i64,
    pub units_in_stock: i64,
    pub inventory_value_cents: i64,
    pub average_price_cents: i64,
    /// This category's share of the whole inventory value, in percent.
    pub share_of_value_pct: f64,
}

/// `GET /slow-endpoint`: the whole catalog summarised per category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlowAnswer {
    /// Always `slow`.
    pub endpoint: String,
    /// The business-logic version that answered (`SERVICE_VERSION`, `v1`,
    /// `v2`); absent in answers from before versions were reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The deliberate delay spent, in milliseconds.
    pub delay_ms: u64,
    pub items_processed: i64,
    pub categories: BTreeMap<String, CategorySummary>,
    /// business-logic's own time for the request.
    pub elapsed_ms: f64,
    pub trace_id: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_round_trip_through_json() {
        let answer = FastAnswer {
            endpoint: "fast".into(),
            version: Some("v2".into()),
            item: Item {
                sku: "SKU-00042".into(),
                name: "Item 42".into(),
                category: "garden".into(),
                price_cents: 1234,
                stock: 7,
            },
            elapsed_ms: 1.5,
            trace_id: None,
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["item"]["price_cents"], 1234);
        assert_eq!(json["version"], "v2");
        assert_eq!(serde_json::from_value::<FastAnswer>(json).unwrap(), answer);
    }

    #[test]
    fn an_answer_without_a_version_still_parses() {
        let fast: FastAnswer = serde_json::from_str(
            r#"{"endpoint":"fast","elapsed_ms":1.0,"trace_id":null,
                "item":{"sku":"SKU-00001","name":"Item 1","category":"garden","price_cents":100,"stock":1}}"#,
        )
        .unwrap();
        assert_eq!(fast.version, None);
        let slow: SlowAnswer = serde_json::from_str(
            r#"{"endpoint":"slow","delay_ms":0,"items_processed":0,"categories":{},"elapsed_ms":1.0,"trace_id":null}"#,
        )
        .unwrap();
        assert_eq!(slow.version, None);
        // And none is written back: the wire format of an unversioned answer is unchanged.
        assert!(
            serde_json::to_value(&slow)
                .unwrap()
                .get("version")
                .is_none()
        );
    }
}
