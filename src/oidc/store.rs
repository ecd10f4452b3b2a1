//! SQL of the OpenID Connect provider: products, parked authorization requests, codes, tokens.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use crate::db::Tx;
use crate::ids::AccountId;

fn json_list(row: &AnyRow, col: &str) -> Result<Vec<String>, sqlx::Error> {
    let raw: String = row.try_get(col)?;
    serde_json::from_str(&raw).map_err(|e| sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: Box::new(e),
    })
}

fn account(row: &AnyRow) -> Result<AccountId, sqlx::Error> {
    let raw: String = row.try_get("account_id")?;
    AccountId::parse(&raw).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "account_id".into(),
        source: "not an account id".into(),
    })
}

/// A registered product (OIDC client). The secret is kept only as a hash.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// OpenID Connect Back-Channel Logout 1.0: where logout tokens are posted.
    pub backchannel_logout_uri: Option<String>,
    pub created_at: i64,
    pub secret_rotated_at: i64,
}

fn client(row: &AnyRow) -> Result<Client, sqlx::Error> {
    Ok(Client {
        client_id: row.try_get("id")?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        redirect_uris: json_list(row, "redirect_uris")?,
        post_logout_redirect_uris: json_list(row, "post_logout_redirect_uris")?,
        backchannel_logout_uri: row.try_get("backchannel_logout_uri")?,
        created_at: row.try_get("created_at")?,
        secret_rotated_at: row.try_get("secret_rotated_at")?,
    })
}

const CLIENT_BY_ID: &str = "SELECT id, name, secret_hash, redirect_uris, post_logout_redirect_uris, \
     backchannel_logout_uri, created_at, secret_rotated_at FROM oidc_clients WHERE id = $1";
const CLIENT_BY_NAME: &str = "SELECT id, name, secret_hash, redirect_uris, post_logout_redirect_uris, \
     backchannel_logout_uri, created_at, secret_rotated_at FROM oidc_clients WHERE name = $1";
const CLIENTS: &str = "SELECT id, name, secret_hash, redirect_uris, post_logout_redirect_uris, \
     backchannel_logout_uri, created_at, secret_rotated_at FROM oidc_clients ORDER BY name";

/// The product with this client id.
pub async fn client_by_id<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<Client>, sqlx::Error> {
    let row = sqlx::query(CLIENT_BY_ID)
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(client).transpose()
}

/// The product with this name.
pub async fn client_by_name<'c>(
    exec: impl Executor<'c, Database = Any>,
    name: &str,
) -> Result<Option<Client>, sqlx::Error> {
    let row = sqlx::query(CLIENT_BY_NAME)
        .bind(name.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(client).transpose()
}

/// Every product, by name.
pub async fn clients<'c>(
    exec: impl Executor<'c, Database = Any>,
) -> Result<Vec<Client>, sqlx::Error> {
    let rows = sqlx::query(CLIENTS).fetch_all(exec).await?;
    rows.iter().map(client).collect()
}

const INSERT_CLIENT: &str = "INSERT INTO oidc_clients (id, name, secret_hash, redirect_uris, \
     post_logout_redirect_uris, created_at, secret_rotated_at, backchannel_logout_uri) \
     VALUES ($1, $2, $3, $4, $5, $6, $6, $7)";

pub async fn insert_client(tx: &mut Tx, c: &Client) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_CLIENT)
        .bind(c.client_id.clone())
        .bind(c.name.clone())
        .bind(c.secret_hash.clone())
        .bind(serde_json::json!(c.redirect_uris).to_string())
        .bind(serde_json::json!(c.post_logout_redirect_uris).to_string())
        .bind(c.created_at)
        .bind(c.backchannel_logout_uri.clone())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const SET_SECRET: &str =
    "UPDATE oidc_clients SET secret_hash = $2, secret_rotated_at = $3 WHERE id = $1";

pub async fn set_client_secret(
    tx: &mut Tx,
    id: &str,
    secret_hash: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_SECRET)
        .bind(id.to_string())
        .bind(secret_hash.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const DELETE_CLIENT_TOKENS: &str = "DELETE FROM oidc_tokens WHERE client_id = $1";
const DELETE_CLIENT_CODES: &str = "DELETE FROM oidc_codes WHERE client_id = $1";
const DELETE_CLIENT_REQUESTS: &str = "DELETE FROM oidc_requests WHERE client_id = $1";
const DELETE_CLIENT: &str = "DELETE FROM oidc_clients WHERE id = $1";

/// Deletes a product with everything issued to it.
pub async fn delete_client(tx: &mut Tx, id: &str) -> Result<(), sqlx::Error> {
    for sql in [
        DELETE_CLIENT_TOKENS,
        DELETE_CLIENT_CODES,
        DELETE_CLIENT_REQUESTS,
        DELETE_CLIENT,
    ] {
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The validated parameters of an authorization request.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    /// The sign-in must have happened at or after this time (`prompt=login`, `max_age`).
    pub login_after: Option<i64>,
}

const PARK: &str = "INSERT INTO oidc_requests (handle_hash, client_id, redirect_uri, scope, state, \
     nonce, code_challenge, login_after, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

pub async fn park_request(
    tx: &mut Tx,
    handle_hash: &str,
    r: &AuthRequest,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(PARK)
        .bind(handle_hash.to_string())
        .bind(r.client_id.clone())
        .bind(r.redirect_uri.clone())
        .bind(r.scope.clone())
        .bind(r.state.clone())
        .bind(r.nonce.clone())
        .bind(r.code_challenge.clone())
        .bind(r.login_after)
        .bind(now)
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const PARKED: &str = "SELECT client_id, redirect_uri, scope, state, nonce, code_challenge, login_after \
     FROM oidc_requests WHERE handle_hash = $1 AND used_at IS NULL AND expires_at > $2";

/// A parked request that is still usable.
pub async fn parked_request<'c>(
    exec: impl Executor<'c, Database = Any>,
    handle_hash: &str,
    now: i64,
) -> Result<Option<AuthRequest>, sqlx::Error> {
    let row = sqlx::query(PARKED)
        .bind(handle_hash.to_string())
        .bind(now)
        .fetch_optional(exec)
        .await?;
    row.map(|row| {
        Ok(AuthRequest {
            client_id: row.try_get("client_id")?,
            redirect_uri: row.try_get("redirect_uri")?,
            scope: row.try_get("scope")?,
            state: row.try_get("state")?,
            nonce: row.try_get("nonce")?,
            code_challenge: row.try_get("code_challenge")?,
            login_after: row.try_get("login_after")?,
        })
    })
    .transpose()
}

const USE_PARKED: &str =
    "UPDATE oidc_requests SET used_at = $2 WHERE handle_hash = $1 AND used_at IS NULL";

/// Marks a parked request used; `false` if it already was.
pub async fn use_parked_request(
    tx: &mut Tx,
    handle_hash: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(USE_PARKED)
        .bind(handle_hash.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// An authorization code as stored (the code itself only as a hash).
#[derive(Clone, Debug)]
pub struct CodeRow {
    pub id: String,
    pub client_id: String,
    pub account_id: AccountId,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub grant_expires_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// The browser sign-in the code was issued in (the ID token's `sid`).
    pub sign_in_id: Option<String>,
}

const INSERT_CODE: &str = "INSERT INTO oidc_codes (id, code_hash, client_id, account_id, redirect_uri, \
     scope, nonce, code_challenge, auth_time, amr, grant_expires_at, created_at, expires_at, sign_in_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

pub async fn insert_code(
    tx: &mut Tx,
    code_hash: &str,
    c: &CodeRow,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_CODE)
        .bind(c.id.clone())
        .bind(code_hash.to_string())
        .bind(c.client_id.clone())
        .bind(c.account_id.to_string())
        .bind(c.redirect_uri.clone())
        .bind(c.scope.clone())
        .bind(c.nonce.clone())
        .bind(c.code_challenge.clone())
        .bind(c.auth_time)
        .bind(serde_json::json!(c.amr).to_string())
        .bind(c.grant_expires_at)
        .bind(now)
        .bind(c.expires_at)
        .bind(c.sign_in_id.clone())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// A code from a sign-in that ended (`accounts.sessions_valid_after`) reads as spent at that time,
// as if it had been burnt then.
const CODE: &str = "SELECT c.id, c.client_id, c.account_id, c.redirect_uri, c.scope, c.nonce, \
     c.code_challenge, c.auth_time, c.amr, c.grant_expires_at, c.sign_in_id, \
     CASE WHEN c.used_at IS NULL AND c.auth_time < a.sessions_valid_after \
          THEN a.sessions_valid_after ELSE c.expires_at END AS expires_at, \
     CASE WHEN c.used_at IS NULL AND c.auth_time < a.sessions_valid_after \
          THEN a.sessions_valid_after ELSE c.used_at END AS used_at \
     FROM oidc_codes c JOIN accounts a ON a.id = c.account_id WHERE c.code_hash = $1";

pub async fn code(tx: &mut Tx, code_hash: &str) -> Result<Option<CodeRow>, sqlx::Error> {
    let row = sqlx::query(CODE)
        .bind(code_hash.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| {
        Ok(CodeRow {
            id: row.try_get("id")?,
            client_id: row.try_get("client_id")?,
            account_id: account(&row)?,
            redirect_uri: row.try_get("redirect_uri")?,
            scope: row.try_get("scope")?,
            nonce: row.try_get("nonce")?,
            code_challenge: row.try_get("code_challenge")?,
            auth_time: row.try_get("auth_time")?,
            amr: json_list(&row, "amr")?,
            grant_expires_at: row.try_get("grant_expires_at")?,
            expires_at: row.try_get("expires_at")?,
            used_at: row.try_get("used_at")?,
            sign_in_id: row.try_get("sign_in_id")?,
        })
    })
    .transpose()
}

const USE_CODE: &str = "UPDATE oidc_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL";

/// Marks a code used; `false` when another exchange got there first.
pub async fn use_code(tx: &mut Tx, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(USE_CODE)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Which of a grant's tokens a row is; stored as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Sent as a bearer token to userinfo.
    Access,
    /// Exchanged for new tokens at the token endpoint (rotated on each use).
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }

    pub fn parse(raw: &str) -> Option<TokenKind> {
        match raw {
            "access" => Some(TokenKind::Access),
            "refresh" => Some(TokenKind::Refresh),
            _ => None,
        }
    }
}

/// An access or refresh token as stored.
#[derive(Clone, Debug)]
pub struct TokenRow {
    pub token_hash: String,
    pub kind: TokenKind,
    pub grant_id: String,
    pub client_id: String,
    pub account_id: AccountId,
    pub scope: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The browser sign-in the grant was made in; ending that sign-in revokes it.
    pub sign_in_id: Option<String>,
}

const INSERT_TOKEN: &str = "INSERT INTO oidc_tokens (token_hash, kind, grant_id, client_id, account_id, \
     scope, auth_time, amr, created_at, expires_at, sign_in_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

pub async fn insert_token(tx: &mut Tx, t: &TokenRow, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_TOKEN)
        .bind(t.token_hash.clone())
        .bind(t.kind.as_str())
        .bind(t.grant_id.clone())
        .bind(t.client_id.clone())
        .bind(t.account_id.to_string())
        .bind(t.scope.clone())
        .bind(t.auth_time)
        .bind(serde_json::json!(t.amr).to_string())
        .bind(now)
        .bind(t.expires_at)
        .bind(t.sign_in_id.clone())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// A token from a sign-in that ended (`accounts.sessions_valid_after`) reads as revoked then.
const TOKEN: &str = "SELECT t.token_hash, t.kind, t.grant_id, t.client_id, t.account_id, t.scope, \
     t.auth_time, t.amr, t.expires_at, t.used_at, t.sign_in_id, \
     CASE WHEN t.revoked_at IS NULL AND t.auth_time < a.sessions_valid_after \
          THEN a.sessions_valid_after ELSE t.revoked_at END AS revoked_at \
     FROM oidc_tokens t JOIN accounts a ON a.id = t.account_id \
     WHERE t.token_hash = $1 AND t.kind = $2";

pub async fn token<'c>(
    exec: impl Executor<'c, Database = Any>,
    token_hash: &str,
    kind: TokenKind,
) -> Result<Option<TokenRow>, sqlx::Error> {
    let row = sqlx::query(TOKEN)
        .bind(token_hash.to_string())
        .bind(kind.as_str())
        .fetch_optional(exec)
        .await?;
    row.map(|row| {
        Ok(TokenRow {
            token_hash: row.try_get("token_hash")?,
            kind: {
                let raw: String = row.try_get("kind")?;
                TokenKind::parse(&raw).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown OIDC token kind {raw:?}").into())
                })?
            },
            grant_id: row.try_get("grant_id")?,
            client_id: row.try_get("client_id")?,
            account_id: account(&row)?,
            scope: row.try_get("scope")?,
            auth_time: row.try_get("auth_time")?,
            amr: json_list(&row, "amr")?,
            expires_at: row.try_get("expires_at")?,
            used_at: row.try_get("used_at")?,
            revoked_at: row.try_get("revoked_at")?,
            sign_in_id: row.try_get("sign_in_id")?,
        })
    })
    .transpose()
}

const USE_TOKEN: &str = "UPDATE oidc_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL";

/// Marks a refresh token used (rotated); `false` when it already was or is revoked.
pub async fn use_token(tx: &mut Tx, token_hash: &str, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(USE_TOKEN)
        .bind(token_hash.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

const REVOKE_GRANT: &str =
    "UPDATE oidc_tokens SET revoked_at = $2 WHERE grant_id = $1 AND revoked_at IS NULL";

/// Revokes every token issued from one code (and its refreshed successors).
pub async fn revoke_grant(tx: &mut Tx, grant_id: &str, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(REVOKE_GRANT)
        .bind(grant_id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

const REVOKE_SIGN_IN: &str =
    "UPDATE oidc_tokens SET revoked_at = $2 WHERE sign_in_id = $1 AND revoked_at IS NULL";
const BURN_SIGN_IN_CODES: &str =
    "UPDATE oidc_codes SET used_at = $2 WHERE sign_in_id = $1 AND used_at IS NULL";
const PRODUCTS_OF_SIGN_IN: &str = "SELECT DISTINCT client_id FROM oidc_codes WHERE sign_in_id = $1";

/// Ends the product grants of one browser sign-in: its tokens are revoked and its unused codes
/// burnt. Returns the products that received a code in it (they hold its `sid`).
pub async fn end_sign_in(
    tx: &mut Tx,
    sign_in_id: &str,
    now: i64,
) -> Result<Vec<String>, sqlx::Error> {
    for sql in [REVOKE_SIGN_IN, BURN_SIGN_IN_CODES] {
        sqlx::query(sql)
            .bind(sign_in_id.to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    let rows = sqlx::query(PRODUCTS_OF_SIGN_IN)
        .bind(sign_in_id.to_string())
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(|r| r.try_get("client_id")).collect()
}

const DELETE_OLD_REQUESTS: &str = "DELETE FROM oidc_requests WHERE expires_at <= $1";
const DELETE_OLD_CODES: &str = "DELETE FROM oidc_codes WHERE grant_expires_at <= $1";
const DELETE_OLD_TOKENS: &str = "DELETE FROM oidc_tokens WHERE expires_at <= $1";

/// Removes parked requests, codes and tokens that can no longer be used.
pub async fn delete_expired(tx: &mut Tx, now: i64) -> Result<(), sqlx::Error> {
    for sql in [DELETE_OLD_TOKENS, DELETE_OLD_CODES, DELETE_OLD_REQUESTS] {
        sqlx::query(sql).bind(now).execute(&mut **tx).await?;
    }
    Ok(())
}
