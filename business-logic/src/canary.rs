//! The canary's regression: what the same image does differently when it runs
//! as business-logic v2 with the regression settings. What every knob does is
//! here (they are read and checked with the other settings,
//! [`Regression`]); all are off by default, and each one shows itself where
//! a user looks:
//!
//! - `REGRESSION_EXTRA_QUERY=true`: after the indexed lookup, the fast
//!   endpoint also counts the catalog items whose name contains the found
//!   item's name (`name LIKE '%Item 42%'`). A leading wildcard cannot use an
//!   index, so every fast request scans the whole `catalog_items` table, in
//!   its own client span named [`crate::db::EXTRA_QUERY_SPAN`].
//! - `REGRESSION_ERROR_RATE=0.05`: that share of fast requests fails with a
//!   500 after the lookups; the request's log line and its span say
//!   "v2 regression: injected failure".
//!
//! The `SERVICE_VERSION` setting names the version; the regression does not
//! depend on it, so `v1` with the knobs on is just as bad (the chart sets the
//! knobs on the v2 Deployment only).

use contract::Item;

use crate::db::Database;
use crate::problem::ApiError;
use crate::settings::Regression;

// The knobs themselves are plain settings (`crate::settings` reads and
// checks them); what they do is here.
impl Regression {
    /// Runs after the fast endpoint's own lookup found `item`: the extra
    /// query when it is on, then the injected failure for `error_rate` of
    /// the requests.
    pub async fn after_fast_lookup(
        &self,
        db: &Database,
        item: &Item,
        version: &str,
    ) -> Result<(), ApiError> {
        if self.extra_query {
            let similar = db.count_items_named_like(&item.name).await?;
            tracing::debug!(similar, "v2 regression: extra unindexed lookup done");
        }
        if self.error_rate > 0.0 && fastrand::f64() < self.error_rate {
            return Err(ApiError::InjectedFailure(format!(
                "business-logic {version} regression: injected failure (REGRESSION_ERROR_RATE={})",
                self.error_rate
            )));
        }
        Ok(())
    }
}
