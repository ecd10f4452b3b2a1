//! Email: a transactional outbox written in the same transaction as the change that causes a
//! message, and a sender that delivers it over SMTP with retries (see [`sender`]).
//! Every message is rendered from two templates, `templates/mail/layout.txt` and `.html`.

pub mod pages;
pub mod sender;
pub mod store;

use askama::Template;

use crate::db::Tx;
use crate::web::error::AppError;

/// The kind of a message, one vocabulary for every capability (like the audit actions);
/// stored as its dotted name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailKind {
    AccountVerifyEmail,
    AccountEmailChanged,
    AccountBreakGlassSignedIn,
    ManagedAccountCreated,
    ManagedAccountActivation,
    ManagedAccountPasswordReset,
    SamlConnectionNotice,
    DomainRecordMissing,
    DomainLapsed,
    MigrationReminder,
    MigrationRequested,
    MigrationCancelled,
    MigrationCompleted,
    MigrationDeclined,
    MigrationAdminsRequested,
    MigrationAdminsOutcome,
    MigrationAdminsFailed,
    MemberInvitation,
    BillingReductionStopped,
    BillingLegacyDomains,
    BillingLegacyDomainsReminder,
    OrgSignInAttack,
}

impl MailKind {
    /// Every kind, for reading stored names back.
    pub const ALL: &[MailKind] = &[
        MailKind::AccountVerifyEmail,
        MailKind::AccountEmailChanged,
        MailKind::AccountBreakGlassSignedIn,
        MailKind::ManagedAccountCreated,
        MailKind::ManagedAccountActivation,
        MailKind::ManagedAccountPasswordReset,
        MailKind::SamlConnectionNotice,
        MailKind::DomainRecordMissing,
        MailKind::DomainLapsed,
        MailKind::MigrationReminder,
        MailKind::MigrationRequested,
        MailKind::MigrationCancelled,
        MailKind::MigrationCompleted,
        MailKind::MigrationDeclined,
        MailKind::MigrationAdminsRequested,
        MailKind::MigrationAdminsOutcome,
        MailKind::MigrationAdminsFailed,
        MailKind::MemberInvitation,
        MailKind::BillingReductionStopped,
        MailKind::BillingLegacyDomains,
        MailKind::BillingLegacyDomainsReminder,
        MailKind::OrgSignInAttack,
    ];

    /// The stored name, e.g. `account.verify_email`.
    pub fn as_str(self) -> &'static str {
        use MailKind::*;
        match self {
            AccountVerifyEmail => "account.verify_email",
            AccountEmailChanged => "account.email_changed",
            AccountBreakGlassSignedIn => "account.break_glass_signed_in",
            ManagedAccountCreated => "managed_account.created",
            ManagedAccountActivation => "managed_account.activation",
            ManagedAccountPasswordReset => "managed_account.password_reset",
            SamlConnectionNotice => "saml_connection.notice",
            DomainRecordMissing => "domain.record_missing",
            DomainLapsed => "domain.lapsed",
            MigrationReminder => "migration.reminder",
            MigrationRequested => "migration.requested",
            MigrationCancelled => "migration.cancelled",
            MigrationCompleted => "migration.completed",
            MigrationDeclined => "migration.declined",
            MigrationAdminsRequested => "migration.admins_requested",
            MigrationAdminsOutcome => "migration.admins_outcome",
            MigrationAdminsFailed => "migration.admins_failed",
            MemberInvitation => "member.invitation",
            BillingReductionStopped => "billing.reduction_stopped",
            BillingLegacyDomains => "billing.legacy_domains",
            BillingLegacyDomainsReminder => "billing.legacy_domains_reminder",
            OrgSignInAttack => "org.sign_in_attack",
        }
    }

    /// Whether the message's button carries a single-use link (a token that acts: confirms an
    /// address, sets a password, answers an invitation or a migration request, reports an email
    /// change). The outbox keeps such a message without the link once it is delivered.
    pub fn holds_live_link(self) -> bool {
        use MailKind::*;
        matches!(
            self,
            AccountVerifyEmail
                | AccountEmailChanged
                | ManagedAccountActivation
                | ManagedAccountPasswordReset
                | MemberInvitation
                | MigrationRequested
                | MigrationReminder
        )
    }

    /// The kind of a stored name.
    pub fn parse(raw: &str) -> Option<MailKind> {
        MailKind::ALL.iter().copied().find(|k| k.as_str() == raw)
    }
}

impl std::fmt::Display for MailKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for MailKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One email to queue: a subject, paragraphs, an optional button, and closing lines.
#[derive(Clone, Debug)]
pub struct Mail {
    /// The kind of message, e.g. [`MailKind::AccountVerifyEmail`].
    pub kind: MailKind,
    pub to: String,
    pub subject: String,
    pub paragraphs: Vec<String>,
    pub action: Option<MailAction>,
    pub closing: Vec<String>,
}

/// A link the message asks the reader to follow.
#[derive(Clone, Debug)]
pub struct MailAction {
    pub label: String,
    pub url: String,
}

#[derive(Template)]
#[template(path = "mail/layout.txt", escape = "none")]
struct TextBody<'a> {
    mail: &'a Mail,
}

#[derive(Template)]
#[template(path = "mail/layout.html")]
struct HtmlBody<'a> {
    mail: &'a Mail,
}

/// Errors of queuing mail.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("rendering an email failed: {0}")]
    Render(#[from] askama::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How MailError reaches the user: client mistakes are 4xx with a stable code, the rest 5xx.
impl From<MailError> for AppError {
    fn from(err: MailError) -> AppError {
        AppError::Internal(err.into())
    }
}

/// What replaces a single-use link in the outbox once the message is delivered.
pub const LINK_REMOVED: &str = "[link removed after delivery]";

/// Renders `mail` and writes it to the outbox inside the caller's transaction. A message with a
/// single-use link is also rendered without it: the outbox keeps that version once the message
/// is delivered (or given up), so the database never holds a delivered link.
pub async fn enqueue(tx: &mut Tx, now: i64, mail: &Mail) -> Result<(), MailError> {
    let text = TextBody { mail }.render()?;
    let html = HtmlBody { mail }.render()?;
    let kept = match &mail.action {
        Some(action) if mail.kind.holds_live_link() => {
            let without = Mail {
                action: Some(MailAction {
                    label: action.label.clone(),
                    url: LINK_REMOVED.to_string(),
                }),
                ..mail.clone()
            };
            Some((
                TextBody { mail: &without }.render()?,
                HtmlBody { mail: &without }.render()?,
            ))
        }
        _ => None,
    };
    store::insert(tx, now, mail, (&text, &html), kept.as_ref()).await?;
    tracing::info!(kind = mail.kind.as_str(), "email queued");
    Ok(())
}
