//! SQL of the single-use tokens of emailed links, and the address a pending email change names.

use sqlx::{Any, Executor, Row};

use crate::accounts::{AccountId, Email};
use crate::db::Tx;

/// What an emailed link (an email token) is for; stored as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Confirms an address.
    VerifyEmail,
    /// Sets a managed account's first password.
    Activate,
    /// Resets a password.
    ResetPassword,
    /// Confirms a new address of a Nulab account (the address is the token's `email`; the
    /// account keeps its confirmed one until then).
    ChangeEmail,
    /// Sent to the old address after an email change: restores it (the token's `email`).
    ReportEmailChange,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::VerifyEmail => "verify_email",
            LinkPurpose::Activate => "activate",
            LinkPurpose::ResetPassword => "reset_password",
            LinkPurpose::ChangeEmail => "change_email",
            LinkPurpose::ReportEmailChange => "report_email_change",
        }
    }
}

const PENDING_CHANGE: &str = "SELECT email FROM email_tokens WHERE account_id = $1 \
     AND purpose = 'change_email' AND used_at IS NULL AND expires_at > $2 \
     ORDER BY created_at DESC LIMIT 1";

/// The address a Nulab account asked to change to and has not confirmed yet (its pending email).
pub async fn pending_email<'c>(
    exec: impl Executor<'c, Database = Any>,
    account: AccountId,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(PENDING_CHANGE)
        .bind(account.to_string())
        .bind(now)
        .fetch_optional(exec)
        .await?;
    row.map(|r| r.try_get("email")).transpose()
}

/// A stored single-use email token.
pub struct TokenRow {
    pub token_hash: String,
    pub account_id: AccountId,
    pub email: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

const INSERT_TOKEN: &str = "INSERT INTO email_tokens (token_hash, account_id, purpose, email, \
     created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";

pub async fn insert_token(
    tx: &mut Tx,
    token_hash: &str,
    account: AccountId,
    purpose: LinkPurpose,
    email: &Email,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_TOKEN)
        .bind(token_hash.to_string())
        .bind(account.to_string())
        .bind(purpose.as_str())
        .bind(email.to_string())
        .bind(now)
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const EXPIRE_TOKENS: &str = "UPDATE email_tokens SET expires_at = $3 \
     WHERE account_id = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3";

/// Ends every unused token of this purpose (a new link supersedes the old ones).
pub async fn expire_tokens(
    tx: &mut Tx,
    account: AccountId,
    purpose: LinkPurpose,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(EXPIRE_TOKENS)
        .bind(account.to_string())
        .bind(purpose.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const TOKEN: &str = "SELECT token_hash, account_id, email, expires_at, used_at FROM email_tokens \
     WHERE token_hash = $1 AND purpose = $2";

pub async fn token(
    tx: &mut Tx,
    token_hash: &str,
    purpose: LinkPurpose,
) -> Result<Option<TokenRow>, sqlx::Error> {
    let row = sqlx::query(TOKEN)
        .bind(token_hash.to_string())
        .bind(purpose.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let account_id: String = row.try_get("account_id")?;
    let Some(account_id) = AccountId::parse(&account_id) else {
        return Ok(None);
    };
    Ok(Some(TokenRow {
        token_hash: row.try_get("token_hash")?,
        account_id,
        email: row.try_get("email")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
    }))
}

const USE_TOKEN: &str =
    "UPDATE email_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL";

pub async fn use_token(tx: &mut Tx, token_hash: &str, now: i64) -> Result<(), sqlx::Error> {
    let done = sqlx::query(USE_TOKEN)
        .bind(token_hash.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != 1 {
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(())
}
