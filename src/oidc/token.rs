//! `/oauth/token` (authorization_code and refresh_token grants, client_secret_basic and
//! client_secret_post) and `/oauth/userinfo`. Errors are RFC 6749 §5.2 JSON; a reused code or
//! refresh token revokes everything issued from the same code.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::store::{self, Client, CodeRow, TokenKind, TokenRow};
use super::token_limit;
use crate::AppState;
use crate::accounts::{self, Account, AccountStatus};
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::db::Tx;
use crate::secrets;
use crate::web::error::AppError;
use crate::web::extract::ClientMeta;

/// An OAuth error answer.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    basic_challenge: bool,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }
    pub(super) fn bad(error: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, description)
    }
    pub(super) fn grant(description: &str) -> Self {
        Self::bad("invalid_grant", description)
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(err: sqlx::Error) -> Self {
        AppError::from(err).into()
    }
}

impl From<AppError> for OAuthError {
    fn from(err: AppError) -> Self {
        // Logged once with an id; the product sees only the id.
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        tracing::error!(error_id = %id, error = ?err, "OIDC request failed");
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("internal error (error id {id})"),
        )
    }
}

impl From<anyhow::Error> for OAuthError {
    fn from(err: anyhow::Error) -> Self {
        AppError::Internal(err).into()
    }
}

pub(super) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"nulab-pass\""),
            );
        }
        no_store(response)
    }
}

/// Who the product says it is, from the Authorization header or the body (never both).
async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &std::collections::HashMap<String, String>,
) -> Result<Client, OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    let in_body = params.get("client_secret");
    let (id, secret, via_basic) = match (basic, in_body) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::bad(
                "invalid_request",
                "use one client authentication method, not two",
            ));
        }
        (Some(encoded), None) => {
            // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((id, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return Err(OAuthError {
                    basic_challenge: true,
                    ..OAuthError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "malformed Basic credentials",
                    )
                });
            };
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (decode(id), decode(secret), true)
        }
        (None, Some(secret)) => (
            params.get("client_id").cloned().unwrap_or_default(),
            secret.clone(),
            false,
        ),
        (None, None) => {
            return Err(OAuthError {
                basic_challenge: true,
                ..OAuthError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client authentication is required",
                )
            });
        }
    };
    if let Some(body_id) = params.get("client_id")
        && via_basic
        && body_id != &id
    {
        return Err(OAuthError::bad(
            "invalid_request",
            "client_id does not match the authenticated client",
        ));
    }
    match super::clients::authenticate(&state.db, &id, &secret).await? {
        Some(client) => Ok(client),
        None => Err(OAuthError {
            basic_challenge: via_basic,
            ..OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client or wrong client secret",
            )
        }),
    }
}

pub(super) async fn active_account(
    tx: &mut Tx,
    id: crate::ids::AccountId,
) -> Result<Option<Account>, sqlx::Error> {
    Ok(accounts::store::by_id(&mut **tx, id)
        .await?
        .filter(|a| a.status == AccountStatus::Active))
}

pub(super) async fn record(
    tx: &mut Tx,
    now: i64,
    action: AuditAction,
    subject: (crate::ids::AccountId, Option<&Account>),
    client: &Client,
    meta: &RequestMeta,
    extra: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let mut details = serde_json::json!({ "product": client.name, "client_id": client.client_id });
    if let (Some(map), serde_json::Value::Object(more)) = (details.as_object_mut(), extra) {
        map.extend(more);
    }
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: subject.1.and_then(|a| a.org_id),
            action,
            actor: &Actor::System("oidc"),
            target: Some(Target::account(subject.0)),
            meta,
            details,
        },
    )
    .await
}

/// Issues an access token, a refresh token (only when `offline_access` was granted) and an ID
/// token for one grant. Tokens stored in the grant's transaction, and the ID token's claims; the ID token is signed
/// by [`Issued::respond`] after the commit, so no CPU work holds the transaction open.
pub(super) struct Issued {
    access: String,
    refresh: Option<String>,
    scope: String,
    claims: serde_json::Map<String, serde_json::Value>,
}

impl Issued {
    /// The token response, with the ID token signed by the current key.
    pub(super) fn respond(self, state: &AppState) -> Result<serde_json::Value, OAuthError> {
        let id_token = state.oidc_keys.sign(self.claims)?;
        let mut body = serde_json::json!({
            "access_token": self.access,
            "token_type": "Bearer",
            "expires_in": super::ACCESS_TTL_MS / 1000,
            "id_token": id_token,
            "scope": self.scope,
        });
        if let (Some(refresh), Some(map)) = (self.refresh, body.as_object_mut()) {
            map.insert("refresh_token".into(), refresh.into());
        }
        Ok(body)
    }
}

/// Stores a new access and refresh token of the grant and gathers the ID token's claims, all
/// through the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub(super) async fn issue(
    state: &AppState,
    tx: &mut Tx,
    now: i64,
    client: &Client,
    account: &Account,
    grant: (&str, i64),
    scope: &str,
    auth: (i64, &[String], Option<&str>),
    nonce: Option<&str>,
) -> Result<Issued, OAuthError> {
    let (grant_id, grant_expires_at) = grant;
    let (auth_time, amr, sign_in_id) = auth;
    let access = secrets::new_token("npa_");
    // OIDC Core §11: a refresh token (offline access) only when the product asked for it.
    let refresh = super::has_scope(scope, "offline_access").then(|| secrets::new_token("npr_"));
    let mut tokens = vec![(TokenKind::Access, &access, now + super::ACCESS_TTL_MS)];
    if let Some(refresh) = &refresh {
        tokens.push((TokenKind::Refresh, refresh, grant_expires_at));
    }
    for (kind, token, expires_at) in tokens {
        let row = TokenRow {
            token_hash: secrets::hash_token(token),
            kind,
            grant_id: grant_id.to_string(),
            client_id: client.client_id.clone(),
            account_id: account.id,
            scope: scope.to_string(),
            auth_time,
            amr: amr.to_vec(),
            expires_at,
            used_at: None,
            revoked_at: None,
            sign_in_id: sign_in_id.map(str::to_string),
        };
        store::insert_token(tx, &row, now).await?;
    }
    let org = super::org_claim(&mut **tx, account).await?;
    let issuer = state.base_url();
    let mut claims = super::id_token_claims(&super::IdTokenInput {
        issuer: &issuer,
        client_id: &client.client_id,
        account,
        org: org.as_deref(),
        scope,
        auth_time,
        amr,
        nonce,
        now,
    });
    // Back-Channel Logout 1.0: the sign-in a logout token will name.
    if let Some(sid) = sign_in_id {
        claims.insert("sid".into(), sid.into());
    }
    Ok(Issued {
        access,
        refresh,
        scope: scope.to_string(),
        claims,
    })
}

/// The token endpoint, behind its rate limits ([`token_limit`]).
pub async fn token(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token_limit::limited(&state, &meta, &headers, &body, async {
        match exchange(&state, &meta, &headers, &body).await {
            Ok(json) => no_store(Json(json).into_response()),
            Err(err) => err.into_response(),
        }
    })
    .await
}

async fn exchange(
    state: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, OAuthError> {
    let params =
        super::authorize::parse_params(body).map_err(|e| OAuthError::bad("invalid_request", e))?;
    let client = authenticate_client(state, headers, &params).await?;
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    match get("grant_type") {
        Some("authorization_code") => {
            code_grant(
                state,
                meta,
                &client,
                get("code"),
                get("redirect_uri"),
                get("code_verifier"),
            )
            .await
        }
        Some("refresh_token") => {
            super::refresh::grant(state, meta, &client, get("refresh_token")).await
        }
        Some(_) => Err(OAuthError::bad(
            "unsupported_grant_type",
            "use authorization_code or refresh_token",
        )),
        None => Err(OAuthError::bad("invalid_request", "grant_type is required")),
    }
}

/// The checks of an unused code: not expired, the same redirect URI, and the PKCE verifier.
fn check_code(
    row: &CodeRow,
    now: i64,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<(), OAuthError> {
    if row.expires_at <= now {
        return Err(OAuthError::grant("the code has expired"));
    }
    if redirect_uri != Some(row.redirect_uri.as_str()) {
        return Err(OAuthError::grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    let Some(verifier) = verifier else {
        return Err(OAuthError::grant("code_verifier is required (PKCE)"));
    };
    if !super::pkce_matches(verifier, &row.code_challenge) {
        return Err(OAuthError::grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    Ok(())
}

async fn code_grant(
    state: &AppState,
    meta: &RequestMeta,
    client: &Client,
    code: Option<&str>,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<serde_json::Value, OAuthError> {
    let code = code.ok_or_else(|| OAuthError::bad("invalid_request", "code is required"))?;
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    let row = store::code(&mut tx, &secrets::hash_token(code))
        .await?
        .ok_or_else(|| OAuthError::grant("the code is not valid"))?;
    if row.client_id != client.client_id {
        return Err(OAuthError::grant("the code was not issued to this client"));
    }
    if row.used_at.is_some() {
        // RFC 6749 §4.1.2: a code used twice revokes what it issued.
        let revoked = store::revoke_grant(&mut tx, &row.id, now).await?;
        let account = accounts::store::by_id(&mut *tx, row.account_id).await?;
        record(
            &mut tx,
            now,
            AuditAction::OidcCodeReused,
            (row.account_id, account.as_ref()),
            client,
            meta,
            serde_json::json!({ "tokens_revoked": revoked }),
        )
        .await?;
        tx.commit().await?;
        return Err(OAuthError::grant(
            "the code has already been used; the tokens it issued are revoked",
        ));
    }
    check_code(&row, now, redirect_uri, verifier)?;
    let Some(account) = active_account(&mut tx, row.account_id).await? else {
        return Err(OAuthError::grant("the account can no longer sign in"));
    };
    if !store::use_code(&mut tx, &row.id, now).await? {
        return Err(OAuthError::grant("the code has already been used"));
    }
    let issued = issue(
        state,
        &mut tx,
        now,
        client,
        &account,
        (&row.id, row.grant_expires_at),
        &row.scope,
        (row.auth_time, &row.amr, row.sign_in_id.as_deref()),
        row.nonce.as_deref(),
    )
    .await?;
    record(
        &mut tx,
        now,
        AuditAction::OidcTokenIssued,
        (account.id, Some(&account)),
        client,
        meta,
        serde_json::json!({ "grant": "authorization_code" }),
    )
    .await?;
    tx.commit().await?;
    issued.respond(state)
}

fn invalid_token(description: &str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({ "error": "invalid_token", "error_description": description })),
    )
        .into_response();
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    no_store(response)
}

/// `/oauth/userinfo`: the claims of the access token's account (GET or POST, bearer header or
/// `access_token` form field).
pub async fn userinfo(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_string());
    let from_body = super::authorize::parse_params(&body)
        .ok()
        .and_then(|p| p.get("access_token").cloned());
    let Some(token) = from_header.or(from_body) else {
        let mut response = (StatusCode::UNAUTHORIZED, Json(serde_json::json!({ "error": "invalid_request", "error_description": "send the access token: Authorization: Bearer <token>" }))).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"nulab-pass\""),
        );
        return no_store(response);
    };
    match claims_for(&state, &token).await {
        Ok(Some(claims)) => no_store(Json(claims).into_response()),
        Ok(None) => invalid_token("the access token is not valid, has expired or has been revoked"),
        Err(err) => err.into_response(),
    }
}

async fn claims_for(
    state: &AppState,
    token: &str,
) -> Result<Option<serde_json::Value>, OAuthError> {
    let now = state.clock.now_ms();
    let Some(row) = store::token(
        state.db.pool(),
        &secrets::hash_token(token),
        TokenKind::Access,
    )
    .await?
    else {
        return Ok(None);
    };
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Ok(None);
    }
    let account = accounts::store::by_id(state.db.pool(), row.account_id).await?;
    let Some(account) = account.filter(|a| a.status == AccountStatus::Active) else {
        return Ok(None);
    };
    let org = super::org_claim(state.db.pool(), &account).await?;
    Ok(Some(serde_json::Value::Object(super::account_claims(
        &account,
        org.as_deref(),
        &row.scope,
    ))))
}
