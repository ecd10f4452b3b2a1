//! SSO over HTTP: the login URL that sends the browser to the IdP (binding the request to the
//! browser), the SP metadata, and the admin pages of connections. The ACS is `acs_page`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{sp, store};
use crate::AppState;
use crate::accounts::Email;
use crate::ids::SamlConnectionId;
use crate::limits::{self, Bucket, Limit};
use crate::secrets;
use crate::web::cookie_value;
use crate::web::error::AppError;
use crate::web::extract::ClientMeta;

/// Cookie that binds an AuthnRequest to the browser that started it. It must survive the
/// IdP's cross-site POST to the ACS, which SameSite=Lax cookies do not.
pub const BINDING_COOKIE: &str = "nulab_pass_sso";
/// The same binding without a SameSite attribute (and Secure only on https), read when the
/// first is absent: HTTP clients that are not browsers (Python requests, Go, Java, curl) send
/// Secure cookies over https only, and some older browsers drop `SameSite=None` cookies.
pub const BINDING_COOKIE_FALLBACK: &str = "nulab_pass_sso_compat";
/// How long a started sign-in may take.
pub const REQUEST_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// Public SSO routes (the ACS is [`super::acs_page::routes`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sso/{id}/login", get(login))
        .route("/sso/{id}/metadata", get(sp_metadata))
        .merge(super::acs_grant::routes())
        .merge(super::admin::routes())
}

/// The two binding cookies for `value`: `SameSite=None; Secure` (on https and loopback, which
/// browsers treat as secure) and the fallback without SameSite.
fn binding_cookies(value: &str, base_url: &str) -> [HeaderValue; 2] {
    let url = url::Url::parse(base_url).ok();
    let https = base_url.starts_with("https://");
    let loopback = url
        .as_ref()
        .and_then(|u| u.host_str())
        .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]");
    // SameSite=None requires Secure; browsers accept Secure cookies from loopback over http.
    let same_site = if https || loopback {
        "; SameSite=None; Secure"
    } else {
        ""
    };
    let secure = if https { "; Secure" } else { "" };
    let cookie = |name: &str, extra: &str| {
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/sso; Max-Age=600; HttpOnly{extra}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("nulab_pass_sso=; Max-Age=0"))
    };
    [
        cookie(BINDING_COOKIE, same_site),
        cookie(BINDING_COOKIE_FALLBACK, secure),
    ]
}

/// The browser's binding value: the main cookie, else the fallback.
pub(super) fn binding_value(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, BINDING_COOKIE).or_else(|| cookie_value(headers, BINDING_COOKIE_FALLBACK))
}

#[derive(Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
    /// The email the user already typed here, handed on to the IdP.
    login_hint: Option<String>,
}

/// Starts an SSO sign-in. Each start writes a request row, so starts are counted per client
/// address (`--limit-sso-login-per-address`); past the limit the answer is 429.
async fn login(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ClientMeta(meta): ClientMeta,
    Query(q): Query<LoginQuery>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let buckets: Vec<Bucket> = Bucket::address(Limit::SsoLoginPerAddress, &meta)
        .into_iter()
        .collect();
    let mut tx = state.db.begin().await?;
    let refused = limits::take(&mut tx, &state.config.limits, now, &buckets, &meta).await?;
    tx.commit().await?;
    if let Some(block) = refused {
        return Err(block.to_error(now));
    }
    let return_to = crate::accounts::pages::local_path(q.return_to.as_deref());
    let hint = q.login_hint.as_deref().and_then(|h| Email::parse(h).ok());
    start(&state, &id, &headers, &return_to, hint.as_ref(), false).await
}

/// Sends the browser to the IdP with a fresh AuthnRequest remembered for this browser. A
/// `login_hint` goes to the IdP as the `login_hint` query parameter, beside the (signed)
/// protocol parameters: Microsoft Entra ID and others fill their sign-in form with it, the rest
/// ignore it, and it grants nothing (the assertion alone says who signed in).
pub async fn start(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    return_to: &str,
    login_hint: Option<&Email>,
    is_test: bool,
) -> Result<Response, AppError> {
    let not_found =
        || AppError::not_found("There is no single sign-on connection at this address.");
    let id = SamlConnectionId::parse(id).ok_or_else(not_found)?;
    let connection = store::by_id(state.db.pool(), id)
        .await?
        .ok_or_else(not_found)?;
    let sso_url = connection
        .sso_url()
        .ok_or_else(|| AppError::bad_request("The connection has no single sign-on URL."))?
        .to_string();
    let binding = binding_value(headers)
        .filter(|v| v.len() >= 40)
        .unwrap_or_else(|| secrets::new_token(""));
    let now = state.clock.now_ms();
    let request_id = sp::new_request_id();
    let relay = secrets::new_token("");
    store::insert_request(
        state.db.pool(),
        &request_id,
        id,
        &secrets::hash_token(&binding),
        &relay,
        return_to,
        is_test,
        now,
        now + REQUEST_LIFETIME_MS,
    )
    .await?;
    let xml = sp::authn_request_xml(
        &connection,
        &state.base_url(),
        &request_id,
        &sso_url,
        chrono::Utc::now(),
    );
    let keys = state.sp_keys.keys()?;
    let signing = connection
        .settings
        .sign_authn_requests
        .then_some(&keys.signing);
    let mut target = sp::redirect_url(&sso_url, &xml, &relay, signing)?;
    if let Some(hint) = login_hint {
        target.push_str("&login_hint=");
        target.extend(url::form_urlencoded::byte_serialize(
            hint.as_str().as_bytes(),
        ));
    }
    let mut response = Redirect::to(&target).into_response();
    for cookie in binding_cookies(&binding, &state.base_url()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

async fn sp_metadata(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let not_found =
        || AppError::not_found("There is no single sign-on connection at this address.");
    let id = SamlConnectionId::parse(&id).ok_or_else(not_found)?;
    let connection = store::by_id(state.db.pool(), id)
        .await?
        .ok_or_else(not_found)?;
    let keys = state.sp_keys.keys()?;
    let xml = sp::metadata_xml(&connection, &state.base_url(), &keys)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/samlmetadata+xml; charset=utf-8",
        )],
        xml,
    )
        .into_response())
}
