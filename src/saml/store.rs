//! SQL of SAML connections, pending AuthnRequests and the replay cache.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::metadata::Certificate;
use super::{Connection, ConnectionSettings};
use crate::db::{Batch, Dialect, DialectSql, Tx, flag, skip_locked};
use crate::ids::{OrgId, SamlConnectionId};

pub(super) fn bad(col: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: format!("unexpected {col}").into(),
    }
}

const COLUMNS: &str = "id, org_id, name, idp_entity_id, sso_redirect_url, sso_post_url, certificates, \
     want_authn_requests_signed, metadata_xml, metadata_url, metadata_fetched_at, metadata_error, \
     email_attribute, allow_idp_initiated, sign_authn_requests, require_signed_assertions, allow_sha1, \
     clock_skew_seconds, domains, expiry_warnings, created_at, updated_at, name_attribute, \
     given_name_attribute, family_name_attribute, require_encrypted_assertions, slo_url, slo_response_url";

fn from_row(row: &AnyRow) -> Result<Connection, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let org: String = row.try_get("org_id")?;
    let certs: String = row.try_get("certificates")?;
    let domains: Option<String> = row.try_get("domains")?;
    let warnings: String = row.try_get("expiry_warnings")?;
    let yes = |col: &str| -> Result<bool, sqlx::Error> { Ok(row.try_get::<i64, _>(col)? != 0) };
    Ok(Connection {
        id: SamlConnectionId::parse(&id).ok_or_else(|| bad("id"))?,
        org_id: OrgId::parse(&org).ok_or_else(|| bad("org_id"))?,
        name: row.try_get("name")?,
        idp_entity_id: row.try_get("idp_entity_id")?,
        sso_redirect_url: row.try_get("sso_redirect_url")?,
        sso_post_url: row.try_get("sso_post_url")?,
        slo_url: row.try_get("slo_url")?,
        slo_response_url: row.try_get("slo_response_url")?,
        certificates: serde_json::from_str::<Vec<Certificate>>(&certs)
            .map_err(|_| bad("certificates"))?,
        want_authn_requests_signed: yes("want_authn_requests_signed")?,
        metadata_xml: row.try_get("metadata_xml")?,
        metadata_url: row.try_get("metadata_url")?,
        metadata_fetched_at: row.try_get("metadata_fetched_at")?,
        metadata_error: row.try_get("metadata_error")?,
        settings: ConnectionSettings {
            email_attribute: row.try_get("email_attribute")?,
            allow_idp_initiated: yes("allow_idp_initiated")?,
            sign_authn_requests: yes("sign_authn_requests")?,
            require_signed_assertions: yes("require_signed_assertions")?,
            allow_sha1: yes("allow_sha1")?,
            clock_skew_seconds: row.try_get("clock_skew_seconds")?,
            domains: match domains {
                Some(raw) => Some(serde_json::from_str(&raw).map_err(|_| bad("domains"))?),
                None => None,
            },
            name_attribute: row.try_get("name_attribute")?,
            given_name_attribute: row.try_get("given_name_attribute")?,
            family_name_attribute: row.try_get("family_name_attribute")?,
            require_encrypted_assertions: yes("require_encrypted_assertions")?,
        },
        expiry_warnings: serde_json::from_str(&warnings).map_err(|_| bad("expiry_warnings"))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

// INSERT and UPDATE share $1..$26 in the order `bind_fields` binds them.
const INSERT: &str = "INSERT INTO saml_connections (id, name, idp_entity_id, sso_redirect_url, \
     sso_post_url, certificates, want_authn_requests_signed, metadata_xml, metadata_url, metadata_fetched_at, \
     metadata_error, email_attribute, allow_idp_initiated, sign_authn_requests, require_signed_assertions, \
     allow_sha1, clock_skew_seconds, domains, expiry_warnings, updated_at, name_attribute, given_name_attribute, \
     family_name_attribute, require_encrypted_assertions, slo_url, slo_response_url, org_id, created_at, \
     next_refresh_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)";

const UPDATE: &str = "UPDATE saml_connections SET name = $2, idp_entity_id = $3, sso_redirect_url = $4, \
     sso_post_url = $5, certificates = $6, want_authn_requests_signed = $7, metadata_xml = $8, metadata_url = $9, \
     metadata_fetched_at = $10, metadata_error = $11, email_attribute = $12, allow_idp_initiated = $13, \
     sign_authn_requests = $14, require_signed_assertions = $15, allow_sha1 = $16, clock_skew_seconds = $17, \
     domains = $18, expiry_warnings = $19, updated_at = $20, name_attribute = $21, given_name_attribute = $22, \
     family_name_attribute = $23, require_encrypted_assertions = $24, slo_url = $25, \
     slo_response_url = $26 WHERE id = $1";

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

fn bind_fields<'q>(query: AnyQuery<'q>, c: &Connection) -> AnyQuery<'q> {
    query
        .bind(c.id.to_string())
        .bind(c.name.clone())
        .bind(c.idp_entity_id.clone())
        .bind(c.sso_redirect_url.clone())
        .bind(c.sso_post_url.clone())
        .bind(serde_json::to_string(&c.certificates).unwrap_or_else(|_| "[]".into()))
        .bind(flag(c.want_authn_requests_signed))
        .bind(c.metadata_xml.clone())
        .bind(c.metadata_url.clone())
        .bind(c.metadata_fetched_at)
        .bind(c.metadata_error.clone())
        .bind(c.settings.email_attribute.clone())
        .bind(flag(c.settings.allow_idp_initiated))
        .bind(flag(c.settings.sign_authn_requests))
        .bind(flag(c.settings.require_signed_assertions))
        .bind(flag(c.settings.allow_sha1))
        .bind(c.settings.clock_skew_seconds)
        .bind(
            c.settings
                .domains
                .as_ref()
                .map(|d| serde_json::to_string(d).unwrap_or_else(|_| "[]".into())),
        )
        .bind(serde_json::to_string(&c.expiry_warnings).unwrap_or_else(|_| "{}".into()))
        .bind(c.updated_at)
        .bind(c.settings.name_attribute.clone())
        .bind(c.settings.given_name_attribute.clone())
        .bind(c.settings.family_name_attribute.clone())
        .bind(flag(c.settings.require_encrypted_assertions))
        .bind(c.slo_url.clone())
        .bind(c.slo_response_url.clone())
}

pub(super) async fn insert(
    tx: &mut Tx,
    c: &Connection,
    next_refresh_at: Option<i64>,
) -> Result<(), sqlx::Error> {
    bind_fields(sqlx::query(INSERT), c)
        .bind(c.org_id.to_string())
        .bind(c.created_at)
        .bind(next_refresh_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes every field of `c` back.
pub(super) async fn update(tx: &mut Tx, c: &Connection) -> Result<(), sqlx::Error> {
    bind_fields(sqlx::query(UPDATE), c)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One connection by id.
pub async fn by_id<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: SamlConnectionId,
) -> Result<Option<Connection>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM saml_connections WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The version of connection `id` (raised by every change of its row): `$1` its id, no row when
/// it is gone.
pub const VERSION: &str = "SELECT version FROM saml_connections WHERE id = $1";

/// One connection by id with its version, read in the same statement.
pub async fn by_id_versioned<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: SamlConnectionId,
) -> Result<Option<(i64, Connection)>, sqlx::Error> {
    let sql = format!("SELECT version, {COLUMNS} FROM saml_connections WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref()
        .map(|r| Ok((r.try_get("version")?, from_row(r)?)))
        .transpose()
}

/// Every connection of an organization, oldest first.
pub async fn of_org<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<Vec<Connection>, sqlx::Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM saml_connections WHERE org_id = $1 ORDER BY created_at, id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.to_string())
        .fetch_all(exec)
        .await?;
    rows.iter().map(from_row).collect()
}

const DELETE: &str = "DELETE FROM saml_connections WHERE id = $1";
const DELETE_REQUESTS: &str = "DELETE FROM saml_requests WHERE connection_id = $1";
const DELETE_HOLD: &str = "DELETE FROM saml_certificate_holds WHERE connection_id = $1";

pub(super) async fn delete(tx: &mut Tx, id: SamlConnectionId) -> Result<(), sqlx::Error> {
    for sql in [DELETE_REQUESTS, DELETE_HOLD] {
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(DELETE)
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A pending AuthnRequest.
#[derive(Clone, Debug)]
pub struct PendingRequest {
    pub id: String,
    pub connection_id: String,
    pub binding_hash: String,
    pub return_to: String,
    pub is_test: bool,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

const INSERT_REQUEST: &str = "INSERT INTO saml_requests (id, connection_id, binding_hash, relay_token, \
     return_to, is_test, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_request(
    pool: &sqlx::AnyPool,
    id: &str,
    connection: SamlConnectionId,
    binding_hash: &str,
    relay_token: &str,
    return_to: &str,
    is_test: bool,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_REQUEST)
        .bind(id.to_string())
        .bind(connection.to_string())
        .bind(binding_hash.to_string())
        .bind(relay_token.to_string())
        .bind(return_to.to_string())
        .bind(flag(is_test))
        .bind(now)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

const REQUEST: &str = "SELECT id, connection_id, binding_hash, return_to, is_test, expires_at, used_at \
     FROM saml_requests WHERE id = $1";

/// A request by its AuthnRequest ID.
pub(super) async fn request<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<PendingRequest>, sqlx::Error> {
    let row = sqlx::query(REQUEST)
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(PendingRequest {
        id: row.try_get("id")?,
        connection_id: row.try_get("connection_id")?,
        binding_hash: row.try_get("binding_hash")?,
        return_to: row.try_get("return_to")?,
        is_test: row.try_get::<i64, _>("is_test")? != 0,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
    }))
}

const USE_REQUEST: &str = "UPDATE saml_requests SET used_at = $2 WHERE id = $1 AND used_at IS NULL";

/// Marks a request used, as a statement of `batch`: it changes no row when the request already
/// was (a second response to one request).
pub(super) fn use_request_in(batch: &mut Batch, id: &str, now: i64) -> usize {
    batch.push(USE_REQUEST, vec![id.into(), now.into()])
}

const REMEMBER: &str =
    "INSERT INTO saml_replay (idp_entity_id, message_id, expires_at) VALUES ($1, $2, $3)";
const REMEMBER_TWO: &str = "INSERT INTO saml_replay (idp_entity_id, message_id, expires_at) \
     VALUES ($1, $2, $4), ($1, $3, $4)";

/// [`remember`] as a statement of `batch` whose outcome is not read ([`Batch::push_unread`]):
/// an ID already remembered fails it, and the batch, with a unique violation.
pub(super) fn remember_in(
    batch: &mut Batch,
    idp: &str,
    assertion_id: &str,
    response_id: Option<&str>,
    expires_at: i64,
) {
    match response_id {
        Some(response_id) => batch.push_unread(
            REMEMBER_TWO,
            vec![
                idp.into(),
                assertion_id.into(),
                response_id.into(),
                expires_at.into(),
            ],
        ),
        None => batch.push_unread(
            REMEMBER,
            vec![idp.into(), assertion_id.into(), expires_at.into()],
        ),
    }
}

/// Records the `[idp_entity_id, message_id, expires_at]` rows of the JSON array `$1` in one
/// statement, skipping IDs seen before (or named twice): the rows are the IDs it recorded.
static REMEMBER_ALL: DialectSql = DialectSql::new(|d| {
    format!(
        "INSERT INTO saml_replay (idp_entity_id, message_id, expires_at) \
         SELECT c0, c1, c2 FROM ({}) AS r WHERE true ON CONFLICT DO NOTHING \
         RETURNING idp_entity_id, message_id",
        crate::db::json_rows(d, "$1", 3, &[2])
    )
});

/// An ID of the replay cache: the issuer's entity ID and the message's ID.
pub(super) type ReplayKey = (String, String);

/// [`remember_in`] for many IDs, each to keep until its time, in one statement of `batch` that
/// skips those seen before: read which it recorded with [`remembered`].
pub(super) fn remember_all_in(
    batch: &mut Batch,
    dialect: Dialect,
    ids: &[(&ReplayKey, i64)],
) -> usize {
    let list: Vec<serde_json::Value> = ids
        .iter()
        .map(|((idp, id), until)| serde_json::json!([idp, id, until]))
        .collect();
    let list = serde_json::Value::from(list).to_string();
    batch.push(REMEMBER_ALL.get(dialect), vec![list.into()])
}

/// The IDs [`remember_all_in`]'s statement recorded.
pub(super) fn remembered(
    outcome: &crate::db::Outcome,
) -> Result<std::collections::HashSet<ReplayKey>, sqlx::Error> {
    outcome
        .rows
        .iter()
        .map(|row| Ok((row.try_get("idp_entity_id")?, row.try_get("message_id")?)))
        .collect()
}

const FORGET: &str = "DELETE FROM saml_replay WHERE idp_entity_id = $1 AND message_id = $2";

/// Forgets IDs, in statements of `batch` whose outcomes are not read (one an ID: rare, and each
/// found by the primary key).
pub(super) fn forget_all_in<'k>(batch: &mut Batch, ids: impl IntoIterator<Item = &'k ReplayKey>) {
    for (idp, id) in ids {
        batch.push_unread(FORGET, vec![idp.as_str().into(), id.as_str().into()]);
    }
}

/// Records the accepted message IDs (an assertion's, and its response's when it has one) in
/// one statement; a unique violation means one of them was seen before.
pub(super) async fn remember(
    tx: &mut Tx,
    idp: &str,
    assertion_id: &str,
    response_id: Option<&str>,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    let query = match response_id {
        Some(response_id) => sqlx::query(REMEMBER_TWO)
            .bind(idp.to_string())
            .bind(assertion_id.to_string())
            .bind(response_id.to_string()),
        None => sqlx::query(REMEMBER)
            .bind(idp.to_string())
            .bind(assertion_id.to_string()),
    };
    query.bind(expires_at).execute(&mut **tx).await?;
    Ok(())
}

const PURGE_REPLAY: &str = "DELETE FROM saml_replay WHERE expires_at < $1";
const PURGE_REQUESTS: &str = "DELETE FROM saml_requests WHERE expires_at < $1";

/// Forgets expired requests and replay entries.
pub async fn purge(pool: &sqlx::AnyPool, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(PURGE_REPLAY).bind(now).execute(pool).await?;
    sqlx::query(PURGE_REQUESTS)
        .bind(now - 24 * 3600 * 1000)
        .execute(pool)
        .await?;
    Ok(())
}

/// Claims connections whose metadata URL is due for a refresh.
pub async fn claim_refresh(
    pool: &sqlx::AnyPool,
    dialect: Dialect,
    now: i64,
    lease_ms: i64,
) -> Result<Vec<Connection>, sqlx::Error> {
    let sql = format!(
        "UPDATE saml_connections SET claimed_until = $1 WHERE id IN (SELECT id FROM saml_connections \
         WHERE metadata_url IS NOT NULL AND next_refresh_at <= $2 AND (claimed_until IS NULL OR claimed_until < $2) \
         ORDER BY next_refresh_at LIMIT 20{}) RETURNING {COLUMNS}",
        skip_locked(dialect)
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now + lease_ms)
        .bind(now)
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

const SET_NEXT_REFRESH: &str =
    "UPDATE saml_connections SET next_refresh_at = $2, claimed_until = NULL WHERE id = $1";

pub(super) async fn set_next_refresh(
    tx: &mut Tx,
    id: SamlConnectionId,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_NEXT_REFRESH)
        .bind(id.to_string())
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const ALL: &str = "SELECT id FROM saml_connections ORDER BY id";

/// Ids of every connection (certificate-expiry checks).
pub async fn all_ids(pool: &sqlx::AnyPool) -> Result<Vec<SamlConnectionId>, sqlx::Error> {
    let rows = sqlx::query(ALL).fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            SamlConnectionId::parse(&id).ok_or_else(|| bad("id"))
        })
        .collect()
}

const ORG_OF_DOMAIN: &str = "SELECT org_id FROM domains WHERE domain = $1 AND status = 'verified'";

/// The org that has verified `domain`, if any.
pub async fn org_of_verified_domain(
    pool: &sqlx::AnyPool,
    domain: &str,
) -> Result<Option<OrgId>, sqlx::Error> {
    let row = sqlx::query(ORG_OF_DOMAIN)
        .bind(domain.to_string())
        .fetch_optional(pool)
        .await?;
    match row {
        Some(row) => {
            let id: String = row.try_get("org_id")?;
            Ok(OrgId::parse(&id))
        }
        None => Ok(None),
    }
}

const HOLD_COLUMNS: &str = "connection_id, certificates, status, found_at";

fn hold_from_row(row: &AnyRow) -> Result<super::cert_hold::Hold, sqlx::Error> {
    let id: String = row.try_get("connection_id")?;
    let certs: String = row.try_get("certificates")?;
    let status: String = row.try_get("status")?;
    Ok(super::cert_hold::Hold {
        connection_id: SamlConnectionId::parse(&id).ok_or_else(|| bad("connection_id"))?,
        certificates: serde_json::from_str(&certs).map_err(|_| bad("certificates"))?,
        pending: status == "pending",
        found_at: row.try_get("found_at")?,
    })
}

/// The held certificate change of a connection, pending or rejected.
pub(super) async fn hold_of<'c>(
    ex: impl Executor<'c, Database = Any>,
    id: SamlConnectionId,
) -> Result<Option<super::cert_hold::Hold>, sqlx::Error> {
    let sql = format!("SELECT {HOLD_COLUMNS} FROM saml_certificate_holds WHERE connection_id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(ex)
        .await?
        .map(|row| hold_from_row(&row))
        .transpose()
}

/// The held certificate changes of an organization's connections.
pub async fn holds_of_org(
    pool: &sqlx::AnyPool,
    org: OrgId,
) -> Result<Vec<super::cert_hold::Hold>, sqlx::Error> {
    let sql = format!("SELECT {HOLD_COLUMNS} FROM saml_certificate_holds WHERE org_id = $1");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.to_string())
        .fetch_all(pool)
        .await?;
    rows.iter().map(hold_from_row).collect()
}

const PUT_HOLD: &str = "INSERT INTO saml_certificate_holds (connection_id, org_id, metadata_xml, \
     certificates, status, found_at) VALUES ($1, $2, $3, $4, 'pending', $5) \
     ON CONFLICT (connection_id) DO UPDATE SET metadata_xml = excluded.metadata_xml, \
     certificates = excluded.certificates, status = 'pending', found_at = excluded.found_at, \
     decided_at = NULL";

/// Holds new metadata for a connection (replacing an older hold).
pub(super) async fn put_hold(
    tx: &mut Tx,
    connection: &Connection,
    xml: &str,
    certs: &[Certificate],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(PUT_HOLD)
        .bind(connection.id.to_string())
        .bind(connection.org_id.to_string())
        .bind(xml.to_string())
        .bind(serde_json::to_string(certs).unwrap_or_else(|_| "[]".into()))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const TAKE_HOLD: &str = "DELETE FROM saml_certificate_holds WHERE connection_id = $1 \
     AND status = 'pending' RETURNING metadata_xml";

/// Removes a pending hold and returns its metadata (`None`: nothing pending).
pub(super) async fn take_pending_hold(
    tx: &mut Tx,
    id: SamlConnectionId,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as(TAKE_HOLD)
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|(xml,)| xml))
}

const REJECT_HOLD: &str = "UPDATE saml_certificate_holds SET status = 'rejected', decided_at = $2 \
     WHERE connection_id = $1 AND status = 'pending' RETURNING certificates";

/// Marks a pending hold rejected and returns its certificates (`None`: nothing pending).
pub(super) async fn reject_pending_hold(
    tx: &mut Tx,
    id: SamlConnectionId,
    now: i64,
) -> Result<Option<Vec<Certificate>>, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as(REJECT_HOLD)
        .bind(id.to_string())
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|(certs,)| serde_json::from_str(&certs).map_err(|_| bad("certificates")))
        .transpose()
}
