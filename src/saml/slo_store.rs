//! SQL of Single Logout: the SAML sessions (what an IdP's LogoutRequest names, kept under the
//! sign-in id) and the LogoutRequests this SP sent.

use sqlx::{Any, Executor, Row};

use super::slo::Subject;
use crate::db::{Batch, Dialect, DialectSql, Tx};
use crate::ids::{AccountId, SamlConnectionId};

/// How long a sign-in stays findable by a LogoutRequest when the IdP sets no
/// SessionNotOnOrAfter (longer than any session lifetime an organization can set).
pub const DEFAULT_SESSION_MS: i64 = 30 * 24 * 3_600_000;
/// How long this SP waits for the LogoutResponse to its LogoutRequest.
pub const LOGOUT_REQUEST_MS: i64 = 10 * 60_000;

/// A sign-in through an IdP connection.
#[derive(Clone, Debug)]
pub struct SamlSession {
    pub sign_in_id: String,
    pub connection_id: SamlConnectionId,
    pub account_id: AccountId,
    pub subject: Subject,
    pub session_index: Option<String>,
}

/// The columns a new SAML session is written in, by [`INSERT_SESSION`] and [`INSERT_SESSIONS`].
macro_rules! insert_session_into {
    () => {
        "INSERT INTO saml_sessions (sign_in_id, connection_id, account_id, name_id, \
         name_id_format, name_qualifier, sp_name_qualifier, session_index, created_at, expires_at) "
    };
}

const INSERT_SESSION: &str = concat!(
    insert_session_into!(),
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
);

/// Records the SAML side of a new sign-in, as a statement of `batch` whose outcome is not read
/// ([`Batch::push_unread`]).
pub fn insert_session(batch: &mut Batch, s: &SamlSession, now: i64, expires_at: i64) {
    batch.push_unread(
        INSERT_SESSION,
        vec![
            s.sign_in_id.as_str().into(),
            s.connection_id.to_string().into(),
            s.account_id.to_string().into(),
            s.subject.name_id.as_str().into(),
            s.subject.format.clone().into(),
            s.subject.name_qualifier.clone().into(),
            s.subject.sp_name_qualifier.clone().into(),
            s.session_index.clone().into(),
            now.into(),
            expires_at.into(),
        ],
    );
}

/// Inserts the SAML sessions of the JSON rows in `$1`, each row in `insert_session_into!`'s
/// columns' order.
static INSERT_SESSIONS: DialectSql = DialectSql::new(|d| {
    format!(
        concat!(
            insert_session_into!(),
            "SELECT c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 FROM ({}) AS s"
        ),
        crate::db::json_rows(d, "$1", 10, &[8, 9])
    )
});

/// [`insert_session`] for several sign-ins (each with its time and end), in one statement of
/// `batch` whatever their number; nothing when there are none.
pub fn insert_sessions(batch: &mut Batch, dialect: Dialect, sessions: &[(SamlSession, i64, i64)]) {
    if sessions.is_empty() {
        return;
    }
    let rows: Vec<serde_json::Value> = (sessions.iter())
        .map(|(s, now, expires_at)| {
            serde_json::json!([
                s.sign_in_id,
                s.connection_id.to_string(),
                s.account_id.to_string(),
                s.subject.name_id,
                s.subject.format,
                s.subject.name_qualifier,
                s.subject.sp_name_qualifier,
                s.session_index,
                now,
                expires_at,
            ])
        })
        .collect();
    batch.push_unread(
        INSERT_SESSIONS.get(dialect),
        vec![serde_json::Value::from(rows).to_string().into()],
    );
}

const SESSION_BY_ID: &str = "SELECT sign_in_id, connection_id, account_id, name_id, \
     name_id_format, name_qualifier, sp_name_qualifier, session_index FROM saml_sessions \
     WHERE sign_in_id = $1 AND ended_at IS NULL AND expires_at > $2";
const SESSIONS_NAMED: &str = "SELECT sign_in_id, connection_id, account_id, name_id, \
     name_id_format, name_qualifier, sp_name_qualifier, session_index FROM saml_sessions \
     WHERE connection_id = $1 AND name_id = $2 AND ended_at IS NULL AND expires_at > $3";

fn session_of(row: &sqlx::any::AnyRow) -> Result<SamlSession, sqlx::Error> {
    let bad = super::store::bad;
    let connection: String = row.try_get("connection_id")?;
    let account: String = row.try_get("account_id")?;
    Ok(SamlSession {
        sign_in_id: row.try_get("sign_in_id")?,
        connection_id: SamlConnectionId::parse(&connection).ok_or_else(|| bad("connection_id"))?,
        account_id: AccountId::parse(&account).ok_or_else(|| bad("account_id"))?,
        subject: Subject {
            name_id: row.try_get("name_id")?,
            format: row.try_get("name_id_format")?,
            name_qualifier: row.try_get("name_qualifier")?,
            sp_name_qualifier: row.try_get("sp_name_qualifier")?,
        },
        session_index: row.try_get("session_index")?,
    })
}

/// The live SAML session of a sign-in, if it came through an IdP.
pub async fn session<'c>(
    exec: impl Executor<'c, Database = Any>,
    sign_in_id: &str,
    now: i64,
) -> Result<Option<SamlSession>, sqlx::Error> {
    let row = sqlx::query(SESSION_BY_ID)
        .bind(sign_in_id.to_string())
        .bind(now)
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(session_of).transpose()
}

/// The live sessions of a connection that a LogoutRequest names: its NameID, and one of its
/// SessionIndex values when it gives any.
pub async fn sessions_named(
    tx: &mut Tx,
    connection: SamlConnectionId,
    name_id: &str,
    session_indexes: &[String],
    now: i64,
) -> Result<Vec<SamlSession>, sqlx::Error> {
    let rows = sqlx::query(SESSIONS_NAMED)
        .bind(connection.to_string())
        .bind(name_id.to_string())
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
    let sessions = rows.iter().map(session_of).collect::<Result<Vec<_>, _>>()?;
    Ok(sessions
        .into_iter()
        .filter(|s| {
            session_indexes.is_empty()
                || s.session_index
                    .as_ref()
                    .is_some_and(|i| session_indexes.contains(i))
        })
        .collect())
}

/// Marks the SAML session of a sign-in ended (no later LogoutRequest finds it).
pub async fn end_session(tx: &mut Tx, sign_in_id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE saml_sessions SET ended_at = $2 WHERE sign_in_id = $1 AND ended_at IS NULL",
    )
    .bind(sign_in_id.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Remembers a LogoutRequest this SP sent, until its answer comes.
pub async fn insert_logout_request(
    tx: &mut Tx,
    id: &str,
    connection: SamlConnectionId,
    return_to: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO saml_logout_requests (id, connection_id, return_to, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(connection.to_string())
    .bind(return_to.to_string())
    .bind(now)
    .bind(now + LOGOUT_REQUEST_MS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Spends the pending LogoutRequest `id` of `connection` once; returns where the browser goes
/// next, or `None` when there is no such request (unknown, answered, expired, other connection).
pub async fn answer_logout_request(
    tx: &mut Tx,
    id: &str,
    connection: SamlConnectionId,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT return_to FROM saml_logout_requests WHERE id = $1 AND connection_id = $2 \
         AND answered_at IS NULL AND expires_at > $3",
    )
    .bind(id.to_string())
    .bind(connection.to_string())
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let spent = sqlx::query(
        "UPDATE saml_logout_requests SET answered_at = $2 WHERE id = $1 AND answered_at IS NULL",
    )
    .bind(id.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if spent.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(Some(row.try_get("return_to")?))
}

/// Forgets ended or expired SAML sessions and old LogoutRequests.
pub async fn purge(pool: &sqlx::AnyPool, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM saml_sessions WHERE expires_at < $1")
        .bind(now)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM saml_logout_requests WHERE expires_at < $1")
        .bind(now - 24 * 3_600_000)
        .execute(pool)
        .await?;
    Ok(())
}

/// The replay cache for LogoutRequests: each ID is acted on once while it is valid.
pub async fn remember_logout_request(
    tx: &mut Tx,
    idp: &str,
    id: &str,
    valid_until: i64,
) -> Result<(), sqlx::Error> {
    super::store::remember(tx, idp, &format!("logout:{id}"), None, valid_until).await
}
