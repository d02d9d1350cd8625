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
    doc
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
