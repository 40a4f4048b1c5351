use std::time::Duration;

use crate::helpers::{Stack, links, trace_id_on};

#[tokio::test(flavor = "multi_thread")]
async fn the_landing_page_has_both_buttons_and_only_relative_links() {
    let stack = Stack::start(&[]).await;
    let (status, page) = stack.page("/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"id="fast-page" href="fast-page">Fast page</a>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"id="slow-page" href="slow-page">Slow page</a>"#),
        "{page}"
    );
    let links = links(&page);
    assert!(links.contains(&"./static/style.css".to_owned()));
    for link in &links {
        assert!(
            !link.starts_with('/') && !link.contains("://"),
            "absolute link {link:?}"
        );
    }
    // The stylesheet those relative links name is served, from the binary.
    let css = stack.get("/static/style.css").await;
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fast_page_shows_the_backends_item_timings_and_trace_links() {
    let stack = Stack::start(&[]).await;
    let (status, page) = stack.page("/fast-page").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<th>SKU</th><td>SKU-"), "{page}");
    assert!(page.contains(r#"id="total-ms""#) && page.contains(r#"id="backend-ms""#));
    let trace_id = trace_id_on(&page);
    assert!(page.contains(&format!("http://localhost:8080/jaeger/trace/{trace_id}")));
    assert!(page.contains("http://localhost:8080/grafana/explore?"));
    assert!(page.contains(&trace_id.to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_slow_page_shows_every_category_after_the_delay() {
    let stack = Stack::start(&[]).await;
    let (status, page) = stack.page("/slow-page").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("5000 catalog items summarised"), "{page}");
    assert!(page.contains("delay of 150&nbsp;ms"), "{page}");
    for category in [
        "books", "games", "garden", "kitchen", "music", "outdoor", "tools", "toys",
    ] {
        assert!(
            page.contains(&format!("<td>{category}</td>")),
            "{category} missing"
        );
    }
    let (status, page) = stack.page("/slow-page?delay_ms=20").await;
    assert_eq!(status, 200);
    assert!(page.contains("delay of 20&nbsp;ms"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_backend_gives_a_502_page_and_the_front_end_recovers() {
    let mut stack = Stack::start(&[]).await;
    assert_eq!(stack.page("/fast-page").await.0, 200);
    stack.stop_backend();
    let (status, page) = stack.page("/fast-page").await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("business-logic is unreachable"), "{page}");
    let trace_id = trace_id_on(&page);
    assert!(
        stack
            .front
            .wait_for_log(
                "status=502 error=business-logic is unreachable",
                Duration::from_secs(5)
            )
            .is_some_and(|line| line.contains(&trace_id)),
        "the 502 is logged with its trace id:\n{}",
        stack.front.logs().join("\n")
    );
    // The error line is on the SERVER span too (Jaeger shows why it
    // failed); INFO lines stay on stdout only.
    let spans = stack
        .collector
        .wait_for_trace(&trace_id, Duration::from_secs(15), |spans| {
            spans.iter().any(|s| s.kind.as_deref() == Some("SERVER"))
        });
    let server = spans
        .iter()
        .find(|s| s.kind.as_deref() == Some("SERVER"))
        .unwrap();
    assert!(
        server.events.iter().any(|e| e == "ERROR request failed"),
        "{:?}",
        server.events
    );
    let info: Vec<&String> = spans
        .iter()
        .flat_map(|s| &s.events)
        .filter(|e| !e.starts_with("ERROR") && !e.starts_with("WARN"))
        .collect();
    assert!(info.is_empty(), "{info:?}");
    stack.restart_backend().await;
    let (status, page) = stack.page("/fast-page").await;
    assert_eq!(status, 200, "front-end did not recover: {page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_slower_than_the_timeout_gives_a_504_page_and_then_recovers() {
    let stack = Stack::start(&[("SLOW_PAGE_TIMEOUT_MS", "300")]).await;
    let (status, page) = stack.page("/slow-page?delay_ms=2000").await;
    assert_eq!(status, 504, "{page}");
    assert!(page.contains("did not answer within 300 ms"), "{page}");
    trace_id_on(&page);
    let (status, _) = stack.page("/slow-page?delay_ms=10").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_send_the_headers_a_browser_expects() {
    let stack = Stack::start(&[]).await;
    for path in ["/", "/fast-page", "/no-such-page"] {
        let response = stack.get(path).await;
        let h = response.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("style-src 'self'"),
            "{path}: {csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(
            h.get("server").is_none(),
            "{path}: server header leaks a version"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_friendly_html_pages() {
    let stack = Stack::start(&[]).await;
    let cases = [
        ("/no-such-page", 404, "There is no page at this address."),
        // askama escapes the quotes of the message as &#34;
        (
            "/slow-page?delay_ms=abc",
            400,
            "delay_ms must be a whole number of milliseconds from 0 to 60000; got &#34;abc&#34;",
        ),
        (
            "/slow-page?delay_ms=-5",
            400,
            "delay_ms must be a whole number of milliseconds from 0 to 60000; got &#34;-5&#34;",
        ),
        (
            "/slow-page?delay_ms=999999",
            400,
            "delay_ms must be a whole number of milliseconds from 0 to 60000; got &#34;999999&#34;",
        ),
        (
            "/slow-page?delay_ms=1&delay_ms=2",
            400,
            "delay_ms must be a whole number of milliseconds from 0 to 60000, given once; got 2 values: &#34;1&#34;, &#34;2&#34;",
        ),
        (
            "/slow-page?delay=5",
            400,
            "unknown query parameter &#34;delay&#34;; allowed: delay_ms",
        ),
        (
            "/static/..%2f..%2fCargo.toml",
            404,
            "There is no page at this address.",
        ),
    ];
    for (path, status, text) in cases {
        let response = stack.get(path).await;
        assert_eq!(response.status(), status, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        let page = response.text().await.unwrap();
        assert!(page.contains(text), "{path}: {page}");
        trace_id_on(&page);
    }
    let response = stack
        .client
        .post(stack.front.url("/fast-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
}

/// The contract's one rule: a query parameter a page does not take is a 400
/// page naming it, on every route, never ignored.
#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_a_query_parameter_it_does_not_take() {
    let stack = Stack::start(&[]).await;
    for path in contract::routes::front_end::ALL {
        let allowed = if path == contract::routes::front_end::SLOW_PAGE {
            "allowed: delay_ms"
        } else {
            "this address takes none"
        };
        for query in ["foo=1", "foo", "delay_ms=10&foo=1"] {
            let url = format!("{path}?{query}");
            let response = stack.get(&url).await;
            assert_eq!(response.status(), 400, "{url}");
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html"),
                "{url}"
            );
            let page = response.text().await.unwrap();
            let first_unknown = if query.starts_with("delay_ms") && allowed != "allowed: delay_ms" {
                "delay_ms"
            } else {
                "foo"
            };
            let message = format!("unknown query parameter &#34;{first_unknown}&#34;; {allowed}");
            assert!(page.contains(&message), "{url}: {message} not in {page}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_pages_by_endpoint_and_status() {
    let stack = Stack::start(&[]).await;
    stack.page("/fast-page").await;
    stack.page("/fast-page").await;
    let metrics = stack.get("/metrics").await.text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("http_requests_total{") && l.contains(r#"endpoint="/fast-page""#))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        line.contains(r#"service="front-end""#) && line.ends_with(" 2"),
        "{line}"
    );
}

/// The ids of the observability links on a page.
fn shown_links(page: &str) -> (bool, bool) {
    (
        page.contains(r#"id="jaeger-link""#),
        page.contains(r#"id="logs-link""#),
    )
}

/// Under `make run` and on the cluster alike, a page shows a link only
/// where it leads somewhere: the Jaeger link while spans are exported and
/// `JAEGER_UI_URL` is set, the Grafana link when `GRAFANA_URL` is set, on
/// result pages and error pages alike.
#[tokio::test(flavor = "multi_thread")]
async fn pages_show_only_links_that_work() {
    // Front-end settings over the stack's JAEGER_UI_URL and GRAFANA_URL.
    type Env = &'static [(&'static str, &'static str)];
    // (settings, expected (jaeger link, logs link))
    let cases: [(Env, (bool, bool)); 4] = [
        (&[], (true, true)),
        (&[("GRAFANA_URL", "")], (true, false)),
        (
            &[("JAEGER_UI_URL", ""), ("GRAFANA_URL", "")],
            (false, false),
        ),
        (&[("OTEL_TRACES_EXPORTER", "none")], (false, true)),
    ];
    for (env, expected) in cases {
        let stack = Stack::start(env).await;
        for path in ["/fast-page", "/no-such-page", "/slow-page?delay_ms=-1"] {
            let (_, page) = stack.page(path).await;
            let trace_id = trace_id_on(&page);
            assert_eq!(shown_links(&page), expected, "{env:?} {path}: {page}");
            if expected.0 {
                assert!(
                    page.contains(&format!(
                        r#"href="http://localhost:8080/jaeger/trace/{trace_id}""#
                    )),
                    "{env:?} {path}: {page}"
                );
            }
            if expected.1 {
                // The Loki query finds the trace's lines in the configured namespace.
                let href = links(&page)
                    .into_iter()
                    .find(|l| l.starts_with("http://localhost:8080/grafana/explore?"))
                    .unwrap_or_else(|| panic!("{env:?} {path}: {page}"))
                    .replace("&#38;", "&")
                    .replace("&amp;", "&");
                let url = reqwest::Url::parse(&href).unwrap();
                let panes = url.query_pairs().find(|(k, _)| k == "panes").unwrap().1;
                assert!(
                    panes.contains(&format!(r#"{{namespace=\"demo-app\"}} |= \"{trace_id}\""#)),
                    "{panes}"
                );
            }
        }
    }
}

/// An unknown nested path gets the styled 404 page: its stylesheet link,
/// resolved against the page's own address, is the stylesheet, at `/` and
/// behind the gateway's `/demo-app/` prefix alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_nested_unknown_path_gets_the_styled_404_page() {
    let stack = Stack::start(&[]).await;
    for path in ["/a/b", "/a/b/c", "/static/x/y", "/a/"] {
        let page_url = reqwest::Url::parse(&stack.front.url(path)).unwrap();
        let response = stack.client.get(page_url.clone()).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let page = response.text().await.unwrap();
        assert!(page.contains("There is no page at this address."), "{path}");
        let sheet = links(&page)
            .into_iter()
            .find(|l| l.ends_with("static/style.css"))
            .unwrap_or_else(|| panic!("{path}: no stylesheet link in {page}"));
        let css = stack
            .client
            .get(page_url.join(&sheet).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(css.status(), 200, "{path}: {sheet}");
        assert!(
            css.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/css"),
            "{path}: {sheet}"
        );
        // The same page seen through the gateway, which strips /demo-app.
        let behind = reqwest::Url::parse(&format!("http://localhost:8080/demo-app{path}")).unwrap();
        assert_eq!(
            behind.join(&sheet).unwrap().path(),
            "/demo-app/static/style.css",
            "{path}"
        );
        // The way back to the start leads to the app's top, too.
        let home = links(&page)
            .into_iter()
            .find(|l| l.ends_with("/") && !l.contains("://"))
            .unwrap();
        assert_eq!(behind.join(&home).unwrap().path(), "/demo-app/", "{path}");
    }
}

/// Under `make run` the trace links lead to `make jaeger`'s port on this
/// machine, where nothing listens until Jaeger is started, and there is no
/// Grafana: the landing page and the result pages say how to start Jaeger,
/// and nothing promises logs in Grafana. On the cluster (both behind the
/// gateway) there is no such hint, and the logs are promised. With export
/// off, Jaeger is not mentioned at all.
#[tokio::test(flavor = "multi_thread")]
async fn pages_say_how_to_start_a_local_jaeger_and_promise_only_links_they_show() {
    type Env = &'static [(&'static str, &'static str)];
    let local: Env = &[
        ("JAEGER_UI_URL", "http://localhost:16686"),
        ("GRAFANA_URL", ""),
    ];
    let no_export: Env = &[
        ("JAEGER_UI_URL", "http://localhost:16686"),
        ("GRAFANA_URL", ""),
        ("OTEL_TRACES_EXPORTER", "none"),
    ];
    // (settings, landing page mentions Jaeger, mentions Grafana, hint shown)
    let cases: [(Env, bool, bool, bool); 3] = [
        (local, true, false, true),
        (&[], true, true, false),
        (no_export, false, false, false),
    ];
    for (env, jaeger, grafana, hint) in cases {
        let stack = Stack::start(env).await;
        let (status, landing) = stack.page("/").await;
        assert_eq!(status, 200);
        assert_eq!(landing.contains("Jaeger"), jaeger, "{env:?}: {landing}");
        assert_eq!(landing.contains("Grafana"), grafana, "{env:?}: {landing}");
        assert_eq!(
            landing.contains(r#"id="jaeger-hint""#),
            hint,
            "{env:?}: {landing}"
        );
        if hint {
            assert!(
                landing.contains("start Jaeger with <code>make jaeger</code>"),
                "{landing}"
            );
        }
        for path in ["/fast-page", "/no-such-page"] {
            let (_, page) = stack.page(path).await;
            assert_eq!(
                page.contains(r#"id="jaeger-hint""#),
                hint,
                "{env:?} {path}: {page}"
            );
            if hint {
                assert!(page.contains("<code>make jaeger</code>"), "{page}");
                let trace_id = trace_id_on(&page);
                assert!(
                    page.contains(&format!(
                        r#"href="http://localhost:16686/trace/{trace_id}""#
                    )),
                    "{page}"
                );
            }
        }
    }
}
