//! Table-driven bad input against both services over raw HTTP/1.1, so that
//! requests no client library would send (raw non-UTF-8 bytes, oversized
//! header blocks) are tried too. Each case has its documented answer; none
//! may be a 5xx or a panic.

use test_support::net::raw_http;
use test_support::stack::Stack;

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Served normally (malformed trace headers start a fresh trace).
    Ok,
    /// This status with business-logic's problem+json body.
    Problem(u16),
    /// This status with the front-end's HTML page.
    Page(u16),
    /// Rejected by the HTTP parser before routing: any 4xx.
    Protocol,
}

struct Case {
    name: &'static str,
    method: &'static str,
    target: Vec<u8>,
    headers: Vec<(String, String)>,
    expect: Expect,
    /// The exact message: business-logic's problem `detail`, or the text of
    /// the front-end page's `id="error-message"` (HTML-escaped).
    message: Option<String>,
}

fn case(name: &'static str, method: &'static str, target: &[u8], expect: Expect) -> Case {
    Case {
        name,
        method,
        target: target.to_vec(),
        headers: Vec::new(),
        expect,
        message: None,
    }
}

fn with_header(mut c: Case, name: &str, value: String) -> Case {
    c.headers.push((name.to_owned(), value));
    c
}

fn with_message(mut c: Case, message: &str) -> Case {
    c.message = Some(message.to_owned());
    c
}

/// `n` headers of `size` bytes each.
fn with_fillers(mut c: Case, n: usize, size: usize) -> Case {
    for i in 0..n {
        c.headers.push((format!("x-filler-{i}"), "f".repeat(size)));
    }
    c
}

/// Header blocks around the mesh's 60 KiB limit (Envoy answers 431 above
/// it), in both shapes: one big header, many small ones.
fn header_blocks(path: &'static str, expect: fn(u16) -> Expect) -> Vec<Case> {
    let p = path.as_bytes();
    vec![
        with_fillers(
            case("58 headers of 1 KiB (59 KiB)", "GET", p, Expect::Ok),
            58,
            1024,
        ),
        with_fillers(
            case("one header of 62 KiB", "GET", p, expect(431)),
            1,
            62 * 1024,
        ),
        with_fillers(
            case("one header of 100 KiB", "GET", p, expect(431)),
            1,
            100 * 1024,
        ),
        with_fillers(
            case("70 headers of 1 KiB (70 KiB)", "GET", p, expect(431)),
            70,
            1024,
        ),
    ]
}

/// The rule every bad `delay_ms` message starts with.
const DELAY_RULE: &str = "delay_ms must be a whole number of milliseconds from 0 to 60000";

/// Every bad `delay_ms` at `path`: 400 with the exact message, as the
/// service shows it (`shown`).
fn bad_delays(path: &str, expect: fn(u16) -> Expect, shown: fn(String) -> String) -> Vec<Case> {
    let got = |value: &str| format!(r#"{DELAY_RULE}; got "{value}""#);
    [
        ("delay_ms negative", "-1", got("-1")),
        (
            "delay_ms huge",
            "99999999999999999999",
            got("99999999999999999999"),
        ),
        ("delay_ms over the bound", "60001", got("60001")),
        ("delay_ms non-numeric", "soon", got("soon")),
        ("delay_ms empty", "", got("")),
        (
            "delay_ms repeated",
            "1&delay_ms=2",
            format!(r#"{DELAY_RULE}, given once; got 2 values: "1", "2""#),
        ),
    ]
    .into_iter()
    .map(|(name, value, message)| {
        let target = format!("{path}?delay_ms={value}");
        with_message(
            case(name, "GET", target.as_bytes(), expect(400)),
            &shown(message),
        )
    })
    .collect()
}

fn request(c: &Case) -> Vec<u8> {
    let mut out = format!("{} ", c.method).into_bytes();
    out.extend_from_slice(&c.target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in &c.headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if c.method == "POST" {
        out.extend_from_slice(b"Content-Length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The same trace-header and protocol abuse, aimed at `path` of either service.
fn common(path: &'static str) -> Vec<Case> {
    let p = path.as_bytes();
    let huge = "a".repeat(8 * 1024);
    let mut header_flood = case("header block of 100 KiB", "GET", p, Expect::Protocol);
    for i in 0..100 {
        header_flood
            .headers
            .push((format!("x-filler-{i}"), "f".repeat(1024)));
    }
    vec![
        with_header(
            case("B3 trace id not hex", "GET", p, Expect::Ok),
            "X-B3-TraceId",
            "not-hex-at-all".into(),
        ),
        with_header(
            case("B3 trace id of 8 KiB", "GET", p, Expect::Ok),
            "X-B3-TraceId",
            huge.clone(),
        ),
        with_header(
            case("B3 span id malformed", "GET", p, Expect::Ok),
            "X-B3-SpanId",
            "zz".into(),
        ),
        with_header(
            case("B3 sampled flag garbage", "GET", p, Expect::Ok),
            "X-B3-Sampled",
            "maybe".into(),
        ),
        with_header(
            case("b3 single header garbage", "GET", p, Expect::Ok),
            "b3",
            "-".repeat(300),
        ),
        with_header(
            case("traceparent malformed", "GET", p, Expect::Ok),
            "traceparent",
            "00-zz-yy-01".into(),
        ),
        with_header(
            case("traceparent all zero", "GET", p, Expect::Ok),
            "traceparent",
            format!("00-{}-{}-01", "0".repeat(32), "0".repeat(16)),
        ),
        with_header(
            case("traceparent of 8 KiB", "GET", p, Expect::Ok),
            "traceparent",
            huge.clone(),
        ),
        with_header(
            case("tracestate of 8 KiB", "GET", p, Expect::Ok),
            "tracestate",
            huge,
        ),
        header_flood,
        case(
            "raw 0xFF byte in the path",
            "GET",
            b"/\xff\xfe",
            Expect::Protocol,
        ),
    ]
}

fn business_logic_cases() -> Vec<Case> {
    let mut cases = common("/fast-endpoint");
    let problem =
        |name, method, target: &[u8], status| case(name, method, target, Expect::Problem(status));
    cases.extend(header_blocks("/fast-endpoint", Expect::Problem));
    cases.extend(bad_delays("/slow-endpoint", Expect::Problem, |m| m));
    cases.extend([
        problem(
            "unknown query parameter",
            "GET",
            b"/slow-endpoint?delay=10",
            400,
        ),
        problem(
            "invalid UTF-8 in the query",
            "GET",
            b"/slow-endpoint?delay_ms=%FF%FE",
            400,
        ),
        problem(
            "sku of 1000 characters",
            "GET",
            format!("/fast-endpoint?sku={}", "S".repeat(1000)).as_bytes(),
            400,
        ),
        problem("POST to a GET endpoint", "POST", b"/slow-endpoint", 405),
        problem("DELETE to a GET endpoint", "DELETE", b"/fast-endpoint", 405),
        problem("PUT to a probe", "PUT", b"/readyz", 405),
        problem("unknown path", "GET", b"/admin", 404),
        problem(
            "percent-encoded traversal",
            "GET",
            b"/%2e%2e/%2e%2e/etc/passwd",
            404,
        ),
        problem(
            "invalid UTF-8 in the path",
            "GET",
            b"/fast-endpoint%FF",
            404,
        ),
    ]);
    cases
}

fn front_end_cases() -> Vec<Case> {
    let mut cases = common("/");
    let page =
        |name, method, target: &[u8], status| case(name, method, target, Expect::Page(status));
    cases.extend(header_blocks("/", Expect::Page));
    // The page escapes the message's quotes as &#34;.
    cases.extend(bad_delays("/slow-page", Expect::Page, |m| {
        m.replace('"', "&#34;")
    }));
    cases.extend([
        page(
            "invalid UTF-8 in the query",
            "GET",
            b"/slow-page?delay_ms=%FF",
            400,
        ),
        page("POST to a page", "POST", b"/fast-page", 405),
        page("DELETE the landing page", "DELETE", b"/", 405),
        page("unknown path", "GET", b"/wp-login.php", 404),
        page(
            "traversal via %2f",
            "GET",
            b"/static/..%2f..%2fCargo.toml",
            404,
        ),
        page(
            "traversal via %2e%2e",
            "GET",
            b"/static/%2e%2e/%2e%2e/etc/passwd",
            404,
        ),
        page(
            "double-encoded traversal",
            "GET",
            b"/static/%252e%252e/Cargo.toml",
            404,
        ),
        page("unknown static asset", "GET", b"/static/app.js", 404),
        page("invalid UTF-8 in the path", "GET", b"/static/%FF.css", 404),
    ]);
    cases
}

/// The message a 4xx carries: problem+json's `detail`, or the text of the
/// page's `id="error-message"` paragraph.
async fn message_of(url: &str) -> String {
    let body = reqwest::get(url).await.unwrap().text().await.unwrap();
    if let Ok(problem) = serde_json::from_str::<serde_json::Value>(&body) {
        return problem["detail"].as_str().unwrap_or_default().to_owned();
    }
    let marker = r#"id="error-message">"#;
    body.split_once(marker)
        .and_then(|(_, rest)| rest.split_once("</p>"))
        .map_or_else(String::new, |(message, _)| message.to_owned())
}

async fn check(service: &str, port: u16, c: &Case) -> Result<(), String> {
    let label = format!(
        "{service}: {} ({} {})",
        c.name,
        c.method,
        String::from_utf8_lossy(&c.target)
    );
    let (status, head) = raw_http(port, &request(c)).ok_or(format!("{label}: no status line"))?;
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_owned();
    let ok = match c.expect {
        Expect::Ok => status == 200,
        Expect::Problem(want) => status == want && content_type == "application/problem+json",
        Expect::Page(want) => status == want && content_type.starts_with("text/html"),
        Expect::Protocol => (400..500).contains(&status),
    };
    if status == 405 && !head.contains("\r\nallow: get") {
        return Err(format!("{label}: 405 without `Allow: GET`"));
    }
    if let (true, Some(want)) = (ok, &c.message) {
        let url = format!(
            "http://127.0.0.1:{port}{}",
            String::from_utf8_lossy(&c.target)
        );
        let got = message_of(&url).await;
        if &got != want {
            return Err(format!("{label}: message {got:?}, expected {want:?}"));
        }
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{label}: expected {:?}, got {status} ({content_type})",
            c.expect
        ))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_its_documented_4xx_never_a_5xx_or_a_panic() {
    let stack = Stack::start(&[]).await;
    let backend = stack.backend.as_ref().unwrap();
    let mut failures = Vec::new();
    let mut tried = 0;
    for (service, port, cases) in [
        ("business-logic", backend.port(), business_logic_cases()),
        ("front-end", stack.front.port(), front_end_cases()),
    ] {
        for c in &cases {
            tried += 1;
            if let Err(e) = check(service, port, c).await {
                failures.push(e);
            }
        }
    }
    println!("bad input: {tried} cases tried, {} failed", failures.len());
    assert!(failures.is_empty(), "{failures:#?}");
    // Both services still serve, and neither panicked.
    assert_eq!(stack.page("/fast-page").await.0, 200);
    for logs in [stack.front.logs(), backend.logs()] {
        assert!(!logs.iter().any(|l| l.contains("panicked")));
    }
}
