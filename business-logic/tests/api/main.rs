//! business-logic integration tests: the real binary on a real port, talked
//! to over HTTP, exporting to a stand-in collector, against SQLite and (when
//! `TEST_DATABASE_URL` is set) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod canary;
mod endpoints;
mod helpers;
mod logs;
mod metrics;
mod openapi;
mod telemetry;
mod workers;
