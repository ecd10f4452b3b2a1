//! The admin page where API tokens are created (shown once, with their scopes and expiry) and
//! revoked; the list shows each token's scopes, creator, expiry and last use.

use super::{ApiToken, DEFAULT_DAYS, MAX_DAYS, NewToken, Scope, Scopes, TokenError};
use crate::AppState;
use crate::ids::ApiTokenId;
use crate::orgs::Org;
use crate::orgs::extract::OrgAdmin;
use crate::web::error::AppError;
use crate::web::extract::PageForm;
use crate::web::{Layout, flash, take_flash};
use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/{org}/api-tokens",
            get(tokens_page).post(create_token),
        )
        .route("/admin/{org}/api-tokens/{id}/revoke", post(revoke_token))
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/api_tokens.html")]
struct TokensPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    tokens: Vec<ApiToken>,
    new_token: Option<(ApiToken, String)>,
    now: i64,
    all_scopes: [Scope; 6],
    expiry_choices: [i64; 5],
    default_days: i64,
}

async fn render(
    state: &AppState,
    admin: &OrgAdmin,
    new_token: Option<(ApiToken, String)>,
    error: Option<String>,
) -> Result<TokensPage, AppError> {
    Ok(TokensPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org: admin.scope.org().clone(),
        section: "api-tokens",
        notice: take_flash(&admin.session).await?,
        error,
        tokens: super::store::list(state.db.pool(), admin.scope.org().id).await?,
        new_token,
        now: state.clock.now_ms(),
        all_scopes: Scope::ALL,
        expiry_choices: [7, 30, DEFAULT_DAYS, 180, MAX_DAYS],
        default_days: DEFAULT_DAYS,
    })
}

async fn tokens_page(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<TokensPage, AppError> {
    render(&state, &admin, None, None).await
}

/// The create form: `name`, `expires_in_days` (default 90) and one `scope` field per scope.
fn read_form(fields: &[(String, String)]) -> Result<NewToken, TokenError> {
    let value = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let expires_in_days = match value("expires_in_days").map(str::trim) {
        None | Some("") => DEFAULT_DAYS,
        Some(days) => days.parse().map_err(|_| TokenError::InvalidExpiry)?,
    };
    let named = fields.iter().filter(|(k, _)| k == "scope");
    let mut scopes = Vec::new();
    for (_, v) in named {
        scopes.push(Scope::parse(v).ok_or(TokenError::NoScope)?);
    }
    Ok(NewToken {
        name: value("name").unwrap_or_default().to_string(),
        scopes: Scopes::from_list(scopes).ok_or(TokenError::NoScope)?,
        expires_in_days,
    })
}

async fn create_token(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let mut tx = state.db.begin().await?;
    let now = state.clock.now_ms();
    let created = match read_form(&fields) {
        Ok(new) => super::create_with(&mut tx, now, &admin.scope, &new).await,
        Err(err) => Err(err),
    };
    match created {
        Ok(created) => {
            tx.commit().await?;
            // The secret is rendered in this response only; it is never stored or shown again.
            Ok(render(&state, &admin, Some(created), None)
                .await?
                .into_response())
        }
        Err(err) => {
            tx.rollback().await?;
            let err = AppError::from(err);
            let status = err.status();
            match err.user_message() {
                Some(message) => {
                    let mut page = render(&state, &admin, None, Some(message.to_string()))
                        .await?
                        .into_response();
                    *page.status_mut() = status;
                    Ok(page)
                }
                None => Err(err),
            }
        }
    }
}

async fn revoke_token(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let id = ApiTokenId::parse(&id)
        .ok_or_else(|| AppError::not_found("no such token in this organization"))?;
    let mut tx = state.db.begin().await?;
    super::revoke(&mut tx, state.clock.now_ms(), &admin.scope, id).await?;
    tx.commit().await?;
    flash(
        &admin.session,
        "The token was revoked; requests that use it now get 401.",
    )
    .await?;
    Ok(Redirect::to(&format!("/admin/{}/api-tokens", admin.scope.org().slug)).into_response())
}
