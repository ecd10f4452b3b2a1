//! The emails of migration, queued in the outbox within the transaction of each step.

use super::{Ineligible, MigrationRequest, MigrationStatus};
use crate::accounts::Account;
use crate::clock::format_time;
use crate::db::Tx;
use crate::mail::{self, Mail, MailAction, MailError};
use crate::orgs::Org;

const CONTROL: &str = "its administrators control its password settings, status and deletion";

/// To the user: who asks, what changes, the consent link and its expiry (also the reminder).
pub(super) async fn user_asked(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    request: &MigrationRequest,
    url: &str,
    reminder: bool,
) -> Result<(), MailError> {
    let (kind, subject) = if reminder {
        (
            crate::mail::MailKind::MigrationReminder,
            format!("Reminder: {} asks to manage your account", org.name),
        )
    } else {
        (
            crate::mail::MailKind::MigrationRequested,
            format!("{} asks to manage your account", org.name),
        )
    };
    let mail = Mail {
        kind,
        to: request.email.clone(),
        subject,
        paragraphs: vec![
            format!(
                "{} of {} asks you to turn your Nulab account {} into a managed account of {}.",
                request.requested_by, org.name, request.email, org.name
            ),
            format!(
                "If you agree, {} will manage the account: {CONTROL}. Your memberships in other organizations end, and you may have to sign in through the organization's single sign-on. Your account stays the same account, so your data in Backlog, Cacoo and Typetalk stays.",
                org.name
            ),
            "Open the link to see exactly what changes, then agree or decline.".to_string(),
        ],
        action: Some(MailAction {
            label: "Review the request".to_string(),
            url: url.to_string(),
        }),
        closing: vec![format!(
            "The link works once and expires on {}. If you did not expect this, decline or ignore it: nothing changes without your consent.",
            format_time(request.expires_at)
        )],
    };
    mail::enqueue(tx, now, &mail).await
}

/// To the user: an admin withdrew the request.
pub(super) async fn user_cancelled(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    request: &MigrationRequest,
) -> Result<(), MailError> {
    let mail = Mail {
        kind: crate::mail::MailKind::MigrationCancelled,
        to: request.email.clone(),
        subject: format!("{} withdrew its request to manage your account", org.name),
        paragraphs: vec![format!(
            "An administrator of {} cancelled the request to turn {} into a managed account. The link in the earlier email no longer works, and nothing changed.",
            org.name, request.email
        )],
        action: None,
        closing: vec![],
    };
    mail::enqueue(tx, now, &mail).await
}

/// To the user: the confirmation after agreeing.
pub(super) async fn user_completed(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    account: &Account,
    left: &[String],
    must_change: bool,
    sso_required: bool,
) -> Result<(), MailError> {
    let mut paragraphs = vec![format!(
        "{} is now a managed account of {}: {CONTROL}. It is the same account, so your product data stays.",
        account.email, org.name
    )];
    if !left.is_empty() {
        paragraphs.push(format!("Your memberships in {} ended.", left.join(", ")));
    }
    paragraphs.push("You were signed out everywhere; sign in again.".to_string());
    if sso_required {
        paragraphs.push(format!(
            "Sign in through the single sign-on of {}.",
            org.name
        ));
    } else if must_change {
        paragraphs.push(format!(
            "Your password does not meet the rules of {}: choose a new one when you next sign in.",
            org.name
        ));
    }
    let mail = Mail {
        kind: crate::mail::MailKind::MigrationCompleted,
        to: account.email.clone(),
        subject: format!("Your account is now managed by {}", org.name),
        paragraphs,
        action: None,
        closing: vec![],
    };
    mail::enqueue(tx, now, &mail).await
}

/// To the user: the confirmation after declining.
pub(super) async fn user_declined(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    request: &MigrationRequest,
) -> Result<(), MailError> {
    let mail = Mail {
        kind: crate::mail::MailKind::MigrationDeclined,
        to: request.email.clone(),
        subject: format!("You declined the request of {}", org.name),
        paragraphs: vec![format!(
            "You declined to turn {} into a managed account of {}. Nothing changed; {} has been told.",
            request.email, org.name, org.name
        )],
        action: None,
        closing: vec![],
    };
    mail::enqueue(tx, now, &mail).await
}

async fn to_admins(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    kind: crate::mail::MailKind,
    subject: String,
    paragraphs: Vec<String>,
) -> Result<(), MailError> {
    for to in crate::orgs::store::admin_emails(&mut **tx, org.id).await? {
        let mail = Mail {
            kind,
            to,
            subject: subject.clone(),
            paragraphs: paragraphs.clone(),
            action: None,
            closing: vec![
                "You receive this email because you are an admin of this organization.".to_string(),
            ],
        };
        mail::enqueue(tx, now, &mail).await?;
    }
    Ok(())
}

/// To the admins: who was asked and by whom.
pub(super) async fn admins_asked(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    by: &str,
    asked: &[String],
    days: i64,
) -> Result<(), MailError> {
    let mut paragraphs = vec![format!(
        "{by} asked {} account(s) to become managed accounts of {} (links valid for {days} days):",
        asked.len(),
        org.name
    )];
    paragraphs.extend(asked.iter().take(50).cloned());
    if asked.len() > 50 {
        paragraphs.push(format!(
            "... and {} more (see the Migrations page).",
            asked.len() - 50
        ));
    }
    to_admins(
        tx,
        now,
        org,
        crate::mail::MailKind::MigrationAdminsRequested,
        format!("Migration requested for {} account(s)", asked.len()),
        paragraphs,
    )
    .await
}

/// To the admins: a request ended (completed, declined or expired).
pub(super) async fn admins_outcome(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    request: &MigrationRequest,
    outcome: MigrationStatus,
) -> Result<(), MailError> {
    let what = match outcome {
        MigrationStatus::Completed => "agreed: it is now a managed account of the organization",
        MigrationStatus::Declined => "declined; its reserved seat is free again",
        MigrationStatus::Expired => {
            "did not answer before the link expired; its reserved seat is free again"
        }
        _ => "was cancelled",
    };
    to_admins(
        tx,
        now,
        org,
        crate::mail::MailKind::MigrationAdminsOutcome,
        format!("Migration of {}: {}", request.email, outcome.as_str()),
        vec![format!("{} {what}.", request.email)],
    )
    .await
}

/// To the admins: the user agreed, but a rule stopped the migration.
pub(super) async fn admins_failed(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    request: &MigrationRequest,
    why: &Ineligible,
) -> Result<(), MailError> {
    to_admins(
        tx,
        now,
        org,
        crate::mail::MailKind::MigrationAdminsFailed,
        format!("Migration of {} could not be completed", request.email),
        vec![format!(
            "{} agreed, but the migration could not be completed: {}. Nothing changed; the request stays pending until it expires.",
            request.email,
            why.message()
        )],
    )
    .await
}
