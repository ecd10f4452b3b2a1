//! The audit log: an append-only record of every state change, written by [`record`] inside the
//! caller's transaction so that a change and its event commit (or fail) together. Each event
//! joins its organization's hash chain (`chain`); the schema is documented in `docs/audit.md`.

pub mod admin;
pub mod chain;
pub mod export;
pub mod query;
pub mod retention;
pub mod store;
pub mod webhook;

use serde::Serialize;

use crate::db::{Batch, Opening, Outcome, Tx};

/// Declares [`AuditAction`] with its stored names and [`AuditAction::ALL`] from one list, so that
/// no action can exist without a name or be missing from `ALL` (which `tests/audit_schema.rs`
/// checks against `docs/audit.md`).
macro_rules! audit_actions {
    ($($variant:ident => $name:literal,)*) => {
        /// What happened, as `<area>.<what happened>`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
        pub enum AuditAction {
            $($variant,)*
        }

        impl AuditAction {
            /// Every action, in the order declared.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// The stored name of the action.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)*
                }
            }
        }
    };
}

// One line per action: `Variant => "area.what_happened"`. Document each new one in
// docs/audit.md, with the test that proves its flow emits it.
audit_actions! {
    AccountSignedUp => "account.signed_up",
    AccountCreated => "account.created",
    AccountEmailVerified => "account.email_verified",
    AccountSignedIn => "account.signed_in",
    AccountSignInFailed => "account.sign_in_failed",
    AccountSignInPaused => "account.sign_in_paused",
    AccountSignedOut => "account.signed_out",
    OrgCreated => "org.created",
    MemberAdded => "member.added",
    MemberRemoved => "member.removed",
    MemberRoleChanged => "member.role_changed",
    ApiTokenCreated => "api_token.created",
    ApiTokenRevoked => "api_token.revoked",
    DomainAdded => "domain.added",
    DomainVerified => "domain.verified",
    DomainVerificationFailed => "domain.verification_failed",
    DomainRecordMissing => "domain.record_missing",
    DomainRecordRestored => "domain.record_restored",
    DomainLapsed => "domain.lapsed",
    DomainExpired => "domain.expired",
    DomainTokenRenewed => "domain.token_renewed",
    DomainRemoved => "domain.removed",
    AccountPasswordChanged => "account.password_changed",
    AccountEmailChanged => "account.email_changed",
    AccountEmailChangeRequested => "account.email_change_requested",
    AccountEmailChangeReported => "account.email_change_reported",
    AccountEmailClaimLost => "account.email_claim_lost",
    MemberLeft => "member.left",
    ManagedAccountCreated => "managed_account.created",
    ManagedAccountActivated => "managed_account.activated",
    ManagedAccountSuspended => "managed_account.suspended",
    ManagedAccountReactivated => "managed_account.reactivated",
    ManagedAccountSignedOut => "managed_account.signed_out_everywhere",
    ManagedAccountPasswordReset => "managed_account.password_reset",
    ManagedAccountRenamed => "managed_account.renamed",
    ManagedAccountEmailChanged => "managed_account.email_changed",
    ManagedAccountDeleted => "managed_account.deleted",
    PasswordPolicyChanged => "password_policy.changed",
    SubscriptionSeatsChanged => "subscription.seats_changed",
    SubscriptionSeatsChangeScheduled => "subscription.seats_change_scheduled",
    SubscriptionScheduledChangeCancelled => "subscription.scheduled_change_cancelled",
    SubscriptionPeriodChangeScheduled => "subscription.period_change_scheduled",
    SubscriptionPeriodChanged => "subscription.period_changed",
    SubscriptionActivated => "subscription.activated",
    SubscriptionStatusChanged => "subscription.status_changed",
    SubscriptionLegacyImported => "subscription.legacy_imported",
    InvoiceIssued => "invoice.issued",
    CreditNoteIssued => "credit_note.issued",
    OrgLegacyImported => "org.legacy_imported",
    OrgLegacyDomainsReminded => "org.legacy_domains_reminded",
    SamlConnectionCreated => "saml_connection.created",
    SamlConnectionUpdated => "saml_connection.updated",
    SamlConnectionDeleted => "saml_connection.deleted",
    SamlCertificatesChanged => "saml_connection.certificates_changed",
    SamlCertificatesHeld => "saml_connection.certificates_held",
    SamlCertificatesApproved => "saml_connection.certificates_approved",
    SamlCertificatesRejected => "saml_connection.certificates_rejected",
    SamlMetadataRefreshFailed => "saml_connection.metadata_refresh_failed",
    SamlCertificateExpiryWarned => "saml_connection.certificate_expiry_warned",
    SsoSigninSucceeded => "sso.signin.succeeded",
    SsoSigninFailed => "sso.signin.failed",
    SsoTestCompleted => "sso.test_completed",
    SsoLogoutSucceeded => "sso.logout.succeeded",
    SsoLogoutFailed => "sso.logout.failed",
    AccountPasswordVerified => "account.password_verified",
    AccountTotpEnrolled => "account.totp_enrolled",
    AccountTotpRemoved => "account.totp_removed",
    AccountBreakGlassSignedIn => "account.break_glass_signed_in",
    SessionSettingsChanged => "session_settings.changed",
    ProductCreated => "product.created",
    ProductSecretRotated => "product.secret_rotated",
    ProductDeleted => "product.deleted",
    OidcCodeIssued => "oidc.code_issued",
    OidcTokenIssued => "oidc.token_issued",
    OidcTokenRefreshed => "oidc.token_refreshed",
    OidcCodeReused => "oidc.code_reused",
    OidcRefreshTokenReused => "oidc.refresh_token_reused",
    OidcRefreshRefused => "oidc.refresh_refused",
    MigrationRequested => "migration.requested",
    MigrationResent => "migration.resent",
    MigrationReminded => "migration.reminded",
    MigrationAccepted => "migration.accepted",
    MigrationDeclined => "migration.declined",
    MigrationExpired => "migration.expired",
    MigrationCancelled => "migration.cancelled",
    MigrationFailed => "migration.failed",
    MigrationSettingsChanged => "migration.settings_changed",
    AuditRetentionChanged => "audit.retention_changed",
    AuditEventsPruned => "audit.events_pruned",
    AuditWebhookConfigured => "audit.webhook_configured",
    AuditWebhookRemoved => "audit.webhook_removed",
    AuditWebhookTested => "audit.webhook_tested",
    MemberInvited => "member.invited",
    MemberInvitationResent => "member.invitation_resent",
    MemberInvitationRevoked => "member.invitation_revoked",
    MemberInvitationAccepted => "member.invitation_accepted",
    MemberInvitationDeclined => "member.invitation_declined",
    MemberInvitationExpired => "member.invitation_expired",
    RequestRateLimited => "request.rate_limited",
    OrgSignInAttackNotified => "org.sign_in_attack_notified",
}

impl AuditAction {
    /// The action with the stored name `name`.
    pub fn parse(name: &str) -> Option<AuditAction> {
        AuditAction::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == name)
    }
}

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in account (id, email).
    Account { id: String, email: String },
    /// An org API token (id, display name).
    ApiToken { id: String, name: String },
    /// An operator using the command line on the server.
    Operator,
    /// Someone not signed in (a failed sign-in, a sign-up).
    Anonymous,
    /// A background job, by name.
    System(&'static str),
}

impl Actor {
    fn parts(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            Actor::Account { id, email } => ("account", Some(id), Some(email)),
            Actor::ApiToken { id, name } => ("api_token", Some(id), Some(name)),
            Actor::Operator => ("operator", None, None),
            Actor::Anonymous => ("anonymous", None, None),
            Actor::System(job) => ("system", None, Some(job)),
        }
    }
}

/// Where a request came from; empty for the CLI and jobs.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What an event is about.
#[derive(Clone, Debug)]
pub struct Target {
    pub kind: &'static str,
    pub id: String,
}

impl Target {
    pub fn account(id: impl ToString) -> Self {
        Target {
            kind: "account",
            id: id.to_string(),
        }
    }
    pub fn org(id: impl ToString) -> Self {
        Target {
            kind: "org",
            id: id.to_string(),
        }
    }
    pub fn invitation(id: impl ToString) -> Self {
        Target {
            kind: "invitation",
            id: id.to_string(),
        }
    }
    pub fn api_token(id: impl ToString) -> Self {
        Target {
            kind: "api_token",
            id: id.to_string(),
        }
    }
}

/// One event to record.
#[derive(Clone, Debug)]
pub struct Event<'a> {
    pub org_id: Option<crate::ids::OrgId>,
    pub action: AuditAction,
    pub actor: &'a Actor,
    pub target: Option<Target>,
    pub meta: &'a RequestMeta,
    pub details: serde_json::Value,
}

/// Writes `event` in the caller's transaction. A failure here must fail the caller's request.
pub async fn record(tx: &mut Tx, now: i64, event: Event<'_>) -> Result<(), sqlx::Error> {
    store::insert_after(tx, Batch::new(), now, &event).await?;
    Ok(())
}

/// Takes the heads of these organizations' chains, in chain order, for a transaction about to
/// record events in more than one of them. Every such transaction takes its heads this way, so
/// on PostgreSQL two of them wait for each other instead of each holding a head the other
/// needs. (A head is otherwise taken by the first event recorded in its chain.)
pub async fn take_chains(
    tx: &mut Tx,
    orgs: impl IntoIterator<Item = crate::ids::OrgId>,
) -> Result<(), sqlx::Error> {
    let chains: std::collections::BTreeSet<String> = orgs
        .into_iter()
        .map(|o| chain::chain_of(Some(&o.to_string())))
        .collect();
    for chain in &chains {
        store::lock_head(tx, chain).await?;
    }
    Ok(())
}

/// [`record`], after the statements of `before` in the same round trip (on SQLite), in the
/// transaction `tx` opens: the outcomes of `before`'s statements in order, and the transaction
/// with the event's place in its chain taken ([`Placed`]). Its commit writes the event, in the
/// same call on SQLite; a caller that finds in the outcomes a reason to give up rolls back,
/// and nothing is kept.
pub async fn record_after(
    tx: Opening<'_>,
    before: Batch,
    now: i64,
    event: Event<'_>,
) -> Result<(Placed, Vec<Outcome>), sqlx::Error> {
    record_all_after(tx, before, now, std::slice::from_ref(&event)).await
}

/// [`record_after`] for several events at once, in one or more chains: each chain's head is
/// taken once, in chain order ([`take_chains`]'s rule), and its events numbered in the order
/// given, each after the one before it. For several sign-ins committed together.
pub async fn record_all_after(
    tx: Opening<'_>,
    before: Batch,
    now: i64,
    events: &[Event<'_>],
) -> Result<(Placed, Vec<Outcome>), sqlx::Error> {
    let (taking, places) = store::take_places(before, events);
    let (tx, outcomes) = tx.run(taking).await?;
    let (outcomes, append) = store::append(outcomes, &places, now, events, tx.dialect())?;
    Ok((Placed { tx, append }, outcomes))
}

/// A transaction holding an audit event's place in its chain ([`record_after`]): the event is
/// written by its commit.
#[must_use = "the event is written only by `Placed::commit`"]
pub struct Placed {
    tx: Tx,
    append: Batch,
}

impl Placed {
    /// Lets the commit return before its log record is on disk, under
    /// [`crate::db::Batch::defer_flush`]'s rule (on PostgreSQL in the same call as the event).
    pub fn defer_flush(&mut self) {
        self.append.defer_flush();
    }

    /// Writes the event and commits, in one call on SQLite.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit_with(self.append).await.map(|_| ())
    }

    /// Rolls back: neither the event nor anything else of the transaction is kept.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

/// A stored event, as the viewer and the API show it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub id: String,
    pub org_id: Option<String>,
    pub occurred_at: i64,
    pub action: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub actor_label: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// A JSON object; its keys depend on the action (see `docs/audit.md`).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The event's place in its organization's chain (1, 2, ...).
    pub seq: Option<i64>,
    /// The SHA-256 of the event before it in the chain (hex).
    pub prev_hash: Option<String>,
    /// The SHA-256 of this event's canonical form (hex).
    pub hash: Option<String>,
}

impl StoredEvent {
    /// Reads a row selected with [`store::COLUMNS`].
    pub fn of(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let details: String = row.try_get("details")?;
        Ok(StoredEvent {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            occurred_at: row.try_get("occurred_at")?,
            action: row.try_get("action")?,
            actor_type: row.try_get("actor_type")?,
            actor_id: row.try_get("actor_id")?,
            actor_label: row.try_get("actor_label")?,
            target_type: row.try_get("target_type")?,
            target_id: row.try_get("target_id")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
            // Details are written from a `serde_json::Value`; text that is not JSON (written by
            // hand) is shown as a string rather than hidden.
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
            seq: row.try_get("seq")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        })
    }
}
