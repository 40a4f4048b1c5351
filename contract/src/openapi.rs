//! business-logic's OpenAPI 3.1 document, built from the contract: one
//! operation per [`Route`] (the match below has no catch-all, so a new route
//! does not compile until it is described), the query parameters with the
//! limits the parsers check, the answers' schemas derived from their types,
//! and the problem body of every error.

use utoipa::ToSchema;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{
    ComponentsBuilder, Content, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr,
    Required, ResponseBuilder, Schema,
};

use crate::routes::business_logic::{METRICS, Route, SERVICE_NAME};
use crate::{
    CategorySummary, DELAY_MS, FastAnswer, Item, MAX_DELAY_MS, MAX_SKU_LEN, PROBLEM_JSON, Problem,
    SKU, SlowAnswer,
};

const JSON: &str = "application/json";
const TEXT: &str = "text/plain";

/// What every operation shares, said once for the whole API.
const DESCRIPTION: &str = "The deliberately fast and slow endpoints of the service-mesh \
observability demo. Every error is an RFC 9457 problem document \
(`application/problem+json`) whose `trace_id` finds the request's spans and \
logs. Rules common to every route: a query parameter the route does not \
take is a 400 (never ignored; `/metrics` alone ignores its query string), a parameter given twice is a 400, an unknown \
path is a 404, a method other than GET on a known path is a 405 with \
`Allow: GET`, a header block over the mesh's limit is a 431.";

/// The reusable responses, by name.
const BAD_REQUEST: &str = "BadRequest";
const NOT_FOUND: &str = "NotFound";
const HEADERS_TOO_LARGE: &str = "HeadersTooLarge";
const UNAVAILABLE: &str = "Unavailable";
const INTERNAL_ERROR: &str = "InternalError";

/// The document business-logic serves at `/openapi.json`. `metrics`: the
/// Prometheus scrape at [`METRICS`] is served (`METRICS_ENABLED`).
pub fn document(metrics: bool) -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in Route::ALL {
        paths = paths.path(
            route.path(),
            PathItem::new(HttpMethod::Get, operation(route)),
        );
    }
    if metrics {
        paths = paths.path(METRICS, PathItem::new(HttpMethod::Get, metrics_operation()));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(SERVICE_NAME)
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components()))
        .build()
}

fn operation(route: Route) -> Operation {
    let op = OperationBuilder::new()
        .operation_id(Some(format!("{route:?}")))
        .response("400", response_ref(BAD_REQUEST))
        .response("431", response_ref(HEADERS_TOO_LARGE));
    match route {
        Route::FastEndpoint => op
            .summary(Some("One item, read by its SKU (an indexed read)"))
            .parameter(
                ParameterBuilder::new()
                    .name(SKU)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some("The item to read; absent: a random one."))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(MAX_SKU_LEN))
                            .examples(["SKU-00042"]),
                    )),
            )
            .response("200", json_answer::<FastAnswer>("The item"))
            .response("404", response_ref(NOT_FOUND))
            .response("500", response_ref(INTERNAL_ERROR))
            .response("503", response_ref(UNAVAILABLE)),
        Route::SlowEndpoint => op
            .summary(Some(
                "The whole catalog summarised per category, after a deliberate delay",
            ))
            .parameter(
                ParameterBuilder::new()
                    .name(DELAY_MS)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(
                        "The deliberate delay in milliseconds; absent: SLOW_ENDPOINT_DELAY_MS.",
                    ))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(0))
                            .maximum(Some(MAX_DELAY_MS))
                            .examples([150]),
                    )),
            )
            .response("200", json_answer::<SlowAnswer>("The summary"))
            .response("500", response_ref(INTERNAL_ERROR))
            .response("503", response_ref(UNAVAILABLE)),
        Route::Healthz => op
            .summary(Some("Liveness: the process serves HTTP"))
            .response("200", text("`ok`")),
        Route::Readyz => op
            .summary(Some(
                "Readiness: migrations applied and the database answers",
            ))
            .response("200", text("`ready`"))
            .response("503", text("`database not ready`")),
        Route::OpenApi => op.summary(Some("This document")).response(
            "200",
            ResponseBuilder::new()
                .description("The OpenAPI document")
                .content(JSON, Content::new(Some(object())))
                .build(),
        ),
    }
    .build()
}

fn metrics_operation() -> Operation {
    OperationBuilder::new()
        .operation_id(Some("Metrics"))
        .summary(Some(
            "Prometheus scrape: request counters and latency histograms",
        ))
        .description(Some(
            "Served by the metrics middleware ahead of the routes, as Prometheus text \
             or, when asked for, OpenMetrics with exemplars; like any exporter it \
             ignores its query string.",
        ))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The metrics")
                .content(TEXT, Content::new(Some(string())))
                .content("application/openmetrics-text", Content::new(Some(string())))
                .build(),
        )
        .build()
}

fn components() -> utoipa::openapi::Components {
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                Content::new(Some(Ref::from_schema_name(Problem::name()))),
            )
            .build()
    };
    ComponentsBuilder::new()
        .schema_from::<Item>()
        .schema_from::<FastAnswer>()
        .schema_from::<CategorySummary>()
        .schema_from::<SlowAnswer>()
        .schema_from::<Problem>()
        .response(
            BAD_REQUEST,
            problem(
                "A query parameter is malformed, out of range, repeated or not taken \
                 by this route; `detail` names it, what is allowed and what came",
            ),
        )
        .response(NOT_FOUND, problem("The item, or the path, does not exist"))
        .response(
            HEADERS_TOO_LARGE,
            problem("The request's header block is over the mesh's limit"),
        )
        .response(
            UNAVAILABLE,
            problem("The database is not answering or not migrated yet; try again shortly"),
        )
        .response(
            INTERNAL_ERROR,
            problem(
                "Something went wrong (or the canary regression failed the request on \
                 purpose); the trace id finds the details",
            ),
        )
        .build()
}

fn response_ref(name: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::Ref(Ref::from_response_name(name))
}

fn json_answer<T: ToSchema>(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(JSON, Content::new(Some(Ref::from_schema_name(T::name()))))
        .build()
}

fn text(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(TEXT, Content::new(Some(string())))
        .build()
}

fn string() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .build()
        .into()
}

fn object() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::to_value(document(true)).unwrap()
    }

    #[test]
    fn the_document_is_openapi_3_1_with_one_get_per_route() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut expected: Vec<&str> = Route::ALL.iter().map(|r| r.path()).collect();
        expected.push(METRICS);
        expected.sort_unstable();
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        documented.sort_unstable();
        assert_eq!(documented, expected);
        for (path, item) in paths {
            let methods: Vec<&String> = item.as_object().unwrap().keys().collect();
            assert_eq!(methods, ["get"], "{path}");
        }
        let without_metrics = serde_json::to_value(document(false)).unwrap();
        assert!(without_metrics["paths"].get(METRICS).is_none());
    }

    #[test]
    fn the_query_parameters_carry_the_parsers_limits() {
        let doc = doc();
        let param = |path: &str| doc["paths"][path]["get"]["parameters"][0].clone();
        let delay = param("/slow-endpoint");
        assert_eq!(delay["name"], "delay_ms");
        assert_eq!(delay["in"], "query");
        assert_eq!(delay["schema"]["minimum"], 0);
        assert_eq!(delay["schema"]["maximum"], MAX_DELAY_MS);
        let sku = param("/fast-endpoint");
        assert_eq!(sku["name"], "sku");
        assert_eq!(sku["schema"]["minLength"], 1);
        assert_eq!(sku["schema"]["maxLength"], MAX_SKU_LEN);
    }

    #[test]
    fn every_error_is_a_problem_and_every_reference_resolves() {
        let doc = doc();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
        for (name, response) in doc["components"]["responses"].as_object().unwrap() {
            assert_eq!(
                response["content"][PROBLEM_JSON]["schema"]["$ref"], "#/components/schemas/Problem",
                "{name}"
            );
        }
        let problem = &doc["components"]["schemas"]["Problem"];
        for member in ["type", "title", "status", "detail", "instance", "trace_id"] {
            assert!(problem["properties"].get(member).is_some(), "{member}");
        }
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
