//! front-end integration tests: both real binaries on real ports, the
//! front-end calling business-logic, both exporting to one stand-in collector.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod browser;
mod canary;
mod helpers;
mod logs;
mod pages;
mod start_up;
mod traces;
