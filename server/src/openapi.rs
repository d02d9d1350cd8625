//! The OpenAPI 3.1 document (`GET /api/openapi.json`), generated from the handlers'
//! `#[utoipa::path]` annotations, and the interactive reference page (`GET /api/docs`).
//!
//! The docs page is Scalar's HTML with the document inlined; the browser loads Scalar's script
//! from its CDN when the page is opened (nothing is downloaded at build time), so that page alone
//! gets a Content-Security-Policy that allows it.

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_scalar::Scalar;

use crate::app::AppState;
use crate::routes::{health, partnerships, users};

/// The API description; `paths` lists every annotated handler.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "SplitSave API",
        description = "REST API of the SplitSave server. Errors share one shape: \
                       {\"error\": {\"code\", \"message\", \"details\"?}}.",
    ),
    paths(
        health::healthz,
        health::readyz,
        users::get_profile,
        users::update_profile,
        users::update_income,
        users::delete_account,
        users::get_notifications,
        users::update_notifications,
        partnerships::invite,
        partnerships::invitations,
        partnerships::accept,
        partnerships::decline,
        partnerships::current,
        partnerships::set_status,
        crate::routes::expenses::list,
        crate::routes::expenses::get_one,
        crate::routes::expenses::create,
        crate::routes::expenses::update,
        crate::routes::expenses::archive,
        crate::routes::expenses::split_calculation,
        crate::routes::contributions::history,
        crate::routes::contributions::current,
        crate::routes::contributions::mark_paid,
        crate::routes::events::stream,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Registration, login, sessions, password reset"),
        (name = "users", description = "The caller's profile, account and notification preferences"),
        (name = "partnerships", description = "Invitations and the caller's partnership"),
        (name = "expenses", description = "Shared expenses (additions above the threshold and edits need the partner's approval) and the split"),
        (name = "contributions", description = "Monthly contributions: each partner's share of the month and its paid state"),
        (name = "events", description = "Live events over a WebSocket for clients without Automerge"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme (the access token) the handlers refer to.
struct BearerAuth;

impl Modify for BearerAuth {
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
    }
}

/// The whole document, including the auth routes.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::auth::routes::openapi());
    doc.merge(crate::routes::goals::openapi());
    doc.merge(crate::routes::approvals::openapi());
    doc.merge(crate::routes::messages::openapi());
    doc.merge(crate::routes::devices::openapi());
    doc.merge(crate::routes::export::openapi());
    doc.merge(crate::routes::history::openapi());
    doc.merge(crate::routes::import::openapi());
    document_extractor_answers(&mut doc);
    doc
}

/// Documents what the extractors answer before any handler runs, on every operation they can
/// answer it on, so the document lists every status the server really sends: a JSON body can be
/// refused with 415 (not `application/json`) or 413 (over the body limit), and a path parameter
/// that does not parse with 400. Written once here rather than in each `#[utoipa::path]`.
fn document_extractor_answers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            let responses = &mut op.responses.responses;
            let json_body = op
                .request_body
                .as_ref()
                .is_some_and(|b| b.content.contains_key("application/json"));
            if json_body {
                responses.entry("413".into()).or_insert_with(|| {
                    error("`payload_too_large`: the body is over the server's limit")
                });
                responses.entry("415".into()).or_insert_with(|| {
                    error("`unsupported_media_type`: the body is not sent as `application/json`")
                });
            }
            let path_parameter = op
                .parameters
                .iter()
                .flatten()
                .any(|p| matches!(p.parameter_in, ParameterIn::Path));
            if path_parameter {
                responses.entry("400".into()).or_insert_with(|| {
                    error("`bad_request`: a path parameter of the wrong type (not a UUID)")
                });
            }
        }
    }
}

/// `/api/openapi.json` and `/api/docs`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/docs", get(docs_page))
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// Content-Security-Policy of the docs page: Scalar's script and styles from its CDN, inline
/// configuration, requests back to this server only.
const DOCS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; \
     style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.scalar.com; \
     font-src data: https://cdn.jsdelivr.net https://fonts.scalar.com; img-src 'self' data: https:; \
     connect-src 'self'; frame-ancestors 'none'";

async fn docs_page() -> Response {
    let mut response = Html(Scalar::new(document()).to_html()).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CSP),
    );
    response
}

#[cfg(test)]
mod extractor_answer_tests {
    use super::*;

    /// Every operation that takes a JSON body documents 413 and 415, and every one with a path
    /// parameter documents 400: the extractors answer them whatever the handler.
    #[test]
    fn every_body_and_path_parameter_documents_what_its_extractor_answers() {
        let doc = document();
        let mut checked = 0;
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.put, &item.post, &item.delete, &item.patch]
                .into_iter()
                .flatten()
            {
                let documented = &op.responses.responses;
                if op
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.contains_key("application/json"))
                {
                    checked += 1;
                    assert!(documented.contains_key("413"), "{path}");
                    assert!(documented.contains_key("415"), "{path}");
                }
                if op
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path))
                {
                    assert!(documented.contains_key("400"), "{path}");
                }
            }
        }
        assert!(checked > 10, "{checked}");
    }
}
