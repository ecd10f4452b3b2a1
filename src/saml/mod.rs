//! SAML 2.0 single sign-on: this server is the service provider for each organization's IdP
//! connections. Only this module imports samael. Connections are created from IdP metadata
//! (pasted or fetched), sign-in starts at a connection's login URL, and the ACS admits a
//! response only when every check of DESIGN.md rule 3 holds (see `acs`).

pub mod acs;
pub mod acs_grant;
pub mod acs_page;
pub mod acs_result;
pub mod admin;
pub mod admit;
pub mod api;
pub mod assertion;
pub mod cache;
pub mod cert_hold;
pub mod cpu;
pub mod decrypt;
pub mod dsig_policy;
pub mod fetch;
pub mod form;
pub mod hold_pages;
pub mod idp_keys;
pub mod jobs;
pub mod keys;
pub mod mapping;
pub mod metadata;
pub mod mock_idp;
pub mod mock_idp_mint;
pub mod mock_idp_server;
pub mod mock_idp_slo;
pub mod outline;
pub mod pages;
pub mod settings;
pub mod sign_ins;
pub mod slo;
pub mod slo_store;
pub mod sp;
pub mod store;
pub mod xml;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditAction, Target};
use crate::db::{Db, Tx};
use crate::ids::{OrgId, SamlConnectionId};
use crate::orgs::AdminScope;
use crate::web::error::AppError;
use metadata::{Certificate, IdpMetadata, MetadataError};
pub use settings::{ConnectionSettings, DEFAULT_SKEW_SECONDS, MAX_SKEW_SECONDS, SettingsChange};

/// One IdP connection of an organization.
#[derive(Clone, Debug)]
pub struct Connection {
    pub id: SamlConnectionId,
    pub org_id: OrgId,
    pub name: String,
    pub idp_entity_id: String,
    pub sso_redirect_url: Option<String>,
    pub sso_post_url: Option<String>,
    /// The IdP's SingleLogoutService (HTTP-Redirect); `None`: the IdP does not do Single Logout.
    pub slo_url: Option<String>,
    /// Where LogoutResponses go when the IdP names a separate ResponseLocation.
    pub slo_response_url: Option<String>,
    pub certificates: Vec<Certificate>,
    pub want_authn_requests_signed: bool,
    pub metadata_xml: String,
    pub metadata_url: Option<String>,
    pub metadata_fetched_at: Option<i64>,
    pub metadata_error: Option<String>,
    pub settings: ConnectionSettings,
    /// Certificate fingerprint → expiry warnings already sent (days before: 30, 7).
    pub expiry_warnings: BTreeMap<String, Vec<i64>>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The SP-side addresses of a connection.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SpUrls {
    pub sp_entity_id: String,
    pub acs_url: String,
    pub sp_metadata_url: String,
    pub login_url: String,
    /// The SP's SingleLogoutService (HTTP-Redirect and HTTP-POST).
    pub sp_slo_url: String,
}

impl Connection {
    /// The addresses an IdP admin enters, derived from the base URL.
    pub fn sp_urls(&self, base_url: &str) -> SpUrls {
        sp_urls(base_url, self.id)
    }

    /// Where AuthnRequests go (HTTP-Redirect).
    pub fn sso_url(&self) -> Option<&str> {
        self.sso_redirect_url
            .as_deref()
            .or(self.sso_post_url.as_deref())
    }

    /// Whether this connection routes `domain` (among the org's verified domains).
    pub fn routes(&self, domain: &str) -> bool {
        match &self.settings.domains {
            Some(list) => list.iter().any(|d| d.eq_ignore_ascii_case(domain)),
            None => true,
        }
    }
}

/// The SP-side addresses for connection `id`.
pub fn sp_urls(base_url: &str, id: SamlConnectionId) -> SpUrls {
    SpUrls {
        sp_entity_id: format!("{base_url}/sso/{id}/metadata"),
        acs_url: format!("{base_url}/sso/{id}/acs"),
        sp_metadata_url: format!("{base_url}/sso/{id}/metadata"),
        login_url: format!("{base_url}/sso/{id}/login"),
        sp_slo_url: format!("{base_url}/sso/{id}/slo"),
    }
}

/// What can go wrong when administering connections.
#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("the metadata could not be fetched: {0}")]
    Fetch(String),
    #[error("the metadata URL was refused: {0}")]
    UrlRefused(String),
    #[error("{0}")]
    InvalidSetting(String),
    #[error("{0} is not a verified domain of this organization")]
    DomainNotVerified(String),
    #[error("no SSO connection with this id belongs to this organization")]
    NotFound,
    #[error("this organization already has a connection to the IdP {0}")]
    DuplicateEntity(String),
    #[error("no certificate change of this connection waits for a decision")]
    NothingHeld,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
}

/// How SamlError reaches the user: client mistakes are 4xx with a stable code, the rest 5xx.
impl From<SamlError> for AppError {
    fn from(err: SamlError) -> AppError {
        use SamlError as E;
        use axum::http::StatusCode as S;
        let message = err.to_string();
        let (status, code) = match err {
            E::Db(inner) => return inner.into(),
            E::Mail(inner) => return inner.into(),
            E::Metadata(_) => (S::BAD_REQUEST, "invalid_metadata"),
            E::Fetch(_) => (S::BAD_GATEWAY, "metadata_fetch_failed"),
            E::UrlRefused(_) => (S::BAD_REQUEST, "metadata_url_refused"),
            E::InvalidSetting(_) => (S::BAD_REQUEST, "invalid_setting"),
            E::DomainNotVerified(_) => (S::BAD_REQUEST, "domain_not_verified"),
            E::NotFound => (S::NOT_FOUND, "not_found"),
            E::DuplicateEntity(_) => (S::CONFLICT, "duplicate_connection"),
            E::NothingHeld => (S::CONFLICT, "no_certificate_change"),
        };
        AppError::client(status, code, message)
    }
}

/// A new connection: metadata (XML or URL) plus optional settings.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct NewConnection {
    pub metadata_xml: Option<String>,
    pub metadata_url: Option<String>,
    /// Which IdP to use when the metadata describes several.
    pub entity_id: Option<String>,
    pub name: Option<String>,
    #[serde(flatten)]
    pub settings: SettingsChange,
}

/// Reads the metadata of a new or refreshed connection (fetching it when given a URL; `dev`,
/// development mode, also allows http and private addresses, see [`fetch`]).
pub async fn load_metadata(
    xml: Option<&str>,
    url: Option<&str>,
    entity_id: Option<&str>,
    dev: bool,
) -> Result<(IdpMetadata, String), SamlError> {
    let xml = match (
        xml.filter(|x| !x.trim().is_empty()),
        url.filter(|u| !u.trim().is_empty()),
    ) {
        (Some(xml), _) => xml.to_string(),
        (None, Some(url)) => fetch::metadata(url, dev).await?,
        (None, None) => {
            return Err(SamlError::InvalidSetting(
                "give the IdP metadata: metadata_xml or metadata_url".into(),
            ));
        }
    };
    Ok((metadata::parse(&xml, entity_id)?, xml))
}

/// Creates a connection from already-loaded metadata.
pub async fn create(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    new: &NewConnection,
    meta: IdpMetadata,
    xml: String,
) -> Result<Connection, SamlError> {
    let org = scope.org().id;
    let defaults = ConnectionSettings::defaults(meta.want_authn_requests_signed);
    let settings = new.settings.apply(tx, org, defaults).await?;
    let name = new
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(&meta.entity_id)
        .chars()
        .take(100)
        .collect();
    let url = new
        .metadata_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    let connection = Connection {
        id: SamlConnectionId::new(),
        org_id: org,
        name,
        idp_entity_id: meta.entity_id.clone(),
        sso_redirect_url: meta.sso_redirect.clone(),
        sso_post_url: meta.sso_post.clone(),
        slo_url: meta.slo_redirect.clone(),
        slo_response_url: meta.slo_response.clone(),
        certificates: meta.certificates.clone(),
        want_authn_requests_signed: meta.want_authn_requests_signed,
        metadata_xml: xml,
        metadata_fetched_at: url.as_ref().map(|_| now),
        metadata_url: url,
        metadata_error: None,
        settings,
        expiry_warnings: BTreeMap::new(),
        created_at: now,
        updated_at: now,
    };
    let next_refresh = connection
        .metadata_url
        .as_ref()
        .map(|_| now + fetch::REFRESH_MS);
    store::insert(tx, &connection, next_refresh)
        .await
        .map_err(|e| {
            if crate::db::is_unique_violation(&e) {
                SamlError::DuplicateEntity(meta.entity_id.clone())
            } else {
                e.into()
            }
        })?;
    scope
        .audit(
            tx,
            now,
            AuditAction::SamlConnectionCreated,
            Target { kind: "saml_connection", id: connection.id.to_string() },
            serde_json::json!({
                "idp_entity_id": connection.idp_entity_id,
                "certificates": connection.certificates.iter().map(|c| &c.fingerprint).collect::<Vec<_>>(),
                "metadata_url": connection.metadata_url,
            }),
        )
        .await?;
    Ok(connection)
}

/// The connection `id` of this org.
pub async fn get(tx: &mut Tx, org: OrgId, id: SamlConnectionId) -> Result<Connection, SamlError> {
    match store::by_id(&mut **tx, id).await? {
        Some(c) if c.org_id == org => Ok(c),
        _ => Err(SamlError::NotFound),
    }
}

/// Changes settings (and, with new metadata, the IdP's endpoints and certificates).
pub async fn update(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: SamlConnectionId,
    name: Option<&str>,
    change: &SettingsChange,
    metadata: Option<(IdpMetadata, String, Option<String>)>,
) -> Result<Connection, SamlError> {
    let mut connection = get(tx, scope.org().id, id).await?;
    let before = connection.clone();
    connection.settings = change
        .apply(tx, scope.org().id, connection.settings.clone())
        .await?;
    if let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) {
        connection.name = name.chars().take(100).collect();
    }
    if let Some((meta, xml, url)) = metadata {
        apply_metadata(&mut connection, meta, xml, now);
        if url.is_some() {
            connection.metadata_url = url;
        }
    }
    connection.updated_at = now;
    store::update(tx, &connection).await.map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            SamlError::DuplicateEntity(connection.idp_entity_id.clone())
        } else {
            e.into()
        }
    })?;
    scope
        .audit(
            tx,
            now,
            AuditAction::SamlConnectionUpdated,
            Target { kind: "saml_connection", id: id.to_string() },
            serde_json::json!({ "from": before.settings, "to": connection.settings, "certificates_changed": before.certificates != connection.certificates }),
        )
        .await?;
    Ok(connection)
}

/// Replaces the IdP facts of `connection` with freshly read metadata.
pub fn apply_metadata(connection: &mut Connection, meta: IdpMetadata, xml: String, now: i64) {
    connection.idp_entity_id = meta.entity_id;
    connection.sso_redirect_url = meta.sso_redirect;
    connection.sso_post_url = meta.sso_post;
    connection.slo_url = meta.slo_redirect;
    connection.slo_response_url = meta.slo_response;
    connection.certificates = meta.certificates;
    connection.want_authn_requests_signed = meta.want_authn_requests_signed;
    connection.metadata_xml = xml;
    connection.metadata_fetched_at = Some(now);
    connection.metadata_error = None;
}

/// Deletes a connection: sign-in through it stops at once.
pub async fn delete(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: SamlConnectionId,
) -> Result<(), SamlError> {
    let connection = get(tx, scope.org().id, id).await?;
    store::delete(tx, id).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::SamlConnectionDeleted,
            Target {
                kind: "saml_connection",
                id: id.to_string(),
            },
            serde_json::json!({ "idp_entity_id": connection.idp_entity_id }),
        )
        .await?;
    Ok(())
}

/// Where an SSO sign-in starts for a work email or an organization ID.
#[derive(Clone, Debug)]
pub struct SsoRoute {
    pub org_id: OrgId,
    /// The connection's login URL on this server (for an email, with `?login_hint=<email>`, which
    /// the IdP is handed to fill its sign-in form); add `return_to=<local path>` to come back to
    /// that path after a successful sign-in.
    pub login_url: String,
}

/// The organization's IdP connections, oldest first.
pub async fn connections_of<'c>(
    exec: impl sqlx::Executor<'c, Database = sqlx::Any>,
    org: OrgId,
) -> Result<Vec<Connection>, sqlx::Error> {
    store::of_org(exec, org).await
}

/// The SSO route for `identifier` (a work email or an organization ID): the first connection
/// (oldest) of the org that verified the email's domain and routes it, or of the org with that
/// ID; `None` when no connection applies.
pub async fn sso_start_for(
    db: &Db,
    base_url: &str,
    identifier: &str,
) -> Result<Option<SsoRoute>, sqlx::Error> {
    let identifier = identifier.trim().to_ascii_lowercase();
    let (org, domain) = match identifier.rsplit_once('@') {
        Some((_, domain)) => match store::org_of_verified_domain(db.pool(), domain).await? {
            Some(org) => (org, Some(domain.to_string())),
            None => return Ok(None),
        },
        None => match crate::orgs::store::by_slug(db.pool(), &identifier).await? {
            Some(org) => (org.id, None),
            None => return Ok(None),
        },
    };
    let connections = store::of_org(db.pool(), org).await?;
    let chosen = connections
        .into_iter()
        .find(|c| domain.as_deref().is_none_or(|d| c.routes(d)));
    Ok(chosen.map(|c| {
        let mut login_url = c.sp_urls(base_url).login_url;
        if domain.is_some() {
            login_url.push_str("?login_hint=");
            login_url.extend(url::form_urlencoded::byte_serialize(identifier.as_bytes()));
        }
        SsoRoute {
            org_id: org,
            login_url,
        }
    }))
}
