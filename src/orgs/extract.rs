//! [`OrgAdmin`]: the proof that a signed-in account administers the organization in the path.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tower_sessions::Session;

use super::{AdminScope, Role};
use crate::AppState;
use crate::accounts::Account;
use crate::accounts::session::SignedIn;
use crate::web::error::AppError;
use crate::web::extract::{meta_of, org_slug};

/// A signed-in admin of the organization in the path, admitted by the organization's sign-in
/// policies ([`super::gate`]). Non-members get 404 (the page does not say whether the
/// organization exists); members who are not admins get 403.
pub struct OrgAdmin {
    pub scope: AdminScope,
    pub account: Account,
    pub session: Session,
}

impl FromRequestParts<AppState> for OrgAdmin {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let signed_in = SignedIn::from_request_parts(parts, state).await?;
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let not_found =
            || AppError::not_found("There is no organization with this ID that you administer.");
        let slug = org_slug(parts, state).await.ok_or_else(not_found)?;
        let org = super::store::by_slug(state.db.pool(), &slug)
            .await?
            .ok_or_else(not_found)?;
        match super::store::role_of(state.db.pool(), org.id, signed_in.account.id).await? {
            Some(Role::Admin) => {
                let meta = meta_of(parts);
                let (account, session) = (signed_in.account, signed_in.session);
                super::gate::admit_admin(state, &session, &account, &org, &meta, &next).await?;
                Ok(OrgAdmin {
                    scope: AdminScope::grant(org, account.actor(), meta),
                    account,
                    session,
                })
            }
            Some(Role::Member) => Err(AppError::forbidden(
                "Only admins of this organization can open its admin pages.",
            )),
            None => Err(not_found()),
        }
    }
}
