//! `GET /openapi.json`: the OpenAPI 3.1 description of every `/api` route, generated from the
//! handlers' `#[utoipa::path]` annotations and the request bodies' `ToSchema` derives, so it
//! cannot drift from the code (a test fails when a route of the router is missing from it).
//!
//! Owns the document's assembly: the list of described handlers, the bearer-token security
//! scheme, and the problem+json answers every `/api` route can give (added here once rather
//! than on each handler). It does not route or validate anything.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::problem::{Problem, PROBLEM_JSON};
use super::{auth, conversations, dlq, groups, messages, records, topics};

/// The problem answers any `/api` route may give, whatever it does (docs/api.md, "Errors").
const COMMON_PROBLEMS: &[(&str, &str)] = &[
    (
        "400",
        "Malformed JSON, or an invalid field or query parameter (the detail names it)",
    ),
    ("401", "Missing, invalid or expired token"),
    ("403", "The token lacks the scope the route needs"),
    (
        "404",
        "Unknown resource, or a conversation the caller is not in",
    ),
    ("429", "Rate limited (see Retry-After)"),
    (
        "503",
        "Not durable right now: starting, disk full, overloaded (see Retry-After)",
    ),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tidings",
        description = "The chat and event-bus HTTP API of Tidings (docs/api.md, docs/events.md). \
                       Errors are application/problem+json (RFC 9457)."
    ),
    paths(
        auth::me,
        conversations::create,
        conversations::list,
        conversations::get_one,
        conversations::add_participant,
        conversations::remove_participant,
        conversations::rename,
        conversations::delete_conversation,
        conversations::set_role,
        conversations::mark_read,
        messages::send,
        messages::history,
        messages::get_one,
        messages::edit,
        messages::delete,
        topics::create,
        topics::list,
        topics::describe,
        topics::delete,
        records::publish,
        records::publish_to_partition,
        records::read,
        groups::join,
        groups::leave,
        groups::poll,
        groups::commit,
        groups::reset,
        groups::list,
        groups::describe,
        dlq::replay_dead_letters,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAndProblems),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Adds the bearer-token scheme, and to every operation the common problem answers and an
/// operation id prefixed with its tag.
struct BearerAndProblems;

impl Modify for BearerAndProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                // Handlers of different files share names (`get_one`); ids must be unique.
                if let (Some(tag), Some(id)) = (
                    operation.tags.as_ref().and_then(|tags| tags.first()),
                    operation.operation_id.as_mut(),
                ) {
                    *id = format!("{tag}_{id}");
                }
                for (status, description) in COMMON_PROBLEMS {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| problem_response(description));
                }
            }
        }
    }
}

fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "Problem",
                )))),
            )
            .build(),
    )
}

/// The document as JSON, built once.
fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document is plain data and always serializes")
    })
}

/// `GET /openapi.json` → the document (no token needed: it holds no data).
pub(crate) async fn document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(METHOD, path)` of every `/api` route registered in `app()` (src/api/mod.rs), read from
    /// its source: axum's router cannot list its routes, and this is the one place they are
    /// registered. Path parameters become `{}` (the router's names are Rust's, the document's
    /// the API's).
    fn router_routes() -> BTreeSet<(String, String)> {
        let source = include_str!("mod.rs");
        let mut routes = BTreeSet::new();
        for call in source.split(".route(").skip(1) {
            let Some(path) = call
                .trim_start()
                .strip_prefix('"')
                .and_then(|rest| rest.split('"').next())
            else {
                continue;
            };
            if !path.starts_with("/api") {
                continue;
            }
            let chain = route_arguments(call);
            for method in ["get", "post", "put", "patch", "delete"] {
                let called = chain.contains(&format!(" {method}("))
                    || chain.contains(&format!("({method}("))
                    || chain.contains(&format!(".{method}("))
                    || chain.contains(&format!("\n{method}("));
                if called {
                    routes.insert((method.to_uppercase(), normalize(path)));
                }
            }
        }
        routes
    }

    /// The text of one `.route(` call's arguments, up to its closing parenthesis.
    fn route_arguments(call: &str) -> String {
        let mut depth = 1;
        let mut out = String::new();
        for c in call.chars() {
            depth += match c {
                '(' => 1,
                ')' => -1,
                _ => 0,
            };
            if depth == 0 {
                break;
            }
            out.push(c);
        }
        // Method calls are preceded by a space, `(`, `.` or a line break; normalize the last.
        out.replace(char::is_whitespace, " ")
    }

    fn normalize(path: &str) -> String {
        let mut out = String::new();
        let mut in_parameter = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_parameter = true;
                    out.push_str("{}");
                }
                '}' => in_parameter = false,
                _ if !in_parameter => out.push(c),
                _ => {}
            }
        }
        out
    }

    fn document() -> serde_json::Value {
        serde_json::from_str(document_json()).unwrap()
    }

    fn described_routes() -> BTreeSet<(String, String)> {
        let doc = document();
        let mut routes = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                routes.insert((method.to_uppercase(), normalize(path)));
            }
        }
        routes
    }

    #[test]
    fn every_api_route_of_the_router_is_described() {
        let routes = router_routes();
        assert!(
            routes.len() >= 26,
            "the route parser found too few: {routes:?}"
        );
        assert!(routes.contains(&("PATCH".into(), "/api/conversations/{}/messages/{}".into())));
        let described = described_routes();
        let missing: Vec<_> = routes.difference(&described).collect();
        assert!(
            missing.is_empty(),
            "routes missing from /openapi.json: {missing:?}"
        );
        let extra: Vec<_> = described.difference(&routes).collect();
        assert!(
            extra.is_empty(),
            "described routes the router lacks: {extra:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_bodies_and_problem_answers() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["components"]["schemas"]["Problem"]["properties"]["type"].is_object());
        assert!(doc["components"]["schemas"]["SendBody"]["properties"]["content"].is_object());
        assert!(doc["components"]["schemas"]["SendBody"]["properties"]
            .get("senderId")
            .is_none());
        let send = &doc["paths"]["/api/conversations/{id}/messages"]["post"];
        assert!(send["requestBody"]["content"]["application/json"].is_object());
        for status in ["202", "400", "401", "404", "413", "429", "503"] {
            assert!(send["responses"][status].is_object(), "send lacks {status}");
        }
        assert!(send["responses"]["401"]["content"][PROBLEM_JSON].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                let id = operation["operationId"].as_str().unwrap().to_owned();
                assert!(ids.insert(id.clone()), "operation id {id} twice");
            }
        }
        assert!(ids.contains("messages_get_one") && ids.contains("conversations_get_one"));
    }
}
