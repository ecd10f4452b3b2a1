//! Admin pages of SSO connections: list with the SP values an IdP admin enters, create from
//! metadata (pasted or a URL), settings, delete, metadata refresh and "test connection".

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::jobs::Refreshed;
use super::{Connection, NewConnection, SettingsChange, SpUrls, store};
use crate::AppState;
use crate::ids::SamlConnectionId;
use crate::orgs::Org;
use crate::orgs::extract::OrgAdmin;
use crate::web::error::AppError;
use crate::web::extract::PageForm;
use crate::web::{Layout, flash, take_flash};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/{org}/sso", get(page).post(create))
        .route("/admin/{org}/sso/{id}/settings", post(settings))
        .route("/admin/{org}/sso/{id}/delete", post(delete))
        .route("/admin/{org}/sso/{id}/refresh", post(refresh))
        .route("/admin/{org}/sso/{id}/test", get(test))
        .route(
            "/admin/{org}/sso/{id}/certificates/approve",
            post(super::hold_pages::approve),
        )
        .route(
            "/admin/{org}/sso/{id}/certificates/reject",
            post(super::hold_pages::reject),
        )
}

/// A connection as the page shows it.
pub struct Row {
    pub connection: Connection,
    pub urls: SpUrls,
    pub domains_label: String,
    pub domains_input: String,
    /// A certificate change found by a refresh that waits for a decision (or was rejected).
    pub hold: Option<super::cert_hold::Hold>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/sso.html")]
struct SsoPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    rows: Vec<Row>,
    verified_domains: Vec<String>,
    now: i64,
}

async fn render(
    state: &AppState,
    admin: &OrgAdmin,
    error: Option<String>,
) -> Result<SsoPage, AppError> {
    let org = admin.scope.org().clone();
    let holds = store::holds_of_org(state.db.pool(), org.id).await?;
    let rows = store::of_org(state.db.pool(), org.id)
        .await?
        .into_iter()
        .map(|connection| Row {
            hold: holds
                .iter()
                .find(|h| h.connection_id == connection.id)
                .cloned(),
            urls: connection.sp_urls(&state.base_url()),
            domains_input: connection
                .settings
                .domains
                .as_ref()
                .map(|d| d.join(", "))
                .unwrap_or_default(),
            domains_label: match &connection.settings.domains {
                Some(list) => list.join(", "),
                None => "all verified domains".to_string(),
            },
            connection,
        })
        .collect();
    Ok(SsoPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        verified_domains: crate::domains::verified_domains(state.db.pool(), org.id).await?,
        org,
        section: "sso",
        notice: take_flash(&admin.session).await?,
        error,
        rows,
        now: state.clock.now_ms(),
    })
}

async fn page(State(state): State<AppState>, admin: OrgAdmin) -> Result<SsoPage, AppError> {
    render(&state, &admin, None).await
}

/// Re-renders the page with a client error, or passes an internal one on.
pub(super) async fn with_error(
    state: &AppState,
    admin: &OrgAdmin,
    err: AppError,
) -> Result<Response, AppError> {
    let status = err.status();
    let Some(message) = err.user_message().map(str::to_string) else {
        return Err(err);
    };
    let mut page = render(state, admin, Some(message)).await?.into_response();
    *page.status_mut() = status;
    Ok(page)
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    metadata_xml: String,
    #[serde(default)]
    metadata_url: String,
    #[serde(default)]
    entity_id: String,
    #[serde(default)]
    name: String,
}

async fn create(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(form): PageForm<CreateForm>,
) -> Result<Response, AppError> {
    let new = NewConnection {
        metadata_xml: Some(form.metadata_xml),
        metadata_url: Some(form.metadata_url),
        entity_id: Some(form.entity_id),
        name: Some(form.name),
        settings: SettingsChange::default(),
    };
    let result = async {
        let (meta, xml) = super::load_metadata(
            new.metadata_xml.as_deref(),
            new.metadata_url.as_deref(),
            new.entity_id.as_deref(),
            state.config.dev,
        )
        .await?;
        let mut tx = state.db.begin().await?;
        let connection =
            super::create(&mut tx, state.clock.now_ms(), &admin.scope, &new, meta, xml).await?;
        tx.commit().await?;
        Ok::<_, super::SamlError>(connection)
    }
    .await;
    match result {
        Ok(c) => {
            flash(&admin.session, format!("Connection to {} created. Enter the service provider values below at your IdP, then test the connection.", c.idp_entity_id)).await?;
            Ok(Redirect::to(&format!("/admin/{}/sso", admin.scope.org().slug)).into_response())
        }
        Err(err) => with_error(&state, &admin, err.into()).await,
    }
}

#[derive(Deserialize)]
struct SettingsForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email_attribute: String,
    #[serde(default)]
    attribute_preset: String,
    #[serde(default)]
    name_attribute: String,
    #[serde(default)]
    given_name_attribute: String,
    #[serde(default)]
    family_name_attribute: String,
    #[serde(default)]
    clock_skew_seconds: String,
    allow_idp_initiated: Option<String>,
    sign_authn_requests: Option<String>,
    require_signed_assertions: Option<String>,
    require_encrypted_assertions: Option<String>,
    allow_sha1: Option<String>,
    /// Comma-separated domains; empty for all verified domains.
    #[serde(default)]
    domains: String,
}

pub(super) fn connection_id(raw: &str) -> Result<SamlConnectionId, AppError> {
    SamlConnectionId::parse(raw).ok_or_else(|| {
        AppError::not_found("no SSO connection with this id belongs to this organization")
    })
}

async fn settings(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
    PageForm(form): PageForm<SettingsForm>,
) -> Result<Response, AppError> {
    let id = connection_id(&id)?;
    let skew = form
        .clock_skew_seconds
        .trim()
        .parse::<i64>()
        .map_err(|_| AppError::bad_request("the clock skew must be a whole number of seconds"));
    let skew = match skew {
        Ok(s) => s,
        Err(e) => return with_error(&state, &admin, e).await,
    };
    let domains: Vec<String> = form
        .domains
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    // A preset replaces the four attribute fields; otherwise they are taken as entered.
    let preset = Some(form.attribute_preset.trim().to_string()).filter(|p| !p.is_empty());
    let entered = |value: String| preset.is_none().then_some(Some(value));
    let change = SettingsChange {
        email_attribute: entered(form.email_attribute),
        attribute_preset: preset.clone(),
        name_attribute: entered(form.name_attribute),
        given_name_attribute: entered(form.given_name_attribute),
        family_name_attribute: entered(form.family_name_attribute),
        allow_idp_initiated: Some(form.allow_idp_initiated.is_some()),
        sign_authn_requests: Some(form.sign_authn_requests.is_some()),
        require_signed_assertions: Some(form.require_signed_assertions.is_some()),
        require_encrypted_assertions: Some(form.require_encrypted_assertions.is_some()),
        allow_sha1: Some(form.allow_sha1.is_some()),
        clock_skew_seconds: Some(skew),
        domains: Some(if domains.is_empty() {
            None
        } else {
            Some(domains)
        }),
    };
    let mut tx = state.db.begin().await?;
    match super::update(
        &mut tx,
        state.clock.now_ms(),
        &admin.scope,
        id,
        Some(&form.name),
        &change,
        None,
    )
    .await
    {
        Ok(_) => {
            tx.commit().await?;
            flash(&admin.session, "The connection settings were saved.").await?;
            Ok(Redirect::to(&format!("/admin/{}/sso", admin.scope.org().slug)).into_response())
        }
        Err(err) => {
            tx.rollback().await?;
            with_error(&state, &admin, err.into()).await
        }
    }
}

async fn delete(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let id = connection_id(&id)?;
    let mut tx = state.db.begin().await?;
    super::delete(&mut tx, state.clock.now_ms(), &admin.scope, id).await?;
    tx.commit().await?;
    flash(
        &admin.session,
        "The connection was deleted; sign-in through it has stopped.",
    )
    .await?;
    Ok(Redirect::to(&format!("/admin/{}/sso", admin.scope.org().slug)).into_response())
}

async fn refresh(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let id = connection_id(&id)?;
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    let connection = super::get(&mut tx, admin.scope.org().id, id).await?;
    tx.rollback().await?;
    let Some(url) = connection.metadata_url.clone() else {
        return with_error(
            &state,
            &admin,
            AppError::bad_request(
                "this connection was created from pasted metadata; paste new metadata instead",
            ),
        )
        .await;
    };
    match super::jobs::refresh_one(&state, connection, now).await {
        Ok(done) => {
            flash(
                &admin.session,
                match done {
                    Refreshed::Changed => format!(
                        "Metadata fetched from {url}: the certificates changed (signed by a key already trusted)."
                    ),
                    Refreshed::Held => format!(
                        "Metadata fetched from {url}: the certificates changed; the change waits for your approval below."
                    ),
                    Refreshed::Unchanged => {
                        format!("Metadata fetched from {url}: the certificates did not change.")
                    }
                },
            )
            .await?;
            Ok(Redirect::to(&format!("/admin/{}/sso", admin.scope.org().slug)).into_response())
        }
        Err(err) => with_error(&state, &admin, err.into()).await,
    }
}

async fn test(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let id = connection_id(&id)?;
    let mut tx = state.db.begin().await?;
    super::get(&mut tx, admin.scope.org().id, id).await?;
    tx.rollback().await?;
    super::pages::start(
        &state,
        &id.to_string(),
        &headers,
        &format!("/admin/{}/sso", admin.scope.org().slug),
        None,
        true,
    )
    .await
}
