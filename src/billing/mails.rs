//! The emails of billing, queued in the outbox within the transaction of the change.

use crate::db::Tx;
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
