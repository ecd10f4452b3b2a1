//! Invitations: how a Nulab account becomes a member. An admin (page or API) invites an email
//! address; the invitation is stored for that address whatever account uses it, so the answer
//! never tells whether an account exists or belongs elsewhere. The invitee gets a link (single
//! use, expiring, stored only as a SHA-256 hash) and sees pending invitations on `/account`;
//! only a signed-in Nulab account whose confirmed email is the invited one can accept. Until
//! then the invitation has no effect at all. The operator CLI adds members directly
//! ([`super::add_member`]), which turns an open invitation into the membership.

pub mod pages;
pub mod store;

use serde::Serialize;

use super::{AdminScope, Member, Org, Role};
use crate::accounts::{self, Account, AccountKind, Email};
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::clock::DAY_MS;
use crate::db::{Db, Tx};
use crate::ids::OrgId;
use crate::mail::{self, Mail, MailAction, MailError};
use crate::paging::Page;
use crate::secrets;
use crate::web::error::AppError;

/// Days an invitation link stays valid (Okta's activation default).
pub const INVITATION_DAYS: i64 = 7;

/// An invitation's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct InvitationId(pub uuid::Uuid);

impl InvitationId {
    pub fn new() -> Self {
        InvitationId(uuid::Uuid::new_v4())
    }
    pub fn parse(raw: &str) -> Option<Self> {
        uuid::Uuid::parse_str(raw.trim()).ok().map(InvitationId)
    }
}

impl Default for InvitationId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for InvitationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Life of an invitation: `pending` (or `expired`, which a resend makes pending again) until
/// it is accepted, declined or revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    Pending,
    Expired,
    Accepted,
    Declined,
    Revoked,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Expired => "expired",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Declined => "declined",
            InvitationStatus::Revoked => "revoked",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        [
            InvitationStatus::Pending,
            InvitationStatus::Expired,
            InvitationStatus::Accepted,
            InvitationStatus::Declined,
            InvitationStatus::Revoked,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// An invitation (times in Unix ms).
#[derive(Clone, Debug)]
pub struct Invitation {
    pub id: InvitationId,
    pub org_id: OrgId,
    pub email: String,
    pub role: Role,
    pub status: InvitationStatus,
    /// Who invited: an admin's email or an API token's name.
    pub invited_by: String,
    pub created_at: i64,
    pub sent_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
}

impl Invitation {
    /// Pending and within its lifetime: it can be accepted or declined.
    pub fn is_live(&self, now: i64) -> bool {
        self.status == InvitationStatus::Pending && self.expires_at > now
    }
    /// Pending or expired: it can be resent or revoked.
    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            InvitationStatus::Pending | InvitationStatus::Expired
        )
    }
}

/// How the member list names an open invitation's state.
pub(crate) fn listed_status(status: InvitationStatus, expires_at: i64, now: i64) -> &'static str {
    if status == InvitationStatus::Pending && expires_at > now {
        "invited"
    } else {
        "invitation_expired"
    }
}

/// An open invitation as the member list shows it: nothing about any account.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InvitedEntry {
    pub invitation_id: String,
    pub email: String,
    pub role: Role,
    /// `invited`, or `invitation_expired` (resend it to renew the link).
    pub status: &'static str,
    pub invited_at: i64,
    pub expires_at: i64,
}

/// One row of the member list: a member, or an open invitation.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Listed {
    Member(Member),
    Invitation(InvitedEntry),
}

/// What can go wrong with invitations, in words the reader can act on.
#[derive(Debug, thiserror::Error)]
pub enum InvitationError {
    #[error("{0} is already a member of this organization")]
    AlreadyMember(String),
    #[error("{0} already has an open invitation: resend it or revoke it")]
    AlreadyInvited(String),
    #[error("no invitation with this id is open for you or this organization")]
    NotFound,
    #[error("this invitation link is not valid; if it was sent again, use the newest email")]
    LinkInvalid,
    #[error("this invitation has expired; ask the organization's admin to send it again")]
    Expired,
    #[error("this invitation was already answered or withdrawn ({})", .0.as_str())]
    Closed(InvitationStatus),
    #[error(
        "this invitation is for {0}; sign in with that address (or sign up with it and confirm it) to answer it"
    )]
    OtherEmail(String),
    #[error("confirm your email address first: only a confirmed address can accept an invitation")]
    EmailNotConfirmed,
    #[error(
        "a managed account belongs to its organization and cannot join another one; use a personal Nulab account"
    )]
    ManagedAccount,
    #[error(transparent)]
    Account(#[from] accounts::AccountError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<InvitationError> for AppError {
    fn from(err: InvitationError) -> AppError {
        use InvitationError as E;
        use axum::http::StatusCode as S;
        let (status, code) = match &err {
            E::AlreadyMember(_) => (S::CONFLICT, "already_member"),
            E::AlreadyInvited(_) => (S::CONFLICT, "already_invited"),
            E::NotFound => (S::NOT_FOUND, "invitation_not_found"),
            E::LinkInvalid => (S::NOT_FOUND, "link_invalid"),
            E::Expired => (S::GONE, "invitation_expired"),
            E::Closed(_) => (S::GONE, "invitation_closed"),
            E::OtherEmail(_) => (S::FORBIDDEN, "other_email"),
            E::EmailNotConfirmed => (S::FORBIDDEN, "email_not_verified"),
            E::ManagedAccount => (S::FORBIDDEN, "managed_account"),
            E::Account(_) => match err {
                E::Account(inner) => return inner.into(),
                _ => unreachable!("matched above"),
            },
            E::Mail(_) | E::Db(_) => return AppError::Internal(err.into()),
        };
        AppError::client(status, code, err.to_string())
    }
}

/// How an inviter is named to the invitee.
fn inviter(actor: &Actor) -> String {
    match actor {
        Actor::Account { email, .. } => email.clone(),
        Actor::ApiToken { name, .. } => {
            format!("An administrator (API token \u{201c}{name}\u{201d})")
        }
        _ => "An administrator".to_string(),
    }
}

/// Invites `email` to the organization as `role`. The same answer whether or not an account
/// uses the address, is unconfirmed, suspended or managed by another organization; only a
/// current member (whom the admin already sees) is refused.
pub async fn invite(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    email: &str,
    role: Role,
    base_url: &str,
) -> Result<Invitation, InvitationError> {
    let email = Email::parse(email)?;
    let org = scope.org();
    if store::member_with_email(&mut **tx, org.id, &email.normalized())
        .await?
        .is_some()
    {
        return Err(InvitationError::AlreadyMember(email.to_string()));
    }
    let invitation = Invitation {
        id: InvitationId::new(),
        org_id: org.id,
        email: email.to_string(),
        role,
        status: InvitationStatus::Pending,
        invited_by: inviter(scope.actor()),
        created_at: now,
        sent_at: now,
        expires_at: now + INVITATION_DAYS * DAY_MS,
        decided_at: None,
    };
    let token = secrets::new_token("");
    store::insert(tx, &invitation, &secrets::hash_token(&token))
        .await
        .map_err(|e| {
            if crate::db::is_unique_violation(&e) {
                InvitationError::AlreadyInvited(email.to_string())
            } else {
                e.into()
            }
        })?;
    scope
        .audit(
            tx,
            now,
            AuditAction::MemberInvited,
            Target::invitation(invitation.id),
            serde_json::json!({ "email": invitation.email, "role": role.as_str(), "expires_at": invitation.expires_at }),
        )
        .await?;
    send(tx, now, org, &invitation, &token, base_url).await?;
    Ok(invitation)
}

/// Sends the link again with a new expiry; the old link stops working.
pub async fn resend(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: InvitationId,
    base_url: &str,
) -> Result<Invitation, InvitationError> {
    let org = scope.org();
    super::store::lock(tx, org.id).await?;
    let found = store::by_id(&mut **tx, org.id, id)
        .await?
        .ok_or(InvitationError::NotFound)?;
    if !found.is_open() {
        return Err(InvitationError::Closed(found.status));
    }
    let token = secrets::new_token("");
    let expires_at = now + INVITATION_DAYS * DAY_MS;
    if !store::renew(tx, id, &secrets::hash_token(&token), now, expires_at).await? {
        return Err(InvitationError::Closed(found.status));
    }
    let invitation = Invitation {
        status: InvitationStatus::Pending,
        sent_at: now,
        expires_at,
        ..found
    };
    scope
        .audit(
            tx,
            now,
            AuditAction::MemberInvitationResent,
            Target::invitation(id),
            serde_json::json!({ "email": invitation.email, "expires_at": expires_at }),
        )
        .await?;
    send(tx, now, org, &invitation, &token, base_url).await?;
    Ok(invitation)
}

/// Withdraws an open invitation; its link stops working.
pub async fn revoke(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: InvitationId,
) -> Result<(), InvitationError> {
    super::store::lock(tx, scope.org().id).await?;
    let found = store::by_id(&mut **tx, scope.org().id, id)
        .await?
        .ok_or(InvitationError::NotFound)?;
    if !store::decide(tx, id, InvitationStatus::Revoked, now, false).await? {
        return Err(InvitationError::Closed(found.status));
    }
    scope
        .audit(
            tx,
            now,
            AuditAction::MemberInvitationRevoked,
            Target::invitation(id),
            serde_json::json!({ "email": found.email, "role": found.role.as_str() }),
        )
        .await?;
    Ok(())
}

async fn send(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    invitation: &Invitation,
    token: &str,
    base_url: &str,
) -> Result<(), MailError> {
    let mail = Mail {
        kind: mail::MailKind::MemberInvitation,
        to: invitation.email.clone(),
        subject: format!("You are invited to join {} on nulab-pass", org.name),
        paragraphs: vec![
            format!(
                "{} invited {} to join the organization {} (organization ID {}) as {}.",
                invitation.invited_by,
                invitation.email,
                org.name,
                org.slug,
                invitation.role.as_str()
            ),
            format!(
                "To answer, sign in with {} and open the invitation: you can accept or decline it there and on your account page. No Nulab account with this address yet? Sign up with it, confirm it, then open the invitation again.",
                invitation.email
            ),
            "Nothing changes until you accept: the organization has no say over your account before that. If you did not expect this, ignore this email or decline.".to_string(),
        ],
        action: Some(MailAction {
            label: "Open the invitation".to_string(),
            url: format!("{base_url}/invitations/{token}"),
        }),
        closing: vec![format!(
            "The link works until {}.",
            crate::clock::format_time(invitation.expires_at)
        )],
    };
    mail::enqueue(tx, now, &mail).await
}

/// The live invitation behind an emailed link, and its organization (read only).
pub async fn by_link(db: &Db, now: i64, token: &str) -> Result<(Invitation, Org), InvitationError> {
    let invitation = store::by_token(db.pool(), &secrets::hash_token(token.trim()))
        .await?
        .ok_or(InvitationError::LinkInvalid)?;
    if !invitation.is_live(now) {
        return Err(match invitation.status {
            InvitationStatus::Pending | InvitationStatus::Expired => InvitationError::Expired,
            done => InvitationError::Closed(done),
        });
    }
    let org = super::store::by_id(db.pool(), invitation.org_id)
        .await?
        .ok_or(InvitationError::LinkInvalid)?;
    Ok((invitation, org))
}

/// Live invitations for the account's confirmed email, with their organizations. A managed
/// account, or an address not yet confirmed, sees none: neither could accept.
pub async fn pending_for(
    db: &Db,
    now: i64,
    account: &Account,
) -> Result<Vec<(Invitation, Org)>, sqlx::Error> {
    if account.kind != AccountKind::Nulab || !account.email_verified {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for invitation in
        store::pending_for_email(db.pool(), &account.email.to_lowercase(), now).await?
    {
        if let Some(org) = super::store::by_id(db.pool(), invitation.org_id).await? {
            out.push((invitation, org));
        }
    }
    Ok(out)
}

/// Checks that `account` may answer an invitation addressed to its email: a Nulab account
/// (item of the rule that a managed account belongs to one organization) with that address
/// confirmed.
pub fn may_answer(account: &Account, invitation: &Invitation) -> Result<(), InvitationError> {
    if !account.email.eq_ignore_ascii_case(&invitation.email) {
        return Err(InvitationError::OtherEmail(invitation.email.clone()));
    }
    if account.kind == AccountKind::Managed {
        return Err(InvitationError::ManagedAccount);
    }
    if !account.email_verified {
        return Err(InvitationError::EmailNotConfirmed);
    }
    Ok(())
}

/// The signed-in account accepts: it becomes a member with the invited role.
pub async fn accept(
    db: &Db,
    now: i64,
    account: &Account,
    id: InvitationId,
    meta: &RequestMeta,
) -> Result<Org, InvitationError> {
    answer(db, now, account, id, meta, true).await
}

/// The signed-in account declines: nothing changes but the invitation, which closes.
pub async fn decline(
    db: &Db,
    now: i64,
    account: &Account,
    id: InvitationId,
    meta: &RequestMeta,
) -> Result<Org, InvitationError> {
    answer(db, now, account, id, meta, false).await
}

async fn answer(
    db: &Db,
    now: i64,
    account: &Account,
    id: InvitationId,
    meta: &RequestMeta,
    accepting: bool,
) -> Result<Org, InvitationError> {
    let mut tx = db.begin().await?;
    let invitation = store::for_email(&mut *tx, id, &account.email.to_lowercase())
        .await?
        .ok_or(InvitationError::NotFound)?;
    may_answer(account, &invitation)?;
    let org = super::store::by_id(&mut *tx, invitation.org_id)
        .await?
        .ok_or(InvitationError::NotFound)?;
    super::store::lock(&mut tx, org.id).await?;
    // Read again under the organization's lock: a parallel answer may have just decided it.
    let invitation = store::for_email(&mut *tx, id, &account.email.to_lowercase())
        .await?
        .ok_or(InvitationError::NotFound)?;
    if !invitation.is_live(now) {
        return Err(match invitation.status {
            InvitationStatus::Pending | InvitationStatus::Expired => InvitationError::Expired,
            done => InvitationError::Closed(done),
        });
    }
    let status = if accepting {
        InvitationStatus::Accepted
    } else {
        InvitationStatus::Declined
    };
    if !store::decide(&mut tx, id, status, now, true).await? {
        return Err(InvitationError::Closed(invitation.status));
    }
    let already = super::store::role_of(&mut *tx, org.id, account.id).await?;
    if accepting && already.is_none() {
        super::store::insert_membership(&mut tx, org.id, account.id, invitation.role, now).await?;
    }
    let action = if accepting {
        AuditAction::MemberInvitationAccepted
    } else {
        AuditAction::MemberInvitationDeclined
    };
    let details = serde_json::json!({
        "invitation": id.to_string(),
        "email": account.email,
        "role": invitation.role.as_str(),
        "already_member": already.is_some(),
    });
    let scope = AdminScope::grant(org.clone(), account.actor(), meta.clone());
    scope
        .audit(&mut tx, now, action, Target::account(account.id), details)
        .await?;
    tx.commit().await?;
    Ok(org)
}

/// Closes the organization's open invitation for `email`, if any, as accepted: the operator
/// added that address directly. Returns its id.
pub(crate) async fn close_for_direct_add(
    tx: &mut Tx,
    now: i64,
    org: OrgId,
    email: &str,
) -> Result<Option<InvitationId>, sqlx::Error> {
    let Some(open) = store::open_for(&mut **tx, org, &email.to_lowercase()).await? else {
        return Ok(None);
    };
    Ok(
        store::decide(tx, open.id, InvitationStatus::Accepted, now, false)
            .await?
            .then_some(open.id),
    )
}

/// Marks pending invitations past their expiry as expired (audited per organization); the
/// job's work. Returns how many expired.
pub async fn expire_due(db: &Db, now: i64) -> Result<usize, sqlx::Error> {
    let mut expired = 0;
    for invitation in store::due(db.pool(), now, 200).await? {
        let mut tx = db.begin().await?;
        if store::expire(&mut tx, invitation.id, now).await? {
            audit::record(
                &mut tx,
                now,
                audit::Event {
                    org_id: Some(invitation.org_id),
                    action: AuditAction::MemberInvitationExpired,
                    actor: &Actor::System("invitations.expiry"),
                    target: Some(Target::invitation(invitation.id)),
                    meta: &RequestMeta::default(),
                    details: serde_json::json!({ "email": invitation.email }),
                },
            )
            .await?;
            expired += 1;
        }
        tx.commit().await?;
    }
    Ok(expired)
}

/// One page of the member list with open invitations, ordered by email.
pub async fn list(
    pool: &sqlx::AnyPool,
    query: store::EntryQuery<'_>,
    cursor: Option<&str>,
) -> Result<Page<Listed>, super::OrgError> {
    let after =
        crate::paging::after(cursor, 2).map_err(|e| super::OrgError::BadRequest(e.to_string()))?;
    let query = store::EntryQuery {
        after: after.as_deref(),
        limit: query.limit + 1,
        ..query
    };
    let rows = store::entries(pool, &query).await?;
    let page = crate::paging::into_page(rows, query.limit - 1, |(listed, key)| {
        let id = match listed {
            Listed::Member(m) => m.account_id.to_string(),
            Listed::Invitation(i) => i.invitation_id.clone(),
        };
        crate::paging::encode_cursor(&[key, &id])
    });
    Ok(Page {
        items: page.items.into_iter().map(|(l, _)| l).collect(),
        next_cursor: page.next_cursor,
    })
}
