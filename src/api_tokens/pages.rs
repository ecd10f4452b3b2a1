//! The admin page where API tokens are created (shown once) and revoked.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::ApiToken;
use crate::AppState;
use crate::ids::ApiTokenId;
use crate::orgs::Org;
use crate::orgs::extract::OrgAdmin;
use crate::web::error::AppError;
use crate::web::extract::PageForm;
use crate::web::{Layout, flash, take_flash};

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
    notice: Option<String>,
    error: Option<String>,
    tokens: Vec<ApiToken>,
    new_secret: Option<String>,
}

async fn render(
    state: &AppState,
    admin: &OrgAdmin,
    new_secret: Option<String>,
    error: Option<String>,
) -> Result<TokensPage, AppError> {
    Ok(TokensPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org: admin.scope.org().clone(),
        section: "api-tokens",
        notice: take_flash(&admin.session).await?,
        error,
        tokens: super::store::list(state.db.pool(), admin.scope.org().id).await?,
        new_secret,
    })
}

async fn tokens_page(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<TokensPage, AppError> {
    render(&state, &admin, None, None).await
}

#[derive(Deserialize)]
struct CreateForm {
    name: String,
}

async fn create_token(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(form): PageForm<CreateForm>,
) -> Result<Response, AppError> {
    let mut tx = state.db.begin().await?;
    match super::create(&mut tx, state.clock.now_ms(), &admin.scope, &form.name).await {
        Ok((_, secret)) => {
            tx.commit().await?;
            // The secret is rendered in this response only; it is never stored or shown again.
            let mut page = render(&state, &admin, Some(secret), None)
                .await?
                .into_response();
            page.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            Ok(page)
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
