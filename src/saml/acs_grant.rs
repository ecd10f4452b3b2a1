//! What an admitted SSO response grants, and granting it. A response to a sign-in this browser
//! started signs in at once. An IdP-initiated (unsolicited) one does not: the ACS receives it as
//! a cross-site POST, which carries none of the browser's `SameSite=Lax` session cookie, so it
//! cannot see who is signed in there. The grant is parked (single use, 5 minutes, bound to the
//! browser by a cookie) and the browser comes back by a same-site GET to `/sso/{id}/continue`:
//! signed in as nobody or as the same account, the sign-in completes; signed in as someone else,
//! the page asks "continue as X?" first, so that no website can switch a signed-in browser to
//! another account (login CSRF).

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tower_sessions::Session;

use super::acs_result::connection_event;
use super::slo::Subject;
use super::{Connection, slo_store};
use crate::AppState;
use crate::accounts::{self, Account, AccountKind, AccountStatus};
use crate::audit::{self, AuditAction, RequestMeta, Target};
use crate::db::{Batch, Opening, Outcome, Tx};
use crate::ids::{AccountId, SamlConnectionId};
use crate::secrets;
use crate::web::error::AppError;
use crate::web::extract::{ClientMeta, PageForm};
use crate::web::{Layout, session};

/// The cookie that binds a parked IdP-initiated sign-in to the browser that posted it.
pub const CONTINUE_COOKIE: &str = "nulab_pass_sso_continue";
/// How long a parked sign-in waits for the browser.
const PARK_MS: i64 = 5 * 60_000;

/// What signing in through one admitted response needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Grant {
    pub account_id: AccountId,
    pub assertion_id: String,
    /// The display name the connection maps, when it maps one.
    pub name: Option<String>,
    /// What a LogoutRequest will name (`None` without a NameID).
    pub subject: Option<Subject>,
    pub session_index: Option<String>,
    /// The IdP's SessionNotOnOrAfter (Unix ms).
    pub session_until: Option<i64>,
    pub idp_initiated: bool,
}

/// Signs `account` in through `connection` inside `tx` (last sign-in time, the mapped name,
/// the audit event, the SAML session for Single Logout), commits, and starts the browser
/// session. `extra` goes into the audit event's details. The statements of `before` run first,
/// in the same round trip as the sign-in's own writes (on SQLite, and with the `BEGIN` when
/// `tx` is not open yet); `go_on` reads what they gave and, when it answers `false`, nothing is
/// kept and `finish` answers `false`.
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    state: &AppState,
    session: &Session,
    tx: Opening<'_>,
    connection: &Connection,
    account: &Account,
    grant: &Grant,
    meta: &RequestMeta,
    extra: serde_json::Value,
    mut before: Batch,
    go_on: impl FnOnce(&[Outcome]) -> bool,
) -> Result<bool, AppError> {
    let now = state.clock.now_ms();
    // A changed name is rare: its own statements, ahead of the batch.
    let tx = match new_name(account, grant.name.as_deref()) {
        Some(name) => {
            let mut tx = tx.open().await?;
            sync_name(&mut tx, connection, account, &name, meta, now).await?;
            Opening::Open(tx)
        }
        None => tx,
    };
    let asked = before.len();
    accounts::store::touch_sign_in_in(&mut before, account.id, now);
    let lifetime = accounts::session::LifetimeRead::push(&mut before, account);
    let sign_in_id = session::new_sign_in_id();
    if let Some(subject) = &grant.subject {
        let saml = slo_store::SamlSession {
            sign_in_id: sign_in_id.clone(),
            connection_id: connection.id,
            account_id: account.id,
            subject: subject.clone(),
            session_index: grant.session_index.clone(),
        };
        let until = grant
            .session_until
            .unwrap_or(now + slo_store::DEFAULT_SESSION_MS);
        slo_store::insert_session(&mut before, &saml, now, until);
    }
    // The event last: on PostgreSQL appending to the organization's audit chain locks its head
    // until the commit, so the other sign-ins of the organization wait the least.
    let mut details = serde_json::json!({
        "email": account.email,
        "assertion_id": grant.assertion_id,
        "idp_initiated": grant.idp_initiated,
    });
    if let (Some(map), serde_json::Value::Object(more)) = (details.as_object_mut(), extra) {
        map.extend(more);
    }
    let actor = account.actor();
    let event = connection_event(
        connection,
        AuditAction::SsoSigninSucceeded,
        &actor,
        meta,
        details,
    );
    let (mut placed, outcomes) = audit::record_after(tx, before, now, event).await?;
    if !go_on(&outcomes[..asked]) {
        placed.rollback().await?;
        return Ok(false);
    }
    // The browser learns of the sign-in only from its session, whose row is written by a
    // synchronous commit after this one: the organization's audit chain is let go before the
    // disk write, and concurrent sign-ins share their syncs.
    let lifetime = lifetime.ms(&outcomes)?;
    placed.defer_flush();
    placed.commit().await?;
    accounts::session::start_sign_in(
        state,
        session,
        account,
        session::SignInMethod::Saml,
        &sign_in_id,
        lifetime,
    )
    .await?;
    Ok(true)
}

/// The name to keep when the connection maps a valid one that differs from the account's.
fn new_name(account: &Account, mapped: Option<&str>) -> Option<String> {
    mapped
        .and_then(|n| accounts::check_name(n).ok())
        .filter(|n| *n != account.name)
}

/// Keeps the account's name as the IdP says it ([`new_name`]), audited as a rename by the
/// connection.
async fn sync_name(
    tx: &mut Tx,
    connection: &Connection,
    account: &Account,
    name: &str,
    meta: &RequestMeta,
    now: i64,
) -> Result<(), AppError> {
    accounts::store::set_name(tx, account.id, name, now).await?;
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(connection.org_id),
            action: AuditAction::ManagedAccountRenamed,
            actor: &account.actor(),
            target: Some(Target::account(account.id)),
            meta,
            details: serde_json::json!({
                "from": account.name,
                "to": name,
                "by": "sso",
                "connection_id": connection.id.to_string(),
            }),
        },
    )
    .await?;
    Ok(())
}

/// Parks an IdP-initiated grant and commits `tx` (in one call on SQLite); returns the response
/// that sends the browser to the continue page with the cookie that binds it.
pub async fn park(
    tx: Tx,
    state: &AppState,
    connection: &Connection,
    grant: &Grant,
    now: i64,
) -> Result<Response, AppError> {
    let handle = secrets::new_token("");
    let mut insert = Batch::new();
    insert.push(
        "INSERT INTO saml_pending_sign_ins (handle_hash, connection_id, account_id, grant_json, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        vec![
            secrets::hash_token(&handle).into(),
            connection.id.to_string().into(),
            grant.account_id.to_string().into(),
            serde_json::to_string(grant)
                .map_err(anyhow::Error::from)?
                .into(),
            now.into(),
            (now + PARK_MS).into(),
        ],
    );
    tx.commit_with(insert).await?;
    let secure = if state.base_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = HeaderValue::from_str(&format!(
        "{CONTINUE_COOKIE}={handle}; Path=/sso; Max-Age=300; HttpOnly; SameSite=Lax{secure}"
    ))
    .map_err(anyhow::Error::from)?;
    let mut response = Redirect::to(&format!("/sso/{}/continue", connection.id)).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/sso/{id}/continue", get(continue_get).post(continue_post))
}

#[derive(Template, WebTemplate)]
#[template(path = "sso_switch.html")]
struct SwitchPage {
    layout: Layout,
    connection_id: String,
    current: String,
    next: String,
}

/// A live parked grant by its handle's hash and connection, with the connection's version and
/// the account.
static PARKED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT p.grant_json, c.version AS connection_version, {} \
         FROM saml_pending_sign_ins p JOIN saml_connections c ON c.id = p.connection_id \
         JOIN accounts a ON a.id = p.account_id WHERE p.handle_hash = $1 \
         AND p.connection_id = $2 AND p.used_at IS NULL AND p.expires_at > $3",
        accounts::store::COLUMNS
    )
});

/// A parked grant, read through the browser's cookie: its connection and account.
struct Parked {
    handle_hash: String,
    connection: std::sync::Arc<Connection>,
    account: Account,
    grant: Grant,
}

async fn parked(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
) -> Result<Option<Parked>, AppError> {
    let (Some(id), Some(handle)) = (
        SamlConnectionId::parse(id),
        crate::web::cookie_value(headers, CONTINUE_COOKIE),
    ) else {
        return Ok(None);
    };
    let handle_hash = secrets::hash_token(&handle);
    // One statement: the grant, the version of its connection (checked against the parsed copy)
    // and its account.
    let row = sqlx::query(sqlx::AssertSqlSafe(PARKED.as_str()))
        .bind(handle_hash.clone())
        .bind(id.to_string())
        .bind(state.clock.now_ms())
        .fetch_optional(state.db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let raw: String = row.try_get("grant_json")?;
    let grant: Grant = serde_json::from_str(&raw).map_err(anyhow::Error::from)?;
    let version: i64 = row.try_get("connection_version")?;
    let Some(connection) = state
        .saml_connections
        .at_version(state.db.pool(), id, version)
        .await?
    else {
        return Ok(None);
    };
    // Still an active managed account of the connection's organization.
    let account = Some(accounts::store::from_row(&row)?).filter(|a| {
        a.id == grant.account_id
            && a.kind == AccountKind::Managed
            && a.status == AccountStatus::Active
            && a.org_id == Some(connection.org_id)
    });
    Ok(account.map(|account| Parked {
        handle_hash,
        connection,
        account,
        grant,
    }))
}

fn expired() -> Response {
    let page = crate::accounts::pages::MessagePage {
        layout: Layout::sessionless(),
        title: "Sign-in expired".to_string(),
        message: "This sign-in from your identity provider is no longer valid in this browser (it was used, it expired after 5 minutes, or it was started in another browser). Nothing was changed. Start the sign-in again from your identity provider.".to_string(),
        link: Some(("Sign in".to_string(), "/signin".to_string())),
    };
    (StatusCode::BAD_REQUEST, page).into_response()
}

const SPEND: &str =
    "UPDATE saml_pending_sign_ins SET used_at = $2 WHERE handle_hash = $1 AND used_at IS NULL";

/// Marks a parked grant used; `false` when another request already did.
async fn spend(tx: &mut Tx, handle_hash: &str, now: i64) -> Result<bool, sqlx::Error> {
    let spent = sqlx::query(SPEND)
        .bind(handle_hash.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(spent.rows_affected() == 1)
}

/// Spends the parked grant once and signs its account in; `None` when another request spent it.
async fn complete(
    state: &AppState,
    session: &Session,
    parked: &Parked,
    meta: &RequestMeta,
    switched_from: Option<&Account>,
) -> Result<Option<Response>, AppError> {
    // Spending the grant goes in the same round trip as the sign-in's writes (and its `BEGIN`,
    // on SQLite); when another request spent it first, nothing is kept.
    let mut spend = Batch::new();
    spend.push(
        SPEND,
        vec![
            parked.handle_hash.as_str().into(),
            state.clock.now_ms().into(),
        ],
    );
    let extra = match switched_from {
        Some(from) => serde_json::json!({ "switched_from": from.email }),
        None => serde_json::json!({}),
    };
    let signed_in = finish(
        state,
        session,
        Opening::Begin(&state.db),
        &parked.connection,
        &parked.account,
        &parked.grant,
        meta,
        extra,
        spend,
        |spent| spent.first().is_some_and(|s| s.affected == 1),
    )
    .await?;
    if !signed_in {
        return Ok(None);
    }
    let mut response = Redirect::to("/account").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("nulab_pass_sso_continue=; Path=/sso; Max-Age=0; HttpOnly"),
    );
    Ok(Some(response))
}

/// The browser back from an IdP-initiated sign-in: completes it, or asks first when the
/// browser is signed in as another account.
async fn continue_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    session: Session,
    headers: HeaderMap,
    ClientMeta(meta): ClientMeta,
) -> Result<Response, AppError> {
    let Some(parked) = parked(&state, &id, &headers).await? else {
        return Ok(expired());
    };
    let current = match session::account_id(&session).await? {
        Some(current) if current != parked.account.id => {
            accounts::store::by_id(state.db.pool(), current).await?
        }
        _ => None,
    };
    if let Some(current) = current.filter(|a| a.status == AccountStatus::Active) {
        let page = SwitchPage {
            layout: Layout::new(&session, Some(&current)).await?,
            connection_id: parked.connection.id.to_string(),
            current: current.email.to_string(),
            next: parked.account.email.to_string(),
        };
        return Ok(page.into_response());
    }
    Ok(complete(&state, &session, &parked, &meta, None)
        .await?
        .unwrap_or_else(expired))
}

#[derive(Deserialize)]
struct SwitchForm {
    decision: String,
}

/// The answer to "continue as X?": continue switches, anything else keeps the current sign-in.
async fn continue_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    session: Session,
    headers: HeaderMap,
    ClientMeta(meta): ClientMeta,
    PageForm(form): PageForm<SwitchForm>,
) -> Result<Response, AppError> {
    let Some(parked) = parked(&state, &id, &headers).await? else {
        return Ok(expired());
    };
    if form.decision != "continue" {
        let mut tx = state.db.begin().await?;
        spend(&mut tx, &parked.handle_hash, state.clock.now_ms()).await?;
        tx.commit().await?;
        return Ok(Redirect::to("/account").into_response());
    }
    let current = match session::account_id(&session).await? {
        Some(current) => accounts::store::by_id(state.db.pool(), current).await?,
        None => None,
    };
    let from = current.filter(|a| a.id != parked.account.id);
    Ok(complete(&state, &session, &parked, &meta, from.as_ref())
        .await?
        .unwrap_or_else(expired))
}

/// Forgets parked sign-ins a day after they expired.
pub async fn purge(pool: &sqlx::AnyPool, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM saml_pending_sign_ins WHERE expires_at < $1")
        .bind(now - 24 * 3_600_000)
        .execute(pool)
        .await?;
    Ok(())
}
