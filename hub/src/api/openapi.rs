//! The API's own description: OpenAPI 3.1 generated from the handlers' annotations
//! (`utoipa`), served at `/api/openapi.json`, with Swagger UI at `/api/docs` (its files
//! are compiled into the binary: no CDN).
//!
//! The description is the contract: every handler is annotated; `chitti-common`'s
//! optional `openapi` feature (utoipa derives only, no IO) gives `Finding` and the status
//! types real schemas; every user operation gets its `x-chitti-scope` and its 403 here.
//! `hub/tests/api_openapi.rs` checks the document lists exactly the router's operations,
//! and `tests/schemathesis.sh` (run by `tests/run-all.sh`) fuzzes every operation
//! against it: no 5xx, no answer outside the schema.

use super::ApiState;
use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

/// Where the description is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";
/// Where the interactive docs are served.
pub const DOCS_PATH: &str = "/api/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chitti hub API",
        description = "Fleet thermal inspection: findings, alerts and their workflow, sites and assets, evidence, uploads and a live stream. Every error is `{error: {code, message}}`.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(super::error::ErrorBody, super::error::ErrorCode)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Sign-in, sessions and API tokens"),
        (name = "alerts", description = "Alerts and their workflow"),
        (name = "findings", description = "Findings as gateways and uploads reported them"),
        (name = "sites", description = "Sites, bays or towers, and assets"),
        (name = "fleet", description = "Gateways and cameras"),
        (name = "evidence", description = "Evidence files, thermograms and temperature grids"),
        (name = "uploads", description = "Handheld inspections uploaded by operators"),
        (name = "live", description = "Server-sent events"),
        (name = "reports", description = "CSV exports and the PDF inspection report"),
        (name = "notifications", description = "Delivery logs, the outbox and notification channels"),
        (name = "models", description = "The model registry and staged rollouts to gateways"),
        (name = "admin", description = "Users and the audit trail"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut OpenApiDoc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token from /api/v1/auth/login, or an API token (chitti_…)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::auth::SESSION_COOKIE,
                "The session cookie; state changes also need X-CSRF-Token",
            ))),
        );
    }
}

/// The document the handlers' paths are merged into.
pub(crate) fn base() -> OpenApiDoc {
    ApiDoc::openapi()
}

/// `/api/openapi.json` and `/api/docs` for a finished document.
pub(crate) fn docs(mut doc: OpenApiDoc) -> Router<ApiState> {
    document_rate_limit(&mut doc);
    document_scopes(&mut doc);
    document_analysis_slots(&mut doc);
    Router::from(SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, doc))
}

/// Every operation can answer 429: the per-client rate limit ([`crate::guard`]) stands
/// in front of all of `/api`.
fn document_rate_limit(doc: &mut OpenApiDoc) {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    let response = ResponseBuilder::new()
        .description("Too many requests from this client (see `Retry-After`)")
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("429".to_string())
                .or_insert_with(|| response.clone().into());
        }
    }
}

/// Every operation a user calls names the API token scope it needs
/// ([`super::auth::Scope::for_operation`], the rule the extractor enforces) as
/// `x-chitti-scope`, in its description, and with a 403 answer.
fn document_scopes(doc: &mut OpenApiDoc) {
    use axum::http::Method;
    use utoipa::openapi::extensions::ExtensionsBuilder;
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ] {
            let Some(op) = op else { continue };
            // Only what users call: sign-in is public, evidence PUT is a gateway's.
            let by_user = op
                .security
                .iter()
                .flatten()
                .any(|r| serde_json::to_value(r).is_ok_and(|v| v.get("bearer").is_some()));
            if !by_user {
                continue;
            }
            let scope = super::auth::Scope::for_operation(&method, path);
            let name = scope.map(super::auth::Scope::as_str);
            let extensions = ExtensionsBuilder::new()
                .add("x-chitti-scope", serde_json::json!(name))
                .build();
            match &mut op.extensions {
                Some(e) => e.merge(extensions),
                None => op.extensions = Some(extensions),
            }
            let Some(name) = name else { continue };
            let line = format!("API tokens need the `{name}` scope.");
            op.description = Some(match op.description.take() {
                Some(d) if !d.is_empty() => format!("{d}\n\n{line}"),
                _ => line,
            });
            let answer = format!("An API token without the `{name}` scope");
            op.responses
                .responses
                .entry("403".to_string())
                .and_modify(|r| {
                    if let utoipa::openapi::RefOr::T(r) = r {
                        r.description = format!("{}; or {answer}", r.description);
                    }
                })
                .or_insert_with(|| {
                    ResponseBuilder::new()
                        .description(answer.clone())
                        .content(
                            "application/json",
                            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                        )
                        .build()
                        .into()
                });
        }
    }
}

/// The operations that take an analysis slot (`ApiState::analysis_slot`) can answer
/// 503 with `Retry-After` when every slot is busy.
fn document_analysis_slots(doc: &mut OpenApiDoc) {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    let response = ResponseBuilder::new()
        .description(
            "Every analysis slot is busy (`http.max_concurrent_analyses`) or the database is \
             unavailable; retry after `Retry-After` seconds",
        )
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build();
    for (path, post) in [
        ("/api/v1/uploads", true),
        ("/api/v1/findings/{id}/thermogram.png", false),
        ("/api/v1/findings/{id}/temperatures", false),
        ("/api/v1/evidence/{sha256}/visual.jpg", false),
        ("/api/v1/reports/inspection.pdf", false),
    ] {
        let Some(item) = doc.paths.paths.get_mut(path) else {
            continue;
        };
        let op = if post { &mut item.post } else { &mut item.get };
        if let Some(op) = op {
            op.responses
                .responses
                .entry("503".to_string())
                .or_insert_with(|| response.clone().into());
        }
    }
}
