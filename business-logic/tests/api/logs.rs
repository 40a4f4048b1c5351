//! Log lines are written off the request path (buffered, by a background
//! thread), yet none is lost when the service stops.

use std::time::Duration;

use futures::future::join_all;
use test_support::database::Backend;
use test_support::wait_until;

use crate::helpers::{TestApp, on_both_databases};

const BURST: usize = 300;

on_both_databases!(a_burst_then_sigterm_loses_no_log_line);

async fn a_burst_then_sigterm_loses_no_log_line(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let statuses =
        join_all((0..BURST).map(|_| async { app.get("/fast-endpoint").await.status().as_u16() }))
            .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // Straight after the last answer, before the writer's next interval.
    app.service.signal(test_support::service::Signal::TERM);
    let status = app.service.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
    let count = |needle: &str| {
        app.service
            .logs()
            .iter()
            .filter(|l| l.contains(needle) && l.contains(" trace_id="))
            .count()
    };
    let completed = r#"request completed method="GET" path="/fast-endpoint" status=200"#;
    // The pipe reader may still be catching up after the exit.
    wait_until(Duration::from_secs(5), || {
        (count(completed) >= BURST).then_some(())
    });
    assert_eq!(count(completed), BURST, "'request completed' lines");
    assert_eq!(count("fast lookup done"), BURST, "'fast lookup done' lines");
    assert!(
        app.service
            .logs()
            .iter()
            .any(|l| l.contains("business-logic stopped")),
        "the shutdown line is there too"
    );
}
