//! `/oauth/authorize`: validates the request (RFC 6749 §4.1, OIDC Core §3.1.2, PKCE S256), then
//! issues a code at once when the browser is signed in well enough, or parks the request and
//! sends the browser to sign in (straight to the IdP for a `login_hint` that routes to SSO).
//! `/oauth/authorize/resume` continues a parked request after the sign-in, even when the sign-in
//! went through an IdP and came back in a new browser session.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

use super::store::{self, AuthRequest, Client, CodeRow};
use crate::AppState;
use crate::accounts::{self, Account, AccountKind, AccountStatus};
use crate::audit::{self, AuditAction, Target};
use crate::secrets;
use crate::sign_in;
use crate::web::error::AppError;
use crate::web::extract::ClientMeta;
use crate::web::session;

/// Parses urlencoded parameters; a parameter given twice is an error (RFC 6749 §3.1).
pub fn parse_params(raw: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut params = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(raw) {
        if params.insert(key.to_string(), value.into_owned()).is_some() {
            return Err(format!("the parameter {key} is repeated"));
        }
    }
    Ok(params)
}

/// The browser's current sign-in, when it may receive a code: an active account, a session
/// within its lifetime, and SSO when the account's organization requires it.
pub struct CurrentSignIn {
    pub account: Account,
    pub auth_at: i64,
    pub amr: Vec<String>,
    /// The browser sign-in (`sid`), for sessions started since sign-in ids exist.
    pub sign_in_id: Option<String>,
}

pub async fn current_sign_in(
    state: &AppState,
    session: &Session,
) -> Result<Option<CurrentSignIn>, AppError> {
    let Some(id) = session::account_id(session).await? else {
        return Ok(None);
    };
    if session
        .get::<bool>(session::MUST_CHANGE_KEY)
        .await?
        .unwrap_or(false)
    {
        return Ok(None);
    }
    let account = match accounts::store::by_id(state.db.pool(), id).await? {
        Some(a) if a.status == AccountStatus::Active => a,
        // Suspended or deleted since signing in: the session ends now.
        _ => {
            session.flush().await?;
            return Ok(None);
        }
    };
    if !crate::accounts::session::session_alive(state, session, &account).await? {
        session.flush().await?;
        return Ok(None);
    }
    let method = session::method(session)
        .await?
        .unwrap_or(session::SignInMethod::Password);
    if account.kind == AccountKind::Managed
        && method != session::SignInMethod::Saml
        && !accounts::policy_for(state.db.pool(), &account)
            .await?
            .password_sign_in
    {
        // The organization switched on "SSO required" after this password sign-in.
        return Ok(None);
    }
    let mut amr = vec![method.as_str().to_string()];
    if session
        .get::<String>(session::SECOND_FACTOR_KEY)
        .await?
        .is_some()
    {
        amr.push("otp".to_string());
    }
    let auth_at = session.get::<i64>(session::AUTH_AT_KEY).await?.unwrap_or(0);
    Ok(Some(CurrentSignIn {
        account,
        auth_at,
        amr,
        sign_in_id: session::sign_in_id(session).await?,
    }))
}

/// An error sent back to the product at its redirect URI (RFC 6749 §4.1.2.1).
fn to_client(redirect_uri: &str, state: Option<&str>, error: &str, description: &str) -> Response {
    redirect_with(
        redirect_uri,
        &[("error", error), ("error_description", description)],
        state,
    )
}

fn redirect_with(redirect_uri: &str, pairs: &[(&str, &str)], state: Option<&str>) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return AppError::bad_request("the product's redirect URI is not valid").into_response();
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
    }
    Redirect::to(url.as_str()).into_response()
}

/// Outcome of validating an authorization request.
enum Checked {
    /// Ready: the request, the product, and the `prompt`/`login_hint` parameters.
    Valid {
        request: AuthRequest,
        client: Box<Client>,
        prompt_none: bool,
        login_hint: Option<String>,
    },
    /// The product or its redirect URI cannot be trusted: show a page, never redirect.
    Page(AppError),
    /// Tell the product at its (verified) redirect URI.
    Client(Response),
}

async fn check(state: &AppState, raw: &[u8]) -> Result<Checked, AppError> {
    let params = match parse_params(raw) {
        Ok(p) => p,
        Err(e) => {
            return Ok(Checked::Page(AppError::bad_request(format!(
                "This sign-in request from a product is malformed: {e}. Go back to the product and try again."
            ))));
        }
    };
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(client) = (match get("client_id") {
        Some(id) => store::client_by_id(state.db.pool(), id).await?,
        None => None,
    }) else {
        return Ok(Checked::Page(AppError::bad_request(
            "This sign-in request names no registered product (client_id). Go back to the product and try again, or tell its operator.",
        )));
    };
    let Some(redirect_uri) =
        get("redirect_uri").filter(|r| client.redirect_uris.iter().any(|u| u == r))
    else {
        return Ok(Checked::Page(AppError::bad_request(format!(
            "This sign-in request for {} asks to return to an address that is not registered for it (redirect_uri must match exactly). Tell the product's operator.",
            client.name
        ))));
    };
    let st = get("state");
    match product_request(&params, &client, redirect_uri, state.clock.now_ms()) {
        Ok((request, prompt_none)) => Ok(Checked::Valid {
            request,
            prompt_none,
            login_hint: get("login_hint").map(str::to_string),
            client: Box::new(client),
        }),
        Err((error, description)) => Ok(Checked::Client(to_client(
            redirect_uri,
            st,
            error,
            description,
        ))),
    }
}

/// The time a sign-in must be newer than: now for `prompt=login`, `max_age` seconds ago.
fn login_after(
    prompt_login: bool,
    max_age: Option<&str>,
    now: i64,
) -> Result<Option<i64>, (&'static str, &'static str)> {
    let mut login_after = prompt_login.then_some(now);
    if let Some(raw) = max_age {
        let Ok(max_age) = raw.parse::<i64>() else {
            return Err(("invalid_request", "max_age must be a number of seconds"));
        };
        let bound = now - max_age.clamp(0, 10 * 365 * 86_400) * 1000;
        login_after = Some(login_after.map_or(bound, |l| l.max(bound)));
    }
    Ok(login_after)
}

/// The checks whose failures go back to the product at its verified redirect URI (RFC 6749
/// §4.1.2.1): the request, and whether it says `prompt=none`; or the error code and description.
fn product_request(
    params: &HashMap<String, String>,
    client: &Client,
    redirect_uri: &str,
    now: i64,
) -> Result<(AuthRequest, bool), (&'static str, &'static str)> {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let st = get("state");
    match get("response_type") {
        None => return Err(("invalid_request", "response_type is required")),
        Some("code") => {}
        Some(_) => {
            return Err((
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    if get("response_mode").is_some_and(|m| m != "query") {
        return Err(("invalid_request", "only response_mode=query is supported"));
    }
    if get("request").is_some() || get("request_uri").is_some() {
        return Err(("request_not_supported", "request objects are not supported"));
    }
    let scope = get("scope").unwrap_or("");
    if !scope.split(' ').any(|s| s == "openid") {
        return Err(("invalid_scope", "the scope must include openid"));
    }
    let scope: Vec<&str> = super::SCOPES
        .iter()
        .copied()
        .filter(|s| scope.split(' ').any(|x| x == *s))
        .collect();
    let challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (Some(c), Some("S256")) if super::is_s256_challenge(c) => c,
        (Some(_), Some("S256")) => {
            return Err((
                "invalid_request",
                "code_challenge must be 43 base64url characters",
            ));
        }
        _ => {
            return Err((
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        }
    };
    if st.is_some_and(|s| s.len() > 1024) || get("nonce").is_some_and(|n| n.len() > 512) {
        return Err(("invalid_request", "state or nonce is too long"));
    }
    let prompts: Vec<&str> = get("prompt")
        .map(|p| p.split(' ').collect())
        .unwrap_or_default();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return Err((
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    let login_after = login_after(prompts.contains(&"login"), get("max_age"), now)?;
    Ok((
        AuthRequest {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_string(),
            scope: scope.join(" "),
            state: st.map(str::to_string),
            nonce: get("nonce").map(str::to_string),
            code_challenge: challenge.to_string(),
            login_after,
        },
        prompts.contains(&"none"),
    ))
}

/// Issues a code for the signed-in account and redirects the browser to the product.
async fn issue_code(
    state: &AppState,
    request: &AuthRequest,
    client: &Client,
    signed_in: &CurrentSignIn,
    meta: &audit::RequestMeta,
    parked: Option<&str>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let lifetime = crate::accounts::session::lifetime_ms(&state.db, &signed_in.account)
        .await?
        .unwrap_or(i64::from(state.config.session_hours) * 3_600_000);
    let code = secrets::new_token("");
    let row = CodeRow {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: client.client_id.clone(),
        account_id: signed_in.account.id,
        redirect_uri: request.redirect_uri.clone(),
        scope: request.scope.clone(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        auth_time: signed_in.auth_at,
        amr: signed_in.amr.clone(),
        grant_expires_at: (signed_in.auth_at + lifetime).max(now + super::ACCESS_TTL_MS),
        expires_at: now + super::CODE_TTL_MS,
        used_at: None,
        sign_in_id: signed_in.sign_in_id.clone(),
    };
    let mut tx = state.db.begin().await?;
    if let Some(handle_hash) = parked
        && !store::use_parked_request(&mut tx, handle_hash, now).await?
    {
        return Err(expired_request());
    }
    store::insert_code(&mut tx, &secrets::hash_token(&code), &row, now).await?;
    let account = &signed_in.account;
    audit::record(
        &mut tx,
        now,
        audit::Event {
            org_id: account.org_id,
            action: AuditAction::OidcCodeIssued,
            actor: &account.actor(),
            target: Some(Target::account(account.id)),
            meta,
            details: serde_json::json!({ "product": client.name, "client_id": client.client_id, "amr": row.amr }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(redirect_with(
        &request.redirect_uri,
        &[("code", &code)],
        request.state.as_deref(),
    ))
}

fn expired_request() -> AppError {
    AppError::bad_request(
        "This sign-in request has expired or was already completed. Go back to the product and sign in again.",
    )
}

fn fresh_enough(request: &AuthRequest, signed_in: &CurrentSignIn) -> bool {
    request
        .login_after
        .is_none_or(|after| signed_in.auth_at >= after)
}

/// Path that continues a parked request.
fn resume_path(handle: &str) -> String {
    format!("/oauth/authorize/resume?request={handle}")
}

async fn authorize(
    state: &AppState,
    session: &Session,
    meta: &audit::RequestMeta,
    raw: &[u8],
) -> Result<Response, AppError> {
    let (request, client, prompt_none, login_hint) = match check(state, raw).await? {
        Checked::Valid {
            request,
            client,
            prompt_none,
            login_hint,
        } => (request, client, prompt_none, login_hint),
        Checked::Page(err) => return Err(err),
        Checked::Client(response) => return Ok(response),
    };
    let signed_in = current_sign_in(state, session).await?;
    if let Some(signed_in) = signed_in.as_ref().filter(|s| fresh_enough(&request, s)) {
        return issue_code(state, &request, &client, signed_in, meta, None).await;
    }
    if prompt_none {
        return Ok(to_client(
            &request.redirect_uri,
            request.state.as_deref(),
            "login_required",
            "the user is not signed in",
        ));
    }
    let now = state.clock.now_ms();
    let handle = secrets::new_token("");
    let mut tx = state.db.begin().await?;
    store::park_request(
        &mut tx,
        &secrets::hash_token(&handle),
        &request,
        now,
        now + super::PARKED_TTL_MS,
    )
    .await?;
    tx.commit().await?;
    let next = resume_path(&handle);
    crate::web::session::set_signing_in_to(session, &next, &client.name).await?;
    if let Some(hint) = login_hint.as_deref() {
        // A hint that routes to SSO goes straight to the IdP, without a page.
        if let Ok(sign_in::Route::Sso { login_url }) =
            sign_in::route(&state.db, &state.base_url(), hint).await
        {
            return Ok(Redirect::to(&sign_in::with_return_to(&login_url, &next)).into_response());
        }
    }
    let mut target =
        url::form_urlencoded::Serializer::for_suffix(String::from("/signin?"), "/signin?".len());
    target.append_pair("next", &next);
    if let Some(hint) = login_hint.as_deref() {
        target.append_pair("login_hint", hint);
    }
    Ok(Redirect::to(&target.finish()).into_response())
}

pub async fn authorize_get(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    authorize(
        &state,
        &session,
        &meta,
        query.unwrap_or_default().as_bytes(),
    )
    .await
}

pub async fn authorize_post(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    body: Bytes,
) -> Result<Response, AppError> {
    authorize(&state, &session, &meta, &body).await
}

#[derive(serde::Deserialize)]
pub struct ResumeQuery {
    request: Option<String>,
}

/// Continues a parked request: a code when the browser is now signed in (freshly enough),
/// otherwise back to the sign-in page.
pub async fn resume(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    Query(q): Query<ResumeQuery>,
) -> Result<Response, AppError> {
    let handle = q.request.unwrap_or_default();
    let handle_hash = secrets::hash_token(&handle);
    let now = state.clock.now_ms();
    let request = store::parked_request(state.db.pool(), &handle_hash, now)
        .await?
        .ok_or_else(expired_request)?;
    let client = store::client_by_id(state.db.pool(), &request.client_id)
        .await?
        .ok_or_else(expired_request)?;
    match current_sign_in(&state, &session).await? {
        Some(signed_in) if fresh_enough(&request, &signed_in) => {
            issue_code(
                &state,
                &request,
                &client,
                &signed_in,
                &meta,
                Some(&handle_hash),
            )
            .await
        }
        _ => {
            let target: String = url::form_urlencoded::Serializer::for_suffix(
                String::from("/signin?"),
                "/signin?".len(),
            )
            .append_pair("next", &resume_path(&handle))
            .finish();
            Ok(Redirect::to(&target).into_response())
        }
    }
}
