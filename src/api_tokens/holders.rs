//! Tokens die with their creator's rights: when an admin is demoted, removed, leaves, is
//! suspended or deleted, or migrates away from an organization, every token that admin created
//! there is revoked, each with an `api_token.revoked` event naming why. It sits below `orgs` in
//! the layer order so that every path that ends an admin's rights can call it in its own
//! transaction.

use super::store;
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::db::Tx;
use crate::ids::{AccountId, OrgId};

/// What happened to the admin who created the tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Demoted,
    Removed,
    Left,
    Suspended,
    Deleted,
    Migrated,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Demoted => "creator_demoted",
            Reason::Removed => "creator_removed",
            Reason::Left => "creator_left",
            Reason::Suspended => "creator_suspended",
            Reason::Deleted => "creator_deleted",
            Reason::Migrated => "creator_migrated",
        }
    }
}

/// Who made the change that ends the admin's rights, and from where.
pub struct ChangedBy<'a> {
    pub actor: &'a Actor,
    pub meta: &'a RequestMeta,
}

/// Revokes every unrevoked token `account` created in `org` (in every organization when `None`),
/// recording one `api_token.revoked` event per token in the token's organization. Returns how
/// many were revoked.
pub async fn revoke_held_by(
    tx: &mut Tx,
    now: i64,
    account: AccountId,
    org: Option<OrgId>,
    reason: Reason,
    by: ChangedBy<'_>,
) -> Result<usize, sqlx::Error> {
    let tokens = store::held_by(tx, account, org).await?;
    for token in &tokens {
        store::revoke(tx, token.id, now, reason.as_str()).await?;
        audit::record(
            tx,
            now,
            audit::Event {
                org_id: Some(token.org_id),
                action: AuditAction::ApiTokenRevoked,
                actor: by.actor,
                target: Some(Target::api_token(token.id)),
                meta: by.meta,
                details: serde_json::json!({
                    "name": token.name, "prefix": token.prefix,
                    "reason": reason.as_str(), "created_by": account.to_string(),
                }),
            },
        )
        .await?;
    }
    Ok(tokens.len())
}
