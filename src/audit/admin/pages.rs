//! The audit page `/admin/{org}/audit`: filters, events newest first with an older-page link,
//! one event in detail, export buttons (streamed CSV or JSON Lines), the chain head, retention
//! and the webhook with its test button and delivery log.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{AuditQuery, ChainHead, Explained};
use crate::AppState;
use crate::audit::StoredEvent;
use crate::audit::export::{self, Format};
use crate::audit::webhook::{self, Delivery};
use crate::clock::format_time;
use crate::orgs::extract::OrgAdmin;
use crate::orgs::{AdminScope, Org};
use crate::web::error::AppError;
use crate::web::extract::PageForm;
use crate::web::{Layout, flash, take_flash};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/{org}/audit", get(audit_page))
        .route("/admin/{org}/audit/events/{id}", get(event_page))
        .route("/admin/{org}/audit/export", get(export_page))
        .route("/admin/{org}/audit/retention", post(retention))
        .route("/admin/{org}/audit/webhook", post(set_webhook))
        .route("/admin/{org}/audit/webhook/remove", post(remove_webhook))
        .route("/admin/{org}/audit/webhook/test", post(test_webhook))
}

/// The streamed export of `scope`'s events that match `query` (shared with the API).
pub fn export_response(
    state: &AppState,
    scope: &AdminScope,
    query: &AuditQuery,
    format: &str,
) -> Result<Response, AppError> {
    let format =
        Format::parse(format).ok_or_else(|| super::invalid("format", "must be csv or jsonl"))?;
    let filter = query.raw_filter().check()?;
    let lines = export::stream(
        state.db.pool().clone(),
        scope.org().id.to_string(),
        filter,
        format,
    );
    let day = export::rfc3339(state.clock.now_ms());
    let name = format!(
        "attachment; filename=\"audit-{}-{}.{}\"",
        scope.org().slug,
        day.get(..10).unwrap_or("export"),
        format.extension()
    );
    let mut response = Body::from_stream(lines).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(&name) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// One event as a row of the list.
struct Row {
    id: String,
    time: String,
    action: String,
    actor: String,
    target: String,
    ip: String,
    summary: String,
}

fn actor_of(e: &StoredEvent) -> String {
    match (&e.actor_label, &e.actor_id) {
        (Some(label), _) if e.actor_type == "system" => format!("job {label}"),
        (Some(label), _) => format!("{label} ({})", e.actor_type.replace('_', " ")),
        (None, Some(id)) => format!("{} {id}", e.actor_type),
        _ => e.actor_type.clone(),
    }
}

impl Row {
    fn of(explained: Explained) -> Row {
        let e = &explained.event;
        let mut summary = match &explained.reason_message {
            Some(words) => format!(
                "{}: {words} {}",
                e.details["reason"].as_str().unwrap_or(""),
                e.details["detail"].as_str().unwrap_or("")
            ),
            None => e.details.to_string(),
        };
        if summary.chars().count() > 140 {
            summary = summary.chars().take(139).collect::<String>() + "…";
        }
        Row {
            id: e.id.clone(),
            time: format_time(e.occurred_at),
            action: e.action.clone(),
            actor: actor_of(e),
            target: match (&e.target_type, &e.target_id) {
                (Some(kind), Some(id)) => format!("{} {id}", kind.replace('_', " ")),
                _ => String::new(),
            },
            ip: e.ip.clone().unwrap_or_default(),
            summary,
        }
    }
}

/// One delivery as the log shows it.
struct DeliveryRow {
    time: String,
    what: String,
    outcome: String,
    detail: String,
}

impl DeliveryRow {
    fn of(d: &Delivery) -> DeliveryRow {
        DeliveryRow {
            time: format_time(d.attempted_at),
            what: match d.seq {
                Some(seq) => format!("event {seq}"),
                None => "test event".to_string(),
            },
            outcome: d.outcome.clone(),
            detail: match (&d.error, d.status_code) {
                (Some(e), _) => e.clone(),
                (None, Some(s)) => format!("HTTP {s} in {} ms", d.duration_ms),
                _ => String::new(),
            },
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    query: AuditQuery,
    rows: Vec<Row>,
    next_link: Option<String>,
    filter_query: String,
    head: ChainHead,
    actions: Vec<&'static str>,
    webhook_url: Option<String>,
    webhook_error: Option<String>,
    deliveries: Vec<DeliveryRow>,
}

fn query_string(pairs: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
        .finish()
}

async fn render(
    state: &AppState,
    admin: &OrgAdmin,
    query: AuditQuery,
    error: Option<String>,
) -> Result<AuditPage, AppError> {
    let scope = &admin.scope;
    let (rows, next_link, error) = if error.is_some() {
        (Vec::new(), None, error)
    } else {
        match super::search(state, scope, &query).await {
            Ok(page) => {
                let mut pairs = query.raw_filter().pairs();
                let next = page.next_cursor.map(|c| {
                    pairs.push(("cursor", c));
                    format!("/admin/{}/audit?{}", scope.org().slug, query_string(&pairs))
                });
                let rows = page.items.into_iter().map(|e| Row::of(super::explain(e)));
                (rows.collect(), next, None)
            }
            Err(e) => match e.user_message() {
                Some(m) => (Vec::new(), None, Some(m.to_string())),
                None => return Err(e),
            },
        }
    };
    let org_id = scope.org().id.to_string();
    let hook = webhook::get(state.db.pool(), &org_id).await?;
    let deliveries = webhook::deliveries(state.db.pool(), &org_id, 20).await?;
    Ok(AuditPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org: scope.org().clone(),
        section: "audit",
        notice: take_flash(&admin.session).await?,
        filter_query: query_string(&query.raw_filter().pairs()),
        query,
        rows,
        next_link,
        head: super::chain_head(state, scope).await?,
        actions: crate::audit::AuditAction::ALL
            .iter()
            .map(|a| a.as_str())
            .collect(),
        webhook_url: hook.as_ref().map(|h| h.url.clone()),
        webhook_error: hook.and_then(|h| h.last_error),
        deliveries: deliveries.iter().map(DeliveryRow::of).collect(),
        error,
    })
}

async fn audit_page(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Query(query): Query<AuditQuery>,
) -> Result<Response, AppError> {
    let page = render(&state, &admin, query, None).await?;
    let status = if page.error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((status, page).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/audit_event.html")]
struct EventPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    e: StoredEvent,
    time: String,
    actor: String,
    reason_message: Option<String>,
    connection: Option<String>,
    details: String,
}

async fn event_page(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<EventPage, AppError> {
    let explained = super::explain(super::event(&state, &admin.scope, &id).await?);
    let e = explained.event;
    let connection = match (e.target_type.as_deref(), e.target_id.as_deref()) {
        (Some("saml_connection"), Some(id)) => match crate::ids::SamlConnectionId::parse(id) {
            Some(id) => crate::saml::store::by_id(state.db.pool(), id)
                .await?
                .map(|c| c.name),
            None => None,
        },
        _ => None,
    };
    Ok(EventPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org: admin.scope.org().clone(),
        section: "audit",
        notice: None,
        error: None,
        time: export::rfc3339(e.occurred_at),
        actor: actor_of(&e),
        reason_message: explained.reason_message,
        connection,
        details: serde_json::to_string_pretty(&e.details).unwrap_or_default(),
        e,
    })
}

async fn export_page(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Query(query): Query<AuditQuery>,
) -> Result<Response, AppError> {
    let format = query.format.clone().unwrap_or_default();
    export_response(&state, &admin.scope, &query, &format)
}

/// Redirects back to the audit page with a notice, or re-renders it with the error.
async fn after_change(
    state: &AppState,
    admin: &OrgAdmin,
    result: Result<String, AppError>,
) -> Result<Response, AppError> {
    match result {
        Ok(notice) => {
            flash(&admin.session, notice).await?;
            let to = format!("/admin/{}/audit#settings", admin.scope.org().slug);
            Ok(Redirect::to(&to).into_response())
        }
        Err(err) => match err.user_message().map(str::to_string) {
            Some(message) => {
                let page = render(state, admin, AuditQuery::default(), None).await?;
                let page = AuditPage {
                    error: Some(message),
                    ..page
                };
                Ok((err.status(), page).into_response())
            }
            None => Err(err),
        },
    }
}

#[derive(Deserialize)]
struct RetentionForm {
    retention_days: String,
}

async fn retention(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(form): PageForm<RetentionForm>,
) -> Result<Response, AppError> {
    let result = async {
        let days = form
            .retention_days
            .trim()
            .parse::<i64>()
            .map_err(|_| super::invalid("retention_days", "not a number of days"))?;
        super::set_retention(&state, &admin.scope, days).await?;
        Ok(format!("Events are now kept for {days} days."))
    }
    .await;
    after_change(&state, &admin, result).await
}

#[derive(Deserialize)]
struct WebhookForm {
    webhook_url: String,
}

async fn set_webhook(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(form): PageForm<WebhookForm>,
) -> Result<Response, AppError> {
    let result = super::set_webhook(&state, &admin.scope, &form.webhook_url)
        .await
        .map(|secret| format!("The webhook is set. Its signing secret (shown only now): {secret}"));
    after_change(&state, &admin, result).await
}

async fn remove_webhook(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<Response, AppError> {
    let result = super::remove_webhook(&state, &admin.scope)
        .await
        .map(|()| "The webhook was removed.".to_string());
    after_change(&state, &admin, result).await
}

async fn test_webhook(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<Response, AppError> {
    let result = super::test_webhook(&state, &admin.scope)
        .await
        .map(|a| match a.error {
            None => format!(
                "The test event was delivered (HTTP {}).",
                a.status.unwrap_or(200)
            ),
            Some(e) => format!("The test event was not delivered: {e}."),
        });
    after_change(&state, &admin, result).await
}
