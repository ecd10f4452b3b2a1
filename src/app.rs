//! The application: the router with every capability's pages and API routes, its layers
//! (tracing, body limits, sessions, CSRF, security headers), the health checks and static files.
//! The top of the layer order: it may use every capability, and none uses it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::web::error::{ApiError, AppError};
use crate::web::{ErrorBody, csrf, session};
use crate::{audit, billing, domains, managed, migration, orgs, saml, sign_in};

/// Builds the router with every layer.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The router with `extra` pages beside every room's, behind the same layers (sessions, CSRF,
/// security headers): `nulab-pass demo` adds its own this way, so `serve` never has them.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let session_layer = SessionManagerLayer::new(session::DbSessionStore::new(state.db.clone()))
        .with_name("nulab_pass_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.is_https())
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(i64::from(
            state.config.session_hours,
        ))));
    let limit = state.config.max_body_bytes;

    let mut pages = Router::new()
        .route("/", get(home))
        .merge(crate::accounts::pages::routes())
        .merge(crate::orgs::pages::routes())
        .merge(crate::orgs::invitations::pages::routes())
        .merge(crate::api_tokens::pages::routes())
        .merge(crate::domains::pages::routes())
        .merge(crate::managed::pages::routes())
        .merge(crate::migration::pages::routes())
        .merge(crate::billing::pages::routes())
        .merge(crate::dashboard::pages::routes())
        .merge(crate::sign_in::pages::routes())
        .merge(crate::oidc::endpoints::routes())
        .merge(crate::logout::pages::routes())
        .merge(crate::logout::product::routes())
        .merge(crate::saml::pages::routes())
        .merge(crate::audit::admin::pages::routes())
        .merge(extra);
    if state.config.dev {
        pages = pages.merge(crate::mail::pages::routes());
    }

    // The ACS reads its body itself, up to its own limit, so that it refuses an oversized
    // response with a reason code and an audit event; everything else has the configured limit.
    let acs = crate::saml::acs_page::routes();
    // The API answers an oversized body in JSON like its other errors.
    let limited = Router::new()
        .merge(
            pages
                .layer(DefaultBodyLimit::max(limit))
                .layer(RequestBodyLimitLayer::new(limit)),
        )
        .merge(
            api_routes()
                .layer(DefaultBodyLimit::max(limit))
                .layer(RequestBodyLimitLayer::new(limit))
                .layer(axum::middleware::map_response(api_too_large)),
        );

    Router::new()
        .merge(limited)
        .merge(acs)
        .route("/healthz", get(healthz))
        // Browsers ask for /favicon.ico where a response names no icon (JSON, PDF, images).
        .route("/favicon.ico", get(|| async { Redirect::permanent("/static/favicon.svg") }))
        .route("/readyz", get(readyz))
        .nest_service("/static", ServeDir::new(static_dir()))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), csrf::guard))
        .layer(session_layer)
        .layer(axum::middleware::map_response(bare_server_error))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(
            // The span names the route, never the query string: links carry tokens.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
                tracing::info_span!("request", method = %req.method(), route = route.as_deref().unwrap_or("-"))
            }),
        )
        .with_state(state)
}

/// Where pages may load from: this origin only, no inline script or style, never framed.
/// `form-action` is left open because signing in through SSO redirects a posted form to the
/// organization's IdP.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Headers of every answer: the Content-Security-Policy; `Cache-Control: no-store` on all but
/// static files (pages carry sessions, tokens and personal data); HSTS when served over https.
async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let cacheable = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    if !cacheable {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.config.is_https() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// The session layer answers a failure to save a session (its store is the database) with an
/// empty 500 of its own, after logging the cause: give it the error page and an error id.
/// The body limit's own 413 (plain text) as an API error.
async fn api_too_large(response: Response) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || json {
        return response;
    }
    ApiError(AppError::client(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "the request body is too large",
    ))
    .into_response()
}

async fn bare_server_error(response: Response) -> Response {
    let bare = response.status() == StatusCode::INTERNAL_SERVER_ERROR
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if !bare {
        return response;
    }
    AppError::Internal(anyhow::anyhow!(
        "the session could not be saved (the session layer logged why just before)"
    ))
    .into_response()
}

/// Where static files live: beside the binary's working directory, or the crate in development.
fn static_dir() -> std::path::PathBuf {
    let local = std::path::PathBuf::from("static");
    if local.is_dir() {
        local
    } else {
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static"))
    }
}

async fn home(session: Session) -> Result<Response, AppError> {
    let to = if session::account_id(&session).await?.is_some() {
        "/account"
    } else {
        "/signin"
    };
    Ok(Redirect::to(to).into_response())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(3), state.db.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response(),
    }
}

async fn not_found() -> AppError {
    AppError::not_found("There is no page at this address.")
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
                    .description(Some(
                        "An organization API token (np_...). Each operation needs one scope, \
                         listed in its security requirement: read (every GET but seats and the \
                         audit log), members (members, managed accounts, migrations), domains, sso \
                         (SSO connections, the password policy, session settings), billing \
                         (seats and billing), audit (the audit log). A token without it gets 403 \
                         missing_scope and a WWW-Authenticate: Bearer error=\"insufficient_scope\" \
                         challenge naming the scope.",
                    ))
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

/// The admin JSON API under `/api/v1` (requests authenticate with an organization's API
/// token: `Authorization: Bearer np_...`), plus its OpenAPI document at `/api/v1/openapi.json`.
fn api_routes() -> Router<AppState> {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(orgs::api::get_org))
        .routes(routes!(orgs::api::list_members, orgs::api::add_member))
        .routes(routes!(orgs::api::update_member, orgs::api::remove_member))
        .routes(routes!(orgs::api::revoke_invitation))
        .routes(routes!(orgs::api::resend_invitation))
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
        .routes(routes!(billing::api::get, billing::api::put))
        .routes(routes!(billing::api::preview))
        .routes(routes!(billing::api::list_invoices))
        .routes(routes!(billing::api::get_invoice))
        .routes(routes!(
            sign_in::api::get_settings,
            sign_in::api::put_settings
        ))
        .routes(routes!(saml::api::create, saml::api::list))
        .routes(routes!(migration::api::create, migration::api::list))
        .routes(routes!(migration::api::resend))
        .routes(routes!(migration::api::cancel))
        .routes(routes!(
            migration::api::get_settings,
            migration::api::put_settings
        ))
        .routes(routes!(
            saml::api::get,
            saml::api::update,
            saml::api::delete
        ))
        .routes(routes!(audit::admin::api::list))
        .routes(routes!(audit::admin::api::get))
        .routes(routes!(audit::admin::api::chain))
        .routes(routes!(
            audit::admin::api::get_settings,
            audit::admin::api::put_settings
        ))
        .routes(routes!(audit::admin::api::test_webhook))
        .split_for_parts();
    let document = Arc::new(with_links(with_common_errors(openapi)));
    router
        .route(
            "/api/v1/openapi.json",
            get(move || async move { Json(document.as_ref().clone()) }),
        )
        .route("/api/{*rest}", any(api_not_found))
}

/// Documents on every operation the errors any request to it can get, whatever the handler:
/// 401 (no token, or an unknown, expired or revoked one), 403 (a token of another organization,
/// or without the operation's scope) and, where a request body is read, 400 (a body that is not
/// the documented JSON) and 413 (a body over the size limit).
fn with_common_errors(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    let common = [
        (
            "401",
            "unauthorized: no API token, or one that is unknown, expired or revoked",
            false,
        ),
        (
            "403",
            "forbidden (the token belongs to another organization) or missing_scope (it lacks \
             the operation's scope)",
            false,
        ),
        (
            "400",
            "invalid_body: the request body is not what the operation reads",
            true,
        ),
        (
            "413",
            "too_large: the request body is over the size limit",
            true,
        ),
    ];
    for item in openapi.paths.paths.values_mut() {
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
            let has_body = op.request_body.is_some();
            for (status, description, needs_body) in common {
                if needs_body && !has_body {
                    continue;
                }
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description).into());
            }
        }
    }
    openapi
}

/// From an operation that creates something to the operations that take its id: (method and
/// path of the creating operation, its success status, where the id is in its answer, and each
/// operation that takes it with the name of its path parameter).
type Follow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const FOLLOWS: &[Follow] = &[
    (
        "post",
        "/api/v1/orgs/{org}/domains",
        "201",
        "$response.body#/id",
        &[
            ("get_domain", "id"),
            ("verify_domain", "id"),
            ("retry_domain", "id"),
            ("remove_domain", "id"),
        ],
    ),
    (
        "post",
        "/api/v1/orgs/{org}/managed-accounts",
        "201",
        "$response.body#/id",
        &[
            ("get_managed_account", "id"),
            ("update_managed_account", "id"),
            ("action", "id"),
            ("delete_managed_account", "id"),
            ("update_member", "account_id"),
            ("remove_member", "account_id"),
        ],
    ),
    (
        "post",
        "/api/v1/orgs/{org}/saml-connections",
        "201",
        "$response.body#/id",
        &[
            ("get_saml_connection", "id"),
            ("update_saml_connection", "id"),
            ("delete_saml_connection", "id"),
        ],
    ),
    (
        "post",
        "/api/v1/orgs/{org}/migrations",
        "200",
        "$response.body#/results/0/id",
        &[("resend", "id"), ("cancel", "id")],
    ),
    (
        "post",
        "/api/v1/orgs/{org}/members",
        "201",
        "$response.body#/invitation_id",
        &[
            ("resend_invitation", "invitation_id"),
            ("revoke_invitation", "invitation_id"),
        ],
    ),
];

/// OpenAPI links ([`FOLLOWS`]), so that a client, or a tool that walks the API, can follow what
/// it created to the operations that take it.
fn with_links(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::link::LinkBuilder;
    for (method, path, status, id, targets) in FOLLOWS {
        let Some(item) = openapi.paths.paths.get_mut(*path) else {
            continue;
        };
        let op = match *method {
            "post" => item.post.as_mut(),
            _ => item.put.as_mut(),
        };
        let Some(RefOr::T(response)) = op.and_then(|op| op.responses.responses.get_mut(*status))
        else {
            continue;
        };
        for (operation_id, parameter) in *targets {
            let link = LinkBuilder::new()
                .operation_id(*operation_id)
                .parameter("org", "$request.path.org")
                .parameter(*parameter, *id)
                .build();
            response.links.insert(operation_id.to_string(), link.into());
        }
    }
    openapi
}

async fn api_not_found() -> ApiError {
    ApiError(AppError::not_found("there is no API endpoint at this path"))
}
