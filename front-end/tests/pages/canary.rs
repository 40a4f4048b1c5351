//! The canary: the result pages say which business-logic version answered,
//! and v2's injected failures reach the browser as a friendly 502 page.

use crate::helpers::Stack;

const ANSWERED_BY_V2: &str = r#"id="answered-by">answered by business-logic <strong>v2</strong>"#;

#[tokio::test(flavor = "multi_thread")]
async fn both_result_pages_say_which_business_logic_version_answered() {
    let stack = Stack::start_with(&[("SERVICE_VERSION", "v2")], &[], None).await;
    for path in ["/fast-page", "/slow-page?delay_ms=10"] {
        let (status, page) = stack.page(path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert!(page.contains(ANSWERED_BY_V2), "{path}: {page}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_the_pages_name_v1() {
    let stack = Stack::start(&[]).await;
    let (status, page) = stack.page("/fast-page").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"id="answered-by">answered by business-logic <strong>v1</strong>"#),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_v2_gives_the_browser_a_502_page_not_a_500() {
    let stack = Stack::start_with(
        &[("SERVICE_VERSION", "v2"), ("REGRESSION_ERROR_RATE", "1")],
        &[],
        None,
    )
    .await;
    let (status, page) = stack.page("/fast-page").await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("<html"), "{page}");
    // The slow endpoint is not part of the regression.
    let (status, page) = stack.page("/slow-page?delay_ms=10").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(ANSWERED_BY_V2), "{page}");
}

/// business-logic's problem body reaches the page through the contract's
/// type: the page shows the detail business-logic sent, as sent.
#[tokio::test(flavor = "multi_thread")]
async fn the_error_page_shows_the_detail_of_business_logics_problem() {
    let stack = Stack::start_with(&[("REGRESSION_ERROR_RATE", "1")], &[], None).await;
    let direct = stack
        .client
        .get(format!(
            "http://127.0.0.1:{}{}",
            stack.backend_port,
            contract::routes::business_logic::FAST_ENDPOINT
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.headers()["content-type"], contract::PROBLEM_JSON);
    let problem: contract::Problem = direct.json().await.unwrap();
    assert_eq!(problem.status, 500);
    assert!(!problem.detail.is_empty());

    let (status, page) = stack.page(contract::routes::front_end::FAST_PAGE).await;
    assert_eq!(status, 502, "{page}");
    let shown = format!("business-logic answered 500: {}", problem.detail);
    assert!(page.contains(&shown), "{shown:?} not in {page}");
}
