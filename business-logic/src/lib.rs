//! business-logic: deliberately slow and fast endpoints doing real work on a
//! database (SQLite or PostgreSQL), with traces, logs and metrics that make
//! the slowness easy to find.

pub mod canary;
pub mod catalog;
pub mod db;
pub mod problem;
pub mod routes;
pub mod settings;
pub mod startup;

// The modules form no import circle (`settings` and `db` at the bottom, the
// endpoints on top): test-support/tests/module_graph.rs checks every crate.
