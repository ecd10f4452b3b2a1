//! The sign-out button (`POST /signout`) and the SP's Single Logout endpoint
//! (`/sso/{id}/slo`, HTTP-Redirect and HTTP-POST), where an IdP sends its own LogoutRequests
//! (IdP-initiated: every sign-in of the named subject through that connection ends, answered by
//! a signed LogoutResponse) and its LogoutResponses to this SP's requests.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use tower_sessions::Session;

use crate::AppState;
use crate::accounts::pages::MessagePage;
use crate::audit::{self, AuditAction, RequestMeta};
use crate::ids::SamlConnectionId;
use crate::saml::acs::Rejection;
use crate::saml::acs_result::audit_connection;
use crate::saml::slo::{self, LogoutRequest, LogoutResponse, Message};
use crate::saml::{Connection, slo_store, store};
use crate::web::Layout;
use crate::web::error::AppError;
use crate::web::extract::ClientMeta;
use crate::web::session;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signout", post(signout))
        .route("/sso/{id}/slo", get(slo_get).post(slo_post))
}

async fn signout(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
) -> Result<Response, AppError> {
    super::sign_out(&state, &session, &meta, "signout", "/signin").await
}

/// A message by HTTP-POST (a form field each, as the binding says).
#[derive(Deserialize)]
struct SloForm {
    #[serde(rename = "SAMLRequest")]
    request: Option<String>,
    #[serde(rename = "SAMLResponse")]
    response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

async fn slo_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let Some(connection) = connection(&state, &id).await? else {
        return Ok(unknown_connection());
    };
    let query = query.unwrap_or_default();
    let sp = connection.sp_urls(&state.base_url());
    let expected = slo::Expected {
        connection: &connection,
        sp: &sp,
        now: chrono::Utc::now(),
    };
    let received = slo::receive_redirect(&query, &expected);
    answer(&state, &session, &meta, &connection, received).await
}

async fn slo_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    Form(form): Form<SloForm>,
) -> Result<Response, AppError> {
    let Some(connection) = connection(&state, &id).await? else {
        return Ok(unknown_connection());
    };
    let sp = connection.sp_urls(&state.base_url());
    let expected = slo::Expected {
        connection: &connection,
        sp: &sp,
        now: chrono::Utc::now(),
    };
    let encoded = match (form.request, form.response) {
        (Some(m), None) | (None, Some(m)) => m,
        _ => String::new(),
    };
    let received = slo::receive_post(&encoded, &expected).map(|m| (m, form.relay_state));
    answer(&state, &session, &meta, &connection, received).await
}

async fn connection(state: &AppState, id: &str) -> Result<Option<Connection>, AppError> {
    Ok(match SamlConnectionId::parse(id) {
        Some(id) => store::by_id(state.db.pool(), id).await?,
        None => None,
    })
}

fn unknown_connection() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Sign-out refused",
        "This sign-out message names no identity provider connection of this service.".into(),
    )
}

fn page(status: StatusCode, title: &str, message: String) -> Response {
    let page = MessagePage {
        layout: Layout::sessionless(),
        title: title.to_string(),
        message,
        link: Some(("Sign in".to_string(), "/signin".to_string())),
    };
    (status, page).into_response()
}

async fn answer(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    connection: &Connection,
    received: Result<(Message, Option<String>), Rejection>,
) -> Result<Response, AppError> {
    let outcome = match received {
        Ok((Message::Request(request), relay)) => {
            idp_logout(state, session, meta, connection, request, relay).await?
        }
        Ok((Message::Response(response), _)) => {
            logout_answered(state, meta, connection, response).await?
        }
        Err(rejection) => Err(rejection),
    };
    match outcome {
        Ok(response) => Ok(response),
        Err(rejection) => refused(state, meta, connection, rejection).await,
    }
}

/// A refused message: audited, nothing else changes, and no answer goes back to the IdP (a
/// message whose signature failed does not say where to).
async fn refused(
    state: &AppState,
    meta: &RequestMeta,
    connection: &Connection,
    rejection: Rejection,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    record(
        &mut tx,
        connection,
        AuditAction::SsoLogoutFailed,
        meta,
        now,
        serde_json::json!({ "reason": rejection.reason.code(), "detail": rejection.detail }),
    )
    .await?;
    tx.commit().await?;
    Ok(page(
        StatusCode::BAD_REQUEST,
        "Sign-out refused",
        format!(
            "This sign-out message from your identity provider was refused (reason: {}). Nothing was changed.",
            rejection.reason.code()
        ),
    ))
}

/// An event of this connection by the Single Logout endpoint.
async fn record(
    tx: &mut crate::db::Tx,
    connection: &Connection,
    action: AuditAction,
    meta: &RequestMeta,
    now: i64,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let actor = audit::Actor::System("saml_slo");
    audit_connection(tx, connection, action, &actor, meta, now, details).await
}

/// IdP-initiated logout: the request is acted on once; every live sign-in of the subject through
/// this connection (of the named sessions, when it names any) ends; the IdP gets a signed
/// LogoutResponse. A subject with no live sign-in here is answered with success and no effect.
async fn idp_logout(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    connection: &Connection,
    request: LogoutRequest,
    relay: Option<String>,
) -> Result<Result<Response, Rejection>, AppError> {
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    if let Err(e) = slo_store::remember_logout_request(
        &mut tx,
        &connection.idp_entity_id,
        &request.id,
        request.valid_until,
    )
    .await
    {
        if crate::db::is_unique_violation(&e) {
            return Ok(Err(Rejection::new(
                crate::saml::acs::Reason::Replayed,
                format!("LogoutRequest {} was already acted on", request.id),
            )));
        }
        return Err(e.into());
    }
    let sessions = slo_store::sessions_named(
        &mut tx,
        connection.id,
        &request.subject.name_id,
        &request.session_indexes,
        now,
    )
    .await?;
    for s in &sessions {
        if let Some(account) = crate::accounts::store::by_id(&mut *tx, s.account_id).await? {
            super::end_sign_in(
                &mut tx,
                Some(&s.sign_in_id),
                &account,
                "idp_logout",
                meta,
                now,
            )
            .await?;
        }
    }
    let details = serde_json::json!({
        "initiated_by": "idp",
        "request_id": request.id,
        "sign_ins_ended": sessions.len(),
    });
    record(
        &mut tx,
        connection,
        AuditAction::SsoLogoutSucceeded,
        meta,
        now,
        details,
    )
    .await?;
    tx.commit().await?;
    // This browser's own sign-in may be among them: its session row is gone already.
    let own = session::sign_in_id(session).await?;
    if own.is_some_and(|sid| sessions.iter().any(|s| s.sign_in_id == sid)) {
        session.flush().await?;
    }
    let keys = state.sp_keys.keys()?;
    let sp = connection.sp_urls(&state.base_url());
    let url = slo::logout_response_url(
        connection,
        &sp,
        &request.id,
        slo::SUCCESS,
        relay.as_deref(),
        &keys.signing,
        chrono::Utc::now(),
    )?;
    Ok(Ok(match url {
        Some(url) => Redirect::to(&url).into_response(),
        None => page(
            StatusCode::OK,
            "Signed out",
            "Your identity provider signed you out of nulab-pass.".into(),
        ),
    }))
}

/// The IdP's answer to this SP's LogoutRequest: spent once, then the browser goes where the
/// sign-out started. The sign-in here ended before the browser left for the IdP; a status other
/// than success only means the IdP could not end every other session.
async fn logout_answered(
    state: &AppState,
    meta: &RequestMeta,
    connection: &Connection,
    response: LogoutResponse,
) -> Result<Result<Response, Rejection>, AppError> {
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    let Some(return_to) =
        slo_store::answer_logout_request(&mut tx, &response.in_response_to, connection.id, now)
            .await?
    else {
        return Ok(Err(Rejection::new(
            crate::saml::acs::Reason::UnknownRequest,
            format!(
                "no pending LogoutRequest {} of this connection",
                response.in_response_to
            ),
        )));
    };
    let success = response.status == slo::SUCCESS;
    let details = serde_json::json!({
        "initiated_by": "sp",
        "request_id": response.in_response_to,
        "status": response.status,
    });
    record(
        &mut tx,
        connection,
        AuditAction::SsoLogoutSucceeded,
        meta,
        now,
        details,
    )
    .await?;
    tx.commit().await?;
    if success {
        return Ok(Ok(Redirect::to(&return_to).into_response()));
    }
    Ok(Ok(page(
        StatusCode::OK,
        "Signed out of nulab-pass",
        "You are signed out of nulab-pass, but your identity provider reported that it could not sign you out of every application. Close the browser to be sure.".into(),
    )))
}
