//! SAML 2.0 single sign-on: this server is the service provider for each organization's IdP
//! connections. Only this module imports samael.

use crate::db::Db;
use crate::ids::OrgId;

/// Where an SSO sign-in starts for a work email or an organization ID.
#[derive(Clone, Debug)]
pub struct SsoRoute {
    pub org_id: OrgId,
    /// The connection's login URL on this server; append `?return_to=<local path>` to come
    /// back to that path after a successful sign-in.
    pub login_url: String,
}

/// The SSO route for `identifier` (a work email or an organization ID), when an SSO connection
/// of an organization with that verified domain (or that ID) routes it; `None` otherwise.
pub async fn sso_start_for(_db: &Db, _base_url: &str, _identifier: &str) -> Result<Option<SsoRoute>, sqlx::Error> {
    // Connections arrive with the SAML feature; until then no identifier routes to SSO.
    Ok(None)
}
