//! The admin JSON API under `/api/v1`, and its OpenAPI document at `/api/v1/openapi.json`.
//! Requests authenticate with an organization's API token: `Authorization: Bearer np_...`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::routing::{any, get};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::domains;
use crate::web::error::{ApiError, AppError};
use crate::{managed, orgs};

/// Every API error: `{"error": code, "message": text}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `last_admin`.
    pub error: String,
    /// What went wrong and what to do, for people.
    pub message: String,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An organization API token (np_...)"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "nulab-pass admin API", version = "1", description = "Administer an organization: members, and more as features land."),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// The API routes plus the OpenAPI document.
pub fn routes() -> Router<AppState> {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(orgs::api::get_org))
        .routes(routes!(orgs::api::list_members, orgs::api::add_member))
        .routes(routes!(orgs::api::update_member, orgs::api::remove_member))
        .routes(routes!(
            domains::api::list_domains,
            domains::api::add_domain
        ))
        .routes(routes!(
            domains::api::get_domain,
            domains::api::remove_domain
        ))
        .routes(routes!(domains::api::verify_domain))
        .routes(routes!(domains::api::retry_domain))
        .routes(routes!(managed::api::create))
        .routes(routes!(managed::api::import))
        .routes(routes!(
            managed::api::get,
            managed::api::update,
            managed::api::delete
        ))
        .routes(routes!(managed::api::action))
        .routes(routes!(managed::api::get_policy, managed::api::put_policy))
        .routes(routes!(managed::api::seats))
        .routes(routes!(
            crate::sign_in::api::get_settings,
            crate::sign_in::api::put_settings
        ))
        .routes(routes!(crate::saml::api::create, crate::saml::api::list))
        .routes(routes!(
            crate::migration::api::create,
            crate::migration::api::list
        ))
        .routes(routes!(crate::migration::api::resend))
        .routes(routes!(crate::migration::api::cancel))
        .routes(routes!(
            crate::migration::api::get_settings,
            crate::migration::api::put_settings
        ))
        .routes(routes!(
            crate::saml::api::get,
            crate::saml::api::update,
            crate::saml::api::delete
        ))
        .split_for_parts();
    let document = Arc::new(openapi);
    router
        .route(
            "/api/v1/openapi.json",
            get(move || async move { Json(document.as_ref().clone()) }),
        )
        .route("/api/{*rest}", any(api_not_found))
}

async fn api_not_found() -> ApiError {
    ApiError(AppError::not_found("there is no API endpoint at this path"))
}
