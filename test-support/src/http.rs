//! One-shot HTTP probes for readiness and smoke checks: a real client with a
//! timeout, a fresh connection every time (nothing pooled, so a probe never
//! reuses a connection the server has since closed, and a client built in
//! one runtime is safe to use from another).

use std::time::Duration;

/// A client for probes: no proxy, no redirects, no idle connections kept,
/// `timeout` for the whole exchange.
pub fn probe_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .unwrap_or_else(|e| panic!("a plain HTTP client always builds: {e}"))
}

/// `GET url` and the status code; `None` when nothing answered in time.
pub async fn status_with(client: &reqwest::Client, url: &str) -> Option<u16> {
    let response = client.get(url).send().await.ok()?;
    Some(response.status().as_u16())
}

/// `GET url` with a fresh 2 s probe client.
pub async fn status(url: &str) -> Option<u16> {
    status_with(&probe_client(Duration::from_secs(2)), url).await
}

/// The `traceresponse` header (W3C Trace Context Level 2) of a response,
/// checked for its shape and split: `00-<trace id>-<span id>-<flags>`, each
/// part lower-case hex of its length. Panics, naming the value, otherwise.
pub fn traceresponse(response: &reqwest::Response) -> (String, String, String) {
    let value = response
        .headers()
        .get("traceresponse")
        .expect("a traceresponse header")
        .to_str()
        .expect("a traceresponse in ASCII");
    let hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    match value.split('-').collect::<Vec<_>>()[..] {
        ["00", trace, span, flags] if hex(trace, 32) && hex(span, 16) && hex(flags, 2) => {
            (trace.into(), span.into(), flags.into())
        }
        _ => panic!("malformed traceresponse {value:?}"),
    }
}
