//! The audit log: an append-only record of every state change, written by [`record`] inside the
//! caller's transaction so that a change and its event commit (or fail) together.

pub mod store;

use serde::Serialize;

use crate::db::Tx;

/// What happened, as `<area>.<what happened>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AuditAction {
    AccountSignedUp,
    AccountCreated,
    AccountEmailVerified,
    AccountSignedIn,
    AccountSignInFailed,
    AccountSignInPaused,
    AccountSignedOut,
    OrgCreated,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    ApiTokenCreated,
    ApiTokenRevoked,
    DomainAdded,
    DomainVerified,
    DomainVerificationFailed,
    DomainRecordMissing,
    DomainRecordRestored,
    DomainLapsed,
    DomainExpired,
    DomainTokenRenewed,
    DomainRemoved,
    AccountPasswordChanged,
    AccountEmailChanged,
    MemberLeft,
    ManagedAccountCreated,
    ManagedAccountActivated,
    ManagedAccountSuspended,
    ManagedAccountReactivated,
    ManagedAccountSignedOut,
    ManagedAccountPasswordReset,
    ManagedAccountRenamed,
    ManagedAccountEmailChanged,
    ManagedAccountDeleted,
    PasswordPolicyChanged,
    SubscriptionSeatsChanged,
    SamlConnectionCreated,
    SamlConnectionUpdated,
    SamlConnectionDeleted,
    SamlCertificatesChanged,
    SamlMetadataRefreshFailed,
    SamlCertificateExpiryWarned,
    SsoSigninSucceeded,
    SsoSigninFailed,
    SsoTestCompleted,
    AccountPasswordVerified,
    AccountTotpEnrolled,
    AccountTotpRemoved,
    AccountBreakGlassSignedIn,
    SessionSettingsChanged,
    ProductCreated,
    ProductSecretRotated,
    ProductDeleted,
    OidcCodeIssued,
    OidcTokenIssued,
    OidcTokenRefreshed,
    OidcCodeReused,
    OidcRefreshTokenReused,
    MigrationRequested,
    MigrationResent,
    MigrationReminded,
    MigrationAccepted,
    MigrationDeclined,
    MigrationExpired,
    MigrationCancelled,
    MigrationFailed,
    MigrationSettingsChanged,
}

impl AuditAction {
    /// The stored name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::AccountSignedUp => "account.signed_up",
            AuditAction::AccountCreated => "account.created",
            AuditAction::AccountEmailVerified => "account.email_verified",
            AuditAction::AccountSignedIn => "account.signed_in",
            AuditAction::AccountSignInFailed => "account.sign_in_failed",
            AuditAction::AccountSignInPaused => "account.sign_in_paused",
            AuditAction::AccountSignedOut => "account.signed_out",
            AuditAction::OrgCreated => "org.created",
            AuditAction::MemberAdded => "member.added",
            AuditAction::MemberRemoved => "member.removed",
            AuditAction::MemberRoleChanged => "member.role_changed",
            AuditAction::ApiTokenCreated => "api_token.created",
            AuditAction::ApiTokenRevoked => "api_token.revoked",
            AuditAction::DomainAdded => "domain.added",
            AuditAction::DomainVerified => "domain.verified",
            AuditAction::DomainVerificationFailed => "domain.verification_failed",
            AuditAction::DomainRecordMissing => "domain.record_missing",
            AuditAction::DomainRecordRestored => "domain.record_restored",
            AuditAction::DomainLapsed => "domain.lapsed",
            AuditAction::DomainExpired => "domain.expired",
            AuditAction::DomainTokenRenewed => "domain.token_renewed",
            AuditAction::DomainRemoved => "domain.removed",
            AuditAction::AccountPasswordChanged => "account.password_changed",
            AuditAction::AccountEmailChanged => "account.email_changed",
            AuditAction::MemberLeft => "member.left",
            AuditAction::ManagedAccountCreated => "managed_account.created",
            AuditAction::ManagedAccountActivated => "managed_account.activated",
            AuditAction::ManagedAccountSuspended => "managed_account.suspended",
            AuditAction::ManagedAccountReactivated => "managed_account.reactivated",
            AuditAction::ManagedAccountSignedOut => "managed_account.signed_out_everywhere",
            AuditAction::ManagedAccountPasswordReset => "managed_account.password_reset",
            AuditAction::ManagedAccountRenamed => "managed_account.renamed",
            AuditAction::ManagedAccountEmailChanged => "managed_account.email_changed",
            AuditAction::ManagedAccountDeleted => "managed_account.deleted",
            AuditAction::PasswordPolicyChanged => "password_policy.changed",
            AuditAction::SubscriptionSeatsChanged => "subscription.seats_changed",
            AuditAction::SamlConnectionCreated => "saml_connection.created",
            AuditAction::SamlConnectionUpdated => "saml_connection.updated",
            AuditAction::SamlConnectionDeleted => "saml_connection.deleted",
            AuditAction::SamlCertificatesChanged => "saml_connection.certificates_changed",
            AuditAction::SamlMetadataRefreshFailed => "saml_connection.metadata_refresh_failed",
            AuditAction::SamlCertificateExpiryWarned => "saml_connection.certificate_expiry_warned",
            AuditAction::SsoSigninSucceeded => "sso.signin.succeeded",
            AuditAction::SsoSigninFailed => "sso.signin.failed",
            AuditAction::SsoTestCompleted => "sso.test_completed",
            AuditAction::AccountPasswordVerified => "account.password_verified",
            AuditAction::AccountTotpEnrolled => "account.totp_enrolled",
            AuditAction::AccountTotpRemoved => "account.totp_removed",
            AuditAction::AccountBreakGlassSignedIn => "account.break_glass_signed_in",
            AuditAction::SessionSettingsChanged => "session_settings.changed",
            AuditAction::ProductCreated => "product.created",
            AuditAction::ProductSecretRotated => "product.secret_rotated",
            AuditAction::ProductDeleted => "product.deleted",
            AuditAction::OidcCodeIssued => "oidc.code_issued",
            AuditAction::OidcTokenIssued => "oidc.token_issued",
            AuditAction::OidcTokenRefreshed => "oidc.token_refreshed",
            AuditAction::OidcCodeReused => "oidc.code_reused",
            AuditAction::OidcRefreshTokenReused => "oidc.refresh_token_reused",
            AuditAction::MigrationRequested => "migration.requested",
            AuditAction::MigrationResent => "migration.resent",
            AuditAction::MigrationReminded => "migration.reminded",
            AuditAction::MigrationAccepted => "migration.accepted",
            AuditAction::MigrationDeclined => "migration.declined",
            AuditAction::MigrationExpired => "migration.expired",
            AuditAction::MigrationCancelled => "migration.cancelled",
            AuditAction::MigrationFailed => "migration.failed",
            AuditAction::MigrationSettingsChanged => "migration.settings_changed",
        }
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
    store::insert(tx, now, &event).await
}

/// A stored event, as the viewer and the API show it.
#[derive(Clone, Debug, Serialize)]
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
    pub details: serde_json::Value,
}
