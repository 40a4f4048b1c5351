//! Check 1: the landing page answers with both buttons; the slow page answers
//! 200 with a `traceresponse` header, whose trace id the later checks
//! follow.

use std::time::Duration;

use super::{Context, Names, Outcome};

pub fn run(cx: &mut Context) -> Outcome {
    let app = format!("{}/demo-app/", cx.base);
    let landing = cx.poll.until_ok(|| match cx.client.get(&app).send() {
        Ok(r) => {
            let status = r.status().as_u16();
            landing_page(status, &r.text().unwrap_or_default(), &cx.names)
        }
        Err(e) => Outcome::fail(
            format!("landing page: no answer ({e})"),
            "the gateway accepts connections but does not answer",
            &["kubectl -n istio-system get pods"],
        ),
    });
    if !landing.ok {
        return landing;
    }
    match slow_page(cx, &app) {
        Ok((trace_id, summary)) => {
            cx.trace_id = Some(trace_id);
            Outcome::pass(format!("{}; {summary}", landing.summary))
        }
        Err(failure) => failure,
    }
}

/// The landing page: 200 with both buttons.
pub fn landing_page(status: u16, body: &str, names: &Names) -> Outcome {
    let buttons = ["id=\"fast-page\"", "id=\"slow-page\""];
    if status == 200 && buttons.iter().all(|b| body.contains(b)) {
        return Outcome::pass("landing page answers with the Fast page and Slow page buttons");
    }
    let ns = &names.namespace;
    let pods = format!("kubectl -n {ns} get pods");
    let routes = format!("kubectl -n {ns} get gateway,virtualservice,httproute");
    match status {
        200 => Outcome::fail(
            "landing page answers 200 but without both buttons",
            "something else answers under /demo-app/: the gateway routes it elsewhere",
            &[&routes],
        ),
        404 => Outcome::fail(
            "landing page: 404",
            "the gateway has no route for /demo-app/ (the app chart is not installed, or its Gateway/route is not accepted), or something else answers at this port (make run?)",
            &[&routes, "make helm-app"],
        ),
        502..=504 => Outcome::fail(
            format!("landing page: {status} (no healthy upstream?)"),
            "the gateway has no ready front-end pod",
            &[&pods, &format!("kubectl -n {ns} describe deploy/front-end")],
        ),
        _ => Outcome::fail(
            format!("landing page: {status}"),
            "the front-end or the gateway in front of it",
            &[&pods, &format!("kubectl -n {ns} logs deploy/front-end")],
        ),
    }
}

/// Requests the slow page: its trace id (from `traceresponse`) and a note,
/// or the failed pages outcome.
fn slow_page(cx: &Context, app: &str) -> Result<(String, String), Outcome> {
    let ns = &cx.names.namespace;
    // The app's address ends in `/`; the page's path is relative to it.
    let page = contract::routes::front_end::SLOW_PAGE.trim_start_matches('/');
    let url = format!("{app}{page}?{}={}", contract::DELAY_MS, cx.slow_delay_ms);
    let response = cx
        .client
        .get(&url)
        .timeout(Duration::from_millis(cx.slow_delay_ms) + Duration::from_secs(20))
        .send()
        .map_err(|e| {
            Outcome::fail(
                format!("slow page: no answer ({e})"),
                "the front-end or business-logic hangs",
                &[&format!("kubectl -n {ns} logs deploy/front-end --tail 20")],
            )
        })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(Outcome::fail(
            format!("slow page: {status}"),
            "the front-end cannot get an answer from business-logic (502: not reachable, 504: too slow) or fails itself",
            &[
                &format!("kubectl -n {ns} get pods"),
                &format!("kubectl -n {ns} logs deploy/business-logic --tail 20"),
            ],
        ));
    }
    let header = response
        .headers()
        .get("traceresponse")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match header.as_deref().map(parse_traceresponse) {
        Some(Some(trace_id)) => Ok((
            trace_id.clone(),
            format!("slow page 200, trace {trace_id} (traceresponse)"),
        )),
        Some(None) => Err(Outcome::fail(
            format!("slow page: malformed traceresponse header {header:?}"),
            "the front-end sends a traceresponse header that is not 00-<trace id>-<span id>-<flags>",
            &[&format!("curl -si {url} | grep -i traceresponse")],
        )),
        None => Err(Outcome::fail(
            "slow page: no traceresponse header",
            "the front-end image predates the traceresponse header (rebuild: make up), or something on the way strips it",
            &[&format!(
                "kubectl -n {ns} get deploy front-end -o jsonpath='{{.spec.template.spec.containers[0].image}}'"
            )],
        )),
    }
}

/// Reads `00-<trace id>-<span id>-<flags>`; `None` when malformed.
pub fn parse_traceresponse(value: &str) -> Option<String> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    match parts.as_slice() {
        [version, trace, span, flags]
            if hex(version, 2)
                && hex(trace, 32)
                && hex(span, 16)
                && hex(flags, 2)
                && trace.bytes().any(|b| b != b'0') =>
        {
            Some(trace.to_ascii_lowercase())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::MeshMode;
    use crate::checks::testdata::{assert_outcome, names};

    #[test]
    fn traceresponse_values_are_read_strictly() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            parse_traceresponse(&format!("00-{trace}-00f067aa0ba902b7-01")).as_deref(),
            Some(trace)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceresponse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_landing_page_needs_both_buttons_and_each_status_names_its_part() {
        let page =
            r#"<a id="fast-page" href="fast-page">Fast page</a> <a id="slow-page">Slow page</a>"#;
        #[rustfmt::skip]
        let cases: [(u16, &str, bool, &[&str]); 5] = [
            (200, page, true, &["Fast page and Slow page buttons"]),
            (200, "<h1>Welcome to nginx!</h1>", false, &["routes it elsewhere"]),
            (404, "", false, &["no route for /demo-app/", "make helm-app"]),
            (503, "no healthy upstream", false, &["no ready front-end pod"]),
            (500, "", false, &["kubectl -n demo-app logs deploy/front-end"]),
        ];
        for (status, body, ok, needles) in cases {
            let outcome = landing_page(status, body, &names(MeshMode::Sidecar));
            assert_outcome(&format!("{status} {body}"), &outcome, ok, needles);
        }
    }
}
