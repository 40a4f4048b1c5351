//! Log lines are written off the request path (buffered, by a background
//! thread), yet none is lost when the services stop.

use std::time::Duration;

use futures::future::join_all;
use test_support::service::Service;
use test_support::wait_until;

use crate::helpers::Stack;

const BURST: usize = 300;

/// Lines of `service` with all of `needles` and a trace id.
fn count(service: &Service, needles: &[&str]) -> usize {
    service
        .logs()
        .iter()
        .filter(|line| needles.iter().all(|n| line.contains(n)) && line.contains(" trace_id="))
        .count()
}

/// Stops `service` with SIGTERM and waits until `expected` lines with
/// `needles` have arrived (or the limit passed), returning how many did.
fn stop_and_count(service: &mut Service, needles: &[&str], expected: usize) -> usize {
    service.signal(test_support::service::Signal::TERM);
    let status = service.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
    // The pipe reader may still be catching up after the exit.
    wait_until(Duration::from_secs(5), || {
        (count(service, needles) >= expected).then_some(())
    });
    count(service, needles)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_then_sigterm_loses_no_log_line_in_either_service() {
    // The point is lines, not speed: a burst on a busy machine (debug
    // builds) may outlast the fast page's 2 s default, and a 504 is not
    // what this test looks for.
    let mut stack = Stack::start(&[("FAST_PAGE_TIMEOUT_MS", "30000")]).await;
    let requests = (0..BURST).map(|_| stack.page("/fast-page"));
    let statuses: Vec<u16> = join_all(requests)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // Straight after the last answer, before the writer's next interval.
    let front = ["request completed", r#"path="/fast-page""#];
    let front_logged = stop_and_count(&mut stack.front, &front, BURST);
    let backend = stack.backend.as_mut().unwrap();
    let back = ["request completed", r#"path="/fast-endpoint""#];
    let back_logged = stop_and_count(backend, &back, BURST);
    assert_eq!(front_logged, BURST, "front-end 'request completed' lines");
    assert_eq!(
        count(&stack.front, &["fast page rendered"]),
        BURST,
        "front-end 'fast page rendered' lines"
    );
    assert_eq!(
        back_logged, BURST,
        "business-logic 'request completed' lines"
    );
    assert_eq!(
        count(stack.backend.as_ref().unwrap(), &["fast lookup done"]),
        BURST,
        "business-logic 'fast lookup done' lines"
    );
    // Each line whole: the last one is the shutdown's.
    let last = stack.front.logs();
    assert!(
        last.iter().any(|l| l.contains("front-end stopped")),
        "the shutdown line is there too"
    );
}
