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
use super::{Connection, sign_ins, slo_store};
use crate::AppState;
use crate::accounts::{self, Account, AccountKind, AccountStatus};
use crate::audit::{self, AuditAction, RequestMeta, Target};
use crate::db::{Batch, Dialect, DialectSql, Opening, Outcome, Tx};
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
    before: Batch,
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
    let sign_in_id = session::new_sign_in_id();
    let writes = Writes {
        connection,
        account,
        grant,
        meta,
        sign_in_id: &sign_in_id,
        now,
    };
    let Some(lifetime) = commit(tx, &writes, extra, before, go_on).await? else {
        return Ok(false);
    };
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

/// What a sign-in writes, besides what its caller asks before it.
pub(super) struct Writes<'a> {
    pub connection: &'a Connection,
    pub account: &'a Account,
    pub grant: &'a Grant,
    pub meta: &'a RequestMeta,
    /// The new sign-in's id, which its browser session and SAML session carry.
    pub sign_in_id: &'a str,
    pub now: i64,
}

impl Writes<'_> {
    /// Adds the sign-in's writes before its audit event to `batch`: the last sign-in time, the
    /// read of the session's lifetime and the SAML session that Single Logout names.
    pub(super) fn push(&self, batch: &mut Batch) -> accounts::session::LifetimeRead {
        accounts::store::touch_sign_in_in(batch, self.account.id, self.now);
        let lifetime = accounts::session::LifetimeRead::push(batch, self.account);
        if let Some((saml, until)) = self.saml_session() {
            slo_store::insert_session(batch, &saml, self.now, until);
        }
        lifetime
    }

    /// [`Writes::push`] for several sign-ins recorded together at `now`, in three statements
    /// of `batch` whatever their number: the accounts' last sign-in time, the SAML sessions and
    /// the read of their organizations' session lifetimes (which `accounts` gives back, in
    /// order).
    pub(super) fn push_all(
        batch: &mut Batch,
        dialect: Dialect,
        writes: &[Writes<'_>],
        now: i64,
    ) -> accounts::session::LifetimesRead {
        let ids: Vec<AccountId> = writes.iter().map(|w| w.account.id).collect();
        accounts::store::touch_sign_ins_in(batch, dialect, &ids, now);
        let sessions: Vec<_> = (writes.iter())
            .filter_map(|w| w.saml_session().map(|(s, until)| (s, w.now, until)))
            .collect();
        slo_store::insert_sessions(batch, dialect, &sessions);
        accounts::session::LifetimesRead::push(batch, dialect, writes.iter().map(|w| w.account))
    }

    /// The SAML session that Single Logout names, with its end; none when the assertion named
    /// no subject.
    fn saml_session(&self) -> Option<(slo_store::SamlSession, i64)> {
        let subject = self.grant.subject.as_ref()?;
        let saml = slo_store::SamlSession {
            sign_in_id: self.sign_in_id.to_string(),
            connection_id: self.connection.id,
            account_id: self.account.id,
            subject: subject.clone(),
            session_index: self.grant.session_index.clone(),
        };
        let until = (self.grant.session_until).unwrap_or(self.now + slo_store::DEFAULT_SESSION_MS);
        Some((saml, until))
    }

    /// The sign-in's audit event (`actor` is the account's); `extra` joins its details.
    pub(super) fn event<'e>(
        &'e self,
        actor: &'e audit::Actor,
        extra: serde_json::Value,
    ) -> audit::Event<'e> {
        let mut details = serde_json::json!({
            "email": self.account.email,
            "assertion_id": self.grant.assertion_id,
            "idp_initiated": self.grant.idp_initiated,
        });
        if let (Some(map), serde_json::Value::Object(more)) = (details.as_object_mut(), extra) {
            map.extend(more);
        }
        connection_event(
            self.connection,
            AuditAction::SsoSigninSucceeded,
            actor,
            self.meta,
            details,
        )
    }
}

/// The sign-in's writes and audit event after the statements of `before`, in the transaction
/// `tx` opens, committed; `go_on` reads what `before` gave and, when it answers `false`,
/// nothing is kept and the answer is `None`. Otherwise the new session's lifetime (`None`: the
/// server's inactivity timeout applies).
pub(super) async fn commit(
    tx: Opening<'_>,
    writes: &Writes<'_>,
    extra: serde_json::Value,
    mut before: Batch,
    go_on: impl FnOnce(&[Outcome]) -> bool,
) -> Result<Option<Option<i64>>, sqlx::Error> {
    let asked = before.len();
    let lifetime = writes.push(&mut before);
    // The event last: on PostgreSQL appending to the organization's audit chain locks its head
    // until the commit, so the other sign-ins of the organization wait the least.
    let actor = writes.account.actor();
    let event = writes.event(&actor, extra);
    let (mut placed, outcomes) = audit::record_after(tx, before, writes.now, event).await?;
    if !go_on(&outcomes[..asked]) {
        placed.rollback().await?;
        return Ok(None);
    }
    // The browser learns of the sign-in only from its session, whose row is written by a
    // synchronous commit after this one: the organization's audit chain is let go before the
    // disk write, and concurrent sign-ins share their syncs.
    let lifetime = lifetime.ms(&outcomes)?;
    placed.defer_flush();
    placed.commit().await?;
    Ok(Some(lifetime))
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

/// Parks IdP-initiated grants, each with its connection and time, in one statement of `batch`:
/// the handles for the browsers' cookies, in order ([`parked_response`]). The column
/// `handle_hash` holds each handle's key ([`secrets::token_key`]): for a handle of this version
/// its time and hash, for one parked by the version before its hash alone. The name stays, so
/// that instances of both versions share the table during an upgrade.
static PARK_ALL: DialectSql = DialectSql::new(|d| {
    format!(
        "INSERT INTO saml_pending_sign_ins (handle_hash, connection_id, account_id, grant_json, \
         created_at, expires_at) SELECT c0, c1, c2, c3, c4, c5 FROM ({}) AS p",
        crate::db::json_rows(d, "$1", 6, &[4, 5])
    )
});

/// Parks each `(connection, grant, now)` of `grants` until [`PARK_MS`] after `now`, in one
/// statement of `batch`; returns each one's handle, in order.
pub(super) fn park_all_in(
    batch: &mut Batch,
    dialect: Dialect,
    grants: &[(&Connection, &Grant, i64)],
) -> Result<Vec<String>, serde_json::Error> {
    let mut handles = Vec::with_capacity(grants.len());
    let mut rows = Vec::with_capacity(grants.len());
    for (connection, grant, now) in grants {
        let handle = secrets::new_timed_token(*now);
        rows.push(serde_json::json!([
            secrets::token_key(&handle),
            connection.id.to_string(),
            grant.account_id.to_string(),
            serde_json::to_string(grant)?,
            now,
            now + PARK_MS,
        ]));
        handles.push(handle);
    }
    let list = serde_json::Value::from(rows).to_string();
    batch.push(PARK_ALL.get(dialect), vec![list.into()]);
    Ok(handles)
}

/// The answer to a parked sign-in: to the continue page, with the cookie that binds the grant
/// of `handle` to the browser.
pub(super) fn parked_response(
    state: &AppState,
    connection: &Connection,
    handle: &str,
) -> Result<Response, AppError> {
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

/// A live parked grant by its handle's key and connection, with the connection's version and
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
    handle_key: String,
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
    let handle_key = secrets::token_key(&handle);
    // One statement: the grant, the version of its connection (checked against the parsed copy)
    // and its account.
    let mut reading = state.db.read().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(PARKED.as_str()))
        .bind(handle_key.clone())
        .bind(id.to_string())
        .bind(state.clock.now_ms())
        .fetch_optional(&mut *reading)
        .await?;
    let Some(row) = row else {
        reading.done();
        return Ok(None);
    };
    let raw: String = row.try_get("grant_json")?;
    let grant: Grant = serde_json::from_str(&raw).map_err(anyhow::Error::from)?;
    let version: i64 = row.try_get("connection_version")?;
    let connections = &state.saml_connections;
    let connection = connections
        .of_version(&mut reading, id, Some(version))
        .await?;
    reading.done();
    let Some(connection) = connection else {
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
        handle_key,
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

/// Marks a parked grant used; `false` when another request already did.
async fn spend(tx: &mut Tx, handle_key: &str, now: i64) -> Result<bool, sqlx::Error> {
    let spent = sqlx::query(sign_ins::SPEND)
        .bind(handle_key.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(spent.rows_affected() == 1)
}

/// Spends the parked grant once and signs its account in; `None` when another request spent it.
async fn complete(
    state: &AppState,
    session: &Session,
    parked: Parked,
    meta: &RequestMeta,
    switched_from: Option<&Account>,
) -> Result<Option<Response>, AppError> {
    let extra = match switched_from {
        Some(from) => serde_json::json!({ "switched_from": from.email }),
        None => serde_json::json!({}),
    };
    let now = state.clock.now_ms();
    let signed_in = if new_name(&parked.account, parked.grant.name.as_deref()).is_some() {
        // A changed name is rare: the sign-in then goes on its own, with the rename in its
        // transaction. Spending the grant goes in the same round trip as the sign-in's writes;
        // when another request spent it first, nothing is kept.
        let mut spend = Batch::new();
        sign_ins::push_spend(&mut spend, &parked.handle_key, now);
        finish(
            state,
            session,
            Opening::Begin(&state.db),
            &parked.connection,
            &parked.account,
            &parked.grant,
            meta,
            extra,
            spend,
            sign_ins::spent_once,
        )
        .await?
    } else {
        // With the other returns waiting at the time, by group commit (`saml::sign_ins`).
        let sign_in_id = session::new_sign_in_id();
        let account = parked.account.clone();
        let job = sign_ins::Completion {
            handle_key: parked.handle_key,
            connection: parked.connection,
            account: parked.account,
            grant: parked.grant,
            meta: meta.clone(),
            extra,
            sign_in_id: sign_in_id.clone(),
            now,
        };
        match state.sign_ins.submit(job).await? {
            Some(lifetime) => {
                accounts::session::start_sign_in(
                    state,
                    session,
                    &account,
                    session::SignInMethod::Saml,
                    &sign_in_id,
                    lifetime,
                )
                .await?;
                true
            }
            None => false,
        }
    };
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
    Ok(complete(&state, &session, parked, &meta, None)
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
        spend(&mut tx, &parked.handle_key, state.clock.now_ms()).await?;
        tx.commit().await?;
        return Ok(Redirect::to("/account").into_response());
    }
    let current = match session::account_id(&session).await? {
        Some(current) => accounts::store::by_id(state.db.pool(), current).await?,
        None => None,
    };
    let from = current.filter(|a| a.id != parked.account.id);
    Ok(complete(&state, &session, parked, &meta, from.as_ref())
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
