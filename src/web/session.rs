//! Browser sessions kept in the database (so any server instance can serve any request), through
//! tower-sessions over the project's own pool. The signed-in account id is also kept in its own
//! column so that every session of an account can be ended at once. Rows are keyed by the SHA-256
//! of the session id ([`stored_id`]), never the id (the cookie) itself.

use async_trait::async_trait;
use sqlx::Row;
use tower_sessions::Session;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::db::{self, Db};
use crate::ids::{self, AccountId};

/// Session key of the signed-in account's id.
pub const ACCOUNT_KEY: &str = "account_id";
/// Session key of the sign-in this session belongs to (the OpenID Connect `sid`): ending that
/// sign-in (a logout here, at the IdP or at a product) deletes every session that carries it.
pub const SIGN_IN_KEY: &str = "sign_in";
/// Session key of how the user signed in (`pwd`, later `saml`).
pub const METHOD_KEY: &str = "auth_method";

/// How a browser session was signed in; stored in the session as text (`pwd`, `saml`, the
/// OpenID Connect `amr` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInMethod {
    Password,
    Saml,
}

impl SignInMethod {
    /// The stored text, which is also the `amr` value handed to products.
    pub fn as_str(self) -> &'static str {
        match self {
            SignInMethod::Password => "pwd",
            SignInMethod::Saml => "saml",
        }
    }

    /// The method of a stored text; `None` for anything else.
    pub fn parse(raw: &str) -> Option<SignInMethod> {
        match raw {
            "pwd" => Some(SignInMethod::Password),
            "saml" => Some(SignInMethod::Saml),
            _ => None,
        }
    }

    /// In words, for pages.
    pub fn label(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::Saml => "saml",
        }
    }
}

/// How this session was signed in, when it was.
pub async fn method(
    session: &Session,
) -> Result<Option<SignInMethod>, tower_sessions::session::Error> {
    let raw: Option<String> = session.get(METHOD_KEY).await?;
    Ok(raw.as_deref().and_then(SignInMethod::parse))
}
/// Session key of when the user signed in (Unix ms).
pub const AUTH_AT_KEY: &str = "auth_at";
/// Session key set while the user must replace a temporary or expired password.
pub const MUST_CHANGE_KEY: &str = "must_change_password";
/// Session key set when a password sign-in was completed with a second factor (`otp`).
pub const SECOND_FACTOR_KEY: &str = "second_factor";
/// Session key: when this sign-in ends (Unix ms, app clock; 0: the server's inactivity timeout).
/// Set from the organization's session lifetime on the first request after the sign-in.
pub const SESSION_UNTIL_KEY: &str = "session_until";

/// What the session layer knows of a signed-in account (implemented by `accounts::Account`;
/// this layer sits below accounts and never names it).
pub trait SessionAccount: Sync {
    /// The account's stable id, kept in the session.
    fn account_id(&self) -> AccountId;
    /// The email the page layout shows.
    fn email(&self) -> &str;
}

/// A [`SessionStore`] over the `sessions` table. New sessions (every sign-in's) are inserted by
/// group commit ([`db::GroupInsert`]): under load, the rows waiting go in one statement.
#[derive(Clone, Debug)]
pub struct DbSessionStore {
    db: Db,
    inserts: db::GroupInsert,
}

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        let inserts = db::GroupInsert::new(db.clone(), INSERT_HEAD, 5);
        DbSessionStore { db, inserts }
    }
}

fn backend(err: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

fn expiry_ms(record: &Record) -> i64 {
    (record.expiry_date.unix_timestamp_nanos() / 1_000_000) as i64
}

fn value_of(record: &Record, key: &str) -> Option<String> {
    record
        .data
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// The key a session is stored under: the SHA-256 of its id (the cookie's value), so that a
/// copy of the `sessions` table holds no cookie that signs anyone in.
pub fn stored_id(id: &Id) -> String {
    crate::secrets::hash_token(&id.to_string())
}

const INSERT_HEAD: &str = "INSERT INTO sessions (id, account_id, sign_in_id, data, expires_at)";
const UPSERT: &str = "INSERT INTO sessions (id, account_id, sign_in_id, data, expires_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, \
     sign_in_id = excluded.sign_in_id, data = excluded.data, expires_at = excluded.expires_at";
const LOAD: &str = "SELECT data, expires_at FROM sessions WHERE id = $1 AND expires_at > $2";
const DELETE: &str = "DELETE FROM sessions WHERE id = $1";
const DELETE_FOR_ACCOUNT: &str = "DELETE FROM sessions WHERE account_id = $1";
const DELETE_FOR_SIGN_IN: &str = "DELETE FROM sessions WHERE sign_in_id = $1";
const DELETE_EXPIRED: &str = "DELETE FROM sessions WHERE expires_at <= $1";

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        loop {
            let row = vec![
                stored_id(&record.id).into(),
                value_of(record, ACCOUNT_KEY).into(),
                value_of(record, SIGN_IN_KEY).into(),
                data.clone().into(),
                expiry_ms(record).into(),
            ];
            match self.inserts.insert(row).await {
                Ok(_) => return Ok(()),
                // A 128-bit id collision: draw another.
                Err(err) if db::is_unique_violation(&err) => record.id = Id::default(),
                Err(err) => return Err(backend(err)),
            }
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let mut writing = self.db.write().await.map_err(backend)?;
        sqlx::query(UPSERT)
            .bind(stored_id(&record.id))
            .bind(value_of(record, ACCOUNT_KEY))
            .bind(value_of(record, SIGN_IN_KEY))
            .bind(data)
            .bind(expiry_ms(record))
            .execute(&mut *writing)
            .await
            .map_err(backend)?;
        writing.done();
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let mut reading = self.db.read().await.map_err(backend)?;
        let row = sqlx::query(LOAD)
            .bind(stored_id(id))
            .bind(now)
            .fetch_optional(&mut *reading)
            .await
            .map_err(backend)?;
        reading.done();
        let Some(row) = row else { return Ok(None) };
        let data: String = row.try_get("data").map_err(backend)?;
        let expires_at: i64 = row.try_get("expires_at").map_err(backend)?;
        let data =
            serde_json::from_str(&data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(expires_at) * 1_000_000)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let mut writing = self.db.write().await.map_err(backend)?;
        sqlx::query(DELETE)
            .bind(stored_id(id))
            .execute(&mut *writing)
            .await
            .map_err(backend)?;
        writing.done();
        Ok(())
    }
}

/// Ends every session of an account (sign out everywhere, suspension, migration).
pub async fn end_all_for(tx: &mut db::Tx, account: AccountId) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(DELETE_FOR_ACCOUNT)
        .bind(account.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

/// Ends the sessions of one sign-in (every browser session that carries `sign_in_id`).
pub async fn end_sign_in(tx: &mut db::Tx, sign_in_id: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(DELETE_FOR_SIGN_IN)
        .bind(sign_in_id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

/// A new sign-in id, hex: the time it was made and 74 random bits ([`ids::time_ordered`]). Not
/// a secret (products see it as `sid`), but unguessable so that nobody can name another
/// person's sign-in; time-ordered so that the sessions' and SAML sessions' indexes on it grow
/// at their end.
pub fn new_sign_in_id() -> String {
    ids::time_ordered().simple().to_string()
}

/// The sign-in this session belongs to, if it is signed in.
pub async fn sign_in_id(
    session: &Session,
) -> Result<Option<String>, tower_sessions::session::Error> {
    session.get(SIGN_IN_KEY).await
}

/// Removes expired sessions.
pub async fn delete_expired(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(DELETE_EXPIRED)
        .bind(now)
        .execute(&mut *db.write().await?)
        .await?;
    Ok(done.rows_affected())
}

/// Starts a signed-in session: a new session id (no fixation), then the account and the
/// sign-in it belongs to.
pub async fn sign_in(
    session: &Session,
    account: &(impl SessionAccount + ?Sized),
    method: SignInMethod,
    sign_in_id: &str,
    now: i64,
) -> Result<(), tower_sessions::session::Error> {
    // What belonged to an earlier sign-in in this browser does not carry over.
    session.remove_value(SECOND_FACTOR_KEY).await?;
    session.remove_value(SESSION_UNTIL_KEY).await?;
    // A stored session gets a new id and its old row goes. A browser without one (no cookie, or
    // one naming no stored session) has no id yet: it gets a fresh random one when the session
    // is first stored, so there is no row to delete and no id anyone could have planted.
    if session.id().is_some() {
        session.cycle_id().await?;
    }
    session
        .insert(ACCOUNT_KEY, account.account_id().to_string())
        .await?;
    session.insert(SIGN_IN_KEY, sign_in_id).await?;
    session.insert(METHOD_KEY, method.as_str()).await?;
    session.insert(AUTH_AT_KEY, now).await?;
    Ok(())
}

/// The signed-in account id of this session, if any.
pub async fn account_id(
    session: &Session,
) -> Result<Option<AccountId>, tower_sessions::session::Error> {
    let raw: Option<String> = session.get(ACCOUNT_KEY).await?;
    Ok(raw.as_deref().and_then(AccountId::parse))
}

/// The product a parked OpenID Connect request signs in to, with the path that resumes it:
/// `oidc` writes it when it sends the browser to sign in, the sign-in pages name the product
/// while their `next` is that path.
const SIGNING_IN_TO_KEY: &str = "signing_in_to";

/// Remembers that signing in on this browser continues to `product` through `next`.
pub async fn set_signing_in_to(
    session: &Session,
    next: &str,
    product: &str,
) -> Result<(), tower_sessions::session::Error> {
    session
        .insert(SIGNING_IN_TO_KEY, (next.to_string(), product.to_string()))
        .await
}

/// The product that signing in with `next` continues to, if any.
pub async fn signing_in_to(
    session: &Session,
    next: &str,
) -> Result<Option<String>, tower_sessions::session::Error> {
    Ok(session
        .get::<(String, String)>(SIGNING_IN_TO_KEY)
        .await?
        .filter(|(path, _)| path == next)
        .map(|(_, product)| product))
}
