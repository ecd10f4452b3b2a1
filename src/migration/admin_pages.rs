//! The admin's Migrations page: eligible members (and why others are not) with a text filter, a
//! preview before anything is sent, the requests with their history, filters, resend/cancel, CSV
//! export, and the lifetime of consent links.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::overview::{self, Candidate, SeatView};
use super::{MigrationId, MigrationRequest, Wanted};
use crate::AppState;
use crate::clock::format_time;
use crate::orgs::Org;
use crate::orgs::extract::OrgAdmin;
use crate::web::error::AppError;
use crate::web::extract::{PageForm, UploadedText};
use crate::web::{Layout, flash, take_flash};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/{org}/migrations", get(page).post(ask))
        .route("/admin/{org}/migrations.csv", get(export))
        .route("/admin/{org}/migrations/upload", post(upload))
        .route("/admin/{org}/migrations/{id}/{action}", post(action))
        // Not under `migrations/`, where `{id}/{action}` would claim it.
        .route("/admin/{org}/migration-settings", post(save_link_days))
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/migrations.html")]
struct MigrationsPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    seats: SeatView,
    candidates: Vec<Candidate>,
    requests: Vec<MigrationRequest>,
    counts: Vec<(String, i64)>,
    filter: String,
    /// The text filter over the candidates.
    q: String,
    /// Days new consent links stay valid, as shown in its form (the rejected input after an error).
    link_days: String,
    preview: Option<Preview>,
}

/// What would happen if the selection were sent now.
struct Preview {
    asked: Vec<Candidate>,
    refused: Vec<(String, String)>,
    free_now: i64,
    if_all_accept: i64,
    subscribed: i64,
}

impl MigrationsPage {
    fn time(&self, ms: impl std::borrow::Borrow<Option<i64>>) -> String {
        ms.borrow()
            .map(format_time)
            .unwrap_or_else(|| "-".to_string())
    }
}

#[derive(Deserialize, Default)]
struct Filter {
    status: Option<String>,
    /// Text that candidates' email, name or domain must contain.
    q: Option<String>,
}

async fn build(
    state: &AppState,
    admin: &OrgAdmin,
    filter: &Filter,
    preview: Option<Preview>,
) -> Result<MigrationsPage, AppError> {
    let org = admin.scope.org().clone();
    let status = super::api::parse_status(filter.status.as_deref())?;
    let q = filter.q.clone().unwrap_or_default();
    let mut candidates = overview::candidates(&state.db, org.id).await?;
    candidates.retain(|c| c.matches(&q));
    let counts = super::store::counts(state.db.pool(), org.id).await?;
    let counts = super::MigrationStatus::ALL
        .iter()
        .map(|s| {
            let n = counts
                .iter()
                .find(|(k, _)| k == s.as_str())
                .map_or(0, |(_, n)| *n);
            (s.as_str().to_string(), n)
        })
        .collect();
    Ok(MigrationsPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        seats: overview::seats(&state.db, org.id).await?,
        candidates,
        requests: super::store::list(state.db.pool(), org.id, status, None, 1000).await?,
        counts,
        filter: status.map(|s| s.as_str().to_string()).unwrap_or_default(),
        q,
        link_days: super::store::link_days(state.db.pool(), org.id)
            .await?
            .to_string(),
        org,
        section: "migrations",
        notice: take_flash(&admin.session).await?,
        error: None,
        preview,
    })
}

async fn page(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Query(filter): Query<Filter>,
) -> Result<MigrationsPage, AppError> {
    build(&state, &admin, &filter, None).await
}

/// The addresses in pasted text or a CSV file: every comma-, semicolon-, space- or
/// line-separated cell with an `@` (so a header row like `email` is skipped).
fn emails_in(text: &str) -> impl Iterator<Item = Wanted> + '_ {
    text.split([',', ';', '\n', '\r', ' ', '\t'])
        .map(|cell| cell.trim().trim_matches('"'))
        .filter(|cell| cell.contains('@'))
        .map(|e| Wanted::Email(e.to_string()))
}

/// The form's text filter (it may come after `all` in the body).
fn form_q(body: &[u8]) -> String {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The selection of a form: checked account ids, pasted emails (CSV or one a line), or all
/// eligible candidates that match the form's text filter `q`; whether to send now; and `q`.
fn selection(body: &[u8], candidates: &[Candidate]) -> (Vec<Wanted>, bool, String) {
    let mut wanted = Vec::new();
    let mut send = false;
    let q = form_q(body);
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "account_id" => wanted.push(Wanted::Id(v.into_owned())),
            "emails" => wanted.extend(emails_in(&v)),
            "all" if v == "1" => wanted.extend(
                candidates
                    .iter()
                    .filter(|c| c.problem.is_none() && c.matches(&q))
                    .map(|c| Wanted::Id(c.account_id.to_string())),
            ),
            "step" => send = v == "send",
            _ => {}
        }
    }
    (wanted, send, q)
}

/// What sending `wanted` would do now: who is asked within the free seats, who is not and why.
fn preview(candidates: &[Candidate], wanted: &[Wanted], seats: SeatView) -> Preview {
    let mut asked = Vec::new();
    let mut refused = Vec::new();
    for w in wanted {
        let (key, found) = match w {
            Wanted::Id(id) => (
                id.clone(),
                candidates.iter().find(|c| c.account_id.to_string() == *id),
            ),
            Wanted::Email(e) => (
                e.clone(),
                candidates.iter().find(|c| c.email.eq_ignore_ascii_case(e)),
            ),
        };
        match found {
            Some(c)
                if c.problem.is_none()
                    && !asked
                        .iter()
                        .any(|a: &Candidate| a.account_id == c.account_id) =>
            {
                if (asked.len() as i64) < seats.free() {
                    asked.push(c.clone());
                } else {
                    refused.push((c.email.clone(), super::Ineligible::NoFreeSeats.message()));
                }
            }
            Some(c) => refused.push((
                c.email.clone(),
                c.problem
                    .as_ref()
                    .map_or("named twice".to_string(), |p| p.message()),
            )),
            None => refused.push((
                key,
                "not a Nulab-account member of this organization".to_string(),
            )),
        }
    }
    Preview {
        if_all_accept: seats.if_all_accept() + asked.len() as i64,
        free_now: seats.free(),
        subscribed: seats.subscribed,
        asked,
        refused,
    }
}

/// The page for a selection not sent yet: its preview, or (with 400) why there is none.
async fn previewed(
    state: &AppState,
    admin: &OrgAdmin,
    candidates: &[Candidate],
    wanted: &[Wanted],
    shown: &Filter,
    none_chosen: &str,
) -> Result<Response, AppError> {
    let problem = if wanted.is_empty() {
        Some(none_chosen.to_string())
    } else if wanted.len() > super::MAX_BATCH {
        Some(super::MigrationError::BadBatch.to_string())
    } else {
        None
    };
    if let Some(problem) = problem {
        let mut page = build(state, admin, shown, None).await?;
        page.error = Some(problem);
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    }
    let seats = overview::seats(&state.db, admin.scope.org().id).await?;
    let preview = preview(candidates, wanted, seats);
    Ok(build(state, admin, shown, Some(preview))
        .await?
        .into_response())
}

/// A CSV file of emails (or any text with one address a cell): previewed like a selection;
/// nothing is sent from here.
async fn upload(
    State(state): State<AppState>,
    admin: OrgAdmin,
    UploadedText(text): UploadedText,
) -> Result<Response, AppError> {
    let candidates = overview::candidates(&state.db, admin.scope.org().id).await?;
    let wanted: Vec<Wanted> = emails_in(&text).collect();
    previewed(
        &state,
        &admin,
        &candidates,
        &wanted,
        &Filter::default(),
        "The file names no email addresses: put one address a row (a header row is skipped).",
    )
    .await
}

async fn ask(
    State(state): State<AppState>,
    admin: OrgAdmin,
    body: Bytes,
) -> Result<Response, AppError> {
    let org = admin.scope.org().clone();
    let candidates = overview::candidates(&state.db, org.id).await?;
    let (wanted, send, q) = selection(&body, &candidates);
    // The page after a preview or an error keeps the table filtered as it was.
    let shown = Filter {
        status: None,
        q: Some(q),
    };
    if !send || wanted.is_empty() || wanted.len() > super::MAX_BATCH {
        return previewed(
            &state,
            &admin,
            &candidates,
            &wanted,
            &shown,
            "Select at least one account, or paste their emails.",
        )
        .await;
    }
    let mut tx = state.db.begin().await?;
    let results = super::request_batch(
        &mut tx,
        state.clock.now_ms(),
        &admin.scope,
        &wanted,
        &state.base_url(),
    )
    .await?;
    tx.commit().await?;
    let made = results.iter().filter(|r| r.id.is_some()).count();
    let refused: Vec<String> = results
        .iter()
        .filter(|r| r.id.is_none())
        .map(|r| format!("{}: {}", r.input, r.message.clone().unwrap_or_default()))
        .collect();
    let mut notice = format!("{made} request(s) sent.");
    if !refused.is_empty() {
        notice.push_str(&format!(" Not asked: {}.", refused.join("; ")));
    }
    flash(&admin.session, notice).await?;
    Ok(Redirect::to(&format!("/admin/{}/migrations", org.slug)).into_response())
}

async fn action(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id, action)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let org = admin.scope.org().clone();
    let id = MigrationId::parse(&id).ok_or(super::MigrationError::NotFound)?;
    let now = state.clock.now_ms();
    let (recipient, meta) = (
        [crate::limits::resent("migration", id)],
        crate::audit::RequestMeta::default(),
    );
    if action == "resend"
        && let Some(block) = crate::limits::email_blocked(&state.db, now, &meta, &recipient).await?
    {
        return Err(block.to_error(now));
    }
    let mut tx = state.db.begin().await?;
    let request = match action.as_str() {
        "resend" => super::resend(&mut tx, now, &admin.scope, id, &state.base_url()).await?,
        "cancel" => super::cancel(&mut tx, now, &admin.scope, id).await?,
        _ => return Err(AppError::not_found("unknown action: use resend or cancel")),
    };
    tx.commit().await?;
    if action == "resend" {
        let limits = &state.config.limits;
        crate::limits::email_sent(&state.db, limits, now, &meta, &recipient).await?;
    }
    let done = if action == "resend" {
        "sent again (the earlier link no longer works)"
    } else {
        "cancelled"
    };
    flash(
        &admin.session,
        format!("The request to {} was {done}.", request.email),
    )
    .await?;
    Ok(Redirect::to(&format!("/admin/{}/migrations", org.slug)).into_response())
}

#[derive(Deserialize)]
struct LinkDaysForm {
    link_days: String,
}

/// Saves the lifetime of consent links sent from now on; a bad value re-renders the page with
/// the error and changes nothing.
async fn save_link_days(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(form): PageForm<LinkDaysForm>,
) -> Result<Response, AppError> {
    let result = async {
        let days = form
            .link_days
            .trim()
            .parse::<i64>()
            .map_err(|_| super::MigrationError::InvalidLinkDays)?;
        let mut tx = state.db.begin().await?;
        super::set_link_days(&mut tx, state.clock.now_ms(), &admin.scope, days).await?;
        tx.commit().await?;
        Ok::<_, super::MigrationError>(days)
    }
    .await;
    let err = match result {
        Ok(days) => {
            flash(
                &admin.session,
                format!("Consent links sent from now on stay valid for {days} day(s)."),
            )
            .await?;
            let to = format!("/admin/{}/migrations", admin.scope.org().slug);
            return Ok(Redirect::to(&to).into_response());
        }
        Err(err) => AppError::from(err),
    };
    let Some(message) = err.user_message().map(str::to_string) else {
        return Err(err);
    };
    let mut page = build(&state, &admin, &Filter::default(), None).await?;
    page.error = Some(message);
    page.link_days = form.link_days;
    let mut response = page.into_response();
    *response.status_mut() = err.status();
    Ok(response)
}

/// A CSV cell: quoted, and never read as a formula by a spreadsheet.
fn cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    format!("\"{}\"", value.replace('"', "\"\""))
}

async fn export(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Query(filter): Query<Filter>,
) -> Result<Response, AppError> {
    let status = super::api::parse_status(filter.status.as_deref())?;
    let requests =
        super::store::list(state.db.pool(), admin.scope.org().id, status, None, 100_000).await?;
    let mut csv = String::from(
        "id,account_id,email,status,failure,requested_by,requested_at,emailed_at,reminded_at,opened_at,decided_at,expires_at\n",
    );
    let t = |ms: Option<i64>| ms.map(format_time).unwrap_or_default();
    for r in requests {
        let row = [
            r.id.to_string(),
            r.account_id.to_string(),
            r.email.clone(),
            r.status.as_str().to_string(),
            r.failure.clone().unwrap_or_default(),
            r.requested_by.clone(),
            t(Some(r.requested_at)),
            t(r.emailed_at),
            t(r.reminded_at),
            t(r.opened_at),
            t(r.decided_at),
            t(Some(r.expires_at)),
        ];
        csv.push_str(&row.iter().map(|v| cell(v)).collect::<Vec<_>>().join(","));
        csv.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"migrations.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}
