//! The billing JSON API: the subscription, a preview of a seat change, the change itself (with
//! `Idempotency-Key`), and the invoices.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::BillingError;
use super::plan::{self, Preview, Requester};
use super::store::{self, Invoice, StoredAnswer};
use super::switch::{self, Ask};
use super::view::{self, SubscriptionView};
use crate::AppState;
use crate::api_tokens::extract::{ApiAdmin, need};
use crate::web::ErrorBody;
use crate::web::error::{ApiError, AppError};
use crate::web::extract::ApiJson;

/// A change of the plan: `{"seats": N}`, `{"period": "yearly"}` or both.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct ChangeBody {
    /// Whole number of seats wanted (0–1,000,000; a number or a string of digits).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000)]
    pub seats: Option<serde_json::Value>,
    /// `monthly` or `yearly`: applies from the next period (at once during the trial).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<crate::billing::period::Period>)]
    pub period: Option<serde_json::Value>,
}

/// A field that is present, even as `null` (which is then refused by name, not ignored).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl ChangeBody {
    fn ask(&self) -> Result<Ask, BillingError> {
        Ask::parse(self.seats.as_ref(), self.period.as_ref())
    }
}

/// The answer to a change: what it did and the subscription after it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ChangeResult {
    pub change: Preview,
    pub subscription: SubscriptionView,
}

/// The subscription: seats, managed accounts, reserved, free, period and the next invoice.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/subscription", operation_id = "get_subscription", tag = "billing",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = SubscriptionView)), security(("bearer" = ["billing"])))]
pub async fn get(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Billing>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let now = state.clock.now_ms();
    let (_, view) = view::current(
        &state.db,
        now,
        scope.org(),
        &state.config.billing,
        &state.base_url(),
    )
    .await?;
    Ok(Json(view))
}

/// What a change of seats or period would do, when, and its charge; changes nothing.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/subscription/preview", tag = "billing",
    params(("org" = String, Path, description = "organization ID (slug)")), request_body = ChangeBody,
    responses((status = 200, body = Preview), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["billing"])))]
pub async fn preview(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Billing>,
    ApiJson(body): ApiJson<ChangeBody>,
) -> Result<Json<Preview>, ApiError> {
    let ask = body.ask()?;
    let now = state.clock.now_ms();
    let pricing = &state.config.billing;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let preview =
        switch::preview_ask(&mut tx, now, scope.org(), ask, pricing, &state.base_url()).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(Json(preview))
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The request's idempotency key, if any (1–255 visible ASCII characters).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, BillingError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .map_err(|_| BillingError::InvalidIdempotencyKey)?;
    let ok = (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(BillingError::InvalidIdempotencyKey);
    }
    Ok(Some(key.to_string()))
}

/// Changes the seats (more at once with a prorated charge, fewer from the next period) and the
/// period (from the next period; at once during the trial). With an `Idempotency-Key`, a retried
/// request returns the first answer and changes nothing again.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/subscription", tag = "billing",
    params(("org" = String, Path, description = "organization ID (slug)"),
        ("Idempotency-Key" = Option<String>, Header, description = "a key unique to this change; a retry with the same key and body returns the first answer")),
    request_body = ChangeBody,
    responses((status = 200, body = ChangeResult), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = ["billing"])))]
pub async fn put(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Billing>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChangeBody>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let ask = body.ask()?;
    let asked =
        serde_json::json!({ "seats": ask.seats, "period": ask.period.map(super::Period::as_str) });
    let hash = crate::secrets::hash_token(&asked.to_string());
    let now = state.clock.now_ms();
    let (org, pricing, base) = (scope.org(), &state.config.billing, state.base_url());
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    // The org's lock first, so a retry waits for the first request and then sees its key.
    crate::orgs::store::lock(&mut tx, org.id)
        .await
        .map_err(AppError::from)?;
    if let Some(key) = &key
        && let Some(stored) = store::answer(&mut tx, org.id, key)
            .await
            .map_err(AppError::from)?
    {
        tx.rollback().await.map_err(AppError::from)?;
        if stored.request_hash != hash {
            return Err(BillingError::IdempotencyKeyReused.into());
        }
        let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
        let body: serde_json::Value =
            serde_json::from_str(&stored.response).map_err(|e| AppError::Internal(e.into()))?;
        return Ok((status, [("idempotent-replayed", "true")], Json(body)).into_response());
    }
    let by = Requester {
        actor: scope.actor(),
        meta: scope.meta(),
    };
    let change = switch::apply(&mut tx, now, org, ask, by, pricing, &base).await?;
    let sub = plan::load_locked(&mut tx, now, org, pricing, &base).await?;
    let usage = plan::usage(&mut tx, org).await.map_err(AppError::from)?;
    let additions: i64 = store::open_charges(&mut *tx, org.id, i64::MAX)
        .await
        .map_err(AppError::from)?
        .iter()
        .map(|c| c.amount)
        .sum();
    let result = ChangeResult {
        change,
        subscription: view::build(&sub, usage, additions, pricing),
    };
    let json = serde_json::to_value(&result).map_err(|e| AppError::Internal(e.into()))?;
    if let Some(key) = &key {
        let answer = StoredAnswer {
            request_hash: hash,
            status: 200,
            response: json.to_string(),
        };
        store::remember(&mut tx, org.id, key, &answer, now)
            .await
            .map_err(AppError::from)?;
    }
    tx.commit().await.map_err(AppError::from)?;
    Ok(Json(json).into_response())
}

/// The organization's invoices and credit notes, newest first (without lines).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/invoices", tag = "billing",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = Vec<Invoice>)), security(("bearer" = ["billing"])))]
pub async fn list_invoices(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Billing>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let items = store::invoices(state.db.pool(), scope.org().id)
        .await
        .map_err(AppError::from)?;
    Ok(Json(serde_json::json!({ "items": items })))
}

/// One invoice or credit note with its lines (`source` names what caused each line).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/invoices/{number}", tag = "billing",
    params(("org" = String, Path, description = "organization ID (slug)"),
        ("number" = String, Path, description = "e.g. INV-000001")),
    responses((status = 200, body = Invoice), (status = 404, body = ErrorBody)), security(("bearer" = ["billing"])))]
pub async fn get_invoice(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Billing>,
    Path((_, number)): Path<(String, String)>,
) -> Result<Json<Invoice>, ApiError> {
    let mut conn = state.db.pool().acquire().await.map_err(AppError::from)?;
    let invoice = store::invoice(&mut conn, scope.org().id, &number)
        .await
        .map_err(AppError::from)?
        .ok_or(BillingError::InvoiceNotFound)?;
    Ok(Json(invoice))
}
