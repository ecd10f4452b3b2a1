//! Signing out, everywhere it reaches: a sign-in ends here (the header's *Sign out*), at a
//! product (OpenID Connect RP-initiated logout, [`product`]) or at the IdP (a SAML
//! LogoutRequest, [`pages`]). Ending a sign-in deletes its browser sessions, revokes the product
//! grants made in it and queues back-channel logout tokens for those products, and marks its
//! SAML session ended; a sign-in that came through an IdP with Single Logout then sends the
//! browser to the IdP with a signed LogoutRequest.

pub mod pages;
pub mod product;

use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

use crate::AppState;
use crate::accounts::{self, Account};
use crate::audit::{self, AuditAction, RequestMeta, Target};
use crate::db::Tx;
use crate::saml::{self, slo, slo_store};
use crate::web::error::AppError;
use crate::web::session;

/// Ends one sign-in of `account` inside `tx` (no sign-in id: a session from before sign-in ids,
/// which the caller flushes), audited as `account.signed_out` with how it ended.
pub async fn end_sign_in(
    tx: &mut Tx,
    sign_in_id: Option<&str>,
    account: &Account,
    via: &str,
    meta: &RequestMeta,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut products = 0;
    if let Some(sid) = sign_in_id {
        session::end_sign_in(tx, sid).await?;
        products = crate::oidc::backchannel::end_sign_in(tx, sid, account.id, now).await?;
        slo_store::end_session(tx, sid, now).await?;
    }
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: account.org_id,
            action: AuditAction::AccountSignedOut,
            actor: &account.actor(),
            target: Some(Target::account(account.id)),
            meta,
            details: serde_json::json!({
                "via": via,
                "sign_in_id": sign_in_id,
                "products_notified": products,
            }),
        },
    )
    .await
}

/// Signs this browser out (`via` says from where) and sends it to `return_to`, through the IdP
/// first when the sign-in came through a connection with Single Logout.
pub async fn sign_out(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    via: &str,
    return_to: &str,
) -> Result<Response, AppError> {
    let Some(id) = session::account_id(session).await? else {
        session.flush().await?;
        return Ok(Redirect::to(return_to).into_response());
    };
    let now = state.clock.now_ms();
    let sign_in_id = session::sign_in_id(session).await?;
    let saml_session = match &sign_in_id {
        Some(sid) => slo_store::session(state.db.pool(), sid, now).await?,
        None => None,
    };
    let connection = match &saml_session {
        Some(s) => saml::store::by_id(state.db.pool(), s.connection_id).await?,
        None => None,
    };
    let mut tx = state.db.begin().await?;
    let mut to_idp = None;
    if let Some(account) = accounts::store::by_id(&mut *tx, id).await? {
        end_sign_in(&mut tx, sign_in_id.as_deref(), &account, via, meta, now).await?;
        if let (Some(s), Some(c)) = (&saml_session, &connection) {
            let keys = state.sp_keys.keys()?;
            let sp = c.sp_urls(&state.base_url());
            let request = slo::logout_request_url(
                c,
                &sp,
                &s.subject,
                s.session_index.as_deref(),
                &keys.signing,
                chrono::Utc::now(),
            )?;
            if let Some((request_id, url)) = request {
                slo_store::insert_logout_request(&mut tx, &request_id, c.id, return_to, now)
                    .await?;
                to_idp = Some(url);
            }
        }
    }
    tx.commit().await?;
    session.flush().await?;
    Ok(Redirect::to(to_idp.as_deref().unwrap_or(return_to)).into_response())
}
