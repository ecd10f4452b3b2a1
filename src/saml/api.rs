//! The JSON API of SSO connections (`/api/v1/orgs/{org}/saml-connections`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::metadata::Certificate;
use super::{Connection, ConnectionSettings, NewConnection, SettingsChange, SpUrls};
use crate::AppState;
use crate::api_tokens::extract::{ApiAdmin, need};
use crate::ids::SamlConnectionId;
use crate::web::ErrorBody;
use crate::web::error::{ApiError, AppError};
use crate::web::extract::ApiJson;

/// A connection as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    #[schema(value_type = String)]
    pub id: SamlConnectionId,
    pub name: String,
    pub idp_entity_id: String,
    pub sso_redirect_url: Option<String>,
    pub sso_post_url: Option<String>,
    /// The IdP's SingleLogoutService (HTTP-Redirect), when it publishes one.
    pub idp_slo_url: Option<String>,
    pub certificates: Vec<Certificate>,
    pub metadata_url: Option<String>,
    pub metadata_fetched_at: Option<i64>,
    pub metadata_error: Option<String>,
    pub want_authn_requests_signed: bool,
    #[serde(flatten)]
    pub settings: ConnectionSettings,
    #[serde(flatten)]
    pub sp: SpUrls,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ConnectionView {
    pub fn of(c: Connection, base_url: &str) -> Self {
        ConnectionView {
            sp: c.sp_urls(base_url),
            id: c.id,
            name: c.name,
            idp_entity_id: c.idp_entity_id,
            sso_redirect_url: c.sso_redirect_url,
            sso_post_url: c.sso_post_url,
            idp_slo_url: c.slo_url,
            certificates: c.certificates,
            metadata_url: c.metadata_url,
            metadata_fetched_at: c.metadata_fetched_at,
            metadata_error: c.metadata_error,
            want_authn_requests_signed: c.want_authn_requests_signed,
            settings: c.settings,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// The org's connections.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionList {
    pub items: Vec<ConnectionView>,
    pub next_cursor: Option<String>,
}

fn id_in_path(raw: &str) -> Result<SamlConnectionId, ApiError> {
    SamlConnectionId::parse(raw).ok_or_else(|| {
        ApiError(AppError::client(
            StatusCode::NOT_FOUND,
            "not_found",
            "no SSO connection with this id belongs to this organization",
        ))
    })
}

/// Creates a connection from `metadata_xml` or `metadata_url`, with optional settings.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/saml-connections", operation_id = "create_saml_connection", tag = "sso",
    params(("org" = String, Path, description = "organization ID (slug)")), request_body = NewConnection,
    responses((status = 201, body = ConnectionView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["sso"])))]
pub async fn create(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Sso>,
    ApiJson(body): ApiJson<NewConnection>,
) -> Result<(StatusCode, Json<ConnectionView>), ApiError> {
    let (meta, xml) = super::load_metadata(
        body.metadata_xml.as_deref(),
        body.metadata_url.as_deref(),
        body.entity_id.as_deref(),
        state.config.dev,
    )
    .await
    .map_err(AppError::from)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let connection = super::create(&mut tx, state.clock.now_ms(), &scope, &body, meta, xml)
        .await
        .map_err(AppError::from)?;
    tx.commit().await.map_err(AppError::from)?;
    Ok((
        StatusCode::CREATED,
        Json(ConnectionView::of(connection, &state.base_url())),
    ))
}

/// The org's connections, oldest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/saml-connections", operation_id = "list_saml_connections", tag = "sso",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = ConnectionList)), security(("bearer" = ["read"])))]
pub async fn list(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Read>,
) -> Result<Json<ConnectionList>, ApiError> {
    let items = super::store::of_org(state.db.pool(), scope.org().id)
        .await
        .map_err(AppError::from)?;
    Ok(Json(ConnectionList {
        items: items
            .into_iter()
            .map(|c| ConnectionView::of(c, &state.base_url()))
            .collect(),
        next_cursor: None,
    }))
}

/// One connection.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/saml-connections/{id}", operation_id = "get_saml_connection", tag = "sso",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "connection id")),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)), security(("bearer" = ["read"])))]
pub async fn get(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Read>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<ConnectionView>, ApiError> {
    let id = id_in_path(&id)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let connection = super::get(&mut tx, scope.org().id, id)
        .await
        .map_err(AppError::from)?;
    tx.rollback().await.map_err(AppError::from)?;
    Ok(Json(ConnectionView::of(connection, &state.base_url())))
}

/// Changes to a connection; absent fields stay.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConnectionChange {
    pub name: Option<String>,
    /// New metadata replaces the IdP's endpoints and certificates.
    pub metadata_xml: Option<String>,
    pub metadata_url: Option<String>,
    #[serde(flatten)]
    pub settings: SettingsChange,
}

/// Changes settings or metadata.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/saml-connections/{id}", operation_id = "update_saml_connection", tag = "sso",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "connection id")),
    request_body = ConnectionChange,
    responses((status = 200, body = ConnectionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = ["sso"])))]
pub async fn update(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Sso>,
    Path((_, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<ConnectionChange>,
) -> Result<Json<ConnectionView>, ApiError> {
    let id = id_in_path(&id)?;
    let metadata = if body.metadata_xml.is_some() || body.metadata_url.is_some() {
        let (meta, xml) = super::load_metadata(
            body.metadata_xml.as_deref(),
            body.metadata_url.as_deref(),
            None,
            state.config.dev,
        )
        .await
        .map_err(AppError::from)?;
        Some((meta, xml, body.metadata_url.clone()))
    } else {
        None
    };
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let connection = super::update(
        &mut tx,
        state.clock.now_ms(),
        &scope,
        id,
        body.name.as_deref(),
        &body.settings,
        metadata,
    )
    .await
    .map_err(AppError::from)?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(Json(ConnectionView::of(connection, &state.base_url())))
}

/// Deletes a connection; sign-in through it stops at once.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/saml-connections/{id}", operation_id = "delete_saml_connection", tag = "sso",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "connection id")),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = ["sso"])))]
pub async fn delete(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Sso>,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = id_in_path(&id)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    super::delete(&mut tx, state.clock.now_ms(), &scope, id)
        .await
        .map_err(AppError::from)?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
