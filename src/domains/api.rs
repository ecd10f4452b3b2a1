//! The domains JSON API (`/api/v1/orgs/{org}/domains/...`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{Domain, DomainError, DomainId, DomainSettings, DomainStatus, TxtLookup};
use crate::AppState;
use crate::api_tokens::extract::{ApiAdmin, need};
use crate::web::ErrorBody;
use crate::web::error::{ApiError, AppError};
use crate::web::extract::ApiJson;

/// A domain and the TXT record that verifies it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DomainView {
    pub id: String,
    /// Normalised: lowercase, IDNA labels as punycode, no trailing dot.
    pub domain: String,
    pub status: DomainStatus,
    /// Where to publish the TXT record: the domain itself.
    pub txt_name: String,
    /// The whole text of the TXT record: `nulab-pass-verification=<token>`.
    pub txt_value: String,
    pub created_at: i64,
    pub verified_at: Option<i64>,
    pub last_checked_at: Option<i64>,
    /// `found`, `no_records`, `no_match`, `timeout`, `servfail`, `dns_error`, `unreachable`
    /// or `verified_elsewhere`.
    pub last_check_result: Option<String>,
    /// The last check's result in words, e.g. "found 2 TXT records, none matches".
    pub last_check_message: Option<String>,
    /// Set while a verified domain's record is missing (the grace period runs).
    pub record_missing_since: Option<i64>,
    /// When the domain lapses unless its record comes back.
    pub lapses_at: Option<i64>,
    /// When a pending domain expires unless its record is found.
    pub expires_at: Option<i64>,
}

impl DomainView {
    pub fn of(domain: &Domain, settings: &DomainSettings) -> Self {
        DomainView {
            id: domain.id.to_string(),
            domain: domain.name.to_string(),
            status: domain.status,
            txt_name: domain.txt_name().to_string(),
            txt_value: domain.txt_value(),
            created_at: domain.created_at,
            verified_at: domain.verified_at,
            last_checked_at: domain.last_checked_at,
            last_check_result: domain.last_check_result.clone(),
            last_check_message: domain.last_check_message.clone(),
            record_missing_since: domain.record_missing_since,
            lapses_at: domain.lapses_at(settings),
            expires_at: domain.expires_at(settings),
        }
    }
}

/// The organization's domains.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DomainList {
    pub items: Vec<DomainView>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    /// The email domain, e.g. `example.com` (Unicode names are accepted and stored as punycode).
    #[schema(format = IdnHostname, min_length = 3, max_length = 253)]
    domain: String,
}

fn domain_in_path(raw: &str) -> Result<DomainId, ApiError> {
    DomainId::parse(raw).ok_or_else(|| ApiError(DomainError::NotFound.into()))
}

/// The organization's domains, by name.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/domains", tag = "domains",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = DomainList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn list_domains(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Read>,
) -> Result<Json<DomainList>, ApiError> {
    let settings = DomainSettings::from_config(&state.config);
    let domains = super::list(&state.db, scope.org().id).await?;
    Ok(Json(DomainList {
        items: domains
            .iter()
            .map(|d| DomainView::of(d, &settings))
            .collect(),
    }))
}

/// Adds a domain (pending) and returns the TXT record to publish.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/domains", tag = "domains",
    params(("org" = String, Path, description = "organization ID (slug)")),
    request_body = AddDomain,
    responses((status = 201, body = DomainView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["domains"])))]
pub async fn add_domain(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Domains>,
    ApiJson(body): ApiJson<AddDomain>,
) -> Result<(StatusCode, Json<DomainView>), ApiError> {
    let settings = DomainSettings::from_config(&state.config);
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let domain = super::add(
        &mut tx,
        state.clock.now_ms(),
        &scope,
        &settings,
        &body.domain,
    )
    .await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok((
        StatusCode::CREATED,
        Json(DomainView::of(&domain, &settings)),
    ))
}

/// One domain.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/domains/{id}", tag = "domains",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "domain id")),
    responses((status = 200, body = DomainView), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn get_domain(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Read>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<DomainView>, ApiError> {
    let id = domain_in_path(&id)?;
    let settings = DomainSettings::from_config(&state.config);
    let domain = super::get(&state.db, scope.org().id, id).await?;
    Ok(Json(DomainView::of(&domain, &settings)))
}

/// Looks the TXT record up now. Answers 200 with the domain whatever the lookup found: read
/// `status` and `last_check_message`. 409 when another organization has verified the domain.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/domains/{id}/verify", tag = "domains",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "domain id")),
    responses((status = 200, body = DomainView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["domains"])))]
pub async fn verify_domain(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Domains>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<DomainView>, ApiError> {
    let id = domain_in_path(&id)?;
    let settings = DomainSettings::from_config(&state.config);
    let lookup = TxtLookup::from_config(&state.config).map_err(DomainError::from)?;
    let domain = super::verify_now(
        &state.db,
        &lookup,
        state.clock.now_ms(),
        &scope,
        &settings,
        &state.base_url(),
        id,
    )
    .await?;
    Ok(Json(DomainView::of(&domain, &settings)))
}

/// Issues a new token for an expired domain, which becomes pending again.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/domains/{id}/retry", tag = "domains",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "domain id")),
    responses((status = 200, body = DomainView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["domains"])))]
pub async fn retry_domain(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Domains>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<DomainView>, ApiError> {
    let id = domain_in_path(&id)?;
    let settings = DomainSettings::from_config(&state.config);
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let domain = super::renew_token(&mut tx, state.clock.now_ms(), &scope, &settings, id).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(Json(DomainView::of(&domain, &settings)))
}

/// Removes a domain; refused (409) while managed accounts use it.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/domains/{id}", tag = "domains",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "domain id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["domains"])))]
pub async fn remove_domain(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Domains>,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = domain_in_path(&id)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    super::remove(&mut tx, state.clock.now_ms(), &scope, id).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
