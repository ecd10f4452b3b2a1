//! The admin page of an organization's domains: add one, copy its TXT record, verify it now,
//! retry an expired one, remove one.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Domain, DomainError, DomainId, DomainSettings, DomainStatus, TxtLookup};
use crate::AppState;
use crate::clock::format_time;
use crate::orgs::Org;
use crate::orgs::extract::OrgAdmin;
use crate::web::error::AppError;
use crate::web::extract::PageForm;
use crate::web::{Layout, Notice, flash, take_flash};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/{org}/domains", get(domains_page).post(add_domain))
        .route("/admin/{org}/domains/{id}/verify", post(verify_domain))
        .route("/admin/{org}/domains/{id}/retry", post(retry_domain))
        .route("/admin/{org}/domains/{id}/remove", post(remove_domain))
}

/// One domain as the page shows it.
struct DomainRow {
    id: String,
    name: String,
    status: &'static str,
    txt_name: String,
    txt_value: String,
    added: String,
    last_checked: Option<String>,
    last_result: Option<String>,
    /// What the status means for this domain now, in a sentence.
    note: String,
    can_verify: bool,
    can_retry: bool,
}

impl DomainRow {
    fn of(domain: &Domain, settings: &DomainSettings) -> Self {
        let note = match domain.status {
            DomainStatus::Pending => format!(
                "Publish the TXT record below, then verify. Without it, the domain expires on {}.",
                domain.expires_at(settings).map(format_time).unwrap_or_default()
            ),
            DomainStatus::Verified => match domain.lapses_at(settings) {
                Some(lapses) => format!(
                    "The record has been missing since {}. Publish it again, or the domain lapses on {}.",
                    domain.record_missing_since.map(format_time).unwrap_or_default(),
                    format_time(lapses)
                ),
                None => format!(
                    "Verified on {}. Keep the record published: it is checked regularly.",
                    domain.verified_at.map(format_time).unwrap_or_default()
                ),
            },
            DomainStatus::Lapsed => "The record stayed missing past the grace period. Publish it again: the domain is verified again at the next check.".to_string(),
            DomainStatus::Expired => "The record was not found in time. Retry to get a new token, then publish the new record.".to_string(),
        };
        DomainRow {
            id: domain.id.to_string(),
            name: domain.name.to_string(),
            status: domain.status.as_str(),
            txt_name: domain.txt_name().to_string(),
            txt_value: domain.txt_value(),
            added: format_time(domain.created_at),
            last_checked: domain.last_checked_at.map(format_time),
            last_result: domain.last_check_message.clone(),
            note,
            can_verify: domain.status != DomainStatus::Expired,
            can_retry: domain.status == DomainStatus::Expired,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/domains.html")]
struct DomainsPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    domains: Vec<DomainRow>,
    typed: String,
    /// Managed accounts that depend on an unverified domain (an organization brought in from
    /// before domain verification), with the days left.
    transition: Option<super::transition::Transition>,
}

async fn render(
    state: &AppState,
    admin: &OrgAdmin,
    error: Option<String>,
    typed: String,
) -> Result<DomainsPage, AppError> {
    let settings = DomainSettings::from_config(&state.config);
    let domains = super::list(&state.db, admin.scope.org().id).await?;
    let mut conn = state.db.pool().acquire().await?;
    let transition = super::transition::of(&mut conn, admin.scope.org().id, state.clock.now_ms())
        .await?
        .filter(|t| !t.accounts.is_empty());
    Ok(DomainsPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org: admin.scope.org().clone(),
        section: "domains",
        notice: take_flash(&admin.session).await?,
        error,
        domains: domains
            .iter()
            .map(|d| DomainRow::of(d, &settings))
            .collect(),
        typed,
        transition,
    })
}

async fn domains_page(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<DomainsPage, AppError> {
    render(&state, &admin, None, String::new()).await
}

/// Redirects back to the list with a notice, or re-renders it with the error and its status.
async fn after_change(
    state: &AppState,
    admin: &OrgAdmin,
    result: Result<impl Into<Notice>, AppError>,
    typed: String,
) -> Result<Response, AppError> {
    match result {
        Ok(notice) => {
            flash(&admin.session, notice).await?;
            Ok(Redirect::to(&format!("/admin/{}/domains", admin.scope.org().slug)).into_response())
        }
        Err(err) => match err.user_message().map(str::to_string) {
            Some(message) => {
                let mut response = render(state, admin, Some(message), typed)
                    .await?
                    .into_response();
                *response.status_mut() = err.status();
                Ok(response)
            }
            None => Err(err),
        },
    }
}

fn parse_id(raw: &str) -> Result<DomainId, AppError> {
    DomainId::parse(raw).ok_or_else(|| DomainError::NotFound.into())
}

#[derive(Deserialize)]
struct AddForm {
    domain: String,
}

async fn add_domain(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(form): PageForm<AddForm>,
) -> Result<Response, AppError> {
    let result = async {
        let settings = DomainSettings::from_config(&state.config);
        let mut tx = state.db.begin().await?;
        let domain = super::add(
            &mut tx,
            state.clock.now_ms(),
            &admin.scope,
            &settings,
            &form.domain,
        )
        .await?;
        tx.commit().await?;
        Ok::<_, AppError>(format!(
            "{} was added. Publish its TXT record, then verify.",
            domain.name
        ))
    }
    .await;
    after_change(&state, &admin, result, form.domain.clone()).await
}

async fn verify_domain(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let result = async {
        let id = parse_id(&id)?;
        let settings = DomainSettings::from_config(&state.config);
        let lookup = TxtLookup::from_config(&state.config).map_err(DomainError::from)?;
        let domain = super::verify_now(
            &state.db,
            &lookup,
            state.clock.now_ms(),
            &admin.scope,
            &settings,
            &state.base_url(),
            id,
        )
        .await?;
        let result = domain.last_check_message.unwrap_or_default();
        // Anything short of "verified" asks the admin to act, so it is shown as a warning.
        Ok::<_, AppError>(match domain.status {
            DomainStatus::Verified if domain.record_missing_since.is_none() => {
                format!("{} is verified.", domain.name).into()
            }
            DomainStatus::Verified => Notice::warning(format!(
                "{} is still verified, but its record is missing: {result}.",
                domain.name
            )),
            // What to do next, not only what was found: the record may not be published yet
            // or not visible yet.
            DomainStatus::Pending => Notice::warning(format!(
                "{name} is not verified yet: {result}. Publish the TXT record below at {name}, then \
                 press Verify now again; a new record can take a few minutes to appear in DNS.",
                name = domain.name
            )),
            status => Notice::warning(format!("{} is {}: {result}.", domain.name, status.as_str())),
        })
    }
    .await;
    after_change(&state, &admin, result, String::new()).await
}

async fn retry_domain(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let result = async {
        let id = parse_id(&id)?;
        let settings = DomainSettings::from_config(&state.config);
        let mut tx = state.db.begin().await?;
        let domain =
            super::renew_token(&mut tx, state.clock.now_ms(), &admin.scope, &settings, id).await?;
        tx.commit().await?;
        Ok::<_, AppError>(format!(
            "{} has a new token. Publish the new record, then verify.",
            domain.name
        ))
    }
    .await;
    after_change(&state, &admin, result, String::new()).await
}

async fn remove_domain(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let result = async {
        let id = parse_id(&id)?;
        let mut tx = state.db.begin().await?;
        super::remove(&mut tx, state.clock.now_ms(), &admin.scope, id).await?;
        tx.commit().await?;
        Ok::<_, AppError>(Notice::from("The domain was removed."))
    }
    .await;
    after_change(&state, &admin, result, String::new()).await
}
