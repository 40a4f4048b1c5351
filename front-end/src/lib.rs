//! front-end: the demo's pages. Each page calls business-logic, then shows
//! its answer, the time each hop took, and the trace id with links to the
//! trace in Jaeger and its logs in Grafana.

pub mod backend;
pub mod error;
pub mod links;
pub mod pages;
pub mod routes;
pub mod settings;
pub mod startup;
