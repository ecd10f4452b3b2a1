//! The emails of billing, queued in the outbox within the transaction of the change.

use crate::db::Tx;
use crate::domains::transition::Transition;
use crate::mail::{self, Mail, MailAction, MailError, MailKind};
use crate::orgs::Org;

/// To every admin: a scheduled reduction stopped at the seats in use when the period turned.
pub(super) async fn reduction_stopped(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    (asked, applied, floor): (i64, i64, i64),
    base_url: &str,
) -> Result<(), MailError> {
    for to in crate::orgs::store::admin_emails(&mut **tx, org.id).await? {
        let mail = Mail {
            kind: MailKind::BillingReductionStopped,
            to,
            subject: format!("{}: the seat reduction stopped at {applied} seats", org.name),
            paragraphs: vec![
                format!(
                    "A reduction to {asked} seats was scheduled for the period that starts today. Managed accounts and pending migration requests of {} now use {floor} seats, so the subscription has {applied} seats instead.",
                    org.name
                ),
                "Seats are never reduced below what is in use. To reduce further, delete managed accounts or cancel migration requests, then schedule a reduction again.".to_string(),
            ],
            action: Some(MailAction {
                label: "Open the billing page".to_string(),
                url: format!("{base_url}{}", super::page_path(&org.slug)),
            }),
            closing: vec![],
        };
        mail::enqueue(tx, now, &mail).await?;
    }
    Ok(())
}

/// To every admin: managed accounts on unverified domains work only for the days left.
pub(super) async fn legacy_domains(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    t: &Transition,
    base_url: &str,
    reminder: bool,
) -> Result<(), MailError> {
    let kind = if reminder {
        MailKind::BillingLegacyDomainsReminder
    } else {
        MailKind::BillingLegacyDomains
    };
    let days = t.days_left;
    let list: Vec<String> = t
        .accounts
        .iter()
        .map(|a| format!("{} (on {})", a.email, a.domain))
        .collect();
    for to in crate::orgs::store::admin_emails(&mut **tx, org.id).await? {
        let mail = Mail {
            kind,
            to,
            subject: format!(
                "{}{}: verify your domains within {days} days",
                if reminder { "Reminder: " } else { "" },
                org.name
            ),
            paragraphs: vec![
                format!(
                    "Managed accounts of {} use email domains that the organization has not verified. They keep signing in for {days} more days (until {}); then they can sign in through SSO only once their domain is verified.",
                    org.name,
                    crate::clock::format_time(t.until)
                ),
                format!(
                    "Accounts that depend on an unverified domain: {}.",
                    list.join("; ")
                ),
                "Add each domain on the Domains page and publish its DNS TXT record.".to_string(),
            ],
            action: Some(MailAction {
                label: "Verify domains".to_string(),
                url: format!("{base_url}/admin/{}/domains", org.slug),
            }),
            closing: vec![],
        };
        mail::enqueue(tx, now, &mail).await?;
    }
    Ok(())
}
