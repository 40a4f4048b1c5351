//! The canary's regression: what the same image does differently when it runs
//! as business-logic v2 with the regression settings. Every knob is here, off
//! by default, and each one shows itself where a user looks:
//!
//! - `REGRESSION_EXTRA_QUERY=true`: after the indexed lookup, the fast
//!   endpoint also counts the catalog items whose name contains the found
//!   item's name (`name LIKE '%Item 42%'`). A leading wildcard cannot use an
//!   index, so every fast request scans the whole `catalog_items` table, in
//!   its own client span named [`EXTRA_QUERY_SPAN`].
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

/// The span name of the extra lookup, as Jaeger lists it.
pub const EXTRA_QUERY_SPAN: &str = "SELECT catalog_items name LIKE (unindexed scan)";

/// What the regression settings switch on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Regression {
    /// `REGRESSION_EXTRA_QUERY`: the unindexed extra lookup on every fast request.
    pub extra_query: bool,
    /// `REGRESSION_ERROR_RATE`: share (0 to 1) of fast requests answered with a 500.
    pub error_rate: f64,
}

impl Regression {
    /// Whether any knob is on.
    pub fn is_active(&self) -> bool {
        self.extra_query || self.error_rate > 0.0
    }

    /// Checks the error rate; the message names the variable, the value and
    /// what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "REGRESSION_ERROR_RATE={} is out of range; allowed: 0 to 1 (0.05 fails one request in twenty)",
                self.error_rate
            ));
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default() {
        assert!(!Regression::default().is_active());
        assert!(Regression::default().validate().is_ok());
    }

    #[test]
    fn an_error_rate_outside_zero_to_one_is_refused() {
        for rate in [-0.1, 1.5, f64::NAN] {
            let e = Regression {
                error_rate: rate,
                ..Regression::default()
            }
            .validate()
            .unwrap_err();
            assert!(e.contains("REGRESSION_ERROR_RATE"), "{e}");
            assert!(e.contains("allowed: 0 to 1"), "{e}");
        }
    }
}
