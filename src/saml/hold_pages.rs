//! The SSO page's decision on a held certificate change (`cert_hold`): approve applies the
//! held metadata, reject keeps the current certificates. Both audited; decided once.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::admin::{connection_id, with_error};
use crate::AppState;
use crate::orgs::extract::OrgAdmin;
use crate::web::error::AppError;
use crate::web::flash;

pub(super) async fn approve(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let id = connection_id(&id)?;
    let mut tx = state.db.begin().await?;
    match super::cert_hold::approve(&mut tx, state.clock.now_ms(), &admin.scope, id).await {
        Ok(connection) => {
            tx.commit().await?;
            let message = format!(
                "The certificate change was approved: {} now trusts {} certificate(s).",
                connection.name,
                connection.certificates.len()
            );
            flash(&admin.session, message).await?;
            Ok(Redirect::to(&format!("/admin/{}/sso", admin.scope.org().slug)).into_response())
        }
        Err(err) => {
            tx.rollback().await?;
            with_error(&state, &admin, err.into()).await
        }
    }
}

pub(super) async fn reject(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let id = connection_id(&id)?;
    let mut tx = state.db.begin().await?;
    match super::cert_hold::reject(&mut tx, state.clock.now_ms(), &admin.scope, id).await {
        Ok(()) => {
            tx.commit().await?;
            flash(
                &admin.session,
                "The certificate change was rejected; the connection keeps its certificates.",
            )
            .await?;
            Ok(Redirect::to(&format!("/admin/{}/sso", admin.scope.org().slug)).into_response())
        }
        Err(err) => {
            tx.rollback().await?;
            with_error(&state, &admin, err.into()).await
        }
    }
}
