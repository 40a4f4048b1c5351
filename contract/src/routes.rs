//! Where the two services are found: their names, default ports and paths.
//! Each service registers its routes from here, and verify, bench and the
//! tests ask for them by these names.

/// The Prometheus scrape, on both services: answered by the metrics
/// middleware (service-kit) ahead of the routes while `METRICS_ENABLED`
/// (the default).
pub const METRICS: &str = "/metrics";

/// business-logic: the API the front-end calls.
pub mod business_logic {
    /// `OTEL_SERVICE_NAME` by default, and the chart's name for it.
    pub const SERVICE_NAME: &str = "business-logic";
    /// `PORT` by default (the Makefile's `BUSINESS_LOGIC_PORT` too).
    pub const DEFAULT_PORT: u16 = 8081;

    pub const FAST_ENDPOINT: &str = "/fast-endpoint";
    pub const SLOW_ENDPOINT: &str = "/slow-endpoint";
    pub const HEALTHZ: &str = "/healthz";
    pub const READYZ: &str = "/readyz";
    pub const OPENAPI: &str = "/openapi.json";
    pub use super::METRICS;

    /// Every routed path of business-logic. The server registers exactly
    /// these (its `configure` matches on them, so a new one does not compile
    /// without a handler) and the OpenAPI document describes exactly these
    /// (plus [`METRICS`] while metrics are served).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Route {
        FastEndpoint,
        SlowEndpoint,
        Healthz,
        Readyz,
        OpenApi,
    }

    impl Route {
        pub const ALL: [Self; 5] = [
            Self::FastEndpoint,
            Self::SlowEndpoint,
            Self::Healthz,
            Self::Readyz,
            Self::OpenApi,
        ];

        pub const fn path(self) -> &'static str {
            match self {
                Self::FastEndpoint => FAST_ENDPOINT,
                Self::SlowEndpoint => SLOW_ENDPOINT,
                Self::Healthz => HEALTHZ,
                Self::Readyz => READYZ,
                Self::OpenApi => OPENAPI,
            }
        }
    }
}

/// front-end: the pages a browser asks for.
pub mod front_end {
    /// `OTEL_SERVICE_NAME` by default, and the chart's name for it.
    pub const SERVICE_NAME: &str = "front-end";
    /// `PORT` by default (the Makefile's `FRONT_END_PORT` too).
    pub const DEFAULT_PORT: u16 = 8080;

    pub const LANDING: &str = "/";
    pub const FAST_PAGE: &str = "/fast-page";
    pub const SLOW_PAGE: &str = "/slow-page";
    pub const STYLESHEET: &str = "/static/style.css";
    pub const HEALTHZ: &str = "/healthz";
    pub const READYZ: &str = "/readyz";

    /// Every routed path of the front-end.
    pub const ALL: [&str; 6] = [LANDING, FAST_PAGE, SLOW_PAGE, STYLESHEET, HEALTHZ, READYZ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_distinct_and_absolute() {
        let mut paths: Vec<&str> = business_logic::Route::ALL
            .iter()
            .map(|r| r.path())
            .chain([business_logic::METRICS])
            .collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), business_logic::Route::ALL.len() + 1);
        assert!(paths.iter().all(|p| p.starts_with('/')));
        let mut pages = front_end::ALL.to_vec();
        pages.sort_unstable();
        pages.dedup();
        assert_eq!(pages.len(), front_end::ALL.len());
    }
}
